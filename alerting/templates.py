"""Rendering a group notification: a default title and body, or the receiver's own templates.

A group of one alert reads exactly like `render` of that alert. A larger group is titled
`[FIRING:3] <what the alerts share> (<severity>)` and lists firing, then resolved alerts. Every
body ends with the message's stable `dedup key`, so a receiver that sees it twice can collapse
it. User templates are `string.Template` text (`$status`, `$title`, `$body`, ...), so a
template can only insert values, never run code.

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
)


def _common(alerts: Sequence[Alert]) -> dict[str, str]:
    first = alerts[0].label_map
    return {k: v for k, v in first.items() if all(a.label_map.get(k) == v for a in alerts[1:])}


def _default(alerts: Sequence[Alert], dashboard_url: str) -> tuple[str, str]:
    firing = [a for a in alerts if a.state != "resolved"]
    resolved = [a for a in alerts if a.state == "resolved"]
    if len(alerts) == 1:
        alert = alerts[0]
        return render(Transition(alert, None, alert.updated_at), dashboard_url)
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
            one, detail = render(Transition(alert, None, alert.updated_at), "")
            lines.append(f"- {one}")
            lines.extend(f"  {line}" for line in detail.splitlines())
    if dashboard_url:
        lines.append(f"dashboard: {dashboard_url}")
    return title, "\n".join(lines)


def render_group(
    alerts: Sequence[Alert],
    dedup_key: str,
    dashboard_url: str = "",
    title_template: str | None = None,
    body_template: str | None = None,
) -> tuple[str, str]:
    """Title and body of one notification about `alerts` (firing first, then resolved)."""
    if not alerts:
        raise ValueError("a notification needs at least one alert")
    title, body = _default(alerts, dashboard_url)
    firing = [a for a in alerts if a.state != "resolved"]
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
    }
    if title_template is not None:
        title = Template(title_template).safe_substitute(fields)
    if body_template is not None:
        body = Template(body_template).safe_substitute(fields)
    return title, f"{body}\ndedup key: {dedup_key}"
