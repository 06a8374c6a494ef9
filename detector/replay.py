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
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from watchkeeper.alerting.lifecycle import advance
from watchkeeper.alerting.records import Alert
from watchkeeper.config import ChecksConfig, Config, DriftCheck, ModelConfig
from watchkeeper.tsdb import Finding

from .frame import Batch, batch_from_frame
from .profile import ReferenceProfile, profile_batch

if TYPE_CHECKING:
    import pandas as pd

    from .judge import ModelJudge

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
        "version": labels.get("version"),
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


def finding_line(finding: Finding) -> str:
    """`json.dumps(finding_record(finding))`, without parsing the finding's JSON back."""
    extra = json.dumps({"id": finding_id(finding), "time": iso(finding.window_end)})
    return finding.to_json()[:-1] + ", " + extra[1:]


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
    import pandas as pd

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
    from .judge import ModelJudge

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
    `findings_out`, progress lines to `progress` (at most one every two seconds).

    The files are read with Arrow and turned into batches without pandas (`tables`); the
    batches hold what `replay_frames` would build from the same files read by pandas.
    """
    from .tables import batch_from_table, read_file, reference_batch_from_table, split_table

    started = time.perf_counter()
    loading = _import_in_background()
    table = read_file(str(predictions))
    label_table = read_file(str(labels)) if labels is not None else None
    reference_table = read_file(str(reference)) if reference is not None else None
    loading.join()
    read = time.perf_counter() - started
    profile = None
    if reference_table is not None:
        profile = profile_batch(reference_batch_from_table(reference_table))
        del reference_table
    parts = (
        (name, batch_from_table(part, label_table)) for name, part in split_table(table, model)
    )
    summary = _replay_batches(parts, profile, out, config, findings_out, progress, None)
    summary.read_seconds = read
    summary.seconds = time.perf_counter() - started
    return summary


def _import_in_background() -> threading.Thread:
    """Import the checks (scipy.stats) and pandas (which Arrow loads on its first conversion)
    in a thread while the files are read: Arrow parses without holding the GIL, so the
    second or so of imports overlaps the read instead of following it. The caller joins
    the thread before it imports or converts anything itself."""

    def load() -> None:
        import importlib

        for name in ("watchkeeper.detector.judge", "pandas"):
            importlib.import_module(name)

    thread = threading.Thread(target=load, name="replay-imports", daemon=True)
    thread.start()
    return thread


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
    profile = None
    if reference is not None:
        profile = profile_batch(reference_batch(reference))
    parts = (
        (name, batch_from_frame(part.reset_index(drop=True), labels))
        for name, part in _split(frame, model)
    )
    return _replay_batches(parts, profile, out, config, findings_out, progress, alerts)


def _replay_batches(
    parts: Iterable[tuple[str, Batch]],
    profile: ReferenceProfile | None,
    out: IO[str] | None,
    config: Config | None,
    findings_out: IO[str] | None,
    progress: IO[str] | None,
    alerts: list[dict[str, Any]] | None,
) -> ReplaySummary:
    """Each model's batch judged window by window, its alerts run through the lifecycle."""
    started = time.perf_counter()
    configured = config is not None
    config = config or Config()
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
            findings_out.write(finding_line(finding) + "\n")

    for name, batch in parts:
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
    from .tables import use_read_pool

    use_read_pool()
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
