"""Checkpoint files: round trips, metadata, rejected files, listing, import and deletion."""

from __future__ import annotations

import dataclasses
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from cifarlab import paths
from cifarlab.checkpoints import (
    FORMAT,
    FORMAT_VERSION,
    CheckpointError,
    checkpoint_info,
    delete_checkpoint,
    import_checkpoint,
    list_checkpoints,
    load_checkpoint,
    read_meta,
    save_checkpoint,
    save_half_precision,
    strip_module_prefix,
)
from cifarlab.cli import main as cli_main
from cifarlab.cli.checkpoints import format_size
from cifarlab.data import CLASSES
from cifarlab.models import IMAGENET_MEAN, build_model

ROUND_TRIP_OPTIONS = {
    "mlp": {"widths": [64, 32, 32, 16], "batchnorm": True},
    "lenet": {},
    "cnn": {"width": 8},
    "alexnet": {},
    "vgg16": {},
    "resnet": {"width": 8},
    # A pretrained transfer model rebuilt without reading ImageNet weights.
    "resnet50": {"pretrained": True, "input_size": 32},
}


def images(batch: int = 4, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(batch, 3, 32, 32, generator=generator)


def trained_like(arch: str = "cnn", **options) -> nn.Module:
    """Build a model and give its batch-norm layers non-default running statistics."""
    torch.manual_seed(0)
    model = build_model(arch, fetch_weights=False, **options)
    model.train()
    with torch.no_grad():
        model(images(batch=8, seed=1))
    return model.eval()


def predictions(model: nn.Module) -> torch.Tensor:
    with torch.no_grad():
        return model(images())


@pytest.fixture
def user_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "user"
    monkeypatch.setenv("CIFARLAB_CHECKPOINT_DIR", str(folder))
    return folder


@pytest.fixture
def shipped_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "shipped"
    folder.mkdir()
    monkeypatch.setattr(paths, "SHIPPED_CHECKPOINT_DIR", folder)
    return folder


def rewrite(path: Path, edit) -> None:
    """Load a checkpoint's raw dict, apply ``edit`` to it and save it back."""
    payload = torch.load(path, weights_only=True)
    edit(payload)
    torch.save(payload, path)


# ----------------------------------------------------------------------------------------------
# Round trips


@pytest.mark.parametrize("arch", list(ROUND_TRIP_OPTIONS))
def test_round_trip_same_outputs(arch, tmp_path, monkeypatch):
    # An empty cache proves that loading a pretrained model reads no ImageNet file.
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    model = trained_like(arch, **ROUND_TRIP_OPTIONS[arch])
    path = tmp_path / f"{arch}.pt"

    save_checkpoint(path, model, {"best": {"val_acc": 0.5}})
    loaded = load_checkpoint(path)

    assert loaded.path == path
    assert loaded.model.arch == arch
    assert loaded.model.options == model.options
    assert not loaded.model.training
    torch.testing.assert_close(predictions(loaded.model), predictions(model), rtol=0, atol=0)
    assert not (tmp_path / "torch").exists()


def test_round_trip_keeps_requires_grad(tmp_path):
    model = trained_like("resnet50", pretrained=True, input_size=32, freeze_backbone=True)

    save_checkpoint(tmp_path / "frozen.pt", model, {})
    loaded = load_checkpoint(tmp_path / "frozen.pt").model

    assert loaded.normalization()["mean"] == pytest.approx(IMAGENET_MEAN)
    assert not loaded.net.conv1.weight.requires_grad
    assert loaded.net.fc.weight.requires_grad


def test_half_precision_round_trip(tmp_path):
    model = trained_like("cnn", width=16)
    full = save_checkpoint(tmp_path / "full.pt", model, {})
    half = save_checkpoint(tmp_path / "half.pt", model, {}, half=True)

    loaded = load_checkpoint(half)
    stored = torch.load(half, weights_only=True)["state_dict"]

    assert read_meta(half)["precision"] == "float16"
    assert read_meta(full)["precision"] == "float32"
    assert stored["net.stage1.0.0.weight"].dtype == torch.float16
    assert stored["net.stage1.0.1.num_batches_tracked"].dtype == torch.int64
    assert stored["mean"].dtype == torch.float32
    assert all(p.dtype == torch.float32 for p in loaded.model.parameters())
    assert half.stat().st_size < 0.6 * full.stat().st_size
    expected = predictions(model)
    actual = predictions(loaded.model)
    torch.testing.assert_close(actual, expected, rtol=0, atol=2e-2 * expected.abs().max().item())


def test_half_keeps_float32_beyond_float16_range(tmp_path):
    model = trained_like("lenet")
    with torch.no_grad():
        model.net.head.bias[0] = 1e6

    path = save_checkpoint(tmp_path / "big.pt", model, {}, half=True)
    stored = torch.load(path, weights_only=True)["state_dict"]

    assert stored["net.head.bias"].dtype == torch.float32
    assert stored["net.head.weight"].dtype == torch.float16
    assert load_checkpoint(path).model.net.head.bias[0].item() == 1e6


def test_save_unwraps_data_parallel_wrapper(tmp_path):
    class Wrapper(nn.Module):
        def __init__(self, module):
            super().__init__()
            self.module = module

    model = trained_like("lenet")

    save_checkpoint(tmp_path / "wrapped.pt", Wrapper(model), {})
    stored = torch.load(tmp_path / "wrapped.pt", weights_only=True)["state_dict"]

    assert "net.conv1.0.weight" in stored
    torch.testing.assert_close(predictions(load_checkpoint(tmp_path / "wrapped.pt").model), predictions(model))


def test_save_rejects_plain_module(tmp_path):
    with pytest.raises(CheckpointError, match=r"cannot save a Linear: save_checkpoint takes a cifarlab.models.Classifier"):
        save_checkpoint(tmp_path / "x.pt", nn.Linear(2, 2), {})


# ----------------------------------------------------------------------------------------------
# Metadata


@dataclasses.dataclass(frozen=True)
class FakeConfig:
    arch: str = "cnn"
    lr: float = 0.1
    sizes: tuple[int, ...] = (1, 2)


def test_meta_is_self_describing(tmp_path):
    model = trained_like("cnn", width=8)
    meta = {
        "config": FakeConfig(),
        "history": [{"epoch": 1, "val_acc": np.float32(0.25), "train_loss": 2.0}],
        "best": {"epoch": 1, "val_acc": 0.25, "val_loss": 2.1},
        "data": {"source": "bundled", "split": {"seed": 0, "val_idx": np.arange(3)}},
        "training": {"time_s": 12.5, "device": "cpu", "path": Path("/tmp/run")},
    }

    path = save_checkpoint(tmp_path / "meta.pt", model, meta)
    stored = read_meta(path)

    assert stored["format"] == FORMAT
    assert stored["format_version"] == FORMAT_VERSION
    assert stored["arch"] == "cnn"
    assert stored["options"] == {"width": 8, "dropout": 0.2}
    assert stored["num_classes"] == 10
    assert stored["input_size"] == 32
    assert stored["class_names"] == list(CLASSES)
    assert stored["normalization"] == model.normalization()
    assert stored["num_params"] == sum(p.numel() for p in model.parameters())
    assert set(stored["versions"]) == {"cifarlab", "torch", "torchvision", "numpy", "python"}
    assert stored["versions"]["torch"] == str(torch.__version__)
    assert stored["created"].endswith("+00:00")
    assert stored["config"] == {"arch": "cnn", "lr": 0.1, "sizes": [1, 2]}
    assert type(stored["history"][0]["val_acc"]) is float
    assert stored["best"] == {"epoch": 1, "val_acc": 0.25, "val_loss": 2.1}
    torch.testing.assert_close(stored["data"]["split"]["val_idx"], torch.arange(3))
    assert stored["training"]["path"] == "/tmp/run"
    assert "state_dict" not in stored


def test_meta_rejects_reserved_key(tmp_path):
    with pytest.raises(CheckpointError, match=r"meta key 'arch' is reserved"):
        save_checkpoint(tmp_path / "x.pt", trained_like("lenet"), {"arch": "lenet"})


def test_meta_rejects_python_objects(tmp_path):
    with pytest.raises(CheckpointError, match=r"meta\[training.devices\] is a builtins.set; a checkpoint stores only plain values"):
        save_checkpoint(tmp_path / "x.pt", trained_like("lenet"), {"training": {"devices": {"cpu"}}})
    assert not (tmp_path / "x.pt").exists()


def test_meta_rejects_wrong_class_names(tmp_path):
    with pytest.raises(CheckpointError, match=r"class_names has 2 names but the model has 10 outputs"):
        save_checkpoint(tmp_path / "x.pt", trained_like("lenet"), {"class_names": ["cat", "dog"]})


# ----------------------------------------------------------------------------------------------
# Atomic writes


def test_failed_save_keeps_previous_file(tmp_path, monkeypatch):
    path = save_checkpoint(tmp_path / "model.pt", trained_like("lenet"), {"best": {"val_acc": 0.1}})
    before = path.read_bytes()

    def broken_save(obj, file, *args, **kwargs):
        file.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, trained_like("lenet"), {"best": {"val_acc": 0.9}})

    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"]


