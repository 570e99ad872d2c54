"""The interaction event: the seed's document, its validation and its identity.

One validator serves every entry point (HTTP and RabbitMQ), so an event accepted by one is accepted by
the other. Pure: no I/O.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from itertools import repeat
from operator import itemgetter
from types import NoneType
from typing import Annotated, Any

import numpy as np
import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

ID_PATTERN = r"^[A-Za-z0-9_.:@-]{1,128}$"
ID_RE = re.compile(ID_PATTERN)
MAX_EVENT_BYTES = 16 * 1024
MAX_COMPARED_PRODUCTS = 20
MAX_SHOWN_PRODUCTS = 100  # an impression lists a whole served list (`limit` is at most 100)
MAX_VIEW_SECONDS = 24 * 3600.0
MAX_CLOCK_SKEW = timedelta(days=1)
PROCESSED_BY = "recommendation-service"
# Set by the service on arrival (`InteractionEvent.enriched`); a producer's copy is overwritten.
ENRICHMENT_FIELDS = frozenset({"received_at", "queue_source", "processed_by"})

EntityId = Annotated[str, Field(pattern=ID_PATTERN)]
ShortText = Annotated[str, Field(max_length=128)]


class EventType(StrEnum):
    PRODUCT_VIEW = "product_view"
    PRODUCT_CLICK = "product_click"
    COMPARISON = "comparison"
    SEARCH = "search"
    APPLICATION_START = "application_start"
    APPLICATION_SUBMIT = "application_submit"
    FAVORITE = "favorite"
    # Feedback on served lists: these items of a `recommendation_id` were shown on `data.channel`
    # (`data.productIDs`, or one `productId`); the customer rejected this item (`productId`).
    IMPRESSION = "impression"
    DISMISS = "dismiss"


# What each event type is worth to training by default (an application outweighs a view); searches
# name no product, so they weigh nothing and feed user features instead. An impression says only
# that a product was shown, not that it was wanted; a dismissal is a negative signal, which no base
# weight can express (LightFM's WARP learns from positives only): training takes it out of the
# customer's positives instead (`WeightingConfig.dismiss_keep`, docs/FEEDBACK.md).
# `FINVERSE_TYPE_WEIGHTS` overrides any of them.
DEFAULT_TYPE_WEIGHTS: dict[str, float] = {
    "product_view": 1.0,
    "product_click": 1.5,
    "search": 0.0,
    "comparison": 2.0,
    "favorite": 3.0,
    "application_start": 4.0,
    "application_submit": 6.0,
    "impression": 0.0,
    "dismiss": 0.0,
}


class Demographics(BaseModel):
    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    age_group: ShortText | None = None
    income_range: ShortText | None = None
    location: ShortText | None = None


class EventData(BaseModel):
    # Producers may send more keys than we use; they are dropped rather than stored unchecked.
    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    productId: EntityId | None = None
    productIDs: list[EntityId] | None = Field(default=None, max_length=MAX_SHOWN_PRODUCTS)
    category: ShortText | None = None
    institution: ShortText | None = None
    viewDuration: float | None = Field(default=None, ge=0, le=MAX_VIEW_SECONDS, allow_inf_nan=False)
    query: Annotated[str, Field(max_length=256)] | None = None
    userDemographics: Demographics | None = None
    # Where an impression was shown (or a click made): `app_home`, `email`, … Contact limits count
    # per channel.
    channel: Annotated[str, Field(pattern=ID_PATTERN, max_length=64)] | None = None
    # Echoed by the client from the served list it reacts to: which experiment arm, model version
    # and strategy produced it (online metrics group by them; docs/FEEDBACK.md).
    arm: ShortText | None = None
    modelVersion: ShortText | None = None
    strategy: ShortText | None = None


class InteractionEvent(BaseModel):
    """One interaction, as stored. `event_id` is always set after validation."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    event_id: EntityId
    user_id: EntityId
    session_id: EntityId | None = None
    # The served list this event reacts to (the `recommendation_id` of its response), if any.
    recommendation_id: EntityId | None = None
    type: EventType
    timestamp: datetime
    data: EventData = Field(default_factory=EventData)
    received_at: datetime | None = None
    queue_source: ShortText | None = None
    processed_by: ShortText | None = None

    @model_validator(mode="before")
    @classmethod
    def _derive_event_id(cls, raw: Any) -> Any:
        if isinstance(raw, dict) and not raw.get("event_id"):
            raw = {**raw, "event_id": content_event_id(raw)}
        return raw

    @field_validator("timestamp", "received_at")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        if value is None:
            return None
        value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        if value > datetime.now(UTC) + MAX_CLOCK_SKEW:
            raise ValueError("timestamp is in the future")
        return value

    @model_validator(mode="after")
    def _needs_product(self) -> InteractionEvent:
        if self.type is EventType.IMPRESSION:
            if not (self.data.productIDs or self.data.productId):
                raise ValueError("an impression needs data.productIDs (the products shown)")
            if self.recommendation_id is None or self.data.channel is None:
                raise ValueError("an impression needs recommendation_id and data.channel")
        elif self.type is EventType.COMPARISON:
            if not (self.data.productIDs or self.data.productId):
                raise ValueError("a comparison needs data.productIDs")
            if len(self.data.productIDs or ()) > MAX_COMPARED_PRODUCTS:
                raise ValueError(f"a comparison names at most {MAX_COMPARED_PRODUCTS} products")
        elif self.type is not EventType.SEARCH and not self.data.productId:
            raise ValueError(f"a {self.type.value} event needs data.productId")
        return self

    def product_ids(self) -> list[str]:
        """Every product the event touches, first-seen order, no duplicates."""
        return touched_products(self.data.productId, self.data.productIDs)

    def to_document(self) -> dict[str, Any]:
        """The seed's MongoDB document shape (datetimes stay datetimes, absent fields dropped)."""
        return self.model_dump(mode="python", exclude_none=True)

    def enriched(
        self, *, queue_source: str, received_at: datetime | None = None
    ) -> InteractionEvent:
        return self.model_copy(update=_enrichment(queue_source, received_at))


