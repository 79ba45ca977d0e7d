"""Classification metrics from labels and model scores, always over all ten classes.

Every metric is computed over the fixed label set ``0..num_classes-1``, so a class missing from
the evaluated labels still has its row in every table. Conventions, stated once here and shown
on the Reports page:

- Probabilities are the softmax of the logits, computed in float64.
- Precision of a class that is never predicted, and recall of a class with no samples, are 0/0;
  they are reported as ``zero_division`` (0.0 by default, as scikit-learn's ``zero_division=0``),
  and that value enters the macro average.
- Per-class accuracy is the share of a class's samples classified correctly, which equals its
  recall. It is undefined (``None``) for a class with no samples.
- ROC-AUC is one-vs-rest per class. It is undefined (``None``, shown as "n/a") for a class with
  no positive or no negative samples. The macro ROC-AUC averages the defined classes only, so an
  undefined class is never counted as 0 or 0.5.
- The confusion matrix has true classes as rows and predicted classes as columns.
- Expected calibration error (ECE) uses 15 equal-width confidence bins over (0, 1], each closed
  on the right, with confidence = the top-1 probability (Guo et al., "On Calibration of Modern
  Neural Networks", ICML 2017).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.special import log_softmax, softmax
from sklearn.metrics import (
    confusion_matrix,
    precision_recall_fscore_support,
    roc_auc_score,
    roc_curve,
    top_k_accuracy_score,
)

NUM_CLASSES = 10
CALIBRATION_BINS = 15
ROC_MAX_POINTS = 101
MOST_CONFUSED_PAIRS = 10
SCORE_KINDS = ("auto", "logits", "probabilities")

# Rows of probabilities sum to one within this tolerance; float32 softmax outputs are within 1e-6.
_PROBABILITY_SUM_TOLERANCE = 1e-4


class MetricsError(ValueError):
    """Labels or scores that cannot be evaluated; the message names the problem."""


@dataclass
class ClassificationMetrics:
    """Every metric of one evaluation, as plain JSON-ready values (``None`` = undefined)."""

    num_samples: int
    num_classes: int
    accuracy: float
    top2_accuracy: float
    top5_accuracy: float
    loss: float  # mean cross-entropy in nats, from log-probabilities in float64
    precision: list[float]
    recall: list[float]
    f1: list[float]
    support: list[int]
    per_class_accuracy: list[float | None]
    macro: dict[str, float]  # precision, recall, f1: unweighted mean over all classes
    weighted: dict[str, float]  # precision, recall, f1: mean weighted by support
    roc_auc: list[float | None]
    roc_auc_macro: float | None  # mean over the classes whose ROC-AUC is defined
    roc_curves: list[dict[str, list[float]] | None]  # per class: fpr, tpr; None if undefined
    confusion: list[list[int]]  # [true][predicted]
    most_confused: list[dict[str, Any]]  # true, predicted, count, share of the true class
    ece: float | None  # None if there are no samples
    calibration: list[dict[str, Any]]  # per bin: lower, upper, count, confidence, accuracy
    zero_division: float

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "ClassificationMetrics":
        return cls(**{field.name: values[field.name] for field in dataclasses.fields(cls)})


def detect_score_kind(scores: np.ndarray) -> str:
    """Return ``"probabilities"`` if every row is non-negative and sums to one, else ``"logits"``."""
    scores = np.asarray(scores, dtype=np.float64)
    if scores.size == 0:
        return "logits"
    is_distribution = (
        np.isfinite(scores).all()
        and scores.min() >= 0.0
        and scores.max() <= 1.0
        and np.abs(scores.sum(axis=1) - 1.0).max() <= _PROBABILITY_SUM_TOLERANCE
    )
    return "probabilities" if is_distribution else "logits"


def to_probabilities(scores: np.ndarray, kind: str = "auto") -> tuple[np.ndarray, np.ndarray]:
    """Return float64 probabilities and log-probabilities from logits or probabilities.

    Logits go through softmax and log-softmax in float64. Probabilities are renormalized in
    float64 (so float32 rounding leaves no row off one) and their log is floored at
    ``log(float64 eps)``, as scikit-learn's ``log_loss`` clips.
    """
    if kind not in SCORE_KINDS:
        raise MetricsError(f"invalid score kind {kind!r}; choose one of {', '.join(SCORE_KINDS)}")
    scores = np.asarray(scores, dtype=np.float64)
    if kind == "auto":
        kind = detect_score_kind(scores)
    if kind == "logits":
        return softmax(scores, axis=1), log_softmax(scores, axis=1)
    if scores.size and (scores.min() < 0 or not np.isfinite(scores).all()):
        raise MetricsError("probabilities must be finite and non-negative; pass kind='logits'")
    totals = scores.sum(axis=1, keepdims=True)
    if (totals <= 0).any():
        raise MetricsError("a row of probabilities sums to 0; pass kind='logits' for raw scores")
    probabilities = scores / totals
    log_probabilities = np.log(np.maximum(probabilities, np.finfo(np.float64).eps))
    return probabilities, log_probabilities


def compute_metrics(
    labels: np.ndarray,
    scores: np.ndarray,
    *,
    kind: str = "auto",
    num_classes: int = NUM_CLASSES,
    zero_division: float = 0.0,
    calibration_bins: int = CALIBRATION_BINS,
    roc_max_points: int = ROC_MAX_POINTS,
) -> ClassificationMetrics:
    """Compute every metric from true labels ``(N,)`` and scores ``(N, num_classes)``.

    ``scores`` are logits or probabilities. ``kind="auto"`` treats them as probabilities when
    each row is a probability distribution. Both kinds give the same metrics.
    """
    labels = np.asarray(labels)
    scores = np.asarray(scores)
    _check_inputs(labels, scores, num_classes)
    labels = labels.astype(np.int64)
    probabilities, log_probabilities = to_probabilities(scores, kind)
    classes = np.arange(num_classes)
    num_samples = int(labels.shape[0])

    predictions = probabilities.argmax(axis=1)
    correct = predictions == labels
    precision, recall, f1, support = precision_recall_fscore_support(
        labels, predictions, labels=classes, zero_division=zero_division
    )
    averages = {}
    for average in ("macro", "weighted"):
        values = precision_recall_fscore_support(
            labels, predictions, labels=classes, average=average, zero_division=zero_division
        )
        averages[average] = {
            "precision": float(values[0]),
            "recall": float(values[1]),
            "f1": float(values[2]),
        }

    per_class_accuracy = []
    for index in classes:
        members = labels == index
        count = int(members.sum())
        per_class_accuracy.append(float(correct[members].mean()) if count else None)

    roc_auc, roc_curves = _roc_per_class(labels, probabilities, num_classes, roc_max_points)
    defined_auc = [value for value in roc_auc if value is not None]
    matrix = confusion_matrix(labels, predictions, labels=classes)
    ece, calibration = calibration_table(probabilities, labels, calibration_bins)

    return ClassificationMetrics(
        num_samples=num_samples,
        num_classes=num_classes,
        accuracy=float(correct.mean()) if num_samples else 0.0,
        top2_accuracy=_top_k_accuracy(labels, probabilities, 2, classes),
        top5_accuracy=_top_k_accuracy(labels, probabilities, 5, classes),
        loss=float(-log_probabilities[np.arange(num_samples), labels].mean()) if num_samples else 0.0,
        precision=[float(value) for value in precision],
        recall=[float(value) for value in recall],
        f1=[float(value) for value in f1],
        support=[int(value) for value in support],
        per_class_accuracy=per_class_accuracy,
        macro=averages["macro"],
        weighted=averages["weighted"],
        roc_auc=roc_auc,
        roc_auc_macro=float(np.mean(defined_auc)) if defined_auc else None,
        roc_curves=roc_curves,
        confusion=matrix.astype(int).tolist(),
        most_confused=most_confused_pairs(matrix),
        ece=ece,
        calibration=calibration,
        zero_division=float(zero_division),
    )


def most_confused_pairs(matrix: np.ndarray, limit: int = MOST_CONFUSED_PAIRS) -> list[dict[str, Any]]:
    """Return the largest off-diagonal cells of a confusion matrix (rows = true classes).

    Each pair has ``true``, ``predicted``, ``count`` and ``share`` (count over the true class's
    samples). Ties in count keep row-major order, so the result is deterministic.
    """
    matrix = np.asarray(matrix)
    row_totals = matrix.sum(axis=1)
    cells = []
    for true, predicted in zip(*np.nonzero(matrix)):
        if true == predicted:
            continue
        count = int(matrix[true, predicted])
        cells.append(
            {
                "true": int(true),
                "predicted": int(predicted),
                "count": count,
                "share": count / int(row_totals[true]),
            }
        )
    cells.sort(key=lambda cell: -cell["count"])
    return cells[:limit]


def calibration_table(
    probabilities: np.ndarray, labels: np.ndarray, num_bins: int = CALIBRATION_BINS
) -> tuple[float | None, list[dict[str, Any]]]:
    """Return the expected calibration error and the reliability diagram's bins.

    Bin ``b`` contains the samples whose confidence (top-1 probability) lies in
    ``(b / num_bins, (b + 1) / num_bins]``; a confidence of exactly 0 joins the first bin.
    ECE is the sum over bins of ``count / N * |accuracy - mean confidence|``. Empty bins have
    ``confidence`` and ``accuracy`` set to ``None`` and add nothing.
    """
    if num_bins < 1:
        raise MetricsError(f"the number of calibration bins must be at least 1, got {num_bins}")
    probabilities = np.asarray(probabilities, dtype=np.float64)
    labels = np.asarray(labels)
    confidences = probabilities.max(axis=1) if len(labels) else np.zeros(0)
    correct = (probabilities.argmax(axis=1) == labels) if len(labels) else np.zeros(0, dtype=bool)
    bin_index = np.clip(np.ceil(confidences * num_bins).astype(np.int64) - 1, 0, num_bins - 1)

    bins = []
    ece = 0.0
    for index in range(num_bins):
        members = bin_index == index
        count = int(members.sum())
        bin_record = {
            "lower": index / num_bins,
            "upper": (index + 1) / num_bins,
            "count": count,
            "confidence": None,
            "accuracy": None,
        }
        if count:
            mean_confidence = float(confidences[members].mean())
            accuracy = float(correct[members].mean())
            bin_record["confidence"] = mean_confidence
            bin_record["accuracy"] = accuracy
            ece += count / len(labels) * abs(accuracy - mean_confidence)
        bins.append(bin_record)
    return (float(ece) if len(labels) else None), bins


def _check_inputs(labels: np.ndarray, scores: np.ndarray, num_classes: int) -> None:
    if labels.ndim != 1:
        raise MetricsError(f"labels must be a 1-D array, got shape {labels.shape}")
    if scores.ndim != 2 or scores.shape[1] != num_classes:
        raise MetricsError(
            f"scores must have shape (N, {num_classes}), got {scores.shape}"
        )
    if scores.shape[0] != labels.shape[0]:
        raise MetricsError(
            f"{labels.shape[0]} labels but {scores.shape[0]} rows of scores; pass one row per label"
        )
    if labels.size and not np.issubdtype(labels.dtype, np.integer):
        raise MetricsError(f"labels must be integers, got dtype {labels.dtype}")
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise MetricsError(
            f"labels must lie in 0..{num_classes - 1}, got {labels.min()}..{labels.max()}"
        )


def _top_k_accuracy(labels: np.ndarray, probabilities: np.ndarray, k: int, classes: np.ndarray) -> float:
    if not len(labels):
        return 0.0
    return float(top_k_accuracy_score(labels, probabilities, k=k, labels=classes))


def _roc_per_class(
    labels: np.ndarray, probabilities: np.ndarray, num_classes: int, max_points: int
) -> tuple[list[float | None], list[dict[str, list[float]] | None]]:
    aucs: list[float | None] = []
    curves: list[dict[str, list[float]] | None] = []
    for index in range(num_classes):
        positives = labels == index
        count = int(positives.sum())
        if count == 0 or count == len(labels):
            # One-vs-rest ROC needs both positives and negatives; without them the area is
            # undefined, not 0.5.
            aucs.append(None)
            curves.append(None)
            continue
        aucs.append(float(roc_auc_score(positives, probabilities[:, index])))
        fpr, tpr, _ = roc_curve(positives, probabilities[:, index], drop_intermediate=True)
        curves.append(_downsample_curve(fpr, tpr, max_points))
    return aucs, curves


def _downsample_curve(fpr: np.ndarray, tpr: np.ndarray, max_points: int) -> dict[str, list[float]]:
    """Keep at most ``max_points`` vertices of a ROC curve, evenly spaced along it, ends included."""
    if len(fpr) > max_points:
        keep = np.unique(np.linspace(0, len(fpr) - 1, max_points).round().astype(np.int64))
        fpr, tpr = fpr[keep], tpr[keep]
    return {"fpr": [float(value) for value in fpr], "tpr": [float(value) for value in tpr]}

