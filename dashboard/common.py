"""What every dashboard page shares: the view settings, cached loaders, empty state and errors.

`app.py` (the entry script) parses its arguments, asks for the password when one is set, draws
the time-range and auto-refresh pickers in the sidebar and stores a `View` in the session;
each page script then calls `run_page`, which reads that `View`, explains an empty data
directory, reruns the page body on the auto-refresh schedule and turns store errors into
messages. Loaders are cached per time bucket (`tick`): interacting with a page, or several
people looking at once, costs no store read, and a month-long range is not recomputed on
every refresh. Every page starts with a banner when a watchkeeper process is degraded or does
not answer its `/healthz` (`health_banner`).
"""

from __future__ import annotations

import logging
import math
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import streamlit as st

from watchkeeper import tsdb
from watchkeeper.alerting.records import Alert
from watchkeeper.alerting.state import read_alerts
from watchkeeper.config import Config, StorageConfig

from . import data, health

log = logging.getLogger(__name__)

VIEW_KEY = "watchkeeper_view"
HEALTH_TTL_S = 10.0
CACHE_TTL_S = 600.0
RANGES = {
    "last 1h": 3600.0,
    "last 6h": 6 * 3600.0,
    "last 24h": 86400.0,
    "last 7d": 7 * 86400.0,
    "last 30d": 30 * 86400.0,
}
DEFAULT_RANGE = "last 6h"
REFRESH = {"off": None, "every 10 s": 10.0, "every 30 s": 30.0, "every 1 min": 60.0}
DEFAULT_REFRESH = "every 10 s"
PAGE_FILES = {
    "fleet": "page_fleet.py",
    "model": "page_model.py",
    "incidents": "page_incidents.py",
    "alerts": "page_alerts.py",
}
STATUS_LABELS = {"critical": "● critical", "warning": "● warning", "stale": "○ stale", "ok": "● ok"}
STATUS_ORDER = {"critical": 0, "warning": 1, "stale": 2, "ok": 3}
# Cell colours, not emoji: the status must read at a glance even where emoji fonts are missing
# (as in some headless browsers and kiosk screens).
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
STORE_ERRORS: tuple[type[BaseException], ...] = (sqlite3.Error, OSError)
"""What reading the SQLite store or the alert state file raises when it cannot be read."""


@dataclass(frozen=True)
class View:
    """What the sidebar chose, the configuration every page reads, and who is logged in
    (None when the dashboard needs no login: write forms then ask for an author)."""

    config: Config
    range_name: str = DEFAULT_RANGE
    refresh_s: float | None = 10.0
    user: str | None = None

    @property
    def range_s(self) -> float:
        return RANGES[self.range_name]

    @property
    def store_file(self) -> Path:
        return self.config.storage.store_file

    @property
    def store_name(self) -> str:
        return store_name(self.config)

    @property
    def store_missing(self) -> bool:
        """True when the embedded store has no file yet (nothing reported); an InfluxDB
        store is always there to ask."""
        return self.config.storage.backend == "sqlite" and not self.store_file.exists()

    @property
    def alert_file(self) -> Path:
        return self.config.storage.alert_state_file


def store_name(config: Config) -> str:
    """The store as people know it: the SQLite file, or the InfluxDB bucket and URL."""
    storage = config.storage
    if storage.backend == "influxdb" and storage.influxdb is not None:
        return f"InfluxDB bucket {storage.influxdb.bucket!r} at {storage.influxdb.url}"
    return str(storage.store_file)


def freshness(range_s: float) -> float:
    """How old cached data may be for a range: 5 s for the last hour, up to 1 min for a month.

    >>> freshness(3600.0), freshness(30 * 86400.0)
    (5.0, 60.0)
    """
    return min(60.0, max(5.0, range_s / 3000.0))


def tick(range_s: float) -> float:
    """ "Now", rounded down to `freshness(range_s)`: the cache key and the end of the range."""
    fresh = freshness(range_s)
    return math.floor(time.time() / fresh) * fresh


def store_errors(config: Config) -> tuple[type[BaseException], ...]:
    """What a read of the configured store raises when the store cannot answer: SQLite and
    file errors, and for InfluxDB the HTTP client's errors too (shown as a message)."""
    if config.storage.backend != "influxdb":
        return STORE_ERRORS
    import urllib3.exceptions
    from influxdb_client.rest import ApiException

    return (*STORE_ERRORS, ApiException, urllib3.exceptions.HTTPError)


