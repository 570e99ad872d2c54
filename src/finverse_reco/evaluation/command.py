"""The `evaluate` and `tune` commands: arguments → dataset → harness or search → output."""

from __future__ import annotations

import argparse
import importlib.util
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from finverse_reco.evaluation import MODEL_NAMES
from finverse_reco.evaluation.protocols import PROTOCOLS

DATASETS = ("demo", "movielens-100k", "csv")
EXAMPLE = (
    "finverse-reco evaluate                       # demo world, 20% of each user held out\n"
    "  finverse-reco evaluate --dataset movielens-100k --data-dir data/ml-100k "
    "--protocol ms-recommenders --seed 42 --params-file params/ml.json --json out.json\n"
    "  finverse-reco evaluate --dataset csv --interactions i.csv --item-features items.csv"
)
TUNE_EXAMPLE = (
    "finverse-reco tune --out params/demo.json     # demo world, holdout, seed 42\n"
    "  finverse-reco tune --dataset movielens-100k --data-dir data/ml-100k "
    "--protocol ms-recommenders --seed 42 --out params/ml.json\n"
    "  FINVERSE_MODEL_PARAMS_FILE=params/demo.json finverse-reco train"
)


def add_dataset_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", choices=DATASETS, default="demo")
    parser.add_argument("--data-dir", type=Path, help="MovieLens-100K directory (u.data, …)")
    parser.add_argument("--interactions", type=Path, help="CSV: user_id,item_id[,weight,timestamp]")
    parser.add_argument("--user-features", type=Path, help="CSV: user_id plus categorical columns")
    parser.add_argument("--item-features", type=Path, help="CSV: item_id plus categorical columns")
    parser.add_argument("--seed", type=int, default=42, help="split (and model) seed")
    parser.add_argument("--world-seed", type=int, default=42, help="demo world seed")
    parser.add_argument("--k", type=int, default=10)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_dataset_arguments(parser)
    parser.add_argument(
        "--protocol",
        choices=(*PROTOCOLS, "session"),
        help="default: holdout for the demo, ms-recommenders otherwise; session: demo only",
    )
    parser.add_argument(
        "--models",
        default=",".join(MODEL_NAMES),
        help=f"comma-separated, from {', '.join(MODEL_NAMES)}",
    )
    parser.add_argument(
        "--params-file",
        type=Path,
        help="what the hybrid fits (default: FINVERSE_MODEL_PARAMS_FILE, else the settings)",
    )
    parser.add_argument("--json", type=Path, help="write the result as JSON here")
    parser.add_argument("--plot", type=Path, help="write a PNG chart here (needs matplotlib)")
    parser.add_argument(
        "--fairness",
        action="store_true",
        help="also report exposure share per product category and precision per customer "
        "group (each user attribute), with the best/worst ratio (docs/FAIRNESS.md)",
    )
    parser.add_argument(
        "--dismissals",
        action="store_true",
        help="demo only: the hybrid with dismissals ignored and as negatives, on the demo world "
        "plus rule-made dismissals (docs/FEEDBACK.md)",
    )


def add_tune_arguments(parser: argparse.ArgumentParser) -> None:
    from finverse_reco.evaluation.tuning import MAX_EPOCHS, PATIENCE_EPOCHS

    add_dataset_arguments(parser)
    parser.add_argument(
        "--protocol",
        choices=PROTOCOLS,
        help="whose validation split decides (default: holdout for the demo, ms-recommenders "
        "otherwise); cold-user / cold-item choose for customers or products without history",
    )
    parser.add_argument("--out", type=Path, required=True, help="the params file to write")
    parser.add_argument(
        "--max-epochs", type=int, default=MAX_EPOCHS, help="epochs per candidate, at most"
    )
    parser.add_argument(
        "--patience",
        type=int,
        default=PATIENCE_EPOCHS,
        help="stop a candidate after this many epochs without a better validation score",
    )


