"""The alert lifecycle as a pure state machine: one finding in, the next alert state out.

No I/O and no clock: time is the finding's `window_end` (data time), so replaying stored
findings gives exactly the history that live running gave. Like Prometheus, an alert waits
`for` seconds in `pending` before it fires, and a pending alert whose condition clears simply
goes away without anyone being told. With `keep_firing_for`, a firing alert whose condition
clears stays firing until the condition has been clear for that long; a breach in that time
keeps it firing as if it had never cleared (Prometheus' `keep_firing_for`).

>>> from watchkeeper.tsdb import Finding
>>> def f(t: float, breached: bool) -> Finding:
...     return Finding("m", "error_rate", "", "wilson_low", 0.3 if breached else 0.0, 0.05,
...                    breached, "critical", t - 60, t)
>>> alert, moved = advance(None, f(0, True), {}, for_s=120)
>>> alert.state, moved.alert.state
('pending', 'pending')
>>> alert, moved = advance(alert, f(120, True), {}, for_s=120)
>>> alert.state, alert.fired_at
('firing', 120)
>>> alert, moved = advance(alert, f(180, False), {}, for_s=120)
>>> alert.state, moved.previous
('resolved', 'firing')
>>> alert, _ = advance(None, f(0, True), {}, for_s=0)
>>> alert, moved = advance(alert, f(60, False), {}, for_s=0, keep_firing_for_s=120)
>>> alert.state, alert.keep_firing_since, moved
('firing', 60, None)
>>> alert, moved = advance(alert, f(180, False), {}, for_s=0, keep_firing_for_s=120)
>>> alert.state, alert.resolved_at
('resolved', 180)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from watchkeeper.tsdb import Finding

from .records import Alert, AlertState, Transition, fingerprint

#: Labels every alert carries, taken from the finding; model labels cannot override them.
IDENTITY_LABELS = ("model", "check", "subject", "severity")


def alert_labels(finding: Finding, extra: Mapping[str, str]) -> dict[str, str]:
    """The label set of the alert a finding speaks about: the model's labels, its identity,
    and `version` when the finding has one (descriptive: not part of the fingerprint)."""
    labels = dict(extra)
    labels.pop("version", None)  # only the data says which version it is
    labels.update(
        model=finding.model,
        check=finding.check,
        subject=finding.subject,
        severity=finding.severity,
    )
    if finding.version:
        labels["version"] = finding.version
    return labels


def advance(
    current: Alert | None,
    finding: Finding,
    labels: Mapping[str, str],
    for_s: float,
    keep_firing_for_s: float = 0.0,
) -> tuple[Alert | None, Transition | None]:
    """Move `current` by one finding; return the alert to keep (None: keep none) and the
    transition it made, if any.

    `labels` are the model's user labels (e.g. `team`); the finding's model, check, subject,
    severity and version are added to them. The version label is that of the finding that
    started the episode; later findings set only `latest_version`. A finding no newer than
    the alert's `updated_at` changes nothing, so re-processing findings after a restart is
    harmless. A firing alert resolves
    only once its condition has been clear for `keep_firing_for_s` (measured from the first
    clear finding); until then it keeps the value and summary of its last breach.
    """
    now = finding.window_end
    if current is not None and now <= current.updated_at:
        return current, None
    live = current is not None and current.state != "resolved"

    if not finding.breached:
        if current is None or current.state == "resolved":
            return current, None
        if current.state == "pending":
            return None, None
        since = now if current.keep_firing_since is None else current.keep_firing_since
        if now - since < keep_firing_for_s:
            held = dataclasses.replace(current, updated_at=now, keep_firing_since=since)
            return held, None
        resolved = _follow(current, finding, state="resolved", resolved_at=now)
        return resolved, Transition(resolved, current.state, now)

    if not live:
        full = alert_labels(finding, labels)
        state: AlertState = "firing" if for_s <= 0 else "pending"
        fresh = Alert(
            fingerprint=fingerprint(full),
            labels=tuple(sorted(full.items())),
            state=state,
            active_since=now,
            updated_at=now,
            fired_at=now if state == "firing" else None,
            value=finding.value,
            threshold=finding.threshold,
            summary=finding.summary,
            latest_version=finding.version,
        )
        return fresh, Transition(fresh, current.state if current else None, now)

    assert current is not None
    if current.state == "pending" and now - current.active_since >= for_s:
        fired = _follow(current, finding, state="firing", fired_at=now)
        return fired, Transition(fired, "pending", now)
    return _follow(current, finding), None


def _follow(
    alert: Alert,
    finding: Finding,
    state: AlertState | None = None,
    fired_at: float | None = None,
    resolved_at: float | None = None,
) -> Alert:
    """The alert with the latest finding's value, threshold and summary, and a new state
    (a breach, or the resolution: either way no longer held by `keep_firing_for`)."""
    return dataclasses.replace(
        alert,
        state=state or alert.state,
        updated_at=finding.window_end,
        fired_at=alert.fired_at if fired_at is None else fired_at,
        resolved_at=alert.resolved_at if resolved_at is None else resolved_at,
        value=finding.value,
        threshold=finding.threshold,
        summary=finding.summary,
        keep_firing_since=None,
        latest_version=finding.version,
    )
