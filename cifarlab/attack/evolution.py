"""The few-pixel attack: differential evolution over pixel candidates, batched on the model.

The search follows Su, Vargas and Sakurai, "One pixel attack for fooling deep neural networks",
IEEE Transactions on Evolutionary Computation, 2019 (doi:10.1109/TEVC.2019.2890858). A candidate
is ``(row, col, r, g, b)`` for each changed pixel. The first population draws coordinates
uniformly over the image and colours from a normal distribution with mean 128 and standard
deviation 127, clipped to 0..255. Each generation makes one child per candidate with DE/rand/1,
``x_r0 + F * (x_r1 - x_r2)`` with ``F = 0.5`` and no crossover, and a child replaces its parent
only when it is better. The paper runs 400 candidates for up to 100 generations, and
`AttackConfig` defaults to the same.

Two choices here go beyond the paper:

- candidates are rounded and clipped to the integer pixel grid as soon as they are made, so the
  adversarial image is exactly the ``uint8`` image the model classified;
- the fitness is the log-odds ``log(p / (1 - p))`` of the true class (untargeted, minimized) or of
  the target class (targeted, maximized). Log-odds increases with ``p``, so it ranks candidates
  exactly as the probability does, but it stays resolved when a confident model's softmax
  rounds ``p`` to 1.0 in float32.

The search stops early for an image as soon as one evaluated candidate succeeds: the prediction
leaves the true class (untargeted) or reaches the target class (targeted). It also stops when
the population has become one candidate repeated, because DE/rand/1 can then only copy it. On
the shipped LeNet-5 that ends most failing searches after 40 to 60 generations.
`cifarlab.attack.queries.CandidateScorer` scores the candidates.

Why torch and not ``scipy.optimize.differential_evolution``: ``benchmarks/bench_attack.py
--compare-scipy`` ran both on the shipped LeNet-5 with the same budget (1 pixel, 400 candidates,
up to 100 generations), the same first population, decoding, fitness and candidate scorer, and
scipy's ``vectorized=True``, ``polish=False``, ``rand1bin`` with recombination 1.0. On 8
correctly classified test images, with one torch thread on a 2-core Intel Xeon, this search took
1.7 s and scipy's 5.5 s, with the same 3 successes (docs/BENCHMARKS.md, "Attack"). scipy keeps
its candidates as real numbers and the decoding rounds them, so its population never becomes one
candidate: it made 174,678 model queries to this search's 80,608. The torch version also
batches several images into one forward pass, keeps a separate random stream per image (an
image's result does not depend on the others in its batch), and runs on the model's device.
"""


from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch
from torch import nn

from cifarlab.attack.config import FAILED, STOPPED, SUCCESS, AttackConfig, ProgressCallback, StopRequest
from cifarlab.attack.pixels import VALUES_PER_PIXEL, candidate_bounds, snap_candidates
from cifarlab.attack.queries import CandidateScorer

logger = logging.getLogger(__name__)


@dataclass
class _Outcome:
    candidate: torch.Tensor  # (5 * P,) integer values
    logits: torch.Tensor  # (C,) logits of the adversarial image built from the candidate
    fitness: float
    status: str
    generations: int
    queries: int
    history: list[float] = field(default_factory=list)
    seconds: float = 0.0