def test_save_creates_folder(tmp_path):
    path = save_checkpoint(tmp_path / "a" / "b" / "model.pt", trained_like("lenet"), {})

    assert path.is_file()


# ----------------------------------------------------------------------------------------------
# Loading files from elsewhere


def test_gpu_saved_file_loads_on_cpu(tmp_path, monkeypatch):
    model = trained_like("lenet")
    # torch.save records each storage's device through location_tag; "cuda:0" is what a file
    # written from a GPU carries.
    monkeypatch.setattr(torch.serialization, "location_tag", lambda storage: "cuda:0")
    path = save_checkpoint(tmp_path / "gpu.pt", model, {"training": {"device": "cuda"}})
    monkeypatch.undo()
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA"):
            torch.load(path, weights_only=True)

    loaded = load_checkpoint(path)

    assert read_meta(path)["training"]["device"] == "cuda"
    assert next(loaded.model.parameters()).device.type == "cpu"
    torch.testing.assert_close(predictions(loaded.model), predictions(model))


def test_module_prefix_stripped(tmp_path):
    model = trained_like("lenet")
    path = save_checkpoint(tmp_path / "ddp.pt", model, {})

    def add_prefix(payload):
        payload["state_dict"] = {f"module.{key}": value for key, value in payload["state_dict"].items()}

    rewrite(path, add_prefix)
    loaded = load_checkpoint(path)

    torch.testing.assert_close(predictions(loaded.model), predictions(model))


