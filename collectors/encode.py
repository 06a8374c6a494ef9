"""Queued records and their encoding into the ingest wire format.

The caller's hot path only puts a small tuple on the queue (`prediction_record`, ...); the
sender thread turns a batch of them into wire dicts with `encode`, running the value checks of
`sanitize` there, so that checking 20 features never costs the service's request thread.
A record that cannot be encoded raises `sanitize.Invalid` and is dropped (counted) alone.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import sanitize

if TYPE_CHECKING:
    from .privacy import Privacy

__all__ = ["ARTIFACT_SERIES", "FALLBACK_SERIES", "KINDS", "Record", "encode"]

FALLBACK_SERIES = "fallbacks"
"""Name of the sample series a fallback is sent as (value 1.0, label `reason`)."""

ARTIFACT_SERIES = "model_artifact"
"""Name of the sample series a service reports the SHA-256 of the model it serves in
(value 1.0, label `sha256`), so that a model nobody registered is noticed."""

KINDS = ("predictions", "labels", "samples")

Record = tuple[Any, ...]
"""`(kind, ...)`: what `encode` takes, one of

- `("predictions", prediction_id, timestamp, features, output, latency_s, error)`
- `("labels", prediction_id, label, timestamp)`
- `("samples", name, timestamp, value, labels)`
"""


def _pid(value: object) -> str:
    return sanitize.name(value if isinstance(value, str) else str(value), "prediction_id")


def encode(
    record: Record,
    model: str,
    version: str,
    sample_rate: float,
    privacy: Privacy | None = None,
) -> dict[str, Any]:
    """The wire dict of one queued record of model `model`, version `version`; with `privacy`,
    its hashed fields (features, prediction id) are hashed."""
    kind = record[0]
    if kind == "predictions":
        _, pid, ts, features, output, latency_s, error = record
        checked = sanitize.features(features)
        prediction_id = _pid(pid)
        if privacy is not None:
            privacy.hash_features(checked)
            if privacy.hash_prediction_id:
                prediction_id = privacy.hash(prediction_id)
        return {
            "model": model,
            "prediction_id": prediction_id,
            "timestamp": sanitize.timestamp(ts),
            "features": checked,
            "output": sanitize.scalar(output, "prediction"),
            "version": version,
            "latency_s": latency_s,
            "error": bool(error),
            "sample_rate": sample_rate,
        }
    if kind == "labels":
        _, pid, label, ts = record
        prediction_id = _pid(pid)
        if privacy is not None and privacy.hash_prediction_id:
            prediction_id = privacy.hash(prediction_id)
        return {
            "model": model,
            "prediction_id": prediction_id,
            "label": sanitize.scalar(label, "label"),
            "timestamp": sanitize.timestamp(ts),
        }
    _, name, ts, value, labels = record
    return {
        "model": model,
        "name": name,
        "timestamp": sanitize.timestamp(ts),
        "value": float(value),
        "version": version,
        "labels": {
            sanitize.name(k, "label name"): sanitize.name(v, f"label {k[:50]!r}", empty=True)
            for k, v in labels.items()
        },
    }
