"""Alerting: the alert lifecycle, its own small state, and delivery through apprise.

Findings from the detector go into `AlertManager.process`; each alert moves pending → firing →
resolved in data time (`advance`), its state is kept in a SQLite file (`AlertStateStore`,
read by the dashboard through `read_alerts`), and firing and resolved transitions are rendered
(`render`) and sent to every receiver (`AppriseNotifier`, `ConsoleNotifier`).
"""

from .lifecycle import advance, alert_labels
from .manager import AlertManager
from .notify import AppriseNotifier, ConsoleNotifier, Notifier, SendResult, console_line, render
from .records import Alert, AlertState, NotificationRecord, Transition, fingerprint
from .state import AlertStateStore, read_alerts

__all__ = [
    "Alert",
    "AlertManager",
    "AlertState",
    "AlertStateStore",
    "AppriseNotifier",
    "ConsoleNotifier",
    "NotificationRecord",
    "Notifier",
    "SendResult",
    "Transition",
    "advance",
    "alert_labels",
    "console_line",
    "fingerprint",
    "read_alerts",
    "render",
]
