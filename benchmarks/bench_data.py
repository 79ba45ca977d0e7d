"""Time loading the bundled CIFAR-10 set and starting the app.

Measures, on the machine it runs on:

- the first load of ``data/cifar10-jpeg.tar.gz`` into an empty cache, split into hashing,
  reading (gunzip and tar), decoding the 60,000 JPEGs and writing the cache, each in wall-clock
  and CPU seconds (on a shared machine the CPU time is the steadier figure);
- a cached load (the median of several);
- app cold start: from ``streamlit run`` to the Home page drawn in headless Chromium, with an
  empty data cache (the very first start) and with a filled one (every later start).

Run from the repository root:

    .venv/bin/python benchmarks/bench_data.py            # everything
    .venv/bin/python benchmarks/bench_data.py --skip-app # the data layer only
    .venv/bin/python benchmarks/bench_data.py --skip-app --compare  # and the alternatives
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

import numpy as np  # noqa: E402

from cifarlab import data, paths  # noqa: E402


class Stopwatch:
    """Wall-clock and CPU seconds of a block; CPU time stays meaningful on a busy machine."""

    def __enter__(self):
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc_info):
        self.wall = time.perf_counter() - self.wall
        self.cpu = time.process_time() - self.cpu


def time_first_load(cache_dir: Path) -> dict[str, float]:
    """Load the bundled archive into an empty cache, timing each stage."""
    archive = paths.BUNDLED_ARCHIVE
    timings = {}
    with Stopwatch() as total:
        with Stopwatch() as stage:
            key = data._file_digest(archive)
        timings.update(hash_s=stage.wall, hash_cpu_s=stage.cpu)

        with Stopwatch() as stage:
            files = data._read_archive(archive)
        timings.update(read_s=stage.wall, read_cpu_s=stage.cpu)

        # The decoder lives in torchvision; importing it (and torch) is timed on its own.
        with Stopwatch() as stage:
            import torchvision.io  # noqa: F401
        timings.update(import_torch_s=stage.wall, import_torch_cpu_s=stage.cpu)

        with Stopwatch() as stage:
            arrays = data._decode_image_tree(files, archive, None)
        timings.update(decode_s=stage.wall, decode_cpu_s=stage.cpu)

        with Stopwatch() as stage:
            folder = cache_dir / f"cifar10-bundled-v{data.CACHE_VERSION}-{key[:20]}"
            data._write_cache(folder, arrays)
        timings.update(write_s=stage.wall, write_cpu_s=stage.cpu)
    timings.update(total_s=total.wall, total_cpu_s=total.cpu)

    # The public entry point must now find exactly this cache.
    with Stopwatch() as stage:
        loaded = data.load_cifar10(cache_dir=cache_dir)
    assert np.array_equal(loaded.test_labels, arrays["test_labels"])
    timings["check_cached_s"] = stage.wall
    return timings


def compare_readers_and_decoders() -> dict[str, float]:
    """Time cifarlab's tar reader and JPEG decoder against tarfile and Pillow."""
    import gzip
    import io
    import tarfile

    from PIL import Image

    raw = gzip.decompress(paths.BUNDLED_ARCHIVE.read_bytes())
    results = {}
    with Stopwatch() as stage:
        files = data._read_plain_ustar(raw)
    results.update(direct_tar_s=stage.wall, direct_tar_cpu_s=stage.cpu)
    with Stopwatch() as stage:
        with tarfile.open(fileobj=io.BytesIO(raw), mode="r:") as tar:
            by_tarfile = {
                member.name: raw[member.offset_data : member.offset_data + member.size]
                for member in tar
                if member.isfile()
            }
    results.update(tarfile_s=stage.wall, tarfile_cpu_s=stage.cpu)
    assert by_tarfile == files

    import torchvision.io  # noqa: F401  (imported before timing the decoder)

    blobs = list(files.values())
    with Stopwatch() as stage:
        with_pillow = np.stack(
            [np.asarray(Image.open(io.BytesIO(blob)).convert("RGB")) for blob in blobs]
        ).transpose(0, 3, 1, 2)
    results.update(pillow_decode_s=stage.wall, pillow_decode_cpu_s=stage.cpu)
    with Stopwatch() as stage:
        with_torchvision = data.decode_images(blobs, list(files), paths.BUNDLED_ARCHIVE)
    results.update(torchvision_decode_s=stage.wall, torchvision_decode_cpu_s=stage.cpu)
    difference = np.abs(with_pillow.astype(np.int16) - with_torchvision.astype(np.int16)).max()
    results["max_pixel_difference"] = float(difference)
    return results


