"""Attack: fool a network by changing a few pixels, live, and measure its robustness honestly."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import streamlit as st
import torch

from cifarlab.attack import (
    TARGET_MODES,
    AttackConfig,
    AttackError,
    attack_image,
    attack_many,
    predict_logits,
    random_pixel_baseline,
    sample_indices,
)
from cifarlab.checkpoints import CheckpointError
from cifarlab.data import CLASSES
from cifarlab.evaluate.compare import recipe_summary
from cifarlab.imageio import UPLOAD_EXTENSIONS, ImageInputError, load_image_for_model
from ui.attack import (
    Job,
    changes_frame,
    checkpoint_label,
    choose_checkpoint,
    confidence_chart,
    describe_result,
    draw_live_job,
    load_model,
    marked_image,
    marked_pair,
    no_checkpoint_stop,
    png_bytes,
    probability_chart,
    rates_chart,
    readable_checkpoints,
    show_image,
    show_message,
    start_job,
)
from ui.common import DataError, load_data, page_header, show_error

st.set_page_config(page_title="Attack · cifarlab", page_icon=":material/bolt:", layout="wide")

SINGLE_JOB = "attack_job"
BATCH_JOB = "attack_batch_job"
PICK_MODES = ("By class", "By index", "Random", "Upload")
GOALS = ("Untargeted: any wrong class", "Targeted: one chosen class")
# Each pair is 264 px wide (two 32 px images at 4x); three fit a column of the 1,400 px layout.
GALLERY_COLUMNS = 3
GALLERY_LIMIT = 24


# --------------------------------------------------------------------------------------------
# One image, live


@st.cache_data(max_entries=16, show_spinner=False)
def decode_upload(data: bytes) -> tuple[np.ndarray, dict]:
    return load_image_for_model(data)


def choose_image(data, model, class_names: list[str]) -> tuple[np.ndarray, int, int | None, str] | None:
    """Draw the image choice; return ``(image, label, test index or None, description)``."""
    mode = st.radio("Image", PICK_MODES, horizontal=True, key="attack_pick")
    labels = data.test_labels

    if mode == "By class":
        name = st.selectbox("Class", class_names, key="attack_class")
        members = np.flatnonzero(labels == class_names.index(name))
        rank = st.slider(f"Which {name} of the test set", 0, len(members) - 1, 0, key="attack_class_rank")
        index = int(members[rank])
    elif mode == "By index":
        index = int(st.number_input("Test image index", 0, len(labels) - 1, 0, key="attack_index"))
    elif mode == "Random":
        if "attack_random_index" not in st.session_state or st.button(
            "Pick another random image", key="attack_random", icon=":material/casino:"
        ):
            st.session_state["attack_random_index"] = int(np.random.default_rng().integers(len(labels)))
        index = st.session_state["attack_random_index"]
    else:
        upload = st.file_uploader("Your picture", type=list(UPLOAD_EXTENSIONS), key="attack_upload")
        if upload is None:
            st.caption("Any photo works; it is cropped to a square and shrunk to 32x32 pixels.")
            return None
        try:
            image, info = decode_upload(upload.getvalue())
        except ImageInputError as error:
            show_error(error)
            return None
        predicted = int(predict_logits(model, torch.from_numpy(image)[None], batch_size=1)[0].argmax())
        choices = ["the model's prediction"] + class_names
        answer = st.selectbox(
            "True class of your picture",
            choices,
            key="attack_upload_label",
            help="The attack pushes the prediction away from this class. With the model's own "
            "prediction, it tries to make the model change its mind.",
        )
        label = predicted if answer == choices[0] else class_names.index(answer)
        return image, label, None, f"your picture {upload.name} ({'; '.join(info['steps']) or 'used as is'})"

    image = np.array(data.test_images[index])
    return image, int(labels[index]), index, f"test image {index}"


def draw_clean_prediction(model, image: np.ndarray, label: int, class_names: list[str]) -> None:
    probabilities = torch.softmax(predict_logits(model, torch.from_numpy(image)[None], batch_size=1)[0], dim=0)
    top = torch.topk(probabilities, 3)
    guesses = ", ".join(f"{class_names[int(k)]} {float(p):.0%}" for p, k in zip(top.values, top.indices))
    show_image(marked_image(image, []), caption=f"True class: {class_names[label]}. The model says: {guesses}.")
    if int(top.indices[0]) != label:
        st.caption(":orange[The model already misclassifies this image; the attack will not run on it.]")


def attack_settings(label: int, class_names: list[str]) -> tuple[AttackConfig | None, int | None]:
    """Draw the attack's settings; return the configuration (None if invalid) and the target."""
    pixels = st.slider("Pixels to change", 1, 5, 1, key="attack_pixels")
    left, right = st.columns(2)
    popsize = left.number_input(
        "Population", 4, 2000, 400, step=10, key="attack_popsize", help="Candidates per generation; Su, Vargas and Sakurai use 400."
    )
    generations = right.number_input(
        "Maximum generations", 0, 1000, 100, key="attack_generations", help="Su, Vargas and Sakurai use 100."
    )
    goal = st.radio("Goal", GOALS, key="attack_goal", horizontal=True)
    target = None
    if goal == GOALS[1]:
        others = [name for index, name in enumerate(class_names) if index != label]
        # The key names the true class, so a new image never keeps a target equal to its class.
        target_name = st.selectbox("Target class", others, key=f"attack_target_{label}")
        target = class_names.index(target_name)
    seed = st.number_input("Seed", 0, 2**31 - 1, 0, key="attack_seed", help="The same seed gives the same search.")
    try:
        config = AttackConfig(pixels=pixels, popsize=int(popsize), generations=int(generations), seed=int(seed))
    except AttackError as error:
        show_error(error)
        return None, target
    st.caption(
        f"At most {config.max_queries:,} model queries: {config.popsize} candidates in each of up to "
        f"{config.generations + 1} populations. The search stops at the first success, or when "
        "every candidate has become the same one. A candidate proposed again is not sent to the "
        "model again, so it counts as one query."
    )
    return config, target


