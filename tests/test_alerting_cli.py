"""`watchkeeper silence add|list|expire` and `watchkeeper alerts list|ack|report`, as a user
types them, on a state file a real AlertManager wrote."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from watchkeeper.alerting import AlertManager, SilenceStore
from watchkeeper.alerting.feedback import FeedbackStore, rule_report
from watchkeeper.cli import main
from watchkeeper.config import config_from_dict
from watchkeeper.tsdb import Finding

T0 = time.time() - 6 * 3600


def finding(model: str, check: str, minute: float, breached: bool) -> Finding:
    return Finding(
        model=model,
        check=check,
        subject="",
        statistic="s",
        value=1.0 if breached else 0.0,
        threshold=0.5,
        breached=breached,
        severity="critical",
        window_start=T0 + (minute - 5) * 60,
        window_end=T0 + minute * 60,
    )


def fill(data_dir: Path) -> None:
    """Two error_rate episodes (resolved after 10 and 20 minutes) and one drift episode."""
    config = config_from_dict(
        {
            "storage": {"path": str(data_dir)},
            "detector": {"defaults": {"checks": {"error_rate": {"for": 0}, "drift": {"for": 0}}}},
            "alerting": {"console": False},
        }
    )
    pattern = [(0, True), (10, False), (30, True), (50, False)]
    findings = [finding("scorer", "error_rate", m, b) for m, b in pattern]
    findings += [finding("scorer", "drift", 60, True)]
    manager = AlertManager(config, config.storage.alert_state_file, [])
    try:
        manager.process(findings)
    finally:
        manager.close()


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_silence_add_list_expire(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    where = ["--data-dir", str(tmp_path)]
    code, out, _ = run(
        capsys,
        "silence",
        "add",
        'team="risk"',
        "check!=up",
        "--duration",
        "2h",
        "--author",
        "ana",
        "--comment",
        "deploying a fix",
        *where,
    )
    assert code == 0
    silence_id = out.strip()
    code, out, _ = run(capsys, "silence", "list", *where)
    assert code == 0
    line = next(line for line in out.splitlines() if line.startswith(silence_id))
    assert "active" in line and 'team="risk" check!="up"' in line and "ana" in line
    assert run(capsys, "silence", "expire", silence_id, *where)[0] == 0
    code, out, _ = run(capsys, "silence", "list", "--active", *where)
    assert silence_id not in out
    store = SilenceStore(tmp_path / "alerts.db")
    try:
        (kept,) = store.silences()  # expired, and kept for audit
    finally:
        store.close()
    assert kept.status(time.time()) == "expired" and kept.comment == "deploying a fix"


def test_bad_silences_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(
        capsys, "silence", "add", "team", "--comment", "x", "--data-dir", str(tmp_path)
    )
    assert code == 1 and "not a label matcher" in err
    code, _, err = run(capsys, "silence", "expire", "nope", "--data-dir", str(tmp_path))
    assert code == 1 and "no silence with id 'nope'" in err


def test_ack_and_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fill(tmp_path)
    where = ["--data-dir", str(tmp_path)]
    code, out, _ = run(capsys, "alerts", "list", *where)
    assert code == 0
    error_rate = next(
        line.split()[0] for line in out.splitlines()[1:] if "check=error_rate" in line
    )
    code, out, _ = run(
        capsys, "alerts", "ack", error_rate[:6], "--false-positive", "--by", "bo", *where
    )
    assert code == 0
    assert "acknowledged scorer error_rate" in out and "false positive" in out
    code, out, _ = run(capsys, "alerts", "report", *where)
    assert code == 0
    lines = out.splitlines()
    assert lines[1].split() == ["scorer", "error_rate", "2", "1", "0", "15m"]
    assert lines[2].split() == ["scorer", "drift", "1", "0", "0", "-"]


def test_only_the_latest_episode_is_acknowledged(tmp_path: Path) -> None:
    fill(tmp_path)
    store = FeedbackStore(tmp_path / "alerts.db")
    try:
        fp = next(e.fingerprint for e in store.episodes() if e.check == "error_rate")
        store.acknowledge(fp, "bo", time.time(), "true")
        first, second = store.episodes(fp)
        stats = rule_report(store.episodes())
        with pytest.raises(KeyError, match="no alert"):
            store.acknowledge("zzzz", "bo", time.time())
    finally:
        store.close()
    assert (first.verdict, first.acked_by) == ("true", "bo")
    assert (second.verdict, second.acked_by) == (None, None)
    assert [(s.check, s.fired, s.true_positives) for s in stats] == [
        ("error_rate", 2, 1),
        ("drift", 1, 0),
    ]
