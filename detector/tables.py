"""Replay files read with Arrow and turned into a `Batch` straight from Arrow's columns.

`replay` reads a predictions file of a million rows or more. Going through pandas costs a
second or more on top of the read (building the frame, turning ids and categories into
Python objects, then back into codes); here each Arrow column becomes the array `Batch`
holds directly: numbers zero-copy where Arrow allows, dictionary-encoded text as its codes
(a categorical feature's few strings are looked up once, not once per row), prediction ids
joined to label ids inside Arrow. `batch_from_table(read_file(p))` holds the same arrays as
`batch_from_frame(read_table(p))`, which the tests check; pandas is imported only for rare
column types (booleans, dates as features, a `version` or `model` column).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.compute as pc  # type: ignore[import-untyped]
from pyarrow import csv as arrow_csv

from .frame import RESERVED, Batch, frame_column, frame_times, version_codes

__all__ = ["batch_from_table", "read_file", "reference_batch_from_table", "split_table"]


def read_file(path: str) -> pa.Table:
    """A CSV or Parquet file (by its extension) as an Arrow table.

    CSV goes through Arrow's multi-threaded reader with text columns dictionary-encoded
    (up to 1,000 distinct values) and prediction ids kept as text.
    """
    if path.endswith((".parquet", ".pq")):
        import pyarrow.parquet as pq  # type: ignore[import-untyped]

        table: pa.Table = pq.read_table(path)
        index = (table.schema.pandas_metadata or {}).get("index_columns", [])
        return table.drop_columns([c for c in index if isinstance(c, str)])
    options = arrow_csv.ConvertOptions(
        auto_dict_encode=True,
        auto_dict_max_cardinality=1000,
        column_types={"prediction_id": pa.string()},
    )
    csv_table: pa.Table = arrow_csv.read_csv(
        path, convert_options=options, memory_pool=_read_pool()
    )
    return csv_table


def _read_pool() -> pa.MemoryPool:
    """The allocator the CSV reader uses: jemalloc where pyarrow has it (Linux, macOS),
    else the system's. Arrow's default, mimalloc, hands the reader's short-lived block
    buffers back to the kernel and faults them in again: on a 433 MB file that was 3-4 s of
    system time against ~1 s, most of the read (the user's `ARROW_DEFAULT_MEMORY_POOL`
    still wins)."""
    if os.environ.get("ARROW_DEFAULT_MEMORY_POOL"):
        return pa.default_memory_pool()
    try:
        return pa.jemalloc_memory_pool()
    except NotImplementedError:
        return pa.system_memory_pool()


def use_read_pool() -> None:
    """Make `_read_pool` Arrow's default for the whole process, so that the conversions
    after the read (dictionaries, the label join, columns to numpy) use it too. For a
    command's process (`watchkeeper replay`), not for a library caller's."""
    pa.set_memory_pool(_read_pool())


def _is_number(kind: pa.DataType) -> bool:
    return bool(pa.types.is_integer(kind) or pa.types.is_floating(kind))


def _is_text(kind: pa.DataType) -> bool:
    return bool(pa.types.is_string(kind) or pa.types.is_large_string(kind))


def column_array(column: pa.ChunkedArray) -> np.ndarray:
    """What `frame_column` gives for this column once in pandas: float64 for numbers (NaN
    for missing), otherwise objects (None for missing)."""
    kind = column.type
    if _is_number(kind):
        return np.asarray(column.to_numpy(), dtype=float)
    if _is_text(kind):
        return np.asarray(column.to_numpy(), dtype=object)
    if pa.types.is_dictionary(kind) and _is_text(kind.value_type):
        codes, values = dictionary_codes(column)
        decoded: np.ndarray = values[codes]
        return decoded
    return frame_column(column.to_pandas())


def dictionary_codes(column: pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """A dictionary-encoded text column as (per-row index into `values`, `values`), where the
    last entry of `values` is None and stands for a missing value (index -1)."""
    unified = column.unify_dictionaries()
    if unified.num_chunks == 0:
        return np.empty(0, dtype=np.int64), np.array([None], dtype=object)
    dictionary = unified.chunk(0).dictionary.to_pylist()
    codes = np.concatenate(
        [pc.fill_null(chunk.indices, -1).to_numpy().astype(np.int64) for chunk in unified.chunks]
    )
    return codes, np.array([*dictionary, None], dtype=object)


def table_times(column: pa.ChunkedArray) -> np.ndarray:
    """Unix seconds of a `timestamp` column: Arrow timestamps (naive ones read as UTC),
    numbers already in seconds, or ISO 8601 text (parsed like `frame_times`)."""
    kind = column.type
    if pa.types.is_timestamp(kind):
        nanos = column.cast(pa.timestamp("ns", tz=kind.tz)).cast(pa.int64())
        return np.asarray(nanos.to_numpy(), dtype=np.int64) / 1e9
    if _is_number(kind):
        return np.asarray(column.to_numpy(), dtype=float)
    return frame_times(column.to_pandas())


def split_table(table: pa.Table, model: str | None) -> Iterator[tuple[str, pa.Table]]:
    """The table's rows per model (the `model` column), or all of them as `model`."""
    if "model" not in table.column_names:
        yield (model or "model"), table
        return
    names = np.asarray(table.column("model").to_pandas().astype(str), dtype=object)
    wanted = [model] if model is not None else sorted(set(names.tolist()))
    for name in wanted:
        yield str(name), table.filter(pa.array(names == name))


