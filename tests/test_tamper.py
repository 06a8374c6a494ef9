"""The tampering signal (issue 7): a service reporting a model file that no registered
version has raises an `unexpected_model` alert; registered files keep it quiet."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import pytest
from conftest import WebhookReceiver
from fixtures_collectors import Ingest, ingest_fixture  # noqa: F401

from watchkeeper import Monitor
from watchkeeper.alerting.manager import AlertManager
from watchkeeper.config import ConfigError, config_from_dict
from watchkeeper.detector.engine import Detector

GOOD = hashlib.sha256(b"model-v2.3.0.onnx").hexdigest()
OLD = hashlib.sha256(b"model-v2.2.1.onnx").hexdigest()
SWAPPED = hashlib.sha256(b"someone else's model").hexdigest()
EVERY = 600.0


def config_with_artifacts(tmp_path: Path, webhook: WebhookReceiver | None = None):  # type: ignore[no-untyped-def]
    return config_from_dict(
        {
            "storage": {"path": str(tmp_path)},
            "models": {
                "fraud-scorer": {
                    "window": "10m",
                    "every": "10m",
                    "artifacts": {"2.3.0": GOOD, "2.2.1": OLD.upper()},
                }
            },
            "alerting": {
                "console": False,
                "receivers": [webhook.url] if webhook else [],
                "route": {"group_wait": "0s"},
            },
        }
    )


def serve(ingest: Ingest, sha: str, start: float, minutes: int) -> None:
    monitor = Monitor(
        "fraud-scorer", "2.3.0", endpoint=ingest.url, artifact_sha256=sha, flush_interval_s=0.1
    )
    for k in range(minutes * 6):
        monitor.log_prediction({"x": 1.0}, 0.5, timestamp=start + k * 10.0)
    assert monitor.flush(timeout=20)
    monitor.close()


def unexpected(findings):  # type: ignore[no-untyped-def]
    return [f for f in findings if f.check == "unexpected_model"]


def test_a_model_file_nobody_registered_raises_a_critical_alert(
    tmp_path: Path, ingest: Ingest, webhook: WebhookReceiver
) -> None:
    config = config_with_artifacts(tmp_path, webhook)
    start = (time.time() // EVERY - 4) * EVERY
    serve(ingest, GOOD, start, 20)  # two windows serving the registered file
    serve(ingest, SWAPPED, start + 2 * EVERY, 10)  # then a file nobody registered
    reports = ingest.store.samples("fraud-scorer", "model_artifact", 0, time.time())
    assert 20 <= len(reports) <= 31  # about one a minute, not one per prediction

    findings = unexpected(Detector(ingest.store, config).run_once(start + 3 * EVERY + 1))
    assert [(f.window_end - start, f.breached) for f in findings] == [
        (EVERY, False),
        (2 * EVERY, False),
        (3 * EVERY, True),
    ]
    assert SWAPPED[:12] in findings[-1].summary and "2.3.0" in findings[-1].summary
    assert findings[-1].severity == "critical"

    alerts = AlertManager(config, tmp_path / "alerts.db")
    try:
        alerts.process(findings)
    finally:
        alerts.close()
    assert [t for t in webhook.titles() if "unexpected_model" in t] == [
        "[FIRING] fraud-scorer unexpected_model (critical)"
    ]


def test_models_without_registered_artifacts_or_reports_are_not_judged(
    tmp_path: Path, ingest: Ingest
) -> None:
    start = (time.time() // EVERY - 3) * EVERY
    serve(ingest, SWAPPED, start, 10)
    unregistered = config_from_dict({"models": {"fraud-scorer": {"every": "10m"}}})
    assert not unexpected(Detector(ingest.store, unregistered).run_once(start + 2 * EVERY))
    config = config_with_artifacts(tmp_path)
    monitor = Monitor("other", endpoint=ingest.url, flush_interval_s=0.1)  # reports nothing
    monitor.log_prediction({"x": 1.0}, 0.5, timestamp=start)
    assert monitor.flush(timeout=20)
    monitor.close()
    assert not [
        f
        for f in unexpected(Detector(ingest.store, config).run_once(start + 2 * EVERY))
        if f.model == "other"
    ]


@pytest.mark.parametrize("bad", ["abc", "g" * 64, 42, GOOD + "0"])
def test_a_malformed_fingerprint_fails_at_construction_and_in_the_config(bad: object) -> None:
    with pytest.raises(ValueError, match="artifact_sha256"):
        Monitor("m", artifact_sha256=bad)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"models\.m\.artifacts\.1: .*SHA-256"):
        config_from_dict({"models": {"m": {"artifacts": {"1": bad}}}})
