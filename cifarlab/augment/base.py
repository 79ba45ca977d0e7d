"""The building blocks every augmentation shares: errors, parameters, image handling, sampling.

An operation is a frozen dataclass whose fields are its parameters. Each field carries a
`ParamSpec` (kind, range, unit, help) that drives three things at once: eager validation when the
operation is built, the JSON form of a recipe, and the widgets of the Augmentation page.

Random parameters are drawn apart from applying them: ``sample_params(n, generator)`` returns a
dict of per-image tensors and ``apply(images, params)`` is deterministic, so a test or the page
can fix a box, an angle or a mixing weight and check the exact result.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, ClassVar, Mapping, Sequence

import torch
from PIL import Image

Params = dict[str, torch.Tensor]

IMAGE_SIZE = 32


class AugmentError(ValueError):
    """An invalid augmentation, parameter or input; the message names the value and the fix."""


@dataclass(frozen=True)
class ParamSpec:
    """The declared type, range and meaning of one operation parameter.

    ``kind`` is one of ``"int"``, ``"float"``, ``"bool"``, ``"choice"`` or ``"color"`` (an RGB
    triple in ``[0, 1]``). ``low`` and ``high`` are inclusive bounds for numbers, ``step`` is the
    step a slider should use, and ``widget`` is ``"number"`` where typing a value beats dragging.
    """

    name: str
    kind: str
    default: Any
    low: float | None = None
    high: float | None = None
    step: float | None = None
    choices: tuple[str, ...] = ()
    unit: str = ""
    help: str = ""
    widget: str = "slider"


def param(
    default: Any,
    kind: str,
    *,
    low: float | None = None,
    high: float | None = None,
    step: float | None = None,
    choices: Sequence[str] = (),
    unit: str = "",
    help: str = "",
    widget: str = "slider",
) -> Any:
    """Declare an operation parameter: a dataclass field that carries its `ParamSpec`."""
    spec = ParamSpec(
        name="",
        kind=kind,
        default=default,
        low=low,
        high=high,
        step=step,
        choices=tuple(choices),
        unit=unit,
        help=help,
        widget=widget,
    )
    return dataclasses.field(default=default, metadata={"spec": spec})


# --------------------------------------------------------------------------------------------
# Parameter values
# --------------------------------------------------------------------------------------------


def parse_color(value: Any, where: str) -> tuple[float, float, float]:
    """Turn a fill colour into an RGB triple in ``[0, 1]``.

    Accepts one number (a grey level), three numbers, or a ``"#rrggbb"`` string.
    """
    if isinstance(value, str):
        text = value.strip()
        if len(text) == 7 and text.startswith("#"):
            try:
                channels = [int(text[i : i + 2], 16) / 255.0 for i in (1, 3, 5)]
            except ValueError:
                channels = None
            if channels is not None:
                return tuple(round(c, 6) for c in channels)  # type: ignore[return-value]
        raise AugmentError(
            f"{where}: invalid colour {value!r}; use a '#rrggbb' string, one number in [0, 1] "
            "or three numbers in [0, 1]"
        )
    if isinstance(value, bool):
        raise AugmentError(f"{where}: invalid colour {value!r}; use numbers in [0, 1]")
    if isinstance(value, (int, float)):
        value = (value, value, value)
    if not isinstance(value, (list, tuple)) or len(value) != 3:
        raise AugmentError(
            f"{where}: invalid colour {value!r}; use one number or three numbers (R, G, B) in [0, 1]"
        )
    channels = []
    for channel in value:
        if isinstance(channel, bool) or not isinstance(channel, (int, float)):
            raise AugmentError(f"{where}: invalid colour {value!r}; every channel must be a number")
        if not 0.0 <= float(channel) <= 1.0:
            raise AugmentError(
                f"{where}: colour channel {channel!r} is outside [0, 1]; colours are in pixel "
                "units where 1.0 is 255"
            )
        channels.append(float(channel))
    return tuple(channels)  # type: ignore[return-value]


def _coerce(spec: ParamSpec, value: Any, where: str) -> Any:
    """Check one parameter value against its spec and return it in canonical form."""
    bounds = f"[{spec.low:g}, {spec.high:g}]" if spec.low is not None and spec.high is not None else ""
    unit = f" {spec.unit}" if spec.unit else ""
    if spec.kind == "bool":
        if not isinstance(value, bool):
            raise AugmentError(f"{where}: {spec.name} must be true or false, got {value!r}")
        return value
    if spec.kind == "choice":
        if value not in spec.choices:
            raise AugmentError(
                f"{where}: invalid {spec.name} {value!r}; choose one of {', '.join(spec.choices)}"
            )
        return value
    if spec.kind == "color":
        return parse_color(value, f"{where}: {spec.name}")

    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise AugmentError(f"{where}: {spec.name} must be a number, got {value!r}")
    if not math.isfinite(value):
        raise AugmentError(f"{where}: {spec.name} must be a finite number, got {value!r}")
    if spec.kind == "int":
        if value != int(value):
            raise AugmentError(f"{where}: {spec.name} must be a whole number, got {value!r}")
        value = int(value)
    else:
        value = float(value)
    if (spec.low is not None and value < spec.low) or (spec.high is not None and value > spec.high):
        raise AugmentError(
            f"{where}: {spec.name} {value!r} is outside {bounds}{unit}; choose a value in that range "
            f"({spec.help})"
        )
    return value


def to_json_value(value: Any) -> Any:
    """Return a parameter value as plain JSON data (tuples become lists)."""
    if isinstance(value, tuple):
        return [to_json_value(item) for item in value]
    return value


# --------------------------------------------------------------------------------------------
# Images
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _InputForm:
    """The form in which a caller passed images, kept so the output can take the same form."""

    single: bool
    pil: bool


def as_batch(images: Any, where: str, *, batch_only: bool = False) -> tuple[torch.Tensor, _InputForm]:
    """Return ``images`` as an ``(N, 3, H, W)`` tensor and the form to restore afterwards.

    Accepts a batch ``(N, 3, H, W)``, a single image ``(3, H, W)`` and, unless ``batch_only``, a
    PIL image. Tensors must be ``uint8`` (0..255) or floating point (0..1); the values are not
    checked, because that would cost a pass over every batch.
    """
    if isinstance(images, Image.Image):
        if batch_only:
            raise AugmentError(
                f"{where} mixes images of a batch, so it needs a tensor of shape (N, 3, H, W), not "
                "a PIL image; stack images with torch.stack([pil_to_tensor(im) for im in images])"
            )
        from torchvision.transforms.v2.functional import pil_to_tensor

        return pil_to_tensor(images.convert("RGB")).unsqueeze(0), _InputForm(single=True, pil=True)
    if not isinstance(images, torch.Tensor):
        kind = type(images).__name__
        hint = " (convert with torch.from_numpy)" if kind == "ndarray" else ""
        raise AugmentError(f"{where}: expected a torch.Tensor of images, got {kind}{hint}")
    if images.dtype != torch.uint8 and not images.is_floating_point():
        raise AugmentError(
            f"{where}: images must be uint8 (0..255) or floating point (0..1), got {images.dtype}"
        )
    if images.ndim == 3:
        if batch_only:
            raise AugmentError(
                f"{where} mixes images of a batch, so it needs shape (N, 3, H, W), got a single "
                f"image of shape {tuple(images.shape)}; pass at least two images"
            )
        batch, form = images.unsqueeze(0), _InputForm(single=True, pil=False)
    elif images.ndim == 4:
        batch, form = images, _InputForm(single=False, pil=False)
    else:
        raise AugmentError(
            f"{where}: expected images of shape (N, 3, H, W) or (3, H, W), got {tuple(images.shape)}"
        )
    if batch.shape[1] != 3:
        raise AugmentError(
            f"{where}: expected 3 colour channels in dimension 1 (channels first), got shape "
            f"{tuple(images.shape)}; permute an (N, H, W, 3) array with .permute(0, 3, 1, 2)"
        )
    return batch, form


def restore_form(batch: torch.Tensor, form: _InputForm) -> Any:
    """Undo `as_batch`: return a PIL image, a single image or the batch, as it came in."""
    if form.pil:
        from torchvision.transforms.v2.functional import to_pil_image

        return to_pil_image(to_uint8(batch[0]))
    return batch[0] if form.single else batch


def to_float(images: torch.Tensor) -> torch.Tensor:
    """Return images as floats in ``[0, 1]`` (a new tensor; float inputs keep their dtype)."""
    if images.dtype == torch.uint8:
        return images.to(torch.float32).div_(255.0)
    return images.clone()


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """Return images as ``uint8``, rounding floats in ``[0, 1]`` to the nearest level."""
    if images.dtype == torch.uint8:
        return images
    return images.mul(255.0).round_().clamp_(0, 255).to(torch.uint8)


def like_input(result: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Return a float result in ``dtype``: rounded to ``uint8`` or cast to the input's float type."""
    if dtype == torch.uint8:
        return to_uint8(result)
    return result.to(dtype)


