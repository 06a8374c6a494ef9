"""`watchkeeper replay`, `explain` and `test-rules` on seeded streams with known changes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from watchkeeper.config import config_from_dict
from watchkeeper.detector import replay_frames
from watchkeeper.detector.streams import Change, StreamSpec, generate

WATCHKEEPER = str(Path(sys.executable).with_name("watchkeeper"))
DAY = 86400.0
HOUR = 3600.0
REQUIRED = {
    "time",
    "state",
    "model",
    "check",
    "subject",
    "severity",
    "value",
    "threshold",
    "summary",
}


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [WATCHKEEPER, *args], capture_output=True, text=True, timeout=120, cwd=cwd
    )


def write(tmp_path: Path, spec: StreamSpec) -> dict[str, Path]:
    predictions, labels, reference = generate(spec)
    paths = {n: tmp_path / f"{n}.csv" for n in ("predictions", "labels", "reference")}
    predictions.to_csv(paths["predictions"], index=False)
    labels.to_csv(paths["labels"], index=False)
    reference.to_csv(paths["reference"], index=False)
    return paths


def replayed(spec: StreamSpec, **kwargs: Any) -> list[dict[str, Any]]:
    predictions, labels, reference = generate(spec)
    alerts: list[dict[str, Any]] = []
    replay_frames(predictions, None, labels=labels, reference=reference, alerts=alerts, **kwargs)
    return alerts


def firing(alerts: list[dict[str, Any]]) -> list[tuple[str, str | None]]:
    return [(a["check"], a["subject"]) for a in alerts if a["state"] == "firing"]


def test_replay_cli_finds_a_shift_and_writes_alert_lines(tmp_path: Path) -> None:
    at = 1.5 * DAY + 600
    spec = StreamSpec(
        days=2.5,
        per_hour=250,
        numeric=6,
        categorical=2,
        seed=3,
        changes=(Change("mean_shift", at, feature="x4", amount=1.0),),
    )
    paths = write(tmp_path, spec)
    # the shift comes with a new model version: alerts and findings say which
    frame = pd.read_csv(paths["predictions"])
    epoch = pd.Timestamp(0, tz="UTC")
    times = (pd.to_datetime(frame["timestamp"], utc=True) - epoch).dt.total_seconds()
    frame["version"] = np.where(times < spec.start + at, "v1", "v2")
    frame.to_csv(paths["predictions"], index=False)
    result = cli(
        "replay",
        "--predictions",
        str(paths["predictions"]),
        "--labels",
        str(paths["labels"]),
        "--reference",
        str(paths["reference"]),
        "--out",
        "alerts.jsonl",
        "--findings-out",
        "findings.jsonl",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert "windows" in result.stderr  # progress
    assert "alerts fired" in result.stdout and "drift" in result.stdout  # the summary
    alerts = [json.loads(line) for line in (tmp_path / "alerts.jsonl").read_text().splitlines()]
    assert alerts and all(set(a) >= REQUIRED for a in alerts)
    assert firing(alerts) == [("drift", "x4")]
    first = alerts[0]
    assert first["state"] == "firing" and first["model"] == "model"
    assert first["severity"] == "warning" and first["threshold"] == 0.1
    # hourly windows, for 15m: the second breached window after the change fires
    assert spec.start + at < first["timestamp"] <= spec.start + at + 3 * HOUR
    assert first["time"].endswith("Z") and "x4" in first["summary"]
    assert first["version"] == "v2"
    findings = [json.loads(x) for x in (tmp_path / "findings.jsonl").read_text().splitlines()]
    assert {f["version"] for f in findings} == {"v1", "v2"}
    drifted = {f["subject"] for f in findings if f["check"] == "drift"}
    assert {"x0", "c1", "prediction", "label"} <= drifted  # features, output, late labels
    assert {
        "id",
        "window_start",
        "window_end",
        "reference_id",
        "rule_hash",
        "statistic",
        "value",
        "threshold",
        "p_value",
    } <= set(findings[0])
    assert {f["check"] for f in findings} >= {
        "up",
        "error_rate",
        "drift",
        "missing",
        "out_of_range",
        "schema",
        "latency",
        "efficacy",
    }

    # explain recomputes the finding behind the alert from the same files
    explained = cli(
        "explain",
        first["finding_id"],
        "--findings",
        "findings.jsonl",
        "--predictions",
        str(paths["predictions"]),
        "--labels",
        str(paths["labels"]),
        "--reference",
        str(paths["reference"]),
        cwd=tmp_path,
    )
    assert explained.returncode == 0, explained.stdout + explained.stderr
    assert "recomputed: same numbers" in explained.stdout
    assert ", version v2\n" in explained.stdout
    assert "reference bins" in explained.stdout and "'x4'" in explained.stdout
    missing = cli(
        "explain",
        "0000",
        "--findings",
        "findings.jsonl",
        "--predictions",
        str(paths["predictions"]),
        cwd=tmp_path,
    )
    assert missing.returncode == 1 and "no finding with id '0000'" in missing.stderr


def test_no_change_for_ten_days_gives_no_alert() -> None:
    alerts = replayed(StreamSpec(days=10, per_hour=300, seed=21))
    assert alerts == []


def test_without_a_reference_the_first_day_is_the_reference() -> None:
    at = 2 * DAY + 600
    spec = StreamSpec(
        days=3,
        per_hour=300,
        numeric=5,
        categorical=1,
        seed=4,
        changes=(Change("categorical", at, feature="c0"),),
    )
    predictions, labels, _ = generate(spec)
    alerts: list[dict[str, Any]] = []
    replay_frames(predictions, None, labels=labels, alerts=alerts)
    assert firing(alerts) == [("drift", "c0")]
    assert alerts[0]["timestamp"] > spec.start + at


def test_late_labels_delay_the_efficacy_verdict() -> None:
    at = 2 * DAY + 600
    spec = StreamSpec(
        days=3,
        per_hour=300,
        numeric=4,
        categorical=1,
        seed=5,
        label_delay=(2 * HOUR, 3 * HOUR),
        changes=(Change("efficacy", at, amount=0.4),),
    )
    alerts = replayed(spec)
    hits = [a for a in alerts if a["check"] == "efficacy" and a["state"] == "firing"]
    assert hits and {a["check"] for a in alerts} == {"efficacy"}
    # judged only once labels of a window after the change have arrived (3 h late at most)
    assert hits[0]["timestamp"] >= spec.start + at + 3 * HOUR
    assert hits[0]["timestamp"] <= spec.start + at + 8 * HOUR
    assert "coverage" in hits[0]["summary"]


@pytest.mark.parametrize(
    ("change", "check"),
    [
        (Change("outage", 1.5 * DAY, 1.5 * DAY + 3 * HOUR), "up"),
        (Change("error_burst", 1.5 * DAY, 1.5 * DAY + 2 * HOUR, amount=0.25), "error_rate"),
    ],
)
def test_transient_incidents_fire_and_resolve(change: Change, check: str) -> None:
    spec = StreamSpec(days=2.5, per_hour=300, numeric=3, categorical=1, seed=6, changes=(change,))
    alerts = [a for a in replayed(spec) if a["check"] == check]
    assert [a["state"] for a in alerts] == ["firing", "resolved"]
    assert alerts[0]["timestamp"] <= spec.start + change.at + 2 * HOUR
    assert change.until is not None
    assert alerts[1]["timestamp"] <= spec.start + change.until + 2 * HOUR


def test_configuration_and_parquet_input(tmp_path: Path) -> None:
    spec = StreamSpec(
        days=2,
        per_hour=200,
        numeric=3,
        categorical=1,
        seed=8,
        changes=(Change("latency", 1.5 * DAY, amount=3.0),),
    )
    predictions, _labels, _reference = generate(spec)
    predictions["model"] = "scorer"
    predictions.to_parquet(tmp_path / "p.parquet")
    (tmp_path / "c.yaml").write_text(
        "models:\n  scorer:\n    window: 1h\n    every: 1h\n    labels: {team: risk}\n"
        "    checks:\n      latency: {slo_ms: 100, for: 0s, severity: critical}\n"
    )
    result = cli(
        "replay",
        "--predictions",
        "p.parquet",
        "--config",
        "c.yaml",
        "--out",
        "a.jsonl",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    alerts = [json.loads(line) for line in (tmp_path / "a.jsonl").read_text().splitlines()]
    latency = [a for a in alerts if a["check"] == "latency"]
    assert latency[0]["model"] == "scorer" and latency[0]["severity"] == "critical"
    assert latency[0]["threshold"] == pytest.approx(0.1)  # the SLO, in seconds
    assert latency[0]["subject"] is None


RULES = """
config:
  models:
    model: {window: 1h, every: 1h}
