"""Replay files read with Arrow and turned into a `Batch` straight from Arrow's columns.

`replay` reads a predictions file of a million rows or more. Going through pandas costs a
second or more on top of the read (building the frame, turning ids and categories into
Python objects, then back into codes); here each Arrow column becomes the array `Batch`
holds directly: numbers copied out of Arrow's buffers, dictionary-encoded text as its codes
(a categorical feature's few strings are looked up once, not once per row), prediction ids
joined to label ids inside Arrow and turned into Python strings only if something asks for
them. `batch_from_table(read_file(p))` holds the same arrays as
`batch_from_frame(read_table(p))`, which the tests check; pandas is imported only for rare
column types (booleans, dates as features, text, a `version` or `model` column).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np
import pyarrow as pa  # type: ignore[import-untyped]
from pyarrow import csv as arrow_csv

from .frame import RESERVED, Batch, frame_column, frame_times, version_codes

__all__ = ["batch_from_table", "read_file", "reference_batch_from_table", "split_table"]


def read_file(path: str) -> pa.Table:
    """A CSV or Parquet file (by its extension) as an Arrow table.

    CSV goes through Arrow's multi-threaded reader with text columns dictionary-encoded
    (up to 1,000 distinct values) and prediction ids kept as text, the column types fixed
    from the first block where that gives the same table (`_typed_read`).
    """
    if path.endswith((".parquet", ".pq")):
        import pyarrow.parquet as pq  # type: ignore[import-untyped]

        table: pa.Table = pq.read_table(path)
        index = (table.schema.pandas_metadata or {}).get("index_columns", [])
        return table.drop_columns([c for c in index if isinstance(c, str)])
    options = arrow_csv.ConvertOptions(
        auto_dict_encode=True,
        auto_dict_max_cardinality=MAX_DICTIONARY,
        column_types={"prediction_id": pa.string()},
    )
    pool = _read_pool()
    typed = _typed_read(path, options, pool)
    if typed is not None:
        return typed
    csv_table: pa.Table = arrow_csv.read_csv(path, convert_options=options, memory_pool=pool)
    return csv_table


MAX_DICTIONARY = 1000
"""Text columns with more distinct values than this in a block are read as plain text."""


def _typed_read(
    path: str, options: arrow_csv.ConvertOptions, pool: pa.MemoryPool
) -> pa.Table | None:
    """The table `read_csv(path, convert_options=options)` gives, read with every column's
    type fixed in advance; None where that cannot be done (then the caller reads it the
    usual way).

    Arrow's reader infers each column's type on the file's first block and switches to a
    wider type if a later block does not fit, converting the earlier blocks again. To be
    able to, it keeps every block's parsed text until the end: on the 433 MB benchmark file
    a peak of ~780 MB against ~290 MB for the same read with the types given, and on this
    machine each fresh megabyte costs ~2 ms of page faults. So the types are inferred here
    from the first block (a streaming reader's schema) and the file is read with them. The
    table is the same: a read with the first block's types that converts every block gives
    what inference would end with (it only ever widens a type when a block fails to
    convert); a block that fails raises, and the caller reads the file the usual way. A
    text column inferred as a dictionary falls back to plain text, as inference does, when
    one block holds more than `MAX_DICTIONARY` distinct values. A column with no value in
    the first block (type null) would have to be inferred later, and types are given by
    name: a file with such a column or with two columns of one name is read the usual way.
    """
    try:
        with arrow_csv.open_csv(path, convert_options=options, memory_pool=pool) as reader:
            schema = reader.schema
    except (pa.ArrowInvalid, OSError):
        return None  # e.g. an empty file: the usual read says what is wrong with it
    if any(pa.types.is_null(f.type) for f in schema) or len(set(schema.names)) < len(schema):
        return None  # (types are given by column name)
    fixed = arrow_csv.ConvertOptions(column_types={f.name: f.type for f in schema})
    try:
        table = arrow_csv.read_csv(path, convert_options=fixed, memory_pool=pool)
    except pa.ArrowInvalid:
        return None
    for i, f in enumerate(table.schema):
        column = table.column(i)
        if pa.types.is_dictionary(f.type) and any(
            len(chunk.dictionary) > MAX_DICTIONARY for chunk in column.chunks
        ):
            table = table.set_column(i, f.name, column.cast(f.type.value_type))
    return table


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


_NUMPY = {
    kind: np.dtype(name)
    for kind, name in (
        (pa.int8(), "i1"),
        (pa.int16(), "i2"),
        (pa.int32(), "i4"),
        (pa.int64(), "i8"),
        (pa.uint8(), "u1"),
        (pa.uint16(), "u2"),
        (pa.uint32(), "u4"),
        (pa.uint64(), "u8"),
        (pa.float32(), "f4"),
        (pa.float64(), "f8"),
    )
}
"""Arrow's fixed-width number types and the numpy type of their values."""


def _fill(chunks: list[pa.Array], out: np.ndarray, missing: float) -> np.ndarray:
    """`out` filled with the values of `chunks` (of `_NUMPY` types) one after the other,
    `missing` where a chunk has none.

    Straight from Arrow's buffers: `to_numpy` would import pandas (every Arrow to numpy
    conversion does), which costs ~0.4 s of CPU that `replay` otherwise never needs."""
    at = 0
    for chunk in chunks:
        size = len(chunk)
        part = out[at : at + size]
        data = chunk.buffers()[1]
        if size and data is not None:
            kind = _NUMPY[chunk.type]
            offset = chunk.offset * kind.itemsize
            part[...] = np.frombuffer(data, dtype=kind, count=size, offset=offset)
        if chunk.null_count:
            bits = np.frombuffer(chunk.buffers()[0], dtype=np.uint8)
            present = np.unpackbits(bits, count=chunk.offset + size, bitorder="little")
            part[present[chunk.offset :] == 0] = missing
        at += size
    return out


def _floats(column: pa.ChunkedArray) -> np.ndarray:
    """`np.asarray(column.to_numpy(), dtype=float)` of a column of numbers (NaN where
    missing) as a new array, without pandas where the type allows (see `_fill`)."""
    if column.type not in _NUMPY:
        return np.array(column.to_numpy(), dtype=float)
    return _fill(column.chunks, np.empty(len(column)), math.nan)


def _integers(
    chunks: list[pa.Array], n: int, missing: int, dtype: type[np.integer] = np.int64
) -> np.ndarray:
    """Integer chunks (of `n` values in all) as one array, `missing` where missing."""
    return _fill(chunks, np.empty(n, dtype=dtype), missing)


def _text_array(values: list[str]) -> pa.Array:
    """`pa.array(values, pa.string())`, without the pandas import `pa.array` makes."""
    encoded = [v.encode() for v in values]
    offsets = np.zeros(len(values) + 1, dtype=np.int64)
    np.cumsum(np.fromiter(map(len, encoded), np.int64, len(values)), out=offsets[1:])
    if offsets[-1] >= 2**31:  # beyond 32-bit offsets
        return pa.array(values, pa.string())
    return pa.Array.from_buffers(
        pa.string(),
        len(values),
        [None, pa.py_buffer(offsets.astype(np.int32)), pa.py_buffer(b"".join(encoded))],
    )


def _number_array(values: np.ndarray) -> pa.Array:
    """`pa.array(values)` of a numpy array of numbers, without the pandas import."""
    values = np.ascontiguousarray(values)
    kind = pa.from_numpy_dtype(values.dtype)
    return pa.Array.from_buffers(kind, len(values), [None, pa.py_buffer(values)])


def column_array(column: pa.ChunkedArray) -> np.ndarray:
    """What `frame_column` gives for this column once in pandas: float64 for numbers (NaN
    for missing), otherwise objects (None for missing)."""
    kind = column.type
    if _is_number(kind):
        return _floats(column)
    if _is_text(kind):
        return np.asarray(column.to_numpy(), dtype=object)
    if pa.types.is_dictionary(kind) and _is_text(kind.value_type):
        codes, values = dictionary_codes(column)
        decoded: np.ndarray = values[codes]
        return decoded
    return frame_column(column.to_pandas())


def dictionary_codes(column: pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """A dictionary-encoded text column as (per-row index into `values`, `values`), where the
    last entry of `values` is None and stands for a missing value (index -1). The indexes
    are int32, as in Arrow."""
    unified = column.unify_dictionaries()
    if unified.num_chunks == 0:
        return np.empty(0, dtype=np.int32), np.array([None], dtype=object)
    dictionary = unified.chunk(0).dictionary.to_pylist()
    indices = [chunk.indices for chunk in unified.chunks]
    codes = _integers(indices, len(unified), -1, np.int32)
    return codes, np.array([*dictionary, None], dtype=object)


def table_times(column: pa.ChunkedArray) -> np.ndarray:
    """Unix seconds of a `timestamp` column: Arrow timestamps (naive ones read as UTC),
    numbers already in seconds, or ISO 8601 text (parsed like `frame_times`)."""
    kind = column.type
    if pa.types.is_timestamp(kind):
        nanos = column.cast(pa.timestamp("ns", tz=kind.tz)).cast(pa.int64())
        if nanos.null_count:  # (as numpy casts NaN to int64)
            return np.asarray(nanos.to_numpy(), dtype=np.int64) / 1e9
        return _integers(nanos.chunks, len(nanos), 0) / 1e9
    if _is_number(kind):
        return _floats(column)
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
    import pyarrow.compute as pc  # type: ignore[import-untyped]

    # Arrow's hash lookup returns the first match: look ids up in the labels reversed.
    where = pc.index_in(ids, value_set=label_ids.combine_chunks()[::-1])
    positions = _integers(where.chunks, n, -1, np.int32)  # Arrow's index width
    # rows in the labels (-1: none)
    rows = np.where(positions >= 0, labels.num_rows - 1 - positions, -1)
    values = column_array(labels.column("label"))
    times = table_times(labels.column("timestamp"))
    found = rows >= 0
    if found.all():  # (the usual case: then no masks and no copies)
        label: np.ndarray = values[rows]
        label_time: np.ndarray = times[rows]
        return label, label_time
    rows = rows[found]
    label = np.full(n, math.nan) if values.dtype.kind == "f" else np.full(n, None)
    label[found] = values[rows]
    label_time = np.full(n, math.inf)
    label_time[found] = times[rows]
    return label, label_time


def batch_from_table(table: pa.Table, labels: pa.Table | None = None) -> Batch:
    """A predictions table (the `replay` file format) and optionally a labels table
    (`prediction_id`, `label`, `timestamp` when it became known) as one batch; the same
    arrays as `batch_from_frame` of the same data."""
    if "timestamp" not in table.column_names:
        raise ValueError("the predictions file needs a 'timestamp' column (ISO 8601)")
    n = table.num_rows
    ids = _ids(table)
    with ThreadPoolExecutor(max_workers=1) as pool:
        # The join (a hash lookup in Arrow, without the GIL) runs while the columns are
        # built. It is the longest part: it starts first, on the rows in file order.
        joined = None
        if labels is not None and labels.num_rows and ids is not None:
            joined = pool.submit(_join_labels, ids, n, labels)
        return _batch_from_table(table, labels, ids, joined, pool)


def _batch_from_table(
    table: pa.Table,
    labels: pa.Table | None,
    ids: pa.ChunkedArray | None,
    joined: Future[tuple[np.ndarray, np.ndarray]] | None,
    pool: ThreadPoolExecutor,
) -> Batch:
    """`batch_from_table` once the label join (`joined`, of the rows in file order, or None)
    is under way in `pool`: the rows sorted by time, the columns built, then the labels."""
    n = table.num_rows
    times = table_times(table.column("timestamp"))
    order = None
    if np.any(times[1:] < times[:-1]):
        order = np.argsort(times, kind="stable")
        table = table.take(_number_array(order))
        times = times[order]
        ids = _ids(table)

    def make_ids() -> np.ndarray:
        if ids is None:
            return np.array([str(i) for i in range(n)], dtype=object)
        return np.asarray(ids.to_numpy(), dtype=object)

    def optional(name: str, default: float, scale: float = 1.0) -> np.ndarray:
        if name not in table.column_names:
            return np.full(n, default)
        column = table.column(name)
        if _is_number(column.type):
            numbers = _floats(column)  # a new array: scaled in place
        else:
            import pandas as pd

            parsed = pd.to_numeric(column.to_pandas(), errors="coerce")
            numbers = np.array(parsed.to_numpy(float), dtype=float)
        if scale != 1.0:
            numbers *= scale
        return numbers

    label: np.ndarray = np.full(n, None, dtype=object)
    label_time = np.full(n, math.inf)
    in_file_order = joined is not None
    if labels is not None and labels.num_rows and joined is None:
        # without ids, a prediction's id is its position in time order
        key = pa.chunked_array([pa.array(make_ids(), pa.string())])
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
    error = np.nan_to_num(optional("error", 0.0), copy=False)
    latency_s = optional("latency_ms", math.nan, 0.001)
    fallback = optional("fallback", math.nan)
    if joined is not None:
        label, label_time = joined.result()
        if order is not None and in_file_order:
            label, label_time = label[order], label_time[order]
    return Batch(
        times=times,
        _make_ids=make_ids,
        columns=columns,
        output=output,
        error=error,
        latency_s=latency_s,
        fallback=fallback,
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
        table = table.append_column("timestamp", _number_array(np.zeros(n)))
    if "label" not in table.column_names:
        return batch_from_table(table)
    ids = _text_array([f"r{i}" for i in range(n)])
    if "prediction_id" in table.column_names:
        table = table.drop_columns(["prediction_id"])
    table = table.append_column("prediction_id", ids)
    labels = pa.Table.from_arrays(
        [pa.chunked_array([ids]), table.column("label"), _number_array(np.zeros(n))],
        names=["prediction_id", "label", "timestamp"],
    )
    return batch_from_table(table.drop_columns(["label"]), labels)
