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
