"""The model feature allow-list: attributes left out never become a feature or a segment."""

from datetime import UTC, datetime, timedelta

import numpy as np
import scipy.sparse as sp

from finverse_reco.pipeline import (
    FeatureConfig,
    WeightingConfig,
    build_labelled_training_data,
    build_training_data,
)

T0 = datetime(2026, 3, 1, tzinfo=UTC)
DEMOGRAPHICS = {"age_group": "25-34", "income_range": "50k-75k", "location": "London"}


def documents(n_users: int = 6) -> list[dict]:
    return [
        {
            "user_id": f"u{i}",
            "type": "product_view",
            "timestamp": T0 + timedelta(minutes=i),
            "data": {"productId": f"p{i % 2}", "userDemographics": DEMOGRAPHICS},
        }
        for i in range(n_users)
    ]


def names_with(prefixes, names) -> list[str]:
    return [name for name in names if name.startswith(prefixes)]


def test_all_attributes_are_features_by_default():
    data = build_training_data(
        [documents()], [], WeightingConfig(), feature_config=FeatureConfig(min_segment_users=1)
    )
    assert names_with(("location:",), data.user_feature_names) == ["location:London"]
    assert "location=London" in data.segment_popularity


def test_left_out_attributes_are_neither_features_nor_segments():
    config = FeatureConfig(min_segment_users=1, user_attributes=("age_group", "income_range"))
    data = build_training_data([documents()], [], WeightingConfig(), feature_config=config)
    assert names_with(("location",), data.user_feature_names) == []
    assert sorted(data.segment_popularity) == ["age_group=25-34", "income_range=50k-75k"]
    assert all("location" not in demo for demo in data.user_demographics.values())
    assert names_with(("age_group:",), data.user_feature_names) == ["age_group:25-34"]


def test_labelled_datasets_obey_the_allow_list():
    labels = [{"gender": "F", "zip_region": "9"}, {"gender": "M", "zip_region": "1"}]
    data = build_labelled_training_data(
        sp.csr_matrix(np.eye(2)),
        ["a", "b"],
        ["x", "y"],
        labels,
        [[], []],
        feature_config=FeatureConfig(user_attributes=("gender",)),
    )
    assert names_with(("gender:", "zip_region:"), data.user_feature_names) == [
        "gender:F",
        "gender:M",
    ]


def test_allowed_demographics_filters_a_mapping():
    config = FeatureConfig(user_attributes=("age_group",))
    assert config.allowed_demographics(DEMOGRAPHICS) == {"age_group": "25-34"}
    assert FeatureConfig().allowed_demographics(DEMOGRAPHICS) == DEMOGRAPHICS
    assert config.allowed_demographics(None) == {}
