"""The training configuration: one frozen dataclass with every hyperparameter of a run."""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import re
from dataclasses import dataclass, field
from typing import Any, Mapping

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("onecycle", "cosine", "step", "none")
MONITORS = ("val_acc", "val_loss")

# Each offline copy adds the whole training split again as uint8 images on the training device,
# 45,000 images x 3,072 bytes = 138 MB per copy. So 10 copies take about 1.5 GB, and building
# them briefly needs about twice that in host memory.
MAX_OFFLINE_COPIES = 10

# "auto", "cpu", "mps", "cuda" or "cuda:N".
_DEVICE_PATTERN = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


def _standard_recipe() -> dict[str, Any]:
    from cifarlab.augment import PRESETS

    return PRESETS["standard"].to_dict()


@dataclass(frozen=True)
class TrainConfig:
    """Every hyperparameter of a training run, saved in each checkpoint and start record.

    Building one validates every field: an invalid value raises ``ValueError`` naming the field,
    the value and the valid range. ``to_dict`` and ``from_dict`` round-trip through plain JSON
    values.
    """

    # Model.
    arch: str = "resnet"  # registry name, one of cifarlab.models.list_archs()
    arch_options: dict[str, Any] = field(default_factory=dict)  # keyword options of the builder

    # Optimizer.
    optimizer: str = "sgd"  # sgd, adam or adamw
    lr: float = 0.05  # peak learning rate, reached after the warm-up
    momentum: float = 0.9  # SGD momentum in [0, 1); Adam and AdamW ignore it
    nesterov: bool = True  # SGD with Nesterov momentum (needs momentum > 0)
    # Applied to weights with two or more dimensions (conv kernels, linear matrices), never to
    # biases or normalization parameters: L2 penalty for sgd and adam, decoupled for adamw.
    weight_decay: float = 5e-4
    batch_size: int = 128  # images per optimizer step, summed over all processes
    epochs: int = 15  # passes over the training split

    # Learning-rate schedule, updated after every step.
    schedule: str = "onecycle"  # onecycle, cosine, step or none
    # Epochs (fractions allowed) of linear warm-up from 0 to lr. None picks the schedule's
    # default: 30% of the run for onecycle (its rising phase), 0 for the others.
    warmup_epochs: float | None = None
    step_size_epochs: int = 5  # "step" schedule: epochs between two decays
    step_gamma: float = 0.1  # "step" schedule: factor applied at each decay, in (0, 1]

    # Loss.
    label_smoothing: float = 0.0  # share of each target spread evenly over all classes, [0, 1)

    # Augmentation: a cifarlab.augment.Recipe as a dict (Recipe.to_dict()); a preset name such
    # as "standard" is accepted and stored as that preset's dict.
    recipe: dict[str, Any] = field(default_factory=_standard_recipe)

    # Data.
    data_source: str = "bundled"  # cifarlab.data.load_cifar10 source when train() loads the data
    data_path: str | None = None  # that source's archive or folder; None for its default
    val_size: int = 5000  # training images held out for validation; 0 disables validation
    split_seed: int = 0  # seed of the stratified train/validation split
    # Train on this many images of the training split (class-balanced, picked with split_seed)
    # for quick classroom runs; None uses the whole split.
    train_subset: int | None = None
    # Offline augmentation: this many augmented copies of every training-split image (after
    # train_subset) are made once with offline_recipe and added before training, so every epoch
    # trains on the same copies. 0 turns it off. Validation and test images are never copied.
    offline_copies: int = 0
    # The recipe that makes those copies, in the same forms as recipe; None when offline_copies=0.
    offline_recipe: dict[str, Any] | None = None

    # Model selection and early stopping, both on the validation split, never the test set.
    monitor: str = "val_acc"  # metric that picks the best epoch: val_acc (max) or val_loss (min)
    patience: int | None = None  # stop after this many epochs without improvement; 0/None = off
    min_delta: float = 0.0  # smallest change of the monitored metric that counts as improvement

    # Reproducibility and hardware.
    seed: int = 0  # seeds weight initialization, shuffling, augmentation and dropout
    device: str = "auto"  # auto (cuda, then mps, then cpu), cpu, mps, cuda or cuda:N
    channels_last: bool = False  # NHWC memory layout for model and batches (faster on GPUs)
    amp: bool = True  # mixed precision (bfloat16, or float16 with loss scaling) on CUDA only
    eval_batch_size: int = 512  # images per forward pass when evaluating
    num_threads: int | None = None  # CPU threads for torch; None keeps torch's default

    # Reporting.
    log_every_steps: int = 1  # emit a batch record every N steps (N > 1 avoids a GPU sync)
    evaluate_test: bool = True  # measure test accuracy once, on the final best model

    def __post_init__(self) -> None:
        _validate(self)

    def __hash__(self) -> int:
        # The generated hash would fail on the dict fields; equal configs have equal JSON.
        return hash(json.dumps(self.to_dict(), sort_keys=True))

    @property
    def monitor_mode(self) -> str:
        """Direction in which the monitored metric improves: "max" or "min"."""
        return "max" if self.monitor == "val_acc" else "min"

    @property
    def early_stopping(self) -> bool:
        """Whether early stopping is on (``patience`` is a positive number of epochs)."""
        return bool(self.patience)

    def effective_warmup_epochs(self) -> float:
        """Return the warm-up length in epochs, with the schedule's default filled in."""
        if self.warmup_epochs is not None:
            return self.warmup_epochs
        return 0.3 * self.epochs if self.schedule == "onecycle" else 0.0

    def to_dict(self) -> dict[str, Any]:
        """Return every field as plain JSON values (dicts are deep copies)."""
        return {f.name: copy.deepcopy(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "TrainConfig":
        """Build a config from ``to_dict`` output; missing fields take their defaults.

        Raises:
            ValueError: on an unknown field or an invalid value.
        """
        if not isinstance(values, Mapping):
            raise ValueError(f"a training config must be a dict of fields, got {type(values).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(
                f"unknown training config field(s) {', '.join(map(repr, unknown))}; "
                f"valid fields: {', '.join(sorted(known))}"
            )
        return cls(**copy.deepcopy(dict(values)))

    def replace(self, **changes: Any) -> "TrainConfig":
        """Return a copy with some fields changed, validated like a new config."""
        return dataclasses.replace(self, **changes)


# --- validation -----------------------------------------------------------------------------


def _invalid(name: str, value: Any, expected: str) -> ValueError:
    return ValueError(f"invalid {name}={value!r}: expected {expected}")


def _check_choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise _invalid(name, value, "one of " + ", ".join(choices))


def _check_int(
    name: str, value: Any, minimum: int, *, maximum: int | None = None, optional: bool = False
) -> None:
    if optional and value is None:
        return
    # bool is a subclass of int, but True as a batch size is a mistake, not a 1.
    valid = not isinstance(value, bool) and isinstance(value, int) and value >= minimum
    if valid and maximum is not None:
        valid = value <= maximum
    if not valid:
        if maximum is None:
            expected = f"an integer >= {minimum}"
        else:
            expected = f"an integer from {minimum} to {maximum}"
        raise _invalid(name, value, expected + (" or None" if optional else ""))


def _check_float(
    name: str,
    value: Any,
    *,
    low: float,
    high: float = math.inf,
    low_open: bool = False,
    high_open: bool = False,
    optional: bool = False,
) -> None:
    if optional and value is None:
        return
    in_range = (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(value)
        and (value > low if low_open else value >= low)
        and (value < high if high_open else value <= high)
    )
    if not in_range:
        left = "(" if low_open else "["
        right = ")" if high_open or high == math.inf else "]"
        upper = "inf" if high == math.inf else f"{high:g}"
        expected = f"a number in {left}{low:g}, {upper}{right}" + (" or None" if optional else "")
        raise _invalid(name, value, expected)


def _check_bool(name: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise _invalid(name, value, "true or false")


def _validate(config: TrainConfig) -> None:
    _validate_model(config)

    _check_choice("optimizer", config.optimizer, OPTIMIZERS)
    _check_float("lr", config.lr, low=0.0, low_open=True)
    _check_float("momentum", config.momentum, low=0.0, high=1.0, high_open=True)
    _check_bool("nesterov", config.nesterov)
    if config.optimizer == "sgd" and config.nesterov and config.momentum == 0:
        raise _invalid("momentum", config.momentum, "a value > 0 with nesterov=True (or nesterov=False)")
    _check_float("weight_decay", config.weight_decay, low=0.0)
    _check_int("batch_size", config.batch_size, 1)
    _check_int("epochs", config.epochs, 1)

    _check_choice("schedule", config.schedule, SCHEDULES)
    _check_float("warmup_epochs", config.warmup_epochs, low=0.0, high=config.epochs, optional=True)
    _check_int("step_size_epochs", config.step_size_epochs, 1)
    _check_float("step_gamma", config.step_gamma, low=0.0, high=1.0, low_open=True)

    _check_float("label_smoothing", config.label_smoothing, low=0.0, high=1.0, high_open=True)
    _validate_recipe(config)

    from cifarlab.data import SOURCES

    _check_choice("data_source", config.data_source, tuple(SOURCES))
    if config.data_path is not None and not isinstance(config.data_path, str):
        raise _invalid("data_path", config.data_path, "a file or folder path as a string, or None")
    _check_int("val_size", config.val_size, 0)
    _check_int("split_seed", config.split_seed, 0)
    _check_int("train_subset", config.train_subset, 1, optional=True)
    _validate_offline(config)

    _check_choice("monitor", config.monitor, MONITORS)
    _check_int("patience", config.patience, 0, optional=True)
    if config.patience and config.val_size == 0:
        raise _invalid("patience", config.patience, "0 or None when val_size=0 (no validation split)")
    _check_float("min_delta", config.min_delta, low=0.0)

    _check_int("seed", config.seed, 0)
    if not isinstance(config.device, str) or not _DEVICE_PATTERN.match(config.device):
        raise _invalid("device", config.device, "auto, cpu, mps, cuda or cuda:N")
    _check_bool("channels_last", config.channels_last)
    _check_bool("amp", config.amp)
    _check_int("eval_batch_size", config.eval_batch_size, 1)
    _check_int("num_threads", config.num_threads, 1, optional=True)

    _check_int("log_every_steps", config.log_every_steps, 1)
    _check_bool("evaluate_test", config.evaluate_test)


def _validate_model(config: TrainConfig) -> None:
    from cifarlab.models import list_archs, resolve_options

    _check_choice("arch", config.arch, tuple(list_archs()))
    if not isinstance(config.arch_options, dict):
        raise _invalid("arch_options", config.arch_options, "a dict of builder options by name")
    try:
        resolve_options(config.arch, **config.arch_options)
    except (TypeError, ValueError) as error:
        raise ValueError(f"invalid arch_options={config.arch_options!r}: {error}") from None
    # A copy, so that later changes to the caller's dict cannot alter a frozen config.
    object.__setattr__(config, "arch_options", copy.deepcopy(config.arch_options))


def _validate_recipe(config: TrainConfig) -> None:
    object.__setattr__(config, "recipe", _normalized_recipe("recipe", config.recipe))


def _validate_offline(config: TrainConfig) -> None:
    copies = config.offline_copies
    _check_int("offline_copies", copies, 0, maximum=MAX_OFFLINE_COPIES)
    if copies == 0:
        if config.offline_recipe is not None:
            # Rejected rather than ignored, so a recipe given without copies is not silently unused.
            raise _invalid(
                "offline_recipe",
                config.offline_recipe,
                "None when offline_copies=0 (set offline_copies >= 1 to use it)",
            )
        return
    if config.offline_recipe is None:
        raise _invalid(
            "offline_copies",
            copies,
            "0 when offline_recipe is None (set offline_recipe to the recipe that makes the copies)",
        )
    recipe = _normalized_recipe("offline_recipe", config.offline_recipe)
    if not recipe["operations"]:
        raise _invalid(
            "offline_recipe",
            recipe.get("name") or config.offline_recipe,
            "a recipe with at least one operation, because copies made without one duplicate the originals",
        )
    object.__setattr__(config, "offline_recipe", recipe)


def _normalized_recipe(name: str, recipe: Any) -> dict[str, Any]:
    """Return ``recipe`` (a recipe dict or a preset name) as a normalized ``Recipe.to_dict()``."""
    from cifarlab.augment import PRESETS, Recipe

    if isinstance(recipe, str):
        if recipe not in PRESETS:
            raise _invalid(name, recipe, "a recipe dict or a preset name: " + ", ".join(PRESETS))
        recipe = PRESETS[recipe].to_dict()
    if not isinstance(recipe, dict):
        raise _invalid(name, recipe, "a recipe dict (Recipe.to_dict()) or a preset name")
    try:
        # Stored in its normalized form, with every operation's defaults filled in.
        return Recipe.from_dict(recipe).to_dict()
    except ValueError as error:
        raise ValueError(f"invalid {name}: {error}") from None
