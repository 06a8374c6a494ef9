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
import functools
import hashlib
import itertools
import json
import math
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, TypeVar

from watchkeeper.alerting.lifecycle import advance
from watchkeeper.alerting.records import Alert
from watchkeeper.config import ChecksConfig, Config, DriftCheck, ModelConfig
from watchkeeper.tsdb import Finding

from .forked import Forked, ForkFailed, can_fork, cpus
from .frame import Batch, batch_from_frame
from .profile import ReferenceProfile, profile_batch

if TYPE_CHECKING:
    import pandas as pd

    from .judge import ModelJudge

_T = TypeVar("_T")

REPLAY_WINDOW = 3600.0
REPLAY_REFERENCE = 86400.0


def finding_id(finding: Finding) -> str:
    """A stable id of a finding: its key (model, check, subject, window end) hashed."""
    key = f"{finding.model}\0{finding.check}\0{finding.subject}\0{finding.window_end!r}"
    return hashlib.sha256(key.encode()).hexdigest()[:16]


@functools.lru_cache(maxsize=1024)
def iso(t: float) -> str:
    """`t` as ISO 8601 text in UTC (the findings of one window share their times)."""
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
    """`json.dumps(finding_record(finding))`, without parsing the finding's JSON back (the
    id is hex digits and the time ISO 8601: neither needs escaping)."""
    extra = f'"id": "{finding_id(finding)}", "time": "{iso(finding.window_end)}"}}'
    return finding.to_json()[:-1] + ", " + extra


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
    *,
    workers: int = 1,
    render: Callable[[Finding], str] | None = None,
    on_rendered: Callable[[int, int, str], None] | None = None,
) -> int:
    """Judge every window of one model's batch (up to the one ending at `until`, if given)
    and run the alert lifecycle on the findings; returns the number of windows judged.

    With `workers` > 1 (Linux only; not with `judges`), forked worker processes judge the
    later stretches of windows while this process judges the first, and this process runs
    the lifecycle over all findings in window order: the same findings and alerts, in the
    same order, as judging alone. With `render`, workers also turn their findings into text
    (one line each), and a worker's window goes to `on_rendered(findings, breached, text)`
    (counts and text) instead of `on_finding` once per finding.
    """
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
    ends = [k * every for k in range(k0, k1 + 1)]

    def prepare(end: float) -> None:
        if profile is None and judge.profile is None and end - mc.window >= reference_end:
            low, high = batch.bounds(first, reference_end)
            judge.profile = profile_batch(_slice(batch, low, high), reference_id)

    workers = min(workers, len(ends) // MIN_WINDOWS_PER_WORKER)
    if workers > 1 and judges is None and batch.n >= MIN_ROWS_TO_FORK and can_fork():
        if on_rendered is None:
            render = None
        windows = _judged_in_workers(judge, batch, ends, prepare, workers, render)
    else:
        windows = ((found, None) for found in _judged_here(judge, batch, ends, prepare))
    for i, (end, (found, text)) in enumerate(zip(ends, windows, strict=True)):
        if text is None:
            for item in found:
                on_finding(_finding(item))
        else:
            assert on_rendered is not None
            on_rendered(len(found), sum(bool(_field(item, "breached")) for item in found), text)
        for item in found:
            key = (_field(item, "check"), _field(item, "subject"))
            if key not in alerts and not _field(item, "breached"):
                continue  # `advance` keeps no alert for a clear finding without one
            finding = _finding(item)
            for_s, keep_firing_for_s = mc.checks.timing(finding.check)
            current, moved = advance(alerts.get(key), finding, mc.labels, for_s, keep_firing_for_s)
            if current is None:
                alerts.pop(key, None)
            else:
                alerts[key] = current
            if moved is not None and moved.alert.state in ("firing", "resolved"):
                on_alert(alert_record(moved.alert, moved.previous, finding, end))
        progress(i + 1, len(ends))
    return len(ends)


MIN_WINDOWS_PER_WORKER = 16
"""Fewer windows than this per worker are judged in one process (forking costs ~0.1 s)."""
MIN_ROWS_TO_FORK = 200_000
"""Smaller batches are judged in one process: a fork and a pickle would cost more."""
LAG = 0.1
"""This process judges `1 + LAG` times as many windows as each worker: a worker also catches
up on the running state, builds its own per-batch caches (class codes and the like), renders
its findings and pickles them, which weighs a little more than this process's share of the
lifecycle and writing (tried on 1.5 M rows, 238 windows, 2 workers: 0.1 to 0.45 all within
the noise of a shared machine)."""

_Row = tuple[Any, ...]
"""A finding as its fields' values, in `Finding`'s field order: workers send findings this
way, since unpickling 8,000 frozen dataclasses takes ~0.1 s, and this process builds only
the few `Finding`s the lifecycle needs (`_finding`)."""
_FIELDS = tuple(f.name for f in fields(Finding))
_AT = {name: i for i, name in enumerate(_FIELDS)}
_Window = tuple[list[Finding] | list[_Row], str | None]


def _row(finding: Finding) -> _Row:
    return tuple(getattr(finding, name) for name in _FIELDS)


def _field(item: Finding | _Row, name: str) -> Any:
    return item[_AT[name]] if isinstance(item, tuple) else getattr(item, name)


def _finding(item: Finding | _Row) -> Finding:
    return Finding(**dict(zip(_FIELDS, item, strict=True))) if isinstance(item, tuple) else item


def _judged_here(
    judge: ModelJudge, batch: Batch, ends: list[float], prepare: Callable[[float], None]
) -> Iterator[list[Finding]]:
    for end in ends:
        prepare(end)
        yield judge.judge(batch, end)


def _judged_in_workers(
    judge: ModelJudge,
    batch: Batch,
    ends: list[float],
    prepare: Callable[[float], None],
    workers: int,
    render: Callable[[Finding], str] | None,
) -> Iterator[_Window]:
    """Each window's findings (and their text, or None), in order: the first of `workers`
    stretches of windows judged here, each later one by a forked child that first catches
    up on the running state of the windows before its stretch (`ModelJudge.skip`) and sends
    its findings (and their text, `render`) back. A child that fails has its stretch judged
    here instead."""
    judge.warm(batch)
    share = [1.0 + LAG, *([1.0] * (workers - 1))]
    cuts = [round(len(ends) * sum(share[:j]) / sum(share)) for j in range(workers + 1)]

    def stretch(begin: int, stop: int) -> list[_Window]:
        for end in ends[:begin]:
            prepare(end)
            judge.skip(batch, end)
        return [
            (
                [_row(f) for f in found],
                None if render is None else "".join(render(f) + "\n" for f in found),
            )
            for found in _judged_here(judge, batch, ends[begin:stop], prepare)
        ]

    def here(begin: int, stop: int) -> Iterator[_Window]:
        return ((found, None) for found in _judged_here(judge, batch, ends[begin:stop], prepare))

    children = [Forked(functools.partial(stretch, cuts[j], cuts[j + 1])) for j in range(1, workers)]
    try:
        yield from here(0, cuts[1])
        done = cuts[1]  # windows this process's judge has seen
        for j, child in enumerate(children, start=1):
            try:
                yield from child.result()
            except ForkFailed as exc:
                print(f"replay: {exc}; judging its windows here", file=sys.stderr)
                for end in ends[done : cuts[j]]:
                    prepare(end)
                    judge.skip(batch, end)
                yield from here(cuts[j], cuts[j + 1])
                done = cuts[j + 1]
    finally:
        for child in children:  # only those left when this generator stopped early
            child.cancel()


def _slice(batch: Batch, low: int, high: int) -> Batch:
    return Batch(
        times=batch.times[low:high],
        _make_ids=lambda: batch.ids[low:high],
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
    workers: int = 1,
) -> ReplaySummary:
    """Replay the predictions file; alert transitions go to `out` as JSON lines, findings to
    `findings_out`, progress lines to `progress` (at most one every two seconds). With
    `workers` > 1, windows are judged in that many processes (see `replay_model`).

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

    def make_profile() -> ReferenceProfile | None:
        if reference_table is None:
            return None
        return profile_batch(reference_batch_from_table(reference_table))

    # With workers, a forked child profiles the reference while the batch is built here.
    forking = workers > 1 and reference_table is not None and can_fork()
    profiling = Forked(make_profile) if forking else None
    parts = (
        (name, batch_from_table(part, label_table)) for name, part in split_table(table, model)
    )
    try:
        first = next(parts, None)
    except BaseException:
        if profiling is not None:
            profiling.cancel()
        raise
    profile = make_profile() if profiling is None else _forked_or_here(profiling, make_profile)
    batches = itertools.chain([first] if first is not None else [], parts)
    summary = _replay_batches(batches, profile, out, config, findings_out, progress, None, workers)
    summary.read_seconds = read
    summary.seconds = time.perf_counter() - started
    return summary


def _forked_or_here(job: Forked[_T], make: Callable[[], _T]) -> _T:
    """The child's result, or `make()` computed here if the child failed."""
    try:
        return job.result()
    except ForkFailed as exc:
        print(f"replay: {exc}; doing its work here", file=sys.stderr)
        return make()


def _import_in_background() -> threading.Thread:
    """Import the checks (scipy's compiled parts) and Arrow's compute functions in a thread
    while the files are read: Arrow parses without holding the GIL, so the imports overlap
    the read instead of following it. The caller joins the thread before it imports
    anything itself.

    pandas is not imported: `tables` converts Arrow's columns without it, and the checks
    do not need it (it would cost ~0.4 s of CPU, competing with Arrow's threads)."""

    def load() -> None:
        import importlib

        for name in ("pyarrow.compute", "watchkeeper.detector.judge"):
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
    workers: int = 1,
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

    def on_rendered(findings: int, breached: int, text: str) -> None:
        summary.findings += findings
        summary.breached += breached
        if findings_out is not None:
            findings_out.write(text)

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

        summary.windows += replay_model(
            name,
            batch,
            mc,
            profile,
            on_finding,
            on_alert,
            report,
            workers=workers,
            render=finding_line if findings_out is not None else None,
            on_rendered=on_rendered,
        )
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
            workers=cpus(),
        )
    print(summary.text())
    return 0
