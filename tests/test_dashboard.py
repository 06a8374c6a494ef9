"""The dashboard: its tables and series against a real SQLite store, and the page itself run
in-process by Streamlit's AppTest (and once as a real `streamlit run` server)."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from watchkeeper.alerting import Alert, AlertStateStore, fingerprint
from watchkeeper.config import Config, config_from_dict
from watchkeeper.dashboard import app_path, launch, wait_until_ready
from watchkeeper.dashboard.data import (
    active_alerts,
    breached_findings,
    choose_step,
    fleet_overview,
    metric_series,
    resolved_alerts,
)
from watchkeeper.tsdb import Finding, Prediction, SQLiteStore

NOW = 1_700_000_000.0


def prediction(
    model: str,
    pid: str,
    ts: float,
    *,
    error: bool = False,
    latency: float = 0.01,
    rate: float = 1.0,
    version: str = "v1",
) -> Prediction:
    return Prediction(
        model=model,
        prediction_id=pid,
        timestamp=ts,
        features={"x": 1.0},
        output=0.5,
        version=version,
        latency_s=latency,
        error=error,
        sample_rate=rate,
    )


def alert(model: str, check: str, severity: str, state: str, at: float, **extra: float) -> Alert:
    labels = {"model": model, "check": check, "subject": "", "severity": severity}
    return Alert(
        fingerprint=fingerprint(labels),
        labels=tuple(sorted(labels.items())),
        state=state,  # type: ignore[arg-type]
        active_since=at,
        updated_at=extra.get("updated_at", at),
        fired_at=extra.get("fired_at"),
        resolved_at=extra.get("resolved_at"),
        summary=f"{model} {check} is {state}",
    )


def seed_fleet(store: SQLiteStore, now: float) -> None:
    """fraud: 20 recent predictions, 3 errors (and old errors outside its 1h window);
    churn: silent for 1000 s (stale); ranker: recent, with a critical alert firing."""
    fraud = [
        prediction(
            "fraud",
            f"f{i}",
            now - 2000 + i * 100,
            error=i in (2, 5, 9),
            latency=0.001 * (i + 1),
            version="v1" if i < 10 else "v2",
        )
        for i in range(20)
    ]
    old = [prediction("fraud", f"old{i}", now - 5000 + i, error=True) for i in range(5)]
    churn = [prediction("churn", f"c{i}", now - 2000 + i * 100) for i in range(11)]
    ranker = [prediction("ranker", f"r{i}", now - 600 + i * 60) for i in range(10)]
    store.write(predictions=fraud + old + churn + ranker)


@pytest.fixture
def alerts_now() -> list[Alert]:
    return [
        alert("ranker", "error_rate", "critical", "firing", NOW - 900, fired_at=NOW - 600),
        alert("ranker", "drift", "warning", "pending", NOW - 120),
        alert(
            "fraud",
            "drift",
            "warning",
            "resolved",
            NOW - 7200,
            fired_at=NOW - 6000,
            resolved_at=NOW - 3600,
        ),
    ]


def test_fleet_overview_statuses_and_window_figures(
    store: SQLiteStore, alerts_now: list[Alert]
) -> None:
    seed_fleet(store, NOW)
    fleet = fleet_overview(store, alerts_now, Config(), NOW).set_index("model")

    assert fleet["status"].to_dict() == {"churn": "stale", "fraud": "ok", "ranker": "critical"}
    assert fleet["firing"].to_dict() == {"churn": 0, "fraud": 0, "ranker": 1}
    # fraud's 1h window holds its 20 recent predictions, 3 of them errors; the 5 older
    # errors are outside it.
    assert fleet.loc["fraud", "error_rate"] == pytest.approx(3 / 20)
    assert fleet.loc["fraud", "throughput_per_min"] == pytest.approx(20 / 60)
    # p95 of 1..20 ms with linear interpolation: 19 + 0.05 ms.
    assert fleet.loc["fraud", "p95_latency_ms"] == pytest.approx(19.05)
    assert fleet.loc["fraud", "versions"] == "v1, v2"
    assert fleet.loc["churn", "last_seen"] == pd.Timestamp(NOW - 1000, unit="s", tz="UTC")


def test_fleet_overview_uses_each_models_configured_staleness_and_window(
    store: SQLiteStore,
) -> None:
    seed_fleet(store, NOW)
    config = config_from_dict(
        {
            "models": {
                "churn": {"window": "1h", "checks": {"up": {"staleness": "1h"}}},
                "ranker": {"window": "5m", "checks": {"up": {"staleness": "30s"}}},
            }
        }
    )
    warning = [alert("fraud", "drift", "warning", "firing", NOW - 60, fired_at=NOW - 30)]
    fleet = fleet_overview(store, warning, config, NOW).set_index("model")

    assert fleet["status"].to_dict() == {"churn": "ok", "fraud": "warning", "ranker": "stale"}
    # ranker's 5 minute window holds the predictions at now-300 .. now-60: 5 of them.
    assert fleet.loc["ranker", "throughput_per_min"] == pytest.approx(5 / 5)
    # churn sent nothing in its last hour... except at now-2000 .. now-1000: 11 predictions.
    assert fleet.loc["churn", "error_rate"] == 0.0


def test_fleet_overview_of_an_empty_store_has_the_columns(store: SQLiteStore) -> None:
    fleet = fleet_overview(store, [], Config(), NOW)
    assert fleet.empty
    assert list(fleet.columns) == [
        "model",
        "status",
        "firing",
        "last_seen",
        "throughput_per_min",
        "error_rate",
        "p95_latency_ms",
        "versions",
    ]


def test_metric_series_matches_hand_computed_buckets(store: SQLiteStore) -> None:
    start, end, step = NOW - 600, NOW, 60.0
    store.write(
        predictions=[
            prediction("m", "a0", start + 1, error=True, latency=0.1),
            prediction("m", "a1", start + 30, latency=0.2),
            prediction("m", "a2", start + 59.9, latency=0.3),
            # bucket 2: 6 logged at a 50% sample rate, i.e. 12 real predictions, 3 errors
            *[
                prediction("m", f"b{i}", start + 120 + i, error=i < 3, latency=0.05, rate=0.5)
                for i in range(6)
            ],
            prediction("m", "late", end, error=True),  # the window is half-open
        ]
    )

    throughput = metric_series(store, "m", "count", start, end, step)
    assert len(throughput) == 10
    assert throughput["value"].tolist() == [3.0, 0.0, 12.0] + [0.0] * 7
    assert throughput["time"][2] == pd.Timestamp(datetime.fromtimestamp(start + 120, tz=UTC))

    errors = metric_series(store, "m", "error_rate", start, end, step)
    assert errors["value"].tolist() == pytest.approx([1 / 3, 3 / 6])
    assert errors["time"].tolist() == [
        pd.Timestamp(start, unit="s", tz="UTC"),
        pd.Timestamp(start + 120, unit="s", tz="UTC"),
    ]

    p95 = metric_series(store, "m", "latency_p95", start, end, 600.0)
    # 0.05 x6, 0.1, 0.2, 0.3: position 8 * 0.95 = 7.6 between 0.2 and 0.3.
    assert p95["value"].tolist() == pytest.approx([0.2 + 0.1 * 0.6])


def test_metric_series_rates_a_last_bucket_cut_short_by_its_real_length(
    store: SQLiteStore,
) -> None:
    # one prediction a second, read up to 30 s into the third minute: a steady 60 per minute
    store.write(predictions=[prediction("m", f"p{i}", NOW + i) for i in range(150)])
    throughput = metric_series(store, "m", "count", NOW, NOW + 150, 60.0)
    assert throughput["value"].tolist() == pytest.approx([60.0, 60.0, 60.0])


def test_metric_series_rejects_unknown_metrics(store: SQLiteStore) -> None:
    with pytest.raises(ValueError, match="latency_p95"):
        metric_series(store, "m", "latency_p99", 0, 60, 1)  # type: ignore[arg-type]


@pytest.mark.parametrize("span", [3600, 6 * 3600, 86400, 7 * 86400, 90 * 86400, 300, 10])
def test_choose_step_gives_100_to_300_points(span: float) -> None:
    step = choose_step(NOW - span, NOW)
    assert 100 <= span / step <= 300 or step == 1.0


def test_active_alerts_put_firing_critical_first_and_keep_resolved_apart(
    alerts_now: list[Alert],
) -> None:
    extra = alert("fraud", "up", "warning", "firing", NOW - 50, fired_at=NOW - 40)
    active = active_alerts([*alerts_now, extra])
    assert active[["model", "check", "state"]].values.tolist() == [
        ["ranker", "error_rate", "firing"],
        ["fraud", "up", "firing"],
        ["ranker", "drift", "pending"],
    ]
    assert active["since"][0] == pd.Timestamp(NOW - 600, unit="s", tz="UTC")
    assert active["since"][2] == pd.Timestamp(NOW - 120, unit="s", tz="UTC")

    resolved = resolved_alerts(alerts_now)
    assert resolved[["model", "check"]].values.tolist() == [["fraud", "drift"]]
    assert resolved["resolved"][0] == pd.Timestamp(NOW - 3600, unit="s", tz="UTC")


def test_breached_findings_newest_first(store: SQLiteStore) -> None:
    def finding(end: float, breached: bool) -> Finding:
        return Finding(
            model="m",
            check="drift",
            subject="x",
            statistic="ks",
            value=0.3,
            threshold=0.1,
            breached=breached,
            severity="warning",
            window_start=end - 3600,
            window_end=end,
        )

    store.write(
        findings=[
            finding(NOW - 300, True),
            finding(NOW - 200, False),
            finding(NOW - 100, True),
            finding(NOW - 10_000, True),
        ]
    )
    found = breached_findings(store, "m", NOW - 3600, NOW)
    assert found["time"].tolist() == [
        pd.Timestamp(NOW - 100, unit="s", tz="UTC"),
        pd.Timestamp(NOW - 300, unit="s", tz="UTC"),
    ]


# --- the page --------------------------------------------------------------------------------


def run_page(monkeypatch: pytest.MonkeyPatch, *args: str) -> AppTest:
    monkeypatch.setattr(sys, "argv", [str(app_path()), *args])
    return AppTest.from_file(str(app_path()), default_timeout=30).run()


@pytest.fixture
def live_data_dir(tmp_path: Path) -> Iterator[Path]:
    now = time.time()
    store = SQLiteStore(tmp_path / "watchkeeper.db")
    seed_fleet(store, now)
    store.write(
        findings=[
            Finding(
                model="ranker",
                check="error_rate",
                subject="",
                statistic="wilson_low",
                value=0.2,
                threshold=0.05,
                breached=True,
                severity="critical",
                window_start=now - 3900,
                window_end=now - 300,
                summary="error rate 20%",
            )
        ]
    )
    store.close()
    state = AlertStateStore(tmp_path / "alerts.db")
    state.upsert(alert("ranker", "error_rate", "critical", "firing", now - 900, fired_at=now - 600))
    state.close()
    yield tmp_path


def test_page_shows_fleet_alerts_and_model(
    monkeypatch: pytest.MonkeyPatch, live_data_dir: Path
) -> None:
    at = run_page(monkeypatch, "--data-dir", str(live_data_dir))

    assert not at.exception
    assert not at.error
    assert at.title[0].value == "watchkeeper"
    assert [h.value for h in at.header] == ["Fleet", "Alerts", "Model"]
    tiles = {m.label: m.value for m in at.metric}
    assert tiles["Models"] == "3"
    assert tiles["Firing alerts"] == "1"
    assert tiles["Stale models"] == "1"

    fleet = at.dataframe[0].value
    assert sorted(fleet["model"]) == ["churn", "fraud", "ranker"]
    assert fleet.set_index("model").loc["ranker", "status"] == "🔴 critical"
    alerts = at.dataframe[1].value
    assert alerts[["model", "check", "state"]].values.tolist() == [
        ["ranker", "error_rate", "firing"]
    ]

    # worst first, so the model that needs looking at is the one shown
    assert at.selectbox(key="model").options == ["ranker", "churn", "fraud"]
    assert at.selectbox(key="model").value == "ranker"
    assert at.radio(key="range").value == "last 6h"
    findings = at.dataframe[-1].value
    assert findings[["check", "summary"]].values.tolist() == [["error_rate", "error rate 20%"]]

    at.selectbox(key="model").select("churn").run()
    at.radio(key="range").set_value("last 7d").run()
    assert not at.exception
    assert any("No breached findings" in c.value for c in at.caption)


def test_page_on_an_empty_data_dir_explains_how_to_start(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    at = run_page(monkeypatch, "--data-dir", str(tmp_path / "nothing-yet"))

    assert not at.exception
    assert "No model has reported yet" in at.info[0].value
    assert "from watchkeeper import Monitor" in at.code[0].value
    assert not (tmp_path / "nothing-yet").exists()  # the dashboard only reads


def test_page_reports_a_store_it_cannot_open(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "watchkeeper.db").write_bytes(b"this is not a database" * 100)
    at = run_page(monkeypatch, "--data-dir", str(tmp_path))

    assert not at.exception
    assert "Cannot open the store" in at.error[0].value


def test_page_reports_bad_arguments_and_config(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    at = run_page(monkeypatch, "--no-such-option")
    assert not at.exception
    assert "unrecognized arguments" in at.error[0].value

    bad = tmp_path / "watchkeeper.yaml"
    bad.write_text("models:\n  m:\n    window: soon\n")
    at = run_page(monkeypatch, "--config", str(bad), "--data-dir", str(tmp_path))
    assert not at.exception
    assert "models.m.window" in at.error[0].value


def test_importing_the_package_does_not_load_streamlit_or_pandas(tmp_path: Path) -> None:
    code = (
        "import sys, watchkeeper.dashboard\n"
        "print(sorted(m for m in ('streamlit', 'pandas') if m in sys.modules))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.mark.real_server
def test_launch_serves_the_app_until_stopped(tmp_path: Path) -> None:
    port = free_port()
    process = launch(tmp_path, port=port, log_file=tmp_path / "dashboard.log")
    try:
        wait_until_ready(f"http://127.0.0.1:{port}", timeout=30, process=process)
    finally:
        process.terminate()
        process.wait(timeout=10)