def evolve(
    model: nn.Module,
    images: torch.Tensor,
    classes: torch.Tensor,
    *,
    targeted: bool,
    config: AttackConfig,
    seeds: Sequence[int],
    callback: ProgressCallback,
    stop: StopRequest | None,
) -> list[_Outcome]:
    """Run differential evolution for each image of ``images`` (all correctly classified).

    ``classes`` contains the true class of each image (untargeted) or its target (targeted). The
    population and its bookkeeping stay on the CPU (a few kilobytes per image); only the
    candidate images go to the model's device.
    """
    count, _, height, width = images.shape
    popsize, pixels = config.popsize, config.pixels
    dims = VALUES_PER_PIXEL * pixels
    lower, upper = candidate_bounds(height, width, pixels)
    generators = [torch.Generator().manual_seed(seed) for seed in seeds]
    scorer = CandidateScorer(
        model, images, batch_size=config.eval_batch_size, memo=config.memo, incremental=config.incremental
    )
    started = time.perf_counter()

    population = torch.stack(
        [_initial_population(generator, popsize, pixels, height, width) for generator in generators]
    )
    owners = torch.arange(count).repeat_interleave(popsize)
    logits, fresh = scorer.score(population.view(-1, dims), owners)
    logits = logits.view(count, popsize, -1)
    fitness = _fitness(logits, classes[:, None], targeted)

    queries = fresh.view(count, popsize).sum(dim=1).tolist()
    generations = [0] * count
    histories: list[list[float]] = [[] for _ in range(count)]
    finished: list[_Outcome | None] = [None] * count
    for image in range(count):
        finished[image] = _success(
            scorer, image, population[image], logits[image], fitness[image], classes, targeted,
            generations=0, queries=queries[image], started=started,
        )
    _record(range(count), logits, fitness, classes, histories, finished)
    _report(callback, 0, config, logits, fitness, classes, queries, finished, histories, started)

    for generation in range(1, config.generations + 1):
        searching = [image for image in range(count) if finished[image] is None]
        if not searching:
            break
        if stop is not None and stop.is_set():
            logger.info("attack stopped by request after %d generations", generation - 1)
            break

        trials = torch.stack(
            [_make_children(population[image], generators[image], config) for image in searching]
        )
        trials = snap_candidates(trials, lower, upper)
        trial_owners = torch.tensor(searching).repeat_interleave(popsize)
        trial_logits, fresh = scorer.score(trials.view(-1, dims), trial_owners)
        trial_logits = trial_logits.view(len(searching), popsize, -1)
        trial_fitness = _fitness(trial_logits, classes[searching][:, None], targeted)
        fresh = fresh.view(len(searching), popsize).sum(dim=1).tolist()

        # A child that reaches the goal ends its image's search even when its fitness is not
        # better than its parent's (another class can overtake the true one while the true
        # class's probability rises).
        for slot, image in enumerate(searching):
            queries[image] += fresh[slot]
            generations[image] = generation
            finished[image] = _success(
                scorer, image, trials[slot], trial_logits[slot], trial_fitness[slot], classes, targeted,
                generations=generation, queries=queries[image], started=started,
            )

        better = trial_fitness < fitness[searching]
        index = torch.tensor(searching)
        population[index] = torch.where(better[..., None], trials, population[index])
        fitness[index] = torch.where(better, trial_fitness, fitness[index])
        logits[index] = torch.where(better[..., None], trial_logits, logits[index])

        # DE/rand/1 makes every child from differences of candidates, so a population of one
        # candidate repeated can only copy it: the rest of the budget could not change the
        # result, and the search ends here.
        for image in searching:
            if finished[image] is None and bool((population[image] == population[image, :1]).all()):
                finished[image] = _best(
                    scorer, image, population[image], fitness[image], classes, targeted, FAILED,
                    generations=generation, queries=queries[image], started=started,
                )
        _record(searching, logits, fitness, classes, histories, finished)
        _report(callback, generation, config, logits, fitness, classes, queries, finished, histories, started)

    stopped = stop is not None and stop.is_set()
    for image in range(count):
        if finished[image] is None:
            status = STOPPED if stopped and generations[image] < config.generations else FAILED
            finished[image] = _best(
                scorer, image, population[image], fitness[image], classes, targeted, status,
                generations=generations[image], queries=queries[image], started=started,
            )
        finished[image].history = histories[image]
    return list(finished)


def _success(
    scorer, image, candidates, logits, fitness, classes, targeted, *, generations, queries, started
) -> _Outcome | None:
    """Return the fittest candidate that reaches the goal, confirmed by the whole model, or None.

    The scorer's logits may be incremental. So a candidate counts only when the whole model,
    classifying its image alone, agrees, and the outcome keeps that pass's logits.
    """
    hits = _hits(logits, classes[image], targeted)
    if not hits.any():
        return None
    order = torch.where(hits, fitness, math.inf).argsort()[: int(hits.sum())]
    for row in order.tolist():
        confirmed = scorer.reference(candidates[row][None], torch.tensor([image]))[0]
        if bool(_hits(confirmed, classes[image], targeted)):
            return _conclude(
                scorer, image, candidates[row], confirmed, classes, targeted, SUCCESS,
                generations=generations, queries=queries, started=started,
            )
        logger.warning(
            "image %d: a candidate that succeeded in batched scoring failed when the whole model "
            "classified it alone; the search goes on",
            image,
        )
    return None


def _best(
    scorer, image, population, fitness, classes, targeted, status, *, generations, queries, started
) -> _Outcome:
    """Return the population's fittest candidate, with the whole model's logits, as ``status``."""
    candidate = population[int(fitness.argmin())]
    confirmed = scorer.reference(candidate[None], torch.tensor([image]))[0]
    return _conclude(
        scorer, image, candidate, confirmed, classes, targeted, status,
        generations=generations, queries=queries, started=started,
    )


def _conclude(
    scorer, image, candidate, logits, classes, targeted, status, *, generations, queries, started
) -> _Outcome:
    """End an image's search with ``candidate`` and the whole model's ``logits`` for it."""
    scorer.forget(image)
    return _Outcome(
        candidate=candidate.clone(),
        logits=logits,
        fitness=float(_fitness(logits, classes[image], targeted)),
        status=status,
        generations=generations,
        queries=queries,
        seconds=time.perf_counter() - started,
    )


def _record(images, logits, fitness, classes, histories, finished) -> None:
    """Append each image's tracked-class probability (of the winner once it has one)."""
    for image in images:
        outcome = finished[image]
        if outcome is not None and outcome.status == SUCCESS:
            chosen = outcome.logits
        else:
            chosen = logits[image, fitness[image].argmin()]
        histories[image].append(float(torch.softmax(chosen, dim=0)[classes[image]]))


