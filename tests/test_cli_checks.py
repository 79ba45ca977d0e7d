"""Command-line checks that reject bad paths, devices and sizes before any work starts."""

from __future__ import annotations

import pytest
import torch

from cifarlab.checkpoints import save_checkpoint
from cifarlab.cli import main
from cifarlab.models import build_model


def train_args(tmp_path, *extra: str) -> list[str]:
    return ["train", "--arch", "lenet", "--epochs", "1", "--train-subset", "100", "--device", "cpu", *extra]


@pytest.mark.parametrize(
    ("make_out", "expected"),
    [
        (lambda folder: folder, "it is a folder"),
        (lambda folder: folder / "model.bin", "must end in .pt"),
        (lambda folder: folder / "file.txt" / "sub" / "model.pt", "is a file, so the folder cannot be created"),
    ],
)
def test_train_rejects_bad_out(tmp_path, capsys, make_out, expected):
    (tmp_path / "file.txt").write_text("x")
    before = sorted(tmp_path.rglob("*"))
    out = make_out(tmp_path)

    code = main(train_args(tmp_path, "--out", str(out)))

    error = capsys.readouterr().err
    assert code == 2
    assert expected in error
    assert str(out) in error
    assert sorted(tmp_path.rglob("*")) == before


@pytest.mark.parametrize(
    ("flag", "path"),
    [("--out", "/proc/cifarlab/model.pt"), ("--out", "/proc/model.pt"), ("--log", "/proc/train.log.jsonl")],
)
def test_train_rejects_unwritable_output(tmp_path, capsys, flag, path):
    """Root ignores a read-only mode, so the tests use /proc, where no file can be created."""
    extra = [flag, path] if flag == "--out" else ["--out", str(tmp_path / "m.pt"), flag, path]

    code = main(train_args(tmp_path, *extra))

    error = capsys.readouterr().err
    assert code == 2
    assert f"invalid {flag} {path}: files cannot be written in /proc" in error


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (["--epochs", "0"], "invalid --epochs 0: expected an integer >= 1"),
        (["--train-subset", "0"], "invalid --train-subset 0: expected an integer >= 1, or leave --train-subset out"),
        (["--arch-option", "activation=sigmoid"], "invalid --arch-option activation='sigmoid' for arch 'lenet'"),
    ],
)
def test_train_errors_name_flags(tmp_path, capsys, extra, expected):
    code = main(["train", "--arch", "lenet", *extra])

    error = capsys.readouterr().err
    assert code == 2
    assert expected in error


def test_train_rejects_folder_log(tmp_path, capsys):
    code = main(train_args(tmp_path, "--out", str(tmp_path / "m.pt"), "--log", str(tmp_path)))

    assert code == 2
    assert "invalid --log" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_train_rejected_setup_leaves_no_log(tmp_path, capsys):
    out = tmp_path / "run.pt"

    code = main(train_args(tmp_path, "--out", str(out), "--val-size", "50000"))

    assert code == 2
    assert "val_size" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_train_rejects_too_large_subset(tmp_path, capsys):
    args = train_args(tmp_path, "--out", str(tmp_path / "run.pt"))
    args[args.index("--train-subset") + 1] = "9999999"

    code = main(args)

    error = capsys.readouterr().err
    assert code == 2
    assert "--train-subset 9999999 is larger than the 45,000 images of the training split" in error
    assert "choose up to 45000" in error
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("command", ["attack", "evaluate"])
@pytest.mark.parametrize("device", ["banana", "cuda"])
def test_device_checked_before_loading(tiny_checkpoint, capsys, command, device):
    if device == "cuda" and torch.cuda.is_available():
        pytest.skip("CUDA is available here")

    code = main([command, "--checkpoint", tiny_checkpoint, "--device", device])

    error = capsys.readouterr().err
    assert code == 2
    assert f"invalid --device {device}:" in error
    assert "torch.save" not in error


