"""Train: configure a run, start it in the background, and watch its curves move."""

from __future__ import annotations

from typing import Any

import streamlit as st
import torch

from cifarlab import presets, runs
from cifarlab.augment import PRESETS as RECIPE_PRESETS
from cifarlab.augment import Recipe
from cifarlab.models import ARCHS, ModelError, list_archs, model_card
from cifarlab.models.transfer import TORCHVISION_MODELS, weights_path
from cifarlab.train import MONITORS, OPTIMIZERS, SCHEDULES, TrainConfig
from cifarlab.train.config import MAX_OFFLINE_COPIES
from ui.common import DataError, current_data_source, load_data, page_header, page_link, show_error
from ui.markdown import escape_markdown
from ui.training import (
    ACTIVE_CHECKPOINT_KEY,
    describe_config,
    draw_log,
    draw_outcome,
    draw_run_details,
    state_badge,
)

st.set_page_config(page_title="Train · cifarlab", page_icon=":material/model_training:", layout="wide")

# The run this browser session shows; a non-widget key, so it survives page switches.
SHOWN_RUN_KEY = "train_shown_run"
CUSTOM = "custom"
FROM_AUGMENTATION_PAGE = "augmentation page"
# Every open Train page redraws the active run this often; a whole class watching must leave
# the CPU to the trainer.
REFRESH_SECONDS = 2.0

# Every widget keeps its value across page switches ("session" scope, Streamlit >= 1.67).
KEEP = "session"

DEFAULTS = TrainConfig(arch="mlp").to_dict()


# --------------------------------------------------------------------------------------------
# Presets


def apply_preset() -> None:
    """Copy the chosen preset's fields into the form's widgets (an on_change callback)."""
    key = st.session_state["train_preset"]
    if key == CUSTOM:
        return
    fields = {**DEFAULTS, **presets.TRAIN_PRESETS[key].config().to_dict()}
    st.session_state["train_arch"] = fields["arch"]
    for name in ("optimizer", "lr", "momentum", "nesterov", "weight_decay", "batch_size",
                 "epochs", "schedule", "label_smoothing"):
        st.session_state[f"train_{name}"] = fields[name]
    st.session_state["train_recipe_choice"] = fields["recipe"].get("name", "standard")
    # A preset names its whole augmentation ("raw images" or "augmented"), so it turns offline
    # copies off.
    st.session_state["train_offline_copies"] = 0
    # Architecture options go back to the builder's defaults.
    for option in ARCHS[fields["arch"]].options:
        st.session_state.pop(option_key(fields["arch"], option.name), None)


def preset_changes(config: TrainConfig) -> list[str]:
    """Return 'field: preset -> chosen' for each preset field the form has changed."""
    key = st.session_state.get("train_preset", CUSTOM)
    if key == CUSTOM:
        return []
    expected = presets.TRAIN_PRESETS[key].config().to_dict()
    chosen = config.to_dict()
    changed = []
    for name in [*presets.TRAIN_PRESETS[key].fields, "offline_copies"]:
        if expected[name] != chosen[name]:
            before = expected[name].get("name") if name == "recipe" else expected[name]
            after = chosen[name].get("name") if name == "recipe" else chosen[name]
            changed.append(f"{name}: {before} → {after}")
    return changed


# --------------------------------------------------------------------------------------------
# The form


def init(key: str, value: Any) -> None:
    """Give widget ``key`` its first value through the session state.

    Widgets then take no ``value`` argument, so a preset can set them through the session state
    without Streamlit warning about two sources of one value.
    """
    st.session_state.setdefault(key, value)


def option_key(arch: str, name: str) -> str:
    return f"train_option_{arch}_{name}"


