"""The serving index: a trained model's frozen arrays and id maps; one top-k; fold-in; popularity."""

from finverse_reco.index.embedding_index import ARRAY_FIELDS, FEATURE_ROW_FIELDS, EmbeddingIndex
from finverse_reco.index.foldin import fold_in, item_row_from_features, user_query_from_features
from finverse_reco.index.topk import TopK, topk_of_scores

__all__ = [
    "ARRAY_FIELDS",
    "FEATURE_ROW_FIELDS",
    "EmbeddingIndex",
    "TopK",
    "fold_in",
    "item_row_from_features",
    "topk_of_scores",
    "user_query_from_features",
]
