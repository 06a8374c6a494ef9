"""Notifiers: where alerts go, one per receiver URL, with secrets masked.

A notifier is anything with a printable `name` and `send(title, body) -> SendResult`. Receivers
are apprise URLs (Slack, e-mail, PagerDuty, webhooks, ...); each gets its own `apprise.Apprise`
so that we know which one failed. Names come from apprise's privacy mode, so a token never
reaches a log line, a repr or the notification log.
"""

from __future__ import annotations

import logging
import re
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol, TextIO, runtime_checkable
from urllib.parse import urlsplit

import apprise

from .annotations import dashboard_link
from .records import Transition
from .redact import masking_every_part_of, register_secrets, url_secrets


@dataclass(frozen=True, slots=True)
class SendResult:
    """How one send went: `ok`; if not, whether trying again may help, and why."""

    ok: bool
    retryable: bool
    detail: str


@runtime_checkable
class Notifier(Protocol):
    """A receiver of alert notifications. `name` is masked and safe to print."""

    name: str

    def send(self, title: str, body: str) -> SendResult: ...


def _mask_unparsed(url: str) -> str:
    """A URL apprise could not parse, reduced to its scheme: anything else may be a secret."""
    scheme = urlsplit(url).scheme if "://" in url else ""
    return f"{scheme}://****" if scheme else "****"


class AppriseNotifier:
    """Sends through one apprise URL.

    >>> AppriseNotifier("json://user:secretpass@127.0.0.1:9/hook")
    AppriseNotifier('json://user:****@127.0.0.1:9/hook')
    """

    __slots__ = ("_apprise", "name")

    def __init__(self, url: str) -> None:
        self._apprise = apprise.Apprise()
        register_secrets(url_secrets(url))  # apprise logs the URL while adding it
        with masking_every_part_of(url):  # and may quote a malformed token in a warning
            added = self._apprise.add(url)
        if not added:
            raise ValueError(
                f"not a valid apprise URL: {_mask_unparsed(url)} (unknown service, or a field "
                "missing or malformed; see https://github.com/caronc/apprise/wiki)"
            )
        server: Any = self._apprise[0]  # apprise's plugin methods are untyped
        masked = str(server.url(privacy=True))
        register_secrets(url_secrets(url, masked))  # also out of apprise's and urllib3's logs
        # apprise appends its default options as a query string; they are noise in a name.
        self.name = masked.split("?", 1)[0]

    def __repr__(self) -> str:
        return f"AppriseNotifier({self.name!r})"

    def send(self, title: str, body: str) -> SendResult:
        # apprise never raises on a failed send; its warnings say why, so capture them.
        log_capture: Any = apprise.LogCapture  # untyped in apprise
        with log_capture(level=logging.WARNING, fmt="%(message)s") as captured:
            ok = bool(self._apprise.notify(body=body, title=title))
        if ok:
            return SendResult(ok=True, retryable=False, detail="sent")
        lines = [line for line in captured.getvalue().splitlines() if line.strip()]
        detail = lines[-1] if lines else "apprise reported a failed delivery"
        return SendResult(ok=False, retryable=retryable(detail), detail=detail)


_HTTP_STATUS = re.compile(r"error=(\d{3})\b")


def retryable(detail: str) -> bool:
    """Whether a failure apprise described may succeed later: an HTTP 4xx other than 408 and
    429 is final (the request itself is wrong); 5xx, 429, timeouts and network errors are not.

    >>> retryable("Failed to send JSON POST notification: Forbidden., error=403.")
    False
    >>> retryable("Failed to send JSON POST notification: Internal server error., error=500.")
    True
    """
    match = _HTTP_STATUS.search(detail)
    if match is None:
        return True
    code = int(match.group(1))
    return not (400 <= code < 500) or code in (408, 429)


def _clock(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%H:%MZ")


def _stamp(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def _what(labels: dict[str, str]) -> str:
    """`model check` or `model check subject`: what the alert is about, in words."""
    parts = [labels.get("model", ""), labels.get("check", ""), labels.get("subject", "")]
    return " ".join(part for part in parts if part)


def _summary(transition: Transition) -> str:
    alert = transition.alert
    return alert.summary or f"value {alert.value:g} vs threshold {alert.threshold:g}"


def render(transition: Transition, dashboard_url: str = "", runbook: str = "") -> tuple[str, str]:
    """Title and body of the notification for one transition.

    The title says state, what and how bad (`[FIRING] fraud-scorer error_rate (critical)`); the
    body says what was seen, against which threshold, since when, the labels (with the model
    version the alert began on, and the one running now if it changed), and where to look:
    the model's dashboard page and the runbook.
    """
    alert = transition.alert
    labels = alert.label_map
    title = f"[{alert.state.upper()}] {_what(labels)} ({labels.get('severity', 'unknown')})"
    lines = [_summary(transition), f"value {alert.value:g} vs threshold {alert.threshold:g}"]
    lines.append(f"active since {_iso(alert.active_since)}")
    if alert.fired_at is not None:
        lines.append(f"firing since {_iso(alert.fired_at)}")
    if alert.resolved_at is not None:
        lines.append(f"resolved at {_iso(alert.resolved_at)}")
    lines.append("labels: " + ", ".join(f"{k}={v}" for k, v in sorted(labels.items()) if v))
    if alert.latest_version and alert.latest_version != labels.get("version"):
        lines.append(f"latest version: {alert.latest_version}")
    if runbook:
        lines.append(f"runbook: {runbook}")
    link = dashboard_link(dashboard_url, labels)
    if link:
        lines.append(f"dashboard: {link}")
    return title, "\n".join(lines)


def console_line(transition: Transition) -> str:
    """One readable line for a terminal, e.g.
    `2026-11-22 02:10:00Z FIRING   critical fraud-scorer error_rate: <summary> since 02:01Z`.
    """
    alert = transition.alert
    labels = alert.label_map
    since = alert.active_since
    same_day = _stamp(since)[:10] == _stamp(transition.at)[:10]
    when = _clock(since) if same_day else _stamp(since)[:10] + " " + _clock(since)
    since_words = "was active since" if alert.state == "resolved" else "since"
    return (
        f"{_stamp(transition.at)} {alert.state.upper():<8} {labels.get('severity', ''):<8} "
        f"{_what(labels)}: {_summary(transition)} {since_words} {when}"
    )


class ConsoleNotifier:
    """Prints notifications as single lines to a stream (standard output when None)."""

    name = "console"

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream

    def __repr__(self) -> str:
        return f"ConsoleNotifier(stream={self.stream!r})"

    def _write(self, line: str) -> None:
        stream = self.stream if self.stream is not None else sys.stdout
        stream.write(line.replace("\n", " ") + "\n")
        stream.flush()

    def show(self, transition: Transition) -> None:
        """Print one transition as one line (what the manager uses)."""
        self._write(console_line(transition))

    def send(self, title: str, body: str) -> SendResult:
        """Print a rendered notification as one line: its title and first body line."""
        first = body.split("\n", 1)[0]
        self._write(f"{title}: {first}" if first else title)
        return SendResult(ok=True, retryable=False, detail="printed")
