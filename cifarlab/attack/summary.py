"""Robustness over many images: the attack's success rate, kept honest, and a random baseline.

The bookkeeping rules of `attack_many`:

- repeated indices count once: the summary is over distinct images;
- an image the model already misclassifies is reported as such and not attacked;
- the success rate is successes over correctly classified images whose attack ran to its end, so
  it can never exceed 100%; clean accuracy and accuracy under attack are reported beside it;
- a targeted attack succeeds only when the prediction becomes its target class. With
  ``target_mode="random"`` each image gets one other class, drawn from a generator seeded by the
  run's seed and the image's index. With ``target_mode="all"`` each image is attacked towards
  every other class, and it counts as fooled when at least one target is reached.
"""

from __future__ import annotations

import logging
import statistics
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from cifarlab.attack.config import (
    FAILED,
    MISCLASSIFIED,
    SKIPPED,
    STOPPED,
    SUCCESS,
    AttackConfig,
    AttackError,
    AttackResult,
    ProgressCallback,
    StopRequest,
)
from cifarlab.attack.evolution import model_device, predict_logits
from cifarlab.attack.queries import evaluate_candidates
from cifarlab.attack.images import as_image_batch, attack_images, check_model
from cifarlab.attack.pixels import VALUES_PER_PIXEL

logger = logging.getLogger(__name__)

TARGET_MODES = ("random", "all")


@dataclass
class ImageOutcome:
    """The outcome of one distinct image in `attack_many`.

    ``status`` is ``"misclassified"`` (not attacked), ``"fooled"`` (at least one attack
    succeeded), ``"robust"`` (every attack ran its whole budget without success), ``"stopped"``
    (a stop request interrupted an attack) or ``"skipped"`` (a stop request came first).
    """

    image_id: int
    label: int
    pred_before: int
    status: str
    results: list[AttackResult] = field(default_factory=list)

    @property
    def correct(self) -> bool:
        return self.status != "misclassified"

    def to_dict(self) -> dict[str, Any]:
        return {
            "image_id": self.image_id,
            "label": self.label,
            "pred_before": self.pred_before,
            "status": self.status,
            "attacks": [result.to_dict() for result in self.results],
        }


