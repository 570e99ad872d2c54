"""The hidden preferences show in behaviour strongly enough for a model to learn them."""

from __future__ import annotations

from collections import Counter, defaultdict
from statistics import mean

from finverse_reco.demo import DemoWorld
from finverse_reco.demo.population import AGE_GROUPS, AGE_YEARS, INCOME_BOUNDS, INCOME_RANGES
from finverse_reco.demo.products import INSTITUTIONS


def _segment(event: dict, *keys: str) -> tuple[str, ...]:
    demographics = event["data"]["userDemographics"]
    return tuple(demographics[k] for k in keys)


def _top(counter: Counter, k: int = 10) -> set[str]:
    return {product for product, _ in counter.most_common(k)}


def test_age_groups_favour_different_products(world: DemoWorld, touched: list[list[str]]) -> None:
    by_age: dict[str, Counter] = defaultdict(Counter)
    for event, products in zip(world.events, touched, strict=True):
        by_age[event["data"]["userDemographics"]["age_group"]].update(products)
    assert len(_top(by_age["18-24"]) & _top(by_age["55-64"])) <= 5
    assert len(_top(by_age["25-34"]) & _top(by_age["65+"])) <= 5


def test_life_stage_drives_categories(world: DemoWorld, touched: list[list[str]]) -> None:
    category = {p.id: p.category for p in world.products}
    by_age: dict[str, Counter] = defaultdict(Counter)
    for event, products in zip(world.events, touched, strict=True):
        by_age[event["data"]["userDemographics"]["age_group"]].update(category[p] for p in products)

    def share(age: str, name: str) -> float:
        return by_age[age][name] / sum(by_age[age].values())

    assert share("18-24", "student_account") > 3 * share("45-54", "student_account")
    assert share("35-44", "mortgage") > 3 * share("65+", "mortgage")
    assert share("65+", "certificate_of_deposit") > 3 * share("18-24", "certificate_of_deposit")


def test_demographic_popularity_beats_global_popularity(
    world: DemoWorld, touched: list[list[str]]
) -> None:
    """Cold start by demographics is learnable: on the last fifth of time, the products popular in
    a user's segment predict what they touch far better than the products popular overall."""
    cut = len(world.events) * 4 // 5
    overall: Counter = Counter()
    by_segment: dict[tuple[str, ...], Counter] = defaultdict(Counter)
    for event, products in zip(world.events[:cut], touched[:cut], strict=True):
        overall.update(products)
        by_segment[_segment(event, "age_group", "income_range")].update(products)
    overall_top = _top(overall)
    segment_top = {segment: _top(counts) for segment, counts in by_segment.items()}
    overall_hits = segment_hits = total = 0
    for event, products in zip(world.events[cut:], touched[cut:], strict=True):
        for product in products:
            total += 1
            overall_hits += product in overall_top
            segment_hits += product in segment_top[_segment(event, "age_group", "income_range")]
    assert segment_hits / total > overall_hits / total + 0.1


def test_next_product_in_a_session_shares_its_category(
    world: DemoWorld, touched: list[list[str]]
) -> None:
    category = {p.id: p.category for p in world.products}
    sessions: dict[str, list[str]] = defaultdict(list)
    for event, products in zip(world.events, touched, strict=True):
        if products:
            sessions[event["session_id"]].append(category[products[0]])
    same = total = 0
    for categories in sessions.values():
        for position in range(1, len(categories)):
            intent = Counter(categories[:position]).most_common(1)[0][0]
            same += categories[position] == intent
            total += 1
    assert same / total > 0.6


def test_requirements_are_mostly_respected(world: DemoWorld, touched: list[list[str]]) -> None:
    oldest = dict(zip(AGE_GROUPS, (high for _, high in AGE_YEARS), strict=True))
    richest = dict(zip(INCOME_RANGES, (high for _, high in INCOME_BOUNDS), strict=True))
    catalog = {p.id: p for p in world.products}
    surely_ineligible = total = 0
    for event, products in zip(world.events, touched, strict=True):
        age_group, income_range = _segment(event, "age_group", "income_range")
        for product_id in products:
            product = catalog[product_id]
            total += 1
            surely_ineligible += (
                product.min_age > oldest[age_group] or product.min_income > richest[income_range]
            )
    assert surely_ineligible / total < 0.05


def test_regional_institutions_serve_their_region(
    world: DemoWorld, touched: list[list[str]]
) -> None:
    region = {i.name: i.region for i in INSTITUTIONS if i.region}
    assert len(region) >= 3 and len(region) < len(INSTITUTIONS)
    institution = {p.id: p.institution for p in world.products}
    local = regional = 0
    for event, products in zip(world.events, touched, strict=True):
        for product_id in products:
            home = region.get(institution[product_id])
            if home:
                regional += 1
                local += home == event["data"]["userDemographics"]["location"]
    assert regional > 0 and local / regional > 0.8


def test_income_shapes_fee_tolerance(world: DemoWorld) -> None:
    fee = {p.id: p.annual_fee for p in world.products}
    fees: dict[str, list[float]] = defaultdict(list)
    for event in world.events:
        if event["type"] == "application_start":
            fees[event["data"]["userDemographics"]["income_range"]].append(
                fee[event["data"]["productId"]]
            )
    assert mean(fees["150k+"]) > 1.5 * mean(fees["0-25k"])


def test_liked_products_are_viewed_longer(world: DemoWorld) -> None:
    chosen = {
        (e["user_id"], e["data"]["productId"])
        for e in world.events
        if e["type"] in ("favorite", "application_start")
    }
    liked, others = [], []
    for event in world.events:
        if event["type"] == "product_view":
            key = (event["user_id"], event["data"]["productId"])
            (liked if key in chosen else others).append(event["data"]["viewDuration"])
    assert mean(liked) > 1.15 * mean(others)
