"""Measure checkpoint sizes and load times, and whether float16 storage changes predictions.

Part 1 saves a freshly built model of every architecture in float32 and in float16, and times
loading each file. Models use their default options. Transfer models use their pretrained
layout without the ImageNet weights, which change no size.

Part 2 compares the predictions of a trained model before and after a float16 round trip on
the first ``--images`` test images. Without ``--checkpoint`` it first trains a small CNN on the
bundled CIFAR-10 images with ``cifarlab.train`` (a few minutes on a 2-core CPU), so the weights
are real trained weights rather than random ones.

    .venv/bin/python benchmarks/bench_checkpoints.py
    .venv/bin/python benchmarks/bench_checkpoints.py --checkpoint path/to/model.pt --skip-sizes
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path

import torch

from cifarlab.checkpoints import load_checkpoint, save_checkpoint
from cifarlab.data import load_cifar10
from cifarlab.models import build_model, list_archs


def measure_sizes(folder: Path) -> None:
    print("| arch | params | float32 file | float16 file | ratio | load float32 (s) | load float16 (s) |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for arch in list_archs():
        model = build_model(arch, fetch_weights=False)
        params = sum(p.numel() for p in model.parameters())
        sizes = {}
        load_times = {}
        for half in (False, True):
            path = save_checkpoint(folder / f"{arch}-{int(half)}.pt", model, {}, half=half)
            sizes[half] = path.stat().st_size
            start = time.perf_counter()
            load_checkpoint(path)
            load_times[half] = time.perf_counter() - start
            path.unlink()
        print(
            f"| {arch} | {params / 1e6:.2f} M | {sizes[False] / 1e6:.1f} MB | "
            f"{sizes[True] / 1e6:.1f} MB | {sizes[True] / sizes[False]:.2f} | "
            f"{load_times[False]:.2f} | {load_times[True]:.2f} |",
            flush=True,
        )
        del model


def train_small_cnn(folder: Path, epochs: int, subset: int) -> Path:
    from cifarlab.train import TrainConfig, train

    config = TrainConfig(
        arch="cnn",
        arch_options={"width": 32},
        epochs=epochs,
        batch_size=128,
        lr=0.05,
        train_subset=subset,
        val_size=1000,
        device="cpu",
        evaluate_test=False,
        log_every_steps=50,
    )
    path = folder / "cnn-trained.pt"
    start = time.perf_counter()
    result = train(config, load_cifar10(), checkpoint_path=path)
    print(
        f"trained cnn (width 32) for {epochs} epochs on {subset} images in "
        f"{time.perf_counter() - start:.0f} s; best validation accuracy {result.best_val_acc:.4f}",
        flush=True,
    )
    return path


def compare_precision(checkpoint: Path, folder: Path, count: int) -> None:
    data = load_cifar10()
    images = torch.from_numpy(data.test_images[:count]).float() / 255
    labels = torch.from_numpy(data.test_labels[:count]).long()

    full = load_checkpoint(checkpoint).model
    half_path = save_checkpoint(folder / "half.pt", full, {}, half=True)
    full_path = save_checkpoint(folder / "full.pt", full, {}, half=False)
    half = load_checkpoint(half_path).model
    with torch.no_grad():
        logits_full = full(images)
        logits_half = half(images)

    predicted_full = logits_full.argmax(1)
    predicted_half = logits_half.argmax(1)
    agree = int((predicted_full == predicted_half).sum())
    print(f"checkpoint: {checkpoint.name} ({full.arch}, options {full.options})")
    print(f"images: first {count} test images")
    print(f"file size float32 / float16: {full_path.stat().st_size / 1e6:.2f} MB / {half_path.stat().st_size / 1e6:.2f} MB")
    print(f"same argmax: {agree} / {count}")
    print(f"accuracy float32: {(predicted_full == labels).float().mean():.4f}")
    print(f"accuracy float16 storage: {(predicted_half == labels).float().mean():.4f}")
    print(f"max |logit difference|: {(logits_full - logits_half).abs().max():.2e}")
    print(f"max |logit| float32: {logits_full.abs().max():.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, help="a trained checkpoint for part 2 (default: train a small CNN)")
    parser.add_argument("--images", type=int, default=500, help="test images compared in part 2")
    parser.add_argument("--epochs", type=int, default=3, help="epochs of the small CNN trained in part 2")
    parser.add_argument("--subset", type=int, default=10000, help="training images for the small CNN")
    parser.add_argument("--skip-sizes", action="store_true", help="skip part 1")
    parser.add_argument("--skip-precision", action="store_true", help="skip part 2")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    print(f"torch {torch.__version__}, {platform.machine()}, {torch.get_num_threads()} threads")
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        if not args.skip_sizes:
            measure_sizes(folder)
        if not args.skip_precision:
            checkpoint = args.checkpoint or train_small_cnn(folder, args.epochs, args.subset)
            compare_precision(checkpoint, folder, args.images)


if __name__ == "__main__":
    main()
