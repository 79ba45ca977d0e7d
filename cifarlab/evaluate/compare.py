"""Every checkpoint side by side, and the raw-versus-augmented pairs of one architecture."""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Any, Callable, Iterable

from cifarlab.evaluate.report import EvaluationReport, evaluate_checkpoint, load_cached_report

log = logging.getLogger(__name__)

# checkpoint_progress(index, total, name): called before each checkpoint is evaluated.
CheckpointProgress = Callable[[int, int, str], None]


@dataclass
class ComparisonRow:
    """One checkpoint's headline numbers; metrics are ``None`` until it has a test report."""

    name: str
    path: str
    arch: str | None
    protected: bool  # shipped with cifarlab
    recipe: str  # augmentation recipe name, "none" for no augmentation
    augmented: bool  # the recipe has at least one operation
    params: int | None
    size_mb: float  # file size in MB (10^6 bytes)
    train_time_s: float | None  # training and validation time, summed over resumed sessions
    epochs: int | None  # epochs completed
    val_acc: float | None  # best validation accuracy, the one that picked these weights
    accuracy: float | None = None  # test accuracy from the report
    top5_accuracy: float | None = None
    macro_precision: float | None = None
    macro_recall: float | None = None
    macro_f1: float | None = None
    roc_auc_macro: float | None = None
    ece: float | None = None
    train_accuracy: float | None = None  # on the training subset of the generalization gap
    accuracy_gap: float | None = None  # train_accuracy - accuracy
    loss_gap: float | None = None  # test loss - training loss
    error: str | None = None  # why the checkpoint or its report could not be read

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def evaluated(self) -> bool:
        return self.accuracy is not None


def recipe_summary(meta: dict[str, Any]) -> tuple[str, bool]:
    """Return the name of the augmentation recipe a checkpoint trained with and whether it augments."""
    recipe = (meta.get("config") or {}).get("recipe")
    if not isinstance(recipe, dict):
        return "unknown", False
    operations = recipe.get("operations") or []
    if not operations:
        return "none", False
    name = recipe.get("name") or "custom"
    return str(name), True


def comparison_row(info: Any, *, report: EvaluationReport | None = None) -> ComparisonRow:
    """Build the row of one checkpoint from its listing entry and, if given, its test report.

    ``info`` is a `cifarlab.checkpoints.CheckpointInfo`.
    """
    from cifarlab.checkpoints import CheckpointError, read_meta

    meta: dict[str, Any] = {}
    error = info.error
    if error is None:
        try:
            meta = read_meta(info.path)
        except CheckpointError as exception:
            error = str(exception)
    recipe, augmented = recipe_summary(meta)
    training = meta.get("training") or {}
    history = meta.get("history") or []
    row = ComparisonRow(
        name=info.name,
        path=str(info.path),
        arch=info.arch,
        protected=bool(info.protected),
        recipe=recipe,
        augmented=augmented,
        params=info.params,
        size_mb=info.size_bytes / 1e6,
        train_time_s=_number(training.get("time_s")),
        epochs=int(training.get("epochs_completed", len(history))) if meta else None,
        val_acc=info.val_acc,
        error=error,
    )
    if report is not None:
        metrics = report.metrics
        gap = report.generalization or {}
        row.accuracy = metrics.accuracy
        row.top5_accuracy = metrics.top5_accuracy
        row.macro_precision = metrics.macro["precision"]
        row.macro_recall = metrics.macro["recall"]
        row.macro_f1 = metrics.macro["f1"]
        row.roc_auc_macro = metrics.roc_auc_macro
        row.ece = metrics.ece
        row.train_accuracy = gap.get("train_accuracy")
        row.accuracy_gap = gap.get("accuracy_gap")
        row.loss_gap = gap.get("loss_gap")
    return row


def compare_checkpoints(
    infos: Iterable[Any] | None = None,
    *,
    evaluate_missing: bool = False,
    data: Any = None,
    data_source: str | None = None,
    device: str = "cpu",
    progress: CheckpointProgress | None = None,
) -> list[ComparisonRow]:
    """Return one row per checkpoint with the numbers of its full test-set report.

    ``infos`` defaults to `cifarlab.checkpoints.list_checkpoints`. A checkpoint without a cached
    report keeps empty metric cells, unless ``evaluate_missing`` is true: then it is evaluated
    (10,000 test images plus the generalization subset) and its report cached. Only reports
    made on ``data_source`` count when it is given (``data.source`` when ``data`` is given).
    """
    from cifarlab.checkpoints import list_checkpoints

    infos = list(list_checkpoints() if infos is None else infos)
    if data_source is None and data is not None:
        data_source = data.source
    rows = []
    for index, info in enumerate(infos):
        report = None
        if info.error is None:
            try:
                report = load_cached_report(info.path, "test", data_source=data_source)
                if report is None and evaluate_missing:
                    if progress is not None:
                        progress(index, len(infos), info.name)
                    report = evaluate_checkpoint(info.path, "test", data=data, device=device)
            except (OSError, ValueError) as error:
                log.warning("cannot evaluate checkpoint %s: %s", info.path, error)
                row = comparison_row(info)
                row.error = str(error)
                rows.append(row)
                continue
        rows.append(comparison_row(info, report=report))
    return rows


def raw_augmented_pairs(rows: Iterable[ComparisonRow]) -> list[dict[str, Any]]:
    """Pair each augmented checkpoint with the non-augmented ones of the same architecture.

    Each pair has ``arch``, ``raw`` and ``augmented`` (rows), and the differences augmented
    minus raw of test accuracy, macro F1 and accuracy gap (``None`` where either side is
    missing). A smaller accuracy gap means the augmentation reduced overfitting.
    """
    rows = [row for row in rows if row.error is None and row.arch is not None and row.recipe != "unknown"]
    pairs = []
    for augmented in rows:
        if not augmented.augmented:
            continue
        for raw in rows:
            if raw.augmented or raw.arch != augmented.arch:
                continue
            pairs.append(
                {
                    "arch": augmented.arch,
                    "raw": raw,
                    "augmented": augmented,
                    "accuracy_change": _difference(augmented.accuracy, raw.accuracy),
                    "macro_f1_change": _difference(augmented.macro_f1, raw.macro_f1),
                    "accuracy_gap_change": _difference(augmented.accuracy_gap, raw.accuracy_gap),
                }
            )
    pairs.sort(key=lambda pair: (pair["arch"], pair["raw"].name, pair["augmented"].name))
    return pairs


def _difference(first: float | None, second: float | None) -> float | None:
    if first is None or second is None:
        return None
    return first - second


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)

