"""docs/routing.md: every recipe loads, apprise accepts every URL, and sample alerts reach
the receivers the recipe's prose promises."""

from __future__ import annotations

import re
from pathlib import Path

import apprise
import pytest
import yaml
from test_examples import code_blocks

from watchkeeper.alerting.routing import matching_routes
from watchkeeper.alerting.setup import route_tree
from watchkeeper.config import Config, config_from_dict

DOC = Path(__file__).resolve().parents[1] / "docs" / "routing.md"
SECRETS = {
    name: f"fake{name.lower().replace('_', '')}"
    for name in (
        "SLACK_TOKEN_A",
        "SLACK_TOKEN_B",
        "SLACK_TOKEN_C",
        "SMTP_USER",
        "SMTP_PASSWORD",
        "PD_INTEGRATION_KEY",
        "PD_API_KEY",
    )
}


def recipes() -> dict[str, str]:
    found = {}
    for lang, text in code_blocks(DOC):
        match = re.match(r"# recipe: (\S+)\n", text)
        if lang == "yaml" and match:
            found[match.group(1)] = text
    return found


def load(name: str, monkeypatch: pytest.MonkeyPatch) -> Config:
    for key, value in SECRETS.items():
        monkeypatch.setenv(key, value)
    return config_from_dict(yaml.safe_load(recipes()[name]), f"docs/routing.md recipe {name}")


def receivers_for(config: Config, **labels: str) -> list[str]:
    base = {"model": "fraud-scorer", "check": "error_rate", "subject": "", "severity": "warning"}
    return [r.receiver for r in matching_routes(route_tree(config.alerting.route), base | labels)]


def test_the_guide_has_the_five_recipes() -> None:
    assert sorted(recipes()) == ["alertmanager", "email", "pagerduty", "slack", "webhook"]


@pytest.mark.parametrize("name", sorted(recipes()))
def test_every_recipe_loads_and_apprise_accepts_every_url(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = load(name, monkeypatch)
    urls = list(config.alerting.receivers) + [
        url for r in config.alerting.named_receivers for url in r.urls
    ]
    for url in urls:
        assert "${" not in url
        assert apprise.Apprise().add(url), f"apprise refuses {url}"


def test_slack_sends_a_teams_alerts_to_its_channel_and_the_rest_to_the_catch_all(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = load("slack", monkeypatch)
    assert receivers_for(config, team="risk") == ["risk-slack"]
    assert receivers_for(config, team="growth") == ["default"]


def test_email_sends_warnings_and_keeps_info_quiet(monkeypatch: pytest.MonkeyPatch) -> None:
    config = load("email", monkeypatch)
    assert receivers_for(config, severity="warning") == ["default"]
    assert receivers_for(config, severity="info") == ["quiet"]


def test_pagerduty_pages_critical_alerts_and_also_posts_them_to_slack(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = load("pagerduty", monkeypatch)
    assert receivers_for(config, severity="critical") == ["pager", "default"]
    assert receivers_for(config, severity="warning") == ["default"]
    [rule] = config.alerting.inhibit_rules
    assert rule.equal == ["model", "check"]


def test_webhook_and_alertmanager_recipes_route_as_described(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    webhook = load("webhook", monkeypatch)
    assert receivers_for(webhook) == ["incident-bot"]
    handoff = load("alertmanager", monkeypatch)
    assert len(handoff.alerting.alertmanager_urls) == 2 and not handoff.alerting.receivers
