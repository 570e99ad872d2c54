import math
from datetime import UTC, datetime, timedelta

import pytest

from finverse_reco.events import parse_event
from finverse_reco.pipeline import WeightingConfig, event_weight

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
CONFIG = WeightingConfig(
    type_weights={
        "product_view": 1.0,
        "product_click": 1.5,
        "comparison": 2.0,
        "application_submit": 6.0,
        "search": 0.0,
    },
    view_saturation_seconds=30.0,
    decay_half_life_days=10.0,
    min_view_factor=0.1,
)


def doc(event_type: str, *, age: timedelta = timedelta(0), **data) -> dict:
    return {"user_id": "u1", "type": event_type, "timestamp": NOW - age, "data": data}


def weight_of(document: dict, config: WeightingConfig = CONFIG) -> float:
    (pair,) = event_weight(document, config, NOW)
    return pair[1]


def test_view_weight_saturates_with_duration():
    durations = [0.0, 5.0, 15.0, 30.0, 60.0, 300.0, 3600.0]
    weights = [weight_of(doc("product_view", productId="p1", viewDuration=d)) for d in durations]
    assert weights == sorted(weights)
    assert weights[0] == pytest.approx(0.1)  # a 0-second view still counts a little
    assert weights[3] == pytest.approx(1 - math.exp(-1))
    assert weights[-1] == pytest.approx(1.0)
    # Saturating: the first 30 s are worth more than the next 270.
    assert weights[3] - weights[0] > weights[5] - weights[3]


def test_view_without_duration_gets_the_configured_neutral_factor():
    assert weight_of(doc("product_view", productId="p1")) == pytest.approx(1.0)
    halved = WeightingConfig(type_weights=CONFIG.type_weights, missing_duration_factor=0.5)
    assert weight_of(doc("product_view", productId="p1"), halved) == pytest.approx(0.5)


def test_duration_only_shapes_views():
    short = weight_of(doc("product_click", productId="p1", viewDuration=0.0))
    assert short == pytest.approx(1.5)


def test_an_application_outweighs_a_view_with_default_weights():
    config = WeightingConfig()
    view = weight_of(doc("product_view", productId="p1", viewDuration=600.0), config)
    application = weight_of(doc("application_submit", productId="p1"), config)
    assert application > view


def test_comparison_spreads_its_weight_over_distinct_products():
    pairs = event_weight(
        doc("comparison", productId="p1", productIDs=["p1", "p2", "p3", "p4", "p2"]), CONFIG, NOW
    )
    assert [p for p, _ in pairs] == ["p1", "p2", "p3", "p4"]
    assert [w for _, w in pairs] == pytest.approx([0.5] * 4)
    assert sum(w for _, w in pairs) == pytest.approx(2.0)


def test_weight_halves_after_one_half_life_and_never_grows_for_future_events():
    fresh = weight_of(doc("product_click", productId="p1"))
    one = weight_of(doc("product_click", productId="p1", age=timedelta(days=10)))
    two = weight_of(doc("product_click", productId="p1", age=timedelta(days=20)))
    future = weight_of(doc("product_click", productId="p1", age=-timedelta(days=10)))
    assert one == pytest.approx(fresh / 2)
    assert two == pytest.approx(fresh / 4)
    assert future == pytest.approx(fresh)


def test_unknown_types_and_searches_carry_no_weight():
    assert event_weight(doc("wishlist_add", productId="p1"), CONFIG, NOW) == []
    assert event_weight(doc("search", productId="p1", query="cards"), CONFIG, NOW) == []


def test_works_on_validated_event_documents():
    event = parse_event(
        {
            "user_id": "u1",
            "type": "product_view",
            "timestamp": "2026-06-01T11:00:00Z",
            "data": {"productId": "p9", "viewDuration": 30},
        }
    )
    (pair,) = event_weight(event.to_document(), CONFIG, NOW)
    assert pair == ("p9", pytest.approx((1 - math.exp(-1)) * 2 ** (-1 / 240)))


def test_naive_timestamps_are_utc():
    naive = doc("product_click", productId="p1", age=timedelta(days=10))
    naive["timestamp"] = naive["timestamp"].replace(tzinfo=None)
    assert weight_of(naive) == pytest.approx(0.75)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"type_weights": {"product_view": -1.0}},
        {"view_saturation_seconds": 0.0},
        {"decay_half_life_days": -1.0},
        {"min_view_factor": 1.5},
    ],
)
def test_bad_configuration_is_refused(kwargs):
    with pytest.raises(ValueError):
        WeightingConfig(**kwargs)


def test_config_keeps_its_own_copy_of_the_weights():
    weights = {"product_view": 1.0}
    config = WeightingConfig(type_weights=weights)
    weights["product_view"] = 100.0
    assert config.type_weights["product_view"] == 1.0


def test_a_batch_weighs_as_its_documents_one_at_a_time():
    from finverse_reco.events import DEFAULT_TYPE_WEIGHTS, InteractionColumns
    from finverse_reco.pipeline import interaction_weights

    config = WeightingConfig(type_weights=DEFAULT_TYPE_WEIGHTS)
    now = datetime(2026, 11, 1, tzinfo=UTC)
    docs = [
        {
            **doc("product_view", productId="a", viewDuration=12),
            "timestamp": now - timedelta(days=3),
        },
        {**doc("search", query="cards"), "timestamp": now},
        {**doc("comparison", productIDs=["a", "b", "c"]), "timestamp": now},
        {**doc("application_submit", productId="d"), "timestamp": now - timedelta(days=90)},
        {**doc("product_view", productId="e"), "timestamp": now},
    ]
    one_by_one = [pair for document in docs for pair in event_weight(document, config, now)]
    assert interaction_weights(InteractionColumns.from_documents(docs), config, now) == one_by_one
    assert [pid for pid, _ in one_by_one] == ["a", "a", "b", "c", "d", "e"]
    assert interaction_weights(InteractionColumns.from_documents([]), config, now) == []
