"""Streamlit pieces of the Reports and Classify pages: model choice, cached reports and charts.

Every number comes from ``cifarlab.evaluate`` (a report) or from a checkpoint's metadata; this
module lays them out as altair charts and tables.
"""

from __future__ import annotations

import os
from typing import Any

import altair as alt
import numpy as np
import pandas as pd
import streamlit as st

from cifarlab.checkpoints import CheckpointInfo, LoadedCheckpoint, list_checkpoints, load_checkpoint
from cifarlab.evaluate import EvaluationReport, evaluate_checkpoint, load_cached_report
from ui.common import page_link

ACTIVE_CHECKPOINT_KEY = "active_checkpoint"

# Axis and legend order of the classes follow cifarlab.data.CLASSES.
PERCENT = alt.Axis(format="%")


# --------------------------------------------------------------------------------------------
# Choosing and loading a checkpoint


def readable_checkpoints() -> list[CheckpointInfo]:
    """Return the shipped and user checkpoints whose metadata can be read."""
    return [info for info in list_checkpoints() if info.error is None]


def checkpoint_label(info: CheckpointInfo) -> str:
    origin = "shipped" if info.protected else "yours"
    accuracy = f", val {info.val_acc:.1%}" if info.val_acc is not None else ""
    return f"{info.name} ({info.arch}, {origin}{accuracy})"


def choose_checkpoint(key: str, infos: list[CheckpointInfo]) -> CheckpointInfo:
    """Draw a model selectbox that starts on the active model and makes its choice active.

    Choosing a model here also makes it the active model of the other pages, so Reports,
    Classify and Attack always talk about the same network.
    """
    options = [str(info.path) for info in infos]
    by_path = {str(info.path): info for info in infos}
    active = st.session_state.get(ACTIVE_CHECKPOINT_KEY)
    chosen = st.selectbox(
        "Model",
        options,
        index=options.index(active) if active in options else 0,
        format_func=lambda path: checkpoint_label(by_path[path]),
        key=key,
        help="The active model of every page. The Models page compares them all.",
    )
    st.session_state[ACTIVE_CHECKPOINT_KEY] = chosen
    return by_path[chosen]


def no_checkpoint_stop() -> None:
    """Show where to get a model when there is none, then stop the page."""
    st.info(
        "No trained model yet. Train one on the Train page (LeNet for 2 epochs takes about a "
        "minute on a laptop), or import a checkpoint on the Models page.",
        icon=":material/model_training:",
    )
    page_link("pages/3_Train.py", "Go to the Train page", ":material/model_training:")
    st.stop()


@st.cache_resource(max_entries=4, show_spinner="Loading the model...")
def _load_checkpoint(path: str, mtime_ns: int, size: int) -> LoadedCheckpoint:
    # mtime and size are part of the cache key, so a retrained file is loaded again.
    return load_checkpoint(path)


def load_model(path: str | os.PathLike) -> LoadedCheckpoint:
    """Load a checkpoint once per server and file version; the model must not be changed."""
    stat = os.stat(path)
    return _load_checkpoint(str(path), stat.st_mtime_ns, stat.st_size)


# --------------------------------------------------------------------------------------------
# Reports


@st.cache_data(max_entries=32, show_spinner=False)
def _cached_report_values(path: str, mtime_ns: int, size: int, data_source: str) -> dict[str, Any]:
    report = load_cached_report(path, "test", data_source=data_source)
    if report is None:
        # An exception is not cached, so the next call looks for the file again.
        raise LookupError(f"no cached test report for {path}")
    return {"values": report.to_dict(), "cache_path": report.cache_path}


def cached_report(path: str | os.PathLike, data_source: str) -> EvaluationReport | None:
    """Return the cached full test-set report of a checkpoint, or None if it has none yet."""
    stat = os.stat(path)
    try:
        stored = _cached_report_values(str(path), stat.st_mtime_ns, stat.st_size, data_source)
    except LookupError:
        return None
    report = EvaluationReport.from_dict(stored["values"])
    report.cache_path = stored["cache_path"]
    return report


def evaluate_with_progress(path: str | os.PathLike, data: Any) -> EvaluationReport:
    """Evaluate a checkpoint on the test split, showing a progress bar, and cache the report."""
    bar = st.progress(0.0, text="Scoring the test images...")
    stages = {
        "test": "Scoring the test images",
        "training subset": "Scoring training images for the generalization gap",
    }

    def show(stage: str, done: int, total: int) -> None:
        text = stages.get(stage, stage)
        bar.progress(min(done / max(total, 1), 1.0), text=f"{text}: {done:,} of {total:,}")

    try:
        return evaluate_checkpoint(path, "test", data=data, progress=show)
    finally:
        bar.empty()


# --------------------------------------------------------------------------------------------
# Charts


