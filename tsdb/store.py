"""The one seam every component meets at: what a time-series store must do.

Backends (embedded SQLite, InfluxDB) implement this protocol; components take a `Store` and
never a concrete backend, so tests pass a real SQLite store in a temporary directory.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol, runtime_checkable

from .records import Finding, Label, ModelInfo, Prediction, Sample

if TYPE_CHECKING:
    import pandas as pd

PredictionMetric = Literal["count", "error_rate", "latency_mean", "latency_p95"]
PREDICTION_METRICS: tuple[PredictionMetric, ...] = (
    "count",
    "error_rate",
    "latency_mean",
    "latency_p95",
)

Stat = str
"""`count`, `sum`, `mean`, `min`, `max`, or a quantile `pNN` (`p50`, `p95`, `p99.9`)."""

RetentionKind = Literal["samples", "predictions", "labels", "findings", "rollups"]
RETENTION_KINDS: tuple[RetentionKind, ...] = (
    "samples",
    "predictions",
    "labels",
    "findings",
    "rollups",
)

PREDICTION_FIELDS = ("weight", "error", "latency_s", "output")
"""Numeric fields of a prediction `aggregate_prediction_field` reads, besides `features.NAME`.

`weight` is `1 / sample_rate` (its `sum` is the true traffic), `error` is 0 or 1, `output` and
features count only where numeric (booleans as 0 and 1).
"""


@dataclass(frozen=True, slots=True)
class WriteResult:
    """How many records of each kind were new; repeats (same ids) are not stored twice."""

    samples: int = 0
    predictions: int = 0
    labels: int = 0
    findings: int = 0


@runtime_checkable
class Store(Protocol):
    """Batched writes and windowed reads over samples, predictions, labels and findings.

    Windows are half-open, `start <= timestamp < end`, in Unix seconds.
    """

    def write(
        self,
        *,
        samples: Sequence[Sample] = (),
        predictions: Sequence[Prediction] = (),
        labels: Sequence[Label] = (),
        findings: Sequence[Finding] = (),
    ) -> WriteResult:
        """Store one batch all or nothing."""
        ...

    def models(self) -> list[ModelInfo]:
        """Every model that has sent anything, with its versions and last-seen time."""
        ...

    def predictions(self, model: str, start: float, end: float) -> list[Prediction]:
        """The predictions of one model in a window, oldest first."""
        ...

    def labels(self, model: str, prediction_ids: Sequence[str]) -> dict[str, Label]:
        """The labels known for the given prediction ids."""
        ...

    def samples(self, model: str, name: str, start: float, end: float) -> list[Sample]:
        """The samples of one series in a window, oldest first."""
        ...

    def aggregate_predictions(
        self, model: str, metric: PredictionMetric, start: float, end: float, step: float
    ) -> list[tuple[float, float]]:
        """One value per `step`-long bucket that has data: `(bucket_start, value)`."""
        ...

    def last_seen(self, model: str) -> float | None:
        """Time of the newest prediction or sample of the model, None if never heard from."""
        ...

    def findings(
        self,
        model: str | None = None,
        start: float | None = None,
        end: float | None = None,
        *,
        breached_only: bool = False,
    ) -> list[Finding]:
        """Findings whose window ends in `[start, end)`, oldest first."""
        ...

    def last_evaluated(self, model: str) -> float | None:
        """Window end of the newest finding of the model: where the detector resumes."""
        ...

    def aggregate_samples(
        self, model: str, name: str, stat: Stat, start: float, end: float, step: float
    ) -> list[tuple[float, float]]:
        """`stat` of one series (all its label sets) per `step`-long bucket that has data."""
        ...

    def aggregate_prediction_field(
        self, model: str, field: str, stat: Stat, start: float, end: float, step: float
    ) -> list[tuple[float, float]]:
        """`stat` of a prediction field (see `PREDICTION_FIELDS`, or `features.NAME`) per
        `step`-long bucket that has a numeric value: `(bucket_start, value)`."""
        ...

    def prediction_frame(self, model: str, start: float, end: float) -> pd.DataFrame:
        """A window of predictions, oldest first, one column per feature, labels joined by id."""
        ...

    def series(self, model: str) -> list[str]:
        """Names of the sample series the model has sent, sorted."""
        ...

    def retention(self, kind: RetentionKind, older_than: float) -> int:
        """Delete records of `kind` with a timestamp before `older_than`; return how many."""
        ...

    def close(self) -> None: ...
