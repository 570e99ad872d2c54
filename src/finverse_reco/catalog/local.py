"""The embedded catalog: one JSON file, loaded once, served from memory."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import orjson

from finverse_reco.products import Product

CATALOG_FORMAT_VERSION = 1


def read_catalog_file(path: Path) -> list[Product]:
    """Read `{"version": 1, "products": [...]}`."""
    raw = orjson.loads(Path(path).read_bytes())
    if not isinstance(raw, dict) or raw.get("version") != CATALOG_FORMAT_VERSION:
        raise ValueError(f"{path}: not a version-{CATALOG_FORMAT_VERSION} catalog file")
    return [Product.from_dict(item) for item in raw["products"]]


def write_catalog_file(path: Path, products: Sequence[Product]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    body = {"version": CATALOG_FORMAT_VERSION, "products": [p.to_dict() for p in products]}
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(orjson.dumps(body, option=orjson.OPT_INDENT_2))
    tmp.replace(path)


class LocalCatalog:
    """ProductCatalog over an in-memory product list (from the catalog file)."""

    def __init__(self, products: Sequence[Product]) -> None:
        self._by_id = {p.id: p for p in products}

    @classmethod
    def from_file(cls, path: Path) -> LocalCatalog:
        return cls(read_catalog_file(path))

    async def get_many(self, product_ids: Sequence[str]) -> dict[str, Product]:
        return self.at_hand(product_ids)

    def at_hand(self, product_ids: Sequence[str]) -> dict[str, Product]:
        by_id = self._by_id
        return {pid: by_id[pid] for pid in product_ids if pid in by_id}

    async def all_products(self) -> list[Product]:
        return list(self._by_id.values())

    async def close(self) -> None:
        return None
