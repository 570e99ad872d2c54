"""A small, clustered EmbeddingIndex for tests of ranking (index, service)."""

import numpy as np

from finverse_reco.index import EmbeddingIndex

CATEGORIES = ("card", "loan", "deposit")


def clustered_index(seed: int = 0, n_users: int = 30, n_items: int = 300, dim: int = 8):
    """Three item clusters (one per category) around orthogonal-ish centres; users near one."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(3, dim)) * 3
    cluster = np.arange(n_items) % 3
    item_vectors = centres[cluster] + rng.normal(size=(n_items, dim))
    item_biases = rng.normal(scale=0.1, size=n_items)
    user_cluster = np.arange(n_users) % 3
    user_vectors = centres[user_cluster] + rng.normal(size=(n_users, dim))
    seen = [
        np.sort(rng.choice(np.flatnonzero(cluster == c), 4, replace=False)) for c in user_cluster
    ]
    popularity = rng.random(n_items)
    popularity[::7] = 0.0  # some items nobody touched
    return EmbeddingIndex(
        users=[f"u{i:03d}" for i in range(n_users)],
        items=[f"i{i:03d}" for i in range(n_items)],
        user_vectors=user_vectors,
        item_matrix=np.column_stack([item_vectors, item_biases]),
        user_feature_names=["age_group:25-34", "age_group:55+", "location:York"],
        user_feature_embeddings=np.vstack([centres[0], centres[2], rng.normal(size=dim)]),
        user_feature_biases=np.zeros(3),
        item_feature_names=[
            "category:card",
            "category:loan",
            "category:deposit",
            "institution:Alpha",
            "risk_level:2",
        ],
        item_feature_embeddings=np.vstack([centres, rng.normal(size=(2, dim))]),
        item_feature_biases=np.array([0.1, 0.2, 0.3, 0.0, -0.1]),
        item_categories=cluster,
        category_names=CATEGORIES,
        item_institutions=np.where(np.arange(n_items) % 2 == 0, 0, -1),
        institution_names=("Alpha",),
        popularity=popularity,
        segment_keys=("age_group=55+",),
        segment_popularity=np.where(cluster == 2, popularity, 0.0)[None, :],
        seen_indptr=np.concatenate([[0], np.cumsum([len(s) for s in seen])]),
        seen_indices=np.concatenate(seen),
        params={"model": {"no_components": dim}},
        metrics={"validation_precision@10": 0.5},
    )
