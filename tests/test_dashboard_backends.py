"""The dashboard on findings the real detector produced: every page read through nothing but the
`Store` protocol (so the InfluxDB backend serves it as the SQLite one does), efficacy and
data-quality panels fed by real verdicts, and `watchkeeper explain` recomputed on the page."""

from __future__ import annotations

import io
import random
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from streamlit.testing.v1 import AppTest

import watchkeeper.tsdb
from watchkeeper.config import StorageConfig, load_config
from watchkeeper.dashboard import app_path
from watchkeeper.detector import Detector
from watchkeeper.detector.explain import explain_store
from watchkeeper.detector.replay import finding_id
from watchkeeper.tsdb import Label, Prediction, SQLiteStore, Store

PROTOCOL_METHODS = frozenset(
    name for name, value in vars(Store).items() if callable(value) and not name.startswith("_")
)
PAGES = ("page_fleet.py", "page_model.py", "page_incidents.py", "page_alerts.py")


class ProtocolOnly:
    """A store that answers only the `Store` protocol's methods: any backend-specific call
    (a SQLiteStore-only method, its connection) raises and is recorded."""

    def __init__(self, inner: Store, calls: list[str], refused: list[str]) -> None:
        self._inner = inner
        self._calls = calls
        self._refused = refused

    def __getattr__(self, name: str) -> Any:
        if name not in PROTOCOL_METHODS:
            self._refused.append(name)
            raise AttributeError(f"{name!r} is not a method of the Store protocol")
        self._calls.append(name)
        return getattr(self._inner, name)


@pytest.fixture
def detected_dir(tmp_path: Path) -> Iterator[Path]:
    """Three hours of `scorer` (binary classifier, labelled at once) judged by the real
    detector: for the last 40 minutes feature `x` moved by +3 and accuracy fell from 90% to
    55%. Evaluated every 5 minutes over 10-minute windows against the first hour."""
    rng = random.Random(7)
    now = time.time()
    start = now - 3 * 3600
    predictions, labels = [], []
    for i in range(1080):
        ts = start + i * 10
        late = ts > now - 2400
        output = rng.choice(["0", "1"])
        right = rng.random() < (0.55 if late else 0.9)
        predictions.append(
            Prediction(
                model="scorer",
                prediction_id=f"p{i}",
                timestamp=ts,
                features={"x": rng.gauss(3.0 if late else 0.0, 1.0), "colour": rng.choice("rgb")},
                output=output,
                version="v1",
                latency_s=0.01,
            )
        )
        labels.append(Label("scorer", f"p{i}", output if right else str(1 - int(output)), ts + 1))
    config = {
        "storage": {"path": str(tmp_path)},
        "dashboard": {"health_urls": []},
        "models": {
            "scorer": {
                "window": 600,
                "every": 300,
                "checks": {
                    "drift": {"reference": 3600},
                    "efficacy": {"delay": 0, "min_labels": 20},
                },
            }
        },
    }
    (tmp_path / "watchkeeper.yaml").write_text(yaml.safe_dump(config))
    store = SQLiteStore(tmp_path / "watchkeeper.db")
    try:
        store.write(predictions=predictions, labels=labels)
        Detector(store, load_config(tmp_path / "watchkeeper.yaml")).run_once(now)
    finally:
        store.close()
    yield tmp_path


def app(monkeypatch: pytest.MonkeyPatch, data_dir: Path) -> AppTest:
    monkeypatch.setattr(
        sys, "argv", [str(app_path()), "--config", str(data_dir / "watchkeeper.yaml")]
    )
    at = AppTest.from_file(str(app_path()), default_timeout=60).run()
    at.sidebar.selectbox(key="refresh").select("off").run()
    return at


def texts(at: AppTest) -> str:
    parts = [m.value for m in at.markdown] + [c.value for c in at.caption]
    parts += [x.value for x in (*at.info, *at.success, *at.warning, *at.error)]
    return "\n".join(str(p) for p in parts)


