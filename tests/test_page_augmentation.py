"""AppTest tests of the Augmentation page: previews, parameters drawn, errors and the recipe."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from cifarlab.augment import OPERATIONS, PRESETS, Cutout, Recipe

REPO_ROOT = Path(__file__).resolve().parent.parent
PAGE = str(REPO_ROOT / "pages" / "2_Augmentation.py")
# The first run in a fresh cache decodes the bundled archive, which takes tens of seconds.
TIMEOUT_S = 300


def run_page(session: dict | None = None) -> AppTest:
    app = AppTest.from_file(PAGE, default_timeout=TIMEOUT_S)
    for key, value in (session or {}).items():
        app.session_state[key] = value
    return app.run()


def texts(elements) -> list[str]:
    return [element.value for element in elements]


def assert_clean(app: AppTest) -> None:
    assert not app.exception, texts(app.exception)
    assert not app.error, texts(app.error)


def shown_params(app: AppTest) -> dict:
    return json.loads(app.json[0].value)


def png_bytes(size: tuple[int, int], mode: str = "RGBA") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size, (200, 30, 30, 255) if mode == "RGBA" else 128).save(buffer, format="PNG")
    return buffer.getvalue()


# --------------------------------------------------------------------------------------------
# Previews


def test_page_shows_original_and_augmented():
    app = run_page()
    assert_clean(app)
    assert len(app.image) == 2
    params = shown_params(app)
    assert params["pixels changed"] <= 256
    assert "Cutout(size=16" in app.code[0].value
    assert "manual_seed(0)" in app.code[0].value


def test_cutout_slider_changes_preview():
    app = run_page({"aug_seed": 3})
    app.slider(key="aug_param_cutout_size").set_value(5).run()
    assert_clean(app)
    params = shown_params(app)
    center_y, center_x = params["center (y, x)"]
    # A 5 px square covers [c - 2, c + 3) in each direction, clipped to the 32 px image.
    rows = min(center_y + 3, 32) - max(center_y - 2, 0)
    cols = min(center_x + 3, 32) - max(center_x - 2, 0)
    assert params["pixels changed"] == rows * cols
    assert "Cutout(size=5," in app.code[0].value


def test_same_seed_same_params():
    first = shown_params(run_page({"aug_seed": 11}))
    second = shown_params(run_page({"aug_seed": 11}))
    assert first == second


def test_resample_adds_one_to_seed():
    app = run_page({"aug_seed": 41})
    app.button(key="aug_resample").click().run()
    assert_clean(app)
    assert app.session_state["aug_seed"] == 42
    assert "manual_seed(42)" in app.code[0].value
    app.button(key="aug_resample").click().run()
    assert app.session_state["aug_seed"] == 43


@pytest.mark.parametrize("op_name", list(OPERATIONS))
def test_every_operation_renders(op_name):
    app = run_page({"aug_op": op_name})
    assert_clean(app)
    specs = OPERATIONS[op_name].param_specs()
    for spec in specs:
        assert f"aug_param_{op_name}_{spec.name}" in app.session_state
    assert len(app.image) == (3 if OPERATIONS[op_name].batch_only else 2)
    assert OPERATIONS[op_name].__name__ in app.code[0].value


@pytest.mark.parametrize("op_name", ["rotation", "cutmix", "randaugment"])
@pytest.mark.parametrize("view", ["Many draws", "All classes"])
def test_grid_views_render(op_name, view):
    app = run_page({"aug_op": op_name, "aug_view": view})
    assert_clean(app)
    assert app.image


def test_many_draws_count():
    app = run_page({"aug_op": "cutout", "aug_view": "Many draws"})
    app.slider(key="aug_draws").set_value(8).run()
    assert_clean(app)
    assert "8 draws of Cutout" in " ".join(texts(app.caption))


def test_all_classes_grid_captions():
    app = run_page({"aug_op": "horizontal_flip", "aug_view": "All classes"})
    assert_clean(app)
    assert len(app.image) == 20
    assert "Top: training image #0 of each class" in " ".join(texts(app.caption))


def test_mixup_shows_lambda_and_soft_label():
    app = run_page({"aug_op": "mixup", "aug_partner_class": "ship", "aug_seed": 5})
    assert_clean(app)
    lam = float(app.metric[0].value)
    assert 0.0 <= lam <= 1.0
    soft = [text for text in texts(app.caption) if text.startswith("Soft label:")]
    assert len(soft) == 1
    assert "ship" in soft[0]
    assert "airplane" in soft[0]
    assert len(app.get("vega_lite_chart")) == 1


def test_blend_soft_label_is_fixed_weight():
    app = run_page({"aug_op": "blend", "aug_partner_class": "frog"})
    app.slider(key="aug_param_blend_weight").set_value(0.75).run()
    assert_clean(app)
    assert app.metric[0].value == "0.750"
    assert "Soft label: airplane 0.75 + frog 0.25" in texts(app.caption)


def test_cutmix_lambda_matches_box():
    app = run_page({"aug_op": "cutmix", "aug_seed": 2})
    assert_clean(app)
    params = shown_params(app)
    assert float(app.metric[0].value) == pytest.approx(1 - params["box area px"] / 1024, abs=5e-4)


# --------------------------------------------------------------------------------------------
# Invalid combinations


def test_invalid_randaugment_magnitude_shows_error():
    app = run_page({"aug_op": "randaugment"})
    app.slider(key="aug_param_randaugment_num_magnitude_bins").set_value(5).run()
    assert not app.exception
    assert "magnitude 9 must be below num_magnitude_bins 5" in app.error[0].value
    assert app.button(key="aug_add_step").disabled


def test_invalid_crop_size_shows_error():
    app = run_page({"aug_op": "random_crop"})
    app.slider(key="aug_param_random_crop_padding").set_value(0).run()
    app.slider(key="aug_param_random_crop_size").set_value(40).run()
    assert not app.exception
    assert "crop size 40 is larger than the padded image" in app.error[0].value


def test_crop_size_change_rejected_by_recipe():
    app = run_page({"aug_op": "random_crop"})
    app.slider(key="aug_param_random_crop_size").set_value(24).run()
    assert_clean(app)
    app.button(key="aug_add_step").click().run()
    app.segmented_control(key="aug_view").set_value("Recipe").run()
    assert not app.exception
    assert "training needs 32x32 images" in app.error[0].value
    assert "recipe" not in app.session_state


# --------------------------------------------------------------------------------------------
# Image sources


def test_pick_by_index():
    app = run_page({"aug_source": "Index", "aug_index": 7})
    assert_clean(app)
    assert any("training image 7" in text for text in texts(app.caption))


def test_pick_by_class_and_rank():
    app = run_page({"aug_class": "ship", "aug_class_rank": 3})
    assert_clean(app)
    assert any(text.startswith("Image: ship · training image") and "(#3 of its class)" in text for text in texts(app.caption))


def test_pick_random_image():
    app = run_page({"aug_source": "Random"})
    assert_clean(app)
    first = app.session_state["aug_random_index"]
    assert any(f"training image {first}" in text for text in texts(app.caption))
    app.button(key="aug_random").click().run()
    assert_clean(app)
    assert 0 <= app.session_state["aug_random_index"] < 50000


def test_upload_image_is_converted():
    app = run_page({"aug_source": "Upload", "aug_upload_class": "cat"})
    assert not app.exception
    app.file_uploader(key="aug_upload").set_value(("photo.png", png_bytes((64, 48)), "image/png")).run()
    assert_clean(app)
    assert len(app.image) == 2
    captions = " ".join(texts(app.caption))
    assert "PNG 64x48 RGBA, converted to 32x32 RGB" in captions
    assert "photo.png (uploaded, labelled cat)" in captions


def test_upload_bad_file_shows_error():
    app = run_page({"aug_source": "Upload"})
    app.file_uploader(key="aug_upload").set_value(("notes.png", b"not an image at all", "image/png")).run()
    assert not app.exception
    assert app.error
    assert len(app.image) == 0


# --------------------------------------------------------------------------------------------
# Recipe


def test_add_operation_to_recipe():
    app = run_page({"aug_op": "cutout"})
    app.slider(key="aug_param_cutout_size").set_value(8).run()
    app.button(key="aug_add_step").click().run()
    assert_clean(app)
    recipe = Recipe.from_dict(app.session_state["recipe"])
    assert recipe.operations == (Cutout(size=8),)
    assert recipe.name == "custom"


def test_recipe_view_edits_steps():
    app = run_page({"aug_view": "Recipe", "recipe": PRESETS["cutout"].to_dict()})
    assert_clean(app)
    assert "1. Random crop" in " ".join(texts(app.markdown))
    app.button(key="aug_step_down_0").click().run()
    names = [step["op"] for step in app.session_state["recipe"]["operations"]]
    assert names == ["horizontal_flip", "random_crop", "cutout"]
    app.button(key="aug_step_remove_2").click().run()
    names = [step["op"] for step in app.session_state["recipe"]["operations"]]
    assert names == ["horizontal_flip", "random_crop"]
    assert app.session_state["recipe"]["name"] == "custom"
    assert_clean(app)


def test_recipe_edit_loads_step_into_widgets():
    recipe = Recipe((Cutout(size=6, p=0.5),), name="mine")
    app = run_page({"aug_view": "Recipe", "recipe": recipe.to_dict()})
    app.button(key="aug_step_edit_0").click().run()
    assert_clean(app)
    assert app.session_state["aug_op"] == "cutout"
    assert app.slider(key="aug_param_cutout_size").value == 6
    assert app.slider(key="aug_param_cutout_p").value == 0.5


def test_load_preset_and_clear():
    app = run_page({"aug_view": "Recipe"})
    assert_clean(app)
    app.selectbox(key="aug_preset").set_value("strong").run()
    app.button(key="aug_load_preset").click().run()
    assert_clean(app)
    assert app.session_state["recipe"] == PRESETS["strong"].to_dict()
    assert any("augment = BatchAugmenter(recipe)" in code.value for code in app.code)
    app.button(key="aug_clear_recipe").click().run()
    assert "recipe" not in app.session_state


def test_recipe_rename():
    app = run_page({"aug_view": "Recipe", "recipe": PRESETS["mixup"].to_dict()})
    app.text_input(key="aug_recipe_name").set_value("mixup-lesson").run()
    assert_clean(app)
    assert app.session_state["recipe"]["name"] == "mixup-lesson"
    assert app.session_state["recipe"]["operations"] == PRESETS["mixup"].to_dict()["operations"]


def test_recipe_preview_and_export():
    app = run_page({"aug_view": "Recipe", "recipe": PRESETS["mixup"].to_dict()})
    assert_clean(app)
    app.slider(key="aug_recipe_draws").set_value(4).run()
    assert len(app.image) == 1
    assert "4 draws of the whole recipe" in " ".join(texts(app.caption))
    assert app.get("download_button")


def test_import_recipe_json():
    recipe = Recipe((Cutout(size=12),), name="imported")
    app = run_page({"aug_view": "Recipe"})
    app.file_uploader(key="aug_recipe_file").set_value(("r.json", recipe.to_json().encode(), "application/json")).run()
    assert_clean(app)
    assert app.session_state["recipe"] == recipe.to_dict()
    assert "Imported recipe 'imported' with 1 steps." in texts(app.success)


def test_import_invalid_recipe_shows_error():
    app = run_page({"aug_view": "Recipe"})
    bad = json.dumps({"operations": [{"op": "shear"}]}).encode()
    app.file_uploader(key="aug_recipe_file").set_value(("bad.json", bad, "application/json")).run()
    assert not app.exception
    assert "unknown operation 'shear'" in app.error[0].value
    assert "recipe" not in app.session_state


def test_train_page_offers_the_recipe():
    app = run_page({"aug_op": "cutout"})
    app.button(key="aug_add_step").click().run()
    train = AppTest.from_file(str(REPO_ROOT / "pages" / "3_Train.py"), default_timeout=TIMEOUT_S)
    train.session_state["recipe"] = app.session_state["recipe"]
    train.run()
    assert not train.exception, texts(train.exception)
    choice = train.selectbox(key="train_recipe_choice")
    assert choice.value == "augmentation page"
    assert "the recipe built on the Augmentation page" in choice.options
