"""`finverse-reco evaluate` through the real argument parser."""

import json

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
