"""A batch of predictions as columns: what checks read, whatever the data came from.

The live detector builds a batch from the store's predictions and labels; `replay` builds one
from a CSV or Parquet file. Both hand it to the same `ModelJudge`, so a backtest judges
exactly as live running does. Columns are numpy arrays sorted by time, sliced per window with
two binary searches and never copied per check.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from watchkeeper.tsdb import Label, Prediction

if TYPE_CHECKING:
    import pandas as pd

_T = TypeVar("_T")

RESERVED = (
    "timestamp",
    "prediction_id",
    "prediction",
    "latency_ms",
    "error",
    "fallback",
    "model",
    "version",
    "label",
)
"""Columns of a predictions file that are not features."""


@dataclass(slots=True)
class Batch:
    """Predictions sorted by time, one array per field (length `n`).

    `columns` holds the features: float64 for numeric ones (NaN = missing), object arrays
    otherwise (None = missing). `label_time` is when each label became known (inf: never),
    `fallback` is 1 where a fallback answered, 0 where not and NaN where unknown.
    `versions` holds each prediction's model version as an index into `version_names`
    (-1: none); both are empty when the data says nothing about versions. `ids` (see
    there) may be given as `_ids`, or made on first use by `_make_ids`.
    """

    times: np.ndarray
    columns: dict[str, np.ndarray]
    output: np.ndarray
    error: np.ndarray
    latency_s: np.ndarray
    fallback: np.ndarray
    weight: np.ndarray
    label: np.ndarray
    label_time: np.ndarray
    extra_fallbacks: np.ndarray = field(default_factory=lambda: np.empty(0))
    versions: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    version_names: tuple[str, ...] = ()
    _numeric: dict[str, np.ndarray] = field(default_factory=dict)
    _codes: dict[str, np.ndarray] = field(default_factory=dict)
    _missing: dict[str, np.ndarray] = field(default_factory=dict)
    _keys: dict[str, np.ndarray] = field(default_factory=dict)
    _dictionaries: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    _class_codes: dict[str, tuple[np.ndarray, tuple[str, ...]]] = field(default_factory=dict)
    _memo: dict[str, Any] = field(default_factory=dict)
    _ids: np.ndarray | None = None
    _make_ids: Callable[[], np.ndarray] | None = None

    @property
    def n(self) -> int:
        return int(self.times.size)

    @property
    def ids(self) -> np.ndarray:
        """Each prediction's id (objects). A batch read from a file makes them on first use:
        checks never read them, and a replay of a million predictions would otherwise
        build a million Python strings for nothing."""
        if self._ids is None:
            if self._make_ids is None:
                raise ValueError("this batch was built without prediction ids")
            self._ids = self._make_ids()
            self._make_ids = None
        return self._ids

    def bounds(self, start: float, end: float) -> tuple[int, int]:
        """Index range of the predictions with `start <= time < end`."""
        return (
            int(np.searchsorted(self.times, start, side="left")),
            int(np.searchsorted(self.times, end, side="left")),
        )

    def version(self, low: int, high: int) -> str | None:
        """The version with the most (weighted) predictions in rows `low:high`; a tie goes to
        the version seen first later in the data (the newer deployment). None without any."""
        if not self.version_names or high <= low or self.versions.size != self.n:
            return None
        codes = self.versions[low:high]
        known = codes >= 0
        if not known.any():
            return None
        counts = np.bincount(
            codes[known], weights=self.weight[low:high][known], minlength=len(self.version_names)
        )
        return self.version_names[len(counts) - 1 - int(np.argmax(counts[::-1]))]

    def numeric(self, name: str) -> np.ndarray:
        """Column `name` as floats (NaN where missing or not a number), computed once."""
        cached = self._numeric.get(name)
        if cached is None:
            column = self.columns.get(name)
            if column is None:
                cached = np.full(self.n, math.nan)
            elif column.dtype.kind in "fiu":
                cached = column.astype(float, copy=False)
            else:
                cached = numeric_of(column)
            self._numeric[name] = cached
        return cached

    @property
    def knows_fallbacks(self) -> bool:
        """Whether the batch says anything about fallbacks (a column or fallback samples)."""
        known = self._numeric.get("\0fallback_known")
        if known is None:
            seen = bool(np.any(~np.isnan(self.fallback))) or self.extra_fallbacks.size > 0
            known = np.array([seen])
            self._numeric["\0fallback_known"] = known
        return bool(known[0])

    def missing(self, name: str) -> np.ndarray:
        """Where feature `name` is missing (True for every row if the batch lacks it)."""
        cached = self._missing.get(name)
        if cached is None:
            column = self.columns.get(name)
            cached = np.ones(self.n, dtype=bool) if column is None else missing_mask(column)
            self._missing[name] = cached
        return cached

    def codes(self, name: str, categories: tuple[str, ...]) -> np.ndarray:
        """Feature `name` as indexes into `categories`: -1 for an unseen category, -2 where
        missing. Computed once per batch, so each window only counts (`np.bincount`)."""
        cached = self._codes.get(name)
        if cached is None:
            column = self.columns.get(name)
            encoded = self._dictionaries.get(name)
            if column is None:
                cached = np.full(self.n, -2, dtype=np.int64)
            elif encoded is not None:
                # each distinct value looked up once; the last value (None) is "missing";
                # int32 like the dictionary's own codes (half the memory of int64)
                codes, values = encoded
                position = {c: i for i, c in enumerate(categories)}
                lookup = [position.get(v, -1) for v in values[:-1].tolist()]
                cached = np.array([*lookup, -2], dtype=np.int32)[codes]
            else:
                import pandas as pd

                text = category_text(column)
                cached = pd.Index(list(categories)).get_indexer(pd.Index(text)).astype(np.int64)
                cached[self.missing(name)] = -2
            self._codes[name] = cached
        return cached

    def class_keys(self, which: str) -> np.ndarray:
        """`label` or `output` as class names (1 and 1.0 are one class), None where absent."""
        cached = self._keys.get(which)
        if cached is None:
            codes, names = self.class_codes(which)
            cached = np.array([*names, None], dtype=object)[codes]
            self._keys[which] = cached
        return cached

    def class_codes(self, which: str) -> tuple[np.ndarray, tuple[str, ...]]:
        """`label` or `output` as indexes into its class names (-1 where absent), computed
        once: a window compares and counts integers instead of strings."""
        cached = self._class_codes.get(which)
        if cached is None:
            cached = class_codes(self.label if which == "label" else self.output)
            self._class_codes[which] = cached
        return cached

    def memo(self, key: str, make: Callable[[], _T]) -> _T:
        """`make()` computed once per batch under `key` (what checks derive from whole
        columns, so that each window only slices it)."""
        if key not in self._memo:
            self._memo[key] = make()
        value: _T = self._memo[key]
        return value

    def output_numeric(self) -> np.ndarray:
        return self._cached_numeric("\0output", self.output)

    def label_numeric(self) -> np.ndarray:
        return self._cached_numeric("\0label", self.label)

    def _cached_numeric(self, key: str, column: np.ndarray) -> np.ndarray:
        cached = self._numeric.get(key)
        if cached is None:
            cached = (
                column.astype(float, copy=False)
                if column.dtype.kind in "fiub"
                else numeric_of(column)
            )
            self._numeric[key] = cached
        return cached


def missing_mask(column: np.ndarray) -> np.ndarray:
    """True where a column's value is missing (NaN or None)."""
    if column.dtype.kind == "f":
        nan: np.ndarray = np.isnan(column)
        return nan
    if column.dtype.kind in "iub":
        return np.zeros(column.size, dtype=bool)
    if "pandas" not in sys.modules:
        # Without pandas loaded the only missing objects are None and NaN-like values
        # (not equal to themselves): what `pd.isna` finds, without importing pandas.
        return np.asarray(_IS_MISSING(column), dtype=bool).reshape(column.shape)
    import pandas as pd

    missing: np.ndarray = np.asarray(pd.isna(column), dtype=bool)
    return missing


