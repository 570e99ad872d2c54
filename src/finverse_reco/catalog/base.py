"""Product details and where they come from."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol, runtime_checkable


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


class CatalogUnavailable(RuntimeError):
    """The catalog source could not answer within its budget.

    `known` holds the details that were at hand anyway (a cache's hits), so a degraded answer can
    still use them.
    """

    def __init__(self, message: str, *, known: Mapping[str, Product] | None = None) -> None:
        super().__init__(message)
        self.known: dict[str, Product] = dict(known or {})


@runtime_checkable
class ProductCatalog(Protocol):
    async def get_many(self, product_ids: Sequence[str]) -> dict[str, Product]:
        """Details for the ids it knows; unknown ids are absent. Raises CatalogUnavailable."""

    def at_hand(self, product_ids: Sequence[str]) -> dict[str, Product] | None:
        """What `get_many` would answer, when that is known without I/O (in memory); else None.

        Lets a request skip a coroutine and its timeout when nothing needs fetching."""

    async def all_products(self) -> list[Product]:
        """The whole catalog (training features, cold items)."""

    async def close(self) -> None: ...
