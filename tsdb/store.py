"""The one seam every component meets at: what a time-series store must do.

Backends (embedded SQLite, InfluxDB) implement this protocol; components take a `Store` and
never a concrete backend, so tests pass a real SQLite store in a temporary directory.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

from .records import Finding, Label, ModelInfo, Prediction, Sample

PredictionMetric = Literal["count", "error_rate", "latency_mean", "latency_p95"]
PREDICTION_METRICS: tuple[PredictionMetric, ...] = (
    "count",
    "error_rate",
    "latency_mean",
    "latency_p95",
)


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

    def close(self) -> None: ...