def time_cached_loads(cache_dir: Path, repeats: int) -> dict[str, float | list[float]]:
    walls, cpus = [], []
    for _ in range(repeats):
        with Stopwatch() as stage:
            loaded = data.load_cifar10(cache_dir=cache_dir)
        assert loaded.num_train == 50_000
        walls.append(stage.wall)
        cpus.append(stage.cpu)
    return {"median_s": statistics.median(walls), "median_cpu_s": statistics.median(cpus),
            "all_s": walls}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def time_app_start(cache_dir: Path, home: Path) -> dict[str, float]:
    """Start `streamlit run` and time until the health check and until Home shows its data."""
    from playwright.sync_api import sync_playwright

    sys.path.insert(0, str(REPO_ROOT / "tests"))
    from conftest import CHROMIUM_ARGS, CHROMIUM_PATH

    port = _free_port()
    env = {
        **os.environ,
        "CIFARLAB_HOME": str(home),
        "CIFARLAB_CACHE_DIR": str(cache_dir),
        "PYTHONUNBUFFERED": "1",
    }
    log = tempfile.TemporaryFile()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM_PATH, args=CHROMIUM_ARGS)
        started = time.perf_counter()
        process = subprocess.Popen(
            [
                sys.executable, "-m", "streamlit", "run", "streamlit_app.py",
                "--server.port", str(port), "--server.address", "127.0.0.1",
                "--server.headless", "true",
            ],
            cwd=REPO_ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            health_url = f"http://127.0.0.1:{port}/_stcore/health"
            while True:
                try:
                    with urllib.request.urlopen(health_url, timeout=2):
                        break
                except OSError:
                    if process.poll() is not None:
                        log.seek(0)
                        raise RuntimeError(f"streamlit exited:\n{log.read().decode()}") from None
                    time.sleep(0.1)
            healthy = time.perf_counter() - started
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(f"http://127.0.0.1:{port}/")
            page.get_by_text("Training images").wait_for(timeout=600_000)
            rendered = time.perf_counter() - started
        finally:
            browser.close()
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    return {"server_healthy_s": healthy, "home_rendered_s": rendered}


def machine() -> dict[str, str]:
    model = platform.processor() or platform.machine()
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
    except OSError:
        pass
    return {
        "cpu": model,
        "cores": str(os.cpu_count()),
        "load_average_1min": f"{os.getloadavg()[0]:.1f}",
        "python": platform.python_version(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5, help="cached loads to time (default: 5)")
    parser.add_argument("--skip-app", action="store_true", help="skip the app start-up timings")
    parser.add_argument(
        "--compare",
        action="store_true",
        help="also time tarfile against the direct tar reader and Pillow against torchvision",
    )
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args()

    results = {"machine": machine()}

    def record(section: str, values: dict) -> None:
        # Each section is printed as soon as it is measured, so a failure later keeps it.
        results[section] = values
        if not args.json:
            shown = ", ".join(
                f"{name} {value:.2f}" for name, value in values.items() if isinstance(value, float)
            )
            print(f"{section}: {shown}", flush=True)

    if not args.json:
        print(f"machine: {results['machine']}", flush=True)
    with tempfile.TemporaryDirectory(prefix="cifarlab-bench-") as scratch:
        scratch = Path(scratch)
        warm_cache = scratch / "cache"
        record("first_load", time_first_load(warm_cache))
        record("cached_load", time_cached_loads(warm_cache, args.repeats))
        if args.compare:
            record("compare", compare_readers_and_decoders())
        if not args.skip_app:
            record("app_start_warm_cache", time_app_start(warm_cache, scratch / "home1"))
            empty_cache = scratch / "empty-cache"
            record("app_start_cold_cache", time_app_start(empty_cache, scratch / "home2"))
    results["machine"]["load_average_1min_after"] = f"{os.getloadavg()[0]:.1f}"
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        print(f"load average after: {results['machine']['load_average_1min_after']}")


if __name__ == "__main__":
    main()
