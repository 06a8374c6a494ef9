"""The watchkeeper dashboard page (a Streamlit script).

Run it with `streamlit run app.py -- --data-dir DIR [--config FILE]`, or through
`watchkeeper dashboard`. It only reads: the store and the alert state file are opened, read and
closed on each (briefly cached) refresh, so it never holds a lock that the ingest server, the
detector or alerting would wait on, and a refresh every few seconds leaks no connections.
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import streamlit as st

from watchkeeper.alerting.state import read_alerts
from watchkeeper.config import Config, ConfigError, load_config
from watchkeeper.dashboard.data import (
    active_alerts,
    breached_findings,
    choose_step,
    fleet_overview,
    metric_series,
    resolved_alerts,
)
from watchkeeper.tsdb import SQLiteStore

REFRESH_S = 10.0
CACHE_TTL_S = 5.0
RANGES = {"last 1h": 3600.0, "last 6h": 6 * 3600.0, "last 24h": 86400.0, "last 7d": 7 * 86400.0}
DEFAULT_RANGE = "last 6h"
STATUS_LABELS = {
    "critical": "🔴 critical",
    "warning": "🟠 warning",
    "stale": "⚪ stale",
    "ok": "🟢 ok",
}
STATUS_ORDER = {"critical": 0, "warning": 1, "stale": 2, "ok": 3}
# Cell colours as well as emoji: the status must read at a glance even where emoji fonts are
# missing (as in some headless browsers and kiosk screens).
CELL_STYLES = {
    "critical": "background-color: #fdd8d8; color: #8a1010; font-weight: 600",
    "warning": "background-color: #fde9cc; color: #7a4300; font-weight: 600",
    "stale": "background-color: #e8e8ec; color: #44444c",
    "ok": "background-color: #dcf3df; color: #125c1e",
    "firing": "background-color: #fdd8d8; color: #8a1010; font-weight: 600",
    "pending": "background-color: #fde9cc; color: #7a4300",
}
EMPTY_TEXT = (
    "No model has reported yet. Instrument a model service with the client library and its "
    "predictions appear here within seconds:"
)
STORE_ERRORS = (sqlite3.Error, OSError)


class UsageError(Exception):
    """The script's command line is wrong; shown on the page instead of exiting."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{self.format_usage().strip()}\n{self.prog}: {message}")


def settings(argv: Sequence[str]) -> Config:
    """The configuration from the script's arguments; `--data-dir` overrides `storage.path`."""
    parser = _Parser(prog="watchkeeper-dashboard", add_help=False)
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--config", type=Path, default=None)
    args = list(argv)
    if args[:1] == ["--"]:
        args = args[1:]
    options = parser.parse_args(args)
    config = load_config(options.config)
    if options.data_dir is not None:
        storage = config.storage.model_copy(update={"path": options.data_dir})
        config = config.model_copy(update={"storage": storage})
    return config


@contextmanager
def _open_store(path: str) -> Iterator[SQLiteStore]:
    store = SQLiteStore(path)
    try:
        yield store
    finally:
        store.close()


@st.cache_data(ttl=CACHE_TTL_S, show_spinner=False)
def load_fleet(
    store_file: str, alert_file: str, config_key: str, _config: Config
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, str]:
    """Fleet table, live alerts, resolved alerts, and why alerts could not be read (or "").

    `config_key` (the configuration as JSON) is what the cache is keyed on; `_config` is the
    same configuration, passed along unhashed.
    """
    alert_error = ""
    try:
        alerts = read_alerts(Path(alert_file))
    except STORE_ERRORS as exc:
        alerts, alert_error = [], f"{alert_file}: {exc}"
    with _open_store(store_file) as store:
        fleet = fleet_overview(store, alerts, _config, time.time())
    return fleet, active_alerts(alerts), resolved_alerts(alerts), alert_error


@st.cache_data(ttl=CACHE_TTL_S, show_spinner=False)
def load_model(
    store_file: str, model: str, range_s: float
) -> tuple[dict[str, pd.DataFrame], pd.DataFrame]:
    """The model's chart series (throughput, error rate, p95 latency) and breached findings."""
    now = time.time()
    step = choose_step(now - range_s, now)
    # Whole buckets only: a bucket a few seconds old holds too little to plot without noise.
    end = now // step * step
    start = end - range_s
    with _open_store(store_file) as store:
        throughput = metric_series(store, model, "count", start, end, step)
        error_rate = metric_series(store, model, "error_rate", start, end, step)
        latency = metric_series(store, model, "latency_p95", start, end, step)
        findings = breached_findings(store, model, start, now)
    latency["value"] = latency["value"] * 1000.0
    series = {
        "Throughput (predictions/min)": throughput,
        "Error rate": error_rate,
        "p95 latency (ms)": latency,
    }
    return series, findings


def empty_state(config: Config) -> None:
    endpoint = f"http://{config.ingest.host}:{config.ingest.port}"
    st.info(EMPTY_TEXT)
    st.code(
        "from watchkeeper import Monitor\n\n"
        f'monitor = Monitor("my-model", endpoint="{endpoint}")\n'
        "output = model.predict(features)\n"
        "monitor.log_prediction(features=features, output=output, latency_s=0.012)\n",
        language="python",
    )
    st.caption(
        f"Reading {config.storage.store_file}. Start the ingest server with "
        "`watchkeeper serve`, or try `watchkeeper demo` to see the dashboard with data."
    )


def by_status(fleet: pd.DataFrame) -> pd.DataFrame:
    """The fleet worst first (critical, warning, stale, ok), then by name."""
    ranked = fleet.assign(rank=fleet["status"].map(STATUS_ORDER))
    return ranked.sort_values(["rank", "model"]).drop(columns="rank").reset_index(drop=True)


