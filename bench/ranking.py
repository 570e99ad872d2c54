"""The ranking micro-benchmark: CPU time per ranked list through the index, for each request shape
the service makes, and the same against another commit of the code, side by side in one run.

Shapes, at 1,000 and 100,000 items (50 dims, 2,000 users): one user with their seen items excluded
(`user`), a micro-batch of 16 such users (`batch16`, per list), one user within a category of a tenth
of the items (`narrow`: an allow-list that is gathered), one user with a fifth of the items
disallowed (`wide`: an allow-list written over the row, as a policy mask is), the neighbours of a
product (`similar`) and the popularity list within a segment (`popular`).

Each measurement runs in a child process (`--child`) that imports the code under test; with
`--compare REF`, children for REF (checked out into a temporary worktree) and for this tree take
turns, round after round, so a burst of load from elsewhere on the machine hits both alike. CPU time,
not wall time: other processes do not count. The median over rounds is reported, with REF's CPU over
this tree's (above 1: this tree is faster).

CPU time still moves with a busy machine (shared caches, a sibling hyperthread). `--instructions`
counts instead, under valgrind's callgrind, the instructions a fixed number of lists take: the same
count for the same code and inputs whatever else the machine does. One round; it misses what costs
no instructions (cache misses, memory bandwidth), so read it beside the CPU times.

    .venv/bin/python bench/ranking.py --compare e2dadb6 --json bench/results/ranking.json
    .venv/bin/python bench/ranking.py --compare e2dadb6 --instructions
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import json
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from reporting import add_to_section, checked_out, machine  # bench/reporting.py

ROOT = Path(__file__).resolve().parent.parent
SECTION = "## Ranking kernel (bench/ranking.py)"
SHAPES = ("user", "batch16", "narrow", "wide", "similar", "popular")
DIM, USERS, BATCH = 50, 2_000, 16
SECONDS_PER_SHAPE = 0.15
CALLS_COUNTED = 20


# --- the child: measure the code on sys.path ---------------------------------------------------------


def build_index(n_items: int):
    """A clustered synthetic index (seeded: the same arrays in every child)."""
    from finverse_reco.index import EmbeddingIndex

    rng = np.random.default_rng(n_items)
    centres = rng.standard_normal((20, DIM)).astype(np.float32)
    item_vectors = centres[rng.integers(0, 20, n_items)] + rng.standard_normal((n_items, DIM))
    user_vectors = centres[rng.integers(0, 20, USERS)] + rng.standard_normal((USERS, DIM))
    seen = [np.sort(rng.choice(n_items, 20, replace=False)) for _ in range(USERS)]
    categories = rng.integers(0, 10, n_items)
    popularity = rng.random(n_items).astype(np.float32)
    fields = dict(
        user_vectors=user_vectors / np.sqrt(DIM),
        item_matrix=np.column_stack([item_vectors / np.sqrt(DIM), rng.normal(0, 0.1, n_items)]),
        user_feature_embeddings=np.zeros((0, DIM)),
        user_feature_biases=np.zeros(0),
        item_feature_embeddings=np.zeros((0, DIM)),
        item_feature_biases=np.zeros(0),
        item_categories=categories,
        category_names=[f"c{c}" for c in range(10)],
        item_institutions=np.zeros(n_items),
        institution_names=["bank"],
        popularity=popularity,
        segment_keys=["age_group=25-34"],
        segment_popularity=(popularity * (categories < 3))[None, :],
        seen_indptr=np.concatenate([[0], np.cumsum([len(s) for s in seen])]),
        seen_indices=np.concatenate(seen),
    )
    users, items = [f"u{r}" for r in range(USERS)], [f"i{r}" for r in range(n_items)]
    if OLD_API:
        fields |= dict(user_ids=users, item_ids=items, user_feature_names=[], item_feature_names=[])
    else:
        fields |= dict(users=users, items=items, user_feature_names=[], item_feature_names=[])
    return EmbeddingIndex(**fields)


def _shapes(index) -> dict[str, tuple[int, object]]:
    """Shape → (lists per call, a call). Both APIs: `recommend`/`recommend_many` before the one
    kernel (e2dadb6 and earlier), `rank`/`similar`/`popular` returning `TopK` after."""
    rng = np.random.default_rng(1)
    users = rng.integers(0, USERS, 64).tolist()
    narrow = index.category_mask("c3") if OLD_API else index.category_rows("c3")
    wide = rng.random(index.n_items) >= 0.2
    segment = {"age_group": "25-34"}
    counter = iter(range(10**9))

    def user() -> int:
        return users[next(counter) % len(users)]

    if OLD_API:
        return {
            "user": (1, lambda: index.recommend(index.user_vector(u := user()), 10, exclude=index.seen_rows(u))),
            "batch16": (BATCH, lambda: index.recommend_many(
                index.user_vectors_for(rows := [user() for _ in range(BATCH)]), [10] * BATCH,
                [index.seen_rows(r) for r in rows], [None] * BATCH)),
            "narrow": (1, lambda: index.recommend(index.user_vector(u := user()), 10, exclude=index.seen_rows(u), allowed=narrow)),
            "wide": (1, lambda: index.recommend(index.user_vector(u := user()), 10, exclude=index.seen_rows(u), allowed=wide)),
            "similar": (1, lambda: index.similar_items(user() % index.n_items, 10)),
            "popular": (1, lambda: index.popular(10, segment=segment)),
        }  # fmt: skip

    def ranked(allowed=None):
        u = user()
        return index.rank(
            index.user_queries([u]), 10, exclude=index.seen_rows(u), allowed=allowed
        ).of(0)

    def batch():
        rows = [user() for _ in range(BATCH)]
        top = index.rank(index.user_queries(rows), 10, exclude=[index.seen_rows(r) for r in rows])
        return [top.of(line) for line in range(BATCH)]

    def similar():
        return index.similar_items(np.array([user() % index.n_items]), 10).of(0)

    return {
        "user": (1, ranked),
        "batch16": (BATCH, batch),
        "narrow": (1, lambda: ranked(narrow)),
        "wide": (1, lambda: ranked(wide)),
        "similar": (1, similar),
        "popular": (1, lambda: index.popular(10, segment=segment).of(0)),
    }  # fmt: skip


def measure(sizes: list[int]) -> dict[str, float]:
    """'size/shape' → CPU µs per list, one round."""
    results = {}
    for n_items in sizes:
        index = build_index(n_items)
        for shape, (lists, call) in _shapes(index).items():
            for _ in range(20):  # warm up
                call()
            calls, started = 0, time.process_time()
            while (spent := time.process_time() - started) < SECONDS_PER_SHAPE:
                call()
                calls += 1
            results[f"{n_items}/{shape}"] = spent / (calls * lists) * 1e6
    return results


def mark_for_callgrind() -> None:
    """callgrind runs with `--dump-before=getppid`: each call closes one dump of the counts."""
    os.getppid()


def count_instructions(sizes: list[int]) -> list[str]:
    """Under callgrind: each shape's `CALLS_COUNTED` calls between two marks; returns the keys in
    the order of their dumps (the 2nd, 4th, … dump; the odd ones hold set-up and warm-up)."""
    keys = []
    for n_items in sizes:
        index = build_index(n_items)
        for shape, (lists, call) in _shapes(index).items():
            for _ in range(3):  # warm up: first-call caches, lazy imports
                call()
            mark_for_callgrind()
            for _ in range(CALLS_COUNTED):
                call()
            mark_for_callgrind()
            keys.append(f"{n_items}/{shape}/{lists}")
    return keys


# --- the parent: children for each tree, taking turns --------------------------------------------------


def child(tree: Path, sizes: list[int], instructions: bool = False) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(tree / "src"), "OPENBLAS_NUM_THREADS": "1"}
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--child",
        "--sizes",
        *map(str, sizes),
    ]
    if not instructions:
        output = subprocess.run(command, env=env, capture_output=True, text=True, check=True).stdout
        return json.loads(output.splitlines()[-1])
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "callgrind.out"
        command = ["valgrind", "--tool=callgrind", "--dump-before=getppid",
                   f"--callgrind-out-file={out}", *command, "--instructions"]  # fmt: skip
        run = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
        keys = json.loads(run.stdout.splitlines()[-1])
        dumps = sorted(Path(folder).glob("callgrind.out.*"), key=lambda p: int(p.suffix[1:]))
        counted = [_callgrind_total(dumps[number]) for number in range(1, 2 * len(keys), 2)]
    return {
        key.rsplit("/", 1)[0]: total / (CALLS_COUNTED * int(key.rsplit("/", 1)[1]))
        for key, total in zip(keys, counted, strict=True)
    }


def _callgrind_total(dump: Path) -> int:
    for line in dump.read_text().splitlines():
        if line.startswith("totals:"):
            return int(line.split()[1])
    raise ValueError(f"{dump}: no totals line")


def run(arguments: argparse.Namespace) -> dict:
    trees: dict[str, Path] = {"this tree": ROOT}
    with checked_out(arguments.compare) if arguments.compare else _nothing() as other:
        if other is not None:
            trees = {arguments.compare: other, "this tree": ROOT}
        rounds: dict[str, list[dict[str, float]]] = {name: [] for name in trees}
        for number in range(arguments.rounds):
            for name, tree in trees.items():
                rounds[name].append(child(tree, arguments.sizes, arguments.instructions))
            print(f"round {number + 1}/{arguments.rounds} done", file=sys.stderr, flush=True)
    keys = list(rounds["this tree"][0])
    medians = {
        name: {k: float(np.median([r[k] for r in runs])) for k in keys}
        for name, runs in rounds.items()
    }
    unit = "instructions" if arguments.instructions else "cpu_us"
    return {"machine": machine(), "rounds": arguments.rounds, "compare": arguments.compare,
            "unit": unit, unit: medians, "load_average": os.getloadavg()[0]}  # fmt: skip


@contextmanager
def _nothing():
    yield None


def markdown(result: dict, args: str) -> str:
    medians, ref = result[result["unit"]], result["compare"]
    unit = "instructions/list" if result["unit"] == "instructions" else "CPU µs/list"
    now = medians["this tree"]
    lines = [f"### Run of {time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC — {result['machine']}",
             "", f"`bench/ranking.py {args}` ({result['rounds']} rounds, load avg {result['load_average']:.1f})", ""]  # fmt: skip
    header = f"| items | shape | this tree {unit} |"
    rule = "|---|---|---|"
    if ref:
        header += f" {ref} {unit} | {ref} / this tree |"
        rule += "---|---|"
    lines += [header, rule]
    for key, value in now.items():
        size, shape = key.split("/")
        shown = f"{value:,.0f}" if result["unit"] == "instructions" else f"{value:.1f}"
        row = f"| {int(size):,} | {shape} | {shown} |"
        if ref:
            before = medians[ref][key]
            shown = f"{before:,.0f}" if result["unit"] == "instructions" else f"{before:.1f}"
            row += f" {shown} | {before / value:.2f} |"
        lines.append(row)
    lines.append("")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, 100_000])
    parser.add_argument("--compare", help="a git ref to measure side by side with this tree")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--no-docs", action="store_true", help="do not append to BENCHMARKS.md")
    parser.add_argument(
        "--instructions", action="store_true", help="count instructions under callgrind (1 round)"
    )
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.child:
        counted = count_instructions if arguments.instructions else measure
        print(json.dumps(counted(arguments.sizes)))
        return 0
    if arguments.instructions:
        arguments.rounds = 1  # the counts repeat exactly
    result = run(arguments)
    text = markdown(result, " ".join(sys.argv[1:]))
    print(text)
    if arguments.json:
        arguments.json.parent.mkdir(parents=True, exist_ok=True)
        arguments.json.write_text(json.dumps(result, indent=2))
    if not arguments.no_docs:
        add_to_section(SECTION, " ".join(__doc__.split("\n\n")[0].split()), text)
    return 0


if __name__ == "__main__":
    from finverse_reco.index import EmbeddingIndex

    OLD_API = hasattr(EmbeddingIndex, "recommend_many")
    sys.exit(main())
