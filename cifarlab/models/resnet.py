"""A fast residual network for CIFAR-10: the speed and accuracy reference of the lab.

Its lineage is the 9-layer ResNet that David Page (Myrtle.ai) designed for the DAWNBench
time-to-94% competition. His blog series "How to train your ResNet" (2018,
myrtle.ai/learn/how-to-train-your-resnet) describes it: it reached 94% test accuracy in 79 s on
one V100 GPU. That run was a 24-epoch schedule, as Lambda Labs' rerun lists
(lambdalabs.com/blog/resnet9-train-to-94-cifar10-accuracy-in-100-seconds). Few, wide layers
with pooling inside each stage keep it fast. The layout here:

- prep: one 3x3 conv with ``width`` channels at 32x32;
- stage 1: conv to ``2 * width`` channels, 2x2 max pool (16x16), then a residual block of two
  convs;
- stage 2: conv to ``4 * width``, max pool (8x8);
- stage 3: conv to ``8 * width``, max pool (4x4), then a residual block;
- global max pool, a linear layer, and logits multiplied by ``logit_scale`` (0.125 by default),
  which keeps the initial softmax soft and lets training use a large learning rate.

Every conv is 3x3 without bias, followed by batch norm and ReLU. Eight conv layers plus the linear
layer give the nine weight layers of the name.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from cifarlab.models.classifier import Classifier
from cifarlab.models.spec import ArchSpec, Option


def conv_bn_relu(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class Residual(nn.Module):
    """Two conv blocks whose output is added to the block's input."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = conv_bn_relu(channels, channels)
        self.conv2 = conv_bn_relu(channels, channels)

    def forward(self, x):
        residual = self.conv1(x)
        residual = self.conv2(residual)

        return x + residual


class Stage(nn.Module):
    """A conv block that changes the channel count, 2x2 max pooling, and an optional residual."""

    def __init__(self, in_channels: int, out_channels: int, residual: bool):
        super().__init__()
        self.conv = conv_bn_relu(in_channels, out_channels)
        self.pool = nn.MaxPool2d(2)
        self.residual = Residual(out_channels) if residual else nn.Identity()

    def forward(self, x):
        x = self.conv(x)
        x = self.pool(x)

        x = self.residual(x)
        return x


class ResNet9(nn.Module):
    """prep, three pooled stages (residual blocks in the first and third), max pool, linear."""

    def __init__(self, num_classes: int, width: int, logit_scale: float):
        super().__init__()
        self.prep = conv_bn_relu(3, width)
        self.stage1 = Stage(width, 2 * width, residual=True)  # 32 -> 16
        self.stage2 = Stage(2 * width, 4 * width, residual=False)  # 16 -> 8
        self.stage3 = Stage(4 * width, 8 * width, residual=True)  # 8 -> 4
        self.pool = nn.AdaptiveMaxPool2d(1)
        self.flatten = nn.Flatten()
        self.head = nn.Linear(8 * width, num_classes, bias=False)
        self.logit_scale = logit_scale

    def forward(self, x):
        x = self.prep(x)

        x = self.stage1(x)
        x = self.stage2(x)
        x = self.stage3(x)

        x = self.pool(x)
        x = self.flatten(x)

        logits = self.head(x)
        logits = logits * self.logit_scale
        return logits


def build_resnet(num_classes: int, options: dict[str, Any], fetch_weights: bool) -> Classifier:
    net = ResNet9(num_classes, options["width"], options["logit_scale"])
    return Classifier(
        net, arch="resnet", options=options, num_classes=num_classes, gradcam_layer_name="stage3"
    )


SPEC = ArchSpec(
    name="resnet",
    builder=build_resnet,
    summary="Fast ResNet-9 (DAWNBench lineage): 8 conv layers, 2 residual blocks",
    family="scratch",
    options=(
        Option("width", 64, int, "channels after the prep layer; the stages use 2x, 4x and 8x", minimum=4, maximum=256),
        Option("logit_scale", 0.125, float, "factor applied to the logits", minimum=1e-3, maximum=10.0),
    ),
    reference_accuracy=0.94,
    reference_source=(
        "David Page, \"How to train your ResNet\" (myrtle.ai, 2018): the 9-layer layout this one "
        "follows, at width 64, reached 94% test accuracy in 24 epochs (79 s on one V100 GPU)"
    ),
)
