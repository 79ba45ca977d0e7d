"""LeNet-5 adapted to 3 x 32 x 32 colour images.

LeCun, Bottou, Bengio and Haffner, "Gradient-based learning applied to document recognition",
Proc. IEEE 86(11), 1998. The paper's network read 32 x 32 greyscale digits. This one keeps its
layer sizes (6 and 16 feature maps of 5 x 5 kernels, then 120, 84 and 10 units) but changes:

- the input has 3 channels instead of 1, so the first convolution has 3 x 6 x 25 weights;
- activations are ReLU by default (option ``activation="tanh"`` restores the paper's squashing
  function, without its 1.7159 scale);
- subsampling is max pooling by default; ``pooling="avg"`` gives plain 2 x 2 averaging, close to
  the paper's trainable-coefficient averaging;
- every C3 map sees all 6 S2 maps, where the paper used a hand-picked sparse connection table;
- the output is a linear layer of logits trained with cross-entropy, not the paper's Euclidean
  radial basis function units.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from cifarlab.models.classifier import Classifier
from cifarlab.models.spec import ArchSpec, Option

ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh}
POOLS = {"max": nn.MaxPool2d, "avg": nn.AvgPool2d}


class LeNet5(nn.Module):
    """conv 5x5 (6) - pool - conv 5x5 (16) - pool - fc 120 - fc 84 - fc num_classes."""

    def __init__(self, num_classes: int, activation: str, pooling: str):
        super().__init__()
        act = ACTIVATIONS[activation]
        pool = POOLS[pooling]
        self.conv1 = nn.Sequential(nn.Conv2d(3, 6, kernel_size=5), act())  # 32 -> 28
        self.pool1 = pool(2)  # 28 -> 14
        self.conv2 = nn.Sequential(nn.Conv2d(6, 16, kernel_size=5), act())  # 14 -> 10
        self.pool2 = pool(2)  # 10 -> 5
        self.flatten = nn.Flatten()
        self.fc1 = nn.Sequential(nn.Linear(16 * 5 * 5, 120), act())
        self.fc2 = nn.Sequential(nn.Linear(120, 84), act())
        self.head = nn.Linear(84, num_classes)

    def forward(self, x):
        x = self.conv1(x)
        x = self.pool1(x)

        x = self.conv2(x)
        x = self.pool2(x)

        x = self.flatten(x)
        x = self.fc1(x)
        x = self.fc2(x)

        logits = self.head(x)
        return logits

    def stem_and_rest(self) -> tuple[nn.Sequential, nn.Sequential]:
        """Split the network into ``stem`` and ``rest`` with ``rest(stem(x)) == self(x)``.

        Each output of the stem (first convolution and pooling) depends on a 6 x 6 receptive
        field of input pixels, so the few-pixel attack can recompute it on a small crop around a
        changed pixel instead of on the whole image (`cifarlab.attack.queries`).
        """
        stem = nn.Sequential(self.conv1, self.pool1)
        rest = nn.Sequential(self.conv2, self.pool2, self.flatten, self.fc1, self.fc2, self.head)
        return stem, rest


def build_lenet(num_classes: int, options: dict[str, Any], fetch_weights: bool) -> Classifier:
    net = LeNet5(num_classes, options["activation"], options["pooling"])
    return Classifier(
        net, arch="lenet", options=options, num_classes=num_classes, gradcam_layer_name="conv2"
    )


SPEC = ArchSpec(
    name="lenet",
    builder=build_lenet,
    summary="LeNet-5 (1998) with 3 input channels, ReLU and max pooling",
    family="scratch",
    options=(
        Option("activation", "relu", str, "activation after each layer", choices=tuple(ACTIVATIONS)),
        Option("pooling", "max", str, "2x2 subsampling", choices=tuple(POOLS)),
    ),
    reference_accuracy=None,
    reference_source="none published on CIFAR-10; the 1998 paper reports MNIST digits",
)
