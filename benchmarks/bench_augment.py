"""Measure training-time augmentation throughput: cifarlab's batch augmenter against the usual recipe.

Both sides run the same operations on the same CIFAR-10 training images: a random crop with
4 px reflect padding, a horizontal flip with p=0.5 and a 16 px Cutout square in the mean colour.

- ``batch``: `cifarlab.augment.BatchAugmenter` with the ``cutout`` preset on ``uint8`` batches of
  ``--batch-size`` images, including the shuffled gather of each batch from the array.
- ``per-sample``: the pipeline most CIFAR-10 tutorials and course reports write. A dataset in
  the style of ``torchvision.datasets.CIFAR10`` returns one PIL image per index, and a
  ``transforms.Compose`` of ``RandomCrop``, ``RandomHorizontalFlip``, ``ToTensor`` and a
  per-image Cutout runs in a ``DataLoader`` with ``--workers`` worker processes.

Each configuration augments ``--images`` images per repeat, and the best of ``--repeats`` is
reported in images per second.

``--part preview`` measures instead the server-side time of one rerun of the Augmentation page
after a slider change, with Streamlit's AppTest and without a browser. It reports the time the
page's script runs and the whole ``AppTest.run`` around it, over ``--reruns`` slider changes per
view.

    .venv/bin/python benchmarks/bench_augment.py --images 10000 --workers 0 2
    .venv/bin/python benchmarks/bench_augment.py --part preview --reruns 15
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

from cifarlab.augment import PRESETS, BatchAugmenter
from cifarlab.data import CIFAR10_MEAN, load_cifar10


class PilCifar(Dataset):
    """Training images as PIL images, one per index, the way torchvision.datasets.CIFAR10 serves them."""

    def __init__(self, images_hwc: np.ndarray, labels: np.ndarray, transform):
        self.images_hwc = images_hwc
        self.labels = labels
        self.transform = transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int):
        picture = Image.fromarray(self.images_hwc[index])
        return self.transform(picture), int(self.labels[index])


class PerImageCutout:
    """Cutout on one ``(3, H, W)`` tensor with NumPy draws, as tutorials write it (same box convention)."""

    def __init__(self, size: int, fill: tuple[float, float, float]):
        self.size = size
        self.fill = torch.tensor(fill).view(3, 1, 1)

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        height, width = image.shape[1:]
        center_y, center_x = np.random.randint(height), np.random.randint(width)
        top, left = center_y - self.size // 2, center_x - self.size // 2
        top_clipped, left_clipped = max(top, 0), max(left, 0)
        bottom, right = min(top + self.size, height), min(left + self.size, width)
        image = image.clone()
        image[:, top_clipped:bottom, left_clipped:right] = self.fill
        return image


def per_sample_throughput(images_hwc, labels, count, batch_size, workers, repeats) -> float:
    pipeline = transforms.Compose(
        [
            transforms.RandomCrop(32, padding=4, padding_mode="reflect"),
            transforms.RandomHorizontalFlip(),
            transforms.ToTensor(),
            PerImageCutout(16, CIFAR10_MEAN),
        ]
    )
    dataset = PilCifar(images_hwc[:count], labels[:count], pipeline)
    loader = DataLoader(
        dataset, batch_size=batch_size, shuffle=True, num_workers=workers, persistent_workers=workers > 0
    )
    best = 0.0
    for _ in range(repeats + (1 if workers else 0)):
        start = time.perf_counter()
        seen = 0
        for batch, _ in loader:
            seen += batch.shape[0]
        best = max(best, seen / (time.perf_counter() - start))
    return best


def batch_throughput(images, labels, count, batch_size, repeats) -> float:
    augment = BatchAugmenter(PRESETS["cutout"])
    generator = torch.Generator().manual_seed(0)
    images, labels = images[:count], labels[:count]
    best = 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        order = torch.randperm(count, generator=generator)
        seen = 0
        for begin in range(0, count, batch_size):
            ids = order[begin : begin + batch_size]
            batch, _ = augment(images[ids], labels[ids], generator)
            seen += batch.shape[0]
        best = max(best, seen / (time.perf_counter() - start))
    return best


REPO_ROOT = Path(__file__).resolve().parent.parent

# (operation, view, slider key, values cycled through): what a student typically moves.
PREVIEW_CASES = [
    ("cutout", "One image", "aug_param_cutout_size", [8, 12, 16, 20]),
    ("rotation", "One image", "aug_param_rotation_max_angle", [10.0, 20.0, 30.0, 40.0]),
    ("mixup", "One image", "aug_param_mixup_p", [0.5, 0.75, 1.0, 0.25]),
    ("cutout", "Many draws", "aug_param_cutout_size", [8, 12, 16, 20]),
    ("autoaugment", "Many draws", "aug_draws", [16, 20, 24, 12]),
    ("color_jitter", "All classes", "aug_param_color_jitter_brightness", [0.2, 0.4, 0.6, 0.8]),
]


def preview_rerun_times(reruns: int) -> list[tuple[str, str, float, float, float]]:
    """Time reruns of the page after a slider change.

    Returns (operation, view, median script ms, max script ms, median AppTest ms) per case. The
    script time is what the server spends running the page (widgets, augmentation, image
    encoding). The AppTest time adds AppTest's own work around it: starting a thread, polling
    for the end of the run and parsing the elements.
    """
    sys.path.insert(0, str(REPO_ROOT))
    from streamlit.runtime.scriptrunner import script_runner
    from streamlit.testing.v1 import AppTest, local_script_runner

    # A Streamlit server compiles a page once and keeps the bytecode in one ScriptCache for all
    # reruns. AppTest makes a new cache per run, which would add the page's compile time to every
    # rerun, so one shared cache measures what the server does.
    shared_cache = local_script_runner.ScriptCache()
    local_script_runner.ScriptCache = lambda: shared_cache

    script_times: list[float] = []
    run_script = script_runner.ScriptRunner._run_script

    def timed_run_script(self, *args, **kwargs):
        start = time.perf_counter()
        try:
            return run_script(self, *args, **kwargs)
        finally:
            script_times.append((time.perf_counter() - start) * 1000)

    script_runner.ScriptRunner._run_script = timed_run_script

    results = []
    for op_name, view, slider_key, values in PREVIEW_CASES:
        app = AppTest.from_file(str(REPO_ROOT / "pages" / "2_Augmentation.py"), default_timeout=600)
        app.session_state["aug_op"] = op_name
        app.session_state["aug_view"] = view
        app.run()
        if app.exception:
            raise RuntimeError(f"the page failed for {op_name}: {app.exception[0].value}")
        # Two warm-up reruns: the first use of an operation imports and compiles kernels.
        script_times.clear()
        app_times = []
        for step in range(reruns + 2):
            app.slider(key=slider_key).set_value(values[step % len(values)])
            start = time.perf_counter()
            app.run()
            app_times.append((time.perf_counter() - start) * 1000)
        scripts = script_times[2:]
        results.append(
            (op_name, view, statistics.median(scripts), max(scripts), statistics.median(app_times[2:]))
        )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--part", choices=("throughput", "preview"), default="throughput", help="what to measure")
    parser.add_argument("--reruns", type=int, default=15, help="preview: slider changes timed per view")
    parser.add_argument("--images", type=int, default=10000, help="images augmented per repeat")
    parser.add_argument("--batch-size", type=int, default=512, help="images per batch")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2], help="DataLoader worker counts to try")
    parser.add_argument("--repeats", type=int, default=3, help="repeats per configuration; the best is reported")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch CPU threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    if args.part == "preview":
        # The app sets its own thread count when a page first imports ui.common.
        os.environ["CIFARLAB_APP_THREADS"] = str(args.threads)
        print(f"# {platform.processor() or platform.machine()}, torch {torch.__version__}, {args.threads} threads")
        print(f"# {args.reruns} reruns after a slider change per view, AppTest with one script cache")
        print("| operation | view | script median ms | script max ms | AppTest run median ms |")
        print("| --- | --- | ---: | ---: | ---: |")
        for op_name, view, median, worst, app_median in preview_rerun_times(args.reruns):
            print(f"| {op_name} | {view} | {median:.0f} | {worst:.0f} | {app_median:.0f} |")
        return

    data = load_cifar10()
    images = torch.from_numpy(np.ascontiguousarray(data.train_images))
    labels = torch.from_numpy(np.ascontiguousarray(data.train_labels))
    images_hwc = np.ascontiguousarray(data.train_images.transpose(0, 2, 3, 1))

    print(f"# {platform.processor() or platform.machine()}, torch {torch.__version__}, {args.threads} threads")
    print(f"# {args.images} images per repeat, batch size {args.batch_size}, best of {args.repeats}")
    print("| pipeline | images/s |")
    print("| --- | ---: |")
    batched = batch_throughput(images, labels, args.images, args.batch_size, args.repeats)
    print(f"| BatchAugmenter(PRESETS['cutout']), uint8 batches | {batched:,.0f} |")
    for workers in args.workers:
        rate = per_sample_throughput(images_hwc, data.train_labels, args.images, args.batch_size, workers, args.repeats)
        print(f"| PIL transforms.Compose in DataLoader, {workers} workers | {rate:,.0f} (batch is {batched / rate:.1f}x) |")


if __name__ == "__main__":
    main()