def _ids(table: pa.Table) -> pa.ChunkedArray | None:
    if "prediction_id" not in table.column_names:
        return None
    ids: pa.ChunkedArray = table.column("prediction_id").cast(pa.string())
    return ids


def _join_labels(ids: pa.ChunkedArray, n: int, labels: pa.Table) -> tuple[np.ndarray, np.ndarray]:
    """Each prediction's label and when it became known (inf: never); the last label of an
    id wins."""
    missing = {"prediction_id", "label", "timestamp"} - set(labels.column_names)
    if missing:
        raise ValueError(f"the labels file lacks column(s): {', '.join(sorted(missing))}")
    label_ids = _ids(labels)
    assert label_ids is not None
    # Arrow's hash lookup returns the first match: look ids up in the labels reversed.
    where = pc.index_in(ids, value_set=label_ids.combine_chunks()[::-1])
    found = np.asarray(pc.is_valid(where).to_numpy(), dtype=bool)
    rows = labels.num_rows - 1 - np.asarray(pc.fill_null(where, 0).to_numpy(), np.int64)[found]
    values = column_array(labels.column("label"))
    label = np.full(n, math.nan) if values.dtype.kind == "f" else np.full(n, None)
    label[found] = values[rows]
    label_time = np.full(n, math.inf)
    label_time[found] = table_times(labels.column("timestamp"))[rows]
    return label, label_time


def batch_from_table(table: pa.Table, labels: pa.Table | None = None) -> Batch:
    """A predictions table (the `replay` file format) and optionally a labels table
    (`prediction_id`, `label`, `timestamp` when it became known) as one batch; the same
    arrays as `batch_from_frame` of the same data."""
    if "timestamp" not in table.column_names:
        raise ValueError("the predictions file needs a 'timestamp' column (ISO 8601)")
    times = table_times(table.column("timestamp"))
    if np.any(np.diff(times) < 0):
        order = np.argsort(times, kind="stable")
        table = table.take(pa.array(order))
        times = times[order]
    n = table.num_rows
    ids = _ids(table)
    id_array = (
        np.asarray(ids.to_numpy(), dtype=object)
        if ids is not None
        else np.array([str(i) for i in range(n)], dtype=object)
    )

    def optional(name: str, default: float, scale: float = 1.0) -> np.ndarray:
        if name not in table.column_names:
            return np.full(n, default)
        column = table.column(name)
        if _is_number(column.type):
            return np.asarray(column.to_numpy(), dtype=float) * scale
        import pandas as pd

        numbers = pd.to_numeric(column.to_pandas(), errors="coerce")
        return np.asarray(numbers.to_numpy(float)) * scale

    label: np.ndarray = np.full(n, None, dtype=object)
    label_time = np.full(n, math.inf)
    # The join (a hash lookup in Arrow, without the GIL) runs while the columns are built.
    with ThreadPoolExecutor(max_workers=1) as pool:
        joined = None
        if labels is not None and labels.num_rows:
            key = ids if ids is not None else pa.chunked_array([pa.array(id_array, pa.string())])
            joined = pool.submit(_join_labels, key, n, labels)
        columns: dict[str, np.ndarray] = {}
        missing: dict[str, np.ndarray] = {}
        encoded: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for name in table.column_names:
            if name in RESERVED:
                continue
            column = table.column(name)
            if pa.types.is_dictionary(column.type) and _is_text(column.type.value_type):
                codes, values = dictionary_codes(column)
                columns[str(name)] = values[codes]
                missing[str(name)] = codes < 0
                encoded[str(name)] = (codes, values)
            else:
                columns[str(name)] = column_array(column)
        output = (
            column_array(table.column("prediction"))
            if "prediction" in table.column_names
            else np.full(n, None, object)
        )
        versions: dict[str, Any] = {}
        if "version" in table.column_names:
            versions = version_codes(table.column("version").to_pandas())
        if joined is not None:
            label, label_time = joined.result()
    return Batch(
        times=times,
        ids=id_array,
        columns=columns,
        output=output,
        error=np.nan_to_num(optional("error", 0.0)),
        latency_s=optional("latency_ms", math.nan, 0.001),
        fallback=optional("fallback", math.nan),
        weight=np.ones(n),
        label=label,
        label_time=label_time,
        _missing=missing,
        _dictionaries=encoded,
        **versions,
    )


def reference_batch_from_table(table: pa.Table) -> Batch:
    """A reference file (features, `prediction`, optional `label`) as a batch: what
    `replay.reference_batch` gives for the same file read by pandas."""
    n = table.num_rows
    if "timestamp" not in table.column_names:
        table = table.append_column("timestamp", pa.array(np.zeros(n)))
    if "label" not in table.column_names:
        return batch_from_table(table)
    ids = pa.array([f"r{i}" for i in range(n)], pa.string())
    if "prediction_id" in table.column_names:
        table = table.drop_columns(["prediction_id"])
    table = table.append_column("prediction_id", ids)
    labels = pa.table(
        {"prediction_id": ids, "label": table.column("label"), "timestamp": pa.array(np.zeros(n))}
    )
    return batch_from_table(table.drop_columns(["label"]), labels)
