"""Reports and Classify in headless Chromium against a real `streamlit run` server.

The server gets its own checkpoint folder with two tiny trained LeNets, so other tests' models
do not change what these pages show.
"""

from __future__ import annotations

import io
import os
import re
import shutil

import numpy as np
import pytest
from PIL import Image

from cifarlab.data import load_cifar10
from cifarlab.evaluate import evaluate_checkpoint
from conftest import StreamlitServer

pytestmark = pytest.mark.browser

TALL_VIEWPORT = {"width": 1400, "height": 2600}
TIMEOUT_MS = 180_000


@pytest.fixture(scope="module")
def reports_server(trained_checkpoint_dir, tmp_path_factory, artifact_dir):
    """A Streamlit server whose user checkpoints are the tiny LeNets; lenet-raw has a report."""
    folder = tmp_path_factory.mktemp("browser-checkpoints")
    for name in ("lenet-raw", "lenet-standard"):
        shutil.copy(trained_checkpoint_dir / f"{name}.pt", folder / f"{name}.pt")
    evaluate_checkpoint(folder / "lenet-raw.pt", "test", data=load_cifar10())

    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    env["CIFARLAB_CHECKPOINT_DIR"] = str(folder)
    server = StreamlitServer(artifact_dir / "streamlit-reports-classify.log", env)
    try:
        server.wait_until_healthy()
        yield server
    finally:
        server.stop()
    assert "Traceback" not in server.log(), f"server log has a traceback:\n{server.log()}"


# Streamlit shows one of these icons while a script runs. Its status widget alone is no sign of a
# running script, because it also appears with a Rerun prompt when any source file changes.
RUNNING_ICONS = ", ".join(
    f"[data-testid='{test_id}']"
    for test_id in (
        "stStatusWidgetRunningIcon",
        "stStatusWidgetRunningManIcon",
        "stStatusWidgetNewYearsIcon",
    )
)

# True once every chart in the visible tab (or the page, without tabs) has been drawn.
CHARTS_DRAWN = """() => {
    const panels = [...document.querySelectorAll("[role='tabpanel']")].filter(p => p.offsetParent !== null);
    const scope = panels.length ? panels[0] : document;
    const charts = scope.querySelectorAll("[data-testid='stVegaLiteChart']");
    const drawn = scope.querySelectorAll(
        "[data-testid='stVegaLiteChart'] canvas, [data-testid='stVegaLiteChart'] svg");
    return drawn.length >= charts.length;
}"""


def settle(page) -> None:
    """Wait until no script runs and the visible charts are drawn; call it after content shows."""
    page.wait_for_function(
        "selector => !document.querySelector(selector)", arg=RUNNING_ICONS, timeout=TIMEOUT_MS
    )
    page.wait_for_function(CHARTS_DRAWN, timeout=TIMEOUT_MS)


def selected_model(page, key: str) -> str:
    """Return the label the model selectbox shows (the value of its combobox input)."""
    return page.locator(f".st-key-{key}").get_by_role("combobox").input_value()


def choose_model(page, key: str, name: str) -> None:
    if selected_model(page, key).startswith(f"{name} "):
        return
    page.locator(f".st-key-{key}").get_by_role("combobox").click()
    page.get_by_role("option", name=re.compile(f"^{name} ")).click()
    settle(page)


def main_text(page) -> str:
    return page.locator("[data-testid='stMain']").inner_text()


def open_tab(page, title: str) -> None:
    page.get_by_role("tab", name=title).click()
    settle(page)


def png_upload(path) -> None:
    """Write a 96x64 RGBA photo of a test image with a transparent border."""
    image = load_cifar10().test_images[3].transpose(1, 2, 0)
    big = np.asarray(Image.fromarray(image).resize((96, 64), Image.Resampling.BICUBIC))
    rgba = np.zeros((64, 96, 4), dtype=np.uint8)
    rgba[..., :3] = big
    rgba[8:56, 8:88, 3] = 255
    buffer = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(buffer, "PNG")
    path.write_bytes(buffer.getvalue())


def test_reports_then_classify(reports_server, page, artifact_dir, tmp_path):
    page.goto(f"{reports_server.url}/Reports")
    # The first run imports torch and loads the data set, so wait for the page's own widget.
    page.get_by_role("tab", name="Compare models").wait_for(timeout=TIMEOUT_MS)
    settle(page)
    choose_model(page, "reports_checkpoint", "lenet-raw")
    page.locator("[data-testid='stDataFrame']").first.wait_for(timeout=TIMEOUT_MS)
    settle(page)
    text = main_text(page)
    assert selected_model(page, "reports_checkpoint").startswith("lenet-raw ")
    assert "Top-5 accuracy" in text
    # st.dataframe draws its cells on a canvas, so only the grid itself can be found.
    page.locator("[data-testid='stDataFrame']").first.wait_for(timeout=TIMEOUT_MS)
    assert "Precision: of the images predicted as the class" in text
    page.set_viewport_size(TALL_VIEWPORT)
    settle(page)
    page.screenshot(path=artifact_dir / "reports-per-class.png", full_page=True)

    open_tab(page, "Confusion matrix")
    page.get_by_text("Most confused pairs").wait_for(timeout=TIMEOUT_MS)
    page.screenshot(path=artifact_dir / "reports-confusion.png", full_page=True)

    open_tab(page, "Mistakes")
    gallery_images = page.locator("[data-testid='stImage'] img")
    page.wait_for_function(
        "() => document.querySelectorAll(\"[data-testid='stImage'] img\").length >= 24",
        timeout=TIMEOUT_MS,
    )
    assert gallery_images.count() >= 24
    page.screenshot(path=artifact_dir / "reports-mistakes.png", full_page=True)

    open_tab(page, "Compare models")
    # lenet-standard has no report; shipped checkpoints come with theirs.
    assert re.search(r"1 of \d+ models has no test report yet", main_text(page))
    page.screenshot(path=artifact_dir / "reports-compare.png", full_page=True)

    # The model chosen on Reports stays active on Classify.
    page.set_viewport_size({"width": 1400, "height": 1000})
    page.locator("[data-testid='stSidebarNav']").get_by_text("Classify", exact=True).click()
    page.wait_for_url("**/Classify", timeout=60_000)
    page.get_by_text("Upload a photo").wait_for(timeout=TIMEOUT_MS)
    settle(page)
    assert selected_model(page, "classify_checkpoint").startswith("lenet-raw ")

    photo = tmp_path / "ship.png"
    png_upload(photo)
    page.locator("input[type='file']").set_input_files(str(photo))
    page.get_by_text("Grad-CAM weighs").wait_for(timeout=TIMEOUT_MS)
    settle(page)
    text = main_text(page)
    assert "What the network sees" in text
    assert "composited on background RGB (255, 255, 255)" in text
    assert page.locator("[data-testid='stImage'] img").count() == 2
    page.set_viewport_size({"width": 1400, "height": 1400})
    page.screenshot(path=artifact_dir / "classify-upload.png", full_page=True)

    notes = tmp_path / "notes.png"
    notes.write_text("these are notes, not pixels")
    page.locator("input[type='file']").set_input_files(str(notes))
    page.get_by_text("not an image in a supported format").wait_for(timeout=TIMEOUT_MS)
    settle(page)
    page.screenshot(path=artifact_dir / "classify-bad-file.png", full_page=True)

    assert "Traceback" not in reports_server.log()
