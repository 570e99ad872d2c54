"""Property: whatever the catalog, the customers, their feedback (impressions, clicks, dismissals)
and the rules file, no endpoint or fallback serves a product that breaks a rule (contact limits and
dismissals included, on whatever channel the list is for; degraded answers included), and a list
holds `limit` products whenever that many may be served. A customer who objected to
personalisation gets the same guarantees from global popularity, on every endpoint. An experiment
arm serving a policy variant (a second rules file, drawn the same way) breaks neither file's
rules on any path, whatever the variant leaves out. Checked
against `policy_reference`, a plain rewrite of the rules, on the real service over a real SQLite
store."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from policy_reference import Feedback, Known, violations  # tests/support

from finverse_reco.catalog.local import LocalCatalog
from finverse_reco.customers import CustomerProfile
from finverse_reco.events import parse_event
from finverse_reco.index import EmbeddingIndex
from finverse_reco.pipeline import WeightingConfig
from finverse_reco.policy import CallerFilters, Policy, PolicyVariants, RulesFile
from finverse_reco.products import Product
from finverse_reco.service.experiments import Arm, Experiment, ExperimentRegistry
from finverse_reco.service.models import ModelHolder
from finverse_reco.service.recommendations import (
    RecommendationResult,
    RecommendationService,
    ServiceConfig,
)
from finverse_reco.store import open_store

CATEGORIES = ("credit_card", "mortgage", "savings_account", "investment_fund", "insurance")
INSTITUTIONS = ("Alpha Bank", "Beta Bank", "Gamma Credit Union", "Delta")
NOW = datetime.now(UTC)
DAY = timedelta(days=1)
KNOWN_USERS = ("known_0", "known_1", "known_2")
NEW_USERS = ("new_active", "new_quiet")
CHANNELS = ("email", "app")
# Hours back: on either side of the 1- and 7-day windows the rules are drawn with, far from both,
# and never at an application's hour (1, 2, 3 back).
HOURS_AGO = (0.5, 2.5, 5, 30, 200)


@st.composite
def products(draw, count: int) -> list[Product]:
    made = []
    for number in range(count):
        moment = st.sampled_from([None, NOW - 30 * DAY, NOW + 30 * DAY])
        made.append(
            Product(
                id=f"p{number:03d}",
                name=f"Product {number}",
                category=draw(st.sampled_from(CATEGORIES)),
                institution=draw(st.sampled_from(INSTITUTIONS)),
                risk_level=draw(st.none() | st.integers(1, 5)),
                min_age=draw(st.sampled_from([None, 0, 18, 21, 30, 60])),
                min_income=draw(st.sampled_from([None, 0.0, 20e3, 60e3, 150e3])),
                residencies=draw(st.sampled_from([None, ("US",), ("GB",), ("US", "GB")])),
                regions=draw(st.sampled_from([None, None, ("north",), ("south",)])),
                required_kyc=draw(st.sampled_from([None, None, "pending", "verified"])),
                available_from=draw(moment),
                available_until=draw(moment),
            )
        )
    return made


@st.composite
def profiles(draw, user_id: str, product_ids: list[str]) -> CustomerProfile | None:
    if draw(st.booleans()) is False:
        return None
    return CustomerProfile(
        user_id=user_id,
        birth_year=draw(st.none() | st.integers(1940, 2010)),
        annual_income=draw(st.none() | st.floats(0, 250e3)),
        income_range=draw(st.sampled_from([None, "0-25k", "50k-75k", "150k+"])),
        residency=draw(st.sampled_from([None, "US", "GB"])),
        region=draw(st.sampled_from([None, "north", "south"])),
        risk_profile=draw(st.none() | st.integers(1, 5)),
        kyc_status=draw(st.sampled_from([None, "none", "pending", "verified"])),
        holdings=tuple(draw(st.lists(st.sampled_from(product_ids), max_size=6))),
        personalisation_consent=draw(st.sampled_from([None, True, False])),
        updated_at=NOW - DAY,
    )


@st.composite
def rules_files(draw) -> dict:
    categories = st.lists(st.sampled_from(CATEGORIES), max_size=3, unique=True)
    rules: list[dict] = []
    if draw(st.booleans()):
        rules.append({"kind": "holdings", "repeatable_categories": draw(categories)})
    if draw(st.booleans()):
        rules.append({"kind": "applied", "repeatable_categories": draw(categories)})
    if draw(st.booleans()):
        requirements = {
            category: {
                "min_age": draw(st.none() | st.integers(0, 40)),
                "min_income": draw(st.none() | st.sampled_from([0.0, 30e3, 90e3])),
                "required_kyc": draw(st.sampled_from([None, "pending", "verified"])),
                "residencies": draw(st.sampled_from([None, ["US"], ["GB", "US"]])),
            }
            for category in draw(categories)
        }
        requirements = {
            name: {key: value for key, value in needs.items() if value is not None}
            for name, needs in requirements.items()
        }
        rules.append(
            {
                "kind": "eligibility",
                "fail_closed_categories": draw(categories),
                "categories": requirements,
            }
        )
    if draw(st.booleans()):
        rules.append(
            {
                "kind": "suitability",
                "unknown_risk_profile": draw(st.integers(1, 5)),
                "senior_age": draw(st.integers(40, 80)),
                "senior_risk_profile": draw(st.integers(1, 5)),
            }
        )
    for _ in range(draw(st.integers(0, 2))):
        limit = {
            "kind": "contact_limit",
            "max_impressions": draw(st.integers(1, 3)),
            "days": draw(st.sampled_from([1, 7])),
        }
        if draw(st.booleans()):
            limit["channel"] = draw(st.sampled_from(CHANNELS))
        if draw(st.booleans()):
            limit["category"] = draw(st.sampled_from(CATEGORIES))
        rules.append(limit)
    if draw(st.booleans()):
        rules.append({"kind": "dismissed", "days": draw(st.sampled_from([1, 30]))})
    draw(st.randoms()).shuffle(rules)
    diversity = {
        "max_per_category": draw(st.integers(0, 4)),
        "max_per_institution": draw(st.integers(0, 4)),
    }
    return {"version": "prop-1", "rules": rules, "diversity": diversity}


@st.composite
def feedback(draw, product_ids: list[str]) -> list[Feedback]:
    """A customer's reactions to lists, on a few products so that limits are reached."""
    few = st.sampled_from(product_ids[:8])
    made = []
    for _ in range(draw(st.integers(0, 10))):
        kind = draw(st.sampled_from(["impression", "impression", "product_click", "dismiss"]))
        at = NOW - timedelta(hours=draw(st.sampled_from(HOURS_AGO)))
        if kind == "impression":
            shown = tuple(draw(st.lists(few, min_size=1, max_size=3, unique=True)))
            made.append(Feedback(kind, shown, at, draw(st.sampled_from(CHANNELS))))
        else:
            made.append(Feedback(kind, (draw(few),), at))
    return made


