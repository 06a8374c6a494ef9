"""Model page (a Streamlit page script run by `app.py`): one model over the chosen range.

Health over time (throughput, error rate, mean and p95 latency, fallback rate) with the
model's versions drawn on the time axis, so a deployment that caused a change is visible;
efficacy over time with its interval and label coverage; drift as a heat map of feature ×
time, and for a chosen feature and window the reference and current distributions drawn over
each other; the data-quality checks; and the breached findings behind it all. The model comes
from the `?model=` query parameter (set when a fleet row is selected), so the page can be
linked to. Everything is read through the `Store` protocol, so both storage backends serve it.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd
import streamlit as st

from watchkeeper.config import Config, ModelConfig
from watchkeeper.dashboard import charts, data, distributions, evaluations
from watchkeeper.dashboard.common import (
    View,
    by_status,
    empty_state,
    load_fleet,
    open_store,
    run_page,
    tick,
)

SERIES = {
    "count": ("Throughput (predictions/min)", ",.1f", 1.0),
    "error_rate": ("Error rate", ".1%", 1.0),
    "latency_p95": ("p95 latency (ms)", ",.1f", 1000.0),
    "latency_mean": ("Mean latency (ms)", ",.1f", 1000.0),
}
LOWER_IS_BETTER = ("mae", "rmse")


Spec = dict[str, Any]


@st.cache_data(ttl=600.0, max_entries=64, show_spinner=False)
def load_model(
    model: str, end: float, range_s: float, config_key: str, _config: Config
) -> tuple[dict[str, pd.DataFrame], dict[str, Spec], float]:
    """The page's frames (chart series `count`, `error_rate`, ..., `fallback_rate`,
    `versions`, `drift`, `efficacy`, `quality`, `quality_summary`, breached `findings`), its
    charts as Vega-Lite JSON, and the evaluation bucket size.

    Charts are cached with the data: a cached render draws them without building them again.
    Cached on `config_key` (the configuration as JSON); `_config` is the same, unhashed.
    """
    start = end - range_s
    step = data.choose_step(start, end)
    mc = _config.model(model)
    frames: dict[str, pd.DataFrame] = {}
    with open_store(_config.storage) as store:
        for metric, (_, _, scale) in SERIES.items():
            frame = data.metric_series(store, model, metric, start, end, step)  # type: ignore[arg-type]
            frame["value"] = frame["value"] * scale
            frames[metric] = frame
        frames["fallback_rate"] = data.fallback_series(store, model, start, end, step)
        frames["versions"] = data.version_spans(store, model, start, end)
        eval_step = 2 * step  # a heat map cell wide enough to see: at most 150 columns
        # Buckets on a fixed grid (not counted from "now"), so the windows sampled, and the
        # window picked for the distributions, stay the same from one refresh to the next.
        grid = math.floor(start / eval_step) * eval_step
        sampled = evaluations.sample_evaluations(store, model, grid, end, eval_step, mc.every)
        frames["drift"] = evaluations.drift_frame(sampled)
        frames["efficacy"] = evaluations.efficacy_frame(store, model, sampled, mc.checks.efficacy)
        breached = store.findings(model, start, end, breached_only=True)
    quality = evaluations.quality_frame(sampled)
    summary = evaluations.quality_summary(quality, breached)
    bad = summary[summary["breached_windows"] > 0]
    lanes = set(zip(bad["check"], bad["subject"], strict=True))
    frames["quality"] = quality
    frames["quality_summary"] = summary
    frames["quality_lanes"] = quality[
        [key in lanes for key in zip(quality["check"], quality["subject"], strict=True)]
    ]
    frames["findings"] = data.findings_frame(breached[::-1][:50])
    return frames, chart_specs(frames, mc, eval_step), eval_step


def chart_specs(frames: dict[str, pd.DataFrame], mc: ModelConfig, step: float) -> dict[str, Spec]:
    """Every chart of the page that has data, by name, as Vega-Lite JSON."""
    versions = frames["versions"]
    built: dict[str, charts.AnyChart] = {}
    for metric, (title, fmt, _) in SERIES.items():
        if not frames[metric].empty:
            built[metric] = charts.series_chart(frames[metric], title, fmt, versions)
    if not frames["fallback_rate"].empty:
        built["fallback_rate"] = charts.series_chart(
            frames["fallback_rate"], "Fallback rate", ".1%", versions
        )
    if not frames["efficacy"].empty:
        built["efficacy"] = charts.efficacy_chart(frames["efficacy"], versions)
        built["coverage"] = charts.coverage_chart(
            frames["efficacy"], mc.checks.efficacy.min_coverage
        )
    if not frames["drift"].empty:
        built["drift"] = charts.drift_heatmap(frames["drift"], step, mc.checks.drift.min_effect)
    if not frames["quality_lanes"].empty:
        built["quality"] = charts.quality_lanes(frames["quality_lanes"])
    return {name: charts.to_spec(chart) for name, chart in built.items()}


@st.cache_data(ttl=600.0, max_entries=32, show_spinner=False)
def load_overlay(
    model: str, subject: str, window_end: float, config_key: str, _config: Config
) -> tuple[distributions.Overlay | None, Spec, str]:
    """The reference and current distributions of one feature and their chart, or why there
    are none."""
    try:
        with open_store(_config.storage) as store:
            shown = distributions.overlay(store, _config, model, subject, window_end)
    except distributions.NoOverlay as exc:
        return None, {}, str(exc)
    chart = charts.distribution_overlay(shown.frame, shown.kind, subject)
    return shown, charts.to_spec(chart), ""


def pick_model(models: list[str]) -> str | None:
    wanted = st.query_params.get("model")
    index = models.index(wanted) if wanted in models else 0
    model = st.selectbox("Model", models, index=index, key="model")
    if model is not None and model != wanted:
        st.query_params["model"] = model
    return model


def health_section(
    view: View, model: str, frames: dict[str, pd.DataFrame], specs: dict[str, Spec]
) -> None:
    st.subheader("Health")
    versions = frames["versions"]
    if frames["count"]["value"].sum() == 0:
        st.info(
            f"{model} sent no predictions in the {view.range_name}; choose a longer time range "
            "in the sidebar."
        )
    left, right = st.columns(2)
    for i, (metric, (title, _, _)) in enumerate(SERIES.items()):
        column = left if i % 2 == 0 else right
        if metric in specs:
            column.vega_lite_chart(spec=specs[metric], width="stretch")
        else:
            column.caption(f"{title}: no predictions in this range.")
    if "fallback_rate" in specs:
        left.vega_lite_chart(spec=specs["fallback_rate"], width="stretch")
    else:
        left.caption(
            "Fallback rate: no fallbacks reported in this range (services report them with "
            "`monitor.log_fallback(reason)`)."
        )
    if not versions.empty:
        st.caption(
            "Versions in this range (dashed lines mark where each first served): "
            + ", ".join(
                f"{row.version} from {row.first:%Y-%m-%d %H:%M}" for row in versions.itertuples()
            )
        )


def efficacy_section(
    mc: ModelConfig, frames: dict[str, pd.DataFrame], specs: dict[str, Spec]
) -> None:
    st.subheader("Efficacy")
    cfg = mc.checks.efficacy
    efficacy = frames["efficacy"]
    if not cfg.enabled:
        st.caption("The efficacy check is disabled for this model (`checks.efficacy.enabled`).")
        return
    if efficacy.empty:
        st.info(
            "No efficacy verdicts in this range. Efficacy is judged against ground truth: send "
            "labels with `monitor.log_label(prediction_id, label)` (or `labels` in "
            "`POST /v1/ingest`). A window is judged once "
            f"{cfg.min_coverage:.0%} of its predictions and at least {cfg.min_labels} are "
            "labelled, against the efficacy of the reference period (which needs labels too)."
        )
        return
    latest = efficacy.sort_values("time").groupby("metric").last()
    tiles = st.columns(len(latest))
    for tile, (metric, row) in zip(tiles, latest.iterrows(), strict=True):
        value = "–" if math.isnan(row["value"]) else f"{row['value']:.3f}"
        delta = None if math.isnan(row["value"]) else f"{row['value'] - row['reference']:+.3f}"
        tile.metric(
            str(metric),
            value,
            delta,
            delta_color="inverse" if metric in LOWER_IS_BETTER else "normal",
            help=f"Latest judged window against the reference {row['reference']:.3f}; "
            f"label coverage {row['coverage']:.0%}.",
        )
    st.vega_lite_chart(spec=specs["efficacy"], width="stretch")
    st.vega_lite_chart(spec=specs["coverage"], width="stretch")
    st.caption(
        f"Shaded: the {cfg.confidence:.0%} interval (Wilson for accuracy, precision and "
        "recall; bootstrap for F1); dashed: the reference period's value; faint points: "
        "windows with too few labels to judge. Time is the judged window's end, which trails "
        "the evaluation by the label delay. Label coverage is the share of a window's "
        f"predictions labelled when it was judged (dashed: the minimum, {cfg.min_coverage:.0%})."
    )


def overlay_picker(view: View, model: str, drift: pd.DataFrame) -> None:
    """Pick a feature and a window; draw its reference and current distributions."""
    newest = drift[drift["window_end"] == drift["window_end"].max()]
    features = sorted(drift["feature"].unique())
    worst = str(newest.loc[newest["ks"].idxmax(), "feature"])
    left, right = st.columns(2)
    feature = left.selectbox(
        "Feature", features, index=features.index(worst), key=f"overlay_feature_{model}"
    )
    if feature is None:
        return
    rows = (
        drift[drift["feature"] == feature]
        .drop_duplicates("window_end")
        .sort_values("window_end", ascending=False)
    )
    labels = {
        row.window_end: f"{row.window_end:%Y-%m-%d %H:%M} · {row.ks:.3f}"
        + (" · breached" if row.breached else "")
        for row in rows.itertuples()
    }
    window = right.selectbox(
        "Window ending",
        list(labels),
        format_func=lambda key: labels[key],
        key=f"overlay_window_{model}_{feature}",
    )
    if window is None:
        return
    when = pd.Timestamp(window).timestamp()
    shown, spec, reason = load_overlay(
        model, feature, when, view.config.model_dump_json(), view.config
    )
    if shown is None:
        st.caption(f"No distributions to draw for {feature!r}: {reason}.")
        return
    st.vega_lite_chart(spec=spec, width="stretch")
    st.caption(
        f"{feature!r}: reference {shown.reference_id} ({shown.reference_n} rows, grey) against "
        f"the window {data.utc(shown.window_start):%Y-%m-%d %H:%M} → "
        f"{data.utc(shown.window_end):%H:%M} ({shown.current_n} values, red), as shares of "
        "values" + (" per bin." if shown.kind == "numeric" else " per category.")
    )


def drift_section(
    view: View,
    model: str,
    mc: ModelConfig,
    frames: dict[str, pd.DataFrame],
    specs: dict[str, Spec],
    step: float,
) -> None:
    st.subheader("Drift")
    drift = frames["drift"]
    if drift.empty:
        st.caption(
            "No drift verdicts in this range: drift is checked once the reference period "
            f"(the model's first {mc.checks.drift.reference / 60:g} min) is over, on every "
            "feature, the prediction and numeric labels."
        )
        return
    st.vega_lite_chart(spec=specs["drift"], width="stretch")
    st.caption(
        f"Drift statistic of each feature against the reference, per {step / 60:g} min; "
        "outlined cells breached (effect above the threshold and significant)."
    )
    overlay_picker(view, model, drift)


QUALITY_NAMES = {
    "missing": "Missing values",
    "out_of_range": "Out of range",
    "schema": "Schema",
}


def quality_section(
    mc: ModelConfig, frames: dict[str, pd.DataFrame], specs: dict[str, Spec]
) -> None:
    st.subheader("Data quality")
    summary = frames["quality_summary"]
    if summary.empty:
        st.caption(
            "No data-quality verdicts in this range: missing values, values out of the "
            "reference range and schema changes (wrong types, unseen categories, features that "
            "vanish or appear) are checked against the reference profile once the reference "
            f"period (the model's first {mc.checks.drift.reference / 60:g} min) is over."
        )
        return
    tiles = st.columns(len(QUALITY_NAMES))
    for tile, (check, name) in zip(tiles, QUALITY_NAMES.items(), strict=True):
        rows = summary[summary["check"] == check]
        bad = int((rows["breached_windows"] > 0).sum())
        tile.metric(
            name,
            f"{bad} breached" if bad else ("ok" if len(rows) else "–"),
            help=f"Features whose `{check}` check breached in this range, of {len(rows)} judged.",
        )
    if "quality" in specs:
        st.vega_lite_chart(spec=specs["quality"], width="stretch")
    st.dataframe(
        summary,
        hide_index=True,
        width="stretch",
        key="quality",
        column_config={
            "check": st.column_config.TextColumn("Check"),
            "subject": st.column_config.TextColumn("Feature"),
            "breached_windows": st.column_config.NumberColumn("Breached windows"),
            "last_breached": st.column_config.DatetimeColumn("Last breached", format="distance"),
            "latest_value": st.column_config.NumberColumn("Latest value", format="%.4g"),
            "threshold": st.column_config.NumberColumn("Threshold", format="%.4g"),
            "latest": st.column_config.TextColumn("Latest verdict"),
        },
    )
    st.caption(
        "Breached windows count every breached finding in the range; the lanes show the "
        "checks that breached (red), one tick per sampled evaluation."
    )


def findings_section(frames: dict[str, pd.DataFrame]) -> None:
    st.subheader("Breached findings")
    findings = frames["findings"]
    if findings.empty:
        st.caption("No breached findings in this range.")
        return
    st.dataframe(
        findings,
        hide_index=True,
        width="stretch",
        key="findings",
        column_config={
            "time": st.column_config.DatetimeColumn("Window end"),
            "check": st.column_config.TextColumn("Check"),
            "subject": st.column_config.TextColumn("Subject"),
            "statistic": st.column_config.TextColumn("Statistic"),
            "value": st.column_config.NumberColumn("Value", format="%.4g"),
            "threshold": st.column_config.NumberColumn("Threshold", format="%.4g"),
            "severity": st.column_config.TextColumn("Severity"),
            "summary": st.column_config.TextColumn("Summary"),
        },
    )
    st.caption("The Incidents page groups them and recomputes any of them (`explain`).")


def body(view: View) -> None:
    end = tick(view.range_s)
    config_key = view.config.model_dump_json()
    fleet = load_fleet(str(view.alert_file), end, view.range_s, config_key, view.config)
    if fleet.empty:
        empty_state(view.config)
        return
    model = pick_model(list(by_status(fleet)["model"]))
    if model is None:
        return
    mc = view.config.model(model)
    row = fleet[fleet["model"] == model].to_dict("records")[0]
    status = str(row["status"])
    colour = {"critical": "red", "warning": "orange", "stale": "gray"}.get(status, "green")
    st.markdown(
        f"**{model}** :{colour}-badge[{status}] · {row['firing']} firing alert(s) · "
        f"versions {row['versions'] or '(none)'}"
    )
    frames, specs, step = load_model(model, end, view.range_s, config_key, view.config)
    health_section(view, model, frames, specs)
    efficacy_section(mc, frames, specs)
    drift_section(view, model, mc, frames, specs, step)
    quality_section(mc, frames, specs)
    findings_section(frames)


run_page("Model", body)
