"""Every check family through `ModelJudge` on hand-built batches, and in the live detector."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from watchkeeper.config import ModelConfig, config_from_dict
from watchkeeper.detector import Detector, ModelJudge, batch_from_frame, profile_batch
from watchkeeper.detector.efficacy import classification_metrics
from watchkeeper.detector.frame import Batch
from watchkeeper.detector.profile import CategoricalProfile, NumericProfile
from watchkeeper.tsdb import Finding, Label, Prediction, Sample, SQLiteStore

T0 = 1_700_006_400.0
HOUR = 3600.0


def frame(n: int, start: float, seed: int, **overrides: object) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    data: dict[str, object] = {
        "timestamp": start + np.sort(rng.uniform(0, HOUR, n)),
        "prediction_id": [f"p{seed}-{i}" for i in range(n)],
        "x": rng.normal(size=n),
        "y": rng.normal(size=n),
        "colour": rng.choice(["red", "green", "blue"], size=n, p=[0.5, 0.3, 0.2]),
        "prediction": rng.integers(0, 2, n),
        "latency_ms": rng.lognormal(np.log(40), 0.2, n),
        "error": (rng.uniform(size=n) < 0.01).astype(int),
    }
    data.update(overrides)
    return pd.DataFrame(data)


def reference(n: int = 3000) -> pd.DataFrame:
    ref = frame(n, 0.0, seed=99).drop(columns=["timestamp", "prediction_id", "latency_ms", "error"])
    ref["timestamp"] = 0.0
    return ref


def judge_one(
    current: pd.DataFrame, config: ModelConfig | None = None, ref: pd.DataFrame | None = None
) -> dict[tuple[str, str], Finding]:
    profile = profile_batch(batch_from_frame(reference() if ref is None else ref), "ref-1")
    judge = ModelJudge("m", config or ModelConfig(window=HOUR, every=HOUR), profile)
    findings = judge.judge(batch_from_frame(current), T0 + HOUR)
    return {(f.check, f.subject): f for f in findings}


def test_profile_keeps_bins_categories_and_baseline() -> None:
    ref = reference()
    ref["label"] = ref["prediction"]
    labelled = ref.copy()
    batch = batch_from_frame(
        labelled.drop(columns=["label"]),
        pd.DataFrame(
            {
                "prediction_id": [str(i) for i in range(len(ref))],
                "label": ref["label"],
                "timestamp": 0.0,
            }
        ),
    )
    profile = profile_batch(batch)
    x = profile.columns["x"]
    assert isinstance(x, NumericProfile)
    assert x.edges.size == 9 and int(x.counts.sum()) == len(ref)
    assert np.array_equal(x.sorted_values, np.sort(ref["x"].to_numpy()))
    colour = profile.columns["colour"]
    assert isinstance(colour, CategoricalProfile)
    assert colour.categories == ("blue", "green", "red")
    assert profile.reference_id.startswith("ref-")
    assert profile_batch(batch).reference_id == profile.reference_id  # content hash


def test_a_quiet_window_breaches_nothing() -> None:
    found = judge_one(frame(400, T0, seed=1))
    assert not [k for k, f in found.items() if f.breached]
    assert {
        ("drift", "x"),
        ("drift", "colour"),
        ("drift", "prediction"),
        ("missing", "x"),
        ("out_of_range", "y"),
        ("schema", "colour"),
    } <= set(found)


def test_data_quality_checks_each_find_their_problem() -> None:
    current = frame(400, T0, seed=2)
    current.loc[:149, "x"] = np.nan  # 37 % missing
    current.loc[:19, "y"] = 80.0  # 5 % far outside the reference range
    current.loc[:39, "colour"] = "purple"  # 10 % unseen category
    current["new"] = 1.0
    found = judge_one(current.drop(columns=["prediction"]).assign(prediction=current.prediction))
    assert found[("missing", "x")].breached
    assert found[("missing", "x")].value == pytest.approx(150 / 400)
    assert found[("out_of_range", "y")].breached
    assert found[("out_of_range", "y")].value == pytest.approx(20 / 400)
    assert found[("schema", "colour")].breached
    assert "unseen categories" in found[("schema", "colour")].summary
    assert found[("schema", "new")].statistic == "unexpected_feature_rate"
    assert found[("schema", "new")].breached
    assert not found[("missing", "y")].breached


def test_wrong_types_and_absent_features_are_schema_problems() -> None:
    current = frame(300, T0, seed=3).drop(columns=["y"])
    x = current["x"].astype(object)
    x[:30] = "n/a"
    current["x"] = x
    found = judge_one(current)
    assert found[("schema", "x")].breached
    assert "non-numeric" in found[("schema", "x")].summary
    assert found[("schema", "y")].breached and "absent" in found[("schema", "y")].summary


def test_categorical_drift_uses_chi_square_and_an_effect_floor() -> None:
    rng = np.random.default_rng(4)
    current = frame(400, T0, seed=4, colour=rng.choice(["red", "green", "blue"], size=400))
    found = judge_one(current)
    colour = found[("drift", "colour")]
    assert colour.breached and colour.statistic == "total_variation"
    assert colour.p_value is not None and colour.p_value < 1e-6
    config = ModelConfig(window=HOUR, every=HOUR, checks={"drift": {"categorical_test": "psi"}})
    assert judge_one(current, config)[("drift", "colour")].statistic == "psi"


@pytest.mark.parametrize("test", ["psi", "js", "wasserstein"])
def test_numeric_drift_alternatives(test: str) -> None:
    shifted = frame(400, T0, seed=5)
    shifted["x"] += 1.5
    config = ModelConfig(window=HOUR, every=HOUR, checks={"drift": {"numeric_test": test}})
    found = judge_one(shifted, config)
    assert found[("drift", "x")].breached and found[("drift", "x")].statistic == test
    assert found[("drift", "x")].p_value is None
    assert not found[("drift", "y")].breached


def test_correction_spans_every_check_of_the_window() -> None:
    current = frame(400, T0, seed=6)
    found = judge_one(current)
    tested = [f for f in found.values() if f.p_value is not None]
    assert {f.check for f in tested} >= {"drift", "missing", "out_of_range"}
    # each summary reports its p-value corrected in one family of all tests of the window
    assert all("corrected" in f.summary for f in tested)
    bh = ModelConfig(window=HOUR, every=HOUR, checks={"correction": "bh"})
    assert judge_one(current, bh).keys() == found.keys()


def test_classification_metrics_hand_computed() -> None:
    y = np.array(["1", "1", "0", "0", "1", "0"])
    yhat = np.array(["1", "0", "0", "1", "1", "0"])
    metrics = classification_metrics(y, yhat, "1")
    # tp 2, fp 1, fn 1, tn 2
    assert metrics == pytest.approx(
        {"accuracy": 4 / 6, "precision": 2 / 3, "recall": 2 / 3, "f1": 4 / 6}
    )


def efficacy_batch(
    flip: float, delay: float, seed: int, regression: bool = False
) -> tuple[Batch, Batch]:
    rng = np.random.default_rng(seed)

    def make(n: int, start: float, flip: float) -> tuple[pd.DataFrame, pd.DataFrame]:
        x = rng.normal(size=n)
        if regression:
            truth = 2 * x + rng.normal(scale=0.5, size=n)
            prediction = 2 * x + rng.normal(scale=0.5 + 2 * flip, size=n)
        else:
            truth = (x + rng.normal(scale=0.3, size=n) > 0).astype(int)
            prediction = (x > 0).astype(int)
            wrong = rng.uniform(size=n) < flip
            truth[wrong] = 1 - truth[wrong]
        times = start + np.sort(rng.uniform(0, 3 * HOUR, n))
        ids = [f"{start}-{i}" for i in range(n)]
        p = pd.DataFrame(
            {"timestamp": times, "prediction_id": ids, "x": x, "prediction": prediction}
        )
        labels = pd.DataFrame({"prediction_id": ids, "label": truth, "timestamp": times + delay})
        return p, labels

    ref_p, ref_l = make(4000, 0.0, 0.0)
    cur_p, cur_l = make(1200, T0, flip)
    return batch_from_frame(ref_p, ref_l), batch_from_frame(cur_p, cur_l)


@pytest.mark.parametrize("regression", [False, True])
def test_efficacy_waits_for_labels_and_finds_a_drop(regression: bool) -> None:
    ref, cur = efficacy_batch(0.3, delay=HOUR, seed=7, regression=regression)
    profile = profile_batch(ref)
    assert profile.baseline is not None
    assert profile.baseline.task == ("regression" if regression else "classification")
    config = ModelConfig(window=HOUR, every=HOUR, checks={"efficacy": {"delay": "1h"}})
    judge = ModelJudge("m", config, profile)
    # at T0 + 1h the window [T0 - 1h, T0) has no predictions; at T0 + 2h the judged window is
    # [T0, T0 + 1h), whose labels (1 h late) have all arrived
    found = {f.subject: f for f in judge.judge(cur, T0 + 2 * HOUR) if f.check == "efficacy"}
    metric = "mae" if regression else "accuracy"
    assert found[metric].breached
    assert found[metric].window_end == T0 + HOUR
    assert "coverage 100%" in found[metric].summary
    early = {
        f.subject: f
        for f in ModelJudge(
            "m",
            config.model_copy(
                update={
                    "checks": config.checks.model_copy(
                        update={
                            "efficacy": config.checks.efficacy.model_copy(update={"delay": 0.0})
                        }
                    )
                }
            ),
            profile,
        ).judge(cur, T0 + HOUR)
        if f.check == "efficacy"
    }
    assert not early[metric].breached and "not judged" in early[metric].summary


def test_latency_against_slo_and_own_baseline() -> None:
    config = ModelConfig(window=HOUR, every=HOUR)
    profile = profile_batch(batch_from_frame(reference()))
    judge = ModelJudge("m", config, profile)
    hours = [frame(300, T0 + h * HOUR, seed=10 + h) for h in range(6)]
    hours[5]["latency_ms"] *= 2.5
    batch = batch_from_frame(pd.concat(hours, ignore_index=True))
    verdicts = []
    for h in range(1, 7):
        latency = [f for f in judge.judge(batch, T0 + h * HOUR) if f.check == "latency"]
        verdicts.append(latency[0].breached if latency else None)
    assert verdicts == [None, False, False, False, False, True]  # baseline needs history
    slo = ModelConfig(window=HOUR, every=HOUR, checks={"latency": {"slo_ms": 45}})
    found = ModelJudge("m", slo, profile).judge(batch, T0 + HOUR)
    latency = next(f for f in found if f.check == "latency")
    assert latency.breached and latency.threshold == pytest.approx(0.045)  # p95 ~ 55 ms


def test_health_history_keeps_each_kind_only_as_long_as_its_check_looks_back() -> None:
    """A long-running detector's memory: latency samples (up to 400 per window) were kept for
    the throughput check's week rather than the latency check's baseline, about 12 MiB/h in
    the soak's set-up (10 models, a window every 10 s) until the week was full."""
    hours = [frame(300, T0 + h * HOUR, seed=h) for h in range(48)]
    hours[47]["latency_ms"] *= 2.5
    batch = batch_from_frame(pd.concat(hours, ignore_index=True))
    latency_6h = {"latency": {"baseline": 6 * HOUR}}
    cases = {
        "both": (latency_6h, 8, 48),
        "no throughput": ({**latency_6h, "throughput": {"enabled": False}}, 8, 0),
        "latency SLO": ({"latency": {"slo_ms": 500}}, 0, 48),
        "no latency": ({"latency": {"enabled": False}}, 0, 48),
    }
    for name, (checks, kept_latencies, kept_counts) in cases.items():
        judge = ModelJudge("m", ModelConfig(window=HOUR, every=HOUR, checks=checks), None)
        last: list[Finding] = []
        for h in range(1, 49):
            last = judge.judge(batch, T0 + h * HOUR)
        history = judge._history
        assert (len(history.latencies), len(history.counts)) == (kept_latencies, kept_counts), name
        if name == "both":  # the trimmed baseline still judges: the slow last hour is found
            assert next(f for f in last if f.check == "latency").breached


