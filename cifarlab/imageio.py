"""Decode any uploaded image into the 32x32 RGB input a CIFAR-10 model receives.

`load_image_for_model` accepts PNG, JPEG, WebP, GIF (first frame), BMP and TIFF files in any
colour mode and size and returns a ``uint8`` array of shape ``(3, 32, 32)`` together with a dict
that records every conversion it made, so a page can tell the student exactly what happened to
their picture:

- transparent pixels (RGBA, LA, palette with transparency) are composited on a stated background
  colour, white by default;
- grayscale and 1-bit images become three equal channels;
- 16-bit and 32-bit images are scaled to 0..255 (65535 becomes 255), never clipped;
- CMYK and YCbCr images are converted to RGB;
- a JPEG's EXIF orientation is applied, so a phone photo is upright;
- the image is centre-cropped to a square (or stretched, or padded) and resized with Lanczos.

A file that is not an image, is larger than ``max_bytes``, or declares more than ``max_pixels``
pixels (a decompression bomb) raises `ImageInputError` before any pixel data is decoded.
"""

from __future__ import annotations

import io
import logging
import os
import warnings
from pathlib import Path
from typing import BinaryIO, Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

log = logging.getLogger(__name__)

MODEL_INPUT_SIZE = 32

# Formats Pillow may try when identifying an upload. Limiting the list keeps plugins such as EPS
# (which runs Ghostscript) away from untrusted files.
ALLOWED_FORMATS = ("PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF")
# File extensions for upload widgets, matching ALLOWED_FORMATS.
UPLOAD_EXTENSIONS = ("png", "jpg", "jpeg", "webp", "gif", "bmp", "tif", "tiff")

DEFAULT_MAX_BYTES = 20 * 1024 * 1024
# 64 megapixels covers full-resolution phone photos; decoding one takes about 200 MB as RGB.
DEFAULT_MAX_PIXELS = 64_000_000
DEFAULT_BACKGROUND = (255, 255, 255)

FIT_MODES = ("crop", "stretch", "pad")
RESAMPLE_NAME = "Lanczos"

ImageSource = Union[bytes, bytearray, memoryview, str, os.PathLike, BinaryIO]

# Modes whose samples are wider than 8 bits and need scaling rather than Pillow's clipping.
_WIDE_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")


class ImageInputError(ValueError):
    """An uploaded file that cannot be turned into a model input; the message gives the reason."""