def fill_value(color: tuple[float, float, float], images: torch.Tensor) -> torch.Tensor:
    """Return a fill colour as a ``(1, 3, 1, 1)`` tensor in the units and dtype of ``images``."""
    fill = torch.tensor(color, dtype=torch.float32, device=images.device)
    if images.dtype == torch.uint8:
        fill = (fill * 255.0).round()
    return fill.to(images.dtype).view(1, 3, 1, 1)


def expand_mask(mask: torch.Tensor) -> torch.Tensor:
    """Return a per-image boolean mask ``(N,)`` shaped ``(N, 1, 1, 1)`` to select images."""
    return mask.view(-1, 1, 1, 1)


def select(mask: torch.Tensor, if_true: torch.Tensor, if_false: torch.Tensor) -> torch.Tensor:
    """Return ``if_true`` where the broadcastable boolean ``mask`` is set, else ``if_false``.

    This is ``torch.where`` written as ``a * m + b * (1 - m)``, which is exact for a 0/1 ``m``
    (also in ``uint8``, where neither product can overflow) and on the CPU several times faster
    than ``torch.where`` with broadcasting (torch 2.14, measured on uint8 CIFAR batches).
    """
    chosen = mask.to(if_true.dtype)
    return if_true * chosen + if_false * (1 - chosen)