tests:
  - name: mean shift pages within hours
    stream:
      days: 2.5
      per_hour: 250
      numeric: 4
      categorical: 1
      seed: 2
      changes: [{kind: mean_shift, at: 36h, feature: x3, amount: 1.0}]
    expect:
      - {at: 35h, absent: [{check: drift}]}
      - {at: 40h, firing: [{check: drift, subject: x3}]}
      - {at: 40h, absent: [{check: error_rate}]}
"""


def test_rule_tests_pass_and_fail_with_a_diff(tmp_path: Path) -> None:
    good = tmp_path / "rules.yaml"
    good.write_text(RULES)
    passed = cli("test-rules", str(good), cwd=tmp_path)
    assert passed.returncode == 0, passed.stdout + passed.stderr
    assert "ok   mean shift pages within hours" in passed.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        RULES.replace("subject: x3}", "subject: x1}").replace(
            "absent: [{check: error_rate}]", "absent: [{check: drift, subject: x3}]"
        )
    )
    failed = cli("test-rules", str(bad), cwd=tmp_path)
    assert failed.returncode == 1
    assert "FAIL mean shift pages within hours" in failed.stdout
    assert "expected firing {'check': 'drift', 'subject': 'x1'}; firing: drift/x3" in failed.stdout
    assert "expected no alert like {'check': 'drift', 'subject': 'x3'}" in failed.stdout
    broken = tmp_path / "broken.yaml"
    broken.write_text("tests:\n  - stream: {days: 1, colour: red}\n")
    error = cli("test-rules", str(broken), cwd=tmp_path)
    assert error.returncode == 2 and "unknown stream keys ['colour']" in error.stderr


def test_a_finding_is_the_same_whatever_the_config_source() -> None:
    spec = StreamSpec(days=2, per_hour=200, numeric=3, categorical=1, seed=9)
    predictions, _labels, reference = generate(spec)
    config = config_from_dict({"models": {"model": {"window": "1h", "every": "1h"}}})
    a: list[dict[str, Any]] = []
    summary = replay_frames(predictions, None, reference=reference, config=config, alerts=a)
    assert summary.windows == 46 and a == []
    assert isinstance(pd.Timestamp(predictions["timestamp"].iloc[0]), pd.Timestamp)


def batches_agree(a: Any, b: Any) -> None:
    for name in ("times", "ids", "output", "error", "latency_s", "fallback", "weight"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    assert a.label.dtype == b.label.dtype
    np.testing.assert_array_equal(a.label, b.label)
    np.testing.assert_array_equal(a.label_time, b.label_time)
    np.testing.assert_array_equal(a.versions, b.versions)
    assert a.version_names == b.version_names
    assert list(a.columns) == list(b.columns)
    for name in a.columns:
        assert a.columns[name].dtype == b.columns[name].dtype, name
        np.testing.assert_array_equal(a.columns[name], b.columns[name], err_msg=name)
        np.testing.assert_array_equal(a.missing(name), b.missing(name), err_msg=name)
        if a.columns[name].dtype == object:
            categories = ("a", "b", "c")  # "d" and "zz" are unseen, None is missing
            np.testing.assert_array_equal(a.codes(name, categories), b.codes(name, categories))


@pytest.mark.parametrize("suffix", ["csv", "parquet"])
def test_replay_reads_files_into_the_same_batch_as_pandas(tmp_path: Path, suffix: str) -> None:
    from watchkeeper.detector import batch_from_frame
    from watchkeeper.detector.frame import read_table
    from watchkeeper.detector.replay import reference_batch
    from watchkeeper.detector.tables import (
        batch_from_table,
        read_file,
        reference_batch_from_table,
    )

    spec = StreamSpec(
        days=0.5,
        per_hour=40,
        numeric=2,
        categorical=2,
        seed=3,
        changes=(
            Change("unseen_category", 3 * HOUR, feature="c1", amount=0.3),
            Change("missing", 2 * HOUR, feature="c0", amount=0.2),
        ),
    )
    predictions, labels, reference = generate(spec)
    predictions = predictions.iloc[::-1].reset_index(drop=True)  # out of time order
    predictions["version"] = np.where(np.arange(len(predictions)) % 3 == 0, "v2", "v1")
    predictions["flag"] = np.arange(len(predictions)) % 2 == 0  # a boolean feature
    labels = pd.concat([labels, labels.iloc[:5].assign(label=7)])  # later labels win
    labels = labels.iloc[7:]  # some predictions never get one
    paths = {}
    for name, frame in (("p", predictions), ("l", labels), ("r", reference)):
        paths[name] = str(tmp_path / f"{name}.{suffix}")
        if suffix == "csv":
            frame.to_csv(paths[name], index=False)
        else:
            frame.to_parquet(paths[name])
    ours = batch_from_table(read_file(paths["p"]), read_file(paths["l"]))
    theirs = batch_from_frame(read_table(paths["p"]), read_table(paths["l"]))
    batches_agree(ours, theirs)
    assert ours.missing("x0").any() and (ours.codes("c1", ("a", "b")) == -1).any()
    batches_agree(
        reference_batch_from_table(read_file(paths["r"])),
        reference_batch(read_table(paths["r"])),
    )
