"""Tests for cifarlab.augment: exact results where the maths fixes them, invariants, validation."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torchvision.transforms.v2.functional as TF
from PIL import Image
from torchvision.transforms import v2

from cifarlab.augment import (
    OPERATIONS,
    PRESETS,
    AugmentError,
    AutoAugment,
    BatchAugmenter,
    Blend,
    ColorJitter,
    CutMix,
    Cutout,
    GaussianNoise,
    HorizontalFlip,
    Mixup,
    RandAugment,
    RandomCrop,
    Recipe,
    Rotation,
    Translate,
    TrivialAugmentWide,
    build_operation,
    enlarge_training_set,
    one_hot_targets,
)

torch.set_num_threads(1)


def make_images(n: int = 4, seed: int = 0, dtype: torch.dtype = torch.uint8) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 3, 32, 32), generator=generator, dtype=torch.uint8)
    return images if dtype == torch.uint8 else images.to(dtype) / 255.0


def seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def run_operation(operation, images, generator):
    """Apply any operation; mixing operations also get labels and return only the images."""
    if operation.batch_only:
        labels = torch.arange(images.shape[0]) % 10
        return operation(images, labels, generator)[0]
    return operation(images, generator)


ALL_OPERATIONS = [op_class() for op_class in OPERATIONS.values()]
SINGLE_IMAGE_OPERATIONS = [op for op in ALL_OPERATIONS if not op.batch_only]


# --------------------------------------------------------------------------------------------
# Cutout


def cutout_changed_pixels(size: int, center_y: int, center_x: int) -> int:
    """Return how many pixel positions a cutout square changes on a white image."""
    images = torch.ones(1, 3, 32, 32)
    params = {
        "center_y": torch.tensor([center_y]),
        "center_x": torch.tensor([center_x]),
        "erase": torch.tensor([True]),
    }
    out = Cutout(size=size, fill=0.0).apply(images, params)
    return int((out != images).any(dim=1).sum())


@pytest.mark.parametrize(
    ("size", "center_y", "center_x", "expected"),
    [
        (16, 16, 16, 256),  # fully inside: 16 x 16
        (16, 0, 0, 64),  # top-left corner: rows and columns [-8, 8) keep [0, 8)
        (16, 31, 31, 81),  # bottom-right corner: [23, 39) keeps [23, 32), 9 of each
        (16, 0, 16, 128),  # top edge: 8 rows by 16 columns
        (5, 16, 16, 25),  # odd side, inside: exactly 5 x 5
        (5, 0, 0, 9),  # odd side at a corner: [-2, 3) keeps 3 of each
        (5, 31, 31, 9),  # odd side at the far corner: [29, 34) keeps 3 of each
        (7, 0, 16, 28),  # odd side on the top edge: 4 rows by 7 columns
        (1, 10, 20, 1),
        (0, 16, 16, 0),
        (32, 16, 16, 1024),  # the whole image
        (32, 0, 0, 256),
    ],
)
def test_cutout_changed_pixel_count(size, center_y, center_x, expected):
    assert cutout_changed_pixels(size, center_y, center_x) == expected


def test_cutout_square_position():
    images = torch.ones(1, 3, 32, 32)
    params = {"center_y": torch.tensor([10]), "center_x": torch.tensor([20]), "erase": torch.tensor([True])}
    out = Cutout(size=4, fill=0.0).apply(images, params)
    changed = (out[0, 0] == 0).nonzero()
    assert changed[:, 0].min() == 8
    assert changed[:, 0].max() == 11
    assert changed[:, 1].min() == 18
    assert changed[:, 1].max() == 21


def test_cutout_fill_colour_uint8():
    images = torch.zeros(1, 3, 32, 32, dtype=torch.uint8)
    params = {"center_y": torch.tensor([16]), "center_x": torch.tensor([16]), "erase": torch.tensor([True])}
    out = Cutout(size=2, fill=(1.0, 0.5, 0.0)).apply(images, params)
    assert out.dtype == torch.uint8
    assert out[0, :, 16, 16].tolist() == [255, 128, 0]
    assert out[0, :, 0, 0].tolist() == [0, 0, 0]


def test_cutout_p_zero_changes_nothing():
    images = make_images(8)
    out = Cutout(size=16, p=0.0)(images, seeded())
    assert torch.equal(out, images)


def test_cutout_boxes_match_changed_pixels():
    operation = Cutout(size=9, fill=0.0)
    params = operation.sample_params(64, seeded(3))
    out = operation.apply(torch.ones(64, 3, 32, 32), params)
    boxes = operation.boxes(params)
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    assert torch.equal((out[:, 0] == 0).sum(dim=(1, 2)), areas)


# --------------------------------------------------------------------------------------------
# Flip, crop, translation, rotation


def test_flip_p1_equals_flip_last_dim():
    images = make_images()
    assert torch.equal(HorizontalFlip(p=1.0)(images, seeded()), images.flip(-1))


def test_flip_p0_is_identity():
    images = make_images()
    assert torch.equal(HorizontalFlip(p=0.0)(images, seeded()), images)


def test_flip_half_flips_some_images():
    images = make_images(256)
    params = HorizontalFlip(p=0.5).sample_params(256, seeded())
    out = HorizontalFlip(p=0.5).apply(images, params)
    flipped = params["flip"]
    assert 96 < int(flipped.sum()) < 160
    assert torch.equal(out[flipped], images[flipped].flip(-1))
    assert torch.equal(out[~flipped], images[~flipped])


@pytest.mark.parametrize(
    ("padding_mode", "torch_mode"), [("reflect", "reflect"), ("edge", "replicate"), ("constant", "constant")]
)
def test_crop_equals_padded_slice(padding_mode, torch_mode):
    images = make_images(2, dtype=torch.float32)
    params = {"top": torch.tensor([0, 8]), "left": torch.tensor([3, 5])}
    out = RandomCrop(padding=4, padding_mode=padding_mode, fill=0.25).apply(images, params)
    if torch_mode == "constant":
        padded = torch.nn.functional.pad(images, (4, 4, 4, 4), value=0.25)
    else:
        padded = torch.nn.functional.pad(images, (4, 4, 4, 4), mode=torch_mode)
    assert torch.equal(out[0], padded[0, :, 0:32, 3:35])
    assert torch.equal(out[1], padded[1, :, 8:40, 5:37])


def test_crop_centre_offset_is_identity():
    images = make_images()
    params = {"top": torch.full((4,), 4), "left": torch.full((4,), 4)}
    assert torch.equal(RandomCrop(padding=4).apply(images, params), images)


def test_crop_offsets_cover_padding_range():
    params = RandomCrop(padding=4).sample_params(2000, seeded())
    assert params["top"].min() == 0
    assert params["top"].max() == 8
    assert params["left"].min() == 0
    assert params["left"].max() == 8


def test_crop_smaller_size_outside_recipe():
    out = RandomCrop(size=24, padding=0)(make_images(), seeded())
    assert out.shape == (4, 3, 24, 24)


def test_translate_moves_content():
    images = make_images(1, dtype=torch.float32)
    out = Translate(fill=0.5).apply(images, {"dx": torch.tensor([3]), "dy": torch.tensor([-2])})
    assert torch.equal(out[0, :, 0:30, 3:32], images[0, :, 2:32, 0:29])
    assert torch.all(out[0, :, :, 0:3] == 0.5)
    assert torch.all(out[0, :, 30:32, :] == 0.5)


def test_translate_shifts_within_bounds():
    params = Translate(max_shift_x=2, max_shift_y=5).sample_params(2000, seeded())
    assert params["dx"].abs().max() == 2
    assert params["dy"].abs().max() == 5


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32, torch.float64])
def test_rotation_zero_is_identity(dtype):
    images = make_images(dtype=dtype)
    out = Rotation(max_angle=0.0)(images, seeded())
    assert out.dtype == dtype
    assert torch.equal(out, images)


@pytest.mark.parametrize("angle", [90.0, -30.0, 45.0])
def test_rotation_matches_torchvision(angle):
    images = make_images(2, dtype=torch.float32)
    out = Rotation(interpolation="nearest").apply(images, {"angle": torch.tensor([angle, angle])})
    expected = TF.rotate(images, angle, interpolation=v2.InterpolationMode.NEAREST)
    assert torch.equal(out, expected)


def test_rotation_per_image_angles():
    images = make_images(2, dtype=torch.float32)
    out = Rotation(interpolation="nearest").apply(images, {"angle": torch.tensor([90.0, 0.0])})
    assert torch.equal(out[0], torch.rot90(images[0], 1, dims=(1, 2)))
    assert torch.equal(out[1], images[1])


def test_rotation_fills_corners():
    images = torch.zeros(1, 3, 32, 32)
    out = Rotation(fill=(1.0, 0.0, 0.0)).apply(images, {"angle": torch.tensor([45.0])})
    assert out[0, :, 0, 0].tolist() == [1.0, 0.0, 0.0]
    assert out[0, :, 16, 16].tolist() == [0.0, 0.0, 0.0]


# --------------------------------------------------------------------------------------------
# Noise and colour


def test_noise_stays_in_range():
    images = torch.cat([torch.zeros(2, 3, 32, 32), torch.ones(2, 3, 32, 32)])
    out = GaussianNoise(sigma=0.5)(images, seeded())
    assert out.min() >= 0.0
    assert out.max() <= 1.0
    assert out.min() == 0.0
    assert out.max() == 1.0


def test_noise_mean_and_spread_match_sigma():
    images = torch.full((16, 3, 32, 32), 0.5)
    out = GaussianNoise(sigma=0.1)(images, seeded())
    difference = out - images
    # 49,152 samples: the standard error of the mean is 0.1 / sqrt(49152) = 0.00045.
    assert abs(float(difference.mean())) < 0.002
    assert abs(float(difference.std()) - 0.1) < 0.002


def test_noise_uint8_rounds_and_clips():
    images = torch.full((4, 3, 32, 32), 128, dtype=torch.uint8)
    out = GaussianNoise(sigma=0.1)(images, seeded())
    assert out.dtype == torch.uint8
    spread = (out.float() - 128).std() / 255
    assert abs(float(spread) - 0.1) < 0.005


def test_noise_sigma_zero_is_identity():
    images = make_images(dtype=torch.float32)
    assert torch.equal(GaussianNoise(sigma=0.0)(images, seeded()), images)


def test_color_jitter_matches_torchvision():
    images = make_images(2, dtype=torch.float32)
    params = {
        "brightness": torch.tensor([1.3, 0.7]),
        "contrast": torch.tensor([0.6, 1.4]),
        "saturation": torch.tensor([1.5, 0.2]),
        "hue": torch.tensor([0.2, -0.3]),
    }
    out = ColorJitter(hue=0.3).apply(images, params)
    for index in range(2):
        expected = TF.adjust_brightness(images[index], float(params["brightness"][index]))
        expected = TF.adjust_contrast(expected, float(params["contrast"][index]))
        expected = TF.adjust_saturation(expected, float(params["saturation"][index]))
        expected = TF.adjust_hue(expected, float(params["hue"][index]))
        torch.testing.assert_close(out[index], expected, atol=1e-5, rtol=0)


def test_color_jitter_unit_factors_are_identity():
    images = make_images(dtype=torch.float32)
    params = {key: torch.ones(4) for key in ("brightness", "contrast", "saturation")}
    params["hue"] = torch.zeros(4)
    torch.testing.assert_close(ColorJitter().apply(images, params), images, atol=1e-6, rtol=0)


def test_color_jitter_factor_ranges():
    params = ColorJitter(brightness=0.2, contrast=1.0, saturation=0.0, hue=0.1).sample_params(1000, seeded())
    assert params["brightness"].min() >= 0.8
    assert params["brightness"].max() <= 1.2
    assert params["contrast"].min() >= 0.0
    assert torch.all(params["saturation"] == 1.0)
    assert params["hue"].abs().max() <= 0.1


# --------------------------------------------------------------------------------------------
# Mixing


@pytest.mark.parametrize("alpha", [0.1, 0.2])
def test_mixup_small_alpha_mass_near_ends(alpha):
    lam = Mixup(alpha=alpha).sample_params(20000, seeded())["lam"]
    near_ends = float(((lam < 0.1) | (lam > 0.9)).float().mean())
    # Beta(0.1, 0.1) puts 0.81 of its mass there and Beta(0.2, 0.2) 0.67; uniform would put 0.2.
    assert near_ends > 0.6
    assert 0.45 < float(lam.mean()) < 0.55


def test_mixup_alpha_one_is_uniform():
    lam = Mixup(alpha=1.0).sample_params(20000, seeded())["lam"]
    counts = torch.histc(lam, bins=10, min=0.0, max=1.0) / lam.numel()
    # Each tenth has 0.1 of the mass. With 20,000 draws the standard error is 0.002.
    assert torch.all((counts - 0.1).abs() < 0.01)


def test_mixup_large_alpha_concentrates_at_half():
    lam = Mixup(alpha=10.0).sample_params(20000, seeded())["lam"]
    assert abs(float(lam.mean()) - 0.5) < 0.01
    # The standard deviation of Beta(10, 10) is sqrt(1 / 84) = 0.109.
    assert abs(float(lam.std()) - 0.109) < 0.005


def test_mixup_lambda_in_unit_interval():
    for alpha in (0.01, 0.05, 0.5, 5.0):
        lam = Mixup(alpha=alpha).sample_params(5000, seeded())["lam"]
        assert torch.isfinite(lam).all()
        assert lam.min() >= 0.0
        assert lam.max() <= 1.0


def test_mixup_per_batch_shares_lambda():
    lam = Mixup(per_batch=True).sample_params(16, seeded())["lam"]
    assert torch.all(lam == lam[0])


def test_mixup_images_and_soft_labels_exact():
    images = make_images(2, dtype=torch.float32)
    labels = torch.tensor([3, 7])
    params = {"partner": torch.tensor([1, 0]), "lam": torch.tensor([0.7, 0.4])}
    operation = Mixup()
    mixed = operation.apply(images, params)
    targets = operation.mix_targets(one_hot_targets(labels), params)
    torch.testing.assert_close(mixed[0], 0.7 * images[0] + 0.3 * images[1])
    torch.testing.assert_close(mixed[1], 0.4 * images[1] + 0.6 * images[0])
    assert targets[0, 3] == pytest.approx(0.7)
    assert targets[0, 7] == pytest.approx(0.3)
    assert targets[1, 7] == pytest.approx(0.4)
    assert targets[1, 3] == pytest.approx(0.6)
    assert torch.count_nonzero(targets[0]) == 2


def test_mixing_soft_labels_sum_to_one():
    images = make_images(64)
    labels = torch.arange(64) % 10
    for operation in (Mixup(alpha=0.4), Blend(weight=0.75), CutMix(alpha=1.0)):
        _, targets = operation(images, labels, seeded())
        torch.testing.assert_close(targets.sum(1), torch.ones(64))
        assert torch.all(targets >= 0)
        assert torch.all(torch.count_nonzero(targets, dim=1) <= 2)


def test_mixing_soft_labels_name_the_pair():
    images = make_images(32)
    labels = torch.arange(32) % 10
    for operation in (Mixup(alpha=0.4), Blend(weight=0.75), CutMix(alpha=1.0)):
        params = operation.sample_params(32, seeded(5))
        targets = operation.mix_targets(one_hot_targets(labels), params)
        for index in range(32):
            own, other = int(labels[index]), int(labels[params["partner"][index]])
            lam = float(params["lam"][index])
            expected = torch.zeros(10)
            expected[own] += lam
            expected[other] += 1.0 - lam
            torch.testing.assert_close(targets[index], expected)


def test_blend_fixed_weight_exact():
    images = make_images(2, dtype=torch.float32)
    operation = Blend(weight=0.75)
    params = operation.sample_params(2, seeded())
    params["partner"] = torch.tensor([1, 0])
    mixed = operation.apply(images, params)
    targets = operation.mix_targets(one_hot_targets(torch.tensor([2, 9])), params)
    torch.testing.assert_close(mixed[0], 0.75 * images[0] + 0.25 * images[1])
    assert targets[0].tolist() == pytest.approx([0, 0, 0.75, 0, 0, 0, 0, 0, 0, 0.25])
    assert targets[1].tolist() == pytest.approx([0, 0, 0.25, 0, 0, 0, 0, 0, 0, 0.75])


def test_blend_weights_are_the_fixed_value():
    params = Blend(weight=0.6).sample_params(100, seeded())
    torch.testing.assert_close(params["lam"], torch.full((100,), 0.6))


def test_cutmix_lambda_is_kept_area():
    images = make_images(256)
    operation = CutMix(alpha=1.0)
    params = operation.sample_params(256, seeded(1))
    mixed = operation.apply(images, params)
    height = params["bottom"] - params["top"]
    width = params["right"] - params["left"]
    torch.testing.assert_close(params["lam"], 1.0 - (height * width).float() / 1024)
    partner = images[params["partner"]]
    for index in range(256):
        top, left = int(params["top"][index]), int(params["left"][index])
        bottom, right = int(params["bottom"][index]), int(params["right"][index])
        assert torch.equal(mixed[index, :, top:bottom, left:right], partner[index, :, top:bottom, left:right])
        outside = torch.ones(32, 32, dtype=torch.bool)
        outside[top:bottom, left:right] = False
        assert torch.equal(mixed[index][:, outside], images[index][:, outside])


def test_cutmix_box_clipped_at_corner():
    params = CutMix().sample_params(4000, seeded(2))
    assert params["top"].min() == 0
    assert params["bottom"].max() == 32
    # A box clipped at the border keeps less area than sqrt(1 - lam) asked for.
    asked = 1.0 - params["lam_drawn"]
    kept = 1.0 - params["lam"]
    assert torch.all(kept <= asked + 1e-6)
    assert bool((kept < asked - 0.05).any())


def test_one_hot_targets_reject_out_of_range():
    with pytest.raises(AugmentError, match="labels must be in \\[0, 9\\], got values from 0 to 10"):
        one_hot_targets(torch.tensor([0, 10]))


# --------------------------------------------------------------------------------------------
# Policies


@pytest.mark.parametrize("op_class", [AutoAugment, RandAugment, TrivialAugmentWide])
def test_policy_draws_per_image(op_class):
    images = make_images(1).expand(64, -1, -1, -1).contiguous()
    out = op_class()(images, seeded())
    distinct = torch.unique(out.view(64, -1), dim=0).shape[0]
    # torchvision's transform on the whole tensor gives 64 equal images (one draw per call).
    torch.manual_seed(0)
    whole = op_class.transform_class()(images)
    assert torch.unique(whole.view(64, -1), dim=0).shape[0] == 1
    assert distinct >= 8


def test_policy_groups_match_per_image_torchvision():
    images = make_images(16)
    operation = RandAugment(num_ops=2, magnitude=9)
    params = operation.sample_params(16, seeded(4))
    out = operation.apply(images, params)
    transform = v2.RandAugment(num_ops=2, magnitude=9, fill=[0.0, 0.0, 0.0])
    for index in range(16):
        expected = images[index : index + 1]
        for step in range(2):
            op_name = operation.op_names[int(params["op"][index, step])]
            expected = transform._apply_image_or_video_transform(
                expected, op_name, float(params["magnitude"][index, step]), interpolation="nearest", fill=transform._fill
            )
        assert torch.equal(out[index : index + 1], expected), operation.describe(params, index)


def test_autoaugment_uses_cifar10_policy():
    operation = AutoAugment()
    params = operation.sample_params(4000, seeded())
    assert params["sub_policy"].max() == 24
    used = {operation.op_names[int(op)] for op in params["op"].flatten() if int(op) >= 0}
    # The CIFAR-10 policy never shears along x; the ImageNet policy never translates.
    assert "ShearX" not in used
    assert "TranslateX" in used


def test_policy_describe_names_steps():
    operation = TrivialAugmentWide()
    params = {"op": torch.tensor([[operation.op_names.index("Rotate")]]), "magnitude": torch.tensor([[-12.0]])}
    assert operation.describe(params, 0) == ["Rotate(-12)"]


# --------------------------------------------------------------------------------------------
# Every operation


@pytest.mark.parametrize("operation", ALL_OPERATIONS, ids=lambda op: op.name)
@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
def test_operation_leaves_input_unchanged(operation, dtype):
    images = make_images(8, dtype=dtype)
    before = images.clone()
    out = run_operation(operation, images, seeded())
    assert torch.equal(images, before)
    assert out.data_ptr() != images.data_ptr()
    assert out.dtype == dtype
    assert out.shape == images.shape


@pytest.mark.parametrize("operation", ALL_OPERATIONS, ids=lambda op: op.name)
def test_operation_same_seed_same_output(operation):
    images = make_images(16)
    first = run_operation(operation, images, seeded(7))
    second = run_operation(operation, images, seeded(7))
    other = run_operation(operation, images, seeded(8))
    assert torch.equal(first, second)
    assert not torch.equal(first, other)


@pytest.mark.parametrize("operation", SINGLE_IMAGE_OPERATIONS, ids=lambda op: op.name)
def test_operation_single_image_and_pil(operation):
    images = make_images(1)
    single = operation(images[0], seeded(1))
    batch = operation(images, seeded(1))
    assert single.shape == (3, 32, 32)
    assert torch.equal(single, batch[0])
    picture = Image.fromarray(images[0].permute(1, 2, 0).numpy())
    out = operation(picture, seeded(1))
    assert isinstance(out, Image.Image)
    assert out.size == (32, 32)
    assert np.array_equal(np.asarray(out), batch[0].permute(1, 2, 0).numpy())


@pytest.mark.parametrize("op_class", list(OPERATIONS.values()), ids=lambda cls: cls.name)
def test_operation_dict_round_trip(op_class):
    operation = op_class()
    rebuilt = build_operation(json.loads(json.dumps(operation.to_dict())))
    assert rebuilt == operation
    assert eval(operation.python_call(), vars(__import__("cifarlab.augment").augment)) == operation


# --------------------------------------------------------------------------------------------
# Validation


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (lambda: RandomCrop(size=41, padding=4), r"crop size 41 is larger than the padded image"),
        (lambda: RandomCrop(padding=-1), r"padding -1 is outside \[0, 16\]"),
        (lambda: RandomCrop(padding_mode="wrap"), r"invalid padding_mode 'wrap'; choose one of reflect"),
        (lambda: Mixup(alpha=0.0), r"alpha 0.0 is outside \[0.01, 10\]"),
        (lambda: Mixup(alpha=-1), r"alpha -1.0 is outside"),
        (lambda: CutMix(alpha=0), r"alpha 0.0 is outside"),
        (lambda: GaussianNoise(sigma=-0.1), r"sigma -0.1 is outside \[0, 1\]"),
        (lambda: GaussianNoise(sigma=float("nan")), r"sigma must be a finite number, got nan"),
        (lambda: Cutout(size=33), r"size 33 is outside \[0, 32\] px"),
        (lambda: Cutout(size=4.5), r"size must be a whole number, got 4.5"),
        (lambda: HorizontalFlip(p=1.5), r"p 1.5 is outside \[0, 1\]"),
        (lambda: HorizontalFlip(p="0.5"), r"p must be a number, got '0.5'"),
        (lambda: Rotation(max_angle=200), r"max_angle 200.0 is outside \[0, 180\] degrees"),
        (lambda: Rotation(fill=(1.0, 2.0, 0.0)), r"colour channel 2.0 is outside \[0, 1\]"),
        (lambda: Rotation(fill="red"), r"invalid colour 'red'"),
        (lambda: Blend(weight=1.2), r"weight 1.2 is outside \[0, 1\]"),
        (lambda: Mixup(per_batch=1), r"per_batch must be true or false, got 1"),
        (lambda: RandAugment(magnitude=31), r"magnitude 31 must be below num_magnitude_bins 31"),
        (lambda: AutoAugment(policy="cifar100"), r"invalid policy 'cifar100'; choose one of cifar10"),
    ],
)
def test_invalid_parameters_raise(build, match):
    with pytest.raises(AugmentError, match=match):
        build()


def test_cutout_larger_than_image_raises():
    with pytest.raises(AugmentError, match=r"square side 16 px is larger than the 8x8 image"):
        Cutout(size=16)(torch.zeros(2, 3, 8, 8), seeded())


def test_crop_larger_than_padded_small_image_raises():
    with pytest.raises(AugmentError, match=r"crop size 32 is larger than the padded image \(16\+2\*4"):
        RandomCrop(size=32, padding=4, padding_mode="constant")(torch.zeros(2, 3, 16, 16), seeded())


def test_reflect_padding_at_least_image_side_raises():
    with pytest.raises(AugmentError, match=r"reflect padding 8 must be smaller than the image side 8"):
        RandomCrop(size=8, padding=8)(torch.zeros(1, 3, 8, 8), seeded())


def test_pil_image_to_batch_only_operation_raises():
    picture = Image.new("RGB", (32, 32))
    with pytest.raises(AugmentError, match=r"Mixup mixes images of a batch.*not a PIL image"):
        Mixup().apply(picture, {})


def test_single_image_to_batch_only_operation_raises():
    with pytest.raises(AugmentError, match=r"CutMix mixes images of a batch.*single image of shape \(3, 32, 32\)"):
        CutMix()(make_images(1)[0], torch.tensor([0]))


@pytest.mark.parametrize(
    ("images", "match"),
    [
        (np.zeros((2, 3, 32, 32), np.uint8), r"expected a torch.Tensor of images, got ndarray \(convert with torch.from_numpy\)"),
        (torch.zeros(2, 3, 32, 32, dtype=torch.int32), r"images must be uint8 \(0..255\) or floating point \(0..1\), got torch.int32"),
        (torch.zeros(2, 32, 32, 3, dtype=torch.uint8), r"expected 3 colour channels in dimension 1 .* got shape \(2, 32, 32, 3\)"),
        (torch.zeros(32, 32, dtype=torch.uint8), r"expected images of shape \(N, 3, H, W\) or \(3, H, W\), got \(32, 32\)"),
    ],
)
def test_invalid_images_raise(images, match):
    with pytest.raises(AugmentError, match=match):
        HorizontalFlip()(images, seeded())


def test_params_for_other_batch_size_raise():
    params = Cutout().sample_params(4, seeded())
    with pytest.raises(AugmentError, match=r"params\['center_y'\] was drawn for 4 images but the batch has 2"):
        Cutout().apply(make_images(2), params)


def test_missing_params_raise():
    with pytest.raises(AugmentError, match=r"Rotation: params lack angle"):
        Rotation().apply(make_images(2), {})


def test_negative_count_raises():
    with pytest.raises(AugmentError, match=r"number of images must be an integer >= 0, got -1"):
        HorizontalFlip().sample_params(-1)


# --------------------------------------------------------------------------------------------
# Recipes


@pytest.mark.parametrize("name", list(PRESETS))
def test_preset_json_round_trip(name):
    recipe = PRESETS[name]
    assert Recipe.from_json(recipe.to_json()) == recipe
    assert Recipe.from_dict(json.loads(json.dumps(recipe.to_dict()))) == recipe


def test_custom_recipe_json_round_trip():
    recipe = Recipe(
        (
            RandomCrop(padding=2, padding_mode="constant", fill="#ff8000"),
            Rotation(max_angle=10.0, fill=0.5),
            ColorJitter(hue=0.05),
            Cutout(size=7, p=0.5),
            CutMix(alpha=0.5),
            RandAugment(num_ops=1, magnitude=5),
        ),
        name="classroom",
    )
    text = recipe.to_json()
    assert Recipe.from_json(text) == recipe
    assert json.loads(text)["operations"][0]["fill"] == [1.0, pytest.approx(128 / 255, abs=1e-6), 0.0]
    assert Recipe.from_json(text).to_json() == text


def test_presets_content():
    assert PRESETS["none"].operations == ()
    assert [op.name for op in PRESETS["standard"].operations] == ["random_crop", "horizontal_flip"]
    assert PRESETS["standard"].operations[0].padding == 4
    assert PRESETS["standard"].operations[0].padding_mode == "reflect"
    assert PRESETS["cutout"].operations[-1] == Cutout(size=16, fill=(0.4914, 0.4822, 0.4465))
    assert PRESETS["mixup"].operations[-1] == Mixup(alpha=1.0)
    assert PRESETS["mixup"].mixes_labels
    assert [op.name for op in PRESETS["strong"].operations] == [
        "random_crop", "horizontal_flip", "autoaugment", "cutout",
    ]


@pytest.mark.parametrize(
    ("data", "match"),
    [
        ({"operations": [{"op": "shear"}]}, r"recipe step 0: unknown operation 'shear'; use one of: horizontal_flip"),
        ({"operations": [{"size": 16}]}, r"recipe step 0: operation \{'size': 16\} has no 'op' key"),
        ({"operations": [{"op": "cutout", "length": 16}]}, r"unknown parameter 'length' for cutout; valid parameters: fill, p, size"),
        ({"operations": [{"op": "cutout", "size": 40}]}, r"recipe step 0: Cutout: size 40 is outside"),
        ({"operations": "cutout"}, r"recipe 'operations' must be a list of dicts, got str"),
        ({"operations": [], "version": 2}, r"recipe format version 2 is not supported"),
        ({"operations": [], "steps": []}, r"unknown recipe key 'steps'"),
        ({"operations": [{"op": "random_crop", "size": 28}]}, r"a random crop of size 28 changes the image size"),
        ([], r"a recipe must be a dict with an 'operations' list, got list"),
    ],
)
def test_invalid_recipe_raises(data, match):
    with pytest.raises(AugmentError, match=match):
        Recipe.from_dict(data)


def test_recipe_invalid_json_raises():
    with pytest.raises(AugmentError, match=r"the recipe is not valid JSON"):
        Recipe.from_json("{not json")


def test_augment_error_is_value_error():
    assert issubclass(AugmentError, ValueError)


# --------------------------------------------------------------------------------------------
# BatchAugmenter


@pytest.mark.parametrize("name", list(PRESETS))
def test_augmenter_output_contract(name):
    images = make_images(32)
    labels = torch.arange(32) % 10
    out, targets = BatchAugmenter(PRESETS[name])(images, labels, seeded())
    assert out.dtype == torch.float32
    assert out.shape == (32, 3, 32, 32)
    assert out.min() >= 0.0
    assert out.max() <= 1.0
    assert targets.dtype == torch.float32
    assert targets.shape == (32, 10)
    torch.testing.assert_close(targets.sum(1), torch.ones(32))
    if not PRESETS[name].mixes_labels:
        assert torch.equal(targets, one_hot_targets(labels))


def test_augmenter_none_converts_only():
    images = make_images(4)
    out, _ = BatchAugmenter("none")(images, torch.zeros(4, dtype=torch.int64), seeded())
    assert torch.equal(out, images.float() / 255)


def test_augmenter_same_seed_same_output():
    images = make_images(32)
    labels = torch.arange(32) % 10
    recipe = Recipe(PRESETS["strong"].operations + (GaussianNoise(sigma=0.05), Mixup(alpha=0.4)))
    first = BatchAugmenter(recipe)(images, labels, seeded(11))
    second = BatchAugmenter(recipe)(images, labels, seeded(11))
    other = BatchAugmenter(recipe)(images, labels, seeded(12))
    assert torch.equal(first[0], second[0])
    assert torch.equal(first[1], second[1])
    assert not torch.equal(first[0], other[0])


def test_augmenter_matches_operations_in_sequence():
    images = make_images(16)
    labels = torch.arange(16) % 10
    recipe = PRESETS["cutout"]
    out, _ = BatchAugmenter(recipe)(images, labels, seeded(3))
    generator = seeded(3)
    expected = images
    for operation in recipe.operations:
        expected = operation(expected, generator)
    assert torch.equal(out, expected.float() / 255)


def test_augmenter_keeps_params():
    result = BatchAugmenter("mixup").run(make_images(8), torch.arange(8), seeded())
    assert [sorted(params) for params in result.params] == [["left", "top"], ["flip"], ["lam", "partner"]]


def test_augmenter_accepts_numpy_and_preset_dict():
    images = make_images(8).numpy()
    labels = np.arange(8, dtype=np.int64)
    out, targets = BatchAugmenter(PRESETS["standard"].to_dict())(images, labels, seeded())
    assert out.shape == (8, 3, 32, 32)
    assert targets.shape == (8, 10)


def test_augmenter_rejects_bad_labels():
    with pytest.raises(AugmentError, match=r"expected labels of shape \(8,\), got \(4,\)"):
        BatchAugmenter("standard")(make_images(8), torch.arange(4), seeded())


def test_augmenter_rejects_single_image():
    with pytest.raises(AugmentError, match=r"expected a batch of shape \(N, 3, H, W\), got \(3, 32, 32\)"):
        BatchAugmenter("standard")(make_images(1)[0], torch.tensor([0]), seeded())


def test_augmenter_unknown_preset_raises():
    with pytest.raises(AugmentError, match=r"unknown preset 'heavy'; use one of: none, standard"):
        BatchAugmenter("heavy")


# --------------------------------------------------------------------------------------------
# Offline augmentation


def test_offline_enlarges_training_set():
    images = make_images(10).numpy()
    labels = np.arange(10, dtype=np.int64)
    before = images.copy()
    images.setflags(write=False)
    enlarged = enlarge_training_set(images, labels, "standard", copies=2, seed=0, batch_size=4)
    assert enlarged.images.shape == (30, 3, 32, 32)
    assert enlarged.images.dtype == np.uint8
    assert np.array_equal(enlarged.images[:10], before)
    assert np.array_equal(images, before)
    assert enlarged.source_index.tolist() == list(range(10)) * 3
    assert enlarged.copy_index.tolist() == [0] * 10 + [1] * 10 + [2] * 10
    assert enlarged.labels.tolist() == list(range(10)) * 3
    assert not np.array_equal(enlarged.images[10:20], enlarged.images[20:30])
    assert enlarged.recipe == PRESETS["standard"].to_dict()


def test_offline_blend_labels_dominant_class():
    images = make_images(8).numpy()
    labels = np.arange(8, dtype=np.int64)
    recipe = Recipe((Blend(weight=0.75),))
    enlarged = enlarge_training_set(images, labels, recipe, copies=1, keep_originals=False, seed=1)
    assert enlarged.labels.tolist() == list(range(8))
    weights = np.sort(enlarged.soft_targets, axis=1)[:, ::-1]
    partners_differ = weights[:, 1] > 0
    assert np.allclose(weights[partners_differ, :2], [0.75, 0.25])


def test_offline_same_seed_same_set():
    images = make_images(6).numpy()
    labels = np.arange(6, dtype=np.int64)
    first = enlarge_training_set(images, labels, "strong", copies=1, seed=3)
    second = enlarge_training_set(images, labels, "strong", copies=1, seed=3)
    assert np.array_equal(first.images, second.images)


def test_offline_rejects_bad_copies():
    with pytest.raises(AugmentError, match=r"copies must be a whole number >= 0, got -1"):
        enlarge_training_set(make_images(2).numpy(), np.zeros(2, np.int64), "standard", copies=-1)
