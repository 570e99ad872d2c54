"""Quality with the policy on and off, for datasets that know their customers (the demo world).

Both lists are measured against the same truth: the held-out pairs restricted to products the
policy allows the customer, since a product the bank may not offer them is no hit to aim for. The
"off" list is the model's own top k (seen products removed, as always); the "on" list is what the
service serves: ranked within the policy's filters, diversity caps applied to an over-fetched list.
Violations count the products of each list that break a rule (on: always 0, or the step is broken).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np

from finverse_reco.customers import CustomerProfile
from finverse_reco.evaluation.metrics import ranking_metrics, top_k_excluding
from finverse_reco.events import EventType, FeedbackEvent
from finverse_reco.policy import BoundPolicy, Customer, ItemFacts, Policy
from finverse_reco.products import Product

if TYPE_CHECKING:
    from finverse_reco.evaluation.datasets import Dataset
    from finverse_reco.evaluation.harness import RankingTask
    from finverse_reco.evaluation.recommenders import ScoreFunction

_CHUNK_USERS = 512
_APPLIED = EventType.APPLICATION_SUBMIT.value


@dataclass(frozen=True)
class CustomerData:
    """What the service would know of a dataset's customers and products at `reference`."""

    products: Mapping[str, Product]
    profiles: Mapping[str, CustomerProfile]
    applications: Mapping[str, tuple[str, ...]]  # user id → products applied for
    reference: datetime


class PolicyMeasure:
    """The policy bound to a dataset's items, and which (user, item) pairs it allows."""

    def __init__(self, dataset: Dataset, data: CustomerData, policy: Policy) -> None:
        ids = dataset.item_ids.ids
        products = [data.products.get(item_id) for item_id in ids]
        categories = sorted({p.category for p in products if p is not None})
        institutions = sorted({p.institution for p in products if p is not None})
        facts = ItemFacts.build(
            ids,
            np.array([categories.index(p.category) if p else -1 for p in products]),
            categories,
            np.array([institutions.index(p.institution) if p else -1 for p in products]),
            institutions,
            data.products,
        )
        self.policy = policy
        self.bound: BoundPolicy = policy.bind(facts)
        self.allowed = np.zeros((dataset.n_users, dataset.n_items), dtype=bool)
        today, reference = data.reference.date(), data.reference.timestamp()
        for row, user_id in enumerate(dataset.user_ids.ids):
            activity = [
                FeedbackEvent(None, user_id, _APPLIED, reference, (product_id,))
                for product_id in data.applications.get(user_id, ())
            ]
            customer = Customer.of(
                user_id, data.profiles.get(user_id), dataset.user_labels[row], activity, today
            )
            filters = self.bound.filters(customer, data.reference)
            if filters.allowed is None:
                self.allowed[row] = True
            else:
                self.allowed[row, filters.allowed] = True
            if filters.exclude is not None:
                self.allowed[row, filters.exclude] = False

    def measure(self, task: RankingTask, scores: ScoreFunction) -> dict[str, Any]:
        k, candidates = task.k, task.candidates
        fetch = self.bound.fetch(k)
        position = np.full(self.allowed.shape[1], -1, dtype=np.int64)
        position[candidates] = np.arange(len(candidates))
        off_rows, on_rows, truth = [], [], []
        violations = {"off": 0, "on": 0}
        for start in range(0, len(task.users), _CHUNK_USERS):
            chunk = task.users[start : start + _CHUNK_USERS]
            block = np.asarray(scores(chunk), dtype=np.float64)[:, candidates]
            allowed = self.allowed[chunk][:, candidates]
            seen = task.seen[chunk]
            off = top_k_excluding(block, seen, k)
            masked = np.where(allowed, block, -np.inf)
            wide = top_k_excluding(masked, seen, fetch)
            relevant = task.relevant[chunk]
            for row in range(len(chunk)):
                ranked = wide[row][wide[row] >= 0]
                kept = ranked[masked[row, ranked] > -np.inf]
                chosen, _ = self.bound.select(candidates[kept], masked[row, kept], k)
                on = position[chosen]  # `select` works on item rows; metrics on positions
                on_rows.append(np.concatenate([on, np.full(k - len(on), -1)]).astype(np.int64))
                off_rows.append(off[row])
                positives = relevant.indices[relevant.indptr[row] : relevant.indptr[row + 1]]
                truth.append(positives[allowed[row, positives]])
                for name, listed in (("off", off[row]), ("on", on)):
                    listed = listed[listed >= 0]
                    violations[name] += int((~allowed[row, listed]).sum())
        results: dict[str, Any] = {"policy_version": self.policy.version}
        for name, rows in (("off", off_rows), ("on", on_rows)):
            top = np.vstack(rows) if rows else np.zeros((0, k), dtype=np.int64)
            metrics = ranking_metrics(top, truth, k, len(candidates))
            for metric in (f"precision@{k}", f"recall@{k}", f"ndcg@{k}"):
                results[f"{metric}_{name}"] = metrics[metric]
            results[f"violations_{name}"] = violations[name]
        off_precision = results[f"precision@{k}_off"]
        results["on_over_off"] = (
            results[f"precision@{k}_on"] / off_precision if off_precision else None
        )
        results["eligible_test_pairs"] = int(sum(len(t) for t in truth))
        return results
