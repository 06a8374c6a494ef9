"""`watchkeeper silence add|list|expire`, `watchkeeper alerts list|ack|report` and
`watchkeeper audit`.

They work on alerting's state file (`<data dir>/alerts.db`) and may run while `watchkeeper
serve` does: the pipeline reads silences at every group flush, so a new or expired silence
takes effect at the next one. Adding or expiring a silence and acknowledging an alert each
append their audit line in the same transaction (`audit`); if the state file cannot be
written (locked past `storage.busy_timeout`), the command fails and nothing is written.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sqlite3
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from watchkeeper.config import Config, StorageConfig, format_duration, load_config, parse_duration

from .audit import Actor, AuditEvent, os_user, read_events, summary
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
    expire.add_argument("--by", default=None, help="who (default: the current user)")

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

    audit = commands.add_parser(
        "audit",
        help="who made or expired silences, acknowledged alerts, changed config, tokens or "
        "references",
        description="The audit log of the data directory's alert state file, newest first: "
        "silence.created, silence.expired, alert.acknowledged, config.loaded, config.changed, "
        "tokens.reloaded, reference.set, reference.cleared. It never holds secrets: "
        "configuration changes are key paths, token changes are token names.",
    )
    _state_options(audit)
    audit.add_argument(
        "--since", type=_duration, default=None, help="only this far back, e.g. 7d (default: all)"
    )
    audit.add_argument(
        "--action",
        dest="prefix",
        default=None,
        metavar="PREFIX",
        help="only actions starting with PREFIX, e.g. silence or config.changed",
    )
    audit.add_argument("--json", action="store_true", help="one JSON object per line")


def _config(args: argparse.Namespace) -> Config:
    return load_config(args.config).with_data_dir(args.data_dir)


def _actor(given: str | None) -> Actor:
    """The person at the terminal: the name given, else the login name; and the OS user."""
    user = os_user()
    try:
        name = given or getpass.getuser()
    except (KeyError, OSError):
        name = user
    return Actor(name, "cli", os_user=user)


def run(args: argparse.Namespace) -> int:
    """Run a `silence`, `alerts` or `audit` command; the exit status."""
    config = _config(args)
    action = getattr(args, "action", None)
    handler: Callable[[argparse.Namespace, StorageConfig], int] = _HANDLERS[(args.command, action)]
    command = " ".join(part for part in ("watchkeeper", args.command, action) if part)
    try:
        return handler(args, config.storage)
    except (KeyError, ValueError) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"{command}: {message}", file=sys.stderr)
        return 1
    except sqlite3.Error as exc:
        print(
            f"{command}: {config.storage.alert_state_file}: {exc}; nothing was written",
            file=sys.stderr,
        )
        return 1


def _silence_add(args: argparse.Namespace, storage: StorageConfig) -> int:
    now = time.time()
    start = args.start if args.start is not None else now
    actor = _actor(args.author)
    silence = Silence.new(
        args.matchers, start, start + args.duration, actor.name, args.comment, now
    )
    store = SilenceStore(storage.alert_state_file, busy_timeout_s=storage.busy_timeout)
    try:
        store.add(silence, actor)
    finally:
        store.close()
    print(silence.id)
    return 0


def _silence_list(args: argparse.Namespace, storage: StorageConfig) -> int:
    now = time.time()
    store = SilenceStore(storage.alert_state_file, busy_timeout_s=storage.busy_timeout)
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


def _silence_expire(args: argparse.Namespace, storage: StorageConfig) -> int:
    store = SilenceStore(storage.alert_state_file, busy_timeout_s=storage.busy_timeout)
    try:
        silence = store.expire(args.id, time.time(), _actor(args.by))
    finally:
        store.close()
    print(f"{silence.id} expired at {_stamp(silence.ends_at)}")
    return 0


def _alerts_list(args: argparse.Namespace, storage: StorageConfig) -> int:
    print(f"{'FINGERPRINT':<16}  {'STATE':<8}  {'SINCE':<20}  LABELS")
    for alert in read_alerts(storage.alert_state_file):
        labels = ", ".join(f"{k}={v}" for k, v in alert.labels if v)
        print(
            f"{alert.fingerprint:<16}  {alert.state:<8}  {_stamp(alert.active_since):<20}  {labels}"
        )
    return 0


def _alerts_ack(args: argparse.Namespace, storage: StorageConfig) -> int:
    store = FeedbackStore(storage.alert_state_file, busy_timeout_s=storage.busy_timeout)
    try:
        verdict: Verdict | None = args.verdict
        actor = _actor(args.by)
        episode = store.acknowledge(
            args.fingerprint, actor.name, time.time(), verdict, args.note, actor
        )
    finally:
        store.close()
    marked = {"true": "true positive", "false": "false positive"}.get(episode.verdict or "", "")
    print(
        f"acknowledged {episode.model} {episode.check} (fired {_stamp(episode.fired_at)})"
        + (f" as a {marked}" if marked else "")
    )
    return 0


def _alerts_report(args: argparse.Namespace, storage: StorageConfig) -> int:
    store = FeedbackStore(storage.alert_state_file, busy_timeout_s=storage.busy_timeout)
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


def audit_line(event: AuditEvent) -> str:
    """One event as a table row: time, actor, action, target, where from (`cli:OS_USER`,
    `dashboard@ADDRESS`), then the detail."""
    where = event.via.replace(" ", "-")
    where += (f":{event.os_user}" if event.os_user else "") + (
        f"@{event.remote}" if event.remote else ""
    )
    return (
        f"{_stamp(event.at):<20}  {event.actor:<12}  {event.action:<18}  "
        f"{event.target:<16}  {where:<14}  {summary(event.detail)}"
    )


def _audit(args: argparse.Namespace, storage: StorageConfig) -> int:
    since = None if args.since is None else time.time() - args.since
    events = read_events(storage.alert_state_file, since=since, prefix=args.prefix)
    if args.json:
        for event in events:
            print(json.dumps(event.to_json(), sort_keys=True, ensure_ascii=False))
        return 0
    print(f"{'TIME':<20}  {'ACTOR':<12}  {'ACTION':<18}  {'TARGET':<16}  {'VIA':<14}  DETAIL")
    for event in events:
        print(audit_line(event))
    return 0


_HANDLERS: dict[tuple[str, str | None], Callable[[argparse.Namespace, StorageConfig], int]] = {
    ("silence", "add"): _silence_add,
    ("silence", "list"): _silence_list,
    ("silence", "expire"): _silence_expire,
    ("alerts", "list"): _alerts_list,
    ("alerts", "ack"): _alerts_ack,
    ("alerts", "report"): _alerts_report,
    ("audit", None): _audit,
}