def draw_arch_options(arch: str) -> dict[str, Any]:
    """Draw one widget per builder option of ``arch`` and return the chosen options."""
    options = {}
    for option in ARCHS[arch].options:
        key = option_key(arch, option.name)
        label = option.name.replace("_", " ")
        if option.kind is bool:
            init(key, option.default)
            options[option.name] = st.checkbox(label, help=option.help, key=key, persist_state=KEEP)
        elif option.choices is not None:
            init(key, option.default)
            options[option.name] = st.selectbox(
                label, option.choices, help=option.help, key=key, persist_state=KEEP
            )
        elif option.kind is int:
            init(key, option.default)
            options[option.name] = st.number_input(
                label, step=1,
                min_value=int(option.minimum) if option.minimum is not None else None,
                max_value=int(option.maximum) if option.maximum is not None else None,
                help=option.help, key=key, persist_state=KEEP,
            )
        elif option.kind is float:
            init(key, float(option.default))
            options[option.name] = st.number_input(
                label, step=0.05, min_value=option.minimum, max_value=option.maximum,
                help=option.help, key=key, persist_state=KEEP,
            )
        elif option.kind is list:
            init(key, ", ".join(str(value) for value in option.default))
            text = st.text_input(
                label, help=f"{option.help}; comma-separated whole numbers", key=key,
                persist_state=KEEP,
            )
            options[option.name] = parse_int_list(text)
        else:
            init(key, str(option.default))
            options[option.name] = st.text_input(label, help=option.help, key=key, persist_state=KEEP)
    return options


def parse_int_list(text: str) -> Any:
    """Return the comma-separated whole numbers of ``text``, or ``text`` for the model to reject."""
    try:
        return [int(part) for part in text.replace(";", ",").split(",") if part.strip()]
    except ValueError:
        return text


def draw_model_section() -> tuple[str, dict[str, Any]]:
    st.markdown("##### Model")
    init("train_arch", DEFAULTS["arch"])
    arch = st.selectbox(
        "Architecture", list_archs(), key="train_arch", persist_state=KEEP,
        help="From the fully connected network to transfer learning",
    )
    st.caption(ARCHS[arch].summary)
    options = draw_arch_options(arch)
    try:
        card = model_card(arch, **options)
    except ModelError as error:
        show_error(error)
    else:
        st.caption(
            f"{card.params:,} parameters ({card.trainable_params:,} trainable), "
            f"{card.macs / 1e6:,.1f} M multiply-accumulates per image, input {card.input_size}px"
        )
    return arch, options


def draw_optimizer_section() -> dict[str, Any]:
    st.markdown("##### Optimization")
    fields: dict[str, Any] = {}
    for name in ("optimizer", "lr", "momentum", "nesterov", "weight_decay", "batch_size",
                 "epochs", "schedule", "step_size_epochs", "step_gamma", "label_smoothing"):
        init(f"train_{name}", DEFAULTS[name])
    fields["optimizer"] = st.selectbox(
        "Optimizer", OPTIMIZERS, key="train_optimizer", persist_state=KEEP,
        help="sgd uses momentum (Nesterov by default); adam and adamw adapt the step per weight",
    )

    fields["lr"] = st.number_input(
        "Learning rate", min_value=1e-6, max_value=10.0, step=1e-3,
        format="%.5f", key="train_lr", persist_state=KEEP,
        help="peak learning rate, reached after the warm-up of the one-cycle schedule",
    )
    if fields["optimizer"] == "sgd":
        fields["momentum"] = st.number_input(
            "Momentum", min_value=0.0, max_value=0.99, step=0.05,
            key="train_momentum", persist_state=KEEP,
        )
        fields["nesterov"] = st.checkbox(
            "Nesterov momentum", key="train_nesterov",
            persist_state=KEEP,
        )
    fields["weight_decay"] = st.number_input(
        "Weight decay", min_value=0.0, max_value=1.0, step=1e-4, format="%.5f", key="train_weight_decay", persist_state=KEEP,
        help="on conv and linear weights only: L2 for sgd and adam, decoupled for adamw",
    )

    fields["batch_size"] = st.number_input(
        "Batch size", min_value=1, max_value=4096, step=32,
        key="train_batch_size", persist_state=KEEP, help="images per optimizer step",
    )
    fields["epochs"] = st.number_input(
        "Epochs", min_value=1, max_value=500, step=1,
        key="train_epochs", persist_state=KEEP, help="passes over the training images",
    )

    fields["schedule"] = st.selectbox(
        "Learning-rate schedule", SCHEDULES, key="train_schedule", persist_state=KEEP,
        help="onecycle warms up, then anneals to zero. cosine anneals from the start. step "
        "multiplies by a factor every few epochs. none keeps the rate constant.",
    )
    if fields["schedule"] == "step":
        fields["step_size_epochs"] = st.number_input(
            "Epochs between decays", min_value=1, key="train_step_size_epochs", persist_state=KEEP,
        )
        fields["step_gamma"] = st.number_input(
            "Decay factor", min_value=0.01, max_value=1.0, step=0.05, key="train_step_gamma", persist_state=KEEP,
        )
    fields["label_smoothing"] = st.number_input(
        "Label smoothing", min_value=0.0, max_value=0.5, step=0.05, key="train_label_smoothing", persist_state=KEEP,
        help="share of each target spread evenly over all ten classes",
    )
    return fields