@dataclass
class AttackSummary:
    """The result of attacking many images, with every count the rates come from."""

    config: AttackConfig
    targeted: bool
    target_mode: str | None  # "random" or "all" when targeted, else None
    n_requested: int  # indices given, repeats included
    images: list[ImageOutcome]  # one per distinct image, in first-seen order
    seconds: float

    @property
    def n_images(self) -> int:
        return len(self.images)

    @property
    def n_correct(self) -> int:
        return sum(outcome.correct for outcome in self.images)

    @property
    def n_misclassified(self) -> int:
        return self.n_images - self.n_correct

    @property
    def n_fooled(self) -> int:
        return sum(outcome.status == "fooled" for outcome in self.images)

    @property
    def n_completed(self) -> int:
        """Correctly classified images whose attacks all ran to their end."""
        return sum(outcome.status in ("fooled", "robust") for outcome in self.images)

    @property
    def complete(self) -> bool:
        """True unless a stop request left some correctly classified image unfinished."""
        return self.n_completed == self.n_correct

    @property
    def clean_accuracy(self) -> float | None:
        return self.n_correct / self.n_images if self.n_images else None

    @property
    def success_rate(self) -> float | None:
        """Fooled images over correctly classified images whose attack finished."""
        return self.n_fooled / self.n_completed if self.n_completed else None

    @property
    def accuracy_under_attack(self) -> float | None:
        """``(correct - fooled) / images``, known only when every attack finished."""
        if not self.complete or not self.n_images:
            return None
        return (self.n_correct - self.n_fooled) / self.n_images

    @property
    def attempts(self) -> list[AttackResult]:
        """Every search that ran to its end (one per target in ``"all"`` mode)."""
        return [
            result
            for outcome in self.images
            for result in outcome.results
            if result.status in (SUCCESS, FAILED)
        ]

    @property
    def attempt_success_rate(self) -> float | None:
        """Successful searches over finished searches; differs from the success rate only in
        ``"all"`` mode, where each image has one search per target."""
        attempts = self.attempts
        if not attempts:
            return None
        return sum(result.success for result in attempts) / len(attempts)

    @property
    def mean_queries(self) -> float | None:
        """Mean model queries per finished search."""
        attempts = self.attempts
        return statistics.fmean(result.queries for result in attempts) if attempts else None

    @property
    def median_queries(self) -> float | None:
        attempts = self.attempts
        return statistics.median(result.queries for result in attempts) if attempts else None

    def successes(self) -> list[AttackResult]:
        """Return the successful searches, in image order."""
        return [result for outcome in self.images for result in outcome.results if result.success]

    def to_dict(self, include_attacks: bool = True) -> dict[str, Any]:
        data = {
            "config": self.config.to_dict(),
            "targeted": self.targeted,
            "target_mode": self.target_mode,
            "n_requested": self.n_requested,
            "n_images": self.n_images,
            "n_correct": self.n_correct,
            "n_misclassified": self.n_misclassified,
            "n_completed": self.n_completed,
            "n_fooled": self.n_fooled,
            "complete": self.complete,
            "clean_accuracy": self.clean_accuracy,
            "success_rate": self.success_rate,
            "accuracy_under_attack": self.accuracy_under_attack,
            "attempts": len(self.attempts),
            "attempt_success_rate": self.attempt_success_rate,
            "mean_queries": self.mean_queries,
            "median_queries": self.median_queries,
            "seconds": self.seconds,
        }
        if include_attacks:
            data["images"] = [outcome.to_dict() for outcome in self.images]
        return data


def sample_indices(total: int, count: int, seed: int = 0) -> list[int]:
    """Return the first ``count`` entries of a seeded permutation of ``range(total)``.

    A smaller sample with the same seed is a prefix of a larger one, so runs over 20 and over
    100 images share their first 20 images.
    """
    if not 1 <= count <= total:
        raise AttackError(f"invalid number of images {count}: choose from 1 to {total}")
    return np.random.default_rng(seed).permutation(total)[:count].tolist()


def random_target(seed: int, image_id: int, label: int, num_classes: int) -> int:
    """Draw the target of one image for ``target_mode="random"``: any class but ``label``."""
    draw = int(np.random.default_rng([seed, int(image_id)]).integers(num_classes - 1))
    return draw + 1 if draw >= label else draw


