"""The customer a request is for, as the policy sees it: the stored profile, filled in from the
demographics interaction events carry when the profile does not say, the recent activity the
rules asked for, and the channel the list is for. Gathered once per request (service/customers.py)
and read by every rule."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date

from finverse_reco.customers import CustomerProfile, KycStatus
from finverse_reco.events import FeedbackEvent

# "25-34", "65+", "50k-75k", "150k+", "0-25k": a band's lower bound is its first number.
_LOWER_BOUND = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kKmM]?)")
_SCALE = {"": 1.0, "k": 1e3, "m": 1e6}


@dataclass(slots=True)  # not frozen: built per request, and a frozen init costs twice as much
class Customer:
    """Every attribute may be unknown (None): each rule says what unknown means for it."""

    user_id: str | None
    age: int | None = None
    income: float | None = None  # a year; from a band, its lower bound
    residency: str | None = None
    region: str | None = None
    kyc_status: KycStatus | None = None
    risk_profile: int | None = None  # the questionnaire's; None: not answered
    holdings: tuple[str, ...] = ()
    activity: Sequence[FeedbackEvent] = ()  # the rules' recent events, newest first
    has_profile: bool = False
    # False: served non-personalised lists (the customer objected, or their consent could not
    # be read); the service reads it, no rule does (docs/ACCOUNTABILITY.md).
    personalise: bool = True
    channel: str | None = None  # where the list will be shown (contact limits per channel)

    @classmethod
    def anonymous(cls) -> Customer:
        return cls(user_id=None)

    @classmethod
    def of(
        cls,
        user_id: str,
        profile: CustomerProfile | None,
        demographics: Mapping[str, str] | None,
        activity: Sequence[FeedbackEvent],
        today: date,
        channel: str | None = None,
    ) -> Customer:
        """The profile's attributes; where it has none (or there is no profile), the lower bound
        of the band the latest interaction event reported (an age group's, an income range's) and
        its location as the region: conservative, so a rule never passes on a guess."""
        demographics = demographics or {}
        age = profile.age(today) if profile is not None else None
        income = profile.annual_income if profile is not None else None
        band = profile.income_range if profile is not None else None
        if age is None:
            age = _as_int(band_lower_bound(demographics.get("age_group")))
        if income is None:
            income = band_lower_bound(band or demographics.get("income_range"))
        return cls(
            user_id=user_id,
            age=age,
            income=income,
            residency=profile.residency if profile is not None else None,
            region=(profile.region if profile is not None else None)
            or demographics.get("location"),
            kyc_status=profile.kyc_status if profile is not None else None,
            risk_profile=profile.risk_profile if profile is not None else None,
            holdings=profile.holdings if profile is not None else (),
            activity=activity,
            has_profile=profile is not None,
            personalise=profile is None or not profile.objects_to_personalisation,
            channel=channel,
        )

    def describe(self) -> dict[str, object]:
        """The attributes the rules used, for `explain=true`."""
        return {
            "user_id": self.user_id,
            "has_profile": self.has_profile,
            "personalise": self.personalise,
            "age": self.age,
            "income": self.income,
            "residency": self.residency,
            "region": self.region,
            "kyc_status": None if self.kyc_status is None else self.kyc_status.value,
            "risk_profile": self.risk_profile,
            "holdings": list(self.holdings),
            "channel": self.channel,
        }


def band_lower_bound(band: str | None) -> float | None:
    """The lower bound of a band as the frontend writes it ("25-34" → 25, "50k-75k" → 50000,
    "150k+" → 150000); None for no band or one it cannot read."""
    if not band:
        return None
    match = _LOWER_BOUND.match(band)
    if match is None:
        return None
    return float(match.group(1)) * _SCALE[match.group(2).lower()]


def _as_int(value: float | None) -> int | None:
    return None if value is None else int(value)