def recipe_label(choice: str) -> str:
    if choice == FROM_AUGMENTATION_PAGE:
        return "the recipe built on the Augmentation page"
    if choice == "none":
        return "none (raw images)"
    return f"preset: {choice}"


def draw_data_section() -> dict[str, Any]:
    st.markdown("##### Data and augmentation")
    fields: dict[str, Any] = {}
    page_recipe = st.session_state.get("recipe")
    choices = list(RECIPE_PRESETS)
    if page_recipe:
        choices.insert(0, FROM_AUGMENTATION_PAGE)
    default_choice = FROM_AUGMENTATION_PAGE if page_recipe else "standard"
    if st.session_state.get("train_recipe_choice") not in (None, *choices):
        # The Augmentation page's recipe was cleared since it was chosen here.
        st.session_state["train_recipe_choice"] = "standard"
    init("train_recipe_choice", default_choice)
    choice = st.selectbox(
        "Augmentation recipe", choices, format_func=recipe_label, key="train_recipe_choice", persist_state=KEEP,
        help="applied to training batches only, never to validation or test images",
    )
    recipe = page_recipe if choice == FROM_AUGMENTATION_PAGE else RECIPE_PRESETS[choice].to_dict()
    try:
        operations = Recipe.from_dict(recipe).to_dict()["operations"]
    except ValueError as error:
        show_error(error)
    else:
        names = ", ".join(operation["op"].replace("_", " ") for operation in operations)
        st.caption(f"Operations: {names or 'none'}")
    fields["recipe"] = recipe
    fields.update(draw_offline_augmentation(page_recipe))

    init("train_use_subset", False)
    init("train_subset", 5_000)
    init("train_val_size", DEFAULTS["val_size"])
    init("train_seed", DEFAULTS["seed"])
    use_subset = st.checkbox(
        "Train on a subset", key="train_use_subset", persist_state=KEEP,
        help="a class-balanced subset of the training split, for quick classroom runs",
    )
    if use_subset:
        # The subset comes out of the training split: the training images less the validation ones.
        max_subset = max(10, training_split_size(int(st.session_state["train_val_size"])))
        if st.session_state["train_subset"] > max_subset:
            st.session_state["train_subset"] = max_subset
        fields["train_subset"] = st.number_input(
            "Training images", min_value=10, max_value=max_subset, step=500,
            key="train_subset", persist_state=KEEP,
            help=f"up to {max_subset:,}, the size of the training split",
        )
    else:
        fields["train_subset"] = None
    fields["val_size"] = st.number_input(
        "Validation images", min_value=0, max_value=25_000, step=500,
        key="train_val_size", persist_state=KEEP,
        help="held out of the training images to pick the best epoch; 0 turns validation off",
    )
    fields["seed"] = st.number_input(
        "Seed", min_value=0, step=1, key="train_seed", persist_state=KEEP,
        help="the same seed on the CPU gives the same result",
    )
    return fields


