"""`watchkeeper demo`: the whole stack on an embedded store, with incidents to catch.

It starts the ingest API, fills a few hours of history through the real client over real
HTTP (with an error burst and a drift onset in it), lets the detector judge that history,
then keeps two synthetic services sending live (one of them goes silent for a while) while
the detector and alerting run on their schedule and the dashboard shows it all.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TextIO

import yaml
from prometheus_client import CollectorRegistry

from watchkeeper.alerting.state import read_alerts
from watchkeeper.collectors.client import Monitor
from watchkeeper.config import (
    AlertingConfig,
    ChecksConfig,
    Config,
    DashboardConfig,
    DetectorConfig,
    DriftCheck,
    ErrorRateCheck,
    IngestConfig,
    ModelConfig,
    StorageConfig,
    UpCheck,
    format_duration,
)
from watchkeeper.runtime import Stack
from watchkeeper.synthetic import LiveTraffic, SyntheticService, backfill, demo_services

MARKER = ".watchkeeper-demo"
STATUS_EVERY_S = 15.0


class DemoError(RuntimeError):
    """The demo cannot start; the message says why and what to do."""


@dataclass(frozen=True, slots=True)
class DemoOptions:
    data_dir: Path = Path("watchkeeper-demo")
    duration_s: float | None = None
    dashboard: bool = True
    notify: tuple[str, ...] = ()
    port: int = 8765
    dashboard_port: int = 8501
    history_s: float = 3 * 3600.0
    rate_per_min: float = 60.0
    seed: int = 7


def demo_config(options: DemoOptions, ingest_port: int, dashboard_port: int) -> Config:
    """The demo's configuration: short windows so that a minute of live traffic shows change."""
    model = ModelConfig.model_validate(
        {
            "window": 600,
            "every": 15,
            "checks": ChecksConfig(
                up=UpCheck.model_validate({"staleness": 30, "for": 0}),
                error_rate=ErrorRateCheck.model_validate({"threshold": 0.05, "for": 120}),
                drift=DriftCheck.model_validate({"reference": 3600, "for": 300}),
            ),
        }
    )
    teams = {"fraud-scorer": "payments", "churn-model": "growth"}
    return Config(
        storage=StorageConfig(path=options.data_dir),
        ingest=IngestConfig(port=ingest_port),
        detector=DetectorConfig(interval=5, defaults=model),
        models={
            name: model.model_copy(update={"labels": {"team": team, "environment": "demo"}})
            for name, team in teams.items()
        },
        alerting=AlertingConfig(
            receivers=list(options.notify),
            dashboard_url=f"http://127.0.0.1:{dashboard_port}" if options.dashboard else "",
        ),
        dashboard=DashboardConfig(port=dashboard_port),
    )


def prepare_data_dir(path: Path) -> None:
    """Start from an empty directory; only a previous demo's directory is ever cleared."""
    if path.exists() and any(path.iterdir()):
        if not (path / MARKER).exists():
            raise DemoError(
                f"{path} exists and was not made by `watchkeeper demo`; "
                "choose another directory with --data-dir"
            )
        shutil.rmtree(path)
    path.mkdir(parents=True, exist_ok=True)
    (path / MARKER).write_text("made by `watchkeeper demo`; safe to delete\n")


def pick_port(preferred: int) -> int:
    """`preferred` when it is free on 127.0.0.1, otherwise a free port the system gives."""
    for port in (preferred, 0):
        with socket.socket() as sock:
            # As the servers themselves do, so a port a previous run just left is not "taken".
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return int(sock.getsockname()[1])
    raise DemoError("no free TCP port on 127.0.0.1")


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class _Console:
    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.started = time.monotonic()

    def say(self, message: str) -> None:
        elapsed = time.monotonic() - self.started
        print(f"[demo {elapsed:5.1f}s] {message}", file=self.out, flush=True)


