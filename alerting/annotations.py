"""What an alert says beyond its labels: value, threshold, since when, summary and links.

Labels identify an alert and route it; annotations tell the person who gets it what was seen
and where to go: the dashboard page of the model and, when configured, the check's runbook.
The same annotations feed the default message text and the Alertmanager hand-off (where
`summary` and `runbook_url` are the names Alertmanager's own templates expect).

A runbook URL is configured per check (`models.<m>.checks.<check>.runbook_url`), per model
(`models.<m>.runbook_url`) or for every model (`detector.defaults.runbook_url`), the first set
wins; `{model}`, `{check}`, `{subject}` and `{version}` in it are replaced by the alert's labels,
percent-encoded.

>>> from watchkeeper.config import config_from_dict
>>> config = config_from_dict({"detector": {"defaults": {"runbook_url": "https://wiki/{check}"}},
...     "models": {"m": {"checks": {"drift": {"runbook_url": "https://wiki/drift/{subject}"}}}}})
>>> runbook_url(config, {"model": "m", "check": "drift", "subject": "age group"})
'https://wiki/drift/age%20group'
>>> runbook_url(config, {"model": "m", "check": "up", "subject": ""})
'https://wiki/up'
>>> dashboard_link("http://dash:8501/", {"model": "fraud scorer"})
'http://dash:8501/model?model=fraud%20scorer'
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from urllib.parse import quote

from watchkeeper.config import RUNBOOK_PLACEHOLDERS, Config

from .records import Alert

#: Gives the runbook URL of an alert from its labels ("" when there is none).
Runbooks = Callable[[Mapping[str, str]], str]


def no_runbook(labels: Mapping[str, str]) -> str:
    """The `Runbooks` of a setup without any runbook."""
    return ""


def runbook_url(config: Config, labels: Mapping[str, str]) -> str:
    """The runbook of the alert with `labels`: its check's, else its model's, else the
    default's, placeholders filled in; "" when none is configured."""
    model = config.model(labels.get("model", ""))
    settings = model.checks.settings(labels.get("check", ""))
    template = (
        (settings.runbook_url if settings is not None else None)
        or model.runbook_url
        or config.detector.defaults.runbook_url
    )
    if not template:
        return ""
    return template.format(
        **{name: quote(labels.get(name, ""), safe="") for name in RUNBOOK_PLACEHOLDERS}
    )


def runbooks(config: Config) -> Runbooks:
    """`runbook_url` bound to `config`."""
    return lambda labels: runbook_url(config, labels)


def dashboard_link(dashboard_url: str, labels: Mapping[str, str]) -> str:
    """The dashboard page of the alert's model (the dashboard itself without a model)."""
    if not dashboard_url:
        return ""
    model = labels.get("model", "")
    if not model:
        return dashboard_url
    return f"{dashboard_url.rstrip('/')}/model?model={quote(model, safe='')}"


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def alert_annotations(alert: Alert, dashboard_url: str = "", runbook: str = "") -> dict[str, str]:
    """The alert's annotations: `summary`, `value`, `threshold`, `since` (when it began
    firing, ISO 8601), `dashboard` and `runbook_url` when there are links, and
    `latest_version` when the model has moved on from the version the alert began on."""
    labels = alert.label_map
    found = {
        "summary": alert.summary or f"value {alert.value:g} vs threshold {alert.threshold:g}",
        "value": f"{alert.value:g}",
        "threshold": f"{alert.threshold:g}",
        "since": iso(alert.since),
    }
    link = dashboard_link(dashboard_url, labels)
    if link:
        found["dashboard"] = link
    if runbook:
        found["runbook_url"] = runbook
    if alert.latest_version and alert.latest_version != labels.get("version"):
        found["latest_version"] = alert.latest_version
    return found
