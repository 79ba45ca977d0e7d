"""AppTest of the Train and Models pages.

The Train page's runs use the fake trainer of test_runs.py. AppTest runs the page in this
process, so the patched trainer command applies. The Models page works on small real
checkpoints written by cifarlab.checkpoints.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest
from test_runs import fake_config, fake_trainer, kill_and_reap, wait_for, wait_until_final  # noqa: F401

from cifarlab import paths, presets, runs
from cifarlab.augment import PRESETS as RECIPES
from cifarlab.checkpoints import save_checkpoint
from cifarlab.models import build_model, list_archs, model_card

APP = str(Path(__file__).resolve().parent.parent / "streamlit_app.py")
TRAIN = "pages/3_Train.py"
MODELS = "pages/4_Models.py"
DATA = "pages/1_Data.py"
TIMEOUT_S = 180


def open_app(page: str) -> AppTest:
    app = AppTest.from_file(APP, default_timeout=TIMEOUT_S)
    app.run()
    app.switch_page(page).run()
    assert not app.exception, [item.value for item in app.exception]
    return app


def texts(elements) -> list[str]:
    return [element.value for element in elements]


def joined(app: AppTest) -> str:
    """Return every markdown, caption, alert and heading of the page as one string."""
    parts = []
    for group in (app.markdown, app.caption, app.error, app.warning, app.info, app.success,
                  app.subheader, app.code):
        parts.extend(str(element.value) for element in group)
    return "\n".join(parts)


# ---------------------------------------------------------------------------------------------
# Train page


def test_train_page_renders_form(fake_trainer):
    app = open_app(TRAIN)

    assert app.selectbox(key="train_arch").value == "mlp"
    assert app.selectbox(key="train_preset").value == "custom"
    assert app.button(key="train_start").disabled is False
    assert "Expected time per epoch" in [metric.label for metric in app.metric]


def test_train_estimate_from_benchmark(fake_trainer, tmp_path, monkeypatch):
    speed_file = tmp_path / "train_speed.json"
    speed_file.write_text(json.dumps(
        {"device": "cpu", "archs": {"mlp": {"images_per_s": 100.0, "eval_images_per_s": 1000.0}}}
    ))
    monkeypatch.setattr(presets, "TRAIN_SPEED_FILE", speed_file)
    app = open_app(TRAIN)

    app.checkbox(key="train_use_subset").check().run()
    app.number_input(key="train_subset").set_value(3000).run()
    app.number_input(key="train_val_size").set_value(1000).run()

    metrics = {metric.label: metric.value for metric in app.metric}
    # 3,000 training images at 100 images/s, then 1,000 validation images at 1,000 images/s.
    assert metrics["Expected time per epoch"] == "31 s"
    assert metrics["Training images per epoch"] == "3,000"


def test_train_estimate_counts_offline_copies(fake_trainer, tmp_path, monkeypatch):
    speed_file = tmp_path / "train_speed.json"
    speed_file.write_text(json.dumps(
        {"device": "cpu", "archs": {"mlp": {"images_per_s": 100.0, "eval_images_per_s": 1000.0}}}
    ))
    monkeypatch.setattr(presets, "TRAIN_SPEED_FILE", speed_file)
    app = open_app(TRAIN)
    app.checkbox(key="train_use_subset").check().run()
    app.number_input(key="train_subset").set_value(3000).run()
    app.number_input(key="train_val_size").set_value(1000).run()

    app.number_input(key="train_offline_copies").set_value(2).run()

    assert not app.exception
    metrics = {metric.label: metric.value for metric in app.metric}
    # 3,000 images and 2 copies of each at 100 images/s, then 1,000 validation images at 1,000/s.
    assert metrics["Training images per epoch"] == "9,000"
    assert metrics["Expected time per epoch"] == runs.format_duration(91)
    assert app.selectbox(key="train_offline_recipe_choice").value == "standard"


def test_train_estimate_missing_says_so(fake_trainer, tmp_path, monkeypatch):
    monkeypatch.setattr(presets, "TRAIN_SPEED_FILE", tmp_path / "missing.json")

    app = open_app(TRAIN)

    metrics = {metric.label: metric.value for metric in app.metric}
    assert metrics["Expected time per epoch"] == "unknown"
    assert any("no measurement for mlp on cpu" in caption for caption in texts(app.caption))


def test_train_preset_fills_form(fake_trainer):
    app = open_app(TRAIN)

    app.selectbox(key="train_preset").set_value("vgg16-raw").run()

    assert app.selectbox(key="train_arch").value == "vgg16"
    assert app.number_input(key="train_batch_size").value == 128
    assert app.number_input(key="train_epochs").value == 5
    assert app.selectbox(key="train_optimizer").value == "adam"
    assert app.selectbox(key="train_recipe_choice").value == "none"

    app.number_input(key="train_epochs").set_value(2).run()
    assert "Changed from the preset: epochs: 5 → 2" in joined(app)


def test_train_widgets_survive_page_switch(fake_trainer):
    app = open_app(TRAIN)
    app.selectbox(key="train_arch").set_value("lenet").run()
    app.number_input(key="train_epochs").set_value(3).run()
    app.checkbox(key="train_use_subset").check().run()
    app.number_input(key="train_subset").set_value(700).run()

    app.switch_page(DATA).run()
    app.switch_page(TRAIN).run()

    assert not app.exception
    assert app.selectbox(key="train_arch").value == "lenet"
    assert app.number_input(key="train_epochs").value == 3
    assert app.checkbox(key="train_use_subset").value is True
    assert app.number_input(key="train_subset").value == 700


def test_train_uses_augmentation_page_recipe(fake_trainer):
    recipe = RECIPES["cutout"].to_dict()
    recipe["name"] = "my recipe"
    app = AppTest.from_file(APP, default_timeout=TIMEOUT_S)
    app.session_state["recipe"] = recipe
    app.run()
    app.switch_page(TRAIN).run()

    assert app.selectbox(key="train_recipe_choice").value == "augmentation page"
    assert "Operations: random crop, horizontal flip, cutout" in texts(app.caption)

    app.button(key="train_start").click().run()

    run = runs.list_runs()[0]
    assert run.config["recipe"] == recipe
    # The fake trainer reads fields a real config lacks, so this run fails at once.
    wait_until_final(run)


def test_train_offline_copies_reach_run_config(fake_trainer):
    app = open_app(TRAIN)
    assert app.number_input(key="train_offline_copies").value == 0
    assert "train_offline_recipe_choice" not in [box.key for box in app.selectbox]
    assert "Offline copies are made once before training" in joined(app)

    app.number_input(key="train_offline_copies").set_value(1).run()
    assert "none" not in app.selectbox(key="train_offline_recipe_choice").options
    app.selectbox(key="train_offline_recipe_choice").set_value("cutout").run()
    app.button(key="train_start").click().run()

    assert not app.exception
    run = runs.list_runs()[0]
    assert run.config["offline_copies"] == 1
    assert run.config["offline_recipe"] == RECIPES["cutout"].to_dict()
    assert run.config["recipe"] == RECIPES["standard"].to_dict()
    assert "offline augmentation: 1 copy of each image (cutout)" in joined(app)
    wait_until_final(run)


def test_train_offline_recipe_from_augmentation_page(fake_trainer):
    recipe = RECIPES["cutout"].to_dict()
    recipe["name"] = "my recipe"
    app = AppTest.from_file(APP, default_timeout=TIMEOUT_S)
    app.session_state["recipe"] = recipe
    app.run()
    app.switch_page(TRAIN).run()

    app.number_input(key="train_offline_copies").set_value(2).run()

    assert app.selectbox(key="train_offline_recipe_choice").value == "augmentation page"
    app.button(key="train_start").click().run()
    run = runs.list_runs()[0]
    assert run.config["offline_copies"] == 2
    assert run.config["offline_recipe"] == recipe
    wait_until_final(run)


def test_train_preset_turns_offline_copies_off(fake_trainer):
    app = open_app(TRAIN)
    app.number_input(key="train_offline_copies").set_value(2).run()

    app.selectbox(key="train_preset").set_value("lenet-raw").run()
    assert app.number_input(key="train_offline_copies").value == 0

    app.number_input(key="train_offline_copies").set_value(1).run()
    assert "offline_copies: 0 → 1" in joined(app)


def test_train_invalid_option_shows_error(fake_trainer):
    app = open_app(TRAIN)

    app.text_input(key="train_option_mlp_widths").set_value("512, 256").run()

    assert not app.exception
    assert any("widths" in message for message in texts(app.error))
    assert app.button(key="train_start").disabled is True


def test_train_page_shows_active_run(fake_trainer):
    run = runs.start_run(fake_config(epochs=50, batches=10, batch_s=0.1))
    try:
        wait_for(lambda: runs.read_progress(run).batches, what="a batch")
        app = open_app(TRAIN)

        assert f"Run {run.run_id}" in texts(app.subheader)
        assert app.button(key="train_stop").label == "Stop"
        assert len(app.get("progress")) == 1
    finally:
        wait_until_final(runs.stop_run(run))


def test_second_start_names_active_run(fake_trainer):
    run = runs.start_run(fake_config(epochs=50, batches=10, batch_s=0.1))
    try:
        app = open_app(TRAIN)

        app.button(key="train_start").click().run()

        assert not app.exception
        messages = " ".join(texts(app.error))
        assert f"run {run.run_id}" in messages
        assert "still running" in messages
        assert [item.run_id for item in runs.list_runs()] == [run.run_id]
    finally:
        wait_until_final(runs.stop_run(run))


def test_stop_button_stops_run(fake_trainer):
    run = runs.start_run(fake_config(epochs=50, batches=10, batch_s=0.1))
    wait_for(lambda: runs.read_progress(run).batches, what="a batch")
    app = open_app(TRAIN)

    app.button(key="train_stop").click().run()

    assert run.stop_path.is_file()
    run = wait_until_final(run)
    assert run.state == runs.STOPPED
    app.run()
    assert "Stopped on request" in joined(app)


def test_failed_run_shows_error_and_log(fake_trainer):
    run = wait_until_final(runs.start_run(fake_config(epochs=1, batches=3, batch_s=0.01, fail_at=[1, 2])))
    assert run.state == runs.FAILED

    app = open_app(TRAIN)

    assert any("RuntimeError: fake trainer failed on purpose" in message for message in texts(app.error))
    assert any("Traceback" in block for block in texts(app.code))


def test_interrupted_run_resumes(fake_trainer):
    run = runs.start_run(fake_config(epochs=3, batches=3, batch_s=0.2))
    wait_for(run.resume_state_path.is_file, what="the first resume state")
    kill_and_reap(run.last_attempt.pid)

    app = open_app(TRAIN)
    assert any("Interrupted" in message for message in texts(app.warning))

    app.button(key="train_resume").click().run()

    resumed = runs.get_run(run.run_id)
    assert len(resumed.attempts) == 2
    assert wait_until_final(resumed).state == runs.COMPLETED


def test_completed_run_becomes_active_model(fake_trainer):
    run = wait_until_final(runs.start_run(fake_config(epochs=1, batches=2, batch_s=0.01)))
    app = open_app(TRAIN)
    assert any(run.checkpoint_path.name in message for message in texts(app.success))

    app.button(key="train_use_model").click().run()

    assert app.session_state["active_checkpoint"] == str(run.checkpoint_path)


# ---------------------------------------------------------------------------------------------
# Models page


def tiny_meta(val_acc: float) -> dict:
    history = [
        {"epoch": 1, "train_loss": 2.0, "train_acc": 0.2, "val_loss": 2.1, "val_acc": val_acc - 0.05},
        {"epoch": 2, "train_loss": 1.8, "train_acc": 0.3, "val_loss": 1.9, "val_acc": val_acc},
    ]
    return {
        "config": {"arch": "mlp", "epochs": 2, "recipe": {"name": "standard", "operations": []}},
        "history": history,
        "best": {"epoch": 2, "val_acc": val_acc, "val_loss": 1.9, "monitor": "val_acc"},
        "data": {"source": "bundled", "description": "test", "split": {"seed": 0}},
        "training": {"status": "completed", "epochs_completed": 2, "epochs": 2, "time_s": 12.0,
                     "device": "cpu"},
        "test": {"acc": val_acc - 0.01},
    }


def write_tiny_checkpoint(path: Path, val_acc: float = 0.4) -> Path:
    model = build_model("mlp", widths=[8, 8, 8, 8])
    return save_checkpoint(path, model, tiny_meta(val_acc))


@pytest.fixture
def checkpoint_folders(tmp_path, monkeypatch):
    """Point the shipped and user checkpoint folders at fresh folders with one file each."""
    shipped = tmp_path / "shipped"
    user = tmp_path / "user"
    shipped.mkdir()
    user.mkdir()
    monkeypatch.setattr(paths, "SHIPPED_CHECKPOINT_DIR", shipped)
    monkeypatch.setenv("CIFARLAB_CHECKPOINT_DIR", str(user))
    monkeypatch.setenv("CIFARLAB_RUNS_DIR", str(tmp_path / "runs"))
    write_tiny_checkpoint(shipped / "mlp-shipped.pt", 0.5)
    write_tiny_checkpoint(user / "mlp-mine.pt", 0.4)
    return shipped, user


def test_models_table_lists_checkpoints(checkpoint_folders):
    app = open_app(MODELS)

    table = app.dataframe[0].value
    assert list(table["name"]) == ["mlp-shipped", "mlp-mine"]
    assert list(table["origin"]) == ["shipped", "yours"]
    assert list(table["architecture"]) == ["mlp", "mlp"]
    assert list(table["val acc"]) == pytest.approx([0.5, 0.4])
    assert list(table["test acc"]) == pytest.approx([0.49, 0.39])
    assert list(table["recipe"]) == ["standard", "standard"]
    assert list(table["data"]) == ["bundled", "bundled"]
    assert list(table["device"]) == ["cpu", "cpu"]
    for column in ("parameters", "size (MB)", "training time", "date"):
        assert table[column].notna().all(), column


def test_models_details_show_card_and_curves(checkpoint_folders):
    app = open_app(MODELS)

    assert "Model card" in joined(app)
    params = model_card("mlp", widths=[8, 8, 8, 8]).params
    assert f"**Parameters**: {params:,} ({params:,} trainable)" in joined(app)
    assert len(app.get("vega_lite_chart")) == 2
    assert [metric.value for metric in app.metric][:2] == ["50.0%", "49.0%"]


def test_models_details_show_offline_copies(checkpoint_folders):
    shipped, _ = checkpoint_folders
    meta = tiny_meta(0.5)
    meta["config"].update(offline_copies=1, offline_recipe=RECIPES["standard"].to_dict())
    meta["data"]["split"].update(train_size=400, val_size=100, offline_copies=1, train_originals=200)
    save_checkpoint(shipped / "mlp-shipped.pt", build_model("mlp", widths=[8, 8, 8, 8]), meta)

    app = open_app(MODELS)

    assert not app.exception
    assert (
        "400 training (200 training-split images and 1 offline augmented copy of each) and 100 "
        "validation images"
    ) in joined(app)


def test_active_model_kept_across_pages(checkpoint_folders):
    shipped, user = checkpoint_folders
    app = open_app(MODELS)
    app.selectbox(key="models_pick").set_value(str(user / "mlp-mine.pt")).run()

    app.button(key="models_use").click().run()
    assert app.session_state["active_checkpoint"] == str(user / "mlp-mine.pt")

    app.switch_page(TRAIN).run()
    app.switch_page(MODELS).run()

    assert not app.exception
    assert app.session_state["active_checkpoint"] == str(user / "mlp-mine.pt")
    assert app.selectbox(key="models_pick").value == str(user / "mlp-mine.pt")
    assert any("Active model: **mlp-mine.pt**" in message for message in texts(app.success))
    assert list(app.dataframe[0].value["active"]) == ["", "●"]


def test_shipped_checkpoint_delete_disabled(checkpoint_folders):
    shipped, _ = checkpoint_folders
    app = open_app(MODELS)
    app.selectbox(key="models_pick").set_value(str(shipped / "mlp-shipped.pt")).run()

    delete = app.button(key="models_delete")

    assert delete.disabled is True
    assert "protected" in delete.help
    assert (shipped / "mlp-shipped.pt").is_file()


def test_delete_user_checkpoint(checkpoint_folders):
    _, user = checkpoint_folders
    app = open_app(MODELS)
    app.selectbox(key="models_pick").set_value(str(user / "mlp-mine.pt")).run()
    app.button(key="models_use").click().run()

    app.button(key="models_delete").click().run()
    assert (user / "mlp-mine.pt").is_file()
    app.button(key="models_delete_confirm").click().run()

    assert not app.exception
    assert not (user / "mlp-mine.pt").exists()
    assert "active_checkpoint" not in app.session_state
    assert list(app.dataframe[0].value["name"]) == ["mlp-shipped"]


def test_upload_valid_checkpoint(checkpoint_folders, tmp_path):
    _, user = checkpoint_folders
    source = write_tiny_checkpoint(tmp_path / "uploaded model.pt", 0.3)
    app = open_app(MODELS)

    app.file_uploader(key="models_upload").set_value(
        ("uploaded model.pt", source.read_bytes(), "application/octet-stream")
    ).run()

    assert not app.exception
    assert (user / "uploaded_model.pt").is_file()
    assert "uploaded_model" in list(app.dataframe[0].value["name"])
    assert app.selectbox(key="models_pick").value == str(user / "uploaded_model.pt")


@pytest.mark.parametrize(
    ("filename", "content", "message"),
    [
        ("notes.pt", b"plain text, not a checkpoint", "not a cifarlab checkpoint"),
        ("weights.pth", b"whatever", "ends in .pt"),
    ],
)
def test_upload_bad_file_rejected(checkpoint_folders, filename, content, message):
    _, user = checkpoint_folders
    app = open_app(MODELS)

    app.file_uploader(key="models_upload").set_value((filename, content, "application/octet-stream")).run()

    assert not app.exception
    assert any(message in error for error in texts(app.error))
    assert sorted(path.name for path in user.iterdir()) == ["mlp-mine.pt"]


def test_upload_pickled_object_rejected(checkpoint_folders):
    _, user = checkpoint_folders
    import torch

    buffer = io.BytesIO()
    torch.save(build_model("mlp", widths=[8, 8, 8, 8]), buffer)
    app = open_app(MODELS)

    app.file_uploader(key="models_upload").set_value(("whole-model.pt", buffer.getvalue(), "application/octet-stream")).run()

    assert not app.exception
    assert texts(app.error)
    assert sorted(path.name for path in user.iterdir()) == ["mlp-mine.pt"]


def test_models_lists_archs_not_shipped(checkpoint_folders):
    app = open_app(MODELS)

    assert "Trainable, not shipped" in joined(app)
    table = app.dataframe[-1].value
    # The shipped folder has an mlp, so every other registered architecture is listed.
    assert list(table["architecture"]) == [arch for arch in list_archs() if arch != "mlp"]
    reasons = dict(zip(table["architecture"], table["why not shipped"]))
    for arch in ("vgg19", "resnet50", "resnet152"):
        assert "ImageNet weights" in reasons[arch]
        assert "cifarlab weights download" in reasons[arch]
    assert "needs a GPU" in reasons["resnet"]
    assert table["epoch on the benchmark CPU"].notna().all()
    assert texts(app.exception) == []


def test_models_page_empty(tmp_path, monkeypatch):
    monkeypatch.setattr(paths, "SHIPPED_CHECKPOINT_DIR", tmp_path / "none")
    monkeypatch.setenv("CIFARLAB_CHECKPOINT_DIR", str(tmp_path / "user"))

    app = open_app(MODELS)

    assert any("No checkpoints yet" in message for message in texts(app.info))
    assert texts(app.error) == []


def test_upload_bad_metadata_rejected(checkpoint_folders, tmp_path):
    import torch

    _, user = checkpoint_folders
    source = write_tiny_checkpoint(tmp_path / "source.pt")
    payload = torch.load(source, weights_only=True)
    payload["history"] = "notalist"
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    app = open_app(MODELS)

    app.file_uploader(key="models_upload").set_value(("odd.pt", buffer.getvalue(), "application/octet-stream")).run()

    assert not app.exception
    assert any("history" in error for error in texts(app.error))
    assert sorted(path.name for path in user.iterdir()) == ["mlp-mine.pt"]


def test_train_subset_capped_at_split():
    app = open_app(TRAIN)
    app.checkbox(key="train_use_subset").check().run()

    subset = app.number_input(key="train_subset")
    assert subset.max == 45_000
    subset.set_value(40_000).run()

    # More validation images leave a smaller training split, so the subset shrinks with it.
    app.number_input(key="train_val_size").set_value(25_000).run()
    app.run()

    assert not app.exception
    assert app.number_input(key="train_subset").max == 25_000
    assert app.number_input(key="train_subset").value == 25_000
