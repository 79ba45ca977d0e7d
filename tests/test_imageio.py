"""Decoding uploads into model inputs: every colour mode, format and bad file."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from cifarlab.imageio import (
    ImageInputError,
    describe,
    enlarge,
    load_image_for_model,
)


def encode(image: Image.Image, image_format: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, image_format, **options)
    return buffer.getvalue()


def solid(mode: str, color, size=(32, 32)) -> Image.Image:
    return Image.new(mode, size, color)


def assert_uniform(array: np.ndarray, expected: tuple[int, int, int]) -> None:
    assert array.shape == (3, 32, 32)
    assert array.dtype == np.uint8
    for channel, value in enumerate(expected):
        assert (array[channel] == value).all(), (channel, np.unique(array[channel]), value)


def test_rgb_png_passes_through_unchanged():
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, size=(32, 32, 3), dtype=np.uint8)
    array, info = load_image_for_model(encode(Image.fromarray(pixels), "PNG"))
    np.testing.assert_array_equal(array, pixels.transpose(2, 0, 1))
    assert info["format"] == "PNG"
    assert info["mode"] == "RGB"
    assert (info["width"], info["height"]) == (32, 32)
    assert info["steps"] == []
    assert info["background"] is None


@pytest.mark.parametrize("background", [(255, 255, 255), (0, 0, 0), (10, 200, 30)])
def test_rgba_composites_on_background(background):
    alphas = np.array([0, 1, 64, 127, 128, 200, 254, 255], dtype=np.uint8)
    pixels = np.zeros((32, 32, 4), dtype=np.uint8)
    pixels[..., 0], pixels[..., 1], pixels[..., 2] = 250, 100, 3
    pixels[..., 3] = np.resize(alphas, (32, 32))
    array, info = load_image_for_model(
        encode(Image.fromarray(pixels, "RGBA"), "PNG"), background=background
    )

    foreground = pixels[..., :3].astype(np.int64)
    alpha = pixels[..., 3:4].astype(np.int64)
    expected = (foreground * alpha + np.array(background) * (255 - alpha) + 127) // 255
    np.testing.assert_array_equal(array, expected.transpose(2, 0, 1))
    assert info["background"] == background
    assert any("composited" in step for step in info["steps"])


def test_rgba_hand_values():
    # alpha 0 shows the background, alpha 255 the pixel, alpha 128 the rounded mix.
    pixels = np.zeros((32, 32, 4), dtype=np.uint8)
    pixels[:, :, :3] = (200, 0, 100)
    pixels[:, :16, 3] = 0
    pixels[:, 16:24, 3] = 255
    pixels[:, 24:, 3] = 128
    array, _ = load_image_for_model(encode(Image.fromarray(pixels, "RGBA"), "PNG"), background=(0, 0, 255))
    assert tuple(array[:, 0, 0]) == (0, 0, 255)
    assert tuple(array[:, 0, 20]) == (200, 0, 100)
    # (200 * 128 + 0 * 127) / 255 = 100.39; (0 + 255 * 127) / 255 = 127; (100 * 128 + 255 * 127) / 255 = 177.2
    assert tuple(array[:, 0, 30]) == (100, 0, 177)


def test_opaque_alpha_keeps_pixels():
    image = solid("RGBA", (9, 8, 7, 255))
    array, info = load_image_for_model(encode(image, "PNG"))
    assert_uniform(array, (9, 8, 7))
    assert info["background"] is None


def test_la_image_composites_gray():
    array, info = load_image_for_model(encode(solid("LA", (100, 0)), "PNG"), background=(1, 2, 3))
    assert_uniform(array, (1, 2, 3))
    array, _ = load_image_for_model(encode(solid("LA", (100, 255)), "PNG"))
    assert_uniform(array, (100, 100, 100))


def test_grayscale_gives_three_equal_channels():
    gradient = np.tile(np.arange(0, 256, 8, dtype=np.uint8), (32, 1))
    array, info = load_image_for_model(encode(Image.fromarray(gradient, "L"), "PNG"))
    np.testing.assert_array_equal(array[0], gradient)
    np.testing.assert_array_equal(array[1], gradient)
    np.testing.assert_array_equal(array[2], gradient)
    assert any("three equal channels" in step for step in info["steps"])


def test_one_bit_image_becomes_black_and_white():
    image = Image.new("1", (32, 32), 0)
    image.paste(1, (0, 0, 16, 32))
    array, _ = load_image_for_model(encode(image, "PNG"))
    assert tuple(array[:, 0, 0]) == (255, 255, 255)
    assert tuple(array[:, 0, 31]) == (0, 0, 0)


@pytest.mark.parametrize(
    "value, expected", [(0, 0), (257, 1), (32768, 128), (65535, 255), (1000, 4)]
)
def test_sixteen_bit_png_scaled_not_clipped(value, expected):
    samples = np.full((32, 32), value, dtype=np.uint16)
    data = encode(Image.fromarray(samples), "PNG")
    assert Image.open(io.BytesIO(data)).mode.startswith("I")
    array, info = load_image_for_model(data)
    assert_uniform(array, (expected,) * 3)
    assert any("16-bit" in step for step in info["steps"])


def test_sixteen_bit_big_endian_mode():
    samples = np.full((32, 32), 32768, dtype=">u2")
    image = Image.frombytes("I;16B", (32, 32), samples.tobytes())
    array, _ = load_image_for_model(encode(image, "TIFF"))
    assert_uniform(array, (128, 128, 128))


def test_mode_i_sixteen_bit_range():
    samples = np.full((32, 32), 65535, dtype=np.int32)
    array, _ = load_image_for_model(encode(Image.fromarray(samples, "I"), "TIFF"))
    assert_uniform(array, (255, 255, 255))


def test_float_image_in_unit_range_scaled():
    samples = np.full((32, 32), 0.5, dtype=np.float32)
    array, _ = load_image_for_model(encode(Image.fromarray(samples, "F"), "TIFF"))
    assert_uniform(array, (128, 128, 128))


def test_wide_range_stretched_linearly():
    samples = np.zeros((32, 32), dtype=np.int32)
    samples[:, 16:] = 200_000
    array, info = load_image_for_model(encode(Image.fromarray(samples, "I"), "TIFF"))
    assert tuple(array[:, 0, 0]) == (0, 0, 0)
    assert tuple(array[:, 0, 31]) == (255, 255, 255)
    assert any("stretched linearly" in step for step in info["steps"])


@pytest.mark.parametrize("image_format", ["JPEG", "TIFF"])
def test_cmyk_converted_to_rgb(image_format):
    cyan = solid("CMYK", (255, 0, 0, 0))
    array, info = load_image_for_model(encode(cyan, image_format, **({"quality": 100} if image_format == "JPEG" else {})))
    assert info["mode"] == "CMYK"
    expected = (0, 255, 255)
    tolerance = 2 if image_format == "JPEG" else 0
    for channel, value in enumerate(expected):
        assert np.abs(array[channel].astype(int) - value).max() <= tolerance


def test_cmyk_black_and_white():
    white = solid("CMYK", (0, 0, 0, 0))
    array, _ = load_image_for_model(encode(white, "TIFF"))
    assert_uniform(array, (255, 255, 255))
    black = solid("CMYK", (0, 0, 0, 255))
    array, _ = load_image_for_model(encode(black, "TIFF"))
    assert_uniform(array, (0, 0, 0))


def palette_image(size=(32, 32)) -> Image.Image:
    image = Image.new("P", size, 0)
    image.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * (256 * 3 - 9))
    image.paste(1, (0, 0, size[0] // 2, size[1]))
    return image


def test_palette_png_looks_up_colours():
    array, info = load_image_for_model(encode(palette_image(), "PNG"))
    assert tuple(array[:, 0, 0]) == (0, 255, 0)
    assert tuple(array[:, 0, 31]) == (255, 0, 0)
    assert info["mode"] == "P"


def test_palette_with_transparency_composites():
    data = encode(palette_image(), "PNG", transparency=0)
    array, info = load_image_for_model(data, background=(7, 7, 7))
    assert tuple(array[:, 0, 31]) == (7, 7, 7)
    assert tuple(array[:, 0, 0]) == (0, 255, 0)
    assert info["background"] == (7, 7, 7)


def test_gif_uses_first_frame():
    frames = [solid("RGB", (255, 0, 0)), solid("RGB", (0, 0, 255)), solid("RGB", (0, 255, 0))]
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:], duration=100)
    array, info = load_image_for_model(buffer.getvalue())
    assert info["format"] == "GIF"
    assert info["frames"] == 3
    assert_uniform(array, (255, 0, 0))
    assert "used the first of 3 frames" in info["steps"]


def test_gif_transparency_composites():
    data = encode(palette_image(), "GIF", transparency=0)
    array, _ = load_image_for_model(data, background=(0, 0, 0))
    assert tuple(array[:, 0, 31]) == (0, 0, 0)
    assert tuple(array[:, 0, 0]) == (0, 255, 0)


def test_webp_lossless_exact():
    rng = np.random.default_rng(1)
    pixels = rng.integers(0, 256, size=(32, 32, 3), dtype=np.uint8)
    array, info = load_image_for_model(encode(Image.fromarray(pixels), "WEBP", lossless=True))
    assert info["format"] == "WEBP"
    np.testing.assert_array_equal(array, pixels.transpose(2, 0, 1))


def test_webp_with_alpha_composites():
    data = encode(solid("RGBA", (10, 20, 30, 0)), "WEBP", lossless=True)
    array, _ = load_image_for_model(data, background=(200, 100, 50))
    assert_uniform(array, (200, 100, 50))


def test_bmp_exact():
    rng = np.random.default_rng(2)
    pixels = rng.integers(0, 256, size=(32, 32, 3), dtype=np.uint8)
    array, info = load_image_for_model(encode(Image.fromarray(pixels), "BMP"))
    assert info["format"] == "BMP"
    np.testing.assert_array_equal(array, pixels.transpose(2, 0, 1))


def test_jpeg_decodes_close_to_source():
    array, info = load_image_for_model(encode(solid("RGB", (120, 60, 200)), "JPEG", quality=95))
    assert info["format"] == "JPEG"
    assert np.abs(array.astype(int) - np.array([120, 60, 200])[:, None, None]).max() <= 3


def test_large_jpeg_resized_with_draft():
    image = solid("RGB", (30, 90, 150), size=(4000, 3000))
    array, info = load_image_for_model(encode(image, "JPEG", quality=90))
    assert array.shape == (3, 32, 32)
    assert (info["width"], info["height"]) == (4000, 3000)
    assert np.abs(array.astype(int) - np.array([30, 90, 150])[:, None, None]).max() <= 3
    assert any("JPEG decoder" in step for step in info["steps"])


def test_exif_orientation_applied():
    # A 64x32 image whose left half is red, saved with orientation 6 (rotate 90 clockwise to view).
    image = Image.new("RGB", (64, 32), (0, 0, 255))
    image.paste((255, 0, 0), (0, 0, 32, 32))
    exif = Image.Exif()
    exif[0x0112] = 6
    array, info = load_image_for_model(encode(image, "PNG", exif=exif), fit="stretch")
    # After turning clockwise the red half is on top.
    assert array[0, 2, 16] > 200
    assert array[2, 2, 16] < 50
    assert array[2, 29, 16] > 200
    assert array[0, 29, 16] < 50
    assert any("EXIF orientation" in step for step in info["steps"])


def two_halves(size=(64, 32)) -> Image.Image:
    image = Image.new("RGB", size, (0, 0, 255))
    image.paste((255, 0, 0), (0, 0, size[0] // 4, size[1]))
    return image


def test_crop_keeps_centre_square():
    # The red quarter on the left lies outside the central 32x32 square, so it is cut off.
    array, info = load_image_for_model(encode(two_halves(), "PNG"), fit="crop")
    assert_uniform(array, (0, 0, 255))
    assert "centre-cropped to 32x32" in info["steps"]


def test_stretch_keeps_whole_image():
    array, info = load_image_for_model(encode(two_halves(), "PNG"), fit="stretch")
    assert tuple(array[:, 16, 0]) == (255, 0, 0)
    assert tuple(array[:, 16, 31]) == (0, 0, 255)
    assert any("stretched" in step for step in info["steps"])


def test_pad_fills_with_background():
    array, info = load_image_for_model(
        encode(solid("RGB", (0, 255, 0), size=(64, 32)), "PNG"), fit="pad", background=(0, 0, 0)
    )
    assert tuple(array[:, 0, 16]) == (0, 0, 0)
    assert tuple(array[:, 31, 16]) == (0, 0, 0)
    assert tuple(array[:, 16, 16]) == (0, 255, 0)
    assert any("padded" in step for step in info["steps"])


def test_small_image_upscaled():
    array, info = load_image_for_model(encode(solid("RGB", (5, 6, 7), size=(8, 8)), "PNG"))
    assert_uniform(array, (5, 6, 7))
    assert "resized from 8x8 to 32x32 with Lanczos" in info["steps"]


def test_path_and_file_object_sources(tmp_path):
    data = encode(solid("RGB", (1, 2, 3)), "PNG")
    path = tmp_path / "image.png"
    path.write_bytes(data)
    from_path, _ = load_image_for_model(path)
    from_string, _ = load_image_for_model(str(path))
    from_file, _ = load_image_for_model(io.BytesIO(data))
    assert_uniform(from_path, (1, 2, 3))
    np.testing.assert_array_equal(from_path, from_string)
    np.testing.assert_array_equal(from_path, from_file)


def test_text_file_rejected():
    with pytest.raises(ImageInputError, match="not an image in a supported format"):
        load_image_for_model(b"just some text, not pixels\n")


def test_empty_file_rejected():
    with pytest.raises(ImageInputError, match="empty"):
        load_image_for_model(b"")


def test_missing_path_rejected(tmp_path):
    with pytest.raises(ImageInputError, match="could not be read"):
        load_image_for_model(tmp_path / "missing.png")


def test_too_many_bytes_rejected(tmp_path):
    data = encode(solid("RGB", (1, 2, 3), size=(64, 64)), "BMP")
    with pytest.raises(ImageInputError, match="more than the 1.0 KiB limit"):
        load_image_for_model(data, max_bytes=1024)
    path = tmp_path / "big.bmp"
    path.write_bytes(data)
    with pytest.raises(ImageInputError, match="more than the 1.0 KiB limit"):
        load_image_for_model(path, max_bytes=1024)
    with pytest.raises(ImageInputError, match="more than the 1.0 KiB limit"):
        load_image_for_model(io.BytesIO(data), max_bytes=1024)


def test_truncated_file_rejected():
    data = encode(Image.fromarray(np.random.default_rng(3).integers(0, 256, (64, 64, 3), dtype=np.uint8)), "PNG")
    with pytest.raises(ImageInputError, match="could not be decoded"):
        load_image_for_model(data[: len(data) // 2])


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header declares ``width`` x ``height`` pixels, with one tiny data chunk."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        crc = zlib.crc32(kind + payload) & 0xFFFFFFFF
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 16))
        + chunk(b"IEND", b"")
    )


def test_decompression_bomb_rejected_by_pillow_limit():
    # 100,000 x 100,000 is far beyond Pillow's own limit (about 179 million pixels for an error).
    with pytest.raises(ImageInputError, match="decompression bomb"):
        load_image_for_model(png_header_only(100_000, 100_000), max_pixels=10**12)


def test_decompression_bomb_rejected_by_own_limit():
    data = png_header_only(5000, 5000)
    with pytest.raises(ImageInputError, match="25,000,000 pixels, more than the 1,000,000-pixel limit"):
        load_image_for_model(data, max_pixels=1_000_000)


def test_pillow_warning_range_rejected():
    # Between Pillow's warning limit and twice it Pillow only warns; that warning is an error here.
    side = int((Image.MAX_IMAGE_PIXELS * 1.5) ** 0.5)
    with pytest.raises(ImageInputError, match="decompression bomb"):
        load_image_for_model(png_header_only(side, side), max_pixels=10**12)


def test_invalid_options_rejected():
    data = encode(solid("RGB", (1, 2, 3)), "PNG")
    with pytest.raises(ImageInputError, match="invalid fit 'zoom'"):
        load_image_for_model(data, fit="zoom")
    with pytest.raises(ImageInputError, match="invalid background"):
        load_image_for_model(data, background=(0, 0, 300))
    with pytest.raises(ImageInputError, match="invalid background"):
        load_image_for_model(data, background="white")


def test_other_formats_not_tried():
    # An ICO file is an image Pillow can read, but not a format this loader accepts.
    data = encode(solid("RGB", (1, 2, 3)), "ICO")
    with pytest.raises(ImageInputError, match="not an image in a supported format"):
        load_image_for_model(data)


def test_describe_lists_steps():
    _, info = load_image_for_model(encode(solid("L", 9, size=(128, 64)), "PNG"))
    text = describe(info)
    assert text.startswith("PNG image, 128x64 pixels, mode L; grayscale copied")
    assert text.endswith("resized from 64x64 to 32x32 with Lanczos.")


def test_enlarge_repeats_pixels():
    image = np.arange(3 * 2 * 2, dtype=np.uint8).reshape(3, 2, 2)
    big = enlarge(image, 3)
    assert big.shape == (6, 6, 3)
    np.testing.assert_array_equal(big[0:3, 0:3, 1], np.full((3, 3), image[1, 0, 0]))
    np.testing.assert_array_equal(big[3:6, 3:6, 2], np.full((3, 3), image[2, 1, 1]))
    with pytest.raises(ValueError, match="shape \\(3, H, W\\)"):
        enlarge(np.zeros((32, 32), dtype=np.uint8))
