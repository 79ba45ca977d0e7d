"""Cutout: hide a random square of each image (DeVries & Taylor 2017, arXiv:1708.04552).

Convention, the same as the paper's reference code except for odd sides:

- the centre pixel ``(cy, cx)`` is drawn uniformly over the whole image, so the square may hang
  over the border and is then clipped: near a corner fewer pixels change;
- the square covers rows ``[cy - size // 2, cy - size // 2 + size)`` and the same columns, so it
  has exactly ``size`` x ``size`` pixels when it lies inside the image. The reference code uses
  ``[cy - size // 2, cy + size // 2)``, which is one pixel short for odd sides;
- the paper zeroes the square after normalization, which is the data set's mean colour. Here the
  images are not normalized yet, so the colour is the ``fill`` parameter: black by default, the
  CIFAR-10 mean in the presets.

The paper uses a 16 px square for CIFAR-10 and 8 px for CIFAR-100.
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
    box_bounds,
    box_mask,
    fill_value,
    integers,
    param,
    restore_form,
    select,
)


@dataclass(frozen=True)
class Cutout(Operation):
    """Fill a ``size`` x ``size`` square around a random centre of each image with ``fill``."""

    name = "cutout"
    title = "Cutout"
    exact_on_uint8 = True

    size: int = param(16, "int", low=0, high=32, step=1, unit="px", help="side of the square in pixels, at most the image side (32)")
    fill: tuple = param((0.0, 0.0, 0.0), "color", help="colour of the square, RGB in [0, 1]")
    p: float = param(1.0, "float", low=0.0, high=1.0, step=0.05, help="probability that an image gets a square, in [0, 1]")

    def _check_size(self, height: int, width: int) -> None:
        if self.size > min(height, width):
            raise AugmentError(
                f"{self.title}: square side {self.size} px is larger than the {height}x{width} image; "
                f"use size <= {min(height, width)}"
            )

    def sample_params(self, n, generator=None, device=None, image_size=(32, 32)) -> Params:
        self._check_count(n)
        height, width = image_size
        self._check_size(height, width)
        return {
            "center_y": integers(n, 0, height - 1, generator, device),
            "center_x": integers(n, 0, width - 1, generator, device),
            "erase": bernoulli(n, self.p, generator, device),
        }

    def boxes(self, params: Mapping[str, torch.Tensor], image_size: tuple[int, int] = (32, 32)) -> torch.Tensor:
        """Return the clipped squares as ``(N, 4)`` rows of ``top, left, bottom, right`` (end exclusive).

        Images that skip cutout (``p < 1``) get an empty box.
        """
        height, width = image_size
        top, bottom = box_bounds(params["center_y"], self.size, height)
        left, right = box_bounds(params["center_x"], self.size, width)
        erase = params["erase"]
        bottom = torch.where(erase, bottom, top)
        right = torch.where(erase, right, left)
        return torch.stack([top, left, bottom, right], 1)

    def apply(self, images: Any, params: Mapping[str, torch.Tensor]) -> Any:
        batch, form = as_batch(images, self.title)
        self._check_params(params, ["center_y", "center_x", "erase"], batch.shape[0])
        height, width = batch.shape[2], batch.shape[3]
        self._check_size(height, width)
        top, left, bottom, right = self.boxes(params, (height, width)).unbind(1)
        inside = box_mask(top, left, bottom, right, height, width)
        erased = select(inside[:, None], fill_value(self.fill, batch), batch)
        return restore_form(erased, form)
