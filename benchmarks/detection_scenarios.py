"""Detection delay and false alarms of `watchkeeper replay` on seeded streams with known changes.

Every stream has 20 features (16 numeric, 4 categorical), a few hundred predictions an hour
with a daily cycle, labels arriving 1-4 hours late, and is replayed at the defaults (tumbling
hourly windows, the labelled reference file as reference). Each change scenario starts on day
4 of a 6-day stream; the no-change streams run 10 days. For each scenario the table gives the
first alert of the expected check after the change (delay in hours), whether a transient
incident resolved, and every other alert that fired (false alarms).

    python benchmarks/detection_scenarios.py [--seeds 1] [--only NAME ...]
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
from dataclasses import dataclass

from watchkeeper.detector.replay import replay_frames
from watchkeeper.detector.streams import Change, StreamSpec, generate

DAY = 86400.0
HOUR = 3600.0
AT = 4 * DAY + 17 * 60  # day 4, 00:17: changes do not start on a window boundary


@dataclass(frozen=True)
class Scenario:
    name: str
    changes: tuple[Change, ...]
    expected: frozenset[str]
    also_ok: frozenset[str] = frozenset()
    days: float = 6.0
    resolves: bool = False


def scenarios() -> list[Scenario]:
    two_hours = AT + 2 * HOUR
    three_hours = AT + 3 * HOUR
    s = Scenario
    return [
        s(
            "mean shift 0.5 sd (x5)",
            (Change("mean_shift", AT, feature="x5", amount=0.5),),
            frozenset({"drift"}),
        ),
        s(
            "variance x2 (x6)",
            (Change("variance", AT, feature="x6", amount=2.0),),
            frozenset({"drift", "out_of_range"}),
        ),
        s(
            "categorical proportions (c0)",
            (Change("categorical", AT, feature="c0"),),
            frozenset({"drift"}),
        ),
        s(
            "gradual drift 0->1 sd over 2 days (x7)",
            (Change("gradual", AT, AT + 2 * DAY, feature="x7", amount=1.0),),
            frozenset({"drift"}),
            frozenset({"out_of_range"}),
        ),
        s(
            "missing values 0.5% -> 30% (x8)",
            (Change("missing", AT, feature="x8", amount=0.3),),
            frozenset({"missing"}),
        ),
        s(
            "efficacy drop, labels 1-4 h late",
            (Change("efficacy", AT, amount=0.3),),
            frozenset({"efficacy"}),
            frozenset({"drift"}),
        ),
        s("latency x2", (Change("latency", AT, amount=2.0),), frozenset({"latency"})),
        s(
            "error burst 20% for 2 h",
            (Change("error_burst", AT, two_hours, amount=0.2),),
            frozenset({"error_rate"}),
            resolves=True,
        ),
        s(
            "outage 3 h",
            (Change("outage", AT, three_hours),),
            frozenset({"up"}),
            frozenset({"throughput"}),
            resolves=True,
        ),
        s(
            "prediction drift (0 -> 1 for half)",
            (Change("prediction", AT, amount=0.5),),
            frozenset({"drift"}),
            frozenset({"efficacy"}),
        ),
        s(
            "fallbacks 1% -> 20%",
            (Change("fallback", AT, amount=0.2),),
            frozenset({"fallback_rate"}),
        ),
        s(
            "out of range 5% (x9 = 50)",
            (Change("out_of_range", AT, feature="x9", amount=0.05),),
            frozenset({"out_of_range"}),
            frozenset({"drift"}),
        ),
        s(
            "unseen category 10% (c1)",
            (Change("unseen_category", AT, feature="c1", amount=0.1),),
            frozenset({"schema"}),
            frozenset({"drift"}),
        ),
        s("no change, 10 days", (), frozenset(), days=10.0),
    ]


def run(scenario: Scenario, seed: int) -> dict[str, object]:
    spec = StreamSpec(days=scenario.days, seed=seed, changes=scenario.changes)
    predictions, labels, reference = generate(spec)
    alerts: list[dict[str, object]] = []
    findings = io.StringIO()
    started = time.perf_counter()
    replay_frames(
        predictions,
        None,
        labels=labels,
        reference=reference,
        alerts=alerts,
        findings_out=findings,
    )
    seconds = time.perf_counter() - started
    at = spec.start + AT if scenario.changes else float("inf")
    fired = [a for a in alerts if a["state"] == "firing"]
    hits = [
        a
        for a in fired
        if a["check"] in scenario.expected and float(a["timestamp"]) >= at  # type: ignore[arg-type]
    ]
    delay = (float(hits[0]["timestamp"]) - at) / HOUR if hits else None  # type: ignore[arg-type]
    allowed = scenario.expected | scenario.also_ok
    false = [
        a
        for a in fired
        if float(a["timestamp"]) < at or a["check"] not in allowed  # type: ignore[arg-type]
    ]
    resolved = None
    if scenario.resolves and hits:
        resolved = any(
            a["state"] == "resolved" and a["fingerprint"] == hits[0]["fingerprint"] for a in alerts
        )
    breached_windows, windows = set(), set()
    for line in findings.getvalue().splitlines():
        record = json.loads(line)
        if record["check"] == "up" and record["window_end"] < at:
            windows.add(record["window_end"])
        if record["breached"] and record["window_end"] < at:
            breached_windows.add(record["window_end"])
    return {
        "breached_before": len(breached_windows),
        "windows_before": len(windows),
        "delay": delay,
        "by": f"{hits[0]['check']}/{hits[0]['subject'] or '-'}" if hits else "-",
        "false": false,
        "resolved": resolved,
        "rows": len(predictions),
        "seconds": seconds,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=1, help="seeds per scenario (default 1)")
    parser.add_argument("--only", nargs="*", default=None, help="scenario names containing ...")
    args = parser.parse_args(argv)
    print(
        "| scenario | seed | rows | expected check | detected by | delay (h) | resolved | "
        "false alarms | windows with a breached finding before the change | replay (s) |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    failures = 0
    for scenario in scenarios():
        if args.only and not any(o in scenario.name for o in args.only):
            continue
        for seed in range(args.seeds):
            r = run(scenario, seed)
            false = r["false"]
            assert isinstance(false, list)
            names = ", ".join(f"{a['check']}/{a['subject'] or '-'}" for a in false) or "0"
            expected = ", ".join(sorted(scenario.expected)) or "(none)"
            delay = "-" if r["delay"] is None else f"{r['delay']:.1f}"
            resolved = "-" if r["resolved"] is None else ("yes" if r["resolved"] else "NO")
            print(
                f"| {scenario.name} | {seed} | {r['rows']} | {expected} | {r['by']} | {delay} "
                f"| {resolved} | {names} | {r['breached_before']}/{r['windows_before']} "
                f"| {r['seconds']:.1f} |",
                flush=True,
            )
            missed = bool(scenario.expected) and r["delay"] is None
            failures += missed or bool(false) or r["resolved"] is False
    print(
        f"\n{failures} scenario run(s) with a miss, a false alarm or an unresolved incident",
        file=sys.stderr,
    )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
