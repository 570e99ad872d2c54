"""Request and response shapes, as published in the OpenAPI schema."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class EvidenceOut(BaseModel):
    type: Literal["product", "feature", "fallback"]
    id: str = Field(description="A product id, a feature (`age_group:25-34`) or `popularity`")
    label: str = Field(description="The product's name, or the feature in words")
    value: float | None = Field(
        description="Its contribution to the score (for a trained customer's interacted "
        "product: the cosine between the two products)"
    )


class ReasonOut(BaseModel):
    code: Literal[
        "similar_to_interacted",
        "interacted",
        "session_product",
        "demographic",
        "popular_in_segment",
        "popular",
        "shared_features",
        "similar_interest",
    ]
    text: str = Field(description="The reason in words (what `reason` was before, as a string)")
    evidence: list[EvidenceOut]


class ContributionOut(BaseModel):
    kind: Literal[
        "user_feature", "item", "unseen_item", "item_feature", "item_bias", "other", "popularity"
    ]
    name: str
    value: float


class RecommendationOut(BaseModel):
    id: str
    name: str
    category: str
    institution: str
    relevanceScore: float = Field(
        ge=0, le=1, description="In [0, 1], never higher than the item above (docs/REASONS.md)"
    )
    score: float = Field(description="The raw score the strategy ranked by")
    rank: int = Field(ge=1)
    reason: ReasonOut
    contributions: list[ContributionOut] | None = Field(
        None, description="With `explain`: the exact split of `score`, largest first"
    )


class ExperimentArmOut(BaseModel):
    id: str = Field(description="The running experiment")
    arm: str = Field(description="The arm this answer was served under")


class RecommendationsOut(BaseModel):
    recommendation_id: str = Field(
        description="This list's id in the audit trail (also the X-Recommendation-ID header)"
    )
    recommendations: list[RecommendationOut]
    user_id: str | None = None
    session_id: str | None = None
    product_id: str | None = None
    timestamp: datetime
    model_version: str
    strategy: Literal["personalized", "features_cold_start", "popular", "session", "similar"]
    degraded: bool
    policy_version: str = Field(description="The rules file's version the list passed")
    explain: dict[str, Any] | None = Field(
        None, description="With explain=true (admin): what the policy filtered, by which rule"
    )
    experiment: ExperimentArmOut | None = Field(
        None, description="The experiment arm, while an experiment runs (null otherwise)"
    )


class AuditItemOut(BaseModel):
    id: str
    rank: int
    score: float | None = Field(description="None where the customer has not consented")
    reason: str | None


class AuditRecordOut(BaseModel):
    recommendation_id: str
    served_at: datetime
    user_id: str | None
    session_id: str | None
    product_id: str | None
    model_version: str
    policy_version: str | None
    strategy: str
    degraded: bool
    items: list[AuditItemOut]


class AuditRecordsOut(BaseModel):
    user_id: str
    records: list[AuditRecordOut] = Field(description="Newest first")


class ErasureReceiptOut(BaseModel):
    tombstone: str = Field(description="The keyed hash kept instead of the customer id")
    erased_at: datetime
    already_erased: bool = Field(description="True when an earlier erasure had kept the tombstone")
    deleted: dict[str, int] = Field(
        description="What this call deleted, by kind (interactions, audit_records, profiles)"
    )


class ErrorBody(BaseModel):
    code: str
    message: str
    details: list[dict] | None = None


class ErrorOut(BaseModel):
    error: ErrorBody


class IngestOut(BaseModel):
    accepted: int
    duplicates: int
    dropped_erased: int | None = Field(
        None, description="Events of erased customers, not stored (present only when some were)"
    )


class JobProgressOut(BaseModel):
    epochs_done: int
    epochs_total: int


class RefreshJobOut(BaseModel):
    job_id: str
    state: Literal["running", "succeeded", "not_activated", "skipped", "failed"]
    trigger: str
    started_at: datetime
    finished_at: datetime | None = None
    detail: str = ""
    model_version: str | None = None  # the version the training wrote (activated or not)
    progress: JobProgressOut | None = None  # the fit's epochs, reported by the training process


class HealthOut(BaseModel):
    status: Literal["ok"]


class ReadyOut(BaseModel):
    ready: bool
    model_version: str | None
    policy_version: str | None = None  # the rules file every recommendation passes
    checks: dict[str, str]
    model_refusal: str | None = None  # why the model directory's CURRENT version is not served


# --- the admin API (api/routers/admin.py), which the operator console calls --------------------------


class ModelStateOut(BaseModel):
    version: str | None
    age_seconds: float | None = Field(description="Since the serving version was trained")
    loaded_seconds_ago: float | None = Field(description="Since this process swapped it in")
    refusal: str | None = Field(description="Why the model directory's CURRENT is not served")


class EndpointTrafficOut(BaseModel):
    route: str
    per_second: float
    requests: int
    server_errors: int
    p99_seconds: float | None


class RecommendationTrafficOut(BaseModel):
    per_second: float
    degraded_share: float | None = Field(description="Degraded answers / all, None without any")
    by_strategy: dict[str, float]


class IngestionOut(BaseModel):
    per_second: dict[str, float] = Field(
        description="Events by outcome: stored, duplicate, rejected"
    )
    dead_lettered: dict[str, float] = Field(description="Dead-lettered in the window, by queue")


class DeadLetterOut(BaseModel):
    at: datetime
    queue: str
    reason: str


class DeadLetterQueuesOut(BaseModel):
    available: bool
    detail: str
    depths: dict[str, int] = Field(description="Messages waiting, by the queue they left")
    recent: list[DeadLetterOut] = Field(description="The last dead letters this process sent")


class BankingServiceOut(BaseModel):
    configured: bool
    breaker: Literal["closed", "opened", "half-opened"] | None


class ProductCacheOut(BaseModel):
    configured: bool
    hit_ratio: float | None
    lookups: int


class OverviewOut(BaseModel):
    """This replica's state; traffic figures cover the last `window_seconds`."""

    live: bool
    ready: bool
    checks: dict[str, str]
    model: ModelStateOut
    window_seconds: float
    endpoints: list[EndpointTrafficOut]
    recommendations: RecommendationTrafficOut
    ingestion: IngestionOut
    dead_letter_queues: DeadLetterQueuesOut
    banking_service: BankingServiceOut
    product_cache: ProductCacheOut
    refresh_job: RefreshJobOut | None


