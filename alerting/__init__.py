"""Alerting: the alert lifecycle, routing, grouping, muting and durable delivery.

Findings from the detector go into `AlertManager.process`; each alert moves pending → firing →
resolved in data time (`advance`), its state is kept in a SQLite file (`AlertStateStore`,
read by the dashboard through `read_alerts`), and firing and resolved alerts go through the
notify pipeline (`build_pipeline`: group → inhibit → silence → dedup → retry → record-sent)
into a durable outbox (`Outbox`) that a `Deliverer` sends through apprise, per target URL,
with a hard time limit, backoff and a deadline.
"""

from .delivery import Deliverer, RetryPolicy, send_with_limit
from .feedback import Episode, FeedbackStore, RuleStats, read_episodes, rule_report
from .grouping import Dispatcher, Flush
from .lifecycle import advance, alert_labels
from .manager import AlertManager
from .metrics import DeliveryMetrics
from .muting import DEFAULT_INHIBIT_RULE, Inhibitor, InhibitRule, Muter, Silence, SilenceMuter
from .nodata import NODATA_CHECK, NoDataState, apply_no_data, is_stale, nodata_labels
from .notify import AppriseNotifier, ConsoleNotifier, Notifier, SendResult, console_line, render
from .outbox import LogEntry, Message, Outbox, QueuedMessage
from .pipeline import STAGE_NAMES, Notice, Pipeline, Receiver, build_pipeline, needs_update
from .records import Alert, AlertState, NotificationRecord, Transition, fingerprint
from .routing import Matcher, Route, matching_routes, parse_matcher
from .silences import SilenceStore, read_silences
from .state import AlertStateStore, read_alerts
from .templates import render_group

__all__ = [
    "DEFAULT_INHIBIT_RULE",
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
    "alert_labels",
    "apply_no_data",
    "build_pipeline",
    "console_line",
    "fingerprint",
    "is_stale",
    "matching_routes",
    "needs_update",
    "nodata_labels",
    "parse_matcher",
    "read_alerts",
    "read_episodes",
    "read_silences",
    "render",
    "render_group",
    "rule_report",
    "send_with_limit",
]
