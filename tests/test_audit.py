"""The audit log, as operators use it: silences made and expired from the CLI and the
dashboard, every acknowledgement, configuration edits and token rotations, each with who did
it; never a secret; `watchkeeper audit` as a table and as JSON lines; a locked state file."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sqlite3
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from streamlit.testing.v1 import AppTest

from watchkeeper.alerting import AlertManager, read_episodes, read_silences
from watchkeeper.alerting.audit import Actor, AuditLog, read_events
from watchkeeper.audit import record_config_load, record_tokens_reload
from watchkeeper.cli import main
from watchkeeper.collectors.auth import TokenChange
from watchkeeper.config import config_from_dict
from watchkeeper.dashboard import app_path
from watchkeeper.dashboard.auth import write_auth_file
from watchkeeper.runtime import Stack
from watchkeeper.tsdb import Finding

T0 = time.time() - 3 * 3600


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def events_json(capsys: pytest.CaptureFixture[str], *argv: str) -> list[dict[str, Any]]:
    """`watchkeeper audit --json ...`, each line parsed."""
    code, out, err = run(capsys, "audit", *argv, "--json")
    assert code == 0, err
    return [json.loads(line) for line in out.splitlines()]


def fire(data_dir: Path) -> str:
    """One firing error_rate alert of `scorer` (its episode recorded); its fingerprint."""
    config = config_from_dict(
        {
            "storage": {"path": str(data_dir)},
            "detector": {"defaults": {"checks": {"error_rate": {"for": 0}}}},
            "alerting": {"console": False},
        }
    )
    finding = Finding(
        model="scorer",
        check="error_rate",
        subject="",
        statistic="s",
        value=1.0,
        threshold=0.5,
        breached=True,
        severity="critical",
        window_start=T0,
        window_end=T0 + 300,
    )
    manager = AlertManager(config, config.storage.alert_state_file, [])
    try:
        manager.process([finding])
    finally:
        manager.close()
    (episode,) = read_episodes(config.storage.alert_state_file)
    return episode.fingerprint


# --- silences and acknowledgements from the CLI ---------------------------------------------


def test_silences_added_and_expired_from_the_cli_name_who_did_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "watchkeeper.yaml"
    config.write_text(yaml.safe_dump({"storage": {"path": str(tmp_path / "data")}}))
    where = ["--config", str(config)]
    code, out, err = run(
        capsys,
        "silence", "add", 'model="fraud-scorer"', "--duration", "2h",
        "--author", "ana", "--comment", "retraining tonight", *where,
    )  # fmt: skip
    assert code == 0, err
    silence_id = out.strip()
    code, _, err = run(capsys, "silence", "expire", silence_id, "--by", "bo", *where)
    assert code == 0, err

    expired, created = events_json(capsys, *where)  # newest first
    assert (created["action"], created["actor"], created["target"]) == (
        "silence.created",
        "ana",
        silence_id,
    )
    assert created["via"] == "cli" and created["os_user"]
    assert created["detail"] == {
        "matchers": ['model="fraud-scorer"'],
        "duration": "2h",
        "comment": "retraining tonight",
        "created_by": "ana",
        "starts": created["detail"]["starts"],
        "ends": created["detail"]["ends"],
    }
    assert (expired["action"], expired["actor"], expired["target"]) == (
        "silence.expired",
        "bo",
        silence_id,
    )
    assert expired["detail"]["created_by"] == "ana"

    # The table, newest first, and the filters the docs show.
    code, out, _ = run(capsys, "audit", *where, "--since", "7d", "--action", "silence")
    assert code == 0
    header, first, second = out.splitlines()
    assert header.split()[:5] == ["TIME", "ACTOR", "ACTION", "TARGET", "VIA"]
    assert first.split()[2:5] == ["bo", "silence.expired", silence_id]
    assert first.split()[5] == f"cli:{expired['os_user']}"
    assert second.split()[2:5] == ["ana", "silence.created", silence_id]
    assert 'matchers=model="fraud-scorer"' in second and "comment=retraining tonight" in second
    code, out, _ = run(capsys, "audit", *where, "--action", "silence.created")
    assert len(out.splitlines()) == 2 and "silence.expired" not in out
    code, out, _ = run(capsys, "audit", *where, "--action", "alert")
    assert out.splitlines()[1:] == []

    # Expiring it again changes nothing, and records nothing.
    assert run(capsys, "silence", "expire", silence_id, "--by", "cy", *where)[0] == 0
    assert len(events_json(capsys, *where)) == 2


def test_every_acknowledgement_is_kept_not_only_the_latest(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    full = fire(tmp_path)
    where = ["--data-dir", str(tmp_path)]
    code, _, err = run(
        capsys, "alerts", "ack", full[:8], "--by", "ana", "--false-positive", "--note", "noisy",
        *where,
    )  # fmt: skip
    assert code == 0, err
    code, _, err = run(
        capsys, "alerts", "ack", full[:8], "--by", "bo", "--true-positive", "--note", "real",
        *where,
    )  # fmt: skip
    assert code == 0, err

    (episode,) = read_episodes(tmp_path / "alerts.db")
    assert (episode.acked_by, episode.verdict) == ("bo", "true")  # the episode keeps the latest
    second, first = events_json(capsys, *where, "--action", "alert.acknowledged")
    assert [(e["actor"], e["target"]) for e in (first, second)] == [("ana", full), ("bo", full)]
    assert [(e["detail"]["verdict"], e["detail"]["note"]) for e in (first, second)] == [
        ("false", "noisy"),
        ("true", "real"),
    ]
    labels = first["detail"]["labels"]
    assert labels["model"] == "scorer" and labels["check"] == "error_rate"


def test_since_keeps_only_recent_events(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = AuditLog(tmp_path / "alerts.db")
    try:
        old = log.append(
            Actor("ana", "cli"), "silence.created", "old", {}, time.time() - 10 * 86400
        )
        new = log.append(Actor("bo", "cli"), "silence.created", "new", {}, time.time())
    finally:
        log.close()
    where = ["--data-dir", str(tmp_path)]
    assert [e["target"] for e in events_json(capsys, *where)] == [new.target, old.target]
    assert [e["target"] for e in events_json(capsys, *where, "--since", "7d")] == ["new"]


def test_the_log_is_append_only(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "alerts.db")
    try:
        log.append(Actor("ana", "cli"), "silence.created", "s1", {}, time.time())
    finally:
        log.close()
    conn = sqlite3.connect(tmp_path / "alerts.db")
    try:
        for statement in ("UPDATE audit_log SET actor = 'eve'", "DELETE FROM audit_log"):
            with pytest.raises(sqlite3.DatabaseError, match="append-only"):
                conn.execute(statement)
    finally:
        conn.close()
    assert [e.actor for e in read_events(tmp_path / "alerts.db")] == ["ana"]


def test_a_state_file_from_before_the_audit_log_gains_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A state file written by an older version (silences, no audit tables) is read as it is
    and gains the audit log on its first write."""
    path = tmp_path / "alerts.db"
    conn = sqlite3.connect(path)
    conn.executescript(
        "CREATE TABLE silences (id TEXT PRIMARY KEY, matchers TEXT NOT NULL, "
        "starts_at REAL NOT NULL, ends_at REAL NOT NULL, created_by TEXT NOT NULL, "
        "comment TEXT NOT NULL, created_at REAL NOT NULL, expired_at REAL);"
        "INSERT INTO silences VALUES "
        "('oldone', '[\"team=\\\"risk\\\"\"]', 1, 2, 'zed', 'c', 1, NULL);"
    )
    conn.close()
    where = ["--data-dir", str(tmp_path)]
    assert events_json(capsys, *where) == []  # read-only: nothing created
    code, out, err = run(
        capsys, "silence", "add", "team=risk", "--author", "ana", "--comment", "c", *where
    )
    assert code == 0, err
    assert [e["actor"] for e in events_json(capsys, *where)] == ["ana"]
    assert {s.id for s in read_silences(path)} == {"oldone", out.strip()}


