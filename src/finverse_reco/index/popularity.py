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
