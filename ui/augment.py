"""Streamlit helpers of the Augmentation page: parameter widgets, image grids, the recipe in the session.

Widgets are generated from each operation's `ParamSpec`, so every parameter of every operation
gets a slider or input with the range the core validates. Widget keys are
``aug_param_<operation>_<parameter>`` and keep their values across page switches.
"""

from __future__ import annotations

import copy
import functools
from typing import Any, Mapping

import altair as alt
import numpy as np
import pandas as pd
import streamlit as st
import torch

from cifarlab.augment import (
    OPERATIONS,
    PRESETS,
    AugmentError,
    AutoAugment,
    CutMix,
    Cutout,
    Operation,
    ParamSpec,
    RandAugment,
    RandomCrop,
    Recipe,
    TrivialAugmentWide,
)
from cifarlab.augment.base import to_uint8
from ui.common import enlarge

# Widget values survive page switches ("session" scope, Streamlit >= 1.67).
KEEP = "session"

RECIPE_KEY = "recipe"
OPERATION_KEY = "aug_op"


# --------------------------------------------------------------------------------------------
# Parameter widgets


def param_key(op_name: str, param_name: str) -> str:
    return f"aug_param_{op_name}_{param_name}"


def color_to_hex(color: tuple[float, float, float]) -> str:
    """Return an RGB triple in ``[0, 1]`` as ``"#rrggbb"`` for ``st.color_picker``."""
    return "#" + "".join(f"{round(channel * 255):02x}" for channel in color)


def _widget_default(spec: ParamSpec) -> Any:
    return color_to_hex(spec.default) if spec.kind == "color" else spec.default


def init_param_widgets(op_class: type[Operation]) -> None:
    """Give each parameter widget of ``op_class`` its default through the session state.

    The widgets then take no ``value`` argument, so the reset button can set them without
    Streamlit warning about two sources of one value.
    """
    for spec in op_class.param_specs():
        st.session_state.setdefault(param_key(op_class.name, spec.name), _widget_default(spec))


def reset_param_widgets(op_name: str) -> None:
    """Set every parameter widget of one operation back to its default (a button callback)."""
    for spec in OPERATIONS[op_name].param_specs():
        st.session_state[param_key(op_name, spec.name)] = _widget_default(spec)


def load_operation_into_widgets(step: Mapping[str, Any]) -> None:
    """Select a recipe step's operation and copy its parameters into the widgets (a callback)."""
    operation = OPERATIONS[step["op"]]
    st.session_state[OPERATION_KEY] = operation.name
    for spec in operation.param_specs():
        value = step.get(spec.name, spec.default)
        if spec.kind == "color":
            value = color_to_hex(tuple(value))
        st.session_state[param_key(operation.name, spec.name)] = value


def _label(spec: ParamSpec) -> str:
    return f"{spec.name} ({spec.unit})" if spec.unit else spec.name


def draw_param_widget(op_name: str, spec: ParamSpec) -> Any:
    """Draw the widget for one parameter and return its value in the core's form."""
    key = param_key(op_name, spec.name)
    label = _label(spec)
    if spec.kind == "bool":
        return st.toggle(label, help=spec.help, key=key, persist_state=KEEP)
    if spec.kind == "choice":
        return st.selectbox(label, spec.choices, help=spec.help, key=key, persist_state=KEEP)
    if spec.kind == "color":
        return st.color_picker(label, help=spec.help, key=key, persist_state=KEEP)
    if spec.kind == "int":
        low, high, step = int(spec.low), int(spec.high), int(spec.step or 1)
        if spec.widget == "number":
            return st.number_input(label, low, high, step=step, help=spec.help, key=key, persist_state=KEEP)
        return st.slider(label, low, high, step=step, help=spec.help, key=key, persist_state=KEEP)
    low, high, step = float(spec.low), float(spec.high), float(spec.step or 0.01)
    if spec.widget == "number":
        return st.number_input(
            label, low, high, step=step, format="%.2f", help=spec.help, key=key, persist_state=KEEP
        )
    return st.slider(label, low, high, step=step, help=spec.help, key=key, persist_state=KEEP)


def draw_param_widgets(op_class: type[Operation], columns: int = 3) -> dict[str, Any]:
    """Draw one widget per parameter of ``op_class`` in a grid and return the values by name."""
    init_param_widgets(op_class)
    specs = op_class.param_specs()
    values = {}
    for start in range(0, len(specs), columns):
        for column, spec in zip(st.columns(columns), specs[start : start + columns]):
            with column:
                values[spec.name] = draw_param_widget(op_class.name, spec)
    return values


