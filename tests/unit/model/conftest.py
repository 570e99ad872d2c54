from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from finverse_reco.model import ModelParams, TrainingParams, train
from finverse_reco.pipeline import WeightingConfig, build_training_data
from finverse_reco.products import Product

CATEGORIES = ("card", "loan", "deposit")
AGE_OF_CATEGORY = {"card": "18-24", "loan": "35-44", "deposit": "55+"}
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _world(seed: int = 0, n_users: int = 150, per_category: int = 20, per_user: int = 6):
    """Users of three tastes: each views products of one category only; their age group tells
    which. Products carry category, an institution and a rate."""
    rng = np.random.default_rng(seed)
    products = [
        Product(
            f"p{i:03d}",
            f"Product {i}",
            CATEGORIES[i % 3],
            f"bank{i % 4}",
            interest_rate=float(i % 9),
            risk_level=1 + i % 5,
        )
        for i in range(3 * per_category)
    ]
    docs = []
    for u in range(n_users):
        category = CATEGORIES[u % 3]
        mine = [p for p in products if p.category == category]
        for j, product in enumerate(rng.choice(mine, size=per_user, replace=False)):
            docs.append(
                {
                    "user_id": f"u{u:03d}",
                    "type": "product_view" if j % 3 else "application_start",
                    "timestamp": T0 + timedelta(minutes=10 * u + j),
                    "data": {
                        "productId": product.id,
                        "viewDuration": 45.0,
                        "userDemographics": {"age_group": AGE_OF_CATEGORY[category]},
                    },
                }
            )
    return docs, products


FAST = ModelParams(no_components=16, epochs=15, num_threads=1, random_state=7)


@pytest.fixture(scope="session")
def world():
    return _world()


@pytest.fixture(scope="session")
def training_data(world):
    docs, products = world
    return build_training_data([docs], products, WeightingConfig())


@pytest.fixture(scope="session")
def trained_index(training_data):
    return train(training_data, TrainingParams(FAST), validation_fraction=0.2)


@pytest.fixture(scope="session")
def fast_params():
    return FAST
