"""The ingest fast path (msgspec) agrees with the pydantic wire models, and the SQLite store's
group commit keeps every batch whole and separate."""

from __future__ import annotations

import dataclasses
import json
import threading
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from watchkeeper.collectors.wire import IngestBatch, decode_valid
from watchkeeper.tsdb import InvalidRecord, Label, Prediction, SQLiteStore


def _as_tuple(record: Any, cls: type) -> tuple[Any, ...]:
    return tuple(getattr(record, f.name) for f in dataclasses.fields(cls))


def _pydantic(raw: bytes) -> IngestBatch | None:
    try:
        return IngestBatch.model_validate_json(raw)
    except ValidationError:
        return None


def _mostly(valid: st.SearchStrategy[Any], *invalid: Any) -> st.SearchStrategy[Any]:
    """Valid values three times in four, so that whole batches are often valid."""
    return st.one_of(valid, valid, valid, st.sampled_from(invalid))


scalars = _mostly(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(2**70), max_value=2**70),
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(max_size=5),
    ),
    1e400,
    -1e400,
    2**1030,
    [1],
    {"a": 1},
)
names = _mostly(st.text(min_size=1, max_size=4), "", 1, None)
stamps = _mostly(st.floats(min_value=0, max_value=2e9), -1.0, "1", True, 1e400)
unit = _mostly(st.floats(min_value=0, max_value=1, exclude_min=True), 0, 1.5, "1", True)
predictions = st.fixed_dictionaries(
    {"model": names, "prediction_id": names, "timestamp": stamps},
    optional={
        "features": _mostly(st.dictionaries(st.text(max_size=3), scalars, max_size=3), [], 1),
        "output": scalars,
        "version": _mostly(st.text(max_size=3), 1, None),
        "latency_s": _mostly(st.one_of(st.none(), st.floats(0, 10)), -1.0, "1", True),
        "error": _mostly(st.booleans(), 0, 1, None),
        "sample_rate": unit,
    },
)
labels = st.fixed_dictionaries(
    {"model": names, "prediction_id": names, "label": scalars, "timestamp": stamps}
)
samples = st.fixed_dictionaries(
    {
        "model": names,
        "name": names,
        "timestamp": stamps,
        "value": _mostly(st.floats(allow_nan=False, allow_infinity=False), "1", True, None),
    },
    optional={
        "version": _mostly(st.text(max_size=3), 1),
        "labels": _mostly(st.dictionaries(st.text(max_size=3), st.text(max_size=3)), {"a": 1}),
    },
)
bodies = st.fixed_dictionaries(
    {},
    optional={
        "batch_id": _mostly(st.one_of(st.none(), st.text(max_size=3)), 1),
        "predictions": st.lists(predictions, max_size=3),
        "labels": st.lists(labels, max_size=2),
        "samples": st.lists(samples, max_size=2),
    },
)


def _encode(body: Any) -> bytes:
    # Python's encoder writes 1e400 as Infinity; as a number literal it is what a client
    # could send, which both parsers must refuse.
    return json.dumps(body).replace("Infinity", "1e400").encode()


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(bodies)
def test_fast_path_accepts_exactly_what_pydantic_accepts_and_means_the_same(body: Any) -> None:
    raw = _encode(body)
    fast = decode_valid(raw)
    slow = _pydantic(raw)
    if fast is None:
        # Refused: the pydantic models name the problem (they may accept what the fast path
        # leaves to them, such as integers past 64 bits).
        return
    assert slow is not None, f"fast path accepted what pydantic refuses: {raw!r}"
    records = slow.to_records()
    assert [_as_tuple(p, Prediction) for p in fast.predictions] == [
        _as_tuple(p, Prediction) for p in records.predictions
    ]
    assert [_as_tuple(x, Label) for x in fast.labels] == [
        _as_tuple(x, Label) for x in records.labels
    ]
    assert fast.samples == records.samples


@pytest.mark.parametrize(
    "raw",
    [
        b'{"predictions":[{"model":"m","prediction_id":"a","timestamp":1,"output":1e400}]}',
        b'{"predictions":[{"model":"m","prediction_id":"a","timestamp":1,"output":NaN}]}',
        b'{"predictions":[{"model":"m","prediction_id":"a","timestamp":1,"output":"\\ud800"}]}',
        b'{"predictions":[{"model":"m","prediction_id":"a","timestamp":1,"output":"\xed\xa0\x80"}]}',
        b'{"predictions":[{"model":"m","prediction_id":"a","timestamp":1,"output":"\xff"}]}',
        b'{"predictions":[{"model":"m","prediction_id":"","timestamp":1}]}',
        b'{"predictions":[{"model":"m","prediction_id":"a","timestamp":-1}]}',
        b'{"predictions":[{"model":"m","prediction_id":"a","timestamp":1,"sample_rate":0}]}',
        b'{"predictions":[{"model":"m","prediction_id":"a","timestamp":1,"error":1}]}',
        b'{"predictions":[{"model":"m","prediction_id":"a","timestamp":"1"}]}',
        b'{"predictions":[{"model":"m","prediction_id":"a","timestamp":1,"x":1}]}',
        b'{"predictions":[]} x',
        b"[]",
    ],
)
def test_fast_path_leaves_every_invalid_body_to_pydantic(raw: bytes) -> None:
    assert decode_valid(raw) is None


