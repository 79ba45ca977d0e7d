"""``cifarlab train``: train an architecture with a progress bar; Ctrl-C stops and keeps the files.

Examples::

    python -m cifarlab train --arch resnet --epochs 15
    python -m cifarlab train --arch lenet --epochs 3 --train-subset 2000 --val-size 1000
    python -m cifarlab train --arch cnn --recipe none --offline-copies 1 --offline-recipe standard
    python -m cifarlab train --resume ~/.cifarlab/checkpoints/resnet-20260101-120000.pt
    torchrun --nproc_per_node 2 -m cifarlab train --arch cnn --device cpu

Options left out take their value from ``--config`` (a JSON file of ``TrainConfig`` fields),
from the stopped run's stored config with ``--resume``, or from the ``TrainConfig`` defaults.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, TextIO

from cifarlab.cli import CliError, resolve_device_flag

# Command-line flag -> TrainConfig field, for the flags that map one to one.
_FIELD_FLAGS = {
    "arch": "arch",
    "optimizer": "optimizer",
    "lr": "lr",
    "momentum": "momentum",
    "nesterov": "nesterov",
    "weight_decay": "weight_decay",
    "batch_size": "batch_size",
    "epochs": "epochs",
    "schedule": "schedule",
    "warmup_epochs": "warmup_epochs",
    "step_size_epochs": "step_size_epochs",
    "step_gamma": "step_gamma",
    "label_smoothing": "label_smoothing",
    "data_source": "data_source",
    "data_path": "data_path",
    "val_size": "val_size",
    "split_seed": "split_seed",
    "train_subset": "train_subset",
    "offline_copies": "offline_copies",
    "monitor": "monitor",
    "patience": "patience",
    "min_delta": "min_delta",
    "seed": "seed",
    "device": "device",
    "channels_last": "channels_last",
    "amp": "amp",
    "eval_batch_size": "eval_batch_size",
    "num_threads": "num_threads",
    "log_every_steps": "log_every_steps",
    "evaluate_test": "evaluate_test",
}


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    from cifarlab.augment import PRESETS as RECIPE_PRESETS
    from cifarlab.models import list_archs
    from cifarlab.train import MONITORS, OPTIMIZERS, SCHEDULES, TrainConfig
    from cifarlab.train.config import MAX_OFFLINE_COPIES

    parser = subparsers.add_parser(
        "train",
        help="train a model and write its checkpoint and JSON-lines log",
        description=(
            "Train a CIFAR-10 classifier, keep the best-on-validation weights and write them to "
            "a checkpoint after every epoch. Ctrl-C stops after the current batch and keeps the "
            "checkpoint; --resume continues from there. Under torchrun, trains with "
            "DistributedDataParallel."
        ),
    )
    files = parser.add_argument_group("files")
    files.add_argument("--config", type=Path, metavar="JSON", help="read TrainConfig fields from this JSON file; flags override them")
    files.add_argument("--out", type=Path, metavar="PATH", help="checkpoint to write; missing folders are created (default: <checkpoint folder>/<arch>-<date>-<time>.pt)")
    # torchrun reads every option that abbreviates one of its own (--log of --log-dir, --monitor of
    # --monitor-interval) and stops with "ambiguous option", so those two have a second name.
    files.add_argument(
        "--log",
        "--log-path",
        dest="log",
        type=Path,
        metavar="PATH",
        help="JSON-lines log to write (default: the checkpoint path with .log.jsonl); use --log-path under torchrun",
    )
    files.add_argument("--resume", type=Path, metavar="PATH", help="continue the stopped run of this checkpoint (or its .resume.pt)")
    files.add_argument("--stop-file", type=Path, metavar="PATH", help="stop gracefully once this file exists (checked after every batch)")
    files.add_argument("--print-config", action="store_true", help="print the resulting config as JSON and exit")

    model = parser.add_argument_group("model")
    model.add_argument("--arch", help=f"architecture: {', '.join(list_archs())}")
    model.add_argument(
        "--arch-option",
        action="append",
        metavar="KEY=VALUE",
        dest="arch_options",
        help="builder option, VALUE as JSON or a plain string (repeatable), e.g. widths=[512,256,128,64]",
    )

    optim = parser.add_argument_group("optimization")
    optim.add_argument("--optimizer", choices=OPTIMIZERS, help="optimizer")
    optim.add_argument("--lr", type=float, help="peak learning rate")
    optim.add_argument("--momentum", type=float, help="SGD momentum")
    optim.add_argument("--nesterov", action=argparse.BooleanOptionalAction, help="SGD with Nesterov momentum")
    optim.add_argument("--weight-decay", type=float, help="weight decay of conv and linear weights")
    optim.add_argument("--batch-size", type=int, help="images per step, summed over all processes")
    optim.add_argument("--epochs", type=int, help="passes over the training split")
    optim.add_argument("--schedule", choices=SCHEDULES, help="learning-rate schedule")
    optim.add_argument("--warmup-epochs", type=float, help="epochs of linear warm-up (default: 30%% of the run for onecycle, else 0)")
    optim.add_argument("--step-size-epochs", type=int, help="'step' schedule: epochs between decays")
    optim.add_argument("--step-gamma", type=float, help="'step' schedule: factor per decay")
    optim.add_argument("--label-smoothing", type=float, help="share of each target spread over all classes, in [0, 1)")
    optim.add_argument("--recipe", metavar="NAME|PATH", help="augmentation preset (none, standard, cutout, mixup, strong) or a recipe JSON file (default: standard)")

    data = parser.add_argument_group("data and selection")
    data.add_argument("--data-source", help="cifarlab.data source: bundled, canonical, batches or folder")
    data.add_argument("--data-path", help="archive or folder of the data source (default: the source's own location)")
    data.add_argument("--val-size", type=int, help="training images held out for validation (0: none)")
    data.add_argument("--split-seed", type=int, help="seed of the train/validation split")
    data.add_argument("--train-subset", type=int, metavar="N", help="train on N class-balanced images of the training split (default: all)")
    data.add_argument(
        "--offline-copies",
        type=int,
        metavar="N",
        help=f"add N augmented copies of every training image, made once before training "
        f"(0 to {MAX_OFFLINE_COPIES}); needs --offline-recipe",
    )
    augmenting_presets = ", ".join(name for name, recipe in RECIPE_PRESETS.items() if recipe.operations)
    data.add_argument(
        "--offline-recipe",
        metavar="NAME|PATH",
        help=f"recipe that makes the offline copies: a preset ({augmenting_presets}) or a recipe JSON file",
    )
    data.add_argument(
        "--monitor",
        "--monitor-metric",
        dest="monitor",
        choices=MONITORS,
        help="validation metric that picks the best epoch; use --monitor-metric under torchrun",
    )
    data.add_argument("--patience", type=int, help="early stopping: epochs without improvement before stopping (default: 0, off)")
    data.add_argument("--min-delta", type=float, help="smallest change of the monitored metric that counts as improvement")
    data.add_argument("--test", dest="evaluate_test", action=argparse.BooleanOptionalAction, help="measure test accuracy once at the end")

    hardware = parser.add_argument_group("reproducibility and hardware")
    hardware.add_argument("--seed", type=int, help="seed of initialization, shuffling, augmentation and dropout")
    hardware.add_argument("--device", help="auto, cpu, mps, cuda or cuda:N")
    hardware.add_argument("--channels-last", action=argparse.BooleanOptionalAction, help="NHWC memory layout")
    hardware.add_argument("--amp", action=argparse.BooleanOptionalAction, help="mixed precision on CUDA")
    hardware.add_argument("--eval-batch-size", type=int, help="images per evaluation forward pass")
    hardware.add_argument("--num-threads", type=int, help="CPU threads for torch (default: torch's own choice)")
    hardware.add_argument("--log-every-steps", type=int, metavar="N", help="write a batch record every N steps")

    # Flags default to None, which leaves the field to --config, --resume or TrainConfig, so the
    # help shows TrainConfig's default; fields whose default is None explain it in their text.
    defaults = TrainConfig().to_dict()
    for action in parser._actions:
        field = _FIELD_FLAGS.get(action.dest)
        if field is not None and action.help and defaults[field] is not None:
            action.help += f" (default: {defaults[field]})"
    # Config errors name TrainConfig fields; this maps each field to the flag that sets it.
    flags = {action.dest: max(action.option_strings, key=len) for action in parser._actions if action.option_strings}
    parser.set_defaults(func=run, config_flags=flags)


def build_config(args: argparse.Namespace) -> tuple[Any, bool]:
    """Return the config the flags describe and whether ``--resume`` supplied its base.

    Raises:
        CliError: on an unreadable file or an invalid value.
    """
    from cifarlab.train import TrainConfig, read_resume_config
    from cifarlab.train.config import MAX_OFFLINE_COPIES

    values: dict[str, Any] = {}
    from_resume = False
    try:
        if args.resume is not None:
            values = read_resume_config(args.resume).to_dict()
            from_resume = True
        if args.config is not None:
            values.update(_read_json(args.config, "config"))
        for flag, name in _FIELD_FLAGS.items():
            value = getattr(args, flag)
            if value is not None:
                values[name] = value
        if args.arch_options:
            values["arch_options"] = _parse_arch_options(args.arch_options)
        if args.recipe is not None:
            values["recipe"] = _read_recipe(args.recipe, "--recipe")
        if args.offline_recipe is not None:
            values["offline_recipe"] = _read_recipe(args.offline_recipe, "--offline-recipe")
        if args.offline_recipe is not None and values.get("offline_copies", 0) == 0:
            raise CliError(
                f"--offline-recipe {args.offline_recipe} needs --offline-copies N, the number of "
                f"augmented copies per training image (1 to {MAX_OFFLINE_COPIES})"
            )
        copies = args.offline_copies
        if copies is not None and 1 <= copies <= MAX_OFFLINE_COPIES and values.get("offline_recipe") is None:
            raise CliError(
                f"--offline-copies {copies} needs --offline-recipe NAME|PATH, the recipe that makes "
                "the copies: a preset such as standard, or a recipe JSON file"
            )
        return TrainConfig.from_dict(values), from_resume
    except ValueError as error:
        raise CliError(_as_flag_message(str(error), getattr(args, "config_flags", {}))) from None


def _as_flag_message(message: str, flags: dict[str, str]) -> str:
    """Reword a TrainConfig error for the command line: ``invalid epochs=0`` -> ``invalid --epochs 0``."""
    for field, flag in flags.items():
        prefix = f"invalid {field}="
        if not message.startswith(prefix):
            continue
        rest = message[len(prefix):]
        if ": invalid option " in rest:  # an --arch-option error names the option itself
            return f"invalid {flag} {rest.split(': invalid option ', 1)[1]}"
        if ": expected " not in rest:
            return message
        value, expected = rest.split(": expected ", 1)
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        expected = expected.replace(" or None", f", or leave {flag} out")
        return f"invalid {flag} {value}: expected {expected}"
    return message


def _read_json(path: Path, what: str) -> dict[str, Any]:
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CliError(f"{what} file not found: {path}") from None
    except (OSError, json.JSONDecodeError) as error:
        raise CliError(f"cannot read the {what} file {path}: {error}") from None
    if not isinstance(values, dict):
        raise CliError(f"invalid {what} file {path}: expected a JSON object")
    return values


def _parse_arch_options(items: list[str]) -> dict[str, Any]:
    options = {}
    for item in items:
        key, separator, text = item.partition("=")
        if not separator or not key:
            raise CliError(f"invalid --arch-option {item!r}: expected KEY=VALUE, e.g. pretrained=true")
        try:
            options[key] = json.loads(text)
        except json.JSONDecodeError:
            options[key] = text
    return options


def _read_recipe(value: str, flag: str) -> Any:
    from cifarlab.augment import PRESETS

    if value in PRESETS:
        return value
    path = Path(value)
    if path.suffix.lower() == ".json" or path.exists():
        return _read_json(path, "recipe")
    raise CliError(f"invalid {flag} {value!r}: give a preset ({', '.join(PRESETS)}) or a recipe JSON file")


def _default_out(arch: str) -> Path:
    from cifarlab import paths

    stamp = time.strftime("%Y%m%d-%H%M%S")
    return paths.user_checkpoint_dir() / f"{arch}-{stamp}.pt"


def _default_log(checkpoint: Path) -> Path:
    stem = checkpoint.name[: -len(checkpoint.suffix)] if checkpoint.suffix else checkpoint.name
    return checkpoint.with_name(stem + ".log.jsonl")


class _StopRequest:
    """Set by Ctrl-C or SIGTERM, or by the appearance of a stop file."""

    def __init__(self, stop_file: Path | None):
        self.event = threading.Event()
        self.stop_file = stop_file

    def is_set(self) -> bool:
        if self.event.is_set():
            return True
        if self.stop_file is not None and self.stop_file.exists():
            self.event.set()
        return self.event.is_set()


def run(args: argparse.Namespace) -> int:
    import torch

    from cifarlab.train import train
    from cifarlab.train.dataset import TrainSubsetTooLargeError

    config, from_resume = build_config(args)
    if args.print_config:
        print(json.dumps(config.to_dict(), indent=2))
        return 0
    resolve_device_flag(config.device)  # an unavailable accelerator fails here, with the flag's name

    if args.out is not None:
        out = args.out
    elif args.resume is not None:
        out = None  # the resumed checkpoint is updated in place
    else:
        out = _default_out(config.arch)
    log = args.log or _default_log(out or _resumed_checkpoint(args.resume))
    # Checked before training, so a bad path fails at once instead of after the last epoch.
    if out is not None:
        _check_output_path(out, "--out", suffix=".pt")
    _check_output_path(log, "--log")

    rank = int(os.environ.get("RANK", "0"))
    display = _Progress(sys.stderr, enabled=rank == 0)
    stop = _StopRequest(args.stop_file)
    restore_signals = _install_stop_handlers(stop, display)

    # The checkpoint module logs every save; at INFO that would cut the progress bar each epoch.
    if not args.verbose:
        logging.getLogger("cifarlab.checkpoints").setLevel(logging.WARNING)
    try:
        result = train(
            config,
            callback=display.on_record,
            stop=stop,
            resume_from=args.resume,
            checkpoint_path=out,
            log_path=log if rank == 0 else None,
        )
    except TrainSubsetTooLargeError as error:
        display.finish_line()
        raise CliError(
            f"--train-subset {error.train_subset} is larger than the {error.split_size:,} images of "
            f"the training split; choose up to {error.split_size} or leave it out"
        ) from None
    except ValueError as error:
        display.finish_line()
        raise CliError(str(error)) from None
    except torch.OutOfMemoryError:
        display.finish_line()
        raise CliError(
            f"out of memory on {config.device} with --batch-size {config.batch_size}; lower "
            "--batch-size or --eval-batch-size, or pick a smaller --arch"
        ) from None
    finally:
        restore_signals()

    if rank == 0:
        display.summary(result, log)
    return 0


def _check_output_path(path: Path, flag: str, *, suffix: str | None = None) -> None:
    """Raise CliError unless ``path`` names a file that can be written, without writing anything.

    Missing parent folders are allowed (training creates them) when their nearest existing
    ancestor is a writable folder.
    """
    if path.is_dir():
        name = "model.pt" if suffix == ".pt" else "train.log.jsonl"
        raise CliError(f"invalid {flag} {path}: it is a folder; give a file path such as {path / name}")
    if suffix is not None and path.suffix.lower() != suffix:
        raise CliError(f"invalid {flag} {path}: the file name must end in {suffix}, e.g. {path.with_name(path.name + suffix)}")
    ancestor = path.absolute().parent
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise CliError(f"invalid {flag} {path}: {ancestor} is a file, so the folder cannot be created; choose another path")
    # Only writing a scratch file tests this reliably, because permission bits miss read-only
    # mounts and special file systems such as /proc, and root passes every os.access check.
    try:
        with tempfile.NamedTemporaryFile(dir=ancestor, prefix=".cifarlab-", suffix=".check"):
            pass
    except OSError as error:
        raise CliError(
            f"invalid {flag} {path}: files cannot be written in {ancestor} ({error.strerror}); choose another path"
        ) from None


def _resumed_checkpoint(resume: Path) -> Path:
    from cifarlab.train.state import checkpoint_path_for

    return checkpoint_path_for(resume)


def _install_stop_handlers(stop: _StopRequest, display: "_Progress"):
    """Make the first Ctrl-C (or SIGTERM) a graceful stop and a second one an immediate exit."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous = {number: signal.getsignal(number) for number in (signal.SIGINT, signal.SIGTERM)}

    def handle(number: int, frame: Any) -> None:
        if stop.event.is_set():
            raise KeyboardInterrupt
        stop.event.set()
        display.message("stopping after this batch; press Ctrl-C again to quit at once")

    for number in previous:
        signal.signal(number, handle)

    def restore() -> None:
        for number, handler in previous.items():
            signal.signal(number, handler)

    return restore


