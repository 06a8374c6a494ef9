"""The `watchkeeper` command line: demo, serve, detect, dashboard, check-config and the
alerting and detector tools."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from watchkeeper import __version__
from watchkeeper.alerting import cli as alerting_cli
from watchkeeper.config import Config, ConfigError, load_config, parse_duration
from watchkeeper.detector import commands as detector_cli
from watchkeeper.detector.shard import Shard, parse_shard
from watchkeeper.roles import ROLES

EPILOG = """examples:
  watchkeeper demo                         the whole stack with synthetic services and incidents
  watchkeeper demo --duration 60 --no-dashboard --notify json://127.0.0.1:9000/hook
  watchkeeper serve --config watchkeeper.yaml
  watchkeeper serve --config watchkeeper.yaml --role ingest --port 8766
  watchkeeper detect --config watchkeeper.yaml --shard 1/2
  watchkeeper dashboard --config watchkeeper.yaml
  watchkeeper check-config watchkeeper.yaml
  watchkeeper reference set fraud --file train.csv --config watchkeeper.yaml
"""


def _duration(text: str) -> float:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="watchkeeper",
        description="Monitoring and alerting for machine-learning models in production.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"watchkeeper {__version__}")
    parser.add_argument(
        "--log-level",
        default="WARNING",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="how much to log to stderr (default: WARNING)",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    demo = commands.add_parser(
        "demo",
        help="run the whole stack with synthetic model services and injected incidents",
        description=(
            "Start the ingest API, detector, alerting and dashboard on an embedded data "
            "directory; backfill three hours of history (an error burst and a drift onset) "
            "through the real client; then keep two synthetic services sending live, one of "
            "which goes silent for 90 s. Alerts print to the console and go to every --notify "
            "URL. Stops after --duration or on Ctrl-C."
        ),
    )
    demo.add_argument(
        "--duration",
        type=_duration,
        default=None,
        metavar="SECONDS",
        help="stop cleanly after this long (e.g. 60, 90s, 5m); default: run until Ctrl-C",
    )
    demo.add_argument("--no-dashboard", action="store_true", help="do not start the dashboard")
    demo.add_argument(
        "--data-dir",
        type=Path,
        default=Path("watchkeeper-demo"),
        help="where the demo keeps its data (default: ./watchkeeper-demo; a previous demo's "
        "directory is cleared, any other non-empty directory is refused)",
    )
    demo.add_argument(
        "--notify",
        action="append",
        default=[],
        metavar="APPRISE_URL",
        help="also deliver alerts to this apprise URL (repeatable), e.g. "
        "json://127.0.0.1:9000/hook, mailto://..., slack://...",
    )
    demo.add_argument(
        "--port",
        type=int,
        default=8765,
        help="ingest API port (default 8765, or a free one if taken)",
    )
    demo.add_argument(
        "--dashboard-port",
        type=int,
        default=8501,
        help="dashboard port (default 8501, or a free one if taken)",
    )

    serve = commands.add_parser(
        "serve",
        help="run the ingest API, detector and alerting",
        description="Serve POST /v1/ingest, GET /healthz and GET /metrics, and run the "
        "detector and alerting on their schedule, until Ctrl-C or SIGTERM.",
    )
    _add_config_options(serve)
    serve.add_argument("--host", help="HTTP address (default from config: 127.0.0.1)")
    serve.add_argument(
        "--port",
        type=int,
        help="ingest API port (default from config: 8765); without the ingest role, the port "
        "of GET /healthz and GET /metrics (default: none)",
    )
    serve.add_argument(
        "--role",
        action="append",
        type=_roles,
        metavar="ROLE[,ROLE]",
        help=f"run only these parts (repeatable or comma-separated; default: all of "
        f"{', '.join(ROLES)}). Several ingest replicas can share one store; the detector can "
        "be split with --shard; run one alerting replica",
    )
    _add_shard_option(serve)

    detect = commands.add_parser(
        "detect",
        help="run only the detector (optionally one shard of the models)",
        description="Judge the models' windows on the configured schedule and write findings "
        "to the store, like `serve --role detector`; alerting (a `serve` with the alerting "
        "role) follows them there. With --once, judge what is due and exit.",
    )
    _add_config_options(detect)
    _add_shard_option(detect)
    detect.add_argument(
        "--once", action="store_true", help="judge every window due now, print a summary, exit"
    )
    detect.add_argument("--host", help="address of --port (default from config: 127.0.0.1)")
    detect.add_argument(
        "--port", type=int, help="serve GET /healthz and GET /metrics on this port (default: none)"
    )

    dashboard = commands.add_parser(
        "dashboard",
        help="open the Streamlit dashboard on a data directory",
        description="Serve the dashboard (read-only) until Ctrl-C or SIGTERM. It binds to "
        "127.0.0.1 by default; to bind another address, set WATCHKEEPER_DASHBOARD_PASSWORD and "
        "every visitor logs in with it.",
    )
    _add_config_options(dashboard)
    dashboard.add_argument("--host", help="address to bind (default from config: 127.0.0.1)")
    dashboard.add_argument("--port", type=int, help="port (default from config: 8501)")

    check = commands.add_parser(
        "check-config",
        help="validate a configuration file and check the store is writable",
        description="Exit 0 and print a summary when the file is valid and the store opens; "
        "exit 1 naming the file, key path and problem otherwise.",
    )
    check.add_argument("config", type=Path, help="path to watchkeeper.yaml")
    alerting_cli.add_commands(commands)
    detector_cli.add_parsers(commands)
    return parser


def _roles(text: str) -> list[str]:
    roles = [r.strip() for r in text.split(",") if r.strip()]
    unknown = [r for r in roles if r not in ROLES]
    if unknown or not roles:
        raise argparse.ArgumentTypeError(
            f"unknown role {', '.join(unknown) or text!r}; choose from {', '.join(ROLES)}"
        )
    return roles


def _shard(text: str) -> Shard:
    try:
        return parse_shard(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _add_shard_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--shard",
        type=_shard,
        metavar="I/N",
        help="judge only shard I of N of the models (1-based, e.g. 1/2 and 2/2 on two "
        "processes), and scrape only that share of the targets; each model belongs to exactly "
        "one shard",
    )


def _add_config_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="path to watchkeeper.yaml (default: none)")
    parser.add_argument(
        "--data-dir", type=Path, help="data directory (overrides storage.path of the config)"
    )


def _load(args: argparse.Namespace) -> Config:
    """The configuration of `serve`, `detect` or `dashboard`; a changed file is recorded in
    the audit log (never fatal; a dashboard on an empty data directory creates nothing)."""
    config = load_config(args.config).with_data_dir(args.data_dir)
    if args.config is not None:
        from watchkeeper.audit import BUSY_TIMEOUT_S, record_config_load

        record_config_load(
            args.config,
            config.storage.alert_state_file,
            args.command,
            create=args.command != "dashboard",
            busy_timeout_s=min(BUSY_TIMEOUT_S, config.storage.busy_timeout),
        )
    return config


def _serve(args: argparse.Namespace) -> int:
    roles = sorted({r for group in args.role or [list(ROLES)] for r in group}, key=ROLES.index)
    return _run_stack(args, roles)


def _detect(args: argparse.Namespace) -> int:
    if args.once:
        return _detect_once(args)
    return _run_stack(args, ["detector"])


def _detect_once(args: argparse.Namespace) -> int:
    from watchkeeper.detector.engine import Detector
    from watchkeeper.tsdb import open_store

    config = _load(args)
    store = open_store(config.storage)
    try:
        detector = Detector(store, config, shard=args.shard)
        findings = detector.run_once(time.time())
    finally:
        store.close()
    breached = sum(f.breached for f in findings)
    shard = f" (shard {args.shard})" if args.shard is not None else ""
    print(
        f"judged {detector.judged} model(s){shard}: {len(findings)} finding(s), "
        f"{breached} breached; {len(detector.errors)} model(s) failed"
    )
    for model, exc in sorted(detector.errors.items()):
        print(f"  {model}: {type(exc).__name__}: {exc}", file=sys.stderr)
    return 1 if detector.errors else 0


def _run_stack(args: argparse.Namespace, roles: list[str]) -> int:
    from watchkeeper.runtime import Stack, StartupError

    config = _load(args)
    serves_ingest = "ingest" in roles
    updates = {"host": args.host}
    if serves_ingest:
        updates["port"] = args.port
    updates = {k: v for k, v in updates.items() if v is not None}
    config = config.model_copy(update={"ingest": config.ingest.model_copy(update=updates)})
    stopping = threading.Event()

    def stop(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, stop)
    status_port = None if serves_ingest else args.port
    with Stack(config, roles=roles, shard=args.shard, status_port=status_port) as stack:
        try:
            stack.start()
        except StartupError as exc:
            print(f"watchkeeper {args.command}: {exc}", file=sys.stderr)
            return 2
        shard = f", shard {args.shard}" if args.shard is not None else ""
        where = f" on {stack.ingest_url}" if stack.serves_http else ""
        print(
            f"watchkeeper running {', '.join(roles)}{shard}{where} (data in {config.storage.path})",
            flush=True,
        )
        try:
            while not stopping.wait(1.0):
                pass
        except KeyboardInterrupt:
            pass
        print("stopping", flush=True)
    return 0


def _dashboard(args: argparse.Namespace) -> int:
    from watchkeeper.dashboard import PASSWORD_ENV, DashboardError, launch, wait_until_ready

    config = _load(args)
    host = args.host or config.dashboard.host
    port = args.port if args.port is not None else config.dashboard.port
    try:
        process = launch(
            config.storage.path,
            config_path=args.config,
            host=host,
            port=port,
            password=os.environ.get(PASSWORD_ENV) or None,
        )
    except DashboardError as exc:
        print(f"watchkeeper dashboard: {exc}", file=sys.stderr)
        return 2
    url = f"http://{host}:{port}"

    def stop(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    try:
        try:
            wait_until_ready(url, timeout=60.0, process=process)
        except (TimeoutError, RuntimeError) as exc:
            print(f"watchkeeper dashboard: {exc}", file=sys.stderr)
        else:
            print(f"dashboard ready: {url} (Ctrl-C to stop)", flush=True)
        return process.wait()
    except KeyboardInterrupt:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
        return 0


def _check_config(args: argparse.Namespace) -> int:
    from watchkeeper.tsdb import SQLiteStore, open_store

    config = load_config(args.config)
    where = (
        config.storage.store_file
        if config.storage.backend == "sqlite"
        else (config.storage.influxdb.url if config.storage.influxdb else "?")
    )
    try:
        store = open_store(config.storage)
        try:
            if isinstance(store, SQLiteStore):
                store.write()  # takes the write lock: proves the file is writable
            else:
                from watchkeeper.tsdb.influx import InfluxStore

                if isinstance(store, InfluxStore):
                    store.probe()
        finally:
            store.close()
    except Exception as exc:
        print(
            f"{args.config}: storage: the {config.storage.backend} store at {where} is not "
            f"reachable and writable: {exc}",
            file=sys.stderr,
        )
        return 1
    receivers = _receiver_urls(config)
    refused = _refused_receivers(receivers)
    for key, problem in refused:
        print(f"{args.config}: {key}: {problem}", file=sys.stderr)
    if refused:
        return 1
    print(
        f"{args.config}: ok: {config.storage.backend} store at {where} is writable; "
        f"{len(config.models)} configured model(s); "
        f"{len(receivers)} receiver URL(s) accepted by apprise"
    )
    return 0


def _receiver_urls(config: Config) -> list[tuple[str, str]]:
    """Every apprise URL of the configuration, with its key path."""
    urls = [(f"alerting.receivers.{i}", u) for i, u in enumerate(config.alerting.receivers)]
    for i, receiver in enumerate(config.alerting.named_receivers):
        urls += [(f"alerting.named_receivers.{i}.urls.{j}", u) for j, u in enumerate(receiver.urls)]
    return urls


def _refused_receivers(urls: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """(key path, why) of each URL apprise cannot use; the messages never show a secret."""
    from watchkeeper.alerting.notify import AppriseNotifier

    refused = []
    for key, url in urls:
        try:
            AppriseNotifier(url)
        except ValueError as exc:
            refused.append((key, str(exc)))
    return refused


def _demo(args: argparse.Namespace) -> int:
    from watchkeeper.demo import DemoError, DemoOptions, run_demo

    try:
        return run_demo(
            DemoOptions(
                data_dir=args.data_dir,
                duration_s=args.duration,
                dashboard=not args.no_dashboard,
                notify=tuple(args.notify),
                port=args.port,
                dashboard_port=args.dashboard_port,
            )
        )
    except DemoError as exc:
        print(f"watchkeeper demo: {exc}", file=sys.stderr)
        return 1


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    handlers = {
        "demo": _demo,
        "serve": _serve,
        "detect": _detect,
        "dashboard": _dashboard,
        "check-config": _check_config,
        "silence": alerting_cli.run,
        "alerts": alerting_cli.run,
        "audit": alerting_cli.run,
        "replay": detector_cli.run_replay,
        "test-rules": detector_cli.run_test_rules,
        "explain": detector_cli.run_explain,
        "reference": detector_cli.run_reference,
    }
    try:
        return handlers[args.command](args)
    except ConfigError as exc:
        print(f"configuration error:\n{exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
