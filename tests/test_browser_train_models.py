"""Browser tests: train from the Train page and find the checkpoint on the Models page.

Both tests drive a real `streamlit run` server in headless Chromium, and the runs they start
are real trainer processes on tiny subsets of the bundled CIFAR-10 images.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import ARTIFACT_DIR, FILE_CLOCK_MARGIN_S, wait_for_app
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError
from playwright.sync_api import expect

from cifarlab import runs

pytestmark = pytest.mark.browser

# Loading torch and the data set in the trainer takes a while on a busy 2-core machine.
RUN_TIMEOUT_MS = 600_000
STEP_TIMEOUT_MS = 120_000


@pytest.fixture
def no_run_left_behind():
    """Kill any run still training when a test ends, so no trainer outlives the test session."""
    yield
    for run in runs.list_runs():
        if run.is_running:
            runs.stop_run(run, force=True)


# True once the app has shown neither its running indicator nor a loading skeleton for 1.5 s.
_QUIET_APP = """() => {
    const busy = !document.querySelector("[data-testid='stMain']")
        || document.querySelector("[data-testid='stStatusWidget']")
        || document.querySelector("[data-testid='stSkeleton']");
    if (busy) { window.__cifarlabQuietSince = null; return false; }
    window.__cifarlabQuietSince = window.__cifarlabQuietSince || Date.now();
    return Date.now() - window.__cifarlabQuietSince > 1500;
}"""


def wait_for_page(page) -> None:
    """Wait until the script run is over and every element has replaced its skeleton.

    On a loaded machine the running indicator appears only some time after a widget change,
    and Streamlit may show skeletons after it has gone, so one look at either is not enough.
    """
    try:
        wait_for_app(page, timeout_ms=STEP_TIMEOUT_MS)
        page.wait_for_function(_QUIET_APP, timeout=STEP_TIMEOUT_MS, polling=250)
    except PlaywrightTimeoutError:
        page.screenshot(path=str(ARTIFACT_DIR / "train-models-timeout.png"))
        raise


def open_page(page, server, url_path: str) -> None:
    page.goto(f"{server.url}/{url_path}")
    wait_for_page(page)


def screenshot(page, path: Path) -> None:
    """Save the page from its top; the app scrolls inside its main block, not the window."""
    page.evaluate("() => document.querySelector(\"[data-testid='stMain']\")?.scrollTo(0, 0)")
    page.screenshot(path=str(path))


def set_number(page, label: str, value: int) -> None:
    field = page.get_by_label(label, exact=True)
    field.fill(str(value))
    field.press("Enter")
    wait_for_page(page)
    expect(field).to_have_value(str(value), timeout=STEP_TIMEOUT_MS)


def set_checkbox(page, label: str, checked: bool, attempts: int = 3) -> None:
    box = page.get_by_role("checkbox", name=label)
    expect(box).to_be_attached(timeout=STEP_TIMEOUT_MS)
    # A click that lands while Streamlit redraws the widget (an expander opening, a rerun) can
    # be lost, so click again until the box shows the requested state.
    for _ in range(attempts):
        if box.is_checked() == checked:
            break
        page.locator("label").filter(has_text=label).first.click()
        wait_for_page(page)
        page.wait_for_timeout(500)
    expect(box).to_be_checked(checked=checked, timeout=STEP_TIMEOUT_MS)


def configure_tiny_run(page, *, arch: str, subset: int, batch_size: int, epochs: int) -> None:
    """Fill the New run form for a quick run without the final test-set pass."""
    choose_option(page, "Architecture", arch)
    set_number(page, "Epochs", epochs)
    set_number(page, "Batch size", batch_size)
    set_checkbox(page, "Train on a subset", True)
    set_number(page, "Training images", subset)
    set_number(page, "Validation images", 100)
    page.get_by_text("Early stopping, device and test").click()
    set_checkbox(page, "Measure test accuracy at the end", False)


def choose_option(page, label: str, option: str) -> None:
    box = page.get_by_role("combobox", name=label, exact=True)
    choice = page.get_by_role("option", name=option, exact=True)
    # A rerun that redraws the select box closes its open list, so open it again if needed.
    for _ in range(3):
        box.click(timeout=STEP_TIMEOUT_MS)
        box.fill(option)
        try:
            choice.click(timeout=15_000)
            break
        except PlaywrightTimeoutError:
            page.keyboard.press("Escape")
            wait_for_page(page)
    wait_for_page(page)
    expect(box).to_have_value(option, timeout=STEP_TIMEOUT_MS)


def progress_value(page) -> int:
    bar = page.locator("[data-testid='stProgress'] [role='progressbar']").first
    return int(float(bar.get_attribute("aria-valuenow")))


def newest_run() -> runs.Run:
    listed = runs.list_runs()
    assert listed, "no run was started"
    return listed[0]


def test_train_one_epoch_then_models(streamlit_server, page, artifact_dir, no_run_left_behind):
    open_page(page, streamlit_server, "Train")
    configure_tiny_run(page, arch="mlp", subset=200, batch_size=50, epochs=1)
    screenshot(page, artifact_dir / "train-form.png")

    page.get_by_role("button", name="Start training").click()
    expect(page.get_by_text("Done: 1/1 epochs")).to_be_visible(timeout=RUN_TIMEOUT_MS)
    wait_for_page(page)
    screenshot(page, artifact_dir / "train-run-completed.png")

    run = newest_run()
    assert run.state == runs.COMPLETED
    assert run.checkpoint_path.is_file()
    assert progress_value(page) == 100
    expect(page.get_by_text(re.compile(r"\bcompleted$"))).to_be_visible()
    expect(page.get_by_text(f"The checkpoint {run.checkpoint_path.name}")).to_be_visible()

    page.get_by_role("button", name="Use as active model").click()
    wait_for_page(page)
    page.get_by_role("link", name="Open the Models page").click()
    wait_for_page(page)
    expect(page.get_by_text(f"Active model: {run.checkpoint_path.name}")).to_be_visible(
        timeout=STEP_TIMEOUT_MS
    )
    picker = page.get_by_role("combobox", name="Checkpoint", exact=True)
    expect(picker).to_have_value(f"{run.run_id} (yours)", timeout=STEP_TIMEOUT_MS)
    expect(page.get_by_text("Training curves", exact=True)).to_be_visible()
    screenshot(page, artifact_dir / "models-new-checkpoint.png")


def test_stop_midway_keeps_checkpoint(streamlit_server, page, artifact_dir, no_run_left_behind):
    open_page(page, streamlit_server, "Train")
    # VGG16 batches take long enough on a CPU for the stop to land in the first epoch.
    configure_tiny_run(page, arch="vgg16", subset=1000, batch_size=50, epochs=3)

    page.get_by_role("button", name="Start training").click()
    expect(page.get_by_text(re.compile(r"Epoch 1/3, batch \d+/20"))).to_be_visible(
        timeout=RUN_TIMEOUT_MS
    )
    # A browser refresh starts a new session, which finds the run and reattaches to it.
    page.reload()
    expect(page.get_by_text(re.compile(r"Epoch 1/3, batch [3-9]/20"))).to_be_visible(
        timeout=RUN_TIMEOUT_MS
    )
    # Streamlit's own header has a Stop button too (it stops the script run).
    main = page.get_by_test_id("stMainBlockContainer")
    main.get_by_role("button", name="Stop", exact=True).click()
    expect(page.get_by_text("Stopped on request")).to_be_visible(timeout=RUN_TIMEOUT_MS)
    wait_for_page(page)
    screenshot(page, artifact_dir / "train-run-stopped.png")

    run = newest_run()
    progress = runs.read_progress(run)
    assert run.state == runs.STOPPED
    assert progress.end["status"] == "stopped"
    assert progress.fraction < 1
    assert progress_value(page) < 100
    # The trainer checks the stop file after every batch: at most the batch in flight when
    # the file appeared ends after it.
    stop_requested_at = run.stop_path.stat().st_mtime + FILE_CLOCK_MARGIN_S
    assert len([batch for batch in progress.batches if batch["time"] > stop_requested_at]) <= 1
    assert run.checkpoint_path.is_file()
    assert run.can_resume
    expect(page.get_by_text("its last good checkpoint is kept")).to_be_visible()
    expect(page.get_by_role("button", name="Resume")).to_be_visible()

    open_page(page, streamlit_server, "Models")
    choose_option(page, "Checkpoint", f"{run.run_id} (yours)")
    expect(page.get_by_text("0/3", exact=True)).to_be_visible(timeout=STEP_TIMEOUT_MS)
    screenshot(page, artifact_dir / "models-stopped-checkpoint.png")
