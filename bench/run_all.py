"""`make bench`: every benchmark at its documented size, one after another, each appending its rows to
docs/BENCHMARKS.md and writing its JSON and full output to bench/results/. Pass names to run only some:

    .venv/bin/python bench/run_all.py serving lifecycle
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

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
    runs = {
        name: [sys.executable, *BENCHMARKS[name], "--json", str(RESULTS / f"{name}.json")]
        for name in selected or BENCHMARKS
    }
    if not selected and MOVIELENS.is_dir():
        runs["evaluate"] = [
            sys.executable, "-m", "finverse_reco", "evaluate", "--dataset", "movielens-100k",
            "--data-dir", str(MOVIELENS), "--protocol", "ms-recommenders", "--seed", "42",
            "--params-file", "params/movielens-100k-ms-recommenders-seed42.json",
            "--json", str(RESULTS / "evaluate.json"),
        ]  # fmt: skip
        runs["training_fit"] = [
            sys.executable, "bench/training_fit.py", "--data-dir", str(MOVIELENS),
            "--json", str(RESULTS / "training_fit.json"),
        ]  # fmt: skip
    failed = []
    console = Console()
    with Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(), console=console,
    ) as progress:  # fmt: skip
        task = progress.add_task("benchmarks", total=len(runs))
        for name, command in runs.items():
            progress.update(task, description=f"benchmarks: {name}")
            log = RESULTS / f"{name}.log"
            with log.open("w") as output:
                code = subprocess.run(
                    command, cwd=HERE.parent, env=env, stdout=output, stderr=subprocess.STDOUT
                ).returncode
            # The last lines of a benchmark are its verdict; the whole output stays in the log.
            tail = log.read_text().strip().splitlines()[-3:]
            console.print(f"[bold]{name}[/] ({'ok' if code == 0 else f'exit {code}'}, {log}):")
            for line in tail:
                console.print(f"  {line}", markup=False, highlight=False)
            if code != 0:
                failed.append(name)
            progress.advance(task)
    console.print(f"benchmarks failed: {', '.join(failed)}" if failed else "all benchmarks ran")
    return 1 if failed else 0


if __name__ == "__main__":
    unknown = set(sys.argv[1:]) - set(BENCHMARKS)
    if unknown:
        raise SystemExit(f"unknown benchmarks {sorted(unknown)}; choose from {sorted(BENCHMARKS)}")
    raise SystemExit(main(sys.argv[1:]))