def start_single_attack(loaded, info, image, label, image_id, description, config, target, class_names) -> None:
    settings = {
        "model": checkpoint_label(info),
        "image": description,
        "image_id": image_id,
        "label": label,
        "target": target,
        "generations": config.generations,
        "tracked": class_names[target if target is not None else label],
        "class_names": class_names,
    }
    model = loaded.model

    def work(job: Job):
        def progress(record: dict) -> None:
            job.history.append(record["confidence"])
            job.latest = record

        return attack_image(
            model, image, label, target=target, config=config, image_id=image_id, callback=progress, stop=job.stop
        )

    start_job(SINGLE_JOB, "single", settings, work)


def draw_single_progress(job: Job) -> None:
    settings = job.settings
    record = job.latest
    total = max(settings["generations"], 1)
    if record is None:
        st.progress(0.0, text=f"Evaluating the first population... {job.elapsed:.0f} s")
        return
    text = (
        f"Generation {record['generation']} of {settings['generations']} · best p({settings['tracked']}) = "
        f"{record['confidence']:.1%} · {record['queries']:,} queries · {job.elapsed:.0f} s"
    )
    st.progress(min(record["generation"] / total, 1.0), text=text)
    st.altair_chart(confidence_chart(job.history, settings["tracked"], settings["generations"]), width="stretch")