def _format_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "--:--"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes:02d}:{seconds:02d}"


def _percent(value: float | None) -> str:
    return "  n/a " if value is None else f"{100 * value:5.1f}%"


class _Progress:
    """Turns training records into a redrawn bar on a terminal, or one line per epoch elsewhere."""

    def __init__(self, stream: TextIO, *, enabled: bool):
        self.stream = stream
        self.enabled = enabled
        self.is_tty = stream.isatty()
        self.bar_shown = False

    def on_record(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        event = record["event"]
        if event == "start":
            self._start(record)
        elif event == "batch" and self.is_tty:
            self._bar(record)
        elif event == "epoch":
            self._epoch(record)

    def _start(self, record: dict[str, Any]) -> None:
        sizes = record["sizes"]
        where = record["device"]
        if record["world_size"] > 1:
            where += f" x {record['world_size']} processes"
        resumed = f", resumed in epoch {record['start_epoch'] + 1}" if record["resumed_from"] else ""
        self.message(
            f"training {record['arch']} for {record['epochs']} epochs on {where}: "
            f"{sizes['train']} training and {sizes['val']} validation images, "
            f"{record['steps_per_epoch']} steps per epoch{resumed}"
        )

    def _bar(self, record: dict[str, Any]) -> None:
        width = max(10, min(30, shutil.get_terminal_size((100, 20)).columns - 80))
        filled = int(width * record["batch"] / record["batches"])
        speed = record["images_per_s"]
        text = (
            f"\repoch {record['epoch']}/{record['epochs']} [{'#' * filled}{'.' * (width - filled)}] "
            f"{record['batch']}/{record['batches']} loss {record['loss']:.3f} acc {_percent(record['acc'])} "
            f"lr {record['lr']:.2e} {speed or 0:,.0f} img/s ETA {_format_seconds(record['eta_s'])}"
        )
        self.stream.write(text + "\x1b[K")
        self.stream.flush()
        self.bar_shown = True

    def _epoch(self, record: dict[str, Any]) -> None:
        val = ""
        if record["val_loss"] is not None:
            val = f" | val loss {record['val_loss']:.3f} acc {_percent(record['val_acc'])}"
        best = " *" if record["is_best"] and record["val_loss"] is not None else ""
        self.message(
            f"epoch {record['epoch']}/{record['epochs']}: train loss {record['train_loss']:.3f} "
            f"acc {_percent(record['train_acc'])}{val}{best} | {record['epoch_time_s']:.1f} s, "
            f"{record['images_per_s'] or 0:,.0f} img/s, ETA {_format_seconds(record['eta_s'])}"
        )

    def message(self, text: str) -> None:
        if not self.enabled:
            return
        self.finish_line()
        print(text, file=self.stream, flush=True)

    def finish_line(self) -> None:
        if self.bar_shown:
            self.stream.write("\r\x1b[K")
            self.bar_shown = False

    def summary(self, result: Any, log: Path) -> None:
        self.finish_line()
        lines = [f"{result.status}: {result.epochs_completed}/{result.config.epochs} epochs in {_format_seconds(result.train_time_s)}"]
        if result.best_epoch is not None and result.best_val_acc is not None:
            lines.append(
                f"best epoch {result.best_epoch}: val acc {_percent(result.best_val_acc).strip()}, "
                f"val loss {result.best_val_loss:.3f} (picked by {result.config.monitor})"
            )
        if result.test_acc is not None:
            lines.append(f"test acc {_percent(result.test_acc).strip()} (measured once on the best model, not used to pick it)")
        if result.checkpoint_path is not None:
            lines.append(f"checkpoint: {result.checkpoint_path}")
        lines.append(f"log: {log}")
        if result.resume_path is not None:
            lines.append(f"resume with: python -m cifarlab train --resume {result.checkpoint_path or result.resume_path}")
        print("\n".join(lines), flush=True)
