"""Classify: any picture through the active model, as the 32x32 input it receives, with Grad-CAM."""

from __future__ import annotations

import hashlib

import numpy as np
import streamlit as st

from cifarlab.checkpoints import CheckpointError
from cifarlab.evaluate import predict_logits, to_probabilities
from cifarlab.gradcam import GradCamError, grad_cam, overlay
from cifarlab.imageio import (
    DEFAULT_MAX_BYTES,
    FIT_MODES,
    UPLOAD_EXTENSIONS,
    ImageInputError,
    describe,
    load_image_for_model,
)
from ui.common import DataError, enlarge, load_data, page_header, show_error
from ui.markdown import escape_markdown
from ui.reports import (
    choose_checkpoint,
    load_model,
    no_checkpoint_stop,
    readable_checkpoints,
    top_classes_chart,
)

st.set_page_config(page_title="Classify · cifarlab", page_icon=":material/image_search:", layout="wide")

SOURCES = ("Upload an image", "Pick a test image")
FIT_LABELS = {
    "crop": "Centre crop (keep the aspect ratio)",
    "stretch": "Stretch (keep everything, distort)",
    "pad": "Pad (keep everything, add borders)",
}
DISPLAY_SCALE = 8
TOP_K = 5
# Session-state key of the digest of the image that Grad-CAM last explained.
CAM_IMAGE_KEY = "classify_cam_image"


def hex_to_rgb(color: str) -> tuple[int, int, int]:
    color = color.lstrip("#")
    return int(color[0:2], 16), int(color[2:4], 16), int(color[4:6], 16)


def pick_random_test_image(count: int) -> None:
    st.session_state["classify_test_index"] = int(np.random.default_rng().integers(count))


def uploaded_image() -> tuple[np.ndarray, None, str] | None:
    """Draw the upload widgets; return the decoded image, no label, and how it was converted."""
    left, right = st.columns([3, 2], gap="large")
    upload = left.file_uploader(
        "Image file",
        type=list(UPLOAD_EXTENSIONS),
        key="classify_upload",
        help=f"PNG, JPEG, WebP, GIF, BMP or TIFF, any size and colour mode, up to "
        f"{DEFAULT_MAX_BYTES // (1024 * 1024)} MiB.",
    )
    fit = right.radio(
        "Make it square by", FIT_MODES, format_func=FIT_LABELS.get, key="classify_fit"
    )
    background = right.color_picker(
        "Background for transparent pixels", "#FFFFFF", key="classify_background"
    )
    if upload is None:
        st.info(
            "Upload a photo of an airplane, car, bird, cat, deer, dog, frog, horse, ship or truck, "
            "or pick a test image.",
            icon=":material/upload:",
        )
        return None
    try:
        image, info = load_image_for_model(
            upload.getvalue(), background=hex_to_rgb(background), fit=fit
        )
    except ImageInputError as error:
        show_error(error)
        return None
    return image, None, f"**{upload.name}**: {describe(info)}"


def picked_test_image(data) -> tuple[np.ndarray, int, str]:
    """Draw the test-image picker; return the image, its true label and where it comes from."""
    count = len(data.test_labels)
    left, right = st.columns([3, 1], vertical_alignment="bottom")
    index = left.number_input(
        "Test image id", min_value=0, max_value=count - 1, value=0, step=1, key="classify_test_index"
    )
    right.button(
        "Random image",
        key="classify_random",
        icon=":material/casino:",
        on_click=pick_random_test_image,
        args=(count,),
    )
    label = int(data.test_labels[index])
    return data.test_images[index], label, f"Test image {index} of {data.description}."


