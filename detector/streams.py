"""Seeded synthetic prediction streams with stated changes, for benchmarks and rule tests.

`generate(spec)` gives three frames in the `replay` file formats: predictions (ISO 8601
timestamps, ids, numeric features `x0..`, categorical features `c0..`, a binary `prediction`,
`latency_ms`, `error`, `fallback`), labels (arriving `label_delay` later, spread over a
range) and a labelled reference drawn from the unchanged distribution. Traffic is Poisson with
a daily cycle. A `Change` alters the stream from `at` (seconds after the start) to `until`
(None: for good); its `kind` is one of `CHANGE_KINDS`.

>>> spec = StreamSpec(days=1, per_hour=100, numeric=2, categorical=1, seed=1)
>>> predictions, labels, reference = generate(spec)
>>> list(predictions.columns)[:5]
['timestamp', 'prediction_id', 'x0', 'x1', 'c0']
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

START = 1_700_006_400.0
"""2023-11-15T00:00:00Z, a midnight, so hourly windows and days line up."""

CATEGORIES = ("a", "b", "c", "d")
CATEGORY_P = (0.4, 0.3, 0.2, 0.1)
CHANGE_KINDS = (
    "mean_shift",
    "variance",
    "categorical",
    "gradual",
    "missing",
    "efficacy",
    "latency",
    "error_burst",
    "outage",
    "prediction",
    "fallback",
    "out_of_range",
    "unseen_category",
)


@dataclass(frozen=True, slots=True)
class Change:
    kind: str
    at: float
    until: float | None = None
    feature: str = "x0"
    amount: float = 0.5

    def __post_init__(self) -> None:
        if self.kind not in CHANGE_KINDS:
            raise ValueError(f"unknown change {self.kind!r}; valid: {', '.join(CHANGE_KINDS)}")


@dataclass(frozen=True, slots=True)
class StreamSpec:
    days: float = 10.0
    per_hour: float = 300.0
    numeric: int = 16
    categorical: int = 4
    seed: int = 0
    changes: tuple[Change, ...] = ()
    label_delay: tuple[float, float] = (3600.0, 4 * 3600.0)
    reference_rows: int = 20_000
    start: float = START
    daily_swing: float = 0.3
    base_missing: float = 0.005
    weights: tuple[float, ...] = field(default=())


def _features(rng: np.random.Generator, n: int, spec: StreamSpec) -> dict[str, np.ndarray]:
    cols: dict[str, np.ndarray] = {}
    for j in range(spec.numeric):
        cols[f"x{j}"] = rng.normal(size=n)
    for j in range(spec.categorical):
        cols[f"c{j}"] = np.array(CATEGORIES, dtype=object)[rng.choice(4, size=n, p=CATEGORY_P)]
    return cols


def _model(
    rng: np.random.Generator, cols: dict[str, np.ndarray], spec: StreamSpec
) -> tuple[np.ndarray, np.ndarray]:
    """Prediction and true label: y = [w.x + noise > 0], prediction = [w.x > 0]."""
    n = next(iter(cols.values())).size
    w = np.array(spec.weights or [1.0, -0.8, 0.6] + [0.0] * max(0, spec.numeric - 3))[
        : spec.numeric
    ]
    score = np.zeros(n)
    for j, weight in enumerate(w):
        score += weight * np.nan_to_num(cols[f"x{j}"].astype(float))
    label = (score + rng.normal(scale=0.5, size=n) > 0).astype(int)
    prediction = (score > 0).astype(int)
    return prediction, label


def reference_frame(spec: StreamSpec) -> pd.DataFrame:
    """A labelled reference sample of the unchanged stream (features, prediction, label)."""
    rng = np.random.default_rng(spec.seed + 1_000_003)
    cols = _features(rng, spec.reference_rows, spec)
    prediction, label = _model(rng, cols, spec)
    frame = pd.DataFrame(cols)
    frame["prediction"] = prediction
    frame["label"] = label
    return frame


def generate(spec: StreamSpec) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(predictions, labels, reference) frames of the stream `spec` describes."""
    rng = np.random.default_rng(spec.seed)
    duration = spec.days * 86400.0
    # Poisson arrivals with a daily cycle: thin a homogeneous process at the peak rate.
    peak = spec.per_hour * (1 + spec.daily_swing) / 3600.0
    count = rng.poisson(peak * duration)
    offsets = np.sort(rng.uniform(0, duration, size=count))
    cycle = 1 + spec.daily_swing * np.sin(2 * np.pi * offsets / 86400.0)
    keep = rng.uniform(size=count) < cycle / (1 + spec.daily_swing)
    for change in spec.changes:
        if change.kind == "outage":
            keep &= ~_active(change, offsets)
    offsets = offsets[keep]
    n = offsets.size
    cols = _features(rng, n, spec)
    error = (rng.uniform(size=n) < 0.01).astype(int)
    fallback = (rng.uniform(size=n) < 0.01).astype(int)
    latency = rng.lognormal(mean=np.log(50.0), sigma=0.3, size=n)
    for change in spec.changes:
        on = _active(change, offsets)
        f = change.feature
        if change.kind == "mean_shift":
            cols[f][on] += change.amount
        elif change.kind == "variance":
            cols[f][on] *= change.amount
        elif change.kind == "gradual":
            end = change.until if change.until is not None else change.at + 2 * 86400.0
            ramp = np.clip((offsets - change.at) / (end - change.at), 0.0, 1.0)
            cols[f] = cols[f] + change.amount * ramp
        elif change.kind == "categorical":
            shifted = np.array(CATEGORIES, dtype=object)[
                rng.choice(4, size=int(on.sum()), p=(0.25, 0.25, 0.25, 0.25))
            ]
            cols[f][on] = shifted
        elif change.kind == "unseen_category":
            pick = on & (rng.uniform(size=n) < change.amount)
            cols[f][pick] = "zz"
        elif change.kind == "missing":
            cols[f] = cols[f].astype(float) if cols[f].dtype.kind == "f" else cols[f]
            cols[f][on & (rng.uniform(size=n) < change.amount)] = np.nan
        elif change.kind == "out_of_range":
            pick = on & (rng.uniform(size=n) < change.amount)
            cols[f][pick] = 50.0
        elif change.kind == "latency":
            latency[on] *= change.amount
        elif change.kind == "error_burst":
            error[on] = (rng.uniform(size=int(on.sum())) < change.amount).astype(int)
        elif change.kind == "fallback":
            fallback[on] = (rng.uniform(size=int(on.sum())) < change.amount).astype(int)
    for j in range(spec.numeric):
        cols[f"x{j}"][rng.uniform(size=n) < spec.base_missing] = np.nan
    prediction, label = _model(rng, cols, spec)
    for change in spec.changes:
        on = _active(change, offsets)
        if change.kind == "efficacy":  # the world changed: labels no longer follow the model
            flip = on & (rng.uniform(size=n) < change.amount)
            label[flip] = 1 - label[flip]
        elif change.kind == "prediction":  # a bug: the model answers 1 more often
            flip = on & (prediction == 0) & (rng.uniform(size=n) < change.amount)
            prediction[flip] = 1
    times = spec.start + offsets
    ids = np.char.add("p", np.arange(n).astype(str))
    frame = pd.DataFrame({"timestamp": _iso(times), "prediction_id": ids})
    for name, values in cols.items():
        frame[name] = values
    frame["prediction"] = prediction
    frame["latency_ms"] = np.round(latency, 3)
    frame["error"] = error
    frame["fallback"] = fallback
    delay = rng.uniform(spec.label_delay[0], spec.label_delay[1], size=n)
    labels = pd.DataFrame({"prediction_id": ids, "label": label, "timestamp": _iso(times + delay)})
    return frame, labels, reference_frame(spec)


def _active(change: Change, offsets: np.ndarray) -> np.ndarray:
    on = offsets >= change.at
    if change.until is not None and change.kind != "gradual":
        on &= offsets < change.until
    return on


def _iso(times: np.ndarray) -> np.ndarray:
    stamps = (times * 1000).astype("int64").astype("datetime64[ms]")
    return np.datetime_as_string(stamps, unit="ms", timezone="UTC")
