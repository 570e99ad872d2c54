"""The hidden preferences the synthetic users act on. A good model should rediscover them.

Two levels, because that is how people shop for financial products: a session has an intent (a
category, driven mostly by life stage and income), and within it a product is picked by a softmax over
a utility built from demographics, product characteristics, a popularity prior and personal taste.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from finverse_reco.demo.population import Population
from finverse_reco.demo.products import CATEGORIES, DemoCatalog

# fmt: off
# Columns follow CATEGORIES: checking, savings, credit card, personal loan, mortgage, CD,
# investment fund, insurance, student account, retirement account.
CATEGORY_AFFINITY_BY_AGE = np.array([
    [1.0, 0.3, 1.8, 0.3, -2.0, -1.5, -0.5, -0.5, 2.5, -2.0],  # 18-24: students, first cards
    [0.8, 0.8, 1.5, 1.0, 0.8, -0.5, 0.5, 0.3, -0.5, -0.5],    # 25-34
    [0.3, 0.5, 0.8, 0.5, 2.2, 0.0, 0.8, 1.0, -3.0, 0.5],      # 35-44: homes, families
    [0.2, 0.5, 0.5, 0.3, 1.8, 0.5, 1.0, 1.0, -3.0, 1.2],      # 45-54
    [0.2, 1.0, 0.0, -0.5, -0.5, 1.8, 0.8, 1.0, -3.5, 2.2],    # 55-64: deposits, retirement
    [0.3, 1.2, -0.5, -1.0, -2.0, 2.2, 0.3, 1.2, -3.5, 1.8],   # 65+
])
CATEGORY_AFFINITY_BY_INCOME = np.array([
    [0.5, 0.0, 0.3, 0.8, -2.0, -1.0, -1.5, -0.5, 0.5, -1.0],  # 0-25k: borrowing, basics
    [0.3, 0.2, 0.3, 0.6, -0.5, -0.3, -0.7, 0.0, 0.2, -0.3],   # 25k-50k
    [0.0, 0.2, 0.2, 0.2, 0.3, 0.0, 0.0, 0.2, 0.0, 0.0],       # 50k-75k
    [-0.2, 0.2, 0.2, -0.2, 0.6, 0.3, 0.5, 0.3, -0.2, 0.4],    # 75k-100k
    [-0.3, 0.2, 0.3, -0.5, 0.8, 0.5, 1.0, 0.4, -0.5, 0.7],    # 100k-150k
    [-0.5, 0.0, 0.3, -1.0, 0.8, 0.6, 1.6, 0.5, -0.8, 1.0],    # 150k+: wealth products
])
# fmt: on
# Per income range (INCOME_RANGES order): how much fees hurt, how much "premium" attracts.
FEE_SENSITIVITY_BY_INCOME = np.array([1.2, 0.9, 0.6, 0.4, 0.2, 0.1])
PREMIUM_APPETITE_BY_INCOME = np.array([-1.0, -0.6, 0.0, 0.5, 1.0, 1.5])
# Preferred product risk level (1..5): the young and the well-off take more risk.
RISK_APPETITE_BY_AGE = np.array([3.8, 3.5, 3.2, 2.8, 2.2, 1.7])
RISK_SHIFT_BY_INCOME = np.array([-0.6, -0.3, 0.0, 0.2, 0.4, 0.6])
# +1: a higher rate is better (deposits), -1: worse (borrowing), 0: no rate (insurance).
RATE_DIRECTION = dict.fromkeys(CATEGORIES, 0.0) | {
    "checking_account": 1.0,
    "savings_account": 1.0,
    "certificate_of_deposit": 1.0,
    "student_account": 1.0,
    "investment_fund": 0.5,
    "retirement_account": 0.5,
    "credit_card": -1.0,
    "personal_loan": -1.0,
    "mortgage": -1.0,
}

INELIGIBLE_PENALTY = 4.0  # per unmet requirement (min_age, min_income): rare, not impossible
IN_BAND_BONUS, OUT_OF_BAND_PENALTY = 1.2, 1.5  # products marketed to an age band
LOCAL_BONUS, FOREIGN_PENALTY = 1.5, 3.0  # regional institutions, at home and elsewhere
RATE_WEIGHT, RISK_WEIGHT, TASTE_WEIGHT = 0.8, 0.5, 0.35
TASTE_DIMENSIONS = 6
CATEGORY_NOISE = 0.5  # personal deviation from the segment's category affinities
CATEGORY_TEMPERATURE = 1.0
PRODUCT_TEMPERATURE = 0.6


@dataclass(frozen=True)
class HiddenPreferences:
    category_weights: np.ndarray  # (n_users, n_categories), rows sum to 1: session intents
    utility: np.ndarray  # (n_users, n_products)
    choice_weights: np.ndarray  # (n_users, n_products): softmax of utility within each category


def hidden_preferences(
    rng: np.random.Generator, population: Population, catalog: DemoCatalog
) -> HiddenPreferences:
    n_users, n_products = len(population.users), len(catalog.products)
    age, income = population.age_group, population.income_range
    category_logits = (
        CATEGORY_AFFINITY_BY_AGE[age]
        + CATEGORY_AFFINITY_BY_INCOME[income]
        + rng.normal(0.0, CATEGORY_NOISE, (n_users, len(CATEGORIES)))
    )
    risk_appetite = (
        RISK_APPETITE_BY_AGE[age] + RISK_SHIFT_BY_INCOME[income] + rng.normal(0.0, 0.4, n_users)
    )
    user_taste = rng.normal(0.0, 1.0, (n_users, TASTE_DIMENSIONS))
    product_taste = rng.normal(0.0, 1.0, (n_products, TASTE_DIMENSIONS)) / np.sqrt(TASTE_DIMENSIONS)

    years, yearly_income = population.age_years[:, None], population.income[:, None]
    in_band = (years >= catalog.band_low) & (years <= catalog.band_high)
    direction = np.array([RATE_DIRECTION[CATEGORIES[c]] for c in catalog.category])
    utility = (
        catalog.quality
        + RATE_WEIGHT * direction * _within_category_z(catalog, np.nan_to_num(catalog.rate))
        - FEE_SENSITIVITY_BY_INCOME[income][:, None]
        * _within_category_z(catalog, np.log1p(catalog.fee))
        + PREMIUM_APPETITE_BY_INCOME[income][:, None] * catalog.premium
        + np.where(catalog.targeted, np.where(in_band, IN_BAND_BONUS, -OUT_OF_BAND_PENALTY), 0.0)
        - RISK_WEIGHT * (catalog.risk - risk_appetite[:, None]) ** 2
        + _regional_term(population.location, catalog.region)
        + TASTE_WEIGHT * user_taste @ product_taste.T
        - INELIGIBLE_PENALTY * (years < catalog.min_age)
        - INELIGIBLE_PENALTY * (yearly_income < catalog.min_income)
    )
    return HiddenPreferences(
        category_weights=_softmax(category_logits / CATEGORY_TEMPERATURE),
        utility=utility,
        choice_weights=_softmax_within_categories(utility / PRODUCT_TEMPERATURE, catalog.category),
    )


def _within_category_z(catalog: DemoCatalog, values: np.ndarray) -> np.ndarray:
    """Standardise a characteristic among the products it competes with (its category)."""
    z = np.zeros_like(values, dtype=float)
    for c in np.unique(catalog.category):
        members = catalog.category == c
        spread = values[members].std()
        z[members] = (values[members] - values[members].mean()) / spread if spread > 0 else 0.0
    return z


def _regional_term(user_location: np.ndarray, product_region: np.ndarray) -> np.ndarray:
    home = product_region == user_location[:, None]
    return np.where(product_region < 0, 0.0, np.where(home, LOCAL_BONUS, -FOREIGN_PENALTY))


def _softmax(logits: np.ndarray) -> np.ndarray:
    weights = np.exp(logits - logits.max(axis=1, keepdims=True))
    return weights / weights.sum(axis=1, keepdims=True)


def _softmax_within_categories(logits: np.ndarray, category: np.ndarray) -> np.ndarray:
    weights = np.empty_like(logits)
    for c in np.unique(category):
        members = category == c
        weights[:, members] = _softmax(logits[:, members])
    return weights
