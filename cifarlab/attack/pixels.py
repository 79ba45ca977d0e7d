"""Pixel candidates of the few-pixel attack and how they are written into images.

A candidate changes ``P`` pixels and is a vector of ``5 * P`` numbers, one ``(row, col, r, g, b)``
group per pixel, in image space: rows and columns are integers ``0..H-1`` and ``0..W-1``, colours
integers ``0..255``. The search keeps its candidates on that integer grid, so the ``uint8`` image
built from a candidate is exactly the image the model classified.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

VALUES_PER_PIXEL = 5  # row, col, red, green, blue


@dataclass(frozen=True)
class PixelChange:
    """One pixel of an adversarial image: its position and its colour before and after."""

    row: int
    col: int
    old: tuple[int, int, int]
    new: tuple[int, int, int]

    def to_dict(self) -> dict:
        return {"row": self.row, "col": self.col, "old": list(self.old), "new": list(self.new)}


def candidate_bounds(height: int, width: int, pixels: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Return the lower and upper bound of every value of a candidate, each of length ``5 * P``."""
    lower = torch.tensor([0.0, 0.0, 0.0, 0.0, 0.0]).repeat(pixels)
    upper = torch.tensor([height - 1.0, width - 1.0, 255.0, 255.0, 255.0]).repeat(pixels)
    return lower, upper


def snap_candidates(candidates: torch.Tensor, lower: torch.Tensor, upper: torch.Tensor) -> torch.Tensor:
    """Round candidates to the integer grid and clip them into the bounds (a new tensor)."""
    return torch.minimum(torch.maximum(candidates.round(), lower), upper)


def apply_pixels(images: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
    """Write each candidate's pixels into a copy of its image.

    ``images`` is ``uint8`` of shape ``(N, 3, H, W)``; ``candidates`` has shape ``(N, 5 * P)`` and
    contains integer values (see `snap_candidates`). Returns a new ``uint8`` tensor; every value
    outside the written pixels is unchanged. When two pixels of one candidate share a position,
    the later one wins.
    """
    if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(
            f"images must be uint8 of shape (N, 3, H, W), got {images.dtype} {tuple(images.shape)}"
        )
    count = images.shape[0]
    if candidates.ndim != 2 or candidates.shape[0] != count or candidates.shape[1] % VALUES_PER_PIXEL:
        raise ValueError(
            f"candidates must have shape ({count}, 5 * pixels), got {tuple(candidates.shape)}"
        )

    adversarial = images.clone()
    values = candidates.to(device=images.device, dtype=torch.long)
    batch = torch.arange(count, device=images.device)
    # One pixel slot at a time: inside one assignment every image index is distinct, so the
    # result does not depend on the undefined write order of repeated indices.
    for pixel in values.view(count, -1, VALUES_PER_PIXEL).unbind(dim=1):
        rows, cols, colours = pixel[:, 0], pixel[:, 1], pixel[:, 2:]
        adversarial[batch, :, rows, cols] = colours.to(torch.uint8)
    return adversarial


def changed_pixels(original: np.ndarray, adversarial: np.ndarray) -> list[PixelChange]:
    """List the pixels where two ``(3, H, W)`` images differ, in row-major order."""
    differs = np.any(original != adversarial, axis=0)
    changes = []
    for row, col in zip(*np.nonzero(differs)):
        changes.append(
            PixelChange(
                row=int(row),
                col=int(col),
                old=tuple(int(value) for value in original[:, row, col]),
                new=tuple(int(value) for value in adversarial[:, row, col]),
            )
        )
    return changes
