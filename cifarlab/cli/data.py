"""``cifarlab data info`` and ``cifarlab data download``.

`add_data_arguments` and `load_data_from_args` are shared with the other commands that need the
data set, so every command picks the source and folders with the same flags.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from cifarlab import data, paths
from cifarlab.cli import CliError


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    """Add --source, --data-path, --data-dir and --cache-dir to a command's parser."""
    group = parser.add_argument_group("data")
    group.add_argument(
        "--source",
        choices=data.SOURCES,
        default="bundled",
        help="where the images come from (default: the bundled JPEG archive)",
    )
    group.add_argument(
        "--data-path",
        metavar="PATH",
        help="the cifar-10-batches-py folder (--source batches) or the image folder or archive "
        "(--source folder)",
    )
    group.add_argument(
        "--data-dir",
        metavar="DIR",
        help=f"folder for the downloaded official data set (default: {paths.data_dir()}, "
        "or $CIFARLAB_DATA_DIR)",
    )
    group.add_argument(
        "--cache-dir",
        metavar="DIR",
        help=f"folder for decoded arrays (default: {paths.cache_dir()}, or $CIFARLAB_CACHE_DIR)",
    )


def load_data_from_args(args: argparse.Namespace) -> data.Cifar10:
    """Load the data set the flags of `add_data_arguments` name, showing decode progress."""
    try:
        return data.load_cifar10(
            args.source,
            path=args.data_path,
            data_dir=args.data_dir,
            cache_dir=args.cache_dir,
            progress=ProgressPrinter(),
        )
    except data.DataError as error:
        raise CliError(str(error)) from error


class ProgressPrinter:
    """Print progress records to stderr: in place on a terminal, every 10% otherwise."""

    def __init__(self, stream=None):
        self.stream = stream if stream is not None else sys.stderr
        self.last_tenth: dict[str, int] = {}

    def __call__(self, stage: str, done: int, total: int) -> None:
        unit = "bytes" if stage == "download" else "images"
        line = f"{stage}: {done:,} / {total:,} {unit} ({100 * done / max(total, 1):.0f}%)"
        if self.stream.isatty():
            end = "\n" if done >= total else ""
            print(f"\r{line}", end=end, file=self.stream, flush=True)
            return
        tenth = 10 * done // max(total, 1)
        if tenth > self.last_tenth.get(stage, -1):
            self.last_tenth[stage] = tenth
            print(line, file=self.stream, flush=True)


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "data",
        help="show the data sources or download the official data set",
        description="Show the CIFAR-10 sources and their splits, or download the official "
        "data set.",
    )
    commands = parser.add_subparsers(dest="data_command", metavar="ACTION", required=True)

    info = commands.add_parser(
        "info",
        help="list the sources and count the images per split and class",
        description="List the data sources found, load one and count its images per split and "
        "class, with the validation split carved from the training images.",
    )
    add_data_arguments(info)
    info.add_argument(
        "--val-size",
        type=int,
        default=5000,
        help="validation images carved from the training set (default: 5000)",
    )
    info.add_argument(
        "--seed", type=int, default=0, help="seed of the validation split (default: 0)"
    )
    info.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    info.set_defaults(func=run_info)

    download = commands.add_parser(
        "download",
        help="download and extract the official cifar-10-python.tar.gz",
        description=f"Download {data.CANONICAL_FILENAME} ({data.CANONICAL_SIZE:,} bytes) from "
        f"{data.CANONICAL_URL}, check its size and MD5 and extract it into the data folder. "
        "Without internet access, put the file in the data folder by hand and run this again.",
    )
    download.add_argument(
        "--data-dir",
        metavar="DIR",
        help=f"folder to download into (default: {paths.data_dir()}, or $CIFARLAB_DATA_DIR)",
    )
    download.add_argument(
        "--timeout",
        type=float,
        default=data.DOWNLOAD_TIMEOUT_S,
        metavar="SECONDS",
        help="give up when the server sends nothing for this long "
        f"(default: {data.DOWNLOAD_TIMEOUT_S:g})",
    )
    download.set_defaults(func=run_download)


def run_info(args: argparse.Namespace) -> int:
    sources = data.find_sources(args.data_dir)
    loaded = load_data_from_args(args)
    try:
        split = data.split_train_val(loaded.train_labels, val_size=args.val_size, seed=args.seed)
    except data.DataError as error:
        raise CliError(str(error)) from error

    counts = {
        "train": [int(count) for count in _counts(loaded.train_labels[split.train_idx])],
        "validation": [int(count) for count in _counts(loaded.train_labels[split.val_idx])],
        "test": [int(count) for count in loaded.class_counts("test")],
    }
    if args.json:
        report = {
            "sources": sources,
            "loaded": {"source": loaded.source, "description": loaded.description},
            "classes": list(loaded.classes),
            "counts": counts,
            "split": split.as_dict(),
            "data_dir": str(args.data_dir or paths.data_dir()),
            "cache_dir": str(args.cache_dir or paths.cache_dir()),
        }
        print(json.dumps(report, indent=2))
        return 0

    print("Sources")
    for entry in sources:
        state = "available" if entry["available"] else "missing"
        print(f"  {entry['source']:<10} {state:<10} {entry['detail']}")
    print("  batches    (give --source batches --data-path DIR)")
    print("  folder     (give --source folder --data-path DIR_OR_ARCHIVE)")
    print()
    print(f"Loaded {loaded.source}: {loaded.description}")
    print()
    width = max(len(name) for name in loaded.classes)
    header = f"  {'class':<{width}}  " + "  ".join(f"{name:>10}" for name in counts)
    print(header)
    for label, name in enumerate(loaded.classes):
        row = "  ".join(f"{counts[split_name][label]:>10,}" for split_name in counts)
        print(f"  {name:<{width}}  {row}")
    totals = "  ".join(f"{sum(values):>10,}" for values in counts.values())
    print(f"  {'total':<{width}}  {totals}")
    print()
    print(
        f"Validation split: {split.val_size:,} of the {loaded.num_train:,} training images, "
        f"stratified by class, seed {split.seed}, fingerprint {split.fingerprint}. "
        "The test images are never part of it."
    )
    return 0


def run_download(args: argparse.Namespace) -> int:
    if not args.timeout > 0:
        raise CliError(f"invalid --timeout {args.timeout:g}; give a positive number of seconds")
    try:
        folder = data.download_cifar10(
            args.data_dir, timeout_s=args.timeout, progress=ProgressPrinter()
        )
    except data.DataError as error:
        raise CliError(str(error)) from error
    print(f"CIFAR-10 is ready in {folder}; load it with --source canonical")
    return 0


def _counts(labels: np.ndarray) -> list[int]:
    return np.bincount(labels, minlength=data.NUM_CLASSES).tolist()
