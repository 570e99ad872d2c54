"""The params file `tune` writes and `train` reads."""

import json

import pytest

from finverse_reco.model import (
    BlendParams,
    ModelParams,
    ParamsFileError,
    TrainingParams,
    read_params_file,
    write_params_file,
)
from finverse_reco.pipeline import FeatureConfig


def tuned() -> TrainingParams:
    return TrainingParams(
        ModelParams(no_components=32, epochs=44, learning_rate=0.03, random_state=5),
        FeatureConfig(user_identity_weight=0.7, item_identity_weight=0.6),
        BlendParams(item_item_weight=0.5, l2=300.0, rank=16, segment_weight=1.0),
    )


def test_round_trip_keeps_what_is_fitted_and_the_readers_threads(tmp_path):
    path = tmp_path / "params.json"
    version = write_params_file(path, tuned(), {"dataset": "demo", "seed": 5})
    base = TrainingParams(ModelParams(num_threads=3))
    params, tuned_on = read_params_file(path, base=base)
    assert params.to_dict() == tuned().to_dict()
    assert params.model.num_threads == 3  # how training runs stays a setting
    assert params.source == f"{path} ({version})"
    assert tuned_on == {"dataset": "demo", "seed": 5}
    document = json.loads(path.read_text())
    assert document["format"] == "finverse-reco/params/1" and document["version"] == version
    # The version names the content: same params, same hash suffix.
    again = write_params_file(tmp_path / "again.json", tuned(), {})
    assert again.split("-")[-1] == version.split("-")[-1]


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d.pop("model"), "model"),
        (lambda d: d.update(format="other/1"), "format"),
        (lambda d: d["model"].update(epochs=0), "epochs"),
        (lambda d: d["model"].update(loss="hinge"), "loss"),
        (lambda d: d["model"].update(num_threads=4), "unknown model field"),
        (lambda d: d["features"].update(user_identity_weight=1.0), "user_identity_weight"),
        (lambda d: d["blend"].update(rank=0), "rank"),
        (lambda d: d.update(surprise=1), "surprise"),
    ],
)
def test_a_bad_file_is_a_clear_error(tmp_path, edit, message):
    path = tmp_path / "params.json"
    write_params_file(path, tuned(), {})
    document = json.loads(path.read_text())
    edit(document)
    path.write_text(json.dumps(document))
    with pytest.raises(ParamsFileError, match=message):
        read_params_file(path)


def test_missing_and_unreadable_files(tmp_path):
    with pytest.raises(ParamsFileError, match="not found"):
        read_params_file(tmp_path / "nope.json")
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(ParamsFileError, match="JSON"):
        read_params_file(tmp_path / "broken.json")
