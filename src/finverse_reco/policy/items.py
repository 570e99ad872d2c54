"""What the policy knows of each item the model ranks, as arrays over the index's item rows: the
catalog's eligibility facts (requirements, residencies, availability) and whether the catalog lists
the item at all. Built once per model version and catalog refresh, never per request."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np

from finverse_reco.customers import KycStatus
from finverse_reco.products import Product

# A required KYC status as a number: a customer's status passes when its rank is at least this.
KYC_RANK = {KycStatus.NONE: 0, KycStatus.PENDING: 1, KycStatus.VERIFIED: 2}


@dataclass(frozen=True, eq=False)
class ItemFacts:
    """Rows follow the index's items. Unknown numbers are NaN; "no requirement" is 0 / NaN."""

    ids: tuple[str, ...]
    category: np.ndarray  # (n,) int code into category_names, -1 unknown
    category_names: tuple[str, ...]
    institution: np.ndarray  # (n,) int code into institution_names, -1 unknown
    institution_names: tuple[str, ...]
    listed: np.ndarray  # (n,) bool: the catalog lists it (False: withdrawn)
    min_age: np.ndarray  # (n,) float, 0 without a requirement
    min_income: np.ndarray  # (n,) float, 0 without a requirement
    risk_level: np.ndarray  # (n,) float, NaN unknown
    required_kyc: np.ndarray  # (n,) int KYC_RANK, 0 without a requirement
    residencies: np.ndarray  # (n,) int code into residency_sets, -1: sold everywhere
    residency_sets: tuple[frozenset[str], ...]
    regions: np.ndarray  # (n,) int code into region_sets, -1: every region
    region_sets: tuple[frozenset[str], ...]
    available_from: np.ndarray  # (n,) float seconds since the epoch, NaN: always
    available_until: np.ndarray  # (n,) float, NaN: no end
    catalog_known: bool  # False: no catalog to tell withdrawn products by (none is configured)
    catalog_readable: bool  # False: the catalog could not be read, so nothing counts as listed
    rows_by_id: Mapping[str, int]

    @property
    def n(self) -> int:
        return len(self.ids)

    @classmethod
    def build(
        cls,
        ids: Sequence[str],
        category: np.ndarray,
        category_names: Sequence[str],
        institution: np.ndarray,
        institution_names: Sequence[str],
        products: Mapping[str, Product] | None,
    ) -> ItemFacts:
        """The facts of the index's items from the catalog's products. An empty catalog means no
        catalog is configured: nothing is known withdrawn, and no product has requirements.
        `products=None`: the catalog could not be read, and no item counts as listed (fail
        closed)."""
        n = len(ids)
        readable = products is not None
        products = products or {}
        listed = np.array([product_id in products for product_id in ids], dtype=bool)
        found = [products.get(product_id) for product_id in ids]
        residency_sets: dict[frozenset[str], int] = {}
        region_sets: dict[frozenset[str], int] = {}

        def numbers(field: str, missing: float) -> np.ndarray:
            values = [getattr(p, field) if p is not None else None for p in found]
            return np.array([missing if v is None else v for v in values], dtype=np.float64)

        def set_codes(field: str, codes: dict[frozenset[str], int]) -> np.ndarray:
            out = np.full(n, -1, dtype=np.int32)
            for row, product in enumerate(found):
                values = getattr(product, field) if product is not None else None
                if values is not None:
                    out[row] = codes.setdefault(frozenset(values), len(codes))
            return out

        def moments(field: str) -> np.ndarray:
            values = [getattr(p, field) if p is not None else None for p in found]
            return np.array([np.nan if v is None else _epoch(v) for v in values], dtype=np.float64)

        kyc = np.array(
            [_kyc_rank(p.required_kyc) if p is not None else 0 for p in found], dtype=np.int8
        )
        residencies = set_codes("residencies", residency_sets)
        regions = set_codes("regions", region_sets)
        return cls(
            ids=tuple(ids),
            category=np.asarray(category, dtype=np.int32),
            category_names=tuple(category_names),
            institution=np.asarray(institution, dtype=np.int32),
            institution_names=tuple(institution_names),
            listed=listed if products or not readable else np.ones(n, dtype=bool),
            min_age=numbers("min_age", 0.0),
            min_income=numbers("min_income", 0.0),
            risk_level=numbers("risk_level", np.nan),
            required_kyc=kyc,
            residencies=residencies,
            residency_sets=tuple(residency_sets),
            regions=regions,
            region_sets=tuple(region_sets),
            available_from=moments("available_from"),
            available_until=moments("available_until"),
            catalog_known=bool(products),
            catalog_readable=readable,
            rows_by_id={product_id: row for row, product_id in enumerate(ids)},
        )

    def row(self, product_id: str) -> int | None:
        return self.rows_by_id.get(product_id)

    def category_name(self, row: int) -> str:
        code = int(self.category[row])
        return self.category_names[code] if code >= 0 else ""

    def institution_name(self, row: int) -> str:
        code = int(self.institution[row])
        return self.institution_names[code] if code >= 0 else ""

    def category_mask(self, names: Sequence[str]) -> np.ndarray:
        """The items in any of these categories (case-insensitive)."""
        wanted = {name.casefold() for name in names}
        codes = [c for c, name in enumerate(self.category_names) if name.casefold() in wanted]
        return np.isin(self.category, codes)

    def institution_mask(self, names: Sequence[str]) -> np.ndarray:
        wanted = {name.casefold() for name in names}
        codes = [c for c, name in enumerate(self.institution_names) if name.casefold() in wanted]
        return np.isin(self.institution, codes)

    def in_sets(
        self, codes: np.ndarray, sets: tuple[frozenset[str], ...], value: str
    ) -> np.ndarray:
        """Per item: is `value` in its set (items without a set: True)."""
        member = np.array([value in s for s in sets] + [True], dtype=bool)
        return member[codes]  # code -1 picks the trailing True


def _kyc_rank(required: str | None) -> int:
    if required is None:
        return 0
    try:
        return KYC_RANK[KycStatus(required)]
    except ValueError:
        return KYC_RANK[KycStatus.VERIFIED]  # a status we do not know: the strictest


def _epoch(moment: datetime) -> float:
    return moment.timestamp()
