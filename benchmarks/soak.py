"""Soak: does `watchkeeper serve` keep its memory and open files flat over a long run?

Issue 7 target: `watchkeeper serve` with the detector and alerting running on 10 models for
30 minutes: memory and open file descriptors flat.

The script starts a real `watchkeeper serve` (a subprocess, its own data directory, a
loopback JSON webhook as the receiver), and sends it client traffic through the client
library (`Monitor`, one per model) at a modest rate. Every few minutes one model's error rate
jumps and another model's features shift, so alerts go pending, fire, resolve and
notifications are delivered all through the run, not just predictions stored. Every
`--sample-every` seconds it reads the serve process's resident memory (`VmRSS` in
/proc/PID/status) and its open file descriptors (entries of /proc/PID/fd), and at the end
prints a Markdown table of the samples and a summary: start, end, max and the least-squares
slope per hour (over the whole run and over its second half, after warm-up).

    python benchmarks/soak.py [--duration 30m] [--models 10] [--rate 300] [--sample-every 30]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from watchkeeper import Monitor
from watchkeeper.config import parse_duration


class _Hook:
    """A loopback webhook that counts the notifications POSTed to it."""

    def __init__(self) -> None:
        self.count = 0
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                hook.count += 1
                self.send_response(200)
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"json://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _config(data: Path, port: int, hook: str, models: int) -> str:
    checks = (
        "        error_rate: {for: 30s, threshold: 0.05, min_count: 20}\n"
        "        drift: {for: 20s, reference: 120s, min_samples: 50}\n"
        "        latency: {baseline: 600s}\n"
        "        throughput: {enabled: false}\n"
    )
    lines = [
        f"storage: {{path: {data}}}",
        f"ingest: {{host: 127.0.0.1, port: {port}}}",
        "detector:",
        "  interval: 5s",
        "  defaults: {window: 60s, every: 10s}",
        "models:",
    ]
    for m in range(models):
        lines += [f"  m{m}:", "    window: 60s", "    every: 10s", "    checks:"]
        lines += ["  " + line for line in checks.rstrip("\n").split("\n")]
    lines += [
        "alerting:",
        f"  receivers: ['{hook}']",
        "  console: false",
        "  route: {group_wait: 1s, group_interval: 5s, repeat_interval: 10m}",
    ]
    return "\n".join(lines) + "\n"


def _traffic(endpoint: str, models: int, rate: float, stop: threading.Event) -> list[int]:
    """Send `rate` predictions/s spread over the models until `stop`; returns counts sent."""
    sent = [0]
    monitors = [Monitor(f"m{m}", "1", endpoint=endpoint) for m in range(models)]
    rng = random.Random(7)
    tick = 0.1
    per_tick = rate * tick
    carry = 0.0
    start = time.monotonic()
    try:
        while not stop.is_set():
            # A 6-minute cycle: minutes 2-4 m0 fails 40% of its calls and m1's features shift.
            phase = ((time.monotonic() - start) % 360) / 60
            trouble = 2 <= phase < 4
            carry += per_tick
            n, carry = int(carry), carry - int(carry)
            for i in range(n):
                m = (sent[0] + i) % models
                shift = 3.0 if trouble and m == 1 else 0.0
                error = trouble and m == 0 and rng.random() < 0.4
                monitors[m].log_prediction(
                    {"x": rng.gauss(shift, 1), "y": rng.gauss(0, 1), "c": rng.choice("abc")},
                    rng.random(),
                    latency_s=0.01 + rng.random() / 100,
                    error=error,
                )
            sent[0] += n
            stop.wait(tick)
    finally:
        for monitor in monitors:
            monitor.close()
    return sent


def _probe(pid: int) -> tuple[float, float, int, int]:
    """(RSS in MiB, its anonymous part in MiB, open file descriptors, threads), from /proc.

    The anonymous part is the heap: a leak shows there. The rest of RSS is file pages the
    process has mapped (libraries, SQLite's shared memory), which grow with the store file and
    are given back under memory pressure.
    """
    rss_kb = anon_kb = threads = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss_kb = int(line.split()[1])
        elif line.startswith("RssAnon:"):
            anon_kb = int(line.split()[1])
        elif line.startswith("Threads:"):
            threads = int(line.split()[1])
    return rss_kb / 1024, anon_kb / 1024, len(os.listdir(f"/proc/{pid}/fd")), threads


def _slope_per_hour(points: list[tuple[float, float]]) -> float:
    if len(points) < 2:
        return 0.0
    n = len(points)
    mx = sum(t for t, _ in points) / n
    my = sum(v for _, v in points) / n
    var = sum((t - mx) ** 2 for t, _ in points)
    if var == 0:
        return 0.0
    return sum((t - mx) * (v - my) for t, v in points) / var * 3600


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=parse_duration, default=1800.0, help="e.g. 30m")
    parser.add_argument("--models", type=int, default=10)
    parser.add_argument("--rate", type=float, default=300.0, help="predictions per second")
    parser.add_argument("--sample-every", type=parse_duration, default=30.0)
    parser.add_argument("--keep", action="store_true", help="keep the data directory")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="wk-soak-"))
    hook = _Hook()
    port = _free_port()
    config = work / "watchkeeper.yaml"
    config.write_text(_config(work / "data", port, hook.url, args.models))
    exe = Path(sys.executable).with_name("watchkeeper")
    command = [str(exe) if exe.exists() else sys.executable, "serve", "--config", str(config)]
    if not exe.exists():
        command[1:1] = ["-m", "watchkeeper.cli"]
    log = (work / "serve.log").open("w")
    serve = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=work)
    stop = threading.Event()
    samples: list[tuple[float, float, float, int, int]] = []
    sent: list[int] = [0]
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or serve.poll() is not None:
                    raise SystemExit(f"serve did not start; see {work / 'serve.log'}") from None
                time.sleep(0.2)
        result: list[list[int]] = []
        traffic = threading.Thread(
            target=lambda: result.append(
                _traffic(f"http://127.0.0.1:{port}", args.models, args.rate, stop)
            ),
            daemon=True,
        )
        traffic.start()
        t0 = time.monotonic()
        while True:
            elapsed = time.monotonic() - t0
            if serve.poll() is not None:
                raise SystemExit(f"serve exited with {serve.returncode}; see serve.log")
            samples.append((elapsed, *_probe(serve.pid)))
            rss, anon, fds, threads = samples[-1][1:]
            print(
                f"{elapsed:7.0f}s  rss {rss:7.1f} MiB  anon {anon:7.1f} MiB  fds {fds:4d}"
                f"  threads {threads:3d}"
            )
            sys.stdout.flush()
            if elapsed >= args.duration:
                break
            time.sleep(min(args.sample_every, max(0.0, args.duration - elapsed)))
        stop.set()
        traffic.join(timeout=60)
        sent = result[0] if result else [0]
    finally:
        stop.set()
        serve.send_signal(signal.SIGTERM)
        try:
            serve.wait(timeout=60)
        except subprocess.TimeoutExpired:
            serve.kill()
        log.close()
        hook.server.shutdown()

    import sqlite3

    db = sqlite3.connect(work / "data" / "watchkeeper.db")
    stored = db.execute("SELECT count(*) FROM predictions").fetchone()[0]
    findings = db.execute("SELECT count(*) FROM findings").fetchone()[0]
    db.close()
    duration = samples[-1][0]
    half = [s for s in samples if s[0] >= duration / 2]
    print()
    print(
        f"soak of `watchkeeper serve`: {args.models} models, {args.rate:g} predictions/s, "
        f"{duration / 60:.1f} min; {sent[0]} predictions sent, {stored} stored, "
        f"{findings} findings, {hook.count} webhook notifications; serve exit code "
        f"{serve.returncode}"
    )
    print()
    print("| | start | end | max | slope/h (whole run) | slope/h (second half) |")
    print("|---|---:|---:|---:|---:|---:|")
    rows = (
        ("RSS", 1, " MiB"),
        ("RSS anonymous", 2, " MiB"),
        ("open fds", 3, ""),
        ("threads", 4, ""),
    )
    for name, i, unit in rows:
        values = [s[i] for s in samples]
        whole = _slope_per_hour([(s[0], s[i]) for s in samples])
        second = _slope_per_hour([(s[0], s[i]) for s in half])
        print(
            f"| {name} | {values[0]:.1f}{unit} | {values[-1]:.1f}{unit} | {max(values):.1f}{unit} "
            f"| {whole:+.1f}{unit} | {second:+.1f}{unit} |"
        )
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    else:
        print(f"\ndata kept in {work}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
