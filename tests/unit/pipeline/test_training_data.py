import random
from collections import defaultdict
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from finverse_reco.events import InteractionColumns, parse_event
from finverse_reco.pipeline import (
    FeatureConfig,
    WeightingConfig,
    build_training_data,
    event_weight,
)
from finverse_reco.pipeline.training_data import TrainingDataBuilder
from finverse_reco.products import Product
from finverse_reco.store import SCAN_FIELDS

T0 = datetime(2026, 3, 1, tzinfo=UTC)
CONFIG = WeightingConfig(decay_half_life_days=30.0)
FEATURES = FeatureConfig(
    user_identity_weight=0.4, item_identity_weight=0.3, min_segment_users=1, min_search_term_users=1
)

CATALOG = [
    Product(
        "card-1",
        "Card One",
        "credit_card",
        "Alpha Bank",
        interest_rate=19.9,
        annual_fee=0.0,
        risk_level=2,
    ),
    Product(
        "loan-1",
        "Loan One",
        "personal_loan",
        "Beta Bank",
        interest_rate=6.5,
        term_months=36,
        min_income=30000.0,
    ),
    Product("dep-1", "Deposit One", "deposit", "Alpha Bank", interest_rate=3.1, term_months=12),
    Product("cold-1", "Never Seen", "mortgage", "Gamma Bank", interest_rate=4.2, term_months=300),
]


def ev(user, event_type, minutes, **data):
    return {
        "event_id": f"{user}-{event_type}-{minutes}",
        "user_id": user,
        "session_id": f"s-{user}",
        "type": event_type,
        "timestamp": T0 + timedelta(minutes=minutes),
        "data": data,
    }


def sample_docs():
    return [
        ev(
            "alice",
            "product_view",
            0,
            productId="card-1",
            viewDuration=20.0,
            category="credit_card",
            userDemographics={"age_group": "18-24", "location": "Leeds"},
        ),
        ev(
            "alice",
            "application_start",
            90,
            productId="card-1",
            userDemographics={"age_group": "25-34", "income_range": "50k-75k", "location": "York"},
        ),
        ev("alice", "comparison", 60, productIDs=["card-1", "loan-1"], institution="Alpha Bank"),
        ev(
            "bob",
            "product_view",
            30,
            productId="loan-1",
            viewDuration=0.0,
            userDemographics={"age_group": "35-44"},
        ),
        ev(
            "bob",
            "product_click",
            31,
            productId="offcat-9",
            category="savings",
            institution="Delta Bank",
        ),
        ev("bob", "favorite", 5000, productId="dep-1"),
        ev(
            "carol",
            "search",
            10,
            query="Best cashback credit cards",
            category="credit_card",
            userDemographics={"age_group": "25-34"},
        ),
        ev("dave", "brand_new_type", 15, productId="card-1"),
    ]


@pytest.fixture(scope="module")
def data():
    return build_training_data([sample_docs()], CATALOG, CONFIG, feature_config=FEATURES)


def user_features(data, user_id):
    row = data.user_features.getrow(data.users.row(user_id))
    return {data.user_feature_names.id(c): v for c, v in zip(row.indices, row.data, strict=True)}


def item_features(data, item_id):
    row = data.item_features.getrow(data.items.row(item_id))
    return {data.item_feature_names.id(c): v for c, v in zip(row.indices, row.data, strict=True)}


def test_ids_are_sorted_and_include_cold_catalog_items_and_off_catalog_products(data):
    assert data.users.ids == ("alice", "bob", "carol", "dave")
    assert list(data.items) == sorted(["card-1", "loan-1", "dep-1", "cold-1", "offcat-9"])
    assert data.interactions.shape == (4, 5)
    assert data.interactions.dtype == np.float32
    assert data.counts["cold_items"] == 1
    assert data.counts["unknown_type"] == 1
    assert data.counts["searches"] == 1


def test_matrix_holds_summed_decayed_event_weights(data):
    newest = max(d["timestamp"] for d in sample_docs())
    expected = defaultdict(float)
    for document in sample_docs():
        for product_id, weight in event_weight(document, CONFIG, newest):
            expected[(document["user_id"], product_id)] += weight
    dense = data.interactions.toarray()
    actual = {
        (data.users.id(u), data.items.id(i)): float(dense[u, i])
        for u, i in zip(*dense.nonzero(), strict=True)
    }
    assert actual.keys() == expected.keys()
    for key, value in expected.items():
        assert actual[key] == pytest.approx(value, rel=1e-6)
    assert data.reference_time == newest
    assert data.data_window == (T0, newest)


