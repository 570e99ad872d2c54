"""Every setting of the service, read once from the environment (prefix FINVERSE_) and `.env`.

Only the composition roots (`cli.py`, `api/app.py`) construct `Settings`; everything else receives the
values it needs. A bad value stops start-up with a message naming the setting.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import limits
import orjson
from pydantic import (
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from finverse_reco.events import DEFAULT_TYPE_WEIGHTS
from finverse_reco.schedule import OFF, is_valid_schedule

DEFAULT_API_KEY = "change-me"
# The development writer key (`make run` prints it); production refuses to start with it.
DEFAULT_WRITER_API_KEY = "change-me-writer"
DEFAULT_ERASURE_KEY = "change-me-erasure-key"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="FINVERSE_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    # --- process and HTTP
    environment: Literal["development", "production"] = "development"
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    api_key: str = DEFAULT_API_KEY
    # Clients allowed to POST interactions send one of these in X-API-Key (a JSON list: add the
    # new key, move the clients, drop the old one). Never the admin key.
    writer_api_keys: list[str] = Field(default_factory=lambda: [DEFAULT_WRITER_API_KEY])
    # Optional: a client may instead sign the body, X-Signature: sha256=<hex HMAC-SHA256 of the body>.
    writer_hmac_secret: str | None = Field(None, min_length=32)
    # Events naming a product the catalog does not know are refused (422) unless this is true.
    accept_unknown_products: bool = False
    # The sane window of an event's timestamp at the write entry points (HTTP and RabbitMQ).
    event_earliest: datetime = datetime(2000, 1, 1, tzinfo=UTC)
    event_max_future_seconds: int = Field(300, ge=0)
    cors_origins: list[str] = Field(default_factory=list)
    max_body_bytes: int = Field(1_048_576, ge=1024)
    # The request line plus headers: past either bound the connection gets 431 and is closed.
    max_header_bytes: int = Field(65_536, ge=4096)
    max_headers: int = Field(100, ge=10)
    # The refresh action and failed authentications, per client address and replica, e.g. '30/hour'.
    admin_rate_limit: str = "10/minute"
    # Polling a refresh job's state: an operator or console checking every second stays under it.
    admin_read_rate_limit: str = "120/minute"
    workers: int = Field(1, ge=1, le=64)  # `serve` worker processes sharing the port
    metrics_port: int | None = Field(None, ge=1, le=65535)  # consume / train --schedule /metrics
    # Signs console session cookies; unset, it is derived from the API key (rotating either ends
    # every console session).
    console_session_secret: str | None = Field(None, min_length=32)
    console_session_minutes: int = Field(30, ge=1, le=24 * 60)
    evaluation_dir: Path = Path("data/evaluations")  # `evaluate --json` reports the console shows

    # --- data
    store_url: str = "sqlite:///data/interactions.db"
    # MongoDB: options written in the URL win over these (docs/STORES.md). The operation timeout
    # of every store call, finding a server included. Serving processes: short, a request never
    # waits out an election.
    store_timeout_ms: int = Field(2000, ge=50)
    # consume, train, seed-demo, migrate: longer than an election (~10-12 s), so a failover delays
    # ingestion and training instead of failing them (the driver retries within it).
    store_worker_timeout_ms: int = Field(15_000, ge=50)
    store_pool_size: int = Field(50, ge=1)
    # The training scan's URL, e.g. with `readPreference=secondaryPreferred`; default: store_url.
    store_trainer_url: str | None = None
    model_dir: Path = Path("data/models")
    # Where model versions live: `dir` the model directory (shared by every process using it);
    # `store` the interaction store's database (GridFS / a SQLite blob table), the model directory
    # then only this process's local cache (docs/OPERATIONS.md, "Many replicas").
    artifacts: Literal["dir", "store"] = "dir"
    # One training at a time: a lease in the store, renewed every third of this while training; a
    # killed trainer's lease runs out after it.
    training_lease_seconds: float = Field(60.0, ge=1)
    catalog_path: Path = Path("data/catalog.json")
    # The policy step (docs/POLICY.md): the rules file (unset: the shipped default), and an off
    # switch for measurements only (refused in production).
    policy_file: Path | None = None
    # Where the policy variants experiment arms name live (docs/FEEDBACK.md): an arm names a file
    # in it, never a path. Unset: the rules file's directory.
    policy_variants_dir: Path | None = None
    policy_enabled: bool = True
    policy_catalog_refresh_seconds: float = Field(300.0, gt=0)
    banking_url: str | None = None
    banking_timeout_ms: int = Field(300, ge=10)
    banking_budget_ms: int = Field(800, ge=10)
    banking_max_retries: int = Field(2, ge=0, le=10)
    banking_breaker_failures: int = Field(5, ge=1)
    banking_breaker_reset_seconds: float = Field(10.0, gt=0)
    redis_url: str | None = None
    cache_ttl_seconds: int = Field(300, ge=1)
    rabbitmq_url: str | None = None
    rabbitmq_name_prefix: str = Field("", pattern=r"^[A-Za-z0-9_.:-]{0,64}$")
    # Twice the batch: the next batch arrives while one is being stored (+8% measured, bench/ingest.py).
    rabbitmq_prefetch: int = Field(1000, ge=1)
    rabbitmq_message_ttl_ms: int = Field(7 * 24 * 3600 * 1000, ge=1000)
    rabbitmq_queue_type: Literal["classic", "quorum"] = "classic"
    rabbitmq_max_attempts: int = Field(5, ge=1)
    rabbitmq_retry_delay_ms: int = Field(5000, ge=10)
    ingest_batch_size: int = Field(500, ge=1)
    ingest_batch_timeout_ms: int = Field(200, ge=1)

    # --- the audit trail (docs/ACCOUNTABILITY.md); the off switch is for measurements only
    # (refused in production: a bank must be able to say what it showed).
    audit_enabled: bool = True
    audit_buffer_size: int = Field(100_000, ge=1)  # records held while the store is down
    audit_batch_size: int = Field(500, ge=1)
    audit_flush_ms: int = Field(200, ge=1)
    audit_retention_days: int | None = Field(5 * 365, ge=1)  # unset: kept for ever

    # Keys the tombstones of erased customers (an HMAC of the id). Changing it makes every
    # tombstone unmatchable: erased customers' late events would be stored again.
    erasure_key: str = Field(DEFAULT_ERASURE_KEY, min_length=16)

    # --- model (seed defaults)
    model_components: int = Field(50, ge=2, le=1024)
    model_learning_rate: float = Field(0.05, gt=0, le=1)
    model_loss: Literal["warp", "bpr", "logistic", "warp-kos"] = "warp"
    model_epochs: int = Field(20, ge=1, le=1000)
    model_user_alpha: float = Field(1e-5, ge=0)
    model_item_alpha: float = Field(1e-5, ge=0)
    model_threads: int = Field(2, ge=1)
    model_keep_versions: int = Field(5, ge=1)
    model_max_precision_drop: float = Field(0.02, ge=0, le=1)
    # A params file from `finverse-reco tune`: when set, it decides what is fitted (the model_*
    # values above except model_threads are then unused), for every training run.
    model_params_file: Path | None = None
    # The customer attributes the model may learn from and serve by (demographics: age_group,
    # income_range, location); unset: all. E.g. '["age_group", "income_range"]' trains and serves
    # without location (docs/FAIRNESS.md).
    model_user_attributes: list[str] | None = None

    # --- interaction weighting
    type_weights: dict[str, float] = Field(default_factory=lambda: dict(DEFAULT_TYPE_WEIGHTS))
    view_saturation_seconds: float = Field(30.0, gt=0)
    decay_half_life_days: float = Field(90.0, gt=0)
    training_window_days: int | None = Field(None, ge=1)
    # Share of a customer's positive weight on a product kept once they dismissed it (0: the pair
    # leaves the positives; 1: dismissals ignored by training). docs/FEEDBACK.md.
    dismiss_keep: float = Field(0.0, ge=0, le=1)

    # --- feedback: experiments and online metrics (docs/FEEDBACK.md)
    # The experiments (arms, shares); written by the admin API, re-read by every replica when it
    # changes. Put it where every replica sees the same file (beside the models).
    experiments_file: Path = Path("data/experiments.json")
    # A click, application or dismissal counts for an impression it follows within this time.
    online_attribution_hours: float = Field(24.0, gt=0)
    # /metrics: the online metrics of the impressions of the trailing period, re-read from the
    # store at most this often.
    online_metrics_hours: float = Field(24.0, gt=0)
    online_metrics_refresh_seconds: float = Field(60.0, ge=0)

    # --- lifecycle
    refresh_schedule: str = "@hourly"
    model_poll_seconds: float = Field(10.0, gt=0)
    seed_demo_on_empty: bool = True

    @field_validator("refresh_schedule")
    @classmethod
    def _schedule(cls, value: str) -> str:
        value = value.strip()
        if value in {OFF, "none", ""}:
            return OFF
        if not is_valid_schedule(value):
            raise ValueError(
                "use a cron expression ('0 * * * *', '@hourly') or an interval ('15m')"
            )
        return value

    @field_validator("writer_api_keys")
    @classmethod
    def _writer_keys(cls, value: list[str]) -> list[str]:
        if any(len(key) < 8 for key in value):
            raise ValueError("every writer key needs at least 8 characters")
        return value

    @field_validator("event_earliest")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("needs a time zone, e.g. 2000-01-01T00:00:00Z")
        return value

    @field_validator("admin_rate_limit", "admin_read_rate_limit")
    @classmethod
    def _rate_limit(cls, value: str) -> str:
        try:
            allowed = limits.parse(value).amount
        except ValueError:
            allowed = 0
        if allowed < 1:
            raise ValueError("use '<count ≥ 1>/<second|minute|hour|day>', e.g. '10/minute'")
        return value

    @field_validator("store_url")
    @classmethod
    def _store_url(cls, value: str) -> str:
        if not value.startswith(("sqlite://", "mongodb://", "mongodb+srv://")):
            raise ValueError("must start with sqlite:/// or mongodb://")
        return value

    @field_validator("store_trainer_url")
    @classmethod
    def _store_trainer_url(cls, value: str | None) -> str | None:
        if not value:
            return None  # unset, or set empty: training reads FINVERSE_STORE_URL
        if not value.startswith(("mongodb://", "mongodb+srv://")):
            raise ValueError("must start with mongodb:// (a MongoDB store's URL for training)")
        return value

    @field_validator("type_weights")
    @classmethod
    def _weights(cls, value: dict[str, float]) -> dict[str, float]:
        if any(w < 0 for w in value.values()):
            raise ValueError("weights must be >= 0")
        return {**DEFAULT_TYPE_WEIGHTS, **value}

    @model_validator(mode="after")
    def _trainer_reads_the_same_store(self) -> Settings:
        if self.store_trainer_url and not self.store_url.startswith("mongodb"):
            raise ValueError("FINVERSE_STORE_TRAINER_URL needs a MongoDB FINVERSE_STORE_URL")
        return self

    @model_validator(mode="after")
    def _production_guards(self) -> Settings:
        if self.environment == "production" and self.api_key in {"", DEFAULT_API_KEY}:
            raise ValueError("FINVERSE_API_KEY must be set to a secret in production")
        if self.api_key in self.writer_api_keys:
            raise ValueError(
                "FINVERSE_WRITER_API_KEYS must not hold the admin key (FINVERSE_API_KEY)"
            )
        if "*" in self.cors_origins and self.environment == "production":
            raise ValueError("FINVERSE_CORS_ORIGINS may not be '*' in production")
        if not self.policy_enabled and self.environment == "production":
            raise ValueError("FINVERSE_POLICY_ENABLED may not be false in production")
        if not self.audit_enabled and self.environment == "production":
            raise ValueError("FINVERSE_AUDIT_ENABLED may not be false in production")
        if self.environment == "production" and DEFAULT_WRITER_API_KEY in self.writer_api_keys:
            raise ValueError("FINVERSE_WRITER_API_KEYS must not hold the default key in production")
        if self.environment == "production" and self.erasure_key == DEFAULT_ERASURE_KEY:
            raise ValueError("FINVERSE_ERASURE_KEY must be set to a secret in production")
        return self


class SettingsError(SystemExit):
    pass


def load_settings(**overrides: object) -> Settings:
    """Settings from the environment, or a SettingsError naming every bad FINVERSE_ variable."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        lines = []
        for error in exc.errors(include_url=False):
            name = (
                "FINVERSE_" + "_".join(str(p) for p in error["loc"]).upper() if error["loc"] else ""
            )
            lines.append(f"  {name or 'settings'}: {error['msg']}")
        raise SettingsError("invalid configuration:\n" + "\n".join(lines)) from None


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment that reproduces `settings` in a child process (e.g. a training run)."""
    env = {}
    for name, value in settings.model_dump(mode="json").items():
        if value is None:
            continue
        key = f"FINVERSE_{name.upper()}"
        env[key] = value if isinstance(value, str) else orjson.dumps(value).decode()
    return env
