"""The one top-k kernel against a brute-force `np.argsort` reference.

Random shapes (small rows, and rows long enough for the sampled-threshold prefilter), ks from 0 to
more than the row, ties (scores rounded to a few values), `-inf` entries and whole `-inf` rows,
exclusions and allow-lists in every accepted form, shared and per query."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from finverse_reco.index.topk import PREFILTER_MIN_ROWS, TopK, topk, topk_of_scores


def reference(scores, k, excluded, allowed):
    """Per query: candidates are allowed, not excluded, finite; best score first, then lower row."""
    lists = []
    for q in range(scores.shape[0]):
        row = scores[q]
        keep = allowed[q] & ~excluded[q] & (row > -np.inf)
        order = np.lexsort((np.arange(len(row)), -row))  # stable: lower row first among ties
        order = order[keep[order]][:k]
        lists.append((order, row[order]))
    return lists


def assert_matches(result: TopK, expected, k):
    assert result.rows.shape[0] == len(expected)
    for q, (rows, scores) in enumerate(expected):
        got_rows, got_scores = result.of(q)
        np.testing.assert_array_equal(got_rows, rows)
        np.testing.assert_array_equal(got_scores, scores)
        # the padding is exactly what is missing
        assert (result.rows[q] == -1).sum() == result.rows.shape[1] - len(rows)
        assert len(rows) <= k


def random_scores(rng, b, n, ties: bool):
    scores = rng.standard_normal((b, n)).astype(np.float32)
    if ties:
        scores = np.round(scores * 2) / 2  # a handful of distinct values: ties everywhere
    holes = rng.random((b, n)) < 0.05
    scores[holes] = -np.inf
    if b > 2:
        scores[1] = -np.inf  # a query with no candidate at all
    return scores


def filters(rng, b, n, kind, *, unfiltered: bool):
    """(argument to pass, per-query bool masks it means); a query without a filter means
    `unfiltered` everywhere (nothing excluded: False; everything allowed: True)."""
    none = np.zeros((b, n), dtype=bool)
    if kind == "none":
        return None, none
    masks = rng.random((b, n)) < rng.choice([0.1, 0.7])
    if kind == "shared-mask":
        return masks[0], np.broadcast_to(masks[0], (b, n))
    if kind == "shared-rows":
        return np.flatnonzero(masks[0]), np.broadcast_to(masks[0], (b, n))
    if kind == "per-query":
        forms = [None, "mask", "rows"]
        given, meant = [], np.zeros((b, n), dtype=bool)
        for q in range(b):
            form = forms[q % 3]
            if form is None:
                given.append(None)
                meant[q] = unfiltered
                continue
            meant[q] = masks[q]
            given.append(masks[q] if form == "mask" else np.flatnonzero(masks[q]))
        return given, meant
    if kind == "csr":
        return sp.csr_matrix(masks), masks
    raise AssertionError(kind)


SIZES = [(1, 1), (3, 7), (5, 60), (8, 1_000), (4, PREFILTER_MIN_ROWS + 123), (3, 20_000)]


@pytest.mark.parametrize("b,n", SIZES)
@pytest.mark.parametrize("ties", [False, True], ids=["distinct", "ties"])
@pytest.mark.parametrize("exclude_kind", ["none", "shared-mask", "per-query", "csr"])
@pytest.mark.parametrize("allowed_kind", ["none", "shared-mask", "shared-rows", "per-query"])
def test_topk_of_scores_equals_the_brute_force_reference(b, n, ties, exclude_kind, allowed_kind):
    rng = np.random.default_rng(b * 7919 + n)
    scores = random_scores(rng, b, n, ties)
    exclude, excluded = filters(rng, b, n, exclude_kind, unfiltered=False)
    allowed, allowed_masks = filters(rng, b, n, allowed_kind, unfiltered=True)
    if allowed is None:
        allowed_masks = np.ones((b, n), dtype=bool)
    for k in sorted({0, 1, 3, 10, n // 2, n, n + 5}):
        expected = reference(scores, k, excluded, allowed_masks)
        result = topk_of_scores(scores.copy(), k, exclude=exclude, allowed=allowed)
        assert result.rows.shape == (b, min(k, n))
        assert_matches(result, expected, k)


@pytest.mark.parametrize("n", [500, 50_000])
def test_allow_lists_of_any_width_alone_and_in_a_batch(n):
    """Gathered allow-lists, from a few rows to nearly all, one query (the lean path) and
    several (the batch path) give the reference answer."""
    rng = np.random.default_rng(n)
    scores = np.round(rng.standard_normal((6, n)).astype(np.float32) * 4) / 4
    for share in (0.02, 0.49, 0.51, 0.98):
        mask = rng.random(n) < share
        expected = reference(
            scores, 10, np.zeros_like(scores, bool), np.broadcast_to(mask, scores.shape)
        )
        assert_matches(topk_of_scores(scores.copy(), 10, allowed=mask), expected, 10)


def test_topk_scores_queries_against_the_transposed_items():
    rng = np.random.default_rng(3)
    items = rng.standard_normal((300, 9)).astype(np.float32)
    queries = rng.standard_normal((5, 9)).astype(np.float32)
    seen = [np.array([0, 5]), None, np.arange(100), None, np.array([299])]
    result = topk(queries, np.ascontiguousarray(items.T), 12, exclude=seen)
    scores = queries @ items.T
    excluded = np.zeros(scores.shape, dtype=bool)
    for q, rows in enumerate(seen):
        if rows is not None:
            excluded[q, rows] = True
    expected = reference(scores, 12, excluded, np.ones(scores.shape, dtype=bool))
    for q, (rows, _) in enumerate(expected):
        np.testing.assert_array_equal(result.of(q)[0], rows)
        np.testing.assert_allclose(result.of(q)[1], scores[q, rows], rtol=1e-6)


def test_of_returns_the_first_k_without_padding():
    result = topk_of_scores(np.array([[3.0, -np.inf, 1.0, 2.0]], dtype=np.float32), 4)
    assert result.rows.tolist() == [[0, 3, 2, -1]]
    rows, scores = result.of(0, 2)
    assert rows.tolist() == [0, 3] and scores.tolist() == [3.0, 2.0]
    assert result.of(0)[0].tolist() == [0, 3, 2]


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda s: topk_of_scores(s, 2, exclude=[None]), "one filter per query"),
        (lambda s: topk_of_scores(s, 2, allowed=np.ones(3, dtype=bool)), "shape"),
        (lambda s: topk_of_scores(s, 2, exclude=np.array([0.5])), "integer"),
        (lambda s: topk_of_scores(s[0], 2), "2-D"),
        (lambda s: topk(np.ones((2, 3)), np.ones((4, 5), np.float32), 2), "shape"),
    ],
)
def test_bad_filters_are_refused_with_a_reason(call, message):
    with pytest.raises(ValueError, match=message):
        call(np.zeros((2, 5), dtype=np.float32))
