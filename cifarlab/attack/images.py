"""Attack one image or several at once; the entry points pages and the CLI call."""

from __future__ import annotations

import logging
import warnings
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from cifarlab.attack.config import (
    MISCLASSIFIED,
    SUCCESS,
    AttackConfig,
    AttackError,
    AttackResult,
    ProgressCallback,
    StopRequest,
)
from cifarlab.attack.evolution import attack_seed, evolve, model_device, predict_logits
from cifarlab.attack.pixels import apply_pixels, changed_pixels

logger = logging.getLogger(__name__)


def attack_image(
    model: nn.Module,
    image: np.ndarray | torch.Tensor,
    label: int,
    *,
    target: int | None = None,
    config: AttackConfig = AttackConfig(),
    image_id: int | None = None,
    callback: ProgressCallback | None = None,
    stop: StopRequest | None = None,
) -> AttackResult:
    """Attack one ``uint8`` image ``(3, H, W)`` of class ``label``.

    Untargeted when ``target`` is None (success: the prediction is no longer ``label``), else
    targeted (success: the prediction is ``target``). ``image_id`` (for example the test-set
    index) only enters the random seed, so the same image, seed and settings give the same
    result here and in `attack_many`.

    ``callback`` receives after the first population and after every generation a dict with
    ``event="generation"``, ``generation``, ``max_generations``, ``confidence`` (probability of
    the tracked class for the best candidate), ``fitness`` (its log-odds), ``queries`` and
    ``success``. ``stop`` is checked between generations; when set, the best candidate so far
    is returned with status ``"stopped"``.
    """
    images = as_image_batch(image, single=True)

    def report(record: dict[str, Any]) -> None:
        if callback is None:
            return
        callback(
            {
                "event": "generation",
                "generation": record["generation"],
                "max_generations": record["max_generations"],
                "confidence": record["confidence"][0],
                "fitness": record["fitness"][0],
                "queries": record["queries"][0],
                "success": record["success"][0],
                "seconds": record["seconds"],
            }
        )

    results = attack_images(
        model,
        images,
        [label],
        targets=None if target is None else [target],
        config=config,
        image_ids=None if image_id is None else [image_id],
        callback=report,
        stop=stop,
    )
    return results[0]


