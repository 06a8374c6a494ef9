"""Durable delivery against real loopback receivers: retries with backoff, per-target
isolation, a hard time limit, metrics, SIGKILL while queued and while in flight, real SMTP."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from email import message_from_bytes
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from watchkeeper.alerting import AlertManager, AppriseNotifier, Outbox, send_with_limit
from watchkeeper.config import Config, config_from_dict
from watchkeeper.tsdb import Finding

pytestmark = pytest.mark.real_server

T0 = time.time() - 3600
WAIT_S = 20.0


class Receiver:
    """A loopback JSON receiver: answers `fail_first` requests with 500, then 200; with
    `hang` set, the first request is kept open until `release`."""

    def __init__(self, fail_first: int = 0, hang: bool = False) -> None:
        self.fail_first = fail_first
        self.requests: list[dict[str, Any]] = []  # every body received
        self.accepted: list[dict[str, Any]] = []  # those answered 200
        self.arrived = threading.Condition()
        self.release = threading.Event()
        if not hang:
            self.release.set()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length))
                with receiver.arrived:
                    receiver.requests.append(body)
                    failing = len(receiver.requests) <= receiver.fail_first
                    receiver.arrived.notify_all()
                receiver.release.wait(WAIT_S)
                self.send_response(500 if failing else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()
                if not failing:
                    with receiver.arrived:
                        receiver.accepted.append(body)
                        receiver.arrived.notify_all()

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"json://127.0.0.1:{self._server.server_address[1]}/hook"
        threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True).start()

    def wait_for(self, check: Callable[[], bool]) -> None:
        with self.arrived:
            assert self.arrived.wait_for(check, WAIT_S), (self.requests, self.accepted)

    def close(self) -> None:
        self.release.set()
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def receivers() -> Iterator[Callable[..., Receiver]]:
    made: list[Receiver] = []

    def make(**kwargs: Any) -> Receiver:
        made.append(Receiver(**kwargs))
        return made[-1]

    yield make
    for r in made:
        r.close()


def config(urls: list[str], **alerting: Any) -> Config:
    return config_from_dict(
        {
            "models": {"fraud-scorer": {"checks": {"error_rate": {"for": "0s"}}}},
            "alerting": {
                "receivers": urls,
                "console": False,
                "route": {"group_wait": "0s", "group_interval": "1m"},
                "retry_backoff": 0.05,
                "retry_backoff_max": 0.2,
                **alerting,
            },
        }
    )


def finding(model: str, minute: float, breached: bool = True) -> Finding:
    return Finding(
        model=model,
        check="error_rate",
        subject="",
        statistic="wilson_lower",
        value=0.3 if breached else 0.0,
        threshold=0.05,
        breached=breached,
        severity="critical",
        window_start=T0 + (minute - 5) * 60,
        window_end=T0 + minute * 60,
    )


def dedup_key(body: dict[str, Any]) -> str:
    return str(body["message"]).rsplit("dedup key: ", 1)[1].strip()


def test_failing_receiver_is_retried_and_delivered_once_without_delaying_the_other(
    receivers: Callable[..., Receiver], tmp_path: Path
) -> None:
    flaky = receivers(fail_first=3)
    healthy = receivers()
    registry = CollectorRegistry()
    manager = AlertManager(
        config([flaky.url, healthy.url]), tmp_path / "alerts.db", registry=registry
    )
    try:
        manager.start()
        manager.process([finding("fraud-scorer", 0)])
        healthy.wait_for(lambda: len(healthy.accepted) == 1)
        # The healthy receiver had its message before the flaky one stopped failing.
        assert len(flaky.accepted) == 0
        flaky.wait_for(lambda: len(flaky.accepted) == 1)
        deadline = time.monotonic() + WAIT_S
        while manager.outbox.depth() and time.monotonic() < deadline:
            time.sleep(0.02)
        statuses = [m.status for m in manager.outbox.messages()]
    finally:
        manager.close()
    assert statuses == ["sent", "sent"]
    assert len(flaky.requests) == 4  # three 500s, then the one delivery
    assert len(flaky.accepted) == len(healthy.accepted) == 1
    assert dedup_key(flaky.accepted[0]) == dedup_key(healthy.accepted[0])
    value = registry.get_sample_value
    assert value("watchkeeper_notifications_sent_total", {"receiver": "default"}) == 2
    assert (
        value(
            "watchkeeper_notifications_failed_total", {"receiver": "default", "reason": "retryable"}
        )
        == 3
    )
    assert value("watchkeeper_notification_queue_depth") == 0
    assert value("watchkeeper_notification_send_seconds_count", {"receiver": "default"}) == 5


def test_a_hanging_receiver_is_cut_off_and_does_not_delay_the_other(
    receivers: Callable[..., Receiver], tmp_path: Path
) -> None:
    hanging = receivers(hang=True)
    healthy = receivers()
    manager = AlertManager(
        config([hanging.url, healthy.url], send_timeout=0.3), tmp_path / "alerts.db"
    )
    try:
        manager.start()
        manager.process([finding("fraud-scorer", 0)])
        healthy.wait_for(lambda: len(healthy.accepted) == 1)
        hanging.wait_for(lambda: len(hanging.requests) >= 2)  # timed out, then tried again
        log = manager.notifications()
    finally:
        hanging.release.set()
        manager.close()
    assert any("timed out after 0.3s" in r.detail for r in log if not r.ok)


def test_send_with_limit_returns_in_time(receivers: Callable[..., Receiver]) -> None:
    hanging = receivers(hang=True)
    result = send_with_limit(AppriseNotifier(hanging.url), "t", "b", 0.2)
    assert (result.ok, result.retryable, result.detail) == (False, True, "timed out after 0.2s")


CHILD = textwrap.dedent(
    """
    import sys, time
    from watchkeeper.alerting import AlertManager
    from watchkeeper.config import config_from_dict
    from watchkeeper.tsdb import Finding

    url, state, mode, t0 = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
    config = config_from_dict({
        "alerting": {"receivers": [url], "console": False, "retry_backoff": 0.05,
                     "send_timeout": 0.5,
                     "retry_backoff_max": 0.2,
                     "route": {"group_wait": "0s", "group_interval": "1m"}},
        "models": {m: {"checks": {"error_rate": {"for": "0s"}}} for m in ("a", "b")},
    })
    manager = AlertManager(config, state, max_attempts=1)
    if mode == "fire":
        manager.process([
            Finding(m, "error_rate", "", "wilson_lower", 0.3, 0.05, True, "critical",
                    t0 - 300, t0)
            for m in ("a", "b")
        ])
    manager.start()
    print("running", flush=True)
    while True:
        time.sleep(1)
    """
)


def run_child(url: str, state: Path, mode: str, cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, url, str(state), mode, str(T0)],
        cwd=cwd,
        stdout=subprocess.PIPE,
        text=True,
    )


def stop(child: subprocess.Popen[str], sig: int = signal.SIGKILL) -> None:
    os.kill(child.pid, sig)
    child.wait(WAIT_S)
    if child.stdout:
        child.stdout.close()


def wait_drained(state: Path) -> list[str]:
    outbox = Outbox(state)
    try:
        deadline = time.monotonic() + WAIT_S
        while outbox.depth() and time.monotonic() < deadline:
            time.sleep(0.05)
        return [m.status for m in outbox.messages()]
    finally:
        outbox.close()


def test_sigkill_while_queued_loses_nothing_and_sends_nothing_twice(
    receivers: Callable[..., Receiver], tmp_path: Path
) -> None:
    hook = receivers(fail_first=10_000)  # refuses everything while the first process runs
    state = tmp_path / "alerts.db"
    titles = ["[FIRING] a error_rate (critical)", "[FIRING] b error_rate (critical)"]
    child = run_child(hook.url, state, "fire", tmp_path)
    try:
        hook.wait_for(lambda: {r["title"] for r in hook.requests} >= set(titles))
    finally:
        stop(child)
    with hook.arrived:
        hook.fail_first = len(hook.requests)  # the receiver recovers
    child = run_child(hook.url, state, "deliver", tmp_path)
    try:
        hook.wait_for(lambda: len(hook.accepted) >= 2)
        statuses = wait_drained(state)
    finally:
        stop(child, signal.SIGTERM)
    assert sorted(r["title"] for r in hook.accepted) == titles
    assert statuses == ["sent", "sent"]


def test_sigkill_during_a_send_repeats_it_once_with_the_same_dedup_key(
    receivers: Callable[..., Receiver], tmp_path: Path
) -> None:
    hook = receivers(hang=True)
    state = tmp_path / "alerts.db"
    child = run_child(hook.url, state, "fire", tmp_path)
    try:
        hook.wait_for(lambda: len(hook.requests) >= 1)  # one send is in flight
    finally:
        stop(child)
    in_flight = hook.requests[0]
    hook.release.set()  # the receiver had it; the dead sender never heard back
    hook.wait_for(lambda: len(hook.accepted) >= 1)
    child = run_child(hook.url, state, "deliver", tmp_path)
    try:
        hook.wait_for(lambda: len(hook.accepted) >= 3)
        statuses = wait_drained(state)
    finally:
        stop(child, signal.SIGTERM)
    titles = sorted(r["title"] for r in hook.accepted)
    other = next(
        t
        for t in ("[FIRING] a error_rate (critical)", "[FIRING] b error_rate (critical)")
        if t != in_flight["title"]
    )
    assert titles == sorted([in_flight["title"], in_flight["title"], other])
    # The message that was in flight went out once more, with the same dedup key.
    again = [r for r in hook.accepted if r["title"] == in_flight["title"]]
    assert [dedup_key(r) for r in again] == [dedup_key(in_flight)] * 2
    assert statuses == ["sent", "sent"]


def test_email_arrives_through_a_real_smtp_server(tmp_path: Path) -> None:
    from aiosmtpd.controller import Controller

    received: list[bytes] = []

    class Handler:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            received.append(envelope.content)
            return "250 OK"

    with socket.socket() as probe:  # aiosmtpd checks its port by connecting: name it
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(Handler(), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        url = f"mailto://127.0.0.1:{port}?from=a@example.com&to=b@example.com&mode=insecure"
        manager = AlertManager(config([url]), tmp_path / "alerts.db")
        try:
            manager.process([finding("fraud-scorer", 0)])
            log = manager.notifications()
        finally:
            manager.close()
    finally:
        controller.stop()
    assert [r.ok for r in log] == [True]
    (raw,) = received
    mail = message_from_bytes(raw)
    assert mail["Subject"] == "[FIRING] fraud-scorer error_rate (critical)"
    assert "dedup key: " in raw.decode()


def test_a_message_is_held_by_one_sender_at_a_time(tmp_path: Path) -> None:
    from watchkeeper.alerting import LogEntry, Message

    first, second = Outbox(tmp_path / "alerts.db"), Outbox(tmp_path / "alerts.db")
    try:
        message = Message("k1", "default", "default|json://h/x", ("f1",), "firing", "t", "b")
        entry = LogEntry(frozenset({"f1"}), frozenset(), 0.0)
        (mid,) = first.record("g", "default", entry, [message], queued_at=100.0, deadline=200.0)
        assert [q.message for q in second.due("default|json://h/x", 100.0)] == [message]
        assert first.claim(mid, 100.0, lease_until=110.0)
        assert not second.claim(mid, 105.0, lease_until=115.0)  # held by the first sender
        assert second.due("default|json://h/x", 105.0) == []
        assert second.claim(mid, 111.0, lease_until=121.0)  # its sender died: lease ran out
        second.mark(mid, "sent", "sent", 112.0)
        assert not first.claim(mid, 200.0, lease_until=210.0)  # done
        (done,) = first.messages()
    finally:
        first.close()
        second.close()
    assert (done.status, done.attempts) == ("sent", 2)
