"""Training and serving without `location` (FINVERSE_MODEL_USER_ATTRIBUTES), end to end: the
trained artifacts hold no location feature or segment, and a request that only says where the
customer lives is answered as if it said nothing."""

from __future__ import annotations

import asyncio

import pytest
from fastapi.testclient import TestClient

from finverse_reco.api.app import create_app
from finverse_reco.cli import seed_demo, train_once
from finverse_reco.model.artifacts import current_version, load_version
from finverse_reco.settings import Settings


def trained_settings(root, **overrides) -> Settings:
    settings = Settings(
        store_url=f"sqlite:///{root}/interactions.db",
        model_dir=root / "models",
        catalog_path=root / "catalog.json",
        model_epochs=3,
        refresh_schedule="off",
        **overrides,
    )
    asyncio.run(seed_demo(settings, seed=11, users=150, products=60, events=5_000))
    assert asyncio.run(train_once(settings)) == 0
    return settings


@pytest.fixture(scope="module")
def without_location(tmp_path_factory) -> Settings:
    return trained_settings(
        tmp_path_factory.mktemp("no-location"), model_user_attributes=["age_group", "income_range"]
    )


@pytest.fixture(scope="module")
def with_everything(tmp_path_factory) -> Settings:
    return trained_settings(tmp_path_factory.mktemp("all-attributes"))


def served(settings: Settings):
    return load_version(settings.model_dir, current_version(settings.model_dir))


def test_the_model_trained_without_location_has_no_location_feature_or_segment(
    without_location, with_everything
):
    index = served(without_location)
    assert index.feature_config.user_attributes == ("age_group", "income_range")
    assert not [n for n in index.user_feature_names if n.startswith("location:")]
    assert not [k for k in index.segment_keys if k.startswith("location=")]
    assert [n for n in index.user_feature_names if n.startswith("age_group:")]
    # The same data with every attribute allowed does learn from location.
    assert [n for n in served(with_everything).user_feature_names if n.startswith("location:")]


def test_serving_ignores_an_attribute_the_model_may_not_use(without_location, with_everything):
    path = "/api/v1/recommendations/products/brand-new-customer"
    with TestClient(create_app(without_location)) as client:
        only_location = client.get(path, params={"location": "pacific"}).json()
        nothing = client.get(path).json()
        by_age = client.get(path, params={"location": "pacific", "age_group": "25-34"}).json()
    assert only_location["strategy"] == "popular"
    assert [r["id"] for r in only_location["recommendations"]] == [
        r["id"] for r in nothing["recommendations"]
    ]
    assert by_age["strategy"] == "features_cold_start"
    with TestClient(create_app(with_everything)) as client:
        assert client.get(path, params={"location": "pacific"}).json()["strategy"] == (
            "features_cold_start"
        )
