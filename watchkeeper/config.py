"""The one typed configuration object, loaded from `watchkeeper.yaml`.

Everything that can be configured is here with its default, so that a missing file still gives
a working stack and a wrong file fails at load time naming the file, the key path and what was
expected. Secrets may be written as `${ENV_VAR}` inside receiver URLs.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from .config_errors import KeyPathError, describe, read_yaml

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0, None: 1.0}


class ConfigError(ValueError):
    """A configuration file that cannot be used; the message names file, key and expectation."""


def parse_duration(value: object) -> float:
    """Seconds from `90`, `"90s"`, `"5m"`, `"1.5h"`, `"2d"` or `"1w"`."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 30s, 5m, 1h")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError("expected a non-negative duration")
        return float(value)
    if isinstance(value, str):
        match = _DURATION.match(value)
        if match:
            return float(match.group(1)) * _UNITS[match.group(2)]
    raise ValueError(f"expected a duration such as 30s, 5m, 1h; got {value!r}")


def format_duration(seconds: float) -> str:
    """The shortest of `45s`, `5m`, `2h`, `3d` that is exact, for messages."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


Duration = Annotated[float, BeforeValidator(parse_duration)]


def _sha256(value: object) -> object:
    if not isinstance(value, str) or not re.fullmatch(r"[0-9a-fA-F]{64}", value):
        raise ValueError(f"expected the 64 hex digits of a SHA-256, got {value!r}")
    return value.lower()


Sha256 = Annotated[str, BeforeValidator(_sha256)]

_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def expand_env(value: object) -> object:
    """`${NAME}` in a string replaced by that environment variable, which must be set."""
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in os.environ:
            raise ValueError(f"environment variable {name} is not set")
        return os.environ[name]

    return _ENV.sub(substitute, value)


EnvStr = Annotated[str, BeforeValidator(expand_env)]
"""A string that may hold `${ENV_VAR}` references (secrets), expanded at load time."""
Probability = Annotated[float, Field(gt=0.0, lt=1.0)]

RUNBOOK_PLACEHOLDERS = ("model", "check", "subject", "version")


def _check_runbook_url(value: str | None) -> str | None:
    """A runbook URL may use `{model}`, `{check}`, `{subject}` and `{version}`, nothing else."""
    if value:
        try:
            value.format(**{name: "" for name in RUNBOOK_PLACEHOLDERS})
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(
                f"runbook_url {value!r} has a bad placeholder ({exc}); it may use "
                + ", ".join(f"{{{name}}}" for name in RUNBOOK_PLACEHOLDERS)
            ) from None
    return value


RunbookUrl = Annotated[str | None, AfterValidator(_check_runbook_url)]
"""A URL with optional `{model}`, `{check}`, `{subject}`, `{version}` placeholders."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class InfluxDBConfig(_Section):
    """Where the InfluxDB backend writes, and how long a write may take before it gives up.

    `token` may be written as `${ENV_VAR}` (expanded at load time); it is kept as a secret and
    never printed. A write attempt is cut at `timeout`; a batch is retried at most
    `max_retries` times and never past `max_retry_time`, so a dead server cannot hang the
    process.
    """

    url: EnvStr
    org: Annotated[EnvStr, Field(min_length=1)]
    bucket: Annotated[EnvStr, Field(min_length=1)]
    token: Annotated[SecretStr, BeforeValidator(expand_env)] = SecretStr("")
    timeout: Annotated[Duration, Field(gt=0.0)] = 10.0
    max_retries: int = Field(3, ge=0, le=100)
    max_retry_time: Duration = 30.0
    retry_interval: Duration = 0.5
    gzip: bool = False

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"expected an http:// or https:// URL, got {value!r}")
        return value.rstrip("/")


