"""From the `alerting:` configuration to the routing tree, receivers and inhibition rules."""

from __future__ import annotations

from collections.abc import Sequence

from watchkeeper.config import AlertingConfig, RouteConfig

from .muting import DEFAULT_INHIBIT_RULE, InhibitRule
from .notify import AppriseNotifier, Notifier
from .pipeline import Receiver
from .routing import Route, parse_matcher

DEFAULT_RECEIVER = "default"


def route_tree(config: RouteConfig, parent: Route | None = None, path: str = "root") -> Route:
    """The routing tree, each node's unset fields taken from its parent (root: defaults)."""
    base = parent or Route(receiver=DEFAULT_RECEIVER)
    node = Route(
        receiver=config.receiver or base.receiver,
        matchers=tuple(parse_matcher(m) for m in config.matchers),
        group_by=tuple(config.group_by) if config.group_by is not None else base.group_by,
        group_wait=config.group_wait if config.group_wait is not None else base.group_wait,
        group_interval=(
            config.group_interval if config.group_interval is not None else base.group_interval
        ),
        repeat_interval=(
            config.repeat_interval if config.repeat_interval is not None else base.repeat_interval
        ),
        continue_=config.continue_,
        path=path,
    )
    children = tuple(
        route_tree(child, node, f"{path}.{i}") for i, child in enumerate(config.routes)
    )
    return Route(
        receiver=node.receiver,
        matchers=node.matchers,
        group_by=node.group_by,
        group_wait=node.group_wait,
        group_interval=node.group_interval,
        repeat_interval=node.repeat_interval,
        continue_=node.continue_,
        routes=children,
        path=path,
    )


def receivers(
    config: AlertingConfig, notifiers: Sequence[Notifier] | None = None
) -> list[Receiver]:
    """Every configured receiver; `notifiers`, when given, replace the default one's URLs."""
    default_targets: tuple[Notifier, ...] = (
        tuple(notifiers)
        if notifiers is not None
        else tuple(AppriseNotifier(url) for url in config.receivers)
    )
    found = [Receiver(DEFAULT_RECEIVER, default_targets)]
    for named in config.named_receivers:
        targets = tuple(AppriseNotifier(url) for url in named.urls)
        receiver = Receiver(named.name, targets, named.send_resolved, named.title, named.body)
        if named.name == DEFAULT_RECEIVER:
            found[0] = receiver
        else:
            found.append(receiver)
    return found


def inhibit_rules(config: AlertingConfig) -> list[InhibitRule]:
    rules = [DEFAULT_INHIBIT_RULE] if config.default_inhibit else []
    rules.extend(
        InhibitRule(
            source=tuple(parse_matcher(m) for m in rule.source_matchers),
            target=tuple(parse_matcher(m) for m in rule.target_matchers),
            equal=tuple(rule.equal),
        )
        for rule in config.inhibit_rules
    )
    return rules
