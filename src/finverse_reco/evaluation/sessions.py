"""The `session` protocol on the demo world: does folding in a browsing session predict what it
touches next?

20% of users (a `default_rng(seed)` permutation) are held out entirely; the model is trained the
way the service trains (pipeline, `model.training.train` with the given params) on everyone else.
Each held-out session is replayed event by event exactly as the service's session endpoint sees
it: after each of its first n events (n ≥ 1), the items touched so far, weighted by event type
(`pipeline.event_weight`), are folded in (`index.fold_in`) and the top k are taken, excluding the
session's items. A hit: the next product the session touches that it had
not touched before is in that top k. Popularity (overall, and within the user's demographic
segment) gets the same exclusions.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import numpy as np

from finverse_reco.events import parse_event
from finverse_reco.index import fold_in
from finverse_reco.model import ModelParams, TrainingParams
from finverse_reco.model.training import train
from finverse_reco.pipeline import WeightingConfig, build_training_data, event_weight

HELD_OUT_USERS = 0.2


def evaluate_sessions(
    seed: int,
    *,
    world_seed: int = 42,
    k: int = 10,
    params: TrainingParams | None = None,
    world_size: Mapping[str, int] | None = None,
) -> dict[str, Any]:
    """`world_size`: `generate_world`'s n_users / n_products / n_events (default: its own)."""
    from finverse_reco.demo import generate_world

    world = generate_world(world_seed, **(world_size or {}))
    weighting = WeightingConfig()
    user_ids = sorted({e["user_id"] for e in world.events})
    rng = np.random.default_rng(seed)
    held = {
        user_ids[i] for i in rng.permutation(len(user_ids))[: int(HELD_OUT_USERS * len(user_ids))]
    }
    train_events = [e for e in world.events if e["user_id"] not in held]
    params = params or TrainingParams(replace(ModelParams(), num_threads=1, random_state=seed))
    data = build_training_data(
        [train_events], world.products, weighting, feature_config=params.features
    )
    index = train(data, params)

    sessions: dict[str, list[Any]] = {}
    for raw in world.events:
        if raw["user_id"] in held:
            event = parse_event(raw)
            sessions.setdefault(event.session_id or event.event_id, []).append(event)

    hits = {"hybrid": 0, "popularity": 0, "segment-popularity": 0}
    first_hits = dict.fromkeys(hits, 0)
    predictions = first_predictions = 0
    for events in sessions.values():
        events.sort(key=lambda e: e.timestamp)
        documents = [e.to_document() for e in events]
        demographics = next(
            (
                dict(d["data"]["userDemographics"])
                for d in documents
                if (d.get("data") or {}).get("userDemographics")
            ),
            None,
        )
        touched: dict[int, float] = {}
        product_events = 0
        for position, document in enumerate(documents[:-1]):
            now = events[position].timestamp
            weighted = event_weight(document, weighting, now)
            product_events += bool(weighted)
            for product_id, weight in weighted:
                row = index.items.row(product_id)
                if row is not None and weight > 0:
                    touched[row] = touched.get(row, 0.0) + weight
            target = _next_new_item(index, documents[position + 1 :], touched, weighting, now)
            if not touched or target is None:
                continue
            exclude = np.fromiter(touched, dtype=np.int64, count=len(touched))
            query = fold_in(index, touched)
            lists = {
                "hybrid": index.rank(query[None, :], k, exclude=exclude).of(0)[0]
                if query is not None
                else np.zeros(0, np.int64),
                "popularity": index.popular(k, exclude=exclude).of(0)[0],
                "segment-popularity": index.popular(k, exclude=exclude, segment=demographics).of(0)[
                    0
                ],
            }
            first = product_events == 1
            predictions += 1
            first_predictions += first
            for name, rows in lists.items():
                hit = bool(np.isin(target, rows).any())
                hits[name] += hit
                first_hits[name] += hit and first
    results = [
        {
            "model": name,
            f"hit_rate@{k}": hits[name] / predictions if predictions else 0.0,
            f"hit_rate@{k}_after_first_product": (
                first_hits[name] / first_predictions if first_predictions else 0.0
            ),
        }
        for name in hits
    ]
    popularity = results[1][f"hit_rate@{k}"]
    return {
        "dataset": "demo",
        "protocol": "session",
        "seed": seed,
        "k": k,
        "held_out_users": len(held),
        "sessions": len(sessions),
        "predictions": predictions,
        "predictions_after_first_product": first_predictions,
        "results": results,
        "hybrid_over_popularity": results[0][f"hit_rate@{k}"] / popularity if popularity else None,
    }


def _next_new_item(index, documents, touched, weighting, now) -> np.ndarray | None:
    """Item rows of the next event that touches a product the session has not touched yet."""
    for document in documents:
        rows = [
            row
            for product_id, _ in event_weight(document, weighting, now)
            if (row := index.items.row(product_id)) is not None and row not in touched
        ]
        if rows:
            return np.asarray(rows, dtype=np.int64)
    return None
