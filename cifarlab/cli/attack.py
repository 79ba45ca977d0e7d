"""``cifarlab attack``: the few-pixel attack on a seeded sample of a split, with a summary table.

Examples::

    python -m cifarlab attack --checkpoint checkpoints/cnn.pt --n 100 --pixels 1
    python -m cifarlab attack --checkpoint my.pt --n 20 --pixels 3 --targeted --verbose
    python -m cifarlab attack --checkpoint my.pt --n 50 --baseline-trials 400 --json attack.json

The images are the first ``--n`` entries of a permutation of the split's images drawn with
``--seed`` (numpy's ``default_rng``), so a run over 20 images attacks the first 20 images of a
run over 100. Ctrl+C once stops after the current generation and prints the partial summary;
a second Ctrl+C aborts.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from typing import Any

from cifarlab.cli import CliError, check_checkpoint_file, check_output_file, resolve_device_flag
from cifarlab.cli.data import add_data_arguments, load_data_from_args


def add_parser(subparsers) -> None:
    from cifarlab.attack import TARGET_MODES, AttackConfig

    defaults = AttackConfig()
    parser = subparsers.add_parser(
        "attack",
        help="run the few-pixel attack on a sample of images and print its success rate",
        description="Attack a seeded sample of a split with differential evolution (Su, Vargas "
        "and Sakurai, 2019) and print the success rate over correctly classified images, the "
        "clean accuracy and the accuracy under attack.",
    )
    parser.add_argument("--checkpoint", required=True, metavar="PATH", help="checkpoint file (.pt)")
    parser.add_argument("--n", type=int, default=100, metavar="N", help="images to attack (default: 100)")
    parser.add_argument(
        "--pixels", type=int, default=defaults.pixels, metavar="P", help="pixels changed per image, 1 to 5 (default: 1)"
    )
    parser.add_argument(
        "--targeted",
        action="store_true",
        help="push each image towards a target class; success only when the prediction is the target",
    )
    parser.add_argument(
        "--target-mode",
        choices=TARGET_MODES,
        default="random",
        help="targets of --targeted: one other class per image drawn from --seed (random), or "
        "all nine other classes (all) (default: random)",
    )
    parser.add_argument(
        "--popsize", type=int, default=defaults.popsize, metavar="N", help="candidates per generation (default: 400)"
    )
    parser.add_argument(
        "--generations", type=int, default=defaults.generations, metavar="N", help="maximum generations (default: 100)"
    )
    parser.add_argument(
        "--mutation", type=float, default=defaults.mutation, metavar="F", help="differential weight F (default: 0.5)"
    )
    parser.add_argument(
        "--crossover",
        type=float,
        default=defaults.crossover,
        metavar="CR",
        help="binomial crossover rate; 1.0 means no crossover, as in the paper (default: 1.0)",
    )
    parser.add_argument(
        "--seed", type=int, default=defaults.seed, help="seed of the image sample, the targets and the search (default: 0)"
    )
    parser.add_argument(
        "--split",
        choices=("test", "val", "train"),
        default="test",
        help="images to sample: test, or the checkpoint's own validation or training split (default: test)",
    )
    parser.add_argument(
        "--images-per-batch",
        type=int,
        default=4,
        metavar="N",
        help="images attacked together, their populations sharing forward passes (default: 4)",
    )
    parser.add_argument(
        "--eval-batch-size",
        type=int,
        default=defaults.eval_batch_size,
        metavar="N",
        help="candidate images per forward pass (default: 400)",
    )
    parser.add_argument("--device", default="cpu", help="torch device to run the model on: auto, cpu, mps, cuda or cuda:N (default: cpu)")
    parser.add_argument(
        "--threads",
        type=int,
        metavar="N",
        help="torch CPU threads (default: torch's choice); on a busy machine 1 is often faster "
        "for small models, see docs/BENCHMARKS.md",
    )
    parser.add_argument(
        "--baseline-trials",
        type=int,
        default=0,
        metavar="N",
        help="also change --pixels random pixels to random colours N times per image and report "
        "how often that alone changes the prediction (default: 0, skipped)",
    )
    parser.add_argument("--json", metavar="OUT", help="also write the summary and every attack as JSON to OUT")
    parser.add_argument(
        "--verbose", dest="per_image", action="store_true", help="print one table row per image"
    )
    add_data_arguments(parser)
    parser.set_defaults(func=run_attack)


def run_attack(args: argparse.Namespace) -> int:
    import torch

    from cifarlab.attack import AttackConfig, AttackError, attack_many, random_pixel_baseline, sample_indices
    from cifarlab.checkpoints import CheckpointError, load_checkpoint
    from cifarlab.evaluate.report import EvaluationError, select_split, write_text_atomic

    path = check_checkpoint_file(args.checkpoint)
    if args.images_per_batch < 1:
        raise CliError(f"invalid --images-per-batch {args.images_per_batch}; give 1 or more")
    if args.baseline_trials < 0:
        raise CliError(f"invalid --baseline-trials {args.baseline_trials}; give 0 or more")
    device = resolve_device_flag(args.device)
    check_output_file(args.json, "--json")
    if args.threads is not None:
        if args.threads < 1:
            raise CliError(f"invalid --threads {args.threads}; give 1 or more")
        torch.set_num_threads(args.threads)
    try:
        config = AttackConfig(
            pixels=args.pixels,
            popsize=args.popsize,
            generations=args.generations,
            mutation=args.mutation,
            crossover=args.crossover,
            eval_batch_size=args.eval_batch_size,
            seed=args.seed,
        )
    except AttackError as error:
        raise CliError(_as_flag_message(str(error))) from error

    try:
        loaded = load_checkpoint(path, map_location=device)
    except (CheckpointError, RuntimeError) as error:
        raise CliError(str(error)) from error
    data = load_data_from_args(args)
    try:
        _, _, split_ids, image_source, notes = select_split(data, loaded.meta, args.split)
        picked = sample_indices(len(split_ids), args.n, args.seed)
    except (EvaluationError, AttackError) as error:
        raise CliError(str(error)) from error
    images = data.test_images if image_source == "test" else data.train_images
    labels = data.test_labels if image_source == "test" else data.train_labels
    indices = [int(split_ids[position]) for position in picked]
    class_names = list(loaded.meta.get("class_names") or _default_class_names())

    print(f"checkpoint  {path} ({loaded.meta.get('arch')})")
    print(
        f"images      {len(indices)} of the {args.split} split ({len(split_ids):,} images), "
        f"a sample drawn with seed {args.seed} from {data.description}"
    )
    for note in notes:
        print(f"note        {note}")
    print(f"attack      {describe_attack(config, args.targeted, args.target_mode)}")
    print()

    stop = threading.Event()
    progress = AttackProgress(class_names, stream=sys.stderr)
    with StopOnInterrupt(stop):
        try:
            summary = attack_many(
                loaded.model,
                images,
                labels,
                indices,
                config=config,
                targeted=args.targeted,
                target_mode=args.target_mode,
                num_classes=len(class_names),
                images_per_batch=args.images_per_batch,
                callback=progress,
                stop=stop,
            )
        except AttackError as error:
            raise CliError(str(error)) from error

        baseline = None
        if args.baseline_trials and not stop.is_set():
            distinct = list(dict.fromkeys(indices))
            baseline = random_pixel_baseline(
                loaded.model,
                images[distinct],
                labels[distinct],
                config.pixels,
                args.baseline_trials,
                torch.Generator().manual_seed(args.seed),
                eval_batch_size=config.eval_batch_size,
            )

    if args.per_image:
        print(format_rows(summary, class_names))
        print()
    print(format_summary(summary, baseline))

    if args.json:
        document = {
            "checkpoint": str(path),
            "arch": loaded.meta.get("arch"),
            "split": args.split,
            "image_source": image_source,
            "indices": indices,
            "sample": f"first {args.n} of numpy default_rng({args.seed}).permutation over the split",
            "summary": summary.to_dict(),
            "baseline": baseline.to_dict() if baseline else None,
        }
        try:
            write_text_atomic(args.json, json.dumps(document, allow_nan=False, indent=1))
        except OSError as error:
            raise CliError(f"writing {error.filename} failed: {error.strerror}") from error
        print(f"wrote the summary to {args.json}")
    return 0 if summary.complete else 130


def describe_attack(config, targeted: bool, target_mode: str) -> str:
    """Return one line naming the kind of attack and its budget."""
    if not targeted:
        kind = "untargeted"
    elif target_mode == "all":
        kind = "targeted, every other class in turn"
    else:
        kind = "targeted, one seeded random other class per image"
    pixels = "1 pixel" if config.pixels == 1 else f"{config.pixels} pixels"
    crossover = "no crossover" if config.crossover >= 1.0 else f"crossover {config.crossover}"
    return (
        f"{kind}, {pixels}, population {config.popsize}, up to {config.generations} generations "
        f"(F={config.mutation}, {crossover}, seed {config.seed})"
    )


class AttackProgress:
    """Print one line per finished image to ``stream``; on a terminal also the live generation."""

    def __init__(self, class_names: list[str], stream=None):
        self.class_names = class_names
        self.stream = stream if stream is not None else sys.stderr

    def __call__(self, record: dict[str, Any]) -> None:
        if record["event"] == "generation" and self.stream.isatty():
            searching = sum(bool(flag) for flag in record["searching"] if flag is not None)
            print(
                f"\rsearches {record['done']}/{record['total']}: generation "
                f"{record['generation']}/{record['max_generations']}, {searching} still searching",
                end="",
                file=self.stream,
                flush=True,
            )
        elif record["event"] == "image":
            prefix = "\r" if self.stream.isatty() else ""
            # record["done"] counts this image's searches too; number each search on its own.
            first = record["done"] - len(record["results"]) + 1
            for number, result in enumerate(record["results"], start=first):
                print(
                    f"{prefix}[{number}/{record['total']}] {_result_line(result, self.class_names)}",
                    file=self.stream,
                    flush=True,
                )


def _result_line(result, class_names: list[str]) -> str:
    label = class_names[result.label]
    where = f"image {result.image_id} ({label})"
    if result.target is not None:
        where += f" -> {class_names[result.target]}"
    after = class_names[result.pred_after]
    return (
        f"{where}: {result.status}, now {after}, {result.queries:,} queries, "
        f"{result.generations} generations, {result.seconds:.1f} s"
    )


def format_rows(summary, class_names: list[str]) -> str:
    """Return one table row per search (and per misclassified image)."""
    header = ("index", "class", "target", "result", "predicted", "p(class)", "pixels", "queries")
    rows = []
    for outcome in summary.images:
        for result in outcome.results or [None]:
            if result is None:
                rows.append((str(outcome.image_id), class_names[outcome.label], "", outcome.status, "", "", "", ""))
                continue
            tracked = result.tracked_class
            before, after = result.probs_before[tracked], result.probs_after[tracked]
            if not result.attacked:
                rows.append(
                    (
                        str(result.image_id),
                        class_names[result.label],
                        class_names[result.target] if result.target is not None else "",
                        result.status,
                        class_names[result.pred_before],
                        f"{before:.3f}",
                        "0",
                        "0",
                    )
                )
                continue
            rows.append(
                (
                    str(result.image_id),
                    class_names[result.label],
                    class_names[result.target] if result.target is not None else "",
                    result.status,
                    f"{class_names[result.pred_before]} -> {class_names[result.pred_after]}",
                    f"{before:.3f} -> {after:.3f}",
                    str(len(result.changed)),
                    f"{result.queries:,}",
                )
            )
    widths = [max(len(header[column]), *(len(row[column]) for row in rows)) for column in range(len(header))]
    lines = ["  ".join(title.ljust(width) for title, width in zip(header, widths))]
    lines.extend("  ".join(cell.ljust(width) for cell, width in zip(row, widths)) for row in rows)
    return "\n".join(line.rstrip() for line in lines)


def format_summary(summary, baseline=None) -> str:
    """Return the headline counts and rates as aligned text."""
    lines = [
        f"images        {summary.n_requested} requested, {summary.n_images} distinct",
        f"clean         {summary.n_correct} correct, {summary.n_misclassified} misclassified (not attacked): "
        f"clean accuracy {_percent(summary.clean_accuracy)}",
    ]
    if summary.targeted:
        criterion = "reached their target class"
    else:
        criterion = "changed class"
    lines.append(
        f"success rate  {_percent(summary.success_rate)}: {summary.n_fooled} of {summary.n_completed} "
        f"correctly classified images {criterion}"
    )
    if summary.target_mode == "all":
        lines.append(
            f"per target    {_percent(summary.attempt_success_rate)} of {len(summary.attempts)} "
            "image-target searches succeeded"
        )
    if summary.complete:
        lines.append(
            f"under attack  accuracy {_percent(summary.accuracy_under_attack)} "
            f"(clean {_percent(summary.clean_accuracy)})"
        )
    else:
        unfinished = summary.n_correct - summary.n_completed
        lines.append(
            f"stopped       {unfinished} correctly classified images were not attacked to the end; "
            "rates cover the finished ones, and accuracy under attack is unknown"
        )
    if summary.mean_queries is not None:
        lines.append(
            f"queries       mean {summary.mean_queries:,.0f}, median {summary.median_queries:,.0f} per search "
            f"(budget {summary.config.max_queries:,})"
        )
    lines.append(f"time          {summary.seconds:.1f} s")
    if baseline is not None:
        pixels = "1 random pixel" if baseline.pixels == 1 else f"{baseline.pixels} random pixels"
        lines.append(
            f"baseline      {pixels}, {baseline.trials:,} tries per image: "
            f"{_percent(baseline.fooled_rate)} of {baseline.n_correct} correct images fooled at least once, "
            f"{_percent(baseline.flip_rate)} of all tries"
        )
    return "\n".join(lines)


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def _as_flag_message(message: str) -> str:
    """Name the command-line flag in a configuration error (``eval_batch_size`` -> ``--eval-batch-size``)."""
    for name in ("eval_batch_size", "pixels", "popsize", "generations", "mutation", "crossover", "seed"):
        message = message.replace(f"invalid {name} ", f"invalid --{name.replace('_', '-')} ")
    return message


def _default_class_names() -> list[str]:
    from cifarlab.data import CLASSES

    return list(CLASSES)


class StopOnInterrupt:
    """Turn the first Ctrl+C into a stop request; the second one raises KeyboardInterrupt."""

    def __init__(self, stop: threading.Event):
        self.stop = stop
        self.previous = None

    def __enter__(self):
        if threading.current_thread() is not threading.main_thread():
            return self

        def handle(signum, frame):
            if self.stop.is_set():
                raise KeyboardInterrupt
            self.stop.set()
            print("\nstopping after the current generation; press Ctrl+C again to abort", file=sys.stderr)

        self.previous = signal.signal(signal.SIGINT, handle)
        return self

    def __exit__(self, *exc_info):
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)
        return False
