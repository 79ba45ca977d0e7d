"""ImageNet weights for transfer models: read from torchvision's cache, never downloaded.

Each test points TORCH_HOME at an empty temporary folder and fabricates the cached file there:
a real torchvision state dict with random values under the file name of the weights enum.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torchvision import models as tv_models
from torchvision.models import ResNet50_Weights

from cifarlab.models import IMAGENET_MEAN, WeightsError, build_model, transfer, weights_path

WEIGHTS = ResNet50_Weights.IMAGENET1K_V2
FILENAME = "resnet50-11ad3fa6.pth"
HASH_PREFIX = "11ad3fa6"


@pytest.fixture
def torch_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return tmp_path / "torch"


@pytest.fixture
def fabricated_weights(torch_home: Path) -> tuple[Path, dict[str, torch.Tensor]]:
    """Save a randomly initialized torchvision ResNet-50 under the cached file name."""
    torch.manual_seed(0)
    state_dict = tv_models.resnet50(weights=None).state_dict()
    path = torch_home / "hub" / "checkpoints" / FILENAME
    path.parent.mkdir(parents=True)
    torch.save(state_dict, path)
    return path, state_dict


@pytest.fixture
def matching_hash(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the fabricated file's SHA-256 start with the prefix in its name, as a real one does."""
    monkeypatch.setattr(transfer, "_file_sha256", lambda path: HASH_PREFIX + "0" * 56)


def test_weights_path_honours_torch_home(torch_home):
    assert weights_path(WEIGHTS) == torch_home / "hub" / "checkpoints" / FILENAME


def test_missing_weights_name_file_and_folder(torch_home):
    folder = torch_home / "hub" / "checkpoints"

    with pytest.raises(WeightsError) as raised:
        build_model("resnet50", input_size=32)

    message = str(raised.value)
    assert f"expected file {FILENAME} in folder {folder}" in message
    assert "resnet50(weights=ResNet50_Weights.IMAGENET1K_V2)" in message
    assert WEIGHTS.url in message
    assert "pretrained=False" in message
    assert not (folder / FILENAME).exists()


def test_missing_weights_is_a_value_error(torch_home):
    with pytest.raises(ValueError, match=r"not in torchvision's cache"):
        build_model("vgg19", input_size=32)


def test_cached_weights_load_into_backbone(fabricated_weights, matching_hash):
    _, state_dict = fabricated_weights

    model = build_model("resnet50", input_size=32)

    torch.testing.assert_close(model.net.conv1.weight, state_dict["conv1.weight"])
    torch.testing.assert_close(model.net.layer4[2].bn3.running_var, state_dict["layer4.2.bn3.running_var"])
    assert model.net.fc.out_features == 10
    assert model.normalization()["mean"] == pytest.approx(IMAGENET_MEAN)
    assert not model.net.conv1.weight.requires_grad
    assert model.net.fc.weight.requires_grad


def test_wrong_hash_reported_as_corrupt(fabricated_weights):
    path, _ = fabricated_weights

    with pytest.raises(WeightsError, match=rf"corrupt \(its SHA-256 starts with [0-9a-f]{{8}}, its name says {HASH_PREFIX}"):
        build_model("resnet50", input_size=32)
    with pytest.raises(WeightsError, match=str(path)):
        build_model("resnet50", input_size=32)


def test_truncated_file_reported_as_corrupt(fabricated_weights):
    path, _ = fabricated_weights
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])

    with pytest.raises(WeightsError, match=rf"corrupt .*{path}"):
        build_model("resnet50", input_size=32)


def test_truncated_file_fails_load_even_with_matching_hash(fabricated_weights, matching_hash):
    path, _ = fabricated_weights
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])

    with pytest.raises(WeightsError, match=rf"corrupt \(torch.load failed.*{path}"):
        build_model("resnet50", input_size=32)


def test_file_without_state_dict_reported_as_corrupt(torch_home, matching_hash):
    path = torch_home / "hub" / "checkpoints" / FILENAME
    path.parent.mkdir(parents=True)
    torch.save([torch.zeros(3)], path)

    with pytest.raises(WeightsError, match=r"corrupt \(it contains a list, not a state dict\)"):
        build_model("resnet50", input_size=32)


def test_pretrained_false_needs_no_cache(torch_home):
    model = build_model("resnet50", pretrained=False, input_size=32)

    assert model.options["pretrained"] is False
    assert not (torch_home / "hub").exists()


def test_fetch_weights_false_reads_no_file(torch_home):
    model = build_model("resnet152", pretrained=True, fetch_weights=False, input_size=32)

    assert model.normalization()["mean"] == pytest.approx(IMAGENET_MEAN)
    assert not (torch_home / "hub").exists()


def test_state_dict_of_other_model_reported_as_corrupt(torch_home, matching_hash):
    path = torch_home / "hub" / "checkpoints" / FILENAME
    path.parent.mkdir(parents=True)
    torch.save(tv_models.resnet18(weights=None).state_dict(), path)

    with pytest.raises(WeightsError, match=r"(?s)corrupt \(its tensors do not fit resnet50: .*Missing key"):
        build_model("resnet50", input_size=32)


# ----------------------------------------------------------------------------------------------
# cifarlab weights list|download


def test_cli_list_shows_missing_file(torch_home, capsys):
    from cifarlab.cli import main as cli_main

    assert cli_main(["weights", "list"]) == 0

    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()}
    assert set(lines) == {"vgg19", "resnet50", "resnet152"}
    assert str(torch_home / "hub" / "checkpoints" / FILENAME) in lines["resnet50"]
    assert lines["resnet50"].endswith("[missing]")


def test_cli_list_verifies_cached_file(fabricated_weights, matching_hash, capsys):
    from cifarlab.cli import main as cli_main

    assert cli_main(["weights", "list", "--verify"]) == 0

    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()}
    assert lines["resnet50"].endswith("[cached, verified]")
    assert lines["vgg19"].endswith("[missing]")


def test_cli_list_reports_corrupt_file(fabricated_weights, capsys):
    from cifarlab.cli import main as cli_main

    assert cli_main(["weights", "list", "--verify"]) == 0

    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()}
    assert "[corrupt: " in lines["resnet50"]
    assert "SHA-256" in lines["resnet50"]


def test_cli_download_rejects_unknown_arch(capsys):
    from cifarlab.cli import main as cli_main

    assert cli_main(["weights", "download", "lenet"]) == 2

    assert "no ImageNet weights for lenet: choose from vgg19, resnet50, resnet152" in capsys.readouterr().err


def test_cli_download_offline_message(torch_home, monkeypatch, capsys):
    import urllib.error

    from cifarlab.cli import main as cli_main
    from cifarlab.cli import weights as weights_cli

    def offline(arch):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(weights_cli, "download_weights", offline)

    assert cli_main(["weights", "download", "resnet50"]) == 2

    err = capsys.readouterr().err
    assert "downloading the resnet50 weights failed" in err
    assert "Temporary failure in name resolution" in err
    assert str(torch_home / "hub" / "checkpoints") in err
