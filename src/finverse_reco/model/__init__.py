"""Training the hybrid model and its versioned artifacts. No HTTP, no store."""

from finverse_reco.model.hybrid import FitReport, HybridModel, ModelParams
from finverse_reco.model.training import build_index, split_interactions, train

__all__ = [
    "FitReport",
    "HybridModel",
    "ModelParams",
    "build_index",
    "split_interactions",
    "train",
]
