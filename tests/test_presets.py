"""Classic experiment presets and the expected time per epoch."""

from __future__ import annotations

import json

import pytest

from cifarlab import presets
from cifarlab.augment import PRESETS as RECIPES
from cifarlab.models import get_spec, list_archs
from cifarlab.train import TrainConfig

CLASSIC = {
    # preset prefix: (arch, batch size, epochs)
    "ann": ("mlp", 256, 20),
    "cnn": ("cnn", 256, 15),
    "lenet": ("lenet", 128, 15),
    "alexnet": ("alexnet", 128, 5),
    "vgg16": ("vgg16", 128, 5),
}


@pytest.mark.parametrize("key", sorted(presets.TRAIN_PRESETS))
def test_preset_builds_valid_config(key):
    config = presets.TRAIN_PRESETS[key].config()

    assert isinstance(config, TrainConfig)
    assert config.arch in list_archs()


@pytest.mark.parametrize("prefix", sorted(CLASSIC))
def test_classic_preset_pair(prefix):
    arch, batch_size, epochs = CLASSIC[prefix]
    raw = presets.TRAIN_PRESETS[f"{prefix}-raw"].config()
    augmented = presets.TRAIN_PRESETS[f"{prefix}-augmented"].config()

    for config in (raw, augmented):
        assert config.arch == arch
        assert config.batch_size == batch_size
        assert config.epochs == epochs
        assert config.optimizer == "adam"
    assert raw.recipe == RECIPES["none"].to_dict()
    assert augmented.recipe == RECIPES["standard"].to_dict()
    # The pair differs in augmentation alone.
    assert {**raw.to_dict(), "recipe": None} == {**augmented.to_dict(), "recipe": None}


def test_ann_preset_four_hidden_layers():
    config = presets.TRAIN_PRESETS["ann-raw"].config()
    options = get_spec("mlp").resolve_options(config.arch_options)

    assert len(options["widths"]) == 4


def test_preset_config_applies_changes():
    config = presets.TRAIN_PRESETS["cnn-raw"].config(epochs=2, train_subset=500)

    assert config.epochs == 2
    assert config.train_subset == 500
    assert config.batch_size == 256


def test_estimate_divides_images_by_speed():
    speeds = {
        "device": "cpu",
        "hardware": "2-core test CPU",
        "archs": {"mlp": {"images_per_s": 2000.0, "eval_images_per_s": 10000.0, "batch_size": 128}},
    }

    estimate = presets.estimate_epoch_seconds("mlp", 45_000, "cpu", n_val_images=5_000, speeds=speeds)

    assert estimate.train_seconds == pytest.approx(22.5)
    assert estimate.val_seconds == pytest.approx(0.5)
    assert estimate.seconds == pytest.approx(23.0)
    assert estimate.images_per_s == 2000.0
    assert "2,000 images/s at batch size 128" in estimate.note
    assert "2-core test CPU" in estimate.note
    assert "validation at 10,000 images/s" in estimate.note


def test_estimate_without_eval_speed_leaves_validation_out():
    speeds = {"device": "cpu", "archs": {"cnn": 500}}

    estimate = presets.estimate_epoch_seconds("cnn", 1_000, "cpu", n_val_images=100, speeds=speeds)

    assert estimate.seconds == pytest.approx(2.0)
    assert estimate.val_seconds is None
    assert "validation time not measured" in estimate.note


def test_estimate_without_measurement_says_so():
    speeds = {"device": "cpu", "archs": {"mlp": {"images_per_s": 2000.0}}}

    estimate = presets.estimate_epoch_seconds("vgg16", 45_000, "cpu", speeds=speeds)

    assert estimate.seconds is None
    assert estimate.images_per_s is None
    assert estimate.note.startswith("no measurement for vgg16 on cpu")


def test_estimate_other_device_not_measured():
    speeds = {"device": "cpu", "archs": {"mlp": {"images_per_s": 2000.0}}}

    estimate = presets.estimate_epoch_seconds("mlp", 45_000, "cuda:0", speeds=speeds)

    assert estimate.seconds is None
    assert "on cuda" in estimate.note


@pytest.mark.parametrize("value", [0, -5.0, None, True, "fast"])
def test_estimate_ignores_invalid_speed(value):
    speeds = {"device": "cpu", "archs": {"mlp": {"images_per_s": value}}}

    assert presets.estimate_epoch_seconds("mlp", 100, "cpu", speeds=speeds).seconds is None


def test_estimate_reads_speed_file(tmp_path, monkeypatch):
    speed_file = tmp_path / "train_speed.json"
    speed_file.write_text(json.dumps({"device": "cpu", "archs": {"lenet": {"images_per_s": 4000}}}))
    monkeypatch.setattr(presets, "TRAIN_SPEED_FILE", speed_file)

    estimate = presets.estimate_epoch_seconds("lenet", 8000, "cpu")

    assert estimate.seconds == pytest.approx(2.0)


@pytest.mark.parametrize("text", ["", "{broken", "[1, 2]"])
def test_unreadable_speed_file_no_estimate(tmp_path, monkeypatch, text):
    speed_file = tmp_path / "train_speed.json"
    speed_file.write_text(text)
    monkeypatch.setattr(presets, "TRAIN_SPEED_FILE", speed_file)

    estimate = presets.estimate_epoch_seconds("lenet", 8000, "cpu")

    assert estimate.seconds is None
    assert "no measurement" in estimate.note


def test_missing_speed_file_no_estimate(tmp_path, monkeypatch):
    monkeypatch.setattr(presets, "TRAIN_SPEED_FILE", tmp_path / "missing.json")

    assert presets.estimate_epoch_seconds("mlp", 100, "cpu").seconds is None
