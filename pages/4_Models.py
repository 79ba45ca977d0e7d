"""Models: every checkpoint with its card and curves; choose the active model, delete, upload."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import streamlit as st

from cifarlab import paths, presets, runs
from cifarlab.checkpoints import (
    CheckpointError,
    delete_checkpoint,
    import_checkpoint,
    list_checkpoints,
    read_meta,
)
from cifarlab.models import ARCHS, ModelError, list_archs, model_card
from ui.common import page_header, page_link, show_error
from ui.markdown import escape_markdown
from ui.training import (
    ACTIVE_CHECKPOINT_KEY,
    CHECKPOINT_COLUMNS,
    checkpoint_row,
    draw_curves,
    draw_epoch_table,
)

st.set_page_config(page_title="Models · cifarlab", page_icon=":material/account_tree:", layout="wide")

# Non-widget keys: Streamlit keeps them across page switches.
SELECTED_KEY = "models_selected_path"
CONFIRM_DELETE_KEY = "models_confirm_delete"
IMPORTED_KEY = "models_imported_uploads"
NOTICE_KEY = "models_notice"


@st.cache_data(show_spinner=False, max_entries=512)
def cached_meta(path: str, modified_ns: int, size: int) -> dict[str, Any] | None:
    """Read a checkpoint's metadata once per file version (path, modification time, size)."""
    try:
        return read_meta(path)
    except CheckpointError:
        return None


def file_meta(path: Path) -> dict[str, Any] | None:
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    return cached_meta(str(path), stat.st_mtime_ns, stat.st_size)


def active_checkpoint() -> str | None:
    """Return the active model's path, forgetting it if its file is gone."""
    active = st.session_state.get(ACTIVE_CHECKPOINT_KEY)
    if active and not Path(active).is_file():
        st.warning(f"The active model {Path(active).name} no longer exists; choose another.")
        del st.session_state[ACTIVE_CHECKPOINT_KEY]
        return None
    return active


def draw_active(active: str | None) -> None:
    if active:
        st.success(
            f"Active model: **{Path(active).name}**, used by the Reports, Classify and Attack "
            "pages.",
            icon=":material/check_circle:",
        )
    else:
        st.info(
            "No active model yet: select one below and press **Use as active model**. The "
            "Reports, Classify and Attack pages work on it.",
            icon=":material/info:",
        )


def draw_table(infos: list[Any], active: str | None) -> None:
    rows = [
        checkpoint_row(info, file_meta(info.path), active=str(info.path) == active)
        for info in infos
    ]
    st.dataframe(rows, hide_index=True, column_config=CHECKPOINT_COLUMNS)
    unreadable = [info for info in infos if info.error]
    for info in unreadable:
        st.warning(f"{escape_markdown(info.path.name)} cannot be read: {escape_markdown(info.error)}", icon=":material/warning:")


def choose_selected(infos: list[Any], active: str | None) -> Any:
    """Draw the checkpoint picker and return the chosen listing entry."""
    paths_listed = [str(info.path) for info in infos]
    selected = st.session_state.get(SELECTED_KEY)
    if selected not in paths_listed:
        selected = active if active in paths_listed else paths_listed[0]
    names = {str(info.path): f"{info.name} ({'shipped' if info.protected else 'yours'})" for info in infos}
    # The picker follows SELECTED_KEY, which an upload or a deletion may have changed.
    st.session_state["models_pick"] = selected
    chosen = st.selectbox(
        "Checkpoint", paths_listed, format_func=names.get, key="models_pick",
        on_change=remember_pick,
    )
    st.session_state[SELECTED_KEY] = chosen
    return infos[paths_listed.index(chosen)]


def remember_pick() -> None:
    st.session_state[SELECTED_KEY] = st.session_state["models_pick"]


def running_checkpoint() -> Path | None:
    active_run = runs.active_run()
    return active_run.checkpoint_path if active_run is not None else None


def draw_actions(info: Any, active: str | None) -> None:
    path = str(info.path)
    training_now = running_checkpoint() == info.path
    use_column, delete_column, _ = st.columns([1, 1, 3])
    if use_column.button(
        "Use as active model", type="primary", key="models_use", icon=":material/check:",
        disabled=path == active or info.error is not None,
        help="already the active model" if path == active else None,
    ):
        st.session_state[ACTIVE_CHECKPOINT_KEY] = path
        st.rerun()

    if info.protected:
        reason = "Shipped checkpoints come with the app and are protected; only yours can be deleted."
    elif training_now:
        reason = "A run is training into this checkpoint; stop it on the Train page first."
    else:
        reason = "Delete this checkpoint with its report and resume state."
    if delete_column.button(
        "Delete", key="models_delete", icon=":material/delete:",
        disabled=info.protected or training_now, help=reason,
    ):
        st.session_state[CONFIRM_DELETE_KEY] = path
    if info.protected:
        st.caption(reason)

    if st.session_state.get(CONFIRM_DELETE_KEY) == path:
        confirm_delete(info)


