"""The financial product: a domain type below every adapter (catalogs, the pipeline and the index
all speak it; none of them owns it)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


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

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Product:
        fields = cls.__dataclass_fields__
        return cls(**{k: v for k, v in raw.items() if k in fields})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
