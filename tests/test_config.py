"""Configuration: defaults that work, and errors that name the file, the key and the problem."""

from __future__ import annotations

from pathlib import Path

import pytest

from watchkeeper.config import ConfigError, format_duration, load_config, parse_duration

GOOD = """
storage:
  path: {data}
ingest:
  port: 9100
detector:
  interval: 10s
models:
  fraud-scorer:
    window: 30m
    every: 1m
    labels: {{team: payments}}
    checks:
      error_rate: {{threshold: 0.02, for: 5m}}
      drift: {{p_value: 0.001, reference: 2h}}
alerting:
  receivers: ["json://127.0.0.1:9000/hook?token=${{HOOK_TOKEN}}"]
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "watchkeeper.yaml"
    path.write_text(text)
    return path


def test_a_full_file_loads_with_units_and_secrets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOOK_TOKEN", "s3cret")
    config = load_config(_write(tmp_path, GOOD.format(data=tmp_path / "data")))
    model = config.model("fraud-scorer")
    assert (model.window, model.every) == (1800.0, 60.0)
    assert model.checks.error_rate.threshold == 0.02
    assert model.checks.error_rate.for_ == 300.0
    assert model.checks.drift.reference == 7200.0
    assert model.labels == {"team": "payments"}
    assert config.detector.interval == 10.0
    assert config.alerting.receivers == ["json://127.0.0.1:9000/hook?token=s3cret"]
    assert config.storage.store_file == tmp_path / "data" / "watchkeeper.db"


def test_unconfigured_models_get_the_defaults() -> None:
    config = load_config(None)
    assert config.model("anything") == config.detector.defaults
    assert config.model("anything").checks.drift.enabled


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("models:\n  m:\n    window: soon\n", "models.m.window: Value error, expected a duration"),
        (
            "models:\n  m:\n    checks:\n      error_rate:\n        threshold: 2\n",
            "models.m.checks.error_rate.threshold: Input should be less than 1",
        ),
        ("ingest:\n  prot: 80\n", "ingest.prot: Extra inputs are not permitted"),
        ("storage:\n  backend: oracle\n", "storage.backend: Input should be 'sqlite'"),
        ("- a\n- b\n", "(top level): expected a mapping, got list"),
        (
            "ingest:\n  tls_certfile: c.pem\n",
            "ingest: Value error, tls_certfile and tls_keyfile go",
        ),
        ("models: [\n", "not valid YAML"),
    ],
)
def test_bad_files_name_file_key_and_expectation(tmp_path: Path, text: str, expected: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert str(path) in str(error.value)
    assert expected in str(error.value)


def test_a_missing_secret_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOPE_TOKEN", raising=False)
    path = _write(tmp_path, "alerting:\n  receivers: ['json://h/?t=${NOPE_TOKEN}']\n")
    with pytest.raises(
        ConfigError, match=r"alerting\.receivers\.0: Value error, environment variable NOPE_TOKEN"
    ):
        load_config(path)


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nowhere\.yaml: cannot read"):
        load_config(tmp_path / "nowhere.yaml")


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        (90, 90.0),
        ("90", 90.0),
        ("90s", 90.0),
        ("5m", 300.0),
        ("1.5h", 5400.0),
        ("2d", 172800.0),
        ("1w", 604800.0),
        ("250ms", 0.25),
    ],
)
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["5 minutes", "-3s", -1, True, None, "m"])
def test_bad_durations_are_refused(bad: object) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(bad)


def test_durations_format_back() -> None:
    assert [format_duration(s) for s in (45, 300, 7200, 86400, 90)] == [
        "45s",
        "5m",
        "2h",
        "1d",
        "90s",
    ]
