"""A true reason for every recommended item, and a relevance a client can read.

How a list was ranked is its *basis*: a trained customer (their row), a fold-in (the parts of the
query built from what a customer or session touched), a customer known by demographics, the
popularity fallback, or a product's neighbours. For the k items returned, and only those, the
basis gives each item's evidence, vectorised over the k items:

- a trained customer: the product they interacted with that the item is most similar to (cosine of
  item vectors, the model's own notion of "similar");
- a fold-in (a session, or a customer the model has not trained on): the touched product whose
  part of the query contributes most to the item's score, from the exact split of the score
  (`index/explain.py`);
- a customer known by demographics: the demographic feature contributing most to the score;
- popularity: the segment whose popularity contributes most (`Popularity.split`), else everyone;
- similar products: the product features both share, by their contribution to the cosine.

The sentences come from `reason_texts.py`. With `explain`, each item also carries the whole split
of its score (`Contribution`s, summing to the raw score).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from functools import lru_cache
from typing import TypedDict

import numpy as np

from finverse_reco.index import EmbeddingIndex
from finverse_reco.index.explain import (
    PartKind,
    QueryParts,
    contributions,
    cosine_split,
    shared_feature_split,
    trained_user_parts,
)
from finverse_reco.index.relevance import cosine_relevance, dot_relevance, share_relevance
from finverse_reco.service import reason_texts as texts


class ReasonCode(StrEnum):
    SIMILAR_TO_INTERACTED = "similar_to_interacted"
    INTERACTED = "interacted"
    SESSION_PRODUCT = "session_product"
    DEMOGRAPHIC = "demographic"
    POPULAR_IN_SEGMENT = "popular_in_segment"
    POPULAR = "popular"
    SHARED_FEATURES = "shared_features"
    SIMILAR_INTEREST = "similar_interest"


POPULARITY_FALLBACK = "popularity"


class Evidence(TypedDict):
    """What a reason rests on: a product (`type` "product": its id, its name), a feature
    (`age_group:25-34`, in words) or the popularity fallback. `value`: its contribution to the
    score (for a trained customer's interacted product, the cosine between the two products).
    Plain dicts, as the response carries them: a list of ten costs no conversion."""

    type: str
    id: str
    label: str
    value: float | None


class Reason(TypedDict):
    code: str
    text: str
    evidence: list[Evidence]


@dataclass(frozen=True, slots=True)
class Contribution:
    """One part of an item's raw score (`explain=true`): its kind (`PartKind`), what it names
    (a feature, a product id, `item_bias` or `other`) and its value."""

    kind: str
    name: str
    value: float

    def to_dict(self) -> dict:
        return {"kind": self.kind, "name": self.name, "value": self.value}


# --- bases: how a list was ranked ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TrainedUser:
    row: int


@dataclass(frozen=True, slots=True)
class FoldIn:
    """A query folded in from touched products (and maybe demographics): `parts` sum to it.
    `unseen_ids` name the `UNSEEN_ITEM` parts' rows; `event_types` the strongest event per
    touched product id."""

    parts: QueryParts
    session: bool
    event_types: Mapping[str, str] = field(default_factory=dict)
    unseen_ids: Sequence[str] = ()


@dataclass(frozen=True, slots=True)
class Demographics:
    parts: QueryParts


@dataclass(frozen=True, slots=True)
class Popular:
    segment: Mapping[str, str] | None


@dataclass(frozen=True, slots=True)
class Neighbours:
    """Neighbours of `product_id` by cosine with `vector` (its item row, or its features' row
    when the model never saw it); `feature_rows` are its item features."""

    product_id: str
    vector: np.ndarray
    feature_rows: np.ndarray


Basis = TrainedUser | FoldIn | Demographics | Popular | Neighbours


# --- explanation: evidence, relevance and (optionally) the split ------------------------------------


@dataclass(frozen=True, slots=True)
class _Pick:
    """An item's reason before product names are known: the product it rests on (if any, with
    its value), the features (name, value) and, for a touched product, what was done with it."""

    code: ReasonCode
    product: str | None = None
    product_value: float | None = None
    features: tuple[tuple[str, float], ...] = ()
    verb: str = texts.VERB_UNKNOWN


@dataclass(frozen=True, slots=True)
class Explanation:
    """For the k items of a list: relevance, each one's reason (`reasons`, once product names
    are known) and, when asked, each one's contributions."""

    relevance: list[float]
    picks: list[_Pick]
    contributions: list[list[Contribution]] | None

    def evidence_products(self) -> list[str]:
        """The product ids the reasons name (to fetch their names with the list's)."""
        return list(dict.fromkeys(pick.product for pick in self.picks if pick.product))

    def reasons(self, product_names: Mapping[str, str]) -> list[Reason]:
        return [_rendered(pick, product_names) for pick in self.picks]


