"""Streamlit pieces of the Attack page: model choice, background attack jobs, images and charts.

An attack takes from seconds to minutes, so it runs in a background thread (`start_job`) and the
page polls it with a fragment that reruns every half second (`draw_live_job`). A widget change
or a click on Stop reruns the script but does not touch the thread; Stop sets the job's
`threading.Event`, which the attack checks between generations, and the attack then returns its
best candidate so far.

NOTE: a job keeps running when its browser tab is closed, until its budget is spent or it
succeeds, because nothing tells the thread that the session is gone.
"""

from __future__ import annotations

import io
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import altair as alt
import numpy as np
import pandas as pd
import streamlit as st
from PIL import Image, ImageDraw

from cifarlab.attack import AttackResult, PixelChange
from cifarlab.checkpoints import CheckpointInfo, LoadedCheckpoint, list_checkpoints, load_checkpoint
from ui.common import enlarge, page_link

logger = logging.getLogger(__name__)

ACTIVE_CHECKPOINT_KEY = "active_checkpoint"
REFRESH_SECONDS = 0.5
SCALE = 8  # enlargement of the 32x32 images on screen and in the enlarged download

# Two rings, dark outside and bright inside, stay visible on any pixel colour.
RING_OUTER = (0, 0, 0)
RING_INNER = (255, 230, 0)


# --------------------------------------------------------------------------------------------
# Choosing and loading a model


def readable_checkpoints() -> list[CheckpointInfo]:
    """Return the shipped and user checkpoints whose metadata can be read."""
    return [info for info in list_checkpoints() if info.error is None]


def checkpoint_label(info: CheckpointInfo) -> str:
    origin = "shipped" if info.protected else "yours"
    accuracy = f", val {info.val_acc:.1%}" if info.val_acc is not None else ""
    return f"{info.name} ({info.arch}, {origin}{accuracy})"


def choose_checkpoint(key: str, infos: list[CheckpointInfo]) -> CheckpointInfo:
    """Draw a model selectbox that starts on the active model and makes its choice active."""
    options = [str(info.path) for info in infos]
    by_path = {str(info.path): info for info in infos}
    active = st.session_state.get(ACTIVE_CHECKPOINT_KEY)
    chosen = st.selectbox(
        "Model",
        options,
        index=options.index(active) if active in options else 0,
        format_func=lambda path: checkpoint_label(by_path[path]),
        key=key,
        help="The active model of every page; choosing one here makes it active everywhere.",
    )
    st.session_state[ACTIVE_CHECKPOINT_KEY] = chosen
    return by_path[chosen]


def no_checkpoint_stop() -> None:
    """Say where to get a model when there is none, then stop the page."""
    st.info(
        "There is no trained model to attack yet. Train one on the Train page, or import a "
        "checkpoint on the Models page.",
        icon=":material/model_training:",
    )
    page_link("pages/3_Train.py", "Go to the Train page", ":material/model_training:")
    page_link("pages/4_Models.py", "Go to the Models page", ":material/account_tree:")
    st.stop()


@st.cache_resource(max_entries=4, show_spinner="Loading the model...")
def _load_checkpoint(path: str, mtime_ns: int, size: int) -> LoadedCheckpoint:
    # The modification time and size are part of the cache key, so a retrained file reloads.
    return load_checkpoint(path)


def load_model(path: str | os.PathLike) -> LoadedCheckpoint:
    """Load a checkpoint once per server and file version; the model must not be changed."""
    stat = os.stat(path)
    return _load_checkpoint(str(path), stat.st_mtime_ns, stat.st_size)


# --------------------------------------------------------------------------------------------
# Background jobs


@dataclass
class Job:
    """An attack running in a background thread, with what the page needs to follow it."""

    kind: str
    settings: dict[str, Any]
    stop: threading.Event = field(default_factory=threading.Event)
    latest: dict[str, Any] | None = None  # the last progress record
    history: list[float] = field(default_factory=list)  # confidence per generation (one image)
    result: Any = None
    error: str | None = None
    started: float = field(default_factory=time.monotonic)
    finished: float | None = None

    @property
    def running(self) -> bool:
        return self.finished is None

    @property
    def elapsed(self) -> float:
        end = self.finished if self.finished is not None else time.monotonic()
        return end - self.started


