"""Training the hybrid model and its versioned artifacts. No HTTP, no store."""

from finverse_reco.model.hybrid import FitReport, HybridModel, ModelParams
from finverse_reco.model.params import (
    BlendParams,
    ParamsFileError,
    TrainingParams,
    read_params_file,
    write_params_file,
)
from finverse_reco.model.training import build_index, fit_model, split_interactions, train

__all__ = [
    "BlendParams",
    "FitReport",
    "HybridModel",
    "ModelParams",
    "ParamsFileError",
    "TrainingParams",
    "build_index",
    "fit_model",
    "read_params_file",
    "split_interactions",
    "train",
    "write_params_file",
]