@dataclass
class World:
    catalog: list[Product]
    listed: list[bool]
    seed: int
    seen: dict[str, list[str]]
    profiles: dict[str, CustomerProfile | None]
    applied: dict[str, list[str]]
    feedback: dict[str, list[Feedback]]
    channel: str | None
    rules: dict
    variant: dict  # an experiment arm's policy variant
    caller: CallerFilters
    limit: int
    exclude_seen: bool


@st.composite
def worlds(draw) -> World:
    count = draw(st.integers(12, 48))
    catalog = draw(products(count))
    ids = [p.id for p in catalog]
    listed = draw(st.lists(st.integers(0, 9), min_size=count, max_size=count))
    users = (*KNOWN_USERS, *NEW_USERS)
    caller_categories = sorted({p.category for p in catalog})
    caller = CallerFilters(
        categories=tuple(draw(st.lists(st.sampled_from(caller_categories), max_size=2))),
        institutions=tuple(draw(st.lists(st.sampled_from(INSTITUTIONS), max_size=2))),
        only=tuple(
            draw(st.lists(st.sampled_from(ids), max_size=count)) if draw(st.booleans()) else ()
        ),
        exclude=tuple(draw(st.lists(st.sampled_from(ids), max_size=4))),
    )
    return World(
        catalog=catalog,
        listed=[n > 0 for n in listed],  # about one product in ten withdrawn
        seed=draw(st.integers(0, 2**31)),
        seen={
            u: draw(st.lists(st.sampled_from(ids), max_size=5, unique=True)) for u in KNOWN_USERS
        },
        profiles={u: draw(profiles(u, ids)) for u in users},
        applied={u: draw(st.lists(st.sampled_from(ids), max_size=3)) for u in users},
        feedback={u: draw(feedback(ids)) for u in users},
        channel=draw(st.sampled_from([None, *CHANNELS])),
        rules=draw(rules_files()),
        variant=draw(rules_files()) | {"version": "prop-2"},
        caller=caller if draw(st.booleans()) else CallerFilters(),
        limit=draw(st.integers(1, 15)),
        exclude_seen=draw(st.booleans()),
    )