def load_image_for_model(
    source: ImageSource,
    *,
    background: tuple[int, int, int] = DEFAULT_BACKGROUND,
    fit: str = "crop",
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> tuple[np.ndarray, dict]:
    """Decode an image file into a ``uint8`` array of shape ``(3, 32, 32)``.

    ``source`` is the file's bytes, a path, or a binary file object (a Streamlit upload works).
    ``fit`` chooses how a non-square image becomes square: ``"crop"`` keeps the central square
    (the aspect ratio is kept and the borders are lost), ``"stretch"`` squashes the whole image,
    ``"pad"`` keeps the whole image and fills the borders with ``background``.

    Returns the array and an info dict with the file's ``format``, original ``mode``, ``width``,
    ``height``, ``frames``, ``file_bytes``, the ``background`` used (``None`` if no pixel was
    transparent), ``fit``, ``resample`` and a list of human-readable ``steps``.

    Raises `ImageInputError` for a file that is too large, not a supported image, truncated, or a
    decompression bomb.
    """
    background = _check_background(background)
    if fit not in FIT_MODES:
        raise ImageInputError(f"invalid fit {fit!r}; choose one of {', '.join(FIT_MODES)}")

    data = _read_bytes(source, max_bytes)
    image = _open_image(data, max_pixels)
    info = {
        "format": image.format,
        "mode": image.mode,
        "width": image.width,
        "height": image.height,
        "frames": getattr(image, "n_frames", 1),
        "file_bytes": len(data),
        "background": None,
        "fit": fit,
        "resample": RESAMPLE_NAME,
        "steps": [],
    }
    steps = info["steps"]
    if info["frames"] > 1:
        steps.append(f"used the first of {info['frames']} frames")

    if image.format == "JPEG":
        # Let libjpeg scale a large photo down by a power of two while decoding; 4x the model
        # input still leaves the Lanczos filter plenty of pixels to average.
        full_size = image.size
        image.draft(None, (4 * MODEL_INPUT_SIZE, 4 * MODEL_INPUT_SIZE))
        if image.size != full_size:
            steps.append(f"decoded at {image.width}x{image.height} by the JPEG decoder's scaling")
    try:
        image.load()
    except (OSError, SyntaxError, ValueError) as error:
        raise ImageInputError(
            f"the {image.format} file could not be decoded ({error}); it may be truncated or "
            "damaged, so try saving it again as PNG or JPEG"
        ) from error

    orientation = _exif_orientation(image)
    if orientation > 1:
        image = ImageOps.exif_transpose(image)
        steps.append(f"turned upright as its EXIF orientation tag ({orientation}) says")

    rgb, used_background = _to_rgb(image, background, steps)
    info["background"] = used_background
    array = _fit_and_resize(rgb, fit, background, steps)
    return np.ascontiguousarray(array.transpose(2, 0, 1)), info


def enlarge(image_chw: np.ndarray, scale: int = 8) -> np.ndarray:
    """Upscale a ``(3, H, W)`` uint8 image by pixel repetition into ``(H*scale, W*scale, 3)``.

    Nearest-neighbour enlargement keeps each of the 32x32 pixels a crisp square, exactly as the
    model receives them. A browser scaling a small image up would blur it instead.
    """
    if image_chw.ndim != 3 or image_chw.shape[0] != 3:
        raise ValueError(f"expected an image of shape (3, H, W), got {tuple(image_chw.shape)}")
    if scale < 1:
        raise ValueError(f"scale must be a positive integer, got {scale}")
    hwc = np.asarray(image_chw).transpose(1, 2, 0)
    return np.repeat(np.repeat(hwc, scale, axis=0), scale, axis=1)


def describe(info: dict) -> str:
    """Summarize an info dict from `load_image_for_model` in one sentence for the page."""
    parts = [
        f"{info['format']} image, {info['width']}x{info['height']} pixels, mode {info['mode']}"
    ]
    parts.extend(info["steps"])
    return "; ".join(parts) + "."


def _check_background(background) -> tuple[int, int, int]:
    try:
        values = tuple(int(value) for value in background)
    except (TypeError, ValueError) as error:
        raise ImageInputError(
            f"invalid background {background!r}; give three integers 0..255, e.g. (255, 255, 255)"
        ) from error
    if len(values) != 3 or not all(0 <= value <= 255 for value in values):
        raise ImageInputError(
            f"invalid background {background!r}; give three integers 0..255, e.g. (255, 255, 255)"
        )
    return values


def _read_bytes(source: ImageSource, max_bytes: int) -> bytes:
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
    elif isinstance(source, (str, os.PathLike)):
        path = Path(source)
        try:
            size = path.stat().st_size
        except OSError as error:
            raise ImageInputError(f"image file {path} could not be read: {error.strerror}") from error
        if size > max_bytes:
            raise ImageInputError(_too_large_message(size, max_bytes))
        data = path.read_bytes()
    elif hasattr(source, "read"):
        if hasattr(source, "seek"):
            source.seek(0)
        # Read one byte past the limit so an oversized stream is detected without reading it all.
        data = source.read(max_bytes + 1)
    else:
        raise ImageInputError(
            f"cannot read an image from a {type(source).__name__}; pass bytes, a path or a file"
        )
    if len(data) > max_bytes:
        raise ImageInputError(_too_large_message(len(data), max_bytes))
    if not data:
        raise ImageInputError("the file is empty; choose an image file")
    return data


def _too_large_message(size: int, max_bytes: int) -> str:
    return (
        f"the file is {_format_bytes(size)}{'+' if size == max_bytes + 1 else ''}, more than the "
        f"{_format_bytes(max_bytes)} limit; save a smaller copy of the image and upload that"
    )


def _format_bytes(size: int) -> str:
    if size >= 1024 * 1024:
        return f"{size / (1024 * 1024):.1f} MiB"
    if size >= 1024:
        return f"{size / 1024:.1f} KiB"
    return f"{size} bytes"


def _open_image(data: bytes, max_pixels: int) -> Image.Image:
    # Pillow warns about images above Image.MAX_IMAGE_PIXELS and raises above twice that. Turning
    # the warning into an error here rejects both without changing Pillow's global setting.
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise ImageInputError(
            f"the image declares too many pixels to decode safely ({error}); "
            "it may be a decompression bomb"
        ) from error
    except UnidentifiedImageError as error:
        raise ImageInputError(
            "the file is not an image in a supported format; upload a "
            f"{', '.join(ALLOWED_FORMATS)} file"
        ) from error
    except (OSError, SyntaxError, ValueError) as error:
        raise ImageInputError(f"the image header could not be read ({error})") from error

    pixels = image.width * image.height
    if pixels > max_pixels:
        raise ImageInputError(
            f"the image is {image.width}x{image.height} = {pixels:,} pixels, more than the "
            f"{max_pixels:,}-pixel limit; it may be a decompression bomb, or resize it first"
        )
    if pixels == 0:
        raise ImageInputError(f"the image is {image.width}x{image.height} pixels, so it is empty")
    if getattr(image, "n_frames", 1) > 1:
        image.seek(0)
    return image


def _exif_orientation(image: Image.Image) -> int:
    try:
        return int(image.getexif().get(0x0112, 1))
    except (TypeError, ValueError, OSError):
        return 1


def _to_rgb(
    image: Image.Image, background: tuple[int, int, int], steps: list[str]
) -> tuple[np.ndarray, tuple[int, int, int] | None]:
    """Convert any mode to an ``(H, W, 3)`` uint8 array; return it and the background if used."""
    mode = image.mode
    if mode in _WIDE_MODES:
        gray = _scale_wide_samples(np.asarray(image), mode, steps)
        steps.append("grayscale copied into three equal channels")
        return np.repeat(gray[:, :, None], 3, axis=2), None

    has_alpha = mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        mode in ("P", "L", "RGB", "1") and image.has_transparency_data
    )
    if has_alpha:
        rgba = np.asarray(image.convert("RGBA"))
        alpha = rgba[:, :, 3:4].astype(np.uint32)
        if alpha.min() == 255:
            steps.append("alpha channel is fully opaque and was ignored")
            return np.ascontiguousarray(rgba[:, :, :3]), None
        # Straight (not premultiplied) alpha over an opaque background, rounded to nearest.
        foreground = rgba[:, :, :3].astype(np.uint32)
        backdrop = np.asarray(background, dtype=np.uint32)
        composite = (foreground * alpha + backdrop * (255 - alpha) + 127) // 255
        steps.append(f"transparent pixels composited on background RGB {background}")
        return composite.astype(np.uint8), background

    if mode in ("L", "1"):
        steps.append("grayscale copied into three equal channels")
    elif mode == "P":
        steps.append("palette colours looked up")
    elif mode == "CMYK":
        # NOTE: any embedded ICC profile is ignored, so colours of print-ready CMYK files can
        # differ from what a colour-managed viewer shows.
        steps.append("CMYK converted to RGB without a colour profile")
    elif mode != "RGB":
        steps.append(f"{mode} converted to RGB")
    try:
        return np.asarray(image.convert("RGB")), None
    except ValueError as error:
        raise ImageInputError(
            f"images in colour mode {mode} are not supported ({error}); save it as RGB"
        ) from error


