"""Augmentation: what each augmentation does to real CIFAR-10 images, and a recipe to train with."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import streamlit as st
import torch

from cifarlab.augment import OPERATIONS, PRESETS, AugmentError, BatchAugmenter, Operation, one_hot_targets
from cifarlab.data import CLASSES, Cifar10, DataError
from cifarlab.imageio import UPLOAD_EXTENSIONS, load_image_for_model
from ui import augment as ui
from ui.common import load_data, page_header, show_error
from ui.markdown import escape_markdown

st.set_page_config(page_title="Augmentation · cifarlab", page_icon=":material/auto_fix_high:", layout="wide")

KEEP = ui.KEEP
VIEWS = ("One image", "Many draws", "All classes", "Recipe")
SOURCES = ("Class", "Index", "Random", "Upload")
# Pixels per image pixel: 32 px images become 256 px in the side-by-side view.
LARGE, SMALL = 8, 4

# Images are enlarged on the server by pixel repetition. If a narrow window makes the browser
# scale one again, nearest-neighbour scaling keeps the pixels square instead of smoothing them.
CRISP_PIXELS_CSS = "<style>[class*='st-key-aug_'] img { image-rendering: pixelated; }</style>"


@dataclass(frozen=True)
class Picked:
    """An image chosen for the preview, with its label and the caption the page shows."""

    image: torch.Tensor  # uint8 (3, 32, 32)
    label: int
    caption: str
    class_rank: int  # position among the training images of its class, for the class grid


@st.cache_resource(show_spinner=False)
def class_ids(_data: Cifar10, source_key: str) -> list[np.ndarray]:
    """Return the training image ids of each class (cached per data source)."""
    return [np.flatnonzero(_data.train_labels == label) for label in range(len(CLASSES))]


def training_image(data: Cifar10, index: int) -> torch.Tensor:
    # The cached arrays are read-only and shared, so the page works on a copy.
    return torch.from_numpy(np.array(data.train_images[index]))


def training_images(data: Cifar10, ids: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(data.train_images[ids])


def source_key(data: Cifar10) -> str:
    return f"{data.source}:{data.description}"


# --------------------------------------------------------------------------------------------
# Image and seed (sidebar)


def pick_random_image(count: int) -> None:
    st.session_state["aug_random_index"] = int(np.random.default_rng().integers(count))


def resample() -> None:
    st.session_state["aug_seed"] = (int(st.session_state.get("aug_seed", 0)) + 1) % 2**31


def picked_by_class(data: Cifar10, ids: list[np.ndarray], class_key: str, rank_key: str, label: str) -> Picked:
    class_name = st.selectbox(f"{label}class".capitalize(), CLASSES, key=class_key, persist_state=KEEP)
    class_label = CLASSES.index(class_name)
    members = ids[class_label]
    st.session_state.setdefault(rank_key, 0)
    if st.session_state[rank_key] >= len(members):
        st.session_state[rank_key] = 0
    rank = int(
        st.number_input(
            f"{label}image of this class".capitalize(), 0, len(members) - 1, step=1, key=rank_key, persist_state=KEEP,
            help="position among the training images of this class",
        )
    )
    index = int(members[rank])
    caption = f"{class_name} · training image {index} (#{rank} of its class)"
    return Picked(training_image(data, index), class_label, caption, rank)


def picked_upload() -> Picked | None:
    upload = st.file_uploader(
        "Image file", type=list(UPLOAD_EXTENSIONS), key="aug_upload",
        help="any size and colour mode; it is converted to RGB and resized to 32x32",
    )
    class_name = st.selectbox(
        "Class for the label", CLASSES, key="aug_upload_class", persist_state=KEEP,
        help="the class mixup, blend and cutmix use for this image's share of the label",
    )
    if upload is None:
        st.info("Upload a picture to augment it.", icon=":material/upload:")
        return None
    # Decoding a large photo takes longer than a preview should, so it is decoded once per file.
    cached = st.session_state.get("aug_upload_decoded")
    if cached is None or cached[0] != upload.file_id:
        try:
            pixels, info = load_image_for_model(upload)
        except ValueError as error:
            st.session_state.pop("aug_upload_decoded", None)
            show_error(error)
            return None
        cached = (upload.file_id, pixels, info)
        st.session_state["aug_upload_decoded"] = cached
    _, pixels, info = cached
    st.caption(f"{info['format']} {info['width']}x{info['height']} {info['mode']}, converted to 32x32 RGB.")
    caption = f"{upload.name} (uploaded, labelled {class_name})"
    return Picked(torch.from_numpy(np.array(pixels)), CLASSES.index(class_name), caption, 0)


def pick_image(data: Cifar10, ids: list[np.ndarray]) -> Picked | None:
    """Draw the image choosers in the sidebar and return the chosen image."""
    st.header("Image", divider="gray")
    st.session_state.setdefault("aug_source", SOURCES[0])
    source = st.segmented_control(
        "Pick an image by", SOURCES, key="aug_source", required=True, persist_state=KEEP
    )
    if source == "Class":
        return picked_by_class(data, ids, "aug_class", "aug_class_rank", "")
    if source == "Index":
        st.session_state.setdefault("aug_index", 0)
        index = int(
            st.number_input("Training image id", 0, data.num_train - 1, step=1, key="aug_index", persist_state=KEEP)
        )
    elif source == "Random":
        if "aug_random_index" not in st.session_state:
            pick_random_image(data.num_train)
        st.button("Pick another image", key="aug_random", on_click=pick_random_image, args=(data.num_train,),
                  icon=":material/casino:")
        index = int(st.session_state["aug_random_index"])
    else:
        return picked_upload()
    label = int(data.train_labels[index])
    rank = int(np.searchsorted(ids[label], index))
    caption = f"{CLASSES[label]} · training image {index}"
    return Picked(training_image(data, index), label, caption, rank)


def draw_seed() -> int:
    st.header("Randomness", divider="gray")
    st.session_state.setdefault("aug_seed", 0)
    seed = int(
        st.number_input(
            "Seed", 0, 2**31 - 1, step=1, key="aug_seed", persist_state=KEEP,
            help="the same seed draws the same parameters, here and in Python",
        )
    )
    st.button("Resample", key="aug_resample", on_click=resample, icon=":material/refresh:",
              help="draw new random parameters (adds 1 to the seed)")
    return seed


def generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# --------------------------------------------------------------------------------------------
# Operation and its parameters


def choose_operation() -> Operation | None:
    """Draw the operation picker and its parameter widgets; return the operation, or None if invalid."""
    st.session_state.setdefault(ui.OPERATION_KEY, "cutout")
    op_name = st.pills(
        "Operation", list(OPERATIONS), format_func=lambda name: OPERATIONS[name].title,
        key=ui.OPERATION_KEY, required=True, persist_state=KEEP,
    )
    op_class = OPERATIONS[op_name]
    st.caption((op_class.__doc__ or "").strip().split("\n\n")[0].replace("\n", " "))
    values = ui.draw_param_widgets(op_class)
    try:
        operation = op_class(**values)
    except AugmentError as error:
        show_error(error)
        operation = None

    left, right, _ = st.columns([1, 1, 3])
    left.button(
        "Add to recipe", key="aug_add_step", icon=":material/add:", disabled=operation is None,
        on_click=ui.add_step, args=(operation.to_dict() if operation else {},),
        help="append this operation with these parameters to the recipe below",
    )
    right.button("Reset parameters", key="aug_reset", icon=":material/restart_alt:",
                 on_click=ui.reset_param_widgets, args=(op_name,))
    return operation


# --------------------------------------------------------------------------------------------
# Views


def random_partners(data: Cifar10, count: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Return ``count`` training images and labels drawn with ``seed``, as mixing partners."""
    ids = np.random.default_rng(seed).choice(data.num_train, size=count, replace=False)
    return training_images(data, ids), torch.from_numpy(data.train_labels[ids].astype(np.int64))


