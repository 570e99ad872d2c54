"""The service's use cases: recommendations for a user, a session, a product; and their fallbacks.

Every answer says which strategy produced it and whether it is degraded (a dependency failed and we
answered with less), so a client can trust it or not. Nothing here knows about HTTP.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
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
from finverse_reco.policy import (
    NO_CALLER_FILTERS,
    BoundPolicy,
    CallerFilters,
    Customer,
    ItemFacts,
    Policy,
    RulesFile,
)
from finverse_reco.products import Product
from finverse_reco.service.batching import RankingBatcher
from finverse_reco.service.contact_limits import ContactFilter, Exclusions, merge_exclude
from finverse_reco.service.customers import CustomerReader
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
    policy_version: str
    explanation: dict | None = None  # with `explain`: what the policy filtered, and why
    experiment: Assignment | None = None  # the experiment arm this answer was served under
    # How many products each contact rule took out of the list (`contact_limit`, `dismissed`).
    filtered: dict[str, int] = field(default_factory=dict)
    timestamp: datetime = field(default_factory=lambda: datetime.now(UTC))


@dataclass(frozen=True, slots=True)
class ServiceConfig:
    weighting: WeightingConfig
    store_timeout_seconds: float = 2.0
    catalog_budget_seconds: float = 0.8
    # Ranking this many items or more runs in a thread of its own: its BLAS work (~1 ms at 100,000
    # items, GIL released) then overlaps the event loop's HTTP work; smaller catalogs rank faster
    # than the thread hop costs.
    off_loop_items: int = 50_000
    # How long the policy's view of the catalog (eligibility facts, withdrawn products) is used
    # before it is read again; a failed read is retried after `catalog_retry_seconds`.
    catalog_refresh_seconds: float = 300.0
    catalog_retry_seconds: float = 5.0


# What ranks a list: k, exclusions, allow-list → rows and scores.
Ranker = Callable[
    [int, np.ndarray | None, np.ndarray | None], Awaitable[tuple[np.ndarray, np.ndarray]]
]
POLICY_OFF = Policy(RulesFile(version="off"), enabled=False)


@dataclass(slots=True)
class _Ranked:
    rank: Ranker
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
        policy: Policy = POLICY_OFF,
        experiments: ExperimentRegistry | None = None,
        contact: ContactFilter | None = None,
    ) -> None:
        self._models = models
        self._store = store
        self._catalog = catalog
        self._config = config
        self.policy = policy
        self._experiments = experiments
        self._contact = contact
        self._customers = CustomerReader(store, policy, config.store_timeout_seconds)
        # The policy bound to the serving model's items: (index, when read, catalog read ok).
        self._bound: tuple[EmbeddingIndex, BoundPolicy, float, bool] | None = None
        self._binding: asyncio.Task[None] | None = None
        # One thread: with the event loop that is one core each; more would only contend.
        self._ranker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ranking")
        self._batcher = RankingBatcher(self._ranker, off_loop_items=config.off_loop_items)

    # --- use cases -------------------------------------------------------------------------------

    async def for_user(
        self,
        user_id: str,
        limit: int,
        *,
        caller: CallerFilters = NO_CALLER_FILTERS,
        exclude_seen: bool = True,
        demographics: Mapping[str, str] | None = None,
        explain: bool = False,
        channel: str | None = None,
    ) -> RecommendationResult:
        assignment = self._assign(user_id)
        index = self._index(assignment)
        self._check_categories(index, caller)
        row = index.users.row(user_id)
        contact = await self._contact_exclusions(index, user_id, channel)
        popular_arm = _arm_strategy(assignment) == Strategy.POPULAR
        if row is None and not popular_arm:
            return await self._for_new_user(
                index, user_id, limit, caller, exclude_seen, demographics, explain, contact,
                assignment,
            )  # fmt: skip
        policy = await self._policy(index)
        customer, degraded = await self._customers.customer(user_id, demographics)
        seen = index.seen_rows(row) if exclude_seen and row is not None else None
        if popular_arm:
            segment = index.feature_config.allowed_demographics(demographics)
            ranked = _Ranked(
                self._popular_ranker(index, segment), Strategy.POPULAR, "popular right now"
            )
        else:

            def rank(k: int, exclude: np.ndarray | None, allowed: np.ndarray | None):
                return self._batcher.recommend_for_user(
                    index, row, k, exclude=exclude, allowed=allowed
                )

            ranked = _Ranked(rank, Strategy.PERSONALIZED, "matches your activity")
        ranked.degraded = degraded
        return await self._serve(
            index, policy, customer, _with_contact(ranked, contact), limit, caller,
            merge_exclude(seen, contact.rows), explain, assignment,
        )  # fmt: skip

    async def for_session(
        self,
        session_id: str,
        limit: int,
        *,
        caller: CallerFilters = NO_CALLER_FILTERS,
        explain: bool = False,
        channel: str | None = None,
    ) -> RecommendationResult:
        assignment = self._assign(session_id)
        index = self._index(assignment)
        self._check_categories(index, caller)
        events, degraded = await self._recent(self._store.session_interactions(session_id))
        # The session's customer, when its events name one: their profile decides eligibility,
        # and their contact limits apply (the latest event says who).
        users = {event.user_id for event in events}
        segment = _latest_demographics(events)
        policy = await self._policy(index)
        customer, store_failed = await self._customer(
            users.pop() if len(users) == 1 else None, segment
        )
        contact = (
            await self._contact_exclusions(index, events[-1].user_id, channel)
            if events
            else Exclusions()
        )
        weights = self._item_weights(index, events)
        popular_arm = _arm_strategy(assignment) == Strategy.POPULAR
        query = fold_in(index, weights) if weights and not popular_arm else None
        if query is not None:
            touched = np.fromiter(sorted(weights), dtype=np.int64, count=len(weights))
            ranked = _Ranked(
                self._query_ranker(index, query), Strategy.SESSION, "fits this browsing session"
            )
        else:
            touched = None
            allowed_segment = index.feature_config.allowed_demographics(segment)
            ranked = _Ranked(
                self._popular_ranker(index, allowed_segment), Strategy.POPULAR, "popular right now"
            )
        ranked.degraded = degraded or store_failed
        return await self._serve(
            index, policy, customer, _with_contact(ranked, contact), limit, caller,
            merge_exclude(touched, contact.rows), explain, assignment,
        )  # fmt: skip

    async def similar_products(
        self,
        product_id: str,
        limit: int,
        *,
        caller: CallerFilters = NO_CALLER_FILTERS,
        user_id: str | None = None,
        explain: bool = False,
    ) -> RecommendationResult:
        """Products like `product_id`, for `user_id` when the caller names the customer (else an
        anonymous customer: rules on unknown attributes fail closed where configured)."""
        assignment = self._assign(product_id)
        index = self._index(assignment)
        self._check_categories(index, caller)
        policy = await self._policy(index)
        customer, degraded = await self._customer(user_id, None)
        row = index.items.row(product_id)
        if row is not None:
            itself = np.array([row], dtype=np.int64)

            def similar(k: int, exclude: np.ndarray | None, allowed: np.ndarray | None):
                def run() -> tuple[np.ndarray, np.ndarray]:
                    return index.similar_items(itself, k, exclude=exclude, allowed=allowed).of(0)

                return self._batcher.run(index, run)

        else:
            # A product the catalog knows but the model has never seen: place it by its features.
            product = (await self._details([product_id])).get(product_id)
            if product is None:
                raise NotFound(f"product {product_id!r} is not in the catalog")
            vector = item_row_from_features(index, product)

            def similar(k: int, exclude: np.ndarray | None, allowed: np.ndarray | None):
                def run() -> tuple[np.ndarray, np.ndarray]:
                    return index.similar(vector[None, :], k, exclude=exclude, allowed=allowed).of(0)

                return self._batcher.run(index, run)

        ranked = _Ranked(similar, Strategy.SIMILAR, f"similar to {product_id}", degraded)
        return await self._serve(
            index, policy, customer, ranked, limit, caller, None, explain, assignment
        )

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
        caller: CallerFilters,
        exclude_seen: bool,
        demographics: Mapping[str, str] | None,
        explain: bool,
        contact: Exclusions,
        assignment: Assignment | None,
    ) -> RecommendationResult:
        """A user the model has not trained on: fold in what the store has seen since, else their
        demographics, else popularity (within their segment when one is known)."""
        policy = await self._policy(index)
        events, degraded = await self._recent(self._store.user_interactions(user_id))
        given = demographics or _latest_demographics(events)
        customer, store_failed = await self._customers.customer(user_id, given)
        # Only the attributes the model was allowed to learn from (FINVERSE_MODEL_USER_ATTRIBUTES).
        demographics = index.feature_config.allowed_demographics(given)
        features = demographic_features(demographics) if demographics else {}
        weights = self._item_weights(index, events)
        seen = (
            np.fromiter(sorted(weights), dtype=np.int64, count=len(weights))
            if exclude_seen and weights
            else None
        )
        if weights:
            query = fold_in(index, weights, features or None)
            strategy, reason = Strategy.PERSONALIZED, "matches your recent activity"
        else:
            query = user_query_from_features(index, features) if features else None
            strategy, reason = Strategy.FEATURES_COLD_START, "popular with people like you"
        if query is None:
            ranked = _Ranked(
                self._popular_ranker(index, demographics), Strategy.POPULAR, "popular right now"
            )
        else:
            ranked = _Ranked(self._query_ranker(index, query), strategy, reason)
        ranked.degraded = degraded or store_failed
        return await self._serve(
            index, policy, customer, _with_contact(ranked, contact), limit, caller,
            merge_exclude(seen, contact.rows), explain, assignment,
        )  # fmt: skip

    def _query_ranker(self, index: EmbeddingIndex, query: np.ndarray) -> Ranker:
        def rank(k: int, exclude: np.ndarray | None, allowed: np.ndarray | None):
            return self._batcher.recommend(index, query, k, exclude=exclude, allowed=allowed)

        return rank

    def _popular_ranker(self, index: EmbeddingIndex, segment: Mapping[str, str] | None) -> Ranker:
        def rank(k: int, exclude: np.ndarray | None, allowed: np.ndarray | None):
            def popular() -> tuple[np.ndarray, np.ndarray]:
                return index.popular(k, exclude=exclude, allowed=allowed, segment=segment).of(0)

            return self._batcher.run(index, popular)

        return rank

    # --- the policy step ---------------------------------------------------------------------------

    async def _serve(
        self,
        index: EmbeddingIndex,
        policy: BoundPolicy,
        customer: Customer,
        ranked: _Ranked,
        limit: int,
        caller: CallerFilters,
        exclude: np.ndarray | None,
        explain: bool,
        assignment: Assignment | None = None,
    ) -> RecommendationResult:
        """Rank within the policy's filters and select within its diversity caps: every list of
        every strategy, fallbacks and degraded answers included, leaves through here."""
        now = datetime.now(UTC)
        filters = policy.filters(customer, now, caller, exclude)
        k = policy.fetch(limit)
        rows, scores = await ranked.rank(k, filters.exclude, filters.allowed)
        chosen_rows, chosen_scores = policy.select(rows, scores, limit)
        explanation = None
        if explain:
            unfiltered = await ranked.rank(k, exclude, None)
            explanation = policy.explain(customer, now, caller, exclude, unfiltered[0], chosen_rows)
        return await self._present(
            index, policy, chosen_rows, chosen_scores, ranked, explanation, assignment
        )

    async def _policy(self, index: EmbeddingIndex) -> BoundPolicy:
        """The policy bound to the serving model's items and the catalog's facts about them: read
        once per model, again every `catalog_refresh_seconds` in the background (requests keep the
        previous facts meanwhile). A catalog that cannot be read lists nothing: fail closed."""
        bound = self._bound
        now = time.monotonic()
        if bound is None or bound[0] is not index:
            await self._bind(index)
        elif now - bound[2] > (
            self._config.catalog_refresh_seconds if bound[3] else self._config.catalog_retry_seconds
        ) and (self._binding is None or self._binding.done()):
            self._binding = asyncio.get_running_loop().create_task(self._bind(index))
        assert self._bound is not None
        return self._bound[1]

    async def _bind(self, index: EmbeddingIndex) -> None:
        products: dict[str, Product] | None
        try:
            products = {p.id: p for p in await self._catalog.all_products()}
        except (CatalogUnavailable, TimeoutError) as exc:
            log.warning("catalog unavailable, the policy lists no product until it is: %s", exc)
            products = None
        facts = ItemFacts.build(
            index.items.ids,
            index.item_categories,
            index.category_names,
            index.item_institutions,
            index.institution_names,
            products,
        )
        self._bound = (index, self.policy.bind(facts), time.monotonic(), products is not None)

    async def _customer(
        self, user_id: str | None, demographics: Mapping[str, str] | None
    ) -> tuple[Customer, bool]:
        if user_id is None:
            return Customer.anonymous(), False
        return await self._customers.customer(user_id, demographics)

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

    @staticmethod
    def _check_categories(index: EmbeddingIndex, caller: CallerFilters) -> None:
        unknown = [name for name in caller.categories if index.category_rows(name) is None]
        if unknown and len(unknown) == len(caller.categories):
            raise NotFound(f"no products in category {', '.join(map(repr, unknown))}")

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
        self,
        index: EmbeddingIndex,
        policy: BoundPolicy,
        rows_array: np.ndarray,
        scores: np.ndarray,
        ranked: _Ranked,
        explanation: dict | None,
        assignment: Assignment | None = None,
    ) -> RecommendationResult:
        rows = rows_array.tolist()
        ids = index.items.ids_of(rows)
        degraded = ranked.degraded or not policy.items_known
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
        if not all(products):
            # The catalog lists them (the policy served no withdrawn product) but could not
            # describe them now: their details come from the model.
            products = [
                product or _model_details(index, row, product_id)
                for product, row, product_id in zip(products, rows, ids, strict=True)
            ]
        return RecommendationResult(
            ids,
            products,
            _rounded(scores),
            ranked.reason,
            ranked.strategy,
            index.version,
            degraded,
            policy.version,
            explanation,
            experiment=assignment,
            filtered=ranked.filtered,
        )


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


def _with_contact(ranked: _Ranked, contact: Exclusions) -> _Ranked:
    ranked.filtered = contact.counts
    ranked.degraded = ranked.degraded or contact.degraded
    return ranked


def _category_of(index: EmbeddingIndex, product_id: str) -> str | None:
    row = index.items.row(product_id)
    return None if row is None else index.item_meta(row)[0] or None


def _arm_strategy(assignment: Assignment | None) -> str | None:
    return None if assignment is None else assignment.arm.strategy
