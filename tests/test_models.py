"""Registry models: shapes, gradients, options, model cards and the Classifier wrapper."""

from __future__ import annotations

from functools import lru_cache

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cifarlab.data import CIFAR10_MEAN, CIFAR10_STD
from cifarlab.models import (
    ARCHS,
    IMAGENET_MEAN,
    IMAGENET_STD,
    Classifier,
    ModelError,
    build_model,
    count_macs,
    list_archs,
    model_card,
)
from cifarlab.models import _model_card

TRANSFER_ARCHS = ("vgg19", "resnet50", "resnet152")

# Small settings keep every test fast on a 2-core CPU; transfer models use random weights and
# the native 32-pixel input.
FAST_OPTIONS = {
    "mlp": {"widths": [64, 32, 32, 16]},
    "lenet": {},
    "cnn": {"width": 8},
    "alexnet": {},
    "vgg16": {},
    "resnet": {"width": 8},
    "vgg19": {"pretrained": False, "input_size": 32},
    "resnet50": {"pretrained": False, "input_size": 32},
    "resnet152": {"pretrained": False, "input_size": 32},
}


@lru_cache(maxsize=None)
def eval_model(arch: str) -> Classifier:
    """Return a model in evaluation mode, built once per arch for the tests that only read it."""
    torch.manual_seed(0)
    return build_model(arch, **FAST_OPTIONS[arch]).eval()


@pytest.fixture(scope="module", autouse=True)
def release_cached_models():
    """Free the cached models (about 1 GB with VGG-19) once this module's tests are done."""
    yield
    eval_model.cache_clear()