class GuardrailOut(BaseModel):
    activated: bool | None = Field(description="Whether training activated it (None: no verdict)")
    reason: str | None


class ModelVersionOut(BaseModel):
    version: str
    active: bool = Field(description="Named by CURRENT")
    bytes_on_disk: int
    error: str | None = Field(description="Why the manifest cannot be read; None when it can")
    created_at: datetime | None = None
    shape: dict[str, int] | None = None
    counts: dict[str, int] | None = None
    data_window: list[datetime | None] | None = None
    metrics: dict[str, Any] | None = Field(
        None, description="Validation metrics, as training wrote them"
    )
    parameters: dict[str, Any] | None = None
    guardrail: GuardrailOut | None = None


class ModelVersionsOut(BaseModel):
    active: str | None = Field(description="The version CURRENT names")
    serving: str | None = Field(description="The version this replica serves")
    versions: list[ModelVersionOut] = Field(description="Newest first")
    refresh_job: RefreshJobOut | None


class ActivationOut(BaseModel):
    active: str
    previous: str | None
    serving: str | None = Field(description="What this replica serves after the swap")


class CustomerEventOut(BaseModel):
    """An interaction as stored (the seed's document shape)."""

    model_config = ConfigDict(extra="allow")
    event_id: str
    user_id: str
    session_id: str | None = None
    type: str
    timestamp: datetime
    data: dict[str, Any]


class CustomerEventsOut(BaseModel):
    user_id: str
    events: list[CustomerEventOut] = Field(description="Newest first")


class CustomerProfileIn(BaseModel):
    """`PUT /customers/{user_id}/profile`'s body: every attribute optional (unknown), no other
    keys; `user_id` may repeat the path's; `updated_at` defaults to the time of arrival."""

    model_config = ConfigDict(extra="forbid")
    user_id: str | None = None
    birth_year: int | None = Field(None, ge=1900, le=2100)
    annual_income: float | None = Field(None, ge=0)
    income_range: str | None = Field(None, max_length=128)
    residency: str | None = Field(None, pattern=r"^[A-Z]{2}$", description="ISO 3166-1 alpha-2")
    region: str | None = Field(None, max_length=128)
    risk_profile: int | None = Field(None, ge=1, le=5, description="Suitability questionnaire")
    kyc_status: Literal["none", "pending", "verified"] | None = None
    holdings: list[str] = Field(default_factory=list, description="Product ids held")
    personalisation_consent: bool | None = None
    updated_at: datetime | None = None


class ConsentIn(BaseModel):
    """`PUT /customers/{user_id}/consent`'s body: the customer's answer on personalisation
    (false: they object, GDPR Art. 21); `updated_at` defaults to the time of arrival."""

    model_config = ConfigDict(extra="forbid")
    personalisation: bool
    updated_at: datetime | None = None


class CustomerProfileOut(BaseModel):
    user_id: str
    birth_year: int | None
    annual_income: float | None
    income_range: str | None
    residency: str | None
    region: str | None
    risk_profile: int | None
    kyc_status: Literal["none", "pending", "verified"] | None
    holdings: list[str]
    personalisation_consent: bool | None
    updated_at: datetime


class ProductOut(BaseModel):
    id: str
    name: str
    category: str
    institution: str
    interest_rate: float | None
    annual_fee: float | None
    risk_level: int | None
    term_months: int | None
    min_age: int | None
    min_income: float | None
    in_model: bool = Field(description="The serving model was trained with this product")


class ProductSearchOut(BaseModel):
    total: int
    products: list[ProductOut]


class EvaluationReportOut(BaseModel):
    file: str
    modified_at: datetime
    report: dict[str, Any] = Field(description="As written by `finverse-reco evaluate --json`")


class OnlineGroupOut(BaseModel):
    group: dict[str, str]
    impressions: int
    clicks: int
    applications: int
    dismissals: int
    click_through_rate: float
    conversion_rate: float
    dismissal_rate: float
    exposure_share: float = Field(description="The group's share of the impressed items")


class OnlineTotalOut(BaseModel):
    impressions: int
    clicks: int
    applications: int
    dismissals: int
    click_through_rate: float
    conversion_rate: float
    dismissal_rate: float


class OnlineStatsOut(BaseModel):
    since: datetime
    until: datetime
    window_seconds: float = Field(description="Attribution window after an impression")
    by: list[str]
    groups: list[OnlineGroupOut]
    total: OnlineTotalOut
    click_through_best_worst_ratio: float | None = Field(
        description="With one dimension: the best group's click-through rate over the worst's "
        "(known groups of 20+ impressed items; null with fewer than two)"
    )