def alert_table(frame: pd.DataFrame) -> None:
    st.dataframe(
        frame.style.map(lambda state: CELL_STYLES.get(state, ""), subset=["state"]),
        hide_index=True,
        width="stretch",
        column_config={
            "model": st.column_config.TextColumn("Model"),
            "check": st.column_config.TextColumn("Check"),
            "subject": st.column_config.TextColumn("Subject"),
            "severity": st.column_config.TextColumn("Severity"),
            "state": st.column_config.TextColumn("State"),
            "since": st.column_config.DatetimeColumn("Since", format="distance"),
            "resolved": st.column_config.DatetimeColumn("Resolved", format="distance"),
            "summary": st.column_config.TextColumn("Summary"),
        },
    )


def fleet_section(fleet: pd.DataFrame, active: pd.DataFrame) -> None:
    st.header("Fleet")
    tiles = st.columns(4)
    tiles[0].metric("Models", len(fleet))
    tiles[1].metric("Firing alerts", int((active["state"] == "firing").sum()))
    tiles[2].metric("Pending alerts", int((active["state"] == "pending").sum()))
    tiles[3].metric("Stale models", int((fleet["status"] == "stale").sum()))
    shown = by_status(fleet)
    styles = shown["status"].map(CELL_STYLES)
    shown["status"] = shown["status"].map(STATUS_LABELS)
    st.dataframe(
        shown.style.apply(lambda _: styles, subset=["status"]),
        hide_index=True,
        width="stretch",
        column_config={
            "model": st.column_config.TextColumn("Model"),
            "status": st.column_config.TextColumn("Status"),
            "firing": st.column_config.NumberColumn("Firing alerts"),
            "last_seen": st.column_config.DatetimeColumn("Last seen", format="distance"),
            "throughput_per_min": st.column_config.NumberColumn("Predictions/min", format="%.1f"),
            "error_rate": st.column_config.NumberColumn("Error rate", format="percent"),
            "p95_latency_ms": st.column_config.NumberColumn("p95 latency", format="%.0f ms"),
            "versions": st.column_config.TextColumn("Versions"),
        },
    )
    st.caption("Throughput, error rate and p95 latency cover each model's configured window.")


def alerts_section(active: pd.DataFrame, resolved: pd.DataFrame, alert_error: str) -> None:
    st.header("Alerts")
    if alert_error:
        st.warning(f"Cannot read the alert state: {alert_error}")
    if active.empty:
        st.success("No alert is firing or pending.")
    else:
        alert_table(active)
    st.subheader("Recently resolved")
    if resolved.empty:
        st.caption("No resolved alerts yet.")
    else:
        alert_table(resolved)


def model_section(store_file: str, models: list[str]) -> None:
    """Charts and breached findings of one model; the list is worst first, so is the default."""
    st.header("Model")
    pick, span = st.columns([1, 2])
    model = pick.selectbox("Model", models, key="model")
    range_name = span.radio(
        "Time range",
        list(RANGES),
        index=list(RANGES).index(DEFAULT_RANGE),
        horizontal=True,
        key="range",
    )
    if model is None or range_name is None:
        return
    series, findings = load_model(store_file, model, RANGES[range_name])
    for column, (title, frame) in zip(st.columns(len(series)), series.items(), strict=True):
        column.markdown(f"**{title}**")
        if frame.empty:
            column.caption("No predictions in this range.")
        else:
            column.line_chart(frame, x="time", y="value", x_label="", y_label="", height=220)
    st.subheader("Breached findings")
    if findings.empty:
        st.caption("No breached findings in this range.")
    else:
        st.dataframe(
            findings,
            hide_index=True,
            width="stretch",
            column_config={
                "time": st.column_config.DatetimeColumn("Window end"),
                "check": st.column_config.TextColumn("Check"),
                "subject": st.column_config.TextColumn("Subject"),
                "statistic": st.column_config.TextColumn("Statistic"),
                "value": st.column_config.NumberColumn("Value", format="%.4g"),
                "threshold": st.column_config.NumberColumn("Threshold", format="%.4g"),
                "severity": st.column_config.TextColumn("Severity"),
                "summary": st.column_config.TextColumn("Summary"),
            },
        )


@st.fragment(run_every=REFRESH_S)
def live(config: Config) -> None:
    """Everything that shows data; reruns on its own every `REFRESH_S` seconds."""
    store_file = config.storage.store_file
    if not store_file.exists():
        empty_state(config)
        return
    try:
        fleet, active, resolved, alert_error = load_fleet(
            str(store_file),
            str(config.storage.alert_state_file),
            config.model_dump_json(),
            config,
        )
    except STORE_ERRORS as exc:
        st.error(f"Cannot open the store {store_file}: {exc}")
        return
    if fleet.empty:
        empty_state(config)
        return
    fleet_section(fleet, active)
    alerts_section(active, resolved, alert_error)
    try:
        model_section(str(store_file), list(by_status(fleet)["model"]))
    except STORE_ERRORS as exc:
        st.error(f"Cannot read the store {store_file}: {exc}")
    now = datetime.now(UTC).strftime("%H:%M:%S")
    st.caption(f"Data from {config.storage.path}; updated {now} UTC, every {REFRESH_S:g} s.")


def main(argv: Sequence[str]) -> None:
    st.set_page_config(page_title="watchkeeper", layout="wide")
    st.title("watchkeeper")
    try:
        config = settings(argv)
    except (UsageError, ConfigError) as exc:
        st.error(str(exc))
        return
    live(config)


main(sys.argv[1:])
