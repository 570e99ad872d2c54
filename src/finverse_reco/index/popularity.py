"""Popularity: the fallback ranking, over everyone or within a demographic segment.

The scores are the decayed interaction weight per item (training computes them). Within a segment
(`age_group=25-34`, ...) each segment's weights are turned into shares of that segment and averaged
over the customer's segments, plus a thousandth of the global share so that items the segments never
touched still order by overall appeal. Items nobody touched score 0 and, ties going to the lower
row, follow in row order.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np

from finverse_reco.pipeline.features import segment_keys

_GLOBAL_TIE_BREAK = 1e-3


class Popularity:
    """Scores for the popularity ranking, from the global and per-segment weights of an index."""

    __slots__ = ("_global", "_global_share", "_segment_rows", "_segment_shares")

    def __init__(
        self, weights: np.ndarray, keys: tuple[str, ...], segment_weights: np.ndarray
    ) -> None:
        self._global = weights
        total = float(weights.sum())
        self._global_share = (
            (weights * np.float32(_GLOBAL_TIE_BREAK / total)) if total > 0 else weights
        )
        totals = segment_weights.sum(axis=1, dtype=np.float64)
        scale = np.divide(1.0, totals, out=np.zeros_like(totals), where=totals > 0)
        self._segment_shares = (segment_weights * scale[:, None].astype(np.float32)).astype(
            np.float32
        )
        self._segment_rows = {key: row for row, key in enumerate(keys) if totals[row] > 0}

    def scores(self, segment: Mapping[str, str] | None = None) -> np.ndarray:
        """A fresh (n_items,) float32 score vector (the caller may overwrite it)."""
        return self.scores_in(segment_keys(segment))

    def split(
        self, segment: Mapping[str, str] | None, rows: np.ndarray
    ) -> tuple[list[str], np.ndarray]:
        """`scores(segment)[rows]` split exactly by where it comes from: (the segment keys that
        count, (len(rows), len(keys) + 1) contributions, the last column everyone's share or,
        with no known segment, everyone's weight)."""
        keys = [key for key in segment_keys(segment) if key in self._segment_rows]
        if not keys:
            return [], self._global[rows][:, None].astype(np.float32)
        columns = [self._segment_shares[self._segment_rows[key]][rows] for key in keys]
        share = np.float32(len(keys))
        parts = np.column_stack([*(column / share for column in columns), self._global_share[rows]])
        return keys, parts.astype(np.float32)

    def largest(self, segment: Mapping[str, str] | None = None) -> float:
        """The highest score of any item (what `relevance.share_relevance` divides by)."""
        return float(self.scores(segment).max(initial=0.0))

    def scores_in(self, keys: Iterable[str]) -> np.ndarray:
        """`scores` for segments named by key (`age_group=25-34`): the evaluation's datasets name
        segments of their own (`occupation=writer`)."""
        rows = [self._segment_rows[key] for key in keys if key in self._segment_rows]
        if not rows:
            return self._global.copy()
        scores = self._global_share.copy()
        for row in rows:
            scores += self._segment_shares[row] / np.float32(len(rows))
        return scores
