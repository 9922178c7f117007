"""Altair charts for the dashboard (built from the long tables of results/curves/maps)."""

from __future__ import annotations

from typing import Any

import pandas as pd


def _alt() -> Any:
    """Import altair lazily (only the dashboard needs it)."""
    try:
        import altair as alt
    except ImportError:
        raise ImportError("the dashboard needs altair: pip install altair") from None
    return alt


def recall_bars(long: pd.DataFrame, title: str = "Recall (%)") -> Any:
    """Grouped bars: one group per metric (R@K), one bar per result."""
    alt = _alt()
    return (
        alt.Chart(long, title=title)
        .mark_bar()
        .encode(
            x=alt.X("metric:N", sort=None, title=None, axis=alt.Axis(labelAngle=0)),
            xOffset=alt.XOffset("result:N"),
            y=alt.Y("value:Q", title="recall (%)", scale=alt.Scale(domain=[0, 100])),
            color=alt.Color("result:N", title="result"),
            tooltip=["result", "metric", alt.Tooltip("value:Q", format=".2f")],
        )
    )


def category_bars(cats: pd.DataFrame, metric: str) -> Any:
    """Per-category bars of one metric, one bar per result within each category."""
    alt = _alt()
    data = cats[cats["metric"] == metric]
    return (
        alt.Chart(data, title=f"{metric} per category (%)")
        .mark_bar()
        .encode(
            x=alt.X("category:N", title=None, axis=alt.Axis(labelAngle=0)),
            xOffset=alt.XOffset("result:N"),
            y=alt.Y("value:Q", title=f"{metric} (%)"),
            color=alt.Color("result:N", title="result"),
            tooltip=["result", "category", alt.Tooltip("value:Q", format=".2f")],
        )
    )


def curve_chart(curves: pd.DataFrame, metrics: list[str], title: str, log_y: bool = False) -> Any:
    """Lines over steps, one per (run, metric); ``curves`` has run, step, metric, value."""
    alt = _alt()
    data = curves[curves["metric"].isin(metrics)]
    series = "run:N" if len(metrics) == 1 else "series:N"
    data = data.assign(series=data["run"] + " · " + data["metric"])
    scale = alt.Scale(type="log") if log_y else alt.Scale(zero=False)
    return (
        alt.Chart(data, title=title)
        .mark_line(point=len(data) < 200)
        .encode(
            x=alt.X("step:Q", title="step"),
            y=alt.Y("value:Q", title=title, scale=scale),
            color=alt.Color(series, title="run" if len(metrics) == 1 else "run · metric"),
            tooltip=["run", "metric", "step", alt.Tooltip("value:Q", format=".4g")],
        )
        .interactive()
    )


def embedding_scatter(frame: pd.DataFrame, color_by: str, title: str) -> Any:
    """Scatter of a 2-D projection (columns x, y) coloured by ``color_by``."""
    alt = _alt()
    tooltip = [c for c in ("id", "caption", "category", color_by) if c in frame.columns]
    return (
        alt.Chart(frame, title=title)
        .mark_circle(size=40, opacity=0.8)
        .encode(
            x=alt.X("x:Q", axis=None),
            y=alt.Y("y:Q", axis=None),
            color=alt.Color(f"{color_by}:N", title=color_by),
            tooltip=list(dict.fromkeys(tooltip)),
        )
        .properties(height=380)
        .interactive()
    )


def control_chart(
    long: pd.DataFrame, title: str = "Composition control: share of the top k (%); black: the ceiling"
) -> Any:
    """Grouped bars of each control share per model, a black tick at the catalogue's ceiling;
    ``long`` has model, share, value, ceiling, of_ceiling (see ``shopper.control_long``)."""
    alt = _alt()
    tooltip = [
        "model",
        "share",
        alt.Tooltip("value:Q", format=".1f", title="share (%)"),
        alt.Tooltip("ceiling:Q", format=".1f", title="ceiling (%)"),
        alt.Tooltip("of_ceiling:Q", format=".1f", title="% of ceiling"),
    ]
    base = alt.Chart(long, title=title).encode(
        x=alt.X("share:N", sort=None, title=None, axis=alt.Axis(labelAngle=0)),
        xOffset=alt.XOffset("model:N"),
        tooltip=tooltip,
    )
    bars = base.mark_bar().encode(
        y=alt.Y("value:Q", title="share of the top k (%)", scale=alt.Scale(domain=[0, 100])),
        color=alt.Color("model:N", title="model"),
    )
    ceiling = base.mark_tick(color="black", thickness=2).encode(y="ceiling:Q")
    return alt.layer(bars, ceiling)


def success_chart(long: pd.DataFrame, title: str = "Success by turn (%)") -> Any:
    """success@T against the turn, one line per model; ``long`` has model, turn, success (see
    ``sessions.success_long``)."""
    alt = _alt()
    return (
        alt.Chart(long, title=title)
        .mark_line(point=True)
        .encode(
            x=alt.X("turn:O", title="turn", axis=alt.Axis(labelAngle=0)),
            y=alt.Y("success:Q", title="success@T (%)", scale=alt.Scale(domain=[0, 100])),
            color=alt.Color("model:N", title="model", sort=None),
            tooltip=["model", "turn", alt.Tooltip("success:Q", format=".1f", title="success (%)")],
        )
    )
