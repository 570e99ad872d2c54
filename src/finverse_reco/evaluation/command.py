"""The `evaluate` command: arguments → dataset → harness → table on stdout, JSON, chart."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from finverse_reco.evaluation import MODEL_NAMES
from finverse_reco.evaluation.protocols import PROTOCOLS

DATASETS = ("demo", "movielens-100k", "csv")
EXAMPLE = (
    "finverse-reco evaluate                       # demo world, 20% of each user held out\n"
    "  finverse-reco evaluate --dataset movielens-100k --data-dir data/ml-100k "
    "--protocol ms-recommenders --seed 42 --json out.json\n"
    "  finverse-reco evaluate --dataset csv --interactions i.csv --item-features items.csv"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", choices=DATASETS, default="demo")
    parser.add_argument("--data-dir", type=Path, help="MovieLens-100K directory (u.data, …)")
    parser.add_argument("--interactions", type=Path, help="CSV: user_id,item_id[,weight,timestamp]")
    parser.add_argument("--user-features", type=Path, help="CSV: user_id plus categorical columns")
    parser.add_argument("--item-features", type=Path, help="CSV: item_id plus categorical columns")
    parser.add_argument(
        "--protocol",
        choices=(*PROTOCOLS, "session"),
        help="default: holdout for the demo, ms-recommenders otherwise; session: demo only",
    )
    parser.add_argument("--seed", type=int, default=42, help="split (and model) seed")
    parser.add_argument("--world-seed", type=int, default=42, help="demo world seed")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument(
        "--models",
        default=",".join(MODEL_NAMES),
        help=f"comma-separated, from {', '.join(MODEL_NAMES)}",
    )
    parser.add_argument("--json", type=Path, help="write the result as JSON here")
    parser.add_argument("--plot", type=Path, help="write a PNG chart here (needs matplotlib)")


def run(args: argparse.Namespace) -> int:
    from finverse_reco.evaluation.datasets import DatasetError
    from finverse_reco.evaluation.harness import evaluate, table_lines, write_json, write_plot

    models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = sorted(set(models) - set(MODEL_NAMES))
    if unknown or not models:
        return _fail(f"unknown model(s) {unknown}; known: {', '.join(MODEL_NAMES)}")
    if args.k < 1:
        return _fail("--k must be >= 1")
    protocol = args.protocol or ("holdout" if args.dataset == "demo" else "ms-recommenders")
    if protocol == "session":
        if args.dataset != "demo":
            return _fail("the session protocol needs the demo world (--dataset demo)")
        from finverse_reco.evaluation.sessions import evaluate_sessions

        result = evaluate_sessions(args.seed, world_seed=args.world_seed, k=args.k)
        for row in result["results"]:
            print(
                f"{row['model']:<20} hit_rate@{args.k} {row[f'hit_rate@{args.k}']:.4f}   "
                f"after the first product {row[f'hit_rate@{args.k}_after_first_product']:.4f}"
            )
        print(f"hybrid / popularity: {result['hybrid_over_popularity']:.2f}x")
    else:
        try:
            dataset = _load(args)
        except DatasetError as exc:
            return _fail(str(exc))
        try:
            with Progress(
                TextColumn("[bold]fitting and measuring models"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=Console(stderr=True),
            ) as bar:
                task = bar.add_task("models", total=len(models))
                result = evaluate(
                    dataset,
                    protocol,
                    args.seed,
                    k=args.k,
                    models=models,
                    progress=lambda done, total: bar.update(task, completed=done, total=total),
                )
                bar.update(task, completed=len(models))
        except ValueError as exc:
            return _fail(str(exc))
        print("\n".join(table_lines(result)))
    if args.json:
        write_json(result, args.json)
        print(f"wrote {args.json}", file=sys.stderr)
    if args.plot and protocol != "session":
        try:
            write_plot(result, args.plot)
        except ModuleNotFoundError:
            return _fail("--plot needs matplotlib: pip install -e '.[bench]'")
        print(f"wrote {args.plot}", file=sys.stderr)
    return 0


def _load(args: argparse.Namespace):
    from finverse_reco.evaluation.datasets import (
        DatasetError,
        demo_dataset,
        load_interactions_csv,
        load_movielens_100k,
    )

    if args.dataset == "demo":
        return demo_dataset(args.world_seed)
    if args.dataset == "movielens-100k":
        if args.data_dir is None:
            raise DatasetError("--dataset movielens-100k needs --data-dir (the extracted ml-100k)")
        return load_movielens_100k(args.data_dir)
    if args.interactions is None:
        raise DatasetError("--dataset csv needs --interactions FILE")
    return load_interactions_csv(
        args.interactions, user_features=args.user_features, item_features=args.item_features
    )


def _fail(message: str) -> int:
    print(f"evaluate: {message}", file=sys.stderr)
    return 2
