"""`unexpected_model`: a service serving a model file that no registered version has.

Services report the SHA-256 of the model artifact they loaded (`Monitor(artifact_sha256=)`,
sample series `model_artifact` with label `sha256`). A model with `artifacts` registered in
`watchkeeper.yaml` (version -> SHA-256) is judged each window: any reported fingerprint
outside that set is a breach, critical, with no `for` delay: a swapped or tampered model file
is not something to wait out. Models without registered artifacts are not judged (there is
nothing to compare with), and a window in which nobody reported a fingerprint is not judged
either.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from watchkeeper.tsdb import Finding, Sample

__all__ = ["ARTIFACT_SERIES", "UNEXPECTED_MODEL", "check_artifacts"]

ARTIFACT_SERIES = "model_artifact"
UNEXPECTED_MODEL = "unexpected_model"


def check_artifacts(
    model: str,
    reports: Sequence[Sample],
    registered: Mapping[str, str],
    window_start: float,
    window_end: float,
) -> Finding | None:
    """The verdict on the fingerprints reported in the window; None when there is nothing to
    judge (no registered artifacts, or no report)."""
    if not registered or not reports:
        return None
    known = {sha.lower(): version for version, sha in registered.items()}
    seen: dict[str, int] = {}
    for sample in reports:
        sha = dict(sample.labels).get("sha256", "").lower()
        seen[sha] = seen.get(sha, 0) + 1
    unknown = sorted(sha for sha in seen if sha not in known)
    if unknown:
        shown = ", ".join(f"{sha[:12]}…" for sha in unknown[:3])
        summary = (
            f"{model} serves {len(unknown)} model file(s) no registered version has "
            f"(sha256 {shown}); registered: {', '.join(sorted(known.values()))}"
        )
    else:
        versions = sorted({known[sha] for sha in seen})
        summary = f"{model} serves registered model file(s) only ({', '.join(versions)})"
    return Finding(
        model=model,
        check=UNEXPECTED_MODEL,
        subject="",
        statistic="unregistered_artifacts",
        value=float(len(unknown)),
        threshold=0.0,
        breached=bool(unknown),
        severity="critical",
        window_start=window_start,
        window_end=window_end,
        summary=summary,
        n=sum(seen.values()),
    )
