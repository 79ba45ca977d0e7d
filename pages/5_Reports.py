"""Reports: what a model gets right and wrong on the test set, and every model side by side."""

from __future__ import annotations

import json
import os

import pandas as pd
import streamlit as st

from cifarlab.checkpoints import CheckpointError, read_meta
from cifarlab.evaluate import (
    EvaluationReport,
    classification_csv,
    classification_rows,
    compare_checkpoints,
    confusion_csv,
    raw_augmented_pairs,
)
from ui.common import DataError, enlarge, load_data, page_header, show_error
from ui.reports import (
    choose_checkpoint,
    comparison_chart,
    confidence_histogram,
    confusion_chart,
    cached_report,
    evaluate_with_progress,
    no_checkpoint_stop,
    per_class_chart,
    readable_checkpoints,
    reliability_chart,
    roc_chart,
)
from ui.training import draw_curves, draw_epoch_table

st.set_page_config(page_title="Reports · cifarlab", page_icon=":material/analytics:", layout="wide")

GALLERY_SCALE = 3


@st.cache_data(max_entries=64, show_spinner=False)
def checkpoint_meta(path: str, mtime_ns: int) -> dict:
    return read_meta(path)


@st.cache_data(max_entries=8, show_spinner=False)
def comparison_frame(keys: tuple, data_source: str) -> tuple[pd.DataFrame, list[dict]]:
    """Return the comparison table and the raw-versus-augmented pairs of the listed checkpoints.

    ``keys`` (path, modification time and size of every checkpoint) is only the cache key.
    """
    rows = compare_checkpoints(readable_checkpoints(), data_source=data_source)
    return comparison_table(rows), pair_table(raw_augmented_pairs(rows))


def comparison_table(rows) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "model": row.name,
                "arch": row.arch,
                "augmentation": row.recipe,
                "test accuracy": row.accuracy,
                "macro precision": row.macro_precision,
                "macro recall": row.macro_recall,
                "macro F1": row.macro_f1,
                "ROC-AUC": row.roc_auc_macro,
                "ECE": row.ece,
                "train accuracy": row.train_accuracy,
                "generalization gap": row.accuracy_gap,
                "parameters": row.params,
                "size (MB)": row.size_mb,
                "training time (min)": None if row.train_time_s is None else row.train_time_s / 60,
                "epochs": row.epochs,
                "val accuracy": row.val_acc,
            }
            for row in rows
        ]
    )


def pair_table(pairs) -> list[dict]:
    return [
        {
            "arch": pair["arch"],
            "raw model": pair["raw"].name,
            "augmented model": pair["augmented"].name,
            "recipe": pair["augmented"].recipe,
            "raw accuracy": pair["raw"].accuracy,
            "augmented accuracy": pair["augmented"].accuracy,
            "accuracy change": pair["accuracy_change"],
            "raw gap": pair["raw"].accuracy_gap,
            "augmented gap": pair["augmented"].accuracy_gap,
            "gap change": pair["accuracy_gap_change"],
        }
        for pair in pairs
    ]


