"""Value checks for what a service logs: turn its values into JSON the ingest API accepts.

The client never raises into the service for data problems, so these functions either repair a
value (NaN and infinities become null, strings that are not valid Unicode are made encodable)
or raise `Invalid`, which the client counts as a dropped record and logs. They run in the
sender thread, off the service's hot path (see `encode.py`); only the cheap numeric checks the
Prometheus metrics need (`latency`, `number`) run in the caller.

The limits (`MAX_NAME_CHARS`, ...) are the store's defaults (`watchkeeper.tsdb.Limits`, not
imported: the client stays light). Checking them here drops the one record that breaks them;
left to the server, the store would refuse the whole batch it travels in.

Only the standard library is used: numpy scalars are recognised by their `item()` method.
"""

from __future__ import annotations

import math
import numbers
import time
from collections.abc import Mapping

__all__ = [
    "MAX_FEATURES",
    "MAX_FUTURE_S",
    "MAX_NAME_CHARS",
    "MAX_TEXT_CHARS",
    "Invalid",
    "Scalar",
    "features",
    "latency",
    "name",
    "number",
    "scalar",
    "text",
    "timestamp",
]

Scalar = float | int | str | bool | None
_MAX_INT = 2**1023  # the ingest API refuses integers with no float value
MAX_NAME_CHARS = 256  # model, version, prediction id, feature and label names
MAX_TEXT_CHARS = 8192  # a string feature value, output or label
MAX_FEATURES = 2000
MAX_FUTURE_S = 86400.0  # a timestamp a day ahead is a unit mistake (milliseconds), not skew


class Invalid(ValueError):
    """A record the client cannot send; it is counted as dropped ('invalid') and logged."""


def scalar(value: object, what: str) -> Scalar:
    """A JSON scalar for `value`; NaN and infinities become null (a missing value)."""
    kind = type(value)
    if kind is float:
        return value if math.isfinite(value) else None  # type: ignore[arg-type,return-value]
    if value is None or kind is bool:
        return value  # type: ignore[return-value]
    if isinstance(value, str):
        if len(value) > MAX_TEXT_CHARS:
            raise Invalid(f"{what} is a string of {len(value)} characters, over {MAX_TEXT_CHARS}")
        return text(value)
    if isinstance(value, int):
        if abs(value) > _MAX_INT:
            raise Invalid(f"{what} is an integer too large for a float")
        return int(value)
    if isinstance(value, float):
        return float(value) if math.isfinite(value) else None
    item = getattr(value, "item", None)  # numpy scalars, without importing numpy
    if callable(item):
        try:
            inner = item()
        except Exception:
            inner = value
        if inner is not value and isinstance(inner, bool | int | float | str):
            return scalar(inner, what)
    if isinstance(value, numbers.Real):
        as_float = float(value)
        return as_float if math.isfinite(as_float) else None
    raise Invalid(f"{what} has unsupported type {type(value).__name__}")


def text(value: str) -> str:
    """`value` made encodable as UTF-8 (lone surrogates replaced), so no batch is refused for it."""
    if value.isascii():
        return value
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return value.encode("utf-8", "replace").decode("utf-8")
    return value


def features(values: object) -> dict[str, Scalar]:
    """A feature mapping as JSON: names are strings, values are scalars."""
    if not isinstance(values, Mapping):
        raise Invalid(f"features must be a mapping, not {type(values).__name__}")
    if len(values) > MAX_FEATURES:
        raise Invalid(f"{len(values)} features are over the limit of {MAX_FEATURES}")
    out: dict[str, Scalar] = {}
    for key, value in values.items():
        if type(key) is not str:
            if not isinstance(key, str):
                raise Invalid(f"feature name {key!r} is not a string")
            key = str(key)
        out[name(key, "feature name")] = scalar(value, f"feature {key[:50]!r}")
    return out


def name(value: str, what: str, *, empty: bool = False) -> str:
    """A name or id made encodable; `Invalid` when empty (unless allowed) or over-long."""
    if not value and not empty:
        raise Invalid(f"{what} must not be empty")
    if len(value) > MAX_NAME_CHARS:
        raise Invalid(f"{what} is {len(value)} characters, over the limit of {MAX_NAME_CHARS}")
    return text(value)


def timestamp(value: object) -> float:
    """Unix seconds, finite, not negative and at most `MAX_FUTURE_S` ahead of this clock."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise Invalid(f"timestamp must be Unix seconds, not {type(value).__name__}")
    try:
        ts = float(value)
    except OverflowError:
        raise Invalid(f"timestamp {value} is out of range") from None
    if not math.isfinite(ts) or ts < 0:
        raise Invalid(f"timestamp must be finite Unix seconds, not {ts}")
    if ts > time.time() + MAX_FUTURE_S:
        raise Invalid(f"timestamp {ts} is more than a day ahead (milliseconds, not seconds?)")
    return ts


def latency(value: object) -> float | None:
    """A latency in seconds, or None when `value` is not a finite, non-negative number."""
    if type(value) is float:
        return value if 0 <= value < math.inf else None
    if value is None or isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None
    seconds = float(value)
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


def number(value: object) -> float | None:
    """`value` as a finite float when it is a number (not a bool), for the output histogram."""
    kind = type(value)
    if kind is float:
        return value if math.isfinite(value) else None  # type: ignore[arg-type,return-value]
    if kind is int:
        return float(value)  # type: ignore[arg-type]
    if isinstance(value, numbers.Real) and not isinstance(value, bool):  # numpy.float32, ...
        as_float = float(value)
        return as_float if math.isfinite(as_float) else None
    return None
