"""One full-size demo world per test session: generating it takes a couple of seconds."""

from __future__ import annotations

import pytest

from finverse_reco.demo import DemoWorld, generate_world


@pytest.fixture(scope="session")
def world() -> DemoWorld:
    return generate_world(seed=42)


@pytest.fixture(scope="session")
def touched(world: DemoWorld) -> list[list[str]]:
    """Per event of `world`, the product ids it touches (none for a search)."""
    return [touched_products(event) for event in world.events]


def touched_products(event: dict) -> list[str]:
    data = event["data"]
    return [data["productId"]] if "productId" in data else list(data.get("productIDs", ()))