def _report(callback, generation, config, logits, fitness, classes, queries, finished, histories, started) -> None:
    count = len(histories)
    fitness_now = []
    for image in range(count):
        outcome = finished[image]
        if outcome is not None and outcome.status == SUCCESS:
            fitness_now.append(outcome.fitness)
        else:
            fitness_now.append(float(fitness[image].min()))
    callback(
        {
            "generation": generation,
            "max_generations": config.generations,
            "seconds": time.perf_counter() - started,
            "confidence": [history[-1] for history in histories],
            "fitness": fitness_now,
            "queries": list(queries),
            "success": [outcome is not None and outcome.status == SUCCESS for outcome in finished],
            "searching": [outcome is None for outcome in finished],
        }
    )


def _initial_population(
    generator: torch.Generator, popsize: int, pixels: int, height: int, width: int
) -> torch.Tensor:
    """Draw the first population as the paper does: uniform coordinates, colours ~ N(128, 127)."""
    rows = torch.randint(0, height, (popsize, pixels, 1), generator=generator).float()
    cols = torch.randint(0, width, (popsize, pixels, 1), generator=generator).float()
    colours = torch.normal(128.0, 127.0, (popsize, pixels, 3), generator=generator)
    colours = colours.round().clamp(0.0, 255.0)
    return torch.cat([rows, cols, colours], dim=2).view(popsize, pixels * VALUES_PER_PIXEL)


def _make_children(population: torch.Tensor, generator: torch.Generator, config: AttackConfig) -> torch.Tensor:
    """Make one DE/rand/1 child per candidate, with binomial crossover when ``crossover < 1``."""
    popsize, dims = population.shape
    picks = _distinct_partners(popsize, generator)
    mutants = population[picks[:, 0]] + config.mutation * (population[picks[:, 1]] - population[picks[:, 2]])
    if config.crossover >= 1.0:
        return mutants
    from_mutant = torch.rand(popsize, dims, generator=generator) < config.crossover
    # At least one value comes from the mutant, so a child never copies its parent.
    forced = torch.randint(0, dims, (popsize,), generator=generator)
    from_mutant[torch.arange(popsize), forced] = True
    return torch.where(from_mutant, mutants, population)


def _distinct_partners(popsize: int, generator: torch.Generator) -> torch.Tensor:
    """Return ``(popsize, 3)`` indices, distinct from each other and from their row's index.

    Each index is drawn uniformly from the indices not yet excluded: a draw ``u`` from
    ``0 .. popsize - k - 1`` is shifted past each excluded index ``s <= u`` in ascending order.
    """
    excluded = torch.arange(popsize)[:, None]
    picks = []
    for taken in range(1, 4):
        draw = torch.randint(0, popsize - taken, (popsize,), generator=generator)
        for column in torch.sort(excluded, dim=1).values.unbind(dim=1):
            draw = draw + (draw >= column).long()
        picks.append(draw)
        excluded = torch.cat([excluded, draw[:, None]], dim=1)
    return torch.stack(picks, dim=1)


def _fitness(logits: torch.Tensor, classes: torch.Tensor, targeted: bool) -> torch.Tensor:
    """Return the value to minimize: the tracked class's log-odds, negated when targeted."""
    index = classes.expand(logits.shape[:-1])[..., None]
    chosen = logits.gather(-1, index).squeeze(-1)
    others = torch.logsumexp(logits.scatter(-1, index, -math.inf), dim=-1)
    log_odds = chosen - others
    return -log_odds if targeted else log_odds


def _hits(logits: torch.Tensor, classes: torch.Tensor, targeted: bool) -> torch.Tensor:
    predictions = logits.argmax(dim=-1)
    return predictions == classes if targeted else predictions != classes


# --- model queries -------------------------------------------------------------------------


def attack_seed(seed: int, image_id: int, target: int | None) -> int:
    """Derive one image's random seed from the run's seed, the image and its target."""
    entropy = [seed, int(image_id) % 2**32, 0 if target is None else target + 1]
    return int(np.random.SeedSequence(entropy).generate_state(1, dtype=np.uint64)[0] >> 1)


def predict_logits(model: nn.Module, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """Return the model's float32 logits, on the CPU, for ``uint8`` images ``(N, 3, H, W)``."""
    device = model_device(model)
    outputs = []
    with torch.inference_mode():
        for start in range(0, images.shape[0], batch_size):
            chunk = images[start : start + batch_size].to(device)
            outputs.append(model(chunk.float().div_(255.0)).float().cpu())
    return torch.cat(outputs)


def model_device(model: nn.Module) -> torch.device:
    for tensor in model.parameters():
        return tensor.device
    for tensor in model.buffers():
        return tensor.device
    return torch.device("cpu")