def draw_one_image(operation: Operation, picked: Picked, data: Cifar10, ids: list[np.ndarray], seed: int) -> None:
    if operation.batch_only:
        draw_mixing(operation, picked, data, ids, seed)
        return
    params = operation.sample_params(1, generator(seed))
    augmented = operation.apply(picked.image, params)
    st.caption(f"Image: {picked.caption}")
    original_column, augmented_column, params_column = st.columns([2, 2, 2])
    original_column.image(ui.to_display(picked.image, LARGE), caption="Original", width=LARGE * 32)
    augmented_column.image(ui.to_display(augmented, LARGE), caption=f"{operation.title}, seed {seed}", width=LARGE * 32)
    with params_column:
        st.markdown("**Parameters drawn**")
        st.json(ui.drawn_params(operation, params, 0))
    with st.expander("Equivalent Python", icon=":material/code:"):
        st.code(ui.python_snippet(operation, seed))


def draw_mixing(operation: Operation, picked: Picked, data: Cifar10, ids: list[np.ndarray], seed: int) -> None:
    with st.container(border=True):
        st.markdown("**Second image** (the partner mixed into the first)")
        st.session_state.setdefault("aug_partner_class", CLASSES[5])
        left, right = st.columns(2)
        with left:
            partner_class = st.selectbox("Partner class", CLASSES, key="aug_partner_class", persist_state=KEEP)
        members = ids[CLASSES.index(partner_class)]
        st.session_state.setdefault("aug_partner_rank", 0)
        with right:
            rank = int(st.number_input(
                "Partner image of this class", 0, len(members) - 1, step=1, key="aug_partner_rank", persist_state=KEEP,
            ))
    partner_index = int(members[rank])
    st.caption(f"A: {picked.caption}. B: {partner_class} · training image {partner_index}.")
    images = torch.stack([picked.image, training_image(data, partner_index)])
    labels = torch.tensor([picked.label, CLASSES.index(partner_class)])
    params = operation.sample_params(2, generator(seed))
    params["partner"] = torch.tensor([1, 0])
    mixed = operation.apply(images, params)
    targets = operation.mix_targets(one_hot_targets(labels), params)  # type: ignore[attr-defined]

    first, second, result = st.columns(3)
    first.image(ui.to_display(images[0], LARGE), caption=f"A: {CLASSES[picked.label]}", width=LARGE * 32)
    second.image(ui.to_display(images[1], LARGE), caption=f"B: {partner_class} {partner_index}", width=LARGE * 32)
    result.image(ui.to_display(mixed[0], LARGE), caption=f"{operation.title}, seed {seed}", width=LARGE * 32)

    lam = float(params["lam"][0])
    chart_column, params_column = st.columns([3, 2])
    with chart_column:
        st.metric("lambda (share of A)", f"{lam:.3f}", help="the soft label gives A's class this share and B's the rest")
        st.vega_lite_chart(ui.soft_label_frame(targets[0], CLASSES), ui.soft_label_spec(CLASSES), width="stretch")
        st.caption(f"Soft label: {ui.soft_label_text(targets[0], CLASSES)}")
    with params_column:
        st.markdown("**Parameters drawn for A**")
        st.json(ui.drawn_params(operation, params, 0))
    with st.expander("Equivalent Python", icon=":material/code:"):
        st.code(ui.python_snippet(operation, seed))


