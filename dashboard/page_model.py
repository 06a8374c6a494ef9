"""Model page (a Streamlit page script run by `app.py`): one model over the chosen range.

Health over time (throughput, error rate, mean and p95 latency) with the model's versions
drawn on the time axis, so a deployment that caused a change is visible; drift as a heat map
of feature × time; and the breached findings behind it all. The model comes from the
`?model=` query parameter (set when a fleet row is selected), so the page can be linked to.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st

from watchkeeper.dashboard import charts, data
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


@st.cache_data(ttl=600.0, max_entries=64, show_spinner=False)
def load_model(
    store_file: str, model: str, end: float, range_s: float, every: float
) -> tuple[dict[str, pd.DataFrame], pd.DataFrame, pd.DataFrame, pd.DataFrame, float]:
    """Chart series, versions, drift matrix, breached findings and the bucket size."""
    start = end - range_s
    step = data.choose_step(start, end)
    with open_store(Path(store_file)) as store:
        series = {}
        for metric, (_, _, scale) in SERIES.items():
            frame = data.metric_series(store, model, metric, start, end, step)  # type: ignore[arg-type]
            frame["value"] = frame["value"] * scale
            series[metric] = frame
        versions = data.version_spans(store, model, start, end)
        drift_step = 2 * step  # a heat map cell wide enough to see: at most 150 columns
        drift = data.drift_matrix(store, model, start, end, drift_step, every)
        findings = data.breached_findings(store, model, start, end)
    return series, versions, drift, findings, drift_step


def pick_model(models: list[str]) -> str | None:
    wanted = st.query_params.get("model")
    index = models.index(wanted) if wanted in models else 0
    model = st.selectbox("Model", models, index=index, key="model")
    if model is not None and model != wanted:
        st.query_params["model"] = model
    return model


def body(view: View) -> None:
    end = tick(view.range_s)
    fleet = load_fleet(
        str(view.store_file),
        str(view.alert_file),
        end,
        view.range_s,
        view.config.model_dump_json(),
        view.config,
    )
    if fleet.empty:
        empty_state(view.config)
        return
    model = pick_model(list(by_status(fleet)["model"]))
    if model is None:
        return
    model_config = view.config.model(model)
    row = fleet[fleet["model"] == model].to_dict("records")[0]
    status = str(row["status"])
    colour = {"critical": "red", "warning": "orange", "stale": "gray"}.get(status, "green")
    st.markdown(
        f"**{model}** :{colour}-badge[{status}] · {row['firing']} firing alert(s) · "
        f"versions {row['versions'] or '(none)'}"
    )
    series, versions, drift, findings, drift_step = load_model(
        str(view.store_file), model, end, view.range_s, model_config.every
    )

    st.subheader("Health")
    if series["count"]["value"].sum() == 0:
        st.info(
            f"{model} sent no predictions in the {view.range_name}; choose a longer time range "
            "in the sidebar."
        )
    left, right = st.columns(2)
    for i, (metric, (title, fmt, _)) in enumerate(SERIES.items()):
        column = left if i % 2 == 0 else right
        frame = series[metric]
        if frame.empty:
            column.caption(f"{title}: no predictions in this range.")
        else:
            column.altair_chart(charts.series_chart(frame, title, fmt, versions), width="stretch")
    if not versions.empty:
        st.caption(
            "Versions in this range (dashed lines mark where each first served): "
            + ", ".join(
                f"{row.version} from {row.first:%Y-%m-%d %H:%M}" for row in versions.itertuples()
            )
        )

    st.subheader("Drift")
    threshold = model_config.checks.drift.min_effect
    if drift.empty:
        st.caption(
            "No drift verdicts in this range: drift is checked once the reference period "
            "(the model's first "
            f"{model_config.checks.drift.reference / 60:g} min) is over, on numeric features."
        )
    else:
        st.altair_chart(charts.drift_heatmap(drift, drift_step, threshold), width="stretch")
        st.caption(
            f"KS statistic of each feature against the reference, per {drift_step / 60:g} min; "
            f"outlined cells breached (effect above {threshold:g} and significant)."
        )

    st.subheader("Breached findings")
    if findings.empty:
        st.caption("No breached findings in this range.")
    else:
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


run_page("Model", body)
