"""One model's judge: every check of one window, with one correction across them.

`ModelJudge.judge(batch, window_end)` runs the model's enabled checks on the window
`[window_end - window, window_end)` of a `Batch` and returns its findings. The live
`Detector` and `replay` both call it, so a backtest judges exactly like live running. All
p-values of the model in the window (drift of every column, missing values, out-of-range,
unseen categories, latency, throughput, efficacy) are corrected together with Holm or
Benjamini-Hochberg; a candidate breaches when its effect clears its floor and the correction
rejects it at its check's level.

Running state (health history, the inferred label delay) is private; the model's
configuration and reference profile are public.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from watchkeeper.config import ModelConfig
from watchkeeper.tsdb import Finding
from watchkeeper.tsdb.records import Severity

from .candidate import Candidate, Context
from .checks import check_up, rule_hash
from .efficacy import efficacy_candidates, joint_class_codes
from .frame import Batch
from .health import (
    HealthHistory,
    error_rate_finding,
    fallback_candidate,
    latency_candidate,
    throughput_candidate,
)
from .profile import CategoricalProfile, NumericProfile, ReferenceProfile
from .quality import (
    categorical_drift,
    missing_candidate,
    numeric_drift,
    out_of_range_candidate,
    schema_absent,
    schema_bad_values,
    schema_unexpected,
)
from .stats import adjust_p_values


def lookback(mc: ModelConfig) -> float:
    """How far before a window's end its checks read (the up check may look further)."""
    up = mc.checks.up
    return max(mc.window, up.staleness) if up.enabled else mc.window


