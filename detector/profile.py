"""Reference profiles: a reference data set reduced once to what every check needs.

A profile keeps, per numeric column, its sorted values (thinned to at most `MAX_SORTED`
evenly spaced order statistics), quantile bin edges with the reference's counts in them,
range and missing rate; per categorical column, category counts and missing rate; and the
model's baseline efficacy when the reference has labels. Checks read the profile and never
the raw reference again: a window is counted into the reference's bins (PSI, JS) or looked
up in its sorted values (KS) instead of re-sorting the reference for every window.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .frame import Batch, category_text, missing_mask

MAX_SORTED = 20_000
"""Sorted reference values kept per numeric column; beyond it every k-th order statistic."""

BINS = 10
"""Quantile bins of a numeric column (for PSI and Jensen-Shannon)."""

MAX_CLASSES = 20
"""Labels with at most this many distinct values are classes; more make a regression."""


@dataclass(frozen=True, slots=True)
class NumericProfile:
    n: int
    missing_rate: float
    sorted_values: np.ndarray
    edges: np.ndarray
    counts: np.ndarray
    low: float
    high: float
    mean: float
    std: float

    def bin_counts(self, values: np.ndarray) -> np.ndarray:
        """How many of `values` fall into each of the reference's bins."""
        index = np.searchsorted(self.edges, values, side="right")
        return np.bincount(index, minlength=self.edges.size + 1)


@dataclass(frozen=True, slots=True)
class CategoricalProfile:
    n: int
    missing_rate: float
    categories: tuple[str, ...]
    counts: np.ndarray
    singletons: int

    def count_codes(self, codes: np.ndarray) -> tuple[np.ndarray, int]:
        """Counts per reference category of codes from `Batch.codes`, and how many are of an
        unseen category (missing values, code -2, are in neither)."""
        counts = np.bincount(codes[codes >= 0], minlength=len(self.categories))
        return counts, int(np.count_nonzero(codes == -1))


ColumnProfile = NumericProfile | CategoricalProfile


@dataclass(frozen=True, slots=True)
class Baseline:
    """The model's efficacy on the labelled reference: `task` is `classification` or
    `regression`; `metrics` maps each metric to its reference value, `n` the labelled rows;
    `positive` is the class precision and recall are about (binary tasks only)."""

    task: str
    n: int
    metrics: dict[str, float]
    positive: str | None = None
    scores: bool = False
    abs_error_var: float = 0.0
    sq_error_var: float = 0.0


@dataclass(frozen=True, slots=True)
class ReferenceProfile:
    """Everything checks need of a reference, built once by `profile_batch`."""

    reference_id: str
    n: int
    columns: dict[str, ColumnProfile]
    prediction: ColumnProfile | None = None
    label: ColumnProfile | None = None
    baseline: Baseline | None = None
    extras: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """A JSON-able description (for `explain` and for people)."""

        def describe(p: ColumnProfile) -> dict[str, Any]:
            if isinstance(p, NumericProfile):
                return {
                    "kind": "numeric",
                    "n": p.n,
                    "missing_rate": p.missing_rate,
                    "range": [p.low, p.high],
                    "mean": p.mean,
                    "std": p.std,
                    "edges": p.edges.tolist(),
                }
            return {
                "kind": "categorical",
                "n": p.n,
                "missing_rate": p.missing_rate,
                "categories": dict(zip(p.categories, p.counts.tolist(), strict=True)),
            }

        out: dict[str, Any] = {
            "reference_id": self.reference_id,
            "n": self.n,
            "columns": {k: describe(v) for k, v in self.columns.items()},
        }
        if self.prediction is not None:
            out["prediction"] = describe(self.prediction)
        if self.label is not None:
            out["label"] = describe(self.label)
        if self.baseline is not None:
            out["baseline"] = {"task": self.baseline.task, **self.baseline.metrics}
        return out


def _is_numeric(column: np.ndarray) -> bool:
    return column.dtype.kind in "fiu"


