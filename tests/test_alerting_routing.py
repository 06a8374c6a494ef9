"""Matchers, the routing tree built from configuration, and the dedup rule, table-driven."""

from __future__ import annotations

import pytest

from watchkeeper.alerting import LogEntry, matching_routes, needs_update, parse_matcher
from watchkeeper.alerting.setup import inhibit_rules, receivers, route_tree
from watchkeeper.config import ConfigError, config_from_dict


@pytest.mark.parametrize(
    ("text", "labels", "expected"),
    [
        ('team="risk"', {"team": "risk"}, True),
        ("team=risk", {"team": "risk"}, True),
        ('team="risk"', {"team": "risky"}, False),
        ('team!="risk"', {"team": "growth"}, True),
        ('team!="risk"', {}, True),
        ('team=""', {}, True),  # a missing label is the empty string
        ('model=~"fraud-.*"', {"model": "fraud-scorer"}, True),
        ('model=~"fraud"', {"model": "fraud-scorer"}, False),  # anchored, as in Alertmanager
        ('check!~"up|drift"', {"check": "error_rate"}, True),
        ('check!~"up|drift"', {"check": "up"}, False),
        (r'summary="say \"hi\""', {"summary": 'say "hi"'}, True),
    ],
)
def test_matchers(text: str, labels: dict[str, str], expected: bool) -> None:
    matcher = parse_matcher(text)
    assert matcher.matches(labels) is expected
    assert parse_matcher(str(matcher)) == matcher  # round trip


@pytest.mark.parametrize("bad", ["team", "=risk", 'team=~"("', "1x=2"])
def test_bad_matchers_are_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_matcher(bad)


CONFIG = {
    "alerting": {
        "receivers": ["json://127.0.0.1:9/default"],
        "named_receivers": [
            {"name": "risk", "urls": ["json://127.0.0.1:9/risk"], "send_resolved": False},
            {"name": "audit", "urls": ["json://127.0.0.1:9/audit"], "title": "$STATUS"},
        ],
        "route": {
            "group_by": ["model"],
            "group_wait": "10s",
            "routes": [
                {"matchers": ['severity="info"'], "receiver": "audit", "continue": True},
                {
                    "matchers": ['team="risk"'],
                    "receiver": "risk",
                    "repeat_interval": "1h",
                    "routes": [{"matchers": ['check="up"'], "group_wait": "0s"}],
                },
            ],
        },
        "inhibit_rules": [
            {"source_matchers": ['severity="critical"'], "target_matchers": ['severity="info"']}
        ],
    }
}


@pytest.mark.parametrize(
    ("labels", "expected"),
    [
        ({"team": "growth"}, [("default", "root", 10.0, 14400.0)]),
        ({"team": "risk"}, [("risk", "root.1", 10.0, 3600.0)]),
        ({"team": "risk", "check": "up"}, [("risk", "root.1.0", 0.0, 3600.0)]),
        (
            {"team": "risk", "severity": "info"},
            [("audit", "root.0", 10.0, 14400.0), ("risk", "root.1", 10.0, 3600.0)],
        ),
    ],
)
def test_routing_tree_inherits_and_continues(
    labels: dict[str, str], expected: list[tuple[str, str, float, float]]
) -> None:
    root = route_tree(config_from_dict(CONFIG).alerting.route)
    found = matching_routes(root, labels)
    assert [(r.receiver, r.path, r.group_wait, r.repeat_interval) for r in found] == expected
    assert all(r.group_by == ("model",) for r in found)


def test_receivers_and_rules_from_config() -> None:
    alerting = config_from_dict(CONFIG).alerting
    found = {r.name: r for r in receivers(alerting)}
    assert sorted(found) == ["audit", "default", "risk"]
    assert not found["risk"].send_resolved
    assert found["audit"].title_template == "$STATUS"
    assert [t.name for t in found["default"].targets] == ["json://127.0.0.1:9/default"]
    assert len(inhibit_rules(alerting)) == 2  # the default up rule and the configured one


def test_simple_receivers_form_still_loads() -> None:
    alerting = config_from_dict({"alerting": {"receivers": ["json://h/x"]}}).alerting
    assert alerting.receivers == ["json://h/x"]
    assert route_tree(alerting.route).group_wait == 30.0
    assert route_tree(alerting.route).group_interval == 300.0


@pytest.mark.parametrize(
    ("alerting", "message"),
    [
        ({"route": {"receiver": "nobody"}}, "route receiver 'nobody' is not defined"),
        ({"route": {"routes": [{"matchers": ["team"]}]}}, "not a label matcher"),
        ({"inhibit_rules": [{"source_matchers": [], "target_matchers": ["a=b"]}]}, "source"),
    ],
)
def test_bad_alerting_config_names_the_problem(alerting: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        config_from_dict({"alerting": alerting})


A, B = "a", "b"


@pytest.mark.parametrize(
    ("entry", "firing", "resolved", "send_resolved", "expected"),
    [
        (None, {A}, set(), True, True),  # never told: tell
        (None, set(), {A}, True, False),  # never told and all resolved: nothing to say
        (({A}, set(), 0.0), {A, B}, set(), True, True),  # a new firing alert
        (({A, B}, set(), 0.0), {A}, {B}, True, True),  # a new resolution
        (({A, B}, set(), 0.0), {A}, {B}, False, False),  # ... unless it does not want them
        (({A}, set(), 0.0), set(), {A}, False, True),  # the all-clear always clears the log
        (({A}, set(), 0.0), {A}, set(), True, False),  # nothing new within repeat_interval
        (({A}, set(), -3600.0), {A}, set(), True, True),  # repeat_interval passed
    ],
)
def test_dedup_rule(
    entry: tuple[set[str], set[str], float] | None,
    firing: set[str],
    resolved: set[str],
    send_resolved: bool,
    expected: bool,
) -> None:
    log = LogEntry(frozenset(entry[0]), frozenset(entry[1]), entry[2]) if entry else None
    assert (
        needs_update(log, frozenset(firing), frozenset(resolved), send_resolved, 3600.0, 0.0)
        is expected
    )


@pytest.mark.parametrize(
    "module", ["routing", "muting", "grouping", "templates", "notify", "lifecycle"]
)
def test_docstring_examples_run(module: str) -> None:
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(f"watchkeeper.alerting.{module}"))
    assert result.attempted > 0 and result.failed == 0