def draw_single_result(job: Job) -> None:
    settings = job.settings
    st.subheader("Result")
    st.caption(f"{settings['image']} · {settings['model']}")
    if job.error:
        show_error(ValueError(job.error))
        return
    result = job.result
    class_names = settings["class_names"]
    show_message(*describe_result(result, class_names))
    if result.status == "misclassified":
        return

    original_column, adversarial_column, chart_column = st.columns([1, 1, 2])
    with original_column:
        show_image(
            marked_image(result.original, result.changed),
            caption=f"Original: {class_names[result.pred_before]} ({result.probs_before[result.pred_before]:.0%})",
        )
    with adversarial_column:
        show_image(
            marked_image(result.adversarial, result.changed),
            caption=f"Adversarial: {class_names[result.pred_after]} ({result.probs_after[result.pred_after]:.0%})",
        )
    with chart_column:
        marked = {class_names[result.label]: "true"}
        if result.target is not None:
            marked[class_names[result.target]] = "target"
        st.altair_chart(
            probability_chart(class_names, result.probs_before, result.probs_after, marked=marked), width="stretch"
        )

    if result.changed:
        st.markdown("**Changed pixels** (row and column from the top left, 0 to 31)")
        st.dataframe(changes_frame(result.changed), hide_index=True, width="content")
    st.altair_chart(
        confidence_chart(result.confidence_history, settings["tracked"], result.config.generations), width="stretch"
    )

    source = "upload" if settings["image_id"] is None else f"test{settings['image_id']}"
    name = f"{source}-adversarial-{class_names[result.pred_after]}"
    left, right = st.columns(2)
    left.download_button(
        "Download the adversarial image (32x32 PNG)",
        png_bytes(result.adversarial),
        file_name=f"{name}.png",
        mime="image/png",
        key="attack_download",
        on_click="ignore",
        icon=":material/download:",
        help="Exactly the image the model classified, pixel for pixel.",
    )
    right.download_button(
        "Download it enlarged with the circles (256x256 PNG)",
        png_bytes(marked_image(result.adversarial, result.changed)),
        file_name=f"{name}-enlarged.png",
        mime="image/png",
        key="attack_download_enlarged",
        on_click="ignore",
        icon=":material/download:",
    )


def single_image_tab(loaded, info, data, class_names: list[str]) -> None:
    job: Job | None = st.session_state.get(SINGLE_JOB)
    running = job is not None and job.running
    left, right = st.columns([2, 3], gap="large")
    with left:
        chosen = choose_image(data, loaded.model, class_names)
        if chosen is not None:
            image, label, image_id, description = chosen
            draw_clean_prediction(loaded.model, image, label, class_names)
    with right:
        if chosen is None:
            st.info("Upload a picture to attack it.", icon=":material/upload:")
        else:
            config, target = attack_settings(label, class_names)
            clicked = st.button(
                "Run the attack",
                type="primary",
                key="attack_run",
                disabled=running or config is None,
                icon=":material/bolt:",
            )
            if clicked and config is not None:
                start_single_attack(loaded, info, image, label, image_id, description, config, target, class_names)
                job = st.session_state[SINGLE_JOB]
                running = True
        if running:
            draw_live_job(SINGLE_JOB, draw_single_progress)

    if job is not None and not running:
        draw_single_result(job)


# --------------------------------------------------------------------------------------------
# Many images: success rate


def batch_settings(infos, active_info) -> dict | None:
    by_path = {str(info.path): info for info in infos}
    chosen = st.multiselect(
        "Models to compare on the same images",
        list(by_path),
        default=[str(active_info.path)],
        format_func=lambda path: checkpoint_label(by_path[path]),
        key="attack_batch_models",
        help="For example the same network trained with and without cutout.",
    )
    first, second, third = st.columns(3)
    count = first.number_input("Test images", 1, 1000, 10, key="attack_batch_n")
    seed = second.number_input("Seed", 0, 2**31 - 1, 0, key="attack_batch_seed", help="Picks the images, targets and searches.")
    pixels = third.slider("Pixels to change", 1, 5, 1, key="attack_batch_pixels")
    popsize = first.number_input("Population", 4, 2000, 400, step=10, key="attack_batch_popsize")
    generations = second.number_input("Maximum generations", 0, 1000, 100, key="attack_batch_generations")
    trials = third.number_input(
        "Random-pixel tries per image",
        0,
        100_000,
        400,
        step=100,
        key="attack_batch_baseline",
        help="The baseline: set the same number of pixels to random colours this many times and "
        "count how often the prediction changes. 0 skips it.",
    )

    targeted = st.toggle("Targeted", key="attack_batch_targeted")
    target_mode = "random"
    if targeted:
        target_mode = st.radio(
            "Targets",
            TARGET_MODES,
            format_func={"random": "one random other class per image (seeded)", "all": "all nine other classes"}.get,
            horizontal=True,
            key="attack_batch_target_mode",
        )

    if not chosen:
        st.warning("Choose at least one model.")
        return None
    try:
        config = AttackConfig(pixels=pixels, popsize=int(popsize), generations=int(generations), seed=int(seed))
    except AttackError as error:
        show_error(error)
        return None
    searches = int(count) * (9 if targeted and target_mode == "all" else 1) * len(chosen)
    st.caption(
        f"The images are the first {count} of a permutation of the test set drawn with seed {seed}. "
        f"At most {searches * config.max_queries:,} model queries in all; most searches stop earlier."
    )
    return {
        "paths": chosen,
        "names": [by_path[path].name for path in chosen],
        "count": int(count),
        "config": config,
        "trials": int(trials),
        "targeted": targeted,
        "target_mode": target_mode,
    }


