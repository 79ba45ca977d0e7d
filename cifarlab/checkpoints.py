"""Self-describing checkpoint files: save, load, inspect, list, import and delete.

A checkpoint is a ``torch.save`` zip file holding one dict of plain Python values and tensors:

- ``format`` (``"cifarlab-checkpoint"``) and ``format_version``;
- ``arch``, ``options``, ``num_classes``, ``input_size``: enough to rebuild the model with
  :func:`cifarlab.models.build_model`;
- ``state_dict``, stored in float32 or, with ``half=True``, float16;
- ``normalization`` (mean and std), ``num_params``, ``precision``, ``versions`` (cifarlab,
  torch, torchvision, numpy, Python) and ``created`` (UTC date, ISO 8601);
- the caller's metadata, at the top level. Training writes ``config`` (the train config as a
  dict), ``class_names``, ``history`` (one dict per epoch) and ``best`` (the best validation
  metrics, such as ``val_acc`` and ``val_loss``, with their ``epoch``). It also writes ``data``
  (source and split), ``training`` (time and device) and optionally ``test`` (test metrics,
  for display only). Accuracies are fractions in [0, 1].

Files are loaded with ``torch.load(weights_only=True)``, whose unpickler builds only tensors and
plain containers, so opening a file never runs code from it.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import logging
import os
import pickle
import platform
import re
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch
import torchvision
from torch import nn

import cifarlab
from cifarlab import paths
from cifarlab.data import CLASSES
from cifarlab.models import Classifier, ModelError, build_model

logger = logging.getLogger(__name__)

FORMAT = "cifarlab-checkpoint"
FORMAT_VERSION = 1
SUFFIX = ".pt"
REPORT_SUFFIX = ".report.json"
# Training writes its resume state beside the checkpoint (``name.resume.pt``); it is not a
# checkpoint and is left out of listings.
RESUME_SUFFIX = ".resume.pt"

# Keys written from the model itself; the caller's metadata may not set them.
RESERVED_KEYS = (
    "format",
    "format_version",
    "arch",
    "options",
    "num_classes",
    "input_size",
    "state_dict",
    "normalization",
    "num_params",
    "precision",
    "versions",
    "created",
)

# float16 keeps 11 significant bits; its largest finite value is 65504.
_FLOAT16_MAX = float(torch.finfo(torch.float16).max)

# Names of the Classifier's normalization buffers, always stored in float32: they are tiny and
# shift every input.
_NORMALIZATION_BUFFERS = ("mean", "std")

# Characters kept in the name of an uploaded file.
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


class CheckpointError(ValueError):
    """A file that cannot be saved, read or used as a cifarlab checkpoint."""


@dataclass
class LoadedCheckpoint:
    """A loaded checkpoint: the model in evaluation mode, its metadata and its file."""

    model: Classifier
    meta: dict[str, Any]
    path: Path


@dataclass(frozen=True)
class CheckpointInfo:
    """One row of :func:`list_checkpoints`.

    Accuracies are fractions in [0, 1] or None when the file does not record them. ``error`` is
    set (and most other fields are None) for a ``.pt`` file that cannot be read as a checkpoint.
    """

    path: Path
    name: str
    protected: bool
    size_bytes: int
    arch: str | None = None
    options: dict[str, Any] | None = None
    params: int | None = None
    precision: str | None = None
    val_acc: float | None = None
    test_acc: float | None = None
    created: str | None = None
    error: str | None = None

    @property
    def location(self) -> str:
        """``"shipped"`` for checkpoints that come with the repository, else ``"user"``."""
        return "shipped" if self.protected else "user"

    def as_dict(self) -> dict[str, Any]:
        values = dataclasses.asdict(self)
        values["path"] = str(self.path)
        values["location"] = self.location
        return values


# ----------------------------------------------------------------------------------------------
# Saving


def save_checkpoint(
    path: str | os.PathLike,
    model: nn.Module,
    meta: dict[str, Any] | None = None,
    *,
    half: bool = False,
) -> Path:
    """Write ``model`` and ``meta`` to ``path`` atomically and return the path.

    Args:
        path: destination file; its folder is created. An existing file is replaced only once
            the new one is complete.
        model: a :class:`Classifier`, possibly wrapped by DistributedDataParallel or
            ``torch.compile``.
        meta: plain metadata (see the module docstring); numpy values become Python numbers
            or tensors, tuples become lists, dataclasses become dicts.
        half: store floating-point weights as float16, which halves the file; they are
            converted back to float32 on load. A tensor with values beyond float16's range
            stays float32.

    Raises:
        CheckpointError: the model is not a Classifier, or ``meta`` contains a reserved key or a
            value that is not plain data.
    """
    path = Path(path)
    classifier = _unwrap(model)
    meta = dict(meta or {})
    reserved = sorted(set(meta) & set(RESERVED_KEYS))
    if reserved:
        raise CheckpointError(
            f"meta key {reserved[0]!r} is reserved because save_checkpoint writes it from the "
            f"model; rename or drop it (reserved keys: {', '.join(RESERVED_KEYS)})"
        )
    plain_meta = {key: _to_plain(value, key) for key, value in meta.items()}
    plain_meta.setdefault("class_names", list(CLASSES[: classifier.num_classes]))
    if len(plain_meta["class_names"]) != classifier.num_classes:
        raise CheckpointError(
            f"class_names has {len(plain_meta['class_names'])} names but the model has "
            f"{classifier.num_classes} outputs; pass one name per class"
        )

    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "arch": classifier.arch,
        "options": _to_plain(classifier.options, "options"),
        "num_classes": classifier.num_classes,
        "input_size": classifier.input_size,
        "normalization": classifier.normalization(),
        "num_params": sum(parameter.numel() for parameter in classifier.parameters()),
        "precision": "float16" if half else "float32",
        "versions": _library_versions(),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        **plain_meta,
        "state_dict": _portable_state_dict(classifier, half),
    }
    _atomic_save(payload, path)
    logger.info("saved checkpoint %s (%s, %s)", path, classifier.arch, payload["precision"])
    return path


def _unwrap(model: nn.Module) -> Classifier:
    # torch.compile wraps the module in ``_orig_mod``; DistributedDataParallel in ``module``.
    while not isinstance(model, Classifier):
        inner = getattr(model, "_orig_mod", None)
        if inner is None:
            inner = getattr(model, "module", None)
        if not isinstance(inner, nn.Module):
            raise CheckpointError(
                f"cannot save a {type(model).__name__}: save_checkpoint takes a "
                f"cifarlab.models.Classifier, as returned by build_model"
            )
        model = inner
    return model


def _portable_state_dict(model: Classifier, half: bool) -> dict[str, torch.Tensor]:
    state = {}
    for key, tensor in model.state_dict().items():
        tensor = tensor.detach().to("cpu")
        if half and tensor.is_floating_point() and key not in _NORMALIZATION_BUFFERS:
            if tensor.numel() == 0 or float(tensor.abs().max()) <= _FLOAT16_MAX:
                tensor = tensor.to(torch.float16)
            else:
                logger.info("kept %s in %s: its values exceed the float16 range", key, tensor.dtype)
        state[key] = tensor.clone()
    return state


def _to_plain(value: Any, where: str) -> Any:
    """Convert ``value`` to plain Python values and CPU tensors, or raise CheckpointError."""
    if value is None or isinstance(value, bool):
        return value
    # Subclasses (torch's TorchVersion, an IntEnum) would be pickled by class name, which
    # weights_only loading rejects, so they become the built-in type.
    if isinstance(value, str):
        return str(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)

    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu").clone()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(value)).clone()
    if isinstance(value, os.PathLike):
        return os.fspath(value)

    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _to_plain(dataclasses.asdict(value), where)
    if isinstance(value, dict):
        plain = {}
        for key, item in value.items():
            if not isinstance(key, (str, int)):
                raise CheckpointError(
                    f"meta[{where}] has a key of type {type(key).__name__}; use str or int keys"
                )
            plain[key] = _to_plain(item, f"{where}.{key}")
        return plain
    if isinstance(value, (list, tuple)):
        return [_to_plain(item, f"{where}[{index}]") for index, item in enumerate(value)]
    raise CheckpointError(
        f"meta[{where}] is a {type(value).__module__}.{type(value).__name__}; a checkpoint "
        f"stores only plain values (str, int, float, bool, None, lists, dicts) and tensors"
    )


def _library_versions() -> dict[str, str]:
    # str(): torch.__version__ is a TorchVersion, which weights_only loading rejects.
    return {
        "cifarlab": str(cifarlab.__version__),
        "torch": str(torch.__version__),
        "torchvision": str(torchvision.__version__),
        "numpy": str(np.__version__),
        "python": platform.python_version(),
    }


def _atomic_save(payload: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as file:
            torch.save(payload, file)
            file.flush()
            os.fsync(file.fileno())
        # mkstemp creates the file as 0600; give it the mode a plain open() would, so other
        # users of a shared classroom server can read the checkpoint.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temporary, 0o666 & ~umask)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


@dataclass(frozen=True)
class HalfPrecisionCheck:
    """The effect of float16 storage on a checkpoint's predictions, measured on labelled images."""

    images: int
    size_float32: int  # bytes of the source file
    size_float16: int  # bytes of the float16 file
    accuracy_float32: float
    accuracy_float16: float
    same_predictions: int  # images whose predicted class did not change
    max_logit_difference: float

    @property
    def accuracy_changed(self) -> bool:
        return self.accuracy_float16 != self.accuracy_float32


