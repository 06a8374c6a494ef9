"""Every dashboard page run in-process by Streamlit's AppTest on a seeded store: what each shows,
its empty states, its errors, and the login that guards an exposed dashboard."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml
from streamlit.testing.v1 import AppTest

from watchkeeper.alerting import (
    Alert,
    AlertStateStore,
    FeedbackStore,
    SilenceStore,
    fingerprint,
    read_episodes,
    read_silences,
    rule_report,
)
from watchkeeper.dashboard import app_path
from watchkeeper.dashboard.auth import write_auth_file
from watchkeeper.tsdb import Finding, Label, Prediction, Sample, SQLiteStore


def prediction(
    model: str, i: int, ts: float, version: str, error: bool = False, shift: float = 0.0
) -> Prediction:
    return Prediction(
        model=model,
        prediction_id=f"{model}-{i}",
        timestamp=ts,
        features={"amount": float(i % 7) + shift, "age": float(i % 3)},
        output=0.5,
        version=version,
        latency_s=0.01 + 0.001 * (i % 5),
        error=error,
    )


def finding(
    model: str,
    check: str,
    subject: str,
    end: float,
    value: float,
    breached: bool,
    **extra: Any,
) -> Finding:
    fields: dict[str, Any] = {
        "model": model,
        "check": check,
        "subject": subject,
        "statistic": "ks" if check == "drift" else check,
        "value": value,
        "threshold": 0.1 if check == "drift" else 0.05,
        "breached": breached,
        "severity": "warning" if check == "drift" else "critical",
        "window_start": end - 600,
        "window_end": end,
        "p_value": 1e-9 if breached else 0.4,
        "summary": f"{check} {subject} at {value:g}",
    }
    return Finding(**{**fields, **extra})


def alert(model: str, check: str, subject: str, state: str, at: float, **times: float) -> Alert:
    severity = "warning" if check == "drift" else "critical"
    labels = {"model": model, "check": check, "subject": subject, "severity": severity}
    return Alert(
        fingerprint=fingerprint(labels),
        labels=tuple(sorted(labels.items())),
        state=state,  # type: ignore[arg-type]
        active_since=at,
        updated_at=at,
        fired_at=times.get("fired_at"),
        resolved_at=times.get("resolved_at"),
        summary=f"{model} {check} {subject} is {state}",
    )


@pytest.fixture
def data_dir(tmp_path: Path) -> Iterator[Path]:
    """Two hours of fraud-scorer (v1 then v2 an hour ago; an error burst 90 to 80 minutes
    ago; 'amount' shifted by +10 and drifting for the last 20 minutes, firing, with its
    values out of range then too; accuracy 0.8 against a reference of 0.9 on 54 labels of
    each 60-prediction window, breached for the last 10 minutes) and churn-model (silent for
    15 minutes: stale), in a real store and alert state file, with team/environment labels."""
    now = time.time()
    start = now - 7200
    store = SQLiteStore(tmp_path / "watchkeeper.db")
    fraud = [
        prediction(
            "fraud-scorer",
            i,
            start + i * 10,
            "v1" if i < 360 else "v2",
            error=180 <= i < 240 and i % 2 == 0,
            shift=10.0 if start + i * 10 > now - 1200 else 0.0,
        )
        for i in range(720)
    ]
    labels = [Label("fraud-scorer", p.prediction_id, 1, p.timestamp + 5) for p in fraud]
    churn = [prediction("churn-model", i, start + i * 10, "c1") for i in range(630)]
    evaluations = [start + 3600 + 60 * k for k in range(61) if start + 3600 + 60 * k < now]
    findings = [
        *[
            finding(
                "fraud-scorer",
                "drift",
                "amount",
                t,
                0.4 if t > now - 1200 else 0.03,
                t > now - 1200,
            )
            for t in evaluations
        ],
        *[finding("fraud-scorer", "drift", "age", t, 0.02, False) for t in evaluations],
        *[
            finding("fraud-scorer", "error_rate", "", t, 0.5, True)
            for t in (start + 1800 + 60 * k for k in range(10))
        ],
        *[
            finding(
                "fraud-scorer", "efficacy", "accuracy", t, 0.8, t > now - 600,
                threshold=0.9, interval=(0.75, 0.85), n=54, statistic="accuracy",
                summary="accuracy 0.8 below reference 0.9",
            )
            for t in evaluations
        ],
        *[
            finding("fraud-scorer", "out_of_range", "amount", t, 1.0 if t > now - 1200 else 0.0,
                    t > now - 1200, threshold=0.05, statistic="out_of_range_fraction",
                    summary=f"amount out of range at {t}")
            for t in evaluations
        ],
        *[
            finding("fraud-scorer", "missing", "age", t, 0.0, False, threshold=0.1,
                    statistic="missing_rate", summary="age missing in 0.0%")
            for t in evaluations
        ],
    ]  # fmt: skip
    fallbacks = [
        Sample(
            "fraud-scorer", "fallbacks", start + 15 + 60 * k, 1.0, labels=(("reason", "timeout"),)
        )
        for k in range(0, 120, 4)
    ]
    store.write(predictions=fraud + churn, labels=labels, findings=findings, samples=fallbacks)
    store.close()
    state = AlertStateStore(tmp_path / "alerts.db")
    state.upsert(alert("fraud-scorer", "drift", "amount", "firing", now - 1200, fired_at=now - 900))
    state.upsert(
        alert(
            "fraud-scorer", "error_rate", "", "resolved", start + 1800,
            fired_at=start + 1900, resolved_at=start + 2400,
        )
    )  # fmt: skip
    state.close()
    config = {
        "storage": {"path": str(tmp_path)},
        "dashboard": {"health_urls": []},  # no process to ask (test_dashboard_health.py does)
        "detector": {"defaults": {"window": 600, "every": 60}},
        "models": {
            "fraud-scorer": {
                "window": 600,
                "every": 60,
                "labels": {"team": "payments", "environment": "prod"},
            },
            "churn-model": {
                "window": 600,
                "every": 60,
                "labels": {"team": "growth", "environment": "staging"},
            },
        },
    }
    (tmp_path / "watchkeeper.yaml").write_text(yaml.safe_dump(config))
    yield tmp_path


@pytest.fixture
def quiet(tmp_path: Path) -> Path:
    """A configuration that asks no process's /healthz (whatever listens on the default
    ingest port of this machine stays out of these tests)."""
    path = tmp_path / "quiet.yaml"
    path.write_text(yaml.safe_dump({"dashboard": {"health_urls": []}}))
    return path


def app(monkeypatch: pytest.MonkeyPatch, *args: str) -> AppTest:
    monkeypatch.setattr(sys, "argv", [str(app_path()), *args])
    return AppTest.from_file(str(app_path()), default_timeout=60)


def texts(at: AppTest) -> str:
    parts = [m.value for m in at.markdown] + [c.value for c in at.caption]
    parts += [x.value for x in (*at.info, *at.success, *at.warning, *at.error)]
    return "\n".join(str(p) for p in parts)


def charts(at: AppTest) -> list[dict[str, object]]:
    """The Vega-Lite specifications of the page's charts."""
    import json

    return [json.loads(e.proto.spec) for e in at.get("vega_lite_chart")]


