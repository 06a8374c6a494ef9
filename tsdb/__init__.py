"""Time-series store: the records components exchange and the backends that keep them."""

from .records import SEVERITIES, FeatureValue, Finding, Label, ModelInfo, Prediction, Sample
from .sqlite import SQLiteStore
from .store import PREDICTION_METRICS, PredictionMetric, Store, WriteResult

__all__ = [
    "PREDICTION_METRICS",
    "SEVERITIES",
    "FeatureValue",
    "Finding",
    "Label",
    "ModelInfo",
    "Prediction",
    "PredictionMetric",
    "SQLiteStore",
    "Sample",
    "Store",
    "WriteResult",
]
