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

import numpy as np

from finverse_reco.index import EmbeddingIndex
from finverse_reco.index.explain import (
    PartKind,
    QueryParts,
    contributions,
    cosine_split,
    trained_user_parts,
)
from finverse_reco.index.relevance import cosine_relevance, dot_relevance, share_relevance
from finverse_reco.pipeline.features import ITEM_IDENTITY_PREFIX
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


class EvidenceType(StrEnum):
    PRODUCT = "product"
    FEATURE = "feature"
    FALLBACK = "fallback"


POPULARITY_FALLBACK = "popularity"


@dataclass(frozen=True, slots=True)
class Evidence:
    """What a reason rests on: a product (id, its name), a feature (`age_group:25-34`, in words)
    or the popularity fallback. `value`: its contribution to the score (for a trained customer's
    interacted product, the cosine between the two products)."""

    type: EvidenceType
    id: str
    label: str
    value: float | None = None

    def to_dict(self) -> dict:
        return {"type": self.type.value, "id": self.id, "label": self.label, "value": self.value}


@dataclass(frozen=True, slots=True)
class Reason:
    code: ReasonCode
    text: str
    evidence: tuple[Evidence, ...]

    def to_dict(self) -> dict:
        return {
            "code": self.code.value,
            "text": self.text,
            "evidence": [evidence.to_dict() for evidence in self.evidence],
        }


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
    """An item's reason before product names are known: evidence products are ids until then."""

    code: ReasonCode
    evidence: tuple[Evidence, ...]
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
        return list(
            dict.fromkeys(
                evidence.id
                for pick in self.picks
                for evidence in pick.evidence
                if evidence.type is EvidenceType.PRODUCT
            )
        )

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
        return _from_parts(index, basis, rows, with_contributions)
    if isinstance(basis, Popular):
        return _popular(index, basis, rows, scores, with_contributions)
    return _neighbours(index, basis, rows, scores, with_contributions)


def _trained_user(index, basis: TrainedUser, rows, scores, with_contributions) -> Explanation:
    parts = trained_user_parts(index, basis.row) if with_contributions else None
    query = index.user_queries([basis.row])[0]
    seen = index.seen_rows(basis.row)
    picks = []
    if len(rows) and len(seen):
        similarity = index.cosines(rows, seen)
        itself = rows[:, None] == seen[None, :]
        similarity[itself] = -np.inf  # an item is not its own evidence
        closest = similarity.argmax(axis=1)
        for position, row in enumerate(rows.tolist()):
            best = float(similarity[position, closest[position]])
            if np.isfinite(best):
                product = index.items.id(int(seen[closest[position]]))
                picks.append(_Pick(ReasonCode.SIMILAR_TO_INTERACTED, (_product(product, best),)))
            else:  # it is the one product they touched (exclude_seen=false)
                picks.append(_Pick(ReasonCode.INTERACTED, (_product(index.items.id(row)),)))
    else:
        picks = [_popular_pick() for _ in rows]
    relevance = dot_relevance(query, scores, index.score_moments)
    split = _query_split(index, parts, rows) if parts is not None else None
    return Explanation(relevance.tolist(), picks, split)


def _from_parts(index, basis: FoldIn | Demographics, rows, with_contributions) -> Explanation:
    parts = basis.parts
    values = contributions(parts, index.item_matrix[rows])
    scores = values.sum(axis=1)
    picks = []
    if isinstance(basis, FoldIn):
        items = np.concatenate([parts.of_kind(PartKind.ITEM), parts.of_kind(PartKind.UNSEEN_ITEM)])
        code = ReasonCode.SESSION_PRODUCT if basis.session else ReasonCode.SIMILAR_TO_INTERACTED
        if len(items):
            best = items[values[:, items].argmax(axis=1)]
            for position, part in enumerate(best.tolist()):
                product = _part_name(index, parts, part, basis.unseen_ids)
                picks.append(
                    _Pick(
                        code,
                        (_product(product, float(values[position, part])),),
                        _verb(basis.event_types.get(product)),
                    )
                )
    if not picks:  # demographics alone (or a fold-in from them alone)
        features = parts.of_kind(PartKind.USER_FEATURE)
        best = features[values[:, features].argmax(axis=1)] if len(features) else None
        for position in range(len(rows)):
            part = None if best is None else int(best[position])
            if part is None or values[position, part] <= 0:
                picks.append(_popular_pick())  # no feature speaks for it: the item's own appeal
                continue
            name = index.user_feature_names.id(int(parts.rows[part]))
            picks.append(
                _Pick(ReasonCode.DEMOGRAPHIC, (_feature(name, float(values[position, part])),))
            )
    relevance = dot_relevance(parts.query, scores, index.score_moments)
    split = _named_split(index, parts, values, basis) if with_contributions else None
    return Explanation(relevance.tolist(), picks, split)


