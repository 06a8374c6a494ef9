"""The alert lifecycle state machine: every transition, table-driven, in data time."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import pytest

from watchkeeper.alerting import Alert, Transition, advance, fingerprint
from watchkeeper.tsdb import Finding

MINUTE = 60.0


def finding(t: float, breached: bool, value: float | None = None) -> Finding:
    """An error-rate verdict on the window ending at `t` minutes."""
    if value is None:
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
        window_start=(t - 5) * MINUTE,
        window_end=t * MINUTE,
        summary=f"error rate {value:.0%}",
    )


def run(
    steps: Sequence[tuple[float, bool]],
    for_s: float,
    alert: Alert | None = None,
    keep_firing_for_s: float = 0.0,
) -> tuple[Alert | None, list[Transition]]:
    transitions = []
    for t, breached in steps:
        alert, moved = advance(
            alert, finding(t, breached), {"team": "risk"}, for_s, keep_firing_for_s
        )
        if moved is not None:
            transitions.append(moved)
    return alert, transitions


# (case, for_s, [(minute, breached)], final state or None, [(previous, state, minute)])
CASES = [
    ("healthy stays quiet", 300, [(0, False), (5, False)], None, []),
    ("breach starts pending", 300, [(0, True)], "pending", [(None, "pending", 0)]),
    ("for 0 fires at once", 0, [(0, True)], "firing", [(None, "firing", 0)]),
    (
        "pending fires once for has passed",
        300,
        [(0, True), (4, True), (5, True), (6, True)],
        "firing",
        [(None, "pending", 0), ("pending", "firing", 5)],
    ),
    ("pending that clears is dropped", 300, [(0, True), (3, False)], None, [(None, "pending", 0)]),
    (
        "firing that clears resolves",
        0,
        [(0, True), (5, False), (10, False)],
        "resolved",
        [(None, "firing", 0), ("firing", "resolved", 5)],
    ),
    (
        "re-fires after resolution",
        300,
        [(0, True), (5, True), (10, False), (20, True), (25, True)],
        "firing",
        [
            (None, "pending", 0),
            ("pending", "firing", 5),
            ("firing", "resolved", 10),
            ("resolved", "pending", 20),
            ("pending", "firing", 25),
        ],
    ),
    (
        "a clear resets the for timer",
        300,
        [(0, True), (4, False), (6, True), (10, True), (11, True)],
        "firing",
        [(None, "pending", 0), (None, "pending", 6), ("pending", "firing", 11)],
    ),
]


@pytest.mark.parametrize(
    ("for_s", "steps", "final", "expected"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_transitions(
    for_s: float,
    steps: list[tuple[float, bool]],
    final: str | None,
    expected: list[tuple[str | None, str, float]],
) -> None:
    alert, transitions = run(steps, for_s)
    assert (alert.state if alert else None) == final
    assert [(t.previous, t.alert.state, t.at / MINUTE) for t in transitions] == expected
    for moved in transitions:
        assert moved.at == moved.alert.updated_at


def test_refiring_starts_a_new_episode() -> None:
    resolved, _ = run([(0, True), (5, False)], for_s=0)
    assert resolved is not None and resolved.resolved_at == 5 * MINUTE
    again, _ = run([(30, True)], for_s=0, alert=resolved)
    assert again is not None
    assert again.fingerprint == resolved.fingerprint
    assert (again.active_since, again.fired_at, again.resolved_at) == (
        30 * MINUTE,
        30 * MINUTE,
        None,
    )


def test_times_of_a_full_episode() -> None:
    alert, _ = run([(0, True), (5, True), (9, True), (12, False)], for_s=300)
    assert alert is not None
    assert (alert.active_since, alert.fired_at, alert.resolved_at, alert.updated_at) == (
        0.0,
        5 * MINUTE,
        12 * MINUTE,
        12 * MINUTE,
    )


def test_value_and_summary_follow_the_latest_finding() -> None:
    alert, _ = advance(None, finding(0, True, value=0.2), {}, 0)
    alert, moved = advance(alert, finding(5, True, value=0.4), {}, 0)
    assert moved is None
    assert alert is not None
    assert (alert.value, alert.threshold, alert.summary) == (0.4, 0.05, "error rate 40%")
    alert, moved = advance(alert, finding(10, False, value=0.02), {}, 0)
    assert moved is not None and moved.alert.summary == "error rate 2%"


@pytest.mark.parametrize("for_s", [0, 300])
def test_reprocessing_old_findings_changes_nothing(for_s: float) -> None:
    steps = [(0, True), (5, True), (10, True), (15, False)]
    alert, first = run(steps, for_s)
    again, repeated = run(steps, for_s, alert=alert)
    assert first and not repeated
    assert again == alert


def test_a_finding_at_the_same_window_end_is_ignored() -> None:
    alert, _ = advance(None, finding(0, True), {}, 300)
    same, moved = advance(alert, finding(0, False), {}, 300)
    assert (same, moved) == (alert, None)


def test_labels_identify_the_alert() -> None:
    alert, _ = advance(None, finding(0, True), {"team": "risk", "model": "ignored"}, 0)
    assert alert is not None
    assert alert.label_map == {
        "model": "fraud-scorer",
        "check": "error_rate",
        "subject": "",
        "severity": "critical",
        "team": "risk",
    }
    assert alert.fingerprint == fingerprint(alert.label_map)
    other, _ = advance(None, finding(0, True), {"team": "payments"}, 0)
    assert other is not None and other.fingerprint != alert.fingerprint


def test_version_is_a_label_of_the_episode_but_not_of_the_identity() -> None:
    v1 = dataclasses.replace(finding(0, True), version="v1")
    alert, _ = advance(None, v1, {"team": "risk", "version": "user-set"}, 0)
    assert alert is not None
    assert alert.label_map["version"] == "v1"  # only the data says which version it is
    unversioned, _ = advance(None, finding(0, True), {"team": "risk"}, 0)
    assert unversioned is not None and "version" not in unversioned.label_map
    # the same alert, with or without a version: state written before findings had one
    # carries on, and a deployment does not split an alert in two
    assert alert.fingerprint == unversioned.fingerprint

    # v2 is deployed while the alert fires and still breaches: no new alert, no new page
    still, moved = advance(alert, dataclasses.replace(finding(5, True), version="v2"), {}, 0)
    assert moved is None and still is not None
    assert (still.label_map["version"], still.latest_version) == ("v1", "v2")
    # v2's clean window resolves the alert v1 started
    resolved, moved = advance(still, dataclasses.replace(finding(10, False), version="v2"), {}, 0)
    assert moved is not None and resolved is not None
    assert (resolved.state, resolved.fingerprint, resolved.label_map["version"]) == (
        "resolved",
        alert.fingerprint,
        "v1",
    )
    # a later breach is a new episode, labelled with the version it began on
    again, _ = advance(resolved, dataclasses.replace(finding(20, True), version="v2"), {}, 0)
    assert again is not None and again.label_map["version"] == "v2"


# keep_firing_for, as Prometheus: (case, for_s, keep_firing_for_s, steps, final, transitions)
KEEP_FIRING_CASES = [
    (
        "held while clear for less than keep_firing_for",
        0,
        600,
        [(0, True), (5, False), (10, False)],
        "firing",
        [(None, "firing", 0)],
    ),
    (
        "resolves once clear for keep_firing_for, counted from the first clear",
        0,
        600,
        [(0, True), (5, False), (10, False), (15, False)],
        "resolved",
        [(None, "firing", 0), ("firing", "resolved", 15)],
    ),
    (
        "a breach while held keeps it firing and restarts the count",
        0,
        600,
        [(0, True), (5, False), (10, True), (15, False), (20, False), (25, False)],
        "resolved",
        [(None, "firing", 0), ("firing", "resolved", 25)],
    ),
    (
        "a pending alert that clears is still dropped",
        300,
        600,
        [(0, True), (3, False)],
        None,
        [(None, "pending", 0)],
    ),
    (
        "zero keep_firing_for resolves at the first clear",
        0,
        0,
        [(0, True), (5, False)],
        "resolved",
        [(None, "firing", 0), ("firing", "resolved", 5)],
    ),
    (
        "after for and keep_firing_for, it re-fires as a new episode",
        300,
        300,
        [(0, True), (5, True), (10, False), (15, False), (20, True), (25, True)],
        "firing",
        [
            (None, "pending", 0),
            ("pending", "firing", 5),
            ("firing", "resolved", 15),
            ("resolved", "pending", 20),
            ("pending", "firing", 25),
        ],
    ),
]


@pytest.mark.parametrize(
    ("for_s", "keep_s", "steps", "final", "expected"),
    [case[1:] for case in KEEP_FIRING_CASES],
    ids=[case[0] for case in KEEP_FIRING_CASES],
)
def test_keep_firing_for(
    for_s: float,
    keep_s: float,
    steps: list[tuple[float, bool]],
    final: str | None,
    expected: list[tuple[str | None, str, float]],
) -> None:
    alert, transitions = run(steps, for_s, keep_firing_for_s=keep_s)
    assert (alert.state if alert else None) == final
    assert [(t.previous, t.alert.state, t.at / MINUTE) for t in transitions] == expected
    for moved in transitions:
        assert moved.at == moved.alert.updated_at


def test_a_held_alert_remembers_when_it_cleared_and_keeps_its_last_breach() -> None:
    alert, _ = run([(0, True), (5, False), (10, False)], 0, keep_firing_for_s=600)
    assert alert is not None
    assert (alert.keep_firing_since, alert.updated_at) == (5 * MINUTE, 10 * MINUTE)
    assert (alert.value, alert.summary) == (0.31, "error rate 31%")
    again, _ = run([(12, True)], 0, alert=alert, keep_firing_for_s=600)
    assert again is not None and again.keep_firing_since is None
    assert again.fired_at == 0.0  # the same episode
