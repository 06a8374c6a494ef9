"""Statistical checks over stored model data: health (up), efficacy (error rate) and drift.

The detector reads windows from the Store, judges them with pure checks and writes `Finding`s
back; it never notifies anyone (that is alerting's job).
"""

from .checks import DriftReference, check_drift, check_error_rate, check_up, rule_hash
from .engine import Detector
from .stats import DRIFT_TESTS, TestResult, drift_test, holm, ks_two_sample, wilson_interval

__all__ = [
    "DRIFT_TESTS",
    "Detector",
    "DriftReference",
    "TestResult",
    "check_drift",
    "check_error_rate",
    "check_up",
    "drift_test",
    "holm",
    "ks_two_sample",
    "rule_hash",
    "wilson_interval",
]
