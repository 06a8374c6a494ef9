"""How long each dashboard page takes to render on a month of data (issue 6: under 2 s per page
after the first load, with 30 days of 10 models × 20 features in the SQLite store).

Seeds a SQLite store through `store.write` (predictions at `--per-minute` a minute per model,
detector findings every `--every` minutes: up, error rate, accuracy with its interval, and per
feature a KS, a missing-values and an out-of-range verdict; a new version half-way; an error
burst and a drift onset, with out-of-range values and an accuracy drop, in some models), then
renders every page with Streamlit's AppTest, in-process, for the default range (6 h) and the
whole month:

- first load: the very first render in the process (imports, empty caches);
- uncached: a render after `st.cache_data.clear()`, i.e. all store reads and computation;
- cached: a render after the first load, as the issue asks ("the dashboard caches").

    python benchmarks/dashboard_render.py [--days 30] [--models 10] [--features 20]
        [--per-minute 1] [--every 15] [--repeat 3] [--data-dir DIR]

Prints a Markdown table, then how long the Incidents page's on-demand `explain` of one finding
takes (the page passes the finding's model and window end, so one window is read; then it
recomputes it; `benchmarks/explain_lookup.py` compares the CLI's search). `--data-dir` keeps
(and reuses) the seeded store.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import yaml

PAGES = ("page_fleet.py", "page_model.py", "page_incidents.py", "page_alerts.py")


def seed(
    path: Path, days: int, models: int, features: int, per_minute: float, every_min: float
) -> None:
    from watchkeeper.alerting import Alert, AlertStateStore, fingerprint
    from watchkeeper.tsdb import Finding, Prediction, SQLiteStore

    rng = random.Random(6)
    now = time.time()
    start = now - days * 86400.0
    store = SQLiteStore(path / "watchkeeper.db")
    names = [f"model-{m:02d}" for m in range(models)]
    gap = 60.0 / per_minute
    state = AlertStateStore(path / "alerts.db")
    for m, model in enumerate(names):
        drift_from = start + (0.5 + 0.4 * rng.random()) * days * 86400 if m % 3 == 0 else None
        burst = start + rng.random() * days * 86400 if m % 4 == 0 else None
        day = 0
        while start + day * 86400 < now:
            t0 = start + day * 86400
            batch = []
            t = t0
            i = 0
            while t < min(t0 + 86400, now):
                in_burst = burst is not None and burst <= t < burst + 3600
                batch.append(
                    Prediction(
                        model=model,
                        prediction_id=f"{model}-{day}-{i}",
                        timestamp=t,
                        features={f"f{k:02d}": rng.gauss(0, 1) for k in range(features)},
                        output=rng.random(),
                        version="v1" if t < start + days * 43200 else "v2",
                        latency_s=rng.lognormvariate(-4, 0.4),
                        error=rng.random() < (0.3 if in_burst else 0.01),
                    )
                )
                t += gap
                i += 1
            findings = []
            end = (t0 // (every_min * 60) + 1) * every_min * 60
            while end < min(t0 + 86400, now):
                drifting = drift_from is not None and end >= drift_from
                in_burst = burst is not None and burst <= end < burst + 3600
                common = {"model": model, "window_start": end - 3600, "window_end": end}
                findings.append(
                    Finding(check="up", subject="", statistic="seconds_since_last_data",
                            value=gap, threshold=300, breached=False, severity="critical",
                            **common)  # type: ignore[arg-type]
                )  # fmt: skip
                findings.append(
                    Finding(check="error_rate", subject="", statistic="error_rate",
                            value=0.3 if in_burst else 0.01, threshold=0.05, breached=in_burst,
                            severity="critical", **common)  # type: ignore[arg-type]
                )  # fmt: skip
                for k in range(features):
                    ks = (0.35 if drifting and k == 0 else 0.0) + abs(rng.gauss(0.03, 0.01))
                    findings.append(
                        Finding(check="drift", subject=f"f{k:02d}", statistic="ks", value=ks,
                                threshold=0.1, breached=ks > 0.1, severity="warning",
                                p_value=1e-9 if ks > 0.1 else 0.5, **common)  # type: ignore[arg-type]
                    )  # fmt: skip
                    outside = 0.4 if drifting and k == 0 else 0.0
                    findings.append(
                        Finding(check="out_of_range", subject=f"f{k:02d}",
                                statistic="out_of_range_fraction", value=outside, threshold=0.05,
                                breached=outside > 0.05, severity="warning", n=60,
                                **common)  # type: ignore[arg-type]
                    )  # fmt: skip
                    findings.append(
                        Finding(check="missing", subject=f"f{k:02d}", statistic="missing_rate",
                                value=0.0, threshold=0.05, breached=False, severity="warning",
                                n=60, **common)  # type: ignore[arg-type]
                    )  # fmt: skip
                accuracy = 0.7 if drifting else 0.9
                findings.append(
                    Finding(check="efficacy", subject="accuracy", statistic="accuracy",
                            value=accuracy, threshold=0.9, breached=drifting, severity="critical",
                            interval=(accuracy - 0.08, accuracy + 0.07), n=48,
                            p_value=1e-6 if drifting else 0.5, **common)  # type: ignore[arg-type]
                )  # fmt: skip
                end += every_min * 60
            store.write(predictions=batch, findings=findings)
            day += 1
        if drift_from is not None:
            labels = {"model": model, "check": "drift", "subject": "f00", "severity": "warning"}
            state.upsert(
                Alert(fingerprint(labels), tuple(sorted(labels.items())), "firing",
                      drift_from, now, fired_at=drift_from + 900, summary="f00 drifted")
            )  # fmt: skip
    state.close()
    store.close()
    config = {
        "storage": {"path": str(path)},
        "detector": {"defaults": {"window": 3600, "every": every_min * 60}},
        "models": {
            model: {
                "window": 3600,
                "every": every_min * 60,
                "labels": {"team": f"team-{m % 3}", "environment": "prod" if m % 2 else "staging"},
            }
            for m, model in enumerate(names)
        },
    }
    (path / "watchkeeper.yaml").write_text(yaml.safe_dump(config))


def render(at: object, page: str) -> float:
    started = time.perf_counter()
    at.switch_page(page).run()  # type: ignore[attr-defined]
    elapsed = time.perf_counter() - started
    if at.exception:  # type: ignore[attr-defined]
        raise RuntimeError(f"{page}: {at.exception}")  # type: ignore[attr-defined]
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--models", type=int, default=10)
    parser.add_argument("--features", type=int, default=20)
    parser.add_argument("--per-minute", type=float, default=1.0)
    parser.add_argument("--every", type=float, default=15.0, help="minutes between evaluations")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--data-dir", type=Path, default=None)
    args = parser.parse_args()

    data_dir = args.data_dir or Path(tempfile.mkdtemp(prefix="wk-dash-bench-"))
    data_dir.mkdir(parents=True, exist_ok=True)
    if not (data_dir / "watchkeeper.yaml").exists():
        started = time.perf_counter()
        seed(data_dir, args.days, args.models, args.features, args.per_minute, args.every)
        print(f"seeded {data_dir} in {time.perf_counter() - started:.1f}s", file=sys.stderr)

    import streamlit as st
    from streamlit.testing.v1 import AppTest

    from watchkeeper.dashboard import app_path

    sys.argv = [str(app_path()), "--config", str(data_dir / "watchkeeper.yaml")]
    at = AppTest.from_file(str(app_path()), default_timeout=600)
    started = time.perf_counter()
    at.run()  # the entry script opens the Fleet page
    first_load: dict[str, float] = {"page_fleet.py": time.perf_counter() - started}
    rows = []
    for range_name in ("last 6h", "last 30d"):
        at.sidebar.radio(key="range").set_value(range_name)
        at.sidebar.selectbox(key="refresh").select("off")
        for page in PAGES:
            if page not in first_load:
                first_load[page] = render(at, page)
            uncached, cached = [], []
            for _ in range(args.repeat):
                st.cache_data.clear()
                uncached.append(render(at, page))
                cached.append(render(at, page))
            rows.append((page, range_name, statistics.median(uncached), statistics.median(cached)))

    print(
        f"\n{args.models} models × {args.features} features, {args.days} days, "
        f"{args.per_minute:g} prediction(s)/min per model, findings every {args.every:g} min\n"
    )
    print("| page | range | first load (s) | uncached (s) | cached (s) | target |")
    print("|---|---|---:|---:|---:|---|")
    for page, range_name, uncached_s, cached_s in rows:
        name = page.removeprefix("page_").removesuffix(".py").capitalize()
        first = f"{first_load[page]:.2f}" if range_name == "last 6h" else "–"
        verdict = "ok" if cached_s < 2.0 else "MISSED"
        print(
            f"| {name} | {range_name} | {first} | {uncached_s:.2f} | {cached_s:.2f} | "
            f"< 2 s after first load: {verdict} |"
        )
    print(
        f"\nexplain one finding on demand (Incidents page button): {explain_time(data_dir):.2f} s"
    )


def explain_time(data_dir: Path) -> float:
    """Seconds the page's `explain` takes for the newest breached finding of model-00."""
    import contextlib
    import io

    from watchkeeper.config import load_config
    from watchkeeper.detector.explain import ExplainError, explain_store
    from watchkeeper.detector.replay import finding_id
    from watchkeeper.tsdb import open_store

    config = load_config(data_dir / "watchkeeper.yaml")
    store = open_store(config.storage)
    try:
        now = time.time()
        finding = store.findings("model-00", now - 86400, now, breached_only=True)[-1]
    finally:
        store.close()
    started = time.perf_counter()
    # Seeded findings need not be reproducible; the time is what counts.
    with contextlib.suppress(ExplainError):
        explain_store(
            finding_id(finding),
            config,
            io.StringIO(),
            model=finding.model,
            window_end=finding.window_end,
        )
    return time.perf_counter() - started


if __name__ == "__main__":
    main()
