"""Dismissals as negative signals, measured (`finverse-reco evaluate --dismissals`).

The demo world has no dismissals of its own, so they are added by a documented rule: a customer
dismisses every product they viewed whose category their age group and income range dislike
(`CATEGORY_AFFINITY_BY_AGE` + `CATEGORY_AFFINITY_BY_INCOME` below `DISLIKE`), a minute after their
last view of it. The same world, split and params are then fitted twice: dismissals ignored
(`dismiss_keep` 1) and as served (`dismiss_keep` 0: the dismissed pairs leave the positives), and
measured on the same held-out pairs:

- precision@k and ndcg@k on the held-out pairs (the dismissed ones are not counted as relevant:
  the customer rejected them);
- dismissed-category share: of each customer-with-dismissals' top k, the share in a category they
  dismissed something from (lower is better).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import numpy as np

from finverse_reco.demo import generate_world
from finverse_reco.demo.population import AGE_GROUPS, INCOME_RANGES
from finverse_reco.demo.preferences import CATEGORY_AFFINITY_BY_AGE, CATEGORY_AFFINITY_BY_INCOME
from finverse_reco.demo.products import CATEGORIES
from finverse_reco.demo.world import DemoWorld
from finverse_reco.evaluation.datasets import demo_dataset
from finverse_reco.evaluation.harness import RankingTask
from finverse_reco.evaluation.protocols import split_pairs
from finverse_reco.evaluation.recommenders import build_recommender
from finverse_reco.model import TrainingParams
from finverse_reco.pipeline import WeightingConfig

DISLIKE = -0.5  # summed category affinity below which a viewed product is dismissed


def with_dismissals(world: DemoWorld) -> tuple[DemoWorld, dict[str, set[str]]]:
    """The world plus the rule's dismiss events, and each customer's dismissed categories."""
    users = {user.id: user for user in world.users}
    categories = {product.id: product.category for product in world.products}
    last_view: dict[tuple[str, str], str] = {}
    for event in world.events:
        product = (event.get("data") or {}).get("productId")
        if event["type"] == "product_view" and product:
            last_view[(event["user_id"], product)] = event["timestamp"]
    dismissals, dismissed = [], {}
    for (user_id, product), viewed_at in sorted(last_view.items()):
        user, category = users.get(user_id), categories.get(product)
        if user is None or category is None:
            continue
        affinity = (
            CATEGORY_AFFINITY_BY_AGE[AGE_GROUPS.index(user.age_group)][CATEGORIES.index(category)]
            + CATEGORY_AFFINITY_BY_INCOME[INCOME_RANGES.index(user.income_range)][
                CATEGORIES.index(category)
            ]
        )
        if affinity >= DISLIKE:
            continue
        at = datetime.fromisoformat(viewed_at) + timedelta(minutes=1)
        dismissals.append(
            {
                "user_id": user_id,
                "type": "dismiss",
                "timestamp": at.isoformat(),
                "data": {"productId": product, "category": category},
            }
        )
        dismissed.setdefault(user_id, set()).add(category)
    events = sorted([*world.events, *dismissals], key=lambda event: event["timestamp"])
    return replace(world, events=events), dismissed


def evaluate_dismissals(
    seed: int, *, world_seed: int = 42, k: int = 10, params: TrainingParams | None = None
) -> dict[str, Any]:
    params = params or TrainingParams()
    world, dismissed = with_dismissals(generate_world(world_seed))
    rows = []
    for label, keep in (("dismissals ignored", 1.0), ("dismissals as negatives", 0.0)):
        dataset = demo_dataset(world=world, weighting=WeightingConfig(dismiss_keep=keep))
        split = split_pairs("holdout", dataset.users, dataset.items, dataset.timestamps, seed)
        test = split.test & ~_dismissed_pairs(dataset, dismissed)
        task = RankingTask.from_split(dataset, replace(split, test=test), k)
        model = build_recommender("hybrid", seed, dataset, params)
        model.fit(dataset.train_view(split.train, params.features))
        metrics, top, _ = task.measure_lists(model.scores, with_auc=False)
        rows.append(
            {
                "model": label,
                "dismiss_keep": keep,
                f"precision@{k}": metrics[f"precision@{k}"],
                f"ndcg@{k}": metrics[f"ndcg@{k}"],
                "dismissed_category_share": _dismissed_share(dataset, task, top, dismissed),
            }
        )
    return {
        "dataset": "demo",
        "protocol": "holdout",
        "seed": seed,
        "k": k,
        "params": params.source,
        "dismissals": sum(len(v) for v in dismissed.values()),
        "customers_with_dismissals": len(dismissed),
        "results": rows,
    }


def _dismissed_pairs(dataset, dismissed: dict[str, set[str]]) -> np.ndarray:
    """Per pair: is its product in a category its customer dismissed from (and so not counted as
    relevant)? The rule dismisses every viewed product of such a category."""
    categories = dataset.item_categories
    return np.array(
        [
            bool(set(categories[item]) & dismissed.get(dataset.user_ids.id(user), set()))
            for user, item in zip(dataset.users.tolist(), dataset.items.tolist(), strict=True)
        ]
    )


def _dismissed_share(dataset, task: RankingTask, top: np.ndarray, dismissed) -> float:
    places = hits = 0
    for line, user in enumerate(task.users.tolist()):
        rejected = dismissed.get(dataset.user_ids.id(user))
        if not rejected:
            continue
        for position in top[line][top[line] >= 0].tolist():
            places += 1
            item = int(task.candidates[position])
            hits += bool(set(dataset.item_categories[item]) & rejected)
    return hits / places if places else 0.0
