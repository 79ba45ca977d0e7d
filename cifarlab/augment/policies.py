"""Learned and random augmentation policies: AutoAugment, RandAugment and TrivialAugmentWide.

The image operations (shear, translate, rotate, colour, posterize, ...) and the tables of
policies and magnitudes are torchvision's (``torchvision.transforms.v2``, 0.29). What differs is
how the random choices are drawn. A torchvision policy draws ONE sub-policy, operation and
magnitude per call and applies it to every image of the tensor it gets, so a batch of 512
images would all be, say, rotated by the same 12 degrees. Looping over images in Python instead
would be slow.

Here every image draws its own choices (with a seeded generator, like every other operation),
and `apply` then groups the images whose draws coincide and makes one torchvision call per group.
The loop runs once per distinct ``(operation, magnitude)`` pair in the batch, not once per
image. A step has at most 23 such pairs for RandAugment (9 signed operations at one magnitude,
5 without a sign) and at most 2 per sub-policy step for AutoAugment. TrivialAugmentWide also
draws one of 31 magnitudes, so a large batch can reach several hundred groups, which makes it
the slowest of the three.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Mapping

import torch
from torchvision.transforms import v2

from cifarlab.augment.base import (
    AugmentError,
    Operation,
    Params,
    as_batch,
    integers,
    param,
    restore_form,
    uniform,
)

# Parameter value -> torchvision enum.
POLICIES = {
    "cifar10": v2.AutoAugmentPolicy.CIFAR10,
    "imagenet": v2.AutoAugmentPolicy.IMAGENET,
    "svhn": v2.AutoAugmentPolicy.SVHN,
}
INTERPOLATIONS = ("nearest", "bilinear")

# Value of params["op"] for a step that an image skips.
SKIP = -1


def _magnitude_table(space: dict, names: tuple[str, ...], num_bins: int, height: int, width: int) -> torch.Tensor:
    """Return a ``(len(names), num_bins)`` table of magnitudes; operations without one get zeros."""
    table = torch.zeros(len(names), num_bins, dtype=torch.float64)
    for index, op_name in enumerate(names):
        magnitudes = space[op_name][0](num_bins, height, width)
        if magnitudes is not None:
            table[index] = magnitudes.to(torch.float64)
    return table


def _signed_table(space: dict, names: tuple[str, ...]) -> torch.Tensor:
    return torch.tensor([space[op_name][1] for op_name in names], dtype=torch.bool)


class _PolicyOperation(Operation):
    """Shared part of the three policies: the torchvision transform and grouped application."""

    exact_on_uint8 = True
    transform_class: type = v2.AutoAugment

    def _torchvision_transform(self, dtype: torch.dtype) -> Any:
        """Build the torchvision transform whose tables and image operations are used."""
        scale = 255.0 if dtype == torch.uint8 else 1.0
        fill = [channel * scale for channel in self.fill]  # type: ignore[attr-defined]
        return self._build_transform(fill)

    def _build_transform(self, fill: list[float]) -> Any:
        return self.transform_class(interpolation=self.interpolation, fill=fill)  # type: ignore[attr-defined]

    @property
    def op_names(self) -> tuple[str, ...]:
        """The operations a step can choose, in the order that ``params["op"]`` indexes."""
        return tuple(self.transform_class._AUGMENTATION_SPACE)

    def describe(self, params: Mapping[str, torch.Tensor], index: int) -> list[str]:
        """Return the steps image ``index`` went through, e.g. ``["Rotate(-12.0)", "Equalize"]``."""
        steps = []
        for op_index, magnitude in zip(params["op"][index].tolist(), params["magnitude"][index].tolist()):
            if op_index == SKIP:
                steps.append("skipped")
                continue
            op_name = self.op_names[op_index]
            signed, has_magnitude = self._op_traits(op_name)
            steps.append(f"{op_name}({magnitude:.3g})" if has_magnitude else op_name)
        return steps

    def _op_traits(self, op_name: str) -> tuple[bool, bool]:
        magnitudes_fn, signed = self.transform_class._AUGMENTATION_SPACE[op_name]
        return signed, magnitudes_fn(2, 32, 32) is not None

    def apply(self, images: Any, params: Mapping[str, torch.Tensor]) -> Any:
        batch, form = as_batch(images, self.title)
        self._check_params(params, ["op", "magnitude"], batch.shape[0])
        transform = self._torchvision_transform(batch.dtype)
        names = self.op_names
        result = batch.clone()
        for step in range(params["op"].shape[1]):
            ops = params["op"][:, step].to(torch.float64)
            magnitudes = params["magnitude"][:, step].to(torch.float64)
            keys = torch.stack([ops, magnitudes], 1).cpu()
            groups, group_of_image = torch.unique(keys, dim=0, return_inverse=True)
            for group, (op_value, magnitude) in enumerate(groups.tolist()):
                if int(op_value) == SKIP or names[int(op_value)] == "Identity":
                    continue
                members = (group_of_image == group).nonzero().view(-1).to(batch.device)
                # NOTE: _apply_image_or_video_transform is torchvision's private per-operation
                # dispatch (0.29, pinned in requirements.txt). It contains the exact formulas
                # that the public AutoAugment, RandAugment and TrivialAugmentWide use.
                result[members] = transform._apply_image_or_video_transform(
                    result[members],
                    names[int(op_value)],
                    float(magnitude),
                    interpolation=transform.interpolation,
                    fill=transform._fill,
                )
        return restore_form(result, form)

    def _signs(self, shape: tuple[int, ...], signed: torch.Tensor, generator, device) -> torch.Tensor:
        """Draw -1 with probability 1/2 where the operation is signed, else +1."""
        flips = uniform(shape[0] * shape[1], generator, device).view(shape) <= 0.5
        negate = flips & signed.to(flips.device)
        return torch.where(negate, -1.0, 1.0)


@functools.lru_cache(maxsize=16)
def _autoaugment_tables(policy: str, height: int, width: int) -> tuple[torch.Tensor, ...]:
    """Return AutoAugment's sub-policies as tensors ``(P, 2)``: op index, probability, magnitude, signed."""
    transform = v2.AutoAugment(policy=POLICIES[policy])
    space = transform._AUGMENTATION_SPACE
    names = tuple(space)
    # The policies index magnitudes among 10 bins, as in the AutoAugment paper.
    magnitudes = _magnitude_table(space, names, 10, height, width)
    signed = _signed_table(space, names)
    op_index, probability, magnitude, is_signed = [], [], [], []
    for sub_policy in transform._policies:
        op_index.append([names.index(op_name) for op_name, _, _ in sub_policy])
        probability.append([p for _, p, _ in sub_policy])
        magnitude.append(
            [0.0 if bin_ is None else float(magnitudes[names.index(op_name), bin_]) for op_name, _, bin_ in sub_policy]
        )
        is_signed.append([bool(signed[names.index(op_name)]) for op_name, _, _ in sub_policy])
    return (
        torch.tensor(op_index, dtype=torch.int64),
        torch.tensor(probability, dtype=torch.float32),
        torch.tensor(magnitude, dtype=torch.float32),
        torch.tensor(is_signed, dtype=torch.bool),
    )


