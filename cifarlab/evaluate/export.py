"""Tables of a report as rows, CSV text and files."""

from __future__ import annotations

import csv
import io
import os
from typing import Any

from cifarlab.evaluate.report import EvaluationReport, write_report_json, write_text_atomic

__all__ = [
    "classification_rows",
    "classification_csv",
    "confusion_csv",
    "headline_metrics",
    "write_classification_csv",
    "write_report_json",
]


def classification_rows(report: EvaluationReport) -> list[dict[str, Any]]:
    """Return one row per class, then ``macro avg`` and ``weighted avg``, like scikit-learn's report.

    Columns: ``class``, ``precision``, ``recall``, ``f1``, ``support``, ``accuracy`` (share of the
    class's images classified correctly) and ``roc_auc`` (one-vs-rest); ``None`` is undefined.
    """
    metrics = report.metrics
    rows = []
    for index, name in enumerate(report.class_names):
        rows.append(
            {
                "class": name,
                "precision": metrics.precision[index],
                "recall": metrics.recall[index],
                "f1": metrics.f1[index],
                "support": metrics.support[index],
                "accuracy": metrics.per_class_accuracy[index],
                "roc_auc": metrics.roc_auc[index],
            }
        )
    total = sum(metrics.support)
    rows.append(
        {
            "class": "macro avg",
            **metrics.macro,
            "support": total,
            "accuracy": None,
            "roc_auc": metrics.roc_auc_macro,
        }
    )
    rows.append(
        {"class": "weighted avg", **metrics.weighted, "support": total, "accuracy": None, "roc_auc": None}
    )
    return rows


def headline_metrics(report: EvaluationReport) -> dict[str, Any]:
    """Return the one-number summaries: accuracy, top-k, loss, macro scores, ROC-AUC, ECE, gap."""
    metrics = report.metrics
    gap = report.generalization or {}
    return {
        "images": metrics.num_samples,
        "accuracy": metrics.accuracy,
        "top2_accuracy": metrics.top2_accuracy,
        "top5_accuracy": metrics.top5_accuracy,
        "loss": metrics.loss,
        "macro_precision": metrics.macro["precision"],
        "macro_recall": metrics.macro["recall"],
        "macro_f1": metrics.macro["f1"],
        "weighted_f1": metrics.weighted["f1"],
        "roc_auc_macro": metrics.roc_auc_macro,
        "ece": metrics.ece,
        "train_accuracy": gap.get("train_accuracy"),
        "accuracy_gap": gap.get("accuracy_gap"),
        "loss_gap": gap.get("loss_gap"),
    }


def classification_csv(report: EvaluationReport) -> str:
    """Return the classification table as CSV text (empty cells are undefined values)."""
    rows = classification_rows(report)
    return _to_csv(list(rows[0]), [[_cell(row[key]) for key in row] for row in rows])


def confusion_csv(report: EvaluationReport) -> str:
    """Return the confusion matrix as CSV: one row per true class, one column per predicted class."""
    names = report.class_names
    header = ["true \\ predicted", *names]
    rows = [[name, *counts] for name, counts in zip(names, report.metrics.confusion)]
    return _to_csv(header, rows)


def write_classification_csv(report: EvaluationReport, path: str | os.PathLike) -> None:
    """Write the classification table as a CSV file, atomically."""
    write_text_atomic(path, classification_csv(report))


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6f}"
    return value


def _to_csv(header: list[str], rows: list[list[Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()
