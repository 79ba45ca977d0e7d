"""Transfer learning from torchvision's ImageNet networks: VGG-19, ResNet-50 and ResNet-152.

Each builder takes torchvision's network, replaces its last linear layer with a new one of
``num_classes`` outputs (the head) and, with ``freeze_backbone=True``, trains only that head.
With ``pretrained=True`` the backbone starts from torchvision's ImageNet weights, and the
``Classifier`` normalizes with ImageNet statistics, as those weights expect. ``input_size``
upsamples the 32-pixel images before the network: ImageNet features were learned on objects
about 224 pixels wide, and at 32 pixels a ResNet's last feature map is a single pixel.

The weights are read from torchvision's cache only, ``torch.hub.get_dir()/checkpoints``
(``$TORCH_HOME/hub/checkpoints``, by default ``~/.cache/torch/hub/checkpoints``). Building a
model never downloads, so training behaves the same with or without a network;
``download_weights`` fetches them on purpose.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlparse

import torch
from torch import nn
from torchvision import models as tv_models
from torchvision.models import ResNet50_Weights, ResNet152_Weights, VGG19_Weights, WeightsEnum

from cifarlab.models.classifier import CIFAR10_MEAN, CIFAR10_STD, IMAGENET_MEAN, IMAGENET_STD, Classifier
from cifarlab.models.spec import ArchSpec, ModelError, Option

logger = logging.getLogger(__name__)

INPUT_SIZES = (32, 64, 96, 128, 160, 224)

# torch.hub names cached files "<name>-<first hex digits of the file's SHA-256>.<ext>".
_HASH_PREFIX = re.compile(r"-([a-f0-9]{6,})\.")


class WeightsError(ModelError):
    """Pretrained weights that are missing from the cache or fail to load."""


# Architecture name -> (torchvision constructor, ImageNet weights enum member).
TORCHVISION_MODELS: dict[str, tuple[Callable[..., nn.Module], WeightsEnum]] = {
    "vgg19": (tv_models.vgg19, VGG19_Weights.IMAGENET1K_V1),
    "resnet50": (tv_models.resnet50, ResNet50_Weights.IMAGENET1K_V2),
    "resnet152": (tv_models.resnet152, ResNet152_Weights.IMAGENET1K_V2),
}


def weights_path(weights: WeightsEnum) -> Path:
    """Return where torchvision's cache keeps ``weights`` (the file may not exist)."""
    filename = os.path.basename(urlparse(weights.url).path)
    return Path(torch.hub.get_dir()) / "checkpoints" / filename


