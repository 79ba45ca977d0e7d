"""Score pixel candidates on the model, with as little compute per candidate as exactness allows.

The search spends nearly all its time in the model's forward pass. This module cuts that cost
in two ways, and neither changes which image the model classifies:

- A memo per attacked image. Differential evolution on the integer pixel grid proposes the same
  candidate again and again as its population converges. A candidate proposed before takes its
  logits from the memo, and only candidate images the model actually classifies count as
  queries. With 1 pixel on the shipped LeNet-5, the memo cut the model queries for 8 images from
  108,400 to 80,608 (``benchmarks/bench_attack.py --compare-scoring``).
- Incremental evaluation of the first layers, for networks with a ``stem_and_rest()`` method
  (LeNet-5 and the MLP). A few changed pixels change only a few outputs of the first layers;
  every other output is the clean image's, computed once per image. A stem of unpadded
  convolutions and pooling is recomputed on a small crop around each changed pixel and pasted
  into the clean output. A linear stem gets the changed pixels' weight columns added instead.
  The rest of the network runs as usual.

Incremental logits equal the full forward pass's up to float rounding, because the sums run in
another order. So `CandidateScorer.reference` classifies a candidate image with the whole model,
one image per pass like the clean prediction, and the search accepts a success and reports
probabilities only from that pass.
"""

from __future__ import annotations

import logging

import numpy as np
import torch
from torch import nn

from cifarlab.attack.pixels import VALUES_PER_PIXEL, apply_pixels

logger = logging.getLogger(__name__)

# Layers that act on each position alone, so they keep a change where it is.
_POINTWISE = (
    nn.ReLU,
    nn.LeakyReLU,
    nn.Tanh,
    nn.Sigmoid,
    nn.GELU,
    nn.SiLU,
    nn.BatchNorm2d,
    nn.Dropout,
    nn.Identity,
)


