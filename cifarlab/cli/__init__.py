"""Command-line interface: ``python -m cifarlab COMMAND ...`` or ``cifarlab COMMAND ...``.

Each command lives in its own module with an ``add_parser(subparsers)`` function that registers
its sub-parser and sets ``func`` to a handler taking the parsed arguments and returning an exit
code. Modules are imported here so ``--help`` lists every command.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
import tempfile
from pathlib import Path

from cifarlab import __version__

COMMAND_MODULES = ("data", "train", "evaluate", "attack", "checkpoints", "weights")


class CliError(Exception):
    """An error whose message is shown to the user as is, without a traceback."""


def resolve_device_flag(value: str) -> str:
    """Return the torch device that ``--device VALUE`` names, resolving ``auto``.

    Raises:
        CliError: with the message ``train`` gives for an invalid or unavailable device.
    """
    from cifarlab.train.distributed import resolve_device

    try:
        return str(resolve_device(value))
    except ValueError as error:
        # resolve_device words its message for Python callers (device='cpu'); name the flag.
        reason = str(error).split(": ", 1)[-1].replace("device='cpu' or 'auto'", "--device cpu or auto")
        raise CliError(f"invalid --device {value}: {reason}") from None


def check_checkpoint_file(value: str | os.PathLike) -> Path:
    """Return ``value`` as a path, or raise CliError unless it names an existing file."""
    path = Path(value)
    if path.is_dir():
        raise CliError(f"invalid --checkpoint {path}: it is a folder; give the path of a .pt checkpoint file")
    if not path.is_file():
        raise CliError(f"checkpoint {path} not found; list them with 'cifarlab checkpoints list'")
    return path


def check_output_file(value: str | os.PathLike | None, flag: str) -> None:
    """Raise CliError unless ``value`` names a file in an existing folder; None passes.

    Called before the work starts, so a typo in the path fails at once and no folder is made.
    """
    if value is None:
        return
    path = Path(value)
    if path.is_dir():
        raise CliError(f"invalid {flag} {path}: it is a folder; give a file path inside it")
    parent = path.absolute().parent
    if not parent.is_dir():
        raise CliError(f"invalid {flag} {path}: the folder {parent} does not exist; create it first or choose another path")
    # Only writing a scratch file tests this reliably, because permission bits miss read-only
    # mounts and special file systems such as /proc.
    try:
        with tempfile.NamedTemporaryFile(dir=parent, prefix=f".{path.name}.", suffix=".check"):
            pass
    except OSError as error:
        raise CliError(
            f"invalid {flag} {path}: files cannot be written in {parent} ({error.strerror}); choose another folder"
        ) from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cifarlab", description="Train, evaluate and attack CIFAR-10 classifiers."
    )
    parser.add_argument("--version", action="version", version=f"cifarlab {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"cifarlab.cli.{name}")
        except ModuleNotFoundError as error:
            # A command whose module is not there yet is left out of the parser.
            if error.name != f"cifarlab.cli.{name}":
                raise
            continue
        module.add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.func(args) or 0)
    except CliError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
