"""``cifarlab weights list|download``: torchvision's ImageNet weights for transfer learning."""

from __future__ import annotations

import argparse

from cifarlab.cli import CliError
from cifarlab.models.transfer import TORCHVISION_MODELS, WeightsError, download_weights, load_cached_weights, weights_path


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "weights",
        help="list or download the ImageNet weights of the transfer-learning models",
        description="List or download the ImageNet weights that vgg19, resnet50 and resnet152 "
        "start from. They live in torchvision's cache ($TORCH_HOME/hub/checkpoints, by default "
        "~/.cache/torch/hub/checkpoints); training reads them from there and never downloads.",
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    list_parser = actions.add_parser("list", help="show each file, its folder and whether it is cached")
    list_parser.add_argument(
        "--verify", action="store_true", help="also check each cached file's SHA-256 and load it"
    )
    list_parser.set_defaults(func=run_list)

    download_parser = actions.add_parser(
        "download", help="download weights into torchvision's cache (needs internet access)"
    )
    download_parser.add_argument(
        "archs", nargs="+", metavar="ARCH", help=f"architectures: {', '.join(TORCHVISION_MODELS)}"
    )
    download_parser.set_defaults(func=run_download)


def run_list(args: argparse.Namespace) -> int:
    rows = []
    for arch, (_, weights) in TORCHVISION_MODELS.items():
        path = weights_path(weights)
        if not path.is_file():
            state = "missing"
        elif args.verify:
            try:
                load_cached_weights(arch)
            except WeightsError as error:
                state = f"corrupt: {error}"
            else:
                state = "cached, verified"
        else:
            state = "cached"
        rows.append((arch, f"{type(weights).__name__}.{weights.name}", str(path), f"[{state}]"))
    widths = [max(len(row[column]) for row in rows) for column in range(3)]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row[:3], widths)) + "  " + row[3])
    return 0


def run_download(args: argparse.Namespace) -> int:
    unknown = [arch for arch in args.archs if arch not in TORCHVISION_MODELS]
    if unknown:
        raise CliError(
            f"no ImageNet weights for {', '.join(unknown)}: choose from {', '.join(TORCHVISION_MODELS)}"
        )
    for arch in args.archs:
        try:
            path = download_weights(arch)
        except (OSError, RuntimeError) as error:
            # urllib raises URLError (an OSError) offline; torch.hub raises RuntimeError on a
            # hash mismatch.
            raise CliError(
                f"downloading the {arch} weights failed: {error}. Check the internet connection, "
                f"or copy the file into {weights_path(TORCHVISION_MODELS[arch][1]).parent} by hand "
                "(`cifarlab weights list` names it)"
            ) from error
        print(f"{arch}: {path}")
    return 0