class StorageConfig(_Section):
    """Where samples, predictions, labels and findings live.

    `backend: sqlite` (the default) keeps them in `path`; `backend: influxdb` sends them to
    the `influxdb:` section's bucket (alert state stays a local file under `path` either way).
    """

    backend: Literal["sqlite", "influxdb"] = "sqlite"
    path: Path = Path("watchkeeper-data")
    influxdb: InfluxDBConfig | None = None
    busy_timeout: Annotated[Duration, Field(gt=0.0)] = 10.0
    """SQLite: how long a read or write waits for another process's lock before it fails
    (the ingest API then answers 503 and the client retries)."""

    @model_validator(mode="after")
    def _backend_configured(self) -> StorageConfig:
        if self.backend == "influxdb" and self.influxdb is None:
            raise ValueError(
                "backend influxdb needs a storage.influxdb section with url, org, bucket, token"
            )
        return self

    @property
    def store_file(self) -> Path:
        return self.path / "watchkeeper.db"

    @property
    def alert_state_file(self) -> Path:
        return self.path / "alerts.db"


class IngestToken(_Section):
    """One service's bearer token for the ingest API and the models it may write (`*`: any).

    The token itself is never written in the file: give either `sha256`, the hex SHA-256 of
    the token (`printf %s TOKEN | sha256sum`), or `env`, the name of an environment variable
    that holds the token when the server starts.
    """

    name: str = Field(min_length=1)
    models: list[Annotated[str, Field(min_length=1)]] = Field(min_length=1)
    sha256: str | None = Field(None, pattern=r"^[0-9a-fA-F]{64}$")
    env: str | None = Field(None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")

    @model_validator(mode="after")
    def _one_source(self) -> IngestToken:
        if (self.sha256 is None) == (self.env is None):
            raise ValueError("give exactly one of sha256 (hex digest of the token) or env")
        return self


class IngestConfig(_Section):
    """The ingest API: where it listens, its limits, and who may write (no tokens: anyone).

    `tokens_file` is a YAML list of more tokens in the format of `tokens`, reread when it
    changes (checked at most every 2 s), so tokens rotate without a restart.
    `rate_limit` is records per second per token (per client address without tokens), with
    bursts of up to `rate_burst` records (default: `max_batch_items`); over it, 429 with
    `Retry-After`. With `tls_certfile` and `tls_keyfile` (PEM) it serves HTTPS only.
    """

    host: str = "127.0.0.1"
    port: int = Field(8765, ge=0, le=65535)
    max_body_bytes: int = Field(10_000_000, gt=0)
    max_batch_items: int = Field(10_000, gt=0)
    tokens: list[IngestToken] = []
    tokens_file: Path | None = None
    rate_limit: float | None = Field(None, gt=0)
    rate_burst: int | None = Field(None, gt=0)
    tls_certfile: Path | None = None
    tls_keyfile: Path | None = None

    @model_validator(mode="after")
    def _tls_pair(self) -> IngestConfig:
        if (self.tls_certfile is None) != (self.tls_keyfile is None):
            raise ValueError("tls_certfile and tls_keyfile go together: set both or neither")
        return self


class ScrapeTarget(_Section):
    """A Prometheus `/metrics` endpoint the scraper reads, its samples stored under `model`.

    `labels` are added to every sample; `bearer_token_env` names an environment variable
    holding a bearer token for the target.
    """

    url: str
    model: str = Field(min_length=1)
    interval: Annotated[Duration, Field(gt=0.0)] = 15.0
    timeout: Annotated[Duration, Field(gt=0.0)] = 10.0
    labels: dict[str, str] = {}
    bearer_token_env: str | None = Field(None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")

    @field_validator("url")
    @classmethod
    def _scrape_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"expected an http:// or https:// URL, got {value!r}")
        return value


class _Check(_Section):
    """What every check has: a switch, how long a breach must last before the alert fires
    (`for`), how long a fired alert stays firing after the breach clears
    (`keep_firing_for`), the severity of its alerts and their runbook (`runbook_url`; unset:
    the model's, then `detector.defaults.runbook_url`)."""

    enabled: bool = True
    for_: Duration = Field(900.0, alias="for")
    keep_firing_for: Duration = 0.0
    severity: Literal["info", "warning", "critical"] = "warning"
    runbook_url: RunbookUrl = None


class UpCheck(_Check):
    """Fires when a model has sent nothing for longer than `staleness`."""

    staleness: Duration = 300.0
    for_: Duration = Field(0.0, alias="for")
    severity: Literal["info", "warning", "critical"] = "critical"


class ErrorRateCheck(_Check):
    """Fires when the error rate is above `threshold` with `confidence` (Wilson lower bound)."""

    threshold: Probability = 0.05
    confidence: Probability = 0.95
    min_count: int = Field(20, ge=1)
    for_: Duration = Field(300.0, alias="for")
    severity: Literal["info", "warning", "critical"] = "critical"


class DriftCheck(_Check):
    """Has a feature's, the prediction's or the label's distribution moved from the reference?

    Numeric columns use `numeric_test` (default KS), categorical ones `categorical_test`
    (default chi-square). `p_value` is the error rate controlled across every test of the
    model in one window (Holm or BH, see `ChecksConfig.correction`); `min_effect` is the
    smallest effect worth paging for (KS statistic for numeric columns, total variation
    distance for categorical ones), so that a huge sample with a negligible shift stays quiet.
    PSI, Jensen-Shannon and Wasserstein (normed by the reference spread) have no p-value and
    use their own thresholds. `reference` is how much of a model's first data is its reference
    when the model sets no other (`ModelConfig.reference`).
    """

    p_value: Probability = 0.01
    min_effect: float = Field(0.1, gt=0.0, le=1.0)
    min_samples: int = Field(50, ge=5)
    reference: Duration = 3600.0
    numeric_test: Literal["ks", "psi", "js", "wasserstein"] = "ks"
    categorical_test: Literal["chi2", "psi", "js"] = "chi2"
    psi_threshold: float = Field(0.25, gt=0.0)
    js_threshold: float = Field(0.1, gt=0.0, le=1.0)
    wasserstein_threshold: float = Field(0.25, gt=0.0)


class LatencyCheck(_Check):
    """Fires when the latency `quantile` is above `slo_ms`, or, without an SLO, when it rose
    clearly above the model's own baseline (the trailing `baseline` of windows before).

    The test counts window latencies above the baseline quantile (binomial, one-sided) and
    also requires the quantile to be at least `min_ratio` times the baseline.
    """

    p_value: Probability = 0.01
    quantile: float = Field(0.95, gt=0.0, lt=1.0)
    slo_ms: float | None = Field(None, gt=0.0)
    min_ratio: float = Field(1.5, gt=1.0)
    baseline: Duration = 86400.0
    min_count: int = Field(50, ge=5)


class ThroughputCheck(_Check):
    """Fires when traffic drops below `drop_ratio` or spikes above `spike_ratio` times its
    baseline, the median of the same time of day over the trailing `baseline` (daily
    seasonality), and a Poisson test agrees. Not judged before a day of history is known."""

    p_value: Probability = 0.01
    drop_ratio: float = Field(0.5, gt=0.0, lt=1.0)
    spike_ratio: float = Field(2.0, gt=1.0)
    baseline: Duration = 7 * 86400.0


class FallbackRateCheck(_Check):
    """Fires when the share of predictions served by a fallback is above `threshold` with
    `confidence` (Wilson lower bound), like the error rate."""

    threshold: Probability = 0.05
    confidence: Probability = 0.95
    min_count: int = Field(20, ge=1)


class EfficacyCheck(_Check):
    """Has the model got worse against its labels? Judged on the window ending `delay` before
    the evaluation time (None: inferred from how late labels arrive), only when at least
    `min_coverage` of it is labelled and `min_labels` labels are known; breached when a metric
    is significantly below the reference (one-sided, in the model's correction family) by at
    least `min_drop` (absolute, or relative for MAE and RMSE)."""

    p_value: Probability = 0.01
    delay: Duration | None = None
    min_coverage: Probability = 0.5
    min_labels: int = Field(50, ge=5)
    min_drop: float = Field(0.1, gt=0.0)
    confidence: Probability = 0.95
    for_: Duration = Field(3600.0, alias="for")
    severity: Literal["info", "warning", "critical"] = "critical"


class MissingCheck(_Check):
    """Fires when a feature's missing-value rate rose by at least `min_increase` over the
    reference's rate, significantly (binomial, in the correction family)."""

    p_value: Probability = 0.01
    min_increase: float = Field(0.1, gt=0.0, le=1.0)
    min_samples: int = Field(30, ge=1)


class OutOfRangeCheck(_Check):
    """Fires when at least `min_fraction` of a numeric feature's values fall outside the
    reference range widened by `margin` times its width on each side, significantly more
    often than a new draw from the reference would."""

    p_value: Probability = 0.01
    margin: float = Field(0.1, ge=0.0)
    min_fraction: Probability = 0.02
    min_samples: int = Field(30, ge=1)


class SchemaCheck(_Check):
    """Fires on wrong types (a numeric feature receiving text), unseen categories, features
    that stopped arriving or new ones, when at least `min_fraction` of a window is affected."""

    p_value: Probability = 0.01
    min_fraction: Probability = 0.05
    min_samples: int = Field(30, ge=1)


class ChecksConfig(_Section):
    """Every check of a model, each with its own defaults; `correction` is how the p-values of
    all tests of a model in one window are corrected together (Holm: family-wise error rate;
    bh: Benjamini-Hochberg false discovery rate). Every check also has `for` (how long a breach
    must last before its alert fires) and `keep_firing_for` (how long a firing alert stays
    firing after its condition clears)."""

    up: UpCheck = UpCheck()
    error_rate: ErrorRateCheck = ErrorRateCheck()
    drift: DriftCheck = DriftCheck()
    latency: LatencyCheck = LatencyCheck()
    throughput: ThroughputCheck = ThroughputCheck()
    fallback_rate: FallbackRateCheck = FallbackRateCheck()
    efficacy: EfficacyCheck = EfficacyCheck()
    missing: MissingCheck = MissingCheck()
    out_of_range: OutOfRangeCheck = OutOfRangeCheck()
    schema_: SchemaCheck = Field(SchemaCheck(), alias="schema")
    correction: Literal["holm", "bh"] = "holm"

    def settings(self, check: str) -> _Check | None:
        """The settings of the check called `check` (as findings name it), None if unknown.

        Use this rather than `getattr`: the `schema` check is kept in the attribute `schema_`
        because pydantic reserves the name.
        """
        name = "schema_" if check == "schema" else check
        if name == "correction" or name not in type(self).model_fields:
            return None
        found = getattr(self, name)
        return found if isinstance(found, _Check) else None

    def timing(self, check: str) -> tuple[float, float]:
        """`(for, keep_firing_for)` in seconds of the check called `check`; zeros if unknown."""
        settings = self.settings(check)
        if settings is None:
            return 0.0, 0.0
        return float(getattr(settings, "for_", 0.0)), float(
            getattr(settings, "keep_firing_for", 0.0)
        )


def parse_time(value: object) -> float:
    """Unix seconds from an ISO 8601 time (`2026-11-01T00:00:00Z`; no zone: UTC), a date
    (midnight UTC), a YAML timestamp or a number of Unix seconds."""
    if isinstance(value, bool):
        raise ValueError("expected an ISO 8601 time such as 2026-11-01T00:00:00Z")
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise ValueError(f"expected an ISO 8601 time such as 2026-11-01T00:00:00Z, got {value}")
        return float(value)
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip())
        except ValueError:
            raise ValueError(
                f"expected an ISO 8601 time such as 2026-11-01T00:00:00Z, got {value!r}"
            ) from None
    if isinstance(value, date) and not isinstance(value, datetime):
        value = datetime(value.year, value.month, value.day)
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.timestamp()
    raise ValueError(f"expected an ISO 8601 time such as 2026-11-01T00:00:00Z, got {value!r}")


