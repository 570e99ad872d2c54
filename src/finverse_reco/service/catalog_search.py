"""Catalog search for operators: products whose id, name, category or institution contain a text."""

from __future__ import annotations

import time
from typing import Any

from finverse_reco.catalog.base import ProductCatalog
from finverse_reco.products import Product
from finverse_reco.service.models import ModelHolder

# The whole catalog is read once per this many seconds (the Banking Service pages through it).
CATALOG_SNAPSHOT_SECONDS = 60.0


class CatalogSearch:
    def __init__(self, catalog: ProductCatalog, models: ModelHolder) -> None:
        self._catalog = catalog
        self._models = models
        self._products: list[Product] = []
        self._read_at = float("-inf")

    async def search(self, text: str, limit: int) -> dict[str, Any]:
        """Matching products (case-insensitive), by id; each says whether the serving model knows
        it. Raises CatalogUnavailable."""
        products = await self._snapshot()
        needle = text.strip().casefold()
        matches = [
            product
            for product in products
            if not needle
            or any(
                needle in field.casefold()
                for field in (product.id, product.name, product.category, product.institution)
            )
        ]
        index = self._models.index
        return {
            "total": len(matches),
            "products": [
                {
                    **product.to_dict(),
                    "in_model": index is not None and product.id in index.items,
                }
                for product in matches[:limit]
            ],
        }

    async def _snapshot(self) -> list[Product]:
        if time.monotonic() - self._read_at > CATALOG_SNAPSHOT_SECONDS:
            self._products = sorted(await self._catalog.all_products(), key=lambda p: p.id)
            self._read_at = time.monotonic()
        return self._products
