"""One query's list through the index's batch API, for tests that rank a single user or vector."""

import numpy as np


def user_query(index, row: int) -> np.ndarray:
    return index.user_queries([row])[0]


def ranked(index, query: np.ndarray, k: int, **filters) -> tuple[np.ndarray, np.ndarray]:
    """(rows, scores) of one (d + 1,) query, best first, without padding."""
    return index.rank(query[None, :], k, **filters).of(0)