def draw_offline_augmentation(page_recipe: dict[str, Any] | None) -> dict[str, Any]:
    """Draw the offline augmentation controls and return ``offline_copies`` and ``offline_recipe``."""
    st.markdown("**Offline augmentation**")
    init("train_offline_copies", DEFAULTS["offline_copies"])
    copies = st.number_input(
        "Augmented copies per training image (0 = off)", min_value=0, max_value=MAX_OFFLINE_COPIES,
        step=1, key="train_offline_copies", persist_state=KEEP,
        help="each copy adds the whole training split once more to every epoch, so an epoch "
        "takes about (1 + copies) times as long",
    )
    st.caption(
        "The recipe above makes new random variants of every batch in every epoch. Offline "
        "copies are made once before training and stay the same in every epoch, as in reports "
        "that enlarge the data set first. Only training images are copied, never validation or "
        "test images."
    )
    if not copies:
        return {"offline_copies": 0, "offline_recipe": None}

    # "none" would only duplicate the originals, which the config rejects.
    choices = [name for name, preset in RECIPE_PRESETS.items() if preset.operations]
    if page_recipe:
        choices.insert(0, FROM_AUGMENTATION_PAGE)
    if st.session_state.get("train_offline_recipe_choice") not in (None, *choices):
        # The Augmentation page's recipe was cleared since it was chosen here.
        st.session_state["train_offline_recipe_choice"] = "standard"
    init("train_offline_recipe_choice", FROM_AUGMENTATION_PAGE if page_recipe else "standard")
    choice = st.selectbox(
        "Recipe that makes the copies", choices, format_func=recipe_label,
        key="train_offline_recipe_choice", persist_state=KEEP,
    )
    recipe = page_recipe if choice == FROM_AUGMENTATION_PAGE else RECIPE_PRESETS[choice].to_dict()
    return {"offline_copies": int(copies), "offline_recipe": recipe}


def draw_advanced_section() -> dict[str, Any]:
    fields: dict[str, Any] = {}
    with st.expander("Early stopping, device and test", icon=":material/tune:"):
        fields["monitor"] = st.selectbox(
            "Pick the best epoch by", MONITORS, key="train_monitor", persist_state=KEEP,
            format_func={"val_acc": "validation accuracy", "val_loss": "validation loss"}.get,
        )
        init("train_patience", 0)
        patience = st.number_input(
            "Early stopping patience (epochs, 0 = off)", min_value=0, max_value=100,
            key="train_patience", persist_state=KEEP,
            help="stop when the metric above has not improved for this many epochs",
        )
        fields["patience"] = patience or None
        devices = ["auto", "cpu"] + (["cuda"] if torch.cuda.is_available() else [])
        fields["device"] = st.selectbox(
            "Device", devices, key="train_device", persist_state=KEEP,
            help="auto picks CUDA, then Apple's MPS, then the CPU",
        )
        init("train_evaluate_test", True)
        fields["evaluate_test"] = st.checkbox(
            "Measure test accuracy at the end", key="train_evaluate_test",
            persist_state=KEEP,
            help="one pass over the test images with the best model, for the record; it never "
            "picks the model",
        )
    return fields


def resolved_device(device: str) -> str:
    if device != "auto":
        return device
    if torch.cuda.is_available():
        return "cuda"
    if torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def training_split_size(val_size: int) -> int:
    """Return the training images left after ``val_size`` are held out (50,000 less without data)."""
    try:
        data = load_data()
    except DataError:
        return max(0, 50_000 - val_size)
    return max(0, data.num_train - val_size)