class ModelJudge:
    """Judges windows of one model against `profile` (None: only the health checks)."""

    def __init__(
        self, model: str, config: ModelConfig, profile: ReferenceProfile | None = None
    ) -> None:
        self.model = model
        self.config = config
        self.profile = profile
        self._history = HealthHistory()
        self._label_delay: float | None = config.checks.efficacy.delay
        self._hashes = {
            name: rule_hash(name, settings)
            for name in (
                "up",
                "error_rate",
                "drift",
                "latency",
                "throughput",
                "fallback_rate",
                "efficacy",
                "missing",
                "out_of_range",
                "schema",
            )
            if (settings := config.checks.settings(name)) is not None
        }

    def __repr__(self) -> str:
        reference = self.profile.reference_id if self.profile else None
        return f"ModelJudge(model={self.model!r}, reference={reference!r})"

    @property
    def label_delay(self) -> float | None:
        """The efficacy delay in use (configured, or inferred once labels were seen)."""
        return self._label_delay

    def judge(self, batch: Batch, window_end: float) -> list[Finding]:
        """All enabled checks on the window ending `window_end`; `batch` must hold the
        predictions from `window_end - lookback(config)` on (and any labels known)."""
        mc = self.config
        checks = mc.checks
        start = window_end - mc.window
        low, high = batch.bounds(start, window_end)
        findings: list[Finding] = []
        if checks.up.enabled:
            read_start = window_end - lookback(mc)
            r_low, _ = batch.bounds(read_start, window_end)
            last = float(batch.times[high - 1]) if high > r_low else None
            up = check_up(self.model, window_end, last, read_start, checks.up)
            findings.append(replace(up, version=batch.version(r_low, high)))
        if checks.error_rate.enabled:
            errors = error_rate_finding(
                self.model,
                batch.error[low:high],
                batch.weight[low:high],
                start,
                window_end,
                checks.error_rate,
                self._hashes["error_rate"],
            )
            findings.append(replace(errors, version=batch.version(low, high)))
        candidates = self._health(batch, low, high, start, window_end)
        reference_id = self.profile.reference_id if self.profile else ""
        if checks.efficacy.enabled and self.profile and self.profile.baseline:
            candidates.extend(self._efficacy(batch, window_end, reference_id))
        if self.profile is not None:
            candidates.extend(self._data(batch, low, high, start, window_end))
        findings.extend(self._correct(candidates, batch))
        self.record(batch, window_end)
        return findings

    def _context(
        self,
        check: str,
        start: float,
        end: float,
        severity: Severity,
        alpha: float,
        reference_id: str = "",
    ) -> Context:
        return Context(start, end, self._hashes[check], reference_id, severity, alpha)

    def _health(
        self, batch: Batch, low: int, high: int, start: float, end: float
    ) -> list[Candidate]:
        checks = self.config.checks
        out: list[Candidate] = []
        latencies = batch.latency_s[low:high]
        count = float(np.sum(batch.weight[low:high]))
        if checks.latency.enabled:
            cfg = checks.latency
            ctx = self._context("latency", start, end, cfg.severity, cfg.p_value)
            found = latency_candidate(latencies, self._history, ctx, cfg)
            if found is not None:
                out.append(found)
        if checks.throughput.enabled:
            cfg_t = checks.throughput
            ctx = self._context("throughput", start, end, cfg_t.severity, cfg_t.p_value)
            found = throughput_candidate(count, self._history, ctx, cfg_t)
            if found is not None:
                out.append(found)
        if checks.fallback_rate.enabled:
            column = batch.fallback[low:high]
            f_low, f_high = np.searchsorted(batch.extra_fallbacks, [start, end], side="left")
            if batch.knows_fallbacks:
                fallbacks = int(np.nansum(column)) + int(f_high - f_low)
                cfg_f = checks.fallback_rate
                ctx = self._context("fallback_rate", start, end, cfg_f.severity, 0.01)
                out.append(fallback_candidate(fallbacks, high - low, ctx, cfg_f))
        return out

    def warm(self, batch: Batch) -> None:
        """Fill now the per-batch caches that judging would fill on first use (each
        feature's missing values and category codes, the output's and labels' class
        codes). A replay calls it before it forks its workers, which then share these
        arrays instead of each building its own; the findings are the same either way."""
        profile = self.profile
        if profile is None:
            return
        checks = self.config.checks
        for name, column in profile.columns.items():
            if name in batch.columns:
                batch.missing(name)
                if isinstance(column, CategoricalProfile):
                    batch.codes(name, column.categories)
        if checks.drift.enabled and isinstance(profile.prediction, CategoricalProfile):
            batch.class_codes("output")
        baseline = profile.baseline
        if checks.efficacy.enabled and baseline is not None and baseline.task != "regression":
            joint_class_codes(batch, baseline.scores)

    def skip(self, batch: Batch, window_end: float) -> None:
        """Advance the running state (health history, inferred label delay) exactly as
        `judge` would on this window, without judging it: a replay worker that starts in
        the middle of a stream catches up on the windows before its first one this way."""
        checks = self.config.checks
        if (
            checks.efficacy.enabled
            and self.profile
            and self.profile.baseline
            and self._label_delay is None
        ):
            self._label_delay = self._infer_delay(batch, window_end)
        self.record(batch, window_end)

    def record(self, batch: Batch, window_end: float) -> None:
        """Add the window ending `window_end` to the health history without judging it
        (`judge` does this itself; a restarted detector uses it to rebuild baselines)."""
        checks = self.config.checks
        low, high = batch.bounds(window_end - self.config.window, window_end)
        latencies = batch.latency_s[low:high]
        latency, throughput = checks.latency, checks.throughput
        baseline_latency = latency.enabled and latency.slo_ms is None
        count = float(np.sum(batch.weight[low:high]))
        self._history.record(
            window_end,
            count,
            latencies[~np.isnan(latencies)],
            keep_counts=throughput.baseline + self.config.window if throughput.enabled else 0.0,
            keep_latencies=latency.baseline + self.config.window if baseline_latency else 0.0,
        )

    def _efficacy(self, batch: Batch, now: float, reference_id: str) -> list[Candidate]:
        assert self.profile is not None and self.profile.baseline is not None
        cfg = self.config.checks.efficacy
        if self._label_delay is None:
            self._label_delay = self._infer_delay(batch, now)
            if self._label_delay is None:
                return []
        end = now - self._label_delay
        start = end - self.config.window
        found = efficacy_candidates(
            batch,
            self.profile.baseline,
            start,
            end,
            now,
            cfg,
            self._hashes["efficacy"],
            reference_id,
            cfg.p_value,
        )
        drift = self.config.checks.drift
        label = self.profile.label
        if drift.enabled and isinstance(label, NumericProfile):
            # the labels known by now of the same (delayed) window, against the reference's
            low, high = batch.bounds(start, end)
            known = batch.label_time[low:high] <= now
            ctx = self._context("drift", start, end, drift.severity, drift.p_value, reference_id)
            values = batch.label_numeric()[low:high][known]
            candidate = numeric_drift("label", label, values, ctx, drift)
            if candidate is not None:
                found.append(candidate)
        return found

    def _infer_delay(self, batch: Batch, now: float) -> float | None:
        """The 90th percentile of how late labels came, rounded up to the model's `every`.

        Measured on predictions made one to two days before `now` (so that labels up to a day
        late have had time to arrive); None until 50 of them have labels.
        """
        low, high = batch.bounds(now - 2 * 86400.0, now - 86400.0)
        arrived = batch.label_time[low:high]
        mask = arrived <= now
        if np.count_nonzero(mask) < 50:
            return None
        late = float(np.quantile(arrived[mask] - batch.times[low:high][mask], 0.9))
        every = self.config.every
        return max(0.0, math.ceil(late / every) * every)

    def _data(self, batch: Batch, low: int, high: int, start: float, end: float) -> list[Candidate]:
        """Drift, missing values, out-of-range and schema of every column in the window."""
        assert self.profile is not None
        checks = self.config.checks
        ref = self.profile.reference_id
        drift = checks.drift
        miss, oor, schema = checks.missing, checks.out_of_range, checks.schema_
        d_ctx = self._context("drift", start, end, drift.severity, drift.p_value, ref)
        m_ctx = self._context("missing", start, end, miss.severity, miss.p_value, ref)
        o_ctx = self._context("out_of_range", start, end, oor.severity, oor.p_value, ref)
        s_ctx = self._context("schema", start, end, schema.severity, schema.p_value, ref)
        profiles = self.profile.columns
        found: dict[str, list[Candidate | None]] = {
            "drift": [],
            "missing": [],
            "out_of_range": [],
            "schema": [],
        }
        n = high - low
        for name in sorted(set(profiles) | set(batch.columns)):
            profile = profiles.get(name)
            column = batch.columns.get(name)
            if column is None:
                if schema.enabled and n >= schema.min_samples:
                    found["schema"].append(schema_absent(name, s_ctx, schema))
                continue
            missing = int(np.count_nonzero(batch.missing(name)[low:high]))
            if profile is None:
                if schema.enabled:
                    found["schema"].append(schema_unexpected(name, n, n - missing, s_ctx, schema))
                continue
            if miss.enabled:
                found["missing"].append(missing_candidate(name, profile, n, missing, m_ctx, miss))
            if isinstance(profile, NumericProfile):
                values = batch.numeric(name)[low:high]
                if schema.enabled:
                    bad = (
                        0
                        if column.dtype.kind in "fiu"
                        else (n - missing - int(np.count_nonzero(~np.isnan(values))))
                    )
                    found["schema"].append(
                        schema_bad_values(
                            name, n - missing, bad, "non-numeric values", None, s_ctx, schema
                        )
                    )
                if oor.enabled:
                    found["out_of_range"].append(
                        out_of_range_candidate(name, profile, values, o_ctx, oor)
                    )
                if drift.enabled:
                    found["drift"].append(numeric_drift(name, profile, values, d_ctx, drift))
            else:
                codes = batch.codes(name, profile.categories)[low:high]
                counts, unseen = profile.count_codes(codes)
                if schema.enabled:
                    p0 = (profile.singletons + 1) / (profile.n + 1)
                    found["schema"].append(
                        schema_bad_values(
                            name, n - missing, unseen, "unseen categories", p0, s_ctx, schema
                        )
                    )
                if drift.enabled:
                    found["drift"].append(categorical_drift(name, profile, counts, d_ctx, drift))
        prediction = self.profile.prediction
        if drift.enabled and prediction is not None:
            if isinstance(prediction, NumericProfile):
                values = batch.output_numeric()[low:high]
                found["drift"].append(numeric_drift("prediction", prediction, values, d_ctx, drift))
            else:
                codes, names = batch.class_codes("output")
                index = {c: i for i, c in enumerate(prediction.categories)}
                # each class name looked up once; absent outputs (-1) and classes the
                # reference never saw count nowhere
                lookup = np.array([index.get(name, -1) for name in names] + [-1], np.int64)
                where = lookup[codes[low:high]]
                counts = np.bincount(where[where >= 0], minlength=len(prediction.categories))
                found["drift"].append(
                    categorical_drift("prediction", prediction, counts, d_ctx, drift)
                )
        return [
            c
            for check in ("drift", "missing", "out_of_range", "schema")
            for c in found[check]
            if c is not None
        ]

    def _correct(self, candidates: list[Candidate], batch: Batch) -> list[Finding]:
        """Findings from candidates, p-values corrected together (see the module doc), each
        with the version of the window it judged (efficacy's is an earlier window)."""
        versions: dict[tuple[float, float], str | None] = {}
        tested = [i for i, c in enumerate(candidates) if c.p_value is not None]
        p_values = [c.p_value for c in candidates if c.p_value is not None]
        adjusted = adjust_p_values(p_values, self.config.checks.correction)
        by_index = dict(zip(tested, adjusted, strict=True))
        findings = []
        for i, candidate in enumerate(candidates):
            corrected = by_index.get(i)
            rejected = (
                corrected is not None
                and not math.isnan(corrected)
                and (corrected <= candidate.alpha)
            )
            span = (candidate.window_start, candidate.window_end)
            if span not in versions:
                versions[span] = batch.version(*batch.bounds(*span))
            findings.append(candidate.finding(self.model, rejected, corrected, versions[span]))
        return findings