def save_half_precision(
    source: str | os.PathLike,
    destination: str | os.PathLike,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    batch_size: int = 500,
) -> HalfPrecisionCheck:
    """Write a float16 copy of a checkpoint, but only if it keeps the accuracy on ``images``.

    Both versions score the uint8 ``images`` (N, 3, 32, 32). The float16 version is the file
    that ``load_checkpoint`` reads back, so the check covers the real round trip. When the
    accuracy changes, nothing is written, and the returned check gives both accuracies.
    """
    source, destination = Path(source), Path(destination)
    if destination.resolve() == source.resolve():
        raise CheckpointError(
            f"invalid destination {destination}: it is the source checkpoint; write the float16 copy to another file"
        )
    original = load_checkpoint(source)
    meta = {key: value for key, value in original.meta.items() if key not in RESERVED_KEYS}
    meta.pop("precision", None)

    destination.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{destination.name}.", suffix=".tmp", dir=destination.parent)
    os.close(handle)
    try:
        save_checkpoint(temporary, original.model, meta, half=True)
        halved = load_checkpoint(temporary)
        logits32 = _logits(original.model, images, batch_size)
        logits16 = _logits(halved.model, images, batch_size)
        labels = torch.as_tensor(labels)
        check = HalfPrecisionCheck(
            images=len(labels),
            size_float32=source.stat().st_size,
            size_float16=Path(temporary).stat().st_size,
            accuracy_float32=float((logits32.argmax(1) == labels).double().mean()),
            accuracy_float16=float((logits16.argmax(1) == labels).double().mean()),
            same_predictions=int((logits32.argmax(1) == logits16.argmax(1)).sum()),
            max_logit_difference=float((logits32 - logits16).abs().max()),
        )
        if check.accuracy_changed:
            Path(temporary).unlink()
        else:
            os.replace(temporary, destination)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return check