@dataclass(frozen=True)
class AutoAugment(_PolicyOperation):
    """AutoAugment (Cubuk et al. 2019, arXiv:1805.09501) with its learned CIFAR-10 policy.

    Each image draws one of the 25 sub-policies. Each of its two steps runs with the step's
    probability, at the step's fixed magnitude, with a random sign where the operation has one.
    """

    name = "autoaugment"
    title = "AutoAugment"
    transform_class = v2.AutoAugment

    policy: str = param("cifar10", "choice", choices=tuple(POLICIES), help="which learned policy to use; cifar10 was searched on CIFAR-10")
    interpolation: str = param("nearest", "choice", choices=INTERPOLATIONS, help="resampling of the geometric steps")
    fill: tuple = param((0.0, 0.0, 0.0), "color", help="colour of the area that geometric steps uncover, RGB in [0, 1]")

    def _build_transform(self, fill: list[float]) -> Any:
        return v2.AutoAugment(policy=POLICIES[self.policy], interpolation=self.interpolation, fill=fill)

    def sample_params(self, n, generator=None, device=None, image_size=(32, 32)) -> Params:
        self._check_count(n)
        op_table, probability, magnitude, signed = _autoaugment_tables(self.policy, *image_size)
        sub_policy = integers(n, 0, op_table.shape[0] - 1, generator, "cpu")
        applied = uniform(2 * n, generator, "cpu").view(n, 2) <= probability[sub_policy]
        signs = self._signs((n, 2), signed[sub_policy], generator, "cpu")
        ops = torch.where(applied, op_table[sub_policy], SKIP)
        magnitudes = torch.where(applied, magnitude[sub_policy] * signs, 0.0)
        return {"sub_policy": sub_policy.to(device), "op": ops.to(device), "magnitude": magnitudes.to(device)}


