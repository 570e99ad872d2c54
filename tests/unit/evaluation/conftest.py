"""Tiny datasets for the harness: two tastes of users over two groups of items, written as CSV."""

from pathlib import Path

import numpy as np
import pytest

N_USERS, N_ITEMS = 60, 24


def write_clustered_csv(directory: Path, seed: int = 0) -> dict[str, Path]:
    """Users u00..u59: even users like items i00..i11, odd users i12..i23 (one popular item each
    side is liked by everyone). Their `taste` is a user feature, each item's `group` an item one."""
    rng = np.random.default_rng(seed)
    lines = ["user_id,item_id,weight,timestamp"]
    for user in range(N_USERS):
        side = user % 2
        liked = rng.choice(12, size=7, replace=False) + 12 * side
        for step, item in enumerate([*liked, 12 * (1 - side)]):
            lines.append(f"u{user:02d},i{item:02d},1,{1_700_000_000 + 3600 * step + user}")
    paths = {
        "interactions": directory / "interactions.csv",
        "user_features": directory / "users.csv",
        "item_features": directory / "items.csv",
    }
    paths["interactions"].write_text("\n".join(lines) + "\n")
    paths["user_features"].write_text(
        "user_id,taste\n" + "".join(f"u{u:02d},{'ab'[u % 2]}\n" for u in range(N_USERS))
    )
    paths["item_features"].write_text(
        "item_id,group\n" + "".join(f"i{i:02d},{'ab'[i // 12]}\n" for i in range(N_ITEMS))
    )
    return paths


@pytest.fixture
def clustered_csv(tmp_path: Path) -> dict[str, Path]:
    return write_clustered_csv(tmp_path)


@pytest.fixture
def clustered(clustered_csv):
    from finverse_reco.evaluation.datasets import load_interactions_csv

    return load_interactions_csv(
        clustered_csv["interactions"],
        user_features=clustered_csv["user_features"],
        item_features=clustered_csv["item_features"],
    )


BANK_FIELDS = {
    "age_group": ("18-24", "25-34", "35-44", "45-54", "55+"),
    "income_range": ("<30k", "30k-50k", "50k-75k", ">75k"),
    "location": ("north", "south", "east", "west", "capital"),
}


def write_bank_csv(
    directory: Path, seed: int = 0, n_customers: int = 800, n_products: int = 24
) -> dict[str, Path]:
    """A bank-shaped export: customers with categorical demographics each holding 1-4 of
    `n_products` products. Ownership is a choice model driven by the demographics: a product's
    appeal is its base appeal plus one random effect per demographic value, and a customer's
    products are drawn without replacement with probability ∝ exp(appeal). (So a combination
    of values matters more than any one value alone, as with real customers.)"""
    rng = np.random.default_rng(seed)
    base = rng.normal(0.0, 0.5, n_products)
    effects = {
        field: rng.normal(0.0, 1.2, (len(values), n_products))
        for field, values in BANK_FIELDS.items()
    }
    users, items = ["customer_id,age_group,income_range,location"], ["user_id,item_id,weight"]
    for customer in range(n_customers):
        codes = {field: int(rng.integers(len(values))) for field, values in BANK_FIELDS.items()}
        appeal = base + sum(effects[field][code] for field, code in codes.items())
        chances = np.exp(appeal - appeal.max())
        held = rng.choice(
            n_products, size=int(rng.integers(1, 5)), replace=False, p=chances / chances.sum()
        )
        users.append(f"c{customer:04d}," + ",".join(BANK_FIELDS[f][c] for f, c in codes.items()))
        items += [f"c{customer:04d},p{product:02d},1" for product in held]
    paths = {
        "interactions": directory / "holdings.csv",
        "user_features": directory / "customers.csv",
    }
    paths["interactions"].write_text("\n".join(items) + "\n")
    paths["user_features"].write_text("\n".join(users).replace("customer_id", "user_id", 1) + "\n")
    return paths