def test_decay_reference_is_the_now_argument():
    later = T0 + timedelta(days=60)
    aged = build_training_data([sample_docs()], CATALOG, CONFIG, later, feature_config=FEATURES)
    fresh = build_training_data([sample_docs()], CATALOG, CONFIG, feature_config=FEATURES)
    ratio = aged.interactions.toarray().sum() / fresh.interactions.toarray().sum()
    assert 0.2 < ratio < 0.3  # about two half-lives later


def test_latest_demographics_win_whatever_the_scan_order(data):
    assert data.user_demographics["alice"] == {
        "age_group": "25-34",
        "income_range": "50k-75k",
        "location": "York",
    }
    features = user_features(data, "alice")
    assert "age_group:25-34" in features and "age_group:18-24" not in features
    assert "location:York" in features


def test_user_rows_sum_to_one_with_the_identity_share_as_configured(data):
    sums = np.asarray(data.user_features.sum(axis=1)).ravel()
    assert sums == pytest.approx(np.ones(4), abs=1e-6)
    alice = user_features(data, "alice")
    assert alice["user:alice"] == pytest.approx(0.4)
    assert {
        "engaged_category:credit_card",
        "engaged_category:personal_loan",
        "engaged_institution:Alpha Bank",
    } <= alice.keys()
    assert any(name.startswith("activity:") for name in alice)


def test_only_the_strongest_engagements_become_features():
    narrow = FeatureConfig(max_engaged_per_user=1)
    data = build_training_data([sample_docs()], CATALOG, CONFIG, feature_config=narrow)
    engaged = [n for n in user_features(data, "alice") if n.startswith("engaged_category:")]
    assert engaged == ["engaged_category:credit_card"]  # the application outweighs the loan


@pytest.mark.parametrize(
    "kwargs",
    [
        {"user_identity_weight": 1.0},
        {"item_identity_weight": -0.1},
        {"max_engaged_per_user": 0},
        {"activity_edges": (3.0, 1.0)},
    ],
)
def test_bad_feature_configuration_is_refused(kwargs):
    with pytest.raises(ValueError):
        FeatureConfig(**kwargs)


def test_search_only_users_get_search_features_but_no_identity(data):
    carol = user_features(data, "carol")
    assert "user:carol" not in carol
    assert {
        "search_category:credit_card",
        "search_term:cashback",
        "search_term:credit",
        "search_term:cards",
        "age_group:25-34",
    } <= carol.keys()
    assert "search_term:best" not in carol  # stop word
    assert sum(carol.values()) == pytest.approx(1.0)


def test_item_features_come_from_catalog_or_event_data(data):
    card = item_features(data, "card-1")
    assert card["item:card-1"] == pytest.approx(0.3)  # the item share, apart from the user one
    assert {
        "category:credit_card",
        "institution:Alpha Bank",
        "interest_rate:12-20",
        "annual_fee:<1",
        "risk_level:2",
    } <= card.keys()
    cold = item_features(data, "cold-1")
    assert "item:cold-1" not in cold
    assert {"category:mortgage", "institution:Gamma Bank", "term_months:>=240"} <= cold.keys()
    assert sum(cold.values()) == pytest.approx(1.0)
    off_catalog = item_features(data, "offcat-9")
    assert {"item:offcat-9", "category:savings", "institution:Delta Bank"} <= off_catalog.keys()
    assert data.item_meta["offcat-9"] == {"category": "savings", "institution": "Delta Bank"}


def test_a_comparison_does_not_attribute_its_institution_to_every_product():
    docs = [ev("erin", "comparison", 0, productIDs=["x-1", "x-2"], institution="Alpha Bank")]
    data = build_training_data([docs], [], CONFIG)
    assert data.item_meta["x-1"]["institution"] == ""


def test_popularity_is_decayed_weight_per_item_and_per_segment(data):
    column_sums = np.asarray(data.interactions.sum(axis=0)).ravel()
    assert data.popularity == pytest.approx(column_sums)
    bob_row = data.users.row("bob")
    assert data.segment_popularity["age_group=35-44"] == pytest.approx(
        data.interactions.toarray()[bob_row]
    )
    assert "age_group=25-34" in data.segment_popularity


