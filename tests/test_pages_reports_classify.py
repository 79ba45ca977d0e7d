"""AppTest tests of the Reports and Classify pages, on real trained checkpoints."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from cifarlab import paths
from cifarlab.data import CLASSES, load_cifar10
from cifarlab.evaluate import evaluate_checkpoint

REPO_ROOT = Path(__file__).resolve().parent.parent
# A page that has no report yet scores 10,000 test images, which takes tens of seconds on a
# busy 2-core machine.
TIMEOUT_S = 300


def run_page(path: str, session: dict | None = None) -> AppTest:
    app = AppTest.from_file(str(REPO_ROOT / path), default_timeout=TIMEOUT_S)
    for key, value in (session or {}).items():
        app.session_state[key] = value
    return app.run()


def texts(elements) -> list[str]:
    return [element.value for element in elements]


def table_with_column(app: AppTest, column: str):
    """Return the first st.dataframe whose table has ``column``."""
    for frame in app.dataframe:
        if column in frame.value.columns:
            return frame.value
    raise AssertionError(f"no table with a {column!r} column")


def use_folders(monkeypatch, user_folder: Path, shipped_folder: Path) -> None:
    """Point the user and shipped checkpoint folders at test folders."""
    shipped_folder.mkdir(parents=True, exist_ok=True)
    user_folder.mkdir(parents=True, exist_ok=True)
    monkeypatch.setenv("CIFARLAB_CHECKPOINT_DIR", str(user_folder))
    monkeypatch.setattr(paths, "SHIPPED_CHECKPOINT_DIR", shipped_folder)


@pytest.fixture(scope="module")
def evaluated_folder(trained_checkpoint_dir, tmp_path_factory) -> Path:
    """A user folder with both tiny LeNets, each with its cached test report beside it."""
    folder = tmp_path_factory.mktemp("evaluated-checkpoints")
    data = load_cifar10()
    for name in ("lenet-raw", "lenet-standard"):
        copy = shutil.copy(trained_checkpoint_dir / f"{name}.pt", folder / f"{name}.pt")
        evaluate_checkpoint(copy, "test", data=data)
    return folder


@pytest.fixture
def evaluated(evaluated_folder, tmp_path, monkeypatch) -> Path:
    use_folders(monkeypatch, evaluated_folder, tmp_path / "shipped")
    return evaluated_folder


@pytest.fixture
def empty_folders(tmp_path, monkeypatch) -> None:
    use_folders(monkeypatch, tmp_path / "user", tmp_path / "shipped")


def stored_report(folder: Path, name: str) -> dict:
    return json.loads((folder / f"{name}.report.json").read_text())


# --------------------------------------------------------------------------------------------
# Reports


def test_reports_without_checkpoint_points_to_train(empty_folders):
    app = run_page("pages/5_Reports.py")
    assert not app.exception
    assert "Train page" in app.info[0].value


def test_reports_shows_cached_report(evaluated):
    raw = str(evaluated / "lenet-raw.pt")
    app = run_page("pages/5_Reports.py", {"active_checkpoint": raw})
    assert not app.exception
    assert app.selectbox(key="reports_checkpoint").value == raw
    stored = stored_report(evaluated, "lenet-raw")
    metrics = {metric.label: metric.value for metric in app.metric}
    assert metrics["Accuracy"] == f"{100 * stored['metrics']['accuracy']:.1f}%"
    assert metrics["Top-5 accuracy"] == f"{100 * stored['metrics']['top5_accuracy']:.1f}%"
    gap = stored["generalization"]["accuracy_gap"]
    assert metrics["Generalization gap"] == f"{100 * gap:+.1f}%"

    table = table_with_column(app, "class accuracy")
    assert list(table["class"]) == [*CLASSES, "macro avg", "weighted avg"]
    assert list(table["support"][:10]) == [1000] * 10
    assert app.session_state["active_checkpoint"] == raw

    assert any("saved weights are from epoch 2" in caption for caption in texts(app.caption))
    labels = [button.label for button in app.get("download_button")]
    assert labels == ["Per-class table (CSV)", "Confusion matrix (CSV)", "Whole report (JSON)"]


def test_reports_choice_becomes_active(evaluated):
    standard = str(evaluated / "lenet-standard.pt")
    app = run_page("pages/5_Reports.py")
    app.selectbox(key="reports_checkpoint").set_value(standard).run()
    assert not app.exception
    assert app.session_state["active_checkpoint"] == standard


def test_reports_confusion_toggle(evaluated):
    app = run_page("pages/5_Reports.py")
    app.toggle(key="reports_confusion_normalized").set_value(True).run()
    assert not app.exception
    pairs = table_with_column(app, "predicted as")
    assert list(pairs.columns) == ["true", "predicted as", "images", "share"]
    assert (pairs["images"].diff().dropna() <= 0).all()


def test_reports_gallery_filters_pair(evaluated):
    raw = str(evaluated / "lenet-raw.pt")
    app = run_page("pages/5_Reports.py", {"active_checkpoint": raw})
    gallery = [image for image in app.image if any("→" in caption for caption in image.captions)]
    assert len(gallery[0].captions) == 24

    stored = stored_report(evaluated, "lenet-raw")
    top_pair = stored["metrics"]["most_confused"][0]
    true_name, predicted_name = CLASSES[top_pair["true"]], CLASSES[top_pair["predicted"]]
    app.selectbox(key="reports_gallery_true").set_value(true_name)
    app.selectbox(key="reports_gallery_predicted").set_value(predicted_name).run()
    assert not app.exception
    gallery = [image for image in app.image if any("→" in caption for caption in image.captions)]
    captions = gallery[0].captions
    assert len(captions) == min(24, top_pair["count"])
    assert all(caption.startswith(f"{true_name} → {predicted_name} (") for caption in captions)


def test_reports_comparison_and_pairs(evaluated):
    app = run_page("pages/5_Reports.py")
    table = table_with_column(app, "generalization gap")
    assert list(table["model"]) == ["lenet-raw", "lenet-standard"]
    assert list(table["augmentation"]) == ["none", "standard"]
    assert table["test accuracy"].notna().all()
    assert list(table["epochs"]) == [2, 2]
    pairs = table_with_column(app, "augmented model")
    assert len(pairs) == 1
    assert pairs["raw model"][0] == "lenet-raw"
    assert pairs["augmented model"][0] == "lenet-standard"


def test_reports_evaluates_model_without_report(trained_checkpoint_dir, tmp_path, monkeypatch):
    user = tmp_path / "user"
    use_folders(monkeypatch, user, tmp_path / "shipped")
    shutil.copy(trained_checkpoint_dir / "lenet-standard.pt", user / "lenet-standard.pt")
    app = run_page("pages/5_Reports.py")
    assert not app.exception
    report = json.loads((user / "lenet-standard.report.json").read_text())
    assert report["metrics"]["num_samples"] == 10_000
    metrics = {metric.label: metric.value for metric in app.metric}
    assert metrics["Accuracy"] == f"{100 * report['accuracy']:.1f}%"


# --------------------------------------------------------------------------------------------
# Classify


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def test_classify_without_checkpoint_points_to_train(empty_folders):
    app = run_page("pages/6_Classify.py")
    assert not app.exception
    assert "Train page" in app.info[0].value


def test_classify_asks_for_an_upload(evaluated):
    app = run_page("pages/6_Classify.py")
    assert not app.exception
    assert "Upload a photo" in app.info[0].value
    assert app.file_uploader(key="classify_upload").allowed_type[:2] == [".png", ".jpg"]


def test_classify_uploaded_rgba_image(evaluated):
    pixels = np.zeros((64, 48, 4), dtype=np.uint8)
    pixels[..., 0] = 200
    pixels[:, :24, 3] = 255
    app = run_page("pages/6_Classify.py")
    app.file_uploader(key="classify_upload").set_value(
        ("half-transparent.png", png_bytes(Image.fromarray(pixels, "RGBA")), "image/png")
    ).run()
    assert not app.exception
    captions = " ".join(texts(app.caption))
    assert "half-transparent.png" in captions
    assert "composited on background RGB (255, 255, 255)" in captions
    assert "centre-cropped to 48x48" in captions
    # The enlarged input and the Grad-CAM overlay.
    assert len(app.image) == 2
    assert any(value.startswith("#### ") for value in texts(app.markdown))
    assert any("Grad-CAM weighs" in caption for caption in texts(app.caption))


def test_classify_background_colour_applies(evaluated):
    pixels = np.zeros((32, 32, 4), dtype=np.uint8)
    app = run_page("pages/6_Classify.py")
    app.color_picker(key="classify_background").set_value("#00FF00")
    app.file_uploader(key="classify_upload").set_value(
        ("clear.png", png_bytes(Image.fromarray(pixels, "RGBA")), "image/png")
    ).run()
    assert not app.exception
    assert "background RGB (0, 255, 0)" in " ".join(texts(app.caption))


def test_classify_rejects_text_file(evaluated):
    app = run_page("pages/6_Classify.py")
    app.file_uploader(key="classify_upload").set_value(("notes.png", b"not an image", "image/png")).run()
    assert not app.exception
    assert "not an image in a supported format" in app.error[0].value


def test_classify_test_image(evaluated):
    data = load_cifar10()
    app = run_page("pages/6_Classify.py")
    app.segmented_control(key="classify_source").set_value("Pick a test image").run()
    app.number_input(key="classify_test_index").set_value(7).run()
    assert not app.exception
    true_name = CLASSES[int(data.test_labels[7])]
    verdicts = texts(app.success) + texts(app.error)
    assert len(verdicts) == 1
    assert f"this test image is a {true_name}" in verdicts[0]
    assert any("Test image 7" in caption for caption in texts(app.caption))


def test_classify_explains_chosen_class(evaluated):
    app = run_page("pages/6_Classify.py")
    app.segmented_control(key="classify_source").set_value("Pick a test image").run()
    choice = app.selectbox(key="classify_cam_class")
    # Options are shown as "class (probability)"; the value is the class index.
    index = CLASSES.index(choice.options[1].split(" (")[0])
    choice.set_value(index).run()
    assert not app.exception
    assert any(f"score of **{CLASSES[index]}**" in caption for caption in texts(app.caption))


def test_classify_new_image_resets_explained_class(evaluated):
    app = run_page("pages/6_Classify.py")
    app.segmented_control(key="classify_source").set_value("Pick a test image").run()
    choice = app.selectbox(key="classify_cam_class")
    second = CLASSES.index(choice.options[1].split(" (")[0])
    choice.set_value(second).run()
    assert app.selectbox(key="classify_cam_class").value == second

    app.number_input(key="classify_test_index").set_value(7).run()

    assert not app.exception
    choice = app.selectbox(key="classify_cam_class")
    top = CLASSES.index(choice.options[0].split(" (")[0])
    assert choice.value == top


def test_classify_mlp_has_no_grad_cam(tmp_path, monkeypatch):
    import torch

    from cifarlab.checkpoints import save_checkpoint
    from cifarlab.models import build_model

    use_folders(monkeypatch, tmp_path / "user", tmp_path / "shipped")
    torch.manual_seed(0)
    path = save_checkpoint(tmp_path / "user" / "mlp.pt", build_model("mlp"), {})
    app = run_page("pages/6_Classify.py", {"active_checkpoint": str(path)})
    app.segmented_control(key="classify_source").set_value("Pick a test image").run()
    assert not app.exception
    assert any("no convolutional layer for Grad-CAM" in text for text in texts(app.info))
    # Only the enlarged input: there is no overlay.
    assert len(app.image) == 1