def test_fleet_page_lists_models_worst_first_with_figures_and_trends(
    monkeypatch: pytest.MonkeyPatch, data_dir: Path
) -> None:
    at = app(monkeypatch, "--config", str(data_dir / "watchkeeper.yaml")).run()

    assert not at.exception, at.exception
    assert not at.error
    assert [h.value for h in at.header] == ["Fleet"]
    tiles = {m.label: m.value for m in at.metric}
    assert tiles == {
        "Models": "2",
        "Critical": "0",
        "Firing alerts": "1",
        "Pending alerts": "0",
        "Stale models": "1",
    }
    assert "warning-badge" not in texts(at)  # rendered markdown keeps the directive...
    assert ":orange-badge[warning] **fraud-scorer**" in texts(at)  # ...as the page wrote it
    fleet = at.dataframe[0].value.set_index("model")
    assert list(fleet.index) == ["fraud-scorer", "churn-model"]
    assert fleet.loc["churn-model", "status"] == "○ stale"
    assert fleet.loc["fraud-scorer", "drift_score"] == pytest.approx(0.4)
    assert fleet.loc["fraud-scorer", "drift_feature"] == "amount"
    assert fleet.loc["fraud-scorer", "firing"] == 1
    assert fleet.loc["fraud-scorer", "team"] == "payments"
    assert len(fleet.loc["fraud-scorer", "throughput_trend"]) == 24
    # A fallback every 4 minutes, predictions every 10 s: 2 in the last 10-minute window's 60.
    assert fleet.loc["fraud-scorer", "fallback_rate"] == pytest.approx(2 / 60, rel=0.05)
    assert 0.02 < max(fleet.loc["fraud-scorer", "fallback_trend"]) < 0.06
    assert pd.isna(fleet.loc["churn-model", "fallback_rate"])  # never reported a fallback
    assert list(fleet.loc["churn-model", "fallback_trend"]) == []
    assert max(fleet.loc["fraud-scorer", "drift_trend"]) == pytest.approx(0.4)

    at.multiselect(key="team_filter").select("growth").run()
    assert list(at.dataframe[0].value["model"]) == ["churn-model"]
    at.multiselect(key="status_filter").select("critical").run()
    assert "No model matches these filters" in at.info[0].value


