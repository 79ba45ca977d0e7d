"""Training presets for the classic classroom experiments, and expected time per epoch.

The classic experiments compare a fully connected network (the "ANN") with convolutional ones.
Each is trained once on raw images and once with the standard augmentation (random crop with
padding and horizontal flip), so students can see what convolution and augmentation each buy.
The presets fix the optimizer, batch size and number of epochs of those experiments; every
other field keeps its ``TrainConfig`` default.

Epoch time estimates come only from measured training throughput in
``benchmarks/results/train_speed.json``, never from a guess.
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
    """Expected seconds per training epoch, or None with the reason in ``note``.

    ``images_per_s`` is the measured training throughput behind the estimate; ``note`` names
    where it comes from (or why there is none).
    """

    seconds: float | None
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
    speeds: dict[str, Any] | None = None,
) -> EpochEstimate:
    """Estimate the time of one training epoch of ``arch`` over ``n_train_images`` images.

    The estimate divides the image count by the training throughput measured for ``arch`` on
    ``device`` ("cpu", "cuda", ...). It leaves out the time to evaluate the validation split.
    Without a measurement the estimate has ``seconds=None`` and says so.
    """
    speeds = load_train_speeds() if speeds is None else speeds
    device_type = device.split(":", 1)[0]
    images_per_s = _measured_images_per_s(speeds, arch, device_type)
    if images_per_s is None:
        return EpochEstimate(
            seconds=None,
            images_per_s=None,
            note=f"no measurement for {arch} on {device_type} in {_display_path(TRAIN_SPEED_FILE)}",
        )

    hardware = speeds.get("hardware") or speeds.get("machine")
    where = f" on {hardware}" if isinstance(hardware, str) and hardware else ""
    return EpochEstimate(
        seconds=n_train_images / images_per_s,
        images_per_s=images_per_s,
        note=(
            f"measured training throughput of {images_per_s:,.0f} images/s{where} "
            f"({_display_path(TRAIN_SPEED_FILE)}); validation time not included"
        ),
    )


def _measured_images_per_s(speeds: dict[str, Any], arch: str, device_type: str) -> float | None:
    """Find the throughput of ``arch`` on ``device_type`` in the benchmark file.

    The file maps arch to images/s (a number, or a dict with ``images_per_s``), at the top
    level or under ``archs``. Its ``device`` entry names where it was measured (cpu when
    absent). A file may instead hold one such map per device type under ``devices``.
    """
    per_device = speeds.get("devices")
    if isinstance(per_device, dict):
        table = per_device.get(device_type)
        if not isinstance(table, dict):
            return None
    else:
        measured_on = str(speeds.get("device", "cpu")).split(":", 1)[0]
        if measured_on != device_type:
            return None
        table = speeds.get("archs", speeds)

    value = table.get(arch) if isinstance(table, dict) else None
    if isinstance(value, dict):
        value = value.get("images_per_s")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        return None
    return float(value)


def _display_path(path: Path) -> str:
    try:
        return str(path.relative_to(paths.REPO_ROOT))
    except ValueError:
        return str(path)
