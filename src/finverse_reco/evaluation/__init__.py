"""The evaluation harness behind `finverse-reco evaluate`: datasets, split protocols, the models
compared side by side, ranking metrics. Modules import heavy libraries only when used."""

# Model names as they appear in results, in table order.
MODEL_NAMES = (
    "popularity",
    "segment-popularity",
    "ease",
    "lightfm-cf",
    "hybrid",
    "implicit-als",
    "implicit-bpr",
)
