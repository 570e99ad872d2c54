"""`finverse-reco evaluate` through the real argument parser."""

import json
import sys

import numpy as np
import pytest

from finverse_reco.cli import main


def run_cli(*argv: str) -> int:
    with pytest.raises(SystemExit) as exit_info:
        main(["evaluate", *argv])
    return exit_info.value.code


def test_csv_run_prints_a_table_and_writes_json(clustered_csv, tmp_path, capsys):
    out = tmp_path / "result.json"
    code = run_cli(
        "--dataset", "csv",
        "--interactions", str(clustered_csv["interactions"]),
        "--item-features", str(clustered_csv["item_features"]),
        "--protocol", "time",
        "--models", "popularity,lightfm-cf",
        "--seed", "7",
        "--json", str(out),
    )  # fmt: skip
    assert code == 0
    printed = capsys.readouterr().out
    assert "popularity" in printed and "lightfm-cf" in printed
    result = json.loads(out.read_text())
    assert (result["protocol"], result["seed"]) == ("time", 7)
    assert [r["model"] for r in result["results"]] == ["popularity", "lightfm-cf"]
    assert 0.0 <= result["results"][1]["precision@10"] <= 1.0


def test_plot_is_a_png(clustered_csv, tmp_path):
    pytest.importorskip("matplotlib", reason="the chart needs the bench extra")
    chart = tmp_path / "chart.png"
    code = run_cli(
        "--dataset", "csv",
        "--interactions", str(clustered_csv["interactions"]),
        "--models", "popularity",
        "--plot", str(chart),
    )  # fmt: skip
    assert code == 0
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--dataset", "movielens-100k"], "needs --data-dir"),
        (["--dataset", "csv"], "needs --interactions"),
        (["--models", "popularity,magic"], "unknown model"),
        (["--dataset", "csv", "--interactions", "x.csv", "--protocol", "session"], "demo world"),
    ],
)
def test_bad_arguments_exit_2_with_a_message(argv, message, capsys):
    assert run_cli(*argv) == 2
    assert message in capsys.readouterr().err


def write(path, text: str | bytes):
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return str(path)


def test_fewer_items_than_k_and_one_interaction_users_give_a_result(tmp_path, capsys):
    rng = np.random.default_rng(0)
    lines = ["user_id,item_id"]
    for user in range(40):  # 40 users over 5 items; every fourth user has one interaction
        count = 1 if user % 4 == 0 else int(rng.integers(2, 5))
        lines += [f"u{user},i{i}" for i in rng.choice(5, size=count, replace=False)]
    path = write(tmp_path / "small.csv", "\n".join(lines) + "\n")
    out = tmp_path / "r.json"
    models = "popularity,segment-popularity,ease,lightfm-cf,hybrid"
    code = run_cli(
        "--dataset", "csv", "--interactions", path, "--models", models, "--json", str(out)
    )
    assert code == 0, capsys.readouterr().err
    result = json.loads(out.read_text())
    for row in result["results"]:
        assert 0.0 <= row["precision@10"] <= 0.5  # at most 5 items can be listed of 10 places
        assert 0.0 <= row["ndcg@10"] <= 1.0


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("user_id,item_id\nå,b\n".encode("latin-1"), "not UTF-8"),
        ("", "empty file"),
        ("user_id,item_id,user_id\na,b,c\n", "duplicate column(s) user_id"),
        ("user_id,item_id\na,b,c\n", "3 fields, the header has 2"),
        ("user_id,item_id,weight\na,b,\n", "is not a number"),
        ("user_id,item_id\n", "no rows"),
    ],
)
def test_malformed_interactions_are_a_one_line_error(tmp_path, capsys, content, message):
    path = write(tmp_path / "bad.csv", content)
    assert run_cli("--dataset", "csv", "--interactions", path) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err


def test_malformed_feature_files_are_a_one_line_error(clustered_csv, tmp_path, capsys):
    users = write(tmp_path / "users.csv", "user_id,taste\nu00,a\nu00,b\n")
    code = run_cli(
        "--dataset", "csv",
        "--interactions", str(clustered_csv["interactions"]),
        "--user-features", users,
    )  # fmt: skip
    assert code == 2
    assert "u00' appears twice" in capsys.readouterr().err


def test_a_split_without_test_pairs_is_a_clear_error(tmp_path, capsys):
    path = write(tmp_path / "one.csv", "user_id,item_id\na,x\nb,y\n")  # one pair each
    assert run_cli("--dataset", "csv", "--interactions", path, "--protocol", "holdout") == 2
    assert "leaves no training pairs" in capsys.readouterr().err


def test_plot_without_matplotlib_fails_before_any_work(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if the bench extra were absent
    # The interactions file does not exist: had the run started, that would be the error.
    code = run_cli(
        "--dataset", "csv", "--interactions", str(tmp_path / "missing.csv"),
        "--plot", str(tmp_path / "chart.png"),
    )  # fmt: skip
    assert code == 2
    assert "--plot needs matplotlib" in capsys.readouterr().err
