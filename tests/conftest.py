"""Shared fixtures: an isolated cifarlab home, a Streamlit server and headless Chromium."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
ARTIFACT_DIR = REPO_ROOT / "test-artifacts"

# The decoded bundled data set is keyed by the archive's content, so one cache can serve every
# test session; everything else a test writes goes to a fresh home folder.
SHARED_CACHE_DIR = Path(
    os.environ.get("CIFARLAB_TEST_CACHE_DIR", REPO_ROOT / ".cifarlab-home" / "cache")
)

CHROMIUM_PATH = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
# Without the background-networking flags, Chromium keeps trying to reach Google's hosts, which a
# closed network refuses; --no-sandbox is needed when the tests run as root.
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


# Linux stamps files from a coarse clock that can lag time.time() by one jiffy (4 ms at 250 Hz,
# 10 ms at 100 Hz). Tests that compare a file's mtime with logged times allow this margin.
FILE_CLOCK_MARGIN_S = 0.02


@pytest.fixture(scope="session", autouse=True)
def cifarlab_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Point every cifarlab path at a temporary home for the whole test session."""
    home = tmp_path_factory.mktemp("cifarlab-home")
    SHARED_CACHE_DIR.mkdir(parents=True, exist_ok=True)
    saved = {name: os.environ.get(name) for name in _PATH_VARIABLES}
    os.environ["CIFARLAB_HOME"] = str(home)
    os.environ["CIFARLAB_CACHE_DIR"] = str(SHARED_CACHE_DIR)
    for name in ("CIFARLAB_DATA_DIR", "CIFARLAB_CHECKPOINT_DIR", "CIFARLAB_RUNS_DIR"):
        os.environ.pop(name, None)
    yield home
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


_PATH_VARIABLES = (
    "CIFARLAB_HOME",
    "CIFARLAB_CACHE_DIR",
    "CIFARLAB_DATA_DIR",
    "CIFARLAB_CHECKPOINT_DIR",
    "CIFARLAB_RUNS_DIR",
)


@pytest.fixture(scope="session")
def artifact_dir() -> Path:
    """Return the folder where browser tests keep screenshots and server logs."""
    ARTIFACT_DIR.mkdir(exist_ok=True)
    return ARTIFACT_DIR


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class StreamlitServer:
    """A `streamlit run streamlit_app.py` process on a free localhost port."""

    def __init__(self, log_path: Path, env: dict[str, str]):
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self._log_file = open(log_path, "w")
        self.process = subprocess.Popen(
            [
                sys.executable, "-m", "streamlit", "run", "streamlit_app.py",
                "--server.port", str(self.port),
                "--server.address", "127.0.0.1",
                "--server.headless", "true",
                "--browser.gatherUsageStats", "false",
            ],
            cwd=REPO_ROOT,
            env=env,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
        )

    def wait_until_healthy(self, timeout_s: float = 90.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"streamlit exited early; log:\n{self.log()}")
            try:
                with urllib.request.urlopen(f"{self.url}/_stcore/health", timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.3)
        raise TimeoutError(f"streamlit did not become healthy in {timeout_s} s; log:\n{self.log()}")

    def log(self) -> str:
        # The fixture reads the log once more after stop() has closed the file.
        if not self._log_file.closed:
            self._log_file.flush()
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._log_file.close()


@pytest.fixture(scope="session")
def streamlit_server(cifarlab_home: Path, artifact_dir: Path):
    """Start one Streamlit server for all browser tests; fail if its log shows a traceback."""
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    server = StreamlitServer(artifact_dir / "streamlit-server.log", env)
    try:
        server.wait_until_healthy()
        yield server
    finally:
        server.stop()
    assert "Traceback" not in server.log(), f"server log has a traceback:\n{server.log()}"


@pytest.fixture(scope="session")
def chromium():
    """Launch Debian's Chromium once, headless, through Playwright."""
    if not Path(CHROMIUM_PATH).exists() and shutil.which("chromium") is None:
        pytest.fail(
            f"Chromium not found at {CHROMIUM_PATH}; install Debian's 'chromium' package "
            "(scripts/test does) or set CHROMIUM_PATH"
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM_PATH, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(chromium):
    """Open a fresh browser page with a classroom-projector viewport."""
    context = chromium.new_context(viewport={"width": 1400, "height": 1000})
    browser_page = context.new_page()
    yield browser_page
    context.close()


def wait_for_app(browser_page, timeout_ms: int = 120_000) -> None:
    """Wait until Streamlit has finished running the page's script."""
    browser_page.wait_for_selector("[data-testid='stApp']", timeout=timeout_ms)
    # While a script runs Streamlit shows its status widget; wait until it is gone.
    browser_page.wait_for_function(
        "() => !document.querySelector(\"[data-testid='stStatusWidget']\")",
        timeout=timeout_ms,
    )


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Save an untrained width-4 CNN once and return its path, for command-line tests."""
    import torch

    from cifarlab.checkpoints import save_checkpoint
    from cifarlab.models import build_model

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("tiny-checkpoint") / "tiny-cnn.pt"
    save_checkpoint(path, build_model("cnn", width=4), {})
    return str(path)


@pytest.fixture(scope="session")
def trained_checkpoint_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Train two tiny LeNets for page tests and return their folder.

    ``lenet-raw.pt`` trains without augmentation and ``lenet-standard.pt`` with the standard
    recipe, each for 2 epochs on 500 training images of the bundled data (seconds on a CPU), so
    they are real checkpoints with a history but barely better than chance. Copy them before
    writing anything beside them.
    """
    from cifarlab.data import load_cifar10
    from cifarlab.train import TrainConfig, train

    folder = tmp_path_factory.mktemp("trained-checkpoints")
    data = load_cifar10()
    for name, recipe in (("lenet-raw", "none"), ("lenet-standard", "standard")):
        config = TrainConfig(
            arch="lenet",
            epochs=2,
            batch_size=100,
            train_subset=500,
            val_size=500,
            recipe=recipe,
            evaluate_test=False,
            device="cpu",
        )
        train(config, data, checkpoint_path=folder / f"{name}.pt")
    return folder
