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

import numpy as np

from finverse_reco.catalog.base import CatalogUnavailable, ProductCatalog
from finverse_reco.events import InteractionColumns, InteractionEvent
from finverse_reco.index import (
    EmbeddingIndex,
    fold_in,
    item_row_from_features,
    user_query_from_features,
)
from finverse_reco.pipeline import WeightingConfig, interaction_weights
from finverse_reco.pipeline.features import demographic_features
from finverse_reco.products import Product
from finverse_reco.service.batching import RankingBatcher
from finverse_reco.service.contact_limits import ContactFilter, Exclusions, merge_exclude
from finverse_reco.service.experiments import Assignment, ExperimentRegistry
from finverse_reco.service.models import ModelHolder
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


@dataclass(frozen=True, slots=True)
class RecommendationResult:
    """The ranked products, best first, as parallel columns: the ids the model ranked, each one's
    details (the catalog's own objects, or model metadata where the catalog lacks the product) and
    score. A response builds its items in one pass, with no object per recommendation in between."""

    product_ids: list[str]
    products: list[Product]
    scores: list[float]
    reason: str
    strategy: Strategy
    model_version: str
    degraded: bool
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
    reason: str
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
    ) -> RecommendationResult:
        assignment = self._assign(user_id)
        index = self._index(assignment)
        allowed = self._allowed(index, category)
        row = index.users.row(user_id)
        contact = await self._contact_exclusions(index, user_id, channel)
        if _arm_strategy(assignment) == Strategy.POPULAR:
            seen = index.seen_rows(row) if exclude_seen and row is not None else None
            segment = index.feature_config.allowed_demographics(demographics)
            exclude = merge_exclude(seen, contact.rows)
            rows, scores = await self._popular(index, limit, exclude, allowed, segment)
            ranked = _Ranked(rows, scores, Strategy.POPULAR, "popular right now")
        elif row is not None:
            seen = index.seen_rows(row) if exclude_seen else None
            rows, scores = await self._batcher.recommend_for_user(
                index, row, limit, exclude=merge_exclude(seen, contact.rows), allowed=allowed
            )
            ranked = _Ranked(rows, scores, Strategy.PERSONALIZED, "matches your activity")
        else:
            ranked = await self._for_new_user(
                index, user_id, limit, allowed, exclude_seen, demographics, contact.rows
            )
        return await self._present(index, _with_contact(ranked, contact), assignment)

    async def for_session(
        self,
        session_id: str,
        limit: int,
        *,
        category: str | None = None,
        channel: str | None = None,
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
        weights = self._item_weights(index, events)
        popular_arm = _arm_strategy(assignment) == Strategy.POPULAR
        query = fold_in(index, weights) if weights and not popular_arm else None
        if query is not None:
            touched = np.fromiter(sorted(weights), dtype=np.int64, count=len(weights))
            rows, scores = await self._batcher.recommend(
                index, query, limit, exclude=merge_exclude(touched, contact.rows), allowed=allowed
            )
            ranked = _Ranked(rows, scores, Strategy.SESSION, "fits this browsing session")
        else:
            segment = index.feature_config.allowed_demographics(_latest_demographics(events))
            rows, scores = await self._popular(index, limit, contact.rows, allowed, segment)
            ranked = _Ranked(rows, scores, Strategy.POPULAR, "popular right now", degraded)
        ranked.degraded = degraded
        return await self._present(index, _with_contact(ranked, contact), assignment)

    async def similar_products(
        self, product_id: str, limit: int, *, category: str | None = None
    ) -> RecommendationResult:
        assignment = self._assign(product_id)
        index = self._index(assignment)
        allowed = self._allowed(index, category)
        row = index.items.row(product_id)
        if row is not None:

            def similar() -> tuple[np.ndarray, np.ndarray]:
                return index.similar_items(np.array([row]), limit, allowed=allowed).of(0)

        else:
            # A product the catalog knows but the model has never seen: place it by its features.
            product = (await self._details([product_id])).get(product_id)
            if product is None:
                raise NotFound(f"product {product_id!r} is not in the catalog")
            vector = item_row_from_features(index, product)

            def similar() -> tuple[np.ndarray, np.ndarray]:
                return index.similar(vector[None, :], limit, allowed=allowed).of(0)

        rows, scores = await self._batcher.run(index, similar)
        ranked = _Ranked(rows, scores, Strategy.SIMILAR, f"similar to {product_id}")
        return await self._present(index, ranked, assignment)

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
        weights = self._item_weights(index, events)
        seen = (
            np.fromiter(sorted(weights), dtype=np.int64, count=len(weights))
            if exclude_seen and weights
            else None
        )
        exclude = merge_exclude(seen, contact_rows)
        if weights:
            query = fold_in(index, weights, features or None)
            strategy, reason = Strategy.PERSONALIZED, "matches your recent activity"
        else:
            query = user_query_from_features(index, features) if features else None
            strategy, reason = Strategy.FEATURES_COLD_START, "popular with people like you"
        if query is None:
            rows, scores = await self._popular(index, limit, exclude, allowed, demographics)
            return _Ranked(rows, scores, Strategy.POPULAR, "popular right now", degraded)
        rows, scores = await self._batcher.recommend(
            index, query, limit, exclude=exclude, allowed=allowed
        )
        return _Ranked(rows, scores, strategy, reason, degraded)

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
            lambda product: _category_of(index, product),
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

    def _item_weights(
        self, index: EmbeddingIndex, events: Sequence[InteractionEvent]
    ) -> dict[int, float]:
        """Interaction weight per known item row, weighed exactly as training does (decayed from
        the newest of these events)."""
        if not events:
            return {}
        now = max(e.timestamp for e in events)
        columns = InteractionColumns.from_events(events)
        weights: dict[int, float] = {}
        for product_id, weight in interaction_weights(columns, self._config.weighting, now):
            row = index.items.row(product_id)
            if row is not None and weight > 0:
                weights[row] = weights.get(row, 0.0) + weight
        return weights

    async def _details(self, product_ids: list[str]) -> dict[str, Product]:
        at_hand = self._catalog.at_hand(product_ids)
        if at_hand is not None:
            return at_hand
        return await self._fetch_details(product_ids)

    async def _fetch_details(self, product_ids: list[str]) -> dict[str, Product]:
        async with asyncio.timeout(self._config.catalog_budget_seconds):
            return await self._catalog.get_many(product_ids)

    async def _present(
        self, index: EmbeddingIndex, ranked: _Ranked, assignment: Assignment | None = None
    ) -> RecommendationResult:
        rows = ranked.rows.tolist()
        ids = index.items.ids_of(rows)
        degraded = ranked.degraded
        # In memory (the usual case) the details need no coroutine and no timeout.
        details = self._catalog.at_hand(ids)
        if details is None:
            try:
                details = await self._fetch_details(ids)
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
        return RecommendationResult(
            ids,
            products,
            _rounded(ranked.scores),
            ranked.reason,
            ranked.strategy,
            index.version,
            degraded,
            experiment=assignment,
            filtered=ranked.filtered,
        )


def _with_contact(ranked: _Ranked, contact: Exclusions) -> _Ranked:
    ranked.filtered = contact.counts
    ranked.degraded = ranked.degraded or contact.degraded
    return ranked


def _category_of(index: EmbeddingIndex, product_id: str) -> str | None:
    row = index.items.row(product_id)
    return None if row is None else index.item_meta(row)[0] or None


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