@dataclass(frozen=True)
class RandAugment(_PolicyOperation):
    """RandAugment (Cubuk et al. 2020, arXiv:1909.13719): ``num_ops`` random operations at one magnitude.

    Each image draws its own ``num_ops`` operations uniformly from 14 (Identity included) and a
    random sign; every operation uses magnitude bin ``magnitude`` of ``num_magnitude_bins``.
    """

    name = "randaugment"
    title = "RandAugment"
    transform_class = v2.RandAugment

    num_ops: int = param(2, "int", low=0, high=6, step=1, help="operations applied one after another to each image")
    magnitude: int = param(9, "int", low=0, high=50, step=1, help="magnitude bin shared by every operation, below num_magnitude_bins")
    num_magnitude_bins: int = param(31, "int", low=2, high=51, step=1, help="number of magnitude bins from none to the strongest")
    interpolation: str = param("nearest", "choice", choices=INTERPOLATIONS, help="resampling of the geometric steps")
    fill: tuple = param((0.0, 0.0, 0.0), "color", help="colour of the area that geometric steps uncover, RGB in [0, 1]")

    def validate(self) -> None:
        if self.magnitude >= self.num_magnitude_bins:
            raise AugmentError(
                f"{self.title}: magnitude {self.magnitude} must be below num_magnitude_bins "
                f"{self.num_magnitude_bins}; lower magnitude or raise num_magnitude_bins"
            )

    def _build_transform(self, fill: list[float]) -> Any:
        return v2.RandAugment(
            num_ops=self.num_ops,
            magnitude=self.magnitude,
            num_magnitude_bins=self.num_magnitude_bins,
            interpolation=self.interpolation,
            fill=fill,
        )

    def sample_params(self, n, generator=None, device=None, image_size=(32, 32)) -> Params:
        self._check_count(n)
        space = v2.RandAugment._AUGMENTATION_SPACE
        names = self.op_names
        magnitudes = _magnitude_table(space, names, self.num_magnitude_bins, *image_size)[:, self.magnitude]
        signed = _signed_table(space, names)
        shape = (n, self.num_ops)
        ops = integers(n * self.num_ops, 0, len(names) - 1, generator, "cpu").view(shape)
        signs = self._signs(shape, signed[ops], generator, "cpu")
        values = (magnitudes[ops] * signs).to(torch.float32)
        return {"op": ops.to(device), "magnitude": values.to(device)}


@dataclass(frozen=True)
class TrivialAugmentWide(_PolicyOperation):
    """TrivialAugment Wide (Müller & Hutter 2021, arXiv:2103.10158): one operation at a random magnitude.

    Each image draws one of 14 operations (Identity included), a magnitude bin uniformly from
    ``num_magnitude_bins`` and a random sign.
    """

    name = "trivialaugment_wide"
    title = "TrivialAugmentWide"
    transform_class = v2.TrivialAugmentWide

    num_magnitude_bins: int = param(31, "int", low=2, high=51, step=1, help="number of magnitude bins from none to the strongest")
    interpolation: str = param("nearest", "choice", choices=INTERPOLATIONS, help="resampling of the geometric steps")
    fill: tuple = param((0.0, 0.0, 0.0), "color", help="colour of the area that geometric steps uncover, RGB in [0, 1]")

    def _build_transform(self, fill: list[float]) -> Any:
        return v2.TrivialAugmentWide(
            num_magnitude_bins=self.num_magnitude_bins, interpolation=self.interpolation, fill=fill
        )

    def sample_params(self, n, generator=None, device=None, image_size=(32, 32)) -> Params:
        self._check_count(n)
        space = v2.TrivialAugmentWide._AUGMENTATION_SPACE
        names = self.op_names
        table = _magnitude_table(space, names, self.num_magnitude_bins, *image_size)
        signed = _signed_table(space, names)
        ops = integers(n, 0, len(names) - 1, generator, "cpu")
        bins = integers(n, 0, self.num_magnitude_bins - 1, generator, "cpu")
        signs = self._signs((n, 1), signed[ops].view(n, 1), generator, "cpu")
        values = (table[ops, bins].view(n, 1) * signs).to(torch.float32)
        return {"op": ops.view(n, 1).to(device), "magnitude": values.to(device)}
