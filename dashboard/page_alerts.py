"""Alerts page (a Streamlit page script run by `app.py`): firing, pending and recent alerts;
silences made and expired; acknowledgement and true/false-positive verdicts; the per-rule
feedback report; the latest lines of the audit log.

Writes go only to alerting's state file, through `actions` (alerting's own stores), recorded
under the logged-in name when the dashboard requires login, otherwise under the name the form
asks for (filled in with the last one given in this session), with the visitor's address in
the audit log. `watchkeeper serve` picks up a new or expired silence at its next group flush.
"""

from __future__ import annotations

import sqlite3
import time

import streamlit as st

from watchkeeper.alerting.audit import read_events
from watchkeeper.alerting.feedback import read_episodes
from watchkeeper.alerting.silences import read_silences
from watchkeeper.dashboard import actions, charts, data
from watchkeeper.dashboard.common import View, alert_table, load_alerts, run_page

WRITE_ERRORS = (ValueError, KeyError, sqlite3.Error, OSError)
DONE_KEY = "watchkeeper_alerts_done"
NAME_KEY = "watchkeeper_alerts_name"
AUDIT_ROWS = 20


def done(message: str) -> None:
    """A write succeeded: rerun so every table shows it, and say what was done."""
    st.session_state[DONE_KEY] = message
    st.rerun()


def _error_text(exc: Exception) -> str:
    return str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)


def author_input(view: View, key: str) -> str:
    """Who makes a change: the logged-in name, or an author field when there is no login
    (filled in with the name last given in this session)."""
    if view.user is not None:
        st.caption(f"Recorded as **{view.user}**.")
        return view.user
    remembered = str(st.session_state.get(NAME_KEY, ""))
    return st.text_input("Your name", value=remembered, key=key, help="Recorded with the change.")


def remote_address() -> str | None:
    """The visitor's address as Streamlit saw it (None on loopback or when unknown)."""
    try:
        address = st.context.ip_address
    except Exception:  # only for the audit line; never fail a write over it
        return None
    return address if isinstance(address, str) else None


def signed(view: View, name: str) -> tuple[str | None, bool]:
    """The audit details of a write by `name`: their address, and whether they logged in.
    A typed name is remembered for the session's next form."""
    if view.user is None and name.strip():
        st.session_state[NAME_KEY] = name.strip()
    return remote_address(), view.user is not None


def alerts_section(view: View) -> None:
    alerts, alert_error = load_alerts(str(view.alert_file))
    if alert_error:
        st.error(f"Cannot read the alert state: {alert_error}")
        return
    if not alerts:
        st.info(
            "No alert has been raised yet. Alerts appear here when the detector's findings "
            "breach a rule for its `for` duration (`watchkeeper serve` runs detector and "
            f"alerting; reading {view.alert_file})."
        )
        return
    now = time.time()
    active = data.active_alerts(alerts)
    tiles = st.columns(3)
    tiles[0].metric("Firing", int((active["state"] == "firing").sum()))
    tiles[1].metric("Pending", int((active["state"] == "pending").sum()))
    since = now - view.range_s
    recent = [a for a in alerts if a.state != "resolved" or (a.resolved_at or 0.0) >= since]
    tiles[2].metric(f"Resolved in the {view.range_name}", len(recent) - len(active))

    st.subheader("Firing and pending")
    if active.empty:
        st.success("No alert is firing or pending.")
    else:
        for row in active.to_dict("records"):
            colour = "red" if row["state"] == "firing" else "orange"
            subject = f" ({row['subject']})" if row["subject"] else ""
            st.markdown(
                f":{colour}-badge[{row['state']}] :gray-badge[{row['severity']}] "
                f"**{row['model']}** · {row['check']}{subject}: {row['summary']}"
            )
        alert_table(active, key="active_alerts")

    spans = data.alert_spans(recent, now)
    if not spans.empty:
        st.subheader("Timeline")
        st.altair_chart(charts.alert_timeline(spans), width="stretch")

    st.subheader("Recently resolved")
    resolved = data.resolved_alerts(alerts)
    if resolved.empty:
        st.caption("No resolved alerts yet.")
    else:
        alert_table(resolved, key="resolved_alerts")