def start_batch_attack(settings: dict, data) -> None:
    models = [load_model(path) for path in settings["paths"]]
    images, labels = data.test_images, data.test_labels
    config = settings["config"]

    def work(job: Job):
        indices = sample_indices(len(labels), settings["count"], config.seed)
        outcomes = []
        for number, (name, loaded) in enumerate(zip(settings["names"], models)):
            if job.stop.is_set():
                break

            def progress(record: dict, name: str = name, number: int = number) -> None:
                job.latest = {**record, "model": name, "model_number": number}

            summary = attack_many(
                loaded.model,
                images,
                labels,
                indices,
                config=config,
                targeted=settings["targeted"],
                target_mode=settings["target_mode"],
                num_classes=len(loaded.meta.get("class_names") or CLASSES),
                callback=progress,
                stop=job.stop,
            )
            baseline = None
            if settings["trials"] and not job.stop.is_set():
                job.latest = {"event": "baseline", "model": name, "model_number": number}
                distinct = list(dict.fromkeys(indices))
                baseline = random_pixel_baseline(
                    loaded.model, images[distinct], labels[distinct], config.pixels, settings["trials"], config.seed
                )
            recipe, _ = recipe_summary(loaded.meta)
            outcomes.append({"name": name, "arch": loaded.meta.get("arch"), "recipe": recipe, "summary": summary, "baseline": baseline})
        return {"indices": indices, "models": outcomes}

    start_job(BATCH_JOB, "batch", settings, work)


def draw_batch_progress(job: Job) -> None:
    settings = job.settings
    record = job.latest or {}
    models = len(settings["names"])
    number = record.get("model_number", 0)
    name = record.get("model", settings["names"][0])
    if record.get("event") == "baseline":
        text = f"Model {number + 1} of {models} ({name}): random-pixel baseline..."
        fraction = (number + 1) / models
    elif record.get("event") in ("generation", "image"):
        done, total = record["done"], max(record["total"], 1)
        fraction = (number + done / total) / models
        text = f"Model {number + 1} of {models} ({name}): search {min(done + 1, total)} of {total}"
        if record.get("event") == "generation":
            text += f", generation {record['generation']} of {record['max_generations']}"
    else:
        text, fraction = "Checking the clean predictions...", 0.0
    st.progress(min(fraction, 1.0), text=f"{text} · {job.elapsed:.0f} s")


def batch_frame(outcomes: list[dict]) -> pd.DataFrame:
    rows = []
    for outcome in outcomes:
        summary, baseline = outcome["summary"], outcome["baseline"]
        rows.append(
            {
                "model": outcome["name"],
                "arch": outcome["arch"],
                "augmentation": outcome["recipe"],
                "images": summary.n_images,
                "correct": summary.n_correct,
                "fooled": summary.n_fooled,
                "clean accuracy": summary.clean_accuracy,
                "attack success rate": summary.success_rate,
                "accuracy under attack": summary.accuracy_under_attack,
                "mean queries": None if summary.mean_queries is None else round(summary.mean_queries),
                "random pixels fooled": baseline.fooled_rate if baseline else None,
                "complete": summary.complete,
            }
        )
    return pd.DataFrame(rows)


def draw_gallery(summary, class_names: list[str]) -> None:
    successes = summary.successes()
    if not successes:
        st.caption("No successful attack on this model.")
        return
    shown = successes[:GALLERY_LIMIT]
    if len(successes) > len(shown):
        st.caption(f"The first {len(shown)} of {len(successes)} successful attacks.")
    columns = st.columns(GALLERY_COLUMNS)
    for position, result in enumerate(shown):
        with columns[position % GALLERY_COLUMNS]:
            caption = (
                f"#{result.image_id}: {class_names[result.label]} → {class_names[result.pred_after]} "
                f"({len(result.changed)} px, {result.queries:,} queries)"
            )
            show_image(marked_pair(result.original, result.adversarial, result.changed), caption=caption)