def build_index(world: World) -> EmbeddingIndex:
    rng = np.random.default_rng(world.seed)
    n, dim = len(world.catalog), 6
    row_of = {p.id: row for row, p in enumerate(world.catalog)}
    seen = [sorted({row_of[p] for p in world.seen[u]}) for u in KNOWN_USERS]
    return EmbeddingIndex(
        users=list(KNOWN_USERS),
        items=[p.id for p in world.catalog],
        user_vectors=rng.normal(size=(len(KNOWN_USERS), dim)),
        item_matrix=rng.normal(size=(n, dim + 1)),
        user_feature_names=[],
        user_feature_embeddings=np.zeros((0, dim)),
        user_feature_biases=np.zeros(0),
        item_feature_names=[],
        item_feature_embeddings=np.zeros((0, dim)),
        item_feature_biases=np.zeros(0),
        item_categories=[CATEGORIES.index(p.category) for p in world.catalog],
        category_names=CATEGORIES,
        item_institutions=[INSTITUTIONS.index(p.institution) for p in world.catalog],
        institution_names=INSTITUTIONS,
        popularity=rng.random(n),
        segment_keys=(),
        segment_popularity=np.zeros((0, n)),
        seen_indptr=np.concatenate([[0], np.cumsum([len(s) for s in seen])]).astype(np.int64),
        seen_indices=np.array([r for s in seen for r in s], dtype=np.int32),
        version="prop",
    )


def events_of(world: World) -> list:
    events = []
    for user, applied in world.applied.items():
        for n, product_id in enumerate(applied):
            raw = {
                "user_id": user,
                "session_id": f"sess_{user}",
                "type": "application_submit",
                "timestamp": (NOW - timedelta(hours=n + 1)).isoformat(),
                "data": {"productId": product_id},
            }
            events.append(parse_event(raw))
    for user, reactions in world.feedback.items():
        for n, reaction in enumerate(reactions):
            raw = {"user_id": user, "type": reaction.kind, "timestamp": reaction.at.isoformat()}
            if reaction.kind == "impression":
                raw["recommendation_id"] = f"rec_{user}_{n}"
                raw["data"] = {"productIDs": list(reaction.products), "channel": reaction.channel}
            else:
                raw["data"] = {"productId": reaction.products[0]}
            events.append(parse_event(raw))
    return events


def check(
    result: RecommendationResult,
    world: World,
    known: Known,
    candidates: set[str],
    catalog: dict[str, Product],
    variant: bool = False,
) -> None:
    """No served product breaks a rule (the base file's, and the variant's for its arm), and the
    list holds `limit` products when that many pass."""
    served = result.product_ids
    assert len(served) == len(set(served)), served
    assert result.policy_version == ("prop-1+prop-2" if variant else "prop-1")
    files = (world.rules, world.variant) if variant else (world.rules,)

    def broken(product_id: str) -> list[str]:
        now = datetime.now(UTC)
        return [
            kind for rules in files for kind in violations(product_id, catalog, rules, known, now)
        ]

    for product_id in served:
        assert not broken(product_id), (product_id, broken(product_id), result.strategy)
        assert product_id in candidates, (product_id, "outside the caller's filters")
    eligible = {p for p in candidates if not broken(p)}
    assert len(served) == min(world.limit, len(eligible)), (len(served), len(eligible))
    return eligible


def diversified(ranked: list[str], world: World) -> list[str]:
    """docs/POLICY.md's diversity, plainly: walk the best `window` × limit eligible products,
    take each unless its category or institution has its cap; fill up with the skipped ones."""
    diversity, limit = world.rules["diversity"], world.limit
    category_cap = diversity["max_per_category"] or limit
    institution_cap = diversity["max_per_institution"] or limit
    if not (diversity["max_per_category"] or diversity["max_per_institution"]):
        return ranked[:limit]
    by_id = {p.id: p for p in world.catalog}
    taken, skipped = [], []
    categories, institutions = Counter(), Counter()
    for product_id in ranked[: limit * 3]:
        product = by_id[product_id]
        if len(taken) == limit:
            break
        if categories[product.category] < category_cap and (
            institutions[product.institution] < institution_cap
        ):
            taken.append(product_id)
            categories[product.category] += 1
            institutions[product.institution] += 1
        else:
            skipped.append(product_id)
    if len(taken) < limit:
        keep = set(taken + skipped[: limit - len(taken)])
        taken = [p for p in ranked if p in keep]
    return taken


