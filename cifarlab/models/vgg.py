"""VGG-16 with batch norm, adapted to 32 x 32 images.

Simonyan and Zisserman, "Very deep convolutional networks for large-scale image recognition",
ICLR 2015 (configuration D): 13 convolutional layers of 3x3 kernels in five stages, each stage
ending with 2x2 max pooling. The depth comes from the channel list ``STAGES``. Batch norm after
every convolution (Ioffe and Szegedy, 2015) lets the network train without the paper's staged
initialization. After five poolings a 32-pixel image is a 1x1x512 map, so the classifier is
512 -> 512 -> ``num_classes`` instead of the ImageNet network's 25088 -> 4096 -> 4096 -> 1000.
"""

from __future__ import annotations

from typing import Any, Sequence

from torch import nn

from cifarlab.models.classifier import Classifier
from cifarlab.models.spec import ArchSpec, Option

# Output channels of each 3x3 convolution, one tuple per stage (VGG configuration D).
STAGES = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512))


def conv_bn_relu(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


def vgg_stage(in_channels: int, channels: Sequence[int]) -> nn.Sequential:
    """Return one conv block per entry of ``channels``, then 2x2 max pooling."""
    blocks = []
    for out_channels in channels:
        blocks.append(conv_bn_relu(in_channels, out_channels))
        in_channels = out_channels
    blocks.append(nn.MaxPool2d(2))
    return nn.Sequential(*blocks)


class VGG16(nn.Module):
    """Five conv stages (32 -> 16 -> 8 -> 4 -> 2 -> 1 pixels), then a two-layer classifier."""

    def __init__(self, num_classes: int, dropout: float):
        super().__init__()
        in_channels = [3] + [stage[-1] for stage in STAGES[:-1]]
        self.stage1 = vgg_stage(in_channels[0], STAGES[0])
        self.stage2 = vgg_stage(in_channels[1], STAGES[1])
        self.stage3 = vgg_stage(in_channels[2], STAGES[2])
        self.stage4 = vgg_stage(in_channels[3], STAGES[3])
        self.stage5 = vgg_stage(in_channels[4], STAGES[4])
        self.flatten = nn.Flatten()
        self.fc = nn.Sequential(
            nn.Dropout(dropout), nn.Linear(512, 512), nn.ReLU(inplace=True), nn.Dropout(dropout)
        )
        self.head = nn.Linear(512, num_classes)

    def forward(self, x):
        x = self.stage1(x)
        x = self.stage2(x)
        x = self.stage3(x)
        x = self.stage4(x)
        x = self.stage5(x)

        x = self.flatten(x)
        x = self.fc(x)

        logits = self.head(x)
        return logits


def build_vgg16(num_classes: int, options: dict[str, Any], fetch_weights: bool) -> Classifier:
    net = VGG16(num_classes, options["dropout"])
    # The last conv block before the final pooling. Its 2x2 maps (at 32 pixels) are the finest
    # ones computed by all 13 convolutions.
    last_block = f"stage5.{len(STAGES[4]) - 1}"
    return Classifier(
        net, arch="vgg16", options=options, num_classes=num_classes, gradcam_layer_name=last_block
    )


SPEC = ArchSpec(
    name="vgg16",
    builder=build_vgg16,
    summary="VGG-16 with batch norm: 13 conv layers in 5 stages, 512-unit classifier",
    family="scratch",
    options=(
        Option("dropout", 0.5, float, "dropout probability around the hidden classifier layer", minimum=0.0, maximum=0.9),
    ),
    reference_accuracy=0.9264,
    reference_source=(
        "kuangliu/pytorch-cifar README (github.com/kuangliu/pytorch-cifar): VGG16 with batch norm "
        "and a single linear classifier, about 350 epochs of SGD with standard augmentation"
    ),
)