def test_throughput_drop_against_the_same_hour_on_earlier_days() -> None:
    config = ModelConfig(window=HOUR, every=HOUR)
    judge = ModelJudge("m", config, None)
    parts = []
    for h in range(3 * 24 + 1):
        n = 100 if h == 3 * 24 else int(300 * (1 + 0.5 * math.sin(2 * math.pi * h / 24)))
        parts.append(frame(n, T0 + h * HOUR, seed=h))
    batch = batch_from_frame(pd.concat(parts, ignore_index=True))
    found: list[Finding] = []
    for h in range(1, 3 * 24 + 2):
        found.extend(f for f in judge.judge(batch, T0 + h * HOUR) if f.check == "throughput")
    assert [f.window_end for f in found if f.breached] == [T0 + (3 * 24 + 1) * HOUR]
    assert "same hour on 3 earlier days" in found[-1].summary
    assert found[0].window_end == T0 + 25 * HOUR  # judged once a day of history is known


def test_live_detector_reads_labels_and_fallback_samples(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "w.db")
    rng = np.random.default_rng(12)
    predictions, labels, fallbacks = [], [], []
    for i in range(3 * 600):
        t = T0 + i * 6.0
        x = float(rng.normal())
        predictions.append(Prediction("m", f"p{i}", t, {"x": x}, output=int(x > 0)))
        truth = int(x > 0) if t < T0 + 2 * HOUR or rng.uniform() < 0.5 else 1 - int(x > 0)
        labels.append(Label("m", f"p{i}", truth, t + 600))
        if t >= T0 + 2 * HOUR and i % 5 == 0:
            fallbacks.append(Sample("m", "fallbacks", t, 1.0, labels=(("reason", "timeout"),)))
    store.write(predictions=predictions, labels=labels, samples=fallbacks)
    config = config_from_dict(
        {
            "models": {
                "m": {
                    "window": "1h",
                    "every": "1h",
                    "checks": {
                        "drift": {"reference": "1h"},
                        "efficacy": {"delay": "0s", "for": "0s"},
                    },
                }
            }
        }
    )
    findings = Detector(store, config).run_once(T0 + 3 * HOUR + 660)
    fallback = [f for f in findings if f.check == "fallback_rate"]
    assert [f.breached for f in fallback] == [False, False, True]
    assert fallback[-1].value == pytest.approx(0.2)
    efficacy = {(f.subject, f.window_end): f for f in findings if f.check == "efficacy"}
    assert not efficacy[("accuracy", T0 + 2 * HOUR)].breached
    assert efficacy[("accuracy", T0 + 3 * HOUR)].breached
    store.close()


