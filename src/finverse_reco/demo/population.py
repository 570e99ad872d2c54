"""The synthetic users: demographics as the frontend reports them, plus the exact age and income."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from finverse_reco.demo.products import LOCATIONS
from finverse_reco.demo.sampling import draw_rows

AGE_GROUPS = ("18-24", "25-34", "35-44", "45-54", "55-64", "65+")
AGE_YEARS = ((18, 24), (25, 34), (35, 44), (45, 54), (55, 64), (65, 85))
AGE_SHARES = (0.14, 0.22, 0.20, 0.17, 0.14, 0.13)

INCOME_RANGES = ("0-25k", "25k-50k", "50k-75k", "75k-100k", "100k-150k", "150k+")
INCOME_BOUNDS = (
    (8e3, 25e3),
    (25e3, 50e3),
    (50e3, 75e3),
    (75e3, 100e3),
    (100e3, 150e3),
    (150e3, 400e3),
)
# fmt: off
INCOME_SHARES_BY_AGE = (  # rows follow AGE_GROUPS, columns INCOME_RANGES
    (0.45, 0.30, 0.15, 0.06, 0.03, 0.01),
    (0.15, 0.30, 0.27, 0.15, 0.09, 0.04),
    (0.08, 0.20, 0.25, 0.22, 0.15, 0.10),
    (0.07, 0.17, 0.23, 0.22, 0.18, 0.13),
    (0.10, 0.20, 0.23, 0.20, 0.15, 0.12),
    (0.22, 0.30, 0.22, 0.12, 0.08, 0.06),
)
# fmt: on
LOCATION_SHARES = (0.20, 0.22, 0.20, 0.15, 0.08, 0.15)


@dataclass(frozen=True)
class DemoUser:
    id: str
    age_group: str
    income_range: str
    location: str


@dataclass(frozen=True)
class Population:
    users: list[DemoUser]
    age_group: np.ndarray  # index into AGE_GROUPS
    income_range: np.ndarray  # index into INCOME_RANGES
    location: np.ndarray  # index into LOCATIONS
    age_years: np.ndarray
    income: np.ndarray  # per year


def generate_population(rng: np.random.Generator, n_users: int) -> Population:
    age_group = rng.choice(len(AGE_GROUPS), size=n_users, p=AGE_SHARES)
    income_range = draw_rows(rng, np.asarray(INCOME_SHARES_BY_AGE)[age_group])
    location = rng.choice(len(LOCATIONS), size=n_users, p=LOCATION_SHARES)
    age_low, age_high = np.asarray(AGE_YEARS).T
    age_years = rng.integers(age_low[age_group], age_high[age_group] + 1)
    income_low, income_high = np.asarray(INCOME_BOUNDS).T
    income = rng.uniform(income_low[income_range], income_high[income_range])
    users = [
        DemoUser(
            id=f"user_{number:05d}",
            age_group=AGE_GROUPS[a],
            income_range=INCOME_RANGES[i],
            location=LOCATIONS[loc],
        )
        for number, (a, i, loc) in enumerate(
            zip(age_group.tolist(), income_range.tolist(), location.tolist(), strict=True), start=1
        )
    ]
    return Population(users, age_group, income_range, location, age_years, income)
