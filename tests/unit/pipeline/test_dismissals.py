"""Dismissals as negative signals: training and fold-in take a dismissed product out of the
customer's positives (`WeightingConfig.dismiss_keep`), unless they came back to it afterwards."""

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from finverse_reco.events import InteractionColumns
from finverse_reco.pipeline import WeightingConfig, build_training_data, interaction_weights

T0 = datetime(2026, 3, 1, tzinfo=UTC)


def doc(user: str, kind: str, product: str, minute: int) -> dict:
    at = T0 + timedelta(minutes=minute)
    return {"user_id": user, "type": kind, "timestamp": at, "data": {"productId": product}}


DOCUMENTS = [
    doc("u1", "product_view", "a", 0),
    doc("u1", "dismiss", "a", 1),  # a: viewed, then dismissed
    doc("u1", "dismiss", "c", 2),
    doc("u1", "product_click", "c", 3),  # c: dismissed, then clicked after all
    doc("u1", "product_view", "b", 4),
    doc("u2", "product_view", "a", 0),  # someone else's view of a is untouched
    doc("u2", "dismiss", "ghost", 1),  # a product known only by a dismissal is no item
]


def pair_weights(keep: float) -> dict[tuple[str, str], float]:
    data = build_training_data([DOCUMENTS], [], WeightingConfig(dismiss_keep=keep), now=T0)
    dense = data.interactions.toarray()
    return {
        (user, item): float(dense[data.users.row(user), data.items.row(item)])
        for user in data.users
        for item in data.items
    }


def test_training_drops_a_dismissed_pair_from_the_positives_by_default():
    weights = pair_weights(0.0)
    assert weights[("u1", "a")] == 0.0
    assert weights[("u1", "b")] == pytest.approx(1.0)
    assert weights[("u1", "c")] == pytest.approx(1.5)  # clicked after the dismissal: in full
    assert weights[("u2", "a")] == pytest.approx(1.0)
    assert ("u2", "ghost") not in weights


def test_training_scales_a_dismissed_pair_by_dismiss_keep():
    assert pair_weights(0.25)[("u1", "a")] == pytest.approx(0.25)
    assert pair_weights(1.0)[("u1", "a")] == pytest.approx(1.0)  # dismissals ignored


def test_training_counts_dismissals_and_gives_them_no_positive_weight():
    data = build_training_data([DOCUMENTS], [], WeightingConfig(), now=T0)
    assert data.counts["dismissals"] == 3
    assert data.interactions.nnz == 3  # u1-b, u1-c, u2-a


def test_fold_in_weighs_a_session_as_training_does():
    columns = InteractionColumns.from_documents(DOCUMENTS[:5])
    now = T0 + timedelta(minutes=4)
    weights = dict(interaction_weights(columns, WeightingConfig(), now))
    assert weights["a"] == 0.0
    assert weights["c"] == pytest.approx(1.5, rel=1e-3)
    scaled = dict(interaction_weights(columns, WeightingConfig(dismiss_keep=0.5), now))
    assert scaled["a"] == pytest.approx(0.5, rel=1e-3)


@pytest.mark.parametrize("keep", [-0.1, 1.5, np.nan])
def test_dismiss_keep_outside_zero_one_is_refused(keep):
    with pytest.raises(ValueError, match="dismiss_keep"):
        WeightingConfig(dismiss_keep=keep)
