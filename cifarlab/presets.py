"""Training presets for the classic classroom experiments, and expected time per epoch.

The classic experiments compare a fully connected network (the "ANN") with convolutional ones.
Each is trained once on raw images and once with the standard augmentation (random crop with
padding and horizontal flip), so students can see what convolution and augmentation each buy.
The presets fix the optimizer, batch size and number of epochs of those experiments; every
other field keeps its ``TrainConfig`` default.

Epoch time estimates come only from the throughput that ``benchmarks/bench_train.py`` measured
and wrote to ``benchmarks/results/train_speed.json``, never from a guess.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cifarlab import paths

logger = logging.getLogger(__name__)

TRAIN_SPEED_FILE = paths.REPO_ROOT / "benchmarks" / "results" / "train_speed.json"

# The classic experiments train with a constant learning rate and no weight decay or label
# smoothing, so the only differences between them are the architecture, the batch size, the
# number of epochs and the augmentation.
_CLASSIC_TRAINING = {
    "optimizer": "adam",
    "lr": 1e-3,
    "weight_decay": 0.0,
    "schedule": "none",
    "label_smoothing": 0.0,
}

_CLASSIC_EXPERIMENTS = (
    ("ann", "ANN", "mlp", 256, 20, "A fully connected network with 4 hidden layers, Adam."),
    ("cnn", "CNN", "cnn", 256, 15, "A small VGG-style convolutional network, Adam."),
    ("lenet", "LeNet", "lenet", 128, 15, "LeNet-5 adapted to 32x32 colour images, Adam."),
    ("alexnet", "AlexNet", "alexnet", 128, 5, "AlexNet adapted to 32x32 images, Adam."),
    ("vgg16", "VGG16", "vgg16", 128, 5, "VGG16 with batch norm, Adam."),
)

_AUGMENTATIONS = (
    ("raw", "raw images", "none"),
    ("augmented", "augmented", "standard"),
)


@dataclass(frozen=True)
class TrainPreset:
    """A named set of ``TrainConfig`` fields; ``fields["recipe"]`` is a recipe preset name."""

    key: str
    title: str
    description: str
    fields: dict[str, Any]

    def config(self, **changes: Any):
        """Return the preset's ``TrainConfig``, with ``changes`` applied on top."""
        from cifarlab.train import TrainConfig

        return TrainConfig.from_dict({**self.fields, **changes})


def _build_presets() -> dict[str, TrainPreset]:
    presets = {}
    for key, title, arch, batch_size, epochs, description in _CLASSIC_EXPERIMENTS:
        for data_key, data_title, recipe in _AUGMENTATIONS:
            preset = TrainPreset(
                key=f"{key}-{data_key}",
                title=f"{title}, {data_title} ({epochs} epochs, batch {batch_size})",
                description=description,
                fields={
                    "arch": arch,
                    "batch_size": batch_size,
                    "epochs": epochs,
                    "recipe": recipe,
                    **_CLASSIC_TRAINING,
                },
            )
            presets[preset.key] = preset

    presets["resnet-fast"] = TrainPreset(
        key="resnet-fast",
        title="ResNet, augmented (15 epochs, batch 128): the app's reference recipe",
        description=(
            "The fast residual network with SGD, Nesterov momentum and a one-cycle learning "
            "rate: the most accurate from-scratch model for the time spent."
        ),
        fields={"arch": "resnet", "recipe": "standard", "epochs": 15, "batch_size": 128},
    )
    return presets


TRAIN_PRESETS: dict[str, TrainPreset] = _build_presets()


# --------------------------------------------------------------------------------------------
# Expected time per epoch


@dataclass(frozen=True)
class EpochEstimate:
    """Expected seconds per epoch, or None with the reason in ``note``.

    ``seconds`` is ``train_seconds`` plus ``val_seconds`` when the validation speed was
    measured too, else ``train_seconds`` alone. ``images_per_s`` is the measured training
    throughput behind it, and ``note`` names where that comes from, or why there is none.
    """

    seconds: float | None
    train_seconds: float | None
    val_seconds: float | None
    images_per_s: float | None
    note: str


