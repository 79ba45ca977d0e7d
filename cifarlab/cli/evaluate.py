"""``cifarlab evaluate``: the classification report and headline metrics of a checkpoint.

Examples::

    python -m cifarlab evaluate --checkpoint checkpoints/cnn.pt
    python -m cifarlab evaluate --checkpoint my.pt --split val --json val.json --csv val.csv
    python -m cifarlab evaluate --checkpoint my.pt --limit 500 --no-cache

The full test-set report of a user checkpoint is cached beside it as ``name.report.json``; the
Reports page and the checkpoint listings read it from there.
"""

from __future__ import annotations

import argparse

from cifarlab.cli import CliError, check_checkpoint_file, check_output_file, resolve_device_flag
from cifarlab.cli.data import ProgressPrinter, add_data_arguments, load_data_from_args


def add_parser(subparsers) -> None:
    from cifarlab.evaluate import DEFAULT_BATCH_SIZE, GAP_TRAIN_IMAGES, SPLITS

    parser = subparsers.add_parser(
        "evaluate",
        help="print the classification report and headline metrics of a checkpoint",
        description="Score a checkpoint on a split and print per-class precision, recall, F1, "
        "support and ROC-AUC, then accuracy, top-k accuracy, calibration and the "
        "generalization gap. Reports are cached per checkpoint file and split.",
    )
    parser.add_argument("--checkpoint", required=True, metavar="PATH", help="checkpoint file (.pt)")
    parser.add_argument(
        "--split",
        choices=SPLITS,
        default="test",
        help="images to score: test, or the checkpoint's own validation or training split "
        "(default: test)",
    )
    parser.add_argument(
        "--limit", type=int, metavar="N", help="score only N images of the split: a fixed, class-balanced sample"
    )
    parser.add_argument("--json", metavar="OUT", help="also write the whole report as JSON to OUT")
    parser.add_argument(
        "--csv", metavar="OUT", help="also write the per-class table as CSV to OUT"
    )
    parser.add_argument(
        "--confusion-csv", metavar="OUT", help="also write the confusion matrix as CSV to OUT"
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        default=DEFAULT_BATCH_SIZE,
        metavar="N",
        help=f"images per forward pass (default: {DEFAULT_BATCH_SIZE})",
    )
    parser.add_argument(
        "--device", default="cpu", help="torch device to run the model on: auto, cpu, mps, cuda or cuda:N (default: cpu)"
    )
    parser.add_argument(
        "--gap-images",
        type=int,
        default=GAP_TRAIN_IMAGES,
        metavar="N",
        help="training images scored for the generalization gap, 0 to skip it "
        f"(default: {GAP_TRAIN_IMAGES})",
    )
    parser.add_argument(
        "--no-cache", action="store_true", help="score again even if a cached report matches"
    )
    add_data_arguments(parser)
    parser.set_defaults(func=run_evaluate)


def run_evaluate(args: argparse.Namespace) -> int:
    from cifarlab.checkpoints import CheckpointError
    from cifarlab.evaluate import (
        EvaluationError,
        evaluate_checkpoint,
        write_classification_csv,
        write_report_json,
    )
    from cifarlab.evaluate.export import confusion_csv
    from cifarlab.evaluate.report import write_text_atomic

    path = check_checkpoint_file(args.checkpoint)
    if args.limit is not None and args.limit < 1:
        raise CliError(f"invalid --limit {args.limit}; give a positive number of images")
    if args.batch_size < 1:
        raise CliError(f"invalid --batch-size {args.batch_size}; give a positive number")
    if args.gap_images < 0:
        raise CliError(f"invalid --gap-images {args.gap_images}; give 0 or a positive number")
    device = resolve_device_flag(args.device)
    check_output_file(args.json, "--json")
    check_output_file(args.csv, "--csv")
    check_output_file(args.confusion_csv, "--confusion-csv")

    data = load_data_from_args(args)
    try:
        report = evaluate_checkpoint(
            path,
            args.split,
            data=data,
            limit=args.limit,
            batch_size=args.batch_size,
            device=device,
            gap_images=args.gap_images,
            use_cache=not args.no_cache,
            progress=ProgressPrinter(),
        )
    except (CheckpointError, EvaluationError) as error:
        raise CliError(str(error)) from error

    print(format_report(report))
    try:
        if args.json:
            write_report_json(report, args.json)
            print(f"wrote the report to {args.json}")
        if args.csv:
            write_classification_csv(report, args.csv)
            print(f"wrote the per-class table to {args.csv}")
        if args.confusion_csv:
            write_text_atomic(args.confusion_csv, confusion_csv(report))
            print(f"wrote the confusion matrix to {args.confusion_csv}")
    except OSError as error:
        raise CliError(f"writing {error.filename} failed: {error.strerror}") from error
    return 0


def format_report(report) -> str:
    """Return the classification table and headline metrics as plain text."""
    from cifarlab.evaluate import classification_rows

    metrics = report.metrics
    checkpoint = report.checkpoint
    lines = [
        f"checkpoint  {checkpoint['path']} ({checkpoint.get('arch')}, "
        f"sha256 {checkpoint['sha256'][:12]})",
        f"split       {report.split}: {metrics.num_samples:,} images from {report.data['description']}",
    ]
    lines.extend(f"note        {note}" for note in report.notes)
    lines.append("")

    rows = classification_rows(report)
    width = max(len(row["class"]) for row in rows)
    header = ("precision", "recall", "f1-score", "support", "accuracy", "roc-auc")
    lines.append(" " * width + "  " + "  ".join(f"{title:>9}" for title in header))
    for row in rows:
        if row["class"] == "macro avg":
            lines.append("")
        cells = [
            _fraction(row["precision"]),
            _fraction(row["recall"]),
            _fraction(row["f1"]),
            f"{row['support']:>9,}",
            _fraction(row["accuracy"]),
            _fraction(row["roc_auc"]),
        ]
        lines.append(f"{row['class']:<{width}}  " + "  ".join(cells))
    lines.append("")

    lines.append(
        f"accuracy        {metrics.accuracy:.4f}   top-2 {metrics.top2_accuracy:.4f}   "
        f"top-5 {metrics.top5_accuracy:.4f}"
    )
    lines.append(f"loss            {metrics.loss:.4f} (mean cross-entropy, nats)")
    lines.append(f"macro ROC-AUC   {_text(metrics.roc_auc_macro)} (one-vs-rest, defined classes only)")
    lines.append(f"ECE             {_text(metrics.ece)} (15 equal-width confidence bins)")
    gap = report.generalization
    if gap is not None:
        lines.append(
            f"generalization  training accuracy {gap['train_accuracy']:.4f} vs {report.split} "
            f"{gap['eval_accuracy']:.4f}: gap {100 * gap['accuracy_gap']:+.1f} points; loss "
            f"{gap['train_loss']:.3f} vs {gap['eval_loss']:.3f}"
        )
        lines.append(f"                on {gap['selection']}")
    names = report.class_names
    confused = ", ".join(
        f"{names[pair['true']]} -> {names[pair['predicted']]} {pair['count']}"
        for pair in metrics.most_confused[:5]
    )
    if confused:
        lines.append(f"most confused   {confused} (true -> predicted, images)")
    lines.append(
        "zero_division   precision of a class never predicted and recall of a class without "
        f"images count as {metrics.zero_division:g}"
    )
    if report.cache_path:
        lines.append(f"report          {report.cache_path}")
    return "\n".join(lines)


def _fraction(value: float | None) -> str:
    return f"{'n/a':>9}" if value is None else f"{value:>9.4f}"


def _text(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"