def profile_column(column: np.ndarray) -> ColumnProfile | None:
    """The profile of one column, None when it has no value at all."""
    n = int(column.size)
    if n == 0:
        return None
    if _is_numeric(column):
        values = column.astype(float, copy=False)
        present = np.sort(values[~np.isnan(values)])
        if present.size == 0:
            return None
        quantiles = np.quantile(present, np.linspace(0, 1, BINS + 1)[1:-1])
        edges = np.unique(quantiles)
        kept = present
        if present.size > MAX_SORTED:
            kept = present[np.linspace(0, present.size - 1, MAX_SORTED).round().astype(np.int64)]
        counts = np.bincount(
            np.searchsorted(edges, present, side="right"), minlength=edges.size + 1
        )
        return NumericProfile(
            n=n,
            missing_rate=1.0 - present.size / n,
            sorted_values=kept,
            edges=edges,
            counts=counts,
            low=float(present[0]),
            high=float(present[-1]),
            mean=float(np.mean(present)),
            std=float(np.std(present)),
        )
    present_obj = column[~missing_mask(column)]
    if present_obj.size == 0:
        return None
    # what np.unique(..., return_counts=True) gives, by hashing the few distinct texts
    # instead of sorting every row's
    counted = Counter(category_text(present_obj).tolist())
    categories = sorted(counted)
    counts = np.array([counted[c] for c in categories], dtype=np.int64)
    return CategoricalProfile(
        n=n,
        missing_rate=1.0 - present_obj.size / n,
        categories=tuple(str(c) for c in categories),
        counts=counts,
        singletons=int(np.sum(counts == 1)),
    )


def task_of(label: np.ndarray) -> str:
    """`classification` for labels with few distinct values that are not all fractional
    numbers, `regression` otherwise."""
    present = label[~missing_mask(label)]
    if present.size == 0:
        return "classification"
    distinct = {str(v) for v in present[:100_000]}
    if len(distinct) > MAX_CLASSES:
        return "regression"
    numbers = [v for v in present[:1000] if isinstance(v, int | float) and not isinstance(v, bool)]
    if numbers and any(float(v) != round(float(v)) for v in numbers):
        return "regression"
    return "classification"


def _baseline(batch: Batch) -> Baseline | None:
    labelled = ~missing_mask(batch.label)
    if labelled.sum() < 10:
        return None
    task = task_of(batch.label)
    if task == "regression":
        y = batch.label_numeric()[labelled]
        yhat = batch.output_numeric()[labelled]
        ok = ~np.isnan(y) & ~np.isnan(yhat)
        err = yhat[ok] - y[ok]
        if err.size < 10:
            return None
        return Baseline(
            task="regression",
            n=int(err.size),
            metrics={
                "mae": float(np.mean(np.abs(err))),
                "rmse": float(math.sqrt(np.mean(err**2))),
            },
            abs_error_var=float(np.var(np.abs(err), ddof=1)),
            sq_error_var=float(np.var(err**2, ddof=1)),
        )
    from .efficacy import (
        classification_metrics,
        is_score,
        positive_class,
        predicted_classes,
        roc_auc,
    )

    y = batch.class_keys("label")[labelled]
    scores = is_score(batch.output_numeric(), y)
    yhat = predicted_classes(batch, scores)[labelled]
    positive = positive_class(y)
    metrics = classification_metrics(y, yhat, positive)
    if scores:
        metrics["roc_auc"] = roc_auc(y == "1", batch.output_numeric()[labelled])
    return Baseline(
        task="classification",
        n=int(y.size),
        metrics={k: v for k, v in metrics.items() if not math.isnan(v)},
        positive=positive,
        scores=scores,
    )


def profile_batch(batch: Batch, reference_id: str | None = None) -> ReferenceProfile:
    """Profile a reference batch once: every feature column, the prediction, the label and
    the baseline efficacy. `reference_id` defaults to a content hash."""
    columns: dict[str, ColumnProfile] = {}
    for name, column in batch.columns.items():
        profiled = profile_column(column)
        if profiled is not None:
            columns[name] = profiled
    prediction = profile_column(_normalised(batch.output))
    has_labels = bool(np.any(~missing_mask(batch.label)))
    label = profile_column(_normalised(batch.label)) if has_labels else None
    if reference_id is None:
        digest = hashlib.sha256()
        digest.update(json.dumps(sorted(columns)).encode())
        digest.update(str(batch.n).encode())
        for name in sorted(columns):
            p = columns[name]
            if isinstance(p, NumericProfile):
                digest.update(p.edges.tobytes())
                digest.update(np.array([p.low, p.high, p.mean], dtype=np.float64).tobytes())
            else:
                digest.update(json.dumps(p.categories).encode() + p.counts.tobytes())
        reference_id = "ref-" + digest.hexdigest()[:12]
    return ReferenceProfile(
        reference_id=reference_id,
        n=batch.n,
        columns=columns,
        prediction=prediction,
        label=label,
        baseline=_baseline(batch) if has_labels else None,
    )


def _normalised(column: np.ndarray) -> np.ndarray:
    """An object column of plain numbers becomes float64 (so it is profiled as numeric)."""
    if column.dtype.kind != "O":
        return column
    numbers = [v for v in column[:1000] if v is not None]
    if numbers and all(isinstance(v, int | float) and not isinstance(v, bool) for v in numbers):
        out = np.full(column.size, math.nan)
        for i, v in enumerate(column):
            if isinstance(v, int | float) and not isinstance(v, bool):
                out[i] = float(v)
        return out
    return column