@torch.inference_mode()
def _logits(model: nn.Module, images: torch.Tensor, batch_size: int) -> torch.Tensor:
    chunks = [model(images[start : start + batch_size].float() / 255.0) for start in range(0, len(images), batch_size)]
    return torch.cat(chunks)


# ----------------------------------------------------------------------------------------------
# Loading


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> LoadedCheckpoint:
    """Load a checkpoint into a freshly built model, in evaluation mode on ``map_location``.

    Tensors saved on a GPU load on a CPU-only machine with the default ``map_location``. Keys
    of a model saved through DistributedDataParallel lose their leading ``module.`` prefix.

    Raises:
        CheckpointError: the file is missing or is not a cifarlab checkpoint. Also when it
            contains pickled Python objects (rejected before anything in them runs), has a newer
            format version, or its weights do not fit its architecture (the message lists the
            missing and unexpected keys).
    """
    path = Path(path)
    payload = _read_payload(path, map_location, mmap=False)
    state_dict = strip_module_prefix(payload.pop("state_dict"))
    try:
        # Built on the meta device, the model gets shapes but no random initialization, which
        # the checkpoint's weights would overwrite anyway (seconds saved for ResNet-152).
        with torch.device("meta"):
            model = build_model(
                payload["arch"], payload["num_classes"], fetch_weights=False, **payload["options"]
            )
    except ModelError as error:
        raise CheckpointError(f"cannot rebuild the model of {path}: {error}") from error

    _check_keys(path, model, state_dict)
    state_dict = _match_dtypes(model, state_dict)
    try:
        # assign=True makes the loaded tensors the model's own; requires_grad still comes
        # from the model, so a frozen backbone stays frozen.
        model.load_state_dict(state_dict, assign=True)
    except RuntimeError as error:
        # Same keys, different shapes: torch lists each mismatching tensor.
        raise CheckpointError(f"the weights in {path} do not fit arch {payload['arch']!r}: {error}") from error
    left_on_meta = [name for name, tensor in _named_tensors(model) if tensor.is_meta]
    if left_on_meta:
        raise RuntimeError(f"tensors not restored from {path}: {', '.join(left_on_meta)}")

    if isinstance(map_location, (str, torch.device)):
        model.to(map_location)
    model.eval()
    return LoadedCheckpoint(model=model, meta=payload, path=path)