def attack_many(
    model: nn.Module,
    images: np.ndarray | torch.Tensor,
    labels: Sequence[int] | np.ndarray | torch.Tensor,
    indices: Sequence[int] | None = None,
    *,
    config: AttackConfig = AttackConfig(),
    targeted: bool = False,
    target_mode: str = "random",
    num_classes: int = 10,
    images_per_batch: int = 4,
    callback: ProgressCallback | None = None,
    stop: StopRequest | None = None,
) -> AttackSummary:
    """Attack the images ``images[indices]`` and summarize the outcome honestly.

    ``images`` and ``labels`` are a whole split (``uint8`` ``(N, 3, H, W)`` and ``(N,)``);
    ``indices`` picks the images to attack (all of them when None) and may repeat an index.
    ``images_per_batch`` searches run together in one forward batch. ``callback`` receives the
    per-generation records of `attack_images` with ``done`` and ``total`` (searches finished and
    planned) added, and after each batch one record per image with ``event="image"``, ``done``,
    ``total``, ``image_id`` and the image's ``results`` from that batch.
    ``stop`` is checked between generations and between batches.
    """
    check_model(model)
    batch = as_image_batch(images, single=False)
    labels = torch.as_tensor(labels).flatten().tolist()
    if len(labels) != batch.shape[0]:
        raise AttackError(f"labels has {len(labels)} entries for {batch.shape[0]} images; give one per image")
    if targeted and target_mode not in TARGET_MODES:
        raise AttackError(f"invalid target_mode {target_mode!r}: use one of {', '.join(TARGET_MODES)}")
    if images_per_batch < 1:
        raise AttackError(f"invalid images_per_batch {images_per_batch}: use 1 or more")
    if indices is None:
        indices = range(batch.shape[0])
    indices = [int(index) for index in indices]
    for index in indices:
        if not 0 <= index < batch.shape[0]:
            raise AttackError(f"image index {index} is out of range: the split has {batch.shape[0]} images")
    distinct = list(dict.fromkeys(indices))
    started = time.perf_counter()

    # One search per (image, target); untargeted searches have target None.
    plan: list[tuple[int, int | None]] = []
    for image_id in distinct:
        label = labels[image_id]
        if not targeted:
            plan.append((image_id, None))
        elif target_mode == "random":
            plan.append((image_id, random_target(config.seed, image_id, label, num_classes)))
        else:
            plan.extend((image_id, target) for target in range(num_classes) if target != label)

    # Clean predictions first, so a misclassified image costs no search at all.
    clean = predict_logits(model, batch[distinct], batch_size=1)
    predictions = dict(zip(distinct, clean.argmax(dim=1).tolist()))
    searches = [(image_id, target) for image_id, target in plan if predictions[image_id] == labels[image_id]]

    by_image: dict[int, list[AttackResult]] = {image_id: [] for image_id in distinct}
    done = 0
    for start in range(0, len(searches), images_per_batch):
        chunk = searches[start : start + images_per_batch]
        if stop is not None and stop.is_set():
            break

        def report(record: dict[str, Any], done: int = done) -> None:
            if callback is not None:
                callback({**record, "done": done, "total": len(searches)})

        ids = [image_id for image_id, _ in chunk]
        results = attack_images(
            model,
            batch[ids],
            [labels[image_id] for image_id in ids],
            targets=None if not targeted else [target for _, target in chunk],
            config=config,
            image_ids=ids,
            callback=report,
            stop=stop,
        )
        for image_id, result in zip(ids, results):
            by_image[image_id].append(result)
        # Each image record counts the searches finished up to and including that image's.
        for image_id in dict.fromkeys(ids):
            finished = [result for searched, result in zip(ids, results) if searched == image_id]
            done += len(finished)
            if callback is not None:
                callback(
                    {"event": "image", "done": done, "total": len(searches), "image_id": image_id, "results": finished}
                )

    # Misclassified images get a result too (probabilities, no search), so every image can be
    # shown; attack_images does no search for them.
    missed: dict[int, int | None] = {}
    for image_id, target in plan:
        if predictions[image_id] != labels[image_id]:
            missed.setdefault(image_id, target)
    if missed:
        ids = list(missed)
        results = attack_images(
            model,
            batch[ids],
            [labels[image_id] for image_id in ids],
            targets=None if not targeted else [missed[image_id] for image_id in ids],
            config=config,
            image_ids=ids,
        )
        for image_id, result in zip(ids, results):
            by_image[image_id].append(result)

    outcomes = [
        _image_outcome(image_id, labels[image_id], predictions[image_id], by_image[image_id])
        for image_id in distinct
    ]
    summary = AttackSummary(
        config=config,
        targeted=targeted,
        target_mode=target_mode if targeted else None,
        n_requested=len(indices),
        images=outcomes,
        seconds=time.perf_counter() - started,
    )
    logger.info(
        "attacked %d of %d images: %d fooled, %d misclassified before the attack",
        summary.n_completed,
        summary.n_images,
        summary.n_fooled,
        summary.n_misclassified,
    )
    return summary


