"""The audit record: what one served list showed, to whom, when, from which model and why.

A domain type below every adapter, like `events.py`: the stores keep it append-only, the service's
`AuditTrail` writes it off the request path, the admin API reads it back (docs/ACCOUNTABILITY.md).
The items are parallel columns, as in a served result: a record is built and stored with no object
per item (an object per item cost the writer ten times more than the columns).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

RECOMMENDATION_ID_PATTERN = r"^[0-9a-f]{32}$"


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
    product_ids: tuple[str, ...]  # what was shown, best first
    # Each product's score and reason; None where they are not kept (a customer without consent
    # to personalisation: docs/ACCOUNTABILITY.md).
    scores: tuple[float, ...] | None
    reasons: tuple[str, ...] | None

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
            "product_ids": list(self.product_ids),
            "scores": None if self.scores is None else list(self.scores),
            "reasons": None if self.reasons is None else list(self.reasons),
        }

    @classmethod
    def from_document(cls, document: dict[str, Any]) -> AuditRecord:
        scores, reasons = document.get("scores"), document.get("reasons")
        return cls(
            recommendation_id=document["recommendation_id"],
            served_at=document["served_at"],
            user_id=document.get("user_id"),
            session_id=document.get("session_id"),
            product_id=document.get("product_id"),
            model_version=document["model_version"],
            policy_version=document.get("policy_version"),
            strategy=document["strategy"],
            # The MongoDB stand-in may read a stored bool back as 1.
            degraded=bool(document["degraded"]),
            product_ids=tuple(document["product_ids"]),
            scores=None if scores is None else tuple(scores),
            reasons=None if reasons is None else tuple(reasons),
        )

    def to_json(self) -> dict[str, Any]:
        """The API's shape: one item per product shown, `served_at` as ISO 8601 UTC."""
        document = self.to_document()
        count = len(self.product_ids)
        scores = document.pop("scores") or [None] * count
        reasons = document.pop("reasons") or [None] * count
        items = zip(document.pop("product_ids"), scores, reasons, strict=True)
        return document | {
            "served_at": self.served_at.isoformat().replace("+00:00", "Z"),
            "items": [
                {"id": product_id, "rank": rank, "score": score, "reason": reason}
                for rank, (product_id, score, reason) in enumerate(items, start=1)
            ],
        }
