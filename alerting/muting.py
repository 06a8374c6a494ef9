"""Muters: silences and inhibitions, both answering `mutes(labels) -> bool`.

A silence mutes alerts matching all its matchers between its start and end; it is made by a
person (author, comment) and kept after it expires, for audit. An inhibition rule mutes alerts
matching its target matchers while some *other* firing alert matches its source matchers and
has the same values of the `equal` labels: by default, a model that is down (`check="up"`)
mutes that model's other alerts, which are only consequences.

>>> rule = DEFAULT_INHIBIT_RULE
>>> firing = [{"model": "m", "check": "up"}]
>>> Inhibitor([rule], firing).mutes({"model": "m", "check": "error_rate"})
True
>>> Inhibitor([rule], firing).mutes({"model": "other", "check": "error_rate"})
False
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from .routing import Matcher, matches_all, parse_matcher


class Muter(Protocol):
    """Anything that can say an alert with these labels must not be notified now."""

    def mutes(self, labels: Mapping[str, str]) -> bool: ...


@dataclass(frozen=True, slots=True)
class Silence:
    """A person's decision to mute matching alerts from `starts_at` until `ends_at`."""

    id: str
    matchers: tuple[Matcher, ...]
    starts_at: float
    ends_at: float
    created_by: str
    comment: str
    created_at: float

    @classmethod
    def new(
        cls,
        matchers: Sequence[str | Matcher],
        starts_at: float,
        ends_at: float,
        created_by: str,
        comment: str,
        created_at: float | None = None,
    ) -> Silence:
        """A fresh silence with a new id; matchers may be given as text (`team="risk"`)."""
        parsed = tuple(m if isinstance(m, Matcher) else parse_matcher(m) for m in matchers)
        if not parsed:
            raise ValueError("a silence needs at least one matcher")
        if ends_at <= starts_at:
            raise ValueError("a silence must end after it starts")
        if not created_by.strip() or not comment.strip():
            raise ValueError("a silence needs an author and a comment")
        return cls(
            id=uuid.uuid4().hex[:12],
            matchers=parsed,
            starts_at=starts_at,
            ends_at=ends_at,
            created_by=created_by,
            comment=comment,
            created_at=starts_at if created_at is None else created_at,
        )

    def active(self, now: float) -> bool:
        return self.starts_at <= now < self.ends_at

    def status(self, now: float) -> str:
        """`pending`, `active` or `expired`, as Alertmanager names them."""
        if now < self.starts_at:
            return "pending"
        return "active" if now < self.ends_at else "expired"


class SilenceMuter:
    """Mutes what any of `silences` active at `now` matches."""

    def __init__(self, silences: Iterable[Silence], now: float) -> None:
        self.now = now
        self._active = [s for s in silences if s.active(now)]

    def __repr__(self) -> str:
        return f"SilenceMuter(active={[s.id for s in self._active]!r}, now={self.now!r})"

    def mutes(self, labels: Mapping[str, str]) -> bool:
        return any(matches_all(s.matchers, labels) for s in self._active)


@dataclass(frozen=True, slots=True)
class InhibitRule:
    """While a firing alert matches `source`, mute alerts matching `target` with equal `equal`."""

    source: tuple[Matcher, ...]
    target: tuple[Matcher, ...]
    equal: tuple[str, ...] = ()


#: A model that is down mutes its other alerts.
DEFAULT_INHIBIT_RULE = InhibitRule(
    source=(parse_matcher('check="up"'),),
    target=(parse_matcher('check!="up"'),),
    equal=("model",),
)


class Inhibitor:
    """Mutes targets of `rules` given the labels of the alerts firing now.

    An alert never inhibits itself, and, as in Alertmanager, an alert that matches both a
    rule's source and target cannot be inhibited by another alert that also matches both.
    """

    def __init__(self, rules: Sequence[InhibitRule], firing: Iterable[Mapping[str, str]]) -> None:
        self.rules = tuple(rules)
        self._firing = [dict(labels) for labels in firing]

    def __repr__(self) -> str:
        return f"Inhibitor(rules={len(self.rules)}, firing={len(self._firing)})"

    def mutes(self, labels: Mapping[str, str]) -> bool:
        for rule in self.rules:
            if not matches_all(rule.target, labels):
                continue
            target_is_source = matches_all(rule.source, labels)
            for source in self._firing:
                if source == labels or not matches_all(rule.source, source):
                    continue
                if target_is_source and matches_all(rule.target, source):
                    continue
                if all(source.get(n, "") == labels.get(n, "") for n in rule.equal):
                    return True
        return False
