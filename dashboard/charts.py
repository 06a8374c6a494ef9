"""The dashboard's charts as Altair specifications (Altair ships with Streamlit).

Builders take the frames of `data` and return a chart; no Streamlit here, so a chart's
encoding can be checked without a page. `to_spec` turns a chart into plain Vega-Lite JSON that
a page can cache. Every time chart zooms and pans along time (drag, wheel; double-click
resets) and shows the values under the pointer.
"""

from __future__ import annotations

import json
from typing import Any, TypeAlias, cast

import altair as alt
import pandas as pd

AnyChart: TypeAlias = alt.Chart | alt.LayerChart | alt.FacetChart

SEVERITY_COLORS = {"critical": "#d62728", "warning": "#ff7f0e", "info": "#1f77b4"}
STATE_COLORS = {"firing": "#d62728", "pending": "#ff7f0e", "resolved": "#7f7f7f"}
_TIME = alt.X("time:T", title=None, axis=alt.Axis(format="%b %d %H:%M", labelOverlap=True))


def _data(frame: pd.DataFrame) -> Any:
    """A frame as inline JSON records (times as ISO 8601 text, NaN as null).

    Inline data needs no Altair data transformer, so `to_spec` is pure and a page can cache
    the specification it returns. A plain `{"values": ...}` mapping rather than
    `alt.InlineData`, whose construction validates every record against the schema (0.2 s
    for a month's heat map).
    """
    return {"values": json.loads(frame.to_json(orient="records", date_format="iso"))}


def to_spec(chart: AnyChart) -> dict[str, Any]:
    """The chart as a plain Vega-Lite specification, for `st.vega_lite_chart`.

    Building and validating Altair objects is most of a chart's cost (about 0.1 s each here);
    a page that caches this JSON draws its charts on every refresh without Altair at all.
    Altair's default theme sizes (300 × 300 px) are dropped, as `st.altair_chart` does: the
    page gives the width, each chart its height.
    """
    spec: dict[str, Any] = chart.to_dict(validate=False)
    view = spec.get("config", {}).get("view", {})
    for key in ("continuousWidth", "continuousHeight"):
        view.pop(key, None)
    if "config" in spec and not view:
        spec["config"].pop("view", None)
        if not spec["config"]:
            del spec["config"]
    return spec


def _scale(colors: dict[str, str]) -> alt.Scale:
    return alt.Scale(domain=list(colors), range=list(colors.values()))


def _zoom() -> Any:
    """Zoom and pan along time only; the value axis keeps following the data."""
    return alt.selection_interval(bind="scales", encodings=["x"])


