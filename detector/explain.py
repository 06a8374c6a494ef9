"""`watchkeeper explain FINDING_ID`: recompute a finding from the data and show its numbers.

A finding records its window, reference id, rule hash, statistic, value, threshold and p-value
or interval. Explaining one re-runs the same judge over the same data up to that window (so
baselines built from history are rebuilt too), prints the stored and recomputed numbers side by
side with the window's data and the reference it was compared with, and says whether they
agree.

A finding id is a hash of the finding's model, check, subject and window end
(`replay.finding_id`), so the id alone does not say where the finding is. `find_stored` looks
for it newest first, in time slices that grow fourfold, so explaining a recent finding (the one
an alert names) reads a few thousand findings rather than the whole store; callers that know
the finding's model and window end (the dashboard) pass them and read one window.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np

from watchkeeper.config import Config
from watchkeeper.tsdb import Finding, Store

from .frame import Batch, batch_from_frame, read_table
from .judge import ModelJudge
from .profile import CategoricalProfile, NumericProfile, ReferenceProfile, profile_batch
from .replay import (
    _split,
    finding_id,
    finding_record,
    iso,
    model_config,
    reference_batch,
    replay_model,
)

FIELDS = (
    "statistic",
    "value",
    "threshold",
    "p_value",
    "interval",
    "n",
    "breached",
    "reference_id",
    "rule_hash",
    "window_start",
    "window_end",
)


class ExplainError(Exception):
    """The finding cannot be found or recomputed; the message says why."""


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        if math.isnan(a) and math.isnan(b):
            return True
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def compare(stored: dict[str, Any], again: dict[str, Any], out: IO[str]) -> bool:
    """Print the stored and recomputed fields side by side; True when all agree."""
    agree = True
    out.write(f"{'field':<14} {'stored':<28} {'recomputed':<28}\n")
    for name in FIELDS:
        a, b = stored.get(name), again.get(name)
        same = _same(a, b)
        agree &= same
        out.write(f"{name:<14} {a!s:<28} {b!s:<28}{'' if same else '  <-- differs'}\n")
    return agree


def _window_data(
    batch: Batch, finding: Finding, profile: ReferenceProfile | None, out: IO[str]
) -> None:
    low, high = batch.bounds(finding.window_start, finding.window_end)
    out.write(
        f"\ndata: {high - low} predictions in [{iso(finding.window_start)}, "
        f"{iso(finding.window_end)})\n"
    )
    subject = finding.subject
    if profile is None or not subject:
        return
    ref = profile.prediction if subject == "prediction" else profile.columns.get(subject)
    out.write(f"reference {profile.reference_id}: {profile.n} rows\n")
    if isinstance(ref, NumericProfile):
        values = (
            batch.numeric(subject)[low:high]
            if subject != "prediction"
            else (batch.output_numeric()[low:high])
        )
        present = values[~np.isnan(values)]
        qs = [0.05, 0.25, 0.5, 0.75, 0.95]
        out.write(
            f"  reference {subject!r}: n={ref.n}, missing {ref.missing_rate:.2%}, "
            f"range [{ref.low:.4g}, {ref.high:.4g}], quantiles "
            f"{np.round(np.quantile(ref.sorted_values, qs), 4).tolist()}\n"
        )
        if present.size:
            out.write(
                f"  window    {subject!r}: n={values.size}, missing "
                f"{1 - present.size / max(values.size, 1):.2%}, range "
                f"[{present.min():.4g}, {present.max():.4g}], quantiles "
                f"{np.round(np.quantile(present, qs), 4).tolist()}\n"
            )
        out.write(f"  reference bins (edges) {np.round(ref.edges, 4).tolist()}\n")
        out.write(f"  reference counts {ref.counts.tolist()}\n")
        out.write(f"  window counts    {ref.bin_counts(present).tolist()}\n")
    elif isinstance(ref, CategoricalProfile):
        codes = (
            batch.codes(subject, ref.categories)[low:high]
            if subject != "prediction"
            else np.full(0, -2)
        )
        counts, unseen = ref.count_codes(codes)
        out.write(f"  categories {list(ref.categories)}\n")
        out.write(f"  reference counts {ref.counts.tolist()}\n")
        out.write(f"  window counts    {counts.tolist()} (+{unseen} unseen)\n")


def explain_replay(
    wanted: str,
    findings: Path,
    predictions: Path,
    out: IO[str],
    *,
    labels: Path | None = None,
    reference: Path | None = None,
    config: Config | None = None,
    model: str | None = None,
) -> int:
    """Explain a finding of a replay from its findings file and the replay's inputs."""
    stored = None
    with open(findings, encoding="utf-8") as lines:
        for line in lines:
            record = json.loads(line)
            if record.get("id") == wanted:
                stored = record
                break
    if stored is None:
        raise ExplainError(f"no finding with id {wanted!r} in {findings}")
    frame = read_table(str(predictions))
    label_frame = read_table(str(labels)) if labels is not None else None
    profile = profile_batch(reference_batch(read_table(str(reference)))) if reference else None
    name = stored["model"]
    parts = dict(_split(frame, model or name))
    if name not in parts:
        raise ExplainError(f"model {name!r} is not in {predictions}")
    batch = batch_from_frame(parts[name].reset_index(drop=True), label_frame)
    mc = model_config(config or Config(), name, config is not None, profile is not None)
    found: list[Finding] = []
    judges: list[ModelJudge] = []

    def keep(finding: Finding) -> None:
        if finding_id(finding) == wanted:
            found.append(finding)

    until = float(stored["window_end"]) if stored["check"] != "efficacy" else None
    replay_model(name, batch, mc, profile, keep, lambda record: None, until=until, judges=judges)
    if not found:
        raise ExplainError(f"recomputing did not produce finding {wanted!r} (other inputs?)")
    again = finding_record(found[0])
    version = f", version {stored['version']}" if stored.get("version") else ""
    out.write(
        f"finding {wanted}: {stored['model']} {stored['check']} "
        f"{stored['subject'] or '-'} at {stored['time']}{version}\n{again['summary']}\n\n"
    )
    agree = compare(stored, again, out)
    _window_data(batch, found[0], judges[0].profile if judges else profile, out)
    out.write("\nrecomputed: same numbers\n" if agree else "\nrecomputed: DIFFERENT numbers\n")
    return 0 if agree else 1


