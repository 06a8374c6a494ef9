"""The notify pipeline stage by stage: each stage alone on real state, then their assembly.

group → inhibit → silence → dedup → retry → record-sent (docs/alerting.md says why grouping
comes first). Also what a notification says: annotations, runbook and dashboard links.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest

from watchkeeper.alerting import (
    DEFAULT_INHIBIT_RULE,
    STAGE_NAMES,
    Alert,
    AlertStateStore,
    Dispatcher,
    Flush,
    Inhibitor,
    Notice,
    Outbox,
    Receiver,
    Route,
    SendResult,
    Silence,
    SilenceMuter,
    build_pipeline,
    fingerprint,
    render_group,
)
from watchkeeper.alerting.alertmanager import am_alert
from watchkeeper.alerting.annotations import runbooks
from watchkeeper.alerting.outbox import LogEntry, record_sent_stage
from watchkeeper.alerting.pipeline import dedup_stage, mute_stage, retry_stage
from watchkeeper.config import ConfigError, config_from_dict

T0 = 1_800_000_000.0
ROUTE = Route(receiver="default", group_by=("model",), group_wait=30, group_interval=300)


@dataclass
class Keep:
    name: str = "keep://ops"
    sent: list[str] = field(default_factory=list)

    def send(self, title: str, body: str) -> SendResult:
        self.sent.append(title)
        return SendResult(ok=True, retryable=False, detail="kept")


def alert(check: str, state: str = "firing", **labels: str) -> Alert:
    full = {"model": "m", "check": check, "subject": "", "severity": "critical", **labels}
    return Alert(
        fingerprint=fingerprint(full),
        labels=tuple(sorted(full.items())),
        state=state,  # type: ignore[arg-type]
        active_since=T0,
        updated_at=T0,
        fired_at=T0,
        value=0.3,
        threshold=0.05,
        summary=f"{check} broke",
    )


def notice(*alerts: Alert, at: float = T0 + 30, receiver: Receiver | None = None) -> Notice:
    flush = Flush(ROUTE, 'root:[["model","m"]]', (("model", "m"),), tuple(alerts), at)
    return Notice(flush, receiver or Receiver("default", (Keep(),)), tuple(alerts))


@pytest.fixture
def outbox(tmp_path: Path) -> Iterator[Outbox]:
    box = Outbox(tmp_path / "alerts.db")
    yield box
    box.close()


def checks(n: Notice | None) -> list[str]:
    return [] if n is None else sorted(a.label_map["check"] for a in n.alerts)


def test_group_stage_alone_gathers_per_group_labels_on_the_timers() -> None:
    dispatcher = Dispatcher(ROUTE)
    dispatcher.insert(alert("error_rate"), T0)
    dispatcher.insert(alert("drift"), T0 + 10)
    dispatcher.insert(alert("error_rate", model="other"), T0 + 20)
    flushes = dispatcher.tick(T0 + 60, lambda flush: None)
    assert [(f.at - T0, f.group_labels, len(f.alerts)) for f in flushes] == [
        (30, (("model", "m"),), 2),
        (50, (("model", "other"),), 1),
    ]


def test_inhibit_stage_alone_drops_what_a_firing_up_alert_mutes() -> None:
    up = alert("up")
    stage = mute_stage(lambda n: Inhibitor([DEFAULT_INHIBIT_RULE], [up.label_map]))
    assert checks(stage(notice(up, alert("error_rate"), alert("drift")))) == ["up"]
    assert stage(notice(alert("error_rate"))) is None  # nothing left: stop here
    other = alert("error_rate", model="other")
    assert checks(stage(notice(other))) == ["error_rate"]


def test_silence_stage_alone_mutes_only_while_the_silence_is_active() -> None:
    silence = Silence.new(['check="drift"'], T0, T0 + 600, "ana", "retraining")
    stage = mute_stage(lambda n: SilenceMuter([silence], n.flush.at))
    assert checks(stage(notice(alert("drift"), alert("up")))) == ["up"]
    assert stage(notice(alert("drift"))) is None
    assert checks(stage(notice(alert("drift"), at=T0 + 600))) == ["drift"]  # expired


def test_dedup_stage_alone_goes_on_only_when_the_receiver_must_hear(outbox: Outbox) -> None:
    stage = dedup_stage(outbox)
    first = stage(notice(alert("error_rate")))
    assert first is not None and first.entry is not None
    outbox.record(first.flush.group_key, "default", first.entry, [], T0, T0 + 60)
    assert stage(notice(alert("error_rate"), at=T0 + 330)) is None  # told already
    assert stage(notice(alert("error_rate"), alert("drift"), at=T0 + 330)) is not None  # new
    assert stage(notice(alert("error_rate"), at=T0 + 30 + 4 * 3600)) is not None  # repeat
    resolved = replace(alert("error_rate"), state="resolved")
    assert stage(notice(resolved, at=T0 + 330)) is not None  # the all-clear


def test_retry_stage_alone_queues_one_durable_row_per_target(outbox: Outbox) -> None:
    receiver = Receiver("default", (Keep("keep://a"), Keep("keep://b")))
    stage = retry_stage(outbox, 3600, "http://dash", clock=lambda: T0 + 31)
    queued = stage(notice(alert("error_rate"), receiver=receiver))
    assert queued is not None
    rows = outbox.messages()
    assert [(r.message.target, r.deadline, r.message.state) for r in rows] == [
        ("default|keep://a", T0 + 31 + 3600, "firing"),
        ("default|keep://b", T0 + 31 + 3600, "firing"),
    ]
    assert rows[0].message.title == "[FIRING] m error_rate (critical)"
    entry = outbox.entry(queued.flush.group_key, "default")
    assert entry == LogEntry(frozenset({alert("error_rate").fingerprint}), frozenset(), T0 + 30)


def test_record_sent_stage_alone_marks_the_row_and_logs_the_outcome(
    outbox: Outbox, tmp_path: Path
) -> None:
    retry_stage(outbox, 3600, clock=lambda: T0)(notice(alert("error_rate")))
    [queued] = outbox.messages()
    log = AlertStateStore(tmp_path / "alerts.db")
    try:
        record_sent_stage(outbox, log)(queued, "keep://ops", "sent", "kept", T0 + 1)
        [record] = log.notifications()
    finally:
        log.close()
    assert [m.status for m in outbox.messages()] == ["sent"]
    assert outbox.depth() == 0
    assert (record.fingerprint, record.receiver, record.ok) == (
        alert("error_rate").fingerprint,
        "keep://ops",
        True,
    )


def test_build_pipeline_assembles_the_stages_in_order(outbox: Outbox) -> None:
    pipeline = build_pipeline(
        ROUTE,
        [Receiver("default", (Keep(),))],
        outbox,
        inhibitor=lambda: Inhibitor([], []),
        silencer=lambda at: SilenceMuter([], at),
    )
    assert pipeline.stage_names == STAGE_NAMES
    assert STAGE_NAMES == ("group", "inhibit", "silence", "dedup", "retry", "record-sent")
    assert "group → inhibit → silence → dedup → retry → record-sent" in repr(pipeline)


CONFIG = {
    "detector": {"defaults": {"runbook_url": "https://wiki.example/{model}/{check}"}},
    "models": {
        "m": {
            "checks": {"drift": {"runbook_url": "https://wiki.example/drift?f={subject}"}},
        }
    },
}


def test_runbook_urls_come_from_the_check_then_the_defaults() -> None:
    runbook = runbooks(config_from_dict(CONFIG))
    assert runbook({"model": "m", "check": "drift", "subject": "a b"}) == (
        "https://wiki.example/drift?f=a%20b"
    )
    assert runbook({"model": "m", "check": "up"}) == "https://wiki.example/m/up"
    assert runbook({"model": "other", "check": "nodata"}) == "https://wiki.example/other/nodata"
    assert runbooks(config_from_dict({}))({"model": "m", "check": "up"}) == ""
    with pytest.raises(ConfigError, match=r"models\.m\.checks\.up\.runbook_url.*\{team\}"):
        config_from_dict({"models": {"m": {"checks": {"up": {"runbook_url": "https://x/{team}"}}}}})


def test_notifications_and_handoff_carry_the_annotations() -> None:
    runbook = runbooks(config_from_dict(CONFIG))
    one = replace(alert("error_rate", version="v1"), latest_version="v2")
    title, body = render_group([one], "k", "http://dash:8501", runbook=runbook)
    assert title == "[FIRING] m error_rate (critical)"
    for line in (
        "error_rate broke",
        "value 0.3 vs threshold 0.05",
        "firing since 2027-01-15T08:00:00Z",
        "labels: check=error_rate, model=m, severity=critical, version=v1",
        "latest version: v2",
        "runbook: https://wiki.example/m/error_rate",
        "dashboard: http://dash:8501/model?model=m",
    ):
        assert line in body.splitlines()
    custom = render_group(
        [one, alert("drift")],
        "k",
        title_template="$STATUS $version since $since",
        body_template="$value > $threshold, see $runbook_url",
        runbook=runbook,
    )
    assert custom == (
        "FIRING v1 since 2027-01-15T08:00:00Z",
        "0.3 > 0.05, see https://wiki.example/m/error_rate\ndedup key: k",
    )
    posted = am_alert(one, T0, 240, "http://dash:8501", runbook(one.label_map))
    assert posted["annotations"] == {
        "summary": "error_rate broke",
        "value": "0.3",
        "threshold": "0.05",
        "since": "2027-01-15T08:00:00Z",
        "dashboard": "http://dash:8501/model?model=m",
        "runbook_url": "https://wiki.example/m/error_rate",
        "latest_version": "v2",
    }
    assert posted["labels"] == {  # the empty subject is dropped, as Alertmanager wants
        "model": "m",
        "check": "error_rate",
        "severity": "critical",
        "version": "v1",
        "alertname": "error_rate",
    }
