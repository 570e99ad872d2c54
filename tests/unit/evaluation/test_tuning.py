"""`tune` on tiny data: deterministic, protocol-respecting, and what it measured is what is served."""

import json

import pytest

from finverse_reco.evaluation.datasets import load_interactions_csv
from finverse_reco.evaluation.harness import RankingTask
from finverse_reco.evaluation.protocols import split_pairs, validation_split
from finverse_reco.evaluation.recommenders import Hybrid
from finverse_reco.evaluation.tuning import Candidate, tune
from finverse_reco.model import ModelParams, TrainingParams, read_params_file

CANDIDATES = (
    Candidate("small", {"no_components": 8, "learning_rate": 0.05}, 0.5, 0.5),
    Candidate("features", {"no_components": 8, "learning_rate": 0.05}, 0.2, 0.5),
)


def run(dataset, protocol, **kwargs):
    return tune(
        dataset,
        protocol,
        3,
        base=TrainingParams(ModelParams(num_threads=1)),
        k=5,
        candidates=CANDIDATES,
        max_epochs=6,
        patience=3,
        **kwargs,
    )


def test_tuning_is_deterministic_and_its_score_is_the_served_models(clustered):
    first, second = run(clustered, "holdout"), run(clustered, "holdout")
    assert first.params.to_dict() == second.params.to_dict()
    assert first.tuned_on == second.tuned_on
    chosen = first.params
    assert 1 <= chosen.model.epochs <= 6 and chosen.model.random_state == 3
    assert chosen.blend.item_item_weight in first.tuned_on["item_item_weights"]
    assert chosen.blend.segment_weight in (0.0, 0.5, 1.0, 2.0)  # chosen on held-out users
    # Re-fit the chosen params with the served path on the same validation split: same score.
    split = split_pairs("holdout", clustered.users, clustered.items, clustered.timestamps, 3)
    validation = validation_split(
        "holdout", split, clustered.users, clustered.items, clustered.timestamps, 3
    )
    view = clustered.train_view(validation.train, chosen.features)
    hybrid = Hybrid(chosen, clustered.user_labels).fit(view)
    task = RankingTask.from_split(clustered, validation, 5)
    assert task.precision(hybrid.scores) == pytest.approx(
        first.tuned_on["validation_score"], abs=1e-6
    )


def test_cold_user_tuning_validates_on_held_out_users_with_features(clustered):
    result = run(clustered, "cold-user")
    assert result.tuned_on["item_item_weights"] == [0.0]  # no history: nothing to blend
    assert result.tuned_on["segment_weights"] == [0.0, 0.5, 1.0, 2.0]
    assert result.params.features.user_identity_weight < 1.0
    assert {row["candidate"] for row in result.tuned_on["candidates"]} == {"small", "features"}


def test_the_cli_writes_a_params_file_that_evaluate_reads(clustered_csv, tmp_path, capsys):
    from finverse_reco.cli import main

    out = tmp_path / "params.json"
    paths = [
        "--dataset", "csv",
        "--interactions", str(clustered_csv["interactions"]),
        "--user-features", str(clustered_csv["user_features"]),
        "--item-features", str(clustered_csv["item_features"]),
        "--protocol", "holdout",
        "--seed", "2",
    ]  # fmt: skip
    with pytest.raises(SystemExit) as exit_info:
        main(["tune", *paths, "--out", str(out), "--max-epochs", "3", "--patience", "2"])
    assert exit_info.value.code == 0
    params, tuned_on = read_params_file(out)
    assert tuned_on["protocol"] == "holdout" and tuned_on["seed"] == 2
    assert "chosen:" in capsys.readouterr().out
    result_file = tmp_path / "result.json"
    with pytest.raises(SystemExit) as exit_info:
        main(
            [
                "evaluate", *paths,
                "--models", "hybrid",
                "--params-file", str(out),
                "--json", str(result_file),
            ]
        )  # fmt: skip
    assert exit_info.value.code == 0
    result = json.loads(result_file.read_text())
    assert result["params"] == params.source and str(out) in result["params"]
    assert result["results"][0]["chosen"]["model"]["epochs"] == params.model.epochs


def test_a_bad_params_file_is_a_clear_error(clustered_csv, tmp_path, capsys):
    from finverse_reco.cli import main

    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    with pytest.raises(SystemExit) as exit_info:
        main(
            [
                "evaluate", "--dataset", "csv",
                "--interactions", str(clustered_csv["interactions"]),
                "--params-file", str(bad),
            ]
        )  # fmt: skip
    assert exit_info.value.code == 2
    assert "not a finverse-reco/params/1 file" in capsys.readouterr().err


def test_budget_arguments_are_checked():
    with pytest.raises(ValueError):
        tune(None, "holdout", 0, max_epochs=0)  # type: ignore[arg-type]


def test_bank_shaped_cold_start_beats_segment_popularity_with_user_features(tmp_path):
    """Customers with demographics holding 1-4 of 24 products, ownership driven by the
    demographics: tuned for new customers, the served model beats the segment-popularity
    fallback it replaces, by ranking on what the customer's demographics say."""
    from finverse_reco.evaluation.harness import evaluate

    from .conftest import write_bank_csv

    paths = write_bank_csv(tmp_path, n_customers=2000)
    bank = load_interactions_csv(paths["interactions"], user_features=paths["user_features"])
    result = tune(
        bank,
        "cold-user",
        42,
        base=TrainingParams(ModelParams(num_threads=1)),
        max_epochs=15,
        patience=5,
    )
    assert result.params.features.user_identity_weight < 1.0
    rows = {
        row["model"]: row
        for row in evaluate(
            bank, "cold-user", 42, params=result.params, models=["segment-popularity", "hybrid"]
        )["results"]
    }
    assert rows["hybrid"]["precision@10"] > rows["segment-popularity"]["precision@10"]
    assert rows["hybrid"]["ndcg@10"] > rows["segment-popularity"]["ndcg@10"]
