"""The command line as a user meets it: help, check-config, and errors that say what is wrong."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

WATCHKEEPER = str(Path(sys.executable).parent / "watchkeeper")


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [WATCHKEEPER, *args], capture_output=True, text=True, timeout=120, cwd=cwd
    )


@pytest.mark.parametrize("command", ["demo", "serve", "dashboard", "check-config"])
def test_every_command_explains_itself(tmp_path: Path, command: str) -> None:
    result = run(command, "--help", cwd=tmp_path)
    assert result.returncode == 0
    assert "usage: watchkeeper " + command in result.stdout
    assert len(result.stdout.splitlines()) > 5


def test_check_config_accepts_a_good_file(tmp_path: Path) -> None:
    config = tmp_path / "w.yaml"
    config.write_text(f"storage:\n  path: {tmp_path / 'data'}\nmodels:\n  m: {{}}\n")
    result = run("check-config", str(config), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "ok: sqlite store" in result.stdout
    assert "1 configured model(s)" in result.stdout


def test_check_config_names_the_bad_key(tmp_path: Path) -> None:
    config = tmp_path / "w.yaml"
    config.write_text("models:\n  m:\n    checks:\n      drift:\n        p_value: 5\n")
    result = run("check-config", str(config), cwd=tmp_path)
    assert result.returncode == 1
    assert f"{config}: models.m.checks.drift.p_value: Input should be less than 1" in result.stderr
    assert "Traceback" not in result.stderr


def test_check_config_reports_an_unreachable_influxdb(tmp_path: Path) -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = tmp_path / "w.yaml"
    config.write_text(
        "storage:\n  backend: influxdb\n  influxdb:\n"
        f"    url: http://127.0.0.1:{port}\n    org: o\n    bucket: b\n    token: t\n"
        "    max_retries: 0\n"
    )
    result = run("check-config", str(config), cwd=tmp_path)
    assert result.returncode == 1
    assert "storage: the influxdb store at" in result.stderr
    assert "not reachable and writable" in result.stderr


def _receivers_config(tmp_path: Path) -> Path:
    """A file whose second named receiver is a Slack URL apprise refuses (one token part
    where Slack needs three), with a secret in the path."""
    config = tmp_path / "w.yaml"
    config.write_text(
        f"storage:\n  path: {tmp_path / 'data'}\ningest: {{port: 0}}\n"
        "alerting:\n  receivers: ['json://127.0.0.1:9/hook']\n  named_receivers:\n"
        "    - {name: team, urls: ['json://127.0.0.1:9/ok', 'slack://sekrit-token-part']}\n"
    )
    return config


def test_check_config_names_a_receiver_url_apprise_refuses(tmp_path: Path) -> None:
    result = run("check-config", str(_receivers_config(tmp_path)), cwd=tmp_path)
    assert result.returncode == 1, result.stdout
    assert "alerting.named_receivers.0.urls.1: not a valid apprise URL: slack://****" in (
        result.stderr
    )
    assert "sekrit" not in result.stderr + result.stdout
    assert "urls.0" not in result.stderr and "alerting.receivers.0" not in result.stderr


def test_serve_refuses_to_start_when_alerting_cannot(tmp_path: Path) -> None:
    """Rather than run on looking healthy while nothing can page anyone."""
    config = _receivers_config(tmp_path)
    result = run("serve", "--config", str(config), cwd=tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "watchkeeper serve: alerting could not start: not a valid apprise URL" in (result.stderr)
    assert "watchkeeper running" not in result.stdout
    assert "sekrit" not in result.stderr + result.stdout
    assert "Traceback" not in result.stderr


def test_an_exposed_dashboard_needs_a_password(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "WATCHKEEPER_DASHBOARD_PASSWORD"}
    result = subprocess.run(
        [WATCHKEEPER, "dashboard", "--data-dir", str(tmp_path), "--host", "0.0.0.0"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env=env,
    )
    assert result.returncode == 2
    assert "WATCHKEEPER_DASHBOARD_PASSWORD" in result.stderr