def test_model_page_draws_health_versions_and_drift_heatmap(
    monkeypatch: pytest.MonkeyPatch, data_dir: Path
) -> None:
    at = app(monkeypatch, "--config", str(data_dir / "watchkeeper.yaml")).run()
    at.switch_page("page_model.py").run()

    assert not at.exception, at.exception
    assert [h.value for h in at.header] == ["Model"]
    assert at.selectbox(key="model").value == "fraud-scorer"  # the worst model first
    assert [s.value for s in at.subheader] == [
        "Health",
        "Efficacy",
        "Drift",
        "Data quality",
        "Breached findings",
    ]
    specs = charts(at)
    titles = [spec.get("title") for spec in specs]
    assert {
        "Throughput (predictions/min)",
        "Error rate",
        "p95 latency (ms)",
        "Mean latency (ms)",
        "Fallback rate",
        "Efficacy",
        "Label coverage",
    } <= set(titles)
    assert "v1 from" in texts(at) and "v2 from" in texts(at)
    heatmap = next(spec for spec in specs if spec.get("mark", {}).get("type") == "rect")
    assert heatmap["encoding"]["y"]["field"] == "feature"
    findings = table(at, "summary")
    assert set(findings["check"]) == {"drift", "error_rate", "efficacy", "out_of_range"}

    at.selectbox(key="model").select("churn-model").run()
    assert not at.exception
    assert at.query_params["model"] in ("churn-model", ["churn-model"])
    assert "No breached findings in this range." in texts(at)
    assert "No drift verdicts in this range" in texts(at)
    assert "send labels with `monitor.log_label(prediction_id, label)`" in texts(at)
    assert "No data-quality verdicts in this range" in texts(at)
    assert "Fallback rate: no fallbacks reported in this range" in texts(at)


def test_model_page_shows_efficacy_with_its_interval_and_label_coverage(
    monkeypatch: pytest.MonkeyPatch, data_dir: Path
) -> None:
    at = app(monkeypatch, "--config", str(data_dir / "watchkeeper.yaml")).run()
    at.switch_page("page_model.py").run()

    assert not at.exception, at.exception
    accuracy = next(m for m in at.metric if m.label == "accuracy")
    assert (accuracy.value, accuracy.proto.delta) == ("0.800", "-0.100")  # vs reference 0.9
    assert "label coverage 90%" in accuracy.help  # 54 labels of the 60 predictions
    specs = {spec.get("title"): spec for spec in charts(at)}
    layers = [layer.get("mark", {}).get("type") for layer in specs["Efficacy"]["layer"]]
    assert layers[:4] == ["area", "line", "line", "point"]  # interval, reference, value
    band = specs["Efficacy"]["layer"][0]["encoding"]
    assert (band["y"]["field"], band["y2"]["field"]) == ("low", "high")
    assert specs["Label coverage"]["layer"][0]["encoding"]["y"]["field"] == "coverage"
    assert "Shaded: the 95% interval" in texts(at)


