"""The serving index: precomputed embeddings, top-k scoring, filters and fold-in."""

from finverse_reco.index.embedding_index import ARRAY_FIELDS, MAPPING_FIELDS, EmbeddingIndex

__all__ = ["ARRAY_FIELDS", "MAPPING_FIELDS", "EmbeddingIndex"]
