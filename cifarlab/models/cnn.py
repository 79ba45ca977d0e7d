"""A small VGG-style convolutional network, the first convolutional model of the lab.

Three stages of two 3x3 convolutions, each followed by batch norm and ReLU; every stage ends with
2x2 max pooling and dropout, and the channel count doubles from one stage to the next
(``width``, ``2 * width``, ``4 * width``). Global average pooling turns the last 4x4 maps into
one vector per image before the linear classifier. The layout follows the VGG pattern (Simonyan
and Zisserman, 2014) at a size that trains in minutes on a GPU.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from cifarlab.models.classifier import Classifier
from cifarlab.models.spec import ArchSpec, Option


def conv_bn_relu(in_channels: int, out_channels: int) -> nn.Sequential:
    """Return a 3x3 convolution without bias (batch norm adds its own), batch norm and ReLU."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


def conv_stage(in_channels: int, out_channels: int, dropout: float) -> nn.Sequential:
    """Return two conv blocks, then 2x2 max pooling (halves the side) and dropout."""
    return nn.Sequential(
        conv_bn_relu(in_channels, out_channels),
        conv_bn_relu(out_channels, out_channels),
        nn.MaxPool2d(2),
        nn.Dropout(dropout),
    )


class SmallCNN(nn.Module):
    """conv-conv-pool x 3 (32 -> 16 -> 8 -> 4 pixels), global average pool, linear."""

    def __init__(self, num_classes: int, width: int, dropout: float):
        super().__init__()
        self.stage1 = conv_stage(3, width, dropout)
        self.stage2 = conv_stage(width, 2 * width, dropout)
        self.stage3 = conv_stage(2 * width, 4 * width, dropout)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.head = nn.Linear(4 * width, num_classes)

    def forward(self, x):
        x = self.stage1(x)
        x = self.stage2(x)
        x = self.stage3(x)

        x = self.pool(x)
        x = self.flatten(x)

        logits = self.head(x)
        return logits


def build_cnn(num_classes: int, options: dict[str, Any], fetch_weights: bool) -> Classifier:
    net = SmallCNN(num_classes, options["width"], options["dropout"])
    # The second conv block of the last stage, before pooling: 8x8 maps for Grad-CAM.
    return Classifier(
        net, arch="cnn", options=options, num_classes=num_classes, gradcam_layer_name="stage3.1"
    )


SPEC = ArchSpec(
    name="cnn",
    builder=build_cnn,
    summary="Small VGG-style CNN: 3 stages of 2 conv layers with batch norm and dropout",
    family="scratch",
    options=(
        Option("width", 64, int, "channels of the first stage; the next stages double it", minimum=4, maximum=512),
        Option("dropout", 0.2, float, "dropout probability after each stage", minimum=0.0, maximum=0.9),
    ),
    reference_accuracy=None,
    reference_source="none published for this layout",
)
