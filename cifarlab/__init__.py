"""cifarlab: an interactive lab for learning image classification on CIFAR-10."""

__version__ = "0.1.0"
