"""keep_firing_for and NoData through the AlertManager on a controllable clock, and the state
file migration that gives alerts the fields they need."""

from __future__ import annotations

import dataclasses
import json
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from watchkeeper.alerting import AlertManager, AlertStateStore, SendResult, read_alerts
from watchkeeper.config import Config, config_from_dict
from watchkeeper.tsdb import Finding

T0 = 1_800_000_000.0


@dataclass
class Clock:
    now: float = T0

    def __call__(self) -> float:
        return self.now


@dataclass
class Inbox:
    name: str = "inbox://ops"
    sent: list[tuple[str, str]] = field(default_factory=list)

    def send(self, title: str, body: str) -> SendResult:
        self.sent.append((title, body))
        return SendResult(ok=True, retryable=False, detail="kept")

    @property
    def titles(self) -> list[str]:
        return [title for title, _ in self.sent]


def make_config(for_: str = "0s", keep: str = "0s", **alerting: Any) -> Config:
    return config_from_dict(
        {
            "models": {
                "fraud-scorer": {
                    "every": "1m",
                    "checks": {"error_rate": {"for": for_, "keep_firing_for": keep}},
                    "labels": {"team": "risk"},
                }
            },
            "alerting": {
                "console": False,
                "route": {"group_wait": "0s", "group_interval": "1m"},
                **alerting,
            },
        }
    )


def finding(second: float, breached: bool = True, version: str | None = None) -> Finding:
    return Finding(
        model="fraud-scorer",
        check="error_rate",
        subject="",
        statistic="wilson_lower",
        value=0.3 if breached else 0.01,
        threshold=0.05,
        breached=breached,
        severity="critical",
        window_start=T0 + second - 300,
        window_end=T0 + second,
        version=version,
    )


def states(manager: AlertManager) -> dict[str, str]:
    return {a.label_map["check"]: a.state for a in manager.alerts()}


FIRING = "[FIRING] fraud-scorer error_rate (critical)"
RESOLVED = "[RESOLVED] fraud-scorer error_rate (critical)"
NODATA = "[FIRING] fraud-scorer nodata (warning)"
NODATA_OVER = "[RESOLVED] fraud-scorer nodata (warning)"


def test_keep_firing_for_from_the_config_holds_a_flapping_alert(tmp_path: Path) -> None:
    inbox, clock = Inbox(), Clock()
    manager = AlertManager(make_config(keep="10m"), tmp_path / "a.db", [inbox], clock=clock)
    try:
        # breached, clear, breached, then clear for good: one page, one resolution at 35 m
        pattern = "x.x...."
        for i, mark in enumerate(pattern):
            clock.now = T0 + 300 * i
            manager.process([finding(300 * i, mark == "x")])
        (alert,) = manager.alerts()
    finally:
        manager.close()
    assert inbox.titles == [FIRING, RESOLVED]
    assert (alert.fired_at, alert.resolved_at) == (T0, T0 + 300 * 5)


@pytest.mark.parametrize(
    ("mode", "for_", "after_stale", "titles"),
    [
        ("keep_last", "0s", {"error_rate": "firing", "nodata": "firing"}, [FIRING, NODATA]),
        ("ok", "0s", {"error_rate": "resolved", "nodata": "firing"}, [FIRING, NODATA, RESOLVED]),
        ("alerting", "1h", {"error_rate": "firing", "nodata": "firing"}, [NODATA, FIRING]),
    ],
)
def test_an_alert_without_findings_goes_to_the_no_data_state_and_raises_nodata(
    tmp_path: Path, mode: str, for_: str, after_stale: dict[str, str], titles: list[str]
) -> None:
    inbox, clock = Inbox(), Clock()
    config = make_config(for_, no_data_state=mode)
    manager = AlertManager(config, tmp_path / "a.db", [inbox], clock=clock)
    try:
        manager.process([finding(0)])
        clock.now = T0 + 180  # three times `every`: not yet stale
        manager.tick()
        before = states(manager)
        clock.now = T0 + 181
        manager.tick()
        stale = states(manager)
        clock.now = T0 + 600  # more ticks change nothing and page nobody again
        manager.tick()
        later = states(manager)
    finally:
        manager.close()
    assert before == {"error_rate": "firing" if for_ == "0s" else "pending"}
    assert stale == later == after_stale
    assert sorted(inbox.titles) == sorted(titles)


