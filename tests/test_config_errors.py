"""Broken configuration files: every error names the file, the key path (or line) and what
was expected, through `load_config` and through `watchkeeper check-config FILE` (non-zero exit,
message on standard error, no traceback)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from watchkeeper.config import ConfigError, load_config

# (name, file text, what the one message must contain besides the file name)
CASES: list[tuple[str, str | bytes, list[str]]] = [
    ("yaml syntax", "models:\n  m:\n    window: [5m\n", ["not valid YAML at line 4", "column"]),
    ("yaml tab", "ingest:\n\tport: 1\n", ["not valid YAML at line 2"]),
    ("not a mapping", "- a\n- b\n", ["(top level): expected a mapping, got list"]),
    ("not utf-8", b"ingest:\n  host: caf\xe9\n", ["not UTF-8 text: invalid byte at offset 19"]),
    (
        "wrong type",
        "ingest:\n  port: eighty\n",
        ["ingest.port: Input should be a valid integer", "(got 'eighty')", "(line 2)"],
    ),
    (
        "out of range",
        "ingest:\n  port: 70000\n",
        ["ingest.port: Input should be less than or equal to 65535", "(got 70000)"],
    ),
    (
        "unknown key",
        "ingest:\n  host: 0.0.0.0\n  prot: 80\n",
        ["ingest.prot:", "unknown key; expected one of:", "port", "(line 3)"],
    ),
    (
        "unknown check",
        "models:\n  m:\n    checks:\n      drfit: {p_value: 0.01}\n",
        ["models.m.checks.drfit:", "expected one of:", "drift", "error_rate", "(line 4)"],
    ),
    (
        "unknown key in a list item",
        "scrape:\n  - url: http://h/metrics\n    model: m\n    intervall: 5s\n",
        ["scrape.0.intervall:", "expected one of:", "interval", "(line 4)"],
    ),
    (
        "bad duration",
        "detector:\n  interval: 5 minutes\n",
        ["detector.interval:", "expected a duration such as 30s, 5m, 1h", "'5 minutes'"],
    ),
    (
        "negative duration",
        "models:\n  m:\n    every: -5\n",
        ["models.m.every:", "non-negative duration", "(line 3)"],
    ),
    (
        "bad enum",
        "storage:\n  backend: postgres\n",
        ["storage.backend: Input should be 'sqlite' or 'influxdb'", "(got 'postgres')"],
    ),
    (
        "list expected",
        "alerting:\n  route:\n    group_by: team\n",
        ["alerting.route.group_by: Input should be a valid list", "(got 'team')"],
    ),
    (
        "missing required key",
        "storage:\n  backend: influxdb\n  influxdb:\n    url: http://db:8086\n    org: o\n",
        ["storage.influxdb.bucket: Field required", "(line 3)"],
    ),
    (
        "missing section",
        "storage:\n  backend: influxdb\n",
        ["storage:", "needs a storage.influxdb section"],
    ),
    (
        "bad receiver reference",
        "alerting:\n  receivers: ['json://h/x']\n  route:\n    routes:\n"
        "      - matchers: ['team=\"a\"']\n        receiver: pager\n",
        ["alerting.route.routes.0.receiver:", "'pager' is not defined", "known: ['default']"],
    ),
    (
        "duplicate receiver name",
        "alerting:\n  named_receivers:\n    - {name: ops, urls: ['json://h/a']}\n"
        "    - {name: ops, urls: ['json://h/b']}\n",
        ["alerting.named_receivers:", "must be unique", "['ops']"],
    ),
    (
        "bad matcher",
        "alerting:\n  route:\n    matchers: ['team']\n",
        ["alerting.route.matchers:", "not a label matcher", 'team="risk"'],
    ),
    (
        "missing env var",
        "alerting:\n  receivers: ['json://h/?t=${WK_CONFIG_TEST_UNSET}']\n",
        ["alerting.receivers.0:", "environment variable WK_CONFIG_TEST_UNSET is not set"],
    ),
    (
        "duplicate model",
        "models:\n  fraud:\n    every: 1m\n  churn: {}\n  fraud:\n    every: 5m\n",
        ["models.fraud: duplicate key (first at line 2, again at line 5)"],
    ),
    (
        "duplicate key deeper",
        "ingest:\n  port: 1\n  host: a\n  port: 2\n",
        ["ingest.port: duplicate key (first at line 2, again at line 4)"],
    ),
    (
        "bad token digest",
        "ingest:\n  tokens:\n    - {name: svc, models: ['*'], sha256: abc}\n",
        ["ingest.tokens.0.sha256: String should match pattern"],
    ),
    (
        "token with two sources",
        "ingest:\n  tokens:\n    - {name: svc, models: ['*'], env: A, sha256: '"
        + "0" * 64
        + "'}\n",
        ["ingest.tokens.0:", "exactly one of sha256", "or env"],
    ),
    (
        "probability out of range",
        "models:\n  m:\n    checks:\n      drift:\n        p_value: 5\n",
        ["models.m.checks.drift.p_value: Input should be less than 1", "(got 5)", "(line 5)"],
    ),
]


def _write(tmp_path: Path, text: str | bytes) -> Path:
    path = tmp_path / "watchkeeper.yaml"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(("name", "text", "expected"), CASES, ids=[c[0] for c in CASES])
def test_load_config_names_file_key_and_expectation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, text: str, expected: list[str]
) -> None:
    monkeypatch.delenv("WK_CONFIG_TEST_UNSET", raising=False)
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as raised:
        load_config(path)
    message = str(raised.value)
    assert message.startswith(f"{path}: "), message
    for part in expected:
        assert part in message, f"{part!r} missing from {message!r}"


def test_secrets_are_not_repeated_in_errors(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "storage:\n  influxdb:\n    url: http://db\n    org: o\n    bucket: b\n"
        "    token: [s3cr3t-token-value]\n"
        "alerting:\n  receivers: json://user:s3cr3t-password@h/x\n",
    )
    with pytest.raises(ConfigError) as raised:
        load_config(path)
    message = str(raised.value)
    assert "storage.influxdb.token" in message and "alerting.receivers" in message
    assert "s3cr3t" not in message


def test_check_config_exits_non_zero_with_the_message_on_stderr(tmp_path: Path) -> None:
    # Two problems at once: both are reported, each with its key path.
    path = _write(tmp_path, "ingest:\n  port: eighty\ndetector:\n  interval: soon\n")
    code = "import sys; from watchkeeper.cli import main; sys.exit(main(sys.argv[1:]))"
    result = subprocess.run(
        [sys.executable, "-c", code, "check-config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert result.returncode != 0
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    assert f"{path}: ingest.port: Input should be a valid integer" in result.stderr
    assert f"{path}: detector.interval: " in result.stderr
    assert "expected a duration" in result.stderr


def test_a_good_file_passes_check_config(tmp_path: Path) -> None:
    path = _write(tmp_path, f"storage:\n  path: {tmp_path / 'data'}\nmodels:\n  m: {{}}\n")
    code = "import sys; from watchkeeper.cli import main; sys.exit(main(sys.argv[1:]))"
    result = subprocess.run(
        [sys.executable, "-c", code, "check-config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert ": ok:" in result.stdout


def test_config_errors_examples_run() -> None:
    import doctest

    import watchkeeper.config_errors

    result = doctest.testmod(watchkeeper.config_errors)
    assert result.attempted and not result.failed