def run(args: argparse.Namespace, params: Any, tuned_on: dict[str, Any], weighting: Any) -> int:
    """`evaluate`. `params`: what the hybrid fits (one LightFM thread: reproducible);
    `tuned_on`: the params file's provenance ({} without a file)."""
    from finverse_reco.evaluation.datasets import DatasetError
    from finverse_reco.evaluation.fairness import fairness_lines
    from finverse_reco.evaluation.harness import evaluate, table_lines, write_json, write_plot

    models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = sorted(set(models) - set(MODEL_NAMES))
    if unknown or not models:
        return _fail(f"unknown model(s) {unknown}; known: {', '.join(MODEL_NAMES)}")
    if args.k < 1:
        return _fail("--k must be >= 1")
    if args.plot and not _importable("matplotlib"):
        return _fail("--plot needs matplotlib: pip install -e '.[bench]'")
    protocol = args.protocol or ("holdout" if args.dataset == "demo" else "ms-recommenders")
    if args.dismissals:
        if args.dataset != "demo":
            return _fail("--dismissals needs the demo world (--dataset demo)")
        from finverse_reco.evaluation.dismissals import evaluate_dismissals

        result = evaluate_dismissals(args.seed, world_seed=args.world_seed, k=args.k, params=params)
        print(
            f"demo + {result['dismissals']} dismissals by {result['customers_with_dismissals']} "
            f"customers / holdout / seed {args.seed}"
        )
        for row in result["results"]:
            print(
                f"{row['model']:<26} precision@{args.k} {row[f'precision@{args.k}']:.4f}   "
                f"ndcg@{args.k} {row[f'ndcg@{args.k}']:.4f}   dismissed-category share "
                f"{row['dismissed_category_share']:.4f}"
            )
    elif protocol == "session":
        if args.dataset != "demo":
            return _fail("the session protocol needs the demo world (--dataset demo)")
        from finverse_reco.evaluation.sessions import evaluate_sessions

        result = evaluate_sessions(args.seed, world_seed=args.world_seed, k=args.k, params=params)
        for row in result["results"]:
            print(
                f"{row['model']:<20} hit_rate@{args.k} {row[f'hit_rate@{args.k}']:.4f}   "
                f"after the first product {row[f'hit_rate@{args.k}_after_first_product']:.4f}"
            )
        print(f"hybrid / popularity: {result['hybrid_over_popularity']:.2f}x")
    else:
        try:
            dataset = _load(args, weighting)
            _warn_if_tuned_elsewhere(tuned_on, dataset.name, protocol, args.seed)
            with _progress("fitting and measuring models") as advance:
                result = evaluate(
                    dataset,
                    protocol,
                    args.seed,
                    params=params,
                    k=args.k,
                    models=models,
                    progress=advance,
                    fairness=args.fairness,
                )
        except (DatasetError, ValueError) as exc:
            return _fail(str(exc))
        print("\n".join(table_lines(result)))
        if args.fairness:
            for row in result["results"]:
                if "fairness" in row:
                    print("\n".join(fairness_lines(row["model"], row["fairness"], args.k)))
    if args.json:
        write_json(result, args.json)
        print(f"wrote {args.json}", file=sys.stderr)
    if args.plot and protocol != "session" and not args.dismissals:
        write_plot(result, args.plot)
        print(f"wrote {args.plot}", file=sys.stderr)
    return 0


def run_tune(args: argparse.Namespace, base: Any, weighting: Any) -> int:
    """`tune`: search on the validation split, write the params file, print the table."""
    from finverse_reco.evaluation.datasets import DatasetError
    from finverse_reco.evaluation.tuning import tune
    from finverse_reco.model import write_params_file

    if args.k < 1 or args.max_epochs < 1 or args.patience < 1:
        return _fail("--k, --max-epochs and --patience must be >= 1")
    protocol = args.protocol or ("holdout" if args.dataset == "demo" else "ms-recommenders")
    try:
        dataset = _load(args, weighting)
        with _progress("tuning (candidate epochs)") as advance:
            result = tune(
                dataset,
                protocol,
                args.seed,
                base=base,
                k=args.k,
                max_epochs=args.max_epochs,
                patience=args.patience,
                progress=advance,
            )
    except (DatasetError, ValueError) as exc:
        return _fail(str(exc), command="tune")
    tuned_on = result.tuned_on
    metric = tuned_on["metric"]
    print(f"{dataset.name} / {protocol} / seed {args.seed}: validation {metric}")
    for row in tuned_on["candidates"]:
        print(
            f"  {row['candidate']:<18} {row[metric]:.4f}  at epoch {row['best_epoch']:>3} "
            f"(ran {row['epochs_run']}), item-item weight {row['item_item_weight']}, "
            f"segment weight {row['segment_weight']}"
        )
    version = write_params_file(args.out, result.params, tuned_on)
    chosen = result.params
    print(
        f"chosen: {chosen.model.no_components} components, lr {chosen.model.learning_rate}, "
        f"{chosen.model.epochs} epochs, identity weights {chosen.features.user_identity_weight} "
        f"(users) / {chosen.features.item_identity_weight} (items), item-item weight "
        f"{chosen.blend.item_item_weight}, segment weight {chosen.blend.segment_weight}; "
        f"wrote {args.out} (version {version})"
    )
    return 0


def _load(args: argparse.Namespace, weighting: Any):
    from finverse_reco.evaluation.datasets import (
        DatasetError,
        demo_dataset,
        load_interactions_csv,
        load_movielens_100k,
    )

    if args.dataset == "demo":
        return demo_dataset(args.world_seed, weighting=weighting)
    if args.dataset == "movielens-100k":
        if args.data_dir is None:
            raise DatasetError("--dataset movielens-100k needs --data-dir (the extracted ml-100k)")
        return load_movielens_100k(args.data_dir)
    if args.interactions is None:
        raise DatasetError("--dataset csv needs --interactions FILE")
    return load_interactions_csv(
        args.interactions, user_features=args.user_features, item_features=args.item_features
    )


def _warn_if_tuned_elsewhere(tuned_on: dict[str, Any], dataset: str, protocol: str, seed: int):
    if not tuned_on:
        return
    where = (tuned_on.get("dataset"), tuned_on.get("protocol"), tuned_on.get("seed"))
    if where != (dataset, protocol, seed):
        print(
            f"note: the params were tuned on {where[0]} / {where[1]} / seed {where[2]}, "
            f"evaluated on {dataset} / {protocol} / seed {seed}",
            file=sys.stderr,
        )


@contextmanager
def _progress(description: str) -> Iterator[Callable[[int, int], None]]:
    with Progress(
        TextColumn(f"[bold]{description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
    ) as bar:
        task = bar.add_task(description, total=None)
        yield lambda done, total: bar.update(task, completed=done, total=total)


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a module set to None in sys.modules: blocked
        return False


def _fail(message: str, *, command: str = "evaluate") -> int:
    print(f"{command}: {message}", file=sys.stderr)
    return 2
