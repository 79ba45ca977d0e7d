"""Helpers every page uses: the cached data set, crisp enlarged images, errors and headers.

The data source the student picks on the Data page is kept in ``st.session_state["data_source"]``
(a dict with ``source`` and ``path``), so every page trains, evaluates and attacks on the same
images.
"""

from __future__ import annotations

import logging
import os

import numpy as np
import streamlit as st
import torch
from streamlit.errors import StreamlitPageNotFoundError

from cifarlab import paths
from cifarlab.data import CLASSES, Cifar10, DataError, load_cifar10

log = logging.getLogger(__name__)

# Torch threads per operation in the app server. Every browser session runs in its own server
# thread, so sessions already use the cores in parallel, and previews and live attacks are many
# small operations that gain little from splitting. On a 2-core machine, one thread made five of
# six Augmentation preview reruns faster than two (the sixth 1 ms slower), and two threads saved
# a live one-pixel attack about 0.06 s for 1.5 times the CPU time (docs/BENCHMARKS.md). Training
# runs in its own process and keeps torch's default. CIFARLAB_APP_THREADS=N sets another number.
APP_THREADS_ENV = "CIFARLAB_APP_THREADS"


def app_threads() -> int:
    """Return the torch thread count for the app server from ``CIFARLAB_APP_THREADS`` (default 1)."""
    value = os.environ.get(APP_THREADS_ENV, "1")
    try:
        threads = int(value)
    except ValueError:
        threads = 0
    if threads < 1:
        log.warning("%s=%r is not a whole number >= 1; using 1 thread", APP_THREADS_ENV, value)
        return 1
    return threads


# Set once, when the first page imports this module.
torch.set_num_threads(app_threads())


def leave_pages_directory_mode() -> None:
    """Rerun through ``st.navigation`` when Streamlit ran a page in its older multipage mode.

    Because ``pages/`` exists, Streamlit 1.67 starts the server in its older multipage mode.
    In that mode a link to a page runs that page's script alone, under a sidebar built from file
    names ("streamlit app", no icons). Only when some session opens the home page does
    ``st.navigation`` switch the whole server over. Switching here, on the first page run, and
    rerunning sends every run through ``streamlit_app.py``, whichever page a student opens first.
    """
    # NOTE: PagesManager.uses_pages_directory is Streamlit's internal flag for that mode (the
    # one st.navigation clears); without it the first visitor may see the older sidebar.
    from streamlit.runtime.pages_manager import PagesManager
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    if get_script_run_ctx() is None or not getattr(PagesManager, "uses_pages_directory", False):
        return
    log.info("leaving Streamlit's pages-directory mode; rerunning through st.navigation")
    PagesManager.uses_pages_directory = False
    st.rerun()


# Every page imports this module, so the first page run of the server makes the switch.
leave_pages_directory_mode()

DATA_SOURCE_KEY = "data_source"
DEFAULT_DATA_SOURCE = {"source": "bundled", "path": None}


def current_data_source() -> dict:
    """Return the data source chosen on the Data page, the bundled set by default."""
    return dict(st.session_state.get(DATA_SOURCE_KEY, DEFAULT_DATA_SOURCE))


def set_data_source(source: str, path: str | None = None) -> None:
    st.session_state[DATA_SOURCE_KEY] = {"source": source, "path": path}


@st.cache_resource(show_spinner="Loading CIFAR-10 (the first start decodes 60,000 images)...")
def _load_shared(source: str, path: str | None, data_dir: str, cache_dir: str) -> Cifar10:
    data = load_cifar10(source, path=path, data_dir=data_dir, cache_dir=cache_dir)
    # One copy serves every session, so the arrays are made read-only: a page that wants to
    # change images must copy them first (np.array(x) or torch.tensor(x)).
    for name in ("train_images", "train_labels", "test_images", "test_labels"):
        getattr(data, name).setflags(write=False)
    return data


def load_data(source: str | None = None, path: str | None = None) -> Cifar10:
    """Load the data set once per server and share it between sessions.

    Without arguments, loads the source chosen on the Data page. Raises `DataError`; pages catch
    it and call `show_error`.

    NOTE: ``st.cache_resource`` rather than ``st.cache_data``: the arrays are 184 MB, and
    ``cache_data`` would hand every rerun of every session its own unpickled copy. The entry is
    keyed by source and path, so a folder changed on disk shows its new images only after a
    server restart or ``st.cache_resource.clear()``.
    """
    if source is None:
        chosen = current_data_source()
        source, path = chosen["source"], chosen["path"]
    # The folders are part of the key so a changed environment variable loads afresh.
    return _load_shared(source, path, str(paths.data_dir()), str(paths.cache_dir()))


def enlarge(image: np.ndarray, scale: int = 8) -> np.ndarray:
    """Upscale an image by pixel repetition, returning ``(H*scale, W*scale, 3)`` uint8.

    Accepts ``(3, H, W)`` or ``(H, W, 3)``. Nearest-neighbour keeps each pixel a crisp square;
    a browser scaling a 32x32 image up would blur it. Show the result with
    ``st.image(..., output_format="PNG")``, because Streamlit's default JPEG encoding blurs the
    pixel edges again.
    """
    image = np.asarray(image)
    if image.ndim != 3 or 3 not in (image.shape[0], image.shape[-1]):
        raise ValueError(f"expected an image of shape (3, H, W) or (H, W, 3), got {image.shape}")
    if int(scale) != scale or scale < 1:
        raise ValueError(f"scale must be a positive whole number, got {scale}")
    if image.shape[0] == 3 and image.shape[-1] != 3:
        image = image.transpose(1, 2, 0)
    return np.repeat(np.repeat(image, int(scale), axis=0), int(scale), axis=1)


def show_error(error: Exception) -> None:
    """Show a user-fixable error (a `ValueError` from the core) without a traceback."""
    log.info("showing error to the user: %s", error)
    from ui.markdown import escape_markdown

    st.error(escape_markdown(error), icon=":material/error:")


def page_header(title: str, intro: str) -> None:
    """Draw a page's title and a one-paragraph introduction."""
    st.title(title)
    st.markdown(intro)


def class_name(label: int) -> str:
    return CLASSES[int(label)]


def describe_source(data: Cifar10) -> str:
    """Return one Markdown line naming the source and its image counts."""
    return f"{data.description}: {data.num_train:,} training and {data.num_test:,} test images"


__all__ = [
    "DATA_SOURCE_KEY",
    "DataError",
    "class_name",
    "current_data_source",
    "describe_source",
    "enlarge",
    "load_data",
    "page_header",
    "set_data_source",
    "show_error",
]


def page_link(page: str, label: str, icon: str, container=st) -> None:
    """Link to another page, or name it in text where the navigation does not know it.

    ``st.page_link`` raises for a page outside the app's navigation, as when a page runs on its
    own (``streamlit run pages/7_Attack.py``, or a test). The full app's sidebar still lists it.
    """
    try:
        container.page_link(page, label=label, icon=icon)
    except StreamlitPageNotFoundError:
        container.markdown(f"{icon} {label} in the sidebar.")