def touched_products(product_id: str | None, compared: Sequence[str] | None) -> list[str]:
    """Every product an event touches: productId, then productIDs; first seen, once each."""
    if not compared:
        return [product_id] if product_id else []
    return list(dict.fromkeys([product_id, *compared] if product_id else compared))


class InvalidEvent(ValueError):
    """A rejected event, with a reason fit for an HTTP 422 body or a dead-letter header."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# The fields a content-derived id hashes. `recommendation_id` is hashed only when present, so an event
# without one keeps the id it had before the field existed (a resend stays a duplicate).
LEGACY_ID_FIELDS = ("user_id", "session_id", "type", "timestamp", "data")
CONTENT_ID_FIELDS = (*LEGACY_ID_FIELDS, "recommendation_id")


def content_event_id(raw: dict[str, Any]) -> str:
    """Stable id from the event's content, so a producer that sends none still gets idempotency."""
    identity = {
        k: raw.get(k) for k in CONTENT_ID_FIELDS if k in LEGACY_ID_FIELDS or raw.get(k) is not None
    }
    digest = hashlib.sha256(orjson.dumps(identity, option=orjson.OPT_SORT_KEYS, default=str))
    return "h:" + digest.hexdigest()[:40]


def parse_event(raw: Any) -> InteractionEvent:
    """Validate one decoded event; raise InvalidEvent with a short, readable reason."""
    if not isinstance(raw, dict):
        raise InvalidEvent("an event must be a JSON object")
    try:
        return InteractionEvent.model_validate(raw)
    except ValidationError as exc:
        raise InvalidEvent(describe_validation_error(exc)) from None


def parse_event_bytes(
    body: bytes,
    *,
    fallback_event_id: str | None = None,
    queue_source: str | None = None,
    received_at: datetime | None = None,
) -> InteractionEvent:
    """Validate one raw message body (RabbitMQ): size, UTF-8, JSON, then the schema.

    With `queue_source`, the event comes back `enriched` with it and `received_at`.
    """
    if len(body) > MAX_EVENT_BYTES:
        raise InvalidEvent(f"event is {len(body)} bytes, more than {MAX_EVENT_BYTES}")
    try:
        raw = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidEvent(f"not valid UTF-8 JSON: {exc}") from None
    if isinstance(raw, dict):
        if not raw.get("event_id") and fallback_event_id:
            raw["event_id"] = fallback_event_id
        if queue_source is not None and ENRICHMENT_FIELDS.isdisjoint(raw):
            # The usual case, validated in the same pass: under half the cost of the copy that
            # `enriched` makes. A producer's own copy of these fields takes the long way, so that
            # it is validated before being overwritten, as over HTTP.
            raw.update(_enrichment(queue_source, received_at))
            return parse_event(raw)
    event = parse_event(raw)
    if queue_source is None:
        return event
    return event.enriched(queue_source=queue_source, received_at=received_at)


