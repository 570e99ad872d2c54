"""The synthetic catalog: institutions, product templates, and the products drawn from them."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from finverse_reco.products import Product

CATEGORIES = (
    "checking_account",
    "savings_account",
    "credit_card",
    "personal_loan",
    "mortgage",
    "certificate_of_deposit",
    "investment_fund",
    "insurance",
    "student_account",
    "retirement_account",
)
LOCATIONS = ("northeast", "southeast", "midwest", "southwest", "mountain", "pacific")

_RETAIL = (
    "checking_account",
    "savings_account",
    "credit_card",
    "personal_loan",
    "mortgage",
    "certificate_of_deposit",
    "student_account",
)


@dataclass(frozen=True)
class Institution:
    name: str
    brand: str  # the word that starts its product names
    region: str | None  # None: national; otherwise the one location it serves
    categories: tuple[str, ...]
    brand_strength: float  # part of the popularity prior


INSTITUTIONS = (
    Institution("Northwind Bank", "Northwind", None, CATEGORIES, 0.4),
    Institution("Contoso Financial", "Contoso", None, CATEGORIES, 0.3),
    Institution("Fabrikam Trust", "Fabrikam", None, (*CATEGORIES[:-2], "retirement_account"), 0.1),
    Institution("Summit National Bank", "Summit", None, CATEGORIES, 0.0),
    Institution(
        "Meridian Capital",
        "Meridian",
        None,
        ("savings_account", "certificate_of_deposit", "investment_fund", "retirement_account"),
        0.2,
    ),
    Institution(
        "Shieldwell Mutual",
        "Shieldwell",
        None,
        ("insurance", "investment_fund", "retirement_account"),
        0.1,
    ),
    Institution("Granite State Bank", "Granite", "northeast", _RETAIL, 0.0),
    Institution("Magnolia Federal Credit Union", "Magnolia", "southeast", _RETAIL, 0.0),
    Institution("Great Lakes Savings", "Great Lakes", "midwest", _RETAIL, 0.0),
    Institution("Lone Star Community Bank", "Lone Star", "southwest", _RETAIL, 0.0),
    Institution("Rocky Ridge Credit Union", "Rocky Ridge", "mountain", _RETAIL, 0.0),
    Institution("Evergreen Coast Bank", "Evergreen", "pacific", _RETAIL, 0.0),
)


@dataclass(frozen=True)
class ProductTemplate:
    """A kind of product; each institution's version draws its numbers from these ranges."""

    category: str
    label: str
    rate: tuple[float, float] | None  # percent; None where a rate means nothing (insurance)
    fee: tuple[float, float]
    risk: tuple[int, int]
    terms: tuple[int, ...] = ()  # months; empty: open-ended
    min_age: int = 18
    min_incomes: tuple[float, ...] = (0.0,)
    premium: bool = False
    age_band: tuple[int, int] | None = None  # who it is marketed to


