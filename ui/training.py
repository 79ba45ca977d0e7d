"""Streamlit pieces of the Train and Models pages: run progress, curves, tables and outcomes.

The numbers all come from ``cifarlab.runs`` (a run's JSON-lines log) or from a checkpoint's
metadata; this module only lays them out.
"""

from __future__ import annotations

import time
from typing import Any

import altair as alt
import pandas as pd
import streamlit as st

from cifarlab import runs
from ui.markdown import escape_markdown

ACTIVE_CHECKPOINT_KEY = "active_checkpoint"

STATE_BADGES = {
    runs.RUNNING: ("running", ":material/play_circle:", "blue"),
    runs.COMPLETED: ("completed", ":material/check_circle:", "green"),
    runs.STOPPED: ("stopped", ":material/stop_circle:", "gray"),
    runs.FAILED: ("failed", ":material/error:", "red"),
    runs.INTERRUPTED: ("interrupted", ":material/pause_circle:", "orange"),
}

# Batch records beyond this many are averaged in groups before drawing, so a long run's live
# curve stays light to send to the browser every second.
MAX_BATCH_POINTS = 400

SERIES_COLORS = alt.Scale(
    domain=["training (per batch)", "training", "validation"],
    range=["#9ecae9", "#1f77b4", "#ff7f0e"],
)


def state_badge(run: runs.Run) -> None:
    label, icon, color = STATE_BADGES[run.state]
    if run.is_running and run.stop_requested:
        label, icon, color = "stopping", ":material/hourglass_top:", "orange"
    st.badge(label, icon=icon, color=color)


def describe_config(config: dict[str, Any]) -> str:
    """Summarize a training config in one line: arch, optimizer, batch, epochs, data, recipes."""
    recipe = config.get("recipe")
    recipe_name = recipe.get("name") if isinstance(recipe, dict) else recipe
    subset = config.get("train_subset")
    images = f"{subset:,} training images" if subset else "all training images"
    # Configs saved before offline augmentation existed have no offline_copies.
    copies = config.get("offline_copies") or 0
    offline = ""
    if copies:
        offline_recipe = config.get("offline_recipe")
        offline_name = offline_recipe.get("name") if isinstance(offline_recipe, dict) else offline_recipe
        count = "1 copy" if copies == 1 else f"{copies} copies"
        offline = f", offline augmentation: {count} of each image ({offline_name or 'custom'})"
    return (
        f"**{config.get('arch')}**, {config.get('optimizer')} at lr {config.get('lr')}, "
        f"batch {config.get('batch_size')}, {plural(config.get('epochs'), 'epoch')}, {images}, "
        f"augmentation: {recipe_name or 'custom'}{offline}"
    )