def category_text(column: np.ndarray) -> np.ndarray:
    """Values as the strings categories are kept as (whole floats without `.0`)."""
    if column.dtype.kind in "fiub":
        return class_keys(column)
    present = column[~missing_mask(column)].tolist()
    # pandas' infer_dtype "string"; the set of types is a quick answer when all are `str`
    if present and (set(map(type, present)) == {str} or all(isinstance(v, str) for v in present)):
        return column
    return np.array([None if v is None else str(v) for v in column], dtype=object)


def class_keys(column: np.ndarray) -> np.ndarray:
    """Class labels as comparable strings (1 and 1.0 are the same class), None where absent.

    Each distinct value is converted once, so a million rows with a few classes cost one
    `np.unique`, not a million string conversions.
    """
    codes, names = class_codes(column)
    keys: np.ndarray = np.array([*names, None], dtype=object)[codes]
    return keys


def class_codes(column: np.ndarray) -> tuple[np.ndarray, tuple[str, ...]]:
    """Class labels as (index into `names` per row, -1 where absent; `names`): the classes
    `class_keys` gives, each distinct one once."""
    if column.dtype.kind in "fiub":
        values = column.astype(float, copy=False)
        ok = ~np.isnan(values)
        everywhere = bool(ok.all())  # then no row is left out: no copies, no masks
        present = values if everywhere else values[ok]
        small = _small_whole_numbers(present)
        if small is not None:
            # class numbers like 0/1: counted instead of sorted (np.unique sorts a million
            # floats), with the same sorted classes and indexes
            offsets, low = small
            seen = np.bincount(offsets) > 0
            found = (np.cumsum(seen) - 1).astype(np.int64, copy=False)[offsets]
            uniques = (np.flatnonzero(seen) + low).astype(float)
        else:
            uniques, inverse = np.unique(present, return_inverse=True)
            found = inverse.astype(np.int64, copy=False)
        if everywhere:
            codes = found
        else:
            codes = np.full(column.size, -1, dtype=np.int64)
            codes[ok] = found
        return codes, tuple(str(int(u)) if u == round(u) else str(u) for u in uniques.tolist())
    codes = np.full(column.size, -1, dtype=np.int64)
    index: dict[str, int] = {}
    for i, v in enumerate(column):
        if v is None or (isinstance(v, float) and math.isnan(v)):
            continue
        key = str(int(v)) if isinstance(v, float) and v == round(v) else str(v)
        codes[i] = index.setdefault(key, len(index))
    return codes, tuple(index)


