"""The demo world's customer profiles and the eligibility facts of its products, consistent with the
behaviour the world generates: ages and incomes are the ones the users' preferences were drawn
from, risk profiles follow the risk appetite their choices reflect, and holdings are products they
applied for. Drawn from a generator of their own, so the world's events stay as they were."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

import numpy as np

from finverse_reco.customers import CustomerProfile, KycStatus
from finverse_reco.demo.population import INCOME_RANGES, Population
from finverse_reco.demo.preferences import RISK_APPETITE_BY_AGE, RISK_SHIFT_BY_INCOME
from finverse_reco.demo.products import INSTITUTIONS, DemoCatalog
from finverse_reco.events import EventType
from finverse_reco.products import Product

COUNTRY = "US"  # every demo customer and product; the regions are the world's LOCATIONS
# Categories whose products a holder must have passed KYC for: credit and investments.
KYC_CATEGORIES = frozenset(
    {"credit_card", "personal_loan", "mortgage", "investment_fund", "retirement_account"}
)
QUESTIONNAIRE_SHARE = 0.85  # customers with a suitability questionnaire result; others: derived
KYC_SHARES = {KycStatus.VERIFIED: 0.93, KycStatus.PENDING: 0.05, KycStatus.NONE: 0.02}
APPROVED_SHARE = 0.7  # submitted applications that became holdings


def eligible_products(catalog: DemoCatalog) -> list[Product]:
    """The catalog's products with their eligibility facts: residency, the region of a regional
    institution, KYC for credit and investment products."""
    regions = {inst.name: inst.region for inst in INSTITUTIONS}
    return [
        replace(
            product,
            residencies=(COUNTRY,),
            regions=None
            if regions[product.institution] is None
            else (regions[product.institution],),
            required_kyc=KycStatus.VERIFIED.value if product.category in KYC_CATEGORIES else None,
        )
        for product in catalog.products
    ]


def generate_profiles(
    seed: int, population: Population, events: list[dict], updated_at: datetime
) -> list[CustomerProfile]:
    """One profile per user. The world's `end` is `updated_at`; a birth year is chosen so that the
    profile's (conservative) age that year is the user's age in the world."""
    rng = np.random.default_rng([seed, 15])
    n = len(population.users)
    appetite = (
        RISK_APPETITE_BY_AGE[population.age_group]
        + RISK_SHIFT_BY_INCOME[population.income_range]
        + rng.normal(0.0, 0.4, n)
    )
    # The questionnaire lands a step above the appetite the choices show (people take the risk
    # level they were offered within); unanswered questionnaires leave it unknown.
    risk = np.clip(np.rint(appetite + 1.0), 1, 5).astype(int)
    answered = rng.random(n) < QUESTIONNAIRE_SHARE
    kyc = rng.choice(list(KYC_SHARES), size=n, p=list(KYC_SHARES.values()))
    approved = rng.random(len(events)) < APPROVED_SHARE
    holdings: dict[str, list[str]] = {}
    for event, kept in zip(events, approved.tolist(), strict=True):
        if kept and event["type"] == EventType.APPLICATION_SUBMIT.value:
            holdings.setdefault(event["user_id"], []).append(event["data"]["productId"])
    return [
        CustomerProfile(
            user_id=user.id,
            birth_year=updated_at.year - int(age) - 1,
            annual_income=round(float(income), -2),
            income_range=INCOME_RANGES[int(band)],
            residency=COUNTRY,
            region=user.location,
            risk_profile=int(level) if asked else None,
            kyc_status=status,
            holdings=tuple(holdings.get(user.id, ())),
            updated_at=updated_at,
        )
        for user, age, income, band, level, asked, status in zip(
            population.users,
            population.age_years.tolist(),
            population.income.tolist(),
            population.income_range.tolist(),
            risk.tolist(),
            answered.tolist(),
            kyc.tolist(),
            strict=True,
        )
    ]
