"""Training leaves out the interactions of customers who objected to personalisation, on SQLite
and the MongoDB stand-in alike (`customers_without_consent`, read by `load_training_data`)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from finverse_reco.catalog.local import LocalCatalog
from finverse_reco.events import parse_event
from finverse_reco.model.params import TrainingParams
from finverse_reco.pipeline import WeightingConfig
from finverse_reco.products import Product
from finverse_reco.service.training import TrainingConfig, load_training_data
from finverse_reco.store import InteractionStore

T0 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
PRODUCTS = [
    Product(id=f"p{n}", name=f"P{n}", category="savings", institution="b") for n in range(4)
]


def view(user: str, product: str, minute: int) -> dict:
    return {
        "user_id": user,
        "session_id": f"s_{user}",
        "type": "product_view",
        "timestamp": (T0 + timedelta(minutes=minute)).isoformat(),
        "data": {"productId": product, "viewDuration": 30},
    }


async def test_customers_without_consent_are_not_learned_from(
    store: InteractionStore, tmp_path: Path
) -> None:
    users = ["consents", "never_asked", "objected"]
    events = [view(user, f"p{n}", n) for user in users for n in range(3)]
    events.append(view("objected", "p3", 9))  # the only interaction with p3
    await store.insert_many([parse_event(event) for event in events])
    await store.put_consent("consents", True, T0)
    await store.put_consent("objected", False, T0)
    config = TrainingConfig(
        params=TrainingParams(), weighting=WeightingConfig(), model_dir=tmp_path
    )

    data = await load_training_data(store, LocalCatalog(PRODUCTS), config)

    assert sorted(data.users.ids) == ["consents", "never_asked"]
    assert data.interactions.nnz == 6
    # Not in the popularity either: p3 only they touched.
    p3 = data.items.row("p3")
    assert p3 is None or data.popularity[p3] == 0

    await store.put_consent("objected", True, T0 + timedelta(minutes=1))  # consents again
    again = await load_training_data(store, LocalCatalog(PRODUCTS), config)
    assert sorted(again.users.ids) == users