def positives(world: World, user: str) -> set[str]:
    """The products a new user's stored events weigh for (and their list leaves out as seen):
    applied for or clicked, unless dismissed at or after that (docs/FEEDBACK.md)."""
    events = [(NOW - timedelta(hours=n + 1), p) for n, p in enumerate(world.applied[user])]
    events += [(f.at, f.products[0]) for f in world.feedback[user] if f.kind == "product_click"]
    dismissed: dict[str, datetime] = {}
    for f in world.feedback[user]:
        if f.kind == "dismiss":
            dismissed[f.products[0]] = max(f.at, dismissed.get(f.products[0], f.at))
    return {p for at, p in events if p not in dismissed or dismissed[p] < at}


def allowed_by_caller(world: World) -> set[str]:
    caller = world.caller
    allowed = set()
    for product in world.catalog:
        if caller.categories and product.category not in caller.categories:
            continue
        if caller.institutions and product.institution not in caller.institutions:
            continue
        if caller.only and product.id not in caller.only:
            continue
        if product.id in caller.exclude:
            continue
        allowed.add(product.id)
    return allowed


async def scenario(world: World, directory: Path) -> None:
    index = build_index(world)
    listed = [p for p, keep in zip(world.catalog, world.listed, strict=True) if keep]
    catalog = {p.id: p for p in listed}
    store = open_store(f"sqlite:///{directory}/{uuid.uuid4().hex}.db")
    await store.open()
    for profile in world.profiles.values():
        if profile is not None:
            await store.put_profile(profile)
    await store.insert_many(events_of(world))
    base_policy = Policy(RulesFile.model_validate(world.rules))

    def served(experiments: ExperimentRegistry | None = None) -> RecommendationService:
        return RecommendationService(
            ModelHolder(index),
            store,
            LocalCatalog(listed),
            ServiceConfig(weighting=WeightingConfig()),
            base_policy,
            experiments=experiments,
        )

    def served_in_one_arm(
        arm: Arm, variants: PolicyVariants | None = None
    ) -> RecommendationService:
        """The service with one running experiment whose only arm is `arm`."""
        registry = ExperimentRegistry(directory / f"{uuid.uuid4().hex}.json", variants)
        registry.start(Experiment(id=arm.name, salt="s", arms=(arm,), started_at=NOW))
        return served(registry)

    service = served()
    caller, limit, channel = world.caller, world.limit, world.channel
    base = allowed_by_caller(world)

    def known(user: str) -> Known:
        profile, applied = world.profiles[user], frozenset(world.applied[user])
        return Known(profile, applied, feedback=tuple(world.feedback[user]), channel=channel)

    def objects(user: str) -> bool:
        profile = world.profiles[user]
        return profile is not None and profile.personalisation_consent is False

    def check_consent(result: RecommendationResult, user: str) -> None:
        if objects(user):
            assert (result.strategy.value, result.without_consent) == ("popular", True)

    for user in KNOWN_USERS:
        seen = set(world.seen[user]) if world.exclude_seen else set()
        result = await service.for_user(
            user, limit, caller=caller, exclude_seen=world.exclude_seen, channel=channel
        )
        eligible = check(result, world, known(user), base - seen, catalog)
        check_consent(result, user)
        # The list itself: the model's (or, without consent, global popularity's) ranking of what
        # the rules allow, then the caps.
        allowed = np.array(sorted(index.items.row(p) for p in eligible), dtype=np.int64)
        if objects(user):
            rows, _ = index.popular(limit * 3, allowed=allowed).of(0)
        else:
            query = index.user_queries([index.users.row(user)])
            rows, _ = index.rank(query, limit * 3, allowed=allowed).of(0)
        assert result.product_ids == diversified(index.items.ids_of(rows), world)
    # A new user: folded in from their stored applications and clicks, else popular.
    for user in NEW_USERS:
        touched = positives(world, user) if world.exclude_seen else set()
        result = await service.for_user(
            user, limit, caller=caller, exclude_seen=world.exclude_seen, channel=channel
        )
        check(result, world, known(user), base - touched, catalog)
        check_consent(result, user)
    # The popular arm of an experiment, for customers the model knows or not: the same rules.
    in_arm = served_in_one_arm(Arm(name="popular", share=1.0, strategy="popular"))
    for user in (KNOWN_USERS[1], NEW_USERS[0]):
        seen = set(world.seen[user]) if user in KNOWN_USERS and world.exclude_seen else set()
        popular = await in_arm.for_user(
            user, limit, caller=caller, exclude_seen=world.exclude_seen, channel=channel
        )
        assert popular.strategy.value == "popular" and popular.experiment.arm.name == "popular"
        check(popular, world, known(user), base - seen, catalog)
        check_consent(popular, user)
    # An experiment whose one arm serves the variant on top of the rules.
    variants = directory / uuid.uuid4().hex
    variants.mkdir()
    (variants / "variant.toml").write_text(toml_of(world.variant))
    with_variant = served_in_one_arm(
        Arm(name="variant", share=1.0, policy="variant.toml"),
        PolicyVariants(base_policy, variants),
    )
    # The session's events name its customer; without events it is anonymous (and popular).
    session = await service.for_session(
        f"sess_{KNOWN_USERS[0]}", limit, caller=caller, channel=channel
    )
    in_session = set(world.applied[KNOWN_USERS[0]])
    session_customer = known(KNOWN_USERS[0]) if in_session else Known()
    check(session, world, session_customer, base - in_session, catalog)
    if in_session:
        check_consent(session, KNOWN_USERS[0])
    product = world.catalog[0].id
    for in_variant in (False, True):
        serving = with_variant if in_variant else service
        similar = await serving.similar_products(
            product, limit, caller=caller, user_id=NEW_USERS[1], channel=channel
        )
        check(similar, world, known(NEW_USERS[1]), base - {product}, catalog, in_variant)
        check_consent(similar, NEW_USERS[1])
        anonymous = await serving.similar_products(product, limit, caller=caller)
        check(anonymous, world, Known(), base - {product}, catalog, in_variant)
    # The variant's arm on the other paths: known and new customers, the session's customer.
    for user in (*KNOWN_USERS, *NEW_USERS):
        seen = set(world.seen[user]) if user in KNOWN_USERS and world.exclude_seen else set()
        if user in NEW_USERS and world.exclude_seen:
            seen = positives(world, user)
        result = await with_variant.for_user(
            user, limit, caller=caller, exclude_seen=world.exclude_seen, channel=channel
        )
        assert result.experiment.arm.name == "variant"
        check(result, world, known(user), base - seen, catalog, variant=True)
        check_consent(result, user)
    session = await with_variant.for_session(
        f"sess_{KNOWN_USERS[0]}", limit, caller=caller, channel=channel
    )
    check(session, world, session_customer, base - in_session, catalog, variant=True)

    await store.close()  # the store is down: every answer is degraded and as safe
    for in_variant in (False, True):
        serving = with_variant if in_variant else service
        for user in (*KNOWN_USERS, *NEW_USERS):
            result = await serving.for_user(
                user, limit, caller=caller, exclude_seen=False, channel=channel
            )
            assert result.degraded
            # Consent cannot be read: nobody is personalised (fail closed).
            assert (result.strategy.value, result.without_consent) == ("popular", True)
            check(result, world, Known(), base, catalog, in_variant)
        session = await serving.for_session(f"sess_{KNOWN_USERS[0]}", limit, caller=caller)
        assert session.degraded and session.strategy.value == "popular"
        check(session, world, Known(), base, catalog, in_variant)


def toml_of(rules: dict) -> str:
    """A rules file as TOML (inline tables: the drawn rules are a few levels of plain values)."""

    def value(v) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, str):
            return json.dumps(v)
        if isinstance(v, list | tuple):
            return "[" + ", ".join(value(item) for item in v) + "]"
        if isinstance(v, dict):
            return "{" + ", ".join(f"{key} = {value(item)}" for key, item in v.items()) + "}"
        return repr(v)

    return "\n".join(f"{key} = {value(item)}" for key, item in rules.items()) + "\n"


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(world=worlds())
def test_no_endpoint_serves_what_a_rule_forbids_and_lists_are_filled(world, tmp_path) -> None:
    asyncio.run(scenario(world, tmp_path))
