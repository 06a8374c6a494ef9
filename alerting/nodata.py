"""NoData: an alert whose findings stop arriving, handled explicitly as Grafana does.

A pending or firing alert is *stale* when no finding for it has arrived (wall time, `seen_at`)
for longer than `no_data_after` (default: three times its model's `every`). A stale alert
goes to the configured state (`keep_last`, `ok` or `alerting`), and, whatever the choice, a
`check="nodata"` alert for the same series fires until a finding for that series arrives
again, so a stale alert never stays firing silently. The nodata alert keeps the model's
labels (so it routes like the model's other alerts), has an empty subject (so the default
`group_by` puts a model's nodata alerts into one notification) and names the series in
`nodata_check` and `nodata_subject`.

Pure functions, no I/O; `AlertManager` applies them on its ticks.

>>> from watchkeeper.alerting import Alert
>>> labels = (("check", "error_rate"), ("model", "m"), ("severity", "critical"), ("subject", ""))
>>> firing = Alert("f1", labels, "firing", 0.0, 60.0, fired_at=0.0, seen_at=60.0)
>>> is_stale(firing, now=900.0, after_s=900.0), is_stale(firing, now=961.0, after_s=900.0)
(False, True)
>>> sorted(nodata_labels(firing.label_map).items())[:2]
[('check', 'nodata'), ('model', 'm')]
>>> resolved, moved = apply_no_data(firing, "ok", now=961.0)
>>> resolved.state, moved.previous
('resolved', 'firing')
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Literal

from watchkeeper.config import Config

from .records import Alert, Transition, fingerprint

NoDataState = Literal["alerting", "ok", "keep_last"]

#: The `check` label of the alerts that say a series of findings stopped arriving.
NODATA_CHECK = "nodata"
#: Their severity: missing data is worth a look, not a page in the night.
NODATA_SEVERITY = "warning"
#: How many evaluation steps (`every`) without a finding make an alert stale, by default.
DEFAULT_STEPS = 3


def no_data_after(config: Config, model: str) -> float:
    """Seconds without a finding after which a model's alerts are stale."""
    configured = config.alerting.no_data_after
    return configured if configured is not None else DEFAULT_STEPS * config.model(model).every


def is_stale(alert: Alert, now: float, after_s: float) -> bool:
    """Whether `alert` is pending or firing and has had no finding for more than `after_s`.

    Nodata alerts themselves have no findings and are never stale. An alert from a state file
    older than `seen_at` falls back to its `updated_at`.
    """
    if alert.state not in ("pending", "firing"):
        return False
    if alert.label_map.get("check") == NODATA_CHECK:
        return False
    seen = alert.seen_at if alert.seen_at is not None else alert.updated_at
    return now - seen > after_s


def nodata_labels(labels: Mapping[str, str]) -> dict[str, str]:
    """The labels of the nodata alert for the series an alert (or finding) with `labels`
    follows: its model labels, `check="nodata"`, and the series in `nodata_check` and
    `nodata_subject`."""
    found = {k: v for k, v in labels.items() if k not in ("check", "subject", "severity")}
    found.update(
        check=NODATA_CHECK,
        subject="",
        severity=NODATA_SEVERITY,
        nodata_check=labels.get("check", ""),
        nodata_subject=labels.get("subject", ""),
    )
    return found


def apply_no_data(
    alert: Alert, mode: NoDataState, now: float
) -> tuple[Alert | None, Transition | None]:
    """What a stale `alert` becomes at (wall) time `now`: kept as it is (`keep_last`),
    resolved or, if pending, dropped (`ok`), or fired (`alerting`); and the transition."""
    at = max(now, alert.updated_at)
    if mode == "ok":
        if alert.state == "pending":
            return None, None
        if alert.state == "firing":
            resolved = dataclasses.replace(
                alert, state="resolved", resolved_at=at, keep_firing_since=None
            )
            return resolved, Transition(resolved, "firing", at)
    if mode == "alerting" and alert.state == "pending":
        fired = dataclasses.replace(alert, state="firing", fired_at=at)
        return fired, Transition(fired, "pending", at)
    return alert, None


def raise_no_data(stale: Alert, now: float, after_s: float) -> Alert:
    """The firing nodata alert for the series of the `stale` alert."""
    labels = nodata_labels(stale.label_map)
    seen = stale.seen_at if stale.seen_at is not None else stale.updated_at
    series = labels["nodata_check"] + (
        f" ({labels['nodata_subject']})" if labels["nodata_subject"] else ""
    )
    return Alert(
        fingerprint=fingerprint(labels),
        labels=tuple(sorted(labels.items())),
        state="firing",
        active_since=now,
        updated_at=now,
        fired_at=now,
        value=now - seen,
        threshold=after_s,
        summary=f"no {series} findings for {now - seen:.0f}s (more than {after_s:g}s); "
        f"its alert was {stale.state}",
        seen_at=now,
    )


def clear_no_data(alert: Alert, now: float) -> tuple[Alert, Transition]:
    """The nodata `alert` resolved at `now`: findings for its series arrive again."""
    at = max(now, alert.updated_at)
    resolved = dataclasses.replace(alert, state="resolved", resolved_at=at, updated_at=at)
    return resolved, Transition(resolved, alert.state, at)
