"""``cifarlab checkpoints list|show|import|delete``: the checkpoints the app can load."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cifarlab import checkpoints, paths
from cifarlab.cli import CliError


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "checkpoints",
        help="list, inspect, import or delete checkpoints",
        description="List, inspect, import or delete cifarlab checkpoints. Shipped checkpoints "
        f"live in {paths.SHIPPED_CHECKPOINT_DIR}; trained and imported ones in "
        f"{paths.user_checkpoint_dir()} ($CIFARLAB_CHECKPOINT_DIR).",
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    list_parser = actions.add_parser("list", help="print a table of shipped and user checkpoints")
    list_parser.add_argument("--json", action="store_true", help="print one JSON object per line")
    list_parser.set_defaults(func=run_list)

    show_parser = actions.add_parser("show", help="print the metadata of one checkpoint")
    show_parser.add_argument("path", type=Path, help="the checkpoint file (.pt)")
    show_parser.add_argument("--history", action="store_true", help="also print the per-epoch history")
    show_parser.set_defaults(func=run_show)

    import_parser = actions.add_parser(
        "import", help="validate a checkpoint file and copy it into the user checkpoint folder"
    )
    import_parser.add_argument("path", type=Path, help="the checkpoint file (.pt)")
    import_parser.set_defaults(func=run_import)

    results_parser = actions.add_parser(
        "results",
        help="print a Markdown table of the shipped checkpoints and their test reports",
        description="Print a Markdown table of every checkpoint in a folder (the shipped ones by "
        "default) with the test report written beside it by `cifarlab evaluate --json "
        "NAME.report.json`. docs/RESULTS.md is made from it.",
    )
    results_parser.add_argument(
        "--dir", type=Path, default=None, help="folder of checkpoints (default: the shipped ones)"
    )
    results_parser.set_defaults(func=run_results)

    half_parser = actions.add_parser(
        "half",
        help="write a float16 copy of a checkpoint if that keeps its test accuracy",
        description="Store a checkpoint's weights in float16, which halves the file. The copy "
        "is written only if it classifies the check images with the same accuracy as the "
        "original; the table shows what changed either way.",
    )
    half_parser.add_argument("path", type=Path, help="the checkpoint file (.pt)")
    half_parser.add_argument("--out", type=Path, required=True, help="the float16 checkpoint to write")
    half_parser.add_argument(
        "--check-images", type=int, default=10_000, metavar="N",
        help="test images of the bundled data set to compare on, a fixed class-balanced sample (default: 10000, all)",
    )
    half_parser.set_defaults(func=run_half)

    delete_parser = actions.add_parser(
        "delete", help="delete a user checkpoint with its report and resume state"
    )
    delete_parser.add_argument("path", type=Path, help="the checkpoint file (.pt)")
    delete_parser.set_defaults(func=run_delete)


def format_count(count: int | None) -> str:
    """Return a parameter count as 62.0K, 6.57M or 58.2M."""
    if count is None:
        return "-"
    if count >= 1_000_000:
        return f"{count / 1e6:.3g}M"
    if count >= 1_000:
        return f"{count / 1e3:.3g}K"
    return str(count)


def format_size(size_bytes: int) -> str:
    """Return a file size in kB, MB or GB (powers of 1000)."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if size_bytes >= scale:
            return f"{size_bytes / scale:.1f} {unit}"
    return f"{size_bytes} B"


def format_accuracy(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def run_list(args: argparse.Namespace) -> int:
    infos = checkpoints.list_checkpoints()
    if args.json:
        for info in infos:
            print(json.dumps(info.as_dict()))
        return 0
    if not infos:
        print(f"no checkpoints in {paths.SHIPPED_CHECKPOINT_DIR} or {paths.user_checkpoint_dir()}")
        return 0

    header = ("name", "arch", "params", "size", "val acc", "test acc", "date", "location")
    rows = []
    for info in infos:
        if info.error is not None:
            rows.append((info.name, "unreadable", "-", format_size(info.size_bytes), "-", "-", "-", info.location))
            continue
        rows.append(
            (
                info.name,
                info.arch,
                format_count(info.params),
                format_size(info.size_bytes),
                format_accuracy(info.val_acc),
                format_accuracy(info.test_acc),
                (info.created or "-")[:10],
                info.location,
            )
        )
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)).rstrip())
    for info in infos:
        if info.error is not None:
            print(f"\n{info.name}: {info.error}")
    return 0


