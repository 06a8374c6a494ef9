"""Delivery through real apprise to a real loopback webhook, failures, masking, console."""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from watchkeeper.alerting import AlertManager, AppriseNotifier, Transition, advance, render
from watchkeeper.config import Config, config_from_dict
from watchkeeper.tsdb import Finding

pytestmark = pytest.mark.real_server

T0 = datetime(2026, 11, 26, 20, 0, tzinfo=UTC).timestamp()


@dataclass
class Webhook:
    """A loopback HTTP receiver that answers `status` and keeps every POSTed JSON body."""

    status: int = 200
    bodies: list[dict[str, object]] = field(default_factory=list)
    port: int = 0

    @property
    def url(self) -> str:
        return f"json://127.0.0.1:{self.port}/hook"


@pytest.fixture
def webhook_factory() -> Iterator[Callable[..., Webhook]]:
    servers: list[ThreadingHTTPServer] = []

    def start(status: int = 200) -> Webhook:
        hook = Webhook(status=status)

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                hook.bodies.append(json.loads(self.rfile.read(length)))
                self.send_response(hook.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        hook.port = server.server_address[1]
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
        servers.append(server)
        return hook

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def config(receivers: list[str], console: bool = False) -> Config:
    return config_from_dict(
        {
            "models": {
                "fraud-scorer": {
                    "checks": {"error_rate": {"for": "0s"}},
                    "labels": {"team": "risk"},
                }
            },
            "alerting": {
                "receivers": receivers,
                "console": console,
                "dashboard_url": "http://127.0.0.1:8501",
                # Notify at once; grouping's timers are tested in test_alerting_grouping.
                "route": {"group_wait": "0s", "group_interval": "1m"},
            },
        }
    )


def finding(minute: float, breached: bool) -> Finding:
    value = 0.31 if breached else 0.01
    return Finding(
        model="fraud-scorer",
        check="error_rate",
        subject="",
        statistic="wilson_lower",
        value=value,
        threshold=0.05,
        breached=breached,
        severity="critical",
        window_start=T0 + (minute - 5) * 60,
        window_end=T0 + minute * 60,
        summary=f"error rate {value:.0%} above 5%" if breached else f"error rate {value:.0%}",
    )


EPISODE = [finding(0, False), finding(5, True), finding(10, True), finding(15, False)]


def test_webhook_gets_firing_then_resolved_once_each(
    webhook_factory: Callable[..., Webhook], tmp_path: Path
) -> None:
    hook = webhook_factory()
    manager = AlertManager(config([hook.url]), tmp_path / "alerts.db")
    try:
        manager.process(EPISODE)
        manager.process(EPISODE)  # re-processing sends nothing twice
    finally:
        manager.close()
    assert [body["title"] for body in hook.bodies] == [
        "[FIRING] fraud-scorer error_rate (critical)",
        "[RESOLVED] fraud-scorer error_rate (critical)",
    ]
    firing, resolved = (str(body["message"]) for body in hook.bodies)
    assert "error rate 31% above 5%" in firing
    assert "value 0.31 vs threshold 0.05" in firing
    assert "active since 2026-11-26T20:05:00Z" in firing
    assert "team=risk" in firing
    assert "dashboard: http://127.0.0.1:8501" in firing
    assert "resolved at 2026-11-26T20:15:00Z" in resolved


def test_failing_receiver_is_recorded_and_others_still_delivered(
    webhook_factory: Callable[..., Webhook], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    broken = webhook_factory(status=500)
    healthy = webhook_factory()
    manager = AlertManager(
        config([broken.url, healthy.url]), tmp_path / "alerts.db", retry_base_s=0.01
    )
    try:
        transitions = manager.process([finding(5, True)])
        log = manager.notifications()
    finally:
        manager.close()
    assert [t.alert.state for t in transitions] == ["firing"]
    assert len(broken.bodies) == 3  # a 5xx is retried, up to three attempts
    assert len(healthy.bodies) == 1
    by_receiver = {record.receiver: record for record in log}
    failed = by_receiver[f"json://127.0.0.1:{broken.port}/hook"]
    assert not failed.ok and failed.state == "firing"
    assert "500" in failed.detail
    assert by_receiver[f"json://127.0.0.1:{healthy.port}/hook"].ok
    assert any("not delivered" in r.getMessage() for r in caplog.records)


def test_unreachable_receiver_does_not_raise(
    webhook_factory: Callable[..., Webhook], tmp_path: Path
) -> None:
    healthy = webhook_factory()
    closed = AppriseNotifier("json://127.0.0.1:1/hook")  # port 1: nothing listens
    receivers = [closed, AppriseNotifier(healthy.url)]
    manager = AlertManager(config([]), tmp_path / "alerts.db", receivers, retry_base_s=0.01)
    try:
        manager.process([finding(5, True)])
        log = manager.notifications()
    finally:
        manager.close()
    assert len(healthy.bodies) == 1
    assert sorted(record.ok for record in log) == [False, True]


def test_secrets_never_appear_in_names_or_reprs() -> None:
    notifier = AppriseNotifier("json://user:secretpass@127.0.0.1:9/hook")
    assert "secretpass" not in notifier.name
    assert "secretpass" not in repr(notifier)
    assert notifier.name.startswith("json://user:")


def test_invalid_url_fails_at_construction_without_leaking() -> None:
    with pytest.raises(ValueError, match="not a valid apprise URL") as raised:
        AppriseNotifier("nosuchservice://token-abc123@example.com")
    assert "token-abc123" not in str(raised.value)
    assert "nosuchservice://" in str(raised.value)


def test_console_prints_one_line_per_notification(tmp_path: Path) -> None:
    out = io.StringIO()
    manager = AlertManager(config([], console=True), tmp_path / "alerts.db", console=out)
    try:
        manager.process(EPISODE)
    finally:
        manager.close()
    lines = out.getvalue().splitlines()
    assert len(lines) == 2
    firing, resolved = lines
    assert firing.startswith("2026-11-26 20:05:00Z FIRING   critical fraud-scorer error_rate: ")
    assert firing.endswith("error rate 31% above 5% since 20:05Z")
    assert resolved.startswith("2026-11-26 20:15:00Z RESOLVED critical fraud-scorer error_rate")


def test_render_without_dashboard_has_no_link() -> None:
    _, moved = advance(None, finding(5, True), {}, 0)
    assert isinstance(moved, Transition)
    title, body = render(moved, "")
    assert title == "[FIRING] fraud-scorer error_rate (critical)"
    assert "dashboard" not in body


def test_a_4xx_is_final_and_not_retried(
    webhook_factory: Callable[..., Webhook], tmp_path: Path
) -> None:
    refusing = webhook_factory(status=403)
    manager = AlertManager(config([refusing.url]), tmp_path / "alerts.db", retry_base_s=0.01)
    try:
        manager.process([finding(5, True)])
        (record,) = manager.notifications()
        (queued,) = manager.outbox.messages()
    finally:
        manager.close()
    assert len(refusing.bodies) == 1
    assert not record.ok and "403" in record.detail
    assert queued.status == "failed"
