"""Grouping, group_wait, group_interval, repeat_interval, inhibition and silences on a
controllable clock, with the exact times Alertmanager would notify at (seconds from 0)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest

from watchkeeper.alerting import (
    DEFAULT_INHIBIT_RULE,
    Alert,
    Dispatcher,
    Inhibitor,
    Notice,
    Outbox,
    Receiver,
    Route,
    SendResult,
    Silence,
    SilenceStore,
    build_pipeline,
    fingerprint,
    parse_matcher,
)

T0 = 1_800_000_000.0


@dataclass
class Keep:
    """A tiny real notifier target."""

    name: str = "keep://ops"
    sent: list[str] = field(default_factory=list)

    def send(self, title: str, body: str) -> SendResult:
        self.sent.append(title)
        return SendResult(ok=True, retryable=False, detail="kept")


def alert(name: str, at: float, state: str = "firing", **labels: str) -> Alert:
    full = {"model": "m", "check": name, "subject": "", "severity": "critical", **labels}
    return Alert(
        fingerprint=fingerprint(full),
        labels=tuple(sorted(full.items())),
        state=state,  # type: ignore[arg-type]
        active_since=T0 + at,
        updated_at=T0 + at,
        fired_at=T0 + at,
        value=1.0,
        threshold=0.5,
        summary=f"{name} broke",
    )


class Sim:
    """The real pipeline over a real state file, driven by hand; keeps what was queued."""

    def __init__(self, path: Path, route: Route, send_resolved: bool = True) -> None:
        self.now = T0
        self.outbox = Outbox(path)
        self.silences = SilenceStore(path)
        self.firing: dict[str, Alert] = {}
        self.sent: list[tuple[float, str, list[str], list[str]]] = []
        self.pipeline = build_pipeline(
            route,
            [Receiver("default", (Keep(),), send_resolved=send_resolved)],
            self.outbox,
            inhibitor=lambda: Inhibitor(
                [DEFAULT_INHIBIT_RULE], [a.label_map for a in self.firing.values()]
            ),
            silencer=self.silences.muter,
            on_queued=self._queued,
            clock=lambda: self.now,
        )

    def _queued(self, notice: Notice) -> None:
        def names(state: set[str]) -> list[str]:
            return sorted(a.label_map["check"] for a in notice.alerts if a.state in state)

        if notice.alerts:
            when = notice.flush.at - T0
            self.sent.append((when, notice.flush.group_key, names({"firing"}), names({"resolved"})))

    def put(self, a: Alert, at: float) -> None:
        self.run_until(at, inclusive=False)
        if a.state == "firing":
            self.firing[a.fingerprint] = a
        else:
            self.firing.pop(a.fingerprint, None)
        self.pipeline.insert(a, T0 + at)
        self.run_until(at)

    def resolve(self, a: Alert, at: float) -> Alert:
        done = replace(a, state="resolved", resolved_at=T0 + at, updated_at=T0 + at)
        self.put(done, at)
        return done

    def run_until(self, at: float, inclusive: bool = True) -> None:
        """Let time pass up to `at`, as a live ticker does: the clock reads each flush's
        own time when it runs."""
        target = T0 + at
        while (due := self.pipeline.dispatcher.next_due()) is not None and (
            due < target or (inclusive and due == target)
        ):
            self.now = max(self.now, due)
            self.pipeline.tick(due)
        self.jump_to(at, inclusive=inclusive)

    def jump_to(self, at: float, inclusive: bool = True) -> None:
        """The clock jumps to `at` and the flushes due meanwhile run at once, as when
        alerting catches up after being stopped."""
        self.now = max(self.now, T0 + at)
        self.pipeline.tick(T0 + at, inclusive=inclusive)

    def times(self) -> list[tuple[float, list[str], list[str]]]:
        return [(t, firing, resolved) for t, _, firing, resolved in self.sent]

    def close(self) -> None:
        self.outbox.close()
        self.silences.close()


ROUTE = Route(receiver="default", group_by=("model",), group_wait=30, group_interval=300)


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[Sim]:
    s = Sim(tmp_path / "alerts.db", replace(ROUTE, repeat_interval=3600))
    yield s
    s.close()


def test_group_wait_gathers_alerts_then_group_interval_and_repeat(sim: Sim) -> None:
    sim.put(alert("error_rate", 0), 0)
    sim.put(alert("drift", 10, subject="x"), 10)
    sim.put(alert("latency", 100), 100)
    sim.run_until(5000)
    assert sim.times() == [
        (30, ["drift", "error_rate"], []),  # group_wait: both first alerts together
        (330, ["drift", "error_rate", "latency"], []),  # next group_interval: the newcomer
        (3930, ["drift", "error_rate", "latency"], []),  # repeat_interval after 330
    ]


def test_catching_up_sends_one_message_not_one_per_missed_repeat(sim: Sim) -> None:
    """Alerting stopped for well over an hour: the flushes it missed run when it is back,
    but the receiver hears once, and the next repeat is `repeat_interval` after that."""
    sim.put(alert("error_rate", 0), 0)  # due at 30, but nothing runs until 5000
    sim.jump_to(5000)
    sim.run_until(9000)
    assert sim.times() == [
        (30, ["error_rate"], []),  # sent at 5000, the flush of 30 s
        (8730, ["error_rate"], []),  # the first flush at least 3600 s after 5000
    ]


def test_resolved_alerts_are_sent_at_the_next_interval_then_leave(sim: Sim) -> None:
    a, b = alert("error_rate", 0), alert("drift", 0, subject="x")
    sim.put(a, 0)
    sim.put(b, 0)
    sim.resolve(a, 400)
    sim.run_until(1000)
    sim.resolve(b, 1000)
    sim.run_until(2000)
    assert sim.times() == [
        (30, ["drift", "error_rate"], []),
        (630, ["drift"], ["error_rate"]),
        (1230, [], ["drift"]),
    ]


def test_without_send_resolved_only_the_all_clear_is_skipped(tmp_path: Path) -> None:
    sim = Sim(tmp_path / "alerts.db", ROUTE, send_resolved=False)
    try:
        a, b = alert("error_rate", 0), alert("drift", 0, subject="x")
        sim.put(a, 0)
        sim.put(b, 0)
        sim.resolve(a, 100)
        sim.resolve(b, 700)
        sim.run_until(2000)
        queued = sim.outbox.messages()
    finally:
        sim.close()
    # The 330 flush only had a resolution to tell: nothing queued. The all-clear is logged.
    assert [t for t, *_ in sim.times()] == [30]
    assert [m.message.title for m in queued] == ["[FIRING:2] m (critical)"]


def test_an_alert_older_than_group_wait_is_flushed_at_once(sim: Sim) -> None:
    sim.run_until(1000)
    sim.put(alert("error_rate", 0), 1000)  # it started 1000 s ago
    sim.run_until(1400)
    assert sim.times() == [(1000, ["error_rate"], [])]


def test_groups_are_independent(sim: Sim) -> None:
    sim.put(alert("error_rate", 0), 0)
    sim.put(alert("error_rate", 20, model="other"), 20)
    sim.run_until(100)
    assert [(t, key.split(":", 1)[1]) for t, key, *_ in sim.sent] == [
        (30, '[["model","m"]]'),
        (50, '[["model","other"]]'),
    ]


def test_down_model_inhibits_its_other_alerts(tmp_path: Path) -> None:
    by_check = replace(ROUTE, group_by=("model", "check"))
    sim = Sim(tmp_path / "alerts.db", by_check)
    try:
        up = alert("up", 0)
        sim.put(up, 0)
        sim.put(alert("error_rate", 5), 5)
        sim.put(alert("error_rate", 5, model="other"), 5)
        sim.run_until(400)
        sim.resolve(up, 400)
        sim.run_until(1000)
    finally:
        sim.close()
    assert sim.times() == [
        (30, ["up"], []),
        (35, ["error_rate"], []),  # the other model's alert: not muted
        (630, [], ["up"]),
        (635, ["error_rate"], []),  # m's: at the first flush after its up alert resolved
    ]


def test_silence_mutes_until_it_ends_and_is_kept_after(sim: Sim) -> None:
    silence = Silence.new(['team="risk"'], T0, T0 + 500, "ana", "deploying a fix", T0)
    sim.silences.add(silence)
    sim.put(alert("error_rate", 0, team="risk"), 0)
    sim.put(alert("error_rate", 0, model="n", team="growth"), 0)
    sim.run_until(1000)
    assert sim.times() == [(30, ["error_rate"], []), (630, ["error_rate"], [])]
    assert [key.split(":", 1)[1] for _, key, *_ in sim.sent] == [
        '[["model","n"]]',
        '[["model","m"]]',
    ]
    kept = sim.silences.silences()
    assert [s.id for s in kept] == [silence.id]
    assert kept[0].status(T0 + 1000) == "expired"


def test_expiring_a_silence_unmutes_at_the_next_flush(sim: Sim) -> None:
    silence = sim.silences.add(
        Silence.new(['check=~"error_.*"'], T0, T0 + 86400, "ana", "noisy", T0)
    )
    sim.put(alert("error_rate", 0), 0)
    sim.run_until(400)
    expired = sim.silences.expire(silence.id, T0 + 400)
    sim.run_until(700)
    assert expired.ends_at == T0 + 400
    assert sim.times() == [(630, ["error_rate"], [])]


def test_dispatcher_alone_runs_flushes_at_their_due_times() -> None:
    d = Dispatcher(ROUTE)
    d.insert(alert("error_rate", 0), T0)
    assert d.next_due() == T0 + 30
    assert [f.at - T0 for f in d.tick(T0 + 29, lambda f: None)] == []
    assert [f.at - T0 for f in d.tick(T0 + 700, lambda f: None)] == [30, 330, 630]
    resolved = replace(alert("error_rate", 0), state="resolved")
    d.insert(resolved, T0 + 700)
    assert [len(f.alerts) for f in d.tick(T0 + 930, lambda f: None)] == [1]
    assert d.next_due() is None  # the group is gone once its resolved alert was flushed


def test_inhibitor_rules() -> None:
    firing = [{"model": "m", "check": "up"}, {"model": "n", "check": "error_rate"}]
    inhibitor = Inhibitor([DEFAULT_INHIBIT_RULE], firing)
    assert inhibitor.mutes({"model": "m", "check": "drift"})
    assert not inhibitor.mutes({"model": "m", "check": "up"})  # never itself
    assert not inhibitor.mutes({"model": "n", "check": "drift"})
    assert parse_matcher('check="up"') in DEFAULT_INHIBIT_RULE.source
