"""Settings, read from the environment (prefix ``RIGHTSLEDGER_``) by the composition root only."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from rightsledger.domain.deadlines import DeadlineRule, Period
from rightsledger.domain.retention import RETENTION_PURPOSES, Span


class PeriodSetting(BaseModel):
    months: int = Field(default=0, ge=0)
    days: int = Field(default=0, ge=0)

    def to_period(self) -> Period:
        return Period(months=self.months, days=self.days)


class JurisdictionSetting(BaseModel):
    respond_within: PeriodSetting
    extension: PeriodSetting

    def to_rule(self) -> DeadlineRule:
        return DeadlineRule(self.respond_within.to_period(), self.extension.to_period())


class RetentionSetting(BaseModel):
    """One entry of the retention table: how long, and why (the default's reasoning when
    left out)."""

    keep: PeriodSetting
    basis: str | None = Field(default=None, min_length=1, max_length=2000)

    def to_span(self) -> Span:
        return Span(months=self.keep.months, days=self.keep.days)


DEFAULT_JURISDICTIONS: dict[str, Any] = {
    "gdpr": {"respond_within": {"months": 1}, "extension": {"months": 2}},
    "ccpa": {"respond_within": {"days": 45}, "extension": {"days": 45}},
}


DEFAULT_ROLE_PURPOSES: dict[str, list[str]] = {
    "admin": ["account", "billing", "support", "legal", "marketing"],
    "intake": ["account"],
    "support": ["support", "account"],
    "billing": ["billing"],
    "marketing": ["marketing"],
    "privacy_officer": ["legal", "account", "billing", "support"],
    "auditor": ["legal"],
    "partner": [],
}


def default_data_dir(environ: Mapping[str, str]) -> Path:
    """``$XDG_DATA_HOME/rightsledger`` (``~/.local/share/rightsledger``): one place, whatever
    the directory a command runs from."""
    base = environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "rightsledger"


class Settings(BaseSettings):
    """Everything an operator can set. Nothing builds one at import time, and none changes
    once read (frozen): what a command derives from them is a new value (``model_copy``)."""

    model_config = SettingsConfigDict(env_prefix="RIGHTSLEDGER_", extra="ignore", frozen=True)

    database_url: SecretStr | None = Field(
        default=None,
        description="PostgreSQL URL; unset starts an embedded PostgreSQL under data_dir.",
    )
    database_schema: str = Field(
        default="public", pattern=r"^[a-z_][a-z0-9_]{0,40}$", description="PostgreSQL schema."
    )
    data_dir: Path = Field(
        default_factory=lambda: default_data_dir(os.environ),
        description="Home of the embedded PostgreSQL (and the embedded broker's log); the same "
        "for every command from any directory unless set (a relative path is taken from the "
        "current directory).",
    )
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    follower_processes: bool = Field(
        default=True,
        description="`serve` runs the projection worker and the request workers (with the "
        "relay) as processes of their own; false runs them as threads of the API process.",
    )
    group_commit: bool = Field(
        default=True, description="Write concurrent commands' events in one transaction."
    )
    group_commit_gather_ms: float = Field(
        default=2.0,
        ge=0,
        le=50,
        description="Under load (commands from several clients arriving less than two of "
        "these apart), the group commit waits this long after a batch's first command for "
        "others to join it; 0: never waits.",
    )
    web_workers: int = Field(default=1, ge=1, le=32, description="API processes for `serve`.")
    admin_key: SecretStr | None = Field(
        default=None, description="Seeds an admin API key at start, for local use."
    )
    pool_size: int = Field(
        default=4,
        ge=1,
        le=200,
        description="Event-store connections of an API process at most (one kept when idle).",
    )
    follower_pool_size: int = Field(
        default=2,
        ge=1,
        le=50,
        description="Event-store connections of a follower process or a CLI command at most.",
    )
    aggregate_cache_size: int = Field(default=20_000, ge=0)
    max_body_bytes: int = Field(default=256 * 1024, ge=1024)
    opentelemetry: bool = Field(
        default=False,
        description="FastAPI's own OpenTelemetry spans, metrics and logs, sent to the globally "
        "configured providers; off by default (its check runs on every request, and /metrics "
        "is Prometheus').",
    )
    idempotency_ttl_hours: float = Field(
        default=24.0, gt=0, le=24 * 30, description="How long an Idempotency-Key is remembered."
    )
    read_wait_seconds: float = Field(default=2.0, ge=0, le=30)
    jurisdictions: dict[str, JurisdictionSetting] = Field(
        default_factory=lambda: {
            k: JurisdictionSetting.model_validate(v) for k, v in DEFAULT_JURISDICTIONS.items()
        },
        description="Response deadline and extension per jurisdiction (JSON).",
    )
    role_purposes: dict[str, list[str]] = Field(
        default_factory=lambda: {k: list(v) for k, v in DEFAULT_ROLE_PURPOSES.items()},
        description="Purposes each role may declare when reading personal data (JSON).",
    )
    auth_failures_allowed: int = Field(
        default=10,
        ge=1,
        description="Failed authentications per client address, or per presented key, per "
        "minute before 429.",
    )
    auth_failures_keep_days: int = Field(
        default=90, ge=1, description="How long failed authentications are kept in the table."
    )
    auth_failures_keep_rows: int = Field(
        default=100_000, ge=100, description="Failed authentications kept in the table at most."
    )
    trusted_proxies: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Addresses or networks (comma-separated) of the proxies whose "
        "X-Forwarded-For and X-Forwarded-Proto are believed; none by default: the client "
        "address is then the connection's peer.",
    )
    run_projections: bool = Field(
        default=True, description="Run the projection worker inside the API process."
    )
    run_workers: bool = Field(
        default=True,
        description="Run the request workers and the Kafka relay inside the API process.",
    )
    kafka_bootstrap: str | None = Field(
        default=None,
        description="Kafka bootstrap servers; unset, `serve` starts the embedded broker.",
    )
    kafka_port: int = Field(default=9092, ge=1, le=65535, description="Embedded broker's port.")
    events_topic: str = Field(default="rightsledger.events", pattern=r"^[A-Za-z0-9._-]{1,200}$")
    notifications_topic: str = Field(
        default="rightsledger.partner-notifications", pattern=r"^[A-Za-z0-9._-]{1,200}$"
    )
    topic_partitions: int = Field(default=3, ge=1, le=1000)
    topic_replication_factor: int = Field(default=1, ge=1, le=10)
    retention: dict[str, dict[str, RetentionSetting]] = Field(
        default_factory=dict,
        description="How long each category is kept for each purpose (JSON), e.g. "
        '{"activity": {"troubleshooting": {"keep": {"days": 90}}}}; entries left out keep '
        "their default (see docs/data-protection.md).",
    )
    billing_retention_days: int | None = Field(
        default=None,
        ge=0,
        description="How long billing records are kept after erasure, in days (2557 when "
        "unset): the same as retention's billing/legal entry, which it sets.",
    )
    remind_before_days: int = Field(
        default=7, ge=0, description="Remind and escalate this many days before a due date."
    )
    sweep_seconds: float = Field(default=30.0, gt=0, description="Deadline sweep interval.")
    ready_lag_seconds: float = Field(
        default=30.0,
        gt=0,
        description="`/ready` answers 503 when events have waited longer than this for a follower.",
    )
    ready_stale_seconds: float = Field(
        default=15.0,
        gt=0,
        description="`/ready` answers 503 when a follower has not reported for this long.",
    )

    @field_validator("jurisdictions")
    @classmethod
    def _not_empty(cls, value: dict[str, JurisdictionSetting]) -> dict[str, JurisdictionSetting]:
        if not value:
            msg = "at least one jurisdiction must be configured"
            raise ValueError(msg)
        return value

    @field_validator("retention")
    @classmethod
    def _known_retention(
        cls, value: dict[str, dict[str, RetentionSetting]]
    ) -> dict[str, dict[str, RetentionSetting]]:
        for category, purposes in value.items():
            allowed = RETENTION_PURPOSES.get(category)
            if allowed is None:
                msg = (
                    f"retention: no schedule is set for {category!r}; the categories with a "
                    f"schedule are {', '.join(RETENTION_PURPOSES)}"
                )
                raise ValueError(msg)
            for purpose in purposes:
                if purpose not in allowed:
                    msg = f"retention: {category} is kept for {', '.join(allowed)}, not {purpose!r}"
                    raise ValueError(msg)
        return value

    @model_validator(mode="after")
    def _one_billing_retention(self) -> Settings:
        entry = self.retention.get("billing", {}).get("legal")
        if (
            entry is not None
            and self.billing_retention_days is not None
            and entry.to_span() != Span(days=self.billing_retention_days)
        ):
            msg = (
                "billing_retention_days and retention's billing/legal entry disagree; "
                "set one of them"
            )
            raise ValueError(msg)
        return self

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _proxies(cls, value: object) -> object:
        if isinstance(value, str):
            value = [item.strip() for item in value.split(",") if item.strip()]
        if isinstance(value, list):
            for item in value:
                if item != "*":
                    ipaddress.ip_network(str(item), strict=False)  # ValueError names it
        return value

    def deadline_rules(self) -> dict[str, DeadlineRule]:
        return {name: setting.to_rule() for name, setting in self.jurisdictions.items()}
