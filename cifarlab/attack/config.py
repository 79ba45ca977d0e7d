"""Settings and results of the few-pixel attack."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Callable, Protocol

import numpy as np

from cifarlab.attack.pixels import PixelChange

# Outcomes of one attack.
SUCCESS = "success"
# The search ended without success: its budget ran out, or its population became one candidate
# repeated, which differential evolution can only copy.
FAILED = "failed"
STOPPED = "stopped"  # a stop request ended the search; the result is the best candidate so far
MISCLASSIFIED = "misclassified"  # the model already gets the clean image wrong; not attacked
SKIPPED = "skipped"  # a stop request came before this image's attack began
STATUSES = (SUCCESS, FAILED, STOPPED, MISCLASSIFIED, SKIPPED)

MAX_PIXELS = 5


class AttackError(ValueError):
    """An attack request that cannot run; the message names the value and the fix."""


class StopRequest(Protocol):
    """Anything with ``is_set()``, such as `threading.Event`."""

    def is_set(self) -> bool: ...


ProgressCallback = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class AttackConfig:
    """Settings of the differential evolution; the defaults are those of Su, Vargas and Sakurai (2019)."""

    pixels: int = 1  # pixels changed per image, 1..5
    popsize: int = 400  # candidates per generation
    generations: int = 100  # generations after the first population; 0 evaluates only that one
    mutation: float = 0.5  # differential weight F of DE/rand/1
    # Binomial crossover rate CR: the chance that each value comes from the mutant rather than
    # the parent. 1.0 takes the mutant whole: no crossover, as Su, Vargas and Sakurai run it.
    crossover: float = 1.0
    # Candidate images per forward pass. It bounds memory and changes the search only through
    # float rounding, which some convolution kernels do differently for other batch sizes.
    eval_batch_size: int = 400
    seed: int = 0
    # How candidates are scored (cifarlab.attack.queries); neither changes the search's settings.
    # memo: a candidate proposed again for the same image is not sent to the model again.
    memo: bool = True
    # incremental: recompute only the first-layer outputs a changed pixel reaches, for the
    # networks that support it (LeNet-5, MLP). The whole model always confirms a success.
    incremental: bool = True

    def __post_init__(self):
        _check_int("pixels", self.pixels, 1, MAX_PIXELS)
        _check_int("popsize", self.popsize, 4, 100_000, why="DE/rand/1 needs 4 distinct candidates")
        _check_int("generations", self.generations, 0, 100_000)
        _check_int("eval_batch_size", self.eval_batch_size, 1, 1_000_000)
        _check_int("seed", self.seed, 0, 2**63 - 1)
        for name in ("memo", "incremental"):
            if not isinstance(getattr(self, name), bool):
                raise AttackError(f"invalid {name} {getattr(self, name)!r}: use True or False")
        if not (isinstance(self.mutation, (int, float)) and 0.0 < self.mutation <= 2.0):
            raise AttackError(f"invalid mutation {self.mutation!r}: use a number in (0, 2]; the paper uses 0.5")
        if not (isinstance(self.crossover, (int, float)) and 0.0 <= self.crossover <= 1.0):
            raise AttackError(f"invalid crossover {self.crossover!r}: use a number in [0, 1]; 1.0 means no crossover")

    @property
    def max_queries(self) -> int:
        """Candidates a search that runs its whole budget scores; with the memo, an upper bound on its queries."""
        return self.popsize * (self.generations + 1)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _check_int(name: str, value: Any, minimum: int, maximum: int, why: str = "") -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= maximum:
        reason = f" ({why})" if why else ""
        raise AttackError(f"invalid {name} {value!r}: use an integer from {minimum} to {maximum}{reason}")


@dataclass
class AttackResult:
    """The outcome of attacking one image.

    ``adversarial`` is the ``uint8`` image ``(3, H, W)`` whose probabilities are
    ``probs_after``: the model classified exactly this image. ``changed`` lists the pixels where
    it differs from ``original``. ``queries`` counts the distinct candidate images the model
    classified during the search; a candidate the search proposes again is scored from memory
    and not counted again (the clean image's own evaluation is not included either). For a search that ended
    without success, ``adversarial`` is the best candidate found.
    """

    label: int
    target: int | None
    original: np.ndarray
    adversarial: np.ndarray
    changed: list[PixelChange]
    probs_before: list[float]
    probs_after: list[float]
    pred_before: int
    pred_after: int
    success: bool
    status: str
    generations: int
    queries: int
    # Probability of the tracked class (true class, or target class when targeted) for the best
    # candidate, after the first population (index 0) and after each generation.
    confidence_history: list[float]
    seconds: float
    config: AttackConfig
    image_id: int | None = None

    @property
    def targeted(self) -> bool:
        return self.target is not None

    @property
    def tracked_class(self) -> int:
        """The class whose probability the search lowers (untargeted) or raises (targeted)."""
        return self.target if self.target is not None else self.label

    @property
    def attacked(self) -> bool:
        """True when a search ran on this image (it was correctly classified)."""
        return self.status in (SUCCESS, FAILED, STOPPED)

    def to_dict(self, include_images: bool = False) -> dict[str, Any]:
        """Return plain JSON-ready data; images only when ``include_images``."""
        data = {
            "image_id": self.image_id,
            "label": self.label,
            "target": self.target,
            "targeted": self.targeted,
            "status": self.status,
            "success": self.success,
            "pred_before": self.pred_before,
            "pred_after": self.pred_after,
            "probs_before": self.probs_before,
            "probs_after": self.probs_after,
            "changed_pixels": [change.to_dict() for change in self.changed],
            "generations": self.generations,
            "queries": self.queries,
            "seconds": self.seconds,
            "confidence_history": self.confidence_history,
            "config": self.config.to_dict(),
        }
        if include_images:
            data["original"] = self.original.tolist()
            data["adversarial"] = self.adversarial.tolist()
        return data


