"""Fairness by group, offline (`finverse-reco evaluate --fairness`): is one customer group served
worse than another, and which product categories does a model expose?

- exposure share per category: the share of all recommended places (every test user's top k)
  taken by products of that category; an item of several categories (a film's genres) counts a
  fraction of its place for each, so the shares sum to 1 over the places whose item has any.
- precision@k per group: for each user attribute (gender, age group, income range, … whatever the
  dataset's customers carry), the mean precision@k of the test users with each value; groups
  with fewer than `min_users` test users are listed but left out of the ratio.
- best/worst ratio per attribute: the highest group precision over the lowest (1.0 is equal
  service; `inf` when a counted group gets nothing right).

Arrays in, a JSON-ready dict out; no model code.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

MIN_GROUP_USERS = 20


def fairness_report(
    top: np.ndarray,
    hits: np.ndarray,
    users: np.ndarray,
    candidates: np.ndarray,
    user_labels: Sequence[Mapping[str, str]],
    item_categories: Sequence[Sequence[str]],
    k: int,
    *,
    min_users: int = MIN_GROUP_USERS,
) -> dict[str, Any]:
    """`top[u]`: the candidate positions listed to test user `users[u]` (-1: an empty place);
    `hits[u]`: how many of them were held-out positives."""
    return {
        "exposure_share": exposure_shares(top, candidates, item_categories),
        "groups": group_precision(hits / k, users, user_labels, min_users),
        "min_group_users": min_users,
    }


def exposure_shares(
    top: np.ndarray, candidates: np.ndarray, item_categories: Sequence[Sequence[str]]
) -> dict[str, float]:
    """Category → share of the recommended places, largest first."""
    places = top[top >= 0]
    counts = np.bincount(places, minlength=len(candidates))
    exposure: dict[str, float] = defaultdict(float)
    for position in np.flatnonzero(counts).tolist():
        categories = item_categories[int(candidates[position])] if item_categories else ()
        for category in categories:
            exposure[category] += counts[position] / len(categories)
    total = sum(exposure.values())
    if not total:
        return {}
    ranked = sorted(exposure.items(), key=lambda pair: (-pair[1], pair[0]))
    return {category: round(float(count / total), 4) for category, count in ranked}


def group_precision(
    precision: np.ndarray,
    users: np.ndarray,
    user_labels: Sequence[Mapping[str, str]],
    min_users: int,
) -> dict[str, dict[str, Any]]:
    """Attribute → its groups' precision and size, and the best/worst ratio over counted groups."""
    members: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for user, value in zip(users.tolist(), precision.tolist(), strict=True):
        for attribute, group in user_labels[user].items():
            members[attribute][group].append(value)
    report = {}
    for attribute in sorted(members):
        groups = {
            group: {"users": len(values), "precision": round(float(np.mean(values)), 4)}
            for group, values in sorted(members[attribute].items())
        }
        counted = [g["precision"] for g in groups.values() if g["users"] >= min_users]
        best, worst = (max(counted), min(counted)) if counted else (0.0, 0.0)
        ratio = best / worst if worst > 0 else (float("inf") if best > 0 else 1.0)
        report[attribute] = {
            "groups": groups,
            "best": best,
            "worst": worst,
            "best_worst_ratio": round(ratio, 3),
        }
    return report


def fairness_lines(model: str, report: Mapping[str, Any], k: int) -> list[str]:
    """The report as plain text: exposure shares, then each attribute's groups and ratio."""
    lines = [f"fairness of {model} (precision@{k} per group; exposure share of its top {k})"]
    shares = report["exposure_share"]
    if shares:
        lines.append("  exposure share: " + ", ".join(f"{c} {s:.1%}" for c, s in shares.items()))
    for attribute, row in report["groups"].items():
        groups = ", ".join(
            f"{group} {g['precision']:.4f} (n={g['users']})" for group, g in row["groups"].items()
        )
        lines.append(
            f"  {attribute}: best/worst {row['best_worst_ratio']:.3f} "
            f"({row['best']:.4f} / {row['worst']:.4f}); {groups}"
        )
    return lines
