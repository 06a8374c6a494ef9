"""The Streamlit dashboard: every model's health, alerts and findings over time.

Importing this package stays light (no Streamlit, no pandas): the CLI imports it to start the
dashboard as its own `streamlit run` process, and only that process loads Streamlit.

>>> app_path().name
'app.py'
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import weakref
from pathlib import Path

from .auth import PASSWORD_ENV, is_loopback, write_auth_file

__all__ = [
    "PASSWORD_ENV",
    "DashboardError",
    "app_path",
    "is_loopback",
    "launch",
    "wait_until_ready",
]


class DashboardError(RuntimeError):
    """The dashboard cannot start as asked; the message says why and what to do."""


def app_path() -> Path:
    """The Streamlit script of the installed package, as `streamlit run` needs it."""
    return Path(__file__).with_name("app.py")


def launch(
    data_dir: Path,
    *,
    config_path: Path | None = None,
    host: str = "127.0.0.1",
    port: int = 8501,
    log_file: Path | None = None,
    password: str | None = None,
) -> subprocess.Popen[bytes]:
    """Start the dashboard as a child process serving `http://{host}:{port}`.

    On a `host` other than a loopback address the dashboard is reachable from other machines,
    so a `password` is required (`DashboardError` otherwise); with a password, every browser
    session must log in first. Only a salted hash of it reaches the child, through a file of
    the caller's own (removed when the returned process object is collected or the caller
    exits).

    The child's output goes to `log_file` when given, else nowhere. The caller owns the
    process: stop it with `terminate()` and `wait()`. Use `wait_until_ready` to know when it
    answers.
    """
    if not password and not is_loopback(host):
        raise DashboardError(
            f"refusing to serve the dashboard on {host}, which other machines can reach, "
            f"without a password: set {PASSWORD_ENV} (or bind to 127.0.0.1)"
        )
    command = [
        sys.executable, "-m", "streamlit", "run", str(app_path()),
        "--server.address", host,
        "--server.port", str(port),
        "--server.headless", "true",
        "--browser.gatherUsageStats", "false",
        "--client.toolbarMode", "viewer",
        "--",
        "--data-dir", str(data_dir),
    ]  # fmt: skip
    if config_path is not None:
        command += ["--config", str(config_path)]
    secret_dir: str | None = None
    if password:
        secret_dir = tempfile.mkdtemp(prefix="watchkeeper-dashboard-")
        auth_file = write_auth_file(Path(secret_dir) / "password.hash", password)
        command += ["--auth-file", str(auth_file)]
    if log_file is None:
        process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
    else:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        with log_file.open("ab") as log:
            process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
            )
    if secret_dir is not None:
        weakref.finalize(process, shutil.rmtree, secret_dir, ignore_errors=True)
    return process


def wait_until_ready(
    url: str, timeout: float = 30.0, *, process: subprocess.Popen[bytes] | None = None
) -> None:
    """Poll `{url}/_stcore/health` until it answers 200.

    Raises `TimeoutError` after `timeout` seconds, or `RuntimeError` at once if `process`
    (the dashboard started by `launch`) exits first.
    """
    health = url.rstrip("/") + "/_stcore/health"
    deadline = time.monotonic() + timeout
    while True:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the dashboard exited with code {process.returncode}")
        try:
            with urllib.request.urlopen(health, timeout=2.0) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() >= deadline:
            raise TimeoutError(f"the dashboard did not answer at {health} within {timeout:g}s")
        time.sleep(0.2)
