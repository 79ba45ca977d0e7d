"""Measure the few-pixel attack: speed against scipy and torchattacks, live latency, success rates.

Sections (all by default, or pick with the flags):

- ``--compare-scoring``: the same search with candidates scored by the whole model every time,
  with the memo of earlier candidates, and with the memo and incremental first layers (the
  default), and whether all three gave identical results.
- ``--compare-scipy``: cifarlab's torch differential evolution against
  ``scipy.optimize.differential_evolution`` (``vectorized=True``, ``polish=False``, DE/rand/1,
  F = 0.5, recombination 1.0, the same first population and the same integer decoding and
  fitness), one image at a time, interleaved per image, plus the torch version with all images
  in one batch.
- ``--compare-torchattacks``: ``torchattacks.OnePixel`` at the same budget (total population,
  generations, pixels) on the same model and images, interleaved per image. torchattacks is a
  benchmark-only dependency (``benchmarks/requirements.txt``).
- ``--live``: wall and CPU time of `cifarlab.attack.attack_image` with Su, Vargas and
  Sakurai's budget (400 candidates, up to 100 generations, 1 pixel), one image at a time: the
  time a student waits.
- ``--rates``: `attack_many` success rates for 1, 3 and 5 pixels on each model, with the
  random-pixel baseline beside them.
- ``--forward-cost ARCH ...``: the time of one generation's forward pass for registry
  architectures, trained or not, and the longest a search could take at that rate.

Every section attacks only test images the model classifies correctly, taken in the order of a
seeded permutation of the test set (`cifarlab.attack.sample_indices`). Models come from
``--checkpoint`` (repeatable); without it, every shipped checkpoint, and if there is none, a
small CNN that ``--prepare-model`` trains once (its configuration is printed).

    .venv/bin/python benchmarks/bench_attack.py --checkpoint checkpoints/lenet.pt --images 20
    .venv/bin/python benchmarks/bench_attack.py --compare-torchattacks --images 10
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import time
from pathlib import Path

import numpy as np
import torch
from scipy.optimize import differential_evolution

from cifarlab import paths
from cifarlab.attack import (
    AttackConfig,
    attack_image,
    attack_images,
    attack_many,
    predict_logits,
    random_pixel_baseline,
    sample_indices,
)
from cifarlab.attack.evolution import _fitness, _hits, _initial_population, attack_seed
from cifarlab.attack.queries import CandidateScorer
from cifarlab.attack.pixels import VALUES_PER_PIXEL, candidate_bounds, snap_candidates
from cifarlab.checkpoints import list_checkpoints, load_checkpoint
from cifarlab.data import load_cifar10

# Imported before any timing starts, so no section pays for an import.
try:
    import torchattacks
except ImportError as error:
    torchattacks, TORCHATTACKS_ERROR = None, error

FALLBACK_MODEL = paths.cache_dir() / "bench-attack" / "cnn-width16.pt"


# --------------------------------------------------------------------------------------------
# Models and images


def prepare_fallback_model() -> Path:
    """Train the fallback model once: the registry CNN at width 16, 3 epochs, standard recipe."""
    from cifarlab.train import TrainConfig, train

    if FALLBACK_MODEL.is_file():
        return FALLBACK_MODEL
    config = TrainConfig(
        arch="cnn",
        arch_options={"width": 16},
        epochs=3,
        batch_size=128,
        recipe="standard",
        device="cpu",
        amp=False,
        evaluate_test=False,
    )
    print(f"training the fallback model: {config}", flush=True)
    FALLBACK_MODEL.parent.mkdir(parents=True, exist_ok=True)
    train(config, load_cifar10(), checkpoint_path=FALLBACK_MODEL)
    return FALLBACK_MODEL


def benchmark_models(requested: list[str]) -> list[Path]:
    if requested:
        return [Path(path) for path in requested]
    shipped = [info.path for info in list_checkpoints() if info.protected and info.error is None]
    if shipped:
        return shipped
    if FALLBACK_MODEL.is_file():
        return [FALLBACK_MODEL]
    raise SystemExit("no model to attack: pass --checkpoint PATH, ship a checkpoint, or run --prepare-model first")


def correct_images(model, data, count: int, seed: int) -> list[int]:
    """Return the first ``count`` correctly classified test indices of a seeded permutation."""
    order = sample_indices(len(data.test_labels), len(data.test_labels), seed)
    chosen = []
    for start in range(0, len(order), 500):
        block = order[start : start + 500]
        predictions = predict_logits(model, torch.from_numpy(np.array(data.test_images[block]))).argmax(dim=1)
        chosen += [index for index, prediction in zip(block, predictions.tolist()) if prediction == data.test_labels[index]]
        if len(chosen) >= count:
            return chosen[:count]
    return chosen


def test_accuracy(model, data, limit: int = 2000) -> float:
    indices = sample_indices(len(data.test_labels), limit, 12345)
    predictions = predict_logits(model, torch.from_numpy(np.array(data.test_images[indices]))).argmax(dim=1).numpy()
    return float((predictions == data.test_labels[indices]).mean())


# --------------------------------------------------------------------------------------------
# scipy's differential evolution with the same first population, decoding and fitness


def scipy_attack(model, image: np.ndarray, label: int, config: AttackConfig, image_id: int) -> dict:
    """Untargeted attack with ``scipy.optimize.differential_evolution``; returns success and queries."""
    height, width = image.shape[1:]
    lower, upper = candidate_bounds(height, width, config.pixels)
    generator = torch.Generator().manual_seed(attack_seed(config.seed, image_id, None))
    first = _initial_population(generator, config.popsize, config.pixels, height, width)
    images = torch.from_numpy(image)[None]
    label_tensor = torch.tensor([label])
    state = {"queries": 0, "success": False}
    # The same scoring as the torch search (memo and incremental first layers), so the two
    # differ only in the search loop.
    scorer = CandidateScorer(
        model, images, batch_size=config.eval_batch_size, memo=config.memo, incremental=config.incremental
    )

    def objective(vectors: np.ndarray) -> np.ndarray:
        # vectorized=True passes the candidates as columns: shape (values, candidates).
        candidates = snap_candidates(torch.from_numpy(vectors.T).float(), lower, upper)
        owners = torch.zeros(candidates.shape[0], dtype=torch.long)
        logits, fresh = scorer.score(candidates, owners)
        state["queries"] += int(fresh.sum())
        if _hits(logits, label_tensor, targeted=False).any():
            state["success"] = True
        return _fitness(logits, label_tensor, targeted=False).numpy().astype(np.float64)

    differential_evolution(
        objective,
        bounds=list(zip(lower.tolist(), upper.tolist())),
        strategy="rand1bin",
        maxiter=config.generations,
        init=first.numpy().astype(np.float64),
        mutation=config.mutation,
        recombination=1.0,
        polish=False,
        vectorized=True,
        updating="deferred",
        tol=0.0,
        atol=0.0,
        seed=config.seed,
        callback=lambda intermediate_result: state["success"],
    )
    return state


# --------------------------------------------------------------------------------------------
# Sections


class Clock:
    """Wall time and this process's CPU time of a block. On a shared machine the CPU time is the
    steadier figure, because waiting for a core counts in the wall time only."""

    def __enter__(self):
        self.wall_start, self.cpu_start = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc_info):
        self.wall = time.perf_counter() - self.wall_start
        self.cpu = time.process_time() - self.cpu_start
        return False


def compare_scipy(model, data, indices: list[int], config: AttackConfig) -> dict:
    rows = {"torch": [], "scipy": []}
    for index in indices:
        image, label = np.array(data.test_images[index]), int(data.test_labels[index])
        with Clock() as clock:
            result = attack_image(model, image, label, config=config, image_id=index)
        rows["torch"].append((clock, result.success, result.queries))
        with Clock() as clock:
            outcome = scipy_attack(model, image, label, config, index)
        rows["scipy"].append((clock, outcome["success"], outcome["queries"]))

    with Clock() as clock:
        batched = attack_images(
            model,
            np.array(data.test_images[indices]),
            data.test_labels[indices].tolist(),
            config=config,
            image_ids=indices,
        )
    summary = {name: _totals(entries) for name, entries in rows.items()}
    summary["torch, all images in one batch"] = {
        "wall_s": clock.wall,
        "cpu_s": clock.cpu,
        "successes": sum(result.success for result in batched),
        "queries": sum(result.queries for result in batched),
        "images": len(indices),
    }
    return summary


def compare_torchattacks(model, data, indices: list[int], config: AttackConfig) -> dict:
    if torchattacks is None:
        return {"error": f"torchattacks could not be imported: {TORCHATTACKS_ERROR}"}

    dims = VALUES_PER_PIXEL * config.pixels
    # torchattacks sizes its population as max(1, popsize // values) * values, so both sides
    # get the same total population.
    population = max(1, config.popsize // dims) * dims
    ours = AttackConfig(
        pixels=config.pixels, popsize=population, generations=config.generations, seed=config.seed
    )
    attack = torchattacks.OnePixel(model, pixels=config.pixels, steps=config.generations, popsize=population, inf_batch=config.eval_batch_size)
    rows = {"cifarlab": [], "torchattacks": []}
    quantized_successes = 0
    for index in indices:
        image, label = np.array(data.test_images[index]), int(data.test_labels[index])
        with Clock() as clock:
            result = attack_image(model, image, label, config=ours, image_id=index)
        rows["cifarlab"].append((clock, result.success, result.queries))

        inputs = torch.from_numpy(image)[None].float() / 255
        with Clock() as clock:
            adversarial = attack(inputs, torch.tensor([label]))
        with torch.inference_mode():
            success = int(model(adversarial).argmax()) != label
            # torchattacks writes colours in [0, 1] without rounding to 8-bit values; count
            # how many of its successes survive saving the image as uint8.
            quantized = torch.round(adversarial * 255) / 255
            quantized_successes += int(success and int(model(quantized).argmax()) != label)
        rows["torchattacks"].append((clock, success, None))
    summary = {name: _totals(entries) for name, entries in rows.items()}
    summary["torchattacks"]["successes_after_uint8_rounding"] = quantized_successes
    summary["population"] = population
    summary["torchattacks_version"] = torchattacks.__version__
    return summary


# The scoring variants, from the whole model on every candidate to the default.
SCORING = {
    "whole model, every candidate": dict(memo=False, incremental=False),
    "memo": dict(memo=True, incremental=False),
    "memo + incremental first layers": dict(memo=True, incremental=True),
}


def compare_scoring(model, data, indices: list[int], config: AttackConfig) -> dict:
    """Time the search with each way of scoring candidates, interleaved per image.

    All variants run the same search. ``identical`` is True when every image got the same
    status, adversarial image and generations under each of them.
    """
    rows = {name: [] for name in SCORING}
    results = {name: [] for name in SCORING}
    for index in indices:
        image, label = np.array(data.test_images[index]), int(data.test_labels[index])
        for name, scoring in SCORING.items():
            settings = AttackConfig(**{**config.to_dict(), **scoring})
            with Clock() as clock:
                result = attack_image(model, image, label, config=settings, image_id=index)
            rows[name].append((clock, result.success, result.queries))
            results[name].append(result)
    summary = {name: _totals(entries) for name, entries in rows.items()}
    first, *others = results.values()
    summary["identical"] = all(
        a.status == b.status and a.generations == b.generations and np.array_equal(a.adversarial, b.adversarial)
        for other in others
        for a, b in zip(first, other)
    )
    summary["generations"] = [result.generations for result in first]
    return summary


def forward_cost(archs: list[str], config: AttackConfig, repeats: int = 3) -> dict:
    """Time one generation's forward pass (``popsize`` candidate images) for each architecture.

    The weights are untrained: the time of a forward pass does not depend on them. Times
    ``generations + 1`` gives the longest a search can take, before the memo and the early ends.
    """
    from cifarlab.models import build_model

    rows = {}
    images = torch.rand(config.popsize, 3, 32, 32)
    for arch in archs:
        model = build_model(arch).eval()
        with torch.inference_mode():
            model(images[:2])
            times = []
            for _ in range(repeats):
                started = time.perf_counter()
                model(images)
                times.append(time.perf_counter() - started)
        rows[arch] = {
            "generation_s": min(times),
            "full_budget_s": min(times) * (config.generations + 1),
        }
        print(f"  {arch}: {json.dumps(rows[arch])}", flush=True)
    return rows


def live_latency(model, data, indices: list[int], config: AttackConfig) -> dict:
    walls, cpus, successes, queries = [], [], 0, []
    for index in indices:
        with Clock() as clock:
            result = attack_image(
                model, np.array(data.test_images[index]), int(data.test_labels[index]), config=config, image_id=index
            )
        walls.append(clock.wall)
        cpus.append(clock.cpu)
        successes += result.success
        queries.append(result.queries)
    return {
        "images": len(indices),
        "median_wall_s": statistics.median(walls),
        "max_wall_s": max(walls),
        "median_cpu_s": statistics.median(cpus),
        "max_cpu_s": max(cpus),
        "successes": successes,
        "median_queries": statistics.median(queries),
        "max_queries": max(queries),
    }


def success_rates(model, data, count: int, seed: int, config: AttackConfig, trials: int) -> list[dict]:
    indices = sample_indices(len(data.test_labels), count, seed)
    rows = []
    for pixels in (1, 3, 5):
        settings = AttackConfig(pixels=pixels, popsize=config.popsize, generations=config.generations, seed=seed)
        summary = attack_many(model, data.test_images, data.test_labels, indices, config=settings, images_per_batch=4)
        distinct = list(dict.fromkeys(indices))
        baseline = random_pixel_baseline(model, data.test_images[distinct], data.test_labels[distinct], pixels, trials, seed)
        rows.append(
            {
                "pixels": pixels,
                "images": summary.n_images,
                "correct": summary.n_correct,
                "clean_accuracy": summary.clean_accuracy,
                "success_rate": summary.success_rate,
                "accuracy_under_attack": summary.accuracy_under_attack,
                "mean_queries": summary.mean_queries,
                "baseline_fooled_rate": baseline.fooled_rate,
                "baseline_trials": trials,
                "seconds": summary.seconds,
            }
        )
        print(f"  {pixels} pixel(s): {json.dumps(rows[-1])}", flush=True)
    return rows


def _totals(entries: list[tuple[Clock, bool, int | None]]) -> dict:
    queries = [entry[2] for entry in entries if entry[2] is not None]
    return {
        "wall_s": sum(entry[0].wall for entry in entries),
        "cpu_s": sum(entry[0].cpu for entry in entries),
        "median_wall_s": statistics.median(entry[0].wall for entry in entries),
        "successes": sum(entry[1] for entry in entries),
        "images": len(entries),
        "queries": sum(queries) if queries else None,
    }


# --------------------------------------------------------------------------------------------
# Main


def hardware() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        cpu = next(line.split(":", 1)[1].strip() for line in lscpu.splitlines() if line.startswith("Model name"))
    except (OSError, subprocess.CalledProcessError, StopIteration):
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "load_average": os.getloadavg(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", action="append", default=[], help="model to attack (repeatable)")
    parser.add_argument("--images", type=int, default=10, help="correctly classified images per section (default: 10)")
    parser.add_argument("--rate-images", type=int, default=100, help="sampled images per model for --rates (default: 100)")
    parser.add_argument("--baseline-trials", type=int, default=400, help="random tries per image for --rates (default: 400)")
    parser.add_argument("--pixels", type=int, default=1, help="pixels for the comparisons and --live (default: 1)")
    parser.add_argument("--popsize", type=int, default=400)
    parser.add_argument("--generations", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    parser.add_argument("--prepare-model", action="store_true", help="train the fallback CNN if it is missing, then exit")
    parser.add_argument("--compare-scipy", action="store_true")
    parser.add_argument("--compare-torchattacks", action="store_true")
    parser.add_argument("--compare-scoring", action="store_true", help="whole-model scoring against the memo and incremental layers")
    parser.add_argument("--live", action="store_true")
    parser.add_argument(
        "--forward-cost",
        nargs="+",
        metavar="ARCH",
        help="time one generation's forward pass for these architectures (untrained), then exit",
    )
    parser.add_argument("--rates", action="store_true")
    parser.add_argument("--json", help="also write every number to this file")
    args = parser.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.prepare_model:
        print(prepare_fallback_model())
        return
    names = ("compare_scoring", "compare_scipy", "compare_torchattacks", "live", "rates")
    sections = [name for name in names if getattr(args, name)] or list(names)

    config = AttackConfig(pixels=args.pixels, popsize=args.popsize, generations=args.generations, seed=args.seed)
    if args.forward_cost:
        report = {"hardware": hardware(), "config": config.to_dict(), "forward_cost": forward_cost(args.forward_cost, config)}
        if args.json:
            Path(args.json).write_text(json.dumps(report, indent=1))
        return

    data = load_cifar10()
    config = AttackConfig(pixels=args.pixels, popsize=args.popsize, generations=args.generations, seed=args.seed)
    report = {"hardware": hardware(), "config": config.to_dict(), "models": []}
    print(json.dumps(report["hardware"]), flush=True)
    for path in benchmark_models(args.checkpoint):
        loaded = load_checkpoint(path)
        model = loaded.model
        entry = {
            "checkpoint": str(path),
            "arch": loaded.meta.get("arch"),
            "options": loaded.meta.get("options"),
            "test_accuracy_2000": test_accuracy(model, data),
        }
        print(f"model {path}: {json.dumps({key: entry[key] for key in ('arch', 'options', 'test_accuracy_2000')})}", flush=True)
        indices = correct_images(model, data, args.images, args.seed)
        entry["indices"] = indices
        for section in sections:
            started = time.perf_counter()
            if section == "compare_scoring":
                entry[section] = compare_scoring(model, data, indices, config)
            elif section == "compare_scipy":
                entry[section] = compare_scipy(model, data, indices, config)
            elif section == "compare_torchattacks":
                entry[section] = compare_torchattacks(model, data, indices, config)
            elif section == "live":
                entry[section] = live_latency(model, data, indices, config)
            else:
                entry[section] = success_rates(model, data, args.rate_images, args.seed, config, args.baseline_trials)
            print(f"{section} ({time.perf_counter() - started:.0f} s): {json.dumps(entry[section])}", flush=True)
        report["models"].append(entry)
    report["hardware_at_end"] = hardware()
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