def start_job(key: str, kind: str, settings: dict[str, Any], work: Callable[[Job], Any]) -> Job:
    """Run ``work(job)`` in a daemon thread and keep the job in ``st.session_state[key]``.

    ``work`` must not call Streamlit: it reports through ``job.latest`` and ``job.history``. A
    ``ValueError`` (a user-fixable input) becomes ``job.error``; anything else is logged with
    its traceback and shown as an unexpected failure.
    """
    job = Job(kind=kind, settings=settings)

    def run() -> None:
        try:
            job.result = work(job)
        except ValueError as error:
            logger.info("%s attack rejected: %s", kind, error)
            job.error = str(error)
        except Exception as error:  # noqa: BLE001 - the page must show every failure
            logger.exception("%s attack failed", kind)
            job.error = f"The attack failed unexpectedly: {error!r}. The server log has the details."
        finally:
            job.finished = time.monotonic()

    st.session_state[key] = job
    threading.Thread(target=run, name=f"cifarlab-{kind}-attack", daemon=True).start()
    return job


def draw_live_job(key: str, draw_progress: Callable[[Job], None]) -> None:
    """Redraw a running job every half second with a Stop button; rerun the page when it ends."""

    @st.fragment(run_every=REFRESH_SECONDS)
    def live() -> None:
        job: Job | None = st.session_state.get(key)
        if job is None:
            return
        if not job.running:
            # The whole page draws the result, so leave the fragment for a full rerun.
            st.rerun()
        draw_progress(job)
        st.button(
            "Stopping..." if job.stop.is_set() else "Stop",
            key=f"{key}_stop",
            on_click=job.stop.set,
            disabled=job.stop.is_set(),
            icon=":material/stop_circle:",
            help="Stops after the current generation and shows the best candidate so far.",
        )

    live()


# --------------------------------------------------------------------------------------------
# Images