def acknowledge_section(view: View) -> None:
    st.subheader("Acknowledge")
    latest = actions.latest_episodes(read_episodes(view.alert_file))
    if not latest:
        st.caption("Nothing to acknowledge: no alert has fired yet.")
        return
    labels = {e.fingerprint: actions.episode_label(e) for e in latest}
    with st.form("ack_form", clear_on_submit=True):
        chosen = st.selectbox(
            "Alert", list(labels), format_func=lambda key: labels[key], key="ack_alert"
        )
        verdict = st.radio("Verdict", list(actions.VERDICTS), horizontal=True, key="ack_verdict")
        note = st.text_input("Note", key="ack_note")
        by = author_input(view, "ack_author")
        submitted = st.form_submit_button("Acknowledge")
    if submitted and chosen is not None:
        remote, login = signed(view, by)
        try:
            episode = actions.acknowledge(
                view.alert_file,
                chosen,
                by,
                verdict or "not judged",
                note,
                time.time(),
                remote=remote,
                login=login,
            )
        except WRITE_ERRORS as exc:
            st.error(f"Not acknowledged: {_error_text(exc)}")
        else:
            marked = {"true": " as a true positive", "false": " as a false positive"}
            done(
                f"Acknowledged {episode.model} · {episode.check} by {episode.acked_by}"
                f"{marked.get(episode.verdict or '', '')}."
            )


def silences_section(view: View) -> None:
    st.subheader("Silences")
    with st.form("silence_form", clear_on_submit=True):
        matchers = st.text_area(
            "Matchers, one per line",
            key="silence_matchers",
            placeholder='model="fraud-scorer"\ncheck!="up"',
        )
        duration = st.text_input("Duration", value="1h", key="silence_duration")
        comment = st.text_input("Comment (why)", key="silence_comment")
        author = author_input(view, "silence_author")
        submitted = st.form_submit_button("Add silence")
    if submitted:
        remote, login = signed(view, author)
        try:
            silence = actions.add_silence(
                view.alert_file,
                matchers,
                duration,
                author,
                comment,
                time.time(),
                remote=remote,
                login=login,
            )
        except WRITE_ERRORS as exc:
            st.error(f"Silence not added: {_error_text(exc)}")
        else:
            done(f"Silence {silence.id} added until {data.utc(silence.ends_at)}.")

    now = time.time()
    silences = read_silences(view.alert_file)
    if not silences:
        st.caption("No silences yet.")
        return
    st.dataframe(
        actions.silence_table(silences, now),
        hide_index=True,
        width="stretch",
        key="silences",
        column_config={
            "starts": st.column_config.DatetimeColumn("Starts"),
            "ends": st.column_config.DatetimeColumn("Ends"),
        },
    )
    current = [s for s in silences if s.status(now) != "expired"]
    if not current:
        return
    names = {s.id: f"{s.id} · {' '.join(str(m) for m in s.matchers)}" for s in current}
    with st.form("expire_form"):
        chosen = st.selectbox(
            "Silence", list(names), format_func=lambda key: names[key], key="expire_id"
        )
        by = author_input(view, "expire_author")
        expire = st.form_submit_button("Expire now")
    if expire and chosen is not None:
        remote, login = signed(view, by)
        try:
            ended = actions.expire_silence(
                view.alert_file, chosen, time.time(), by, remote=remote, login=login
            )
        except WRITE_ERRORS as exc:
            st.error(f"Silence not expired: {_error_text(exc)}")
        else:
            done(f"Silence {ended.id} expired; it stays listed for audit.")


def report_section(view: View) -> None:
    st.subheader("Feedback per rule")
    report = actions.report_table(read_episodes(view.alert_file))
    if report.empty:
        st.caption("No alert has fired yet.")
        return
    st.dataframe(report, hide_index=True, width="stretch", key="feedback_report")
    st.caption("The same figures as `watchkeeper alerts report`; noisy rules come first.")


def audit_section(view: View) -> None:
    st.subheader("Audit log")
    try:
        events = read_events(view.alert_file, limit=AUDIT_ROWS)
    except (sqlite3.Error, OSError) as exc:
        st.error(f"Cannot read the audit log in {view.alert_file}: {exc}")
        return
    if not events:
        st.caption(
            "Nothing recorded yet: silences, acknowledgements and configuration changes "
            "appear here."
        )
        return
    st.dataframe(
        actions.audit_table(events),
        hide_index=True,
        width="stretch",
        key="audit_log",
        column_config={"time": st.column_config.DatetimeColumn("Time")},
    )
    st.caption(
        f"The latest {AUDIT_ROWS} events; `watchkeeper audit` lists them all "
        "(`--since 7d`, `--action silence`, `--json`)."
    )


def body(view: View) -> None:
    message = st.session_state.pop(DONE_KEY, None)
    if message:
        st.success(message)
    alerts_section(view)
    acknowledge_section(view)
    silences_section(view)
    report_section(view)
    audit_section(view)


run_page("Alerts", body, needs_store=False)
