"""The dashboard's charts as Altair specifications (Altair ships with Streamlit).

Builders take the frames of `data` and return a chart; no Streamlit here, so a chart's
encoding can be checked without a page. Every time chart zooms and pans along time (drag,
wheel; double-click resets) and shows the values under the pointer.
"""

from __future__ import annotations

from typing import Any, TypeAlias, cast

import altair as alt
import pandas as pd

AnyChart: TypeAlias = alt.Chart | alt.LayerChart | alt.FacetChart

SEVERITY_COLORS = {"critical": "#d62728", "warning": "#ff7f0e", "info": "#1f77b4"}
STATE_COLORS = {"firing": "#d62728", "pending": "#ff7f0e", "resolved": "#7f7f7f"}
_TIME = alt.X("time:T", title=None, axis=alt.Axis(format="%b %d %H:%M", labelOverlap=True))


def _scale(colors: dict[str, str]) -> alt.Scale:
    return alt.Scale(domain=list(colors), range=list(colors.values()))


def _zoom() -> Any:
    """Zoom and pan along time only; the value axis keeps following the data."""
    return alt.selection_interval(bind="scales", encodings=["x"])


def version_rules(versions: pd.DataFrame) -> AnyChart:
    """A dashed vertical line where each version first served, labelled with its name."""
    base = alt.Chart(versions).encode(x=alt.X("first:T"))
    rules = base.mark_rule(strokeDash=[4, 3], color="#6b6b76").encode(
        tooltip=[
            alt.Tooltip("version:N", title="Version"),
            alt.Tooltip("first:T", title="First served", format="%Y-%m-%d %H:%M:%S"),
            alt.Tooltip("predictions:Q", title="Predictions", format=",.0f"),
        ]
    )
    labels = base.mark_text(align="left", dx=3, dy=-4, baseline="top", color="#44444c").encode(
        text="version:N", y=alt.value(0)
    )
    return cast(AnyChart, rules + labels)


def series_chart(
    frame: pd.DataFrame,
    title: str,
    value_format: str,
    versions: pd.DataFrame | None = None,
    height: int = 200,
) -> AnyChart:
    """A metric over time (`time`, `value`), with hover values and the model's versions."""
    hover = alt.selection_point(on="pointerover", nearest=True, encodings=["x"], empty=False)
    base = alt.Chart(frame).encode(x=_TIME, y=alt.Y("value:Q", title=None))
    line = base.mark_line(interpolate="monotone", color="#1f77b4").add_params(_zoom())
    points = base.mark_point(filled=True, size=50, color="#1f77b4").encode(
        opacity=alt.condition(hover, alt.value(1.0), alt.value(0.0)),
        tooltip=[
            alt.Tooltip("time:T", title="Time", format="%Y-%m-%d %H:%M"),
            alt.Tooltip("value:Q", title=title, format=value_format),
        ],
    )
    layers: list[Any] = [line, points.add_params(hover)]
    if versions is not None and not versions.empty:
        layers.append(version_rules(versions))
    return cast(AnyChart, alt.layer(*layers).properties(title=title, height=height))


def drift_heatmap(matrix: pd.DataFrame, step_s: float, threshold: float) -> AnyChart:
    """Feature × time, coloured by KS statistic; breached cells are outlined.

    `matrix` is `data.drift_matrix`'s frame; each cell spans its `step_s`-long bucket.
    """
    frame = matrix.assign(time_end=matrix["time"] + pd.Timedelta(seconds=step_s))
    top = max(float(frame["ks"].max()) if not frame.empty else 0.0, 2 * threshold, 0.2)
    chart = (
        alt.Chart(frame)
        .mark_rect()
        .encode(
            x=_TIME,
            x2="time_end:T",
            y=alt.Y("feature:N", title=None, sort="ascending"),
            color=alt.Color(
                "ks:Q",
                title="KS statistic",
                scale=alt.Scale(scheme="orangered", domain=[0.0, top]),
            ),
            stroke=alt.condition("datum.breached", alt.value("#000000"), alt.value(None)),
            strokeWidth=alt.condition("datum.breached", alt.value(1.0), alt.value(0.0)),
            tooltip=[
                alt.Tooltip("feature:N", title="Feature"),
                alt.Tooltip("window_end:T", title="Window end", format="%Y-%m-%d %H:%M"),
                alt.Tooltip("ks:Q", title="KS statistic", format=".3f"),
                alt.Tooltip("p_value:Q", title="p-value", format=".2g"),
                alt.Tooltip("breached:N", title="Breached"),
            ],
        )
        .add_params(_zoom())
        .properties(height=alt.Step(22))
    )
    return cast(AnyChart, chart)


def incident_timeline(episodes: pd.DataFrame) -> AnyChart:
    """One model's episodes on one timeline: a lane per check and subject, coloured by
    severity, so checks breached at the same time line up."""
    base = alt.Chart(episodes).encode(
        y=alt.Y("lane:N", title=None),
        color=alt.Color("severity:N", title="Severity", scale=_scale(SEVERITY_COLORS)),
        tooltip=[
            alt.Tooltip("incident:N", title="Incident"),
            alt.Tooltip("lane:N", title="Check"),
            alt.Tooltip("start:T", title="First breached", format="%Y-%m-%d %H:%M:%S"),
            alt.Tooltip("end:T", title="Last breached", format="%Y-%m-%d %H:%M:%S"),
            alt.Tooltip("findings:Q", title="Findings"),
            alt.Tooltip("summary:N", title="Worst"),
        ],
    )
    x = alt.X("start:T", title=None, axis=alt.Axis(format="%b %d %H:%M", labelOverlap=True))
    bars = base.mark_bar(height=14, cornerRadius=2).encode(x=x, x2="end:T").add_params(_zoom())
    # A one-window episode has no length; the point keeps it visible.
    starts = base.mark_point(filled=True, size=60).encode(x=x)
    return cast(AnyChart, alt.layer(bars, starts).properties(height=alt.Step(32)))


def alert_timeline(spans: pd.DataFrame) -> AnyChart:
    """Alerts as spans from when their condition began to resolution (or now)."""
    frame = spans.assign(alert=spans["model"] + " · " + spans["rule"])
    x = alt.X("start:T", title=None, axis=alt.Axis(format="%b %d %H:%M", labelOverlap=True))
    chart = (
        alt.Chart(frame)
        .mark_bar(height=14, cornerRadius=2)
        .encode(
            x=x,
            x2="end:T",
            y=alt.Y("alert:N", title=None),
            color=alt.Color("state:N", title="State", scale=_scale(STATE_COLORS)),
            tooltip=[
                alt.Tooltip("alert:N", title="Alert"),
                alt.Tooltip("state:N", title="State"),
                alt.Tooltip("severity:N", title="Severity"),
                alt.Tooltip("start:T", title="Since", format="%Y-%m-%d %H:%M:%S"),
                alt.Tooltip("end:T", title="Until", format="%Y-%m-%d %H:%M:%S"),
                alt.Tooltip("summary:N", title="Summary"),
            ],
        )
        .add_params(_zoom())
        .properties(height=alt.Step(30))
    )
    return cast(AnyChart, chart)
