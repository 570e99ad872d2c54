"""The audit record: what one served list showed, to whom, when, from which model and why.

A domain type below every adapter, like `events.py`: the stores keep it append-only, the service's
`AuditTrail` writes it off the request path, the admin API reads it back (docs/ACCOUNTABILITY.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

RECOMMENDATION_ID_PATTERN = r"^[0-9a-f]{32}$"


@dataclass(frozen=True, slots=True)
class AuditItem:
    product_id: str
    rank: int
    # None where the customer has not consented to personalisation: what was shown is kept, how
    # their data scored it is not (docs/ACCOUNTABILITY.md).
    score: float | None
    reason: str | None

    def to_document(self) -> dict[str, Any]:
        return {
            "id": self.product_id,
            "rank": self.rank,
            "score": self.score,
            "reason": self.reason,
        }

    @classmethod
    def from_document(cls, document: dict[str, Any]) -> AuditItem:
        return cls(document["id"], document["rank"], document["score"], document["reason"])


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One served list. Exactly one of `user_id`, `session_id`, `product_id` names what it was
    for (a customer, a browsing session, a product's neighbours)."""

    recommendation_id: str
    served_at: datetime  # UTC
    user_id: str | None
    session_id: str | None
    product_id: str | None
    model_version: str
    policy_version: str | None
    strategy: str
    degraded: bool
    items: tuple[AuditItem, ...]

    def to_document(self) -> dict[str, Any]:
        """The stored shape: plain JSON types, `served_at` a datetime."""
        return {
            "recommendation_id": self.recommendation_id,
            "served_at": self.served_at,
            "user_id": self.user_id,
            "session_id": self.session_id,
            "product_id": self.product_id,
            "model_version": self.model_version,
            "policy_version": self.policy_version,
            "strategy": self.strategy,
            "degraded": self.degraded,
            "items": [item.to_document() for item in self.items],
        }

    @classmethod
    def from_document(cls, document: dict[str, Any]) -> AuditRecord:
        return cls(
            recommendation_id=document["recommendation_id"],
            served_at=document["served_at"],
            user_id=document.get("user_id"),
            session_id=document.get("session_id"),
            product_id=document.get("product_id"),
            model_version=document["model_version"],
            policy_version=document.get("policy_version"),
            strategy=document["strategy"],
            # MongoDB stand-ins may read a stored bool back as 1.
            degraded=bool(document["degraded"]),
            items=tuple(AuditItem.from_document(item) for item in document["items"]),
        )

    def to_json(self) -> dict[str, Any]:
        """The API's shape: `served_at` as ISO 8601 UTC."""
        return self.to_document() | {"served_at": self.served_at.isoformat().replace("+00:00", "Z")}