def confirm_delete(info: Any) -> None:
    with st.container(border=True):
        st.warning(
            f"Delete **{info.path.name}** for good? Its report and resume state go with it.",
            icon=":material/delete_forever:",
        )
        yes, no, _ = st.columns([1, 1, 4])
        if yes.button("Delete for good", type="primary", key="models_delete_confirm"):
            st.session_state.pop(CONFIRM_DELETE_KEY, None)
            try:
                delete_checkpoint(info.path)
            except CheckpointError as error:
                show_error(error)
                return
            if st.session_state.get(ACTIVE_CHECKPOINT_KEY) == str(info.path):
                del st.session_state[ACTIVE_CHECKPOINT_KEY]
            st.session_state.pop(SELECTED_KEY, None)
            st.session_state[NOTICE_KEY] = f"Deleted {info.path.name}."
            st.rerun()
        if no.button("Cancel", key="models_delete_cancel"):
            st.session_state.pop(CONFIRM_DELETE_KEY, None)
            st.rerun()


def draw_card(info: Any, meta: dict[str, Any]) -> None:
    st.markdown("**Model card**")
    try:
        card = model_card(info.arch, **(meta.get("options") or {}))
    except ModelError as error:
        show_error(error)
        return
    reference = (
        f"{card.reference_accuracy:.1%} ({card.reference_source})"
        if card.reference_accuracy is not None
        else card.reference_source
    )
    options = ", ".join(f"{name}={value}" for name, value in card.options.items()) or "none"
    st.markdown(
        f"- **Architecture**: `{card.arch}`, {card.summary}\n"
        f"- **Options**: {options}\n"
        f"- **Parameters**: {card.params:,} ({card.trainable_params:,} trainable)\n"
        f"- **Multiply-accumulates per image**: {card.macs:,}\n"
        f"- **Input**: {card.input_size}x{card.input_size} pixels\n"
        f"- **Published reference accuracy**: {reference}\n"
        f"- **Stored weights**: {meta.get('precision', '?')}, {info.size_bytes / 1e6:.1f} MB"
    )


def draw_metrics(meta: dict[str, Any]) -> None:
    best = meta.get("best") or {}
    test = meta.get("test") or {}
    training = meta.get("training") or {}
    data = meta.get("data") or {}
    columns = st.columns(4)
    columns[0].metric(
        "Best validation accuracy",
        f"{best['val_acc']:.1%}" if best.get("val_acc") is not None else "–",
        help=f"epoch {best.get('epoch')}, picked by {best.get('monitor', 'val_acc')}" if best else None,
    )
    columns[1].metric(
        "Test accuracy",
        f"{test['acc']:.1%}" if test.get("acc") is not None else "–",
        help="measured once on the 10,000 test images; never used to pick the model",
    )
    columns[2].metric(
        "Training time",
        runs.format_duration(training["time_s"]) if training.get("time_s") else "–",
        help=f"on {training.get('device', '?')}, host {training.get('host', '?')}",
    )
    columns[3].metric(
        "Epochs",
        f"{training.get('epochs_completed', '?')}/{training.get('epochs', '?')}" if training else "–",
        help=f"status when saved: {training.get('status', '?')}",
    )
    if data:
        split = data.get("split") or {}
        # train_size counts the offline copies too. Checkpoints saved before offline augmentation
        # existed have neither offline key.
        copies = split.get("offline_copies") or 0
        offline = ""
        if copies:
            offline = (
                f" ({split.get('train_originals', '?')} training-split images and {copies} offline "
                f"augmented {'copy' if copies == 1 else 'copies'} of each)"
            )
        st.caption(
            f"Data: {data.get('source')} ({data.get('description', '')}); split seed "
            f"{split.get('seed', '?')}, {split.get('train_size', '?')} training{offline} and "
            f"{split.get('val_size', '?')} validation images. Saved {meta.get('created', '?')}."
        )