def test_model_page_draws_reference_and_current_distributions_of_a_feature(
    monkeypatch: pytest.MonkeyPatch, data_dir: Path
) -> None:
    at = app(monkeypatch, "--config", str(data_dir / "watchkeeper.yaml")).run()
    at.switch_page("page_model.py").run()

    assert not at.exception, at.exception
    # The feature drifting most in the newest evaluation, in its newest window.
    assert at.selectbox(key="overlay_feature_fraud-scorer").value == "amount"
    window = at.selectbox(key="overlay_window_fraud-scorer_amount")
    assert window.index == 0 and "· 0.400 · breached" in window.format_func(window.value)
    overlay = next(spec for spec in charts(at) if spec.get("encoding", {}).get("xOffset") is None
                   and spec.get("encoding", {}).get("x", {}).get("title") == "amount")  # fmt: skip
    assert overlay["encoding"]["color"]["scale"]["domain"] == ["reference", "current"]
    assert overlay["encoding"]["y"]["field"] == "share"
    caption = next(c.value for c in at.caption if "'amount': reference" in c.value)
    assert "reference fraud-scorer@" in caption and "(60 values, red)" in caption

    # The oldest window overlaps the reference period: nothing to compare with.
    window.select_index(len(window.options) - 1).run()
    assert not at.exception, at.exception
    assert "this window overlaps the reference period" in texts(at)
    at.selectbox(key="overlay_feature_fraud-scorer").select("age").run()
    assert not at.exception, at.exception
    assert any("'age': reference" in c.value for c in at.caption)


def test_model_page_shows_data_quality_checks(
    monkeypatch: pytest.MonkeyPatch, data_dir: Path
) -> None:
    at = app(monkeypatch, "--config", str(data_dir / "watchkeeper.yaml")).run()
    at.switch_page("page_model.py").run()

    assert not at.exception, at.exception
    tiles = {m.label: m.value for m in at.metric}
    assert (tiles["Missing values"], tiles["Out of range"], tiles["Schema"]) == (
        "ok",
        "1 breached",
        "–",
    )
    quality = table(at, "breached_windows")
    assert quality[["check", "subject", "breached_windows"]].values.tolist() == [
        ["out_of_range", "amount", 19],  # every breached window, not only the sampled ones
        ["missing", "age", 0],
    ]
    lanes = next(spec for spec in charts(at) if spec.get("mark", {}).get("type") == "tick")
    assert lanes["encoding"]["y"]["field"] == "lane"


def test_model_page_follows_the_model_query_parameter(
    monkeypatch: pytest.MonkeyPatch, data_dir: Path
) -> None:
    at = app(monkeypatch, "--config", str(data_dir / "watchkeeper.yaml")).run()
    at.query_params["model"] = "churn-model"
    at.switch_page("page_model.py").run()
    assert at.selectbox(key="model").value == "churn-model"


def test_incidents_page_groups_breaches_per_model(
    monkeypatch: pytest.MonkeyPatch, data_dir: Path
) -> None:
    at = app(monkeypatch, "--config", str(data_dir / "watchkeeper.yaml")).run()
    at.switch_page("page_incidents.py").run()

    assert not at.exception, at.exception
    assert {m.label: m.value for m in at.metric} == {
        "Incidents": "2",
        "Models affected": "1",
        "Breached findings": str(10 + 19 + 19 + 9),  # error rate, drift, out of range, efficacy
    }
    assert [s.value for s in at.subheader] == ["fraud-scorer", "All incidents"]
    table = at.dataframe[0].value
    assert table[["incident", "checks"]].values.tolist() == [
        ["#2", "drift (amount), efficacy (accuracy), out_of_range (amount)"],
        ["#1", "error_rate"],
    ]
    assert len(charts(at)) == 1
    assert len(at.expander) == 2

    at.sidebar.radio(key="range").set_value("last 1h").run()
    assert [r for r in at.dataframe[0].value["incident"]] == ["#1"]


