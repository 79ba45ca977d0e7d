"""Home and Data in headless Chromium against a real `streamlit run` server."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from cifarlab.data import CLASSES
from conftest import REPO_ROOT, StreamlitServer

pytestmark = pytest.mark.browser

TALL_VIEWPORT = {"width": 1400, "height": 3800}


# Streamlit shows one of these icons in its status widget while a script runs. The widget itself
# also appears with a Rerun prompt when a source file changes, so its mere presence is no sign
# of a running script.
RUNNING_ICONS = ", ".join(
    f"[data-testid='{test_id}']"
    for test_id in (
        "stStatusWidgetRunningIcon",
        "stStatusWidgetRunningManIcon",
        "stStatusWidgetNewYearsIcon",
    )
)


def wait_until_idle(page, timeout_ms: int = 180_000) -> None:
    """Wait until no script runs; call it once the page shows content the script draws."""
    page.wait_for_function(
        "selector => !document.querySelector(selector)", arg=RUNNING_ICONS, timeout=timeout_ms
    )


def wait_for_gallery(page, per_class: int = 8) -> None:
    page.wait_for_function(
        "count => document.querySelectorAll('.st-key-data_gallery img').length >= count",
        arg=10 * per_class,
        timeout=120_000,
    )


def test_home_and_data_pages(streamlit_server, page, artifact_dir):
    page.goto(streamlit_server.url)
    page.get_by_text("Data in use").wait_for(timeout=180_000)
    page.get_by_text("Trained models").wait_for(timeout=180_000)
    wait_until_idle(page)
    main = page.locator("[data-testid='stMain']")
    assert "50,000" in main.inner_text()
    assert "What each page teaches" in main.inner_text()
    page.set_viewport_size({"width": 1400, "height": 1300})
    page.screenshot(path=artifact_dir / "home.png", full_page=True)

    page.set_viewport_size({"width": 1400, "height": 1000})
    page.locator("[data-testid='stSidebarNav']").get_by_text("Data", exact=True).click()
    page.wait_for_url("**/Data", timeout=60_000)
    wait_for_gallery(page)
    page.get_by_text("Why the split comes before augmentation").wait_for(timeout=60_000)
    wait_until_idle(page)
    gallery = page.locator(".st-key-data_gallery")
    gallery_text = gallery.inner_text()
    for name in CLASSES:
        assert name in gallery_text
    assert gallery.locator("img").count() == 80
    page.wait_for_selector("[data-testid='stVegaLiteChart']", timeout=60_000)
    page.set_viewport_size(TALL_VIEWPORT)
    page.screenshot(path=artifact_dir / "data.png", full_page=True)

    assert "Traceback" not in streamlit_server.log()


def test_data_shuffle_changes_gallery(streamlit_server, page):
    page.goto(f"{streamlit_server.url}/Data")
    wait_for_gallery(page)
    wait_until_idle(page)
    gallery = page.locator(".st-key-data_gallery")
    before = gallery.inner_text()
    page.get_by_role("button", name="Shuffle").click()
    page.wait_for_function(
        "old => document.querySelector('.st-key-data_gallery').innerText !== old",
        arg=before,
        timeout=60_000,
    )
    wait_for_gallery(page)
    assert gallery.locator("img").count() == 80
    for name in CLASSES:
        assert name in gallery.inner_text()


def test_every_page_opens_without_traceback(streamlit_server, page):
    for path in sorted((REPO_ROOT / "pages").glob("[0-9]*_*.py")):
        url_path = path.stem.split("_", 1)[1]
        page.goto(f"{streamlit_server.url}/{url_path}")
        page.wait_for_selector("[data-testid='stMain'] [data-testid='stHeading']", timeout=180_000)
        wait_until_idle(page)
        assert page.locator("[data-testid='stException']").count() == 0, path.name
    assert "Traceback" not in streamlit_server.log()


@pytest.fixture
def fresh_server(artifact_dir):
    """Start a server that no browser has visited yet."""
    server = StreamlitServer(artifact_dir / "streamlit-page-link-server.log", {**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        server.wait_until_healthy()
        yield server
    finally:
        server.stop()


def test_first_visit_by_page_link_keeps_app_sidebar(fresh_server, page, artifact_dir):
    """A page opened by its link before anyone opens Home still runs through st.navigation."""
    page.goto(f"{fresh_server.url}/Models")
    page.wait_for_selector("[data-testid='stMain'] [data-testid='stHeading']", timeout=180_000)
    wait_until_idle(page)
    page.screenshot(path=str(artifact_dir / "first-visit-models.png"))

    sidebar = page.locator("[data-testid='stSidebarNav']").inner_text()
    assert "Home" in sidebar
    assert "streamlit app" not in sidebar
    assert page.locator("[data-testid='stException']").count() == 0
    assert "Traceback" not in fresh_server.log()


# ---------------------------------------------------------------------------------------------
# Editing a page while the server runs, with torch imported


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def app_copy_server(tmp_path, artifact_dir):
    """Serve a copy of the app, so a test can edit its pages without touching the repository."""
    app = tmp_path / "app"
    app.mkdir()
    shutil.copy(REPO_ROOT / "streamlit_app.py", app)
    shutil.copytree(REPO_ROOT / "ui", app / "ui", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(REPO_ROOT / ".streamlit", app / ".streamlit")
    (app / "pages").mkdir()
    shutil.copy(REPO_ROOT / "pages" / "1_Data.py", app / "pages")

    port = _free_port()
    log_path = artifact_dir / "streamlit-edit-server.log"
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(REPO_ROOT)}
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [
                sys.executable, "-m", "streamlit", "run", "streamlit_app.py",
                "--server.port", str(port),
                "--server.address", "127.0.0.1",
                "--server.headless", "true",
            ],
            cwd=app,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2):
                    break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError(f"streamlit did not start; log:\n{log_path.read_text()}")
                time.sleep(0.3)
        yield app, f"http://127.0.0.1:{port}", log_path
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_edited_page_reruns_without_traceback(app_copy_server, page):
    app, url, log_path = app_copy_server
    # Home imports torch (through cifarlab.checkpoints), so the watcher has torch in sys.modules.
    page.goto(url)
    page.get_by_text("Trained models").wait_for(timeout=180_000)
    wait_until_idle(page)
    page.goto(f"{url}/Data")
    wait_for_gallery(page)
    wait_until_idle(page)

    page_file = app / "pages" / "1_Data.py"
    page_file.write_text(
        page_file.read_text() + '\nimport torch\nst.markdown(f"Edited with torch {torch.__version__}")\n'
    )
    # With runOnSave off, Streamlit shows a Rerun button once its watcher detects the change.
    page.get_by_role("button", name="Rerun", exact=True).click(timeout=60_000)
    page.get_by_text("Edited with torch").wait_for(timeout=120_000)

    log = log_path.read_text()
    assert "Traceback" not in log, log