# --------------------------------------------------------------------------------------------
# Images


def to_display(image: torch.Tensor | np.ndarray, scale: int = 8) -> np.ndarray:
    """Return one ``(3, H, W)`` image as an enlarged ``(H*scale, W*scale, 3)`` uint8 array with crisp pixels."""
    if isinstance(image, torch.Tensor):
        image = to_uint8(image.detach().cpu()).numpy()
    return enlarge(np.asarray(image), scale)


def mosaic(images: torch.Tensor, columns: int, scale: int = 4, gap: int = 4) -> np.ndarray:
    """Return a grid of ``(N, 3, H, W)`` images as one enlarged ``uint8`` picture with white gaps.

    One picture instead of N keeps a rerun fast: Streamlit encodes and sends one PNG.
    """
    pictures = to_uint8(images.detach().cpu()).numpy()
    count, _, height, width = pictures.shape
    rows = -(-count // columns)
    cell_height, cell_width = height * scale, width * scale
    canvas = np.full(
        (rows * cell_height + (rows - 1) * gap, columns * cell_width + (columns - 1) * gap, 3), 255, np.uint8
    )
    for index in range(count):
        row, column = divmod(index, columns)
        top, left = row * (cell_height + gap), column * (cell_width + gap)
        canvas[top : top + cell_height, left : left + cell_width] = enlarge(pictures[index], scale)
    return canvas


# --------------------------------------------------------------------------------------------
# Parameters drawn, and the equivalent Python code


def _plain(value: torch.Tensor) -> Any:
    """Return a tensor entry as a plain Python value, rounded for reading."""
    value = value.tolist()
    if isinstance(value, float):
        return round(value, 4)
    if isinstance(value, list):
        return [round(item, 4) if isinstance(item, float) else item for item in value]
    return value


def drawn_params(operation: Operation, params: Mapping[str, torch.Tensor], index: int) -> dict[str, Any]:
    """Return the parameters image ``index`` got, with what they mean where the raw value is not enough."""
    shown: dict[str, Any] = {}
    if isinstance(operation, RandomCrop):
        top, left = int(params["top"][index]), int(params["left"][index])
        shown["top"], shown["left"] = top, left
        shown["content shift (right, down) px"] = [operation.padding - left, operation.padding - top]
        return shown
    if isinstance(operation, Cutout):
        top, left, bottom, right = operation.boxes(params)[index].tolist()
        shown["center (y, x)"] = [int(params["center_y"][index]), int(params["center_x"][index])]
        shown["erased"] = bool(params["erase"][index])
        shown["box rows"] = f"[{top}, {bottom})"
        shown["box columns"] = f"[{left}, {right})"
        shown["pixels changed"] = (bottom - top) * (right - left)
        return shown
    if isinstance(operation, (AutoAugment, RandAugment, TrivialAugmentWide)):
        if "sub_policy" in params:
            shown["sub-policy"] = int(params["sub_policy"][index])
        shown["steps"] = operation.describe(params, index)
        return shown
    for name, value in params.items():
        if name == "noise":
            shown["noise (standard normal, shape)"] = list(value.shape[1:])
            continue
        shown[name] = _plain(value[index])
    if isinstance(operation, CutMix):
        shown["box area px"] = (shown["bottom"] - shown["top"]) * (shown["right"] - shown["left"])
    return shown


def python_snippet(operation: Operation, seed: int, *, partner_index: int | None = None) -> str:
    """Return the Python code that reproduces the single-image preview with cifarlab.augment."""
    name = type(operation).__name__
    lines = ["import torch", f"from cifarlab.augment import {name}", "", f"operation = {operation.python_call()}"]
    lines.append(f"generator = torch.Generator().manual_seed({seed})")
    if operation.batch_only:
        lines += [
            "# image_a, image_b: uint8 tensors of shape (3, 32, 32); labels: their classes",
            "images = torch.stack([image_a, image_b])",
            "params = operation.sample_params(2, generator)",
            f"params['partner'] = torch.tensor([{partner_index or 1}, 0])  # mix a with b and b with a",
            "mixed = operation.apply(images, params)",
            "soft_targets = operation.mix_targets(one_hot_targets(labels), params)  # from cifarlab.augment",
        ]
    else:
        lines += [
            "# image: a uint8 tensor of shape (3, 32, 32), or a PIL image",
            "params = operation.sample_params(1, generator)",
            "augmented = operation.apply(image, params)",
        ]
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# Soft labels


def soft_label_frame(targets: torch.Tensor, classes: tuple[str, ...]) -> pd.DataFrame:
    """Return one soft target ``(num_classes,)`` as rows of ``class`` and ``share``."""
    return pd.DataFrame({"class": list(classes), "share": [round(float(value), 4) for value in targets]})


@functools.lru_cache(maxsize=4)
def _soft_label_spec(classes: tuple[str, ...]) -> dict:
    chart = (
        alt.Chart(soft_label_frame(torch.zeros(len(classes)), classes), height=220)
        .mark_bar()
        .encode(
            x=alt.X("class:N", sort=list(classes), title=None, axis=alt.Axis(labelAngle=-45, labelOverlap=False)),
            y=alt.Y("share:Q", scale=alt.Scale(domain=[0, 1]), title="share of the label"),
            color=alt.condition("datum.share > 0", alt.value("#e4572e"), alt.value("#bbbbbb")),
            tooltip=["class", alt.Tooltip("share:Q", format=".3f")],
        )
    )
    spec = chart.to_dict()
    spec.pop("data", None)
    spec.pop("datasets", None)
    return spec


def soft_label_spec(classes: tuple[str, ...]) -> dict:
    """Return the Vega-Lite spec of the soft-label bar chart, without data, for ``st.vega_lite_chart``.

    The chart is written with Altair, but building and validating an Altair chart takes about
    0.1 s (Altair 5 on a 2-core CPU), most of a preview rerun. So the spec is built once and
    each rerun only passes the ten new shares.
    """
    return copy.deepcopy(_soft_label_spec(tuple(classes)))


def soft_label_text(targets: torch.Tensor, classes: tuple[str, ...]) -> str:
    """Return a soft target as text, largest share first, e.g. ``"dog 0.75 + cat 0.25"``."""
    order = torch.argsort(targets, descending=True).tolist()
    parts = [f"{classes[index]} {float(targets[index]):.2f}" for index in order if float(targets[index]) > 0]
    return " + ".join(parts)


# --------------------------------------------------------------------------------------------
# The recipe in the session


def current_recipe() -> Recipe | None:
    """Return the recipe kept in ``st.session_state["recipe"]``, or None if there is none or it is invalid."""
    data = st.session_state.get(RECIPE_KEY)
    if not data:
        return None
    try:
        return Recipe.from_dict(data)
    except AugmentError:
        return None


def save_recipe(recipe: Recipe) -> None:
    st.session_state[RECIPE_KEY] = recipe.to_dict()


RECIPE_ERROR_KEY = "aug_recipe_error"


def _steps() -> list[dict]:
    recipe = current_recipe()
    return [operation.to_dict() for operation in recipe.operations] if recipe else []


def _recipe_name() -> str:
    recipe = current_recipe()
    return recipe.name if recipe and recipe.name not in PRESETS else "custom"


def _save_steps(steps: list[dict]) -> None:
    """Save steps as the session's recipe, or keep an invalid combination's message for the page.

    Callbacks run before the page, so an exception here would reach the browser as a traceback.
    """
    try:
        save_recipe(Recipe.from_dict({"name": _recipe_name(), "operations": steps}))
    except AugmentError as error:
        st.session_state[RECIPE_ERROR_KEY] = str(error)


def add_step(step: dict) -> None:
    """Append an operation, in its dict form, to the session's recipe (a button callback)."""
    _save_steps([*_steps(), step])


def move_step(index: int, offset: int) -> None:
    """Swap step ``index`` with its neighbour ``index + offset`` (a button callback)."""
    steps = _steps()
    target = index + offset
    if 0 <= index < len(steps) and 0 <= target < len(steps):
        steps[index], steps[target] = steps[target], steps[index]
        _save_steps(steps)


def remove_step(index: int) -> None:
    steps = _steps()
    if 0 <= index < len(steps):
        del steps[index]
        _save_steps(steps)


def load_preset(name: str) -> None:
    save_recipe(PRESETS[name])


def clear_recipe() -> None:
    st.session_state.pop(RECIPE_KEY, None)


def rename_recipe(name: str) -> None:
    recipe = current_recipe()
    if recipe is not None:
        save_recipe(Recipe(recipe.operations, name=name.strip() or "custom"))


def import_recipe(text: bytes | str) -> Recipe:
    """Parse a recipe JSON file and make it the session's recipe; raise `AugmentError` if invalid."""
    recipe = Recipe.from_json(text)
    save_recipe(recipe)
    return recipe
