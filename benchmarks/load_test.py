"""Issue 7 "Load": locust against one `watchkeeper serve --role ingest` process for 5 minutes.

Starts a real `watchkeeper serve` (ingest role, SQLite store in a temporary directory) on a
free loopback port, then locust headless with several worker processes
(`benchmarks/locustfile_ingest.py`: batches of 500 predictions with 20 features, gzip unless
`--no-gzip`) at a
target rate (default 50,000 predictions/s, what `benchmarks/ingest_throughput.py` reaches).
It reports requests, failures (the target is 0), throughput, p50/p99 request latency as locust
measured it, the rows the store holds at the end, and the resident memory (RSS) of every process
(server, locust master and workers) when the load is up and at the end, plus every 30 s.

    python benchmarks/load_test.py                      # 5 minutes at 50,000 predictions/s
    python benchmarks/load_test.py --duration 60 --rate 40000 --processes 3 --users 8

Needs the `bench` extra (`pip install -e '.[bench]'`: locust, psutil). Load generator and
server share the machine's cores; the report says how busy the machine was (`uptime`).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import os
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import psutil

HERE = Path(__file__).resolve().parent
SERVE = "import sys; from watchkeeper.cli import main; sys.exit(main(sys.argv[1:]))"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_healthy(url: str, server: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"watchkeeper serve exited with {server.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"watchkeeper serve did not become healthy within {timeout} s")


def _rss(processes: dict[str, psutil.Process]) -> dict[str, float]:
    """MiB of resident memory per named process (gone ones left out)."""
    out = {}
    for name, proc in processes.items():
        with contextlib.suppress(psutil.Error):
            out[name] = proc.memory_info().rss / 2**20
    return out


def _locust_processes(locust: psutil.Process) -> dict[str, psutil.Process]:
    found = {"locust master": locust}
    for i, child in enumerate(sorted(locust.children(recursive=True), key=lambda p: p.pid)):
        found[f"locust worker {i + 1}"] = child
    return found


def _aggregated(prefix: Path) -> dict[str, str]:
    with open(f"{prefix}_stats.csv", newline="") as f:
        for row in csv.DictReader(f):
            if row["Name"] == "Aggregated":
                return row
    raise SystemExit("locust wrote no aggregated statistics")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=300.0, help="seconds of load")
    parser.add_argument("--rate", type=float, default=50_000, help="target predictions/s")
    parser.add_argument("--users", type=int, default=8, help="locust users (connections)")
    parser.add_argument("--processes", type=int, default=3, help="locust worker processes")
    parser.add_argument("--batch-size", type=int, default=500, help="predictions per request")
    parser.add_argument("--features", type=int, default=20, help="features per prediction")
    parser.add_argument("--every", type=float, default=30.0, help="seconds between RSS samples")
    parser.add_argument(
        "--no-gzip",
        action="store_true",
        help="send plain JSON (as a client with compression off would): less CPU for both sides",
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        port = _free_port()
        url = f"http://127.0.0.1:{port}"
        config = Path(tmp) / "watchkeeper.yaml"
        config.write_text(
            f"storage:\n  path: {tmp}/data\n"
            f"ingest:\n  host: 127.0.0.1\n  port: {port}\n"
            f"  max_batch_items: {max(args.batch_size, 10_000)}\n"
        )
        server = subprocess.Popen(
            [sys.executable, "-c", SERVE, "serve", "--config", str(config), "--role", "ingest"],
            stdout=subprocess.DEVNULL,
            stderr=open(Path(tmp) / "serve.log", "wb"),  # noqa: SIM115 (closed with tmp)
        )
        try:
            _wait_healthy(url, server)
            report = _run_locust(args, url, Path(tmp), server)
        finally:
            server.terminate()
            try:
                server.wait(30)
            except subprocess.TimeoutExpired:
                server.kill()
        db = next(Path(tmp, "data").glob("*.db"))
        stored = sqlite3.connect(db).execute("SELECT count(*) FROM predictions").fetchone()[0]
    _print(args, report, stored)


def _run_locust(
    args: argparse.Namespace, url: str, tmp: Path, server: subprocess.Popen[bytes]
) -> dict[str, Any]:
    env = dict(
        os.environ,
        WK_BATCH_SIZE=str(args.batch_size),
        WK_FEATURES=str(args.features),
        WK_USER_RATE=str(args.rate / args.batch_size / args.users),
        WK_GZIP="0" if args.no_gzip else "1",
    )
    prefix = tmp / "locust"
    command = [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(HERE / "locustfile_ingest.py"),
        "--headless",
        "--only-summary",
        "--users",
        str(args.users),
        "--spawn-rate",
        str(args.users),
        "--run-time",
        f"{int(args.duration)}s",
        "--processes",
        str(args.processes),
        "--host",
        url,
        "--csv",
        str(prefix),
        "--stop-timeout",
        "10",
        "--loglevel",
        "WARNING",
    ]
    load_before = os.getloadavg()
    started = time.monotonic()
    locust = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    server_proc = psutil.Process(server.pid)
    timeline: list[tuple[float, dict[str, float]]] = []
    time.sleep(min(10.0, args.duration / 4))  # workers forked, users spawned
    processes = {"watchkeeper serve": server_proc, **_locust_processes(psutil.Process(locust.pid))}
    timeline.append((time.monotonic() - started, _rss(processes)))
    end = started + args.duration
    while locust.poll() is None:  # every `every` s, the last one 2 s before locust stops
        left = end - 2.0 - time.monotonic()
        time.sleep(max(0.0, min(args.every, left)))
        timeline.append((time.monotonic() - started, _rss(processes)))
        if left <= args.every:
            break
    cpu = {name: _cpu_seconds(process) for name, process in processes.items()}
    _, err = locust.communicate(timeout=args.duration + 120)
    if locust.returncode not in (0, 1):  # 1: some requests failed, still a report
        raise SystemExit(f"locust failed ({locust.returncode}): {err.decode()[-2000:]}")
    return {
        "stats": _aggregated(prefix),
        "timeline": timeline,
        "load_before": load_before,
        "load_after": os.getloadavg(),
        "locust_exit": locust.returncode,
        "cpu": cpu,
    }


def _cpu_seconds(process: psutil.Process) -> float:
    """User plus system CPU time of `process` so far (0 if it has gone)."""
    try:
        times = process.cpu_times()
    except psutil.Error:
        return 0.0
    return float(times.user + times.system)


def _print(args: argparse.Namespace, report: dict[str, Any], stored: int) -> None:
    stats = report["stats"]
    requests = int(stats["Request Count"])
    failures = int(stats["Failure Count"])
    rps = float(stats["Requests/s"])
    print(
        f"locust, {args.processes} worker processes, {args.users} users, {args.duration:.0f} s, "
        f"target {args.rate:,.0f} predictions/s ({args.batch_size} per request, "
        f"{args.features} features), one `watchkeeper serve --role ingest` process, SQLite\n"
    )
    print("| requests | failures | predictions/s | p50 | p99 | max | rows stored |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    print(
        f"| {requests:,} | {failures} | {rps * args.batch_size:,.0f} | {stats['50%']} ms "
        f"| {stats['99%']} ms | {float(stats['Max Response Time']):.0f} ms | {stored:,} |"
    )
    timeline = report["timeline"]
    names = list(timeline[0][1])
    print("\nRSS (MiB) of every process:\n")
    print("| process | " + " | ".join(f"{t:.0f} s" for t, _ in timeline) + " |")
    print("|---|" + "---:|" * len(timeline))
    for name in names:
        cells = " | ".join(f"{rss.get(name, float('nan')):.0f}" for _, rss in timeline)
        print(f"| {name} | {cells} |")
    cpu = report["cpu"]
    server_cpu = cpu.get("watchkeeper serve", 0.0)
    locust_cpu = sum(v for k, v in cpu.items() if k != "watchkeeper serve")
    print(
        f"\nCPU time over the run: watchkeeper serve {server_cpu:.0f} s "
        f"({server_cpu / args.duration:.2f} cores), locust master and workers {locust_cpu:.0f} s "
        f"({locust_cpu / args.duration:.2f} cores), of the machine's {os.cpu_count()} cores"
    )
    before, after = report["load_before"], report["load_after"]
    print(
        f"\nload average before {before[0]:.2f} {before[1]:.2f} {before[2]:.2f}, "
        f"after {after[0]:.2f} {after[1]:.2f} {after[2]:.2f}"
    )
    ok = failures == 0 and stored == (requests - failures) * args.batch_size
    print(f"zero failures and every accepted prediction stored once: {'yes' if ok else 'NO'}")


if __name__ == "__main__":
    main()