def _download_command(arch: str, weights: WeightsEnum) -> str:
    enum_name = type(weights).__name__
    return (
        f'python -c "from torchvision.models import {arch}, {enum_name}; '
        f'{arch}(weights={enum_name}.{weights.name})"'
    )


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for chunk in iter(lambda: file.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _corrupt(path: Path, arch: str, weights: WeightsEnum, reason: str) -> WeightsError:
    return WeightsError(
        f"the cached ImageNet weights for {arch!r} are corrupt ({reason}): {path}. "
        f"Delete that file and fetch it again: {_download_command(arch, weights)} on a machine "
        f"with internet access, or download {weights.url} into {path.parent} by hand."
    )


def load_cached_weights(arch: str) -> dict[str, torch.Tensor]:
    """Return the ImageNet state dict of ``arch`` from torchvision's cache, never downloading.

    Raises:
        WeightsError: the file is missing (the message names the file, the folder and how to
            get it), or its SHA-256 does not match the prefix in its name, or it fails to load.
    """
    weights = TORCHVISION_MODELS[arch][1]
    path = weights_path(weights)
    if not path.is_file():
        raise WeightsError(
            f"ImageNet weights for {arch!r} ({type(weights).__name__}.{weights.name}) are not in "
            f"torchvision's cache: expected file {path.name} in folder {path.parent}. Building a "
            f"model never downloads. On a machine with internet access, run "
            f"python -m cifarlab weights download {arch} (or {_download_command(arch, weights)}) "
            f"and copy {path.name} from its "
            f"torch hub checkpoints folder into {path.parent}, or download {weights.url} into "
            f"that folder by hand. Set TORCH_HOME to use another cache folder, or pass "
            f"pretrained=False to start from random weights."
        )

    match = _HASH_PREFIX.search(path.name)
    if match is not None:
        expected = match.group(1)
        actual = _file_sha256(path)
        if not actual.startswith(expected):
            raise _corrupt(
                path, arch, weights, f"its SHA-256 starts with {actual[:len(expected)]}, "
                f"its name says {expected}; the download was probably cut short"
            )

    try:
        state_dict = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch.load raises several types for damaged files
        raise _corrupt(path, arch, weights, f"torch.load failed: {error}") from error
    if not isinstance(state_dict, dict):
        raise _corrupt(path, arch, weights, f"it contains a {type(state_dict).__name__}, not a state dict")
    return state_dict


def download_weights(arch: str) -> Path:
    """Download the ImageNet weights of ``arch`` into torchvision's cache and return the path.

    The only function in cifarlab that reaches the network for weights.
    """
    # NOTE: runs only where download.pytorch.org is reachable; the tests never call it.
    weights = TORCHVISION_MODELS[arch][1]
    weights.get_state_dict(progress=False, check_hash=True)
    return weights_path(weights)


def _replace_head(net: nn.Module, num_classes: int) -> str:
    """Replace the last linear layer with a new one; return its dotted name."""
    if isinstance(net, tv_models.ResNet):
        net.fc = nn.Linear(net.fc.in_features, num_classes)
        return "fc"
    last = len(net.classifier) - 1
    net.classifier[last] = nn.Linear(net.classifier[last].in_features, num_classes)
    return f"classifier.{last}"


def _gradcam_layer_name(net: nn.Module) -> str:
    if isinstance(net, tv_models.ResNet):
        return "layer4"
    # VGG: the ReLU after the last convolution, before the final max pooling.
    relu_indices = [i for i, module in enumerate(net.features) if isinstance(module, nn.ReLU)]
    return f"features.{relu_indices[-1]}"


def build_transfer(arch: str, num_classes: int, options: dict[str, Any], fetch_weights: bool) -> Classifier:
    """Build a torchvision network with a new head.

    ``fetch_weights=False`` builds the pretrained layout (ImageNet normalization included)
    without reading the cached weights; loading a checkpoint does that, since the checkpoint
    contains every weight.
    """
    constructor, weights = TORCHVISION_MODELS[arch]
    net = constructor(weights=None)
    if options["pretrained"] and fetch_weights:
        try:
            net.load_state_dict(load_cached_weights(arch))
        except RuntimeError as error:
            # torch lists the missing, unexpected and mis-shaped keys.
            raise _corrupt(weights_path(weights), arch, weights, f"its tensors do not fit {arch}: {error}") from error
    elif options["freeze_backbone"] and not options["pretrained"]:
        logger.warning("%s: freeze_backbone with pretrained=False trains only a head over random features", arch)

    if options["freeze_backbone"]:
        for parameter in net.parameters():
            parameter.requires_grad_(False)
    # The new head is created after freezing, so it is the only part that trains.
    _replace_head(net, num_classes)

    if options["pretrained"]:
        mean, std = IMAGENET_MEAN, IMAGENET_STD
    else:
        mean, std = CIFAR10_MEAN, CIFAR10_STD
    return Classifier(
        net,
        arch=arch,
        options=options,
        num_classes=num_classes,
        mean=mean,
        std=std,
        input_size=options["input_size"],
        gradcam_layer_name=_gradcam_layer_name(net),
    )


def _transfer_options(default_input_size: int) -> tuple[Option, ...]:
    return (
        Option("pretrained", True, bool, "start from torchvision's ImageNet weights (read from its cache)"),
        Option("freeze_backbone", True, bool, "train only the new last layer; the rest keeps its weights"),
        Option("input_size", default_input_size, int, "side in pixels the network sees; images are upsampled bilinearly", choices=INPUT_SIZES),
    )


def _spec(arch: str, summary: str) -> ArchSpec:
    weights = TORCHVISION_MODELS[arch][1]
    top1 = weights.meta["_metrics"]["ImageNet-1K"]["acc@1"]

    def builder(num_classes: int, options: dict[str, Any], fetch_weights: bool) -> Classifier:
        return build_transfer(arch, num_classes, options, fetch_weights)

    return ArchSpec(
        name=arch,
        builder=builder,
        summary=summary,
        family="transfer",
        options=_transfer_options(default_input_size=96),
        reference_accuracy=None,
        reference_source=(
            f"none published for this head, input size and schedule on CIFAR-10; the backbone "
            f"weights ({type(weights).__name__}.{weights.name}) reach {top1:.1f}% top-1 on "
            f"ImageNet-1K (torchvision's weights metadata)"
        ),
    )


VGG19_SPEC = _spec("vgg19", "VGG-19 from torchvision, ImageNet weights, new last layer")
RESNET50_SPEC = _spec("resnet50", "ResNet-50 from torchvision, ImageNet weights, new last layer")
RESNET152_SPEC = _spec("resnet152", "ResNet-152 from torchvision, ImageNet weights, new last layer")
