"""Browser tests of the Attack page: a tiny live attack and the Stop button, in headless Chromium.

The model is a tiny trained LeNet copied into the server's user checkpoint folder; the image is a
test image it classifies correctly, found before the page opens.
"""

from __future__ import annotations

import re
import shutil

import numpy as np
import pytest
import torch
from conftest import wait_for_app
from playwright.sync_api import expect

from cifarlab import paths
from cifarlab.attack import predict_logits
from cifarlab.checkpoints import load_checkpoint
from cifarlab.data import load_cifar10

pytestmark = pytest.mark.browser

CHECKPOINT_NAME = "attack-lenet"
ATTACK_TIMEOUT_MS = 300_000
STEP_TIMEOUT_MS = 120_000


@pytest.fixture(scope="module")
def attack_checkpoint(trained_checkpoint_dir) -> dict:
    """Copy a tiny LeNet into the user folder; return a test index it gets right."""
    folder = paths.user_checkpoint_dir()
    folder.mkdir(parents=True, exist_ok=True)
    path = shutil.copy(trained_checkpoint_dir / "lenet-raw.pt", folder / f"{CHECKPOINT_NAME}.pt")
    model = load_checkpoint(path).model
    data = load_cifar10()
    probe = np.arange(0, 10_000, 50)
    predictions = predict_logits(model, torch.from_numpy(np.array(data.test_images[probe]))).argmax(dim=1).numpy()
    correct = probe[predictions == data.test_labels[probe]]
    assert len(correct), "the tiny LeNet should get some probe images right"
    return {"path": str(path), "index": int(correct[0])}


def screenshot(page, path) -> None:
    """Save the page from its top; the app scrolls inside its main block, not the window."""
    page.evaluate("() => document.querySelector(\"[data-testid='stMain']\")?.scrollTo(0, 0)")
    page.screenshot(path=str(path), full_page=True)


def set_number(page, label: str, value: int) -> None:
    field = page.get_by_label(label, exact=True).first
    field.fill(str(value))
    field.press("Enter")
    wait_for_app(page)
    expect(field).to_have_value(str(value), timeout=STEP_TIMEOUT_MS)


def open_attack_page(page, server, index: int) -> None:
    """Open the page on the tiny LeNet and the given test image."""
    page.goto(f"{server.url}/Attack")
    wait_for_app(page)
    # The first visit loads torch, the data set and the model, which can take a minute.
    model_box = page.get_by_role("combobox", name=re.compile("Model"))
    expect(model_box).to_be_visible(timeout=STEP_TIMEOUT_MS)
    model_box.click()
    page.get_by_role("option", name=re.compile(CHECKPOINT_NAME)).click()
    wait_for_app(page)
    page.get_by_text("By index", exact=True).click()
    wait_for_app(page)
    set_number(page, "Test image index", index)


def test_attack_one_image_live(streamlit_server, page, artifact_dir, attack_checkpoint):
    open_attack_page(page, streamlit_server, attack_checkpoint["index"])
    slider = page.get_by_role("slider", name="Pixels to change").first
    slider.focus()
    slider.press("ArrowRight")
    slider.press("ArrowRight")
    wait_for_app(page)
    expect(slider).to_have_attribute("aria-valuetext", "3")
    set_number(page, "Population", 20)
    set_number(page, "Maximum generations", 5)

    page.get_by_role("button", name="Run the attack").click()
    outcome = page.get_by_text(re.compile(r"^(Fooled|Not fooled)"))
    expect(outcome).to_be_visible(timeout=ATTACK_TIMEOUT_MS)
    wait_for_app(page)

    expect(page.get_by_text(re.compile(r"^Adversarial: "))).to_be_visible()
    expect(page.get_by_text("Changed pixels")).to_be_visible()
    expect(page.get_by_role("button", name=re.compile("Download the adversarial image"))).to_be_visible()
    page.get_by_text("Changed pixels").scroll_into_view_if_needed()
    page.screenshot(path=str(artifact_dir / "attack-result.png"), full_page=True)


def test_stop_button_keeps_best_candidate(streamlit_server, page, artifact_dir, attack_checkpoint):
    open_attack_page(page, streamlit_server, attack_checkpoint["index"])
    # A long search: 5 pixels keep the 400 candidates diverse, so neither the memo nor the end
    # of a converged population shortens it, and a targeted attack on the tiny LeNet's image
    # rarely succeeds. With 1 pixel or a tiny population, the memo finishes it within a second.
    slider = page.get_by_role("slider", name="Pixels to change").first
    slider.focus()
    for _ in range(4):
        slider.press("ArrowRight")
    wait_for_app(page)
    expect(slider).to_have_attribute("aria-valuetext", "5")
    set_number(page, "Population", 400)
    set_number(page, "Maximum generations", 1000)
    page.get_by_text("Targeted: one chosen class", exact=True).click()
    wait_for_app(page)

    page.get_by_role("button", name="Run the attack").click()
    expect(page.get_by_text(re.compile(r"Generation ([2-9]|\d\d+) of 1000"))).to_be_visible(timeout=ATTACK_TIMEOUT_MS)
    page.screenshot(path=str(artifact_dir / "attack-running.png"), full_page=True)
    page.get_by_role("button", name="Stop").click()

    expect(page.get_by_text(re.compile(r"^Stopped after \d+ generations"))).to_be_visible(timeout=ATTACK_TIMEOUT_MS)
    screenshot(page, artifact_dir / "attack-stopped.png")