def test_big_integers_take_the_pydantic_path_and_are_kept_exactly() -> None:
    raw = b'{"predictions":[{"model":"m","prediction_id":"a","timestamp":1,"output":%d}]}' % (2**80)
    assert decode_valid(raw) is None
    batch = _pydantic(raw)
    assert batch is not None and batch.predictions[0].output == 2**80


def test_fast_structs_carry_every_record_attribute() -> None:
    raw = json.dumps(
        {
            "predictions": [{"model": "m", "prediction_id": "a", "timestamp": 1}],
            "labels": [{"model": "m", "prediction_id": "a", "label": 1, "timestamp": 2}],
        }
    ).encode()
    fast = decode_valid(raw)
    assert fast is not None
    for record, cls in ((fast.predictions[0], Prediction), (fast.labels[0], Label)):
        for field in dataclasses.fields(cls):
            assert hasattr(record, field.name), f"{cls.__name__}.{field.name}"


def _batch(prefix: str, n: int, ts: float = 1_700_000_000.0) -> list[Prediction]:
    return [
        Prediction("m", f"{prefix}-{i}", ts + i, {"x": float(i), "y": None}, 0.5, "v1")
        for i in range(n)
    ]


def test_concurrent_writes_are_each_stored_whole_once_and_a_bad_one_alone_fails(
    tmp_path: Path,
) -> None:
    store = SQLiteStore(tmp_path / "w.db")
    results: dict[str, Any] = {}

    def write(name: str, batch: list[Prediction]) -> None:
        try:
            results[name] = store.write(predictions=batch).predictions
        except InvalidRecord as exc:
            results[name] = exc

    bad = [*_batch("bad", 5), Prediction("m", "", 1.0)]  # an empty prediction id
    jobs = [(f"t{t}", _batch(f"t{t}", 200)) for t in range(8)]
    jobs += [("again", _batch("t0", 200)), ("bad", bad)]
    threads = [threading.Thread(target=write, args=job) for job in jobs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert isinstance(results["bad"], InvalidRecord)
    assert "predictions[5].prediction_id" in str(results["bad"])
    assert sum(results[f"t{t}"] for t in range(8)) + results["again"] == 8 * 200
    rows = store.predictions("m", 0, 2e9)
    assert len(rows) == len({p.prediction_id for p in rows}) == 8 * 200
    assert not any(p.prediction_id.startswith("bad") for p in rows)
    assert rows[0].features == {"x": 0.0, "y": None}


@pytest.mark.parametrize(
    ("prediction", "field"),
    [
        (Prediction("m", "a", 1.0, {"x": float("nan")}), "features['x']"),
        (Prediction("m", "a", 1.0, {"": 1.0}), "features"),
        (Prediction("m", "a", 1.0, {"x" * 300: 1.0}), "features"),
        (Prediction("m", "a", 1.0, output=float("inf")), "output"),
        (Prediction("m", "a", 1.0, latency_s=-1.0), "latency_s"),
        (Prediction("m", "a", 1.0, sample_rate=0.0), "sample_rate"),
        (Prediction("m", "a", 4e9), "timestamp"),
        (Prediction("m", "a", float("nan")), "timestamp"),
        (Prediction("m" * 300, "a", 1.0), "model"),
        (Prediction("m", "a", 1.0, {"x": [1.0]}), "features['x']"),  # type: ignore[dict-item]
        (Prediction("m", "a", 1.0, {"x": {"y": 1}}), "features['x']"),  # type: ignore[dict-item]
        (Prediction("m", "a", 1.0, output=[1]), "output"),  # type: ignore[arg-type]
    ],
)
def test_the_column_fast_path_refuses_what_the_row_checks_refuse(
    tmp_path: Path, prediction: Prediction, field: str
) -> None:
    store = SQLiteStore(tmp_path / "w.db")
    with pytest.raises(InvalidRecord) as refused:
        store.write(predictions=[*_batch("ok", 3), prediction])
    assert (refused.value.kind, refused.value.row, refused.value.field) == (
        "predictions",
        3,
        field,
    )
    assert store.predictions("m", 0, 5e9) == []
