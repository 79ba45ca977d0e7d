"""Photometric augmentations: Gaussian pixel noise and colour jitter, with per-image parameters.

torchvision's ``ColorJitter`` draws one set of factors per call and so gives a whole batch the
same brightness, contrast, saturation and hue change. The version here draws them per image
and applies them with broadcasting.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import torch

from cifarlab.augment.base import (
    Operation,
    Params,
    as_batch,
    bernoulli,
    expand_mask,
    like_input,
    normal,
    param,
    restore_form,
    to_float,
    uniform,
)

# ITU-R BT.601 luma weights, the ones torchvision's rgb_to_grayscale uses.
_LUMA_WEIGHTS = (0.2989, 0.587, 0.114)


@dataclass(frozen=True)
class GaussianNoise(Operation):
    """Add zero-mean Gaussian noise of standard deviation ``sigma`` to every pixel, then clip to ``[0, 1]``.

    ``sigma`` is in pixel units of the ``[0, 1]`` range (0.1 is about 25 grey levels), applied
    before the model normalizes its input. ``uint8`` input is rounded back to ``uint8``.
    """

    name = "gaussian_noise"
    title = "Gaussian noise"

    sigma: float = param(0.05, "float", low=0.0, high=1.0, step=0.01, unit="of the [0, 1] range", help="standard deviation of the noise in [0, 1] pixel units, in [0, 1]")
    p: float = param(1.0, "float", low=0.0, high=1.0, step=0.05, help="probability that an image gets noise, in [0, 1]")

    def sample_params(self, n, generator=None, device=None, image_size=(32, 32)) -> Params:
        self._check_count(n)
        height, width = image_size
        noisy = bernoulli(n, self.p, generator, device)
        return {
            "sigma": torch.where(noisy, self.sigma, 0.0).to(torch.float32),
            "noise": normal((n, 3, height, width), generator, device),
        }

    def apply(self, images: Any, params: Mapping[str, torch.Tensor]) -> Any:
        batch, form = as_batch(images, self.title)
        self._check_params(params, ["sigma", "noise"], batch.shape[0])
        pixels = to_float(batch)
        noise = params["noise"].to(pixels.dtype) * params["sigma"].to(pixels.dtype).view(-1, 1, 1, 1)
        noisy = pixels.add_(noise).clamp_(0.0, 1.0)
        return restore_form(like_input(noisy, batch.dtype), form)


def _grayscale(pixels: torch.Tensor) -> torch.Tensor:
    red, green, blue = pixels.unbind(1)
    return (_LUMA_WEIGHTS[0] * red + _LUMA_WEIGHTS[1] * green + _LUMA_WEIGHTS[2] * blue).unsqueeze(1)


def _blend(pixels: torch.Tensor, other: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Return ``factor * pixels + (1 - factor) * other``, clipped to ``[0, 1]``, with a factor per image."""
    factor = factor.view(-1, 1, 1, 1)
    return (factor * pixels + (1.0 - factor) * other).clamp_(0.0, 1.0)


def _rgb_to_hsv(pixels: torch.Tensor) -> torch.Tensor:
    red, green, blue = pixels.unbind(1)
    value, _ = pixels.max(1)
    minimum, _ = pixels.min(1)
    chroma = value - minimum
    safe_chroma = torch.where(chroma > 0, chroma, torch.ones_like(chroma))
    saturation = torch.where(value > 0, chroma / torch.where(value > 0, value, torch.ones_like(value)), torch.zeros_like(value))
    # Hue in sixths of a turn, from whichever channel is the maximum.
    hue_red = ((green - blue) / safe_chroma) % 6.0
    hue_green = (blue - red) / safe_chroma + 2.0
    hue_blue = (red - green) / safe_chroma + 4.0
    hue = torch.where(value == red, hue_red, torch.where(value == green, hue_green, hue_blue))
    hue = torch.where(chroma > 0, hue / 6.0, torch.zeros_like(hue))
    return torch.stack([hue, saturation, value], 1)


