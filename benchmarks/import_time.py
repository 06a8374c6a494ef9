"""How long `import watchkeeper` + `import watchkeeper.collectors` takes a model service.

Target (issue 2): under 150 ms. Compared in the same run with a bare `import prometheus_client`,
which the client builds on, and an empty interpreter start.

    python benchmarks/import_time.py [--runs 30]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

CASES = {
    "python -c pass": "pass",
    "import prometheus_client": "import prometheus_client",
    "import watchkeeper, watchkeeper.collectors": "import watchkeeper, watchkeeper.collectors",
}


def measure(code: str, runs: int) -> list[float]:
    times = []
    cwd = tempfile.gettempdir()  # not the checkout: its watchkeeper/ folder would shadow
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True, cwd=cwd)
        times.append(time.perf_counter() - started)
    return times


def self_time_ms(code: str) -> float:
    """Cumulative import time of the top-level imports, from CPython's own -X importtime."""
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code],
        check=True,
        capture_output=True,
        text=True,
        cwd=tempfile.gettempdir(),
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    ).stderr
    total = 0
    for line in out.splitlines():
        parts = line.removeprefix("import time:").split("|")
        # Top-level imports have exactly one space before their name; nested ones are indented.
        if len(parts) == 3 and parts[2].rstrip() in {" watchkeeper", " prometheus_client"}:
            total += int(parts[1])
    return total / 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    baseline = statistics.median(measure("pass", args.runs))
    print("| case | median wall time (ms) | minus interpreter start (ms) | -X importtime (ms) |")
    print("|---|---|---|---|")
    for name, code in CASES.items():
        median = statistics.median(measure(code, args.runs))
        extra = median - baseline
        cumulative = "" if code == "pass" else f"{self_time_ms(code):.1f}"
        print(f"| `{name}` | {median * 1000:.1f} | {extra * 1000:.1f} | {cumulative} |")


if __name__ == "__main__":
    main()