def version_rules(versions: pd.DataFrame) -> AnyChart:
    """A dashed vertical line where each version first served, labelled with its name."""
    base = alt.Chart(_data(versions)).encode(x=alt.X("first:T"))
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
    base = alt.Chart(_data(frame)).encode(x=_TIME, y=alt.Y("value:Q", title=None))
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
        alt.Chart(_data(frame))
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
    base = alt.Chart(_data(episodes)).encode(
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
        alt.Chart(_data(frame))
        .mark_bar(height=14, cornerRadius=2)
        .encode(
            x=x,
            x2="end:T",
            y=alt.Y("alert:N", title=None, axis=alt.Axis(labelLimit=320)),
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


def efficacy_chart(
    frame: pd.DataFrame, versions: pd.DataFrame | None = None, height: int = 220
) -> AnyChart:
    """Each efficacy metric over time (one colour per metric) with its interval as a band and
    its reference value as a dashed line; faint points were not judged (too few labels).

    `frame` is `evaluations.efficacy_frame`'s; time is the judged window's end.
    """
    color = alt.Color("metric:N", title="Metric")
    base = alt.Chart(_data(frame)).encode(x=_TIME, color=color)
    tooltip = [
        alt.Tooltip("metric:N", title="Metric"),
        alt.Tooltip("time:T", title="Window end", format="%Y-%m-%d %H:%M"),
        alt.Tooltip("value:Q", title="Value", format=".3f"),
        alt.Tooltip("low:Q", title="Interval low", format=".3f"),
        alt.Tooltip("high:Q", title="Interval high", format=".3f"),
        alt.Tooltip("reference:Q", title="Reference", format=".3f"),
        alt.Tooltip("coverage:Q", title="Label coverage", format=".0%"),
        alt.Tooltip("breached:N", title="Breached"),
    ]
    band = base.mark_area(opacity=0.2).encode(y=alt.Y("low:Q", title=None), y2="high:Q")
    line = base.mark_line(interpolate="monotone").encode(y="value:Q").add_params(_zoom())
    points = base.mark_point(size=40, filled=True).encode(
        y="value:Q",
        opacity=alt.condition("datum.judged", alt.value(1.0), alt.value(0.3)),
        tooltip=tooltip,
    )
    reference = base.mark_line(strokeDash=[5, 4], opacity=0.7).encode(y="reference:Q")
    layers: list[Any] = [band, reference, line, points]
    if versions is not None and not versions.empty:
        layers.append(version_rules(versions))
    return cast(AnyChart, alt.layer(*layers).properties(title="Efficacy", height=height))


def coverage_chart(frame: pd.DataFrame, min_coverage: float, height: int = 140) -> AnyChart:
    """Label coverage of each judged window (share of its predictions labelled when judged),
    with the check's minimum as a dashed line."""
    per_window = frame.groupby("time", as_index=False)[["coverage", "labels", "predictions"]].max()
    bars = (
        alt.Chart(_data(per_window))
        .mark_area(interpolate="step-after", opacity=0.5, color="#2ca02c")
        .encode(
            x=_TIME,
            y=alt.Y("coverage:Q", title=None, axis=alt.Axis(format="%"),
                    scale=alt.Scale(domain=[0, 1])),
            tooltip=[
                alt.Tooltip("time:T", title="Window end", format="%Y-%m-%d %H:%M"),
                alt.Tooltip("coverage:Q", title="Label coverage", format=".0%"),
                alt.Tooltip("labels:Q", title="Labels"),
                alt.Tooltip("predictions:Q", title="Predictions"),
            ],
        )
        .add_params(_zoom())
    )  # fmt: skip
    floor = (
        alt.Chart(_data(pd.DataFrame({"y": [min_coverage]})))
        .mark_rule(strokeDash=[4, 3], color="#6b6b76")
        .encode(y="y:Q")
    )
    return cast(AnyChart, alt.layer(bars, floor).properties(title="Label coverage", height=height))


OVERLAY_COLORS = {"reference": "#7f7f7f", "current": "#d62728"}


def distribution_overlay(frame: pd.DataFrame, kind: str, title: str) -> AnyChart:
    """Reference and current distributions of one feature drawn over each other: shares per
    bin as overlapping translucent bars (numeric), or side-by-side bars per category."""
    color = alt.Color("series:N", title=None, scale=_scale(OVERLAY_COLORS))
    tooltip = [
        alt.Tooltip("series:N", title="Distribution"),
        alt.Tooltip("bin:N", title="Values" if kind == "numeric" else "Category"),
        alt.Tooltip("share:Q", title="Share", format=".1%"),
    ]
    share = alt.Y("share:Q", title="share of values", axis=alt.Axis(format="%"), stack=None)
    if kind == "numeric":
        # Rectangles from zero to the share over each bin's range: the two series overlap.
        chart = (
            alt.Chart(_data(frame))
            .mark_rect(opacity=0.45)
            .encode(x=alt.X("low:Q", title=title), x2="high:Q", y=share, y2=alt.datum(0),
                    color=color, tooltip=tooltip)
        )  # fmt: skip
    else:
        chart = (
            alt.Chart(_data(frame))
            .mark_bar()
            .encode(x=alt.X("bin:N", title=title, sort=None), xOffset="series:N", y=share,
                    color=color, tooltip=tooltip)
        )  # fmt: skip
    return cast(AnyChart, chart.properties(height=240))


def quality_lanes(frame: pd.DataFrame) -> AnyChart:
    """Data-quality verdicts on a timeline: a lane per check and feature, breached windows
    red, healthy ones grey, the value and threshold on hover."""
    chart = (
        alt.Chart(_data(frame))
        .mark_tick(thickness=3)
        .encode(
            x=_TIME,
            y=alt.Y("lane:N", title=None),
            color=alt.Color(
                "breached:N",
                title="Breached",
                scale=alt.Scale(domain=[True, False], range=["#d62728", "#c7c7cc"]),
            ),
            tooltip=[
                alt.Tooltip("lane:N", title="Check"),
                alt.Tooltip("time:T", title="Window end", format="%Y-%m-%d %H:%M"),
                alt.Tooltip("value:Q", title="Value", format=".3g"),
                alt.Tooltip("threshold:Q", title="Threshold", format=".3g"),
                alt.Tooltip("summary:N", title="Verdict"),
            ],
        )
        .add_params(_zoom())
        .properties(height=alt.Step(20))
    )
    return cast(AnyChart, chart)