Timestamp = Annotated[float, BeforeValidator(parse_time)]


def _existing_file(value: Path, info: ValidationInfo) -> Path:
    """A reference file, relative paths taken from the configuration file's folder (the
    `base_dir` of the validation context; without one, the working directory)."""
    base = (info.context or {}).get("base_dir") if isinstance(info.context, dict) else None
    path = value.expanduser()
    if not path.is_absolute():
        path = Path(base or Path.cwd()) / path
    path = path.resolve()
    if not path.is_file():
        raise ValueError(f"no such file: {path}")
    return path


class ReferenceConfig(_Section):
    """Which data a model's checks compare with (drift, data quality, baseline efficacy).

    One of: `file`, a CSV or Parquet file of features, `prediction` and optionally `label`
    (training or validation data), profiled once; `start` and `end`, a fixed window of the
    model's own history; `trailing`, a window of its history ending `lag` before the judged
    window, re-profiled at most every `refresh`. Nothing set: the model's first
    `checks.drift.reference` of data. Every profile is stored in the data directory, so
    neither a restart nor retention moves it; `watchkeeper reference set` overrides this.
    """

    file: Annotated[Path, AfterValidator(_existing_file)] | None = None
    start: Timestamp | None = None
    end: Timestamp | None = None
    trailing: Annotated[Duration, Field(gt=0.0)] | None = None
    lag: Duration = 0.0
    refresh: Annotated[Duration, Field(gt=0.0)] = 86400.0

    @model_validator(mode="after")
    def _one_source(self) -> ReferenceConfig:
        given = [
            name
            for name, present in (
                ("file", self.file is not None),
                ("start/end", self.start is not None or self.end is not None),
                ("trailing", self.trailing is not None),
            )
            if present
        ]
        if len(given) > 1:
            raise ValueError(
                f"give one of file, start and end, or trailing; got {' and '.join(given)}"
            )
        if (self.start is None) != (self.end is None):
            missing = "end" if self.end is None else "start"
            raise KeyPathError((missing,), "start and end go together: set both")
        if self.start is not None and self.end is not None and self.end <= self.start:
            raise KeyPathError(
                ("end",),
                f"end ({_iso(self.end)}) must be after start ({_iso(self.start)})",
            )
        if self.trailing is None:
            for name in ("lag", "refresh"):
                # a default written out (a dumped configuration read back) says nothing
                default = type(self).model_fields[name].default
                if name in self.model_fields_set and getattr(self, name) != default:
                    raise KeyPathError((name,), f"{name} applies only to a trailing reference")
        return self

    @property
    def kind(self) -> Literal["file", "window", "trailing", "first"]:
        """Which kind of reference this is (`first`: nothing set, the first data)."""
        if self.file is not None:
            return "file"
        if self.start is not None:
            return "window"
        if self.trailing is not None:
            return "trailing"
        return "first"


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat().replace("+00:00", "Z")