def _small_whole_numbers(values: np.ndarray, span: int = 4096) -> tuple[np.ndarray, int] | None:
    """Finite whole `values` within `span` of their minimum as (value - minimum, minimum);
    None for anything else (fractions, infinities, a wide range, no values)."""
    if values.size == 0:
        return None
    low, high = float(values.min()), float(values.max())
    if not (math.isfinite(low) and math.isfinite(high)) or high - low >= span:
        return None
    offsets = values - low
    whole = offsets.astype(np.int64)
    if not np.array_equal(whole, offsets):
        return None
    return whole, int(low)


def numeric_of(column: np.ndarray) -> np.ndarray:
    """Floats of an object column: numbers kept (bools as 0/1 are not numbers: NaN)."""
    out = np.full(column.size, math.nan)
    for i, value in enumerate(column):
        if isinstance(value, int | float) and not isinstance(value, bool):
            out[i] = float(value)
    return out


def _is_missing(value: object) -> bool:
    try:
        return value is None or bool(value != value)
    except (TypeError, ValueError):
        return False


_IS_MISSING = np.frompyfunc(_is_missing, 1, 1)


def frame_column(series: pd.Series) -> np.ndarray:
    """A frame column as numpy: float64 for numbers, object (None for missing) otherwise."""
    import pandas as pd

    if series.dtype.kind in "fiu":
        return series.to_numpy(dtype=float, na_value=math.nan)
    values = series.to_numpy(dtype=object)
    missing = pd.isna(series).to_numpy()
    if missing.any():
        values = values.copy()
        values[missing] = None
    return values


def version_codes(values: np.ndarray | pd.Series) -> dict[str, Any]:
    """`versions` and `version_names` of a `Batch` from per-row versions (None, NaN or "":
    none), the names in order of first appearance."""
    import pandas as pd

    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    names = [str(u) for u in uniques]
    codes = codes.astype(np.int64)
    if "" in names:  # an empty version means none was given
        empty = names.index("")
        codes[codes == empty] = -1
        codes[codes > empty] -= 1
        del names[empty]
    return {"versions": codes, "version_names": tuple(names)}


def batch_from_predictions(
    predictions: Sequence[Prediction],
    labels: Mapping[str, Label] | None = None,
    fallback_times: Sequence[float] = (),
) -> Batch:
    """Columns of stored predictions (oldest first) with their known labels joined by id.

    `fallback_times` are the times of `fallbacks` samples: live services report fallbacks as
    a sample series, not per prediction, so they are kept apart and counted per window.
    """
    import pandas as pd

    labels = labels or {}
    n = len(predictions)
    features = pd.DataFrame.from_records([p.features for p in predictions], index=range(n))
    columns = {str(name): frame_column(features[name]) for name in features.columns}
    output = np.empty(n, dtype=object)
    label = np.empty(n, dtype=object)
    label_time = np.full(n, math.inf)
    for i, p in enumerate(predictions):
        output[i] = p.output
        known = labels.get(p.prediction_id)
        if known is not None:
            label[i] = known.label
            label_time[i] = known.timestamp
    return Batch(
        times=np.fromiter((p.timestamp for p in predictions), float, n),
        _ids=np.array([p.prediction_id for p in predictions], dtype=object),
        columns=columns,
        output=output,
        error=np.fromiter((p.error for p in predictions), float, n),
        latency_s=np.fromiter(
            (math.nan if p.latency_s is None else p.latency_s for p in predictions), float, n
        ),
        fallback=np.full(n, math.nan),
        weight=np.fromiter(
            (1.0 / p.sample_rate if 0.0 < p.sample_rate <= 1.0 else 1.0 for p in predictions),
            float,
            n,
        ),
        label=label,
        label_time=label_time,
        extra_fallbacks=np.sort(np.asarray(fallback_times, dtype=float)),
        **version_codes(np.array([p.version for p in predictions], dtype=object)),
    )


