"""`watchkeeper silence add|list|expire` and `watchkeeper alerts list|ack|report`.

They work on alerting's state file (`<data dir>/alerts.db`) and may run while `watchkeeper
serve` does: the pipeline reads silences at every group flush, so a new or expired silence
takes effect at the next one.
"""

from __future__ import annotations

import argparse
import getpass
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from watchkeeper.config import Config, format_duration, load_config, parse_duration

from .feedback import FeedbackStore, Verdict, rule_report
from .muting import Silence
from .silences import SilenceStore
from .state import read_alerts


def _duration(text: str) -> float:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _when(text: str) -> float:
    """`now`, Unix seconds, or an ISO 8601 time (UTC unless it says otherwise)."""
    if text == "now":
        return time.time()
    try:
        return float(text)
    except ValueError:
        pass
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected now, Unix seconds or an ISO time such as 2026-11-22T10:00Z, got {text!r}"
        ) from None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()


def _stamp(ts: float | None) -> str:
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _state_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="path to watchkeeper.yaml (default: none)")
    parser.add_argument(
        "--data-dir", type=Path, help="data directory (overrides storage.path of the config)"
    )


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `silence` and `alerts` commands to the `watchkeeper` parser."""
    silence = commands.add_parser(
        "silence",
        help="mute matching alerts for a while (add, list, expire)",
        description="Silences mute notifications of alerts matching all their matchers "
        "between start and end. Expired silences are kept for audit.",
    )
    actions = silence.add_subparsers(dest="action", metavar="ACTION", required=True)
    add = actions.add_parser("add", help="add a silence; prints its id")
    _state_options(add)
    add.add_argument(
        "matchers",
        nargs="+",
        metavar="MATCHER",
        help='label matchers, e.g. team="risk" model=~"fraud-.*" check!="up"',
    )
    add.add_argument("--duration", type=_duration, default=3600.0, help="how long (default 1h)")
    add.add_argument("--start", type=_when, default=None, help="when it starts (default now)")
    add.add_argument("--author", default=None, help="who (default: the current user)")
    add.add_argument("--comment", required=True, help="why")
    listing = actions.add_parser("list", help="list silences, newest first")
    _state_options(listing)
    listing.add_argument("--active", action="store_true", help="only active and pending ones")
    expire = actions.add_parser("expire", help="end a silence now (it is kept for audit)")
    _state_options(expire)
    expire.add_argument("id", help="the silence id")

    alerts = commands.add_parser(
        "alerts",
        help="list alerts, acknowledge them, report per rule",
        description="Acknowledge an alert's latest episode and mark it a true or false "
        "positive; the report shows, per rule, how many fired, how many were marked false, "
        "and the median time to resolve.",
    )
    verbs = alerts.add_subparsers(dest="action", metavar="ACTION", required=True)
    alert_list = verbs.add_parser("list", help="current alerts with their fingerprints")
    _state_options(alert_list)
    ack = verbs.add_parser("ack", help="acknowledge an alert (by fingerprint or its prefix)")
    _state_options(ack)
    ack.add_argument("fingerprint")
    verdict = ack.add_mutually_exclusive_group()
    verdict.add_argument("--true-positive", dest="verdict", action="store_const", const="true")
    verdict.add_argument("--false-positive", dest="verdict", action="store_const", const="false")
    ack.add_argument("--by", default=None, help="who (default: the current user)")
    ack.add_argument("--note", default="", help="a note kept with the verdict")
    report = verbs.add_parser("report", help="per rule: fired, marked false, time to resolve")
    _state_options(report)


def _config(args: argparse.Namespace) -> Config:
    config = load_config(args.config)
    if args.data_dir is not None:
        storage = config.storage.model_copy(update={"path": args.data_dir})
        config = config.model_copy(update={"storage": storage})
    return config


def run(args: argparse.Namespace) -> int:
    """Run a `silence` or `alerts` command; the exit status."""
    path = _config(args).storage.alert_state_file
    handler: Callable[[argparse.Namespace, Path], int] = _HANDLERS[(args.command, args.action)]
    try:
        return handler(args, path)
    except (KeyError, ValueError) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"watchkeeper {args.command} {args.action}: {message}", file=sys.stderr)
        return 1


def _silence_add(args: argparse.Namespace, path: Path) -> int:
    now = time.time()
    start = args.start if args.start is not None else now
    silence = Silence.new(
        args.matchers,
        start,
        start + args.duration,
        args.author or getpass.getuser(),
        args.comment,
        now,
    )
    store = SilenceStore(path)
    try:
        store.add(silence)
    finally:
        store.close()
    print(silence.id)
    return 0


def _silence_list(args: argparse.Namespace, path: Path) -> int:
    now = time.time()
    store = SilenceStore(path)
    try:
        silences = store.silences()
    finally:
        store.close()
    if args.active:
        silences = [s for s in silences if s.status(now) != "expired"]
    print(f"{'ID':<12}  {'STATUS':<8}  {'STARTS':<20}  {'ENDS':<20}  AUTHOR  MATCHERS  COMMENT")
    for s in silences:
        matchers = " ".join(str(m) for m in s.matchers)
        print(
            f"{s.id:<12}  {s.status(now):<8}  {_stamp(s.starts_at):<20}  {_stamp(s.ends_at):<20}"
            f"  {s.created_by}  {matchers}  {s.comment}"
        )
    return 0


def _silence_expire(args: argparse.Namespace, path: Path) -> int:
    store = SilenceStore(path)
    try:
        silence = store.expire(args.id, time.time())
    finally:
        store.close()
    print(f"{silence.id} expired at {_stamp(silence.ends_at)}")
    return 0


def _alerts_list(args: argparse.Namespace, path: Path) -> int:
    print(f"{'FINGERPRINT':<16}  {'STATE':<8}  {'SINCE':<20}  LABELS")
    for alert in read_alerts(path):
        labels = ", ".join(f"{k}={v}" for k, v in alert.labels if v)
        print(
            f"{alert.fingerprint:<16}  {alert.state:<8}  {_stamp(alert.active_since):<20}  {labels}"
        )
    return 0


def _alerts_ack(args: argparse.Namespace, path: Path) -> int:
    store = FeedbackStore(path)
    try:
        verdict: Verdict | None = args.verdict
        episode = store.acknowledge(
            args.fingerprint, args.by or getpass.getuser(), time.time(), verdict, args.note
        )
    finally:
        store.close()
    marked = {"true": "true positive", "false": "false positive"}.get(episode.verdict or "", "")
    print(
        f"acknowledged {episode.model} {episode.check} (fired {_stamp(episode.fired_at)})"
        + (f" as a {marked}" if marked else "")
    )
    return 0


def _alerts_report(args: argparse.Namespace, path: Path) -> int:
    store = FeedbackStore(path)
    try:
        stats = rule_report(store.episodes())
    finally:
        store.close()
    print(
        f"{'MODEL':<20}  {'CHECK':<12}  {'FIRED':>5}  {'FALSE':>5}  {'TRUE':>5}  MEDIAN TO RESOLVE"
    )
    for s in stats:
        median = "-" if s.median_resolve_s is None else format_duration(round(s.median_resolve_s))
        print(
            f"{s.model:<20}  {s.check:<12}  {s.fired:>5}  {s.false_positives:>5}  "
            f"{s.true_positives:>5}  {median}"
        )
    return 0


_HANDLERS: dict[tuple[str, str], Callable[[argparse.Namespace, Path], int]] = {
    ("silence", "add"): _silence_add,
    ("silence", "list"): _silence_list,
    ("silence", "expire"): _silence_expire,
    ("alerts", "list"): _alerts_list,
    ("alerts", "ack"): _alerts_ack,
    ("alerts", "report"): _alerts_report,
}
