"""Label matchers and the routing tree: which receivers hear about an alert, with what timing.

Matchers are written as in Alertmanager (`team="risk"`, `severity!="info"`,
`model=~"fraud-.*"`, `check!~"up|drift"`); a regular expression must match the whole value.
A route matches an alert when all its matchers do; the alert then goes down to the first child
route that matches (to every matching child while `continue` is set on the earlier ones), and
the deepest matching routes are where it is delivered. Children inherit the parent's receiver
and timing unless they set their own.

>>> root = Route(receiver="default", routes=(
...     Route(receiver="risk-pager", matchers=(parse_matcher('team="risk"'),)),))
>>> [r.receiver for r in matching_routes(root, {"team": "risk"})]
['risk-pager']
>>> [r.receiver for r in matching_routes(root, {"team": "growth"})]
['default']
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

MatchOp = Literal["=", "!=", "=~", "!~"]

_MATCHER = re.compile(
    r'^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*(?:"((?:[^"\\]|\\.)*)"|(\S*))\s*$'
)

#: Group by every label: each alert is its own group (Alertmanager's `...`).
GROUP_BY_ALL = "..."


@dataclass(frozen=True, slots=True)
class Matcher:
    """One label condition; a missing label counts as the empty string, as in Alertmanager."""

    name: str
    op: MatchOp
    value: str

    def __post_init__(self) -> None:
        if self.op in ("=~", "!~"):
            try:
                re.compile(self.value)
            except re.error as exc:
                raise ValueError(f"matcher {self}: bad regular expression: {exc}") from None

    def __str__(self) -> str:
        escaped = self.value.replace("\\", "\\\\").replace('"', '\\"')
        return f'{self.name}{self.op}"{escaped}"'

    def matches(self, labels: Mapping[str, str]) -> bool:
        value = labels.get(self.name, "")
        if self.op == "=":
            return value == self.value
        if self.op == "!=":
            return value != self.value
        found = re.fullmatch(self.value, value) is not None
        return found if self.op == "=~" else not found


def parse_matcher(text: str) -> Matcher:
    """`name="value"` (or `=`, `!=`, `=~`, `!~`, quotes optional) into a `Matcher`."""
    match = _MATCHER.match(text)
    if not match:
        raise ValueError(
            f'not a label matcher: {text!r}; expected e.g. team="risk", severity!="info", '
            'model=~"fraud-.*"'
        )
    name, op, quoted, bare = match.groups()
    value = re.sub(r"\\(.)", r"\1", quoted) if quoted is not None else bare
    return Matcher(name, op, value)  # type: ignore[arg-type]


def matches_all(matchers: Sequence[Matcher], labels: Mapping[str, str]) -> bool:
    return all(m.matches(labels) for m in matchers)


@dataclass(frozen=True, slots=True)
class Route:
    """One node of the routing tree, with its timing (seconds) and children.

    `group_by` lists the labels that split alerts into groups (`("...",)`: every alert alone);
    `continue_` lets a matching route's later siblings be tried too.
    """

    receiver: str
    matchers: tuple[Matcher, ...] = ()
    group_by: tuple[str, ...] = ("model", "check", "subject")
    group_wait: float = 30.0
    group_interval: float = 300.0
    repeat_interval: float = 4 * 3600.0
    continue_: bool = False
    routes: tuple[Route, ...] = field(default=())
    path: str = "root"

    def group_key(self, labels: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
        """The labels that name the group an alert falls in on this route."""
        if GROUP_BY_ALL in self.group_by:
            return tuple(sorted(labels.items()))
        return tuple((name, labels.get(name, "")) for name in sorted(self.group_by))


def matching_routes(route: Route, labels: Mapping[str, str]) -> list[Route]:
    """The routes an alert is delivered on: the deepest matches under `route` (itself if none).

    The root route matches everything whatever its matchers say, as in Alertmanager.
    """
    found: list[Route] = []
    for i, child in enumerate(route.routes):
        if not matches_all(child.matchers, labels):
            continue
        found.extend(matching_routes(_named(child, f"{route.path}.{i}"), labels))
        if not child.continue_:
            break
    return found or [route]


def _named(route: Route, path: str) -> Route:
    return route if route.path == path else replace(route, path=path)