def frame_times(series: pd.Series) -> np.ndarray:
    """Unix seconds of a column of ISO 8601 strings (or numbers already in seconds)."""
    if series.dtype.kind in "fiu":
        return series.to_numpy(dtype=float)
    import pandas as pd

    parsed = pd.DatetimeIndex(pd.to_datetime(series, utc=True, format="ISO8601")).as_unit("ns")
    return parsed.asi8 / 1e9


def read_table(path: str) -> pd.DataFrame:
    """A CSV or Parquet file (by its extension) as a frame.

    CSV goes through Arrow's multi-threaded reader with text columns dictionary-encoded
    (they become pandas categoricals: a feature's few distinct strings are stored once,
    not once per row), which reads a million-row file several times faster than pandas.
    `replay` itself skips pandas (`tables.read_file` and `tables.batch_from_table`).
    """
    import pandas as pd

    if path.endswith((".parquet", ".pq")):
        return pd.read_parquet(path)
    from .tables import read_file

    frame: pd.DataFrame = read_file(path).to_pandas()
    return frame


def batch_from_frame(frame: pd.DataFrame, labels: pd.DataFrame | None = None) -> Batch:
    """A predictions frame (the `replay` file format) and optionally a labels frame
    (`prediction_id`, `label`, `timestamp` when it became known) as one batch."""
    if "timestamp" not in frame.columns:
        raise ValueError("the predictions file needs a 'timestamp' column (ISO 8601)")
    import pandas as pd
    import pyarrow as pa  # type: ignore[import-untyped]
    import pyarrow.compute as pc  # type: ignore[import-untyped]

    times = frame_times(frame["timestamp"])
    if np.any(np.diff(times) < 0):
        order = np.argsort(times, kind="stable")
        frame = frame.iloc[order].reset_index(drop=True)
        times = times[order]
    n = len(frame)
    ids = (
        frame["prediction_id"].astype(str).to_numpy(dtype=object)
        if "prediction_id" in frame.columns
        else np.array([str(i) for i in range(n)], dtype=object)
    )
    features = [c for c in frame.columns if c not in RESERVED]

    def optional(name: str, default: float, scale: float = 1.0) -> np.ndarray:
        if name not in frame.columns:
            return np.full(n, default)
        return pd.to_numeric(frame[name], errors="coerce").to_numpy(float) * scale

    label = np.full(n, None, dtype=object)
    label_time = np.full(n, math.inf)
    if labels is not None and len(labels):
        missing = {"prediction_id", "label", "timestamp"} - set(labels.columns)
        if missing:
            raise ValueError(f"the labels file lacks column(s): {', '.join(sorted(missing))}")
        # The last label of an id wins: look ids up in the labels reversed, where Arrow's
        # hash lookup returns the first match.
        label_ids = pa.array(labels["prediction_id"].astype(str).to_numpy(dtype=object)[::-1])
        where = pc.index_in(pa.array(ids), value_set=label_ids).to_numpy(zero_copy_only=False)
        found = ~np.isnan(where.astype(float))
        rows = (len(labels) - 1 - where[found].astype(np.int64)) if found.any() else where[:0]
        label_values = frame_column(labels["label"])
        label = np.full(n, math.nan) if label_values.dtype.kind == "f" else np.full(n, None)
        label[found] = label_values[rows]
        label_time = np.full(n, math.inf)
        label_time[found] = frame_times(labels["timestamp"])[rows]
    output = (
        frame_column(frame["prediction"])
        if "prediction" in frame.columns
        else np.full(n, None, object)
    )
    return Batch(
        times=times,
        _ids=ids,
        columns={str(c): frame_column(frame[c]) for c in features},
        output=output,
        error=np.nan_to_num(optional("error", 0.0)),
        latency_s=optional("latency_ms", math.nan, 0.001),
        fallback=optional("fallback", math.nan),
        weight=np.ones(n),
        label=label,
        label_time=label_time,
        **(version_codes(frame["version"]) if "version" in frame.columns else {}),
    )
