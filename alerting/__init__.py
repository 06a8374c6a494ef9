"""Alerting: the alert lifecycle, routing, grouping, muting and durable delivery.

Findings from the detector go into `AlertManager.process`; each alert moves pending → firing →
resolved in data time (`advance`), its state is kept in a SQLite file (`AlertStateStore`,
read by the dashboard through `read_alerts`), and firing and resolved alerts go through the
notify pipeline (`build_pipeline`: group → inhibit → silence → dedup → retry → record-sent)
into a durable outbox (`Outbox`) that a `Deliverer` sends through apprise, per target URL,
with a hard time limit, backoff and a deadline.
"""

from .delivery import Deliverer, RetryPolicy, send_with_limit
from .grouping import Dispatcher, Flush
from .lifecycle import advance, alert_labels
from .manager import AlertManager
from .metrics import DeliveryMetrics
from .muting import DEFAULT_INHIBIT_RULE, Inhibitor, InhibitRule, Muter, Silence, SilenceMuter
from .notify import AppriseNotifier, ConsoleNotifier, Notifier, SendResult, console_line, render
from .outbox import LogEntry, Message, Outbox, QueuedMessage
from .pipeline import STAGE_NAMES, Notice, Pipeline, Receiver, build_pipeline, needs_update
from .records import Alert, AlertState, NotificationRecord, Transition, fingerprint
from .routing import Matcher, Route, matching_routes, parse_matcher
from .silences import SilenceStore
from .state import AlertStateStore, read_alerts
from .templates import render_group

__all__ = [
    "DEFAULT_INHIBIT_RULE",
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
    "Flush",
    "InhibitRule",
    "Inhibitor",
    "LogEntry",
    "Matcher",
    "Message",
    "Muter",
    "Notice",
    "NotificationRecord",
    "Notifier",
    "Outbox",
    "Pipeline",
    "QueuedMessage",
    "Receiver",
    "RetryPolicy",
    "Route",
    "SendResult",
    "Silence",
    "SilenceMuter",
    "SilenceStore",
    "Transition",
    "advance",
    "alert_labels",
    "build_pipeline",
    "console_line",
    "fingerprint",
    "matching_routes",
    "needs_update",
    "parse_matcher",
    "read_alerts",
    "render",
    "render_group",
    "send_with_limit",
]
