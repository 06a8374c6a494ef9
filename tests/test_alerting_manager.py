"""AlertManager over a real state file: one page per episode, state that survives restarts."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

import watchkeeper.alerting as alerting
from watchkeeper.alerting import AlertManager, AlertStateStore, SendResult, read_alerts
from watchkeeper.config import Config, config_from_dict
from watchkeeper.tsdb import Finding

T0 = 1_800_000_000.0
IMMEDIATE = {"group_wait": "0s", "group_interval": "1m"}


@dataclass
class Inbox:
    """A tiny real notifier that keeps what it was sent."""

    name: str = "inbox://ops"
    sent: list[tuple[str, str]] = field(default_factory=list)

    def send(self, title: str, body: str) -> SendResult:
        self.sent.append((title, body))
        return SendResult(ok=True, retryable=False, detail="kept")

    @property
    def titles(self) -> list[str]:
        return [title for title, _ in self.sent]


@dataclass
class Refusing:
    """A notifier whose receiver always refuses for good (a 4xx): not retried."""

    name: str = "refusing://ops"
    calls: int = 0

    def send(self, title: str, body: str) -> SendResult:
        self.calls += 1
        return SendResult(ok=False, retryable=False, detail="403 Forbidden")


def make_config(for_: str = "10m") -> Config:
    return config_from_dict(
        {
            "models": {
                "fraud-scorer": {
                    "checks": {"error_rate": {"for": for_}},
                    "labels": {"team": "risk"},
                }
            },
            # Notify at once; grouping's timers are tested in test_alerting_grouping.
            "alerting": {"console": False, "route": IMMEDIATE},
        }
    )


def finding(minute: float, breached: bool, model: str = "fraud-scorer") -> Finding:
    return Finding(
        model=model,
        check="error_rate",
        subject="",
        statistic="wilson_lower",
        value=0.3 if breached else 0.01,
        threshold=0.05,
        breached=breached,
        severity="critical",
        window_start=T0 + (minute - 5) * 60,
        window_end=T0 + minute * 60,
    )


def series(pattern: str, start: float = 0) -> list[Finding]:
    """One finding every 5 minutes; `x` breached, `.` healthy."""
    return [finding(start + 5 * i, mark == "x") for i, mark in enumerate(pattern)]


@pytest.fixture
def state_path(tmp_path: Path) -> Path:
    return tmp_path / "alerts.db"


def test_burst_fires_once_and_resolves_once(state_path: Path) -> None:
    inbox = Inbox()
    manager = AlertManager(make_config("10m"), state_path, [inbox])
    try:
        transitions = manager.process(series("...xxxxxx..."))
        alerts = manager.alerts()
        log = manager.notifications()
    finally:
        manager.close()
    assert [t.alert.state for t in transitions] == ["pending", "firing", "resolved"]
    assert inbox.titles == [
        "[FIRING] fraud-scorer error_rate (critical)",
        "[RESOLVED] fraud-scorer error_rate (critical)",
    ]
    (alert,) = alerts
    assert alert.state == "resolved"
    assert alert.active_since == T0 + 15 * 60
    assert alert.fired_at == T0 + 25 * 60
    assert alert.resolved_at == T0 + 45 * 60
    assert alert.label_map["team"] == "risk"
    assert [(r.state, r.receiver, r.ok) for r in log] == [
        ("resolved", "inbox://ops", True),
        ("firing", "inbox://ops", True),
    ]


def test_short_blip_never_pages(state_path: Path) -> None:
    inbox = Inbox()
    manager = AlertManager(make_config("10m"), state_path, [inbox])
    try:
        transitions = manager.process(series("..x..x.."))
        assert manager.alerts() == []
    finally:
        manager.close()
    assert [t.alert.state for t in transitions] == ["pending", "pending"]
    assert inbox.sent == []


def test_findings_out_of_order_are_taken_in_time_order(state_path: Path) -> None:
    inbox = Inbox()
    manager = AlertManager(make_config("0s"), state_path, [inbox])
    try:
        manager.process(list(reversed(series("xx."))))
    finally:
        manager.close()
    assert [title.split("]")[0] for title in inbox.titles] == ["[FIRING", "[RESOLVED"]


def test_pending_timer_carries_on_after_restart(state_path: Path) -> None:
    inbox = Inbox()
    first = AlertManager(make_config("10m"), state_path, [inbox])
    try:
        first.process(series("xx"))  # pending for 5 of the 10 minutes
        assert [a.state for a in first.alerts()] == ["pending"]
    finally:
        first.close()
    second = AlertManager(make_config("10m"), state_path, [inbox])
    try:
        second.process(series("xx"))  # the same findings again: nothing happens
        assert inbox.sent == []
        transitions = second.process(series("x", start=10))
        (alert,) = second.alerts(["firing"])
    finally:
        second.close()
    assert [t.alert.state for t in transitions] == ["firing"]
    assert alert.active_since == T0
    assert inbox.titles == ["[FIRING] fraud-scorer error_rate (critical)"]


def test_reprocessing_after_restart_sends_nothing_twice(state_path: Path) -> None:
    inbox = Inbox()
    findings = series("..xxx...", start=0)
    for _ in range(2):
        manager = AlertManager(make_config("5m"), state_path, [inbox])
        try:
            manager.process(findings)
        finally:
            manager.close()
    assert len(inbox.sent) == 2


def test_final_failure_is_not_retried_and_does_not_stop_others(state_path: Path) -> None:
    refusing, inbox = Refusing(), Inbox()
    manager = AlertManager(make_config("0s"), state_path, [refusing, inbox])
    try:
        manager.process(series("x"))
        log = manager.notifications()
    finally:
        manager.close()
    assert refusing.calls == 1
    assert len(inbox.sent) == 1
    assert {(r.receiver, r.ok, r.detail) for r in log} == {
        ("refusing://ops", False, "403 Forbidden"),
        ("inbox://ops", True, "kept"),
    }


def test_unconfigured_models_use_the_defaults(state_path: Path) -> None:
    inbox = Inbox()
    manager = AlertManager(make_config(), state_path, [inbox])
    try:
        # the default error_rate `for` is 5 minutes
        transitions = manager.process(
            [finding(0, True, model="other"), finding(5, True, model="other")]
        )
    finally:
        manager.close()
    assert [t.alert.state for t in transitions] == ["pending", "firing"]
    assert inbox.titles == ["[FIRING] other error_rate (critical)"]


def test_readers_see_the_state_without_creating_it(state_path: Path) -> None:
    assert read_alerts(state_path) == []
    assert not state_path.exists()
    manager = AlertManager(make_config("0s"), state_path, [])
    try:
        manager.process(series("x"))
        assert [a.state for a in read_alerts(state_path)] == ["firing"]
        assert read_alerts(state_path, ["resolved"]) == []
    finally:
        manager.close()
    store = AlertStateStore(state_path)
    try:
        assert store.alerts() == read_alerts(state_path)
    finally:
        store.close()


def test_public_names() -> None:
    assert {
        "AlertManager",
        "AlertStateStore",
        "read_alerts",
        "AppriseNotifier",
        "ConsoleNotifier",
        "Notifier",
        "SendResult",
        "advance",
        "Alert",
        "Transition",
        "fingerprint",
        "render",
    } <= set(alerting.__all__)
    for name in alerting.__all__:
        assert hasattr(alerting, name)
