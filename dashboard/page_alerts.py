"""Alerts page (a Streamlit page script run by `app.py`): firing, pending and recent alerts.

Reads alerting's state file (never writes it). Silences, acknowledgement and true/false
positive marking are not here yet: they need write support in alerting first.
"""

from __future__ import annotations

import time

import streamlit as st

from watchkeeper.dashboard import charts, data
from watchkeeper.dashboard.common import View, alert_table, load_alerts, run_page


def body(view: View) -> None:
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
    st.caption(
        "Silences, acknowledgement and true/false-positive marking are not available yet "
        "(they need write support in alerting)."
    )


run_page("Alerts", body, needs_store=False)
