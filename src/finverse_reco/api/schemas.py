"""Request and response shapes, as published in the OpenAPI schema."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class RecommendationOut(BaseModel):
    id: str
    name: str
    category: str
    institution: str
    relevanceScore: float
    rank: int = Field(ge=1)
    reason: str


class ExperimentArmOut(BaseModel):
    id: str = Field(description="The running experiment")
    arm: str = Field(description="The arm this answer was served under")


class RecommendationsOut(BaseModel):
    recommendations: list[RecommendationOut]
    user_id: str | None = None
    session_id: str | None = None
    product_id: str | None = None
    timestamp: datetime
    model_version: str
    strategy: Literal["personalized", "features_cold_start", "popular", "session", "similar"]
    degraded: bool
    experiment: ExperimentArmOut | None = Field(
        None, description="The experiment arm, while an experiment runs (null otherwise)"
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
