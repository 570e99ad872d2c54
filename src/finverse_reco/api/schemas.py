"""Request and response shapes, as published in the OpenAPI schema."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field


class RecommendationOut(BaseModel):
    id: str
    name: str
    category: str
    institution: str
    relevanceScore: float
    rank: int = Field(ge=1)
    reason: str


class RecommendationsOut(BaseModel):
    recommendations: list[RecommendationOut]
    user_id: str | None = None
    session_id: str | None = None
    product_id: str | None = None
    timestamp: datetime
    model_version: str
    strategy: Literal["personalized", "features_cold_start", "popular", "session", "similar"]
    degraded: bool


class ErrorBody(BaseModel):
    code: str
    message: str
    details: list[dict] | None = None


class ErrorOut(BaseModel):
    error: ErrorBody


class IngestOut(BaseModel):
    accepted: int
    duplicates: int


class RefreshJobOut(BaseModel):
    job_id: str
    state: Literal["running", "succeeded", "not_activated", "skipped", "failed"]
    trigger: str
    started_at: datetime
    finished_at: datetime | None = None
    detail: str = ""


class HealthOut(BaseModel):
    status: Literal["ok"]


class ReadyOut(BaseModel):
    ready: bool
    model_version: str | None
    checks: dict[str, str]
    model_refusal: str | None = None  # why the model directory's CURRENT version is not served
