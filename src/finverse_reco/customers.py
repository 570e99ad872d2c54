"""The customer profile: what the service knows of a customer besides behaviour. A domain type below
every adapter, like `products.py`: the stores keep it, the policy step reads it, HTTP and RabbitMQ
validate it with the one parser here.

It arrives from the bank (a `customer_profile` event, or `PUT /api/v1/customers/{id}/profile`) and
is replaced whole: the newest `updated_at` wins, so a redelivered older copy changes nothing. The one
exception is consent: a profile that does not state it (None) keeps the answer stored, so that a
profile feed that knows nothing of consent never undoes an objection (docs/ACCOUNTABILITY.md).
`PUT /api/v1/customers/{id}/consent` changes the consent alone (`ConsentChange`).
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Annotated, Any, TypeVar

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from finverse_reco.events import (
    MAX_CLOCK_SKEW,
    MAX_EVENT_BYTES,
    EntityId,
    InvalidEvent,
    ShortText,
    describe_validation_error,
)

Model = TypeVar("Model", bound=BaseModel)
MAX_HOLDINGS = 500
COUNTRY_PATTERN = r"^[A-Z]{2}$"  # ISO 3166-1 alpha-2


class KycStatus(StrEnum):
    """Know-your-customer checks, in order: a product requiring `verified` needs exactly that."""

    NONE = "none"
    PENDING = "pending"
    VERIFIED = "verified"


class CustomerProfile(BaseModel):
    """One customer's profile as stored. Every attribute may be unknown (None); the policy decides
    what an unknown attribute means for each rule (docs/POLICY.md)."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    user_id: EntityId
    birth_year: int | None = Field(None, ge=1900, le=2100)
    annual_income: float | None = Field(None, ge=0, le=1e10, allow_inf_nan=False)
    income_range: ShortText | None = None  # the band the frontend reports, e.g. "50k-75k"
    residency: Annotated[str, Field(pattern=COUNTRY_PATTERN)] | None = None
    region: ShortText | None = None
    risk_profile: int | None = Field(None, ge=1, le=5)  # the suitability questionnaire's result
    kyc_status: KycStatus | None = None
    holdings: tuple[EntityId, ...] = Field((), max_length=MAX_HOLDINGS)
    # False: the customer objected to personalisation (GDPR Art. 21) and is served as a stranger;
    # True or None (never asked): personalised (docs/ACCOUNTABILITY.md).
    personalisation_consent: bool | None = None
    updated_at: datetime

    @field_validator("updated_at")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        return _utc_not_future(value)

    @field_validator("holdings")
    @classmethod
    def _unique(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(dict.fromkeys(value))

    def age(self, today: date) -> int | None:
        """Age in whole years at `today`, taking the birthday as the year's last day (the lower
        of the two ages a birth year allows, so an age rule never passes a customer too young)."""
        return None if self.birth_year is None else today.year - self.birth_year - 1

    @property
    def objects_to_personalisation(self) -> bool:
        return self.personalisation_consent is False

    def to_document(self) -> dict[str, Any]:
        """Stored form: plain JSON types but `updated_at`, which stays a datetime."""
        return self.model_dump(mode="python") | {"holdings": list(self.holdings)}


def _utc_not_future(value: datetime) -> datetime:
    value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    if value > datetime.now(UTC) + MAX_CLOCK_SKEW:
        raise ValueError("updated_at is in the future")
    return value


def parse_profile(raw: Any, *, user_id: str | None = None) -> CustomerProfile:
    """Validate one decoded profile; raise InvalidEvent with a short, readable reason. With
    `user_id` (the HTTP path), a body naming another customer is refused."""
    if not isinstance(raw, dict):
        raise InvalidEvent("a customer profile must be a JSON object")
    if user_id is not None:
        if raw.get("user_id", user_id) != user_id:
            raise InvalidEvent("user_id: the body names another customer than the path")
        raw = {**raw, "user_id": user_id}
    return _validated(CustomerProfile, raw)


class ConsentChange(BaseModel):
    """`PUT /api/v1/customers/{id}/consent`'s body: the customer's answer and when they gave it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    personalisation: bool
    updated_at: datetime

    @field_validator("updated_at")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        return _utc_not_future(value)


def parse_consent(raw: Any) -> ConsentChange:
    """Validate one decoded consent change (`updated_at` defaults to now); InvalidEvent if bad."""
    if not isinstance(raw, dict):
        raise InvalidEvent("a consent change must be a JSON object")
    return _validated(ConsentChange, raw)


def _validated(model: type[Model], raw: dict[str, Any]) -> Model:
    """`raw` as `model` (`updated_at` defaults to now); InvalidEvent naming what is wrong."""
    if raw.get("updated_at") is None:
        raw = {**raw, "updated_at": datetime.now(UTC)}
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise InvalidEvent(describe_validation_error(exc)) from None


def parse_profile_bytes(body: bytes) -> CustomerProfile:
    """Validate one raw `customer_profile` message body (RabbitMQ): size, JSON, then the schema."""
    if len(body) > MAX_EVENT_BYTES:
        raise InvalidEvent(f"profile is {len(body)} bytes, more than {MAX_EVENT_BYTES}")
    try:
        raw = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidEvent(f"not valid UTF-8 JSON: {exc}") from None
    return parse_profile(raw)
