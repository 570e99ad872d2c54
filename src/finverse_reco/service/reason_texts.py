"""Every sentence a recommendation's reason can say: the one file to edit (or translate).

`{product}` is a product's name, `{verb}` what the customer did with it (past tense, from the
event type), `{audience}` a customer segment and `{features}` product features in words. Which
template applies, and what fills it, is decided in `reasons.py` from the model's split of the
score; nothing here decides anything.
"""

from __future__ import annotations

# By reason code (`ReasonCode`).
TEMPLATES: dict[str, str] = {
    "similar_to_interacted": "Similar to {product}, which you {verb}",
    "interacted": "You {verb} {product} before",
    "session_product": "Goes with {product}, which you {verb} in this session",
    "demographic": "Popular with {audience}",
    "popular_in_segment": "Popular with {audience}",
    "popular": "Popular with FinVerse customers right now",
    "shared_features": "Shares {features} with {product}",
    "similar_interest": "Customers interested in {product} also look at this",
}

# What the customer did, by event type; a trained customer's history keeps no types.
VERBS: dict[str, str] = {
    "product_view": "viewed",
    "product_click": "opened",
    "comparison": "compared",
    "application_start": "started an application for",
    "application_submit": "applied for",
    "favorite": "saved",
}
VERB_UNKNOWN = "showed interest in"

# A demographic feature (`age_group:25-34`) as an audience.
AUDIENCES: dict[str, str] = {
    "age_group": "customers aged {value}",
    "income_range": "customers earning {value}",
    "location": "customers in the {value} region",
}

# A product feature (`category:credit_card`, `interest_rate:3-5`) in words.
PRODUCT_FEATURES: dict[str, str] = {
    "category": "the category {value}",
    "institution": "the institution {value}",
    "interest_rate": "an interest rate of {value}%",
    "annual_fee": "an annual fee of {value}",
    "term_months": "a term of {value} months",
    "min_age": "a minimum age of {value}",
    "min_income": "a minimum income of {value}",
    "risk_level": "risk level {value}",
}
FEATURE_JOINER = ", "
FEATURE_LAST_JOINER = " and "


def readable_value(value: str) -> str:
    """`credit_card` → `credit card`, `25-34` → `25–34`, `<1` → `under 1`, `>=20` → `20 or more`."""
    if value.startswith(">="):
        return f"{value[2:]} or more"
    if value.startswith("<"):
        return f"under {value[1:]}"
    return value.replace("_", " ").replace("-", "–")
