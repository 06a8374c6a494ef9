"""Health candidates of one window from columns: error rate, latency, throughput, fallbacks.

Latency and throughput compare with the model's own recent history, which `HealthHistory`
keeps per model: a thinned sample of each window's latencies and each window's traffic. Only
windows that ended before the judged one started count, so a window is never its own baseline.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from watchkeeper.config import (
    ErrorRateCheck,
    FallbackRateCheck,
    LatencyCheck,
    ThroughputCheck,
    format_duration,
)
from watchkeeper.tsdb import Finding

from .candidate import Candidate, Context
from .stats import binomial_sf, poisson_cdf, poisson_sf, wilson_interval

DAY = 86400.0
LATENCY_KEEP = 400
"""Latencies kept per window for the baseline (evenly spaced order statistics)."""


@dataclass(slots=True)
class HealthHistory:
    """Per-window traffic and latency samples, oldest first, for baselines.

    Each kind is kept only as long as its own check looks back (a zero span keeps none): the
    latency samples are the bulk of it, and keeping them for the throughput check's week
    instead of the latency check's day grew a detector by megabytes per model per day.
    """

    counts: deque[tuple[float, float]] = field(default_factory=deque)
    latencies: deque[tuple[float, np.ndarray]] = field(default_factory=deque)
    last_end: float = -math.inf

    def record(
        self,
        window_end: float,
        count: float,
        latencies: np.ndarray,
        *,
        keep_counts: float,
        keep_latencies: float,
    ) -> None:
        if window_end <= self.last_end:
            return
        self.last_end = window_end
        if keep_counts > 0:
            self.counts.append((window_end, count))
        if keep_latencies > 0 and latencies.size:
            ordered = np.sort(latencies)
            if ordered.size > LATENCY_KEEP:
                ordered = ordered[np.linspace(0, ordered.size - 1, LATENCY_KEEP).astype(int)]
            self.latencies.append((window_end, ordered))
        while self.counts and self.counts[0][0] < window_end - keep_counts:
            self.counts.popleft()
        while self.latencies and self.latencies[0][0] < window_end - keep_latencies:
            self.latencies.popleft()


def error_rate_finding(
    model: str,
    error: np.ndarray,
    weight: np.ndarray,
    start: float,
    end: float,
    cfg: ErrorRateCheck,
    rule: str,
) -> Finding:
    """`check_error_rate` on columns: the same value, interval, verdict and summary."""
    n = int(error.size)
    errors = int(np.count_nonzero(error > 0))
    total = float(np.sum(weight))
    rate = float(np.sum(weight[error > 0])) / total if total > 0 else 0.0
    interval = wilson_interval(errors, n, cfg.confidence)
    enough = n >= cfg.min_count
    breached = enough and interval[0] > cfg.threshold
    if not enough:
        summary = f"not enough data: {n} predictions (need {cfg.min_count}) to judge the error rate"
    else:
        level = f"{cfg.confidence:.0%} CI {interval[0]:.1%}-{interval[1]:.1%}"
        relation = "above" if breached else "not clearly above"
        summary = (
            f"error rate {rate:.1%} ({level}) {relation} {cfg.threshold:.1%} over {n} predictions"
        )
    return Finding(
        model=model,
        check="error_rate",
        subject="",
        statistic="error_rate",
        value=rate,
        threshold=cfg.threshold,
        breached=breached,
        severity=cfg.severity,
        window_start=start,
        window_end=end,
        interval=interval,
        rule_hash=rule,
        summary=summary,
        n=n,
    )


def fallback_candidate(fallbacks: int, n: int, ctx: Context, cfg: FallbackRateCheck) -> Candidate:
    rate = fallbacks / n if n else 0.0
    interval = wilson_interval(min(fallbacks, n), n, cfg.confidence)
    enough = n >= cfg.min_count
    effect = enough and interval[0] > cfg.threshold
    summary = (
        f"fallback rate {rate:.1%} ({cfg.confidence:.0%} CI {interval[0]:.1%}-{interval[1]:.1%})"
        f" {'above' if effect else 'not clearly above'} {cfg.threshold:.1%} over {n} predictions"
        if enough
        else f"not enough data: {n} predictions (need {cfg.min_count})"
    )
    return ctx.candidate(
        "fallback_rate",
        "",
        "fallback_rate",
        rate,
        cfg.threshold,
        effect,
        summary,
        n=n,
        interval=interval,
    )


def latency_candidate(
    latencies: np.ndarray, history: HealthHistory, ctx: Context, cfg: LatencyCheck
) -> Candidate | None:
    """The window's latency quantile against the SLO or the trailing baseline."""
    values = latencies[~np.isnan(latencies)]
    n = int(values.size)
    if n < cfg.min_count:
        return None
    q = cfg.quantile
    current = float(np.quantile(values, q))
    label = f"p{q * 100:g} latency {current * 1000:.4g} ms"
    if cfg.slo_ms is not None:
        bound = cfg.slo_ms / 1000.0
        effect = current > bound
        where = f"SLO {cfg.slo_ms:g} ms"
    else:
        past = [
            v
            for end, v in history.latencies
            if ctx.window_start - cfg.baseline <= end <= ctx.window_start
        ]
        if not past or sum(v.size for v in past) < 4 * cfg.min_count:
            return None
        base = float(np.quantile(np.concatenate(past), q))
        bound = base
        effect = current >= cfg.min_ratio * base
        where = (
            f"baseline {base * 1000:.4g} ms over the last {format_duration(cfg.baseline)} "
            f"(x{cfg.min_ratio:g} needed)"
        )
    above = int(np.count_nonzero(values > bound))
    p_value = binomial_sf(above - 1, n, 1.0 - q) if above else 1.0
    summary = f"{label} {'above' if effect else 'within'} {where}; {n} predictions"
    return ctx.candidate(
        "latency",
        "",
        f"latency_p{q * 100:g}",
        current,
        bound,
        effect,
        summary,
        n=n,
        p_value=p_value,
    )


def throughput_candidate(
    count: float, history: HealthHistory, ctx: Context, cfg: ThroughputCheck
) -> Candidate | None:
    """The window's traffic against the median of the same time of day on earlier days
    (daily seasonality); not judged before a day of history is known."""
    end = ctx.window_end
    past = [(t, c) for t, c in history.counts if end - cfg.baseline <= t <= ctx.window_start]
    same_hour = [c for t, c in past if abs(((end - t) / DAY) - round((end - t) / DAY)) < 1e-9]
    if not same_hour:
        return None
    base = float(np.median(same_hour))
    how = f"same hour on {len(same_hour)} earlier day{'s' if len(same_hour) > 1 else ''}"
    if base <= 0:
        return None
    ratio = count / base
    drop = ratio <= cfg.drop_ratio
    spike = ratio >= cfg.spike_ratio
    if ratio < 1:
        p_value = poisson_cdf(math.floor(count), base)
    else:
        p_value = poisson_sf(math.ceil(count) - 1, base)
    what = "dropped" if drop else "spiked" if spike else "normal"
    summary = f"traffic {what}: {count:.0f} predictions vs baseline {base:.0f} ({how})"
    threshold = cfg.drop_ratio if ratio < 1 else cfg.spike_ratio
    return ctx.candidate(
        "throughput",
        "",
        "count_ratio",
        ratio,
        threshold,
        drop or spike,
        summary,
        n=int(count),
        p_value=p_value,
    )