def draw_many(operation: Operation, picked: Picked, data: Cifar10, seed: int) -> None:
    st.session_state.setdefault("aug_draws", 16)
    count = st.slider("Draws", 4, 48, step=4, key="aug_draws", persist_state=KEEP)
    copies = picked.image.unsqueeze(0).expand(count, -1, -1, -1)
    if operation.batch_only:
        partners, partner_labels = random_partners(data, count, seed)
        images = torch.cat([copies, partners])
        labels = torch.cat([torch.full((count,), picked.label), partner_labels])
        params = operation.sample_params(2 * count, generator(seed))
        params["partner"][:count] = torch.arange(count, 2 * count)
        mixed = operation.apply(images, params)[:count]
        targets = operation.mix_targets(one_hot_targets(labels), params)[:count]  # type: ignore[attr-defined]
        captions = [ui.soft_label_text(target, CLASSES) for target in targets]
        st.image([ui.to_display(image, SMALL) for image in mixed], caption=captions, width=SMALL * 32)
        st.caption(f"{count} draws of {operation.title} on {picked.caption}, each with a random training image, seed {seed}.")
        return
    augmented = operation.apply(copies, operation.sample_params(count, generator(seed)))
    st.image(ui.mosaic(augmented, columns=8, scale=SMALL))
    st.caption(f"{count} draws of {operation.title} on {picked.caption}, seed {seed}.")


