"""The service's use cases: recommendations for a user, a session, a product; and their fallbacks.

Every answer says which strategy produced it and whether it is degraded (a dependency failed and we
answered with less), so a client can trust it or not. Nothing here knows about HTTP.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from functools import partial

import numpy as np

from finverse_reco.catalog.base import CatalogUnavailable, ProductCatalog
from finverse_reco.events import InteractionColumns, InteractionEvent
from finverse_reco.index import EmbeddingIndex, item_row_from_features
from finverse_reco.index.explain import QueryParts, feature_parts
from finverse_reco.index.foldin import fold_in_parts, item_feature_rows
from finverse_reco.pipeline import WeightingConfig, interaction_weights
from finverse_reco.pipeline.features import demographic_features
from finverse_reco.products import Product
from finverse_reco.service.batching import RankingBatcher
from finverse_reco.service.contact_limits import ContactFilter, Exclusions, merge_exclude
from finverse_reco.service.experiments import Assignment, ExperimentRegistry
from finverse_reco.service.models import ModelHolder, category_of
from finverse_reco.service.reasons import (
    Basis,
    Contribution,
    Demographics,
    FoldIn,
    Neighbours,
    Popular,
    Reason,
    TrainedUser,
    explain,
)
from finverse_reco.store import InsertResult, InteractionStore, StoreUnavailable

log = logging.getLogger(__name__)


class Strategy(StrEnum):
    PERSONALIZED = "personalized"
    FEATURES_COLD_START = "features_cold_start"
    POPULAR = "popular"
    SESSION = "session"
    SIMILAR = "similar"


class NotFound(LookupError):
    """The subject of the request does not exist (HTTP 404)."""


class ModelNotReady(RuntimeError):
    """No model is loaded yet (HTTP 503)."""


class UnknownDemographic(ValueError):
    """A demographic value the model has no feature for (HTTP 422): ignoring it would answer as
    if it had not been given."""

    def __init__(self, field_name: str, value: str, allowed: Sequence[str]) -> None:
        super().__init__(
            f"{field_name}={value!r} is not a value the model knows; allowed: {', '.join(allowed)}"
        )
        self.field_name = field_name
        self.value = value
        self.allowed = list(allowed)


def check_demographics(index: EmbeddingIndex, demographics: Mapping[str, str] | None) -> None:
    """Raise UnknownDemographic for a value the serving model has no feature for. Attributes
    the model may not use (FINVERSE_MODEL_USER_ATTRIBUTES) are ignored, not judged."""
    for field_name, value in index.feature_config.allowed_demographics(demographics).items():
        allowed = index.demographic_values.get(field_name, ())
        if value not in allowed:
            raise UnknownDemographic(field_name, value, allowed)


@dataclass(frozen=True, slots=True)
class RecommendationResult:
    """The ranked products, best first, as parallel columns: the ids the model ranked, each one's
    details (the catalog's own objects, or model metadata where the catalog lacks the product),
    raw score, relevance in [0, 1] (`index/relevance.py`) and reason (`reasons.py`). A response
    builds its items in one pass, with no object per recommendation in between.
    `contributions`: each item's split of its raw score, when asked for (`explain`)."""

    product_ids: list[str]
    products: list[Product]
    scores: list[float]
    relevance: list[float]
    reasons: list[Reason]
    strategy: Strategy
    model_version: str
    degraded: bool
    contributions: list[list[Contribution]] | None = None
    timestamp: datetime = field(default_factory=lambda: datetime.now(UTC))
    experiment: Assignment | None = None  # the experiment arm this answer was served under
    # How many products each contact rule took out of the list (`contact_limit`, `dismissed`).
    filtered: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ServiceConfig:
    weighting: WeightingConfig
    store_timeout_seconds: float = 2.0
    catalog_budget_seconds: float = 0.8
    # Ranking this many items or more runs in a thread of its own: its BLAS work (~1 ms at 100,000
    # items, GIL released) then overlaps the event loop's HTTP work; smaller catalogs rank faster
    # than the thread hop costs.
    off_loop_items: int = 50_000


@dataclass(slots=True)
class _Ranked:
    rows: np.ndarray
    scores: np.ndarray
    strategy: Strategy
    basis: Basis  # how the list was ranked: what its reasons are drawn from
    degraded: bool = False
    filtered: dict[str, int] = field(default_factory=dict)


class RecommendationService:
    def __init__(
        self,
        models: ModelHolder,
        store: InteractionStore,
        catalog: ProductCatalog,
        config: ServiceConfig,
        experiments: ExperimentRegistry | None = None,
        contact: ContactFilter | None = None,
    ) -> None:
        self._models = models
        self._store = store
        self._catalog = catalog
        self._config = config
        self._experiments = experiments
        self._contact = contact
        # One thread: with the event loop that is one core each; more would only contend.
        self._ranker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ranking")
        self._batcher = RankingBatcher(self._ranker, off_loop_items=config.off_loop_items)

    # --- use cases -------------------------------------------------------------------------------

    async def for_user(
        self,
        user_id: str,
        limit: int,
        *,
        category: str | None = None,
        exclude_seen: bool = True,
        demographics: Mapping[str, str] | None = None,
        channel: str | None = None,
        explain: bool = False,
    ) -> RecommendationResult:
        """`explain`: each item also carries the split of its score (`contributions`)."""
        assignment = self._assign(user_id)
        index = self._index(assignment)
        check_demographics(index, demographics)
        allowed = self._allowed(index, category)
        row = index.users.row(user_id)
        contact = await self._contact_exclusions(index, user_id, channel)
        if _arm_strategy(assignment) == Strategy.POPULAR:
            seen = index.seen_rows(row) if exclude_seen and row is not None else None
            segment = index.feature_config.allowed_demographics(demographics)
            exclude = merge_exclude(seen, contact.rows)
            rows, scores = await self._popular(index, limit, exclude, allowed, segment)
            ranked = _Ranked(rows, scores, Strategy.POPULAR, Popular(segment))
        elif row is not None:
            seen = index.seen_rows(row) if exclude_seen else None
            rows, scores = await self._batcher.recommend_for_user(
                index, row, limit, exclude=merge_exclude(seen, contact.rows), allowed=allowed
            )
            ranked = _Ranked(rows, scores, Strategy.PERSONALIZED, TrainedUser(row))
        else:
            ranked = await self._for_new_user(
                index, user_id, limit, allowed, exclude_seen, demographics, contact.rows
            )
        return await self._present(index, _with_contact(ranked, contact), assignment, explain)

    async def for_session(
        self,
        session_id: str,
        limit: int,
        *,
        category: str | None = None,
        channel: str | None = None,
        explain: bool = False,
    ) -> RecommendationResult:
        assignment = self._assign(session_id)
        index = self._index(assignment)
        allowed = self._allowed(index, category)
        events, degraded = await self._recent(self._store.session_interactions(session_id))
        # The session's customer (its latest event says who), for their contact limits.
        customer = events[-1].user_id if events else None
        contact = (
            await self._contact_exclusions(index, customer, channel)
            if customer is not None
            else Exclusions()
        )
        touched = await self._touched(index, events)
        popular_arm = _arm_strategy(assignment) == Strategy.POPULAR
        parts = touched.parts(index) if not popular_arm else None
        if parts is not None:
            exclude = merge_exclude(touched.exclude(), contact.rows)
            rows, scores = await self._batcher.recommend(
                index, parts.query, limit, exclude=exclude, allowed=allowed
            )
            basis = FoldIn(parts, True, touched.event_types, touched.unseen_ids)
            ranked = _Ranked(rows, scores, Strategy.SESSION, basis)
        else:
            segment = index.feature_config.allowed_demographics(_latest_demographics(events))
            rows, scores = await self._popular(index, limit, contact.rows, allowed, segment)
            ranked = _Ranked(rows, scores, Strategy.POPULAR, Popular(segment))
        ranked.degraded = degraded or touched.degraded
        return await self._present(index, _with_contact(ranked, contact), assignment, explain)

    async def similar_products(
        self, product_id: str, limit: int, *, category: str | None = None, explain: bool = False
    ) -> RecommendationResult:
        assignment = self._assign(product_id)
        index = self._index(assignment)
        allowed = self._allowed(index, category)
        row = index.items.row(product_id)
        if row is not None:
            basis = Neighbours(product_id, index.item_matrix[row], index.item_feature_row(row)[0])

            def similar() -> tuple[np.ndarray, np.ndarray]:
                return index.similar_items(np.array([row]), limit, allowed=allowed).of(0)

        else:
            # A product the catalog knows but the model has never seen: place it by its features.
            product = (await self._details([product_id])).get(product_id)
            if product is None:
                raise NotFound(f"product {product_id!r} is not in the catalog")
            vector = item_row_from_features(index, product)
            basis = Neighbours(product_id, vector, item_feature_rows(index, product))

            def similar() -> tuple[np.ndarray, np.ndarray]:
                return index.similar(vector[None, :], limit, allowed=allowed).of(0)

        rows, scores = await self._batcher.run(index, similar)
        ranked = _Ranked(rows, scores, Strategy.SIMILAR, basis)
        return await self._present(index, ranked, assignment, explain)

    async def record_interactions(self, events: Sequence[InteractionEvent]) -> InsertResult:
        return await self._store.insert_many(events)

    async def recent_interactions(self, user_id: str, limit: int) -> list[InteractionEvent]:
        """A customer's latest interactions, newest first. Raises StoreUnavailable."""
        try:
            async with asyncio.timeout(self._config.store_timeout_seconds):
                return await self._store.user_interactions(user_id, limit)
        except TimeoutError:
            raise StoreUnavailable("the store did not answer in time") from None

    # --- strategies ------------------------------------------------------------------------------

    async def _for_new_user(
        self,
        index: EmbeddingIndex,
        user_id: str,
        limit: int,
        allowed: np.ndarray | None,
        exclude_seen: bool,
        demographics: Mapping[str, str] | None,
        contact_rows: np.ndarray | None,
    ) -> _Ranked:
        """A user the model has not trained on: fold in what the store has seen since, else their
        demographics, else popularity (within their segment when one is known)."""
        events, degraded = await self._recent(self._store.user_interactions(user_id))
        # Only the attributes the model was allowed to learn from (FINVERSE_MODEL_USER_ATTRIBUTES).
        demographics = index.feature_config.allowed_demographics(
            demographics or _latest_demographics(events)
        )
        features = demographic_features(demographics) if demographics else {}
        touched = await self._touched(index, events)
        degraded = degraded or touched.degraded
        exclude = merge_exclude(touched.exclude() if exclude_seen else None, contact_rows)
        folded = touched.parts(index, features)
        if folded is not None:
            basis: Basis = FoldIn(folded, False, touched.event_types, touched.unseen_ids)
            strategy, parts = Strategy.PERSONALIZED, folded
        else:
            from_features = feature_parts(index, features) if features else None
            if from_features is None:
                rows, scores = await self._popular(index, limit, exclude, allowed, demographics)
                return _Ranked(rows, scores, Strategy.POPULAR, Popular(demographics), degraded)
            basis, strategy, parts = (
                Demographics(from_features),
                Strategy.FEATURES_COLD_START,
                from_features,
            )
        rows, scores = await self._batcher.recommend(
            index, parts.query, limit, exclude=exclude, allowed=allowed
        )
        return _Ranked(rows, scores, strategy, basis, degraded)

    # --- helpers ---------------------------------------------------------------------------------

    async def _contact_exclusions(
        self, index: EmbeddingIndex, customer_id: str, channel: str | None
    ) -> Exclusions:
        if self._contact is None:
            return Exclusions()
        return await self._contact.exclusions(
            customer_id,
            datetime.now(UTC),
            index.items.row,
            partial(category_of, index),
            channel=channel,
        )

    def _assign(self, subject_id: str) -> Assignment | None:
        return None if self._experiments is None else self._experiments.assign(subject_id)

    def _index(self, assignment: Assignment | None = None) -> EmbeddingIndex:
        """CURRENT, or the version the experiment arm serves when this process has it loaded (a
        version that failed to load serves CURRENT; the response names the version it got)."""
        index = self._models.index
        if assignment is not None and assignment.arm.model_version is not None:
            index = self._models.index_of(assignment.arm.model_version) or index
        if index is None:
            raise ModelNotReady("no model is loaded yet; train one with `finverse-reco train`")
        return index

    async def _popular(
        self,
        index: EmbeddingIndex,
        limit: int,
        exclude: np.ndarray | None,
        allowed: np.ndarray | None,
        segment: Mapping[str, str] | None,
    ) -> tuple[np.ndarray, np.ndarray]:
        def popular() -> tuple[np.ndarray, np.ndarray]:
            return index.popular(limit, exclude=exclude, allowed=allowed, segment=segment).of(0)

        return await self._batcher.run(index, popular)

    @staticmethod
    def _allowed(index: EmbeddingIndex, category: str | None) -> np.ndarray | None:
        if category is None:
            return None
        rows = index.category_rows(category)
        if rows is None:
            raise NotFound(f"no products in category {category!r}")
        return rows

    async def _recent(self, query) -> tuple[list[InteractionEvent], bool]:
        """Run a store read within its timeout; on failure answer from the model alone (degraded)."""
        try:
            # asyncio.timeout, not wait_for: no extra task per request (bench/serving.py)
            async with asyncio.timeout(self._config.store_timeout_seconds):
                return await query, False
        except (StoreUnavailable, TimeoutError) as exc:
            log.warning("store read failed, answering from the model alone: %s", exc)
            return [], True

    async def _touched(self, index: EmbeddingIndex, events: Sequence[InteractionEvent]) -> _Touched:
        """What these events touched, weighed exactly as training does (decayed from the newest
        of them): products the model knows by row; products it never saw placed by their
        catalog features (`item_row_from_features`), so that a session on new products still
        has neighbours. Degraded when the catalog cannot describe the unseen ones."""
        if not events:
            return _Touched()
        now = max(e.timestamp for e in events)
        columns = InteractionColumns.from_events(events)
        known: dict[int, float] = {}
        unseen: dict[str, float] = {}
        for product_id, weight in interaction_weights(columns, self._config.weighting, now):
            if weight <= 0:
                continue
            row = index.items.row(product_id)
            if row is not None:
                known[row] = known.get(row, 0.0) + weight
            else:
                unseen[product_id] = unseen.get(product_id, 0.0) + weight
        event_types = _strongest_types(events, self._config.weighting.type_weights)
        if not unseen:
            return _Touched(known, event_types=event_types)
        try:
            details = await self._details(list(unseen))
        except (CatalogUnavailable, TimeoutError) as exc:
            log.warning("catalog unavailable, unseen products left out of the fold-in: %s", exc)
            return _Touched(known, event_types=event_types, degraded=True)
        placed = [product_id for product_id in unseen if product_id in details]
        vectors = np.array(
            [item_row_from_features(index, details[product_id]) for product_id in placed],
            dtype=np.float32,
        ).reshape(len(placed), index.dim + 1)
        weights = np.array([unseen[product_id] for product_id in placed], dtype=np.float32)
        return _Touched(known, tuple(placed), vectors, weights, event_types)

    async def _details(self, product_ids: list[str]) -> dict[str, Product]:
        at_hand = self._catalog.at_hand(product_ids)
        if at_hand is not None:
            return at_hand
        return await self._fetch_details(product_ids)

    async def _fetch_details(self, product_ids: list[str]) -> dict[str, Product]:
        async with asyncio.timeout(self._config.catalog_budget_seconds):
            return await self._catalog.get_many(product_ids)

    async def _present(
        self,
        index: EmbeddingIndex,
        ranked: _Ranked,
        assignment: Assignment | None = None,
        with_contributions: bool = False,
    ) -> RecommendationResult:
        rows = ranked.rows.tolist()
        ids = index.items.ids_of(rows)
        degraded = ranked.degraded
        # Only the k items returned are explained, in one vectorised pass (reasons.py).
        explanation = explain(
            index, ranked.basis, ranked.rows, ranked.scores, with_contributions=with_contributions
        )
        evidence = [p for p in explanation.evidence_products() if p not in set(ids)]
        wanted = ids + evidence
        # In memory (the usual case) the details need no coroutine and no timeout.
        details = self._catalog.at_hand(wanted)
        if details is None:
            try:
                details = await self._fetch_details(wanted)
            except CatalogUnavailable as exc:
                log.warning("catalog unavailable, answering with model metadata: %s", exc)
                details, degraded = dict(exc.known), True
            except TimeoutError:
                log.warning("catalog over its budget, answering with model metadata")
                details, degraded = {}, True
        products = [details.get(product_id) for product_id in ids]
        if not all(products):  # the catalog lacks some: their details come from the model
            products = [
                product or _model_details(index, row, product_id)
                for product, row, product_id in zip(products, rows, ids, strict=True)
            ]
        names = {product_id: product.name for product_id, product in details.items()}
        return RecommendationResult(
            ids,
            products,
            _rounded(ranked.scores),
            [round(value, 6) for value in explanation.relevance],
            explanation.reasons(names),
            ranked.strategy,
            index.version,
            degraded,
            explanation.contributions,
            experiment=assignment,
            filtered=ranked.filtered,
        )


def _with_contact(ranked: _Ranked, contact: Exclusions) -> _Ranked:
    ranked.filtered = contact.counts
    ranked.degraded = ranked.degraded or contact.degraded
    return ranked


def _arm_strategy(assignment: Assignment | None) -> str | None:
    return None if assignment is None else assignment.arm.strategy


def _rounded(scores: np.ndarray) -> list[float]:
    """`round(score, 6)` of each score, at a third of its cost: for float32 scores
    `round(score * 1e6) / 1e6` is the same number (times 10**6 is exact in float64, and both
    round half to even). numpy's `round` would add two numpy calls, dearer still in a busy server."""
    values = scores.tolist()
    try:
        return [round(value * 1e6) / 1e6 for value in values]
    except (ValueError, OverflowError):  # NaN or infinity (a broken model): as round() has it
        return [round(value, 6) for value in values]


def _model_details(index: EmbeddingIndex, row: int, product_id: str) -> Product:
    category, institution = index.item_meta(row)
    return Product(id=product_id, name=product_id, category=category, institution=institution)


def _latest_demographics(events: Sequence[InteractionEvent]) -> dict[str, str] | None:
    for event in sorted(events, key=lambda e: e.timestamp, reverse=True):
        demo = event.data.userDemographics
        if demo is not None:
            values = {k: v for k, v in demo.model_dump().items() if v}
            if values:
                return values
    return None


@dataclass(frozen=True, slots=True)
class _Touched:
    """The products a session's or customer's events touched, with their interaction weights."""

    known: Mapping[int, float] = field(default_factory=dict)  # item row → weight
    unseen_ids: tuple[str, ...] = ()  # products the model never saw, placed by features
    unseen_vectors: np.ndarray | None = None  # (len(unseen_ids), d + 1)
    unseen_weights: np.ndarray | None = None
    event_types: Mapping[str, str] = field(default_factory=dict)  # product id → strongest type
    degraded: bool = False

    def parts(
        self, index: EmbeddingIndex, features: Mapping[str, float] | None = None
    ) -> QueryParts | None:
        """The fold-in of what was touched, mixed with `features`; None when nothing was."""
        if not self.known and not self.unseen_ids:
            return None
        unseen = None
        if self.unseen_ids:
            unseen = (self.unseen_vectors, self.unseen_weights)
        return fold_in_parts(index, self.known, features or None, unseen_items=unseen)

    def exclude(self) -> np.ndarray | None:
        """The touched rows, ascending (as the kernel and `merge_exclude` want)."""
        if not self.known:
            return None
        return np.fromiter(sorted(self.known), dtype=np.int64, count=len(self.known))


def _strongest_types(
    events: Sequence[InteractionEvent], type_weights: Mapping[str, float]
) -> dict[str, str]:
    """Per product, the type of its weightiest event (an application over a view)."""
    strongest: dict[str, str] = {}
    for event in events:
        kind = str(event.type)
        for product_id in event.product_ids():
            current = strongest.get(product_id)
            if current is None or type_weights.get(kind, 0.0) > type_weights.get(current, 0.0):
                strongest[product_id] = kind
    return strongest