def test_alerts_page_shows_firing_and_resolved(
    monkeypatch: pytest.MonkeyPatch, data_dir: Path
) -> None:
    at = app(monkeypatch, "--config", str(data_dir / "watchkeeper.yaml")).run()
    at.switch_page("page_alerts.py").run()

    assert not at.exception, at.exception
    tiles = {m.label: m.value for m in at.metric}
    assert tiles["Firing"] == "1" and tiles["Pending"] == "0"
    assert tiles["Resolved in the last 6h"] == "1"
    assert "**fraud-scorer** · drift (amount)" in texts(at)
    active, resolved = at.dataframe[0].value, at.dataframe[1].value
    assert active[["check", "subject", "state"]].values.tolist() == [["drift", "amount", "firing"]]
    assert resolved[["check", "state"]].values.tolist() == [["error_rate", "resolved"]]
    assert len(charts(at)) == 1
    assert "No silences yet." in texts(at)


def test_sidebar_choices_stay_when_switching_pages(
    monkeypatch: pytest.MonkeyPatch, data_dir: Path
) -> None:
    at = app(monkeypatch, "--config", str(data_dir / "watchkeeper.yaml")).run()
    at.sidebar.radio(key="range").set_value("last 24h").run()
    at.sidebar.selectbox(key="refresh").select("off").run()
    at.switch_page("page_alerts.py").run()
    assert at.sidebar.radio(key="range").value == "last 24h"
    assert "last 24h; " in texts(at) and "auto-refresh off" in texts(at)


@pytest.mark.parametrize("page", ["page_fleet.py", "page_model.py", "page_incidents.py"])
def test_pages_on_an_empty_data_dir_explain_how_to_start(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, quiet: Path, page: str
) -> None:
    at = app(monkeypatch, "--config", str(quiet), "--data-dir", str(tmp_path / "nothing-yet"))
    at.run()
    at.switch_page(page).run()

    assert not at.exception
    assert "No model has reported yet" in at.info[0].value
    assert "from watchkeeper import Monitor" in at.code[0].value
    assert not (tmp_path / "nothing-yet").exists()  # the dashboard only reads


def test_empty_alert_and_incident_pages_say_what_to_expect(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, quiet: Path
) -> None:
    store = SQLiteStore(tmp_path / "watchkeeper.db")
    store.write(predictions=[prediction("m", 1, time.time() - 5, "v1")])
    store.close()
    at = app(monkeypatch, "--config", str(quiet), "--data-dir", str(tmp_path)).run()
    at.switch_page("page_alerts.py").run()
    assert "No alert has been raised yet" in at.info[0].value
    at.switch_page("page_incidents.py").run()
    assert "No check breached" in at.success[0].value


def test_pages_report_a_store_they_cannot_open(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, quiet: Path
) -> None:
    (tmp_path / "watchkeeper.db").write_bytes(b"this is not a database" * 100)
    at = app(monkeypatch, "--config", str(quiet), "--data-dir", str(tmp_path)).run()
    assert not at.exception
    assert "Cannot read the store" in at.error[0].value
    at.switch_page("page_incidents.py").run()
    assert not at.exception
    assert "Cannot read the store" in at.error[0].value


