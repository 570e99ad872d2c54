"""`make bench`: every benchmark at its documented size, one after another, each appending its rows to
docs/BENCHMARKS.md and its JSON to bench/results/. Pass names to run only some:

    .venv/bin/python bench/run_all.py serving lifecycle
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
MOVIELENS = Path(
    os.environ.get("FINVERSE_MOVIELENS_DIR", HERE.parent.parent / "shared/data/ml-100k")
)

BENCHMARKS = {
    "load": ["bench/load.py", "--events", "1000000", "--mongo-events", "100000"],
    "ingest": ["bench/ingest.py", "--events", "10000", "--rounds", "5"],
    "lifecycle": ["bench/lifecycle.py", "--rate", "200", "--duration", "60", "--refresh-at", "20"],
    "serving": ["bench/serving.py", "all"],
}


def main(selected: list[str]) -> int:
    RESULTS.mkdir(exist_ok=True)
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1"}
    failed = []
    for name in selected or list(BENCHMARKS):
        command = [sys.executable, *BENCHMARKS[name], "--json", str(RESULTS / f"{name}.json")]
        print(f"\n=== {name}: {' '.join(command[1:])}", flush=True)
        if subprocess.run(command, cwd=HERE.parent, env=env).returncode != 0:
            failed.append(name)
    if not selected and MOVIELENS.is_dir():
        command = [
            sys.executable, "-m", "finverse_reco", "evaluate", "--dataset", "movielens-100k",
            "--data-dir", str(MOVIELENS), "--protocol", "ms-recommenders", "--seed", "42",
            "--json", str(RESULTS / "evaluate-movielens.json"),
        ]  # fmt: skip
        print(f"\n=== evaluate: {' '.join(command[3:])}", flush=True)
        if subprocess.run(command, cwd=HERE.parent, env=env).returncode != 0:
            failed.append("evaluate")
    print(f"\nbenchmarks failed: {', '.join(failed)}" if failed else "\nall benchmarks ran")
    return 1 if failed else 0


if __name__ == "__main__":
    unknown = set(sys.argv[1:]) - set(BENCHMARKS)
    if unknown:
        raise SystemExit(f"unknown benchmarks {sorted(unknown)}; choose from {sorted(BENCHMARKS)}")
    raise SystemExit(main(sys.argv[1:]))