def test_strip_module_prefix_only_leading():
    state = {"module.net.a": 1, "net.module.b": 2, "module.module.c": 3}

    assert strip_module_prefix(state) == {"net.a": 1, "net.module.b": 2, "module.c": 3}


# ----------------------------------------------------------------------------------------------
# Rejected files


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match=r"checkpoint not found: .*nothing.pt"):
        load_checkpoint(tmp_path / "nothing.pt")


def test_architecture_mismatch_lists_keys(tmp_path):
    path = save_checkpoint(tmp_path / "lenet.pt", trained_like("lenet"), {})

    def change_state(payload):
        del payload["state_dict"]["net.head.bias"]
        payload["state_dict"]["net.extra.weight"] = torch.zeros(1)

    rewrite(path, change_state)

    with pytest.raises(CheckpointError, match=r"missing keys: net.head.bias; unexpected keys: net.extra.weight"):
        load_checkpoint(path)


def test_other_architecture_lists_keys(tmp_path):
    path = save_checkpoint(tmp_path / "lenet.pt", trained_like("lenet"), {})
    rewrite(path, lambda payload: payload.update(arch="cnn", options={"width": 8, "dropout": 0.2}))

    with pytest.raises(CheckpointError, match=r"do not match arch 'cnn'.*missing keys: net.stage1.0.0.weight, .* and 28 more \(36 in all\); unexpected keys: net.conv1.0.bias, "):
        load_checkpoint(path)