_T = ProductTemplate
# fmt: off
TEMPLATES = (
    #  category                  label                       rate          fee          risk
    _T("checking_account",       "Everyday Checking",        (0.0, 0.1),   (0, 60),     (1, 1)),
    _T("checking_account",       "Online Checking",          (0.1, 0.5),   (0, 0),      (1, 1)),
    _T("checking_account",       "Rewards Checking",         (0.5, 2.0),   (60, 120),   (1, 1),
       min_incomes=(25e3,)),
    _T("checking_account",       "Premier Checking",         (0.5, 1.5),   (150, 300),  (1, 1),
       min_incomes=(75e3, 100e3), premium=True),
    _T("checking_account",       "Senior Checking",          (0.2, 0.8),   (0, 0),      (1, 1),
       min_age=55, age_band=(55, 120)),
    _T("savings_account",        "High-Yield Savings",       (3.5, 5.0),   (0, 0),      (1, 1)),
    _T("savings_account",        "Goal Saver",               (2.0, 3.5),   (0, 0),      (1, 1)),
    _T("savings_account",        "Holiday Club Savings",     (1.0, 2.0),   (0, 0),      (1, 1)),
    _T("savings_account",        "Premier Savings",          (4.0, 5.2),   (0, 100),    (1, 1),
       min_incomes=(100e3,), premium=True),
    _T("savings_account",        "Youth Saver",              (2.5, 4.0),   (0, 0),      (1, 1),
       age_band=(18, 25)),
    _T("credit_card",            "Cashback Visa",            (18.0, 26.0), (0, 95),     (2, 3),
       min_incomes=(15e3, 25e3)),
    _T("credit_card",            "Travel Rewards Mastercard", (20.0, 27.0), (95, 250),  (2, 3),
       min_incomes=(50e3,)),
    _T("credit_card",            "Platinum Visa",            (19.0, 25.0), (350, 550),  (2, 3),
       min_age=21, min_incomes=(120e3,), premium=True),
    _T("credit_card",            "Student Mastercard",       (22.0, 28.0), (0, 0),      (3, 3),
       age_band=(18, 24)),
    _T("credit_card",            "Secured Visa",             (24.0, 29.0), (25, 50),    (2, 2)),
    _T("credit_card",            "Low Rate Visa",            (11.0, 15.0), (0, 50),     (2, 2),
       min_incomes=(30e3,)),
    _T("personal_loan",          "Personal Loan",            (8.0, 15.0),  (0, 0),      (3, 3),
       terms=(24, 36, 60), min_incomes=(25e3,)),
    _T("personal_loan",          "Debt Consolidation Loan",  (7.0, 13.0),  (0, 75),     (3, 4),
       terms=(36, 60, 84), min_incomes=(35e3,)),
    _T("personal_loan",          "Auto Loan",                (5.0, 9.0),   (0, 0),      (2, 3),
       terms=(36, 48, 72), min_incomes=(30e3,)),
    _T("personal_loan",          "Home Improvement Loan",    (7.0, 12.0),  (0, 50),     (3, 3),
       terms=(60, 120), min_age=25, min_incomes=(50e3,), age_band=(30, 70)),
    _T("personal_loan",          "Credit Builder Loan",      (12.0, 18.0), (0, 25),     (2, 2),
       terms=(12, 24), age_band=(18, 30)),
    _T("mortgage",               "30-Year Fixed Mortgage",   (6.0, 7.2),   (0, 0),      (2, 2),
       terms=(360,), min_age=21, min_incomes=(50e3,)),
    _T("mortgage",               "15-Year Fixed Mortgage",   (5.3, 6.4),   (0, 0),      (2, 2),
       terms=(180,), min_age=21, min_incomes=(75e3,), age_band=(35, 70)),
    _T("mortgage",               "5/1 Adjustable Mortgage",  (5.5, 6.5),   (0, 0),      (3, 4),
       terms=(360,), min_age=21, min_incomes=(60e3,)),
    _T("mortgage",               "Jumbo Mortgage",           (6.3, 7.5),   (0, 500),    (3, 3),
       terms=(360,), min_age=21, min_incomes=(150e3,), premium=True),
    _T("mortgage",               "First-Home Mortgage",      (6.0, 7.0),   (0, 0),      (2, 3),
       terms=(360,), min_age=21, min_incomes=(35e3,), age_band=(21, 40)),
    _T("certificate_of_deposit", "6-Month CD",               (3.8, 4.6),   (0, 0),      (1, 1),
       terms=(6,)),
    _T("certificate_of_deposit", "12-Month CD",              (4.0, 4.9),   (0, 0),      (1, 1),
       terms=(12,)),
    _T("certificate_of_deposit", "24-Month CD",              (3.9, 4.7),   (0, 0),      (1, 1),
       terms=(24,)),
    _T("certificate_of_deposit", "60-Month CD",              (3.5, 4.5),   (0, 0),      (1, 1),
       terms=(60,)),
    _T("certificate_of_deposit", "Senior Bonus CD",          (4.3, 5.1),   (0, 0),      (1, 1),
       terms=(12, 18), min_age=60, age_band=(60, 120)),
    _T("certificate_of_deposit", "Jumbo CD",                 (4.5, 5.3),   (0, 0),      (1, 1),
       terms=(12, 24), min_incomes=(100e3,), premium=True),
    _T("investment_fund",        "Index Fund",               (6.0, 8.0),   (0, 30),     (3, 3)),
    _T("investment_fund",        "Aggressive Growth Fund",   (8.0, 11.0),  (50, 150),   (5, 5)),
    _T("investment_fund",        "Balanced Fund",            (4.5, 6.5),   (0, 60),     (2, 3)),
    _T("investment_fund",        "Bond Income Fund",         (3.5, 5.0),   (0, 40),     (2, 2)),
    _T("investment_fund",        "Emerging Markets Fund",    (7.0, 12.0),  (40, 120),   (5, 5)),
    _T("investment_fund",        "Sustainable Equity Fund",  (6.0, 9.0),   (20, 90),    (4, 4)),
    _T("investment_fund",        "Private Wealth Portfolio", (6.0, 9.0),   (500, 1500), (3, 4),
       min_incomes=(200e3,), premium=True),
    _T("insurance",              "Term Life Insurance",      None,         (200, 900),  (1, 1),
       terms=(120, 240, 360)),
    _T("insurance",              "Homeowners Insurance",     None,         (900, 2200), (1, 1),
       terms=(12,), min_age=21, age_band=(30, 120)),
    _T("insurance",              "Auto Insurance",           None,         (700, 1800), (1, 1),
       terms=(6, 12)),
    _T("insurance",              "Travel Insurance",         None,         (80, 300),   (1, 1),
       terms=(12,)),
    _T("insurance",              "Renters Insurance",        None,         (120, 300),  (1, 1),
       terms=(12,), age_band=(18, 35)),
    _T("insurance",              "Long-Term Care Insurance", None,         (1500, 3500), (1, 1),
       terms=(12,), min_age=40, age_band=(55, 120)),
    _T("student_account",        "Student Checking",         (0.0, 0.2),   (0, 0),      (1, 1),
       min_age=16, age_band=(18, 24)),
    _T("student_account",        "Campus Saver",             (2.0, 3.5),   (0, 0),      (1, 1),
       min_age=16, age_band=(18, 24)),
    _T("student_account",        "Student Starter Card",     (20.0, 26.0), (0, 0),      (2, 3),
       age_band=(18, 24)),
    _T("student_account",        "Graduate Account",         (0.5, 1.0),   (0, 0),      (1, 1),
       age_band=(22, 30)),
    _T("retirement_account",     "Traditional IRA",          (5.0, 7.0),   (0, 50),     (3, 3)),
    _T("retirement_account",     "Roth IRA",                 (5.0, 7.5),   (0, 50),     (3, 3),
       age_band=(18, 50)),
    _T("retirement_account",     "Target Date 2060 Fund",    (6.5, 8.5),   (0, 40),     (4, 4),
       age_band=(25, 45)),
    _T("retirement_account",     "Target Date 2030 Fund",    (4.5, 6.0),   (0, 40),     (2, 3),
       age_band=(50, 64)),
    _T("retirement_account",     "Fixed Annuity",            (4.5, 5.5),   (0, 100),    (1, 1),
       terms=(60, 120), min_age=50, age_band=(55, 120)),
    _T("retirement_account",     "Rollover IRA",             (5.0, 7.0),   (0, 0),      (3, 3),
       age_band=(35, 70)),
)
# fmt: on


