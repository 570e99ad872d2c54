"""What a write entry point demands of an event beyond its schema, the same for HTTP and RabbitMQ:
its timestamp within the sane window (`EventRules`, applied while parsing) and every product it
names known to the catalog (unless the operator allows unknown products)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from finverse_reco.events import EventRules, InteractionEvent


class ProductLookup(Protocol):
    """What admission needs of a catalog (`catalog.base.ProductCatalog` is one)."""

    async def get_many(self, product_ids: Sequence[str]) -> Mapping[str, Any]:
        """Details for the ids it knows; unknown ids are absent. Raises CatalogUnavailable."""


@dataclass(frozen=True, slots=True)
class EventAdmission:
    rules: EventRules = field(default_factory=EventRules)
    # None: products are not checked (FINVERSE_ACCEPT_UNKNOWN_PRODUCTS, or no catalog at all).
    products: ProductLookup | None = None

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
