"""The tensors a run trains and evaluates on: split, subset, enlarged and moved to the device once."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from cifarlab.train.config import TrainConfig


@dataclass
class TrainingData:
    """uint8 images ``(N, 3, 32, 32)`` and int64 labels on the training device."""

    train_images: torch.Tensor
    train_labels: torch.Tensor
    val_images: torch.Tensor
    val_labels: torch.Tensor
    test_images: torch.Tensor | None
    test_labels: torch.Tensor | None
    source: str
    description: str
    # Split.as_dict() with train_subset, offline_copies, train_originals (training-split images
    # after the subset) and train_size (images per epoch, offline copies included).
    split: dict[str, Any]
    notes: list[str]

    def sizes(self) -> dict[str, int]:
        return {
            "train": len(self.train_labels),
            "val": len(self.val_labels),
            "test": 0 if self.test_labels is None else len(self.test_labels),
        }


class TrainSubsetTooLargeError(ValueError):
    """Raised when ``train_subset`` is larger than the training split."""

    def __init__(self, train_subset: int, split_size: int):
        self.train_subset = train_subset
        self.split_size = split_size
        super().__init__(
            f"invalid train_subset={train_subset}: it is larger than the {split_size:,} images of "
            f"the training split; choose up to {split_size} or leave it out"
        )


def prepare_data(config: TrainConfig, data: Any, device: torch.device) -> TrainingData:
    """Split ``data`` as the config sets out, add offline copies and move every part to ``device``.

    ``data`` is a ``cifarlab.data.Cifar10`` or any object with ``train_images``,
    ``train_labels``, ``test_images`` and ``test_labels`` (numpy arrays or tensors; the test
    parts may be None). None loads ``config.data_source`` from ``config.data_path``.

    With ``config.offline_copies`` > 0 the training images (after ``train_subset``) are followed
    by that many augmented copies of each, made once on the CPU with ``config.offline_recipe``
    and seeded by ``config.seed``, so every process of a distributed run builds the same set.
    Validation and test images are never copied.

    Raises:
        ValueError: if the arrays have the wrong shape or dtype, or the validation split
            leaves no training images.
    """
    if data is None:
        from cifarlab.data import load_cifar10

        data = load_cifar10(config.data_source, path=config.data_path)

    train_images = _as_images(data.train_images, "train_images")
    train_labels = _as_labels(data.train_labels, len(train_images), "train_labels")
    test_images = getattr(data, "test_images", None)
    test_labels = getattr(data, "test_labels", None)
    if test_images is not None and test_labels is not None and len(test_labels) > 0:
        test_images = _as_images(test_images, "test_images")
        test_labels = _as_labels(test_labels, len(test_images), "test_labels")
    else:
        test_images = test_labels = None

    notes: list[str] = []
    train_idx, val_idx, split = _split(config, train_labels.numpy())
    if config.train_subset is not None:
        if config.train_subset > len(train_idx):
            raise TrainSubsetTooLargeError(config.train_subset, len(train_idx))
        if config.train_subset == len(train_idx):
            notes.append(
                f"train_subset={config.train_subset} is not below the {len(train_idx)} images of "
                "the training split, so all of them are used"
            )
        else:
            train_idx = stratified_subset(
                train_labels.numpy()[train_idx], train_idx, config.train_subset, config.split_seed
            )

    # These parameters rebuild the exact image ids: split_train_val, then stratified_subset.
    split["train_subset"] = config.train_subset
    split["offline_copies"] = config.offline_copies
    split["train_originals"] = len(train_idx)

    def to_device(tensor: torch.Tensor | None, index: np.ndarray | None = None) -> torch.Tensor | None:
        if tensor is None:
            return None
        if index is not None:
            tensor = tensor[torch.from_numpy(index)]
        return tensor.contiguous().to(device)

    # Only the training ids are taken here, so no validation or test image is ever augmented.
    epoch_images = train_images[torch.from_numpy(train_idx)]
    epoch_labels = train_labels[torch.from_numpy(train_idx)]
    if config.offline_copies > 0:
        epoch_images, epoch_labels = _add_offline_copies(config, epoch_images, epoch_labels, notes)
    split["train_size"] = len(epoch_labels)

    return TrainingData(
        train_images=to_device(epoch_images),
        train_labels=to_device(epoch_labels),
        val_images=to_device(train_images, val_idx),
        val_labels=to_device(train_labels, val_idx),
        test_images=to_device(test_images),
        test_labels=to_device(test_labels),
        source=str(getattr(data, "source", "custom")),
        description=str(getattr(data, "description", "")),
        split=split,
        notes=notes,
    )


def _add_offline_copies(
    config: TrainConfig, images: torch.Tensor, labels: torch.Tensor, notes: list[str]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return the training images and labels followed by ``config.offline_copies`` augmented copies."""
    from cifarlab.augment import enlarge_training_set

    started = time.perf_counter()
    enlarged = enlarge_training_set(
        images.numpy(),
        labels.numpy(),
        config.offline_recipe,
        copies=config.offline_copies,
        seed=config.seed,
    )
    seconds = time.perf_counter() - started

    recipe_name = enlarged.recipe.get("name") or "custom"
    copies = "1 augmented copy" if config.offline_copies == 1 else f"{config.offline_copies} augmented copies"
    notes.append(
        f"offline augmentation: {copies} of each of the {len(labels):,} "
        f"training images were made once with the recipe {recipe_name!r} in {seconds:.1f} s, so "
        f"every epoch trains on {len(enlarged.labels):,} images; validation and test images were "
        "not copied"
    )
    # NOTE: training uses the hard label (the class with the largest share of each copy), as the
    # course reports that enlarge their training set this way do. For a blend or mixup copy this
    # drops the partner's share, which EnlargedTrainingSet.soft_targets still holds.
    return torch.from_numpy(enlarged.images), torch.from_numpy(enlarged.labels)