def test_every_page_reads_the_store_only_through_the_protocol(
    monkeypatch: pytest.MonkeyPatch, detected_dir: Path
) -> None:
    calls: list[str] = []
    refused: list[str] = []
    real_open = watchkeeper.tsdb.open_store

    def open_protocol_only(storage: StorageConfig, **kwargs: Any) -> Store:
        return ProtocolOnly(real_open(storage, **kwargs), calls, refused)  # type: ignore[return-value]

    # Pages open the store with `watchkeeper.tsdb.open_store(config.storage)`, as does
    # `watchkeeper explain`, which the Incidents page runs.
    monkeypatch.setattr(watchkeeper.tsdb, "open_store", open_protocol_only)
    at = app(monkeypatch, detected_dir)
    for page in PAGES:
        at.switch_page(page).run()
        assert not at.exception, (page, at.exception)
        assert not at.error, (page, [e.value for e in at.error])
    at.switch_page("page_incidents.py").run()
    at.button(key="explain_#1").click().run()
    assert not at.exception, at.exception

    assert refused == []
    assert {"models", "findings", "aggregate_predictions", "predictions", "close"} <= set(calls)
    assert any(c.value.endswith("recomputed: same numbers") for c in at.code)


def test_model_page_on_real_verdicts_shows_efficacy_drift_and_quality(
    monkeypatch: pytest.MonkeyPatch, detected_dir: Path
) -> None:
    at = app(monkeypatch, detected_dir)
    at.sidebar.radio(key="range").set_value("last 6h").run()
    at.switch_page("page_model.py").run()
    assert not at.exception, at.exception

    accuracy = next(m for m in at.metric if m.label == "accuracy")
    assert float(accuracy.value) < 0.75  # the newest window is after the fall
    assert accuracy.proto.delta.startswith("-")
    assert at.selectbox(key="overlay_feature_scorer").value == "x"  # drifting most now
    assert any("'x': reference scorer@" in c.value for c in at.caption)
    quality = next(d.value for d in at.dataframe if "breached_windows" in d.value.columns)
    assert {"missing", "out_of_range"} <= set(quality["check"])
    breached = quality.set_index(["check", "subject"])["breached_windows"]
    assert breached[("out_of_range", "x")] > 0  # +3 sd is beyond the reference's range


def test_incidents_page_links_findings_to_their_explain_output(
    monkeypatch: pytest.MonkeyPatch, detected_dir: Path
) -> None:
    at = app(monkeypatch, detected_dir)
    at.switch_page("page_incidents.py").run()
    assert not at.exception, at.exception

    findings = next(d.value for d in at.dataframe if "id" in d.value.columns)
    config = load_config(detected_dir / "watchkeeper.yaml")
    store = SQLiteStore(detected_dir / "watchkeeper.db")
    try:
        stored = {finding_id(f) for f in store.findings(breached_only=True)}
    finally:
        store.close()
    assert set(findings["id"]) <= stored
    picked = at.selectbox(key="explain_pick_#1").value
    assert f"watchkeeper explain {picked}" in [c.value for c in at.code]
    assert any(link.proto.label == "Open scorer on the Model page" for link in at.get("page_link"))

    at.button(key="explain_#1").click().run()
    assert not at.exception, at.exception
    expected = io.StringIO()
    assert explain_store(picked, config, expected) == 0  # what the CLI prints
    assert expected.getvalue().rstrip("\n") in [c.value for c in at.code]
    assert "same numbers" in at.success[0].value


def test_overlay_of_a_categorical_feature_compares_shares_per_category(detected_dir: Path) -> None:
    from watchkeeper.dashboard.distributions import NoOverlay, overlay

    config = load_config(detected_dir / "watchkeeper.yaml")
    store = SQLiteStore(detected_dir / "watchkeeper.db")
    try:
        end = store.last_evaluated("scorer")
        assert end is not None
        shown = overlay(store, config, "scorer", "colour", end)
        with pytest.raises(NoOverlay, match="overlaps the reference period"):
            overlay(store, config, "scorer", "colour", store.models()[0].first_seen + 1200)
    finally:
        store.close()
    assert shown.kind == "categorical" and shown.current_n == 60  # a 10-minute window
    shares = shown.frame.groupby("series")["share"].sum()
    assert shares.to_dict() == pytest.approx({"current": 1.0, "reference": 1.0})
    assert set(shown.frame["bin"]) == {"b", "g", "r"}