def _popular(index, basis: Popular, rows, scores, with_contributions) -> Explanation:
    keys, values = index.popular_items.split(basis.segment, rows)
    picks = []
    for position in range(len(rows)):
        segment_values = values[position, : len(keys)]
        if len(keys) and segment_values.max() > 0:
            column = int(segment_values.argmax())
            field_name, _, value = keys[column].partition("=")
            name = f"{field_name}:{value}"
            evidence = (_feature(name, float(segment_values[column])),)
            picks.append(_Pick(ReasonCode.POPULAR_IN_SEGMENT, evidence))
        else:
            picks.append(_popular_pick())
    relevance = share_relevance(scores, index.popular_items.largest(basis.segment))
    split = None
    if with_contributions:
        names = [f"segment:{key}" for key in keys] + ["popularity"]
        split = [
            [Contribution("popularity", name, float(v)) for name, v in zip(names, row, strict=True)]
            for row in values.tolist()
        ]
    return Explanation(relevance.tolist(), picks, split)


def _neighbours(index, basis: Neighbours, rows, scores, with_contributions) -> Explanation:
    split = cosine_split(index, basis.vector, rows)
    anchor_features = set(basis.feature_rows.tolist())
    names = index.item_feature_names
    picks = []
    for position in range(len(rows)):
        features, values = split.of(position)
        shared = [
            (float(value), names.id(feature))
            for feature, value in zip(features.tolist(), values.tolist(), strict=True)
            if feature in anchor_features and value > 0
        ]
        shared = [pair for pair in shared if not pair[1].startswith(ITEM_IDENTITY_PREFIX)]
        anchor = _product(basis.product_id)
        if shared:
            shared.sort(reverse=True)
            evidence = tuple(_feature(name, value) for value, name in shared[:3])
            picks.append(_Pick(ReasonCode.SHARED_FEATURES, (anchor, *evidence)))
        else:  # alike in who chooses them, not in what they are
            picks.append(_Pick(ReasonCode.SIMILAR_INTEREST, (anchor,)))
    contributions_per_item = None
    if with_contributions:
        contributions_per_item = []
        for position in range(len(rows)):
            features, values = split.of(position)
            parts = [
                Contribution(PartKind.ITEM_FEATURE.value, names.id(f), float(v))
                for f, v in zip(features.tolist(), values.tolist(), strict=True)
            ]
            parts.append(Contribution(PartKind.OTHER.value, "other", float(split.rest[position])))
            contributions_per_item.append(_by_size(parts))
    return Explanation(cosine_relevance(scores).tolist(), picks, contributions_per_item)


# --- helpers ---------------------------------------------------------------------------------------


def _query_split(index: EmbeddingIndex, parts: QueryParts, rows: np.ndarray):
    return _named_split(index, parts, contributions(parts, index.item_matrix[rows]), None)


def _named_split(
    index: EmbeddingIndex, parts: QueryParts, values: np.ndarray, basis: Basis | None
) -> list[list[Contribution]]:
    unseen = basis.unseen_ids if isinstance(basis, FoldIn) else ()
    names = [_part_name(index, parts, part, unseen) for part in range(len(parts.kinds))]
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


def _product(product_id: str, value: float | None = None) -> Evidence:
    return Evidence(EvidenceType.PRODUCT, product_id, product_id, value)


def _feature(name: str, value: float) -> Evidence:
    return Evidence(EvidenceType.FEATURE, name, _feature_words(name), value)


def _popular_pick() -> _Pick:
    fallback = Evidence(EvidenceType.FALLBACK, POPULARITY_FALLBACK, "popular with customers")
    return _Pick(ReasonCode.POPULAR, (fallback,))


def _verb(event_type: str | None) -> str:
    return texts.VERBS.get(event_type or "", texts.VERB_UNKNOWN)


def _feature_words(name: str) -> str:
    group, _, value = name.partition(":")
    template = texts.AUDIENCES.get(group) or texts.PRODUCT_FEATURES.get(group)
    return template.format(value=texts.readable_value(value)) if template else name


def _rendered(pick: _Pick, product_names: Mapping[str, str]) -> Reason:
    evidence = tuple(
        Evidence(e.type, e.id, product_names.get(e.id, e.id), e.value)
        if e.type is EvidenceType.PRODUCT
        else e
        for e in pick.evidence
    )
    products = [e.label for e in evidence if e.type is EvidenceType.PRODUCT]
    features = [e.label for e in evidence if e.type is EvidenceType.FEATURE]
    text = texts.TEMPLATES[pick.code.value].format(
        product=products[0] if products else "",
        verb=pick.verb,
        audience=features[0] if features else "",
        features=_listed(features),
    )
    return Reason(pick.code, text, evidence)


def _listed(words: list[str]) -> str:
    if len(words) < 2:
        return "".join(words)
    return texts.FEATURE_JOINER.join(words[:-1]) + texts.FEATURE_LAST_JOINER + words[-1]
