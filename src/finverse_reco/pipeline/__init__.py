"""Interactions → weighted user×item matrix, feature matrices and id mappings. No I/O."""

from finverse_reco.pipeline.features import FeatureConfig
from finverse_reco.pipeline.training_data import (
    TrainingData,
    TrainingDataBuilder,
    build_labelled_training_data,
    build_training_data,
)
from finverse_reco.pipeline.weighting import WeightingConfig, event_weight, interaction_weights

__all__ = [
    "FeatureConfig",
    "TrainingData",
    "TrainingDataBuilder",
    "WeightingConfig",
    "build_labelled_training_data",
    "build_training_data",
    "event_weight",
    "interaction_weights",
]