def _hsv_to_rgb(hsv: torch.Tensor) -> torch.Tensor:
    hue, saturation, value = hsv.unbind(1)
    # Each channel is value minus a chroma share that depends on its distance to the hue,
    # with the channel offsets 5, 3 and 1 (sixths of a turn) for red, green and blue.
    offsets = torch.tensor([5.0, 3.0, 1.0], dtype=hsv.dtype, device=hsv.device).view(1, 3, 1, 1)
    position = (offsets + hue.unsqueeze(1) * 6.0) % 6.0
    share = torch.minimum(position, 4.0 - position).clamp(0.0, 1.0)
    return value.unsqueeze(1) - (value * saturation).unsqueeze(1) * share


@dataclass(frozen=True)
class ColorJitter(Operation):
    """Change brightness, contrast, saturation and hue of each image by its own random factors.

    Each factor is drawn uniformly from ``[max(0, 1 - x), 1 + x]`` for brightness, contrast and
    saturation and the hue shift from ``[-hue, hue]`` (in turns of the colour wheel). The four
    changes run in this fixed order. torchvision's ``ColorJitter`` shuffles the order on every
    call, which a per-image batch version cannot do without a loop. The formulas follow
    ``torchvision.transforms.v2.functional.adjust_*``.
    """

    name = "color_jitter"
    title = "Colour jitter"

    brightness: float = param(0.4, "float", low=0.0, high=1.0, step=0.05, help="brightness factor range 1 +- brightness, in [0, 1]")
    contrast: float = param(0.4, "float", low=0.0, high=1.0, step=0.05, help="contrast factor range 1 +- contrast, in [0, 1]")
    saturation: float = param(0.4, "float", low=0.0, high=1.0, step=0.05, help="saturation factor range 1 +- saturation, in [0, 1]")
    hue: float = param(0.0, "float", low=0.0, high=0.5, step=0.01, unit="turns", help="largest hue shift as a fraction of the colour wheel, in [0, 0.5]")
    p: float = param(1.0, "float", low=0.0, high=1.0, step=0.05, help="probability that an image is jittered, in [0, 1]")

    def sample_params(self, n, generator=None, device=None, image_size=(32, 32)) -> Params:
        self._check_count(n)

        def factor(amount: float) -> torch.Tensor:
            return uniform(n, generator, device, max(0.0, 1.0 - amount), 1.0 + amount)

        brightness, contrast, saturation = factor(self.brightness), factor(self.contrast), factor(self.saturation)
        hue = uniform(n, generator, device, -self.hue, self.hue)
        jittered = bernoulli(n, self.p, generator, device)
        one, zero = torch.ones_like(hue), torch.zeros_like(hue)
        return {
            "brightness": torch.where(jittered, brightness, one),
            "contrast": torch.where(jittered, contrast, one),
            "saturation": torch.where(jittered, saturation, one),
            "hue": torch.where(jittered, hue, zero),
        }

    def apply(self, images: Any, params: Mapping[str, torch.Tensor]) -> Any:
        batch, form = as_batch(images, self.title)
        keys = ["brightness", "contrast", "saturation", "hue"]
        self._check_params(params, keys, batch.shape[0])
        pixels = to_float(batch)
        brightness, contrast, saturation, hue = (params[key].to(pixels.dtype) for key in keys)

        pixels = _blend(pixels, torch.zeros_like(pixels), brightness)
        mean_gray = _grayscale(pixels).mean(dim=(1, 2, 3), keepdim=True)
        pixels = _blend(pixels, mean_gray, contrast)
        pixels = _blend(pixels, _grayscale(pixels), saturation)
        if bool((hue != 0).any()):
            hsv = _rgb_to_hsv(pixels)
            shifted_hue = (hsv[:, 0] + hue.view(-1, 1, 1)) % 1.0
            shifted = _hsv_to_rgb(torch.stack([shifted_hue, hsv[:, 1], hsv[:, 2]], 1))
            pixels = torch.where(expand_mask(hue != 0), shifted, pixels)
        return restore_form(like_input(pixels.clamp_(0.0, 1.0), batch.dtype), form)
