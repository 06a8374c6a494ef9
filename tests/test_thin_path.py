"""The thin path end to end: client → HTTP ingest → SQLite → detector → alerting → apprise.

Everything is real: the `Monitor` posts over loopback HTTP to the ingest API, which writes a
SQLite file; the detector judges the stored windows and alerting delivers through apprise to
a real webhook receiver.
"""

from __future__ import annotations

import io
import random
import time
from pathlib import Path

from conftest import WebhookReceiver
from prometheus_client import CollectorRegistry

from watchkeeper import Monitor
from watchkeeper.alerting.state import read_alerts
from watchkeeper.config import config_from_dict
from watchkeeper.runtime import Stack


def test_an_error_burst_fires_once_and_resolves_once(
    tmp_path: Path, webhook: WebhookReceiver
) -> None:
    config = config_from_dict(
        {
            "storage": {"path": str(tmp_path / "data")},
            "ingest": {"port": 0},
            "detector": {
                "defaults": {
                    "window": "2m",
                    "every": "30s",
                    "checks": {
                        "error_rate": {"threshold": 0.05, "for": "1m"},
                        "up": {"staleness": "5m"},
                        "drift": {"enabled": False},
                    },
                }
            },
            "alerting": {"receivers": [webhook.url]},
        }
    )
    console = io.StringIO()
    now = time.time()
    start = now - 30 * 60
    burst = (start + 12 * 60, start + 18 * 60)
    with Stack(config, console=console, clock=lambda: now) as stack:
        stack.start_ingest()
        monitor = Monitor("scorer", "1", endpoint=stack.ingest_url, registry=CollectorRegistry())
        rng = random.Random(1)
        t = start
        while t < now:  # one prediction a second: healthy, a 6-minute burst, healthy again
            in_burst = burst[0] <= t < burst[1]
            monitor.log_prediction(
                {"x": rng.gauss(0, 1)},
                0.5,
                error=rng.random() < (0.4 if in_burst else 0.005),
                timestamp=t,
            )
            t += 1.0
        assert monitor.flush(timeout=30)
        monitor.close()
        assert len(stack.store.predictions("scorer", start, now)) == 1800
        stack.catch_up()

    alerts = [
        a
        for a in read_alerts(config.storage.alert_state_file)
        if a.label_map["check"] == "error_rate"
    ]
    assert len(alerts) == 1
    [alert] = alerts
    assert alert.state == "resolved"
    assert alert.fired_at is not None and alert.resolved_at is not None
    assert burst[0] < alert.fired_at <= burst[1] + 120
    assert burst[1] < alert.resolved_at <= burst[1] + 240

    titles = webhook.titles()
    assert sum("FIRING" in t and "error_rate" in t for t in titles) == 1, titles
    assert sum("RESOLVED" in t and "error_rate" in t for t in titles) == 1, titles
    assert len(titles) == 2, titles
    printed = console.getvalue()
    assert printed.count("FIRING") == 1 and printed.count("RESOLVED") == 1, printed
