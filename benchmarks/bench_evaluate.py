"""Measure evaluation: scoring the 10,000 test images per architecture, and the Reports page.

``--part evaluate`` times `cifarlab.evaluate.predict_logits` over the test images of the bundled
data set for each architecture, then `compute_metrics` on the result, and prints wall and CPU
seconds. The models are untrained (random weights, transfer models in their pretrained layout
without ImageNet weights): the time of a forward pass does not depend on the weights' values.
The transfer models resize every image to 224x224, which costs minutes per 1,000 images on a
small CPU, so by default they score only ``--transfer-images`` images and the 10,000-image time
is extrapolated linearly from them (marked "est." in the output). ``--max-images`` caps every
architecture the same way.

``--part page`` times the Reports page with a cached report, server-side with Streamlit's
AppTest and without a browser. The first run in a fresh process includes the imports and
loading the data set and the report into Streamlit's caches. The ``--reruns`` later reruns
each read the report from ``st.cache_data``. The report is computed before timing starts.

    .venv/bin/python benchmarks/bench_evaluate.py --part evaluate
    .venv/bin/python benchmarks/bench_evaluate.py --part evaluate --archs lenet resnet
    .venv/bin/python benchmarks/bench_evaluate.py --part page --reruns 10
    .venv/bin/python benchmarks/bench_evaluate.py --part evaluate --threads 1
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO_ROOT = Path(__file__).resolve().parent.parent


def cpu_model() -> str:
    try:
        output = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return platform.processor() or platform.machine()
    for line in output.splitlines():
        if line.startswith("Model name"):
            return line.split(":", 1)[1].strip()
    return platform.machine()


def print_machine() -> None:
    load = os.getloadavg()
    print(
        f"# {cpu_model()}, {os.cpu_count()} CPUs, torch {torch.__version__} with "
        f"{torch.get_num_threads()} threads, Python {platform.python_version()}, "
        f"load average {load[0]:.1f}"
    )


def time_call(function):
    """Return the result of ``function()`` with its wall and CPU seconds."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = function()
    return result, time.perf_counter() - wall, time.process_time() - cpu


def bench_evaluate(archs: list[str], batch_size: int, transfer_images: int, max_images: int | None) -> None:
    from cifarlab.data import load_cifar10
    from cifarlab.evaluate import compute_metrics, predict_logits
    from cifarlab.models import ARCHS, build_model

    data = load_cifar10()
    print_machine()
    print(f"# {len(data.test_labels):,} test images of {data.description}, batch size {batch_size}")
    print("| arch | params | images scored | predict wall (s) | predict CPU (s) | images/s | 10,000 images wall (s) | metrics wall (s) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for arch in archs:
        torch.manual_seed(0)
        model = build_model(arch, fetch_weights=False).eval()
        params = sum(parameter.numel() for parameter in model.parameters())
        transfer = ARCHS[arch].family == "transfer"
        count = min(transfer_images, len(data.test_labels)) if transfer else len(data.test_labels)
        if max_images is not None:
            count = min(count, max_images)
        images, labels = data.test_images[:count], data.test_labels[:count]

        # One small batch first, so one-time setup (thread pools, kernel selection) is not timed.
        predict_logits(model, images[:8], batch_size=8)
        logits, wall, cpu = time_call(lambda: predict_logits(model, images, batch_size=batch_size))
        _, metrics_wall, _ = time_call(lambda: compute_metrics(labels, logits))

        full = wall * len(data.test_labels) / count
        full_text = f"{full:.1f}" if count == len(data.test_labels) else f"{full:.0f} (est.)"
        print(
            f"| {arch} | {params / 1e6:.2f} M | {count:,} | {wall:.2f} | {cpu:.2f} | "
            f"{count / wall:,.0f} | {full_text} | {metrics_wall:.2f} |",
            flush=True,
        )
    print(f"# load average at the end {os.getloadavg()[0]:.1f}")


def bench_page(reruns: int) -> None:
    from streamlit.testing.v1 import AppTest

    # The pages import the ui package from the repository root, as `streamlit run` allows.
    sys.path.insert(0, str(REPO_ROOT))
    home = Path(tempfile.mkdtemp(prefix="bench-evaluate-"))
    os.environ["CIFARLAB_HOME"] = str(home)
    os.environ.setdefault("CIFARLAB_CACHE_DIR", str(REPO_ROOT / ".cifarlab-home" / "cache"))

    from cifarlab import paths
    from cifarlab.checkpoints import save_checkpoint
    from cifarlab.data import load_cifar10
    from cifarlab.evaluate import evaluate_checkpoint
    from cifarlab.models import build_model

    torch.manual_seed(0)
    checkpoint = save_checkpoint(
        paths.user_checkpoint_dir() / "bench-lenet.pt",
        build_model("lenet"),
        {"config": {"val_size": 5000, "split_seed": 0}},
    )
    report = evaluate_checkpoint(checkpoint, "test", data=load_cifar10())
    print_machine()
    print(f"# cached report {report.cache_path} ({Path(report.cache_path).stat().st_size / 1e6:.2f} MB)")

    session = {"active_checkpoint": str(checkpoint)}
    app = AppTest.from_file(str(REPO_ROOT / "pages" / "5_Reports.py"), default_timeout=600)
    for key, value in session.items():
        app.session_state[key] = value
    _, first, _ = time_call(app.run)
    if app.exception:
        raise SystemExit(f"the Reports page failed: {app.exception[0].value}")

    times = []
    for _ in range(reruns):
        _, wall, _ = time_call(app.run)
        times.append(wall)
    print("| run | wall (s) |")
    print("|---|---:|")
    print(f"| first run in a fresh process | {first:.2f} |")
    print(f"| rerun, median of {reruns} | {statistics.median(times):.2f} |")
    print(f"| rerun, fastest | {min(times):.2f} |")
    print(f"# load average at the end {os.getloadavg()[0]:.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--part", choices=("evaluate", "page"), default="evaluate")
    parser.add_argument("--archs", nargs="+", help="architectures to time (default: all)")
    parser.add_argument("--batch-size", type=int, default=500, help="images per forward pass")
    parser.add_argument(
        "--transfer-images",
        type=int,
        default=200,
        help="test images scored by each transfer model; the full-set time is extrapolated",
    )
    parser.add_argument(
        "--max-images",
        type=int,
        default=None,
        help="score at most this many test images per architecture; the full-set time is extrapolated",
    )
    parser.add_argument("--reruns", type=int, default=10, help="timed reruns of the Reports page")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's own choice)")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
        # The app sets its own thread count when a page first imports ui.common.
        os.environ["CIFARLAB_APP_THREADS"] = str(args.threads)

    if args.part == "evaluate":
        from cifarlab.models import list_archs

        bench_evaluate(args.archs or list(list_archs()), args.batch_size, args.transfer_images, args.max_images)
    else:
        bench_page(args.reruns)


if __name__ == "__main__":
    sys.exit(main())