def _split(config: TrainConfig, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    if config.val_size >= len(labels):
        raise ValueError(
            f"invalid val_size={config.val_size}: it must be below the {len(labels)} training "
            "images so that some are left to train on"
        )
    from cifarlab.data import split_train_val

    split = split_train_val(labels, val_size=config.val_size, seed=config.split_seed)
    return split.train_idx, split.val_idx, split.as_dict()


def stratified_subset(labels: np.ndarray, ids: np.ndarray, size: int, seed: int) -> np.ndarray:
    """Pick ``size`` of ``ids`` with classes as balanced as their counts allow.

    Images are shuffled with ``seed`` and then taken round-robin over the classes: every class
    gives its first image, then its second, and so on. Returns the picked ids in ascending order.
    """
    order = np.random.default_rng(seed).permutation(len(ids))
    shuffled_labels = labels[order]

    # Rank of each shuffled image among the images of its own class (0 for the first one).
    rank_in_class = np.empty(len(ids), dtype=np.int64)
    for label in np.unique(shuffled_labels):
        members = np.flatnonzero(shuffled_labels == label)
        rank_in_class[members] = np.arange(len(members))

    picked = order[np.argsort(rank_in_class, kind="stable")[:size]]
    return np.sort(ids[picked])


def _as_images(array: Any, name: str) -> torch.Tensor:
    tensor = torch.as_tensor(array)
    if tensor.dtype != torch.uint8 or tensor.ndim != 4 or tuple(tensor.shape[1:]) != (3, 32, 32):
        raise ValueError(
            f"invalid {name}: expected uint8 images of shape (N, 3, 32, 32), got "
            f"{tensor.dtype} of shape {tuple(tensor.shape)}"
        )
    return tensor


def _as_labels(array: Any, count: int, name: str) -> torch.Tensor:
    tensor = torch.as_tensor(array).to(torch.int64)
    if tensor.shape != (count,):
        raise ValueError(f"invalid {name}: expected {count} labels, got shape {tuple(tensor.shape)}")
    if count and (tensor.min() < 0 or tensor.max() > 9):
        raise ValueError(f"invalid {name}: class indices must be in 0..9, got {tensor.min()}..{tensor.max()}")
    return tensor
