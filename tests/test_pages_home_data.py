"""AppTest tests of the Home page (streamlit_app.py) and the Data page."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from cifarlab.data import CLASSES
from ui.common import app_threads, enlarge

REPO_ROOT = Path(__file__).resolve().parent.parent
# The first run in a fresh cache decodes the bundled archive, which takes tens of seconds.
TIMEOUT_S = 300


def run_page(path: str, session: dict | None = None) -> AppTest:
    app = AppTest.from_file(str(REPO_ROOT / path), default_timeout=TIMEOUT_S)
    for key, value in (session or {}).items():
        app.session_state[key] = value
    return app.run()


def texts(elements) -> list[str]:
    return [element.value for element in elements]


def gallery_images(app: AppTest) -> list:
    return [image for image in app.get("image") if all(c.startswith("#") for c in image.captions)]


def write_tiny_folder(root: Path) -> Path:
    for split in ("train", "test"):
        for label, name in enumerate(CLASSES):
            (root / split / name).mkdir(parents=True)
            for index in range(4 if split == "train" else 2):
                Image.new("RGB", (32, 32), (20 * label, 10 * index, 99)).save(
                    root / split / name / f"{index}.png"
                )
    return root


# ---------------------------------------------------------------------------------------------
# Home


def test_home_shows_data_counts():
    app = run_page("streamlit_app.py")
    assert not app.exception
    assert texts(app.metric) == ["50,000", "10", "10,000"]
    assert "bundled" in " ".join(texts(app.markdown))


def test_home_lists_every_page():
    app = run_page("streamlit_app.py")
    captions = " ".join(texts(app.caption))
    for phrase in ("validation images are carved out", "one-pixel attack", "confusion matrix"):
        assert phrase in captions
    assert texts(app.subheader) == ["What each page teaches", "Data in use", "Trained models"]


def test_home_without_checkpoints(tmp_path, monkeypatch):
    monkeypatch.setenv("CIFARLAB_CHECKPOINT_DIR", str(tmp_path / "none"))
    monkeypatch.setattr("cifarlab.paths.SHIPPED_CHECKPOINT_DIR", tmp_path / "shipped-none")
    app = run_page("streamlit_app.py")
    assert not app.exception
    assert "No checkpoints yet" in texts(app.info)[0]


def test_home_lists_user_checkpoint(tmp_path, monkeypatch):
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    (folder / "my-model.pt").write_bytes(b"not a checkpoint")
    monkeypatch.setenv("CIFARLAB_CHECKPOINT_DIR", str(folder))
    app = run_page("streamlit_app.py")
    assert not app.exception
    table = app.dataframe[0].value
    row = table[table["name"] == "my-model"]
    assert len(row) == 1
    assert row["origin"].iloc[0] == "yours"


def test_home_bad_source_shows_error():
    app = run_page("streamlit_app.py", {"data_source": {"source": "folder", "path": "/no/such"}})
    assert not app.exception
    assert "/no/such does not exist" in texts(app.error)[0]


# ---------------------------------------------------------------------------------------------
# Data


def test_data_default_split_sizes():
    app = run_page("pages/1_Data.py")
    assert not app.exception
    assert texts(app.metric) == ["45,000", "5,000", "10,000"]
    assert "fingerprint" in texts(app.caption)[0]


def test_data_gallery_all_classes():
    app = run_page("pages/1_Data.py")
    markdown = texts(app.markdown)
    for name in CLASSES:
        assert f"**{name}**" in markdown
    images = gallery_images(app)
    assert len(images) == 10
    assert all(len(image.captions) == 8 for image in images)


def test_data_gallery_per_class_slider():
    app = run_page("pages/1_Data.py")
    app.slider(key="data_per_class").set_value(3).run()
    assert [len(image.captions) for image in gallery_images(app)] == [3] * 10


def test_data_gallery_shuffle_reseeds():
    app = run_page("pages/1_Data.py")
    before = [image.captions for image in gallery_images(app)]
    app.button(key="data_shuffle").click().run()
    assert app.number_input(key="data_gallery_seed").value == 1
    after = [image.captions for image in gallery_images(app)]
    assert after != before
    app.number_input(key="data_gallery_seed").set_value(0).run()
    assert [image.captions for image in gallery_images(app)] == before


def test_data_gallery_ids_match_class():
    app = run_page("pages/1_Data.py")
    from ui.common import load_data

    labels = load_data().train_labels
    for label, image in enumerate(gallery_images(app)):
        ids = [int(caption.removeprefix("#")) for caption in image.captions]
        assert set(labels[ids].tolist()) == {label}


def test_data_gallery_test_split():
    app = run_page("pages/1_Data.py")
    app.button_group(key="data_gallery_split").set_value("test").run()
    ids = [int(c.removeprefix("#")) for image in gallery_images(app) for c in image.captions]
    assert max(ids) < 10_000


def test_data_enlarged_image_caption():
    app = run_page("pages/1_Data.py")
    app.number_input(key="data_zoom_index").set_value(49_999).run()
    (zoomed,) = [image for image in app.get("image") if not image.captions[0].startswith("#")]
    assert zoomed.captions == ["truck (class 9), training image #49999, 32x32 pixels"]


def test_data_validation_size_changes_metrics():
    app = run_page("pages/1_Data.py")
    app.number_input(key="data_val_size").set_value(10_000).run()
    assert texts(app.metric) == ["40,000", "10,000", "10,000"]


def test_data_explains_leak():
    app = run_page("pages/1_Data.py")
    text = " ".join(texts(app.markdown))
    assert "near-duplicate of a test image" in text
    assert "Augmentation runs on training batches only" in text


def test_data_switch_to_folder_source(tmp_path):
    folder = write_tiny_folder(tmp_path / "images")
    app = run_page("pages/1_Data.py")
    app.radio(key="data_source_choice").set_value("folder").run()
    app.text_input(key="data_path").input(str(folder)).run()
    app.button(key="data_use_source").click().run()
    assert not app.exception
    assert app.session_state["data_source"] == {"source": "folder", "path": str(folder)}
    assert texts(app.metric) == ["36", "4", "20"]
    assert len(gallery_images(app)) == 10


def test_data_bad_folder_shows_error(tmp_path):
    app = run_page("pages/1_Data.py")
    app.radio(key="data_source_choice").set_value("folder").run()
    app.text_input(key="data_path").input(str(tmp_path / "missing")).run()
    app.button(key="data_use_source").click().run()
    assert not app.exception
    assert "missing does not exist" in texts(app.error)[0]
    assert "data_source" not in app.session_state


def test_data_canonical_not_downloaded(tmp_path, monkeypatch):
    monkeypatch.setenv("CIFARLAB_DATA_DIR", str(tmp_path))
    app = run_page("pages/1_Data.py")
    app.radio(key="data_source_choice").set_value("canonical").run()
    assert "not downloaded" in " ".join(texts(app.caption))
    app.button(key="data_use_source").click().run()
    assert not app.exception
    assert "170,498,071 bytes" in texts(app.error)[0]


def test_data_download_offline_shows_error(tmp_path, monkeypatch):
    import socket

    from cifarlab import data

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setattr(data, "CANONICAL_URL", f"http://127.0.0.1:{port}/cifar-10-python.tar.gz")
    monkeypatch.setenv("CIFARLAB_DATA_DIR", str(tmp_path))
    app = run_page("pages/1_Data.py")
    app.radio(key="data_source_choice").set_value("canonical").run()
    app.button(key="data_download").click().run()
    assert not app.exception
    message = texts(app.error)[0]
    assert "cannot download" in message
    assert f"put it in {tmp_path}" in message


# ---------------------------------------------------------------------------------------------
# ui.common


@pytest.mark.parametrize("layout", ["chw", "hwc"])
def test_enlarge_repeats_pixels(layout):
    image = np.arange(2 * 2 * 3, dtype=np.uint8).reshape(2, 2, 3)
    given = image.transpose(2, 0, 1) if layout == "chw" else image
    big = enlarge(given, 3)
    assert big.shape == (6, 6, 3)
    assert (big[:3, :3] == image[0, 0]).all()
    assert (big[3:, 3:] == image[1, 1]).all()


def test_enlarge_rejects_bad_input():
    with pytest.raises(ValueError, match=r"scale must be a positive whole number, got 0"):
        enlarge(np.zeros((3, 4, 4), np.uint8), 0)
    with pytest.raises(ValueError, match=r"expected an image of shape"):
        enlarge(np.zeros((4, 4), np.uint8), 2)


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, 1), ("1", 1), ("4", 4), ("0", 1), ("-2", 1), ("two", 1), ("", 1)],
)
def test_app_threads_from_environment(value, expected, monkeypatch):
    if value is None:
        monkeypatch.delenv("CIFARLAB_APP_THREADS", raising=False)
    else:
        monkeypatch.setenv("CIFARLAB_APP_THREADS", value)

    assert app_threads() == expected