def _image_outcome(image_id: int, label: int, prediction: int, results: list[AttackResult]) -> ImageOutcome:
    """Fold one image's searches into its outcome, trusting each search's own clean check."""
    if prediction != label or any(result.status == MISCLASSIFIED for result in results):
        status = "misclassified"
        results = [result for result in results if result.status == MISCLASSIFIED][:1]
    elif any(result.success for result in results):
        status = "fooled"
    elif any(result.status == STOPPED for result in results):
        status = "stopped"
    elif results and all(result.status == FAILED for result in results):
        status = "robust"
    else:
        status = SKIPPED
    return ImageOutcome(image_id=image_id, label=label, pred_before=prediction, status=status, results=results)


@dataclass
class BaselineResult:
    """How often ``trials`` random changes of ``pixels`` pixels change a correct prediction."""

    pixels: int
    trials: int
    n_images: int
    n_correct: int
    flips: list[int]  # per correctly classified image: trials whose prediction left the label
    seconds: float

    @property
    def flip_rate(self) -> float | None:
        """Fraction of all trials on correct images that changed the prediction."""
        if not self.n_correct:
            return None
        return sum(self.flips) / (self.n_correct * self.trials)

    @property
    def fooled_rate(self) -> float | None:
        """Fraction of correct images that at least one trial fooled; the attack's counterpart
        at a budget of ``trials`` queries per image."""
        if not self.n_correct:
            return None
        return sum(count > 0 for count in self.flips) / self.n_correct

    def to_dict(self) -> dict[str, Any]:
        return {
            "pixels": self.pixels,
            "trials": self.trials,
            "n_images": self.n_images,
            "n_correct": self.n_correct,
            "flip_rate": self.flip_rate,
            "fooled_rate": self.fooled_rate,
            "seconds": self.seconds,
        }


def random_pixel_baseline(
    model: nn.Module,
    images: np.ndarray | torch.Tensor,
    labels: Sequence[int] | np.ndarray | torch.Tensor,
    pixels: int,
    trials: int,
    generator: torch.Generator | int = 0,
    *,
    eval_batch_size: int = 400,
) -> BaselineResult:
    """Set ``pixels`` random pixels to random colours, ``trials`` times per image.

    Positions are uniform over the image and colours uniform over 0..255 per channel. Only
    correctly classified images are tried; a trial counts when the prediction is no longer the
    label. ``generator`` is a seeded `torch.Generator` or a seed.
    """
    check_model(model)
    batch = as_image_batch(images, single=False)
    labels = torch.as_tensor(labels).flatten().tolist()
    if len(labels) != batch.shape[0]:
        raise AttackError(f"labels has {len(labels)} entries for {batch.shape[0]} images; give one per image")
    AttackConfig(pixels=pixels)  # validates the pixel count
    if isinstance(trials, bool) or not isinstance(trials, int) or trials < 1:
        raise AttackError(f"invalid trials {trials!r}: use an integer of 1 or more")
    if isinstance(generator, int):
        generator = torch.Generator().manual_seed(generator)
    started = time.perf_counter()

    clean = predict_logits(model, batch, batch_size=1)
    correct = [index for index, label in enumerate(labels) if int(clean[index].argmax()) == label]
    _, _, height, width = batch.shape
    count = len(correct)
    rows = torch.randint(0, height, (count, trials, pixels, 1), generator=generator)
    cols = torch.randint(0, width, (count, trials, pixels, 1), generator=generator)
    colours = torch.randint(0, 256, (count, trials, pixels, 3), generator=generator)
    candidates = torch.cat([rows, cols, colours], dim=3).view(count * trials, pixels * VALUES_PER_PIXEL)
    owners = torch.arange(count).repeat_interleave(trials)
    device = model_device(model)
    logits = evaluate_candidates(model, batch[correct].to(device), candidates.float(), owners, eval_batch_size)
    predictions = logits.argmax(dim=1).view(count, trials)
    flips = [int((predictions[slot] != labels[index]).sum()) for slot, index in enumerate(correct)]
    return BaselineResult(
        pixels=pixels,
        trials=trials,
        n_images=batch.shape[0],
        n_correct=len(correct),
        flips=flips,
        seconds=time.perf_counter() - started,
    )
