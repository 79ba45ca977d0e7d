"""The Augmentation page in headless Chromium against a real `streamlit run` server."""

from __future__ import annotations

import json

import pytest

from conftest import wait_for_app

pytestmark = pytest.mark.browser

TALL_VIEWPORT = {"width": 1400, "height": 2200}


# The first load decodes or reads the cached data set, which is slow on a busy 2-core machine.
LOAD_TIMEOUT_MS = 240_000


def open_augmentation(page, streamlit_server) -> None:
    page.goto(f"{streamlit_server.url}/Augmentation")
    page.locator("[data-testid='stJson']").wait_for(timeout=LOAD_TIMEOUT_MS)
    wait_for_app(page, LOAD_TIMEOUT_MS)


def main_text(page) -> str:
    return page.locator("[data-testid='stMain']").inner_text()


def choose(page, option: str) -> None:
    """Click an option of the page's pills or segmented control (ARIA role "radio")."""
    page.locator("[data-testid='stMain']").get_by_role("radio", name=option, exact=True).click()


def test_augmentation_page_previews_and_recipe(streamlit_server, page, artifact_dir):
    open_augmentation(page, streamlit_server)
    main = page.locator("[data-testid='stMain']")
    assert "Augmentation" in main.inner_text()
    assert "pixels changed" in main_text(page)
    # Original and augmented image, both enlarged to 256 px with pixel repetition.
    previews = main.locator("[data-testid='stImage'] img")
    assert previews.count() == 2
    assert previews.first.evaluate("image => image.naturalWidth") == 256
    page.set_viewport_size(TALL_VIEWPORT)
    page.screenshot(path=artifact_dir / "augmentation-cutout.png", full_page=True)

    # Mixup: both source images, lambda and the soft-label chart.
    page.set_viewport_size({"width": 1400, "height": 1000})
    choose(page, "Mixup")
    page.get_by_text("lambda (share of A)").wait_for(timeout=LOAD_TIMEOUT_MS)
    wait_for_app(page, LOAD_TIMEOUT_MS)
    assert main.locator("[data-testid='stImage'] img").count() == 3
    main.locator("[data-testid='stVegaLiteChart']").first.wait_for(timeout=LOAD_TIMEOUT_MS)
    assert "Soft label:" in main_text(page)
    page.set_viewport_size(TALL_VIEWPORT)
    page.screenshot(path=artifact_dir / "augmentation-mixup.png", full_page=True)

    # Add mixup to a recipe and look at the recipe view.
    page.set_viewport_size({"width": 1400, "height": 1000})
    page.get_by_role("button", name="Add to recipe").first.click()
    wait_for_app(page, LOAD_TIMEOUT_MS)
    choose(page, "Recipe")
    page.get_by_text("Draws of the recipe").wait_for(timeout=LOAD_TIMEOUT_MS)
    wait_for_app(page, LOAD_TIMEOUT_MS)
    export = page.get_by_role("button", name="Export JSON").first
    export.wait_for(timeout=LOAD_TIMEOUT_MS)
    assert "1. Mixup" in main_text(page)
    with page.expect_download() as download_info:
        export.click()
    exported = json.loads(download_info.value.path().read_text())
    assert [step["op"] for step in exported["operations"]] == ["mixup"]
    page.set_viewport_size(TALL_VIEWPORT)
    page.screenshot(path=artifact_dir / "augmentation-recipe.png", full_page=True)
    assert not page.locator("[data-testid='stException']").count()
