"""Product details and where they come from."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol, runtime_checkable

from finverse_reco.products import Product


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
