"""Same seed and arguments, same bytes; another seed, another world."""

from __future__ import annotations

import orjson

from finverse_reco.demo import DemoWorld, generate_world


def test_same_seed_gives_byte_identical_world(world: DemoWorld) -> None:
    again = generate_world(seed=42)
    assert orjson.dumps(again.events) == orjson.dumps(world.events)
    assert again.products == world.products
    assert again.users == world.users


def test_another_seed_gives_another_world() -> None:
    arguments = {"n_users": 100, "n_products": 40, "n_events": 2000}
    one, other = generate_world(1, **arguments), generate_world(2, **arguments)
    assert orjson.dumps(one.events) != orjson.dumps(other.events)
    assert [p.name for p in one.products] != [p.name for p in other.products]
    assert one.users != other.users
