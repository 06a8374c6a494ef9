"""The notify pipeline, assembled in one place: `build_pipeline`, six stages in this order.

1. group — the routing tree picks the receivers and `Dispatcher` gathers alerts per route and
   `group_by` labels; a group is flushed after `group_wait`, then every `group_interval`;
2. inhibit — drop alerts muted by an inhibition rule (`Inhibitor`);
3. silence — drop alerts muted by a silence active at the flush (`SilenceMuter`);
4. dedup — go on only if the receiver has not been told this already (new firing alerts,
   newly resolved ones when it wants them, or `repeat_interval` passed);
5. retry — render the message and queue it durably, one row per target URL, together with
   the notification-log entry; the `Deliverer` sends it with backoff until its deadline;
6. record-sent — after each attempt, the row is marked sent (or failed) and the outcome
   appended to the notification log (`record_sent_stage`, called by the `Deliverer`).

Grouping comes first, as in Alertmanager (its dispatcher groups; its notify pipeline then runs
inhibit → silence → wait → dedup → retry → set-notifies on each flushed group): muting must be
judged when a group is flushed, not when an alert arrives, or an alert that arrived while
silenced (or inhibited) would stay unsent after the silence expired (or the inhibiting alert
resolved). Stages 2-5 are functions `Notice -> Notice | None` (None: stop here); each stage,
the dispatcher and the record-sent step included, is small enough to test alone.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from .annotations import Runbooks, no_runbook
from .delivery import target_key
from .grouping import Dispatcher, Flush
from .muting import Muter
from .notify import Notifier
from .outbox import LogEntry, Message, NotificationLog, Outbox, RecordSent, record_sent_stage
from .records import Alert
from .routing import Route
from .templates import render_group

#: The order of the stages, for display and docs.
STAGE_NAMES = ("group", "inhibit", "silence", "dedup", "retry", "record-sent")


@dataclass(frozen=True, slots=True)
class Receiver:
    """A named receiver: its target URLs' notifiers, whether it hears of resolutions, templates."""

    name: str
    targets: tuple[Notifier, ...] = ()
    send_resolved: bool = True
    title_template: str | None = None
    body_template: str | None = None


@dataclass(frozen=True, slots=True)
class Notice:
    """A flushed group on its way to one receiver; stages narrow `alerts` or stop it."""

    flush: Flush
    receiver: Receiver
    alerts: tuple[Alert, ...]
    entry: LogEntry | None = field(default=None)

    @property
    def firing(self) -> frozenset[str]:
        return frozenset(a.fingerprint for a in self.alerts if a.state != "resolved")

    @property
    def resolved(self) -> frozenset[str]:
        return frozenset(a.fingerprint for a in self.alerts if a.state == "resolved")


Stage = Callable[[Notice], Notice | None]


def mute_stage(muter: Callable[[Notice], Muter]) -> Stage:
    """Drop the alerts `muter(notice)` mutes; stop when none is left."""

    def stage(notice: Notice) -> Notice | None:
        m = muter(notice)
        kept = tuple(a for a in notice.alerts if not m.mutes(a.label_map))
        return replace(notice, alerts=kept) if kept else None

    return stage


def needs_update(
    entry: LogEntry | None,
    firing: frozenset[str],
    resolved: frozenset[str],
    send_resolved: bool,
    repeat_interval: float,
    now: float,
) -> bool:
    """Alertmanager's dedup rule: whether a receiver must be told about a group now."""
    if entry is None:
        return bool(firing)
    if not firing <= entry.firing:
        return True
    if not firing:
        # All resolved: tell it (to clear the log) only if it was told something fired.
        return bool(entry.firing)
    if send_resolved and not resolved <= entry.resolved:
        return True
    return entry.at + repeat_interval <= now


def dedup_stage(outbox: Outbox, clock: Callable[[], float] = time.time) -> Stage:
    """Go on only if `needs_update` says the receiver must hear about the group.

    A notification is logged as sent at its flush time or at the `clock`'s time, whichever
    is later. Catching up on old findings (alerting restarted after a day down, an old
    finding arriving) runs the group flushes of the past at their own times; counting
    `repeat_interval` from when a message really went out keeps those from each repeating
    it: one message now, the next repeat `repeat_interval` later, as Alertmanager does.
    """

    def stage(notice: Notice) -> Notice | None:
        entry = outbox.entry(notice.flush.group_key, notice.receiver.name)
        flush = notice.flush
        if not needs_update(
            entry,
            notice.firing,
            notice.resolved,
            notice.receiver.send_resolved,
            flush.route.repeat_interval,
            flush.at,
        ):
            return None
        sent_at = max(flush.at, clock())
        return replace(notice, entry=LogEntry(notice.firing, notice.resolved, sent_at))

    return stage