def draw_details(info: Any, active: str | None) -> None:
    meta = file_meta(info.path)
    if meta is None:
        show_error(CheckpointError(info.error or f"{info.path.name} cannot be read"))
        draw_actions(info, active)
        return
    draw_actions(info, active)
    draw_metrics(meta)
    left, right = st.columns([2, 3], gap="large")
    with left:
        draw_card(info, meta)
        with st.expander("Training configuration", icon=":material/settings:"):
            st.json(meta.get("config") or {}, expanded=True)
        with st.expander("Library versions", icon=":material/inventory_2:"):
            st.json(meta.get("versions") or {}, expanded=True)
    with right:
        history = meta.get("history") or []
        st.markdown("**Training curves**")
        if history:
            modified_ns = info.path.stat().st_mtime_ns
            draw_curves(history, None, cache_key=("checkpoint", str(info.path), modified_ns))
            draw_epoch_table(history)
        else:
            st.caption("This checkpoint records no training history.")


def draw_upload() -> None:
    st.subheader("Upload a checkpoint")
    st.caption(
        "A cifarlab checkpoint (.pt) saved by this app or by `python -m cifarlab train`. The "
        "file is loaded with weights only, so nothing in it can run code; a file that is not a "
        "valid checkpoint is rejected and nothing is kept."
    )
    uploaded = st.file_uploader("Checkpoint file", key="models_upload")
    if uploaded is None:
        return
    # The uploader keeps its file across reruns, so each upload is imported once and its
    # outcome remembered by file id.
    imported = st.session_state.setdefault(IMPORTED_KEY, {})
    if uploaded.file_id not in imported:
        try:
            info = import_checkpoint(uploaded.getvalue(), uploaded.name)
        except CheckpointError as error:
            imported[uploaded.file_id] = {"error": str(error)}
        else:
            imported[uploaded.file_id] = {"path": str(info.path)}
            st.session_state[SELECTED_KEY] = str(info.path)
            st.session_state[NOTICE_KEY] = f"Imported {uploaded.name} as {info.path.name}."
            st.rerun()
    outcome = imported[uploaded.file_id]
    if "error" in outcome:
        st.error(f"Not imported: {escape_markdown(outcome['error'])}", icon=":material/error:")
    else:
        st.caption(f"{uploaded.name} was imported as {Path(outcome['path']).name}.")


def draw_not_shipped(infos: list[Any]) -> None:
    """List the architectures that no shipped checkpoint covers, and why none is shipped."""
    shipped = {info.arch for info in infos if info.protected and info.error is None}
    missing = [arch for arch in list_archs() if arch not in shipped]
    if not missing:
        return
    st.subheader("Trainable, not shipped")
    st.caption(
        "These architectures have no checkpoint in the app yet. Each can be trained on the "
        "Train page or with `python -m cifarlab train`; docs/RESULTS.md gives the commands."
    )
    rows = []
    for arch in missing:
        spec = ARCHS[arch]
        estimate = presets.estimate_epoch_seconds(arch, 45_000, "cpu", n_val_images=5_000)
        if spec.family == "transfer":
            reason = (
                "starts from ImageNet weights, which are not bundled: "
                "`python -m cifarlab weights download` fetches them where there is internet access"
            )
        else:
            reason = "not trained yet: the shipped models come from a 2-core CPU, and this one needs a GPU"
        rows.append(
            {
                "architecture": arch,
                "what it is": spec.summary,
                "parameters": model_card(arch).params,
                "epoch on the benchmark CPU": runs.format_duration(estimate.seconds)
                if estimate.seconds is not None
                else "not measured",
                "why not shipped": reason,
            }
        )
    st.dataframe(rows, hide_index=True, width="stretch")
    page_link("pages/3_Train.py", "Train one on the Train page", ":material/model_training:")


# --------------------------------------------------------------------------------------------

page_header(
    "Models",
    "Every trained model: the ones shipped with the app and the ones trained or uploaded here. "
    "Compare their size and accuracy, read each model card and training curves, and choose "
    "the **active model** the other pages use.",
)

notice = st.session_state.pop(NOTICE_KEY, None)
if notice:
    st.toast(notice, icon=":material/check:")

active = active_checkpoint()
draw_active(active)

infos = list_checkpoints()
if not infos:
    st.info(
        f"No checkpoints yet in {paths.SHIPPED_CHECKPOINT_DIR} or {paths.user_checkpoint_dir()}. "
        "Train one on the Train page or upload one below.",
        icon=":material/info:",
    )
else:
    draw_table(infos, active)
    st.subheader("Details")
    selected = choose_selected(infos, active)
    draw_details(selected, active)

draw_not_shipped(infos)
draw_upload()
