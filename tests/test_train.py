"""Tests of the training engine and ``cifarlab train`` on small slices of the real CIFAR-10."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from cifarlab.augment import PRESETS
from cifarlab.checkpoints import load_checkpoint, read_meta
from cifarlab.data import Cifar10, load_cifar10
from cifarlab.train import (
    COMPLETED,
    EARLY_STOPPED,
    FAILED,
    STOPPED,
    TrainConfig,
    TrainError,
    lr_at_step,
    read_log,
    read_resume_config,
    resume_path_for,
    train,
)
from cifarlab.train.dataset import prepare_data, stratified_subset

REPO_ROOT = Path(__file__).resolve().parent.parent

# Small runs: one thread keeps the CPU results repeatable and leaves the other core free.
QUICK = dict(
    arch="lenet",
    epochs=1,
    batch_size=32,
    val_size=40,
    optimizer="adam",
    lr=2e-3,
    num_threads=1,
    evaluate_test=False,
)


def _per_class(labels: np.ndarray, count: int) -> np.ndarray:
    return np.sort(np.concatenate([np.flatnonzero(labels == label)[:count] for label in range(10)]))


@pytest.fixture(scope="module")
def cifar() -> Cifar10:
    return load_cifar10()


@pytest.fixture(scope="module")
def small(cifar: Cifar10) -> Cifar10:
    """320 training images and 100 test images of the real data set, balanced over classes."""
    train_ids = _per_class(cifar.train_labels, 32)
    test_ids = _per_class(cifar.test_labels, 10)
    return Cifar10(
        train_images=cifar.train_images[train_ids],
        train_labels=cifar.train_labels[train_ids],
        test_images=cifar.test_images[test_ids],
        test_labels=cifar.test_labels[test_ids],
        source="bundled-slice",
        description="32 training and 10 test images per class of the bundled archive",
    )


def _states_equal(first: torch.nn.Module, second: torch.nn.Module) -> bool:
    a, b = first.state_dict(), second.state_dict()
    return a.keys() == b.keys() and all(torch.equal(a[key], b[key]) for key in a)


def _accuracy(model: torch.nn.Module, images: np.ndarray, labels: np.ndarray) -> float:
    with torch.no_grad():
        logits = model(torch.from_numpy(images).float() / 255)
    return float((logits.argmax(dim=1).numpy() == labels).mean())


class StopAfter:
    """A stop request that becomes set once ``steps`` batch records have been seen."""

    def __init__(self, steps: int):
        self.steps = steps
        self.seen = 0
        self.event = threading.Event()

    def __call__(self, record: dict) -> None:
        if record["event"] == "batch":
            self.seen += 1
            if self.seen >= self.steps:
                self.event.set()

    def is_set(self) -> bool:
        return self.event.is_set()


# --- config ---------------------------------------------------------------------------------


def test_config_round_trips_through_json():
    config = TrainConfig(arch="mlp", arch_options={"widths": [64, 32, 32, 16]}, patience=3, train_subset=500)

    restored = TrainConfig.from_dict(json.loads(json.dumps(config.to_dict())))

    assert restored == config
    assert hash(restored) == hash(config)


def test_config_default_recipe_is_standard_preset():
    assert TrainConfig().recipe == PRESETS["standard"].to_dict()
    assert TrainConfig(recipe="mixup").recipe == PRESETS["mixup"].to_dict()


def test_config_copies_caller_dicts():
    options = {"widths": [64, 32, 32, 16]}
    config = TrainConfig(arch="mlp", arch_options=options)

    options["widths"].append(8)

    assert config.arch_options == {"widths": [64, 32, 32, 16]}


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("arch", "resnet9000", r"invalid arch='resnet9000': expected one of mlp, .*resnet"),
        ("arch_options", {"widths": "wide"}, r"invalid arch_options=.*widths"),
        ("optimizer", "rmsprop", r"invalid optimizer='rmsprop': expected one of sgd, adam, adamw"),
        ("lr", 0.0, r"invalid lr=0\.0: expected a number in \(0, inf\)"),
        ("lr", float("nan"), r"invalid lr=nan"),
        ("momentum", 1.0, r"invalid momentum=1\.0: expected a number in \[0, 1\)"),
        ("weight_decay", -1e-4, r"invalid weight_decay=-0\.0001: expected a number in \[0, inf\)"),
        ("batch_size", 0, r"invalid batch_size=0: expected an integer >= 1"),
        ("batch_size", True, r"invalid batch_size=True"),
        ("batch_size", 12.5, r"invalid batch_size=12\.5"),
        ("epochs", 0, r"invalid epochs=0: expected an integer >= 1"),
        ("schedule", "exponential", r"invalid schedule='exponential': expected one of onecycle, cosine, step, none"),
        ("warmup_epochs", 20.0, r"invalid warmup_epochs=20\.0: expected a number in \[0, 15\] or None"),
        ("step_gamma", 0.0, r"invalid step_gamma=0\.0: expected a number in \(0, 1\]"),
        ("label_smoothing", 1.0, r"invalid label_smoothing=1\.0: expected a number in \[0, 1\)"),
        ("recipe", "fancy", r"invalid recipe='fancy': expected a recipe dict or a preset name"),
        ("recipe", {"version": 1, "operations": [{"op": "warp"}]}, r"invalid recipe: .*warp"),
        ("data_source", "kaggle", r"invalid data_source='kaggle': expected one of bundled"),
        ("val_size", -1, r"invalid val_size=-1: expected an integer >= 0"),
        ("train_subset", 0, r"invalid train_subset=0: expected an integer >= 1 or None"),
        ("offline_copies", -1, r"invalid offline_copies=-1: expected an integer from 0 to 10"),
        ("offline_copies", 11, r"invalid offline_copies=11: expected an integer from 0 to 10"),
        ("offline_copies", 1.5, r"invalid offline_copies=1\.5: expected an integer from 0 to 10"),
        ("offline_copies", True, r"invalid offline_copies=True"),
        ("offline_copies", 2, r"invalid offline_copies=2: expected 0 when offline_recipe is None"),
        ("offline_recipe", "standard", r"invalid offline_recipe='standard': expected None when offline_copies=0"),
        ("monitor", "train_acc", r"invalid monitor='train_acc': expected one of val_acc, val_loss"),
        ("patience", -2, r"invalid patience=-2: expected an integer >= 0 or None"),
        ("device", "tpu", r"invalid device='tpu': expected auto, cpu, mps, cuda or cuda:N"),
        ("amp", "yes", r"invalid amp='yes': expected true or false"),
        ("eval_batch_size", 0, r"invalid eval_batch_size=0"),
        ("log_every_steps", 0, r"invalid log_every_steps=0"),
    ],
)
def test_config_rejects_invalid_value(field, value, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(**{field: value})


def test_config_rejects_nesterov_without_momentum():
    with pytest.raises(ValueError, match=r"invalid momentum=0\.0: expected a value > 0 with nesterov=True"):
        TrainConfig(optimizer="sgd", momentum=0.0, nesterov=True)


def test_config_rejects_patience_without_validation():
    with pytest.raises(ValueError, match=r"invalid patience=2: expected 0 or None when val_size=0"):
        TrainConfig(patience=2, val_size=0)


@pytest.mark.parametrize(
    ("recipe", "match"),
    [
        ("fancy", r"invalid offline_recipe='fancy': expected a recipe dict or a preset name: none, standard"),
        ("none", r"invalid offline_recipe='none': expected a recipe with at least one operation"),
        ({"version": 1, "operations": [{"op": "warp"}]}, r"invalid offline_recipe: .*warp"),
        (["blend"], r"invalid offline_recipe=\['blend'\]: expected a recipe dict"),
    ],
)
def test_config_rejects_invalid_offline_recipe(recipe, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(offline_copies=1, offline_recipe=recipe)


def test_config_offline_fields_round_trip():
    config = TrainConfig(offline_copies=2, offline_recipe="cutout")

    restored = TrainConfig.from_dict(json.loads(json.dumps(config.to_dict())))

    assert config.offline_recipe == PRESETS["cutout"].to_dict()
    assert restored == config
    assert restored.offline_copies == 2


def test_config_without_offline_keys_loads():
    # A config saved before offline augmentation existed has neither key.
    stored = TrainConfig(arch="lenet").to_dict()
    del stored["offline_copies"], stored["offline_recipe"]

    config = TrainConfig.from_dict(stored)

    assert config.offline_copies == 0
    assert config.offline_recipe is None


def test_config_from_dict_rejects_unknown_field():
    with pytest.raises(ValueError, match=r"unknown training config field\(s\) 'learning_rate'; valid fields: .*lr"):
        TrainConfig.from_dict({"learning_rate": 0.1})


# --- schedule and data ----------------------------------------------------------------------


def test_onecycle_rises_then_falls():
    config = TrainConfig(lr=0.1, epochs=10, schedule="onecycle", warmup_epochs=2.0)
    rates = [lr_at_step(config, step, steps_per_epoch=5) for step in range(50)]

    assert rates[0] == pytest.approx(0.01)
    assert rates[9] == pytest.approx(0.1)
    assert max(rates) == pytest.approx(0.1)
    assert rates[10] == pytest.approx(0.1)
    assert rates[-1] == pytest.approx(0.1 / 40)
    assert all(later < earlier for earlier, later in zip(rates[10:], rates[11:]))


def test_cosine_step_and_constant_schedules():
    cosine = TrainConfig(lr=0.1, epochs=4, schedule="cosine")
    step = TrainConfig(lr=0.1, epochs=4, schedule="step", step_size_epochs=2, step_gamma=0.5)
    constant = TrainConfig(lr=0.1, epochs=4, schedule="none", warmup_epochs=1.0)

    assert lr_at_step(cosine, 0, 10) == pytest.approx(0.1)
    assert lr_at_step(cosine, 20, 10) == pytest.approx(0.05)
    assert lr_at_step(step, 19, 10) == pytest.approx(0.1)
    assert lr_at_step(step, 20, 10) == pytest.approx(0.05)
    assert lr_at_step(constant, 4, 10) == pytest.approx(0.05)
    assert lr_at_step(constant, 39, 10) == pytest.approx(0.1)


def test_stratified_subset_balances_classes():
    labels = np.repeat(np.arange(10), [50, 50, 50, 50, 50, 50, 50, 50, 50, 5])
    ids = np.arange(1000, 1000 + len(labels))

    picked = stratified_subset(labels, ids, 95, seed=3)

    counts = np.bincount(labels[picked - 1000], minlength=10)
    assert len(picked) == 95
    assert len(np.unique(picked)) == 95
    assert counts.tolist() == [10] * 9 + [5]


FLIP_AND_BLEND = {
    "version": 1,
    "name": "flip and blend",
    "operations": [{"op": "horizontal_flip"}, {"op": "blend", "weight": 0.75}],
}


def _image_keys(images: torch.Tensor) -> set[bytes]:
    return {image.numpy().tobytes() for image in images}


def test_offline_copies_enlarge_training_split(small):
    plain = prepare_data(TrainConfig(**QUICK), small, torch.device("cpu"))
    config = TrainConfig(**QUICK, offline_copies=2, offline_recipe=FLIP_AND_BLEND)

    data = prepare_data(config, small, torch.device("cpu"))

    originals = len(plain.train_labels)
    assert originals == 280
    assert len(data.train_labels) == 3 * originals
    assert data.train_images.shape == (3 * originals, 3, 32, 32)
    assert data.train_images.dtype == torch.uint8
    assert torch.equal(data.train_images[:originals], plain.train_images)
    # A blend with weight 0.75 keeps the first image's class as the hard label.
    assert torch.equal(data.train_labels, plain.train_labels.repeat(3))
    assert not torch.equal(data.train_images[originals : 2 * originals], plain.train_images)
    assert torch.equal(data.val_images, plain.val_images)
    assert torch.equal(data.val_labels, plain.val_labels)
    assert torch.equal(data.test_images, plain.test_images)
    assert torch.equal(data.test_labels, plain.test_labels)
    assert data.split["offline_copies"] == 2
    assert data.split["train_originals"] == originals
    assert data.split["train_size"] == 3 * originals
    assert data.split["val_fingerprint"] == plain.split["val_fingerprint"]
    assert any("offline augmentation: 2 augmented copies of each of the 280 training images" in note for note in data.notes)


def test_offline_copies_come_from_training_split_only(small, monkeypatch):
    import cifarlab.augment

    calls = []
    original = cifarlab.augment.enlarge_training_set

    def spy(images, labels, *args, **kwargs):
        result = original(images, labels, *args, **kwargs)
        calls.append((np.array(images), result))
        return result

    monkeypatch.setattr(cifarlab.augment, "enlarge_training_set", spy)
    config = TrainConfig(**QUICK, offline_copies=1, offline_recipe="standard")

    data = prepare_data(config, small, torch.device("cpu"))

    assert len(calls) == 1
    sources, enlarged = calls[0]
    source_keys = _image_keys(torch.from_numpy(sources))
    assert len(source_keys) == 280
    assert source_keys.isdisjoint(_image_keys(data.val_images))
    assert source_keys.isdisjoint(_image_keys(data.test_images))
    assert set(enlarged.source_index.tolist()) == set(range(280))
    assert torch.equal(data.train_images, torch.from_numpy(enlarged.images))


def test_offline_copies_follow_seed(small):
    config = TrainConfig(**QUICK, offline_copies=1, offline_recipe="standard", seed=4)

    first = prepare_data(config, small, torch.device("cpu"))
    second = prepare_data(config, small, torch.device("cpu"))
    other_seed = prepare_data(config.replace(seed=5), small, torch.device("cpu"))

    # Every process of a distributed run builds its own copies, so they must agree.
    assert torch.equal(first.train_images, second.train_images)
    assert not torch.equal(first.train_images, other_seed.train_images)


def test_offline_copies_after_train_subset(small):
    config = TrainConfig(**QUICK, train_subset=50, offline_copies=3, offline_recipe="standard")

    data = prepare_data(config, small, torch.device("cpu"))

    assert len(data.train_labels) == 200
    assert data.split["train_originals"] == 50
    assert data.split["train_subset"] == 50


# --- training -------------------------------------------------------------------------------


def test_training_beats_chance(small):
    config = TrainConfig(**{**QUICK, "epochs": 15, "lr": 3e-3, "recipe": "none"})

    result = train(config, small)

    train_ids = _per_class(small.train_labels, 32)  # all ids; the split takes 40 for validation
    accuracy = _accuracy(result.model, small.train_images[train_ids], small.train_labels[train_ids])
    # Chance is 0.1; this run reaches about 0.7 train accuracy in its last epoch.
    assert result.status == COMPLETED
    assert result.history[-1]["train_acc"] > 0.35
    assert accuracy > 0.25


def test_records_have_documented_fields(small, tmp_path):
    records = []
    config = TrainConfig(**{**QUICK, "epochs": 2, "evaluate_test": True, "log_every_steps": 3})

    result = train(config, small, callback=records.append, log_path=tmp_path / "log.jsonl")

    events = [record["event"] for record in records]
    assert events[0] == "start"
    assert events[-1] == "end"
    assert events.count("epoch") == 2
    # 280 training images in batches of 32 give 9 steps; records at steps 3, 6 and 9.
    assert events.count("batch") == 6
    assert read_log(tmp_path / "log.jsonl") == records

    start = records[0]
    assert start["sizes"] == {"train": 280, "val": 40, "test": 100}
    assert start["steps_per_epoch"] == 9
    assert start["total_steps"] == 18
    assert start["device"] == "cpu"
    assert start["config"] == config.to_dict()

    batch = records[1]
    assert set(batch) >= {"epoch", "batch", "batches", "step", "loss", "acc", "lr", "images_per_s", "eta_s"}
    assert (batch["epoch"], batch["batch"], batch["step"]) == (1, 3, 3)
    assert 0 <= batch["acc"] <= 1
    assert batch["images_per_s"] > 0

    epoch = next(record for record in records if record["event"] == "epoch")
    expected = {"train_loss", "train_acc", "val_loss", "val_acc", "lr", "epoch_time_s", "images_per_s", "eta_s"}
    assert set(epoch) >= expected
    assert all(isinstance(epoch[key], float) for key in expected - {"eta_s"})

    end = records[-1]
    assert end["status"] == COMPLETED
    assert end["best_epoch"] in (1, 2)
    assert end["best_val_acc"] == result.best_val_acc
    assert end["test_acc"] == result.test_acc
    assert "never used for selection" in end["test_note"]


def test_same_seed_gives_same_weights(small):
    config = TrainConfig(**{**QUICK, "val_size": 20, "seed": 7})
    # Relabelling the test set must not change anything but test_acc: it is never used to select.
    shuffled_test = Cifar10(
        train_images=small.train_images,
        train_labels=small.train_labels,
        test_images=small.test_images,
        test_labels=np.roll(small.test_labels, 1),
        source=small.source,
        description=small.description,
    )

    first = train(config.replace(evaluate_test=True), small)
    second = train(config.replace(evaluate_test=True), shuffled_test)
    other_seed = train(config.replace(seed=8), small)

    assert _states_equal(first.model, second.model)
    assert first.history[0]["train_loss"] == second.history[0]["train_loss"]
    assert first.history[0]["val_loss"] == second.history[0]["val_loss"]
    assert first.test_acc != second.test_acc
    assert not _states_equal(first.model, other_seed.model)


def test_stop_is_honoured_after_one_batch(small, tmp_path):
    stop = StopAfter(1)
    checkpoint = tmp_path / "lenet.pt"

    result = train(TrainConfig(**{**QUICK, "epochs": 3}), small, callback=stop, stop=stop, checkpoint_path=checkpoint)

    assert result.status == STOPPED
    assert stop.seen == 1
    assert result.epochs_completed == 0
    assert result.best_epoch is None
    assert result.resume_path == resume_path_for(checkpoint)
    assert load_checkpoint(checkpoint).meta["training"]["status"] == STOPPED


def test_resume_mid_epoch_matches_uninterrupted_run(small, tmp_path):
    config = TrainConfig(**{**QUICK, "epochs": 2})
    checkpoint = tmp_path / "run.pt"
    log = tmp_path / "run.jsonl"

    straight = train(config, small)
    stop = StopAfter(4)  # inside the first of two 9-step epochs
    stopped = train(config, small, callback=stop, stop=stop, checkpoint_path=checkpoint, log_path=log)
    resumed = train(None, small, resume_from=checkpoint, log_path=log)

    assert stopped.status == STOPPED
    assert stopped.resume_path is not None
    assert resumed.status == COMPLETED
    assert resumed.epochs_completed == 2
    assert _states_equal(straight.model, resumed.model)
    for expected, actual in zip(straight.history, resumed.history):
        assert actual["train_loss"] == expected["train_loss"]
        assert actual["val_acc"] == expected["val_acc"]
    # A completed run keeps no resume state, and the checkpoint contains the best weights.
    assert not resume_path_for(checkpoint).exists()
    assert _states_equal(load_checkpoint(checkpoint).model, resumed.model)
    events = [record["event"] for record in read_log(log)]
    assert events.count("start") == 2
    assert events.count("epoch") == 2


def test_resume_rejects_changed_config(small, tmp_path):
    stop = StopAfter(1)
    checkpoint = tmp_path / "run.pt"
    config = TrainConfig(**{**QUICK, "epochs": 2})
    train(config, small, callback=stop, stop=stop, checkpoint_path=checkpoint)

    assert read_resume_config(checkpoint) == config
    with pytest.raises(ValueError, match=r"cannot resume with a different config \(lr: 0\.002 -> 0\.1\)"):
        train(config.replace(lr=0.1), small, resume_from=checkpoint)
    # Hardware fields may change.
    result = train(config.replace(eval_batch_size=64), small, resume_from=checkpoint)
    assert result.status == COMPLETED


def test_resume_without_state_names_the_file(tmp_path):
    with pytest.raises(ValueError, match=r"cannot resume from .*missing\.pt: resume state .*missing\.resume\.pt not found"):
        train(None, resume_from=tmp_path / "missing.pt")


def test_early_stopping_keeps_best_epoch(small, tmp_path):
    # No later epoch can beat the first by 10 nats, so training stops after 1 + patience epochs.
    config = TrainConfig(**{**QUICK, "epochs": 6, "monitor": "val_loss", "patience": 2, "min_delta": 10.0})
    checkpoint = tmp_path / "early.pt"
    records = []

    result = train(config, small, callback=records.append, checkpoint_path=checkpoint)

    assert result.status == EARLY_STOPPED
    assert result.epochs_completed == 3
    assert result.best_epoch == 1
    assert [record["epochs_without_improvement"] for record in result.history] == [0, 1, 2]
    assert records[-1]["status"] == EARLY_STOPPED
    loaded = load_checkpoint(checkpoint)
    assert loaded.meta["best"]["epoch"] == 1
    assert _states_equal(loaded.model, result.model)


def test_best_weights_reproduce_validation_metrics(small, tmp_path):
    config = TrainConfig(**{**QUICK, "epochs": 2, "evaluate_test": True})
    checkpoint = tmp_path / "best.pt"

    result = train(config, small, checkpoint_path=checkpoint)

    from cifarlab.data import split_train_val

    split = split_train_val(small.train_labels, val_size=config.val_size, seed=config.split_seed)
    model = load_checkpoint(checkpoint).model
    val_accuracy = _accuracy(model, small.train_images[split.val_idx], small.train_labels[split.val_idx])
    assert val_accuracy == pytest.approx(result.best_val_acc)
    meta = read_meta(checkpoint)
    assert meta["best"]["val_acc"] == result.best_val_acc
    assert meta["test"]["acc"] == result.test_acc
    assert meta["training"]["status"] == COMPLETED
    assert len(meta["history"]) == 2


def test_training_without_validation_keeps_last_epoch(small):
    result = train(TrainConfig(**{**QUICK, "epochs": 2, "val_size": 0}), small)

    assert result.best_epoch == 2
    assert result.best_val_acc is None
    assert result.history[-1]["val_loss"] is None


def test_train_subset_limits_training_images(small):
    records = []

    train(TrainConfig(**{**QUICK, "train_subset": 100}), small, callback=records.append)

    assert records[0]["sizes"]["train"] == 100
    assert records[0]["split"]["train_subset"] == 100


def test_offline_copies_train_and_are_recorded(small, tmp_path):
    records = []
    checkpoint = tmp_path / "offline.pt"
    config = TrainConfig(
        **{**QUICK, "arch": "mlp", "device": "cpu", "recipe": "none"},
        train_subset=200,
        offline_copies=1,
        offline_recipe="standard",
    )

    result = train(config, small, callback=records.append, checkpoint_path=checkpoint)

    assert result.status == COMPLETED
    start = records[0]
    assert start["sizes"]["train"] == 400
    # 400 images in batches of 32: 12 full batches and one of 16.
    assert start["steps_per_epoch"] == 13
    assert start["split"]["train_originals"] == 200
    assert any(note.startswith("offline augmentation: 1 augmented copy") for note in start["notes"])
    meta = read_meta(checkpoint)
    assert meta["config"]["offline_copies"] == 1
    assert meta["config"]["offline_recipe"] == PRESETS["standard"].to_dict()
    assert meta["data"]["split"]["offline_copies"] == 1
    assert meta["data"]["split"]["train_size"] == 400
    assert TrainConfig.from_dict(meta["config"]) == config


def test_mixup_and_label_smoothing_train(small):
    config = TrainConfig(**{**QUICK, "recipe": "mixup", "label_smoothing": 0.1, "optimizer": "sgd", "lr": 0.05, "schedule": "cosine"})

    result = train(config, small)

    assert math.isfinite(result.history[0]["train_loss"])


def test_diverging_loss_fails_with_record(small):
    records = []
    config = TrainConfig(**{**QUICK, "optimizer": "sgd", "lr": 1e12, "schedule": "none", "nesterov": False})

    with pytest.raises(TrainError, match=r"the training loss became nan at epoch 1, step \d+; lower the learning rate"):
        train(config, small, callback=records.append)

    assert records[-1]["event"] == "end"
    assert records[-1]["status"] == FAILED
    assert "TrainError" in records[-1]["error"]


def test_too_large_validation_split_is_rejected(small):
    with pytest.raises(ValueError, match=r"invalid val_size=320: it must be below the 320 training images"):
        train(TrainConfig(**{**QUICK, "val_size": 320}), small)


# --- command line ---------------------------------------------------------------------------


def _cli(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "cifarlab", "train", *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        **kwargs,
    )


CLI_QUICK = [
    "--arch", "lenet", "--train-subset", "200", "--val-size", "100", "--batch-size", "50",
    "--optimizer", "adam", "--lr", "0.002", "--no-test", "--num-threads", "1",
]


def _parse(*args: str):
    from cifarlab.cli import build_parser

    return build_parser().parse_args(["train", *args])


def test_cli_flags_build_config(tmp_path):
    from cifarlab.cli.train import build_config

    config_file = tmp_path / "config.json"
    config_file.write_text(json.dumps({"arch": "cnn", "epochs": 4, "lr": 0.01}))
    args = _parse(
        "--config", str(config_file), "--arch", "mlp", "--arch-option", "widths=[64,32,32,16]",
        "--arch-option", "dropout=0.1", "--recipe", "mixup", "--patience", "3", "--no-amp",
        "--monitor", "val_loss",
    )

    config, from_resume = build_config(args)

    assert from_resume is False
    assert config.arch == "mlp"
    assert config.arch_options == {"widths": [64, 32, 32, 16], "dropout": 0.1}
    assert config.epochs == 4
    assert config.lr == 0.01
    assert config.recipe == PRESETS["mixup"].to_dict()
    assert config.patience == 3
    assert config.amp is False
    assert config.monitor == "val_loss"


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (["--arch-option", "widths"], r"invalid --arch-option 'widths': expected KEY=VALUE"),
        (["--recipe", "sharpen"], r"invalid --recipe 'sharpen': give a preset"),
        (["--config", "missing.json"], r"config file not found: missing\.json"),
        (["--batch-size", "0"], r"invalid --batch-size 0: expected an integer >= 1"),
        (["--offline-copies", "2"], r"--offline-copies 2 needs --offline-recipe NAME\|PATH"),
        (["--offline-recipe", "standard"], r"--offline-recipe standard needs --offline-copies N"),
        (["--offline-copies", "11", "--offline-recipe", "standard"], r"invalid --offline-copies 11: expected an integer from 0 to 10"),
        (["--offline-copies", "1", "--offline-recipe", "blur"], r"invalid --offline-recipe 'blur': give a preset"),
        (["--offline-copies", "1", "--offline-recipe", "none"], r"invalid --offline-recipe none: expected a recipe with at least one operation"),
    ],
)
def test_cli_rejects_bad_flags(args, match):
    from cifarlab.cli import CliError
    from cifarlab.cli.train import build_config

    with pytest.raises(CliError, match=match):
        build_config(_parse(*args))


def test_cli_offline_flags_build_config(tmp_path):
    from cifarlab.cli.train import build_config

    recipe_file = tmp_path / "blend.json"
    recipe_file.write_text(json.dumps(FLIP_AND_BLEND))

    preset_config, _ = build_config(_parse("--offline-copies", "2", "--offline-recipe", "cutout"))
    file_config, _ = build_config(_parse("--offline-copies", "1", "--offline-recipe", str(recipe_file)))

    assert preset_config.offline_copies == 2
    assert preset_config.offline_recipe == PRESETS["cutout"].to_dict()
    assert file_config.offline_copies == 1
    assert file_config.offline_recipe["name"] == "flip and blend"
    assert [step["op"] for step in file_config.offline_recipe["operations"]] == ["horizontal_flip", "blend"]


class _Terminal:
    def __init__(self, tty: bool):
        self.tty = tty
        self.text = ""

    def isatty(self) -> bool:
        return self.tty

    def write(self, text: str) -> None:
        self.text += text

    def flush(self) -> None:
        pass


@pytest.mark.parametrize("tty", [True, False])
def test_cli_progress_bar_or_lines(small, tty):
    from cifarlab.cli.train import _Progress

    terminal = _Terminal(tty)
    progress = _Progress(terminal, enabled=True)

    train(TrainConfig(**{**QUICK, "epochs": 2}), small, callback=progress.on_record)

    assert "training lenet for 2 epochs on cpu: 280 training and 40 validation images" in terminal.text
    assert "epoch 2/2: train loss" in terminal.text
    if tty:
        assert "\repoch 1/2 [" in terminal.text
        assert "9/9 loss" in terminal.text
    else:
        assert "\r" not in terminal.text


@pytest.mark.slow
def test_cli_trains_stops_and_resumes(tmp_path):
    checkpoint = tmp_path / "cli.pt"
    log = tmp_path / "cli.jsonl"
    stop_file = tmp_path / "STOP"
    stop_file.touch()

    stopped = _cli(*CLI_QUICK, "--epochs", "2", "--out", str(checkpoint), "--log", str(log), "--stop-file", str(stop_file))
    stop_file.unlink()
    resumed = _cli("--resume", str(checkpoint), "--log", str(log))

    assert stopped.returncode == 0, stopped.stderr
    assert "stopped: 0/2 epochs" in stopped.stdout
    assert f"resume with: python -m cifarlab train --resume {checkpoint}" in stopped.stdout
    assert resumed.returncode == 0, resumed.stderr
    assert "completed: 2/2 epochs" in resumed.stdout
    # Without a terminal the progress is one line per epoch.
    assert "epoch 2/2: train loss" in resumed.stderr
    assert "\r" not in resumed.stderr
    records = read_log(log)
    assert [record["status"] for record in records if record["event"] == "end"] == [STOPPED, COMPLETED]
    assert load_checkpoint(checkpoint).meta["training"]["epochs_completed"] == 2


@pytest.mark.slow
def test_cli_reports_invalid_value_without_traceback(tmp_path):
    result = _cli("--arch", "lenet", "--lr", "-1", "--out", str(tmp_path / "x.pt"))

    assert result.returncode == 2
    assert "error: invalid --lr -1.0: expected a number in (0, inf)" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "x.pt").exists()


@pytest.mark.slow
def test_cli_offline_copies_without_recipe_fails_cleanly(tmp_path):
    result = _cli("--arch", "lenet", "--offline-copies", "2", "--out", str(tmp_path / "x.pt"))

    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: --offline-copies 2 needs --offline-recipe NAME|PATH, the recipe that makes the copies: "
        "a preset such as standard, or a recipe JSON file"
    ]
    assert not (tmp_path / "x.pt").exists()


@pytest.mark.slow
def test_cli_ctrl_c_stops_gracefully(tmp_path):
    checkpoint = tmp_path / "interrupted.pt"
    log = tmp_path / "interrupted.jsonl"
    process = subprocess.Popen(
        [sys.executable, "-m", "cifarlab", "train", *CLI_QUICK, "--epochs", "50", "--out", str(checkpoint), "--log", str(log)],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not any(r["event"] == "batch" for r in (read_log(log) if log.exists() else [])):
            time.sleep(0.2)
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()

    assert process.returncode == 0, stderr
    assert "stopping after this batch" in stderr
    assert "Traceback" not in stderr
    assert read_log(log)[-1]["status"] == STOPPED
    assert checkpoint.exists()
    assert resume_path_for(checkpoint).exists()