def _match_dtypes(model: nn.Module, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Convert each tensor to the dtype of the model's own, so float16 weights load as float32."""
    expected = model.state_dict()
    return {
        key: value.to(expected[key].dtype) if value.dtype != expected[key].dtype else value
        for key, value in state_dict.items()
    }


def _named_tensors(model: nn.Module):
    yield from model.named_parameters()
    yield from model.named_buffers()


def read_meta(path: str | os.PathLike) -> dict[str, Any]:
    """Return the metadata of a checkpoint (everything but the weights) without building the model.

    Raises:
        CheckpointError: as :func:`load_checkpoint`, for a file that is not a cifarlab checkpoint.
    """
    path = Path(path)
    # mmap leaves the weights on disk: reading the metadata of a 500 MB file stays cheap.
    payload = _read_payload(path, "cpu", mmap=True)
    payload.pop("state_dict")
    return payload


def strip_module_prefix(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Return ``state_dict`` with a leading ``module.`` (added by DistributedDataParallel) removed.

    Only a prefix at the start of a key is removed; ``module.`` elsewhere in a key stays.
    """
    prefix = "module."
    return {
        (key[len(prefix):] if key.startswith(prefix) else key): value
        for key, value in state_dict.items()
    }


def _read_payload(path: Path, map_location: Any, mmap: bool) -> dict[str, Any]:
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    if not zipfile.is_zipfile(path):
        # torch.save has written zip files since torch 1.6; anything else (a raw pickle, a
        # truncated download, a text file) is rejected before it is parsed at all.
        raise CheckpointError(
            f"{path} is not a cifarlab checkpoint: it is not a zip-format torch.save file "
            f"(it may be truncated, a raw pickle or another kind of file)"
        )
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as error:
        raise CheckpointError(_pickled_object_message(path, error)) from None
    except Exception as error:  # torch.load raises several types for damaged files
        raise CheckpointError(f"{path} could not be read as a torch.save file: {error}") from None

    if not isinstance(payload, dict):
        raise CheckpointError(
            f"{path} is not a cifarlab checkpoint: it contains a {type(payload).__name__}, "
            f"not a checkpoint dict"
        )
    if payload.get("format") != FORMAT:
        if payload and all(isinstance(value, torch.Tensor) for value in payload.values()):
            raise CheckpointError(
                f"{path} is a bare state dict ({len(payload)} tensors) without the architecture "
                f"that uses it, not a cifarlab checkpoint; build the model with build_model, "
                f"load these weights into it and save it with save_checkpoint"
            )
        raise CheckpointError(
            f"{path} is not a cifarlab checkpoint: it has no {FORMAT!r} format marker"
        )
    version = payload.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has checkpoint format version {version!r}, but this cifarlab reads up to "
            f"version {FORMAT_VERSION}; update cifarlab"
        )
    missing = [key for key in ("arch", "options", "num_classes", "state_dict") if key not in payload]
    if missing:
        raise CheckpointError(f"{path} is damaged: it lacks {', '.join(missing)}")
    _check_meta_types(path, payload)
    return payload


# Metadata fields that the pages and the CLI read, with the type each must have. Every field but
# ``options`` and ``num_classes`` may be missing or None (a run without validation has no best).
_META_TYPES: dict[str, type | tuple[type, ...]] = {
    "arch": str,
    "options": dict,
    "num_classes": int,
    "input_size": int,
    "normalization": dict,
    "num_params": int,
    "precision": str,
    "versions": dict,
    "created": str,
    "config": dict,
    "class_names": list,
    "history": list,
    "best": dict,
    "data": dict,
    "training": dict,
    "test": dict,
}
_REQUIRED_META = ("arch", "options", "num_classes")


def _check_meta_types(path: Path, payload: dict[str, Any]) -> None:
    """Raise CheckpointError if a known metadata field has the wrong type."""
    for key, expected in _META_TYPES.items():
        value = payload.get(key)
        if value is None and key not in _REQUIRED_META:
            continue
        if isinstance(value, bool) or not isinstance(value, expected):
            raise CheckpointError(
                f"{path} has invalid metadata: {key} is a {type(value).__name__}, expected a "
                f"{expected.__name__}; save the checkpoint again with save_checkpoint"
            )
    history = payload.get("history") or []
    for number, record in enumerate(history, start=1):
        if not isinstance(record, dict):
            raise CheckpointError(
                f"{path} has invalid metadata: history entry {number} is a {type(record).__name__}, "
                f"expected a dict of epoch values; save the checkpoint again with save_checkpoint"
            )
    class_names = payload.get("class_names") or []
    if not all(isinstance(name, str) for name in class_names):
        raise CheckpointError(f"{path} has invalid metadata: class_names must be a list of strings")


def _pickled_object_message(path: Path, error: Exception) -> str:
    found = re.search(r"GLOBAL ([\w.]+)", str(error))
    global_name = f" ({found.group(1)})" if found else ""
    return (
        f"{path} was rejected: it contains a pickled Python object{global_name}, which could run code "
        f"when loaded, so nothing in it was loaded. A cifarlab checkpoint contains only tensors and "
        f"plain values; a whole pickled model (torch.save(model)) must be re-saved from its "
        f"state dict with cifarlab's save_checkpoint"
    )


def _check_keys(path: Path, model: Classifier, state_dict: dict[str, torch.Tensor]) -> None:
    expected = set(model.state_dict())
    found = set(state_dict)
    missing = sorted(expected - found)
    unexpected = sorted(found - expected)
    if not missing and not unexpected:
        return
    raise CheckpointError(
        f"the weights in {path} do not match arch {model.arch!r} with options {model.options}: "
        f"missing keys: {_key_list(missing)}; unexpected keys: {_key_list(unexpected)}"
    )


def _key_list(keys: list[str], limit: int = 8) -> str:
    if not keys:
        return "none"
    if len(keys) <= limit:
        return ", ".join(keys)
    return f"{', '.join(keys[:limit])} and {len(keys) - limit} more ({len(keys)} in all)"


# ----------------------------------------------------------------------------------------------
# Listing, importing and deleting


def list_checkpoints(folders: Iterable[str | os.PathLike] | None = None) -> list[CheckpointInfo]:
    """Return the shipped checkpoints, then the user's, each sorted by name.

    Shipped checkpoints (``paths.SHIPPED_CHECKPOINT_DIR``) are ``protected``. Only ``*.pt``
    files count, without resume states; a ``.pt`` file that is not a readable checkpoint is
    listed with ``error`` set. ``folders`` replaces the user folder
    (``paths.user_checkpoint_dir()``).
    """
    shipped_dir = Path(paths.SHIPPED_CHECKPOINT_DIR)
    sources: list[tuple[Path, bool]] = [(shipped_dir, True)]
    if folders is None:
        sources.append((paths.user_checkpoint_dir(), False))
    else:
        sources.extend((Path(folder), False) for folder in folders)

    infos = []
    seen: set[Path] = set()
    for folder, protected in sources:
        # A user folder pointed at the shipped one must not list each file twice.
        if not folder.is_dir() or folder.resolve() in seen:
            continue
        seen.add(folder.resolve())
        for path in sorted(folder.glob(f"*{SUFFIX}")):
            if path.name.startswith(".") or path.name.endswith(RESUME_SUFFIX) or not path.is_file():
                continue
            infos.append(checkpoint_info(path, protected=protected))
    return infos


def checkpoint_info(path: str | os.PathLike, *, protected: bool | None = None) -> CheckpointInfo:
    """Return the listing row of one checkpoint file, reading only its metadata."""
    path = Path(path)
    if protected is None:
        protected = is_shipped(path)
    name = path.name[: -len(SUFFIX)] if path.name.endswith(SUFFIX) else path.stem
    size = path.stat().st_size
    try:
        meta = read_meta(path)
    except CheckpointError as error:
        return CheckpointInfo(path=path, name=name, protected=protected, size_bytes=size, error=str(error))

    report = read_report(path)
    return CheckpointInfo(
        path=path,
        name=name,
        protected=protected,
        size_bytes=size,
        arch=meta["arch"],
        options=meta["options"],
        params=meta.get("num_params"),
        precision=meta.get("precision"),
        val_acc=_number(meta.get("best"), "val_acc"),
        test_acc=_number(report, "accuracy") if report else _number(meta.get("test"), "acc"),
        created=meta.get("created"),
    )


def report_path(checkpoint_path: str | os.PathLike) -> Path:
    """Return the sidecar report path of a checkpoint: ``name.pt`` gives ``name.report.json``."""
    path = Path(checkpoint_path)
    stem = path.name[: -len(SUFFIX)] if path.name.endswith(SUFFIX) else path.stem
    return path.with_name(stem + REPORT_SUFFIX)


def read_report(checkpoint_path: str | os.PathLike) -> dict[str, Any] | None:
    """Return the sidecar JSON report of a checkpoint, or None if there is none or it is unreadable."""
    path = report_path(checkpoint_path)
    if not path.is_file():
        return None
    try:
        report = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        logger.warning("ignored unreadable report %s: %s", path, error)
        return None
    return report if isinstance(report, dict) else None


def _number(container: Any, key: str) -> float | None:
    if not isinstance(container, dict):
        return None
    value = container.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def is_shipped(path: str | os.PathLike) -> bool:
    """Return True for a file inside the repository's shipped checkpoint folder."""
    return _is_inside(Path(path), Path(paths.SHIPPED_CHECKPOINT_DIR))


def _is_inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
    except ValueError:
        return False
    return True


def delete_checkpoint(path: str | os.PathLike) -> None:
    """Delete a user checkpoint with its sidecar report and resume state.

    Raises:
        CheckpointError: the file is a shipped checkpoint, lies outside the user checkpoint
            folder, or does not exist.
    """
    path = Path(path)
    if is_shipped(path):
        raise CheckpointError(
            f"{path.name} ships with cifarlab and cannot be deleted; only checkpoints in "
            f"{paths.user_checkpoint_dir()} can"
        )
    user_dir = paths.user_checkpoint_dir()
    if not _is_inside(path, user_dir):
        raise CheckpointError(f"cannot delete {path}: it is not in the user checkpoint folder {user_dir}")
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    path.unlink()
    stem = path.name[: -len(SUFFIX)] if path.name.endswith(SUFFIX) else path.stem
    for companion in (report_path(path), path.with_name(stem + RESUME_SUFFIX)):
        companion.unlink(missing_ok=True)
    logger.info("deleted checkpoint %s", path)


def import_checkpoint(data: bytes, filename: str) -> CheckpointInfo:
    """Validate uploaded checkpoint bytes and store them in the user checkpoint folder.

    The bytes go to a temporary file in that folder and are loaded in full (weights into the
    model) before the file gets its final name, so a rejected upload leaves nothing behind. An
    existing checkpoint of the same name is kept: the new one gets a numbered name.

    Raises:
        CheckpointError: the name does not end in ``.pt`` or the content is not a valid checkpoint.
    """
    base = os.path.basename(filename.replace("\\", "/"))
    if not base.lower().endswith(SUFFIX) or base.lower().endswith(RESUME_SUFFIX):
        raise CheckpointError(f"invalid file name {filename!r}: a checkpoint file name ends in {SUFFIX}")
    stem = _SAFE_NAME.sub("_", base[: -len(SUFFIX)]).strip("._") or "checkpoint"

    folder = paths.user_checkpoint_dir()
    folder.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{stem}.", suffix=".upload", dir=folder)
    temporary_path = Path(temporary)
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        try:
            load_checkpoint(temporary_path)
        except CheckpointError as error:
            raise CheckpointError(str(error).replace(str(temporary_path), repr(filename))) from None
        target = _free_path(folder, stem)
        os.replace(temporary_path, target)
    except BaseException:
        temporary_path.unlink(missing_ok=True)
        raise
    logger.info("imported checkpoint %s as %s", filename, target)
    return checkpoint_info(target, protected=False)


def _free_path(folder: Path, stem: str) -> Path:
    candidate = folder / f"{stem}{SUFFIX}"
    number = 2
    while candidate.exists():
        candidate = folder / f"{stem}-{number}{SUFFIX}"
        number += 1
    return candidate