def fraction_text(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None or pd.isna(value) else f"{100 * value:.{digits}f}%"


def auc_text(value: float | None) -> str:
    # ROC-AUC is an area in [0, 1], conventionally written as a number rather than a percentage.
    return "n/a" if value is None or pd.isna(value) else f"{value:.3f}"


def percent_config(*columns: str) -> dict:
    return {column: st.column_config.NumberColumn(format="percent") for column in columns}


# --------------------------------------------------------------------------------------------
# Sections


def draw_model_summary(meta: dict, report: EvaluationReport) -> None:
    config = meta.get("config") or {}
    recipe = config.get("recipe") or {}
    operations = [operation.get("op") for operation in recipe.get("operations") or []]
    training = meta.get("training") or {}
    augmentation = f"{recipe.get('name') or 'custom'} ({', '.join(operations)})" if operations else "none"
    st.caption(
        f"**{meta.get('arch')}**, {meta.get('num_params', 0):,} parameters, "
        f"{training.get('epochs_completed', len(meta.get('history') or []))} epochs, "
        f"augmentation: {augmentation}. Scored on the {report.metrics.num_samples:,} test images "
        f"of {report.data['description']}. The weights were chosen on validation accuracy; the "
        "test set only reports."
    )
    for note in report.notes:
        st.warning(note, icon=":material/warning:")


def draw_headline(report: EvaluationReport) -> None:
    metrics = report.metrics
    headline = [
        ("Accuracy", fraction_text(metrics.accuracy), "Share of test images whose top class is right."),
        (
            "Top-5 accuracy",
            fraction_text(metrics.top5_accuracy),
            f"True class among the 5 most probable. Top-2: {fraction_text(metrics.top2_accuracy)}.",
        ),
        ("Macro F1", fraction_text(metrics.macro["f1"]), "Unweighted mean of the ten per-class F1 scores."),
        (
            "Macro ROC-AUC",
            auc_text(metrics.roc_auc_macro),
            "Mean one-vs-rest ROC-AUC over the classes where it is defined.",
        ),
        (
            "ECE",
            fraction_text(metrics.ece),
            "Expected calibration error over 15 equal-width confidence bins: how far the "
            "confidence is from the accuracy.",
        ),
    ]
    columns = st.columns(6)
    for column, (label, value, explanation) in zip(columns, headline):
        column.metric(label, value, help=explanation)

    gap = report.generalization
    if gap is not None:
        columns[5].metric(
            "Generalization gap",
            f"{100 * gap['accuracy_gap']:+.1f}%",
            help=f"Training accuracy ({fraction_text(gap['train_accuracy'])}) minus test accuracy, "
            f"in percentage points. Training accuracy is measured on {gap['selection']}.",
        )


def draw_per_class(report: EvaluationReport) -> None:
    rows = classification_rows(report)
    table = pd.DataFrame(
        [
            {
                "class": row["class"],
                "precision": fraction_text(row["precision"]),
                "recall": fraction_text(row["recall"]),
                "F1": fraction_text(row["f1"]),
                "support": row["support"],
                "class accuracy": fraction_text(row["accuracy"]) if row["class"] not in ("macro avg", "weighted avg") else "",
                "ROC-AUC": auc_text(row["roc_auc"]) if row["class"] != "weighted avg" else "",
            }
            for row in rows
        ]
    )
    st.dataframe(table, hide_index=True, height=36 * len(table) + 38)
    st.altair_chart(per_class_chart(report), width="stretch")
    st.caption(
        "Precision: of the images predicted as the class, the share that are. Recall (= class "
        "accuracy): of the class's images, the share found. F1 is their harmonic mean. "
        f"A class never predicted gets precision {report.metrics.zero_division:g}, as scikit-learn's "
        "zero_division sets. ROC-AUC is one-vs-rest and n/a for a class without positive or "
        "negative images; the macro mean leaves those classes out."
    )
    columns = st.columns(3)
    columns[0].download_button(
        "Per-class table (CSV)", classification_csv(report), file_name=f"{report.checkpoint['name']}-classes.csv",
        mime="text/csv", key="reports_download_classes", icon=":material/download:",
    )
    columns[1].download_button(
        "Confusion matrix (CSV)", confusion_csv(report), file_name=f"{report.checkpoint['name']}-confusion.csv",
        mime="text/csv", key="reports_download_confusion", icon=":material/download:",
    )
    columns[2].download_button(
        "Whole report (JSON)", json.dumps(report.to_dict(), allow_nan=False),
        file_name=f"{report.checkpoint['name']}.report.json", mime="application/json",
        key="reports_download_json", icon=":material/download:",
    )


def draw_confusion(report: EvaluationReport) -> None:
    normalize = st.toggle(
        "Row-normalized (share of each true class)", value=False, key="reports_confusion_normalized"
    )
    left, right = st.columns([2, 1], gap="large")
    left.altair_chart(confusion_chart(report, normalize=normalize), width="stretch")
    left.caption("Rows are true classes and columns are predicted classes; the diagonal is correct.")
    names = report.class_names
    pairs = pd.DataFrame(
        [
            {
                "true": names[pair["true"]],
                "predicted as": names[pair["predicted"]],
                "images": pair["count"],
                "share": pair["share"],
            }
            for pair in report.metrics.most_confused
        ],
        columns=["true", "predicted as", "images", "share"],
    )
    right.markdown("**Most confused pairs**")
    right.dataframe(pairs, hide_index=True, column_config=percent_config("share"))


def draw_roc(report: EvaluationReport) -> None:
    st.altair_chart(roc_chart(report), width="stretch")
    st.caption(
        "Each curve treats one class as positive and the other nine as negative, and sweeps the "
        "threshold on that class's probability. The dashed line is a random guess (AUC 0.5)."
    )
    missing = [name for name, value in zip(report.class_names, report.metrics.roc_auc) if value is None]
    if missing:
        st.caption(f"No curve for {', '.join(missing)}: ROC-AUC is undefined without positive and negative images.")


def draw_calibration(report: EvaluationReport) -> None:
    left, right = st.columns([3, 2], gap="large")
    left.altair_chart(reliability_chart(report), width="stretch")
    left.altair_chart(confidence_histogram(report), width="stretch")
    right.metric("Expected calibration error", fraction_text(report.metrics.ece, 2))
    right.markdown(
        "Images are grouped into 15 equal-width bins by their top-1 probability (the "
        "*confidence*). A calibrated model is right 80% of the time when it is 80% sure, so its "
        "bars reach the dashed diagonal; red ticks mark each bin's mean confidence. Bars below the "
        "diagonal mean over-confidence. ECE is the gap between bar and tick, averaged over bins "
        "weighted by their number of images."
    )


def draw_training(meta: dict) -> None:
    history = meta.get("history") or []
    if not history:
        st.info("This checkpoint has no training history.", icon=":material/timeline:")
        return
    draw_curves(history)
    best = meta.get("best") or {}
    if best.get("epoch"):
        st.caption(
            f"The saved weights are from epoch {best['epoch']}, the best on the validation split "
            f"({best.get('monitor', 'val_acc')})."
        )
    with st.expander("Every epoch", icon=":material/table:"):
        draw_epoch_table(history)


def draw_mistakes(report: EvaluationReport, data) -> None:
    names = report.class_names
    mistakes = report.misclassified()
    if not mistakes:
        st.success("No test image is misclassified.", icon=":material/check_circle:")
        return
    choices = ["any class", *names]
    columns = st.columns([2, 2, 3])
    true_name = columns[0].selectbox("True class", choices, key="reports_gallery_true")
    predicted_name = columns[1].selectbox("Predicted as", choices, key="reports_gallery_predicted")
    limit = columns[2].slider("Images shown", 12, 96, 24, step=12, key="reports_gallery_limit")

    selected = [
        row
        for row in mistakes
        if (true_name == "any class" or names[row["label"]] == true_name)
        and (predicted_name == "any class" or names[row["predicted"]] == predicted_name)
    ]
    st.caption(
        f"{len(selected):,} of the {len(mistakes):,} misclassified test images, most confident "
        "mistake first. Caption: true class → predicted class (confidence)."
    )
    if not selected:
        st.info("No test image of this pair is misclassified.", icon=":material/filter_alt_off:")
        return

    images = data.test_images if report.data["image_source"] == "test" else data.train_images
    shown = selected[:limit]
    st.image(
        [enlarge(images[row["image_id"]], GALLERY_SCALE) for row in shown],
        caption=[
            f"{names[row['label']]} → {names[row['predicted']]} ({row['confidence']:.0%})"
            for row in shown
        ],
        width=32 * GALLERY_SCALE,
        output_format="PNG",
    )


def draw_comparison(infos, data) -> None:
    keys = tuple(
        (str(info.path), os.stat(info.path).st_mtime_ns, info.size_bytes) for info in infos
    )
    frame, pairs = comparison_frame(keys, data.source)
    missing = int(frame["test accuracy"].isna().sum())
    if missing:
        verb = "has" if missing == 1 else "have"
        st.info(
            f"{missing} of {len(frame)} models {verb} no test report yet, so their metric cells "
            "show None.",
            icon=":material/pending:",
        )
        label = "Evaluate it" if missing == 1 else f"Evaluate the {missing} models"
        if st.button(label, key="reports_evaluate_missing", icon=":material/play_arrow:"):
            bar = st.progress(0.0, text="Evaluating...")

            def show(index: int, total: int, name: str) -> None:
                bar.progress(index / max(total, 1), text=f"Evaluating {name} ({index + 1} of {total})")

            compare_checkpoints(infos, evaluate_missing=True, data=data, progress=show)
            bar.empty()
            comparison_frame.clear()
            st.rerun()

    st.dataframe(
        frame,
        hide_index=True,
        column_config={
            **percent_config(
                "test accuracy", "macro precision", "macro recall", "macro F1", "ECE",
                "train accuracy", "generalization gap", "val accuracy",
            ),
            "ROC-AUC": st.column_config.NumberColumn(format="%.3f"),
            "parameters": st.column_config.NumberColumn(format="localized"),
            "size (MB)": st.column_config.NumberColumn(format="%.1f"),
            "training time (min)": st.column_config.NumberColumn(format="%.1f"),
        },
    )
    st.caption(
        "Generalization gap = accuracy on images the model trained on minus test accuracy; a "
        "large gap means overfitting. None: no report yet, or not recorded in the checkpoint."
    )
    evaluated = frame.dropna(subset=["test accuracy"])
    if not evaluated.empty:
        left, right = st.columns(2, gap="large")
        left.altair_chart(comparison_chart(evaluated, "test accuracy", title="test accuracy"), width="stretch")
        right.altair_chart(comparison_chart(evaluated, "generalization gap", title="generalization gap"), width="stretch")
        left.altair_chart(comparison_chart(evaluated, "macro F1", title="macro F1"), width="stretch")
        right.altair_chart(
            comparison_chart(evaluated, "parameters", title="parameters", percent=False), width="stretch"
        )

    st.subheader("Raw versus augmented")
    if not pairs:
        st.caption(
            "No pair yet: train the same architecture once without augmentation (recipe none) and "
            "once with a recipe, and they appear here side by side."
        )
        return
    st.dataframe(
        pd.DataFrame(pairs),
        hide_index=True,
        column_config=percent_config(
            "raw accuracy", "augmented accuracy", "accuracy change", "raw gap", "augmented gap", "gap change"
        ),
    )
    st.caption(
        "Augmentation usually shrinks the gap between training and test accuracy: the network "
        "sees a new variant of each image every epoch, so memorizing pixels stops paying off."
    )


# --------------------------------------------------------------------------------------------
# Page

page_header(
    "Reports",
    "What a trained model gets right and wrong on the 10,000 test images: per-class scores, "
    "the confusion matrix, ROC curves, calibration, the training curves and the images it "
    "misclassifies, then every model side by side.",
)

infos = readable_checkpoints()
if not infos:
    no_checkpoint_stop()

info = choose_checkpoint("reports_checkpoint", infos)
try:
    data = load_data()
    meta = checkpoint_meta(str(info.path), os.stat(info.path).st_mtime_ns)
except (DataError, CheckpointError) as error:
    show_error(error)
    st.stop()

report = cached_report(info.path, data.source)
if report is None:
    st.info(
        f"Scoring {info.name} on the test images once; the report is then cached for everyone.",
        icon=":material/hourglass_top:",
    )
    try:
        report = evaluate_with_progress(info.path, data)
    except ValueError as error:
        show_error(error)
        st.stop()
    # The comparison table is cached too, and now has one more report to show.
    comparison_frame.clear()
    st.rerun()

draw_model_summary(meta, report)
draw_headline(report)

tabs = st.tabs(
    ["Per class", "Confusion matrix", "ROC curves", "Calibration", "Training curves", "Mistakes", "Compare models"]
)
with tabs[0]:
    draw_per_class(report)
with tabs[1]:
    draw_confusion(report)
with tabs[2]:
    draw_roc(report)
with tabs[3]:
    draw_calibration(report)
with tabs[4]:
    draw_training(meta)
with tabs[5]:
    draw_mistakes(report, data)
with tabs[6]:
    draw_comparison(infos, data)