def per_class_chart(report: EvaluationReport) -> alt.Chart:
    """Grouped bars of precision, recall and F1 for each class."""
    metrics = report.metrics
    rows = []
    for index, name in enumerate(report.class_names):
        for metric, values in (("precision", metrics.precision), ("recall", metrics.recall), ("F1", metrics.f1)):
            rows.append({"class": name, "metric": metric, "value": values[index]})
    return (
        alt.Chart(pd.DataFrame(rows))
        .mark_bar()
        .encode(
            x=alt.X("class:N", sort=report.class_names, title=None, axis=alt.Axis(labelAngle=0)),
            xOffset=alt.XOffset("metric:N", sort=["precision", "recall", "F1"]),
            y=alt.Y("value:Q", title=None, axis=PERCENT, scale=alt.Scale(domain=[0, 1])),
            color=alt.Color(
                "metric:N", sort=["precision", "recall", "F1"], title=None, legend=alt.Legend(orient="top")
            ),
            tooltip=["class:N", "metric:N", alt.Tooltip("value:Q", format=".1%")],
        )
        .properties(height=260, width="container")
    )


def confusion_chart(report: EvaluationReport, *, normalize: bool) -> alt.Chart:
    """Heatmap of the confusion matrix: true class down the rows, predicted class across.

    With ``normalize``, each row is divided by its class's image count, so a cell reads as the
    share of that class predicted as the column's class.
    """
    names = report.class_names
    matrix = np.asarray(report.metrics.confusion, dtype=np.float64)
    totals = matrix.sum(axis=1, keepdims=True)
    shares = np.divide(matrix, totals, out=np.zeros_like(matrix), where=totals > 0)
    rows = []
    for true, true_name in enumerate(names):
        for predicted, predicted_name in enumerate(names):
            rows.append(
                {
                    "true": true_name,
                    "predicted": predicted_name,
                    "count": int(matrix[true, predicted]),
                    "share": shares[true, predicted],
                    "diagonal": true == predicted,
                }
            )
    frame = pd.DataFrame(rows)
    value = "share" if normalize else "count"
    value_format = ".0%" if normalize else "d"
    base = alt.Chart(frame).encode(
        x=alt.X(
            "predicted:N",
            sort=names,
            title="predicted class",
            axis=alt.Axis(labelAngle=-40, orient="top", labelOverlap=False),
        ),
        y=alt.Y("true:N", sort=names, title="true class"),
    )
    cells = base.mark_rect().encode(
        color=alt.Color(f"{value}:Q", scale=alt.Scale(scheme="blues"), title=value, legend=alt.Legend(format=value_format)),
        tooltip=[
            alt.Tooltip("true:N", title="true"),
            alt.Tooltip("predicted:N", title="predicted"),
            alt.Tooltip("count:Q", title="images"),
            alt.Tooltip("share:Q", title="share of the true class", format=".1%"),
        ],
    )
    # Light text on dark cells and dark text on light ones keeps every number readable.
    threshold = 0.5 * float(frame[value].max() or 1)
    labels = base.mark_text(fontSize=11).encode(
        text=alt.Text(f"{value}:Q", format=value_format),
        color=alt.condition(f"datum.{value} > {threshold}", alt.value("white"), alt.value("#1a1a1a")),
    )
    return (cells + labels).properties(height=430, width="container")


def roc_chart(report: EvaluationReport) -> alt.Chart:
    """One-vs-rest ROC curve of each class with a defined ROC-AUC; click the legend to highlight."""
    rows = []
    for index, name in enumerate(report.class_names):
        curve = report.metrics.roc_curves[index]
        if curve is None:
            continue
        label = f"{name} (AUC {report.metrics.roc_auc[index]:.3f})"
        for order, (fpr, tpr) in enumerate(zip(curve["fpr"], curve["tpr"])):
            rows.append({"class": label, "order": order, "false positive rate": fpr, "true positive rate": tpr})
    frame = pd.DataFrame(rows, columns=["class", "order", "false positive rate", "true positive rate"])
    highlight = alt.selection_point(fields=["class"], bind="legend")
    lines = (
        alt.Chart(frame)
        .mark_line(strokeWidth=2)
        .encode(
            x=alt.X("false positive rate:Q", scale=alt.Scale(domain=[0, 1])),
            y=alt.Y("true positive rate:Q", scale=alt.Scale(domain=[0, 1])),
            order="order:Q",
            color=alt.Color("class:N", title="class (click to highlight)", scale=alt.Scale(scheme="category10")),
            opacity=alt.condition(highlight, alt.value(1.0), alt.value(0.12)),
            tooltip=["class:N", alt.Tooltip("false positive rate:Q", format=".3f"), alt.Tooltip("true positive rate:Q", format=".3f")],
        )
        .add_params(highlight)
    )
    # The same field names and titles as the curves, so the layers share their axes.
    chance = (
        alt.Chart(pd.DataFrame({"false positive rate": [0.0, 1.0], "true positive rate": [0.0, 1.0]}))
        .mark_line(strokeDash=[4, 4], color="gray")
        .encode(x="false positive rate:Q", y="true positive rate:Q")
    )
    return (chance + lines).properties(height=420, width="container")


