"""Operations that mix pairs of images of a batch, and their labels: mixup, fixed blend, cutmix.

Every image ``i`` is mixed with a partner ``partner[i]`` from the same batch, drawn as a random
permutation (an image may draw itself and then stays as it is). Each image has its own mixing
weight ``lam[i]``, the share of the image that is its own, so the soft target is
``lam * onehot(y_i) + (1 - lam) * onehot(y_partner)`` and sums to 1. Drawing ``lam`` per image
rather than once per batch (as the mixup paper's code does) gives more varied pairs at the same
cost, as timm's "elem" mode does. ``per_batch=True`` draws a single value instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import torch

from cifarlab.augment.base import (
    AugmentError,
    Operation,
    Params,
    as_batch,
    bernoulli,
    beta,
    box_bounds,
    box_mask,
    integers,
    like_input,
    param,
    permutation,
    restore_form,
    select,
    to_float,
)

NUM_CLASSES = 10


def one_hot_targets(labels: torch.Tensor, num_classes: int = NUM_CLASSES) -> torch.Tensor:
    """Return ``float32`` one-hot targets ``(N, num_classes)`` for integer labels ``(N,)``.

    The label range is checked for CPU tensors only: on a GPU the check would wait for the
    device in every training step.
    """
    if not isinstance(labels, torch.Tensor) or labels.ndim != 1:
        shape = tuple(labels.shape) if isinstance(labels, torch.Tensor) else type(labels).__name__
        raise AugmentError(f"labels must be a 1-D tensor of class indices, got {shape}")
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise AugmentError(f"labels must be integer class indices, got dtype {labels.dtype}")
    if labels.device.type == "cpu" and labels.numel():
        low, high = int(labels.min()), int(labels.max())
        if low < 0 or high >= num_classes:
            raise AugmentError(
                f"labels must be in [0, {num_classes - 1}], got values from {low} to {high}"
            )
    targets = torch.zeros(labels.shape[0], num_classes, dtype=torch.float32, device=labels.device)
    return targets.scatter_(1, labels.long().view(-1, 1), 1.0)


class MixingOperation(Operation):
    """Base of the operations that mix two images of a batch and their targets.

    ``sample_params`` returns at least ``partner`` (``int64``, ``(N,)``) and ``lam`` (``float32``,
    ``(N,)``, the share of each image that stays its own). ``apply`` mixes the images and
    `mix_targets` mixes the targets with the same parameters.
    """

    batch_only = True
    mixes_labels = True

    def mix_targets(self, targets: torch.Tensor, params: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Return ``lam * targets + (1 - lam) * targets[partner]`` for soft targets ``(N, K)``."""
        if not isinstance(targets, torch.Tensor) or targets.ndim != 2:
            shape = tuple(targets.shape) if isinstance(targets, torch.Tensor) else type(targets).__name__
            raise AugmentError(
                f"{self.title}: targets must be soft labels of shape (N, classes), got {shape}; "
                "turn class indices into them with one_hot_targets(labels)"
            )
        self._check_params(params, ["partner", "lam"], targets.shape[0])
        lam = params["lam"].to(targets.device, torch.float32).view(-1, 1)
        partner = params["partner"].to(targets.device)
        return lam * targets + (1.0 - lam) * targets[partner]

    def __call__(  # type: ignore[override]
        self,
        images: Any,
        labels: torch.Tensor,
        generator: torch.Generator | None = None,
        num_classes: int = NUM_CLASSES,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Draw parameters, mix a batch and its labels; return ``(images, soft_targets)``.

        ``labels`` are class indices ``(N,)`` or soft targets ``(N, num_classes)``.
        """
        batch, _ = as_batch(images, self.title, batch_only=True)
        targets = labels if labels.ndim == 2 else one_hot_targets(labels, num_classes)
        params = self.sample_params(batch.shape[0], generator, batch.device, tuple(batch.shape[-2:]))
        return self.apply(batch, params), self.mix_targets(targets.to(batch.device), params)

    def _linear_mix(self, images: Any, params: Mapping[str, torch.Tensor]) -> torch.Tensor:
        batch, form = as_batch(images, self.title, batch_only=True)
        self._check_params(params, ["partner", "lam"], batch.shape[0])
        pixels = to_float(batch)
        lam = params["lam"].to(pixels.dtype).view(-1, 1, 1, 1)
        mixed = pixels * lam + pixels[params["partner"]] * (1.0 - lam)
        return restore_form(like_input(mixed, batch.dtype), form)


@dataclass(frozen=True)
class Mixup(MixingOperation):
    """Mixup (Zhang et al. 2018, arXiv:1710.09412): ``lam * x_i + (1 - lam) * x_partner``, ``lam ~ Beta(alpha, alpha)``.

    Small ``alpha`` puts most weights near 0 or 1 (mild mixing), ``alpha = 1`` makes ``lam``
    uniform on ``[0, 1]``, large ``alpha`` concentrates it at 0.5. The paper uses ``alpha = 1``
    for CIFAR-10.
    """

    name = "mixup"
    title = "Mixup"

    alpha: float = param(1.0, "float", low=0.01, high=10.0, step=0.05, help="Beta(alpha, alpha) shape, > 0; 1 draws the weight uniformly", widget="number")
    p: float = param(1.0, "float", low=0.0, high=1.0, step=0.05, help="probability that an image is mixed, in [0, 1]")
    per_batch: bool = param(False, "bool", help="draw one weight for the whole batch instead of one per image")

    def sample_params(self, n, generator=None, device=None, image_size=(32, 32)) -> Params:
        self._check_count(n)
        partner = permutation(n, generator, device)
        lam = beta(1 if self.per_batch else n, self.alpha, generator, device).expand(n).clone()
        mixed = bernoulli(n, self.p, generator, device)
        return {"partner": partner, "lam": torch.where(mixed, lam, torch.ones_like(lam))}

    def apply(self, images: Any, params: Mapping[str, torch.Tensor]) -> Any:
        return self._linear_mix(images, params)


@dataclass(frozen=True)
class Blend(MixingOperation):
    """A fixed-weight blend ``weight * x_i + (1 - weight) * x_partner`` with the soft label it implies.

    Some course reports enlarge the training set with such blends (for example ``weight=0.75``)
    and keep the label of the first image. The soft target ``0.75 / 0.25`` states what the
    picture actually contains.
    """

    name = "blend"
    title = "Fixed-weight blend"

    weight: float = param(0.75, "float", low=0.0, high=1.0, step=0.05, help="share of the first image, in [0, 1]")
    p: float = param(1.0, "float", low=0.0, high=1.0, step=0.05, help="probability that an image is blended, in [0, 1]")

    def sample_params(self, n, generator=None, device=None, image_size=(32, 32)) -> Params:
        self._check_count(n)
        partner = permutation(n, generator, device)
        blended = bernoulli(n, self.p, generator, device)
        return {"partner": partner, "lam": torch.where(blended, self.weight, 1.0).to(torch.float32)}

    def apply(self, images: Any, params: Mapping[str, torch.Tensor]) -> Any:
        return self._linear_mix(images, params)


@dataclass(frozen=True)
class CutMix(MixingOperation):
    """CutMix (Yun et al. 2019, arXiv:1905.04899): paste a box of the partner into each image.

    A weight ``lam ~ Beta(alpha, alpha)`` sets the box to ``sqrt(1 - lam)`` of the height and
    width around a centre drawn uniformly over the image. The box is clipped at the border (same
    convention as `Cutout`). ``lam`` is then set to the share of pixels that stayed the image's
    own, so the soft target matches the picture exactly.
    """

    name = "cutmix"
    title = "CutMix"

    alpha: float = param(1.0, "float", low=0.01, high=10.0, step=0.05, help="Beta(alpha, alpha) shape, > 0; 1 draws the weight uniformly", widget="number")
    p: float = param(1.0, "float", low=0.0, high=1.0, step=0.05, help="probability that an image gets a box, in [0, 1]")

    def sample_params(self, n, generator=None, device=None, image_size=(32, 32)) -> Params:
        self._check_count(n)
        height, width = image_size
        partner = permutation(n, generator, device)
        lam_drawn = beta(n, self.alpha, generator, device)
        center_y = integers(n, 0, height - 1, generator, device)
        center_x = integers(n, 0, width - 1, generator, device)
        boxed = bernoulli(n, self.p, generator, device)

        cut = torch.sqrt(1.0 - lam_drawn)
        box_height = (cut * height).to(torch.int64) * boxed
        box_width = (cut * width).to(torch.int64) * boxed
        top, bottom = box_bounds(center_y, box_height, height)
        left, right = box_bounds(center_x, box_width, width)
        lam = 1.0 - ((bottom - top) * (right - left)).to(torch.float32) / (height * width)
        return {
            "partner": partner,
            "lam": lam,
            "lam_drawn": torch.where(boxed, lam_drawn, torch.ones_like(lam_drawn)),
            "top": top,
            "left": left,
            "bottom": bottom,
            "right": right,
        }

    def apply(self, images: Any, params: Mapping[str, torch.Tensor]) -> Any:
        batch, form = as_batch(images, self.title, batch_only=True)
        self._check_params(params, ["partner", "top", "left", "bottom", "right"], batch.shape[0])
        height, width = batch.shape[2], batch.shape[3]
        # NOTE: params["lam"] must stay 1 - box area / image area for mix_targets to match. It is
        # not checked here because the check would cost a device sync in every training step.
        inside = box_mask(params["top"], params["left"], params["bottom"], params["right"], height, width)
        mixed = select(inside[:, None], batch[params["partner"]], batch)
        return restore_form(mixed, form)