def marked_image(image: np.ndarray, changes: list[PixelChange], scale: int = SCALE) -> Image.Image:
    """Enlarge a ``(3, H, W)`` image with crisp pixels and circle each changed pixel."""
    enlarged = Image.fromarray(enlarge(image, scale))
    draw = ImageDraw.Draw(enlarged)
    radius = 1.8 * scale
    for change in changes:
        centre_x = (change.col + 0.5) * scale
        centre_y = (change.row + 0.5) * scale
        box = [centre_x - radius, centre_y - radius, centre_x + radius, centre_y + radius]
        draw.ellipse(box, outline=RING_OUTER, width=max(2, scale // 2))
        inner = [box[0] + 1, box[1] + 1, box[2] - 1, box[3] - 1]
        draw.ellipse(inner, outline=RING_INNER, width=max(1, scale // 4))
    return enlarged


def marked_pair(
    original: np.ndarray, adversarial: np.ndarray, changes: list[PixelChange], scale: int = 4
) -> Image.Image:
    """Put the original and the adversarial image side by side, two white columns apart, circled."""
    height, width = original.shape[1:]
    gap = 2
    pair = np.concatenate([original, np.full((3, height, gap), 255, np.uint8), adversarial], axis=2)
    shifted = [PixelChange(change.row, change.col + width + gap, change.old, change.new) for change in changes]
    return marked_image(pair, list(changes) + shifted, scale=scale)


def show_image(image: Image.Image, caption: str) -> None:
    """Show an enlarged image at its own size, so the browser does not resample and blur it."""
    st.image(image, caption=caption, width=image.width)


def png_bytes(image: np.ndarray | Image.Image) -> bytes:
    """Encode an image as PNG: a ``(3, H, W)`` uint8 array pixel for pixel, or a PIL image."""
    if isinstance(image, np.ndarray):
        image = Image.fromarray(np.ascontiguousarray(image.transpose(1, 2, 0)))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def colour_hex(rgb: tuple[int, int, int]) -> str:
    return "#{:02x}{:02x}{:02x}".format(*rgb)


def changes_frame(changes: list[PixelChange]) -> pd.DataFrame:
    """Return a table with one row per changed pixel: position and colour before and after."""
    return pd.DataFrame(
        [
            {
                "row": change.row,
                "column": change.col,
                "before (r, g, b)": f"{change.old} {colour_hex(change.old)}",
                "after (r, g, b)": f"{change.new} {colour_hex(change.new)}",
            }
            for change in changes
        ]
    )


# --------------------------------------------------------------------------------------------
# Charts


def confidence_chart(history: list[float], class_name: str, max_generations: int) -> alt.Chart:
    """Line chart of the best candidate's tracked-class probability per generation."""
    # The attack thread appends to ``history`` while the page draws, so work on one snapshot.
    history = list(history)
    frame = pd.DataFrame({"generation": range(len(history)), "probability": history})
    return (
        alt.Chart(frame)
        .mark_line(point=len(history) < 40)
        .encode(
            x=alt.X(
                "generation:Q",
                title="generation",
                scale=alt.Scale(domain=[0, max(max_generations, 1)]),
                axis=alt.Axis(format="d", tickMinStep=1),
            ),
            y=alt.Y("probability:Q", title=f"p({class_name})", scale=alt.Scale(domain=[0, 1]), axis=alt.Axis(format="%")),
            tooltip=["generation", alt.Tooltip("probability:Q", format=".3f")],
        )
        .properties(height=220)
    )


def probability_chart(
    class_names: list[str], before: list[float], after: list[float], *, marked: dict[str, str]
) -> alt.Chart:
    """Grouped horizontal bars of the class probabilities before and after the attack.

    ``marked`` maps class names to a note shown in their label (for example "true" or "target").
    """
    labels = [f"{name} ({marked[name]})" if name in marked else name for name in class_names]
    rows = [
        {"class": label, "image": image, "probability": value}
        for image, values in (("original", before), ("adversarial", after))
        for label, value in zip(labels, values)
    ]
    return (
        alt.Chart(pd.DataFrame(rows))
        .mark_bar()
        .encode(
            y=alt.Y("class:N", sort=labels, title=None),
            yOffset=alt.YOffset("image:N", sort=["original", "adversarial"]),
            x=alt.X("probability:Q", scale=alt.Scale(domain=[0, 1]), axis=alt.Axis(format="%")),
            color=alt.Color(
                "image:N",
                sort=["original", "adversarial"],
                scale=alt.Scale(range=["#4c78a8", "#e45756"]),
                legend=alt.Legend(orient="bottom", title=None),
            ),
            tooltip=["class", "image", alt.Tooltip("probability:Q", format=".2%")],
        )
        .properties(height=30 * len(class_names) + 40)
    )


def rates_chart(frame: pd.DataFrame) -> alt.Chart:
    """Grouped bars of clean accuracy, accuracy under attack, success rate and baseline per model."""
    measures = ["clean accuracy", "accuracy under attack", "attack success rate", "random pixels fooled"]
    long = frame.melt(id_vars=["model"], value_vars=[m for m in measures if m in frame], var_name="measure")
    return (
        alt.Chart(long.dropna())
        .mark_bar()
        .encode(
            x=alt.X("value:Q", title=None, scale=alt.Scale(domain=[0, 1]), axis=alt.Axis(format="%")),
            y=alt.Y("measure:N", sort=measures, title=None),
            color=alt.Color("model:N", legend=alt.Legend(orient="bottom")),
            yOffset="model:N",
            tooltip=["model", "measure", alt.Tooltip("value:Q", format=".1%")],
        )
        .properties(height=60 * len(measures))
    )


# --------------------------------------------------------------------------------------------
# Results


def describe_result(result: AttackResult, class_names: list[str]) -> tuple[str, str]:
    """Return the kind of message (success, warning, info) and its text for one attack."""
    label = class_names[result.label]
    pixels = "1 pixel" if len(result.changed) == 1 else f"{len(result.changed)} pixels"
    if result.generations == 0:
        when = "in the first population"
    elif result.generations == 1:
        when = "after 1 generation"
    else:
        when = f"after {result.generations} generations"
    cost = f"{when}, {result.queries:,} model queries, {result.seconds:.1f} s"
    tracked = result.tracked_class
    before, after = result.probs_before[tracked], result.probs_after[tracked]

    if result.status == "misclassified":
        return "info", (
            f"The model already gets this image wrong (it says **{class_names[result.pred_before]}**, "
            f"the true class is **{label}**), so there is nothing to attack. Pick another image."
        )
    if result.success and result.target is not None:
        return "success", (
            f"Fooled: **{label}** became the target **{class_names[result.target]}** by changing "
            f"{pixels} ({cost})."
        )
    if result.success:
        return "success", (
            f"Fooled: **{label}** became **{class_names[result.pred_after]}** by changing {pixels} "
            f"({cost})."
        )

    goal = f"p({class_names[tracked]})"
    movement = f"the best candidate moved {goal} from {before:.1%} to {after:.1%}"
    if result.status == "stopped":
        return "info", f"Stopped {cost}; {movement}."
    fooled_elsewhere = ""
    if result.target is not None and result.pred_after != result.label:
        fooled_elsewhere = (
            f" The model does misclassify it now (as **{class_names[result.pred_after]}**), but a "
            "targeted attack succeeds only on its target."
        )
    if result.generations < result.config.generations:
        # The search ended early because every candidate had become the same one.
        return "warning", (
            f"Not fooled: every candidate converged on the same pixel change ({cost}), and more "
            f"generations could only repeat it; {movement}.{fooled_elsewhere}"
        )
    return "warning", f"Not fooled within the budget ({cost}); {movement}.{fooled_elsewhere}"


def show_message(kind: str, text: str) -> None:
    icons = {"success": ":material/bolt:", "warning": ":material/shield:", "info": ":material/info:"}
    getattr(st, kind)(text, icon=icons[kind])