def draw_prediction(names: list[str], probabilities: np.ndarray, label: int | None) -> None:
    top = np.argsort(-probabilities, kind="stable")[:TOP_K]
    best = int(top[0])
    st.markdown(f"#### {names[best]} · {probabilities[best]:.1%}")
    if label is not None:
        if label == best:
            st.success(f"Correct: this test image is a {names[label]}.", icon=":material/check_circle:")
        else:
            rank = int(np.flatnonzero(np.argsort(-probabilities, kind="stable") == label)[0]) + 1
            st.error(
                f"Wrong: this test image is a {names[label]}, ranked {rank} of {len(names)} "
                f"with {probabilities[label]:.1%}.",
                icon=":material/cancel:",
            )
    highlight = list(top).index(label) if label in top else None
    chart = top_classes_chart([names[index] for index in top], probabilities[top], highlight=highlight)
    st.altair_chart(chart, width="stretch")
    if label is not None:
        st.caption("The true class is orange when it is among the top 5.")


def draw_grad_cam(model, image: np.ndarray, names: list[str], probabilities: np.ndarray) -> None:
    top = [int(index) for index in np.argsort(-probabilities, kind="stable")[:TOP_K]]
    # A new image starts with its own top class, not the class picked for the previous image.
    image_digest = hashlib.sha256(np.ascontiguousarray(image).tobytes()).hexdigest()
    if st.session_state.get(CAM_IMAGE_KEY) != image_digest:
        st.session_state[CAM_IMAGE_KEY] = image_digest
        st.session_state["classify_cam_class"] = top[0]
    explained = st.selectbox(
        "Explain the class",
        top,
        format_func=lambda index: f"{names[index]} ({probabilities[index]:.1%})",
        key="classify_cam_class",
    )
    alpha = st.slider("Heatmap opacity", 0.0, 1.0, 0.5, 0.05, key="classify_cam_alpha")
    try:
        result = grad_cam(model, image, explained)
    except GradCamError as error:
        st.info(escape_markdown(error), icon=":material/info:")
        return
    st.image(overlay(image, result.heatmap, alpha=alpha, scale=DISPLAY_SCALE), output_format="PNG")
    if result.heatmap.max() == 0:
        st.caption(f"No region raised the score of {names[explained]}: every weighted feature map was negative.")
    st.caption(
        f"Bright regions raised the score of **{names[explained]}** most: Grad-CAM weighs the "
        f"{result.layer_size[0]}x{result.layer_size[1]} feature maps of layer `{result.layer_name}` "
        "by their gradients and upsamples the sum to 32x32."
    )


# --------------------------------------------------------------------------------------------
# Page

page_header(
    "Classify",
    "Give the network any picture. It first becomes the 32x32 image below, exactly what the "
    "network receives; then you see the five classes it finds most probable and, for "
    "convolutional networks, which regions raised the score of a class.",
)

infos = readable_checkpoints()
if not infos:
    no_checkpoint_stop()

info = choose_checkpoint("classify_checkpoint", infos)
try:
    loaded = load_model(info.path)
except CheckpointError as error:
    show_error(error)
    st.stop()

source = st.segmented_control(
    "Image", SOURCES, default=SOURCES[0], key="classify_source", label_visibility="collapsed"
)
if source == SOURCES[1]:
    try:
        chosen = picked_test_image(load_data())
    except DataError as error:
        show_error(error)
        st.stop()
else:
    chosen = uploaded_image()
if chosen is None:
    st.stop()
image, label, provenance = chosen

names = list(loaded.meta.get("class_names") or [])
logits = predict_logits(loaded.model, image[None])
probabilities = to_probabilities(logits, "logits")[0][0]

columns = st.columns(3, gap="large")
with columns[0]:
    st.markdown("**What the network sees**")
    st.image(enlarge(image, DISPLAY_SCALE), output_format="PNG")
    st.caption(f"32x32 pixels, enlarged {DISPLAY_SCALE}x without smoothing. {provenance}")
with columns[1]:
    st.markdown("**Top 5 classes**")
    draw_prediction(names, probabilities, label)
with columns[2]:
    st.markdown("**Grad-CAM**")
    draw_grad_cam(loaded.model, image, names, probabilities)