def test_nodata_alert_names_the_series_and_resolves_when_findings_return(tmp_path: Path) -> None:
    inbox, clock = Inbox(), Clock()
    config = make_config(no_data_after="5m")
    manager = AlertManager(config, tmp_path / "a.db", [inbox], clock=clock)
    try:
        manager.process([finding(0)])
        clock.now = T0 + 301
        manager.tick()
        (signal,) = manager.alerts(["firing"])[:1]
        assert signal.label_map == {
            "model": "fraud-scorer",
            "team": "risk",
            "check": "nodata",
            "subject": "",
            "severity": "warning",
            "nodata_check": "error_rate",
            "nodata_subject": "",
        }
        assert "no error_rate findings for 301s" in signal.summary
    finally:
        manager.close()
    # After a restart, the next finding of the series ends the nodata alert.
    clock.now = T0 + 900
    manager = AlertManager(config, tmp_path / "a.db", [inbox], clock=clock)
    try:
        manager.process([finding(900, breached=False)])
        after = states(manager)
    finally:
        manager.close()
    assert after == {"error_rate": "resolved", "nodata": "resolved"}
    assert inbox.titles == [FIRING, NODATA, RESOLVED, NODATA_OVER]


def test_findings_that_keep_arriving_never_raise_nodata(tmp_path: Path) -> None:
    inbox, clock = Inbox(), Clock()
    manager = AlertManager(make_config(), tmp_path / "a.db", [inbox], clock=clock)
    try:
        for minute in range(0, 60, 2):
            clock.now = T0 + 60 * minute
            manager.process([finding(60 * minute)])
            manager.tick()
    finally:
        manager.close()
    assert inbox.titles == [FIRING]


OLD_SCHEMA = """
CREATE TABLE alerts (
    fingerprint TEXT PRIMARY KEY, labels TEXT NOT NULL, state TEXT NOT NULL,
    active_since REAL NOT NULL, updated_at REAL NOT NULL, fired_at REAL, resolved_at REAL,
    value REAL NOT NULL, threshold REAL NOT NULL, summary TEXT NOT NULL);
CREATE INDEX alerts_state ON alerts (state);
CREATE TABLE notifications (
    id INTEGER PRIMARY KEY AUTOINCREMENT, fingerprint TEXT NOT NULL, state TEXT NOT NULL,
    receiver TEXT NOT NULL, ok INTEGER NOT NULL, detail TEXT NOT NULL, at REAL NOT NULL);
"""


def old_state_file(path: Path) -> str:
    """A state file as the first release wrote it, with one firing error_rate alert."""
    from watchkeeper.alerting import fingerprint

    labels = {"model": "fraud-scorer", "check": "error_rate", "subject": "", "severity": "critical"}
    labels["team"] = "risk"
    key = fingerprint(labels)
    conn = sqlite3.connect(path)
    conn.executescript(OLD_SCHEMA)
    conn.execute(
        "INSERT INTO alerts VALUES (?, ?, 'firing', ?, ?, ?, NULL, 0.3, 0.05, 'old')",
        (key, json.dumps(sorted(labels.items())), T0, T0, T0),
    )
    conn.commit()
    conn.close()
    return key


def columns(path: Path) -> set[str]:
    conn = sqlite3.connect(path)
    try:
        return {row[1] for row in conn.execute("PRAGMA table_info(alerts)")}
    finally:
        conn.close()


def test_an_old_state_file_is_read_as_is_and_migrated_when_opened(tmp_path: Path) -> None:
    path = tmp_path / "alerts.db"
    key = old_state_file(path)

    (seen,) = read_alerts(path)  # a read-only reader neither fails nor changes the file
    assert (seen.fingerprint, seen.state, seen.keep_firing_since, seen.seen_at) == (
        key,
        "firing",
        None,
        None,
    )
    assert "seen_at" not in columns(path)

    store = AlertStateStore(path)
    try:
        assert store.get(key) == seen
        store.upsert(
            dataclasses.replace(
                seen, keep_firing_since=T0 + 60, seen_at=T0 + 61, latest_version="v2"
            )
        )
        migrated = store.get(key)
    finally:
        store.close()
    assert {"keep_firing_since", "seen_at", "latest_version"} <= columns(path)
    assert migrated is not None
    assert (migrated.keep_firing_since, migrated.seen_at, migrated.latest_version) == (
        T0 + 60,
        T0 + 61,
        "v2",
    )
    assert read_alerts(path) == [migrated]


def test_the_manager_carries_on_with_an_old_state_file(tmp_path: Path) -> None:
    path = tmp_path / "alerts.db"
    old_state_file(path)
    inbox, clock = Inbox(), Clock(T0 + 300)
    manager = AlertManager(make_config(keep="10m"), path, [inbox], clock=clock)
    try:
        # findings now carry a version; the alert written before that is still the same one
        manager.process([finding(300, breached=False, version="v2")])  # held by keep_firing_for
        held = states(manager)
        clock.now = T0 + 900
        manager.process([finding(900, breached=False)])
        after = states(manager)
    finally:
        manager.close()
    assert held == {"error_rate": "firing"}
    assert after == {"error_rate": "resolved"}
    assert inbox.titles[-1] == RESOLVED
