"""Rendering a group notification: a default title and body, or the receiver's own templates.

A group of one alert reads exactly like `render` of that alert. A larger group is titled
`[FIRING:3] <what the alerts share> (<severity>)` and lists firing, then resolved alerts. Every
body ends with the message's stable `dedup key`, so a receiver that sees it twice can collapse
it. User templates are `string.Template` text (`$status`, `$title`, `$body`, ...), so a
template can only insert values, never run code. `$value`, `$threshold`, `$since`, `$version`,
`$runbook_url` and `$dashboard_link` are those of the first alert listed (firing first).

>>> from watchkeeper.alerting.records import Alert
>>> a = Alert("f1", (("model", "m"), ("check", "up"), ("subject", ""), ("severity", "critical")),
...           "firing", 0, 0, 0, value=1, threshold=0, summary="m sent nothing for 5m")
>>> render_group([a], "k1")[0]
'[FIRING] m up (critical)'
>>> render_group([a], "k1", title_template="$STATUS $count: $summary")[0]
'FIRING 1: m sent nothing for 5m'
"""

from __future__ import annotations

from collections.abc import Sequence
from string import Template

from .annotations import Runbooks, alert_annotations, dashboard_link, no_runbook
from .notify import render
from .records import Alert, Transition

#: The names a template can use.
TEMPLATE_FIELDS = (
    "status",
    "STATUS",
    "count",
    "firing_count",
    "resolved_count",
    "title",
    "body",
    "summary",
    "labels",
    "dedup_key",
    "dashboard_url",
    "dashboard_link",
    "value",
    "threshold",
    "since",
    "version",
    "runbook_url",
)


def _common(alerts: Sequence[Alert]) -> dict[str, str]:
    first = alerts[0].label_map
    return {k: v for k, v in first.items() if all(a.label_map.get(k) == v for a in alerts[1:])}


def _default(alerts: Sequence[Alert], dashboard_url: str, runbook: Runbooks) -> tuple[str, str]:
    firing = [a for a in alerts if a.state != "resolved"]
    resolved = [a for a in alerts if a.state == "resolved"]
    if len(alerts) == 1:
        alert = alerts[0]
        transition = Transition(alert, None, alert.updated_at)
        return render(transition, dashboard_url, runbook(alert.label_map))
    status = "FIRING" if firing else "RESOLVED"
    count = len(firing) if firing else len(resolved)
    common = _common(alerts)
    what = (
        " ".join(common[k] for k in ("model", "check", "subject") if common.get(k))
        or "several alerts"
    )
    title = f"[{status}:{count}] {what} ({common.get('severity', 'mixed')})"
    lines: list[str] = []
    for heading, group in (("Firing", firing), ("Resolved", resolved)):
        if not group:
            continue
        lines.append(f"{heading}:")
        for alert in group:
            transition = Transition(alert, None, alert.updated_at)
            one, detail = render(transition, "", runbook(alert.label_map))
            lines.append(f"- {one}")
            lines.extend(f"  {line}" for line in detail.splitlines())
    if dashboard_url:
        lines.append(f"dashboard: {dashboard_link(dashboard_url, common)}")
    return title, "\n".join(lines)


def render_group(
    alerts: Sequence[Alert],
    dedup_key: str,
    dashboard_url: str = "",
    title_template: str | None = None,
    body_template: str | None = None,
    runbook: Runbooks = no_runbook,
) -> tuple[str, str]:
    """Title and body of one notification about `alerts` (firing first, then resolved);
    `runbook` gives each alert's runbook URL."""
    if not alerts:
        raise ValueError("a notification needs at least one alert")
    title, body = _default(alerts, dashboard_url, runbook)
    firing = [a for a in alerts if a.state != "resolved"]
    first = (firing or list(alerts))[0]
    notes = alert_annotations(first, dashboard_url, runbook(first.label_map))
    status = "firing" if firing else "resolved"
    summaries = "; ".join(a.summary for a in alerts if a.summary)
    fields = {
        "status": status,
        "STATUS": status.upper(),
        "count": str(len(alerts)),
        "firing_count": str(len(firing)),
        "resolved_count": str(len(alerts) - len(firing)),
        "title": title,
        "body": body,
        "summary": summaries,
        "labels": ", ".join(f"{k}={v}" for k, v in sorted(_common(alerts).items()) if v),
        "dedup_key": dedup_key,
        "dashboard_url": dashboard_url,
        "dashboard_link": notes.get("dashboard", ""),
        "value": notes["value"],
        "threshold": notes["threshold"],
        "since": notes["since"],
        "version": first.label_map.get("version", ""),
        "runbook_url": notes.get("runbook_url", ""),
    }
    if title_template is not None:
        title = Template(title_template).safe_substitute(fields)
    if body_template is not None:
        body = Template(body_template).safe_substitute(fields)
    return title, f"{body}\ndedup key: {dedup_key}"