FIRST_SLICE_S = 3600.0
"""How far back from the newest stored window `find_stored` looks first; each further slice
is four times longer."""
HINT_SLACK_S = 1.0
"""How far around a hinted window end `find_stored` looks (a store may round times)."""


def _slices(newest: float) -> Iterator[tuple[float | None, float | None]]:
    """`[start, end)` bounds covering all time, newest first: everything from an hour before
    `newest` on, then slices four times longer each, then everything older.

    >>> list(_slices(100_000.0))[:3]
    [(96400.0, None), (82000.0, 96400.0), (24400.0, 82000.0)]
    """
    end: float | None = None
    start, span = newest - FIRST_SLICE_S, FIRST_SLICE_S
    while start > 0.0:
        yield start, end
        end, span = start, span * 4
        start = end - span
    yield None, end


def _first(found: list[Finding], wanted: str) -> Finding | None:
    return next((f for f in found if finding_id(f) == wanted), None)


def find_stored(
    store: Store,
    wanted: str,
    *,
    model: str | None = None,
    window_end: float | None = None,
) -> Finding | None:
    """The stored finding whose `finding_id` is `wanted`, or None.

    `model` and `window_end` are hints: with both, one window's findings are read; with
    `model` alone, only that model's. A wrong hint costs a full search, never a wrong answer.
    Without hints the store is searched newest first (`_slices`), so a recent finding is found
    after reading only the last hours' findings.
    """
    if window_end is not None:
        near = store.findings(model, window_end - HINT_SLACK_S, window_end + HINT_SLACK_S)
        if (match := _first(near, wanted)) is not None:
            return match
    if model is not None and (match := _first(store.findings(model), wanted)) is not None:
        return match
    ends = [store.last_evaluated(info.name) for info in store.models()]
    newest = max((t for t in ends if t is not None), default=None)
    if newest is None:
        return _first(store.findings(), wanted)
    for start, end in _slices(newest):
        if (match := _first(store.findings(None, start, end), wanted)) is not None:
            return match
    return None


def explain_store(
    wanted: str,
    config: Config | None,
    out: IO[str],
    *,
    model: str | None = None,
    window_end: float | None = None,
) -> int:
    """Explain a finding stored by the live detector, recomputing it from the store.

    `model` and `window_end` are optional hints where the finding is (see `find_stored`); the
    output is the same with or without them.
    """
    from watchkeeper.tsdb import open_store

    from .engine import Detector

    config = config or Config()
    store = open_store(config.storage)
    try:
        match = find_stored(store, wanted, model=model, window_end=window_end)
        if match is None:
            raise ExplainError(
                f"no finding with id {wanted!r} in the store at {config.storage.path}"
            )
        detector = Detector(store, config)
        again = next(
            (f for f in detector.evaluate(match.model, match.window_end) if f.key == match.key),
            None,
        )
        if again is None:
            raise ExplainError("recomputing did not produce the finding (data deleted?)")
        version = f", version {match.version}" if match.version else ""
        out.write(
            f"finding {wanted}: {match.model} {match.check} {match.subject or '-'} at "
            f"{iso(match.window_end)}{version}\n{again.summary}\n\n"
        )
        agree = compare(finding_record(match), finding_record(again), out)
        profile = detector.reference_profile(match.model, match.window_start)
        batch = detector.read(match.model, match.window_start, match.window_end)
        _window_data(batch, again, profile, out)
    finally:
        store.close()
    out.write("\nrecomputed: same numbers\n" if agree else "\nrecomputed: DIFFERENT numbers\n")
    return 0 if agree else 1