@contextmanager
def open_store(storage: StorageConfig) -> Iterator[tsdb.Store]:
    """The configured store (either backend, through `watchkeeper.tsdb.open_store`), opened
    for one read and closed again: no lock or connection held between refreshes. Pages use
    only the `Store` protocol's methods on it."""
    store = tsdb.open_store(storage)
    try:
        yield store
    finally:
        store.close()


@st.cache_data(ttl=5.0, show_spinner=False)
def load_alerts(alert_file: str) -> tuple[list[Alert], str]:
    """Every alert in the state file, and why they could not be read (or "")."""
    try:
        return read_alerts(Path(alert_file)), ""
    except STORE_ERRORS as exc:
        return [], f"{alert_file}: {exc}"


@st.cache_data(ttl=CACHE_TTL_S, max_entries=64, show_spinner=False)
def load_fleet(
    alert_file: str, end: float, range_s: float, config_key: str, _config: Config
) -> pd.DataFrame:
    """The fleet table with a trend column per figure over `[end - range_s, end)`.

    `config_key` (the configuration as JSON, which names the store) is what the cache is
    keyed on; `_config` is the same configuration, passed along unhashed.
    """
    alerts, _ = load_alerts(alert_file)
    with open_store(_config.storage) as store:
        fleet = data.fleet_overview(store, alerts, _config, end)
        trends = [
            data.fleet_trends(store, model, end - range_s, end, _config.model(model).every)
            for model in fleet["model"]
        ]
    for column in data.TREND_COLUMNS:
        fleet[column] = [t[column] for t in trends]
    return fleet


@st.cache_data(ttl=HEALTH_TTL_S, max_entries=16, show_spinner=False)
def load_health(urls: tuple[str, ...], cafile: str | None) -> list[health.ProcessHealth]:
    """Every process's `/healthz` answer, asked at most every `HEALTH_TTL_S` seconds (1 s
    timeout each, all at once), so pages stay fast even when a process hangs."""
    return health.check_all(urls, cafile=Path(cafile) if cafile else None)


def health_banner(config: Config) -> None:
    """A warning per degraded process and an error per unavailable or silent one, naming
    each degraded part and its detail; nothing when all are ok. Never fails the page."""
    try:
        cafile = config.ingest.tls_certfile
        reports = load_health(tuple(health.health_urls(config)), str(cafile) if cafile else None)
        for report in reports:
            if report.status == "degraded":
                st.warning(health.describe(report), icon=":material/warning:")
            elif not report.ok:
                st.error(health.describe(report), icon=":material/error:")
    except Exception:  # the banner is a courtesy; the page must draw without it
        log.exception("could not show the health of watchkeeper's processes")


def empty_state(config: Config) -> None:
    """No model yet: how to instrument one, and how to see the dashboard with data."""
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
        f"Reading {store_name(config)}. Start the ingest server with "
        "`watchkeeper serve`, or try `watchkeeper demo` to see the dashboard with data."
    )


def by_status(fleet: pd.DataFrame) -> pd.DataFrame:
    """The fleet worst first (critical, warning, stale, ok), then by name."""
    ranked = fleet.assign(rank=fleet["status"].map(STATUS_ORDER))
    return ranked.sort_values(["rank", "model"]).drop(columns="rank").reset_index(drop=True)


def alert_table(frame: pd.DataFrame, key: str) -> None:
    st.dataframe(
        frame.style.map(lambda state: CELL_STYLES.get(state, ""), subset=["state"]),
        hide_index=True,
        width="stretch",
        key=key,
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


def current_view() -> View | None:
    view = st.session_state.get(VIEW_KEY)
    return view if isinstance(view, View) else None


def run_page(title: str, body: Callable[[View], None], *, needs_store: bool = True) -> None:
    """Draw a page: its header, then `body` (rerun on the auto-refresh schedule), with an
    empty data directory explained and store errors shown as messages."""
    st.header(title)
    view = current_view()
    if view is None:
        st.error("Open the dashboard with `watchkeeper dashboard`; pages need its settings.")
        return

    def content() -> None:
        health_banner(view.config)
        if needs_store and view.store_missing:
            empty_state(view.config)
            return
        try:
            body(view)
        except store_errors(view.config) as exc:
            st.error(f"Cannot read the store {view.store_name}: {exc}")
            return
        now = datetime.now(UTC).strftime("%H:%M:%S")
        every = "off" if view.refresh_s is None else f"every {view.refresh_s:g} s"
        st.caption(
            f"Data from {view.store_name}; {view.range_name}; updated {now} UTC; "
            f"auto-refresh {every}."
        )

    if view.refresh_s is None:
        content()
    else:
        st.fragment(content, run_every=view.refresh_s)()