@dataclass(frozen=True)
class DemoCatalog:
    """The products plus the hidden, array-shaped facts the preference model scores them by."""

    products: list[Product]
    category: np.ndarray  # index into CATEGORIES
    region: np.ndarray  # index into LOCATIONS, -1 for national institutions
    premium: np.ndarray  # bool
    band_low: np.ndarray  # marketed age band; -inf/inf when the product targets everyone
    band_high: np.ndarray
    targeted: np.ndarray  # bool: has a marketed age band
    quality: np.ndarray  # popularity prior: brand strength plus the product's own appeal
    rate: np.ndarray  # nan where unknown
    fee: np.ndarray
    risk: np.ndarray
    min_age: np.ndarray
    min_income: np.ndarray


def generate_catalog(rng: np.random.Generator, n_products: int) -> DemoCatalog:
    """Equal shares per category, spread over the institutions offering it; ids in shuffled order."""
    drafts: list[tuple[Institution, ProductTemplate, str]] = []
    for c_index, category in enumerate(CATEGORIES):
        count = n_products // len(CATEGORIES) + (c_index < n_products % len(CATEGORIES))
        offering = [inst for inst in INSTITUTIONS if category in inst.categories]
        kinds = [t for t in TEMPLATES if t.category == category]
        offering = [offering[i] for i in rng.permutation(len(offering))]
        kinds = [kinds[i] for i in rng.permutation(len(kinds))]
        for j in range(count):
            round_, seat = divmod(j, len(offering))
            # Each institution starts at a different kind, so a category mixes kinds; an
            # institution that offers a kind twice gets a numbered series.
            kind = kinds[(seat + round_) % len(kinds)]
            series = round_ // len(kinds)
            name = f"{offering[seat].brand} {kind.label}"
            drafts.append(
                (offering[seat], kind, name if series == 0 else f"{name} Series {series + 1}")
            )

    drafts = [drafts[i] for i in rng.permutation(len(drafts))]
    products = [
        _draw_product(rng, f"prod_{number:04d}", name, inst, kind)
        for number, (inst, kind, name) in enumerate(drafts, start=1)
    ]
    return _describe(rng, products, drafts)


