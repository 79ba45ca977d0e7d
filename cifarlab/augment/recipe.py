"""Recipes (ordered, serializable lists of operations), the presets, and the training-time augmenter."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np
import torch

from cifarlab.augment.base import AugmentError, Operation, Params, as_batch
from cifarlab.augment.geometric import HorizontalFlip, RandomCrop, Rotation, Translate
from cifarlab.augment.mixing import NUM_CLASSES, Blend, CutMix, Mixup, one_hot_targets
from cifarlab.augment.occlusion import Cutout
from cifarlab.augment.photometric import ColorJitter, GaussianNoise
from cifarlab.augment.policies import AutoAugment, RandAugment, TrivialAugmentWide
from cifarlab.data import CIFAR10_MEAN

log = logging.getLogger(__name__)

RECIPE_FORMAT_VERSION = 1

# Every operation by its recipe name, in the order the Augmentation page lists them.
OPERATIONS: dict[str, type[Operation]] = {
    op.name: op
    for op in (
        HorizontalFlip,
        RandomCrop,
        Translate,
        Rotation,
        GaussianNoise,
        Cutout,
        ColorJitter,
        Mixup,
        Blend,
        CutMix,
        AutoAugment,
        RandAugment,
        TrivialAugmentWide,
    )
}



def build_operation(spec: Mapping[str, Any]) -> Operation:
    """Build an operation from its dict form ``{"op": name, **parameters}``."""
    if not isinstance(spec, Mapping):
        raise AugmentError(f"an operation must be a dict like {{'op': 'cutout', 'size': 16}}, got {spec!r}")
    if "op" not in spec:
        raise AugmentError(f"operation {dict(spec)!r} has no 'op' key; add one of: {', '.join(OPERATIONS)}")
    name = spec["op"]
    if name not in OPERATIONS:
        raise AugmentError(f"unknown operation {name!r}; use one of: {', '.join(OPERATIONS)}")
    op_class = OPERATIONS[name]
    known = {param.name for param in op_class.param_specs()}
    unknown = sorted(set(spec) - known - {"op"})
    if unknown:
        raise AugmentError(
            f"unknown parameter {', '.join(map(repr, unknown))} for {name}; valid parameters: "
            f"{', '.join(sorted(known)) or 'none'}"
        )
    return op_class(**{key: value for key, value in spec.items() if key != "op"})


@dataclass(frozen=True)
class Recipe:
    """An ordered list of operations, applied first to last, with a name for people.

    ``to_dict``/``from_dict`` and ``to_json``/``from_json`` round-trip exactly; training stores
    ``to_dict()`` in every checkpoint.
    """

    operations: tuple[Operation, ...] = ()
    name: str = "custom"

    def __post_init__(self) -> None:
        operations = tuple(self.operations)
        for index, operation in enumerate(operations):
            if not isinstance(operation, Operation):
                raise AugmentError(
                    f"recipe step {index} is {operation!r}, not an operation; build it with "
                    "cifarlab.augment.build_operation({'op': ...}) or an operation class"
                )
        object.__setattr__(self, "operations", operations)
        if not isinstance(self.name, str):
            raise AugmentError(f"recipe name must be a string, got {self.name!r}")
        for operation in operations:
            if isinstance(operation, RandomCrop) and operation.size != 32:
                raise AugmentError(
                    f"recipe {self.name!r}: a random crop of size {operation.size} changes the image "
                    "size, but training needs 32x32 images; set size=32 (the padding sets the shift)"
                )

    @property
    def mixes_labels(self) -> bool:
        """Whether an operation of the recipe mixes images and labels (mixup, blend, cutmix)."""
        return any(operation.mixes_labels for operation in self.operations)

    def to_dict(self) -> dict[str, Any]:
        """Return the recipe as plain JSON data."""
        return {
            "version": RECIPE_FORMAT_VERSION,
            "name": self.name,
            "operations": [operation.to_dict() for operation in self.operations],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Recipe":
        """Build a recipe from `to_dict` output; raise `AugmentError` naming what is invalid."""
        if not isinstance(data, Mapping):
            raise AugmentError(f"a recipe must be a dict with an 'operations' list, got {type(data).__name__}")
        unknown = sorted(set(data) - {"version", "name", "operations"})
        if unknown:
            raise AugmentError(f"unknown recipe key {', '.join(map(repr, unknown))}; valid keys: version, name, operations")
        version = data.get("version", RECIPE_FORMAT_VERSION)
        if version != RECIPE_FORMAT_VERSION:
            raise AugmentError(
                f"recipe format version {version!r} is not supported; this cifarlab reads version "
                f"{RECIPE_FORMAT_VERSION}"
            )
        operations = data.get("operations", [])
        if not isinstance(operations, (list, tuple)):
            raise AugmentError(f"recipe 'operations' must be a list of dicts, got {type(operations).__name__}")
        built = []
        for index, spec in enumerate(operations):
            try:
                built.append(build_operation(spec))
            except AugmentError as error:
                raise AugmentError(f"recipe step {index}: {error}") from None
        return cls(tuple(built), name=data.get("name", "custom"))

    def to_json(self, indent: int | None = 2) -> str:
        """Return the recipe as a JSON string."""
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_json(cls, text: str | bytes) -> "Recipe":
        """Build a recipe from `to_json` output."""
        try:
            data = json.loads(text)
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise AugmentError(f"the recipe is not valid JSON: {error}") from None
        return cls.from_dict(data)

    def python_call(self) -> str:
        """Return the Python code that builds this recipe with cifarlab.augment."""
        steps = "".join(f"    {operation.python_call()},\n" for operation in self.operations)
        return f"Recipe((\n{steps}), name={self.name!r})" if steps else f"Recipe((), name={self.name!r})"


def _standard_steps() -> tuple[Operation, ...]:
    return (RandomCrop(size=32, padding=4, padding_mode="reflect"), HorizontalFlip(p=0.5))


# Presets:
# - standard: the usual CIFAR-10 training augmentation, a 4 px shift by reflect-padded crop and
#   a horizontal flip.
# - cutout: standard plus a 16 px Cutout square, the side DeVries & Taylor use for CIFAR-10
#   (8 px is their CIFAR-100 choice), filled with the mean colour as their code does.
# - mixup: standard plus mixup with alpha = 1, the value Zhang et al. use for CIFAR-10.
# - strong: the AutoAugment paper's CIFAR-10 pipeline: crop, flip, the learned CIFAR-10 policy,
#   then a 16 px Cutout.
PRESETS: dict[str, Recipe] = {
    "none": Recipe((), name="none"),
    "standard": Recipe(_standard_steps(), name="standard"),
    "cutout": Recipe(_standard_steps() + (Cutout(size=16, fill=CIFAR10_MEAN),), name="cutout"),
    "mixup": Recipe(_standard_steps() + (Mixup(alpha=1.0),), name="mixup"),
    "strong": Recipe(
        _standard_steps() + (AutoAugment(policy="cifar10"), Cutout(size=16, fill=CIFAR10_MEAN)),
        name="strong",
    ),
}


def resolve_recipe(recipe: Recipe | Mapping[str, Any] | str) -> Recipe:
    """Return a `Recipe` from a recipe, its dict form, or a preset name."""
    if isinstance(recipe, Recipe):
        return recipe
    if isinstance(recipe, str):
        if recipe not in PRESETS:
            raise AugmentError(f"unknown preset {recipe!r}; use one of: {', '.join(PRESETS)}")
        return PRESETS[recipe]
    return Recipe.from_dict(recipe)


@dataclass
class AugmentResult:
    """The augmented batch, soft targets and drawn parameters of one `BatchAugmenter.run` call."""

    images: torch.Tensor  # float32 (N, 3, 32, 32) in [0, 1]
    targets: torch.Tensor  # float32 (N, num_classes), rows sum to 1
    params: list[Params] = field(default_factory=list)  # the draws of each operation, in order


class BatchAugmenter:
    """Augment whole training batches with a recipe, on the batch's device.

    ``BatchAugmenter(recipe)(images, labels, generator)`` takes ``uint8`` (or float) images
    ``(N, 3, H, W)`` and ``int64`` labels ``(N,)`` and returns ``float32`` images in ``[0, 1]``
    and ``float32`` soft targets ``(N, num_classes)`` (one-hot unless a mixing operation ran).

    The generator may live on the CPU or on the images' device: parameters are drawn on the
    generator's device and moved to the images. A generator on the images' device avoids those
    copies, which matters only for Gaussian noise (one number per pixel).

    Leading operations that are exact on ``uint8`` (flip, crop, translation, cutout, the
    policies) run before the batch is converted to float, so they move a quarter of the bytes.
    The conversion happens before the first operation that would round.
    """

    def __init__(self, recipe: Recipe | Mapping[str, Any] | str, num_classes: int = NUM_CLASSES):
        self.recipe = resolve_recipe(recipe)
        self.num_classes = num_classes

    def __repr__(self) -> str:
        return f"BatchAugmenter({self.recipe.python_call()})"

    def __call__(
        self,
        images: torch.Tensor | np.ndarray,
        labels: torch.Tensor | np.ndarray,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        result = self.run(images, labels, generator, keep_params=False)
        return result.images, result.targets

    def run(
        self,
        images: torch.Tensor | np.ndarray,
        labels: torch.Tensor | np.ndarray,
        generator: torch.Generator | None = None,
        *,
        keep_params: bool = True,
    ) -> AugmentResult:
        """Augment a batch and also return the parameters each operation drew."""
        if isinstance(images, np.ndarray):
            images = torch.from_numpy(images)
        if isinstance(labels, np.ndarray):
            labels = torch.from_numpy(labels)
        if isinstance(images, torch.Tensor) and images.ndim != 4:
            raise AugmentError(
                f"BatchAugmenter: expected a batch of shape (N, 3, H, W), got {tuple(images.shape)}; "
                "add a batch dimension with images.unsqueeze(0)"
            )
        batch, _ = as_batch(images, "BatchAugmenter", batch_only=True)
        if not isinstance(labels, torch.Tensor) or labels.shape != (batch.shape[0],):
            shape = tuple(labels.shape) if isinstance(labels, torch.Tensor) else type(labels).__name__
            raise AugmentError(f"BatchAugmenter: expected labels of shape ({batch.shape[0]},), got {shape}")
        targets = one_hot_targets(labels.to(batch.device), self.num_classes)

        image_size = (batch.shape[2], batch.shape[3])
        drawn: list[Params] = []
        for operation in self.recipe.operations:
            if batch.dtype == torch.uint8 and not operation.exact_on_uint8:
                batch = batch.to(torch.float32).div_(255.0)
            params = operation.sample_params(batch.shape[0], generator, batch.device, image_size)
            batch = operation.apply(batch, params)
            if operation.mixes_labels:
                targets = operation.mix_targets(targets, params)  # type: ignore[attr-defined]
            if keep_params:
                drawn.append(params)

        if batch.dtype == torch.uint8:
            batch = batch.to(torch.float32).div_(255.0)
        elif batch.dtype != torch.float32:
            batch = batch.to(torch.float32)
        elif batch is images:
            batch = batch.clone()
        return AugmentResult(images=batch, targets=targets, params=drawn)

