"""The wrapper every registry model shares: normalize, resize, run the network."""

from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from cifarlab.data import CIFAR10_MEAN, CIFAR10_STD

# The statistics torchvision's ImageNet weights were trained with; a pretrained backbone expects
# its inputs normalized this way.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

NATIVE_SIZE = 32


class Classifier(nn.Module):
    """A network with its input normalization and resolution.

    ``forward`` takes float32 images in ``[0, 1]`` of shape ``(N, 3, 32, 32)`` and returns logits
    of shape ``(N, num_classes)``. Because normalization and resizing happen inside, training,
    evaluation and attacks feed raw pixels, and the attack's image is exactly the model's input.

    Args:
        net: the network proper; it receives normalized images of ``input_size``.
        arch: the registry name the model was built from.
        options: every option of that builder, defaults included (plain Python values).
        num_classes: size of the last layer.
        mean, std: per-channel normalization, in ``[0, 1]`` pixel units.
        input_size: side in pixels that ``net`` receives; images are resized to it when it
            differs from their own.
        gradcam_layer_name: dotted name, inside ``net``, of the module whose output Grad-CAM
            explains (the last convolutional block), or None for a network without one.
    """

    def __init__(
        self,
        net: nn.Module,
        *,
        arch: str,
        options: dict[str, Any],
        num_classes: int,
        mean: Sequence[float] = CIFAR10_MEAN,
        std: Sequence[float] = CIFAR10_STD,
        input_size: int = NATIVE_SIZE,
        gradcam_layer_name: str | None = None,
    ):
        super().__init__()
        self.net = net
        self.arch = arch
        self.options = dict(options)
        self.num_classes = num_classes
        self.input_size = input_size
        self.gradcam_layer_name = gradcam_layer_name
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = (images - self.mean) / self.std

        # Normalizing first and resizing second gives the same result as the other order,
        # because bilinear weights sum to one.
        if x.shape[-1] != self.input_size or x.shape[-2] != self.input_size:
            x = F.interpolate(
                x,
                size=(self.input_size, self.input_size),
                mode="bilinear",
                align_corners=False,
                antialias=False,
            )

        logits = self.net(x)
        return logits

    def train(self, mode: bool = True) -> "Classifier":
        """Set training mode, but keep frozen batch-norm layers in evaluation mode.

        A frozen backbone must compute the same features in training and evaluation, so its
        batch-norm layers keep using their ImageNet running statistics instead of updating them
        from CIFAR-10 batches.
        """
        super().train(mode)
        if mode:
            for module in self.modules():
                if _is_frozen_batch_norm(module):
                    module.eval()
        return self

    def gradcam_layer(self) -> nn.Module | None:
        """Return the last convolutional block, whose output Grad-CAM explains, or None."""
        if self.gradcam_layer_name is None:
            return None
        return self.net.get_submodule(self.gradcam_layer_name)

    def normalization(self) -> dict[str, list[float]]:
        """Return the per-channel mean and std as plain lists."""
        return {"mean": self.mean.flatten().tolist(), "std": self.std.flatten().tolist()}

    def extra_repr(self) -> str:
        return f"arch={self.arch!r}, num_classes={self.num_classes}, input_size={self.input_size}"


def _is_frozen_batch_norm(module: nn.Module) -> bool:
    if not isinstance(module, nn.modules.batchnorm._BatchNorm):
        return False
    parameters = list(module.parameters(recurse=False))
    return bool(parameters) and not any(p.requires_grad for p in parameters)