def explain(
    index: EmbeddingIndex,
    basis: Basis,
    rows: np.ndarray,
    scores: np.ndarray,
    *,
    with_contributions: bool = False,
) -> Explanation:
    """Relevance and reasons for the ranked `rows` (with their raw `scores`), best first."""
    rows = np.asarray(rows, dtype=np.int64)
    if isinstance(basis, TrainedUser):
        return _trained_user(index, basis, rows, scores, with_contributions)
    if isinstance(basis, FoldIn | Demographics):
        return _from_parts(index, basis, rows, scores, with_contributions)
    if isinstance(basis, Popular):
        return _popular(index, basis, rows, scores, with_contributions)
    return _neighbours(index, basis, rows, scores, with_contributions)


def _trained_user(index, basis: TrainedUser, rows, scores, with_contributions) -> Explanation:
    seen = index.seen_rows(basis.row)
    if len(rows) and len(seen):
        similarity = index.cosines(rows, seen)
        closest = seen[similarity.argmax(axis=1)].tolist()
        picks = [
            # Most like itself: a product they touched, listed again (exclude_seen=false).
            _Pick(ReasonCode.INTERACTED, product_id)
            if row == closest_row
            else _Pick(ReasonCode.SIMILAR_TO_INTERACTED, product_id, value)
            for row, closest_row, product_id, value in zip(
                rows.tolist(),
                closest,
                index.items.ids_of(closest),
                similarity.max(axis=1).tolist(),
                strict=True,
            )
        ]
    else:
        picks = [_POPULAR_PICK] * len(rows)
    query = np.ones(index.dim + 1, np.float32)
    query[: index.dim] = index.user_vectors[basis.row]
    relevance = dot_relevance(query, scores, index.score_moments)
    split = None
    if with_contributions:
        parts = trained_user_parts(index, basis.row)
        split = _named_split(index, parts, contributions(parts, index.item_matrix[rows]), ())
    return Explanation(relevance, picks, split)


def _from_parts(
    index, basis: FoldIn | Demographics, rows, scores, with_contributions
) -> Explanation:
    parts = basis.parts
    values = contributions(parts, index.item_matrix[rows])
    unseen_ids = basis.unseen_ids if isinstance(basis, FoldIn) else ()
    picks = []
    items = parts.of_kind(PartKind.ITEM, PartKind.UNSEEN_ITEM)
    if isinstance(basis, FoldIn) and len(items):
        code = ReasonCode.SESSION_PRODUCT if basis.session else ReasonCode.SIMILAR_TO_INTERACTED
        best = items[values[:, items].argmax(axis=1)]
        best_values = values[np.arange(len(rows)), best].tolist()
        for part, value in zip(best.tolist(), best_values, strict=True):
            product = _part_name(index, parts, part, unseen_ids)
            verb = texts.VERBS.get(basis.event_types.get(product, ""), texts.VERB_UNKNOWN)
            picks.append(_Pick(code, product, value, verb=verb))
    else:  # demographics alone (or a fold-in from them alone)
        features = parts.of_kind(PartKind.USER_FEATURE)
        if len(features):
            best = features[values[:, features].argmax(axis=1)]
            best_values = values[np.arange(len(rows)), best].tolist()
        else:
            best, best_values = np.zeros(len(rows), np.int64), [0.0] * len(rows)
        for part, value in zip(best.tolist(), best_values, strict=True):
            if value <= 0:  # no feature speaks for it: the item's own appeal
                picks.append(_POPULAR_PICK)
                continue
            name = index.user_feature_names.id(int(parts.rows[part]))
            picks.append(_Pick(ReasonCode.DEMOGRAPHIC, features=((name, value),)))
    relevance = dot_relevance(parts.query, scores, index.score_moments)
    split = _named_split(index, parts, values, unseen_ids) if with_contributions else None
    return Explanation(relevance, picks, split)


def _popular(index, basis: Popular, rows, scores, with_contributions) -> Explanation:
    keys, values = index.popular_items.split(basis.segment, rows)
    picks = [_POPULAR_PICK] * len(rows)
    if keys:
        segments = values[:, : len(keys)]
        best = segments.argmax(axis=1).tolist()
        for position, (column, value) in enumerate(
            zip(best, segments[np.arange(len(rows)), best].tolist(), strict=True)
        ):
            if value > 0:
                name = keys[column].replace("=", ":", 1)  # the segment's feature
                picks[position] = _Pick(ReasonCode.POPULAR_IN_SEGMENT, features=((name, value),))
    relevance = share_relevance(scores, index.popular_items.largest(basis.segment))
    split = None
    if with_contributions:
        names = [f"segment:{key}" for key in keys] + ["popularity"]
        split = [
            [Contribution("popularity", name, v) for name, v in zip(names, row, strict=True)]
            for row in values.tolist()
        ]
    return Explanation(relevance, picks, split)


