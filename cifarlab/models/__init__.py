"""The model registry: one name, one builder, one model card.

``build_model(arch, num_classes=10, **options)`` returns a :class:`Classifier`: the network
wrapped with its normalization and input size, taking float32 images in ``[0, 1]`` of shape
``(N, 3, 32, 32)``. ``model_card(arch, **options)`` describes it with numbers measured on the
built model. Each architecture lives in its own file of this package, next to its registry
entry (``SPEC``).
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, replace
from functools import lru_cache
from typing import Any

import torch
from torch import nn

from cifarlab.models import alexnet, cnn, lenet, mlp, resnet, transfer, vgg
from cifarlab.models.classifier import (
    CIFAR10_MEAN,
    CIFAR10_STD,
    IMAGENET_MEAN,
    IMAGENET_STD,
    NATIVE_SIZE,
    Classifier,
)
from cifarlab.models.spec import ArchSpec, ModelError, Option
from cifarlab.models.transfer import WeightsError, download_weights, weights_path

__all__ = [
    "ARCHS",
    "ArchSpec",
    "Classifier",
    "ModelCard",
    "ModelError",
    "Option",
    "WeightsError",
    "build_model",
    "count_macs",
    "download_weights",
    "get_spec",
    "list_archs",
    "model_card",
    "resolve_options",
    "weights_path",
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
]

# In teaching order: from the fully connected network to transfer learning.
ARCHS: dict[str, ArchSpec] = {
    spec.name: spec
    for spec in (
        mlp.SPEC,
        lenet.SPEC,
        cnn.SPEC,
        alexnet.SPEC,
        vgg.SPEC,
        resnet.SPEC,
        transfer.VGG19_SPEC,
        transfer.RESNET50_SPEC,
        transfer.RESNET152_SPEC,
    )
}


def list_archs() -> list[str]:
    """Return the registered architecture names, from the simplest to transfer learning."""
    return list(ARCHS)


def get_spec(arch: str) -> ArchSpec:
    """Return the registry entry of ``arch``, or raise ModelError listing the valid names."""
    if not isinstance(arch, str) or arch not in ARCHS:
        raise ModelError(f"unknown arch {arch!r}; valid choices: {', '.join(ARCHS)}")
    return ARCHS[arch]


def resolve_options(arch: str, **options: Any) -> dict[str, Any]:
    """Validate ``options`` for ``arch`` and return them with every default filled in."""
    return get_spec(arch).resolve_options(options)


def build_model(arch: str, num_classes: int = 10, *, fetch_weights: bool = True, **options: Any) -> Classifier:
    """Build a freshly initialized model of the registered architecture ``arch``.

    Args:
        arch: a name from :func:`list_archs`.
        num_classes: outputs of the last layer.
        fetch_weights: for transfer models with ``pretrained=True``, read the ImageNet weights
            from torchvision's cache. False builds the same layout without them, for a
            checkpoint that supplies every weight.
        **options: the architecture's options (see ``ARCHS[arch].options``).

    Raises:
        ModelError: unknown arch, unknown option or invalid value.
        WeightsError: pretrained weights missing from the cache or corrupt.
    """
    spec = get_spec(arch)
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ModelError(f"invalid num_classes={num_classes!r}: expected an integer of at least 2")
    resolved = spec.resolve_options(options)
    return spec.builder(num_classes, resolved, fetch_weights)


@dataclass(frozen=True)
class ModelCard:
    """Facts about one architecture with given options, measured on the built model.

    ``macs`` counts the multiply-accumulates of the convolution and linear layers for one
    32x32 image, after any upsampling to ``input_size``. Batch norm, activations and pooling
    are left out, as is usual for such counts. ``reference_accuracy`` is a published top-1
    accuracy (fraction) on the canonical CIFAR-10 test set, or None, with its source.
    """

    arch: str
    summary: str
    family: str
    options: dict[str, Any]
    num_classes: int
    params: int
    trainable_params: int
    input_size: int
    macs: int
    reference_accuracy: float | None
    reference_source: str
    gradcam_layer: str | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def count_macs(model: nn.Module, images: torch.Tensor) -> int:
    """Count the multiply-accumulates of Conv2d and Linear layers for one image of ``images``.

    Runs one forward pass with hooks, so the count follows the real shapes (strides, padding,
    upsampling), not a formula written by hand.
    """
    total = 0

    def conv_hook(module: nn.Conv2d, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        nonlocal total
        kernel_height, kernel_width = module.kernel_size
        per_output = (module.in_channels // module.groups) * kernel_height * kernel_width
        total += output.numel() * per_output

    def linear_hook(module: nn.Linear, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        nonlocal total
        total += output.numel() * module.in_features

    handles = []
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            handles.append(module.register_forward_hook(conv_hook))
        elif isinstance(module, nn.Linear):
            handles.append(module.register_forward_hook(linear_hook))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(images)
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    return total // images.shape[0]


def model_card(arch: str, num_classes: int = 10, **options: Any) -> ModelCard:
    """Return the model card of ``arch`` built with ``options`` (defaults filled in).

    Builds the model on the meta device, without pretrained weights, which change no number
    on the card, and caches the result per arch and options.
    """
    resolved = resolve_options(arch, **options)
    key = tuple(sorted((name, _hashable(value)) for name, value in resolved.items()))
    card = _model_card(arch, num_classes, key)
    # A copy of the options, so a caller that edits them cannot change the cached card.
    return replace(card, options=copy.deepcopy(card.options))


def _hashable(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


@lru_cache(maxsize=64)
def _model_card(arch: str, num_classes: int, key: tuple[tuple[str, Any], ...]) -> ModelCard:
    spec = ARCHS[arch]
    options = {name: list(value) if isinstance(value, tuple) else value for name, value in key}
    # On the meta device, tensors have shapes but no storage: counting needs no memory for
    # VGG-19's 140 million weights and no arithmetic for its forward pass.
    with torch.device("meta"):
        model = build_model(arch, num_classes, fetch_weights=False, **options)
    params = sum(parameter.numel() for parameter in model.parameters())
    trainable = sum(parameter.numel() for parameter in model.parameters() if parameter.requires_grad)
    macs = count_macs(model, torch.zeros(1, 3, NATIVE_SIZE, NATIVE_SIZE, device="meta"))
    return ModelCard(
        arch=arch,
        summary=spec.summary,
        family=spec.family,
        options=model.options,
        num_classes=num_classes,
        params=params,
        trainable_params=trainable,
        input_size=model.input_size,
        macs=macs,
        reference_accuracy=spec.reference_accuracy,
        reference_source=spec.reference_source,
        gradcam_layer=model.gradcam_layer_name,
    )