# --------------------------------------------------------------------------------------------
# Random numbers
# --------------------------------------------------------------------------------------------
#
# Parameters are drawn on the generator's device (the CPU when no generator is given) and then
# moved to the device of the images. A CPU generator therefore works with CUDA images: only the
# small per-image parameter tensors cross to the GPU. Gaussian noise is the exception in size
# (one number per pixel), so a generator on the images' device is faster there.


def _generator_device(generator: torch.Generator | None, device: Any) -> torch.device:
    if generator is not None:
        return generator.device
    return torch.device("cpu") if device is None else torch.device(device)


def uniform(n: int, generator: torch.Generator | None, device: Any, low: float = 0.0, high: float = 1.0) -> torch.Tensor:
    """Draw ``n`` floats uniformly in ``[low, high)``."""
    values = torch.rand(n, generator=generator, device=_generator_device(generator, device))
    return (values * (high - low) + low).to(device)


def bernoulli(n: int, p: float, generator: torch.Generator | None, device: Any) -> torch.Tensor:
    """Draw ``n`` booleans that are true with probability ``p``."""
    values = torch.rand(n, generator=generator, device=_generator_device(generator, device))
    return (values < p).to(device)


def integers(n: int, low: int, high: int, generator: torch.Generator | None, device: Any) -> torch.Tensor:
    """Draw ``n`` integers uniformly in ``[low, high]`` (both inclusive) as ``int64``."""
    values = torch.randint(
        low, high + 1, (n,), generator=generator, device=_generator_device(generator, device)
    )
    return values.to(device)


def normal(shape: tuple[int, ...], generator: torch.Generator | None, device: Any) -> torch.Tensor:
    """Draw standard normal floats of ``shape``."""
    values = torch.randn(shape, generator=generator, device=_generator_device(generator, device))
    return values.to(device)


def permutation(n: int, generator: torch.Generator | None, device: Any) -> torch.Tensor:
    """Draw a random permutation of ``0..n-1``."""
    return torch.randperm(n, generator=generator, device=_generator_device(generator, device)).to(device)


def beta(n: int, alpha: float, generator: torch.Generator | None, device: Any) -> torch.Tensor:
    """Draw ``n`` samples of Beta(alpha, alpha) as ``float32``.

    ``torch.distributions.Beta`` cannot take a ``torch.Generator``, so the samples come from two
    Gamma(alpha) draws, ``X / (X + Y)``, with the generator-aware ``torch._standard_gamma``. The
    draws are made in float64: for small alpha (0.1 and below) float32 Gammas underflow to 0,
    and when both do the sample is set to 0 or 1 with equal chance, where its mass is.
    """
    source_device = _generator_device(generator, device)
    concentration = torch.full((2, n), float(alpha), dtype=torch.float64, device=source_device)
    # NOTE: torch._standard_gamma is private; torch 2.14 (pinned in requirements.txt) has it.
    gammas = torch._standard_gamma(concentration, generator=generator)
    total = gammas[0] + gammas[1]
    coin = torch.rand(n, generator=generator, device=source_device, dtype=torch.float64) < 0.5
    samples = torch.where(total > 0, gammas[0] / total.clamp_min(1e-300), coin.to(torch.float64))
    return samples.to(torch.float32).to(device)


# --------------------------------------------------------------------------------------------
# Operations
# --------------------------------------------------------------------------------------------


