"""Grad-CAM: exact maps on a hand-built network, shape and range on the registry's models."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from cifarlab.gradcam import GradCamError, colorize, find_target_layer, grad_cam, overlay
from cifarlab.models import build_model


class ChannelVoter(nn.Module):
    """Copies the input through a 1x1 convolution, averages each channel, then a linear layer.

    With identity convolution weights, class ``c``'s score is ``sum_k W[c, k] * mean(x_k)``, so
    the gradient of the score wrt channel k is ``W[c, k] / (32 * 32)`` everywhere and Grad-CAM of
    class ``c`` is ``ReLU(sum_k W[c, k] * x_k)`` up to a positive factor.
    """

    def __init__(self, weights: torch.Tensor):
        super().__init__()
        self.features = nn.Conv2d(3, 3, kernel_size=1, bias=False)
        with torch.no_grad():
            self.features.weight.copy_(torch.eye(3).view(3, 3, 1, 1))
        self.head = nn.Linear(3, weights.shape[0], bias=False)
        with torch.no_grad():
            self.head.weight.copy_(weights)

    def forward(self, x):
        x = self.features(x)
        x = x.mean(dim=(2, 3))
        return self.head(x)

    def gradcam_layer(self):
        return self.features


def voter() -> ChannelVoter:
    # Class 0 votes with the red channel, class 1 with green, class 2 against red.
    weights = torch.zeros(10, 3)
    weights[0, 0] = 1.0
    weights[1, 1] = 1.0
    weights[2, 0] = -1.0
    return ChannelVoter(weights)


def halves_image() -> np.ndarray:
    """Red rising from left to right in the left half, green constant in the right half."""
    image = np.zeros((3, 32, 32), dtype=np.uint8)
    image[0, :, :16] = np.linspace(15, 255, 16).astype(np.uint8)
    image[1, :, 16:] = 200
    return image


def test_hand_built_map_exact():
    image = halves_image()
    red = image[0].astype(np.float32) / 255.0
    green = image[1].astype(np.float32) / 255.0

    result = grad_cam(voter(), image, 0)
    np.testing.assert_allclose(result.heatmap, red / red.max(), atol=1e-6)
    assert result.class_index == 0
    assert result.layer_size == (32, 32)
    assert result.layer_name == "features"

    result = grad_cam(voter(), image, 1)
    np.testing.assert_allclose(result.heatmap, green / green.max(), atol=1e-6)


def test_negative_evidence_gives_zero_map():
    # Class 2's score falls with red, so no region raises it and the map is all zeros.
    result = grad_cam(voter(), halves_image(), 2)
    assert result.heatmap.shape == (32, 32)
    assert (result.heatmap == 0).all()


def test_default_class_is_top_prediction():
    result = grad_cam(voter(), halves_image())
    # Mean green (100) exceeds mean red (67.5), so class 1 scores highest.
    assert result.class_index == 1
    assert result.score == pytest.approx(100 / 255, rel=1e-5)


@pytest.mark.parametrize("arch", ["lenet", "cnn", "resnet", "alexnet", "vgg16", "resnet50"])
def test_registry_models_shape_and_range(arch):
    torch.manual_seed(0)
    model = build_model(arch, fetch_weights=False)
    image = np.random.default_rng(0).integers(0, 256, (3, 32, 32), dtype=np.uint8)
    result = grad_cam(model, image)
    assert result.heatmap.shape == (32, 32)
    assert result.heatmap.dtype == np.float32
    assert result.heatmap.min() >= 0.0
    assert result.heatmap.max() <= 1.0
    assert np.isfinite(result.heatmap).all()
    assert 0 <= result.class_index < 10


def test_map_changes_with_class():
    torch.manual_seed(0)
    model = build_model("cnn")
    image = np.random.default_rng(1).integers(0, 256, (3, 32, 32), dtype=np.uint8)
    maps = [grad_cam(model, image, index).heatmap for index in range(10)]
    distinct = {maps[index].tobytes() for index in range(10)}
    assert len(distinct) > 1
    assert not np.allclose(maps[0], maps[1])


def test_model_left_unchanged():
    torch.manual_seed(0)
    model = build_model("lenet").train()
    before = {name: value.clone() for name, value in model.state_dict().items()}
    grad_cam(model, np.zeros((3, 32, 32), dtype=np.uint8), 3)
    assert model.training
    assert all(parameter.grad is None for parameter in model.parameters())
    for name, value in model.state_dict().items():
        assert torch.equal(value, before[name]), name
    assert not model.net.get_submodule(model.gradcam_layer_name)._forward_hooks


def test_frozen_parameters_still_work():
    model = voter()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    result = grad_cam(model, halves_image(), 0)
    assert result.heatmap.max() == pytest.approx(1.0)


def test_float_input_accepted():
    image = halves_image()
    from_uint8 = grad_cam(voter(), image, 0).heatmap
    from_float = grad_cam(voter(), torch.from_numpy(image).float() / 255.0, 0).heatmap
    np.testing.assert_allclose(from_uint8, from_float, atol=1e-6)


def test_mlp_has_no_gradcam_layer():
    model = build_model("mlp")
    with pytest.raises(GradCamError, match="no convolutional layer"):
        find_target_layer(model)
    with pytest.raises(GradCamError, match="no convolutional layer"):
        grad_cam(model, np.zeros((3, 32, 32), dtype=np.uint8))


def test_invalid_class_and_shape_rejected():
    with pytest.raises(GradCamError, match="class index 10 is out of range"):
        grad_cam(voter(), halves_image(), 10)
    with pytest.raises(GradCamError, match="shape \\(3, 32, 32\\)"):
        grad_cam(voter(), np.zeros((1, 3, 32, 32), dtype=np.uint8))


def test_colorize_endpoints_and_brightness():
    colours = colorize(np.linspace(0, 1, 11))
    assert colours.dtype == np.uint8
    assert tuple(colours[0]) == (0, 0, 0)
    assert tuple(colours[-1]) == (255, 250, 180)
    brightness = colours.astype(int).sum(axis=1)
    assert (np.diff(brightness) > 0).all()


def test_overlay_blends_image_and_heatmap():
    image = halves_image()
    heatmap = np.zeros((32, 32), dtype=np.float32)
    plain = overlay(image, heatmap, alpha=0.0, scale=4)
    assert plain.shape == (128, 128, 3)
    assert plain.dtype == np.uint8
    np.testing.assert_array_equal(plain[::4, ::4], image.transpose(1, 2, 0))

    full = overlay(image, np.ones((32, 32), dtype=np.float32), alpha=1.0, scale=2)
    assert (full == np.array([255, 250, 180], dtype=np.uint8)).all()

    half = overlay(image, np.ones((32, 32), dtype=np.float32), alpha=0.5, scale=1)
    expected = np.rint(0.5 * image.transpose(1, 2, 0) + 0.5 * np.array([255, 250, 180]))
    np.testing.assert_array_equal(half, expected.astype(np.uint8))


def test_overlay_rejects_bad_inputs():
    image = halves_image()
    with pytest.raises(ValueError, match="alpha must be in \\[0, 1\\]"):
        overlay(image, np.zeros((32, 32)), alpha=1.5)
    with pytest.raises(ValueError, match="heatmap of shape \\(32, 32\\)"):
        overlay(image, np.zeros((8, 8)))
    with pytest.raises(ValueError, match="uint8 image of shape \\(3, 32, 32\\)"):
        overlay(image.astype(np.float32), np.zeros((32, 32)))
