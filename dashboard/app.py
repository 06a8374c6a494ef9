"""The watchkeeper dashboard's entry script (a Streamlit multipage app).

Run it with `streamlit run app.py -- --data-dir DIR [--config FILE] [--auth-file FILE]`, or
through `watchkeeper dashboard`. It parses its arguments, asks for the password when an
`--auth-file` (a hash written by the launcher) is given, draws the time-range and auto-refresh
pickers every page shares, and hands over to the page chosen in the navigation: Fleet, Model,
Incidents, Alerts. It never writes the store; the Alerts page writes only alerting's state file
(silences, acknowledgements, verdicts), recorded under the name given at login. The store and
the alert state file are opened, read and closed per (cached) load, so it never holds a lock
that ingest, detector or alerting would wait on.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import streamlit as st

from watchkeeper.config import Config, ConfigError, load_config
from watchkeeper.dashboard.auth import is_loopback, read_auth_file, verify_password
from watchkeeper.dashboard.common import (
    DEFAULT_RANGE,
    DEFAULT_REFRESH,
    PAGE_FILES,
    RANGES,
    REFRESH,
    VIEW_KEY,
    View,
)

AUTH_KEY = "watchkeeper_authenticated"
USER_KEY = "watchkeeper_user"


class UsageError(Exception):
    """The script's command line is wrong; shown on the page instead of exiting."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{self.format_usage().strip()}\n{self.prog}: {message}")


@dataclass(frozen=True)
class Settings:
    config: Config
    auth_file: Path | None = None


def settings(argv: Sequence[str]) -> Settings:
    """The configuration from the script's arguments; `--data-dir` overrides `storage.path`."""
    parser = _Parser(prog="watchkeeper-dashboard", add_help=False)
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--config", type=Path, default=None)
    parser.add_argument("--auth-file", type=Path, default=None)
    args = list(argv)
    if args[:1] == ["--"]:
        args = args[1:]
    options = parser.parse_args(args)
    config = load_config(options.config).with_data_dir(options.data_dir)
    return Settings(config, options.auth_file)


@st.cache_resource(show_spinner=False)
def stored_hash(auth_file: str) -> str:
    """The password hash, read once per server process (the launcher may remove the file)."""
    return read_auth_file(Path(auth_file))


def logged_in(auth_file: Path | None) -> bool:
    """True when no password is set or this session gave it; otherwise draw the login form."""
    address = st.get_option("server.address")
    if auth_file is None:
        if address and not is_loopback(str(address)):
            st.error(
                f"Refusing to serve on {address} without a password: start the dashboard with "
                "`watchkeeper dashboard` and WATCHKEEPER_DASHBOARD_PASSWORD set."
            )
            return False
        return True
    if st.session_state.get(AUTH_KEY):
        return True
    try:
        expected = stored_hash(str(auth_file))
    except (OSError, ValueError) as exc:
        st.error(f"Cannot read the dashboard password: {exc}")
        return False
    with st.form("login"):
        st.subheader("Log in")
        name = st.text_input(
            "Your name", key="login_name", help="Recorded with the silences and verdicts you make."
        )
        password = st.text_input("Password", type="password", key="password")
        submitted = st.form_submit_button("Log in")
    if submitted:
        if not name.strip():
            st.error("Give your name: silences and verdicts record who made them.")
        elif verify_password(password, expected):
            st.session_state[AUTH_KEY] = True
            st.session_state[USER_KEY] = name.strip()
            st.rerun()
        else:
            st.error("Wrong password.")
    return False


def sidebar() -> tuple[str, float | None]:
    """The time range and auto-refresh every page shares (kept while switching pages)."""
    with st.sidebar:
        range_name = st.radio(
            "Time range", list(RANGES), index=list(RANGES).index(DEFAULT_RANGE), key="range"
        )
        refresh = st.selectbox(
            "Auto-refresh", list(REFRESH), index=list(REFRESH).index(DEFAULT_REFRESH), key="refresh"
        )
    return range_name or DEFAULT_RANGE, REFRESH[refresh or DEFAULT_REFRESH]


def main(argv: Sequence[str]) -> None:
    st.set_page_config(page_title="watchkeeper", layout="wide")
    st.title("watchkeeper")
    try:
        options = settings(argv)
    except (UsageError, ConfigError) as exc:
        st.error(str(exc))
        return
    if not logged_in(options.auth_file):
        return
    here = Path(__file__).parent
    pages = [
        st.Page(
            here / PAGE_FILES["fleet"], title="Fleet", icon=":material/dashboard:", default=True
        ),
        st.Page(
            here / PAGE_FILES["model"],
            title="Model",
            icon=":material/monitoring:",
            url_path="model",
        ),
        st.Page(
            here / PAGE_FILES["incidents"],
            title="Incidents",
            icon=":material/timeline:",
            url_path="incidents",
        ),
        st.Page(
            here / PAGE_FILES["alerts"],
            title="Alerts",
            icon=":material/notifications_active:",
            url_path="alerts",
        ),
    ]
    page = st.navigation(pages)
    range_name, refresh_s = sidebar()
    user = st.session_state.get(USER_KEY) if options.auth_file is not None else None
    st.session_state[VIEW_KEY] = View(options.config, range_name, refresh_s, user)
    page.run()


main(sys.argv[1:])