def test_shape_mismatch_named(tmp_path):
    path = save_checkpoint(tmp_path / "cnn.pt", trained_like("cnn", width=8), {})
    rewrite(path, lambda payload: payload["options"].update(width=16))

    with pytest.raises(CheckpointError, match=r"(?s)do not fit arch 'cnn'.*size mismatch for net.stage1.0.0.weight"):
        load_checkpoint(path)


def test_unknown_arch_in_file(tmp_path):
    path = save_checkpoint(tmp_path / "x.pt", trained_like("lenet"), {})
    rewrite(path, lambda payload: payload.update(arch="densenet"))

    with pytest.raises(CheckpointError, match=r"cannot rebuild the model of .*unknown arch 'densenet'"):
        load_checkpoint(path)


def test_newer_format_version(tmp_path):
    path = save_checkpoint(tmp_path / "x.pt", trained_like("lenet"), {})
    rewrite(path, lambda payload: payload.update(format_version=FORMAT_VERSION + 1))

    with pytest.raises(CheckpointError, match=rf"format version {FORMAT_VERSION + 1}, but this cifarlab reads up to version {FORMAT_VERSION}"):
        read_meta(path)


def test_text_file_rejected(tmp_path):
    path = tmp_path / "notes.pt"
    path.write_text("not a model")

    with pytest.raises(CheckpointError, match=r"not a cifarlab checkpoint: it is not a zip-format torch.save file"):
        load_checkpoint(path)


def test_truncated_checkpoint_rejected(tmp_path):
    path = save_checkpoint(tmp_path / "cut.pt", trained_like("cnn", width=8), {})
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])

    with pytest.raises(CheckpointError, match=r"cut.pt"):
        load_checkpoint(path)


def test_bare_state_dict_rejected(tmp_path):
    path = tmp_path / "weights.pt"
    torch.save(trained_like("lenet").state_dict(), path)

    with pytest.raises(CheckpointError, match=r"is a bare state dict \(\d+ tensors\) without the architecture"):
        load_checkpoint(path)


def test_dict_without_marker_rejected(tmp_path):
    path = tmp_path / "other.pt"
    torch.save({"epoch": 3, "model": {}}, path)

    with pytest.raises(CheckpointError, match=r"not a cifarlab checkpoint: it has no 'cifarlab-checkpoint' format marker"):
        read_meta(path)


def test_non_dict_rejected(tmp_path):
    path = tmp_path / "tensor.pt"
    torch.save(torch.zeros(3), path)

    with pytest.raises(CheckpointError, match=r"it contains a Tensor, not a checkpoint dict"):
        load_checkpoint(path)


def test_whole_pickled_model_rejected(tmp_path):
    path = tmp_path / "whole.pt"
    torch.save(trained_like("lenet"), path)

    with pytest.raises(CheckpointError, match=r"contains a pickled Python object \(cifarlab.models.classifier.Classifier\).*nothing in it was loaded"):
        load_checkpoint(path)