def dedup_key(group_key: str, receiver: str, entry: LogEntry) -> str:
    """A stable key of one notification: the same message always carries the same key."""
    text = "|".join(
        [group_key, receiver, repr(entry.at), *sorted(entry.firing), "/", *sorted(entry.resolved)]
    )
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def retry_stage(
    outbox: Outbox,
    deadline_s: float,
    dashboard_url: str = "",
    clock: Callable[[], float] = time.time,
    runbook: Runbooks = no_runbook,
) -> Stage:
    """Render and queue the message for each target, with the log entry, in one transaction.

    Delivery is due at once and must succeed within `deadline_s` of the wall `clock`. A
    receiver that does not want resolutions gets only the firing alerts; if none is left,
    nothing is queued but the log still records that the group was settled. `runbook`
    gives each alert's runbook URL for the message.
    """

    def stage(notice: Notice) -> Notice | None:
        entry = notice.entry or LogEntry(notice.firing, notice.resolved, notice.flush.at)
        receiver = notice.receiver
        alerts = notice.alerts
        if not receiver.send_resolved:
            alerts = tuple(a for a in alerts if a.state != "resolved")
        messages: list[Message] = []
        if alerts:
            key = dedup_key(notice.flush.group_key, receiver.name, entry)
            title, body = render_group(
                alerts,
                key,
                dashboard_url,
                receiver.title_template,
                receiver.body_template,
                runbook,
            )
            state = "firing" if any(a.state != "resolved" for a in alerts) else "resolved"
            fingerprints = tuple(a.fingerprint for a in alerts)
            messages = [
                Message(
                    key,
                    receiver.name,
                    target_key(receiver.name, t.name),
                    fingerprints,
                    state,
                    title,
                    body,
                )
                for t in receiver.targets
            ]
        now = clock()
        outbox.record(notice.flush.group_key, receiver.name, entry, messages, now, now + deadline_s)
        return replace(notice, alerts=alerts)

    return stage


class Pipeline:
    """The assembled stages: `insert` puts an alert into its groups (group), `tick` runs the
    due flushes through `stages` (inhibit, silence, dedup, retry), and `record_sent` is what
    the `Deliverer` calls after each attempt."""

    def __init__(
        self,
        group: Dispatcher,
        receivers: Mapping[str, Receiver],
        stages: Sequence[tuple[str, Stage]],
        record_sent: RecordSent,
        on_queued: Callable[[Notice], None] | None = None,
    ) -> None:
        self.dispatcher = group
        self.receivers = dict(receivers)
        self.stages = tuple(stages)
        self.record_sent = record_sent
        self._on_queued = on_queued

    @property
    def stage_names(self) -> tuple[str, ...]:
        """Every stage in order, from group to record-sent."""
        return ("group", *(name for name, _ in self.stages), "record-sent")

    def __repr__(self) -> str:
        return f"Pipeline({' → '.join(self.stage_names)}, receivers={sorted(self.receivers)!r})"

    def insert(self, alert: Alert, now: float) -> None:
        """The group stage: route `alert` into its groups (a due flush runs the rest)."""
        self.dispatcher.insert(alert, now)

    def tick(self, now: float, *, inclusive: bool = True) -> list[Flush]:
        """Run every flush due up to `now` (strictly before it if not `inclusive`)."""
        return self.dispatcher.tick(now, self.run, inclusive=inclusive)

    def run(self, flush: Flush) -> Notice | None:
        """One flush through the stages; the notice as queued, or None if a stage stopped it."""
        receiver = self.receivers.get(flush.route.receiver, Receiver(flush.route.receiver))
        notice: Notice | None = Notice(flush, receiver, flush.alerts)
        for _, stage in self.stages:
            if notice is None:
                return None
            notice = stage(notice)
        if notice is not None and self._on_queued is not None:
            self._on_queued(notice)
        return notice


def build_pipeline(
    route: Route,
    receivers: Iterable[Receiver],
    outbox: Outbox,
    *,
    inhibitor: Callable[[], Muter],
    silencer: Callable[[float], Muter],
    log: NotificationLog | None = None,
    deadline_s: float = 6 * 3600.0,
    dashboard_url: str = "",
    runbook: Runbooks = no_runbook,
    on_queued: Callable[[Notice], None] | None = None,
    clock: Callable[[], float] = time.time,
) -> Pipeline:
    """The whole lifecycle after alert state, in order: group → inhibit → silence → dedup →
    retry (durable queue) → record-sent (called by the `Deliverer` after each attempt).

    `inhibitor()` gives the inhibition muter for the alerts firing now; `silencer(t)` the
    silences active at flush time `t`; `log` receives delivery outcomes.
    """
    pipeline = Pipeline(
        Dispatcher(route),
        {r.name: r for r in receivers},
        [
            ("inhibit", mute_stage(lambda notice: inhibitor())),
            ("silence", mute_stage(lambda notice: silencer(notice.flush.at))),
            ("dedup", dedup_stage(outbox, clock)),
            ("retry", retry_stage(outbox, deadline_s, dashboard_url, clock, runbook)),
        ],
        record_sent_stage(outbox, log),
        on_queued,
    )
    assert pipeline.stage_names == STAGE_NAMES
    return pipeline