# --- a locked state file ----------------------------------------------------------------------


@pytest.fixture
def locked(tmp_path: Path) -> Iterator[Path]:
    """A data directory whose alert state file another process holds the write lock of, and
    a config that waits only 0.3 s for it."""
    fire(tmp_path)
    config = tmp_path / "watchkeeper.yaml"
    config.write_text(yaml.safe_dump({"storage": {"path": str(tmp_path), "busy_timeout": "300ms"}}))
    blocker = sqlite3.connect(tmp_path / "alerts.db", isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        yield config
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()


def test_a_locked_state_file_fails_the_write_and_records_nothing(
    locked: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Decided: a silence or an acknowledgement and its audit line are one transaction, so a
    state file that cannot be written fails the command (exit 1, saying so) and leaves
    neither; there is never a silence without its audit line."""
    where = ["--config", str(locked)]
    code, out, err = run(
        capsys, "silence", "add", "team=risk", "--author", "ana", "--comment", "c", *where
    )
    assert code == 1 and out == ""
    assert "database is locked" in err and "nothing was written" in err
    fingerprint = read_episodes(locked.parent / "alerts.db")[0].fingerprint
    code, _, err = run(capsys, "alerts", "ack", fingerprint, "--by", "ana", *where)
    assert code == 1 and "database is locked" in err
    assert read_silences(locked.parent / "alerts.db") == []
    assert read_events(locked.parent / "alerts.db") == []
    assert read_episodes(locked.parent / "alerts.db")[0].acked_by is None


def test_a_locked_state_file_does_not_stop_a_process_loading_its_config(
    locked: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    """Decided: recording a configuration load or a token reload is bookkeeping; when it
    cannot be written, a warning says so and the process carries on."""
    caplog.set_level(logging.WARNING, logger="watchkeeper.audit")
    code, out, err = run(capsys, "detect", "--once", "--config", str(locked))
    assert code == 0, err
    assert "judged 0 model(s)" in out
    assert any(
        "not recorded" in r.getMessage() and "database is locked" in r.getMessage()
        for r in caplog.records
    )
    change = TokenChange(locked, ("new",), (), (), 1)
    assert (
        record_tokens_reload(change, locked.parent / "alerts.db", "serve", busy_timeout_s=0.1)
        is None
    )
    assert read_events(locked.parent / "alerts.db") == []


# --- configuration changes --------------------------------------------------------------------

ENV_SECRET = "env-secret-7c1d9e"
INLINE_BEFORE, INLINE_AFTER = "inline-secret-3f8a", "inline-secret-b260"


def test_a_changed_config_is_recorded_by_key_path_never_by_value(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WK_AUDIT_SECRET", ENV_SECRET)
    data = tmp_path / "data"
    config = tmp_path / "watchkeeper.yaml"
    settings: dict[str, Any] = {
        "storage": {"path": str(data)},
        "alerting": {
            "console": False,
            "receivers": ["json://127.0.0.1:9/hook?token=${WK_AUDIT_SECRET}"],
            "named_receivers": [
                {"name": "ops", "urls": [f"json://127.0.0.1:9/ops?token={INLINE_BEFORE}"]}
            ],
            "default_inhibit": True,
        },
    }
    config.write_text(yaml.safe_dump(settings))
    detect = ["detect", "--once", "--config", str(config)]
    assert run(capsys, *detect)[0] == 0

    # Edit: an inline secret changes, a key goes, another comes; then load again.
    named = settings["alerting"]["named_receivers"]
    named[0]["urls"] = [f"json://127.0.0.1:9/ops?token={INLINE_AFTER}"]
    del settings["alerting"]["default_inhibit"]
    settings["alerting"]["dashboard_url"] = "http://dash.example"
    config.write_text(yaml.safe_dump(settings))
    assert run(capsys, *detect)[0] == 0
    assert run(capsys, *detect)[0] == 0  # unchanged: nothing more recorded

    where = ["--data-dir", str(data)]
    changed, loaded = events_json(capsys, *where, "--action", "config")
    sha_after = hashlib.sha256(config.read_bytes()).hexdigest()
    assert loaded["action"] == "config.loaded" and loaded["target"] == str(config.resolve())
    assert changed["action"] == "config.changed" and changed["via"] == "detect"
    detail = changed["detail"]
    assert isinstance(detail, dict)
    assert detail["changed"] == ["alerting.named_receivers.0.urls.0"]
    assert detail["added"] == ["alerting.dashboard_url"]
    assert detail["removed"] == ["alerting.default_inhibit"]
    assert detail["sha256"] == sha_after
    assert detail["previous_sha256"] == loaded["detail"]["sha256"]
    assert detail["owner"] == changed["actor"] and detail["loaded_by"] == changed["os_user"]

    # No value is anywhere: not in the table, not in the JSON, not in the state file.
    table = run(capsys, "audit", *where)[1]
    assert "config.changed" in table and "alerting.named_receivers.0.urls.0" in table
    dump = table + json.dumps([changed, loaded])
    raw = (data / "alerts.db").read_bytes()
    for secret in (ENV_SECRET, INLINE_BEFORE, INLINE_AFTER, "dash.example"):
        assert secret not in dump
        assert secret.encode() not in raw


def test_a_dashboard_on_an_empty_data_directory_records_nothing_and_creates_nothing(
    tmp_path: Path,
) -> None:
    config = tmp_path / "watchkeeper.yaml"
    config.write_text("storage: {path: nowhere}\n")
    state = tmp_path / "nowhere" / "alerts.db"
    assert record_config_load(config, state, "dashboard", create=False) is None
    assert not state.parent.exists()
    assert record_config_load(config, state, "serve") is not None
    config.write_text("storage: {path: elsewhere}\n")
    event = record_config_load(config, state, "dashboard", create=False)
    assert event is not None and event.detail["changed"] == ["storage.path"]


# --- token rotation ---------------------------------------------------------------------------

OLD, NEW, BATCH, LEGACY = "tok-old-91ab", "tok-new-52cd", "tok-batch-07ef", "tok-legacy-44aa"


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _write(path: Path, entries: list[tuple[str, str]]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(
        yaml.safe_dump([{"name": n, "models": ["*"], "sha256": _digest(t)} for n, t in entries])
    )
    os.replace(tmp, path)


def test_a_tokens_file_rotation_records_token_names_only(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tokens = tmp_path / "tokens.yaml"
    _write(tokens, [("svc", OLD), ("legacy", LEGACY)])
    config = config_from_dict(
        {"storage": {"path": str(tmp_path)}, "ingest": {"port": 0, "tokens_file": str(tokens)}}
    )
    with Stack(config, roles=["ingest"]) as stack:
        stack.start()
        _write(tokens, [("svc", NEW), ("batch", BATCH)])
        body = {"predictions": [{"model": "m", "prediction_id": "p", "timestamp": time.time()}]}
        deadline = time.monotonic() + 30
        with httpx.Client(base_url=stack.ingest_url, timeout=10) as client:
            while not read_events(tmp_path / "alerts.db", prefix="tokens."):
                assert time.monotonic() < deadline, "no tokens.reloaded event"
                client.post("/v1/ingest", json=body, headers={"Authorization": f"Bearer {NEW}"})
                time.sleep(0.2)

    (event,) = events_json(capsys, "--data-dir", str(tmp_path), "--action", "tokens")
    assert event["action"] == "tokens.reloaded" and event["via"] == "serve"
    assert event["target"] == str(tokens)
    detail = event["detail"]
    assert isinstance(detail, dict)
    assert (detail["added"], detail["removed"], detail["rotated"]) == (
        ["batch"],
        ["legacy"],
        ["svc"],
    )
    assert detail["in_force"] == 2
    dump = json.dumps(event) + run(capsys, "audit", "--data-dir", str(tmp_path))[1]
    raw = (tmp_path / "alerts.db").read_bytes()
    for token in (OLD, NEW, BATCH, LEGACY):
        for secret in (token, _digest(token)):
            assert secret not in dump and secret.encode() not in raw


# --- the dashboard ----------------------------------------------------------------------------


def dashboard(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, *args: str) -> AppTest:
    config = tmp_path / "watchkeeper.yaml"
    config.write_text(yaml.safe_dump({"dashboard": {"health_urls": []}}))
    monkeypatch.setattr(
        sys, "argv", [str(app_path()), "--config", str(config), "--data-dir", str(tmp_path), *args]
    )
    return AppTest.from_file(str(app_path()), default_timeout=60)


def click(at: AppTest, label: str) -> AppTest:
    (button,) = [b for b in at.button if b.label == label]
    return button.click().run()


def alerts_page(at: AppTest) -> AppTest:
    at.sidebar.selectbox(key="refresh").select("off").run()
    at.switch_page("page_alerts.py").run()
    assert not at.exception, at.exception
    return at


def test_the_dashboard_records_who_added_and_expired_a_silence(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    fire(tmp_path)
    at = alerts_page(dashboard(monkeypatch, tmp_path).run())
    assert "Nothing recorded yet" in "\n".join(c.value for c in at.caption)
    at.text_area(key="silence_matchers").input('model="scorer"')
    at.text_input(key="silence_comment").input("deploying")
    at.text_input(key="silence_author").input("bo")
    at = click(at, "Add silence")
    assert not at.exception and not at.error, at.error
    (silence,) = read_silences(tmp_path / "alerts.db")

    assert at.text_input(key="expire_author").value == "bo"  # remembered from the add
    at.text_input(key="expire_author").input("")
    at = click(at, "Expire now")
    assert "say who expires the silence" in at.error[0].value
    at.text_input(key="expire_author").input("cy")
    at = click(at, "Expire now")
    assert not at.exception and not at.error, at.error

    expired, created = read_events(tmp_path / "alerts.db")
    assert (created.action, created.actor, created.via) == ("silence.created", "bo", "dashboard")
    assert (expired.action, expired.actor, expired.target) == ("silence.expired", "cy", silence.id)
    shown = next(d.value for d in at.dataframe if "action" in d.value.columns)
    assert shown[["actor", "action", "target"]].values.tolist() == [
        ["cy", "silence.expired", silence.id],
        ["bo", "silence.created", silence.id],
    ]


def test_with_login_the_dashboard_records_the_logged_in_name(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    full = fire(tmp_path)
    auth = write_auth_file(tmp_path / "auth", "s3cret")
    at = dashboard(monkeypatch, tmp_path, "--auth-file", str(auth)).run()
    at.text_input(key="login_name").input("dee")
    at.text_input(key="password").input("s3cret")
    at.button[0].click().run()
    at = alerts_page(at)
    at.radio(key="ack_verdict").set_value("false positive")
    at.text_input(key="ack_note").input("seasonal")
    at = click(at, "Acknowledge")
    at.radio(key="ack_verdict").set_value("true positive")
    at = click(at, "Acknowledge")
    assert not at.exception and not at.error, at.error

    events = read_events(tmp_path / "alerts.db", prefix="alert.")
    assert [(e.actor, e.via, e.target) for e in events] == [("dee", "dashboard login", full)] * 2
    assert [e.detail["verdict"] for e in events] == ["true", "false"]


@pytest.mark.parametrize("module", ["watchkeeper.alerting.audit", "watchkeeper.audit"])
def test_docstring_examples(module: str) -> None:
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(module))
    assert result.attempted > 0 and result.failed == 0