@pytest.mark.parametrize(
    ("command", "flag"),
    [("attack", "--json"), ("evaluate", "--json"), ("evaluate", "--csv"), ("evaluate", "--confusion-csv")],
)
def test_output_in_missing_folder_rejected(tiny_checkpoint, tmp_path, capsys, command, flag):
    target = tmp_path / "missing" / "out.json"

    code = main([command, "--checkpoint", tiny_checkpoint, flag, str(target)])

    error = capsys.readouterr().err
    assert code == 2
    assert f"invalid {flag} {target}: the folder" in error
    assert not (tmp_path / "missing").exists()


def test_attack_progress_numbers_each_image(tiny_checkpoint, capsys):
    threads = torch.get_num_threads()
    try:
        code = main(
            ["attack", "--checkpoint", tiny_checkpoint, "--n", "5", "--popsize", "4", "--generations", "1", "--threads", "1"]
        )
    finally:
        torch.set_num_threads(threads)

    assert code == 0
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("[")]
    total = len(lines)
    assert total >= 1
    assert [line.split("]")[0] for line in lines] == [f"[{number}/{total}" for number in range(1, total + 1)]


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("history", "notalist", "history is a str, expected a list"),
        ("history", ["x"], "history entry 1 is a str"),
        ("best", [1], "best is a list, expected a dict"),
        ("training", "done", "training is a str, expected a dict"),
    ],
)
def test_invalid_meta_rejected_on_read_and_import(tmp_path, key, value, expected):
    from cifarlab.checkpoints import CheckpointError, import_checkpoint, read_meta

    path = tmp_path / "bad.pt"
    save_checkpoint(path, build_model("cnn", width=4), {})
    payload = torch.load(path, weights_only=True)
    payload[key] = value
    torch.save(payload, path)

    with pytest.raises(CheckpointError, match=expected):
        read_meta(path)
    with pytest.raises(CheckpointError, match=expected):
        import_checkpoint(path.read_bytes(), "bad.pt")


def test_curves_chart_skips_invalid_history():
    from ui.training import curves_chart

    chart = curves_chart(["notadict", {"epoch": 1, "train_loss": "x", "val_loss": 0.5}], None, metric="loss")

    assert chart.to_dict() is not None


def test_escape_markdown_keeps_text_literal():
    from ui.markdown import escape_markdown

    assert escape_markdown("32+2*4 = _x_") == r"32+2\*4 = \_x\_"
    assert escape_markdown("invalid train_subset=0") == "invalid train_subset=0"
    assert escape_markdown("costs $5 or ~3 `x`") == r"costs \$5 or \~3 \`x\`"
    assert escape_markdown("C:\\data") == r"C:\\data"


def test_attack_text_singular_generation():
    from types import SimpleNamespace

    from ui.attack import describe_result

    result = SimpleNamespace(
        label=0, changed=[(0, 0)], generations=1, queries=10, seconds=0.1, tracked_class=0,
        probs_before=[0.9, 0.1], probs_after=[0.2, 0.8], status="success", success=True, pred_before=0, pred_after=1, target=None,
    )
    _, text = describe_result(result, ["cat", "dog"])

    assert "after 1 generation," in text


@pytest.mark.parametrize("command", ["attack", "evaluate"])
def test_checkpoint_folder_named_as_folder(tmp_path, capsys, command):
    folder = tmp_path / "model.pt"
    folder.mkdir()

    code = main([command, "--checkpoint", str(folder)])

    error = capsys.readouterr().err
    assert code == 2
    assert f"invalid --checkpoint {folder}: it is a folder" in error


def test_unwritable_json_folder_rejected_before_attack(tiny_checkpoint, capsys, monkeypatch):
    """Root ignores a read-only mode, so the tests use /proc, where no file can be created."""
    import cifarlab.attack

    monkeypatch.setattr(cifarlab.attack, "attack_many", lambda *args, **kwargs: pytest.fail("attack ran"))

    code = main(["attack", "--checkpoint", tiny_checkpoint, "--n", "1", "--json", "/proc/cifarlab-report.json"])

    error = capsys.readouterr().err
    assert code == 2
    assert "invalid --json /proc/cifarlab-report.json: files cannot be written in /proc" in error