def training_image_count(fields: dict[str, Any]) -> int | None:
    """Return the number of training-split images before offline copies, or None without data."""
    if fields.get("train_subset"):
        return int(fields["train_subset"])
    try:
        data = load_data()
    except DataError:
        return None
    return max(0, data.num_train - int(fields["val_size"]))


def draw_estimate(config: TrainConfig) -> None:
    originals = training_image_count(config.to_dict())
    if originals is None:
        st.caption("No time estimate: the data set could not be loaded.")
        return
    images = originals * (1 + config.offline_copies)
    estimate = presets.estimate_epoch_seconds(
        config.arch, images, resolved_device(config.device), n_val_images=config.val_size
    )
    columns = st.columns([1, 1, 3])
    columns[0].metric(
        "Training images per epoch", f"{images:,}",
        help=f"{originals:,} training images and {config.offline_copies} offline copies of each"
        if config.offline_copies else None,
    )
    if estimate.seconds is None:
        columns[1].metric("Expected time per epoch", "unknown")
    else:
        columns[1].metric(
            "Expected time per epoch",
            runs.format_duration(estimate.seconds),
            help=f"whole run: about {runs.format_duration(estimate.seconds * config.epochs)}",
        )
    columns[2].caption(estimate.note)


def missing_weights(arch: str, options: dict[str, Any]) -> str | None:
    """Return the path of ImageNet weights that ``arch`` needs but the cache lacks, or None."""
    if arch not in TORCHVISION_MODELS or not options.get("pretrained", False):
        return None
    path = weights_path(TORCHVISION_MODELS[arch][1])
    return None if path.is_file() else str(path)


def draw_new_run_form() -> None:
    st.subheader("New run")
    preset_keys = [CUSTOM, *presets.TRAIN_PRESETS]
    preset = st.selectbox(
        "Preset", preset_keys, key="train_preset", persist_state=KEEP,
        on_change=apply_preset,
        format_func=lambda key: "custom settings" if key == CUSTOM else presets.TRAIN_PRESETS[key].title,
        help="the classic classroom experiments: each architecture on raw and on augmented images",
    )
    if preset != CUSTOM:
        st.caption(presets.TRAIN_PRESETS[preset].description)

    model_column, optimizer_column, data_column = st.columns(3, gap="large")
    with model_column:
        arch, options = draw_model_section()
    with optimizer_column:
        fields = draw_optimizer_section()
    with data_column:
        fields.update(draw_data_section())
        fields.update(draw_advanced_section())

    source = current_data_source()
    fields.update(arch=arch, arch_options=options, data_source=source["source"], data_path=source["path"])
    try:
        config = TrainConfig.from_dict(fields)
    except ValueError as error:
        show_error(error)
        st.button("Start training", type="primary", key="train_start", disabled=True)
        return

    changed = preset_changes(config)
    if changed:
        st.caption("Changed from the preset: " + "; ".join(changed))
    draw_estimate(config)

    weights = missing_weights(arch, options)
    if weights is not None:
        st.warning(
            f"{arch} with pretrained=true needs torchvision's ImageNet weights at {weights}, "
            "which this machine does not have. Copy the file there, or untick pretrained to "
            "train from scratch.",
            icon=":material/download:",
        )
    if st.button("Start training", type="primary", key="train_start", disabled=weights is not None,
                 icon=":material/play_arrow:"):
        start(config)


def start(config: TrainConfig) -> None:
    try:
        run = runs.start_run(config)
    except runs.RunActiveError as error:
        st.session_state[SHOWN_RUN_KEY] = error.active.run_id
        st.error(f"Not started: {escape_markdown(error)}.", icon=":material/block:")
        return
    except runs.RunError as error:
        show_error(error)
        return
    st.session_state[SHOWN_RUN_KEY] = run.run_id
    st.rerun()


# --------------------------------------------------------------------------------------------
# The run being shown