def test_findings_carry_the_version_with_most_predictions_in_their_window(
    tmp_path: Path,
) -> None:
    store = SQLiteStore(tmp_path / "w.db")
    rng = np.random.default_rng(14)
    predictions = []
    for i in range(2 * 360):  # hour 1: v1 only; hour 2: v2 takes 70% of traffic; hour 3: none
        version = "v1" if i < 360 or rng.uniform() < 0.3 else "v2"
        t = T0 + i * 10.0
        predictions.append(Prediction("m", f"p{i}", t, {"x": float(rng.normal())}, version=version))
    store.write(predictions=predictions)
    config = config_from_dict(
        {"models": {"m": {"window": "1h", "every": "1h", "checks": {"drift": {"reference": "1h"}}}}}
    )
    findings = Detector(store, config).run_once(T0 + 3 * HOUR)
    by_window = {(f.check, f.subject, f.window_end - T0): f.version for f in findings}
    assert by_window[("error_rate", "", HOUR)] == "v1"
    assert by_window[("error_rate", "", 2 * HOUR)] == "v2"
    assert by_window[("drift", "x", 2 * HOUR)] == "v2"
    assert by_window[("up", "", 2 * HOUR)] == "v2"
    assert by_window[("up", "", 3 * HOUR)] is None  # no data: no version
    assert [f.version for f in store.findings("m")] == [f.version for f in findings]
    store.close()


