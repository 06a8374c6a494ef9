"""Hand-off to a real Prometheus Alertmanager (Debian's `prometheus-alertmanager`)."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from watchkeeper.alerting import AlertManager
from watchkeeper.alerting.alertmanager import AlertmanagerHandoff, am_alert
from watchkeeper.config import config_from_dict
from watchkeeper.tsdb import Finding

pytestmark = pytest.mark.real_server

BINARY = shutil.which("prometheus-alertmanager")
T0 = time.time() - 3600


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


@pytest.fixture
def alertmanager(tmp_path: Path) -> Iterator[str]:
    if BINARY is None:
        pytest.skip("prometheus-alertmanager is not installed (Debian prometheus-alertmanager)")
    config = tmp_path / "am.yml"
    config.write_text("route:\n  receiver: nobody\nreceivers:\n  - name: nobody\n")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    process = subprocess.Popen(
        [
            BINARY,
            f"--config.file={config}",
            f"--storage.path={tmp_path / 'am-data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"{url}/-/ready", timeout=1) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            assert process.poll() is None, "alertmanager exited"
            assert time.monotonic() < deadline, "alertmanager not ready in 30 s"
            time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def finding(minute: float, breached: bool, version: str | None = "v7") -> Finding:
    return Finding(
        model="fraud-scorer",
        check="error_rate",
        subject="",
        statistic="wilson_lower",
        value=0.3 if breached else 0.01,
        threshold=0.05,
        breached=breached,
        severity="critical",
        window_start=T0 + (minute - 5) * 60,
        window_end=T0 + minute * 60,
        summary="error rate 30%" if breached else "",
        version=version,
    )


def test_firing_alert_shows_in_alertmanager_and_resolves(alertmanager: str, tmp_path: Path) -> None:
    config = config_from_dict(
        {
            "models": {"fraud-scorer": {"checks": {"error_rate": {"for": "0s"}}}},
            "detector": {"defaults": {"runbook_url": "https://wiki.example/{model}/{check}"}},
            "alerting": {
                "console": False,
                "alertmanager_urls": [alertmanager],
                "dashboard_url": "http://127.0.0.1:8501",
            },
        }
    )
    manager = AlertManager(config, tmp_path / "alerts.db")
    try:
        manager.process([finding(0, True)])
        (shown,) = get(f"{alertmanager}/api/v2/alerts?filter=model%3D%22fraud-scorer%22")
        assert shown["labels"]["alertname"] == "error_rate"
        assert shown["labels"]["severity"] == "critical"
        assert shown["labels"]["version"] == "v7"
        assert shown["annotations"]["summary"] == "error rate 30%"
        assert shown["annotations"]["value"] == "0.3"
        assert shown["annotations"]["threshold"] == "0.05"
        since = datetime.fromtimestamp(T0, UTC).isoformat().replace("+00:00", "Z")
        assert shown["annotations"]["since"] == since
        assert shown["annotations"]["runbook_url"] == "https://wiki.example/fraud-scorer/error_rate"
        assert shown["annotations"]["dashboard"] == "http://127.0.0.1:8501/model?model=fraud-scorer"
        assert shown["status"]["state"] == "active"
        assert shown["generatorURL"] == "http://127.0.0.1:8501/model?model=fraud-scorer"
        # v8 is deployed and still breaches: the same alert (one in Alertmanager too); its
        # labels stay those of the episode, the new version is an annotation
        manager.process([finding(1, True, "v8")])
        [alert] = manager.alerts(["firing"])
        assert (alert.label_map["version"], alert.latest_version) == ("v7", "v8")
        posted = am_alert(alert, T0 + 60, 240)
        assert posted["labels"] == shown["labels"]
        assert posted["annotations"]["latest_version"] == "v8"  # type: ignore[index]
        manager.process([finding(5, False, "v8")])
        assert get(f"{alertmanager}/api/v2/alerts?active=true&silenced=false") == []
    finally:
        manager.close()


def test_handoff_resends_only_when_due_and_reports_an_unreachable_server() -> None:
    handoff = AlertmanagerHandoff(f"http://127.0.0.1:{free_port()}", resend_s=60, timeout_s=1)
    assert handoff.due(0.0)
    assert handoff.push([], 0.0) is False  # nothing listens there
    with pytest.raises(ValueError, match="http"):
        AlertmanagerHandoff("alertmanager.example:9093")