def _scale_wide_samples(samples: np.ndarray, mode: str, steps: list[str]) -> np.ndarray:
    """Scale 16-bit, 32-bit integer or float samples to uint8 without clipping."""
    values = samples.astype(np.float64)
    low, high = float(values.min()), float(values.max())
    if mode.startswith("I;16") or (mode == "I" and low >= 0 and high <= 65535):
        # 257 = 65535 / 255, the factor that maps 8-bit v to 16-bit v * 257 and back exactly.
        steps.append("16-bit samples scaled to 8 bits (divided by 257)")
        return np.rint(values / 257.0).astype(np.uint8)
    if mode == "F" and low >= 0 and high <= 1:
        steps.append("floating-point samples in [0, 1] scaled to 0..255")
        return np.rint(values * 255.0).astype(np.uint8)
    # Any other range is stretched linearly from its own minimum and maximum.
    steps.append(f"{mode} samples from {low:g} to {high:g} stretched linearly to 0..255")
    if high == low:
        return np.zeros(values.shape, dtype=np.uint8)
    return np.rint((values - low) * (255.0 / (high - low))).astype(np.uint8)


def _fit_and_resize(
    rgb: np.ndarray, fit: str, background: tuple[int, int, int], steps: list[str]
) -> np.ndarray:
    image = Image.fromarray(np.ascontiguousarray(rgb), mode="RGB")
    width, height = image.size
    target = (MODEL_INPUT_SIZE, MODEL_INPUT_SIZE)
    if width != height:
        if fit == "crop":
            side = min(width, height)
            left, top = (width - side) // 2, (height - side) // 2
            image = image.crop((left, top, left + side, top + side))
            steps.append(f"centre-cropped to {side}x{side}")
        elif fit == "pad":
            side = max(width, height)
            square = Image.new("RGB", (side, side), background)
            square.paste(image, ((side - width) // 2, (side - height) // 2))
            image = square
            steps.append(f"padded to {side}x{side} with RGB {background}")
        else:
            steps.append("stretched to a square (aspect ratio not kept)")
    if image.size != target:
        # reducing_gap lets Pillow shrink a huge image by whole factors first. Pillow's
        # documentation says a gap of 3 or more is indistinguishable from a full Lanczos pass in
        # most cases, and it is much faster.
        image = image.resize(target, Image.Resampling.LANCZOS, reducing_gap=3.0)
        source_size = _resized_square_text(width, height, fit)
        steps.append(f"resized from {source_size} to 32x32 with Lanczos")
    return np.asarray(image)


def _resized_square_text(width: int, height: int, fit: str) -> str:
    if width == height or fit == "stretch":
        return f"{width}x{height}"
    side = min(width, height) if fit == "crop" else max(width, height)
    return f"{side}x{side}"