class ModelConfig(_Section):
    """How one model is judged: window length, evaluation step, checks, extra alert labels and
    the runbook of checks that name none (`detector.defaults.runbook_url`: of every model)."""

    window: Duration = 3600.0
    every: Duration = 300.0
    reference: ReferenceConfig = ReferenceConfig()
    checks: ChecksConfig = ChecksConfig()
    labels: dict[str, str] = {}
    runbook_url: RunbookUrl = None
    artifacts: dict[str, Sha256] = {}
    """Registered model files, version -> SHA-256: with any, a service reporting another file
    (`Monitor(artifact_sha256=...)`) raises an `unexpected_model` alert."""


class DetectorConfig(_Section):
    interval: Duration = 30.0
    defaults: ModelConfig = ModelConfig()


_MATCHER_TEXT = re.compile(
    r'^\s*[A-Za-z_][A-Za-z0-9_]*\s*(=~|!~|!=|=)\s*("(?:[^"\\]|\\.)*"|\S*)\s*$'
)


def _check_matchers(values: list[str]) -> list[str]:
    for value in values:
        if not _MATCHER_TEXT.match(value):
            raise ValueError(
                f'not a label matcher: {value!r}; expected e.g. team="risk", severity!="info", '
                'model=~"fraud-.*"'
            )
    return values


