"""Evaluation: metrics over all ten classes, cached per-checkpoint reports and comparisons.

- `cifarlab.evaluate.metrics`: every metric from labels and logits or probabilities.
- `cifarlab.evaluate.report`: predictions on a split of a checkpoint, the JSON report cache.
- `cifarlab.evaluate.export`: the tables of a report as rows and CSV.
- `cifarlab.evaluate.compare`: all checkpoints side by side, raw-versus-augmented pairs.
"""

from cifarlab.evaluate.compare import (
    ComparisonRow,
    compare_checkpoints,
    comparison_row,
    raw_augmented_pairs,
    recipe_summary,
)
from cifarlab.evaluate.export import (
    classification_csv,
    classification_rows,
    confusion_csv,
    headline_metrics,
    write_classification_csv,
)
from cifarlab.evaluate.metrics import (
    CALIBRATION_BINS,
    ClassificationMetrics,
    MetricsError,
    calibration_table,
    compute_metrics,
    detect_score_kind,
    most_confused_pairs,
    to_probabilities,
)
from cifarlab.evaluate.report import (
    DEFAULT_BATCH_SIZE,
    GAP_TRAIN_IMAGES,
    SPLITS,
    EvaluationError,
    EvaluationReport,
    evaluate_checkpoint,
    evaluate_loaded,
    evaluate_predictions,
    file_identity,
    generalization_subset,
    load_cached_report,
    predict_logits,
    save_cached_report,
    select_split,
    write_report_json,
)

__all__ = [
    "CALIBRATION_BINS",
    "DEFAULT_BATCH_SIZE",
    "GAP_TRAIN_IMAGES",
    "SPLITS",
    "ClassificationMetrics",
    "ComparisonRow",
    "EvaluationError",
    "EvaluationReport",
    "MetricsError",
    "calibration_table",
    "classification_csv",
    "classification_rows",
    "compare_checkpoints",
    "comparison_row",
    "compute_metrics",
    "confusion_csv",
    "detect_score_kind",
    "evaluate_checkpoint",
    "evaluate_loaded",
    "evaluate_predictions",
    "file_identity",
    "generalization_subset",
    "headline_metrics",
    "load_cached_report",
    "most_confused_pairs",
    "predict_logits",
    "raw_augmented_pairs",
    "recipe_summary",
    "save_cached_report",
    "select_split",
    "to_probabilities",
    "write_classification_csv",
    "write_report_json",
]
