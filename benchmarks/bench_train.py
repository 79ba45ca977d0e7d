"""Measure training throughput per architecture, and cifarlab's loop against the usual DataLoader recipe.

For each architecture:

- ``engine``: `cifarlab.train.train` itself, with the ``standard`` recipe (random crop with 4 px
  reflect padding, horizontal flip) on ``uint8`` tensors, SGD with Nesterov momentum, one batch
  record per step. Throughput counts the steps after ``--warmup`` steps, from the records' arrival
  times, so data loading and model building are left out.
- ``eval``: forward passes without gradients in batches of 512, as validation runs them.
- ``dataloader`` (for the ``--compare`` architectures): the same model, optimizer and
  augmentation, written the way most CIFAR-10 tutorials write them. A ``Dataset`` in the style
  of ``torchvision.datasets.CIFAR10`` returns one PIL image per index, a ``transforms.Compose``
  of ``RandomCrop(32, padding=4, padding_mode="reflect")``, ``RandomHorizontalFlip`` and
  ``ToTensor`` augments it, and a ``DataLoader`` with ``--workers`` worker processes batches it.

Transfer-learning architectures run with their default options (frozen backbone, 96 px input)
but ``pretrained=False``: the computation is the same as with ImageNet weights, which the
benchmark does not need to read.

Throughput is wall-clock images per second. On a shared machine other processes slow it down,
so each architecture also gets ``cpu_images_per_s``: images per second of CPU time used by the
training process (all its threads), which depends far less on what else runs.

The results go to ``benchmarks/results/train_speed.json`` (arch -> training images/s, eval
images/s and the time of a 45,000-image epoch plus a 5,000-image validation), which the Train
page reads to estimate time per epoch, and to a Markdown table on stdout.

    .venv/bin/python benchmarks/bench_train.py
    .venv/bin/python benchmarks/bench_train.py --archs mlp lenet --compare lenet --workers 0 2
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

from cifarlab.data import load_cifar10
from cifarlab.models import ARCHS, build_model
from cifarlab.train import TrainConfig, train

REPO_ROOT = Path(__file__).resolve().parent.parent
RESULTS_FILE = REPO_ROOT / "benchmarks" / "results" / "train_speed.json"

EPOCH_IMAGES = 45_000  # training images per epoch with the default 5,000-image validation split
VAL_IMAGES = 5_000
EVAL_BATCH_SIZE = 512

# Steps measured per architecture: about ten thousand images for the small models, a few
# batches for the large ones, whose steps take ten seconds or more on one CPU core. --steps-scale
# multiplies them (use more on a GPU).
DEFAULT_STEPS = {
    "mlp": 60,
    "lenet": 100,
    "cnn": 8,
    "alexnet": 4,
    "vgg16": 4,
    "resnet": 4,
    "vgg19": 3,
    "resnet50": 3,
    "resnet152": 3,
}
# Transfer models are measured without reading ImageNet weights (see the module docstring).
BENCH_OPTIONS = {"vgg19": {"pretrained": False}, "resnet50": {"pretrained": False}, "resnet152": {"pretrained": False}}

# The same optimizer on both sides of the comparison.
LR, MOMENTUM, WEIGHT_DECAY = 0.01, 0.9, 5e-4


def hardware_description(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)}, torch {torch.__version__}"
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{model}, {os.cpu_count()} cores ({platform.machine()}), no GPU, "
        f"torch {torch.__version__} with {torch.get_num_threads()} thread(s)"
    )


def engine_throughput(data, arch: str, batch_size: int, steps: int, warmup: int, device: str) -> tuple[float, float]:
    """Train ``warmup + steps`` steps with cifarlab.train; return images/s over the last ``steps``.

    Returns images per second of wall-clock time and per second of this process's CPU time.
    """
    config = TrainConfig(
        arch=arch,
        arch_options=BENCH_OPTIONS.get(arch, {}),
        batch_size=batch_size,
        epochs=1,
        optimizer="sgd",
        lr=LR,
        momentum=MOMENTUM,
        weight_decay=WEIGHT_DECAY,
        schedule="none",
        recipe="standard",
        train_subset=(warmup + steps) * batch_size,
        val_size=0,
        evaluate_test=False,
        device=device,
    )
    arrivals: list[tuple[float, float]] = []

    def on_record(record: dict) -> None:
        if record["event"] == "batch":
            arrivals.append((time.perf_counter(), time.process_time()))

    train(config, data, callback=on_record)
    images = steps * batch_size
    (wall_start, cpu_start), (wall_end, cpu_end) = arrivals[warmup - 1], arrivals[-1]
    return images / (wall_end - wall_start), images / (cpu_end - cpu_start)


@torch.no_grad()
def eval_throughput(data, arch: str, images: int, device: torch.device) -> float:
    model = build_model(arch, **BENCH_OPTIONS.get(arch, {})).to(device).eval()
    batch = torch.from_numpy(data.train_images[:EVAL_BATCH_SIZE]).to(device)
    model(batch.float().div_(255))  # warm-up
    _synchronize(device)

    start = time.perf_counter()
    done = 0
    while done < images:
        model(batch.float().div_(255))
        done += len(batch)
    _synchronize(device)
    return done / (time.perf_counter() - start)


class PilCifar(Dataset):
    """Training images served one PIL image per index, as torchvision.datasets.CIFAR10 serves them."""

    def __init__(self, images_hwc: np.ndarray, labels: np.ndarray, transform):
        self.images_hwc = images_hwc
        self.labels = labels
        self.transform = transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int):
        picture = Image.fromarray(self.images_hwc[index])
        return self.transform(picture), int(self.labels[index])


def dataloader_throughput(
    data, arch: str, batch_size: int, steps: int, warmup: int, workers: int, device: torch.device
) -> tuple[float, float | None]:
    """Train with the per-sample DataLoader recipe; return images/s over the last ``steps``.

    Returns images per second of wall-clock time and, with no worker processes, per second of
    this process's CPU time (worker processes' CPU time is not counted, so then None).
    """
    count = (warmup + steps) * batch_size
    images_hwc = np.ascontiguousarray(data.train_images[:count].transpose(0, 2, 3, 1))
    transform = transforms.Compose(
        [
            transforms.RandomCrop(32, padding=4, padding_mode="reflect"),
            transforms.RandomHorizontalFlip(),
            transforms.ToTensor(),
        ]
    )
    loader = DataLoader(
        PilCifar(images_hwc, data.train_labels[:count], transform),
        batch_size=batch_size,
        shuffle=True,
        num_workers=workers,
        drop_last=True,
        pin_memory=device.type == "cuda",
    )

    torch.manual_seed(0)
    model = build_model(arch, **BENCH_OPTIONS.get(arch, {})).to(device).train()
    parameters = [parameter for parameter in model.parameters() if parameter.requires_grad]
    optimizer = torch.optim.SGD(parameters, lr=LR, momentum=MOMENTUM, nesterov=True, weight_decay=WEIGHT_DECAY)

    wall_start = cpu_start = None
    for step, (images, labels) in enumerate(loader):
        if step == warmup:
            wall_start, cpu_start = time.perf_counter(), time.process_time()
        images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
        loss = F.cross_entropy(model(images), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        loss.item()  # one synchronization per step, like the engine's batch record
    images = steps * batch_size
    wall = images / (time.perf_counter() - wall_start)
    cpu = images / (time.process_time() - cpu_start) if workers == 0 else None
    return wall, cpu


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--archs", nargs="+", default=list(ARCHS), help="architectures to measure")
    parser.add_argument("--compare", nargs="*", default=["mlp", "lenet", "cnn"], help="architectures also run through the DataLoader recipe")
    parser.add_argument("--workers", nargs="+", type=int, default=[0, 2], help="DataLoader worker processes to try")
    parser.add_argument("--batch-size", type=int, default=128, help="images per step")
    parser.add_argument("--warmup", type=int, default=1, help="steps run before timing starts")
    parser.add_argument("--steps-scale", type=float, default=1.0, help="multiplies the measured steps of every architecture")
    parser.add_argument("--repeats", type=int, default=2, help="runs per measurement; the fastest counts")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's own choice)")
    parser.add_argument("--out", type=Path, default=RESULTS_FILE, help="JSON file to write")
    args = parser.parse_args()

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    data = load_cifar10()
    hardware = hardware_description(device)
    load_before = os.getloadavg()
    print(f"hardware: {hardware}; load average {load_before[0]:.1f}", file=sys.stderr)

    results: dict[str, dict] = {}
    comparison: dict[str, dict] = {}
    for arch in args.archs:
        steps = max(2, round(DEFAULT_STEPS.get(arch, 10) * args.steps_scale))
        compared = arch in args.compare

        # On a shared machine other processes only ever slow a run down, so the fastest of the
        # repeats is the closest to what the hardware can do. Alternating the engine and the
        # DataLoader runs exposes both to the same load.
        engine_runs = []
        loader_runs: dict[int, list[tuple[float, float | None]]] = {workers: [] for workers in args.workers}
        for _ in range(args.repeats):
            engine_runs.append(engine_throughput(data, arch, args.batch_size, steps, args.warmup, str(device)))
            for workers in args.workers if compared else ():
                loader_runs[workers].append(
                    dataloader_throughput(data, arch, args.batch_size, steps, args.warmup, workers, device)
                )
        train_speed = max(wall for wall, _ in engine_runs)
        cpu_speed = max(cpu for _, cpu in engine_runs)
        eval_images = max(EVAL_BATCH_SIZE, steps * args.batch_size // 2)
        eval_speed = max(eval_throughput(data, arch, eval_images, device) for _ in range(args.repeats))

        results[arch] = {
            "images_per_s": round(train_speed, 1),
            "cpu_images_per_s": round(cpu_speed, 1),
            "eval_images_per_s": round(eval_speed, 1),
            "epoch_s": round(EPOCH_IMAGES / train_speed, 1),
            "val_s": round(VAL_IMAGES / eval_speed, 1),
            "batch_size": args.batch_size,
            "steps_measured": steps,
            "options": BENCH_OPTIONS.get(arch, {}),
        }
        print(
            f"{arch}: {train_speed:,.0f} train images/s ({cpu_speed:,.0f} per CPU-second), "
            f"{eval_speed:,.0f} eval images/s",
            file=sys.stderr,
        )
        if not compared:
            continue

        loaders = {str(workers): round(max(wall for wall, _ in runs), 1) for workers, runs in loader_runs.items()}
        entry = {
            "engine_images_per_s": round(train_speed, 1),
            "engine_cpu_images_per_s": round(cpu_speed, 1),
            "dataloader_images_per_s_by_workers": loaders,
            "ratio_to_best_dataloader": round(train_speed / max(loaders.values()), 2),
        }
        if 0 in loader_runs:
            loader_cpu = max(cpu for _, cpu in loader_runs[0])
            entry["dataloader_cpu_images_per_s"] = round(loader_cpu, 1)
            entry["cpu_ratio_to_dataloader"] = round(cpu_speed / loader_cpu, 2)
        comparison[arch] = entry
        print(f"{arch}: DataLoader {loaders} images/s", file=sys.stderr)

    report = {
        "hardware": hardware,
        "device": device.type,
        "measured": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": "python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
        "repeats": args.repeats,
        "load_average_1min": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
        "epoch_images": EPOCH_IMAGES,
        "val_images": VAL_IMAGES,
        "archs": results,
        "dataloader_comparison": comparison,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    temporary = args.out.with_name(args.out.name + ".tmp")
    temporary.write_text(json.dumps(report, indent=2) + "\n")
    os.replace(temporary, args.out)

    print("| arch | train images/s | per CPU-second | eval images/s | epoch of 45,000 (s) | + validation of 5,000 (s) |")
    print("|---|---:|---:|---:|---:|---:|")
    for arch, row in results.items():
        print(
            f"| {arch} | {row['images_per_s']:,.0f} | {row['cpu_images_per_s']:,.0f} | "
            f"{row['eval_images_per_s']:,.0f} | {row['epoch_s']:,.0f} | {row['val_s']:,.0f} |"
        )
    if comparison:
        workers = " | ".join(f"DataLoader, {count} workers" for count in args.workers)
        print(f"\n| arch | cifarlab engine | {workers} | ratio | ratio per CPU-second |")
        print("|---|---:|" + "---:|" * len(args.workers) + "---:|---:|")
        for arch, row in comparison.items():
            loaders = " | ".join(f"{row['dataloader_images_per_s_by_workers'][str(count)]:,.0f}" for count in args.workers)
            cpu_ratio = f"{row['cpu_ratio_to_dataloader']:.2f}x" if "cpu_ratio_to_dataloader" in row else "n/a"
            print(f"| {arch} | {row['engine_images_per_s']:,.0f} | {loaders} | {row['ratio_to_best_dataloader']:.2f}x | {cpu_ratio} |")


if __name__ == "__main__":
    main()