Matchers = Annotated[list[str], AfterValidator(_check_matchers)]


class ReceiverConfig(_Section):
    """A named receiver: apprise URLs (`${ENV}` expanded), resolution notices, templates.

    `title` and `body` override the default message; they are `string.Template` text with
    `$status`, `$STATUS`, `$count`, `$firing_count`, `$resolved_count`, `$title`, `$body`,
    `$summary`, `$labels`, `$dedup_key`, `$dashboard_url`, and of the first alert `$value`,
    `$threshold`, `$since`, `$version`, `$runbook_url` and `$dashboard_link`.
    """

    name: str = Field(min_length=1)
    # apprise URLs carry credentials: kept out of repr, so a logged config shows no secret
    urls: list[EnvStr] = Field(default=[], repr=False)
    send_resolved: bool = True
    title: str | None = None
    body: str | None = None


class RouteConfig(_Section):
    """A node of the routing tree; unset fields are inherited from the parent route.

    `matchers` are Alertmanager-style (`team="risk"`, `severity=~"critical|warning"`);
    `group_by: ["..."]` makes every alert its own group.
    """

    receiver: str | None = None
    matchers: Matchers = []
    group_by: list[str] | None = None
    group_wait: Duration | None = None
    group_interval: Annotated[Duration, Field(gt=0.0)] | None = None
    repeat_interval: Annotated[Duration, Field(gt=0.0)] | None = None
    continue_: bool = Field(False, alias="continue")
    routes: list[RouteConfig] = []