def test_bad_arguments_and_config_are_shown_not_raised(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    at = app(monkeypatch, "--no-such-option").run()
    assert not at.exception
    assert "unrecognized arguments" in at.error[0].value

    bad = tmp_path / "watchkeeper.yaml"
    bad.write_text("models:\n  m:\n    window: soon\n")
    at = app(monkeypatch, "--config", str(bad), "--data-dir", str(tmp_path)).run()
    assert not at.exception
    assert "models.m.window" in at.error[0].value


def test_a_password_guards_every_page(
    monkeypatch: pytest.MonkeyPatch, data_dir: Path, tmp_path: Path
) -> None:
    auth = write_auth_file(tmp_path / "auth", "s3cret")
    at = app(
        monkeypatch, "--config", str(data_dir / "watchkeeper.yaml"), "--auth-file", str(auth)
    ).run()
    assert not at.exception
    assert [h.value for h in at.header] == []  # no page before logging in
    assert not at.dataframe

    at.text_input(key="login_name").input("ana")
    at.text_input(key="password").input("wrong")
    at.button[0].click().run()
    assert "Wrong password." in at.error[0].value
    assert not at.dataframe

    at.text_input(key="login_name").input("")
    at.text_input(key="password").input("s3cret")
    at.button[0].click().run()
    assert "Give your name" in at.error[0].value

    at.text_input(key="login_name").input("ana")
    at.text_input(key="password").input("s3cret")
    at.button[0].click().run()
    assert not at.exception
    assert [h.value for h in at.header] == ["Fleet"]
    at.switch_page("page_alerts.py").run()
    assert [h.value for h in at.header] == ["Alerts"]


def table(at: AppTest, column: str) -> Any:
    """The first table on the page with a column called `column`."""
    found = [d.value for d in at.dataframe if column in d.value.columns]
    assert found, [list(d.value.columns) for d in at.dataframe]
    return found[0]


def click(at: AppTest, label: str) -> AppTest:
    """Press the (form submit) button called `label` and rerun."""
    found = [b for b in at.button if b.label == label]
    assert found, [b.label for b in at.button]
    return found[0].click().run()


@pytest.fixture
def fired(data_dir: Path) -> Path:
    """The seeded alerts' firing episodes in the feedback log, as alerting records them."""
    feedback = FeedbackStore(data_dir / "alerts.db")
    state = AlertStateStore(data_dir / "alerts.db")
    try:
        for kept in state.alerts(["firing", "resolved"]):
            feedback.observe(kept)
    finally:
        state.close()
        feedback.close()
    return data_dir


def alerts_page(monkeypatch: pytest.MonkeyPatch, data_dir: Path, *args: str) -> AppTest:
    at = app(monkeypatch, "--config", str(data_dir / "watchkeeper.yaml"), *args).run()
    at.sidebar.selectbox(key="refresh").select("off").run()
    at.switch_page("page_alerts.py").run()
    assert not at.exception, at.exception
    return at


def test_alerts_page_adds_and_expires_silences(
    monkeypatch: pytest.MonkeyPatch, data_dir: Path
) -> None:
    at = alerts_page(monkeypatch, data_dir)
    at.text_area(key="silence_matchers").input('model="fraud-scorer"\ncheck=~"drift|up"')
    at.text_input(key="silence_duration").input("2h")
    at.text_input(key="silence_comment").input("retraining tonight")
    at.text_input(key="silence_author").input("bo")
    started = time.time()
    at = click(at, "Add silence")
    assert not at.exception, at.exception
    assert "Silence" in at.success[0].value and "added" in at.success[0].value

    (silence,) = read_silences(data_dir / "alerts.db")
    assert [str(m) for m in silence.matchers] == ['model="fraud-scorer"', 'check=~"drift|up"']
    assert (silence.created_by, silence.comment) == ("bo", "retraining tonight")
    assert started <= silence.starts_at <= time.time()
    assert silence.ends_at - silence.starts_at == 7200
    listed = table(at, "matchers")
    assert listed[["id", "status", "author"]].values.tolist() == [[silence.id, "active", "bo"]]

    at.selectbox(key="expire_id").select(silence.id)
    at = click(at, "Expire now")
    assert not at.exception, at.exception
    (kept,) = read_silences(data_dir / "alerts.db")  # expired, kept for audit
    assert kept.id == silence.id and kept.status(time.time()) == "expired"
    assert table(at, "matchers")["status"].tolist() == ["expired"]
    assert "expire_id" not in {w.key for w in at.selectbox}  # nothing left to expire
    assert "expired; it stays listed for audit" in at.success[0].value


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"silence_matchers": "model=fraud scorer", "silence_comment": "x"}, "not a label"),
        ({"silence_matchers": 'team="risk"', "silence_comment": "x"}, "author"),
        (
            {"silence_matchers": 'team="risk"', "silence_comment": "x", "silence_author": "bo",
             "silence_duration": "soon"},
            "expected a duration",
        ),
        ({"silence_comment": "x", "silence_author": "bo"}, "at least one matcher"),
    ],
)  # fmt: skip
def test_a_bad_silence_is_refused_with_the_reason(
    monkeypatch: pytest.MonkeyPatch, data_dir: Path, fields: dict[str, str], message: str
) -> None:
    at = alerts_page(monkeypatch, data_dir)
    for key, value in fields.items():
        widget = at.text_area(key=key) if key == "silence_matchers" else at.text_input(key=key)
        widget.input(value)
    if "silence_author" not in fields:
        at.text_input(key="silence_author").input("")
    at = click(at, "Add silence")
    assert not at.exception, at.exception
    assert "Silence not added" in at.error[0].value and message in at.error[0].value
    assert read_silences(data_dir / "alerts.db") == []


