"""The one top-k: a block of queries against the items, with per-query exclusions and allow-lists.

Every ranked list ends here: personalised, session, cold-start, similar-product and popularity lists
in the service, micro-batched or not, and both metric modules. Like `implicit`'s `topk`, it takes
arrays and returns arrays; the filters are per query, in either form a caller has at hand:

- `exclude`: rows never returned: a CSR matrix (b, n) of pairs, or one filter shared by every
  query, or a sequence of one filter per query (None, a bool mask (n,) or int rows);
- `allowed`: the only rows that may be returned, in the same forms but a CSR matrix.

Int rows must be unique and ascending (as `np.flatnonzero` gives them).

The result is ordered best first, equal scores by lower row, so a list never depends on how a batch
was put together or which path below produced it. `-inf` means "not a candidate": excluded and
disallowed rows become `-inf`, and a query with fewer than k candidates gets fewer rows (`TopK`
pads them with row -1 and score -inf).

The speed tricks, each measured in `bench/serving.py` (ranking micro-benchmark) and kept here only:
- `topk` takes the item matrix transposed, (d, n): OpenBLAS multiplies a block of queries by the
  contiguous (d, n) transpose ~1.5× faster than by (n, d) rows;
- an allow-list is ranked by gathering its rows, not by writing `-inf` over the rest
  (`argpartition` slows down on a row full of one value);
- long rows (`PREFILTER_MIN_ROWS`+) find their top k among the few hundred scores above a threshold
  taken from a strided sample, instead of partitioning the whole row.
Ranking a large catalog off the event loop is the micro-batcher's decision (`service/batching.py`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import scipy.sparse as sp

Filter = np.ndarray | None  # a bool mask (n,), or int rows
Filters = Filter | Sequence[Filter] | sp.spmatrix

PREFILTER_MIN_ROWS = 4_096
PREFILTER_STRIDE = 16
_MINUS_INF = -np.inf  # "not a candidate"; a constant, not `-np.inf` read and negated per call


class TopK(NamedTuple):
    """`rows[q]`: query q's best rows, best first; `scores[q]` theirs. Padded with -1 / -inf."""

    rows: np.ndarray  # (b, k) int64
    scores: np.ndarray  # (b, k), the scores' dtype

    def of(self, query: int, k: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Query `query`'s best `k` (default all) without the padding: views, no copies."""
        rows, scores = self
        rows, scores = rows[query, :k], scores[query, :k]
        if len(scores) and scores[-1] == _MINUS_INF:  # fewer candidates than k
            keep = scores > _MINUS_INF
            rows, scores = rows[keep], scores[keep]
        return rows, scores


def topk(
    queries: np.ndarray,
    items_t: np.ndarray,
    k: int,
    *,
    exclude: Filters = None,
    allowed: Filters = None,
) -> TopK:
    """The best `k` items for each query by `queries @ items_t`: (b, d) against (d, n)."""
    block = np.asarray(queries, dtype=items_t.dtype)
    if block.ndim != 2 or block.shape[1] != items_t.shape[0]:
        raise ValueError(f"queries must have shape (b, {items_t.shape[0]})")
    return topk_of_scores(block @ items_t, k, exclude=exclude, allowed=allowed)


def topk_of_scores(
    scores: np.ndarray, k: int, *, exclude: Filters = None, allowed: Filters = None
) -> TopK:
    """The best `k` columns of each row of `scores` (b, n). The call owns `scores` and
    overwrites it (excluded and disallowed entries become -inf)."""
    if scores.ndim != 2:
        raise ValueError("scores must be a 2-D block: one row per query")
    b, n = scores.shape
    k = max(0, min(int(k), n))
    if k == 0 or b == 0:
        return TopK(np.full((b, k), -1, dtype=np.int64), np.full((b, k), _MINUS_INF, scores.dtype))
    if b == 1 and _one_array(exclude) and _one_array(allowed):
        return _topk_of_row(scores[0], k, exclude, allowed)
    _exclude(scores, exclude)
    gathered = _allow(scores, allowed)
    if not gathered:
        return TopK(*_select(scores, k))
    if b == 1:
        rows, top = _select_gathered(scores[0], gathered[0], k)
        return TopK(rows[None, :], top[None, :])
    rows = np.full((b, k), -1, dtype=np.int64)
    top = np.full((b, k), _MINUS_INF, dtype=scores.dtype)
    plain = [q for q in range(b) if q not in gathered]
    if plain:
        rows[plain], top[plain] = _select(scores[plain], k)
    for q, candidates in gathered.items():
        rows[q], top[q] = _select_gathered(scores[q], candidates, k)
    return TopK(rows, top)


def _one_array(filters: Filters) -> bool:
    return filters is None or type(filters) is np.ndarray


def _topk_of_row(
    row: np.ndarray, k: int, exclude: np.ndarray | None, allowed: np.ndarray | None
) -> TopK:
    """`topk_of_scores` of the usual list, one query with plain array filters: fewer calls."""
    n = len(row)
    if exclude is not None:
        row[_checked(exclude, n, "exclude")] = _MINUS_INF
    if allowed is not None:
        rows, top = _select_gathered(row, _as_rows(allowed, n, "allowed"), k)
        return TopK(rows[None, :], top[None, :])
    columns, top = _select_row(row, k)
    return TopK(columns[None, :], top[None, :])


def _as_rows(rows: np.ndarray, n: int, name: str) -> np.ndarray:
    """A filter as int rows: a mask's true rows, or the rows themselves."""
    checked = _checked(rows, n, name)
    return np.flatnonzero(checked) if checked.dtype.kind == "b" else checked


def _select_gathered(scores: np.ndarray, candidates: np.ndarray, k: int):
    """`_select_row` over the `candidates` of one row: (k,) rows and scores, padded."""
    wanted = min(k, len(candidates))
    if wanted == 0:
        return np.full(k, -1, dtype=np.int64), np.full(k, _MINUS_INF, dtype=scores.dtype)
    columns, top = _select_row(scores[candidates], wanted)
    rows = candidates[columns]
    if top[-1] == _MINUS_INF:
        rows[columns < 0] = -1
    if wanted < k:
        rows = np.concatenate([rows, np.full(k - wanted, -1, dtype=np.int64)])
        top = np.concatenate([top, np.full(k - wanted, _MINUS_INF, dtype=top.dtype)])
    return rows, top


def _exclude(scores: np.ndarray, exclude: Filters) -> None:
    """Write -inf over every excluded entry: one scatter for the whole block."""
    if exclude is None:
        return
    b, n = scores.shape
    if isinstance(exclude, np.ndarray):  # one filter for every query
        rows = _checked(exclude, n, "exclude")
        if b == 1:
            scores[0][rows] = _MINUS_INF  # 1-D indexing: a third of the 2-D cost
        else:
            scores[:, rows] = _MINUS_INF
        return
    if sp.issparse(exclude):
        pairs = sp.csr_matrix(exclude)
        if pairs.shape != (b, n):
            raise ValueError(f"exclude must have shape ({b}, {n})")
        scores[np.repeat(np.arange(b), np.diff(pairs.indptr)), pairs.indices] = _MINUS_INF
        return
    lines, columns = [], []
    for q, rows in enumerate(_per_query(exclude, b, "exclude")):
        if rows is not None and len(rows):
            if type(rows) is not np.ndarray:
                rows = np.asarray(rows)
            lines.append(q)
            columns.append(_as_rows(rows, n, "exclude") if rows.dtype.kind == "b" else rows)
    if not lines:
        return
    # Int rows are checked once for the block (concatenated), not query by query: a batch of
    # users' seen rows is the common case, and 16 checks cost more than the scatter.
    if len(lines) == 1:
        scores[lines[0]][_checked(columns[0], n, "exclude")] = _MINUS_INF
    else:
        excluded = _checked(np.concatenate(columns), n, "exclude")
        scores[np.repeat(lines, [len(rows) for rows in columns]), excluded] = _MINUS_INF


def _allow(scores: np.ndarray, allowed: Filters) -> dict[int, np.ndarray]:
    """{query: the rows its allow-list keeps}, to be gathered rather than written over with
    -inf: `argpartition` slows down on a row full of one value, and at 100,000 items gathering
    costs no more than writing (bench/ranking.py)."""
    if allowed is None:
        return {}
    b, n = scores.shape
    if sp.issparse(allowed):
        raise TypeError("allowed takes masks or rows, not a sparse matrix")
    per_query = (
        [allowed] * b if isinstance(allowed, np.ndarray) else _per_query(allowed, b, "allowed")
    )
    gathered: dict[int, np.ndarray] = {}
    by_filter: dict[int, np.ndarray] = {}  # a filter shared by several queries is read once
    for q, rows in enumerate(per_query):
        if rows is not None:
            key = id(rows)
            if key not in by_filter:
                by_filter[key] = _as_rows(rows, n, "allowed")
            gathered[q] = by_filter[key]
    return gathered


def _select(block: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(columns, scores) of each row's best `k` (0 < k <= n), best first, ties by lower column,
    -inf entries as column -1. One query (most lists) takes a 1-D path: fewer numpy calls."""
    m, n = block.shape
    if m == 1:
        columns, top = _select_row(block[0], k)
        return columns[None, :], top[None, :]
    lines = np.arange(m)[:, None]
    beyond = None
    if k == n:
        columns = np.broadcast_to(np.arange(n), (m, n))
    elif _partitions_whole(n, k):
        # The entry at n - k - 1 is then the (k+1)-th best: equal to the k-th means a tie
        # straddles the cut, and only then is the choice among equals fixed below.
        partitioned = np.argpartition(block, n - k - 1, axis=1)
        columns = partitioned[:, n - k :]
        beyond = block[lines[:, 0], partitioned[:, n - k - 1]]
    else:
        thresholds = _sampled_thresholds(block, k)
        columns = np.stack([_prefiltered(block[line], k, t) for line, t in enumerate(thresholds)])
    top = block[lines, columns]
    # By score descending, then column ascending. One two-key sort takes fewer instructions
    # than a plain argsort plus a check for ties (callgrind, bench/ranking.py --instructions).
    order = np.lexsort((columns, -top))
    columns, top = columns[lines, order], top[lines, order]
    if beyond is not None and (top[:, -1] == beyond).any():
        for line in np.flatnonzero(top[:, -1] == beyond).tolist():
            kth = top[line, -1]
            if kth > _MINUS_INF:
                row = block[line]
                columns[line] = _best_of(row, np.flatnonzero(row >= kth), k)
                top[line] = row[columns[line]]
    if top[:, -1].min() == _MINUS_INF:
        columns = np.where(top == _MINUS_INF, -1, columns)
    return columns, top


def _select_row(row: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """`_select` of one row: (k,) columns and scores."""
    n = len(row)
    beyond = None
    if k == n:
        columns = np.arange(n)
    elif _partitions_whole(n, k):
        partitioned = np.argpartition(row, n - k - 1)
        columns = partitioned[n - k :]
        beyond = row[partitioned[n - k - 1]]
    else:
        columns = _prefiltered(row, k, _sampled_thresholds(row[None, :], k)[0])
    top = row[columns]
    order = np.lexsort((columns, -top))
    columns, top = columns[order], top[order]
    kth = top[-1]
    if kth == beyond and kth > _MINUS_INF:
        columns = _best_of(row, np.flatnonzero(row >= kth), k)
        top = row[columns]
    if kth == _MINUS_INF:
        columns = np.where(top == _MINUS_INF, -1, columns)
    return columns, top


def _partitions_whole(n: int, k: int) -> bool:
    """Short rows, or a k too large for a sample to narrow the row down: partition it whole."""
    return n < PREFILTER_MIN_ROWS or (k + 1) * PREFILTER_STRIDE * 4 > n


def _sampled_thresholds(block: np.ndarray, k: int) -> list[float]:
    """Each row's (k+1)-th best score of a strided sample: at most its (k+1)-th best overall."""
    sampled = (block.shape[1] + PREFILTER_STRIDE - 1) // PREFILTER_STRIDE
    partitioned = np.partition(block[:, ::PREFILTER_STRIDE], sampled - k - 1, axis=1)
    return partitioned[:, sampled - k - 1].tolist()


def _prefiltered(scores: np.ndarray, k: int, threshold: float) -> np.ndarray:
    """The columns of a long row's top k, unordered, found among the scores above `threshold`.

    A strided sample's (k+1)-th best leaves a few hundred candidates, found in one vectorised
    comparison; `argpartition` then runs on those alone. Exact: when at least k scores beat the
    threshold, the top k (ties at the k-th included) are among them; otherwise (rare: ties or
    exclusions) the row is partitioned whole. Row by row on purpose: numpy's 2-D `nonzero` is
    several times slower than one `flatnonzero` per row."""
    candidates = np.flatnonzero(scores > threshold)
    if len(candidates) < k:
        candidates = np.arange(len(scores))
    c = len(candidates)
    if c == k:  # every other score is at most the threshold, below all of these
        return candidates
    values = scores[candidates]
    # Both cut positions in place: the k-th best and the one beyond, read without a reduction.
    partitioned = np.argpartition(values, (c - k - 1, c - k))
    beyond, kth = values[partitioned[c - k - 1 : c - k + 1]].tolist()
    if kth == beyond and kth > _MINUS_INF:
        return _best_of(scores, candidates[values >= kth], k)
    return candidates[partitioned[c - k :]]


def _best_of(scores: np.ndarray, candidates: np.ndarray, k: int) -> np.ndarray:
    """The best k of `candidates` (sorted columns) by score, ties by lower column."""
    return candidates[np.lexsort((candidates, -scores[candidates]))[:k]]


def _per_query(filters: Sequence[Filter], b: int, name: str) -> Sequence[Filter]:
    if len(filters) != b:
        raise ValueError(f"{name}: one filter per query ({b}), got {len(filters)}")
    return filters


def _checked(rows: np.ndarray, n: int, name: str) -> np.ndarray:
    if type(rows) is not np.ndarray:
        rows = np.asarray(rows)
    kind = rows.dtype.kind
    if kind == "b":
        if rows.shape != (n,):
            raise ValueError(f"{name}: a mask must have shape ({n},)")
    elif rows.ndim != 1 or kind not in "iu":
        raise ValueError(f"{name}: rows must be a 1-D integer array or a bool mask")
    return rows
