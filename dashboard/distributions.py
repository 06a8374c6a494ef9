"""One feature's reference and current distributions, to draw over each other.

The reference is what the detector compared the window with (`Detector.reference_profile`:
the stored profile its findings name, else the model's current reference: a file, a fixed or
trailing window, or its first `drift.reference` of data), as `watchkeeper explain` shows it.
The current distribution is the chosen window's values, read through the same
`Detector.read`, so numbers, missing values and categories are interpreted exactly as the
drift check interprets them. Numeric features become shares per bin over a common range;
categorical ones shares per reference category, plus unseen ones. Only the Store protocol is
used. No Streamlit here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from watchkeeper.config import Config
from watchkeeper.detector import Batch, Detector
from watchkeeper.detector.profile import CategoricalProfile, ColumnProfile, NumericProfile
from watchkeeper.tsdb import Store

BINS = 30
UNSEEN = "(unseen)"
OVERLAY_COLUMNS = ("series", "bin", "low", "high", "share")
"""`series` is `reference` or `current`; `bin` names the bin (a category, or a range)."""


@dataclass(frozen=True)
class Overlay:
    """The two distributions of `feature` (`frame`, `OVERLAY_COLUMNS`), and what they are."""

    feature: str
    kind: Literal["numeric", "categorical"]
    frame: pd.DataFrame
    reference_id: str
    reference_n: int
    current_n: int
    window_start: float
    window_end: float


class NoOverlay(Exception):
    """The distributions cannot be drawn; the message says why, for the page to show."""


def _reference_column(profile_columns: dict[str, ColumnProfile], subject: str) -> ColumnProfile:
    column = profile_columns.get(subject)
    if column is None:
        raise NoOverlay(f"the reference has no values of {subject!r}")
    return column


def _numeric_current(batch: Batch, subject: str) -> np.ndarray:
    if subject == "prediction":
        return batch.output_numeric()
    if subject == "label":
        return batch.label_numeric()
    return batch.numeric(subject)


def _categorical_current(batch: Batch, subject: str, categories: tuple[str, ...]) -> np.ndarray:
    """Counts per reference category, then one count of unseen categories."""
    if subject in ("prediction", "label"):
        keys = batch.class_keys("output" if subject == "prediction" else "label")
        text = keys[keys != None].astype(str)  # noqa: E711
        index = {c: i for i, c in enumerate(categories)}
        codes = np.array([index.get(t, -1) for t in text], dtype=np.int64)
    else:
        codes = batch.codes(subject, categories)
    counts = np.bincount(codes[codes >= 0], minlength=len(categories))
    return np.append(counts, np.count_nonzero(codes == -1))


def _shares(counts: np.ndarray) -> np.ndarray:
    total = counts.sum()
    return counts / total if total else counts.astype(float)


def numeric_overlay(reference: np.ndarray, current: np.ndarray, bins: int = BINS) -> pd.DataFrame:
    """Shares of `reference` and `current` values per bin of one common, evenly split range
    (from the 0.5th to the 99.5th percentile of both; values beyond count in the end bins).

    >>> frame = numeric_overlay(np.array([0.0, 1.0, 2.0, 3.0]), np.array([3.0, 3.0]), bins=3)
    >>> frame.groupby("series")["share"].sum().round(6).to_dict()
    {'current': 1.0, 'reference': 1.0}
    """
    both = np.concatenate([reference, current])
    low, high = (float(q) for q in np.quantile(both, [0.005, 0.995]))
    if high <= low:
        low, high = low - 0.5, high + 0.5
    edges = np.linspace(low, high, bins + 1)
    rows: list[tuple[str, str, float, float, float]] = []
    for series, values in (("reference", reference), ("current", current)):
        index = np.clip(np.searchsorted(edges, values, side="right") - 1, 0, bins - 1)
        shares = _shares(np.bincount(index, minlength=bins))
        rows.extend(
            (
                series,
                f"{edges[i]:.4g} – {edges[i + 1]:.4g}",
                float(edges[i]),
                float(edges[i + 1]),
                float(shares[i]),
            )
            for i in range(bins)
        )
    return pd.DataFrame(rows, columns=list(OVERLAY_COLUMNS))


def overlay(store: Store, config: Config, model: str, subject: str, window_end: float) -> Overlay:
    """The reference and current distributions of `subject` (a feature, `prediction` or
    `label`) for the model's window ending at `window_end`; raises `NoOverlay` with the
    reason when there is nothing to compare."""
    mc = config.model(model)
    window_start = window_end - mc.window
    detector = Detector(store, config)
    profile = detector.reference_profile(model, window_start)
    if profile is None:
        raise NoOverlay(
            "this window overlaps the reference period (the model's first "
            f"{mc.checks.drift.reference / 60:g} min), so there is no reference to compare with"
        )
    columns = dict(profile.columns)
    if profile.prediction is not None:
        columns["prediction"] = profile.prediction
    if profile.label is not None:
        columns["label"] = profile.label
    reference = _reference_column(columns, subject)
    batch = detector.read(model, window_start, window_end)
    if isinstance(reference, NumericProfile):
        values = _numeric_current(batch, subject)
        present = values[~np.isnan(values)]
        if present.size == 0:
            raise NoOverlay(f"the window has no numeric value of {subject!r}")
        frame = numeric_overlay(reference.sorted_values, present)
        return Overlay(
            subject, "numeric", frame, profile.reference_id, reference.n, int(present.size),
            window_start, window_end,
        )  # fmt: skip
    assert isinstance(reference, CategoricalProfile)
    counts = _categorical_current(batch, subject, reference.categories)
    if counts.sum() == 0:
        raise NoOverlay(f"the window has no value of {subject!r}")
    names = [*reference.categories, UNSEEN]
    ref_shares = _shares(np.append(reference.counts, 0))
    cur_shares = _shares(counts)
    rows = [
        (series, name, np.nan, np.nan, float(share))
        for series, shares in (("reference", ref_shares), ("current", cur_shares))
        for name, share in zip(names, shares, strict=True)
        if name != UNSEEN or counts[-1] > 0
    ]
    return Overlay(
        subject, "categorical", pd.DataFrame(rows, columns=list(OVERLAY_COLUMNS)),
        profile.reference_id, reference.n, int(counts.sum()), window_start, window_end,
    )  # fmt: skip
