"""The dashboard: its tables and series against a real SQLite store, and the page itself run
in-process by Streamlit's AppTest (and once as a real `streamlit run` server)."""

from __future__ import annotations

import socket
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest

from watchkeeper.alerting import Alert, fingerprint
from watchkeeper.config import Config, config_from_dict
from watchkeeper.dashboard import DashboardError, launch, wait_until_ready
from watchkeeper.dashboard.auth import hash_password, verify_password
from watchkeeper.dashboard.data import (
    active_alerts,
    alert_spans,
    breached_findings,
    choose_step,
    drift_matrix,
    fleet_overview,
    fleet_trends,
    incidents,
    latest_drift,
    metric_series,
    resolved_alerts,
    version_spans,
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
        "pending",
        "last_seen",
        "throughput_per_min",
        "error_rate",
        "fallback_rate",
        "p95_latency_ms",
        "drift_score",
        "drift_feature",
        "versions",
        "team",
        "environment",
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


def drift(model: str, feature: str, end: float, ks: float, breached: bool = False) -> Finding:
    return Finding(
        model=model,
        check="drift",
        subject=feature,
        statistic="ks",
        value=ks,
        threshold=0.1,
        breached=breached,
        severity="warning",
        window_start=end - 600,
        window_end=end,
        p_value=0.001 if breached else 0.5,
    )


def breach(
    model: str, check: str, end: float, subject: str = "", severity: str = "critical"
) -> Finding:
    return Finding(
        model=model,
        check=check,
        subject=subject,
        statistic=check,
        value=1.0,
        threshold=0.5,
        breached=True,
        severity=severity,  # type: ignore[arg-type]
        window_start=end - 600,
        window_end=end,
        summary=f"{check} breached at {end:g}",
    )


def test_fleet_overview_shows_worst_latest_drift_and_config_labels(store: SQLiteStore) -> None:
    seed_fleet(store, NOW)
    store.write(
        findings=[
            drift("fraud", "amount", NOW - 120, 0.9, True),  # older evaluation: not the latest
            drift("fraud", "amount", NOW - 60, 0.35, True),
            drift("fraud", "age", NOW - 60, 0.05),
        ]
    )
    config = config_from_dict(
        {"models": {"fraud": {"labels": {"team": "payments", "environment": "prod"}}}}
    )
    pending = [alert("fraud", "drift", "warning", "pending", NOW - 60)]
    fleet = fleet_overview(store, pending, config, NOW).set_index("model")

    assert fleet.loc["fraud", "drift_score"] == pytest.approx(0.35)
    assert fleet.loc["fraud", "drift_feature"] == "amount"
    assert pd.isna(fleet.loc["churn", "drift_score"])
    assert fleet.loc["fraud", "pending"] == 1
    assert fleet.loc["fraud", "status"] == "ok"  # pending is not yet a warning
    assert fleet[["team", "environment"]].loc["fraud"].tolist() == ["payments", "prod"]
    assert fleet.loc["churn", "team"] == ""


def test_latest_drift_without_drift_findings(store: SQLiteStore) -> None:
    store.write(findings=[breach("m", "error_rate", NOW - 10)])
    score, feature = latest_drift(store, "m", NOW, 3600)
    assert pd.isna(score) and feature == ""


def test_drift_matrix_keeps_the_newest_evaluation_per_bucket(store: SQLiteStore) -> None:
    start = NOW - 600
    store.write(
        findings=[
            # bucket 0 ([start, start+300)): evaluations every 60 s; the last one stands
            *[drift("m", "a", start + 60 * i, 0.1 * i) for i in range(1, 5)],
            *[drift("m", "b", start + 60 * i, 0.01) for i in range(1, 5)],
            # bucket 1: one breached evaluation
            drift("m", "a", start + 540, 0.7, True),
            breach("m", "error_rate", start + 540),  # other checks are not drift
        ]
    )
    matrix = drift_matrix(store, "m", start, NOW, 300.0, every=60.0)
    rows = matrix[["feature", "ks", "breached"]].values.tolist()
    assert rows == [["a", pytest.approx(0.4), False], ["b", 0.01, False], ["a", 0.7, True]]
    assert matrix["time"].tolist() == [
        pd.Timestamp(start, unit="s", tz="UTC"),
        pd.Timestamp(start, unit="s", tz="UTC"),
        pd.Timestamp(start + 300, unit="s", tz="UTC"),
    ]


def test_fleet_trends_have_one_throughput_point_per_bucket(store: SQLiteStore) -> None:
    seed_fleet(store, NOW)
    trends = fleet_trends(store, "fraud", NOW - 2400, NOW, every=300.0, points=4)
    # fraud: one prediction every 100 s from now-2000 to now-100: 2, 6, 6, 6 per 600 s bucket
    assert trends["throughput_trend"] == pytest.approx([2 / 10, 6 / 10, 6 / 10, 6 / 10])
    assert len(trends["error_rate_trend"]) == 4
    assert trends["drift_trend"] == []


def test_version_spans_show_where_a_deployment_starts(store: SQLiteStore) -> None:
    seed_fleet(store, NOW)
    spans = version_spans(store, "fraud", NOW - 3000, NOW).set_index("version")
    assert list(spans.index) == ["v1", "v2"]
    assert spans.loc["v2", "first"] == pd.Timestamp(NOW - 1000, unit="s", tz="UTC")
    assert spans.loc["v1", "last"] == pd.Timestamp(NOW - 1100, unit="s", tz="UTC")
    assert spans["predictions"].tolist() == [10.0, 10.0]


def test_incidents_join_checks_breached_together_and_split_apart_ones() -> None:
    every = 60.0
    found = [
        # one incident of m: error rate 0..300, drift on x starting at 240
        *[breach("m", "error_rate", t) for t in range(0, 301, 60)],
        *[breach("m", "drift", t, "x", "warning") for t in range(240, 601, 60)],
        # one missed window does not split an episode; a long gap does
        *[breach("m", "up", t) for t in (5000, 5060, 5180)],
        breach("m", "up", 9000),
        # another model, same time: its own incident
        breach("n", "error_rate", 60),
    ]
    table, episodes = incidents(found, {"m": 2.5 * every}, default_gap=150.0)

    assert table[["incident", "model", "checks", "findings", "severity"]].values.tolist() == [
        ["#4", "m", "up", 1, "critical"],
        ["#3", "m", "up", 3, "critical"],
        ["#2", "n", "error_rate", 1, "critical"],
        ["#1", "m", "drift (x), error_rate", 13, "critical"],
    ]
    first = table.set_index("incident").loc["#1"]
    assert first["start"] == pd.Timestamp(0, unit="s", tz="UTC")
    assert first["end"] == pd.Timestamp(600, unit="s", tz="UTC")
    assert episodes[episodes["incident"] == "#1"]["lane"].tolist() == ["error_rate", "drift (x)"]


def test_incidents_of_nothing() -> None:
    table, episodes = incidents([], {}, 60.0)
    assert table.empty and episodes.empty
    assert "checks" in table.columns and "lane" in episodes.columns


def test_alert_spans_end_at_resolution_or_now(alerts_now: list[Alert]) -> None:
    spans = alert_spans(alerts_now, NOW).set_index("rule")
    assert spans.loc["error_rate", "end"] == pd.Timestamp(NOW, unit="s", tz="UTC")
    assert spans.loc["drift", "state"].tolist() == ["pending", "resolved"]
    assert spans.loc["drift", "end"].tolist() == [
        pd.Timestamp(NOW, unit="s", tz="UTC"),
        pd.Timestamp(NOW - 3600, unit="s", tz="UTC"),
    ]


# --- the package and its launcher -------------------------------------------------------------


def test_importing_the_package_does_not_load_streamlit_or_pandas(tmp_path: Path) -> None:
    code = (
        "import sys, watchkeeper.dashboard\n"
        "print(sorted(m for m in ('streamlit', 'pandas') if m in sys.modules))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


def test_public_names() -> None:
    import watchkeeper.dashboard as dashboard

    assert sorted(dashboard.__all__) == sorted(
        ["PASSWORD_ENV", "DashboardError", "app_path", "is_loopback", "launch", "wait_until_ready"]
    )


def test_passwords_are_stored_hashed_and_checked() -> None:
    stored = hash_password("s3cret")
    assert "s3cret" not in stored
    assert verify_password("s3cret", stored)
    assert not verify_password("s3cret ", stored)
    assert not verify_password("s3cret", "garbage")
    assert hash_password("s3cret") != stored  # salted


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.10", "dashboard.example.com"])
def test_launch_refuses_an_exposed_address_without_a_password(tmp_path: Path, host: str) -> None:
    with pytest.raises(DashboardError, match="WATCHKEEPER_DASHBOARD_PASSWORD"):
        launch(tmp_path, host=host, port=free_port())


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


@pytest.mark.real_server
def test_launch_with_a_password_hands_over_only_its_hash(tmp_path: Path) -> None:
    port = free_port()
    process = launch(tmp_path, port=port, password="s3cret", log_file=tmp_path / "d.log")
    try:
        wait_until_ready(f"http://127.0.0.1:{port}", timeout=30, process=process)
        args = process.args
        assert isinstance(args, list)
        assert "s3cret" not in " ".join(map(str, args))
        auth_file = Path(args[args.index("--auth-file") + 1])
        assert auth_file.stat().st_mode & 0o077 == 0  # the owner's alone
        assert verify_password("s3cret", auth_file.read_text())
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_fallback_series_is_fallbacks_per_stored_prediction(store: SQLiteStore) -> None:
    from watchkeeper.dashboard.data import fallback_series
    from watchkeeper.tsdb import Sample

    assert fallback_series(store, "fraud", NOW - 120, NOW, 60).empty  # never reported any
    store.write(
        predictions=[prediction("fraud", f"p{i}", NOW - 120 + 6 * i) for i in range(20)],
        samples=[Sample("fraud", "fallbacks", NOW - 100 + i, 1.0) for i in range(3)],
    )
    series = fallback_series(store, "fraud", NOW - 180, NOW, 60)
    assert series["value"].tolist() == [pytest.approx(0.3), 0.0]  # 3 of 10, then 0 of 10
    assert series["time"].iloc[0] == pd.Timestamp(NOW - 120, unit="s", tz="UTC")


def test_fleet_shows_the_fallback_rate_of_each_models_window_and_its_trend(
    store: SQLiteStore,
) -> None:
    from watchkeeper.tsdb import Sample

    seed_fleet(store, NOW)
    # fraud: 2 fallbacks among the 20 predictions of its 1h window, 1 more before the window;
    # ranker reported one once, long ago; churn never did.
    store.write(
        samples=[
            Sample("fraud", "fallbacks", t, 1.0, labels=(("reason", "timeout"),))
            for t in (NOW - 5000, NOW - 1500, NOW - 500)
        ]
        + [Sample("ranker", "fallbacks", NOW - 86400, 1.0)]
    )
    fleet = fleet_overview(store, [], Config(), NOW).set_index("model")
    assert fleet.loc["fraud", "fallback_rate"] == pytest.approx(2 / 20)
    assert fleet.loc["ranker", "fallback_rate"] == 0.0  # reports fallbacks, none now
    assert pd.isna(fleet.loc["churn", "fallback_rate"])  # never reported one: unknown

    trends = fleet_trends(store, "fraud", NOW - 2000, NOW, 3600.0, points=2)
    # Two 1000 s buckets of 10 predictions each, one fallback in each.
    assert trends["fallback_trend"] == [pytest.approx(0.1), pytest.approx(0.1)]
    assert fleet_trends(store, "churn", NOW - 2000, NOW, 3600.0, points=2)["fallback_trend"] == []
