"""Registry entries: each architecture's builder, options and published reference accuracy."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from cifarlab.models.classifier import Classifier


class ModelError(ValueError):
    """An unknown architecture or an invalid option; the message names the value and the choices."""


@dataclass(frozen=True)
class Option:
    """One keyword option of a builder, with its default and the values it accepts.

    ``kind`` is ``bool``, ``int``, ``float``, ``str`` or ``list`` (a list of positive ints).
    ``choices`` restricts the value to a fixed set; ``minimum``/``maximum`` bound a number.
    ``length`` fixes the length of a list.
    """

    name: str
    default: Any
    kind: type
    help: str
    choices: tuple[Any, ...] | None = None
    minimum: float | None = None
    maximum: float | None = None
    length: int | None = None

    def validate(self, arch: str, value: Any) -> Any:
        """Return ``value`` converted to a plain Python value, or raise ModelError."""
        where = f"option {self.name}={value!r} for arch {arch!r}"
        if self.kind is bool:
            if not isinstance(value, bool):
                raise ModelError(f"invalid {where}: expected true or false")
            return value
        if self.kind is list:
            return self._validate_list(where, value)
        if self.kind is int:
            if isinstance(value, bool) or not isinstance(value, int):
                raise ModelError(f"invalid {where}: expected an integer")
        elif self.kind is float:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ModelError(f"invalid {where}: expected a number")
            value = float(value)
        elif self.kind is str:
            if not isinstance(value, str):
                raise ModelError(f"invalid {where}: expected a string")
        if self.choices is not None and value not in self.choices:
            choices = ", ".join(repr(choice) for choice in self.choices)
            raise ModelError(f"invalid {where}: valid values are {choices}")
        if self.minimum is not None and value < self.minimum:
            raise ModelError(f"invalid {where}: the minimum is {self.minimum}")
        if self.maximum is not None and value > self.maximum:
            raise ModelError(f"invalid {where}: the maximum is {self.maximum}")
        return value

    def _validate_list(self, where: str, value: Any) -> list[int]:
        if not isinstance(value, (list, tuple)):
            raise ModelError(f"invalid {where}: expected a list of positive integers")
        if self.length is not None and len(value) != self.length:
            raise ModelError(f"invalid {where}: expected {self.length} values, got {len(value)}")
        for item in value:
            if isinstance(item, bool) or not isinstance(item, int) or item < 1:
                raise ModelError(f"invalid {where}: {item!r} is not a positive integer")
        return [int(item) for item in value]


@dataclass(frozen=True)
class ArchSpec:
    """A registry entry: one name, one builder, and the facts its model card shows.

    ``builder(num_classes, options, fetch_weights)`` receives validated options with every
    default filled in. ``reference_accuracy`` is a published top-1 accuracy on the canonical
    CIFAR-10 test set (a fraction), or None where none is published for this layout;
    ``reference_source`` names where the figure comes from and under which training, or why
    there is none.
    """

    name: str
    builder: Callable[[int, dict[str, Any], bool], Classifier]
    summary: str
    family: str
    options: tuple[Option, ...] = field(default_factory=tuple)
    reference_accuracy: float | None = None
    reference_source: str = "none published"

    def resolve_options(self, options: dict[str, Any]) -> dict[str, Any]:
        """Validate ``options`` and return them with every default filled in."""
        known = {option.name: option for option in self.options}
        unknown = sorted(set(options) - set(known))
        if unknown:
            valid = ", ".join(known) if known else "none"
            raise ModelError(
                f"unknown option {unknown[0]!r} for arch {self.name!r}; valid options: {valid}"
            )
        resolved = {}
        for name, option in known.items():
            value = options.get(name, option.default)
            resolved[name] = option.validate(self.name, value)
        return resolved
