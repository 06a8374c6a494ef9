"""What the Alerts page writes, and the tables it shows about silences and feedback.

The dashboard writes only alerting's state file, through alerting's own stores (`SilenceStore`,
`FeedbackStore`), opened for one write and closed again, exactly as `watchkeeper silence` and
`watchkeeper alerts ack` do; reading goes through the read-only readers, so looking at the page
never creates the file. Every write names who made it, and its audit line (written in the same
transaction) says it came from the dashboard, with the visitor's address when not loopback.

>>> parse_matchers('team="risk"\\n\\n model=~"fraud-.*" ')
['team="risk"', 'model=~"fraud-.*"']
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from watchkeeper.alerting.audit import Actor, AuditEvent, summary
from watchkeeper.alerting.feedback import Episode, FeedbackStore, Verdict, rule_report
from watchkeeper.alerting.muting import Silence
from watchkeeper.alerting.silences import SilenceStore
from watchkeeper.config import format_duration, parse_duration

from .data import utc

#: The verdict choices of the acknowledgement form, and what each stores.
VERDICTS: dict[str, Verdict | None] = {
    "not judged": None,
    "true positive": "true",
    "false positive": "false",
}


def parse_matchers(text: str) -> list[str]:
    """One matcher per non-empty line."""
    return [line.strip() for line in text.splitlines() if line.strip()]


def actor(name: str, remote: str | None = None, login: bool = False) -> Actor:
    """A dashboard visitor: the name typed (`login`: given at login), and their address."""
    return Actor(name.strip(), "dashboard login" if login else "dashboard", remote=remote)


def add_silence(
    state_file: Path,
    matchers: str,
    duration: str,
    author: str,
    comment: str,
    now: float,
    *,
    remote: str | None = None,
    login: bool = False,
) -> Silence:
    """Add a silence from now for `duration` (e.g. `2h`); raises `ValueError` with what is
    wrong (a bad matcher or duration, a missing author or comment)."""
    seconds = parse_duration(duration.strip())
    if seconds <= 0:
        raise ValueError("a silence needs a duration above zero, such as 30m or 2h")
    silence = Silence.new(
        parse_matchers(matchers), now, now + seconds, author.strip(), comment.strip(), now
    )
    store = SilenceStore(state_file)
    try:
        return store.add(silence, actor(author, remote, login))
    finally:
        store.close()


def expire_silence(
    state_file: Path,
    silence_id: str,
    now: float,
    by: str,
    *,
    remote: str | None = None,
    login: bool = False,
) -> Silence:
    """End a silence now as `by`; it stays listed as expired (raises `KeyError` if unknown,
    `ValueError` without a name)."""
    if not by.strip():
        raise ValueError("say who expires the silence")
    store = SilenceStore(state_file)
    try:
        return store.expire(silence_id, now, actor(by, remote, login))
    finally:
        store.close()


def acknowledge(
    state_file: Path,
    fingerprint: str,
    by: str,
    verdict: str,
    note: str,
    now: float,
    *,
    remote: str | None = None,
    login: bool = False,
) -> Episode:
    """Acknowledge an alert's latest episode as `by`, with a `VERDICTS` choice and a note."""
    if not by.strip():
        raise ValueError("say who acknowledges the alert")
    store = FeedbackStore(state_file)
    try:
        return store.acknowledge(
            fingerprint,
            by.strip(),
            now,
            VERDICTS[verdict],
            note.strip(),
            actor(by, remote, login),
        )
    finally:
        store.close()


def latest_episodes(episodes: Sequence[Episode]) -> list[Episode]:
    """The latest episode of each alert, the most recently fired first."""
    seen: dict[str, Episode] = {}
    for episode in sorted(episodes, key=lambda e: -e.fired_at):
        seen.setdefault(episode.fingerprint, episode)
    return list(seen.values())


def episode_label(episode: Episode) -> str:
    """How an alert is named in the acknowledgement form."""
    subject = dict(episode.labels).get("subject", "")
    fired = utc(episode.fired_at)
    when = fired.strftime("%Y-%m-%d %H:%M UTC") if fired is not None else "?"
    state = "resolved" if episode.resolved_at is not None else "firing"
    return (
        f"{episode.model} · {episode.check}{f' ({subject})' if subject else ''} · "
        f"fired {when} · {state} · {episode.fingerprint[:8]}"
    )


def silence_table(silences: Sequence[Silence], now: float) -> pd.DataFrame:
    """Silences with their status, newest first (expired ones too: they are the audit)."""
    return pd.DataFrame(
        [
            {
                "id": s.id,
                "status": s.status(now),
                "matchers": " ".join(str(m) for m in s.matchers),
                "starts": utc(s.starts_at),
                "ends": utc(s.ends_at),
                "author": s.created_by,
                "comment": s.comment,
            }
            for s in silences
        ],
        columns=["id", "status", "matchers", "starts", "ends", "author", "comment"],
    )


def audit_table(events: Sequence[AuditEvent]) -> pd.DataFrame:
    """Audit events as `watchkeeper audit` lists them, newest first."""
    return pd.DataFrame(
        [
            {
                "time": utc(e.at),
                "actor": e.actor,
                "action": e.action,
                "target": e.target,
                "via": e.via + (f" from {e.remote}" if e.remote else ""),
                "detail": summary(e.detail),
            }
            for e in events
        ],
        columns=["time", "actor", "action", "target", "via", "detail"],
    )


def report_table(episodes: Sequence[Episode]) -> pd.DataFrame:
    """`watchkeeper alerts report` as a table: per rule, fired, marked false and true, and
    the median time to resolve."""
    return pd.DataFrame(
        [
            {
                "model": s.model,
                "check": s.check,
                "fired": s.fired,
                "false": s.false_positives,
                "true": s.true_positives,
                "median to resolve": "-"
                if s.median_resolve_s is None
                else format_duration(round(s.median_resolve_s)),
            }
            for s in rule_report(list(episodes))
        ],
        columns=["model", "check", "fired", "false", "true", "median to resolve"],
    )