def _draw_product(
    rng: np.random.Generator, product_id: str, name: str, inst: Institution, kind: ProductTemplate
) -> Product:
    rate = None if kind.rate is None else round(float(rng.uniform(*kind.rate)), 2)
    fee = float(round(float(rng.uniform(*kind.fee)) / 5.0) * 5)
    term = int(kind.terms[rng.integers(len(kind.terms))]) if kind.terms else None
    return Product(
        id=product_id,
        name=name,
        category=kind.category,
        institution=inst.name,
        interest_rate=rate,
        annual_fee=fee,
        risk_level=int(rng.integers(kind.risk[0], kind.risk[1] + 1)),
        term_months=term,
        min_age=kind.min_age,
        min_income=float(kind.min_incomes[rng.integers(len(kind.min_incomes))]),
    )


def _describe(
    rng: np.random.Generator,
    products: list[Product],
    drafts: list[tuple[Institution, ProductTemplate, str]],
) -> DemoCatalog:
    kinds = [kind for _, kind, _ in drafts]
    bands = [kind.age_band or (-np.inf, np.inf) for kind in kinds]
    brand_strength = np.array([inst.brand_strength for inst, _, _ in drafts])
    return DemoCatalog(
        products=products,
        category=np.array([CATEGORIES.index(p.category) for p in products]),
        region=np.array(
            [-1 if i.region is None else LOCATIONS.index(i.region) for i, _, _ in drafts]
        ),
        premium=np.array([kind.premium for kind in kinds]),
        band_low=np.array([low for low, _ in bands], dtype=float),
        band_high=np.array([high for _, high in bands], dtype=float),
        targeted=np.array([kind.age_band is not None for kind in kinds]),
        quality=brand_strength + rng.normal(0.0, 0.5, len(products)),
        rate=np.array([np.nan if p.interest_rate is None else p.interest_rate for p in products]),
        fee=np.array([p.annual_fee for p in products]),
        risk=np.array([p.risk_level for p in products], dtype=float),
        min_age=np.array([p.min_age for p in products], dtype=float),
        min_income=np.array([p.min_income for p in products]),
    )