def run_demo(options: DemoOptions, out: TextIO | None = None) -> int:
    """Run the demo until `duration_s` has passed since it started, or Ctrl-C; exit code."""
    out = out or sys.stdout
    console = _Console(out)
    deadline = None if options.duration_s is None else time.monotonic() + options.duration_s
    prepare_data_dir(options.data_dir)
    ingest_port = pick_port(options.port)
    dashboard_port = pick_port(options.dashboard_port) if options.dashboard else 0
    config = demo_config(options, ingest_port, dashboard_port)
    config_file = options.data_dir / "watchkeeper.yaml"
    config_file.write_text(yaml.safe_dump(config.model_dump(mode="json", by_alias=True)))
    console.say(f"data directory {options.data_dir} (configuration in {config_file})")

    dashboard: subprocess.Popen[bytes] | None = None
    monitors: dict[str, Monitor] = {}
    traffic: LiveTraffic | None = None
    with _sigterm_as_interrupt(), Stack(config, console=out) as stack:
        try:
            stack.start_ingest()
            console.say(f"ingest API listening on {stack.ingest_url}")
            if options.dashboard:
                from watchkeeper.dashboard import launch

                dashboard = launch(
                    options.data_dir,
                    config_path=config_file,
                    port=dashboard_port,
                    log_file=options.data_dir / "dashboard.log",
                )
            now = time.time()
            services = demo_services(now, seed=options.seed)
            monitors = {
                s.model: Monitor(
                    s.model,
                    s.version,
                    endpoint=stack.ingest_url,
                    registry=CollectorRegistry(),
                    max_buffer=200_000,
                )
                for s in services
            }
            _fill_history(console, services, monitors, now, options)
            traffic = LiveTraffic(services, monitors, options.rate_per_min)
            traffic.start()
            console.say(
                f"live traffic from {len(services)} services, "
                f"{options.rate_per_min:g} predictions a minute each "
                "(churn-model goes silent 10s after the history, for 90s)"
            )
            console.say("detector judging the history (alerts print as they change)...")
            n_findings, n_transitions = stack.catch_up()
            console.say(f"history judged: {n_findings} findings, {n_transitions} alert changes")
            stack.start_detection()
            console.say(
                f"detector running every {format_duration(config.detector.interval)}; "
                + ("Ctrl-C to stop" if deadline is None else "stopping at the end of --duration")
            )
            if dashboard is not None:
                _report_dashboard(console, dashboard, dashboard_port)
            _report_until(console, stack, traffic, deadline)
        except KeyboardInterrupt:
            console.say("interrupted; stopping cleanly")
        finally:
            if traffic is not None:
                traffic.stop()
            for monitor in monitors.values():
                monitor.close(timeout=5.0)
            if dashboard is not None:
                dashboard.terminate()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    dashboard.wait(timeout=10)
                if dashboard.poll() is None:
                    dashboard.kill()
    firing = [a for a in read_alerts(config.storage.alert_state_file) if a.state == "firing"]
    console.say(
        f"stopped. {len(firing)} alert(s) firing at the end; data kept in {options.data_dir}. "
        f"Open it again with: watchkeeper dashboard --config {config_file}"
    )
    return 0


def _fill_history(
    console: _Console,
    services: list[SyntheticService],
    monitors: dict[str, Monitor],
    now: float,
    options: DemoOptions,
) -> None:
    console.say(
        f"backfilling {format_duration(options.history_s)} of history for "
        f"{len(services)} models through the client "
        "(error burst 2.5h ago for 30m in fraud-scorer; its 'amount' drifts since 45m ago)"
    )
    started = time.monotonic()
    sent = backfill(services, monitors, now - options.history_s, now, options.rate_per_min)
    delivered = all(m.flush(timeout=120.0) for m in monitors.values())
    if not delivered:
        raise DemoError("the ingest API did not take the history; see the log above")
    console.say(f"history stored: {sent} predictions in {time.monotonic() - started:.1f}s")


def _report_dashboard(console: _Console, dashboard: subprocess.Popen[bytes], port: int) -> None:
    from watchkeeper.dashboard import wait_until_ready

    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(url, timeout=60.0, process=dashboard)
    except (TimeoutError, RuntimeError) as exc:
        console.say(f"dashboard not available ({exc}); see dashboard.log in the data directory")
    else:
        console.say(f"dashboard ready: {url}")


def _report_until(
    console: _Console, stack: Stack, traffic: LiveTraffic, deadline: float | None
) -> None:
    """Print a status line every few seconds until `deadline` (monotonic), or forever."""
    while deadline is None or time.monotonic() < deadline:
        wait = (
            STATUS_EVERY_S if deadline is None else min(STATUS_EVERY_S, deadline - time.monotonic())
        )
        time.sleep(max(wait, 0.0))
        firing = [
            f"{a.label_map['model']}/{a.label_map['check']}"
            + (f"({a.label_map['subject']})" if a.label_map.get("subject") else "")
            for a in read_alerts(stack.config.storage.alert_state_file)
            if a.state == "firing"
        ]
        console.say(f"live: {traffic.sent} predictions sent; firing: {', '.join(firing) or 'none'}")
