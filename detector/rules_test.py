"""`watchkeeper test-rules FILE`: unit tests for a configuration, like `promtool test rules`.

The file (YAML) holds an optional `config` (a `watchkeeper.yaml` mapping) and `tests`. Each
test generates a seeded prediction stream with stated changes (or reads replay files), replays
it with the configuration, and checks which alerts are firing at given times::

    config:
      models:
        fraud: {window: 1h, every: 1h, checks: {drift: {p_value: 0.01}}}
    tests:
      - name: a mean shift of x1 pages within a few hours
        model: fraud
        stream:
          days: 3
          per_hour: 300
          numeric: 5
          categorical: 1
          seed: 1
          changes: [{kind: mean_shift, at: 48h, feature: x1, amount: 1.0}]
        expect:
          - {at: 40h, absent: [{check: drift}]}
          - {at: 54h, firing: [{check: drift, subject: x1}]}

`at` is a duration after the stream's start; a matcher's keys are alert labels (`check`,
`subject`, `severity`, `model`, ...). Instead of `stream`, a test may give `predictions`,
`labels` and `reference` file paths (relative to the test file) and `start` (ISO 8601).
Exit code 0 when every expectation holds, 1 with a readable diff otherwise.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import pandas as pd
import yaml

from watchkeeper.config import Config, ConfigError, config_from_dict, parse_duration

from .frame import read_table
from .replay import replay_frames
from .streams import Change, StreamSpec, generate


class RuleTestError(Exception):
    """The test file is malformed; the message names the file and the place."""


@dataclass(frozen=True, slots=True)
class Interval:
    labels: dict[str, str]
    fired: float
    resolved: float | None

    def firing_at(self, t: float) -> bool:
        return self.fired <= t and (self.resolved is None or t < self.resolved)

    def describe(self) -> str:
        check = self.labels.get("check", "?")
        subject = self.labels.get("subject") or "-"
        return f"{check}/{subject}"


def _duration(value: Any, where: str) -> float:
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise RuleTestError(f"{where}: {exc}") from None


def _stream(spec: Mapping[str, Any], where: str) -> StreamSpec:
    known = set(StreamSpec.__dataclass_fields__) - {"changes", "label_delay", "weights"}
    extra = set(spec) - known - {"changes"}
    if extra:
        raise RuleTestError(f"{where}: unknown stream keys {sorted(extra)}; valid: {sorted(known)}")
    changes = []
    for i, change in enumerate(spec.get("changes", []) or []):
        at = f"{where}.changes[{i}]"
        try:
            changes.append(
                Change(
                    kind=str(change["kind"]),
                    at=_duration(change["at"], at),
                    until=None if change.get("until") is None else _duration(change["until"], at),
                    feature=str(change.get("feature", "x0")),
                    amount=float(change.get("amount", 0.5)),
                )
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise RuleTestError(f"{at}: {exc}") from None
    values = {k: v for k, v in spec.items() if k in known}
    return StreamSpec(**values, changes=tuple(changes))


def _intervals(alerts: list[dict[str, Any]]) -> list[Interval]:
    open_: dict[str, tuple[dict[str, str], float]] = {}
    done: list[Interval] = []
    for record in alerts:
        labels = {
            k: str(record[k]) if record[k] is not None else ""
            for k in ("model", "check", "subject", "severity")
        }
        key = str(record["fingerprint"])
        if record["state"] == "firing":
            open_[key] = (labels, float(record["timestamp"]))
        elif key in open_:
            labels, fired = open_.pop(key)
            done.append(Interval(labels, fired, float(record["timestamp"])))
    done.extend(Interval(labels, fired, None) for labels, fired in open_.values())
    return done


def _matches(interval: Interval, matcher: Mapping[str, Any]) -> bool:
    return all(
        interval.labels.get(k, "") == ("" if v is None else str(v)) for k, v in matcher.items()
    )


def run_test(test: Mapping[str, Any], config: Config | None, base: Path, where: str) -> list[str]:
    """Problems of one test (empty: it passed)."""
    model = str(test.get("model", "model"))
    labels: pd.DataFrame | None
    reference: pd.DataFrame | None
    if "stream" in test:
        spec = _stream(test["stream"], f"{where}.stream")
        predictions, labels, reference = generate(spec)
        start = spec.start
        if test.get("reference", True) is False:
            reference = None
    elif "predictions" in test:
        predictions = read_table(str(base / test["predictions"]))
        labels = read_table(str(base / test["labels"])) if test.get("labels") else None
        reference = read_table(str(base / test["reference"])) if test.get("reference") else None
        start = pd.Timestamp(test.get("start") or predictions["timestamp"].min()).timestamp()
    else:
        raise RuleTestError(f"{where}: give `stream` or `predictions`")
    alerts: list[dict[str, Any]] = []
    replay_frames(
        predictions,
        None,
        labels=labels,
        reference=reference,
        config=config,
        model=model,
        alerts=alerts,
    )
    intervals = _intervals(alerts)
    problems = []
    for i, expectation in enumerate(test.get("expect", []) or []):
        at_where = f"{where}.expect[{i}]"
        if "at" not in expectation:
            raise RuleTestError(f"{at_where}: missing `at`")
        t = start + _duration(expectation["at"], at_where)
        firing = [iv for iv in intervals if iv.firing_at(t)]
        now = ", ".join(sorted(iv.describe() for iv in firing)) or "none"
        for matcher in expectation.get("firing", []) or []:
            if not any(_matches(iv, matcher) for iv in firing):
                problems.append(
                    f"at {expectation['at']}: expected firing {dict(matcher)}; firing: {now}"
                )
        for matcher in expectation.get("absent", []) or []:
            hits = [iv.describe() for iv in firing if _matches(iv, matcher)]
            if hits:
                problems.append(
                    f"at {expectation['at']}: expected no alert like {dict(matcher)}; "
                    f"firing: {', '.join(sorted(hits))}"
                )
    return problems


def run_file(path: Path, out: IO[str]) -> int:
    """Run every test of the file, print `ok`/`FAIL` lines and diffs; 0 if all pass."""
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise RuleTestError(f"{path}: cannot read: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("tests"), list):
        raise RuleTestError(f"{path}: expected a mapping with a `tests` list")
    config = None
    if data.get("config") is not None:
        try:
            config = config_from_dict(data["config"], f"{path}: config")
        except ConfigError as exc:
            raise RuleTestError(str(exc)) from None
    failed = 0
    for i, test in enumerate(data["tests"]):
        name = str(test.get("name", f"test {i}"))
        problems = run_test(test, config, Path(path).parent, f"{path}: tests[{i}]")
        if problems:
            failed += 1
            out.write(f"FAIL {name}\n")
            for problem in problems:
                out.write(f"  - {problem}\n")
        else:
            out.write(f"ok   {name}\n")
    total = len(data["tests"])
    out.write(f"{total - failed}/{total} rule tests passed\n")
    return 1 if failed else 0
