"""The resume state of a run: a file beside its checkpoint that lets training continue exactly.

``runs/vgg16.pt`` gets ``runs/vgg16.resume.pt``. The checkpoint contains the best weights for
everyone who uses the model. The resume state contains what only training needs: the current and
best weights in full precision, the optimizer and loss-scaler state, the position (epoch and
step), the random-number generator state, the running sums of a half-finished epoch and the
history. It is a ``torch.save`` file of plain values and tensors, loaded with
``weights_only=True``, and is deleted once a run completes or stops early, because such a run
has nothing left to continue.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from cifarlab.train.config import TrainConfig

RESUME_FORMAT = "cifarlab-resume"
RESUME_VERSION = 1
RESUME_SUFFIX = ".resume.pt"

# Fields that may differ between a stopped run and its resumption: they choose hardware and
# reporting, not the experiment.
RESUMABLE_OVERRIDES = ("device", "num_threads", "eval_batch_size", "log_every_steps", "amp", "channels_last")


def resume_path_for(checkpoint_path: str | os.PathLike) -> Path:
    """Return the resume-state path of a checkpoint: ``name.pt`` becomes ``name.resume.pt``."""
    path = Path(checkpoint_path)
    if path.name.endswith(RESUME_SUFFIX):
        return path
    stem = path.name[: -len(path.suffix)] if path.suffix else path.name
    return path.with_name(stem + RESUME_SUFFIX)


def checkpoint_path_for(resume_path: str | os.PathLike) -> Path:
    """Return the checkpoint path that a resume-state path sits beside."""
    path = Path(resume_path)
    if not path.name.endswith(RESUME_SUFFIX):
        return path
    return path.with_name(path.name[: -len(RESUME_SUFFIX)] + ".pt")


def save_resume_state(path: Path, state: dict[str, Any]) -> None:
    """Write the resume state atomically: a temporary file in the same folder, then a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"format": RESUME_FORMAT, "version": RESUME_VERSION, **state}
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as file:
            torch.save(payload, file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def load_resume_state(path: str | os.PathLike) -> tuple[dict[str, Any], Path]:
    """Load the resume state for a checkpoint (or from a ``.resume.pt`` path itself).

    Returns the state and the path it was read from.

    Raises:
        ValueError: if there is no resume state or the file is not one.
    """
    resume_path = resume_path_for(path)
    if not resume_path.is_file():
        checkpoint = checkpoint_path_for(resume_path)
        hint = (
            "that run completed or stopped early, so it has nothing left to train"
            if checkpoint.is_file()
            else "check the path"
        )
        raise ValueError(f"cannot resume from {path}: resume state {resume_path} not found; {hint}")
    try:
        state = torch.load(resume_path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch.load raises many types for a damaged or foreign file
        raise ValueError(f"cannot resume from {resume_path}: the file is not readable ({error})") from None
    if not isinstance(state, dict) or state.get("format") != RESUME_FORMAT:
        raise ValueError(f"cannot resume from {resume_path}: it is not a cifarlab resume state")
    if state.get("version") != RESUME_VERSION:
        raise ValueError(
            f"cannot resume from {resume_path}: resume-state version {state.get('version')!r} is not "
            f"supported (this cifarlab reads version {RESUME_VERSION})"
        )
    return state, resume_path


def read_resume_config(path: str | os.PathLike) -> TrainConfig:
    """Return the training config stored in the resume state of a checkpoint."""
    state, _ = load_resume_state(path)
    return TrainConfig.from_dict(state["config"])


def merge_resume_config(stored: TrainConfig, requested: TrainConfig | None) -> TrainConfig:
    """Return the config a resumed run uses: the stored one, with hardware fields from ``requested``.

    Raises:
        ValueError: if ``requested`` changes a field that defines the experiment.
    """
    if requested is None:
        return stored
    stored_values = stored.to_dict()
    requested_values = requested.to_dict()
    changed = [
        name
        for name in stored_values
        if name not in RESUMABLE_OVERRIDES and stored_values[name] != requested_values[name]
    ]
    if changed:
        details = ", ".join(f"{name}: {stored_values[name]!r} -> {requested_values[name]!r}" for name in changed)
        raise ValueError(
            f"cannot resume with a different config ({details}); resume with the stored config "
            f"(only {', '.join(RESUMABLE_OVERRIDES)} may change) or start a new run"
        )
    return stored.replace(**{name: requested_values[name] for name in RESUMABLE_OVERRIDES})


def delete_resume_state(path: Path) -> None:
    path.unlink(missing_ok=True)
