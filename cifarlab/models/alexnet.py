"""AlexNet adapted to 32 x 32 images.

Krizhevsky, Sutskever and Hinton, "ImageNet classification with deep convolutional neural
networks", NeurIPS 2012. The 2012 network read 224 x 224 crops. This one keeps its five
convolutional layers with the paper's channel counts (96, 256, 384, 384, 256) and its 3x3
stride-2 overlapping max pooling after layers 1, 2 and 5. It also keeps ReLU and dropout 0.5
before the fully connected layers. It changes:

- conv1 is 3x3 with stride 1 and padding 1 (2012: 11x11 with stride 4), because a stride-4 11x11
  kernel would shrink a 32-pixel image to 6 pixels in the first layer;
- conv2 keeps its 5x5 kernel, with padding 2 so it keeps the side;
- each pooling layer has padding 1, so the maps go 32 -> 16 -> 8 -> 4 pixels;
- normalization is batch norm after every convolution by default (``norm="batch"``);
  ``norm="lrn"`` restores the paper's local response normalization after conv1 and conv2
  (size 5, alpha 1e-4, beta 0.75, k 2), and ``norm="none"`` leaves both out;
- one tower: the paper split conv2, conv4 and conv5 into two groups, one per GPU;
- the two hidden fully connected layers have 1024 units instead of 4096, since they receive
  256 x 4 x 4 = 4096 features instead of 9216; 4096 units would add about 25 million
  parameters for 10 classes;
- the output layer has ``num_classes`` units instead of 1000.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from cifarlab.models.classifier import Classifier
from cifarlab.models.spec import ArchSpec, Option

NORMS = ("batch", "lrn", "none")
HIDDEN_UNITS = 1024


def conv_layer(in_channels: int, out_channels: int, kernel_size: int, norm: str, lrn: bool) -> nn.Sequential:
    """Return a convolution that keeps the side, its normalization and ReLU.

    ``lrn`` marks the layers (conv1 and conv2) after which the paper used local response
    normalization; it applies when ``norm="lrn"``.
    """
    layers: list[nn.Module] = [
        nn.Conv2d(
            in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=norm != "batch"
        )
    ]
    if norm == "batch":
        layers.append(nn.BatchNorm2d(out_channels))
    layers.append(nn.ReLU(inplace=True))
    if norm == "lrn" and lrn:
        layers.append(nn.LocalResponseNorm(size=5, alpha=1e-4, beta=0.75, k=2.0))
    return nn.Sequential(*layers)


class AlexNet32(nn.Module):
    """Five conv layers with three overlapping max pools, then three fully connected layers."""

    def __init__(self, num_classes: int, norm: str, dropout: float):
        super().__init__()
        self.conv1 = conv_layer(3, 96, 3, norm, lrn=True)
        self.pool1 = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)  # 32 -> 16
        self.conv2 = conv_layer(96, 256, 5, norm, lrn=True)
        self.pool2 = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)  # 16 -> 8
        self.conv3 = conv_layer(256, 384, 3, norm, lrn=False)
        self.conv4 = conv_layer(384, 384, 3, norm, lrn=False)
        self.conv5 = conv_layer(384, 256, 3, norm, lrn=False)
        self.pool5 = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)  # 8 -> 4
        self.flatten = nn.Flatten()
        self.fc6 = nn.Sequential(
            nn.Dropout(dropout), nn.Linear(256 * 4 * 4, HIDDEN_UNITS), nn.ReLU(inplace=True)
        )
        self.fc7 = nn.Sequential(
            nn.Dropout(dropout), nn.Linear(HIDDEN_UNITS, HIDDEN_UNITS), nn.ReLU(inplace=True)
        )
        self.head = nn.Linear(HIDDEN_UNITS, num_classes)

    def forward(self, x):
        x = self.conv1(x)
        x = self.pool1(x)

        x = self.conv2(x)
        x = self.pool2(x)

        x = self.conv3(x)
        x = self.conv4(x)
        x = self.conv5(x)
        x = self.pool5(x)

        x = self.flatten(x)
        x = self.fc6(x)
        x = self.fc7(x)

        logits = self.head(x)
        return logits


def build_alexnet(num_classes: int, options: dict[str, Any], fetch_weights: bool) -> Classifier:
    net = AlexNet32(num_classes, options["norm"], options["dropout"])
    return Classifier(
        net, arch="alexnet", options=options, num_classes=num_classes, gradcam_layer_name="conv5"
    )


SPEC = ArchSpec(
    name="alexnet",
    builder=build_alexnet,
    summary="AlexNet (2012) for 32x32 inputs: 3x3 first layer, batch norm, 1024-unit FC layers",
    family="scratch",
    options=(
        Option("norm", "batch", str, "normalization after conv layers", choices=NORMS),
        Option("dropout", 0.5, float, "dropout probability before fc6 and fc7", minimum=0.0, maximum=0.9),
    ),
    reference_accuracy=None,
    reference_source="none published for this layout on CIFAR-10",
)