def _neighbours(index, basis: Neighbours, rows, scores, with_contributions) -> Explanation:
    owner, features, values = shared_feature_split(index, basis.vector, basis.feature_rows, rows)
    shared: list[list[tuple[float, str]]] = [[] for _ in range(len(rows))]
    names = index.item_feature_names
    for position, feature, value in zip(
        owner.tolist(), features.tolist(), values.tolist(), strict=True
    ):
        if value > 0:
            shared[position].append((value, names.id(feature)))
    picks = []
    for found in shared:
        if found:
            found.sort(reverse=True)
            features = tuple((name, value) for value, name in found[:3])
            picks.append(_Pick(ReasonCode.SHARED_FEATURES, basis.product_id, features=features))
        else:  # alike in who chooses them, not in what they are
            picks.append(_Pick(ReasonCode.SIMILAR_INTEREST, basis.product_id))
    split = _cosine_contributions(index, basis, rows) if with_contributions else None
    return Explanation(cosine_relevance(scores), picks, split)


# --- helpers ---------------------------------------------------------------------------------------


def _cosine_contributions(index, basis: Neighbours, rows) -> list[list[Contribution]]:
    split = cosine_split(index, basis.vector, rows)
    names = index.item_feature_names
    out = []
    for position in range(len(rows)):
        features, values = split.of(position)
        parts = [
            Contribution(PartKind.ITEM_FEATURE.value, names.id(f), v)
            for f, v in zip(features.tolist(), values.tolist(), strict=True)
        ]
        parts.append(Contribution(PartKind.OTHER.value, "other", float(split.rest[position])))
        out.append(_by_size(parts))
    return out


def _named_split(
    index: EmbeddingIndex, parts: QueryParts, values: np.ndarray, unseen_ids: Sequence[str]
) -> list[list[Contribution]]:
    names = [_part_name(index, parts, part, unseen_ids) for part in range(len(parts.kinds))]
    kinds = [kind.value for kind in parts.kinds]
    return [
        _by_size(
            [Contribution(kind, name, v) for kind, name, v in zip(kinds, names, row, strict=True)]
        )
        for row in values.tolist()
    ]


def _part_name(
    index: EmbeddingIndex, parts: QueryParts, part: int, unseen_ids: Sequence[str]
) -> str:
    kind, row = parts.kinds[part], int(parts.rows[part])
    if kind is PartKind.USER_FEATURE:
        return index.user_feature_names.id(row)
    if kind is PartKind.ITEM:
        return index.items.id(row)
    if kind is PartKind.UNSEEN_ITEM:
        return unseen_ids[row]
    return kind.value  # item_bias, other


def _by_size(parts: list[Contribution]) -> list[Contribution]:
    return sorted(parts, key=lambda part: abs(part.value), reverse=True)


_POPULAR_PICK = _Pick(ReasonCode.POPULAR)
_POPULAR_EVIDENCE: Evidence = {
    "type": "fallback",
    "id": POPULARITY_FALLBACK,
    "label": "popular with customers",
    "value": None,
}


@lru_cache(maxsize=4096)
def _feature_words(name: str) -> str:
    group, _, value = name.partition(":")
    template = texts.AUDIENCES.get(group) or texts.PRODUCT_FEATURES.get(group)
    return template.format(value=texts.readable_value(value)) if template else name


def _rendered(pick: _Pick, product_names: Mapping[str, str]) -> Reason:
    evidence: list[Evidence] = []
    product_name = ""
    if pick.product is not None:
        product_name = product_names.get(pick.product, pick.product)
        evidence.append(
            {
                "type": "product",
                "id": pick.product,
                "label": product_name,
                "value": pick.product_value,
            }
        )
    words = []
    for name, value in pick.features:
        words.append(_feature_words(name))
        evidence.append({"type": "feature", "id": name, "label": words[-1], "value": value})
    if not evidence:
        evidence.append(_POPULAR_EVIDENCE)
    return {
        "code": pick.code.value,
        "text": _text(pick.code, product_name, pick.verb, tuple(words)),
        "evidence": evidence,
    }


@lru_cache(maxsize=4096)
def _text(code: ReasonCode, product: str, verb: str, features: tuple[str, ...]) -> str:
    audience = features[0] if features else ""
    return texts.TEMPLATES[code.value].format(
        product=product, verb=verb, audience=audience, features=_listed(features)
    )


def _listed(words: Sequence[str]) -> str:
    if len(words) < 2:
        return "".join(words)
    return texts.FEATURE_JOINER.join(words[:-1]) + texts.FEATURE_LAST_JOINER + words[-1]