def test_alerts_page_acknowledges_with_a_verdict_and_reports_per_rule(
    monkeypatch: pytest.MonkeyPatch, fired: Path
) -> None:
    path = fired / "alerts.db"
    at = alerts_page(monkeypatch, fired)
    drift = next(e for e in read_episodes(path) if e.check == "drift")
    assert at.selectbox(key="ack_alert").value == drift.fingerprint  # the latest first
    at.radio(key="ack_verdict").set_value("false positive")
    at.text_input(key="ack_note").input("seasonal shift")
    at.text_input(key="ack_author").input("cy")
    at = click(at, "Acknowledge")
    assert not at.exception, at.exception
    assert "as a false positive" in at.success[0].value

    stored = next(e for e in read_episodes(path) if e.check == "drift")
    assert (stored.acked_by, stored.verdict, stored.note) == ("cy", "false", "seasonal shift")
    report = table(at, "median to resolve")
    expected = rule_report(read_episodes(path))  # what `watchkeeper alerts report` prints
    assert report[["model", "check", "fired", "false", "true"]].values.tolist() == [
        [s.model, s.check, s.fired, s.false_positives, s.true_positives] for s in expected
    ]
    assert report.values.tolist() == [
        ["fraud-scorer", "drift", 1, 1, 0, "-"],
        ["fraud-scorer", "error_rate", 1, 0, 0, "500s"],  # fired +1900 s, resolved +2400 s
    ]


def test_without_an_author_nothing_is_acknowledged(
    monkeypatch: pytest.MonkeyPatch, fired: Path
) -> None:
    at = alerts_page(monkeypatch, fired)
    at.radio(key="ack_verdict").set_value("true positive")
    at = click(at, "Acknowledge")
    assert "Not acknowledged" in at.error[0].value
    assert all(e.acked_by is None for e in read_episodes(fired / "alerts.db"))


def test_with_login_every_write_is_recorded_as_the_logged_in_user(
    monkeypatch: pytest.MonkeyPatch, fired: Path, tmp_path: Path
) -> None:
    auth = write_auth_file(tmp_path / "auth", "s3cret")
    at = app(monkeypatch, "--config", str(fired / "watchkeeper.yaml"), "--auth-file", str(auth))
    at.run()
    at.text_input(key="login_name").input("dee")
    at.text_input(key="password").input("s3cret")
    at.button[0].click().run()
    at.sidebar.selectbox(key="refresh").select("off").run()
    at.switch_page("page_alerts.py").run()
    assert not at.exception, at.exception
    keys = {w.key for w in at.text_input}
    assert "silence_author" not in keys and "ack_author" not in keys  # nobody else to name
    assert "Recorded as **dee**." in texts(at)

    at.text_area(key="silence_matchers").input('team="payments"')
    at.text_input(key="silence_comment").input("game day")
    at = click(at, "Add silence")
    at.radio(key="ack_verdict").set_value("true positive")
    at = click(at, "Acknowledge")
    assert not at.exception, at.exception

    path = fired / "alerts.db"
    assert [s.created_by for s in read_silences(path)] == ["dee"]
    assert [e.acked_by for e in read_episodes(path) if e.acked_by] == ["dee"]


def test_the_dashboard_writes_only_the_alert_state_file(
    monkeypatch: pytest.MonkeyPatch, data_dir: Path
) -> None:
    store_file = data_dir / "watchkeeper.db"
    before = store_file.stat().st_mtime_ns, store_file.stat().st_size
    at = alerts_page(monkeypatch, data_dir)
    at.text_area(key="silence_matchers").input('team="risk"')
    at.text_input(key="silence_comment").input("c")
    at.text_input(key="silence_author").input("bo")
    click(at, "Add silence")
    assert (store_file.stat().st_mtime_ns, store_file.stat().st_size) == before
    store = SilenceStore(data_dir / "alerts.db")
    try:
        assert len(store.silences()) == 1
    finally:
        store.close()
