"""Grouping: alerts gathered per route and group labels, flushed on Alertmanager's timers.

A group is created by its first alert and flushed `group_wait` later (at once if that alert
started longer than `group_wait` ago); after that it is flushed every `group_interval`. Each
flush hands the group's current alerts to the notify pipeline, which decides whether anything
is sent (dedup, `repeat_interval`). Resolved alerts leave the group once flushed, and a group
with no alerts left is dropped. There is no clock inside: `tick(now, handler)` runs every
flush due up to `now` at its own due time, so tests and replays get exact notification times.

>>> from watchkeeper.alerting.records import Alert
>>> from watchkeeper.alerting.routing import Route
>>> d = Dispatcher(Route(receiver="default", group_wait=30, group_interval=300))
>>> a = Alert("f1", (("model", "m"), ("check", "up"), ("subject", "")), "firing", 0, 0, 0)
>>> d.insert(a, now=0)
>>> [f.at for f in d.tick(700, lambda flush: None)]
[30, 330, 630]
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field

from .records import Alert
from .routing import Route, matching_routes


@dataclass(frozen=True, slots=True)
class Flush:
    """One group's alerts handed to the pipeline at time `at` (a due time, not "when run")."""

    route: Route
    group_key: str
    group_labels: tuple[tuple[str, str], ...]
    alerts: tuple[Alert, ...]
    at: float


@dataclass(slots=True)
class _Group:
    route: Route
    key: str
    labels: tuple[tuple[str, str], ...]
    next_flush: float
    alerts: dict[str, Alert] = field(default_factory=dict)
    flushed: bool = False


def group_key(route: Route, labels: tuple[tuple[str, str], ...]) -> str:
    """A stable text key for a group: the route's place in the tree and the group labels."""
    return f"{route.path}:{json.dumps(list(labels), separators=(',', ':'))}"


class Dispatcher:
    """Routes alerts into groups and runs their flushes on time."""

    def __init__(self, route: Route) -> None:
        self.route = route
        self._groups: dict[str, _Group] = {}

    def __repr__(self) -> str:
        return f"Dispatcher(groups={len(self._groups)})"

    def insert(self, alert: Alert, now: float) -> None:
        """Put (or update) `alert` in the group of every route it matches."""
        labels = alert.label_map
        for route in matching_routes(self.route, labels):
            glabels = route.group_key(labels)
            key = group_key(route, glabels)
            group = self._groups.get(key)
            if group is None:
                group = _Group(route, key, glabels, next_flush=now + route.group_wait)
                self._groups[key] = group
            group.alerts[alert.fingerprint] = alert
            started = alert.fired_at if alert.fired_at is not None else alert.active_since
            if not group.flushed and started + route.group_wait < now:
                group.next_flush = min(group.next_flush, now)

    def next_due(self) -> float | None:
        """When the earliest flush is due, or None when there is no group."""
        return min((g.next_flush for g in self._groups.values()), default=None)

    def tick(
        self, now: float, handler: Callable[[Flush], object], *, inclusive: bool = True
    ) -> list[Flush]:
        """Run every flush due at or before `now` (before only, if not `inclusive`), in time
        order; return them.

        After `handler` returns, resolved alerts that were in the flush leave the group (the
        pipeline has recorded them), and an empty group is dropped.
        """
        done: list[Flush] = []
        while True:
            due = [
                g
                for g in self._groups.values()
                if g.next_flush < now or (inclusive and g.next_flush == now)
            ]
            if not due:
                return done
            group = min(due, key=lambda g: (g.next_flush, g.key))
            flush = Flush(
                route=group.route,
                group_key=group.key,
                group_labels=group.labels,
                alerts=tuple(sorted(group.alerts.values(), key=lambda a: a.fingerprint)),
                at=group.next_flush,
            )
            handler(flush)
            done.append(flush)
            group.flushed = True
            group.next_flush = flush.at + group.route.group_interval
            for alert in flush.alerts:
                if alert.state == "resolved" and group.alerts.get(alert.fingerprint) is alert:
                    del group.alerts[alert.fingerprint]
            if not group.alerts:
                del self._groups[group.key]