def draw_classes(operation: Operation, picked: Picked, data: Cifar10, ids: list[np.ndarray], seed: int) -> None:
    chosen = [int(members[min(picked.class_rank, len(members) - 1)]) for members in ids]
    images = training_images(data, np.array(chosen))
    params = operation.sample_params(len(chosen), generator(seed))
    augmented = operation.apply(images, params)
    captions = list(CLASSES)
    if operation.batch_only:
        labels = torch.from_numpy(data.train_labels[chosen].astype(np.int64))
        targets = operation.mix_targets(one_hot_targets(labels), params)  # type: ignore[attr-defined]
        captions = [ui.soft_label_text(target, CLASSES) for target in targets]
    for column, original, changed, caption in zip(st.columns(len(CLASSES)), images, augmented, captions):
        column.image(ui.to_display(original, SMALL), width="stretch")
        column.image(ui.to_display(changed, SMALL), caption=caption, width="stretch")
    st.caption(
        f"Top: training image #{picked.class_rank} of each class. Bottom: {operation.title}, seed {seed}"
        + (", mixing the ten images among themselves." if operation.batch_only else ".")
    )


def draw_recipe_steps() -> None:
    recipe = ui.current_recipe()
    if recipe is None or not recipe.operations:
        st.info("The recipe is empty. Add the operation above, or start from a preset.", icon=":material/list:")
        return
    for index, operation in enumerate(recipe.operations):
        with st.container(border=True):
            text, up, down, edit, remove = st.columns([8, 1, 1, 1, 1], vertical_alignment="center")
            settings = ", ".join(f"{key}={value}" for key, value in operation.to_dict().items() if key != "op")
            text.markdown(f"**{index + 1}. {operation.title}**  \n`{settings}`")
            up.button("", key=f"aug_step_up_{index}", icon=":material/arrow_upward:", help="move up",
                      on_click=ui.move_step, args=(index, -1), disabled=index == 0)
            down.button("", key=f"aug_step_down_{index}", icon=":material/arrow_downward:", help="move down",
                        on_click=ui.move_step, args=(index, 1), disabled=index == len(recipe.operations) - 1)
            edit.button("", key=f"aug_step_edit_{index}", icon=":material/edit:", help="load into the editor above",
                        on_click=ui.load_operation_into_widgets, args=(operation.to_dict(),))
            remove.button("", key=f"aug_step_remove_{index}", icon=":material/delete:", help="remove",
                          on_click=ui.remove_step, args=(index,))


def draw_recipe_files() -> None:
    recipe = ui.current_recipe()
    if recipe is not None:
        st.download_button(
            "Export JSON", recipe.to_json(), file_name=f"{recipe.name or 'recipe'}.json", mime="application/json",
            key="aug_export", icon=":material/download:", on_click="ignore",
        )
    upload = st.file_uploader("Import a recipe JSON", type=["json"], key="aug_recipe_file")
    # The uploaded file stays in the widget, so it is imported once per file, not on every rerun.
    if upload is not None and st.session_state.get("aug_recipe_imported") != upload.file_id:
        try:
            imported = ui.import_recipe(upload.getvalue())
        except AugmentError as error:
            show_error(error)
        else:
            st.session_state["aug_recipe_imported"] = upload.file_id
            st.success(f"Imported recipe {imported.name!r} with {len(imported.operations)} steps.")