def reliability_chart(report: EvaluationReport) -> alt.Chart:
    """Reliability diagram: accuracy against mean confidence in each of the 15 bins.

    Bars below the diagonal mean the model is over-confident there.
    """
    bins = pd.DataFrame(report.metrics.calibration)
    filled = bins[bins["count"] > 0]
    bars = (
        alt.Chart(filled)
        .mark_bar(opacity=0.85, color="#1f77b4")
        .encode(
            x=alt.X("lower:Q", title="confidence (top-1 probability)", scale=alt.Scale(domain=[0, 1])),
            x2="upper:Q",
            y=alt.Y("accuracy:Q", title="accuracy in the bin", axis=PERCENT, scale=alt.Scale(domain=[0, 1])),
            # With x2 set, a bar needs both ends on y too, or it shrinks to a line.
            y2=alt.datum(0),
            tooltip=[
                alt.Tooltip("lower:Q", title="from", format=".3f"),
                alt.Tooltip("upper:Q", title="to", format=".3f"),
                alt.Tooltip("count:Q", title="images"),
                alt.Tooltip("confidence:Q", title="mean confidence", format=".1%"),
                alt.Tooltip("accuracy:Q", title="accuracy", format=".1%"),
            ],
        )
    )
    confidence_marks = (
        alt.Chart(filled)
        .mark_tick(color="#d62728", thickness=2, size=14)
        .encode(x="confidence:Q", y="confidence:Q")
    )
    diagonal = (
        alt.Chart(pd.DataFrame({"lower": [0.0, 1.0], "accuracy": [0.0, 1.0]}))
        .mark_line(strokeDash=[4, 4], color="gray")
        .encode(x="lower:Q", y="accuracy:Q")
    )
    return (diagonal + bars + confidence_marks).properties(height=300, width="container")


def confidence_histogram(report: EvaluationReport) -> alt.Chart:
    """Number of test images in each confidence bin of the reliability diagram."""
    bins = pd.DataFrame(report.metrics.calibration)
    filled = bins[bins["count"] > 0]
    return (
        alt.Chart(filled)
        .mark_bar(color="#9ecae9")
        .encode(
            x=alt.X("lower:Q", title="confidence", scale=alt.Scale(domain=[0, 1])),
            x2="upper:Q",
            y=alt.Y("count:Q", title="images"),
            y2=alt.datum(0),
            tooltip=[alt.Tooltip("count:Q", title="images")],
        )
        .properties(height=110, width="container")
    )


def top_classes_chart(names: list[str], probabilities: np.ndarray, *, highlight: int | None = None) -> alt.Chart:
    """Horizontal bars of the classes' probabilities, most probable on top."""
    frame = pd.DataFrame({"class": names, "probability": probabilities})
    frame["marked"] = [index == highlight for index in range(len(names))]
    order = list(frame.sort_values("probability", ascending=False)["class"])
    bars = (
        alt.Chart(frame)
        .mark_bar()
        .encode(
            y=alt.Y("class:N", sort=order, title=None),
            x=alt.X("probability:Q", axis=PERCENT, scale=alt.Scale(domain=[0, 1]), title="probability"),
            color=alt.condition("datum.marked", alt.value("#ff7f0e"), alt.value("#1f77b4")),
            tooltip=["class:N", alt.Tooltip("probability:Q", format=".2%")],
        )
    )
    text = bars.mark_text(align="left", dx=4).encode(text=alt.Text("probability:Q", format=".1%"), color=alt.value("#1a1a1a"))
    return (bars + text).properties(height=34 * len(names) + 40, width="container")


def comparison_chart(frame: pd.DataFrame, column: str, *, title: str, percent: bool = True) -> alt.Chart:
    """Bars of one comparison column, one bar per model, highest on top."""
    data = frame[["model", "arch", column]].dropna()
    axis = PERCENT if percent else alt.Axis()
    return (
        alt.Chart(data)
        .mark_bar()
        .encode(
            y=alt.Y("model:N", sort="-x", title=None),
            x=alt.X(f"{column}:Q", title=title, axis=axis),
            color=alt.Color("arch:N", title="architecture"),
            tooltip=["model:N", "arch:N", alt.Tooltip(f"{column}:Q", format=".2%" if percent else ",.0f")],
        )
        .properties(height=36 * len(data) + 50, width="container")
    )

