"""Grad-CAM: which regions of the image raised the score of a class.

Grad-CAM is described in Selvaraju et al., "Grad-CAM: Visual Explanations from Deep Networks
via Gradient-based Localization", ICCV 2017, pp. 618-626. It weights each channel ``A_k`` of a
convolutional layer's activations by the spatial mean of the gradient of the class score ``y_c``
(the logit, before softmax) with respect to that channel. Then it sums the weighted channels and
keeps the positive part:

    alpha_k = mean_ij d y_c / d A_k[i, j]
    L_c = ReLU(sum_k alpha_k * A_k)

The map has the layer's spatial size (for example 8x8 or 4x4) and is upsampled bilinearly to the
32x32 input, then divided by its maximum so it lies in [0, 1]. Only models whose
``gradcam_layer()`` returns a layer (the convolutional ones) support it.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

INPUT_SIZE = 32

# Anchor colours of the heat colour map, from no evidence (0) to the strongest (1): black through
# purple, red and orange to pale yellow, so brightness rises steadily with the value.
_HEAT_ANCHORS = np.array(
    [
        [0, 0, 0],
        [60, 10, 110],
        [170, 30, 100],
        [235, 80, 40],
        [250, 170, 20],
        [255, 250, 180],
    ],
    dtype=np.float64,
)


class GradCamError(ValueError):
    """Grad-CAM cannot run on this model or input; the message gives the reason."""


@dataclass(frozen=True)
class GradCamResult:
    """A Grad-CAM heatmap for one image and one class."""

    heatmap: np.ndarray  # (32, 32) float32 in [0, 1]; all zeros if no region raised the score
    class_index: int  # the class whose score was explained
    score: float  # that class's logit
    layer_name: str  # the module whose activations were used
    layer_size: tuple[int, int]  # the activations' spatial size before upsampling


def find_target_layer(model: nn.Module) -> nn.Module:
    """Return the layer Grad-CAM reads for ``model``, from its ``gradcam_layer()`` method."""
    method = getattr(model, "gradcam_layer", None)
    layer = method() if callable(method) else None
    if layer is None:
        name = getattr(model, "arch", type(model).__name__)
        raise GradCamError(
            f"model {name!r} has no convolutional layer for Grad-CAM; choose a convolutional "
            "model such as the CNN, LeNet, VGG or ResNet"
        )
    return layer


def grad_cam(
    model: nn.Module,
    image: torch.Tensor | np.ndarray,
    class_index: int | None = None,
    *,
    layer: nn.Module | None = None,
) -> GradCamResult:
    """Compute the Grad-CAM heatmap of one image for ``class_index`` (default: the top class).

    ``image`` is a uint8 image of shape ``(3, 32, 32)`` (0..255) or a float one in ``[0, 1]``.
    ``layer`` defaults to ``model.gradcam_layer()``. The model runs in eval mode and is then put
    back in its previous mode. Its parameters and their ``.grad`` are not changed, so a cached
    model can be passed safely.
    """
    target_layer = layer if layer is not None else find_target_layer(model)
    batch = _as_float_batch(image, _model_device(model))

    activations: list[torch.Tensor] = []
    owner = threading.get_ident()

    def keep_activation(module, inputs, output):
        # A cached model can be shared by several Streamlit sessions at once; only keep the
        # activation of the forward pass that runs in this thread.
        if threading.get_ident() == owner:
            activations.append(output)

    was_training = model.training
    handle = target_layer.register_forward_hook(keep_activation)
    try:
        model.eval()
        with torch.enable_grad():
            # The input requires grad so the activations stay in the graph even when every
            # parameter is frozen.
            batch.requires_grad_(True)
            logits = model(batch)
            if not activations:
                raise GradCamError("the Grad-CAM layer did not run in the model's forward pass")
            activation = activations[-1]
            num_classes = logits.shape[1]
            if class_index is None:
                class_index = int(logits[0].argmax())
            if not 0 <= class_index < num_classes:
                raise GradCamError(
                    f"class index {class_index} is out of range; choose 0..{num_classes - 1}"
                )
            score = logits[0, class_index]
            (gradient,) = torch.autograd.grad(score, activation)
    finally:
        handle.remove()
        model.train(was_training)

    if activation.ndim != 4:
        raise GradCamError(
            f"the Grad-CAM layer must output (N, C, H, W) activations, got {tuple(activation.shape)}"
        )
    with torch.no_grad():
        weights = gradient.mean(dim=(2, 3), keepdim=True)
        cam = F.relu((weights * activation).sum(dim=1, keepdim=True))
        cam = F.interpolate(cam, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False)
        cam = cam[0, 0].clamp_min(0)
        peak = float(cam.max())
        heatmap = (cam / peak) if peak > 0 else torch.zeros_like(cam)

    return GradCamResult(
        heatmap=heatmap.float().cpu().numpy(),
        class_index=int(class_index),
        score=float(score.detach()),
        layer_name=_module_name(model, target_layer),
        layer_size=(int(activation.shape[2]), int(activation.shape[3])),
    )


def colorize(heatmap: np.ndarray) -> np.ndarray:
    """Map values in [0, 1] to RGB uint8 colours of the heat colour map (last axis = RGB)."""
    values = np.clip(np.asarray(heatmap, dtype=np.float64), 0.0, 1.0)
    positions = values * (len(_HEAT_ANCHORS) - 1)
    lower = np.minimum(positions.astype(np.int64), len(_HEAT_ANCHORS) - 2)
    fraction = (positions - lower)[..., None]
    colours = _HEAT_ANCHORS[lower] * (1 - fraction) + _HEAT_ANCHORS[lower + 1] * fraction
    return np.rint(colours).astype(np.uint8)


def overlay(
    image: np.ndarray, heatmap: np.ndarray, *, alpha: float = 0.5, scale: int = 8
) -> np.ndarray:
    """Blend a heatmap over an image and return an ``(32*scale, 32*scale, 3)`` uint8 RGB image.

    ``image`` is uint8 ``(3, 32, 32)`` and ``heatmap`` is ``(32, 32)`` in [0, 1]. The image is
    enlarged by pixel repetition, so its pixels stay crisp. The heatmap is enlarged bilinearly, so
    it reads as a smooth field. ``alpha`` is the heatmap's weight (0 shows only the image).
    """
    image = np.asarray(image)
    heatmap = np.asarray(heatmap, dtype=np.float32)
    if image.shape != (3, INPUT_SIZE, INPUT_SIZE) or image.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image of shape (3, 32, 32), got {image.dtype} {image.shape}")
    if heatmap.shape != (INPUT_SIZE, INPUT_SIZE):
        raise ValueError(f"expected a heatmap of shape (32, 32), got {heatmap.shape}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    if scale < 1:
        raise ValueError(f"scale must be a positive integer, got {scale}")

    size = INPUT_SIZE * scale
    base = np.repeat(np.repeat(image.transpose(1, 2, 0), scale, axis=0), scale, axis=1)
    smooth = F.interpolate(
        torch.from_numpy(heatmap)[None, None], size=(size, size), mode="bilinear", align_corners=False
    )[0, 0].numpy()
    colours = colorize(smooth).astype(np.float64)
    blended = (1.0 - alpha) * base.astype(np.float64) + alpha * colours
    return np.rint(blended).clip(0, 255).astype(np.uint8)


def _as_float_batch(image: torch.Tensor | np.ndarray, device: torch.device) -> torch.Tensor:
    # np.array copies, so a read-only array (a cached data set) reaches torch as a writable one.
    tensor = torch.as_tensor(np.array(image) if isinstance(image, np.ndarray) else image)
    if tensor.shape != (3, INPUT_SIZE, INPUT_SIZE):
        raise GradCamError(f"expected one image of shape (3, 32, 32), got {tuple(tensor.shape)}")
    if tensor.dtype == torch.uint8:
        tensor = tensor.float() / 255.0
    else:
        tensor = tensor.float()
    # A fresh tensor, so setting requires_grad never touches the caller's array.
    return tensor.detach().clone().unsqueeze(0).to(device)


def _model_device(model: nn.Module) -> torch.device:
    parameter = next(model.parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")


def _module_name(model: nn.Module, target: nn.Module) -> str:
    for name, module in model.named_modules():
        if module is target:
            return name or type(model).__name__
    return type(target).__name__