def draw_recipe_preview(picked: Picked, data: Cifar10, seed: int) -> None:
    recipe = ui.current_recipe()
    if recipe is None:
        return
    st.session_state.setdefault("aug_recipe_draws", 8)
    count = st.slider("Draws of the recipe", 4, 24, step=4, key="aug_recipe_draws", persist_state=KEEP)
    # Mixing steps pair each copy with a random training image, as they would in a shuffled batch.
    partners, partner_labels = random_partners(data, count, seed)
    images = torch.cat([picked.image.unsqueeze(0).expand(count, -1, -1, -1), partners])
    labels = torch.cat([torch.full((count,), picked.label), partner_labels])
    result = BatchAugmenter(recipe).run(images, labels, generator(seed))
    captions = [ui.soft_label_text(target, CLASSES) for target in result.targets[:count]]
    st.image([ui.to_display(image, SMALL) for image in result.images[:count]], caption=captions, width=SMALL * 32)
    st.caption(
        f"{count} draws of the whole recipe on {picked.caption}, seed {seed}. Captions give the soft label "
        "training uses."
    )


def rename_from_widget() -> None:
    ui.rename_recipe(st.session_state["aug_recipe_name"])


def draw_recipe(picked: Picked | None, data: Cifar10, seed: int) -> None:
    error = st.session_state.pop(ui.RECIPE_ERROR_KEY, None)
    if error:
        st.error(escape_markdown(error), icon=":material/error:")
    steps_column, preview_column = st.columns([3, 2], gap="large")
    with steps_column:
        recipe = ui.current_recipe()
        title = f"Recipe {recipe.name!r}" if recipe else "Recipe"
        st.subheader(title)
        draw_recipe_steps()
        preset_column, load_column, clear_column = st.columns([2, 1, 1], vertical_alignment="bottom")
        st.session_state.setdefault("aug_preset", "standard")
        preset = preset_column.selectbox("Preset", list(PRESETS), key="aug_preset", persist_state=KEEP)
        load_column.button("Load preset", key="aug_load_preset", on_click=ui.load_preset, args=(preset,))
        clear_column.button("Clear", key="aug_clear_recipe", on_click=ui.clear_recipe, disabled=recipe is None)
        if recipe is not None:
            # Follow the recipe when a preset or an import replaced it; edits rename it.
            if st.session_state.get("aug_recipe_name") != recipe.name:
                st.session_state["aug_recipe_name"] = recipe.name
            st.text_input("Recipe name", key="aug_recipe_name", max_chars=60, on_change=rename_from_widget)
            st.success(
                "Saved in this session: the Train page offers it as \"the recipe built on the Augmentation page\".",
                icon=":material/check_circle:",
            )
            with st.expander("Equivalent Python", icon=":material/code:"):
                st.code("from cifarlab.augment import *\n\nrecipe = " + recipe.python_call()
                        + "\naugment = BatchAugmenter(recipe)\nimages, soft_targets = augment(uint8_batch, labels, generator)")
        draw_recipe_files()
    with preview_column:
        if picked is not None:
            draw_recipe_preview(picked, data, seed)


def draw_view(view: str, operation: Operation, picked: Picked, data: Cifar10, ids: list[np.ndarray], seed: int) -> None:
    if view == "One image":
        draw_one_image(operation, picked, data, ids, seed)
    elif view == "Many draws":
        draw_many(operation, picked, data, seed)
    else:
        draw_classes(operation, picked, data, ids, seed)


# --------------------------------------------------------------------------------------------
# Page


def main() -> None:
    page_header(
        "Augmentation",
        "Training sees each image many times; augmentation shows it a slightly different picture every "
        "time, so the network learns the object rather than the pixels. Pick an operation, move its "
        "sliders and watch what changes. Every draw comes from a seed, so the same seed gives the same "
        "picture here and in Python.",
    )
    try:
        data = load_data()
    except DataError as error:
        show_error(error)
        st.stop()
    ids = class_ids(data, source_key(data))

    with st.sidebar:
        picked = pick_image(data, ids)
        seed = draw_seed()

    operation = choose_operation()
    st.session_state.setdefault("aug_view", VIEWS[0])
    view = st.segmented_control("View", VIEWS, key="aug_view", required=True, persist_state=KEEP)

    st.markdown(CRISP_PIXELS_CSS, unsafe_allow_html=True)
    with st.container(key="aug_view_area"):
        if view == "Recipe":
            draw_recipe(picked, data, seed)
        elif operation is not None and picked is not None:
            try:
                draw_view(view, operation, picked, data, ids, seed)
            except AugmentError as error:
                show_error(error)


main()
