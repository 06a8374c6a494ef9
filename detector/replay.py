"""Backtesting on recorded data: "what would have paged us last month?".

`replay` reads a predictions file (and optionally labels and a reference), lets time advance
with the data, and runs each model's checks window by window through the same `ModelJudge`
the live detector uses, then alerting's pure lifecycle (`advance`), so `for` durations,
label delays and silences during gaps behave as they would have live. Each alert transition
to `firing` or `resolved` becomes one JSON line.

Without configuration a model is judged on tumbling one-hour windows, and without a reference
file its first day is its reference (the live defaults, 5-minute steps over a one-hour
reference, are for streaming; a backtest over weeks wants fewer, fuller windows).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import pandas as pd

from watchkeeper.alerting.lifecycle import advance
from watchkeeper.alerting.records import Alert
from watchkeeper.config import ChecksConfig, Config, DriftCheck, ModelConfig
from watchkeeper.tsdb import Finding

from .frame import Batch, batch_from_frame, read_table
from .judge import ModelJudge
from .profile import ReferenceProfile, profile_batch

REPLAY_WINDOW = 3600.0
REPLAY_REFERENCE = 86400.0


def finding_id(finding: Finding) -> str:
    """A stable id of a finding: its key (model, check, subject, window end) hashed."""
    key = f"{finding.model}\0{finding.check}\0{finding.subject}\0{finding.window_end!r}"
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat().replace("+00:00", "Z")


def model_config(config: Config, model: str, configured: bool, has_reference: bool) -> ModelConfig:
    """The model's configuration for a replay: its own section if the file has one, else the
    file's defaults when a file was given, else tumbling hourly windows and (without a
    reference file) the first day as reference."""
    if model in config.models:
        return config.models[model]
    if configured:
        return config.detector.defaults
    drift = DriftCheck(reference=REPLAY_REFERENCE) if not has_reference else DriftCheck()
    return ModelConfig(window=REPLAY_WINDOW, every=REPLAY_WINDOW, checks=ChecksConfig(drift=drift))


def alert_record(
    alert: Alert, previous: str | None, finding: Finding, now: float
) -> dict[str, Any]:
    """One alert transition as a JSON-able record; `time` is when the detector would have
    judged it (for efficacy that is later than the end of the window judged)."""
    labels = alert.label_map
    return {
        "time": iso(now),
        "timestamp": now,
        "state": alert.state,
        "previous": previous,
        "model": labels.get("model"),
        "check": labels.get("check"),
        "subject": labels.get("subject") or None,
        "severity": labels.get("severity"),
        "value": None if math.isnan(alert.value) else alert.value,
        "threshold": alert.threshold,
        "summary": alert.summary,
        "active_since": iso(alert.active_since),
        "fingerprint": alert.fingerprint,
        "finding_id": finding_id(finding),
        "window_start": iso(finding.window_start),
        "window_end": iso(finding.window_end),
    }


def finding_record(finding: Finding) -> dict[str, Any]:
    record: dict[str, Any] = json.loads(finding.to_json())
    record["id"] = finding_id(finding)
    record["time"] = iso(finding.window_end)
    return record


@dataclass
class ReplaySummary:
    """What a replay did: windows judged, findings, and alert transitions per check."""

    models: list[str] = field(default_factory=list)
    windows: int = 0
    findings: int = 0
    breached: int = 0
    fired: Counter[str] = field(default_factory=Counter)
    resolved: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0
    read_seconds: float = 0.0

    def text(self) -> str:
        lines = [
            f"replay: {len(self.models)} model(s), {self.windows} windows, {self.findings} "
            f"findings ({self.breached} breached), {sum(self.fired.values())} alerts fired, "
            f"{sum(self.resolved.values())} resolved, in {self.seconds:.1f}s"
            + (f" ({self.read_seconds:.1f}s reading files)" if self.read_seconds else "")
        ]
        for check in sorted(set(self.fired) | set(self.resolved)):
            lines.append(
                f"  {check:<14} fired {self.fired[check]:>4}  resolved {self.resolved[check]:>4}"
            )
        if not self.fired:
            lines.append("  no alert would have fired")
        return "\n".join(lines)


def _split(frame: pd.DataFrame, model: str | None) -> Iterator[tuple[str, pd.DataFrame]]:
    if "model" not in frame.columns:
        yield (model or "model"), frame
        return
    names = frame["model"].astype(str)
    if model is not None:
        yield model, frame[names == model]
        return
    for name in sorted(names.unique()):
        yield str(name), frame[names == name]


def reference_batch(frame: pd.DataFrame) -> Batch:
    """A reference file (features, `prediction`, optional `label`) as a batch."""
    frame = frame.copy()
    if "timestamp" not in frame.columns:
        frame["timestamp"] = 0.0
    labels = None
    if "label" in frame.columns:
        frame["prediction_id"] = [f"r{i}" for i in range(len(frame))]
        labels = pd.DataFrame(
            {"prediction_id": frame["prediction_id"], "label": frame["label"], "timestamp": 0.0}
        )
        frame = frame.drop(columns=["label"])
    return batch_from_frame(frame, labels)


def replay_model(
    name: str,
    batch: Batch,
    mc: ModelConfig,
    profile: ReferenceProfile | None,
    on_finding: Callable[[Finding], None],
    on_alert: Callable[[dict[str, Any]], None],
    progress: Callable[[int, int], None] = lambda done, total: None,
    until: float | None = None,
    judges: list[ModelJudge] | None = None,
) -> int:
    """Judge every window of one model's batch (up to the one ending at `until`, if given)
    and run the alert lifecycle on the findings; returns the number of windows judged."""
    if batch.n == 0:
        return 0
    every = mc.every
    first, last = float(batch.times[0]), float(batch.times[-1])
    # Without a reference file, the model's first `drift.reference` seconds are its
    # reference, profiled once the first window lies entirely after them (as live).
    reference_end = first + mc.checks.drift.reference
    reference_id = f"{name}@{int(first)}-{int(reference_end)}"
    judge = ModelJudge(name, mc, profile)
    if judges is not None:
        judges.append(judge)
    alerts: dict[tuple[str, str], Alert] = {}
    k0 = math.ceil((first + every) / every)
    k1 = math.floor(last / every)
    if until is not None:
        k1 = min(k1, round(until / every))
    total = max(0, k1 - k0 + 1)
    for i, k in enumerate(range(k0, k1 + 1)):
        end = k * every
        if profile is None and judge.profile is None and end - mc.window >= reference_end:
            low, high = batch.bounds(first, reference_end)
            judge.profile = profile_batch(_slice(batch, low, high), reference_id)
        for finding in judge.judge(batch, end):
            on_finding(finding)
            for_s, keep_firing_for_s = mc.checks.timing(finding.check)
            key = (finding.check, finding.subject)
            current, moved = advance(alerts.get(key), finding, mc.labels, for_s, keep_firing_for_s)
            if current is None:
                alerts.pop(key, None)
            else:
                alerts[key] = current
            if moved is not None and moved.alert.state in ("firing", "resolved"):
                on_alert(alert_record(moved.alert, moved.previous, finding, end))
        progress(i + 1, total)
    return total


def _slice(batch: Batch, low: int, high: int) -> Batch:
    return Batch(
        times=batch.times[low:high],
        ids=batch.ids[low:high],
        columns={k: v[low:high] for k, v in batch.columns.items()},
        output=batch.output[low:high],
        error=batch.error[low:high],
        latency_s=batch.latency_s[low:high],
        fallback=batch.fallback[low:high],
        weight=batch.weight[low:high],
        label=batch.label[low:high],
        label_time=batch.label_time[low:high],
    )


def replay(
    predictions: str | Path,
    out: IO[str],
    *,
    labels: str | Path | None = None,
    reference: str | Path | None = None,
    config: Config | None = None,
    model: str | None = None,
    findings_out: IO[str] | None = None,
    progress: IO[str] | None = None,
) -> ReplaySummary:
    """Replay the predictions file; alert transitions go to `out` as JSON lines, findings to
    `findings_out`, progress lines to `progress` (at most one every two seconds)."""
    started = time.perf_counter()
    frame = read_table(str(predictions))
    label_frame = read_table(str(labels)) if labels is not None else None
    reference_frame = read_table(str(reference)) if reference is not None else None
    read = time.perf_counter() - started
    summary = replay_frames(
        frame,
        out,
        labels=label_frame,
        reference=reference_frame,
        config=config,
        model=model,
        findings_out=findings_out,
        progress=progress,
    )
    summary.read_seconds = read
    summary.seconds = time.perf_counter() - started
    return summary


def replay_frames(
    frame: pd.DataFrame,
    out: IO[str] | None,
    *,
    labels: pd.DataFrame | None = None,
    reference: pd.DataFrame | None = None,
    config: Config | None = None,
    model: str | None = None,
    findings_out: IO[str] | None = None,
    progress: IO[str] | None = None,
    alerts: list[dict[str, Any]] | None = None,
) -> ReplaySummary:
    """`replay` on frames already in memory; alert records also go to `alerts` if given."""
    started = time.perf_counter()
    configured = config is not None
    config = config or Config()
    profile = None
    if reference is not None:
        profile = profile_batch(reference_batch(reference))
    summary = ReplaySummary()
    last_report = [0.0]

    def on_alert(record: dict[str, Any]) -> None:
        if out is not None:
            out.write(json.dumps(record) + "\n")
        if alerts is not None:
            alerts.append(record)
        counter = summary.fired if record["state"] == "firing" else summary.resolved
        counter[str(record["check"])] += 1

    def on_finding(finding: Finding) -> None:
        summary.findings += 1
        summary.breached += finding.breached
        if findings_out is not None:
            findings_out.write(json.dumps(finding_record(finding)) + "\n")

    for name, part in _split(frame, model):
        batch = batch_from_frame(part.reset_index(drop=True), labels)
        mc = model_config(config, name, configured, profile is not None)
        summary.models.append(name)

        def report(done: int, total: int, name: str = name) -> None:
            now = time.perf_counter()
            if progress is not None and (now - last_report[0] >= 2.0 or done == total):
                last_report[0] = now
                fired = sum(summary.fired.values())
                progress.write(f"replay: {name}: {done}/{total} windows, {fired} alerts fired\n")
                progress.flush()

        summary.windows += replay_model(name, batch, mc, profile, on_finding, on_alert, report)
    summary.seconds = time.perf_counter() - started
    return summary


def main(
    predictions: str,
    out: str,
    labels: str | None,
    reference: str | None,
    config: Config | None,
    model: str | None,
    findings_out: str | None,
) -> int:
    """`watchkeeper replay`: write the files, print progress to stderr and the summary."""
    with contextlib.ExitStack() as files:
        alerts_file = files.enter_context(open(out, "w", encoding="utf-8"))
        findings_file = (
            files.enter_context(open(findings_out, "w", encoding="utf-8")) if findings_out else None
        )
        summary = replay(
            predictions,
            alerts_file,
            labels=labels,
            reference=reference,
            config=config,
            model=model,
            findings_out=findings_file,
            progress=sys.stderr,
        )
    print(summary.text())
    return 0