def test_batching_and_order_do_not_change_the_result(data):
    docs = sample_docs()
    random.Random(7).shuffle(docs)
    builder = TrainingDataBuilder(CONFIG, feature_config=FEATURES)
    for start in range(0, len(docs), 3):
        builder.add(InteractionColumns.from_documents(iter(docs[start : start + 3])))
    again = builder.build(CATALOG)
    assert again.users == data.users and again.items == data.items
    assert again.interactions.toarray() == pytest.approx(data.interactions.toarray())
    assert again.user_feature_names == data.user_feature_names
    assert again.user_features.toarray() == pytest.approx(data.user_features.toarray())
    assert again.item_features.toarray() == pytest.approx(data.item_features.toarray())


def test_the_scan_fields_are_all_training_reads(data):
    # MongoDB's training scan projects to SCAN_FIELDS: the matrices must not change.
    projected = [{name: doc[name] for name in SCAN_FIELDS} for doc in sample_docs()]
    again = build_training_data([projected], CATALOG, CONFIG, feature_config=FEATURES)
    assert again.users == data.users and again.items == data.items
    assert again.interactions.toarray() == pytest.approx(data.interactions.toarray())
    assert again.user_features.toarray() == pytest.approx(data.user_features.toarray())
    assert again.item_features.toarray() == pytest.approx(data.item_features.toarray())
    assert again.item_meta == data.item_meta


def test_malformed_documents_are_skipped_and_counted_the_rest_kept():
    good = sample_docs()
    bad = [
        {"type": "product_view", "timestamp": T0, "data": {"productId": "card-1"}},
        {"user_id": "", "type": "product_view", "timestamp": T0, "data": {"productId": "card-1"}},
        {"user_id": "x", "type": "product_view", "timestamp": 12345, "data": {}},
        {"user_id": "y", "type": "product_view", "timestamp": T0, "data": {"productId": 7}},
        {"user_id": "z", "type": "product_view", "timestamp": T0, "data": ["nope"]},
        {"user_id": "w", "type": "comparison", "timestamp": T0, "data": {"productIDs": [1, 2]}},
        {"user_id": "v", "type": ["list"], "timestamp": T0, "data": {}},
        "not a document",
    ]
    data = build_training_data([good[:4] + bad + good[4:]], CATALOG, CONFIG)
    reference = build_training_data([good], CATALOG, CONFIG)
    assert data.counts["skipped"] == len(bad)
    assert data.counts["documents"] == len(good) + len(bad)
    assert data.users == reference.users
    assert data.interactions.toarray() == pytest.approx(reference.interactions.toarray())


def test_iso_string_and_naive_timestamps_are_read_as_utc():
    aware = [ev("u", "product_click", 0, productId="p")]
    text = [{**aware[0], "timestamp": "2026-03-01T00:00:00+00:00"}]
    naive = [{**aware[0], "timestamp": T0.replace(tzinfo=None)}]
    for docs in (text, naive):
        data = build_training_data([docs], [], CONFIG)
        assert data.data_window == (T0, T0)


def test_empty_input_still_gives_catalog_items():
    data = build_training_data([], CATALOG, CONFIG)
    assert list(data.items) == sorted(p.id for p in CATALOG)
    assert data.interactions.nnz == 0
    assert len(data.users) == 0
    assert np.asarray(data.item_features.sum(axis=1)).ravel() == pytest.approx(np.ones(4))


def test_documents_of_validated_events_are_read_as_is():
    event = parse_event(
        {
            "user_id": "u1",
            "type": "product_view",
            "timestamp": "2026-03-01T00:00:00Z",
            "data": {
                "productId": "card-1",
                "viewDuration": 30,
                "userDemographics": {"age_group": "25-34"},
            },
        }
    )
    data = build_training_data([[event.to_document()]], CATALOG, CONFIG)
    (pair,) = event_weight(event.to_document(), CONFIG, event.timestamp)
    assert data.interactions.toarray()[0, data.items.row("card-1")] == pytest.approx(pair[1])
    assert data.user_demographics == {"u1": {"age_group": "25-34"}}