def _enrichment(queue_source: str, received_at: datetime | None) -> dict[str, Any]:
    return {
        "received_at": received_at or datetime.now(UTC),
        "queue_source": queue_source,
        "processed_by": PROCESSED_BY,
    }


def describe_validation_error(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors(include_url=False)[:5]:
        where = ".".join(str(p) for p in error["loc"]) or "event"
        parts.append(f"{where}: {error['msg']}")
    return "; ".join(parts)


@dataclass(frozen=True, slots=True)
class InteractionColumns:
    """Many stored interactions, field by field and in their order: what training and fold-in read,
    with no object per event. `InteractionStore.scan` yields these; `from_documents` and
    `from_events` build them from the seed's documents or from validated events."""

    user_ids: list[str]
    types: list[str]
    timestamps: np.ndarray  # float64 seconds since the epoch
    product_ids: list[str | None]  # data.productId
    compared_ids: list[list[str] | None]  # data.productIDs
    view_durations: np.ndarray  # float64 seconds (product views), NaN where not given
    categories: list[str | None]
    institutions: list[str | None]
    queries: list[str | None]
    demographics: list[dict[str, Any] | None]  # data.userDemographics
    skipped: int = 0  # stored documents left out because they could not be read

    def __len__(self) -> int:
        return len(self.user_ids)

    def touched(self, row: int) -> list[str]:
        """Every product row `row` touches (`touched_products`)."""
        return touched_products(self.product_ids[row], self.compared_ids[row])

    @classmethod
    def from_events(cls, events: Sequence[InteractionEvent]) -> InteractionColumns:
        return cls.from_documents([event.to_document() for event in events])

    @classmethod
    def from_documents(
        cls, documents: Iterable[Any], timestamps: np.ndarray | None = None
    ) -> InteractionColumns:
        """Columns of stored documents (`InteractionEvent.to_document()` shapes, at least their
        user, type, timestamp and data); `timestamps` (seconds since the epoch), when a store
        keeps them apart, instead of each document's own. Read column by column, a million
        documents take seconds; a batch with an unreadable document is read again one by one and
        only those are left out (counted in `skipped`): a store may hold documents written before
        validation existed."""
        docs = documents if isinstance(documents, list) else list(documents)
        try:
            return _read_columns(docs, timestamps)
        except _UNREADABLE:
            pass
        readable = []
        for row, doc in enumerate(docs):
            try:
                _read_columns([doc], None if timestamps is None else timestamps[row : row + 1])
            except _UNREADABLE:
                continue
            readable.append(row)
        kept = None if timestamps is None else timestamps[readable]
        columns = _read_columns([docs[row] for row in readable], kept)
        return replace(columns, skipped=len(docs) - len(readable))


@dataclass(frozen=True, slots=True)
class FeedbackEvent:
    """What online metrics and contact limits read of a stored impression or reaction, without
    validating the whole event again (a customer's feedback is read on every request)."""

    event_id: str | None
    user_id: str
    type: str
    timestamp: float  # seconds since the epoch
    product_ids: tuple[str, ...]  # every product it touches (`touched_products`)
    recommendation_id: str | None = None
    channel: str | None = None
    arm: str | None = None
    model_version: str | None = None
    strategy: str | None = None
    age_group: str | None = None
    income_range: str | None = None

    @classmethod
    def from_document(cls, document: Any, timestamp: float | None = None) -> FeedbackEvent:
        """From a stored document (`InteractionEvent.to_document()` shape); `timestamp` when the
        store keeps it apart. Raises one of `_UNREADABLE` for a document it cannot read."""
        data = document.get("data") or {}
        demographics = data.get("userDemographics") or {}
        return cls(
            event_id=document.get("event_id"),
            user_id=document["user_id"],
            type=str(document["type"]),
            timestamp=_epoch(document["timestamp"]) if timestamp is None else timestamp,
            product_ids=tuple(touched_products(data.get("productId"), data.get("productIDs"))),
            recommendation_id=document.get("recommendation_id"),
            channel=data.get("channel"),
            arm=data.get("arm"),
            model_version=data.get("modelVersion"),
            strategy=data.get("strategy"),
            age_group=demographics.get("age_group"),
            income_range=demographics.get("income_range"),
        )

    @classmethod
    def from_event(cls, event: InteractionEvent) -> FeedbackEvent:
        return cls.from_document(event.to_document())


_UNREADABLE = (KeyError, AttributeError, TypeError, ValueError)
_NO_DATA: dict[str, Any] = {}


def _read_columns(docs: list[Any], timestamps: np.ndarray | None) -> InteractionColumns:
    """Every column of `docs`; raises one of `_UNREADABLE` on the first document it cannot read.

    Each column is one C-level `map` over the batch and each check one `set` of its types: a
    Python comprehension per column cost twice as much (bench/load.py)."""
    user_ids = list(map(itemgetter("user_id"), docs))
    if set(map(type, user_ids)) - {str} or "" in user_ids:
        raise ValueError("user_id must be a non-empty string")
    types = list(map(itemgetter("type"), docs))
    if set(map(type, types)) - {str, EventType}:
        raise TypeError("type must be a string")
    if timestamps is not None:
        times = np.asarray(timestamps, dtype=np.float64)
    else:
        times = np.array(
            [
                m.timestamp() if type(m) is datetime and m.tzinfo is not None else _epoch(m)
                for m in map(itemgetter("timestamp"), docs)
            ],
            dtype=np.float64,
        )
    datas = list(map(dict.get, docs, repeat("data")))
    if None in datas:
        datas = [data or _NO_DATA for data in datas]
    if set(map(type, datas)) - {dict}:
        raise TypeError("data must be an object")
    single = _field(datas, "productId")
    several = _field(datas, "productIDs")
    if set(map(type, single)) - {str, NoneType} or set(map(type, several)) - {list, NoneType}:
        raise TypeError("productId must be a string and productIDs a list")
    if any(set(map(type, ids)) - {str} for ids in several if ids):
        raise TypeError("productIDs must hold strings")
    durations = np.full(len(docs), np.nan)
    views = [row for row, kind in enumerate(types) if kind == _VIEW]
    if views:
        given = [datas[row].get("viewDuration") for row in views]
        durations[views] = np.array([np.nan if d is None else d for d in given], dtype=float)
    return InteractionColumns(
        user_ids=user_ids,
        types=types,
        timestamps=times,
        product_ids=single,
        compared_ids=several,
        view_durations=durations,
        categories=_texts(_field(datas, "category")),
        institutions=_texts(_field(datas, "institution")),
        queries=_texts(_field(datas, "query")),
        demographics=_mappings(_field(datas, "userDemographics")),
    )


_VIEW = EventType.PRODUCT_VIEW.value  # a plain str compares fastest


def _field(datas: list[dict[str, Any]], name: str) -> list[Any]:
    return list(map(dict.get, datas, repeat(name)))


def _epoch(moment: Any) -> float:
    """Seconds since the epoch; a naive datetime is UTC, an ISO string is parsed."""
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment)
    if not isinstance(moment, datetime):
        raise TypeError(f"timestamp must be a datetime, not {type(moment).__name__}")
    return (moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment).timestamp()


def _texts(values: list[Any]) -> list[str | None]:
    """Non-empty strings, anything else None; checked in C first (stored events pass as they are)."""
    if set(map(type, values)) <= {str, NoneType} and "" not in values:
        return values
    return [value if isinstance(value, str) and value else None for value in values]


def _mappings(values: list[Any]) -> list[dict[str, Any] | None]:
    if set(map(type, values)) <= {dict, NoneType} and {} not in values:
        return values
    return [value if isinstance(value, dict) and value else None for value in values]
