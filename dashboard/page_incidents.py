"""Incidents page (a Streamlit page script run by `app.py`): what broke, when, together.

Breached findings of every check are grouped into episodes (one check and subject breached
window after window) and the overlapping episodes of one model into incidents; each model gets
one timeline with a lane per check, so a latency spike and a drift onset at the same time read
as one incident. Each incident opens onto its findings, each with its id, the
`watchkeeper explain ID` command, and a button that recomputes it from the stored data and
shows that command's output on the page. Reads go through the `Store` protocol only.
"""

from __future__ import annotations

import io

import pandas as pd
import streamlit as st

from watchkeeper.config import Config
from watchkeeper.dashboard import charts, data
from watchkeeper.dashboard.common import PAGE_FILES, View, open_store, run_page, tick
from watchkeeper.detector.explain import ExplainError, explain_store
from watchkeeper.detector.replay import finding_id

FINDING_COLUMNS = ["time", "check", "subject", "value", "threshold", "severity", "summary", "id"]
EXPLAINED_KEY = "watchkeeper_explained"


@st.cache_data(ttl=600.0, max_entries=64, show_spinner=False)
def load_incidents(
    end: float, range_s: float, gap: float, config_key: str, _config: Config
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Incidents, episodes and the breached findings of all models in `[end - range_s, end)`.

    Cached on `config_key` (the configuration as JSON); `_config` is the same, unhashed.
    """
    gaps = {name: 2.5 * m.every for name, m in _config.models.items()}
    with open_store(_config.storage) as store:
        breached = store.findings(None, end - range_s, end, breached_only=True)
    incidents, episodes = data.incidents(breached, gaps, gap)
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
                "id": finding_id(f),
            }
            for f in breached[::-1]
        ],
        columns=["model", *FINDING_COLUMNS],
    )
    findings["time"] = pd.to_datetime(findings["time"], utc=True)
    return incidents, episodes, findings


@st.cache_data(ttl=600.0, max_entries=32, show_spinner=False)
def explain(
    wanted: str, model: str, window_end: float, config_key: str, _config: Config
) -> tuple[str, bool | None]:
    """`watchkeeper explain ID`'s output for a stored finding, and whether the recomputed
    numbers agree with the stored ones (None: it could not be recomputed).

    The page knows the finding's model and window end and passes them, so the finding is
    looked up in one window's findings rather than searched for (same output as the CLI).
    """
    out = io.StringIO()
    try:
        code = explain_store(wanted, _config, out, model=model, window_end=window_end)
    except ExplainError as exc:
        return f"{out.getvalue()}cannot explain {wanted}: {exc}", None
    return out.getvalue(), code == 0


def explain_panel(
    view: View,
    key: str,
    ids: list[str],
    labels: dict[str, str],
    where: dict[str, tuple[str, float]],
) -> None:
    """Pick one of `ids` and recompute it; the output stays shown across refreshes. `where`
    gives each id's model and window end."""
    chosen = st.selectbox(
        "Finding", ids, format_func=lambda i: labels[i], key=f"explain_pick_{key}"
    )
    if chosen is None:
        return
    st.code(f"watchkeeper explain {chosen}", language="bash")
    explained: dict[str, str] = st.session_state.setdefault(EXPLAINED_KEY, {})
    if st.button("Recompute (explain)", key=f"explain_{key}"):
        explained[key] = chosen
    if explained.get(key) != chosen:
        return
    with st.spinner("Recomputing from the stored data (as `watchkeeper explain` does)..."):
        model, window_end = where[chosen]
        text, agree = explain(chosen, model, window_end, view.config.model_dump_json(), view.config)
    if agree is True:
        st.success("Recomputed from the stored data: same numbers.")
    elif agree is False:
        st.warning("Recomputed from the stored data: the numbers differ (see below).")
    else:
        st.error("Could not recompute this finding (see below).")
    st.code(text, language=None)


def body(view: View) -> None:
    config = view.config
    incidents, episodes, findings = load_incidents(
        tick(view.range_s),
        view.range_s,
        2.5 * config.detector.defaults.every,
        config.model_dump_json(),
        config,
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
            shown = findings.loc[mask, FINDING_COLUMNS].head(200)
            st.dataframe(
                shown,
                hide_index=True,
                width="stretch",
                column_config={
                    "time": st.column_config.DatetimeColumn("Window end"),
                    "value": st.column_config.NumberColumn("Value", format="%.4g"),
                    "threshold": st.column_config.NumberColumn("Threshold", format="%.4g"),
                    "id": st.column_config.TextColumn(
                        "Finding id", help="`watchkeeper explain ID` recomputes it"
                    ),
                },
            )
            st.page_link(
                PAGE_FILES["model"],
                label=f"Open {incident.model} on the Model page",
                icon=":material/monitoring:",
                query_params={"model": str(incident.model)},
            )
            labels = {
                str(row["id"]): f"{row['time']:%Y-%m-%d %H:%M} · {row['check']}"
                + (f" ({row['subject']})" if row["subject"] else "")
                + f" · {row['value']:.4g}"
                for row in shown.to_dict("records")
            }
            where = {
                str(row["id"]): (str(incident.model), row["time"].timestamp())
                for row in shown.to_dict("records")
            }
            explain_panel(view, str(incident.incident), list(labels), labels, where)


run_page("Incidents", body)
