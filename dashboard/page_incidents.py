"""Incidents page (a Streamlit page script run by `app.py`): what broke, when, together.

Breached findings of every check are grouped into episodes (one check and subject breached
window after window) and the overlapping episodes of one model into incidents; each model gets
one timeline with a lane per check, so a latency spike and a drift onset at the same time read
as one incident. Each incident opens onto its findings.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st

from watchkeeper.dashboard import charts, data
from watchkeeper.dashboard.common import View, open_store, run_page, tick

FINDING_COLUMNS = ["time", "check", "subject", "value", "threshold", "severity", "summary"]


@st.cache_data(ttl=600.0, max_entries=64, show_spinner=False)
def load_incidents(
    store_file: str, end: float, range_s: float, gaps: tuple[tuple[str, float], ...], gap: float
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Incidents, episodes and the breached findings of all models in `[end - range_s, end)`."""
    with open_store(Path(store_file)) as store:
        breached = store.findings(None, end - range_s, end, breached_only=True)
    incidents, episodes = data.incidents(breached, dict(gaps), gap)
    findings = pd.DataFrame(
        [
            {
                "model": f.model,
                "time": data.utc(f.window_end),
                "check": f.check,
                "subject": f.subject,
                "value": f.value,
                "threshold": f.threshold,
                "severity": f.severity,
                "summary": f.summary,
            }
            for f in breached[::-1]
        ],
        columns=["model", *FINDING_COLUMNS],
    )
    findings["time"] = pd.to_datetime(findings["time"], utc=True)
    return incidents, episodes, findings


def body(view: View) -> None:
    config = view.config
    gaps = tuple(sorted((name, 2.5 * m.every) for name, m in config.models.items()))
    incidents, episodes, findings = load_incidents(
        str(view.store_file),
        tick(view.range_s),
        view.range_s,
        gaps,
        2.5 * config.detector.defaults.every,
    )
    if incidents.empty:
        st.success(
            f"No check breached in the {view.range_name}. Incidents appear here when the "
            "detector's findings breach a rule; choose a longer range in the sidebar to look "
            "further back."
        )
        return
    tiles = st.columns(3)
    tiles[0].metric("Incidents", len(incidents))
    tiles[1].metric("Models affected", incidents["model"].nunique())
    tiles[2].metric("Breached findings", int(incidents["findings"].sum()))

    for model in sorted(episodes["model"].unique()):
        st.subheader(model)
        st.altair_chart(
            charts.incident_timeline(episodes[episodes["model"] == model]),
            width="stretch",
        )

    st.subheader("All incidents")
    st.dataframe(
        incidents,
        hide_index=True,
        width="stretch",
        key="incidents",
        column_config={
            "incident": st.column_config.TextColumn("Incident"),
            "model": st.column_config.TextColumn("Model"),
            "start": st.column_config.DatetimeColumn("Start", format="YYYY-MM-DD HH:mm"),
            "end": st.column_config.DatetimeColumn("Last breached", format="YYYY-MM-DD HH:mm"),
            "severity": st.column_config.TextColumn("Severity"),
            "checks": st.column_config.TextColumn("Checks"),
            "findings": st.column_config.NumberColumn("Findings"),
        },
    )
    for incident in incidents.head(20).itertuples():
        label = (
            f"{incident.incident} {incident.model}: {incident.checks} "
            f"({incident.start:%Y-%m-%d %H:%M} → {incident.end:%H:%M})"
        )
        with st.expander(label):
            mask = (
                (findings["model"] == incident.model)
                & (findings["time"] >= incident.start)
                & (findings["time"] <= incident.end)
            )
            st.dataframe(
                findings.loc[mask, FINDING_COLUMNS].head(200),
                hide_index=True,
                width="stretch",
                column_config={
                    "time": st.column_config.DatetimeColumn("Window end"),
                    "value": st.column_config.NumberColumn("Value", format="%.4g"),
                    "threshold": st.column_config.NumberColumn("Threshold", format="%.4g"),
                },
            )


run_page("Incidents", body)
