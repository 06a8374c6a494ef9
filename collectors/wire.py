"""The ingest wire format: what `POST /v1/ingest` accepts, validated strictly on the server.

One JSON object per request carries up to three lists (predictions, labels, samples), so that
clients send batches, not single events. Validation is strict (no "1" for 1, no true for 1,
no NaN or infinity, no unknown keys): a batch that is stored must mean exactly what the client
meant. `IngestBatch.to_records()` turns a valid batch into the `watchkeeper.tsdb` records the
Store takes.

`decode_valid(raw)` is the server's fast path: msgspec decodes and checks a body against
typed structs that mirror these models, in one C pass several times faster than pydantic.
It returns the batch's records when the body is valid and None otherwise; it accepts nothing
that `IngestBatch` refuses (where msgspec cannot say the same thing, e.g. integers past 64 bits,
it is stricter), so the pydantic models alone decide what an invalid batch is told.

This module imports pydantic; it is for the server. The client library builds the same JSON
with the standard library only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated, Any, cast

import msgspec
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, PlainValidator

from watchkeeper.tsdb import FeatureValue, Label, Prediction, Sample

__all__ = [
    "BatchRecords",
    "IngestBatch",
    "LabelIn",
    "PredictionIn",
    "SampleIn",
    "count_items",
    "decode_valid",
]

KINDS = ("predictions", "labels", "samples")
_MAX_INT = 2**1023  # larger integers have no float value; readers would fail on them


def _scalar(value: Any) -> FeatureValue:
    """A feature value, output or label: a JSON scalar, numbers finite."""
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        if abs(value) > _MAX_INT:
            raise ValueError("must be a number within the range of a double")
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("must be a finite number")
        return value
    raise ValueError(f"must be a number, string, boolean or null, not {type(value).__name__}")


def _finite(value: float) -> float:
    if not math.isfinite(value):
        raise ValueError("must be a finite number")
    return value


# The JSON schema says what `_scalar` accepts (else OpenAPI would show "any value").
Scalar = Annotated[
    FeatureValue, PlainValidator(_scalar, json_schema_input_type=float | int | str | bool | None)
]
Finite = Annotated[float, AfterValidator(_finite)]
Name = Annotated[str, Field(min_length=1)]
Timestamp = Annotated[float, Field(ge=0), AfterValidator(_finite)]


class _Wire(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class PredictionIn(_Wire):
    """One inference: what the model saw (`features`) and answered (`output`)."""

    model: Name
    prediction_id: Name
    timestamp: Timestamp
    features: dict[str, Scalar] = {}
    output: Scalar = None
    version: str = ""
    latency_s: Annotated[float, Field(ge=0), AfterValidator(_finite)] | None = None
    error: bool = False
    sample_rate: Annotated[float, Field(gt=0, le=1)] = 1.0

    def to_record(self) -> Prediction:
        return Prediction(
            model=self.model,
            prediction_id=self.prediction_id,
            timestamp=float(self.timestamp),
            features=dict(self.features),
            output=self.output,
            version=self.version,
            latency_s=None if self.latency_s is None else float(self.latency_s),
            error=self.error,
            sample_rate=float(self.sample_rate),
        )


class LabelIn(_Wire):
    """Ground truth for a prediction id, sent whenever it becomes known."""

    model: Name
    prediction_id: Name
    label: Scalar
    timestamp: Timestamp

    def to_record(self) -> Label:
        return Label(
            model=self.model,
            prediction_id=self.prediction_id,
            label=self.label,
            timestamp=float(self.timestamp),
        )


class SampleIn(_Wire):
    """One value of one numeric series (a fallback event, a pushed health metric)."""

    model: Name
    name: Name
    timestamp: Timestamp
    value: Finite
    version: str = ""
    labels: dict[str, str] = {}

    def to_record(self) -> Sample:
        return Sample(
            model=self.model,
            name=self.name,
            timestamp=float(self.timestamp),
            value=float(self.value),
            version=self.version,
            labels=tuple(sorted(self.labels.items())),
        )


@dataclass(frozen=True, slots=True)
class BatchRecords:
    """A validated batch as Store records, ready for one `Store.write` call."""

    predictions: list[Prediction]
    labels: list[Label]
    samples: list[Sample]


class IngestBatch(_Wire):
    """The body of `POST /v1/ingest`. Every list is optional; `batch_id` names a client batch."""

    batch_id: str | None = None
    predictions: list[PredictionIn] = []
    labels: list[LabelIn] = []
    samples: list[SampleIn] = []

    def to_records(self) -> BatchRecords:
        return BatchRecords(
            predictions=[p.to_record() for p in self.predictions],
            labels=[label.to_record() for label in self.labels],
            samples=[s.to_record() for s in self.samples],
        )


def count_items(body: object) -> int:
    """How many items a parsed (not yet validated) body holds, to refuse huge batches early."""
    if not isinstance(body, dict):
        return 0
    return sum(len(v) for k in KINDS if isinstance(v := body.get(k), list))


# The fast path. Each struct mirrors the pydantic model of the same role; the tests in
# tests/test_ingest_wire*.py hold the two to the same verdicts.
_Int64 = Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)]  # larger ones: pydantic
_FastScalar = float | _Int64 | str | bool | None  # msgspec refuses NaN and out-of-range floats
_FastName = Annotated[str, msgspec.Meta(min_length=1)]
_FastTime = Annotated[float, msgspec.Meta(ge=0)]


class _FastPrediction(msgspec.Struct, forbid_unknown_fields=True, frozen=True, gc=False):
    model: _FastName
    prediction_id: _FastName
    timestamp: _FastTime
    features: dict[str, _FastScalar] = {}
    output: _FastScalar = None
    version: str = ""
    latency_s: Annotated[float, msgspec.Meta(ge=0)] | None = None
    error: bool = False
    sample_rate: Annotated[float, msgspec.Meta(gt=0, le=1)] = 1.0


class _FastLabel(msgspec.Struct, forbid_unknown_fields=True, frozen=True, gc=False):
    model: _FastName
    prediction_id: _FastName
    label: _FastScalar
    timestamp: _FastTime


class _FastSample(msgspec.Struct, forbid_unknown_fields=True, frozen=True, gc=False):
    model: _FastName
    name: _FastName
    timestamp: _FastTime
    value: float
    version: str = ""
    labels: dict[str, str] = {}


class _FastBatch(msgspec.Struct, forbid_unknown_fields=True, frozen=True, gc=False):
    batch_id: str | None = None
    predictions: list[_FastPrediction] = []
    labels: list[_FastLabel] = []
    samples: list[_FastSample] = []


_FAST_DECODER = msgspec.json.Decoder(_FastBatch)


def decode_valid(raw: bytes) -> BatchRecords | None:
    """The records of `raw` when it is a valid `IngestBatch` body; None when it is not (or
    when only the pydantic models can tell), so the caller validates it with `IngestBatch`
    to name the problem.

    Predictions and labels are the decoded structs themselves: they carry exactly the
    attributes of `Prediction` and `Label` (tests/test_ingest_wire.py pins that), which is all
    a Store reads, and building hundreds of frozen dataclasses per batch would cost as much
    as decoding it.
    """
    try:
        batch = _FAST_DECODER.decode(raw)
    except (msgspec.DecodeError, UnicodeDecodeError):
        return None
    return BatchRecords(
        predictions=cast("list[Prediction]", batch.predictions),
        labels=cast("list[Label]", batch.labels),
        samples=[
            Sample(
                s.model, s.name, s.timestamp, s.value, s.version, tuple(sorted(s.labels.items()))
            )
            for s in batch.samples
        ],
    )
