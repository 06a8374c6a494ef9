"""A verdict before the model's multiple-testing correction: what a check measured.

Checks that test a hypothesis give a p-value; `ModelJudge` corrects all p-values of a model
in one window together (Holm or BH) and only then turns each candidate into a `Finding`: it
is breached when its effect clears the floor and, if it has a p-value, when the correction
rejects it at the check's level.
"""

from __future__ import annotations

from dataclasses import dataclass

from watchkeeper.tsdb import Finding
from watchkeeper.tsdb.records import Severity


@dataclass(frozen=True, slots=True)
class Candidate:
    check: str
    subject: str
    statistic: str
    value: float
    threshold: float
    effect: bool
    severity: Severity
    window_start: float
    window_end: float
    rule_hash: str
    summary: str
    n: int = 0
    p_value: float | None = None
    alpha: float = 0.01
    interval: tuple[float, float] | None = None
    reference_id: str = ""

    def finding(
        self, model: str, rejected: bool, adjusted: float | None, version: str | None = None
    ) -> Finding:
        breached = self.effect and (self.p_value is None or rejected)
        summary = self.summary
        if self.p_value is not None and adjusted is not None:
            summary += f" (p={self.p_value:.2g}, corrected {adjusted:.2g}, level {self.alpha:g})"
            if self.effect and not rejected:
                summary += ", not significant"
        return Finding(
            model=model,
            check=self.check,
            subject=self.subject,
            statistic=self.statistic,
            value=self.value,
            threshold=self.threshold,
            breached=breached,
            severity=self.severity,
            window_start=self.window_start,
            window_end=self.window_end,
            p_value=self.p_value,
            interval=self.interval,
            reference_id=self.reference_id,
            rule_hash=self.rule_hash,
            summary=summary,
            n=self.n,
            version=version,
        )


@dataclass(frozen=True, slots=True)
class Context:
    """What every candidate of one check in one window shares."""

    window_start: float
    window_end: float
    rule_hash: str
    reference_id: str
    severity: Severity
    alpha: float

    def candidate(
        self,
        check: str,
        subject: str,
        statistic: str,
        value: float,
        threshold: float,
        effect: bool,
        summary: str,
        n: int = 0,
        p_value: float | None = None,
        interval: tuple[float, float] | None = None,
    ) -> Candidate:
        return Candidate(
            check=check,
            subject=subject,
            statistic=statistic,
            value=value,
            threshold=threshold,
            effect=effect,
            severity=self.severity,
            window_start=self.window_start,
            window_end=self.window_end,
            rule_hash=self.rule_hash,
            summary=summary,
            n=n,
            p_value=p_value,
            alpha=self.alpha,
            interval=interval,
            reference_id=self.reference_id,
        )