class Operation:
    """Base of every augmentation: a frozen dataclass of parameters with sample and apply steps.

    Subclasses set ``name`` (the key in recipes), ``title`` (for people), declare their
    parameters with `param`, and implement `sample_params` and `apply`. ``apply`` never modifies
    its input and returns images of the input's dtype and form (batch, single image or, for
    operations that are not ``batch_only``, a PIL image).

    Class attributes:
        batch_only: the operation mixes images of a batch (mixup, blend, cutmix).
        mixes_labels: the operation changes the targets (see `MixingOperation.mix_targets`).
        exact_on_uint8: the result on ``uint8`` input is exact (no rounding), so the batch
            augmenter may run it before converting the batch to float.
    """

    name: ClassVar[str] = ""
    title: ClassVar[str] = ""
    batch_only: ClassVar[bool] = False
    mixes_labels: ClassVar[bool] = False
    exact_on_uint8: ClassVar[bool] = False

    def __post_init__(self) -> None:
        for spec in self.param_specs():
            value = _coerce(spec, getattr(self, spec.name), self.title or self.name)
            object.__setattr__(self, spec.name, value)
        self.validate()

    def validate(self) -> None:
        """Check combinations of parameters; single values are checked against their spec."""

    @classmethod
    def param_specs(cls) -> tuple[ParamSpec, ...]:
        """Return the parameters in declaration order, each with its name filled in."""
        specs = []
        for field in dataclasses.fields(cls):  # type: ignore[arg-type]
            spec = field.metadata.get("spec")
            if spec is not None:
                specs.append(dataclasses.replace(spec, name=field.name))
        return tuple(specs)

    def params(self) -> dict[str, Any]:
        """Return the parameter values by name."""
        return {spec.name: getattr(self, spec.name) for spec in self.param_specs()}

    def to_dict(self) -> dict[str, Any]:
        """Return ``{"op": name, **parameters}`` as plain JSON data."""
        return {"op": self.name, **{key: to_json_value(value) for key, value in self.params().items()}}

    def python_call(self) -> str:
        """Return the Python expression that builds this operation, e.g. ``Cutout(size=16)``."""
        arguments = ", ".join(f"{key}={value!r}" for key, value in self.params().items())
        return f"{type(self).__name__}({arguments})"

    def sample_params(
        self,
        n: int,
        generator: torch.Generator | None = None,
        device: Any = None,
        image_size: tuple[int, int] = (IMAGE_SIZE, IMAGE_SIZE),
    ) -> Params:
        """Draw the random parameters for ``n`` images.

        The draws use ``generator`` (the global torch RNG when it is ``None``) on the generator's
        device and are then moved to ``device``. ``image_size`` is ``(height, width)``.
        """
        raise NotImplementedError

    def apply(self, images: Any, params: Mapping[str, torch.Tensor]) -> Any:
        """Apply the operation with fixed ``params`` (as returned by `sample_params`)."""
        raise NotImplementedError

    def __call__(self, images: Any, generator: torch.Generator | None = None) -> Any:
        """Draw parameters and apply them in one step."""
        batch, _ = as_batch(images, self.title, batch_only=self.batch_only)
        params = self.sample_params(
            batch.shape[0], generator, batch.device, image_size=tuple(batch.shape[-2:])
        )
        return self.apply(images, params)

    # Helpers for subclasses.

    def _check_count(self, n: int) -> None:
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise AugmentError(f"{self.title}: the number of images must be an integer >= 0, got {n!r}")

    def _check_params(self, params: Mapping[str, torch.Tensor], keys: Sequence[str], n: int) -> None:
        missing = [key for key in keys if key not in params]
        if missing:
            raise AugmentError(
                f"{self.title}: params lack {', '.join(missing)}; pass the dict that "
                f"{type(self).__name__}.sample_params returned"
            )
        for key in keys:
            if params[key].shape[0] != n:
                raise AugmentError(
                    f"{self.title}: params[{key!r}] was drawn for {params[key].shape[0]} images but "
                    f"the batch has {n}; call sample_params({n}, ...) for this batch"
                )


def box_bounds(center: torch.Tensor, side: torch.Tensor | int, limit: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Return the clipped ``[start, end)`` of a segment of length ``side`` around ``center``.

    The segment starts at ``center - side // 2`` and has exactly ``side`` pixels before clipping,
    so for an odd side the centre pixel is the middle one and for an even side it is the pixel
    just after the middle. Both ends are then clipped to ``[0, limit]``.
    """
    start = center - torch.div(torch.as_tensor(side, device=center.device), 2, rounding_mode="floor")
    end = start + side
    return start.clamp(0, limit), end.clamp(0, limit)


def box_mask(
    top: torch.Tensor, left: torch.Tensor, bottom: torch.Tensor, right: torch.Tensor, height: int, width: int
) -> torch.Tensor:
    """Return a boolean mask ``(N, H, W)`` that is true inside each image's ``[top, bottom) x [left, right)``."""
    rows = torch.arange(height, device=top.device)
    cols = torch.arange(width, device=top.device)
    inside_rows = (rows >= top[:, None]) & (rows < bottom[:, None])
    inside_cols = (cols >= left[:, None]) & (cols < right[:, None])
    return inside_rows[:, :, None] & inside_cols[:, None, :]
