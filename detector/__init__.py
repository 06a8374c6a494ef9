"""Statistical checks over model data: health, efficacy, drift and data quality.

The detector reads windows from the Store (or, for `replay`, from a file), judges them with
pure checks against a reference profile and writes `Finding`s back; it never notifies anyone
(that is alerting's job).

Names are imported on first use, so that `watchkeeper.detector.commands` (the CLI glue) loads
without numpy, scipy and pandas.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .checks import DriftReference, check_drift, check_error_rate, check_up, rule_hash
    from .engine import Detector
    from .frame import Batch, batch_from_frame, batch_from_predictions
    from .judge import ModelJudge
    from .profile import ReferenceProfile, profile_batch
    from .replay import ReplaySummary, replay_frames
    from .stats import (
        DRIFT_TESTS,
        TestResult,
        adjust_p_values,
        benjamini_hochberg,
        chi_square,
        drift_test,
        holm,
        js_distance,
        ks_sorted,
        ks_two_sample,
        psi,
        wilson_interval,
    )

_WHERE = {
    "DRIFT_TESTS": "stats",
    "Batch": "frame",
    "Detector": "engine",
    "DriftReference": "checks",
    "ModelJudge": "judge",
    "ReferenceProfile": "profile",
    "ReplaySummary": "replay",
    "TestResult": "stats",
    "adjust_p_values": "stats",
    "batch_from_frame": "frame",
    "batch_from_predictions": "frame",
    "benjamini_hochberg": "stats",
    "check_drift": "checks",
    "check_error_rate": "checks",
    "check_up": "checks",
    "chi_square": "stats",
    "drift_test": "stats",
    "holm": "stats",
    "js_distance": "stats",
    "ks_sorted": "stats",
    "ks_two_sample": "stats",
    "profile_batch": "profile",
    "psi": "stats",
    "replay_frames": "replay",
    "rule_hash": "checks",
    "wilson_interval": "stats",
}

__all__ = [
    "DRIFT_TESTS",
    "Batch",
    "Detector",
    "DriftReference",
    "ModelJudge",
    "ReferenceProfile",
    "ReplaySummary",
    "TestResult",
    "adjust_p_values",
    "batch_from_frame",
    "batch_from_predictions",
    "benjamini_hochberg",
    "check_drift",
    "check_error_rate",
    "check_up",
    "chi_square",
    "drift_test",
    "holm",
    "js_distance",
    "ks_sorted",
    "ks_two_sample",
    "profile_batch",
    "psi",
    "replay_frames",
    "rule_hash",
    "wilson_interval",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value