def images(batch: int = 4, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(batch, 3, 32, 32, generator=generator)


def test_registry_lists_every_family():
    assert list_archs() == [
        "mlp", "lenet", "cnn", "alexnet", "vgg16", "resnet", "vgg19", "resnet50", "resnet152",
    ]
    assert set(FAST_OPTIONS) == set(ARCHS)
    for arch in TRANSFER_ARCHS:
        assert ARCHS[arch].family == "transfer"


@pytest.mark.parametrize("arch", list_archs())
def test_forward_shape_and_finite(arch):
    model = eval_model(arch)

    with torch.no_grad():
        logits = model(images())

    assert isinstance(model, Classifier)
    assert logits.shape == (4, 10)
    assert logits.dtype == torch.float32
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize("arch", list_archs())
def test_gradients_reach_trainable_params_only(arch):
    torch.manual_seed(0)
    model = build_model(arch, **FAST_OPTIONS[arch])
    model.train()

    loss = F.cross_entropy(model(images()), torch.tensor([0, 1, 2, 3]))
    loss.backward()

    trainable = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    frozen = [(name, p) for name, p in model.named_parameters() if not p.requires_grad]
    assert trainable
    for name, parameter in trainable:
        assert parameter.grad is not None, f"{name} got no gradient"
        assert torch.isfinite(parameter.grad).all(), f"{name} has a non-finite gradient"
    for name, parameter in frozen:
        assert parameter.grad is None, f"frozen {name} got a gradient"
    if arch in TRANSFER_ARCHS:
        # The default freezes the backbone, so only the new last layer trains.
        assert len(trainable) == 2
        assert frozen


@pytest.mark.parametrize("arch", list_archs())
def test_num_classes_honoured(arch):
    model = build_model(arch, num_classes=7, **FAST_OPTIONS[arch])
    model.eval()

    with torch.no_grad():
        logits = model(images(batch=2))

    assert logits.shape == (2, 7)
    assert model.num_classes == 7


@pytest.mark.parametrize("arch", [arch for arch in list_archs() if arch != "resnet152"])
def test_model_card_matches_model(arch):
    options = FAST_OPTIONS[arch]
    card = model_card(arch, **options)
    model = eval_model(arch)

    assert card.arch == arch
    assert card.params == sum(p.numel() for p in model.parameters())
    assert card.trainable_params == sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert card.input_size == model.input_size
    assert card.options == model.options
    assert card.gradcam_layer == model.gradcam_layer_name
    assert card.macs > 0
    assert card.reference_source
    if card.reference_accuracy is not None:
        assert 0.0 < card.reference_accuracy < 1.0
    else:
        assert "none published" in card.reference_source


def test_model_card_macs_lenet_by_hand():
    # conv1: 28*28 outputs x 6 maps x (3*5*5); conv2: 10*10 x 16 x (6*5*5); then the three
    # linear layers 400->120->84->10.
    expected = 28 * 28 * 6 * 75 + 10 * 10 * 16 * 150 + 400 * 120 + 120 * 84 + 84 * 10

    assert model_card("lenet").macs == expected


def test_model_card_macs_mlp_by_hand():
    widths = [64, 32, 32, 16]
    expected = 3072 * 64 + 64 * 32 + 32 * 32 + 32 * 16 + 16 * 10

    assert model_card("mlp", widths=widths).macs == expected


def test_model_card_macs_follow_input_size():
    small = model_card("resnet50", input_size=32)
    large = model_card("resnet50", input_size=224)

    # torchvision lists 4.089 GMACs for ResNet-50 at 224 pixels with 1000 classes; the 10-class
    # head removes 2048 * 990 of them.
    assert large.macs == pytest.approx(4.089e9 - 2048 * 990, rel=0.01)
    assert large.input_size == 224
    assert small.macs < large.macs / 40


def test_count_macs_divides_by_batch():
    layer = nn.Linear(5, 3)

    assert count_macs(layer, torch.zeros(4, 5)) == 15


def test_model_card_is_cached():
    first = model_card("cnn", width=8)
    hits = _model_card.cache_info().hits
    first.options["width"] = 999
    second = model_card("cnn", width=8, dropout=0.2)

    assert _model_card.cache_info().hits == hits + 1
    assert second.options == {"width": 8, "dropout": 0.2}
    assert second.params == first.params


def test_options_filled_with_defaults():
    model = build_model("mlp")

    assert model.options == {"widths": [1024, 512, 256, 128], "dropout": 0.2, "batchnorm": False}
    assert build_model("mlp", **model.options).options == model.options


def test_mlp_batchnorm_and_dropout_layers():
    model = build_model("mlp", widths=[8, 8, 8, 8], dropout=0.0, batchnorm=True)
    kinds = {type(module) for module in model.modules()}

    assert nn.BatchNorm1d in kinds
    assert nn.Dropout not in kinds


@pytest.mark.parametrize("norm, layer", [("batch", nn.BatchNorm2d), ("lrn", nn.LocalResponseNorm)])
def test_alexnet_norm_option(norm, layer):
    model = build_model("alexnet", norm=norm)
    kinds = {type(module) for module in model.modules()}

    assert layer in kinds


def test_vgg16_has_13_conv_layers():
    model = build_model("vgg16")
    convs = [module for module in model.modules() if isinstance(module, nn.Conv2d)]

    assert len(convs) == 13


def test_resnet_width_scales_channels():
    model = build_model("resnet", width=8)
    convs = [module for module in model.modules() if isinstance(module, nn.Conv2d)]

    assert len(convs) == 8
    assert max(conv.out_channels for conv in convs) == 64


@pytest.mark.parametrize(
    "arch, options, match",
    [
        ("mlp", {"widths": [64, 32]}, r"widths=\[64, 32\].*expected 4 values, got 2"),
        ("mlp", {"widths": [64, 0, 8, 8]}, r"0 is not a positive integer"),
        ("mlp", {"dropout": 1.5}, r"dropout=1.5.*maximum is 0.9"),
        ("mlp", {"batchnorm": "yes"}, r"batchnorm='yes'.*expected true or false"),
        ("cnn", {"width": 8.5}, r"width=8.5.*expected an integer"),
        ("cnn", {"width": True}, r"width=True.*expected an integer"),
        ("lenet", {"activation": "gelu"}, r"activation='gelu'.*valid values are 'relu', 'tanh'"),
        ("resnet50", {"input_size": 100}, r"input_size=100.*valid values are 32, 64, 96"),
        ("alexnet", {"depth": 3}, r"unknown option 'depth' for arch 'alexnet'; valid options: norm, dropout"),
    ],
)
def test_invalid_option_rejected(arch, options, match):
    with pytest.raises(ModelError, match=match):
        build_model(arch, **options)


def test_unknown_arch_lists_choices():
    with pytest.raises(ModelError, match=r"unknown arch 'resnet18'; valid choices: mlp, lenet, cnn"):
        build_model("resnet18")
    with pytest.raises(ValueError, match="unknown arch"):
        model_card("resnet18")


def test_invalid_num_classes_rejected():
    with pytest.raises(ModelError, match=r"num_classes=1.*at least 2"):
        build_model("lenet", num_classes=1)


def test_scratch_models_normalize_with_cifar_stats():
    model = build_model("cnn", width=8)

    assert model.normalization()["mean"] == pytest.approx(CIFAR10_MEAN)
    assert model.normalization()["std"] == pytest.approx(CIFAR10_STD)
    assert model.input_size == 32


def test_transfer_normalization_follows_pretrained():
    pretrained = build_model("resnet50", pretrained=True, fetch_weights=False, input_size=32)
    scratch = build_model("resnet50", pretrained=False, input_size=32)

    assert pretrained.normalization()["mean"] == pytest.approx(IMAGENET_MEAN)
    assert pretrained.normalization()["std"] == pytest.approx(IMAGENET_STD)
    assert scratch.normalization()["mean"] == pytest.approx(CIFAR10_MEAN)


def test_classifier_normalizes_before_network():
    model = build_model("lenet")
    model.eval()
    x = images()

    with torch.no_grad():
        expected = model.net((x - model.mean) / model.std)
        actual = model(x)

    torch.testing.assert_close(actual, expected)


def test_classifier_resizes_to_input_size():
    model = build_model("resnet50", pretrained=False, input_size=64)
    seen = []
    model.net.conv1.register_forward_hook(lambda module, inputs, output: seen.append(inputs[0].shape))
    model.eval()

    with torch.no_grad():
        model(images(batch=1))

    assert seen == [torch.Size([1, 3, 64, 64])]


def test_frozen_batch_norm_stays_in_eval_mode():
    model = build_model("resnet50", pretrained=False, input_size=32, freeze_backbone=True)
    running_mean = model.net.bn1.running_mean.clone()

    model.train()
    model(images())

    assert model.training
    assert not model.net.bn1.training
    torch.testing.assert_close(model.net.bn1.running_mean, running_mean)


def test_full_fine_tuning_trains_backbone():
    model = build_model("resnet50", pretrained=False, input_size=32, freeze_backbone=False)
    model.train()

    assert all(p.requires_grad for p in model.parameters())
    assert model.net.bn1.training


def test_transfer_head_replaced():
    model = eval_model("vgg19")

    assert model.net.classifier[6].out_features == 10
    assert model_card("vgg19", **FAST_OPTIONS["vgg19"]).trainable_params == 4096 * 10 + 10


@pytest.mark.parametrize("arch", list_archs())
def test_gradcam_layer(arch):
    model = eval_model(arch)
    layer = model.gradcam_layer()

    if arch == "mlp":
        assert layer is None
        return
    maps = []
    handle = layer.register_forward_hook(lambda module, inputs, output: maps.append(output))
    try:
        with torch.no_grad():
            model(images(batch=1))
    finally:
        handle.remove()
    assert len(maps) == 1
    assert maps[0].dim() == 4
    assert maps[0].shape[-1] >= 1