def draw_batch_result(job: Job, class_names: list[str]) -> None:
    st.subheader("Results")
    if job.error:
        show_error(ValueError(job.error))
        return
    outcomes = job.result["models"]
    if not outcomes:
        st.info("Stopped before the first model was attacked.", icon=":material/info:")
        return
    config = job.settings["config"]
    frame = batch_frame(outcomes)
    st.dataframe(
        frame,
        hide_index=True,
        column_config={
            name: st.column_config.NumberColumn(format="percent")
            for name in ("clean accuracy", "attack success rate", "accuracy under attack", "random pixels fooled")
        }
        | {"mean queries": st.column_config.NumberColumn(format="localized")},
    )
    goal = "reached its target class" if job.settings["targeted"] else "changed class"
    st.caption(
        f"Success rate: images whose prediction {goal}, over the correctly classified distinct images "
        "(misclassified images are not attacked). Accuracy under attack = (correct − fooled) / images. "
        f"{config.pixels} pixel(s), population {config.popsize}, up to {config.generations} generations. "
        "Random pixels fooled: the share of correct images that at least one random try changed."
    )
    if not frame["complete"].all():
        st.warning(
            "The run was stopped: rates cover the images whose attack finished, and accuracy under "
            "attack is unknown.",
            icon=":material/pause_circle:",
        )
    st.altair_chart(rates_chart(frame), width="stretch")

    names = [outcome["name"] for outcome in outcomes]
    shown = st.selectbox("Gallery of successful attacks for", names, key="attack_gallery_model") if len(names) > 1 else names[0]
    draw_gallery(outcomes[names.index(shown)]["summary"], class_names)

    document = {
        "indices": job.result["indices"],
        "models": [
            {
                "name": outcome["name"],
                "summary": outcome["summary"].to_dict(),
                "baseline": outcome["baseline"].to_dict() if outcome["baseline"] else None,
            }
            for outcome in outcomes
        ],
    }
    st.download_button(
        "Download every attack as JSON",
        json.dumps(document, indent=1),
        file_name="attacks.json",
        mime="application/json",
        key="attack_batch_download",
        on_click="ignore",
        icon=":material/download:",
    )


def many_images_tab(infos, active_info, data, class_names: list[str]) -> None:
    st.markdown(
        "Attack a sample of test images and count honestly: an image the model already gets "
        "wrong is not attacked, each image counts once, and a targeted attack counts only when "
        "it reaches its target. The random-pixel baseline shows how much of the effect is the "
        "search and how much is luck."
    )
    job: Job | None = st.session_state.get(BATCH_JOB)
    running = job is not None and job.running
    settings = batch_settings(infos, active_info)
    clicked = st.button(
        "Attack the images",
        type="primary",
        key="attack_batch_run",
        disabled=running or settings is None,
        icon=":material/bolt:",
    )
    if clicked and settings is not None:
        try:
            start_batch_attack(settings, data)
        except CheckpointError as error:
            show_error(error)
        else:
            job = st.session_state[BATCH_JOB]
            running = True

    if running:
        draw_live_job(BATCH_JOB, draw_batch_progress)
    elif job is not None:
        draw_batch_result(job, class_names)


# --------------------------------------------------------------------------------------------
# Page


page_header(
    "One-pixel attack",
    "Change one pixel (or up to five) and watch a network change its mind. Differential "
    "evolution (Su, Vargas and Sakurai, 2019) proposes a population of candidate pixels, "
    "each with a position and a colour, and keeps those that lower the model's confidence in "
    "the true class; it needs only the model's output probabilities, no gradients.",
)

infos = readable_checkpoints()
if not infos:
    no_checkpoint_stop()
active_info = choose_checkpoint("attack_model", infos)
try:
    active = load_model(active_info.path)
    data = load_data()
except (CheckpointError, DataError) as error:
    show_error(error)
    st.stop()
class_names = list(active.meta.get("class_names") or CLASSES)

one_tab, many_tab = st.tabs(["One image, live", "Many images: success rate"])
with one_tab:
    single_image_tab(active, active_info, data, class_names)
with many_tab:
    many_images_tab(infos, active_info, data, class_names)
