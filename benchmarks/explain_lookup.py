"""How long `watchkeeper explain ID` and the dashboard's Recompute button take on a big store,
before and after the bounded lookup (issue 6: the button took 16-24 s on the 30-day store).

A finding id is a hash, so `explain` must find the finding first. Before: every stored finding
read and hashed (`store.findings()`). Now: the CLI searches newest first in slices growing
fourfold (`find_stored` without hints), and the dashboard passes the finding's model and window
end (`find_stored` with hints: one window read). For a finding of the last day, one a week old
and one a month old, prints the lookup time of each way, then the whole `explain_store` call
(lookup and recompute) as the CLI and as the page run it.

    python benchmarks/explain_lookup.py --data-dir DIR [--repeat 3]

DIR is a data directory seeded by `benchmarks/dashboard_render.py --data-dir DIR` (30 days of
10 models × 20 features, 1.8 million findings); seeded findings need not reproduce, so the
recompute may answer "DIFFERENT numbers": the time is what counts.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import statistics
import time
from collections.abc import Callable
from pathlib import Path


def timed(run: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    from watchkeeper.config import load_config
    from watchkeeper.detector.explain import ExplainError, explain_store, find_stored
    from watchkeeper.detector.replay import finding_id
    from watchkeeper.tsdb import Finding, open_store

    config = load_config(args.data_dir / "watchkeeper.yaml")
    store = open_store(config.storage)
    newest = max(store.last_evaluated(m.name) or 0.0 for m in store.models())
    total = len(store.findings())
    picked: dict[str, Finding] = {}
    for name, age_days in (("last day", 0.5), ("a week old", 7.0), ("a month old", 29.0)):
        end = newest - age_days * 86400.0
        picked[name] = store.findings("model-03", end - 3600.0, end)[-1]

    def explain(f: Finding, hinted: bool) -> None:
        hints = {"model": f.model, "window_end": f.window_end} if hinted else {}
        with contextlib.suppress(ExplainError):
            explain_store(finding_id(f), config, io.StringIO(), **hints)  # type: ignore[arg-type]

    def measure(f: Finding) -> tuple[float, ...]:
        wanted = finding_id(f)
        return (
            timed(lambda: next(g for g in store.findings() if finding_id(g) == wanted), 1),
            timed(lambda: find_stored(store, wanted), args.repeat),
            timed(
                lambda: find_stored(store, wanted, model=f.model, window_end=f.window_end),
                args.repeat,
            ),
            timed(lambda: explain(f, False), args.repeat),
            timed(lambda: explain(f, True), args.repeat),
        )

    rows = [(name, *measure(f)) for name, f in picked.items()]
    store.close()

    print(f"\n{total:,} stored findings; lookup = finding the id, explain = lookup + recompute\n")
    print(
        "| finding | lookup before: read all (s) | lookup CLI: newest first (s) "
        "| lookup page: hinted (s) | explain CLI (s) | explain page (s) |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for name, before, cli, page, cli_all, page_all in rows:
        print(
            f"| {name} | {before:.2f} | {cli:.2f} | {page:.3f} | {cli_all:.2f} | {page_all:.2f} |"
        )


if __name__ == "__main__":
    main()
