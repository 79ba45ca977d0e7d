"""Data augmentation for CIFAR-10 batches: operations, recipes and the training-time augmenter.

Every operation draws its random parameters (``sample_params``) apart from applying them
(``apply``), works on whole batches of ``uint8`` or float images on any device as well as on a
single image, and never modifies its input. A `Recipe` is an ordered, JSON-serializable list of
operations; `BatchAugmenter` runs one on training batches and returns float images with soft
targets.

    >>> from cifarlab.augment import BatchAugmenter, PRESETS
    >>> augment = BatchAugmenter(PRESETS["cutout"])
    >>> images, targets = augment(uint8_batch, labels, torch.Generator().manual_seed(0))
"""

from cifarlab.augment.base import AugmentError, Operation, ParamSpec, parse_color
from cifarlab.augment.geometric import HorizontalFlip, RandomCrop, Rotation, Translate
from cifarlab.augment.mixing import Blend, CutMix, MixingOperation, Mixup, one_hot_targets
from cifarlab.augment.occlusion import Cutout
from cifarlab.augment.offline import EnlargedTrainingSet, enlarge_training_set
from cifarlab.augment.photometric import ColorJitter, GaussianNoise
from cifarlab.augment.policies import AutoAugment, RandAugment, TrivialAugmentWide
from cifarlab.augment.recipe import (
    OPERATIONS,
    PRESETS,
    AugmentResult,
    BatchAugmenter,
    Recipe,
    build_operation,
    resolve_recipe,
)

__all__ = [
    "OPERATIONS",
    "PRESETS",
    "AugmentError",
    "AugmentResult",
    "AutoAugment",
    "BatchAugmenter",
    "Blend",
    "ColorJitter",
    "CutMix",
    "Cutout",
    "EnlargedTrainingSet",
    "GaussianNoise",
    "HorizontalFlip",
    "MixingOperation",
    "Mixup",
    "Operation",
    "ParamSpec",
    "RandAugment",
    "RandomCrop",
    "Recipe",
    "Rotation",
    "Translate",
    "TrivialAugmentWide",
    "build_operation",
    "enlarge_training_set",
    "one_hot_targets",
    "parse_color",
    "resolve_recipe",
]
