"""Evaluate a checkpoint on a split and cache the result as a JSON report beside it.

A report contains every metric of `cifarlab.evaluate.metrics`, the prediction for each evaluated
image (for the gallery of mistakes) and the generalization gap. It is written atomically:

- the full test-split report of a user checkpoint ``name.pt`` goes beside it, as
  ``name.report.json``, with the test accuracy also at its top level (``accuracy``) for
  checkpoint listings; deleting the checkpoint deletes it too;
- every other report (another split, a ``limit``, a shipped checkpoint whose folder belongs to
  the repository, or a folder that is not writable) goes to ``cache_dir()/reports/``.

A report beside a shipped checkpoint is read but never written. Each report records the
checkpoint's SHA-256, size and modification time, so a retrained or replaced file is evaluated
again instead of showing stale numbers.

Splits follow the checkpoint's own training record: ``val`` is rebuilt with
`cifarlab.data.split_train_val` from the validation size and seed saved in the checkpoint, and
``train`` is the training split without the validation images.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import logging
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from cifarlab import paths
from cifarlab.evaluate.metrics import ClassificationMetrics, compute_metrics, to_probabilities

log = logging.getLogger(__name__)

REPORT_FORMAT = 1
SPLITS = ("test", "val", "train")
DEFAULT_BATCH_SIZE = 500
# Training images scored for the generalization gap. A fixed, class-balanced subset costs half a
# test-set pass, and its accuracy has a standard error of at most sqrt(0.25 / 5000) = 0.71 points.
GAP_TRAIN_IMAGES = 5000
REPORT_SUFFIX = ".report.json"

# progress(stage, done, total): images scored so far in the current stage ("test", "val",
# "train" or "training subset"), in the argument order of cifarlab.data's progress callbacks.
ProgressCallback = Callable[[str, int, int], None]


class EvaluationError(ValueError):
    """A split or option that cannot be evaluated; the message names the value and the fix."""


@dataclass
class EvaluationReport:
    """Everything measured on one checkpoint and split, as plain JSON-ready values."""

    format: int
    checkpoint: dict[str, Any]  # path, name, arch, sha256, size_bytes, mtime_ns
    split: str  # test, val or train
    limit: int | None  # only a class-balanced sample of `limit` images of the split was scored
    data: dict[str, Any]  # source, description, image_source ("test"/"train"), num_images
    class_names: list[str]
    metrics: ClassificationMetrics
    # Per evaluated image: image_id (row in data.<image_source>_images), label, predicted,
    # confidence (top-1 probability) and top5 (the five most probable classes).
    predictions: dict[str, list]
    generalization: dict[str, Any] | None  # training-split vs this split; None for train
    gap_images: int  # training images requested for the generalization gap
    created: str  # ISO 8601 time in UTC
    seconds: float  # wall time of the evaluation
    device: str
    notes: list[str]
    cache_path: str | None = None  # where the report was read from or written to

    def to_dict(self) -> dict[str, Any]:
        values = dataclasses.asdict(self)
        values.pop("cache_path")
        # Checkpoint listings read the accuracy from the top level of the report.
        return {"accuracy": self.metrics.accuracy, **values}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "EvaluationReport":
        fields = {field.name for field in dataclasses.fields(cls)} - {"cache_path"}
        missing = sorted(fields - set(values))
        if missing:
            raise EvaluationError(f"report is missing field(s) {', '.join(missing)}")
        # Other keys, such as the top-level accuracy, are derived and ignored here.
        arguments = {name: values[name] for name in fields}
        arguments["metrics"] = ClassificationMetrics.from_dict(values["metrics"])
        return cls(**arguments)

    def misclassified(self) -> list[dict[str, Any]]:
        """Return the wrongly classified images, most confident mistake first."""
        predictions = self.predictions
        rows = [
            {
                "image_id": image_id,
                "label": label,
                "predicted": predicted,
                "confidence": confidence,
            }
            for image_id, label, predicted, confidence in zip(
                predictions["image_id"],
                predictions["label"],
                predictions["predicted"],
                predictions["confidence"],
            )
            if label != predicted
        ]
        rows.sort(key=lambda row: -row["confidence"])
        return rows


# ---------------------------------------------------------------------------------------------
# Predictions


def predict_logits(
    model: nn.Module,
    images: np.ndarray | torch.Tensor,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    device: str | torch.device = "cpu",
    progress: ProgressCallback | None = None,
    stage: str = "test",
) -> np.ndarray:
    """Return the float32 logits ``(N, num_classes)`` of uint8 images ``(N, 3, 32, 32)``.

    The model runs in eval mode under ``torch.inference_mode`` in batches of ``batch_size``; its
    previous mode is restored afterwards. Images are scaled to ``[0, 1]`` batch by batch, so the
    whole split is never held as float.
    """
    if batch_size < 1:
        raise EvaluationError(f"invalid batch size {batch_size}; give a positive number of images")
    if images.dtype not in (np.uint8, torch.uint8) or images.ndim != 4 or tuple(images.shape[1:]) != (3, 32, 32):
        raise EvaluationError(
            f"images must be uint8 of shape (N, 3, 32, 32), got {images.dtype} {tuple(images.shape)}"
        )
    device = torch.device(device)
    total = len(images)
    outputs = []
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for start in range(0, total, batch_size):
                batch = _as_tensor(images[start : start + batch_size]).to(device, non_blocking=True)
                logits = model(batch.float().div_(255.0))
                outputs.append(logits.float().cpu())
                if progress is not None:
                    progress(stage, min(start + batch_size, total), total)
    finally:
        model.train(was_training)
    if not outputs:
        return np.zeros((0, getattr(model, "num_classes", 10)), dtype=np.float32)
    return torch.cat(outputs).numpy()


def _as_tensor(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    if isinstance(images, torch.Tensor):
        return images
    # Shared data arrays are read-only, and torch warns about wrapping a read-only array, so a
    # read-only batch is copied.
    if not images.flags.writeable:
        images = images.copy()
    return torch.from_numpy(np.ascontiguousarray(images))


def evaluate_predictions(
    labels: np.ndarray, scores: np.ndarray, *, kind: str = "auto"
) -> tuple[ClassificationMetrics, dict[str, list]]:
    """Compute the metrics and the per-image prediction record from labels and scores."""
    metrics = compute_metrics(labels, scores, kind=kind)
    probabilities, _ = to_probabilities(scores, kind)
    top5 = np.argsort(-probabilities, axis=1, kind="stable")[:, :5]
    record = {
        "label": [int(value) for value in labels],
        "predicted": [int(value) for value in probabilities.argmax(axis=1)],
        # Rounded so a 10,000-image report stays under 1 MB. Six decimals are more than a chart shows.
        "confidence": [round(float(value), 6) for value in probabilities.max(axis=1)],
        "top5": top5.astype(int).tolist(),
    }
    return metrics, record


# ---------------------------------------------------------------------------------------------
# Splits from the checkpoint's training record


def training_split_settings(meta: dict[str, Any]) -> dict[str, Any]:
    """Return ``val_size``, ``seed``, ``train_subset`` and ``data_source`` a checkpoint trained with."""
    config = meta.get("config") or {}
    data = meta.get("data") or {}
    split = data.get("split") or {}
    return {
        "val_size": int(split.get("val_size", config.get("val_size", 5000))),
        "seed": int(split.get("seed", config.get("split_seed", 0))),
        "train_subset": split.get("train_subset", config.get("train_subset")),
        "val_fingerprint": split.get("val_fingerprint"),
        "data_source": data.get("source") or config.get("data_source", "bundled"),
    }


# Seed of the class-balanced sample that ``limit`` scores; fixed, so every run scores the same images.
LIMIT_SAMPLE_SEED = 0


def select_split(
    data: Any, meta: dict[str, Any], split: str, limit: int | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, str, list[str]]:
    """Return ``(images, labels, image_ids, image_source, notes)`` of a split of ``data``.

    ``image_ids`` index ``data.test_images`` when ``image_source`` is ``"test"`` and
    ``data.train_images`` otherwise. ``limit`` keeps a fixed, class-balanced sample of
    ``limit`` ids of the split, in ascending order.
    """
    from cifarlab.data import split_train_val
    from cifarlab.train.dataset import stratified_subset

    if split not in SPLITS:
        raise EvaluationError(f"invalid split {split!r}; choose one of {', '.join(SPLITS)}")
    if limit is not None and limit < 1:
        raise EvaluationError(f"invalid limit {limit}; give a positive number of images or none")

    notes: list[str] = []
    if split == "test":
        image_source = "test"
        ids = np.arange(len(data.test_labels), dtype=np.int64)
        if len(ids) == 0:
            raise EvaluationError(f"the data source {data.source!r} has no test images")
    else:
        image_source = "train"
        settings = training_split_settings(meta)
        if split == "val" and settings["val_size"] == 0:
            raise EvaluationError(
                "this checkpoint was trained without a validation split (val_size=0); "
                "evaluate the test or train split instead"
            )
        division = split_train_val(data.train_labels, settings["val_size"], settings["seed"])
        if settings["val_fingerprint"] and settings["val_fingerprint"] != division.fingerprint:
            notes.append(
                "the validation images rebuilt from this data differ from the ones recorded at "
                "training time, so the model may have trained on some of the evaluated images"
            )
        ids = division.val_idx if split == "val" else division.train_idx

    images = data.test_images if image_source == "test" else data.train_images
    labels = data.test_labels if image_source == "test" else data.train_labels
    if limit is not None and limit < len(ids):
        # A class-balanced sample, because the first images of a split sorted by class (as some
        # archives are) would all be airplanes and make every per-class number meaningless.
        ids = stratified_subset(labels[ids], ids, limit, LIMIT_SAMPLE_SEED)
        notes.append(
            f"only {limit} images of the {split} split were scored, a class-balanced sample "
            f"drawn with seed {LIMIT_SAMPLE_SEED}"
        )
    return images[ids], labels[ids], ids, image_source, notes


def generalization_subset(data: Any, meta: dict[str, Any], size: int) -> tuple[np.ndarray, str]:
    """Pick a fixed, class-balanced set of the images the checkpoint trained on.

    The pool is the training split without the validation images. If the run trained on a
    subset of that split, the pool is that subset. ``size`` images of the pool are picked with
    the split's seed. Returns the ids into ``data.train_images`` and a sentence describing them.
    """
    from cifarlab.data import split_train_val
    from cifarlab.train.dataset import stratified_subset

    settings = training_split_settings(meta)
    division = split_train_val(data.train_labels, settings["val_size"], settings["seed"])
    pool = division.train_idx
    subset = settings["train_subset"]
    if subset is not None and int(subset) < len(pool):
        pool = stratified_subset(data.train_labels[pool], pool, int(subset), settings["seed"])
    if size >= len(pool):
        return pool, f"all {len(pool):,} training images the model was trained on"
    ids = stratified_subset(data.train_labels[pool], pool, size, settings["seed"])
    description = (
        f"{size:,} of the {len(pool):,} training images the model was trained on (validation "
        f"images excluded), class-balanced, picked with seed {settings['seed']}"
    )
    return ids, description


# ---------------------------------------------------------------------------------------------
# Evaluating a checkpoint, with the cache


def evaluate_checkpoint(
    path: str | os.PathLike,
    split: str = "test",
    *,
    data: Any = None,
    limit: int | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    device: str = "cpu",
    gap_images: int = GAP_TRAIN_IMAGES,
    use_cache: bool = True,
    progress: ProgressCallback | None = None,
) -> EvaluationReport:
    """Evaluate the checkpoint at ``path`` on ``split`` and return its report.

    A cached report for the same file content, split, limit and data source is returned without
    scoring anything (unless ``use_cache`` is false). Otherwise the split is scored, the training
    subset for the generalization gap too (``gap_images`` images; 0 skips it), and the report is
    written to the cache. ``data`` defaults to ``load_cifar10()`` with the source the checkpoint
    was trained on when that source needs no path, else the bundled one.
    """
    from cifarlab.checkpoints import load_checkpoint, read_meta

    path = Path(path)
    if split not in SPLITS:
        raise EvaluationError(f"invalid split {split!r}; choose one of {', '.join(SPLITS)}")
    if gap_images < 0:
        raise EvaluationError(f"invalid gap_images {gap_images}; give 0 (no gap) or more images")
    if limit is not None:
        # A quick run on a few images should not score thousands of training images.
        gap_images = min(gap_images, limit)
    identity = file_identity(path)
    data_source = data.source if data is not None else default_data_source(read_meta(path))

    if use_cache:
        cached = load_cached_report(
            path, split, limit=limit, gap_images=gap_images, identity=identity, data_source=data_source
        )
        if cached is not None:
            return cached

    loaded = load_checkpoint(path)
    meta = loaded.meta
    if data is None:
        from cifarlab.data import load_cifar10

        data = load_cifar10(data_source)

    report = evaluate_loaded(
        loaded.model,
        meta,
        data,
        split,
        checkpoint=identity,
        limit=limit,
        batch_size=batch_size,
        device=device,
        gap_images=gap_images,
        progress=progress,
    )
    if use_cache:
        report.cache_path = str(save_cached_report(report, path))
    return report


def evaluate_loaded(
    model: nn.Module,
    meta: dict[str, Any],
    data: Any,
    split: str = "test",
    *,
    checkpoint: dict[str, Any] | None = None,
    limit: int | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    device: str = "cpu",
    gap_images: int = GAP_TRAIN_IMAGES,
    progress: ProgressCallback | None = None,
) -> EvaluationReport:
    """Evaluate a model already in memory, with its checkpoint metadata, without any cache."""
    started = time.perf_counter()
    images, labels, ids, image_source, notes = select_split(data, meta, split, limit)
    model = model.to(device)
    logits = predict_logits(
        model, images, batch_size=batch_size, device=device, progress=progress, stage=split
    )
    metrics, predictions = evaluate_predictions(labels, logits, kind="logits")
    predictions = {"image_id": [int(value) for value in ids], **predictions}

    generalization = None
    if split != "train" and gap_images > 0:
        train_ids, selection = generalization_subset(data, meta, gap_images)
        train_logits = predict_logits(
            model,
            data.train_images[train_ids],
            batch_size=batch_size,
            device=device,
            progress=progress,
            stage="training subset",
        )
        train_metrics = compute_metrics(data.train_labels[train_ids], train_logits, kind="logits")
        generalization = {
            "train_images": len(train_ids),
            "selection": selection,
            "train_accuracy": train_metrics.accuracy,
            "train_loss": train_metrics.loss,
            "eval_accuracy": metrics.accuracy,
            "eval_loss": metrics.loss,
            # Positive when the model does better on images it trained on.
            "accuracy_gap": train_metrics.accuracy - metrics.accuracy,
            "loss_gap": metrics.loss - train_metrics.loss,
        }

    checkpoint = dict(checkpoint or {})
    checkpoint.setdefault("arch", meta.get("arch") or getattr(model, "arch", None))
    return EvaluationReport(
        format=REPORT_FORMAT,
        checkpoint=checkpoint,
        split=split,
        limit=limit,
        data={
            "source": str(getattr(data, "source", "custom")),
            "description": str(getattr(data, "description", "")),
            "image_source": image_source,
            "num_images": int(len(ids)),
        },
        class_names=list(getattr(data, "classes", None) or _class_names()),
        metrics=metrics,
        predictions=predictions,
        generalization=generalization,
        gap_images=gap_images,
        created=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        seconds=round(time.perf_counter() - started, 3),
        device=str(device),
        notes=notes,
    )


def default_data_source(meta: dict[str, Any]) -> str:
    """Return the data source to evaluate a checkpoint on when none is given.

    The source the checkpoint trained on is used when it needs no path and is present:
    ``bundled``, or ``canonical`` once downloaded. Any other source falls back to ``bundled``,
    because its test images are the same photographs.
    """
    source = training_split_settings(meta)["data_source"]
    if source == "canonical":
        from cifarlab.data import BATCHES_FOLDER, CANONICAL_FILENAME, TEST_BATCH

        folder = paths.data_dir()
        if (folder / BATCHES_FOLDER / TEST_BATCH).is_file() or (folder / CANONICAL_FILENAME).is_file():
            return "canonical"
    return "bundled"


def _class_names() -> list[str]:
    from cifarlab.data import CLASSES

    return list(CLASSES)


# ---------------------------------------------------------------------------------------------
# The report cache


_sha_memo: dict[tuple[str, int, int], str] = {}


def file_identity(path: str | os.PathLike) -> dict[str, Any]:
    """Return the path, name, SHA-256, size and modification time of a checkpoint file."""
    path = Path(path)
    try:
        stat = path.stat()
    except FileNotFoundError as error:
        raise EvaluationError(f"checkpoint {path} not found; check the path") from error
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    digest = _sha_memo.get(key)
    if digest is None:
        hasher = hashlib.sha256()
        with open(path, "rb") as file:
            for block in iter(lambda: file.read(1 << 20), b""):
                hasher.update(block)
        digest = hasher.hexdigest()
        _sha_memo[key] = digest
    return {
        "path": str(path),
        "name": path.stem,
        "sha256": digest,
        "size_bytes": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
    }


def report_paths(path: str | os.PathLike, split: str, limit: int | None, sha256: str) -> list[Path]:
    """Return where a report may live, in the order they are tried.

    Only the full test report may live beside the checkpoint, as ``name.report.json``. Every
    report may live in ``cache_dir()/reports/``, named after the checkpoint and its SHA-256.
    """
    path = Path(path)
    # NOTE: the place does not depend on the data source, so evaluating the same checkpoint on
    # another source replaces its report (the source is checked when a report is read).
    qualifier = "" if split == "test" and limit is None else f".{split}"
    if limit is not None:
        qualifier += f".sample{limit}"
    cached = paths.cache_dir() / "reports" / f"{path.stem}-{sha256[:16]}{qualifier}{REPORT_SUFFIX}"
    if qualifier:
        return [cached]
    return [path.with_name(path.stem + REPORT_SUFFIX), cached]


def load_cached_report(
    path: str | os.PathLike,
    split: str = "test",
    *,
    limit: int | None = None,
    gap_images: int = GAP_TRAIN_IMAGES,
    identity: dict[str, Any] | None = None,
    data_source: str | None = None,
) -> EvaluationReport | None:
    """Return the cached report of this checkpoint file and split, or None if there is none.

    A report matches only if it was made from a file with the same SHA-256, for the same split,
    limit and gap size, and for the same data source when ``data_source`` is given. The SHA-256
    of a file is kept in memory per path, size and modification time, so it is computed once.
    """
    if limit is not None:
        gap_images = min(gap_images, limit)
    identity = identity or file_identity(path)
    for candidate in report_paths(path, split, limit, identity["sha256"]):
        report = _read_report(candidate)
        if report is None:
            continue
        stored = report.checkpoint
        matches = (
            stored.get("sha256") == identity["sha256"]
            and report.split == split
            and report.limit == limit
            and report.gap_images == gap_images
            and (data_source is None or report.data.get("source") == data_source)
        )
        if matches:
            report.cache_path = str(candidate)
            # The stored path is where it was evaluated; show where the file is now.
            report.checkpoint = {**stored, "path": identity["path"], "name": identity["name"]}
            return report
        log.debug("report %s is stale for %s", candidate, path)
    return None


def save_cached_report(report: EvaluationReport, checkpoint_path: str | os.PathLike) -> Path:
    """Write the report to the first writable place of `report_paths`, never beside a shipped checkpoint."""
    from cifarlab.checkpoints import is_shipped

    candidates = report_paths(
        checkpoint_path, report.split, report.limit, report.checkpoint["sha256"]
    )
    if is_shipped(checkpoint_path):
        candidates = candidates[-1:]
    last_error: OSError | None = None
    for candidate in candidates:
        try:
            write_report_json(report, candidate)
            return candidate
        except OSError as error:
            log.info("writing report %s failed (%s); trying the next place", candidate, error)
            last_error = error
    raise EvaluationError(f"writing the report failed: {last_error}; check the folder permissions")


def _read_report(path: Path) -> EvaluationReport | None:
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as error:
        log.warning("ignoring unreadable report %s: %s", path, error)
        return None
    if not isinstance(values, dict) or values.get("format") != REPORT_FORMAT:
        return None
    try:
        return EvaluationReport.from_dict(values)
    except (TypeError, KeyError, ValueError) as error:
        log.warning("ignoring malformed report %s: %s", path, error)
        return None


def write_report_json(report: EvaluationReport, path: str | os.PathLike) -> None:
    """Write the report as JSON, atomically; an undefined metric is written as ``null``."""
    text = json.dumps(report.to_dict(), allow_nan=False, separators=(",", ":"))
    write_text_atomic(path, text)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write text to a temporary file in the same folder, then move it over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="") as file:
            file.write(text)
        # mkstemp creates the file readable by its owner only; a report is no secret.
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except FileNotFoundError:
            pass
        raise
