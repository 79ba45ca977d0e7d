"""AppTest tests of the Attack page on the two tiny trained LeNets of `trained_checkpoint_dir`.

The attack runs in a background thread, so each test clicks, then reruns the page until the
job in ``st.session_state`` has finished, the way the page's polling fragment does.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from streamlit.testing.v1 import AppTest

from cifarlab import paths
from cifarlab.attack import AttackConfig, attack_image, predict_logits
from cifarlab.checkpoints import load_checkpoint
from cifarlab.data import CLASSES, load_cifar10

REPO_ROOT = Path(__file__).resolve().parent.parent
PAGE = str(REPO_ROOT / "pages" / "7_Attack.py")
TIMEOUT_S = 240
# Every 50th test image covers all ten classes of the class-sorted test set.
PROBE = np.arange(0, 10_000, 50)


def use_folders(monkeypatch, user_folder: Path, shipped_folder: Path) -> None:
    """Point the user and shipped checkpoint folders at test folders."""
    shipped_folder.mkdir(parents=True, exist_ok=True)
    user_folder.mkdir(parents=True, exist_ok=True)
    monkeypatch.setenv("CIFARLAB_CHECKPOINT_DIR", str(user_folder))
    monkeypatch.setattr(paths, "SHIPPED_CHECKPOINT_DIR", shipped_folder)


@pytest.fixture(scope="module")
def lenet_folder(trained_checkpoint_dir, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("attack-checkpoints")
    for name in ("lenet-raw", "lenet-standard"):
        shutil.copy(trained_checkpoint_dir / f"{name}.pt", folder / f"{name}.pt")
    return folder


@pytest.fixture(scope="module")
def probe(lenet_folder) -> dict:
    """Test indices that lenet-raw classifies correctly and wrongly."""
    model = load_checkpoint(lenet_folder / "lenet-raw.pt").model
    data = load_cifar10()
    predictions = predict_logits(model, torch.from_numpy(np.array(data.test_images[PROBE]))).argmax(dim=1).numpy()
    correct = PROBE[predictions == data.test_labels[PROBE]]
    wrong = PROBE[predictions != data.test_labels[PROBE]]
    assert len(correct), "the tiny LeNet should get some probe images right"
    assert len(wrong), "the tiny LeNet should get some probe images wrong"
    return {"model": model, "data": data, "correct": [int(i) for i in correct], "wrong": [int(i) for i in wrong]}


@pytest.fixture
def folders(monkeypatch, lenet_folder, tmp_path):
    use_folders(monkeypatch, lenet_folder, tmp_path / "shipped")


def open_page(session: dict | None = None) -> AppTest:
    app = AppTest.from_file(PAGE, default_timeout=TIMEOUT_S)
    for key, value in (session or {}).items():
        app.session_state[key] = value
    return app.run()


def wait_for_job(app: AppTest, key: str, timeout_s: float = TIMEOUT_S) -> AppTest:
    deadline = time.monotonic() + timeout_s
    while app.session_state[key].running:
        assert time.monotonic() < deadline, f"the {key} job did not finish in {timeout_s} s"
        time.sleep(0.3)
    return app.run()


def choose_index(app: AppTest, index: int) -> AppTest:
    app.radio(key="attack_pick").set_value("By index").run()
    app.number_input(key="attack_index").set_value(index)
    return app.run()


def set_budget(app: AppTest, pixels: int, popsize: int, generations: int) -> None:
    app.slider(key="attack_pixels").set_value(pixels)
    app.number_input(key="attack_popsize").set_value(popsize)
    app.number_input(key="attack_generations").set_value(generations)


def messages(app: AppTest) -> list[str]:
    return [element.value for group in (app.success, app.warning, app.info) for element in group]


def test_page_without_models_points_to_training(monkeypatch, tmp_path):
    use_folders(monkeypatch, tmp_path / "user", tmp_path / "shipped")
    app = open_page()
    assert not app.exception
    assert "no trained model" in app.info[0].value.lower()
    assert not app.tabs


def test_page_starts_on_active_model(folders, lenet_folder):
    active = str(lenet_folder / "lenet-standard.pt")
    app = open_page({"active_checkpoint": active})
    assert not app.exception
    assert app.selectbox(key="attack_model").value == active
    assert [tab.label for tab in app.tabs] == ["One image, live", "Many images: success rate"]


def test_page_shows_clean_prediction(folders, probe):
    index = probe["correct"][0]
    app = choose_index(open_page(), index)
    assert not app.exception
    label = CLASSES[int(probe["data"].test_labels[index])]
    assert any(f"True class: {label}" in str(image.proto) for image in app.get("image"))


def test_single_attack_matches_core(folders, probe):
    """The page's result is the core's result for the same image, settings and seed."""
    index = probe["correct"][0]
    app = choose_index(open_page(), index)
    set_budget(app, pixels=3, popsize=20, generations=4)
    app.button(key="attack_run").click().run()
    assert not app.exception
    app = wait_for_job(app, "attack_job")
    assert not app.exception

    data = probe["data"]
    config = AttackConfig(pixels=3, popsize=20, generations=4, seed=0)
    expected = attack_image(probe["model"], data.test_images[index], int(data.test_labels[index]), config=config, image_id=index)
    result = app.session_state["attack_job"].result
    assert np.array_equal(result.adversarial, expected.adversarial)
    assert result.status == expected.status

    shown = " ".join(messages(app))
    if expected.success:
        assert "Fooled" in shown
        assert CLASSES[expected.pred_after] in shown
    else:
        assert "Not fooled" in shown
    assert len(app.get("download_button")) == 2
    changed = [frame.value for frame in app.dataframe if "row" in frame.value.columns]
    assert len(changed[0]) == len(expected.changed)


def test_targeted_attack_names_target(folders, probe):
    index = probe["correct"][0]
    label = int(probe["data"].test_labels[index])
    target = (label + 1) % 10
    app = choose_index(open_page(), index)
    set_budget(app, pixels=1, popsize=10, generations=2)
    app.radio(key="attack_goal").set_value("Targeted: one chosen class").run()
    app.selectbox(key=f"attack_target_{label}").set_value(CLASSES[target])
    app.button(key="attack_run").click().run()
    app = wait_for_job(app, "attack_job")
    assert not app.exception
    result = app.session_state["attack_job"].result
    assert result.target == target
    shown = " ".join(messages(app))
    assert (CLASSES[target] in shown) if result.success else ("Not fooled" in shown)


def test_misclassified_image_is_not_attacked(folders, probe):
    app = choose_index(open_page(), probe["wrong"][0])
    assert "already misclassifies" in " ".join(caption.value for caption in app.caption)
    set_budget(app, pixels=1, popsize=10, generations=2)
    app.button(key="attack_run").click().run()
    app = wait_for_job(app, "attack_job")
    assert "already gets this image wrong" in " ".join(messages(app))
    assert not app.get("download_button")


def test_stop_button_ends_attack(folders, probe):
    index = probe["correct"][-1]
    app = choose_index(open_page(), index)
    set_budget(app, pixels=1, popsize=4, generations=1000)
    app.radio(key="attack_goal").set_value("Targeted: one chosen class").run()
    app.button(key="attack_run").click().run()
    job = app.session_state["attack_job"]
    deadline = time.monotonic() + TIMEOUT_S
    while job.latest is None or job.latest["generation"] < 2:
        assert job.running, "the search ended before the test could stop it"
        assert time.monotonic() < deadline
        time.sleep(0.1)
    app.run()
    app.button(key="attack_job_stop").click().run()
    app = wait_for_job(app, "attack_job")
    assert not app.exception
    result = app.session_state["attack_job"].result
    assert result.status == "stopped"
    assert result.generations < 1000
    assert any(text.startswith("Stopped after") for text in messages(app))


def test_batch_compares_models(folders, lenet_folder):
    app = open_page({"active_checkpoint": str(lenet_folder / "lenet-raw.pt")})
    app.multiselect(key="attack_batch_models").set_value(
        [str(lenet_folder / "lenet-raw.pt"), str(lenet_folder / "lenet-standard.pt")]
    )
    app.number_input(key="attack_batch_n").set_value(4)
    app.number_input(key="attack_batch_popsize").set_value(10)
    app.number_input(key="attack_batch_generations").set_value(2)
    app.number_input(key="attack_batch_baseline").set_value(20)
    app.run()
    app.button(key="attack_batch_run").click().run()
    app = wait_for_job(app, "attack_batch_job")
    assert not app.exception

    table = next(frame.value for frame in app.dataframe if "attack success rate" in frame.value.columns)
    assert list(table["model"]) == ["lenet-raw", "lenet-standard"]
    assert list(table["images"]) == [4, 4]
    for _, row in table.iterrows():
        assert row["clean accuracy"] == pytest.approx(row["correct"] / 4)
        assert row["accuracy under attack"] == pytest.approx((row["correct"] - row["fooled"]) / 4)
        if row["correct"]:
            assert row["attack success rate"] == pytest.approx(row["fooled"] / row["correct"])
    outcomes = app.session_state["attack_batch_job"].result["models"]
    assert outcomes[0]["summary"].images[0].image_id == outcomes[1]["summary"].images[0].image_id
    assert outcomes[0]["baseline"].trials == 20


# --- drawing helpers --------------------------------------------------------------------------


def test_png_download_is_exact_image():
    import io

    from PIL import Image

    from ui.attack import png_bytes

    image = np.random.default_rng(0).integers(0, 256, (3, 32, 32), dtype=np.uint8)
    decoded = np.asarray(Image.open(io.BytesIO(png_bytes(image))))
    assert decoded.shape == (32, 32, 3)
    assert np.array_equal(decoded.transpose(2, 0, 1), image)


def test_marked_image_keeps_pixels_crisp():
    from cifarlab.attack import PixelChange
    from ui.attack import marked_image

    image = np.random.default_rng(1).integers(0, 256, (3, 32, 32), dtype=np.uint8)
    plain = np.asarray(marked_image(image, [], scale=8))
    assert plain.shape == (256, 256, 3)
    assert np.array_equal(plain[::8, ::8].transpose(2, 0, 1), image)
    assert np.array_equal(plain[7::8, 7::8].transpose(2, 0, 1), image)

    marked = np.asarray(marked_image(image, [PixelChange(10, 20, (0, 0, 0), (255, 0, 0))], scale=8))
    ring = marked != plain
    rows, cols = np.nonzero(ring.any(axis=2))
    assert ring.any()
    assert abs((rows.min() + rows.max()) / 2 - 10.5 * 8) <= 1
    assert abs((cols.min() + cols.max()) / 2 - 20.5 * 8) <= 1
    # The circled pixel itself stays visible inside the ring.
    assert np.array_equal(marked[84, 164], plain[84, 164])
