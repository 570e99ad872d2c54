"""`finverse-reco evaluate`: split a dataset by a protocol, fit every model on the same training
pairs, measure them on the same test pairs, and report a table, JSON and optionally a chart.

Ranking: each test user ranks the candidate items (every item, or the held-out items under
`cold-item`) with their training items removed; metrics at k over users with test pairs
(definitions in `metrics.py`). A list shorter than k (fewer candidates than k, or most of them
already seen) counts its empty places as misses. AUC: per user, held-out positives against the
candidate items the user never touched. Coverage: distinct items in anyone's top k / number of
candidates. The `hybrid` row is the served model fitted with the given `TrainingParams`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from finverse_reco.evaluation import MODEL_NAMES
from finverse_reco.evaluation.datasets import Dataset, DatasetError
from finverse_reco.evaluation.fairness import fairness_report
from finverse_reco.evaluation.metrics import ranking_metrics, top_k_excluding, user_auc
from finverse_reco.evaluation.protocols import Split, split_pairs, validation_split
from finverse_reco.evaluation.recommenders import ScoreFunction, Validation, build_recommender
from finverse_reco.model import TrainingParams
from finverse_reco.pipeline import FeatureConfig

_CHUNK_USERS = 512
METRIC_COLUMNS = ("precision", "recall", "ndcg", "map")


@dataclass(frozen=True)
class RankingTask:
    """Held-out pairs to rank: who is tested, against which candidates, excluding what."""

    users: np.ndarray  # test user rows
    relevant: sp.csr_matrix  # n_users × n_candidates
    seen: sp.csr_matrix  # n_users × n_candidates, training pairs
    candidates: np.ndarray  # item rows
    k: int

    @classmethod
    def from_split(cls, dataset: Dataset, split: Split, k: int) -> RankingTask:
        candidates = (
            np.arange(dataset.n_items) if split.candidates is None else np.asarray(split.candidates)
        )
        relevant = dataset.pair_matrix(split.test)[:, candidates]
        seen = dataset.pair_matrix(split.train)[:, candidates]
        users = np.flatnonzero(np.diff(relevant.indptr))
        return cls(users, sp.csr_matrix(relevant), sp.csr_matrix(seen), candidates, k)

    def measure(self, scores: ScoreFunction, *, with_auc: bool = True) -> dict[str, float]:
        return self.measure_lists(scores, with_auc=with_auc)[0]

    def measure_lists(
        self, scores: ScoreFunction, *, with_auc: bool = True
    ) -> tuple[dict[str, float], np.ndarray, np.ndarray]:
        """The metrics, each test user's top k (candidate positions, -1 for an empty place) and
        how many of them are held-out positives."""
        top_rows, relevant_rows, aucs = [], [], []
        for start in range(0, len(self.users), _CHUNK_USERS):
            chunk = self.users[start : start + _CHUNK_USERS]
            block = np.asarray(scores(chunk), dtype=np.float64)[:, self.candidates]
            seen = self.seen[chunk]
            top_rows.append(top_k_excluding(block, seen, self.k))
            relevant = self.relevant[chunk]
            for row in range(len(chunk)):
                positives = relevant.indices[relevant.indptr[row] : relevant.indptr[row + 1]]
                relevant_rows.append(positives)
                if with_auc:
                    excluded = seen.indices[seen.indptr[row] : seen.indptr[row + 1]]
                    auc = user_auc(block[row], positives, excluded)
                    if auc is not None:
                        aucs.append(auc)
        top = np.vstack(top_rows) if top_rows else np.zeros((0, self.k), dtype=np.int64)
        metrics = ranking_metrics(top, relevant_rows, self.k, len(self.candidates))
        if with_auc:
            metrics["auc"] = float(np.mean(aucs)) if aucs else 0.0
        hits = np.array(
            [
                np.isin(row[row >= 0], relevant).sum()
                for row, relevant in zip(top, relevant_rows, strict=True)
            ],
            dtype=np.int64,
        )
        return metrics, top, hits

    def precision(self, scores: ScoreFunction) -> float:
        return self.measure(scores, with_auc=False)[f"precision@{self.k}"]

    def auc(self, scores: ScoreFunction) -> float:
        return self.measure(scores)["auc"]


def evaluate(
    dataset: Dataset,
    protocol: str,
    seed: int,
    *,
    params: TrainingParams | None = None,
    k: int = 10,
    models: Sequence[str] = MODEL_NAMES,
    progress: Callable[[int, int], None] | None = None,
    fairness: bool = False,
) -> dict[str, Any]:
    """Every model on one split; the result in the documented JSON form. `params`: what the
    `hybrid` row fits (as `finverse-reco train` would). `progress(done, total)` is called as each
    model finishes. `fairness`: each row also carries its group report (`fairness.py`)."""
    params = params or TrainingParams()
    split = split_pairs(protocol, dataset.users, dataset.items, dataset.timestamps, seed)
    if not split.train.any() or not split.test.any():
        raise DatasetError(
            f"the {protocol} split of {dataset.name} leaves no "
            f"{'training' if not split.train.any() else 'test'} pairs "
            f"({len(dataset.users)} pairs, {dataset.n_users} users, {dataset.n_items} items)"
        )
    view = dataset.train_view(split.train, params.features)
    task = RankingTask.from_split(dataset, split, k)
    validation = None
    results = []
    for done, name in enumerate(models):
        if progress is not None:
            progress(done, len(models))
        try:
            model = build_recommender(name, seed, dataset, params)
        except ModuleNotFoundError:
            results.append({"model": name, "status": "not installed (the bench extra)"})
            continue
        if not model.ranks_unseen and protocol.startswith("cold"):
            # Without features a held-out user or item has no representation at all.
            results.append({"model": name, "status": "not applicable (no features)"})
            continue
        if name == "ease" and validation is None:
            validation = validation_for(dataset, protocol, split, seed, k, params.features)
        started, cpu_started = time.perf_counter(), time.process_time()
        model.fit(view, validation if name == "ease" else None)
        fit_seconds = round(time.perf_counter() - started, 2)
        fit_cpu_seconds = round(time.process_time() - cpu_started, 2)
        metrics, top, hits = task.measure_lists(model.scores)
        row = {
            "model": name,
            **metrics,
            "fit_seconds": fit_seconds,
            "fit_cpu_seconds": fit_cpu_seconds,
        }
        if model.choices:
            row["chosen"] = model.choices
        if fairness:
            row["fairness"] = fairness_report(
                top,
                hits,
                task.users,
                task.candidates,
                dataset.user_labels,
                dataset.item_categories,
                k,
            )
        results.append(row)
    if progress is not None:
        progress(len(models), len(models))
    return {
        "dataset": dataset.name,
        "protocol": protocol,
        "seed": seed,
        "k": k,
        "params": params.source,
        "user_attributes": (
            "all" if params.features.user_attributes is None else params.features.user_attributes
        ),
        "test_users": len(task.users),
        "test_pairs": int(split.test.sum()),
        "train_pairs": int(split.train.sum()),
        "candidates": len(task.candidates),
        "results": results,
    }


def validation_for(
    dataset: Dataset, protocol: str, split: Split, seed: int, k: int, features: FeatureConfig
) -> Validation:
    """The validation split (the protocol applied to the training pairs alone: never a test
    pair) and its measure: precision@k, or AUC under `cold-item`."""
    validation = validation_split(
        protocol, split, dataset.users, dataset.items, dataset.timestamps, seed
    )
    task = RankingTask.from_split(dataset, validation, k)
    view = dataset.train_view(validation.train, features)
    if protocol == "cold-item":
        return Validation(view, task.auc, "auc")
    return Validation(view, task.precision, f"precision@{k}")


# --- output ------------------------------------------------------------------------------------


def table_lines(result: dict[str, Any]) -> list[str]:
    """A plain-text table: one row per model."""
    k = result.get("k", 10)
    columns = [f"{m}@{k}" for m in METRIC_COLUMNS] + ["auc", "coverage"]
    columns += ["fit_seconds", "fit_cpu_seconds"]
    header = f"{'model':<20}" + "".join(f"{c:>16}" for c in columns)
    lines = [
        f"{result['dataset']} / {result['protocol']} / seed {result['seed']}: "
        f"{result.get('test_users', '?')} test users, {result.get('candidates', '?')} candidates",
        header,
        "-" * len(header),
    ]
    for row in result["results"]:
        if "status" in row:
            lines.append(f"{row['model']:<20} {row['status']}")
            continue
        cells = "".join(
            f"{row[c]:>16.2f}" if c.startswith("fit_") else f"{row[c]:>16.4f}" for c in columns
        )
        lines.append(f"{row['model']:<20}" + cells)
    return lines


def write_json(result: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2, default=_plain) + "\n")


def write_plot(result: dict[str, Any], path: Path) -> None:
    """Grouped bars: one group per metric, one bar per model. Needs matplotlib (`bench` extra)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in result["results"] if "status" not in r]
    k = result.get("k", 10)
    metrics = [f"{m}@{k}" for m in METRIC_COLUMNS] + ["auc", "coverage"]
    width = 0.8 / max(len(rows), 1)
    figure, axes = plt.subplots(figsize=(10, 4.5))
    for i, row in enumerate(rows):
        positions = np.arange(len(metrics)) + i * width
        axes.bar(positions, [row[m] for m in metrics], width, label=row["model"])
    axes.set_xticks(np.arange(len(metrics)) + width * (len(rows) - 1) / 2, metrics)
    axes.set_ylim(0, 1)
    title = f"{result['dataset']} / {result['protocol']} / seed {result['seed']}"
    if result.get("params"):  # which params file the served model (hybrid) was fitted with
        title += f"\nhybrid: {Path(result['params'].split(' ')[0]).name}"
    axes.set_title(title)
    axes.legend()
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")