class InhibitRuleConfig(_Section):
    """While a firing alert matches `source_matchers`, mute alerts matching `target_matchers`
    that have the same values of the `equal` labels."""

    source_matchers: Matchers = Field(min_length=1)
    target_matchers: Matchers = Field(min_length=1)
    equal: list[str] = []


class AlertingConfig(_Section):
    """Routing, grouping, inhibition and delivery of alerts.

    `receivers` is the simple form: the apprise URLs of the receiver named `default`, which
    the root route uses unless `route.receiver` says otherwise. `named_receivers` adds more.
    `default_inhibit` mutes a model's other alerts while its `up` alert fires. A notification
    is retried (backoff from `retry_backoff`, doubling up to `retry_backoff_max`) until
    `delivery_deadline`; each attempt is cut at `send_timeout`. `alertmanager_urls` hand
    alerts over to existing Alertmanagers too (re-posted every `alertmanager_resend`).
    """

    receivers: list[EnvStr] = Field(default=[], repr=False)
    named_receivers: list[ReceiverConfig] = []
    route: RouteConfig = RouteConfig()
    inhibit_rules: list[InhibitRuleConfig] = []
    default_inhibit: bool = True
    console: bool = True
    dashboard_url: str = ""
    send_timeout: Annotated[Duration, Field(gt=0.0)] = 10.0
    delivery_deadline: Annotated[Duration, Field(gt=0.0)] = 6 * 3600.0
    retry_backoff: Annotated[Duration, Field(gt=0.0)] = 1.0
    retry_backoff_max: Annotated[Duration, Field(gt=0.0)] = 300.0
    alertmanager_urls: list[str] = Field(default=[], repr=False)
    alertmanager_resend: Annotated[Duration, Field(gt=0.0)] = 60.0
    no_data_after: Annotated[Duration, Field(gt=0.0)] | None = None
    no_data_state: Literal["alerting", "ok", "keep_last"] = "keep_last"

    @field_validator("alertmanager_urls")
    @classmethod
    def _http_urls(cls, value: list[str]) -> list[str]:
        for url in value:
            if not url.startswith(("http://", "https://")):
                raise ValueError(f"expected an http:// or https:// Alertmanager URL, got {url!r}")
        return value

    @model_validator(mode="after")
    def _receivers_known(self) -> AlertingConfig:
        names = [r.name for r in self.named_receivers]
        if "default" in names and self.receivers:
            raise ValueError(
                "receivers (the simple form) already defines the receiver named default"
            )
        if len(set(names)) != len(names):
            twice = sorted({n for n in names if names.count(n) > 1})
            raise KeyPathError(
                ("named_receivers",), f"receiver names must be unique, got {twice} twice"
            )
        known = {"default", *names}
        pending: list[tuple[tuple[str | int, ...], RouteConfig]] = [(("route",), self.route)]
        while pending:
            loc, route = pending.pop()
            if route.receiver is not None and route.receiver not in known:
                raise KeyPathError(
                    (*loc, "receiver"),
                    f"route receiver {route.receiver!r} is not defined; known: {sorted(known)}",
                )
            pending.extend(((*loc, "routes", i), r) for i, r in enumerate(route.routes))
        return self