class CreatesMarker:
    """Unpickling this object calls open(marker, "w"), which creates the marker file."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_malicious_checkpoint_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"format": FORMAT, "format_version": 1, "payload": CreatesMarker(marker)}, path)

    with pytest.raises(CheckpointError, match=r"pickled Python object \(io.open\)"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match=r"pickled Python object"):
        read_meta(path)

    assert not marker.exists()


def test_malicious_raw_pickle_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    path.write_bytes(pickle.dumps(CreatesMarker(marker)))

    with pytest.raises(CheckpointError, match=r"not a zip-format torch.save file"):
        load_checkpoint(path)

    assert not marker.exists()


def test_malicious_pickle_inside_zip_never_runs(tmp_path):
    # A zip built by hand around a pickle whose first object is the payload.
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("evil/data.pkl", pickle.dumps(CreatesMarker(marker), protocol=2))
        archive.writestr("evil/version", "3\n")

    with pytest.raises(CheckpointError, match=r"pickled Python object \(io.open\)"):
        load_checkpoint(path)

    assert not marker.exists()


# ----------------------------------------------------------------------------------------------
# Listing, import and deletion


def write_report(checkpoint: Path, text: str) -> None:
    checkpoint.with_name(checkpoint.name[: -len(".pt")] + ".report.json").write_text(text)


def test_list_checkpoints(user_dir, shipped_dir):
    save_checkpoint(shipped_dir / "reference.pt", trained_like("lenet"), {"best": {"val_acc": 0.6}})
    mine = save_checkpoint(
        user_dir / "mine.pt", trained_like("cnn", width=8), {"best": {"val_acc": 0.7}}, half=True
    )
    write_report(mine, '{"accuracy": 0.68}')
    (user_dir / "mine.resume.pt").write_bytes(b"resume state")
    (user_dir / "notes.txt").write_text("not a checkpoint")
    (user_dir / "broken.pt").write_text("garbage")

    infos = list_checkpoints()

    assert [(info.name, info.location) for info in infos] == [
        ("reference", "shipped"),
        ("broken", "user"),
        ("mine", "user"),
    ]
    reference, broken, mine_info = infos
    assert reference.protected
    assert reference.arch == "lenet"
    assert reference.val_acc == 0.6
    assert reference.test_acc is None
    assert broken.error is not None and "not a zip-format" in broken.error
    assert broken.arch is None
    assert not mine_info.protected
    assert mine_info.arch == "cnn"
    assert mine_info.precision == "float16"
    assert mine_info.val_acc == 0.7
    assert mine_info.test_acc == 0.68
    assert mine_info.params == sum(p.numel() for p in build_model("cnn", width=8).parameters())
    assert mine_info.size_bytes == mine.stat().st_size
    assert mine_info.as_dict()["location"] == "user"


def test_list_reads_test_metrics_from_meta(user_dir, shipped_dir):
    path = save_checkpoint(user_dir / "a.pt", trained_like("lenet"), {"test": {"acc": 0.55}})
    write_report(path, "{not json")

    info = checkpoint_info(path)

    assert info.test_acc == 0.55


def test_list_without_folders(tmp_path, monkeypatch):
    monkeypatch.setattr(paths, "SHIPPED_CHECKPOINT_DIR", tmp_path / "missing-shipped")
    monkeypatch.setenv("CIFARLAB_CHECKPOINT_DIR", str(tmp_path / "missing-user"))

    assert list_checkpoints() == []


def test_delete_user_checkpoint(user_dir, shipped_dir):
    path = save_checkpoint(user_dir / "old.pt", trained_like("lenet"), {})
    write_report(path, "{}")
    (user_dir / "old.resume.pt").write_bytes(b"state")
    keep = save_checkpoint(user_dir / "keep.pt", trained_like("lenet"), {})

    delete_checkpoint(path)

    assert sorted(p.name for p in user_dir.iterdir()) == [keep.name]


def test_delete_shipped_refused(user_dir, shipped_dir):
    path = save_checkpoint(shipped_dir / "reference.pt", trained_like("lenet"), {})

    with pytest.raises(CheckpointError, match=r"reference.pt ships with cifarlab and cannot be deleted"):
        delete_checkpoint(path)
    assert path.is_file()


def test_delete_outside_user_folder_refused(user_dir, shipped_dir, tmp_path):
    path = save_checkpoint(tmp_path / "elsewhere.pt", trained_like("lenet"), {})

    with pytest.raises(CheckpointError, match=r"cannot delete .*elsewhere.pt: it is not in the user checkpoint folder"):
        delete_checkpoint(path)
    assert path.is_file()


def test_delete_missing_refused(user_dir, shipped_dir):
    with pytest.raises(CheckpointError, match=r"checkpoint not found"):
        delete_checkpoint(user_dir / "gone.pt")


def test_import_stores_valid_upload(user_dir, shipped_dir, tmp_path):
    model = trained_like("lenet")
    source = save_checkpoint(tmp_path / "upload.pt", model, {"best": {"val_acc": 0.4}})
    data = source.read_bytes()

    first = import_checkpoint(data, "my model.pt")
    second = import_checkpoint(data, "my model.pt")

    assert first.path == user_dir / "my_model.pt"
    assert second.path == user_dir / "my_model-2.pt"
    assert first.arch == "lenet"
    assert first.val_acc == 0.4
    assert not first.protected
    assert sorted(p.name for p in user_dir.iterdir()) == ["my_model-2.pt", "my_model.pt"]
    torch.testing.assert_close(predictions(load_checkpoint(first.path).model), predictions(model))


def test_import_keeps_upload_inside_user_folder(user_dir, shipped_dir, tmp_path):
    data = save_checkpoint(tmp_path / "upload.pt", trained_like("lenet"), {}).read_bytes()

    info = import_checkpoint(data, "../../etc/escape.pt")

    assert info.path == user_dir / "escape.pt"


def test_import_rejects_invalid_upload(user_dir, shipped_dir, tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    torch.save({"format": FORMAT, "payload": CreatesMarker(marker)}, evil)

    with pytest.raises(CheckpointError, match=r"'evil.pt' was rejected: it contains a pickled Python object"):
        import_checkpoint(evil.read_bytes(), "evil.pt")
    with pytest.raises(CheckpointError, match=r"'junk.pt' is not a cifarlab checkpoint"):
        import_checkpoint(b"junk", "junk.pt")

    assert not marker.exists()
    assert list(user_dir.iterdir()) == []


def test_import_rejects_wrong_extension(user_dir, shipped_dir):
    with pytest.raises(CheckpointError, match=r"invalid file name 'model.pth': a checkpoint file name ends in .pt"):
        import_checkpoint(b"", "model.pth")
    with pytest.raises(CheckpointError, match=r"invalid file name 'run.resume.pt'"):
        import_checkpoint(b"", "run.resume.pt")


# ----------------------------------------------------------------------------------------------
# Command line


def test_cli_list_prints_table(user_dir, shipped_dir, capsys):
    save_checkpoint(shipped_dir / "reference.pt", trained_like("lenet"), {"best": {"val_acc": 0.612}})
    mine = save_checkpoint(user_dir / "mine.pt", trained_like("cnn", width=8), {})
    write_report(mine, '{"accuracy": 0.5}')
    (user_dir / "broken.pt").write_text("garbage")

    assert cli_main(["checkpoints", "list"]) == 0

    lines = capsys.readouterr().out.splitlines()
    header = lines[0].split()
    assert header[:4] == ["name", "arch", "params", "size"]
    rows = {line.split()[0]: line for line in lines[1:] if line.strip()}
    assert "lenet" in rows["reference"]
    assert "61.2%" in rows["reference"]
    assert "shipped" in rows["reference"]
    assert "50.0%" in rows["mine"]
    assert "user" in rows["mine"]
    assert "unreadable" in rows["broken"]


def test_cli_list_empty(user_dir, shipped_dir, capsys):
    assert cli_main(["checkpoints", "list"]) == 0

    assert "no checkpoints" in capsys.readouterr().out


def test_cli_results_prints_markdown_table(tmp_path, capsys):
    folder = tmp_path / "shipped"
    folder.mkdir()
    meta = {
        "best": {"val_acc": 0.612},
        "config": {"recipe": {"name": "standard", "operations": []}},
        "training": {"epochs_completed": 3, "time_s": 90.0, "device": "cpu"},
    }
    path = save_checkpoint(folder / "reference.pt", trained_like("lenet"), meta)
    write_report(path, '{"accuracy": 0.5, "metrics": {"macro": {"f1": 0.4567}, "roc_auc_macro": 0.8}}')
    save_checkpoint(folder / "unreported.pt", trained_like("lenet"), {})

    assert cli_main(["checkpoints", "results", "--dir", str(folder)]) == 0

    out = capsys.readouterr().out
    rows = {line.split("|")[1].strip(): line for line in out.splitlines() if line.startswith("| ")}
    assert rows["reference.pt"].split("|")[2:] == [
        " lenet ", " standard ", " 50.0% ", " 0.457 ", " 0.800 ", " 61.2% ", " 62K ",
        f" {format_size(path.stat().st_size)} ", " 3 ", " 1.5 min ", " cpu ", "",
    ]
    assert "| unreported.pt | lenet | - | - | - | - |" in rows["unreported.pt"]
    assert "unreported.pt: no test report beside it" in out


def test_cli_results_rejects_missing_folder(tmp_path, capsys):
    assert cli_main(["checkpoints", "results", "--dir", str(tmp_path / "nowhere")]) == 2

    assert "not a folder" in capsys.readouterr().err


def test_cli_show_prints_meta(user_dir, shipped_dir, capsys, tmp_path):
    path = save_checkpoint(tmp_path / "a.pt", trained_like("lenet"), {"best": {"val_acc": 0.3, "epoch": 2}})

    assert cli_main(["checkpoints", "show", str(path)]) == 0

    out = capsys.readouterr().out
    assert "arch: lenet" in out
    assert "val_acc" in out


def test_cli_show_reports_error(capsys, tmp_path):
    path = tmp_path / "junk.pt"
    path.write_text("junk")

    assert cli_main(["checkpoints", "show", str(path)]) == 2

    assert "not a cifarlab checkpoint" in capsys.readouterr().err



def test_list_user_folder_same_as_shipped(shipped_dir, monkeypatch):
    monkeypatch.setenv("CIFARLAB_CHECKPOINT_DIR", str(shipped_dir))
    save_checkpoint(shipped_dir / "reference.pt", trained_like("lenet"), {})

    infos = list_checkpoints()

    assert [(info.name, info.protected) for info in infos] == [("reference", True)]


def test_half_copy_keeps_accuracy(tmp_path):
    source = save_checkpoint(tmp_path / "full.pt", trained_like("lenet"), {"best": {"val_acc": 0.5}})
    images = torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8)
    with torch.inference_mode():
        labels = load_checkpoint(source).model(images.float() / 255).argmax(1)

    check = save_half_precision(source, tmp_path / "out" / "half.pt", images, labels)

    assert check.accuracy_float32 == 1.0
    assert check.accuracy_float16 == check.accuracy_float32
    assert check.images == 64
    assert check.size_float16 < check.size_float32
    loaded = load_checkpoint(tmp_path / "out" / "half.pt")
    assert loaded.meta["precision"] == "float16"
    assert loaded.meta["best"] == {"val_acc": 0.5}
    assert [path.name for path in (tmp_path / "out").iterdir()] == ["half.pt"]


def test_half_copy_not_written_when_accuracy_changes(tmp_path, monkeypatch):
    from cifarlab import checkpoints as checkpoints_module

    source = save_checkpoint(tmp_path / "full.pt", trained_like("lenet"), {})
    images = torch.zeros((4, 3, 32, 32), dtype=torch.uint8)
    labels = torch.tensor([0, 0, 0, 0])
    outputs = iter([torch.eye(10)[[0, 0, 0, 0]], torch.eye(10)[[0, 0, 1, 1]]])
    monkeypatch.setattr(checkpoints_module, "_logits", lambda model, images, batch_size: next(outputs))

    check = save_half_precision(source, tmp_path / "half.pt", images, labels)

    assert (check.accuracy_float32, check.accuracy_float16) == (1.0, 0.5)
    assert check.same_predictions == 2
    assert sorted(path.name for path in tmp_path.iterdir()) == ["full.pt"]


def test_half_copy_rejects_same_file(tmp_path):
    source = save_checkpoint(tmp_path / "full.pt", trained_like("lenet"), {})

    with pytest.raises(CheckpointError, match="write the float16 copy to another file"):
        save_half_precision(source, source, torch.zeros((1, 3, 32, 32), dtype=torch.uint8), torch.tensor([0]))
