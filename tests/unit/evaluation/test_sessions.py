"""The session protocol on a small demo world, trained and replayed for real."""

from dataclasses import replace

from finverse_reco.evaluation.sessions import evaluate_sessions
from finverse_reco.model import ModelParams, TrainingParams

SMALL_WORLD = {"n_users": 300, "n_products": 60, "n_events": 9000}


def test_folded_in_sessions_beat_popularity_on_a_small_world():
    params = TrainingParams(replace(ModelParams(), no_components=16, epochs=20, num_threads=1))
    result = evaluate_sessions(3, k=5, params=params, world_size=SMALL_WORLD)
    assert result["held_out_users"] == int(0.2 * 300)
    assert result["predictions"] >= result["predictions_after_first_product"] > 0
    rates = {row["model"]: row["hit_rate@5"] for row in result["results"]}
    assert set(rates) == {"hybrid", "popularity", "segment-popularity"}
    assert rates["hybrid"] > rates["popularity"]
    assert result["hybrid_over_popularity"] == rates["hybrid"] / rates["popularity"]
