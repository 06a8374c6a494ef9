"""Fleet page (a Streamlit page script run by `app.py`): every model at a glance, worst first.

Status, alerts, last seen, throughput, p95 latency, error rate, fallback rate and worst drift
score per model, each figure with a small trend over the chosen range; filterable by the `team`
and `environment` labels of the configuration, sortable by any column (click its header).
Selecting a row opens that model's page.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from watchkeeper.dashboard.common import (
    CELL_STYLES,
    PAGE_FILES,
    STATUS_LABELS,
    View,
    by_status,
    empty_state,
    load_alerts,
    load_fleet,
    run_page,
    tick,
)
from watchkeeper.dashboard.data import FILTER_LABELS, STATUSES

COLUMN_ORDER = (
    "model", "status", "firing", "pending", "last_seen",
    "throughput_per_min", "throughput_trend", "p95_latency_ms", "p95_trend",
    "error_rate", "error_rate_trend", "fallback_rate", "fallback_trend",
    "drift_score", "drift_feature", "drift_trend",
    "versions", *FILTER_LABELS,
)  # fmt: skip


def filters(fleet: pd.DataFrame) -> pd.DataFrame:
    """Status and label filters; labels with no value anywhere are explained, not shown."""
    columns = st.columns(1 + len(FILTER_LABELS))
    statuses = columns[0].multiselect(
        "Status", list(STATUSES), default=[], key="status_filter", placeholder="all"
    )
    if statuses:
        fleet = fleet[fleet["status"].isin(statuses)]
    missing = []
    for column, label in zip(columns[1:], FILTER_LABELS, strict=True):
        values = sorted(v for v in fleet[label].unique() if v)
        if not values:
            missing.append(label)
            continue
        chosen = column.multiselect(
            label.capitalize(), values, default=[], key=f"{label}_filter", placeholder="all"
        )
        if chosen:
            fleet = fleet[fleet[label].isin(chosen)]
    if missing:
        st.caption(
            "To filter by " + " and ".join(missing) + ", give models labels in the "
            "configuration, e.g. `models: {fraud-scorer: {labels: {team: payments, "
            "environment: prod}}}`."
        )
    return fleet


BADGES = {"critical": "red", "warning": "orange", "stale": "gray", "ok": "green"}


def status_strip(fleet: pd.DataFrame) -> None:
    """Every model as a coloured badge, worst first: readable from across the room."""
    st.markdown(
        " &nbsp; ".join(
            f":{BADGES[str(row['status'])]}-badge[{row['status']}] **{row['model']}**"
            for row in fleet.to_dict("records")
        )
    )


def body(view: View) -> None:
    fleet = load_fleet(
        str(view.alert_file),
        tick(view.range_s),
        view.range_s,
        view.config.model_dump_json(),
        view.config,
    )
    if fleet.empty:
        empty_state(view.config)
        return
    _, alert_error = load_alerts(str(view.alert_file))
    if alert_error:
        st.warning(f"Cannot read the alert state: {alert_error}")
    tiles = st.columns(5)
    tiles[0].metric("Models", len(fleet))
    tiles[1].metric("Critical", int((fleet["status"] == "critical").sum()))
    tiles[2].metric("Firing alerts", int(fleet["firing"].sum()))
    tiles[3].metric("Pending alerts", int(fleet["pending"].sum()))
    tiles[4].metric("Stale models", int((fleet["status"] == "stale").sum()))

    status_strip(by_status(fleet))
    shown = by_status(filters(fleet))
    if shown.empty:
        st.info("No model matches these filters.")
        return
    styles = shown["status"].map(CELL_STYLES)
    shown["status"] = shown["status"].map(STATUS_LABELS)
    trend = st.column_config.LineChartColumn
    event = st.dataframe(
        shown.style.apply(lambda _: styles, subset=["status"]),
        hide_index=True,
        width="stretch",
        key="fleet",
        on_select="rerun",
        selection_mode="single-row",
        column_order=COLUMN_ORDER,
        column_config={
            "model": st.column_config.TextColumn("Model"),
            "status": st.column_config.TextColumn("Status"),
            "firing": st.column_config.NumberColumn("Firing"),
            "pending": st.column_config.NumberColumn("Pending"),
            "last_seen": st.column_config.DatetimeColumn("Last seen", format="distance"),
            "throughput_per_min": st.column_config.NumberColumn("Predictions/min", format="%.1f"),
            "throughput_trend": trend("Throughput trend", y_min=0),
            "p95_latency_ms": st.column_config.NumberColumn("p95 latency", format="%.0f ms"),
            "p95_trend": trend("p95 trend", y_min=0),
            "error_rate": st.column_config.NumberColumn("Error rate", format="percent"),
            "error_rate_trend": trend("Error trend", y_min=0),
            "fallback_rate": st.column_config.NumberColumn(
                "Fallback rate",
                format="percent",
                help="Fallbacks per prediction (`monitor.log_fallback`); blank when the model "
                "never reported one",
            ),
            "fallback_trend": trend("Fallback trend", y_min=0),
            "drift_score": st.column_config.NumberColumn(
                "Worst drift (KS)", format="%.2f", help="Largest KS statistic of the latest check"
            ),
            "drift_feature": st.column_config.TextColumn("Drifting feature"),
            "drift_trend": trend("Drift trend", y_min=0, y_max=1),
            "versions": st.column_config.TextColumn("Versions"),
            "team": st.column_config.TextColumn("Team"),
            "environment": st.column_config.TextColumn("Environment"),
        },
    )
    st.caption(
        "Figures cover each model's configured window; trends cover the chosen time range. "
        "Click a column header to sort; select a row to open the model."
    )
    rows = event.selection.rows if event is not None else []
    if rows:
        st.switch_page(PAGE_FILES["model"], query_params={"model": shown["model"].iloc[rows[0]]})


run_page("Fleet", body)
