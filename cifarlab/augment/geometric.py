"""Geometric augmentations: horizontal flip, random crop with padding, translation, rotation.

All of them draw independent parameters for every image of a batch and apply them in a few
tensor operations, without a loop over images. torchvision.transforms.v2 applies one crop
offset, one shift or one angle to a whole batch per call, so per-image versions are written
here: crops and shifts gather pixels with index arithmetic, rotations build one sampling grid
per image.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

import torch
import torch.nn.functional as F

from cifarlab.augment.base import (
    AugmentError,
    Operation,
    Params,
    as_batch,
    bernoulli,
    expand_mask,
    fill_value,
    integers,
    like_input,
    param,
    restore_form,
    select,
    to_float,
    uniform,
)

PADDING_MODES = ("reflect", "constant", "edge")


def _reflect_index(index: torch.Tensor, size: int) -> torch.Tensor:
    """Map indices in ``[-(size - 1), 2 * size - 2]`` into ``[0, size)`` by mirroring at the edges.

    The edge pixel itself is not repeated (``-1 -> 1``), as in ``torch.nn.functional.pad`` with
    ``mode="reflect"`` and NumPy's ``"reflect"``.
    """
    index = index.abs()
    return torch.where(index >= size, 2 * (size - 1) - index, index)


def gather_window(
    images: torch.Tensor,
    rows: torch.Tensor,
    cols: torch.Tensor,
    padding_mode: str,
    fill: tuple[float, float, float],
) -> torch.Tensor:
    """Read, for every image, the pixels at source ``rows`` ``(N, Ho)`` and ``cols`` ``(N, Wo)``.

    Indices outside the image are resolved by ``padding_mode``: mirrored (``"reflect"``), clamped
    to the border (``"edge"``) or replaced by ``fill`` (``"constant"``). This is a crop of a
    padded image without building the padded image, done with one ``torch.gather`` for the
    whole batch.
    """
    n, channels, height, width = images.shape
    outside = None
    if padding_mode == "reflect":
        rows, cols = _reflect_index(rows, height), _reflect_index(cols, width)
    else:
        if padding_mode == "constant":
            inside_rows = (rows >= 0) & (rows < height)
            inside_cols = (cols >= 0) & (cols < width)
            outside = ~(inside_rows[:, :, None] & inside_cols[:, None, :])
        rows, cols = rows.clamp(0, height - 1), cols.clamp(0, width - 1)

    out_height, out_width = rows.shape[1], cols.shape[1]
    flat_index = (rows[:, :, None] * width + cols[:, None, :]).view(n, 1, out_height * out_width)
    flat_index = flat_index.expand(n, channels, out_height * out_width)
    window = torch.gather(images.reshape(n, channels, height * width), 2, flat_index)
    window = window.view(n, channels, out_height, out_width)
    if outside is not None:
        window = select(outside[:, None], fill_value(fill, images), window)
    return window


@dataclass(frozen=True)
class HorizontalFlip(Operation):
    """Mirror each image left to right with probability ``p``."""

    name = "horizontal_flip"
    title = "Horizontal flip"
    exact_on_uint8 = True

    p: float = param(0.5, "float", low=0.0, high=1.0, step=0.05, help="probability that an image is flipped, in [0, 1]")

    def sample_params(self, n, generator=None, device=None, image_size=(32, 32)) -> Params:
        self._check_count(n)
        return {"flip": bernoulli(n, self.p, generator, device)}

    def apply(self, images: Any, params: Mapping[str, torch.Tensor]) -> Any:
        batch, form = as_batch(images, self.title)
        self._check_params(params, ["flip"], batch.shape[0])
        flipped = select(expand_mask(params["flip"]), batch.flip(-1), batch)
        return restore_form(flipped, form)


@dataclass(frozen=True)
class RandomCrop(Operation):
    """Pad each image by ``padding`` pixels on every side, then cut a random ``size`` x ``size`` window.

    With the usual ``size=32, padding=4`` this shifts the image content by up to 4 pixels in
    each direction, which is the standard CIFAR-10 training augmentation.
    """

    name = "random_crop"
    title = "Random crop"
    exact_on_uint8 = True

    size: int = param(32, "int", low=1, high=64, step=1, unit="px", help="side of the crop in pixels; 32 keeps the image size")
    padding: int = param(4, "int", low=0, high=16, step=1, unit="px", help="pixels added on every side before cropping")
    padding_mode: str = param("reflect", "choice", choices=PADDING_MODES, help="how the padding is filled: mirrored image, a constant colour, or the edge pixels repeated")
    fill: tuple = param((0.0, 0.0, 0.0), "color", help="colour of constant padding, RGB in [0, 1]")

    def _check_geometry(self, height: int, width: int) -> None:
        if self.size > height + 2 * self.padding or self.size > width + 2 * self.padding:
            raise AugmentError(
                f"{self.title}: crop size {self.size} is larger than the padded image "
                f"({height}+2*{self.padding} by {width}+2*{self.padding} px); use size <= "
                f"{min(height, width) + 2 * self.padding} or more padding"
            )
        if self.padding_mode == "reflect" and self.padding >= min(height, width):
            raise AugmentError(
                f"{self.title}: reflect padding {self.padding} must be smaller than the image side "
                f"{min(height, width)}; lower padding or use padding_mode 'constant' or 'edge'"
            )

    def validate(self) -> None:
        self._check_geometry(32, 32)

    def sample_params(self, n, generator=None, device=None, image_size=(32, 32)) -> Params:
        self._check_count(n)
        height, width = image_size
        self._check_geometry(height, width)
        return {
            "top": integers(n, 0, height + 2 * self.padding - self.size, generator, device),
            "left": integers(n, 0, width + 2 * self.padding - self.size, generator, device),
        }

    def apply(self, images: Any, params: Mapping[str, torch.Tensor]) -> Any:
        batch, form = as_batch(images, self.title)
        self._check_params(params, ["top", "left"], batch.shape[0])
        self._check_geometry(batch.shape[2], batch.shape[3])
        # "top" and "left" are offsets in the padded image, so image row = padded row - padding.
        offsets = torch.arange(self.size, device=batch.device)
        rows = params["top"][:, None] - self.padding + offsets
        cols = params["left"][:, None] - self.padding + offsets
        cropped = gather_window(batch, rows, cols, self.padding_mode, self.fill)
        return restore_form(cropped, form)


@dataclass(frozen=True)
class Translate(Operation):
    """Shift each image by a whole number of pixels, filling the uncovered border with ``fill``.

    The shifts are drawn uniformly from ``[-max_shift_x, max_shift_x]`` and
    ``[-max_shift_y, max_shift_y]``; positive values move the content right and down.
    """

    name = "translate"
    title = "Translation"
    exact_on_uint8 = True

    max_shift_x: int = param(4, "int", low=0, high=31, step=1, unit="px", help="largest horizontal shift in pixels")
    max_shift_y: int = param(4, "int", low=0, high=31, step=1, unit="px", help="largest vertical shift in pixels")
    fill: tuple = param((0.0, 0.0, 0.0), "color", help="colour of the uncovered border, RGB in [0, 1]")
    p: float = param(1.0, "float", low=0.0, high=1.0, step=0.05, help="probability that an image is shifted, in [0, 1]")

    def sample_params(self, n, generator=None, device=None, image_size=(32, 32)) -> Params:
        self._check_count(n)
        height, width = image_size
        if self.max_shift_x >= width or self.max_shift_y >= height:
            raise AugmentError(
                f"{self.title}: shifts of up to ({self.max_shift_x}, {self.max_shift_y}) px would move "
                f"a {height}x{width} image out of view; keep each below the image side"
            )
        dx = integers(n, -self.max_shift_x, self.max_shift_x, generator, device)
        dy = integers(n, -self.max_shift_y, self.max_shift_y, generator, device)
        shifted = bernoulli(n, self.p, generator, device)
        return {"dx": dx * shifted, "dy": dy * shifted}

    def apply(self, images: Any, params: Mapping[str, torch.Tensor]) -> Any:
        batch, form = as_batch(images, self.title)
        self._check_params(params, ["dx", "dy"], batch.shape[0])
        height, width = batch.shape[2], batch.shape[3]
        rows = torch.arange(height, device=batch.device) - params["dy"][:, None]
        cols = torch.arange(width, device=batch.device) - params["dx"][:, None]
        shifted = gather_window(batch, rows, cols, "constant", self.fill)
        return restore_form(shifted, form)


@dataclass(frozen=True)
class Rotation(Operation):
    """Rotate each image about its centre by an angle drawn uniformly from ``[-max_angle, max_angle]``.

    Positive angles turn the content counter-clockwise, as in ``torchvision``. The corners that
    come from outside the image take ``fill``; with bilinear interpolation the border pixels blend
    into it smoothly.
    """

    name = "rotation"
    title = "Rotation"

    max_angle: float = param(15.0, "float", low=0.0, high=180.0, step=1.0, unit="degrees", help="largest rotation in degrees, in [0, 180]")
    fill: tuple = param((0.0, 0.0, 0.0), "color", help="colour of the corners outside the rotated image, RGB in [0, 1]")
    interpolation: str = param("bilinear", "choice", choices=("bilinear", "nearest"), help="how pixels between grid points are read")
    p: float = param(1.0, "float", low=0.0, high=1.0, step=0.05, help="probability that an image is rotated, in [0, 1]")

    def sample_params(self, n, generator=None, device=None, image_size=(32, 32)) -> Params:
        self._check_count(n)
        angle = uniform(n, generator, device, -self.max_angle, self.max_angle)
        rotated = bernoulli(n, self.p, generator, device)
        return {"angle": torch.where(rotated, angle, torch.zeros_like(angle))}

    def apply(self, images: Any, params: Mapping[str, torch.Tensor]) -> Any:
        batch, form = as_batch(images, self.title)
        self._check_params(params, ["angle"], batch.shape[0])
        n, _, height, width = batch.shape
        pixels = to_float(batch)
        if pixels.dtype not in (torch.float32, torch.float64):
            pixels = pixels.float()

        # affine_grid maps each output pixel to the input point it reads, so it takes the
        # inverse rotation. In (x right, y down) coordinates a counter-clockwise turn on screen
        # by a reads its source at (x cos a - y sin a, x sin a + y cos a).
        radians = params["angle"].to(pixels.dtype) * (math.pi / 180.0)
        cos, sin = torch.cos(radians), torch.sin(radians)
        zeros = torch.zeros_like(cos)
        theta = torch.stack(
            [torch.stack([cos, -sin * height / width, zeros], 1), torch.stack([sin * width / height, cos, zeros], 1)],
            1,
        )
        grid = F.affine_grid(theta, [n, 4, height, width], align_corners=False)

        # A channel of ones, sampled with the image, measures how much of each output pixel
        # came from inside the image. The rest of the pixel is fill.
        coverage = torch.ones_like(pixels[:, :1])
        sampled = F.grid_sample(
            torch.cat([pixels, coverage], 1),
            grid,
            mode=self.interpolation,
            padding_mode="zeros",
            align_corners=False,
        )
        fill = torch.tensor(self.fill, dtype=pixels.dtype, device=pixels.device).view(1, 3, 1, 1)
        rotated = sampled[:, :3] + (1.0 - sampled[:, 3:]) * fill
        # A zero angle is the identity exactly, also for images that skipped the rotation (p < 1).
        rotated = torch.where(expand_mask(params["angle"] == 0), pixels, rotated)
        return restore_form(like_input(rotated.clamp_(0.0, 1.0), batch.dtype), form)
