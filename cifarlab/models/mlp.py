"""A fully connected network (multilayer perceptron, the "ANN" of many courses).

The image is flattened into 3 x 32 x 32 = 3072 numbers, so the network has no notion of
neighbouring pixels: shifting an object by one pixel gives it an unrelated input. Comparing it with the convolutional
networks shows what convolution buys on images.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from cifarlab.models.classifier import Classifier
from cifarlab.models.spec import ArchSpec, Option

INPUT_FEATURES = 3 * 32 * 32


def hidden_layer(in_features: int, out_features: int, dropout: float, batchnorm: bool) -> nn.Sequential:
    """Return Linear, then optional BatchNorm1d, ReLU, then optional Dropout."""
    layers: list[nn.Module] = [nn.Linear(in_features, out_features, bias=not batchnorm)]
    if batchnorm:
        layers.append(nn.BatchNorm1d(out_features))
    layers.append(nn.ReLU(inplace=True))
    if dropout > 0:
        layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)


class MLP(nn.Module):
    """Flatten, four hidden layers, then a linear layer to the class logits."""

    def __init__(self, widths: list[int], num_classes: int, dropout: float, batchnorm: bool):
        super().__init__()
        self.flatten = nn.Flatten()
        self.hidden1 = hidden_layer(INPUT_FEATURES, widths[0], dropout, batchnorm)
        self.hidden2 = hidden_layer(widths[0], widths[1], dropout, batchnorm)
        self.hidden3 = hidden_layer(widths[1], widths[2], dropout, batchnorm)
        self.hidden4 = hidden_layer(widths[2], widths[3], dropout, batchnorm)
        self.head = nn.Linear(widths[3], num_classes)

    def forward(self, x):
        x = self.flatten(x)

        x = self.hidden1(x)
        x = self.hidden2(x)
        x = self.hidden3(x)
        x = self.hidden4(x)

        logits = self.head(x)
        return logits

    def stem_and_rest(self) -> tuple[nn.Sequential, nn.Sequential]:
        """Split the network into ``stem`` and ``rest`` with ``rest(stem(x)) == self(x)``.

        The stem is the flattening and the first linear layer, where a changed pixel adds three
        weight columns to the output, so the few-pixel attack can update it instead of
        recomputing it (`cifarlab.attack.queries`).
        """
        first, *others = self.hidden1
        stem = nn.Sequential(self.flatten, first)
        rest = nn.Sequential(*others, self.hidden2, self.hidden3, self.hidden4, self.head)
        return stem, rest


def build_mlp(num_classes: int, options: dict[str, Any], fetch_weights: bool) -> Classifier:
    net = MLP(options["widths"], num_classes, options["dropout"], options["batchnorm"])
    return Classifier(net, arch="mlp", options=options, num_classes=num_classes)


SPEC = ArchSpec(
    name="mlp",
    builder=build_mlp,
    summary="Fully connected network: flatten, 4 hidden layers with ReLU, linear output",
    family="scratch",
    options=(
        Option("widths", [1024, 512, 256, 128], list, "units in each of the 4 hidden layers", length=4),
        Option("dropout", 0.2, float, "dropout probability after each hidden layer", minimum=0.0, maximum=0.9),
        Option("batchnorm", False, bool, "add batch norm after each hidden linear layer"),
    ),
    reference_accuracy=None,
    reference_source="none published for this layout",
)
