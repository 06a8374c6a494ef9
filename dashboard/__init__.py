"""The Streamlit dashboard: every model's health, alerts and findings over time.

Importing this package stays light (no Streamlit, no pandas): the CLI imports it to start the
dashboard as its own `streamlit run` process, and only that process loads Streamlit.

>>> app_path().name
'app.py'
"""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

__all__ = ["app_path", "launch", "wait_until_ready"]


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
) -> subprocess.Popen[bytes]:
    """Start the dashboard as a child process serving `http://{host}:{port}`.

    The child's output goes to `log_file` when given, else nowhere. The caller owns the
    process: stop it with `terminate()` and `wait()`. Use `wait_until_ready` to know when it
    answers.
    """
    command = [
        sys.executable, "-m", "streamlit", "run", str(app_path()),
        "--server.address", host,
        "--server.port", str(port),
        "--server.headless", "true",
        "--browser.gatherUsageStats", "false",
        "--",
        "--data-dir", str(data_dir),
    ]  # fmt: skip
    if config_path is not None:
        command += ["--config", str(config_path)]
    if log_file is None:
        return subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("ab") as log:
        return subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
        )


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
