"""Alerting: the alert lifecycle, routing, grouping, muting and durable delivery.

Findings from the detector go into `AlertManager.process`; each alert moves pending → firing →
resolved in data time (`advance`), its state is kept in a SQLite file (`AlertStateStore`,
read by the dashboard through `read_alerts`), and firing and resolved alerts go through the
notify pipeline (`build_pipeline`: group → inhibit → silence → dedup → retry → record-sent)
into a durable outbox (`Outbox`) that a `Deliverer` sends through apprise, per target URL,
with a hard time limit, backoff and a deadline.

Names are imported on first use, so that the CLI's `silence` and `alerts` commands (and any
other reader of one module) do not load apprise and the whole delivery machinery.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .annotations import alert_annotations, dashboard_link, runbook_url, runbooks
    from .delivery import Deliverer, RetryPolicy, send_with_limit
    from .feedback import Episode, FeedbackStore, RuleStats, read_episodes, rule_report
    from .grouping import Dispatcher, Flush
    from .lifecycle import advance, alert_labels
    from .manager import AlertManager
    from .metrics import DeliveryMetrics
    from .muting import DEFAULT_INHIBIT_RULE, Inhibitor, InhibitRule, Muter, Silence, SilenceMuter
    from .nodata import NODATA_CHECK, NoDataState, apply_no_data, is_stale, nodata_labels
    from .notify import AppriseNotifier, ConsoleNotifier, Notifier, SendResult, console_line, render
    from .outbox import LogEntry, Message, Outbox, QueuedMessage, record_sent_stage
    from .pipeline import STAGE_NAMES, Notice, Pipeline, Receiver, build_pipeline, needs_update
    from .records import (
        DESCRIPTIVE_LABELS,
        Alert,
        AlertState,
        NotificationRecord,
        Transition,
        fingerprint,
    )
    from .routing import Matcher, Route, matching_routes, parse_matcher
    from .silences import SilenceStore, read_silences
    from .state import AlertStateStore, read_alerts
    from .templates import render_group

_WHERE = {
    "Alert": "records",
    "AlertManager": "manager",
    "AlertState": "records",
    "AlertStateStore": "state",
    "AppriseNotifier": "notify",
    "ConsoleNotifier": "notify",
    "DEFAULT_INHIBIT_RULE": "muting",
    "DESCRIPTIVE_LABELS": "records",
    "Deliverer": "delivery",
    "DeliveryMetrics": "metrics",
    "Dispatcher": "grouping",
    "Episode": "feedback",
    "FeedbackStore": "feedback",
    "Flush": "grouping",
    "InhibitRule": "muting",
    "Inhibitor": "muting",
    "LogEntry": "outbox",
    "Matcher": "routing",
    "Message": "outbox",
    "Muter": "muting",
    "NODATA_CHECK": "nodata",
    "NoDataState": "nodata",
    "Notice": "pipeline",
    "NotificationRecord": "records",
    "Notifier": "notify",
    "Outbox": "outbox",
    "Pipeline": "pipeline",
    "QueuedMessage": "outbox",
    "Receiver": "pipeline",
    "RetryPolicy": "delivery",
    "Route": "routing",
    "RuleStats": "feedback",
    "STAGE_NAMES": "pipeline",
    "SendResult": "notify",
    "Silence": "muting",
    "SilenceMuter": "muting",
    "SilenceStore": "silences",
    "Transition": "records",
    "advance": "lifecycle",
    "alert_annotations": "annotations",
    "alert_labels": "lifecycle",
    "apply_no_data": "nodata",
    "build_pipeline": "pipeline",
    "console_line": "notify",
    "dashboard_link": "annotations",
    "fingerprint": "records",
    "is_stale": "nodata",
    "matching_routes": "routing",
    "needs_update": "pipeline",
    "nodata_labels": "nodata",
    "parse_matcher": "routing",
    "read_alerts": "state",
    "read_episodes": "feedback",
    "read_silences": "silences",
    "record_sent_stage": "outbox",
    "render": "notify",
    "render_group": "templates",
    "rule_report": "feedback",
    "runbook_url": "annotations",
    "runbooks": "annotations",
    "send_with_limit": "delivery",
}

__all__ = [
    "DEFAULT_INHIBIT_RULE",
    "DESCRIPTIVE_LABELS",
    "NODATA_CHECK",
    "STAGE_NAMES",
    "Alert",
    "AlertManager",
    "AlertState",
    "AlertStateStore",
    "AppriseNotifier",
    "ConsoleNotifier",
    "Deliverer",
    "DeliveryMetrics",
    "Dispatcher",
    "Episode",
    "FeedbackStore",
    "Flush",
    "InhibitRule",
    "Inhibitor",
    "LogEntry",
    "Matcher",
    "Message",
    "Muter",
    "NoDataState",
    "Notice",
    "NotificationRecord",
    "Notifier",
    "Outbox",
    "Pipeline",
    "QueuedMessage",
    "Receiver",
    "RetryPolicy",
    "Route",
    "RuleStats",
    "SendResult",
    "Silence",
    "SilenceMuter",
    "SilenceStore",
    "Transition",
    "advance",
    "alert_annotations",
    "alert_labels",
    "apply_no_data",
    "build_pipeline",
    "console_line",
    "dashboard_link",
    "fingerprint",
    "is_stale",
    "matching_routes",
    "needs_update",
    "nodata_labels",
    "parse_matcher",
    "read_alerts",
    "read_episodes",
    "read_silences",
    "record_sent_stage",
    "render",
    "render_group",
    "rule_report",
    "runbook_url",
    "runbooks",
    "send_with_limit",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value
