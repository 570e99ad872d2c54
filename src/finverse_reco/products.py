"""The financial product: a domain type below every adapter (catalogs, the pipeline and the index
all speak it; none of them owns it)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

# The fields a catalog sends as lists (a frozen product keeps them as tuples) and as ISO datetimes.
_SEQUENCE_FIELDS = ("residencies", "regions")
_MOMENT_FIELDS = ("available_from", "available_until")


@dataclass(frozen=True, slots=True)
class Product:
    """A financial product as the catalog describes it. Numeric characteristics may be unknown."""

    id: str
    name: str
    category: str
    institution: str
    interest_rate: float | None = None  # percent per year (deposit yield or borrowing cost)
    annual_fee: float | None = None  # currency units per year
    risk_level: int | None = None  # 1 (lowest) .. 5 (highest)
    term_months: int | None = None
    min_age: int | None = None
    min_income: float | None = None  # currency units per year
    # Eligibility (the policy step, docs/POLICY.md); None: no such requirement.
    residencies: tuple[str, ...] | None = None  # ISO country codes the product is sold in
    regions: tuple[str, ...] | None = None  # regions within them (a regional institution's)
    required_kyc: str | None = None  # the KYC status a holder needs ("verified")
    available_from: datetime | None = None
    available_until: datetime | None = None  # offered until (exclusive)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Product:
        fields = cls.__dataclass_fields__
        values = {k: v for k, v in raw.items() if k in fields}
        for name in _SEQUENCE_FIELDS:
            if values.get(name) is not None:
                values[name] = tuple(values[name])
        for name in _MOMENT_FIELDS:
            if values.get(name) is not None:
                values[name] = _moment(values[name])
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _moment(value: datetime | str) -> datetime:
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment
