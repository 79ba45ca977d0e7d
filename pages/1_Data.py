"""Data: the source in use, images per class, a gallery, the split and why it comes first."""

from __future__ import annotations

import altair as alt
import numpy as np
import pandas as pd
import streamlit as st

from cifarlab import data as cifar
from ui.common import (
    current_data_source,
    enlarge,
    load_data,
    page_header,
    set_data_source,
    show_error,
)

st.set_page_config(
    page_title="Data · cifarlab", page_icon=":material/photo_library:", layout="wide"
)

SOURCE_LABELS = {
    "bundled": "Bundled JPEG archive (offline)",
    "canonical": "Official CIFAR-10 (download)",
    "batches": "A cifar-10-batches-py folder",
    "folder": "An image folder or archive",
}


def choose_source() -> None:
    """Let the student switch the data source used by every page."""
    chosen = current_data_source()
    expanded = chosen["source"] != "bundled"
    with st.expander("Data source", expanded=expanded, icon=":material/folder_open:"):
        source = st.radio(
            "Source",
            cifar.SOURCES,
            index=cifar.SOURCES.index(chosen["source"]),
            format_func=SOURCE_LABELS.get,
            horizontal=True,
            key="data_source_choice",
        )
        path = None
        if source in ("batches", "folder"):
            hint = (
                "the extracted cifar-10-batches-py folder"
                if source == "batches"
                else "a folder (or .tar.gz/.zip) with train/<class>/* and test/<class>/*"
            )
            path = st.text_input(
                "Path on the server", value=chosen["path"] or "", key="data_path", help=hint
            ).strip() or None
        if source == "canonical":
            st.caption(f"Official data set: {cifar.canonical_status()}.")
            if st.button("Download the official archive (170 MB)", key="data_download"):
                download_canonical()

        if st.button("Use this source", type="primary", key="data_use_source"):
            try:
                load_data(source, path)
            except cifar.DataError as error:
                show_error(error)
            else:
                set_data_source(source, path)
                st.rerun()


def download_canonical() -> None:
    bar = st.progress(0.0, text="Connecting...")

    def report(stage: str, done: int, total: int) -> None:
        text = f"{stage}: {done / 1e6:.0f} of {total / 1e6:.0f} MB"
        bar.progress(min(done / max(total, 1), 1.0), text=text)

    try:
        folder = cifar.download_cifar10(progress=report)
    except cifar.DataError as error:
        bar.empty()
        show_error(error)
    else:
        bar.progress(1.0, text=f"Ready in {folder}")


def draw_split(data: cifar.Cifar10) -> cifar.Split | None:
    st.subheader("Training, validation and test images")
    left, right = st.columns(2)
    val_size = left.number_input(
        "Validation images",
        min_value=0,
        max_value=data.num_train - 1,
        value=min(5000, data.num_train // 10),
        step=500,
        key="data_val_size",
        help="carved out of the training images, the same share from each class",
    )
    seed = right.number_input("Split seed", 0, 2**31 - 1, 0, key="data_split_seed")
    try:
        split = cifar.split_train_val(data.train_labels, val_size=int(val_size), seed=int(seed))
    except cifar.DataError as error:
        show_error(error)
        return None

    columns = st.columns(3)
    columns[0].metric("Training", f"{split.train_size:,}", help="what the network learns from")
    columns[1].metric("Validation", f"{split.val_size:,}", help="picks the model and the epoch")
    columns[2].metric("Test", f"{data.num_test:,}", help="measured once, at the end")
    st.caption(
        f"Split recorded in every checkpoint as seed {split.seed}, {split.val_size:,} validation "
        f"images, fingerprint `{split.fingerprint}`."
    )
    draw_counts(data, split)
    return split


def draw_counts(data: cifar.Cifar10, split: cifar.Split) -> None:
    counts = {
        "training": np.bincount(data.train_labels[split.train_idx], minlength=len(data.classes)),
        "validation": np.bincount(data.train_labels[split.val_idx], minlength=len(data.classes)),
        "test": data.class_counts("test"),
    }
    table = pd.DataFrame(
        [
            {"class": name, "set": set_name, "images": int(values[label])}
            for set_name, values in counts.items()
            for label, name in enumerate(data.classes)
        ]
    )
    chart = (
        alt.Chart(table, title="Images per class")
        .mark_bar()
        .encode(
            x=alt.X("class:N", sort=list(data.classes), title=None, axis=alt.Axis(labelAngle=-30)),
            xOffset=alt.XOffset("set:N", sort=list(counts)),
            y=alt.Y("images:Q", title="images"),
            color=alt.Color("set:N", sort=list(counts), title=None),
            tooltip=["class", "set", alt.Tooltip("images:Q", format=",")],
        )
        .properties(height=280)
    )
    st.altair_chart(chart, width="stretch")


def draw_gallery(data: cifar.Cifar10) -> None:
    st.subheader("Gallery")
    controls = st.columns([2, 2, 1, 1], vertical_alignment="bottom")
    which = controls[0].segmented_control(
        "Images from", ["training", "test"], default="training", key="data_gallery_split"
    ) or "training"
    per_class = controls[1].slider("Images per class", 1, 12, 8, key="data_per_class")
    if "data_gallery_seed" not in st.session_state:
        st.session_state["data_gallery_seed"] = 0
    if controls[3].button("Shuffle", icon=":material/shuffle:", key="data_shuffle"):
        st.session_state["data_gallery_seed"] += 1
    seed = controls[2].number_input("Seed", 0, 2**31 - 1, key="data_gallery_seed")

    images = data.train_images if which == "training" else data.test_images
    labels = data.train_labels if which == "training" else data.test_labels
    generator = np.random.default_rng(int(seed))
    with st.container(key="data_gallery"):
        for label, name in enumerate(data.classes):
            ids = np.flatnonzero(labels == label)
            picked = np.sort(generator.choice(ids, size=min(per_class, len(ids)), replace=False))
            st.markdown(f"**{name}**")
            st.image(
                [enlarge(images[index], 3) for index in picked],
                caption=[f"#{index}" for index in picked],
                width=96,
                output_format="PNG",
            )


def draw_enlarged(data: cifar.Cifar10) -> None:
    st.subheader("One image, pixel by pixel")
    left, right = st.columns([1, 2], gap="large")
    with left:
        which = st.radio("From", ["training", "test"], horizontal=True, key="data_zoom_split")
        images = data.train_images if which == "training" else data.test_images
        labels = data.train_labels if which == "training" else data.test_labels
        index = st.number_input(
            "Image index", 0, len(images) - 1, 0, key="data_zoom_index",
            help="the # shown under each gallery image",
        )
        scale = st.slider("Zoom", 2, 16, 10, key="data_zoom_scale")
    label = int(labels[index])
    with right:
        st.image(
            enlarge(images[index], scale),
            caption=f"{data.classes[label]} (class {label}), {which} image #{index}, 32x32 pixels",
            output_format="PNG",
        )


def draw_leak_explanation() -> None:
    st.subheader("Why the split comes before augmentation")
    st.markdown(
        """
Augmentation makes new training images from old ones: a flipped, shifted or cropped copy of a
photo still shows the same object. **If you augment the whole data set first and split it
afterwards**, copies of one photo land on both sides of the split. The network then trains on a
near-duplicate of a test image, and the test accuracy measures how well it remembers, not how
well it generalizes. Accuracy looks better than it is.

cifarlab does it the other way round:

1. The 10,000 official test images are set aside. No model is trained or selected on them.
2. A validation set is carved out of the 50,000 training images by image id, the same share from
   each class, with a recorded seed. Model choice and early stopping use it.
3. Augmentation runs on training batches only, fresh at every epoch. Validation and test images
   are never augmented.
"""
    )


page_header(
    "Data",
    "CIFAR-10 has 60,000 colour photos of 32x32 pixels in ten classes: 50,000 for training and "
    "10,000 for testing. Look at them before training anything.",
)
choose_source()
try:
    dataset = load_data()
except cifar.DataError as error:
    show_error(error)
    st.stop()

st.markdown(f"Source in use: **{dataset.source}**, {dataset.description}.")
draw_split(dataset)
draw_gallery(dataset)
draw_enlarged(dataset)
draw_leak_explanation()