def shown_run() -> runs.Run | None:
    """Return the run to show: the active one, else this session's choice, else the newest."""
    active = runs.active_run()
    if active is not None:
        st.session_state[SHOWN_RUN_KEY] = active.run_id
        return active
    run_id = st.session_state.get(SHOWN_RUN_KEY)
    if run_id is not None:
        try:
            return runs.get_run(run_id)
        except runs.RunError:
            st.session_state.pop(SHOWN_RUN_KEY, None)
    listed = runs.list_runs()
    return listed[0] if listed else None


@st.fragment(run_every=REFRESH_SECONDS)
def draw_live_run(run_id: str) -> None:
    """Redraw the active run's progress every few seconds without rerunning the whole page."""
    run = runs.get_run(run_id)
    if not run.is_running:
        # The run ended: redraw the whole page, with its outcome and the form's Start button.
        st.rerun()
    progress = runs.read_progress(run)

    buttons = st.container(horizontal=True)
    if run.stop_requested:
        buttons.button("Stopping…", key="train_stop", disabled=True)
        if buttons.button("Kill now", key="train_kill", icon=":material/dangerous:",
                          help="end the trainer at once; it keeps its last checkpoint and can "
                          "be resumed"):
            runs.stop_run(run, force=True)
            st.rerun()
    elif buttons.button("Stop", key="train_stop", icon=":material/stop:",
                        help="stop after the current batch and keep the last good checkpoint"):
        runs.stop_run(run)
        st.rerun(scope="fragment")
    draw_run_details(run, progress)


def draw_run(run: runs.Run) -> None:
    title_column, badge_column = st.columns([5, 1])
    title_column.subheader(f"Run {run.run_id}")
    with badge_column:
        state_badge(run)
    st.markdown(describe_config(run.config))

    if run.is_running:
        draw_live_run(run.run_id)
        return

    progress = runs.read_progress(run)
    draw_outcome(run, progress)
    actions = st.container(horizontal=True, vertical_alignment="center")
    if run.can_resume and actions.button("Resume", type="primary", key="train_resume",
                                         icon=":material/resume:"):
        try:
            runs.resume_run(run)
        except runs.RunError as error:
            show_error(error)
        else:
            st.rerun()
    if run.checkpoint_path.is_file():
        if actions.button("Use as active model", key="train_use_model", icon=":material/check:"):
            st.session_state[ACTIVE_CHECKPOINT_KEY] = str(run.checkpoint_path)
            st.toast(f"{run.checkpoint_path.name} is now the active model")
        page_link("pages/4_Models.py", "Open the Models page", ":material/account_tree:", container=actions)
    draw_run_details(run, progress)
    if run.state != runs.FAILED:
        draw_log(run)


def draw_earlier_runs(current: runs.Run | None) -> None:
    listed = runs.list_runs()
    if len(listed) < 2 and (current is not None or not listed):
        return
    with st.expander(f"All runs ({len(listed)})", icon=":material/history:"):
        st.dataframe(
            [
                {
                    "run": run.run_id,
                    "state": run.state,
                    "arch": run.arch,
                    "epochs": run.config.get("epochs"),
                    "checkpoint": run.checkpoint_path.name if run.checkpoint_path.is_file() else "",
                }
                for run in listed
            ],
            hide_index=True,
        )
        ids = [run.run_id for run in listed]
        chosen = st.selectbox(
            "Show run", ids, index=ids.index(current.run_id) if current else 0, key="train_pick_run"
        )
        if st.button("Show", key="train_show_run"):
            st.session_state[SHOWN_RUN_KEY] = chosen
            st.rerun()


# --------------------------------------------------------------------------------------------

page_header(
    "Train",
    "Pick an architecture and its hyperparameters, or one of the classic experiments, and "
    "start a run. It trains in a background process on this server: you can switch pages or "
    "reload, and everyone watching sees the same curves. One run trains at a time.",
)

current = shown_run()
if current is not None:
    with st.container(border=True):
        draw_run(current)
draw_new_run_form()
draw_earlier_runs(current)
