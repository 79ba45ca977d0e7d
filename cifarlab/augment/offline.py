"""Offline augmentation: enlarge a training set with augmented copies of its images, once.

Some course reports augment "offline": they add, say, one flipped and one blended copy of every
training image and then train without augmentation. Training-time augmentation (`BatchAugmenter`)
draws new variants every epoch and is usually better, but the offline form is here so its effect
can be measured honestly.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import numpy as np
import torch

from cifarlab.augment.base import AugmentError, to_uint8
from cifarlab.augment.mixing import NUM_CLASSES, one_hot_targets
from cifarlab.augment.recipe import BatchAugmenter, Recipe

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EnlargedTrainingSet:
    """A training set with augmented copies appended after the original images.

    Rows ``[0, N)`` are the originals (when kept), followed by ``copies`` blocks of ``N``
    augmented images in the same order.
    """

    images: np.ndarray  # uint8 (M, 3, 32, 32)
    labels: np.ndarray  # int64 (M,): the class with the largest share of each image
    soft_targets: np.ndarray  # float32 (M, num_classes): exact shares, for mixed images
    source_index: np.ndarray  # int64 (M,): row of the training image each row was made from
    copy_index: np.ndarray  # int64 (M,): 0 for originals, 1..copies for augmented copies
    recipe: dict  # Recipe.to_dict() of the recipe that made the copies


def enlarge_training_set(
    train_images: np.ndarray,
    train_labels: np.ndarray,
    recipe: Recipe | Mapping[str, Any] | str,
    *,
    copies: int = 1,
    keep_originals: bool = True,
    seed: int = 0,
    batch_size: int = 1024,
    progress: Callable[[int, int], None] | None = None,
) -> EnlargedTrainingSet:
    """Return the training images plus ``copies`` augmented copies of each, made with ``recipe``.

    Pass ONLY the training split, after the validation images were split off (the training ids
    of `cifarlab.data.split_train_val`). Validation and test images must never go through this
    function. A validation image whose augmented copy is in the training set is no longer unseen.
    Validation accuracy, and every choice made with it (the best epoch, early stopping), would then
    be optimistic, and test accuracy would stop estimating accuracy on new images. Splitting
    after enlarging leaks the same way, because copies of one image would land on both sides.

    Augmented images are rounded to ``uint8``, like the rest of the data. ``labels`` is the class
    with the largest share, which for a fixed-weight blend with weight 0.75 is the first image's
    class; ``soft_targets`` keeps the exact shares for training with soft labels. Mixing partners
    come from the same chunk of ``batch_size`` images. ``progress(done, total)`` is called after
    each chunk.
    """
    # Copies, so read-only (cached) arrays work and the caller's arrays are never changed.
    images = torch.tensor(np.asarray(train_images))
    labels = torch.tensor(np.asarray(train_labels))
    if images.ndim != 4 or images.shape[1] != 3 or images.dtype != torch.uint8:
        raise AugmentError(
            f"train_images must be uint8 of shape (N, 3, H, W), got {images.dtype} {tuple(images.shape)}"
        )
    if labels.shape != (images.shape[0],):
        raise AugmentError(f"train_labels must have shape ({images.shape[0]},), got {tuple(labels.shape)}")
    if isinstance(copies, bool) or not isinstance(copies, int) or copies < 0:
        raise AugmentError(f"copies must be a whole number >= 0, got {copies!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise AugmentError(f"batch_size must be a whole number >= 1, got {batch_size!r}")

    augmenter = BatchAugmenter(recipe)
    generator = torch.Generator().manual_seed(seed)
    count = images.shape[0]
    original_targets = one_hot_targets(labels, NUM_CLASSES)

    image_blocks, target_blocks, source_blocks, copy_blocks = [], [], [], []
    ids = torch.arange(count)
    if keep_originals:
        image_blocks.append(images)
        target_blocks.append(original_targets)
        source_blocks.append(ids)
        copy_blocks.append(torch.zeros(count, dtype=torch.int64))

    total = copies * count
    done = 0
    for copy in range(1, copies + 1):
        for start in range(0, count, batch_size):
            chunk = slice(start, min(start + batch_size, count))
            augmented, targets = augmenter(images[chunk], labels[chunk], generator)
            image_blocks.append(to_uint8(augmented))
            target_blocks.append(targets)
            done += augmented.shape[0]
            if progress is not None:
                progress(done, total)
        source_blocks.append(ids)
        copy_blocks.append(torch.full((count,), copy, dtype=torch.int64))

    log.info(
        "enlarged a training set of %d images with %d augmented copies each (recipe %r)",
        count, copies, augmenter.recipe.name,
    )
    empty = torch.zeros((0, *images.shape[1:]), dtype=torch.uint8)
    all_targets = torch.cat(target_blocks) if target_blocks else torch.zeros(0, NUM_CLASSES)
    return EnlargedTrainingSet(
        images=torch.cat(image_blocks).numpy() if image_blocks else empty.numpy(),
        labels=all_targets.argmax(1).numpy().astype(np.int64),
        soft_targets=all_targets.numpy().astype(np.float32),
        source_index=torch.cat(source_blocks).numpy() if source_blocks else np.zeros(0, np.int64),
        copy_index=torch.cat(copy_blocks).numpy() if copy_blocks else np.zeros(0, np.int64),
        recipe=augmenter.recipe.to_dict(),
    )
