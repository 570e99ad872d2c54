"""What a recommendation says about each product: the catalog's details, or the model's; its score."""

from __future__ import annotations

import numpy as np
import pytest
from clustered_index import clustered_index  # tests/support

from finverse_reco.catalog.local import LocalCatalog
from finverse_reco.pipeline import WeightingConfig
from finverse_reco.products import Product
from finverse_reco.service.models import ModelHolder
from finverse_reco.service.recommendations import (
    RecommendationService,
    ServiceConfig,
    _rounded,
)
from finverse_reco.store import open_store


async def test_products_the_catalog_lacks_are_named_and_placed_by_the_model(tmp_path):
    index = clustered_index()
    described = {
        item_id: Product(id=item_id, name=f"Card {item_id}", category="Cards", institution="Beta")
        for item_id in index.items.ids[::2]  # the catalog knows every other product
    }
    service = RecommendationService(
        ModelHolder(index),
        open_store(f"sqlite:///{tmp_path / 'unused.db'}"),  # a known user needs no store read
        LocalCatalog(list(described.values())),
        ServiceConfig(weighting=WeightingConfig()),
    )

    result = await service.for_user(index.users.id(0), 20)

    assert len(result.product_ids) == 20 and not result.degraded
    assert result.scores == sorted(result.scores, reverse=True)
    for product_id, product in zip(result.product_ids, result.products, strict=True):
        details = (product.id, product.name, product.category, product.institution)
        if product_id in described:
            assert details == (product_id, "Card " + product_id, "Cards", "Beta")
        else:
            row = index.items.row(product_id)
            assert details == (product_id, product_id, *index.item_meta(row))
    assert {p in described for p in result.product_ids} == {True, False}


@pytest.mark.parametrize("scale", [1e-9, 1e-3, 1.0, 1e3, 1e7])
def test_scores_are_rounded_as_round_to_six_places_does(scale):
    scores = (np.random.default_rng(7).standard_normal(20_000) * scale).astype(np.float32)

    assert _rounded(scores) == [round(score, 6) for score in scores.tolist()]


def test_non_finite_scores_are_rounded_without_failing():
    scores = np.array([np.nan, np.inf, 0.1234567], dtype=np.float32)

    rounded = _rounded(scores)

    assert np.isnan(rounded[0]) and rounded[1:] == [np.inf, round(float(scores[2]), 6)]