class DashboardConfig(_Section):
    """Where the dashboard listens, and the watchkeeper processes whose `GET /healthz` it shows
    on every page (`health_urls`, base URLs or full `/healthz` URLs). None (the default): the
    ingest API of this configuration; an empty list: none."""

    host: str = "127.0.0.1"
    port: int = Field(8501, ge=0, le=65535)
    health_urls: list[Annotated[str, Field(pattern=r"^https?://[^/]")]] | None = None


class Config(_Section):
    storage: StorageConfig = StorageConfig()
    ingest: IngestConfig = IngestConfig()
    detector: DetectorConfig = DetectorConfig()
    models: dict[str, ModelConfig] = {}
    alerting: AlertingConfig = AlertingConfig()
    dashboard: DashboardConfig = DashboardConfig()
    scrape: list[ScrapeTarget] = []

    def with_data_dir(self, path: Path | None) -> Config:
        """This configuration with `storage.path` replaced by `path` (a command's
        `--data-dir`); itself when `path` is None."""
        if path is None:
            return self
        return self.model_copy(update={"storage": self.storage.model_copy(update={"path": path})})

    def model(self, name: str) -> ModelConfig:
        """The configuration of a model, or the defaults for a model nobody configured."""
        return self.models.get(name, self.detector.defaults)


def config_from_dict(
    data: dict[str, Any],
    source: str = "<config>",
    lines: Mapping[tuple[str, ...], int] = {},
    base_dir: Path | None = None,
) -> Config:
    """Validate a parsed configuration; errors name `source`, the key path and the problem
    (and the line, given the `lines` of key paths `read_yaml` found). Relative reference
    files are taken from `base_dir` (the configuration file's folder; default: the working
    directory)."""
    try:
        config = Config.model_validate(data, context={"base_dir": base_dir})
    except ValidationError as exc:
        problems = [describe(error, Config, source, lines) for error in exc.errors()]
        raise ConfigError("\n".join(problems)) from None
    return config


def load_config(path: str | Path | None) -> Config:
    """Load `path`, or return the defaults when `path` is None."""
    if path is None:
        return Config()
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{path}: not UTF-8 text: invalid byte at offset {exc.start}; save the file as UTF-8"
        ) from None
    try:
        data, lines = read_yaml(text, str(path))
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: (top level): expected a mapping, got {type(data).__name__}")
    return config_from_dict(data, str(path), lines, path.parent.resolve())
