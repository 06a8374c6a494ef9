"""Time-series store: the records components exchange and the backends that keep them."""

from .aggregate import BASIC_STATS, parse_stat
from .factory import open_store
from .migrations import SCHEMA_VERSION, SchemaError
from .records import SEVERITIES, FeatureValue, Finding, Label, ModelInfo, Prediction, Sample
from .sqlite import FRAME_COLUMNS, SQLiteStore
from .store import (
    PREDICTION_FIELDS,
    PREDICTION_METRICS,
    RETENTION_KINDS,
    PredictionMetric,
    RetentionKind,
    Stat,
    Store,
    WriteResult,
)
from .validation import InvalidRecord, Limits, validate_batch

__all__ = [
    "BASIC_STATS",
    "FRAME_COLUMNS",
    "PREDICTION_FIELDS",
    "PREDICTION_METRICS",
    "RETENTION_KINDS",
    "SCHEMA_VERSION",
    "SEVERITIES",
    "FeatureValue",
    "Finding",
    "InvalidRecord",
    "Label",
    "Limits",
    "ModelInfo",
    "Prediction",
    "PredictionMetric",
    "RetentionKind",
    "SQLiteStore",
    "Sample",
    "SchemaError",
    "Stat",
    "Store",
    "WriteResult",
    "open_store",
    "parse_stat",
    "validate_batch",
]
