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
from finverse_reco.erasure import ErasedCustomers
from finverse_reco.events import InteractionColumns, InteractionEvent
from finverse_reco.index import EmbeddingIndex, item_row_from_features
from finverse_reco.index.explain import QueryParts, feature_parts
from finverse_reco.index.foldin import fold_in_parts, item_feature_rows
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
from finverse_reco.service.customers import CustomerReader
from finverse_reco.service.experiments import Assignment, ExperimentRegistry
from finverse_reco.service.models import ModelHolder
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
    builds its items in one pass, with no object per recommendation in between."""

    product_ids: list[str]
    products: list[Product]
    scores: list[float]
    relevance: list[float]
    reasons: list[Reason]
    strategy: Strategy
    model_version: str
    degraded: bool
    policy_version: str
    explanation: dict | None = None  # with `explain`: what the policy filtered, and why
    # With `explain`: each item's split of its raw score.
    contributions: list[list[Contribution]] | None = None
    experiment: Assignment | None = None  # the experiment arm this answer was served under
    # Served to a customer who objected to personalisation (or whose consent could not be read):
    # the audit trail keeps what was shown, not the scores and reasons (docs/ACCOUNTABILITY.md).
    without_consent: bool = False
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
# Bindings kept: CURRENT, the versions running experiments serve, and a previous CURRENT.
MAX_BOUND_VERSIONS = 4
POLICY_OFF = Policy(RulesFile(version="off"), enabled=False)


@dataclass(slots=True)
class _Binding:
    """The policies bound to one served model's items and the catalog's facts about them."""

    index: EmbeddingIndex
    facts: ItemFacts
    base: BoundPolicy
    read_at: float  # time.monotonic() of the catalog read
    catalog_read: bool  # False: the catalog could not be read (retried sooner)
    # Each policy variant an experiment arm serves (the base tightened by it), bound on its
    # arm's first list.
    variants: dict[Policy, BoundPolicy] = field(default_factory=dict)


@dataclass(slots=True)
class _Ranked:
    rank: Ranker
    strategy: Strategy
    basis: Basis  # how the list was ranked: what its reasons are drawn from
    degraded: bool = False
    without_consent: bool = False


class RecommendationService:
    def __init__(
        self,
        models: ModelHolder,
        store: InteractionStore,
        catalog: ProductCatalog,
        config: ServiceConfig,
        policy: Policy = POLICY_OFF,
        erased: ErasedCustomers | None = None,
        experiments: ExperimentRegistry | None = None,
    ) -> None:
        self._models = models
        self._store = store
        self._catalog = catalog
        self._config = config
        self.policy = policy
        self._erased = erased if erased is not None else ErasedCustomers("")
        self._experiments = experiments
        # Each customer read brings the activity the base rules and every variant in use need.
        self._customers = CustomerReader(
            store,
            policy,
            config.store_timeout_seconds,
            variants=(lambda: experiments.variant_policies) if experiments is not None else None,
        )
        # The policies bound to each served model's items, by version (CURRENT and the versions
        # experiments serve beside it).
        self._bound: dict[str, _Binding] = {}
        self._binding: dict[str, asyncio.Task[None]] = {}
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
        check_demographics(index, demographics)
        self._check_categories(index, caller)
        if self._erased.is_erased(user_id):
            # Erased: their row stays in this model's arrays until the next training, unused.
            # They are served as a stranger is, through the policy step like every list.
            ranked = _Ranked(self._popular_ranker(index, None), Strategy.POPULAR, Popular(None))
            return await self._serve(
                index, Customer.anonymous(), ranked, limit, caller, None, explain, assignment
            )
        row = index.users.row(user_id)
        popular_arm = _arm_strategy(assignment) == Strategy.POPULAR
        if row is None and not popular_arm:
            return await self._for_new_user(
                index, user_id, limit, caller, exclude_seen, demographics, explain, channel,
                assignment,
            )  # fmt: skip
        customer, degraded = await self._customers.customer(user_id, demographics, channel)
        seen = index.seen_rows(row) if exclude_seen and row is not None else None
        if popular_arm:
            segment = index.feature_config.allowed_demographics(demographics)
            ranked = _Ranked(
                self._popular_ranker(index, segment), Strategy.POPULAR, Popular(segment)
            )
        else:

            def rank(k: int, exclude: np.ndarray | None, allowed: np.ndarray | None):
                return self._batcher.recommend_for_user(
                    index, row, k, exclude=exclude, allowed=allowed
                )

            ranked = _Ranked(rank, Strategy.PERSONALIZED, TrainedUser(row))
        ranked.degraded = degraded
        return await self._serve(index, customer, ranked, limit, caller, seen, explain, assignment)

    async def for_session(
        self,
        session_id: str,
        limit: int,
        *,
        caller: CallerFilters = NO_CALLER_FILTERS,
        explain: bool = False,
        channel: str | None = None,
    ) -> RecommendationResult:
        events, degraded = await self._recent(self._store.session_interactions(session_id))
        # The session's customer, when its events name one: their profile decides eligibility,
        # their contact limits and dismissals apply, and their experiment arm serves the list.
        users = {event.user_id for event in events}
        user_id = next(iter(users)) if len(users) == 1 else None
        assignment = self._assign(user_id or session_id)
        index = self._index(assignment)
        self._check_categories(index, caller)
        segment = _latest_demographics(events)
        customer, store_failed = await self._customer(user_id, segment, channel)
        if len(users) > 1:  # a shared device: anyone's objection keeps the session unprofiled
            customer.personalise, store_failed = await self._all_personalise(users)
        touched = await self._touched(index, events)
        popular_arm = _arm_strategy(assignment) == Strategy.POPULAR
        parts = touched.parts(index) if not popular_arm else None
        if parts is not None:
            basis = FoldIn(parts, True, touched.event_types, touched.unseen_ids)
            ranked = _Ranked(self._query_ranker(index, parts.query), Strategy.SESSION, basis)
            seen = touched.exclude()
        else:
            seen = None
            allowed_segment = index.feature_config.allowed_demographics(segment)
            ranked = _Ranked(
                self._popular_ranker(index, allowed_segment),
                Strategy.POPULAR,
                Popular(allowed_segment),
            )
        ranked.degraded = degraded or store_failed or touched.degraded
        return await self._serve(index, customer, ranked, limit, caller, seen, explain, assignment)

    async def similar_products(
        self,
        product_id: str,
        limit: int,
        *,
        caller: CallerFilters = NO_CALLER_FILTERS,
        user_id: str | None = None,
        explain: bool = False,
        channel: str | None = None,
    ) -> RecommendationResult:
        """Products like `product_id`, for `user_id` when the caller names the customer (else an
        anonymous customer: rules on unknown attributes fail closed where configured). The list
        is the customer's experiment arm's when one is named, else the product's."""
        assignment = self._assign(user_id or product_id)
        index = self._index(assignment)
        self._check_categories(index, caller)
        customer, degraded = await self._customer(user_id, None, channel)
        row = index.items.row(product_id)
        if row is not None:
            itself = np.array([row], dtype=np.int64)
            basis = Neighbours(product_id, index.item_matrix[row], index.item_feature_row(row)[0])

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
            basis = Neighbours(product_id, vector, item_feature_rows(index, product))

            def similar(k: int, exclude: np.ndarray | None, allowed: np.ndarray | None):
                def run() -> tuple[np.ndarray, np.ndarray]:
                    return index.similar(vector[None, :], k, exclude=exclude, allowed=allowed).of(0)

                return self._batcher.run(index, run)

        ranked = _Ranked(similar, Strategy.SIMILAR, basis, degraded)
        # Never the product itself, whatever ranks the list (popularity, without consent).
        not_itself = None if row is None else np.array([row], dtype=np.int64)
        return await self._serve(
            index, customer, ranked, limit, caller, not_itself, explain, assignment
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
        channel: str | None,
        assignment: Assignment | None,
    ) -> RecommendationResult:
        """A user the model has not trained on: fold in what the store has seen since, else their
        demographics, else popularity (within their segment when one is known)."""
        events, degraded = await self._recent(self._store.user_interactions(user_id))
        given = demographics or _latest_demographics(events)
        customer, store_failed = await self._customers.customer(user_id, given, channel)
        # Only the attributes the model was allowed to learn from (FINVERSE_MODEL_USER_ATTRIBUTES).
        demographics = index.feature_config.allowed_demographics(given)
        features = demographic_features(demographics) if demographics else {}
        touched = await self._touched(index, events)
        seen = touched.exclude() if exclude_seen else None
        parts = touched.parts(index, features)
        from_features = feature_parts(index, features) if features and parts is None else None
        if parts is not None:
            basis = FoldIn(parts, False, touched.event_types, touched.unseen_ids)
            ranked = _Ranked(self._query_ranker(index, parts.query), Strategy.PERSONALIZED, basis)
        elif from_features is not None:
            ranked = _Ranked(
                self._query_ranker(index, from_features.query),
                Strategy.FEATURES_COLD_START,
                Demographics(from_features),
            )
        else:
            ranked = _Ranked(
                self._popular_ranker(index, demographics), Strategy.POPULAR, Popular(demographics)
            )
        ranked.degraded = degraded or store_failed or touched.degraded
        return await self._serve(index, customer, ranked, limit, caller, seen, explain, assignment)

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
        customer: Customer,
        ranked: _Ranked,
        limit: int,
        caller: CallerFilters,
        exclude: np.ndarray | None,
        explain: bool,
        assignment: Assignment | None = None,
    ) -> RecommendationResult:
        """Rank within the policy's filters and select within its diversity caps: every list of
        every strategy, fallbacks and degraded answers included, leaves through here, under the
        policy of its experiment arm (`_policy`)."""
        policy = await self._policy(index, assignment)
        if not customer.personalise:
            ranked = self._not_personalised(index, ranked)
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
            index, policy, chosen_rows, chosen_scores, ranked, explanation, assignment, explain
        )

    async def _policy(self, index: EmbeddingIndex, assignment: Assignment | None) -> BoundPolicy:
        """The one place a list's policy is chosen: its experiment arm's (the base tightened by
        the arm's variant) when the arm names a variant, else the base policy. Bound to the
        serving model's items and the catalog's facts about them: read once per model, again
        every `catalog_refresh_seconds` in the background (requests keep the previous facts
        meanwhile). A catalog that cannot be read lists nothing: fail closed."""
        binding = self._bound.get(index.version)
        if binding is None or binding.index is not index:
            binding = await self._bind(index)
        elif time.monotonic() - binding.read_at > (
            self._config.catalog_refresh_seconds
            if binding.catalog_read
            else self._config.catalog_retry_seconds
        ):
            running = self._binding.get(index.version)
            if running is None or running.done():
                task = asyncio.get_running_loop().create_task(self._bind(index))
                self._binding[index.version] = task
        variant = None if assignment is None else assignment.policy
        if variant is None:
            return binding.base
        bound = binding.variants.get(variant)
        if bound is None:  # the first list of this arm on this model version
            # Variants of experiments no longer running go first: each keeps its own allow-lists.
            serving = self._experiments.variant_policies if self._experiments else ()
            for stale in [known for known in binding.variants if known not in serving]:
                del binding.variants[stale]
            bound = binding.variants[variant] = variant.bind(binding.facts)
        return bound

    async def _bind(self, index: EmbeddingIndex) -> _Binding:
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
        # The variants the running experiment serves are bound again with the new facts; those
        # of experiments no longer running are dropped.
        serving = set(self._experiments.variant_policies) if self._experiments else set()
        previous = self._bound.pop(index.version, None)  # re-inserted last: oldest goes first
        variants = {} if previous is None else previous.variants
        binding = _Binding(
            index,
            facts,
            self.policy.bind(facts),
            time.monotonic(),
            products is not None,
            {variant: variant.bind(facts) for variant in variants if variant in serving},
        )
        self._bound[index.version] = binding
        while len(self._bound) > MAX_BOUND_VERSIONS:  # versions no longer served
            self._bound.pop(next(iter(self._bound)))
        return binding

    async def _customer(
        self, user_id: str | None, demographics: Mapping[str, str] | None, channel: str | None
    ) -> tuple[Customer, bool]:
        if user_id is None:
            return Customer.anonymous(), False
        return await self._customers.customer(user_id, demographics, channel)

    async def _all_personalise(self, user_ids: set[str]) -> tuple[bool, bool]:
        """Whether every one of these customers may be personalised, and whether a read failed."""
        read = await asyncio.gather(*(self._customers.customer(u) for u in sorted(user_ids)))
        return all(c.personalise for c, _ in read), any(failed for _, failed in read)

    def _not_personalised(self, index: EmbeddingIndex, ranked: _Ranked) -> _Ranked:
        """Any list for a customer who objected to personalisation (GDPR Art. 21), or whose
        consent could not be read: global popularity, not their segment's (that is profiling
        too) nor their events'. It still goes through the policy step like every list, so their
        eligibility, holdings, applications and contact limits hold."""
        return _Ranked(
            self._popular_ranker(index, None),
            Strategy.POPULAR,
            Popular(None),
            ranked.degraded,
            without_consent=True,
        )

    # --- helpers ---------------------------------------------------------------------------------

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
        policy: BoundPolicy,
        rows_array: np.ndarray,
        scores: np.ndarray,
        ranked: _Ranked,
        explanation: dict | None,
        assignment: Assignment | None = None,
        with_contributions: bool = False,
    ) -> RecommendationResult:
        rows = rows_array.tolist()
        ids = index.items.ids_of(rows)
        degraded = ranked.degraded or not policy.items_known
        # Only the k items returned are explained, in one vectorised pass (reasons.py).
        reasons = explain(
            index, ranked.basis, rows_array, scores, with_contributions=with_contributions
        )
        listed = set(ids)
        wanted = ids + [p for p in reasons.evidence_products() if p not in listed]
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
        if not all(products):
            # The catalog lists them (the policy served no withdrawn product) but could not
            # describe them now: their details come from the model.
            products = [
                product or _model_details(index, row, product_id)
                for product, row, product_id in zip(products, rows, ids, strict=True)
            ]
        return RecommendationResult(
            product_ids=ids,
            products=products,
            scores=_rounded(scores),
            relevance=[round(value, 6) for value in reasons.relevance],
            reasons=reasons.reasons(details),
            strategy=ranked.strategy,
            model_version=index.version,
            degraded=degraded,
            policy_version=policy.version,
            explanation=explanation,
            contributions=reasons.contributions,
            experiment=assignment,
            without_consent=ranked.without_consent,
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


def _arm_strategy(assignment: Assignment | None) -> str | None:
    return None if assignment is None else assignment.arm.strategy


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
        """The touched rows, ascending (as the kernel wants)."""
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