def run_results(args: argparse.Namespace) -> int:
    folder = Path(paths.SHIPPED_CHECKPOINT_DIR) if args.dir is None else args.dir
    if not folder.is_dir():
        raise CliError(f"not a folder: {folder}")
    infos = [info for info in checkpoints.list_checkpoints([folder]) if info.error is None]
    if not infos:
        raise CliError(f"no readable checkpoints in {folder}")
    print(
        "| checkpoint | arch | recipe | test accuracy | macro F1 | ROC-AUC (macro) | best val accuracy "
        "| parameters | file size | epochs | training time | device |"
    )
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    missing = []
    for info in infos:
        meta = checkpoints.read_meta(info.path)
        report = _read_report(checkpoints.report_path(info.path))
        if report is None:
            missing.append(info.path.name)
            test_acc = macro_f1 = roc_auc = "-"
        else:
            metrics = report["metrics"]
            test_acc = format_accuracy(report["accuracy"])
            macro_f1 = f"{metrics['macro']['f1']:.3f}"
            roc_auc = "-" if metrics.get("roc_auc_macro") is None else f"{metrics['roc_auc_macro']:.3f}"
        config = meta.get("config") or {}
        recipe = config.get("recipe", {}).get("name", "-") if isinstance(config.get("recipe"), dict) else "-"
        training = meta.get("training") or {}
        minutes = training.get("time_s")
        print(
            f"| {info.path.name} | {info.arch} | {recipe} | {test_acc} | {macro_f1} | {roc_auc} | "
            f"{format_accuracy(info.val_acc)} | {format_count(info.params)} | "
            f"{format_size(info.size_bytes)} | {training.get('epochs_completed', '-')} | "
            f"{'-' if minutes is None else f'{minutes / 60:.1f} min'} | {training.get('device', '-')} |"
        )
    for name in missing:
        print(f"\n{name}: no test report beside it; run cifarlab evaluate --json to write one")
    return 0


def _read_report(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as error:
        raise CliError(f"cannot read the report {path}: {error}") from error


def run_half(args: argparse.Namespace) -> int:
    from cifarlab.data import DataError, load_cifar10
    from cifarlab.evaluate.report import LIMIT_SAMPLE_SEED
    from cifarlab.train.dataset import stratified_subset

    if args.check_images < 1:
        raise CliError(f"--check-images must be at least 1, got {args.check_images}")
    if not args.path.is_file():
        raise CliError(f"file not found: {args.path}")
    try:
        data = load_cifar10("bundled")
    except DataError as error:
        raise CliError(str(error)) from error
    ids = np.arange(len(data.test_labels))
    if args.check_images < len(ids):
        # A class-balanced sample: the bundled test images are stored class by class.
        ids = stratified_subset(data.test_labels, ids, args.check_images, LIMIT_SAMPLE_SEED)
    images = torch.from_numpy(np.ascontiguousarray(data.test_images[ids]))
    labels = torch.from_numpy(np.asarray(data.test_labels[ids]))
    try:
        check = checkpoints.save_half_precision(args.path, args.out, images, labels)
    except checkpoints.CheckpointError as error:
        raise CliError(str(error)) from error

    print("| measure | float32 | float16 |")
    print("|---|---:|---:|")
    print(f"| file size | {format_size(check.size_float32)} | {format_size(check.size_float16)} |")
    print(
        f"| accuracy on the first {check.images:,} test images | {check.accuracy_float32:.4f} | "
        f"{check.accuracy_float16:.4f} |"
    )
    print(f"| same predicted class as float32 | | {check.same_predictions:,} / {check.images:,} |")
    print(f"| max absolute logit difference | | {check.max_logit_difference:.1e} |")
    if check.accuracy_changed:
        raise CliError(f"float16 storage changes the accuracy, so {args.out} was not written; keep float32")
    print(f"wrote {args.out}")
    return 0


def run_show(args: argparse.Namespace) -> int:
    try:
        meta = checkpoints.read_meta(args.path)
    except checkpoints.CheckpointError as error:
        raise CliError(str(error)) from error
    history = meta.pop("history", None)
    for key, value in meta.items():
        print(f"{key}: {_describe(value)}")
    if history is not None:
        print(f"history: {len(history)} epochs" if isinstance(history, list) else f"history: {history}")
        if args.history and isinstance(history, list):
            for record in history:
                print(f"  {_describe(record)}")
    return 0


def _describe(value: Any) -> str:
    """Return a one-line text for a metadata value; tensors show their shape and dtype."""
    if isinstance(value, torch.Tensor):
        return f"tensor{tuple(value.shape)} {str(value.dtype).removeprefix('torch.')}"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{key}: {_describe(item)}" for key, item in value.items()) + "}"
    if isinstance(value, list):
        if len(value) > 12:
            return f"[{', '.join(_describe(item) for item in value[:12])}, ... {len(value)} items]"
        return "[" + ", ".join(_describe(item) for item in value) + "]"
    return str(value)


def run_import(args: argparse.Namespace) -> int:
    if not args.path.is_file():
        raise CliError(f"file not found: {args.path}")
    try:
        info = checkpoints.import_checkpoint(args.path.read_bytes(), args.path.name)
    except checkpoints.CheckpointError as error:
        raise CliError(str(error)) from error
    print(f"imported {args.path} as {info.path} ({info.arch}, {format_count(info.params)} parameters)")
    return 0


def run_delete(args: argparse.Namespace) -> int:
    try:
        checkpoints.delete_checkpoint(args.path)
    except checkpoints.CheckpointError as error:
        raise CliError(str(error)) from error
    print(f"deleted {args.path}")
    return 0
