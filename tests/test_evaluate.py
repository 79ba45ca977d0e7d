"""Evaluation: exact metric values on hand-made cases, predictions, reports and their cache."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import os

import numpy as np
import pytest
import torch
from scipy.special import softmax
from sklearn.metrics import roc_auc_score
from torch import nn

from cifarlab import paths
from cifarlab.data import CLASSES, Cifar10, split_train_val
from cifarlab.evaluate import (
    EvaluationError,
    MetricsError,
    calibration_table,
    classification_csv,
    classification_rows,
    compare_checkpoints,
    compute_metrics,
    confusion_csv,
    detect_score_kind,
    evaluate_checkpoint,
    evaluate_loaded,
    headline_metrics,
    load_cached_report,
    most_confused_pairs,
    predict_logits,
    raw_augmented_pairs,
    select_split,
    to_probabilities,
    write_classification_csv,
)

NUM_CLASSES = 10


def confident_logits(predictions, margin: float = 20.0) -> np.ndarray:
    """Logits whose softmax puts almost all mass on the given predicted classes."""
    logits = np.zeros((len(predictions), NUM_CLASSES))
    logits[np.arange(len(predictions)), predictions] = margin
    return logits


def rows_with_confidence(predicted: list[int], confidence: list[float]) -> np.ndarray:
    """Probability rows whose top class is ``predicted`` with the given top probability."""
    rows = np.zeros((len(predicted), NUM_CLASSES))
    for row, (label, top) in enumerate(zip(predicted, confidence)):
        rows[row, :] = (1.0 - top) / (NUM_CLASSES - 1)
        rows[row, label] = top
    return rows


# --------------------------------------------------------------------------------------------
# Metrics on hand-made cases


def test_all_correct_gives_perfect_scores():
    labels = np.repeat(np.arange(NUM_CLASSES), 3)
    metrics = compute_metrics(labels, confident_logits(labels))
    assert metrics.accuracy == 1.0
    assert metrics.top2_accuracy == 1.0
    assert metrics.top5_accuracy == 1.0
    assert metrics.precision == [1.0] * NUM_CLASSES
    assert metrics.recall == [1.0] * NUM_CLASSES
    assert metrics.f1 == [1.0] * NUM_CLASSES
    assert metrics.support == [3] * NUM_CLASSES
    assert metrics.per_class_accuracy == [1.0] * NUM_CLASSES
    assert metrics.macro == {"precision": 1.0, "recall": 1.0, "f1": 1.0}
    assert metrics.weighted == {"precision": 1.0, "recall": 1.0, "f1": 1.0}
    assert metrics.roc_auc == [1.0] * NUM_CLASSES
    assert metrics.roc_auc_macro == 1.0
    assert metrics.confusion == (np.eye(NUM_CLASSES, dtype=int) * 3).tolist()
    assert metrics.most_confused == []
    assert metrics.loss == pytest.approx(-math.log(softmax(confident_logits([0])[0])[0]))


def test_all_wrong_gives_zero_scores():
    labels = np.repeat(np.arange(NUM_CLASSES), 2)
    predictions = (labels + 1) % NUM_CLASSES
    metrics = compute_metrics(labels, confident_logits(predictions))
    assert metrics.accuracy == 0.0
    assert metrics.precision == [0.0] * NUM_CLASSES
    assert metrics.recall == [0.0] * NUM_CLASSES
    assert metrics.f1 == [0.0] * NUM_CLASSES
    assert metrics.per_class_accuracy == [0.0] * NUM_CLASSES
    assert metrics.macro == {"precision": 0.0, "recall": 0.0, "f1": 0.0}
    expected = np.zeros((NUM_CLASSES, NUM_CLASSES), dtype=int)
    expected[np.arange(NUM_CLASSES), (np.arange(NUM_CLASSES) + 1) % NUM_CLASSES] = 2
    assert metrics.confusion == expected.tolist()
    assert len(metrics.most_confused) == NUM_CLASSES
    first = metrics.most_confused[0]
    assert first == {"true": 0, "predicted": 1, "count": 2, "share": 1.0}


def test_hand_case_precision_recall_f1():
    labels = np.array([0, 0, 1, 1, 2])
    predictions = np.array([0, 1, 1, 1, 0])
    metrics = compute_metrics(labels, confident_logits(predictions))
    assert metrics.precision[:3] == pytest.approx([1 / 2, 2 / 3, 0.0])
    assert metrics.recall[:3] == pytest.approx([1 / 2, 1.0, 0.0])
    assert metrics.f1[:3] == pytest.approx([1 / 2, 0.8, 0.0])
    assert metrics.support == [2, 2, 1, 0, 0, 0, 0, 0, 0, 0]
    assert metrics.accuracy == pytest.approx(3 / 5)
    # Macro averages run over all ten classes; absent, never-predicted classes count as 0.
    assert metrics.macro["precision"] == pytest.approx((1 / 2 + 2 / 3) / 10)
    assert metrics.macro["recall"] == pytest.approx((1 / 2 + 1) / 10)
    assert metrics.macro["f1"] == pytest.approx((1 / 2 + 0.8) / 10)
    assert metrics.weighted["precision"] == pytest.approx((2 * 1 / 2 + 2 * 2 / 3 + 0) / 5)
    assert metrics.weighted["recall"] == pytest.approx(3 / 5)
    assert metrics.weighted["f1"] == pytest.approx((2 * 0.5 + 2 * 0.8) / 5)
    assert metrics.zero_division == 0.0


def test_confusion_matrix_rows_are_true_classes():
    labels = np.array([0, 0, 0, 1])
    predictions = np.array([1, 1, 0, 1])
    metrics = compute_metrics(labels, confident_logits(predictions))
    assert metrics.confusion[0][1] == 2
    assert metrics.confusion[0][0] == 1
    assert metrics.confusion[1][1] == 1
    assert metrics.confusion[1][0] == 0
    assert sum(map(sum, metrics.confusion)) == 4
    assert metrics.most_confused == [{"true": 0, "predicted": 1, "count": 2, "share": 2 / 3}]


def test_missing_class_auc_undefined():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(9), 4)  # class 9 (truck) never appears
    logits = rng.normal(size=(len(labels), NUM_CLASSES))
    metrics = compute_metrics(labels, logits)
    assert metrics.support[9] == 0
    assert metrics.roc_auc[9] is None
    assert metrics.roc_curves[9] is None
    assert metrics.per_class_accuracy[9] is None
    assert metrics.recall[9] == 0.0
    assert metrics.confusion[9] == [0] * NUM_CLASSES

    probabilities = softmax(logits, axis=1)
    expected = [roc_auc_score(labels == index, probabilities[:, index]) for index in range(9)]
    assert metrics.roc_auc[:9] == pytest.approx(expected)
    # The macro mean leaves the undefined class out instead of counting it as 0 or 0.5.
    assert metrics.roc_auc_macro == pytest.approx(np.mean(expected))


def test_single_class_auc_all_undefined():
    labels = np.full(6, 3)
    predictions = np.array([3, 3, 3, 3, 5, 5])
    metrics = compute_metrics(labels, confident_logits(predictions))
    assert metrics.roc_auc == [None] * NUM_CLASSES
    assert metrics.roc_auc_macro is None
    assert metrics.accuracy == pytest.approx(4 / 6)
    assert metrics.recall[3] == pytest.approx(4 / 6)
    assert metrics.precision[3] == 1.0
    assert metrics.precision[5] == 0.0
    assert metrics.per_class_accuracy[3] == pytest.approx(4 / 6)
    assert metrics.per_class_accuracy[5] is None
    assert metrics.support[3] == 6


def test_roc_auc_hand_value():
    # Class 0 scores: positives 0.9 and 0.4, negatives 0.5 and 0.1, so 3 of 4 pairs are ordered.
    class0 = [0.9, 0.4, 0.5, 0.1]
    probabilities = np.zeros((4, NUM_CLASSES))
    probabilities[:, 0] = class0
    probabilities[:, 1] = 1.0 - np.array(class0)
    labels = np.array([0, 0, 1, 1])
    metrics = compute_metrics(labels, probabilities, kind="probabilities")
    assert metrics.roc_auc[0] == pytest.approx(0.75)
    assert metrics.roc_auc[1] == pytest.approx(0.75)
    assert metrics.roc_auc[2:] == [None] * 8
    assert metrics.roc_auc_macro == pytest.approx(0.75)
    curve = metrics.roc_curves[0]
    assert curve["fpr"][0] == 0.0
    assert curve["tpr"][-1] == 1.0


def test_top_k_hand_case():
    probabilities = np.array(
        [
            [0.5, 0.3, 0.1, 0.05, 0.05, 0, 0, 0, 0, 0],  # true 1: second
            [0.5, 0.3, 0.1, 0.05, 0.05, 0, 0, 0, 0, 0],  # true 0: first
            [0.5, 0.3, 0.1, 0.06, 0.04, 0, 0, 0, 0, 0],  # true 4: fifth
            [0.5, 0.3, 0.1, 0.06, 0.04, 0, 0, 0, 0, 0],  # true 2: third
        ]
    )
    labels = np.array([1, 0, 4, 2])
    metrics = compute_metrics(labels, probabilities)
    assert metrics.accuracy == pytest.approx(1 / 4)
    assert metrics.top2_accuracy == pytest.approx(2 / 4)
    assert metrics.top5_accuracy == pytest.approx(4 / 4)


def test_logits_and_probabilities_agree():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, NUM_CLASSES, size=200)
    logits = rng.normal(scale=3.0, size=(200, NUM_CLASSES))
    probabilities32 = softmax(logits, axis=1).astype(np.float32)

    from_logits = compute_metrics(labels, logits)
    from_probabilities = compute_metrics(labels, probabilities32)
    flagged = compute_metrics(labels, softmax(logits, axis=1), kind="probabilities")
    for other in (from_probabilities, flagged):
        assert other.accuracy == from_logits.accuracy
        assert other.top2_accuracy == from_logits.top2_accuracy
        assert other.top5_accuracy == from_logits.top5_accuracy
        assert other.confusion == from_logits.confusion
        assert other.precision == pytest.approx(from_logits.precision)
        assert other.recall == pytest.approx(from_logits.recall)
        assert other.f1 == pytest.approx(from_logits.f1)
        assert other.macro == pytest.approx(from_logits.macro)
        assert other.roc_auc == pytest.approx(from_logits.roc_auc, abs=1e-6)
        assert other.loss == pytest.approx(from_logits.loss, rel=1e-6)
        assert other.ece == pytest.approx(from_logits.ece, abs=1e-6)


def test_score_kind_detection():
    rng = np.random.default_rng(2)
    logits = rng.normal(size=(5, NUM_CLASSES))
    assert detect_score_kind(logits) == "logits"
    assert detect_score_kind(softmax(logits, axis=1)) == "probabilities"
    assert detect_score_kind(softmax(logits, axis=1).astype(np.float32)) == "probabilities"
    # Non-negative scores that do not sum to one are logits.
    assert detect_score_kind(np.full((2, NUM_CLASSES), 0.5)) == "logits"


def test_softmax_in_float64():
    logits = np.array([[1000.0, 0.0] + [-1000.0] * 8], dtype=np.float32)
    probabilities, log_probabilities = to_probabilities(logits, "logits")
    assert probabilities.dtype == np.float64
    assert probabilities[0, 0] == 1.0
    assert log_probabilities[0, 1] == pytest.approx(-1000.0)


def test_ece_hand_case():
    # Confidences 0.95 (right), 0.95 (wrong), 0.55 (right) and 0.35 (right) fall in bins 14, 14, 8
    # and 5 of 15: ECE = 2/4 * |0.5 - 0.95| + 1/4 * |1 - 0.55| + 1/4 * |1 - 0.35| = 0.5.
    labels = np.array([0, 2, 1, 3])
    probabilities = rows_with_confidence([0, 1, 1, 3], [0.95, 0.95, 0.55, 0.35])
    ece, bins = calibration_table(probabilities, labels)
    assert ece == pytest.approx(0.5)
    assert len(bins) == 15
    assert bins[14]["count"] == 2
    assert bins[14]["accuracy"] == 0.5
    assert bins[14]["confidence"] == pytest.approx(0.95)
    assert bins[8]["count"] == 1
    assert bins[5]["count"] == 1
    assert bins[0]["count"] == 0
    assert bins[0]["accuracy"] is None
    assert bins[0]["lower"] == 0.0
    assert bins[14]["upper"] == 1.0
    assert sum(bin_record["count"] for bin_record in bins) == 4


def test_ece_perfectly_calibrated_is_zero():
    # Four samples at confidence 0.75 (bin 12), three of them right.
    labels = np.array([0, 0, 0, 1])
    probabilities = rows_with_confidence([0, 0, 0, 0], [0.75] * 4)
    ece, _ = calibration_table(probabilities, labels)
    assert ece == pytest.approx(0.0)


def test_ece_bins_closed_on_the_right():
    labels = np.array([0])
    probabilities = rows_with_confidence([0], [1.0])
    _, bins = calibration_table(probabilities, labels)
    assert bins[14]["count"] == 1


def test_most_confused_pairs_order():
    matrix = np.array([[5, 1, 3], [4, 2, 0], [0, 3, 1]])
    pairs = most_confused_pairs(matrix, limit=3)
    assert [(pair["true"], pair["predicted"], pair["count"]) for pair in pairs] == [
        (1, 0, 4),
        (0, 2, 3),
        (2, 1, 3),
    ]
    assert pairs[0]["share"] == pytest.approx(4 / 6)


def test_metrics_json_ready():
    rng = np.random.default_rng(3)
    labels = np.repeat(np.arange(5), 3)
    metrics = compute_metrics(labels, rng.normal(size=(15, NUM_CLASSES)))
    text = json.dumps(metrics.to_dict(), allow_nan=False)
    assert json.loads(text)["roc_auc"][9] is None


def test_invalid_inputs_rejected():
    with pytest.raises(MetricsError, match="labels must lie in 0..9"):
        compute_metrics(np.array([0, 10]), np.zeros((2, NUM_CLASSES)))
    with pytest.raises(MetricsError, match="shape \\(N, 10\\)"):
        compute_metrics(np.array([0]), np.zeros((1, 9)))
    with pytest.raises(MetricsError, match="2 labels but 3 rows"):
        compute_metrics(np.array([0, 1]), np.zeros((3, NUM_CLASSES)))
    with pytest.raises(MetricsError, match="invalid score kind"):
        compute_metrics(np.array([0]), np.zeros((1, NUM_CLASSES)), kind="scores")
    with pytest.raises(MetricsError, match="non-negative"):
        compute_metrics(np.array([0]), -np.ones((1, NUM_CLASSES)), kind="probabilities")


# --------------------------------------------------------------------------------------------
# Predictions with real models


class CountingModel(nn.Module):
    """Returns the mean pixel value of each channel as the first three logits; counts calls."""

    num_classes = NUM_CLASSES

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(1))
        self.calls = 0
        self.seen_training = []

    def forward(self, images):
        self.calls += 1
        self.seen_training.append(self.training)
        assert not torch.is_grad_enabled()
        means = images.mean(dim=(2, 3)) * self.scale
        return torch.cat([means, torch.zeros(len(images), NUM_CLASSES - 3)], dim=1)


def test_predict_logits_batches_in_eval_mode():
    images = torch.randint(0, 256, (23, 3, 32, 32), dtype=torch.uint8)
    model = CountingModel().train()
    progress = []
    logits = predict_logits(model, images, batch_size=10, progress=lambda *record: progress.append(record))
    assert logits.shape == (23, NUM_CLASSES)
    assert logits.dtype == np.float32
    assert model.calls == 3
    assert model.seen_training == [False, False, False]
    assert model.training
    assert progress == [("test", 10, 23), ("test", 20, 23), ("test", 23, 23)]
    expected = images.float().div(255).mean(dim=(2, 3)).numpy()
    np.testing.assert_allclose(logits[:, :3], expected, rtol=1e-6)


def test_predict_logits_batch_size_invariant():
    from cifarlab.models import build_model

    torch.manual_seed(0)
    model = build_model("lenet")
    images = np.random.default_rng(4).integers(0, 256, (17, 3, 32, 32), dtype=np.uint8)
    one_batch = predict_logits(model, images, batch_size=100)
    many_batches = predict_logits(model, images, batch_size=4)
    np.testing.assert_allclose(one_batch, many_batches, rtol=1e-5, atol=1e-6)


def test_predict_logits_rejects_float_images():
    with pytest.raises(EvaluationError, match="uint8 of shape"):
        predict_logits(CountingModel(), torch.zeros(2, 3, 32, 32))


# --------------------------------------------------------------------------------------------
# Reports of checkpoints


def tiny_data(num_train: int = 300, num_test: int = 60, seed: int = 0) -> Cifar10:
    rng = np.random.default_rng(seed)
    return Cifar10(
        train_images=rng.integers(0, 256, (num_train, 3, 32, 32), dtype=np.uint8),
        train_labels=np.arange(num_train, dtype=np.int64) % NUM_CLASSES,
        test_images=rng.integers(0, 256, (num_test, 3, 32, 32), dtype=np.uint8),
        test_labels=np.arange(num_test, dtype=np.int64) % NUM_CLASSES,
        source="custom",
        description="random test images",
    )


def training_meta(val_size: int = 50, seed: int = 0, recipe: dict | None = None, train_subset=None) -> dict:
    recipe = recipe if recipe is not None else {"version": 1, "name": "none", "operations": []}
    return {
        "config": {
            "arch": "lenet",
            "val_size": val_size,
            "split_seed": seed,
            "data_source": "bundled",
            "recipe": recipe,
            "train_subset": train_subset,
        },
        "data": {
            "source": "custom",
            "description": "random test images",
            "split": {"seed": seed, "val_size": val_size, "train_subset": train_subset},
        },
        "history": [{"epoch": 1, "train_acc": 0.2, "val_acc": 0.1, "train_loss": 2.2, "val_loss": 2.3}],
        "best": {"val_acc": 0.1, "val_loss": 2.3, "epoch": 1},
        "training": {"time_s": 12.5, "epochs_completed": 1, "epochs": 1, "device": "cpu"},
    }


@pytest.fixture
def lenet():
    from cifarlab.models import build_model

    torch.manual_seed(0)
    return build_model("lenet")


@pytest.fixture
def user_checkpoint(tmp_path, monkeypatch, lenet):
    from cifarlab.checkpoints import save_checkpoint

    monkeypatch.setenv("CIFARLAB_CHECKPOINT_DIR", str(tmp_path / "user"))
    monkeypatch.setenv("CIFARLAB_CACHE_DIR", str(tmp_path / "cache"))
    return save_checkpoint(paths.user_checkpoint_dir() / "lenet-raw.pt", lenet, training_meta())


def test_select_split_rebuilds_validation():
    data = tiny_data()
    meta = training_meta(val_size=50, seed=3)
    division = split_train_val(data.train_labels, 50, 3)

    images, labels, ids, source, notes = select_split(data, meta, "val")
    np.testing.assert_array_equal(ids, division.val_idx)
    np.testing.assert_array_equal(labels, data.train_labels[division.val_idx])
    assert source == "train"
    assert notes == []

    _, _, train_ids, _, _ = select_split(data, meta, "train")
    np.testing.assert_array_equal(train_ids, division.train_idx)
    assert not set(train_ids) & set(ids)

    _, test_labels, test_ids, test_source, notes = select_split(data, meta, "test", limit=7)
    assert len(test_ids) == 7
    assert list(test_ids) == sorted(set(test_ids))
    np.testing.assert_array_equal(test_labels, data.test_labels[test_ids])
    assert test_source == "test"
    assert "only 7 images of the test split were scored, a class-balanced sample" in notes[0]
    again = select_split(data, meta, "test", limit=7)[2]
    np.testing.assert_array_equal(again, test_ids)


def test_limit_sample_balances_classes():
    """Images sorted by class: the first 20 would all be class 0; the sample has two of each."""
    data = tiny_data()
    order = np.argsort(data.test_labels, kind="stable")
    data = dataclasses.replace(data, test_images=data.test_images[order], test_labels=data.test_labels[order])

    _, labels, _, _, _ = select_split(data, training_meta(), "test", limit=20)

    assert np.bincount(labels, minlength=10).tolist() == [2] * 10


def test_select_split_errors():
    data = tiny_data()
    with pytest.raises(EvaluationError, match="invalid split 'holdout'"):
        select_split(data, training_meta(), "holdout")
    with pytest.raises(EvaluationError, match="without a validation split"):
        select_split(data, training_meta(val_size=0), "val")
    with pytest.raises(EvaluationError, match="invalid limit 0"):
        select_split(data, training_meta(), "test", limit=0)


def test_select_split_notes_changed_validation():
    data = tiny_data()
    meta = training_meta()
    meta["data"]["split"]["val_fingerprint"] = "000000000000"
    _, _, _, _, notes = select_split(data, meta, "val")
    assert "differ from the ones recorded" in notes[0]


def test_evaluate_loaded_report(lenet):
    data = tiny_data()
    report = evaluate_loaded(lenet, training_meta(), data, "test", gap_images=40)
    assert report.split == "test"
    assert report.metrics.num_samples == 60
    assert report.data["image_source"] == "test"
    assert report.predictions["image_id"] == list(range(60))
    assert report.predictions["label"] == data.test_labels.tolist()
    assert len(report.predictions["top5"][0]) == 5
    assert report.class_names == list(CLASSES)

    gap = report.generalization
    assert gap["train_images"] == 40
    assert gap["accuracy_gap"] == pytest.approx(gap["train_accuracy"] - report.metrics.accuracy)
    assert gap["loss_gap"] == pytest.approx(report.metrics.loss - gap["train_loss"])
    assert "validation images excluded" in gap["selection"]

    wrong = report.misclassified()
    assert len(wrong) == round((1 - report.metrics.accuracy) * 60)
    assert all(row["label"] != row["predicted"] for row in wrong)
    confidences = [row["confidence"] for row in wrong]
    assert confidences == sorted(confidences, reverse=True)


def test_generalization_uses_trained_images(lenet):
    from cifarlab.evaluate import generalization_subset

    data = tiny_data()
    meta = training_meta(val_size=50, train_subset=100)
    ids, description = generalization_subset(data, meta, 1000)
    val_ids = split_train_val(data.train_labels, 50, 0).val_idx
    assert len(ids) == 100
    assert not set(ids) & set(val_ids)
    assert description.startswith("all 100 training images")

    fewer, description = generalization_subset(data, meta, 30)
    assert len(fewer) == 30
    assert set(fewer) <= set(ids)
    assert np.bincount(data.train_labels[fewer], minlength=NUM_CLASSES).tolist() == [3] * NUM_CLASSES


def test_no_gap_for_train_split(lenet):
    report = evaluate_loaded(lenet, training_meta(), tiny_data(), "train")
    assert report.generalization is None
    assert report.metrics.num_samples == 250


def test_report_cached_beside_user_checkpoint(user_checkpoint):
    from cifarlab.checkpoints import list_checkpoints

    data = tiny_data()
    report = evaluate_checkpoint(user_checkpoint, "test", data=data, gap_images=20)
    beside = user_checkpoint.with_name("lenet-raw.report.json")
    assert report.cache_path == str(beside)
    stored = json.loads(beside.read_text())
    assert stored["accuracy"] == report.metrics.accuracy
    assert stored["checkpoint"]["sha256"] == report.checkpoint["sha256"]

    again = evaluate_checkpoint(user_checkpoint, "test", data=data, gap_images=20)
    assert again.created == report.created
    assert again.metrics == report.metrics
    assert again.cache_path == str(beside)

    # Checkpoint listings show the test accuracy of the report.
    (info,) = [info for info in list_checkpoints() if info.name == "lenet-raw"]
    assert info.test_acc == report.metrics.accuracy


def test_cached_report_loads_without_model(user_checkpoint, monkeypatch):
    data = tiny_data()
    report = evaluate_checkpoint(user_checkpoint, "test", data=data, gap_images=20)

    def fail(*args, **kwargs):
        raise AssertionError("the checkpoint must not be loaded for a cached report")

    monkeypatch.setattr("cifarlab.checkpoints.load_checkpoint", fail)
    cached = evaluate_checkpoint(user_checkpoint, "test", data=data, gap_images=20)
    assert cached.created == report.created


def test_retrained_checkpoint_invalidates_report(user_checkpoint):
    from cifarlab.checkpoints import save_checkpoint
    from cifarlab.models import build_model

    data = tiny_data()
    first = evaluate_checkpoint(user_checkpoint, "test", data=data, gap_images=20)
    torch.manual_seed(1)
    save_checkpoint(user_checkpoint, build_model("lenet"), training_meta())
    assert load_cached_report(user_checkpoint, "test", gap_images=20) is None
    second = evaluate_checkpoint(user_checkpoint, "test", data=data, gap_images=20)
    assert second.checkpoint["sha256"] != first.checkpoint["sha256"]
    assert second.predictions["confidence"] != first.predictions["confidence"]


def test_touched_checkpoint_keeps_report(user_checkpoint):
    data = tiny_data()
    first = evaluate_checkpoint(user_checkpoint, "test", data=data, gap_images=20)
    stat = user_checkpoint.stat()
    os.utime(user_checkpoint, ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000_000))
    cached = load_cached_report(user_checkpoint, "test", gap_images=20)
    assert cached is not None
    assert cached.created == first.created


def test_other_splits_cached_apart(user_checkpoint):
    data = tiny_data()
    test = evaluate_checkpoint(user_checkpoint, "test", data=data, gap_images=20)
    val = evaluate_checkpoint(user_checkpoint, "val", data=data, gap_images=20)
    limited = evaluate_checkpoint(user_checkpoint, "test", data=data, limit=10)
    assert val.metrics.num_samples == 50
    assert limited.metrics.num_samples == 10
    assert limited.generalization["train_images"] == 10
    assert os.path.dirname(val.cache_path) == str(paths.cache_dir() / "reports")
    assert val.cache_path.endswith(".val.report.json")
    assert limited.cache_path.endswith(".sample10.report.json")
    assert load_cached_report(user_checkpoint, "test", gap_images=20).created == test.created


def test_shipped_checkpoint_report_goes_to_cache(tmp_path, monkeypatch, lenet):
    from cifarlab.checkpoints import save_checkpoint

    shipped = tmp_path / "shipped"
    monkeypatch.setattr(paths, "SHIPPED_CHECKPOINT_DIR", shipped)
    monkeypatch.setenv("CIFARLAB_CACHE_DIR", str(tmp_path / "cache"))
    checkpoint = save_checkpoint(shipped / "lenet.pt", lenet, training_meta())
    report = evaluate_checkpoint(checkpoint, "test", data=tiny_data(), gap_images=0)
    assert not (shipped / "lenet.report.json").exists()
    assert report.cache_path.startswith(str(tmp_path / "cache" / "reports"))
    assert report.generalization is None
    assert load_cached_report(checkpoint, "test", gap_images=0) is not None


def test_report_for_other_data_not_reused(user_checkpoint):
    evaluate_checkpoint(user_checkpoint, "test", data=tiny_data(), gap_images=20)
    assert load_cached_report(user_checkpoint, "test", gap_images=20, data_source="bundled") is None
    assert load_cached_report(user_checkpoint, "test", gap_images=20, data_source="custom") is not None


def test_corrupt_report_ignored(user_checkpoint):
    user_checkpoint.with_name("lenet-raw.report.json").write_text("{not json")
    assert load_cached_report(user_checkpoint, "test") is None
    report = evaluate_checkpoint(user_checkpoint, "test", data=tiny_data(), gap_images=20)
    assert json.loads(user_checkpoint.with_name("lenet-raw.report.json").read_text())["format"] == 1
    assert report.metrics.num_samples == 60


def test_missing_checkpoint_rejected(tmp_path):
    with pytest.raises(EvaluationError, match="not found"):
        evaluate_checkpoint(tmp_path / "missing.pt", data=tiny_data())


# --------------------------------------------------------------------------------------------
# Export and comparison


def test_classification_csv_layout(lenet, tmp_path):
    report = evaluate_loaded(lenet, training_meta(), tiny_data(), "test", gap_images=0)
    rows = list(csv.reader(io.StringIO(classification_csv(report))))
    assert rows[0] == ["class", "precision", "recall", "f1", "support", "accuracy", "roc_auc"]
    assert [row[0] for row in rows[1:11]] == list(CLASSES)
    assert rows[11][0] == "macro avg"
    assert rows[12][0] == "weighted avg"
    assert rows[11][4] == "60"
    assert float(rows[11][1]) == pytest.approx(report.metrics.macro["precision"], abs=1e-6)
    assert rows[12][6] == ""

    path = tmp_path / "table.csv"
    write_classification_csv(report, path)
    assert path.read_text() == classification_csv(report)
    assert classification_rows(report)[0]["support"] == 6


def test_confusion_csv_layout(lenet):
    report = evaluate_loaded(lenet, training_meta(), tiny_data(), "test", gap_images=0)
    rows = list(csv.reader(io.StringIO(confusion_csv(report))))
    assert rows[0][0] == "true \\ predicted"
    assert rows[0][1:] == list(CLASSES)
    assert [row[0] for row in rows[1:]] == list(CLASSES)
    assert [int(cell) for cell in rows[1][1:]] == report.metrics.confusion[0]


def test_headline_metrics(lenet):
    report = evaluate_loaded(lenet, training_meta(), tiny_data(), "test", gap_images=20)
    headline = headline_metrics(report)
    assert headline["accuracy"] == report.metrics.accuracy
    assert headline["images"] == 60
    assert headline["accuracy_gap"] == report.generalization["accuracy_gap"]


def test_compare_and_pairs(user_checkpoint, lenet):
    from cifarlab.checkpoints import list_checkpoints, save_checkpoint

    standard = {"version": 1, "name": "standard", "operations": [{"op": "hflip", "p": 0.5}]}
    save_checkpoint(
        paths.user_checkpoint_dir() / "lenet-aug.pt", lenet, training_meta(recipe=standard)
    )
    infos = [info for info in list_checkpoints() if not info.protected]
    data = tiny_data()

    rows = compare_checkpoints(infos)
    assert [row.name for row in rows] == ["lenet-aug", "lenet-raw"]
    assert all(row.accuracy is None for row in rows)
    assert rows[0].recipe == "standard"
    assert rows[0].augmented
    assert rows[1].recipe == "none"
    assert rows[1].train_time_s == 12.5
    assert rows[1].epochs == 1
    assert rows[1].params == sum(parameter.numel() for parameter in lenet.parameters())

    rows = compare_checkpoints(infos, evaluate_missing=True, data=data)
    assert all(row.evaluated for row in rows)
    assert rows[0].accuracy_gap is not None

    (pair,) = raw_augmented_pairs(rows)
    assert pair["arch"] == "lenet"
    assert pair["raw"].name == "lenet-raw"
    assert pair["augmented"].name == "lenet-aug"
    assert pair["accuracy_change"] == pytest.approx(rows[0].accuracy - rows[1].accuracy)