def test_explain_recomputes_a_stored_finding(tmp_path: Path) -> None:
    import io

    from watchkeeper.detector.explain import explain_store
    from watchkeeper.detector.replay import finding_id

    config = config_from_dict(
        {
            "storage": {"path": str(tmp_path)},
            "models": {
                "m": {"window": "1h", "every": "1h", "checks": {"drift": {"reference": "1h"}}}
            },
        }
    )
    store = SQLiteStore(config.storage.store_file)
    rng = np.random.default_rng(13)
    store.write(
        predictions=[
            Prediction(
                "m",
                f"p{i}",
                T0 + i * 10.0,
                {"x": float(rng.normal() + (i > 1000)), "c": str(rng.choice(["a", "b"]))},
            )
            for i in range(4 * 360)
        ]
    )
    findings = Detector(store, config).run_once(T0 + 4 * HOUR)
    store.close()
    drift = next(f for f in findings if f.check == "drift" and f.subject == "x" and f.breached)
    out = io.StringIO()
    assert explain_store(finding_id(drift), config, out) == 0, out.getvalue()
    assert "recomputed: same numbers" in out.getvalue()
    assert "window counts" in out.getvalue()


def test_scores_get_roc_auc_against_the_reference() -> None:
    from scipy import stats as scipy_stats

    from watchkeeper.detector.efficacy import roc_auc

    rng = np.random.default_rng(14)
    y = rng.integers(0, 2, 500)
    scores = np.clip(0.5 + (y - 0.5) * 0.4 + rng.normal(scale=0.25, size=500), 0, 1)
    u = scipy_stats.mannwhitneyu(scores[y == 1], scores[y == 0]).statistic
    assert roc_auc(y == 1, scores) == pytest.approx(u / (y.sum() * (500 - y.sum())), abs=1e-12)

    def batch(n: int, start: float, noise: float, seed: int) -> Batch:
        r = np.random.default_rng(seed)
        truth = r.integers(0, 2, n)
        score = np.clip(0.5 + (truth - 0.5) * 0.6 + r.normal(scale=noise, size=n), 0.001, 0.999)
        times = start + np.sort(r.uniform(0, HOUR, n))
        ids = [f"{seed}-{i}" for i in range(n)]
        return batch_from_frame(
            pd.DataFrame({"timestamp": times, "prediction_id": ids, "prediction": score}),
            pd.DataFrame({"prediction_id": ids, "label": truth, "timestamp": times}),
        )

    profile = profile_batch(batch(3000, 0.0, 0.2, 1))
    assert profile.baseline is not None and profile.baseline.scores
    assert profile.baseline.metrics["roc_auc"] > 0.9
    config = ModelConfig(window=HOUR, every=HOUR, checks={"efficacy": {"delay": "0s"}})
    worse = {
        f.subject: f
        for f in ModelJudge("m", config, profile).judge(batch(600, T0, 0.8, 2), T0 + HOUR)
        if f.check == "efficacy"
    }
    assert worse["roc_auc"].breached and worse["roc_auc"].value < 0.8
    same = {
        f.subject: f
        for f in ModelJudge("m", config, profile).judge(batch(600, T0, 0.2, 3), T0 + HOUR)
        if f.check == "efficacy"
    }
    assert not any(f.breached for f in same.values())
