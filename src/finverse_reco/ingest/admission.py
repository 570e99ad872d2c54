"""What a write entry point demands of an event beyond its schema, the same for HTTP and RabbitMQ:
its timestamp within the sane window (`EventRules`, applied while parsing), every product it
names known to the catalog (unless the operator allows unknown products), and a customer who has
not been erased (their late events are dropped and counted, not stored)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from finverse_reco.erasure import ErasedCustomers
from finverse_reco.events import EventRules, InteractionEvent


class ProductLookup(Protocol):
    """What admission needs of a catalog (`catalog.base.ProductCatalog` is one)."""

    async def get_many(self, product_ids: Sequence[str]) -> Mapping[str, Any]:
        """Details for the ids it knows; unknown ids are absent. Raises CatalogUnavailable."""


class TombstoneLookup(Protocol):
    """What admission needs of a store (`store.InteractionStore` is one)."""

    async def erased_among(self, tombstones: Sequence[str]) -> set[str]: ...


@dataclass(frozen=True, slots=True)
class EventAdmission:
    rules: EventRules = field(default_factory=EventRules)
    # None: products are not checked (FINVERSE_ACCEPT_UNKNOWN_PRODUCTS, or no catalog at all).
    products: ProductLookup | None = None
    # Both or neither: the key that makes tombstones, and the store that keeps them.
    erased: ErasedCustomers | None = None
    tombstones: TombstoneLookup | None = None

    async def erased_customers(self, events: Sequence[InteractionEvent]) -> set[str]:
        """The customers of these events who have been erased. Asked of the store for every
        batch, so a tombstone stored a moment ago counts. Raises StoreUnavailable."""
        if self.erased is None or self.tombstones is None or not events:
            return set()
        by_tombstone = self.erased.tombstones_of([event.user_id for event in events])
        found = await self.tombstones.erased_among(list(by_tombstone))
        return {by_tombstone[tombstone] for tombstone in found}

    async def unknown_products(self, events: Sequence[InteractionEvent]) -> list[tuple[int, str]]:
        """(position, reason) of every event that names a product the catalog does not know.

        One catalog call for the whole batch. Raises `CatalogUnavailable` when the catalog cannot
        answer: the caller must not guess (HTTP answers 503, the consumer holds the batch)."""
        if self.products is None or not events:
            return []
        wanted = list(dict.fromkeys(pid for event in events for pid in event.product_ids()))
        if not wanted:
            return []
        known = await self.products.get_many(wanted)
        refused = []
        for position, event in enumerate(events):
            unknown = [pid for pid in event.product_ids() if pid not in known]
            if unknown:
                refused.append((position, f"unknown product(s): {', '.join(unknown)}"))
        return refused