# NOTE: the incremental path has run only on the CPU. It uses the same device-agnostic tensor
# operations on CUDA, but no GPU was available to test it there.
class CandidateScorer:
    """The logits of candidates written into a batch of attacked images.

    Args:
        model: a `cifarlab.models.Classifier` (or any module taking images in ``[0, 1]``), in
            evaluation mode.
        images: ``uint8`` images ``(N, 3, H, W)`` on the model's device.
        batch_size: candidate images per forward pass.
        memo: remember each image's scored candidates and never query one twice.
        incremental: recompute only what a changed pixel reaches in the first layers, where
            the network supports it (see the module docstring).
    """

    def __init__(
        self,
        model: nn.Module,
        images: torch.Tensor,
        *,
        batch_size: int,
        memo: bool = True,
        incremental: bool = True,
    ):
        self.model = model
        self.images = images
        self.batch_size = batch_size
        self._memos: list[dict[bytes, int]] | None = [{} for _ in range(images.shape[0])] if memo else None
        self._bank = torch.empty(0)  # logits of every memorized candidate, by memo slot
        self._stem = _incremental_stem(model, images) if incremental else None

    @property
    def incremental(self) -> bool:
        """True when the first layers are evaluated incrementally for this model."""
        return self._stem is not None

    def score(self, candidates: torch.Tensor, owners: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return the logits ``(M, C)`` on the CPU and which rows were new model queries.

        ``candidates`` ``(M, 5 * P)`` hold integer values on the CPU; ``owners`` ``(M,)`` gives
        each row's image. With the memo, a row seen before for the same image, or repeated
        within this call, is not sent to the model again, and its entry in the returned mask
        is False.
        """
        if self._memos is None:
            return self._query(candidates, owners), torch.ones(candidates.shape[0], dtype=torch.bool)

        # Rows hold integers 0..255, so int16 bytes identify a candidate exactly.
        keys = candidates.to(torch.int16).numpy()
        slots = np.empty(len(keys), dtype=np.int64)
        fresh = np.zeros(len(keys), dtype=bool)
        next_slot = self._bank.shape[0]
        for row, (owner, key) in enumerate(zip(owners.tolist(), keys)):
            memo = self._memos[owner]
            key = key.tobytes()
            slot = memo.get(key)
            if slot is None:
                slot = memo[key] = next_slot
                next_slot += 1
                fresh[row] = True
            slots[row] = slot
        if fresh.any():
            new = torch.from_numpy(np.flatnonzero(fresh))
            logits = self._query(candidates[new], owners[new])
            self._bank = logits if self._bank.numel() == 0 else torch.cat([self._bank, logits])
        return self._bank[torch.from_numpy(slots)], torch.from_numpy(fresh)

    def forget(self, image: int) -> None:
        """Drop the memo of an image whose search has ended (its bank rows stay, a few floats each)."""
        if self._memos is not None:
            self._memos[image] = {}

    def reference(self, candidates: torch.Tensor, owners: torch.Tensor) -> torch.Tensor:
        """Return the whole model's logits for each candidate image, one image per forward pass.

        One image per pass, as for the clean prediction, so the result never depends on which
        other images share a batch.
        """
        outputs = [
            evaluate_candidates(self.model, self.images, candidates[row : row + 1], owners[row : row + 1], 1)
            for row in range(candidates.shape[0])
        ]
        return torch.cat(outputs) if outputs else torch.empty(0)

    def _query(self, candidates: torch.Tensor, owners: torch.Tensor) -> torch.Tensor:
        if self._stem is None:
            return evaluate_candidates(self.model, self.images, candidates, owners, self.batch_size)
        outputs = []
        with torch.inference_mode():
            for start in range(0, candidates.shape[0], self.batch_size):
                chunk = slice(start, start + self.batch_size)
                outputs.append(self._stem.logits(candidates[chunk], owners[chunk]).float().cpu())
        return torch.cat(outputs)


def evaluate_candidates(
    model: nn.Module,
    images: torch.Tensor,
    candidates: torch.Tensor,
    owners: torch.Tensor,
    batch_size: int,
) -> torch.Tensor:
    """Return the logits, on the CPU, of each candidate written into its owner's image.

    The whole model classifies every candidate image; `CandidateScorer` is the faster way.
    """
    device = images.device
    outputs = []
    with torch.inference_mode():
        for start in range(0, candidates.shape[0], batch_size):
            chunk = slice(start, start + batch_size)
            perturbed = apply_pixels(images[owners[chunk].to(device)], candidates[chunk])
            logits = model(perturbed.float().div_(255.0))
            outputs.append(logits.float().cpu())
    return torch.cat(outputs)


# --- incremental first layers ----------------------------------------------------------------


def _incremental_stem(model: nn.Module, images: torch.Tensor) -> "_CropStem | _LinearStem | None":
    """Return the incremental evaluator of ``model``'s first layers, or None when it has none."""
    net = getattr(model, "net", None)
    split = getattr(net, "stem_and_rest", None)
    mean, std = getattr(model, "mean", None), getattr(model, "std", None)
    if split is None or mean is None or std is None:
        return None
    if getattr(model, "input_size", None) != images.shape[-1] or images.shape[-1] != images.shape[-2]:
        return None  # the model resizes its input, so one pixel reaches many
    stem, rest = split()
    with torch.inference_mode():
        if _CropStem.supports(stem):
            return _CropStem(stem, rest, images, mean, std)
        if _LinearStem.supports(stem, images):
            return _LinearStem(stem, rest, images, mean, std)
    logger.info("no incremental evaluation for %s: its stem is %s", type(net).__name__, stem)
    return None


def _normalize(images: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """Normalize ``uint8`` values with the same arithmetic, step by step, as the model's own forward pass."""
    return (images.float().div_(255.0) - mean) / std


def _leaves(module: nn.Module) -> list[nn.Module]:
    return [leaf for leaf in module.modules() if not list(leaf.children())]


def _pixel_positions(candidates: torch.Tensor, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Return the rows and columns ``(M, P)`` of every pixel of every candidate."""
    values = candidates.to(device=device, dtype=torch.long).view(candidates.shape[0], -1, VALUES_PER_PIXEL)
    return values[..., 0], values[..., 1]


class _CropStem:
    """Unpadded convolutions and pooling: recompute a crop around each changed pixel.

    Composed, the stem's layers give every output a square receptive field of ``field``
    pixels, ``jump`` pixels apart. A pixel at row ``p`` reaches the outputs ``o`` with
    ``o * jump <= p < o * jump + field``: at most ``reach = (field - 1) // jump + 1`` of them per
    axis. The stem runs on a crop of ``(reach - 1) * jump + field`` pixels that yields a
    ``reach x reach`` window of outputs containing them all, and that window replaces the clean
    output there. For LeNet-5 (5 x 5 convolution, 2 x 2 pooling) the field is 6, the jump 2, the
    crop 10 x 10 and the window 3 x 3 of the 14 x 14 maps.
    """

    def __init__(self, stem: nn.Module, rest: nn.Module, images, mean, std):
        self.stem, self.rest, self.images, self.mean, self.std = stem, rest, images, mean, std
        self.field, self.jump = _conv_geometry(stem)
        clean = stem(_normalize(images, mean, std))
        self.size = clean.shape[-1]
        self.maps = clean.shape[1]
        # Kept channels-last (N, H, W, C), because max pooling in the rest of the network ran
        # about 3 times faster on channels-last tensors on the CPU (torch 2.14.1).
        self.clean = clean.permute(0, 2, 3, 1).contiguous()
        self.reach = min(self.size, (self.field - 1) // self.jump + 1)
        self.crop = (self.reach - 1) * self.jump + self.field

        device = images.device
        channels, side = images.shape[1], images.shape[-1]
        self.flat_images = images.reshape(-1)
        # Flat offsets of a crop (in an image) and of a window (in the channels-last features)
        # whose corner is at 0: gathering and scattering along one flat axis is much faster
        # than indexing three axes at once.
        crop = torch.arange(self.crop, device=device)
        self.crop_offsets = ((torch.arange(channels, device=device)[:, None, None] * side + crop[:, None]) * side + crop).flatten()
        step = torch.arange(self.reach, device=device)
        maps = torch.arange(self.maps, device=device)
        self.window_offsets = ((step[:, None, None] * self.size + step[:, None]) * self.maps + maps).flatten()

    @staticmethod
    def supports(stem: nn.Module) -> bool:
        return _conv_geometry(stem) is not None

    def logits(self, candidates: torch.Tensor, owners: torch.Tensor) -> torch.Tensor:
        device = self.images.device
        owners = owners.to(device)
        count = owners.shape[0]
        channels, side = self.images.shape[1], self.images.shape[-1]
        values = candidates.to(device=device, dtype=torch.long).view(count, -1, VALUES_PER_PIXEL)
        rows, cols, colours = values[..., 0], values[..., 1], values[..., 2:]  # (M, P), (M, P), (M, P, 3)
        pixels = rows.shape[1]
        top, left = self._window_start(rows), self._window_start(cols)

        # Crops of the clean image, one per pixel of every candidate: (M, P, 3, crop, crop).
        corner = (top * self.jump) * side + left * self.jump
        index = owners[:, None, None] * self.images[0].numel() + corner[..., None] + self.crop_offsets
        crops = self.flat_images[index].view(count, pixels, channels, self.crop, self.crop)
        # Write every pixel of the candidate that falls inside each crop, in pixel order, so a
        # later pixel at the same position wins as in `apply_pixels`.
        for pixel in range(pixels):
            local_rows = rows[:, pixel, None] - top * self.jump  # (M, P): row inside each crop
            local_cols = cols[:, pixel, None] - left * self.jump
            inside = (local_rows >= 0) & (local_rows < self.crop) & (local_cols >= 0) & (local_cols < self.crop)
            owner_at, crop_at = inside.nonzero(as_tuple=True)
            crops[owner_at, crop_at, :, local_rows[owner_at, crop_at], local_cols[owner_at, crop_at]] = (
                colours[owner_at, pixel].to(torch.uint8)
            )
        windows = self.stem(_normalize(crops.view(count * pixels, channels, self.crop, self.crop), self.mean, self.std))
        windows = windows.permute(0, 2, 3, 1).reshape(count, pixels, -1)

        # Windows of two pixels of one candidate may overlap. Each is computed from a crop with
        # all of the candidate's pixels written, and they are pasted in pixel order, so the
        # result does not depend on how scatter orders repeated indices.
        features = self.clean[owners]
        flat = features.view(count, -1)
        window_corner = (top * self.size + left) * self.maps
        for pixel in range(pixels):
            flat.scatter_(1, window_corner[:, pixel, None] + self.window_offsets, windows[:, pixel])
        return self.rest(features.permute(0, 3, 1, 2))

    def _window_start(self, positions: torch.Tensor) -> torch.Tensor:
        """Return the first output of the window that contains every output reached from ``positions``."""
        last = torch.clamp(positions // self.jump, max=self.size - 1)
        return torch.clamp(last - self.reach + 1, min=0, max=self.size - self.reach)


def _conv_geometry(stem: nn.Module) -> tuple[int, int] | None:
    """Return the composed ``(field, jump)`` of a stem of unpadded square layers, else None."""
    field, jump, seen_conv = 1, 1, False
    for layer in _leaves(stem):
        if isinstance(layer, _POINTWISE):
            continue
        if isinstance(layer, nn.Conv2d):
            kernel, stride, padding, dilation = layer.kernel_size, layer.stride, layer.padding, layer.dilation
            if padding != (0, 0) or dilation != (1, 1) or kernel[0] != kernel[1] or stride[0] != stride[1]:
                return None
            kernel, stride = kernel[0], stride[0]
            seen_conv = True
        elif isinstance(layer, (nn.MaxPool2d, nn.AvgPool2d)):
            kernel, stride = _square(layer.kernel_size), _square(layer.stride)
            padding = _square(layer.padding)
            dilation = _square(getattr(layer, "dilation", 1))
            if kernel is None or stride is None or padding != 0 or dilation != 1 or layer.ceil_mode:
                return None
        else:
            return None
        field += (kernel - 1) * jump
        jump *= stride
    return (field, jump) if seen_conv else None


def _square(value) -> int | None:
    if isinstance(value, int):
        return value
    if isinstance(value, tuple) and len(value) == 2 and value[0] == value[1]:
        return int(value[0])
    return None


class _LinearStem:
    """Flatten and a linear layer: add the changed pixels' weight columns to the clean output.

    ``W x' + b = (W x + b) + W (x' - x)``, and ``x' - x`` is zero except at the three channels
    of each changed pixel, so a candidate costs ``3 * P`` columns of ``W`` instead of all
    ``3 * H * W`` of them.
    """

    def __init__(self, stem: nn.Module, rest: nn.Module, images, mean, std):
        self.rest, self.images, self.mean, self.std = rest, images, mean, std
        linear = _leaves(stem)[1]
        # Rows of W^T are the input features, so one gather picks a pixel's three columns.
        self.columns = linear.weight.detach().t().contiguous()
        self.clean = stem(_normalize(images, mean, std))
        self.height, self.width = images.shape[-2:]

    @staticmethod
    def supports(stem: nn.Module, images: torch.Tensor) -> bool:
        leaves = _leaves(stem)
        if len(leaves) != 2 or not isinstance(leaves[0], nn.Flatten) or not isinstance(leaves[1], nn.Linear):
            return False
        return leaves[0].start_dim == 1 and leaves[1].in_features == images[0].numel()

    def logits(self, candidates: torch.Tensor, owners: torch.Tensor) -> torch.Tensor:
        device = self.images.device
        owners = owners.to(device)
        values = candidates.to(device=device, dtype=torch.long).view(candidates.shape[0], -1, VALUES_PER_PIXEL)
        rows, cols, colours = values[..., 0], values[..., 1], values[..., 2:]
        # When two pixels of a candidate share a position, only the later one is written. So the
        # position counts once, at its last slot, and the sum equals the image's difference.
        position = rows * self.width + cols
        later = torch.triu(torch.ones(position.shape[1], position.shape[1], dtype=torch.bool, device=device), 1)
        repeated = ((position[:, :, None] == position[:, None, :]) & later).any(dim=2)
        mean, std = self.mean.view(3), self.std.view(3)
        old = _normalize(self.images[owners[:, None], :, rows, cols], mean, std)  # (M, P, 3)
        new = _normalize(colours, mean, std)
        change = (new - old).masked_fill(repeated[..., None], 0.0)
        plane = self.height * self.width
        features = position[..., None] + plane * torch.arange(3, device=device)  # (M, P, 3)
        weights = self.columns[features.flatten(1)]  # (M, 3P, out)
        update = torch.bmm(change.flatten(1)[:, None, :], weights).squeeze(1)
        return self.rest(self.clean[owners] + update)