def plural(count: Any, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


# --------------------------------------------------------------------------------------------
# Curves and tables


def epoch_frame(epochs: list[dict[str, Any]]) -> pd.DataFrame:
    """Return one row per epoch record, with the columns the table and the curves use."""
    rows = []
    for record in epochs:
        rows.append(
            {
                "epoch": record.get("epoch"),
                "train loss": record.get("train_loss"),
                "train acc": record.get("train_acc"),
                "val loss": record.get("val_loss"),
                "val acc": record.get("val_acc"),
                "lr": record.get("lr"),
                "time (s)": record.get("epoch_time_s"),
                "images/s": record.get("images_per_s"),
                "best": "★" if record.get("is_best") else "",
            }
        )
    return pd.DataFrame(rows)


def draw_epoch_table(epochs: list[dict[str, Any]]) -> None:
    if not epochs:
        st.caption("The table fills in as each epoch ends.")
        return
    st.dataframe(
        epoch_frame(epochs),
        hide_index=True,
        column_config={
            "train acc": st.column_config.NumberColumn(format="percent"),
            "val acc": st.column_config.NumberColumn(format="percent"),
            "train loss": st.column_config.NumberColumn(format="%.4f"),
            "val loss": st.column_config.NumberColumn(format="%.4f"),
            "lr": st.column_config.NumberColumn(format="%.2e"),
            "time (s)": st.column_config.NumberColumn(format="%.1f"),
            "images/s": st.column_config.NumberColumn(format="%.0f"),
            "best": st.column_config.TextColumn(help="best epoch on the validation metric so far"),
        },
    )


def _batch_points(batches: list[dict[str, Any]], field: str) -> pd.DataFrame:
    """Return (epoch position, value) points of a batch field, averaged down to a light size."""
    rows = [
        {
            # Batch b of epoch e sits at e - 1 + b / batches on the epoch axis.
            "epoch": record["epoch"] - 1 + record["batch"] / record["batches"],
            "value": record[field],
        }
        for record in batches
        if record.get(field) is not None and record.get("batches")
    ]
    frame = pd.DataFrame(rows, columns=["epoch", "value"])
    if len(frame) > MAX_BATCH_POINTS:
        group = -(-len(frame) // MAX_BATCH_POINTS)
        frame = frame.groupby(frame.index // group).mean()
    frame["series"] = "training (per batch)"
    return frame


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def curves_chart(
    epochs: list[dict[str, Any]],
    batches: list[dict[str, Any]] | None,
    *,
    metric: str,
) -> alt.Chart:
    """Return the training and validation ``metric`` ("loss" or "acc") curves over epochs.

    Epoch means are drawn at the end of their epoch (x = 1, 2, ...), batch values at their
    position inside the epoch, so the batch curve leads into each epoch point.
    """
    title = "Loss (cross-entropy)" if metric == "loss" else "Accuracy"
    rows = []
    # Records that are not dicts of numbers (a hand-edited checkpoint) are skipped, not drawn.
    for record in epochs if isinstance(epochs, list) else []:
        if not isinstance(record, dict) or not _is_number(record.get("epoch")):
            continue
        for series, field in (("training", f"train_{metric}"), ("validation", f"val_{metric}")):
            if _is_number(record.get(field)):
                rows.append({"epoch": record["epoch"], "value": record[field], "series": series})
    epoch_points = pd.DataFrame(rows, columns=["epoch", "value", "series"])

    batch_points = _batch_points(batches or [], "loss" if metric == "loss" else "acc")

    # Both layers get one value range computed here, because when Vega-Lite picked it, the
    # batch curve ran past the plot's top edge (seen with Streamlit 1.67 and Altair 6).
    values = [float(value) for frame in (epoch_points, batch_points) for value in frame["value"]]
    y_scale = alt.Scale(zero=False)
    if values:
        low, high = min(values), max(values)
        margin = max(0.05 * (high - low), 1e-3)
        low, high = low - margin, high + margin
        if metric == "acc":
            low, high = max(0.0, low), min(1.0, high)
        y_scale = alt.Scale(domain=[low, high], nice=False)

    x_axis = alt.X("epoch:Q", title="epoch", scale=alt.Scale(domainMin=0))
    y_axis = alt.Y(
        "value:Q",
        title=title,
        axis=alt.Axis(format="%") if metric == "acc" else alt.Axis(),
        scale=y_scale,
    )
    color = alt.Color("series:N", scale=SERIES_COLORS, title=None, legend=alt.Legend(orient="bottom"))
    layers = []
    if not batch_points.empty:
        layers.append(
            alt.Chart(batch_points)
            .mark_line(strokeWidth=1, opacity=0.8)
            .encode(x=x_axis, y=y_axis, color=color)
        )
    layers.append(
        alt.Chart(epoch_points)
        .mark_line(point=True, strokeWidth=2.5)
        .encode(
            x=x_axis,
            y=y_axis,
            color=color,
            tooltip=[
                alt.Tooltip("series:N"),
                alt.Tooltip("epoch:Q"),
                alt.Tooltip("value:Q", format=".2%" if metric == "acc" else ".4f"),
            ],
        )
    )
    return alt.layer(*layers).properties(title=title, height=280)


@st.cache_data(max_entries=64, show_spinner=False)
def _chart_spec(
    cache_key: tuple, _epochs: list[dict[str, Any]], _batches: list[dict[str, Any]] | None, metric: str
) -> dict[str, Any]:
    """Return the Vega-Lite spec of ``curves_chart``, built once per ``cache_key``.

    Every session watching a run redraws it every few seconds. Building and validating the
    Altair chart costs far more than drawing it, so sessions share one spec per log length.
    The record lists are left out of the cache key (leading underscore) because hashing
    thousands of records would cost as much as building the chart.
    """
    return curves_chart(_epochs, _batches, metric=metric).to_dict()


def draw_curves(
    epochs: list[dict[str, Any]],
    batches: list[dict[str, Any]] | None = None,
    *,
    cache_key: tuple | None = None,
) -> None:
    """Draw the loss and accuracy curves side by side.

    ``cache_key`` must change whenever the records do (for a run: its id and record counts);
    without one the charts are built afresh.
    """
    if not epochs and not batches:
        st.caption("The curves appear with the first batches.")
        return
    left, right = st.columns(2)
    for column, metric in ((left, "loss"), (right, "acc")):
        if cache_key is None:
            spec = curves_chart(epochs, batches, metric=metric).to_dict()
        else:
            spec = _chart_spec(cache_key, epochs, batches, metric)
        column.vega_lite_chart(spec=spec, width="stretch")


def progress_cache_key(run: runs.Run, progress: runs.Progress) -> tuple:
    """Return a key that changes whenever the run's log gains a record."""
    return (
        run.run_id,
        len(run.attempts),
        len(progress.batches),
        len(progress.epochs),
        progress.end is not None,
    )


# --------------------------------------------------------------------------------------------
# Progress of a run


def progress_text(progress: runs.Progress) -> str:
    batch = progress.last_batch
    total = progress.epochs_total or "?"
    if progress.finished:
        return f"Done: {progress.epochs_done}/{total} epochs"
    if batch is not None:
        return (
            f"Epoch {batch['epoch']}/{total}, batch {batch['batch']}/{batch['batches']} "
            f"({progress.fraction:.0%})"
        )
    if progress.start is not None:
        return "Data loaded, the first batch is training"
    return "Starting: loading the data and building the model"


def draw_progress(run: runs.Run, progress: runs.Progress) -> None:
    """Draw the progress bar and the speed, ETA and best-validation figures."""
    st.progress(progress.fraction, text=progress_text(progress))

    columns = st.columns(4)
    speed = progress.images_per_s
    columns[0].metric("Images/s", f"{speed:,.0f}" if speed else "–")
    if run.is_running:
        columns[1].metric(
            "Time left (estimate)",
            runs.format_duration(progress.eta_s) if progress.eta_s is not None else "–",
        )
    else:
        train_time = (progress.end or {}).get("train_time_s")
        columns[1].metric("Training time", runs.format_duration(train_time) if train_time else "–")
    columns[2].metric("Elapsed", runs.format_duration(_elapsed_s(run)))

    best = _best_epoch(progress.epochs)
    columns[3].metric(
        "Best validation accuracy",
        f"{best['val_acc']:.1%}" if best else "–",
        help=f"epoch {best['epoch']}" if best else "after the first epoch",
    )


def _elapsed_s(run: runs.Run) -> float:
    attempt = run.last_attempt
    end = attempt.ended_at if attempt.ended_at is not None else time.time()
    return max(0.0, end - attempt.started_at)


def _best_epoch(epochs: list[dict[str, Any]]) -> dict[str, Any] | None:
    scored = [record for record in epochs if record.get("val_acc") is not None]
    best_number = next((r.get("best_epoch") for r in reversed(epochs) if r.get("best_epoch")), None)
    for record in scored:
        if record["epoch"] == best_number:
            return record
    return max(scored, key=lambda record: record["val_acc"], default=None)


def draw_run_details(run: runs.Run, progress: runs.Progress) -> None:
    """Draw the progress, the curves and the per-epoch table of a run."""
    draw_progress(run, progress)
    draw_curves(progress.epochs, progress.batches, cache_key=progress_cache_key(run, progress))
    st.markdown("**Per epoch**")
    draw_epoch_table(progress.epochs)


def draw_log(run: runs.Run, *, expanded: bool = False) -> None:
    with st.expander("Trainer output (last lines)", expanded=expanded, icon=":material/terminal:"):
        tail = runs.log_tail(run, lines=60)
        st.code(tail or "(empty)", language=None)
        st.caption(f"Full output: {run.stderr_path}")


def draw_outcome(run: runs.Run, progress: runs.Progress) -> None:
    """Say how a finished run ended and what the student can do next."""
    end = progress.end or {}
    if run.state == runs.COMPLETED:
        test = end.get("test_acc")
        test_text = f", test accuracy {test:.1%} (measured once, never used to pick)" if test is not None else ""
        best = end.get("best_val_acc")
        best_text = f"best validation accuracy {best:.1%} at epoch {end.get('best_epoch')}" if best is not None else "no validation split"
        early = " Early stopping ended it." if end.get("status") == "early_stopped" else ""
        epochs = plural(end.get("epochs_completed", progress.epochs_done), "epoch")
        st.success(
            f"Finished {epochs}: {best_text}"
            f"{test_text}.{early} The checkpoint **{run.checkpoint_path.name}** is on the "
            "Models page.",
            icon=":material/check_circle:",
        )
    elif run.state == runs.STOPPED:
        kept = "its last good checkpoint is kept" if run.checkpoint_path.is_file() else "no checkpoint was written"
        batch = progress.last_batch
        where = (
            f"in epoch {batch['epoch']} after batch {batch['batch']} of {batch['batches']}"
            if batch is not None and batch.get("batch") != batch.get("batches")
            else f"after {plural(progress.epochs_done, 'full epoch')}"
        )
        st.info(
            f"Stopped on request {where}; {kept}. Resume continues from the batch where it "
            "stopped.",
            icon=":material/stop_circle:",
        )
    elif run.state == runs.FAILED:
        st.error(f"Training failed: {escape_markdown(run.error)}", icon=":material/error:")
        draw_log(run, expanded=True)
    elif run.state == runs.INTERRUPTED:
        reason = f" ({run.error})" if run.error else ""
        st.warning(
            f"Interrupted: the trainer process ended without finishing{reason}, for example "
            "because the app server or the machine restarted. Its log and last checkpoint "
            "are on disk.",
            icon=":material/pause_circle:",
        )
        if not run.can_resume:
            st.caption(
                "It ended before its first checkpoint, so there is nothing to resume; start "
                "a new run."
            )


# --------------------------------------------------------------------------------------------
# Checkpoints (Models page)


def checkpoint_row(info: Any, meta: dict[str, Any] | None, *, active: bool) -> dict[str, Any]:
    """Return the Models table row of one checkpoint from its listing entry and metadata."""
    meta = meta or {}
    config = meta.get("config") or {}
    recipe = config.get("recipe")
    training = meta.get("training") or {}
    data = meta.get("data") or {}
    return {
        "active": "●" if active else "",
        "name": info.name,
        "origin": "shipped" if info.protected else "yours",
        "architecture": info.arch or "unreadable",
        "parameters": info.params,
        "size (MB)": info.size_bytes / 1e6,
        "data": data.get("source"),
        "recipe": recipe.get("name", "custom") if isinstance(recipe, dict) else recipe,
        "val acc": info.val_acc,
        "test acc": info.test_acc,
        "training time": runs.format_duration(training["time_s"]) if training.get("time_s") else None,
        "device": training.get("device"),
        "status": training.get("status"),
        "date": (info.created or "")[:16].replace("T", " ") or None,
    }


CHECKPOINT_COLUMNS = {
    "active": st.column_config.TextColumn("", width="small", help="the active model"),
    "parameters": st.column_config.NumberColumn(format="localized"),
    "size (MB)": st.column_config.NumberColumn(format="%.1f"),
    "val acc": st.column_config.NumberColumn(format="percent", help="best validation accuracy"),
    "test acc": st.column_config.NumberColumn(
        format="percent", help="measured once on the test set, never used to pick the model"
    ),
    "status": st.column_config.TextColumn(help="training status when the file was written"),
    "date": st.column_config.TextColumn(help="when the file was written (UTC)"),
}