def attack_images(
    model: nn.Module,
    images: np.ndarray | torch.Tensor,
    labels: Sequence[int],
    *,
    targets: Sequence[int] | None = None,
    config: AttackConfig = AttackConfig(),
    image_ids: Sequence[int] | None = None,
    callback: ProgressCallback | None = None,
    stop: StopRequest | None = None,
) -> list[AttackResult]:
    """Attack several ``uint8`` images ``(N, 3, H, W)`` together, one result per image.

    The populations of all images still searching are stacked into the same forward batches.
    Each image draws from its own seeded random stream (from ``config.seed``, its
    ``image_ids`` entry or its position, and its target), so its result does not depend on which
    other images share the batch. An image the model already misclassifies is not attacked and
    gets status ``"misclassified"``.

    ``callback`` receives per generation a dict with ``event="generation"``, ``generation``,
    ``max_generations``, ``seconds``, and per image lists ``confidence``, ``fitness``,
    ``queries``, ``success`` and ``searching`` (still running after this generation); images
    that were not attacked have ``None`` entries.
    """
    check_model(model)
    batch = as_image_batch(images, single=False)
    count = batch.shape[0]
    labels = _as_class_list("labels", labels, count)
    targets = None if targets is None else _as_class_list("targets", targets, count)
    given_ids = image_ids is not None
    if image_ids is None:
        image_ids = list(range(count))
    elif len(image_ids) != count:
        raise AttackError(f"image_ids has {len(image_ids)} entries for {count} images; give one per image")
    if config.pixels > batch.shape[2] * batch.shape[3]:
        raise AttackError(f"invalid pixels {config.pixels}: the images have only {batch.shape[2] * batch.shape[3]} pixels")

    device = model_device(model)
    batch = batch.to(device)
    # One image per forward pass, so an image's clean prediction never depends on which images
    # share its batch (convolution kernels may round differently for other batch sizes).
    clean_logits = predict_logits(model, batch, batch_size=1)
    num_classes = clean_logits.shape[1]
    _check_classes("labels", labels, num_classes)
    if targets is not None:
        _check_classes("targets", targets, num_classes)
        for position, (label, target) in enumerate(zip(labels, targets)):
            if label == target:
                raise AttackError(
                    f"target {target} of image {image_ids[position]} is its true class; choose "
                    "another class for a targeted attack"
                )
    clean_probs = torch.softmax(clean_logits, dim=1)
    clean_preds = clean_logits.argmax(dim=1)

    attacked = [position for position in range(count) if int(clean_preds[position]) == labels[position]]
    tracked = targets if targets is not None else labels
    seeds = [
        attack_seed(config.seed, image_ids[position], None if targets is None else targets[position])
        for position in attacked
    ]

    outcomes: dict[int, _Outcome] = {}
    if attacked:

        def report(record: dict[str, Any]) -> None:
            if callback is None:
                return
            full = {"event": "generation"}
            for key, value in record.items():
                if isinstance(value, list):
                    spread = [None] * count
                    for slot, position in enumerate(attacked):
                        spread[position] = value[slot]
                    value = spread
                full[key] = value
            callback(full)

        searched = evolve(
            model,
            batch[attacked],
            torch.tensor([tracked[position] for position in attacked], dtype=torch.long),
            targeted=targets is not None,
            config=config,
            seeds=seeds,
            callback=report,
            stop=stop,
        )
        outcomes = dict(zip(attacked, searched))

    results = []
    originals = batch.cpu()
    for position in range(count):
        original = originals[position]
        base = dict(
            label=labels[position],
            target=None if targets is None else targets[position],
            original=original.numpy().copy(),
            probs_before=clean_probs[position].tolist(),
            pred_before=int(clean_preds[position]),
            config=config,
            image_id=int(image_ids[position]) if given_ids else None,
        )
        outcome = outcomes.get(position)
        if outcome is None:
            results.append(
                AttackResult(
                    adversarial=original.numpy().copy(),
                    changed=[],
                    probs_after=clean_probs[position].tolist(),
                    pred_after=int(clean_preds[position]),
                    success=False,
                    status=MISCLASSIFIED,
                    generations=0,
                    queries=0,
                    confidence_history=[],
                    seconds=0.0,
                    **base,
                )
            )
            continue
        adversarial = apply_pixels(original[None], outcome.candidate[None])[0].numpy()
        probs_after = torch.softmax(outcome.logits, dim=0)
        results.append(
            AttackResult(
                adversarial=adversarial,
                changed=changed_pixels(base["original"], adversarial),
                probs_after=probs_after.tolist(),
                pred_after=int(outcome.logits.argmax()),
                success=outcome.status == SUCCESS,
                status=outcome.status,
                generations=outcome.generations,
                queries=outcome.queries,
                confidence_history=outcome.history,
                seconds=outcome.seconds,
                **base,
            )
        )
    return results


# --- inputs ----------------------------------------------------------------------------------


def check_model(model: nn.Module) -> None:
    if model.training:
        # Batch-norm and dropout in training mode would make the prediction depend on the rest
        # of the batch and on chance, so no attack result would be reproducible.
        raise AttackError("the model is in training mode; call model.eval() before attacking it")


def as_image_batch(images: np.ndarray | torch.Tensor, single: bool) -> torch.Tensor:
    """Return ``images`` as a uint8 tensor ``(N, 3, H, W)``, sharing memory with a numpy input."""
    with warnings.catch_warnings():
        # A cached data set is a read-only array. Sharing it is safe because the attack never
        # writes into its input: every perturbed image is a copy.
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        tensor = torch.as_tensor(images)
    expected = 3 if single else 4
    if tensor.dtype != torch.uint8 or tensor.ndim != expected or tensor.shape[-3] != 3:
        shape = "(3, H, W)" if single else "(N, 3, H, W)"
        raise AttackError(
            f"the image{'' if single else 's'} must be uint8 of shape {shape} with values 0..255, "
            f"got {tensor.dtype} {tuple(tensor.shape)}"
        )
    if single:
        tensor = tensor[None]
    if tensor.shape[0] == 0:
        raise AttackError("no images to attack; pass at least one")
    return tensor


def _as_class_list(name: str, values: Sequence[int], count: int) -> list[int]:
    values = [int(value) for value in torch.as_tensor(values).flatten().tolist()]
    if len(values) != count:
        raise AttackError(f"{name} has {len(values)} entries for {count} images; give one per image")
    return values


def _check_classes(name: str, values: Sequence[int], num_classes: int) -> None:
    for value in values:
        if not 0 <= value < num_classes:
            raise AttackError(f"invalid class {value} in {name}: the model has classes 0..{num_classes - 1}")