def load_train_speeds(path: Path | None = None) -> dict[str, Any]:
    """Read the training throughput benchmark file; a missing or unreadable file gives {}."""
    path = TRAIN_SPEED_FILE if path is None else path
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as error:
        logger.warning("cannot read training speeds from %s: %s", path, error)
        return {}
    return data if isinstance(data, dict) else {}


def estimate_epoch_seconds(
    arch: str,
    n_train_images: int,
    device: str = "cpu",
    *,
    n_val_images: int = 0,
    speeds: dict[str, Any] | None = None,
) -> EpochEstimate:
    """Estimate the time of one epoch of ``arch`` over ``n_train_images`` training images.

    The training time divides the image count by the throughput that
    ``benchmarks/bench_train.py`` measured for ``arch`` on ``device`` ("cpu", "cuda", ...).
    Validating ``n_val_images`` images adds their count over the measured evaluation
    throughput, when there is one. Without a training measurement the estimate has
    ``seconds=None`` and its note gives the reason. The benchmark ran at one batch size (the
    note names it) and the default architecture options, so other settings make it rougher.
    """
    speeds = load_train_speeds() if speeds is None else speeds
    device_type = device.split(":", 1)[0]
    measured = _measurement(speeds, arch, device_type)
    source = _display_path(TRAIN_SPEED_FILE)
    if measured is None:
        return EpochEstimate(
            seconds=None,
            train_seconds=None,
            val_seconds=None,
            images_per_s=None,
            note=f"no measurement for {arch} on {device_type} in {source}",
        )

    images_per_s, eval_images_per_s, batch_size = measured
    train_seconds = n_train_images / images_per_s
    val_seconds = n_val_images / eval_images_per_s if eval_images_per_s and n_val_images else None
    hardware = speeds.get("hardware")
    where = f" on {hardware}" if isinstance(hardware, str) and hardware else ""
    batch = f" at batch size {batch_size}" if batch_size else ""
    if val_seconds is not None:
        validation = f", validation at {eval_images_per_s:,.0f} images/s"
    elif n_val_images:
        validation = "; validation time not measured, so not included"
    else:
        validation = ""
    return EpochEstimate(
        seconds=train_seconds + (val_seconds or 0.0),
        train_seconds=train_seconds,
        val_seconds=val_seconds,
        images_per_s=images_per_s,
        note=(
            f"estimate from the training speed measured{where}: {images_per_s:,.0f} images/s"
            f"{batch}{validation} ({source})"
        ),
    )


def _measurement(
    speeds: dict[str, Any], arch: str, device_type: str
) -> tuple[float, float | None, int | None] | None:
    """Return (training images/s, evaluation images/s, batch size) of ``arch``, or None.

    ``benchmarks/bench_train.py`` writes ``device`` (where it measured) and ``archs``: per
    arch, a dict with ``images_per_s``, ``eval_images_per_s`` and ``batch_size``. A plain
    number in place of that dict is read as the training images/s.
    """
    if str(speeds.get("device", "cpu")).split(":", 1)[0] != device_type:
        return None
    table = speeds.get("archs")
    entry = table.get(arch) if isinstance(table, dict) else None
    if isinstance(entry, dict):
        train = _positive(entry.get("images_per_s"))
        evaluation = _positive(entry.get("eval_images_per_s"))
        batch_size = entry.get("batch_size") if isinstance(entry.get("batch_size"), int) else None
    else:
        train, evaluation, batch_size = _positive(entry), None, None
    if train is None:
        return None
    return train, evaluation, batch_size


def _positive(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        return None
    return float(value)


def _display_path(path: Path) -> str:
    try:
        return str(path.relative_to(paths.REPO_ROOT))
    except ValueError:
        return str(path)
