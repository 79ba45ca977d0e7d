"""Tests of `cifarlab data info` and `cifarlab data download`."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from cifarlab import data
from cifarlab.cli import main
from cifarlab.data import CLASSES

REPO_ROOT = Path(__file__).resolve().parent.parent


def run_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "cifarlab", *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=600,
    )


def write_tiny_folder(root: Path) -> Path:
    for split in ("train", "test"):
        for label, name in enumerate(CLASSES):
            (root / split / name).mkdir(parents=True)
            for index in range(3 if split == "train" else 1):
                Image.new("RGB", (32, 32), (25 * label, index, 0)).save(
                    root / split / name / f"{index}.png"
                )
    return root


def test_info_bundled_table(capsys):
    assert main(["data", "info"]) == 0
    output = capsys.readouterr().out
    assert "bundled    available" in output
    assert "canonical  missing" in output
    lines = {line.split()[0]: line.split()[1:] for line in output.splitlines() if line.strip()}
    for name in CLASSES:
        assert lines[name] == ["4,500", "500", "1,000"]
    assert lines["total"] == ["45,000", "5,000", "10,000"]
    assert "seed 0" in output


def info_json(capsys, *args: str) -> dict:
    assert main(["data", "info", "--json", *args]) == 0
    return json.loads(capsys.readouterr().out)


def test_info_json_counts(capsys):
    report = info_json(capsys, "--val-size", "1000", "--seed", "5")
    assert report["counts"]["validation"] == [100] * 10
    assert report["counts"]["train"] == [4900] * 10
    assert report["counts"]["test"] == [1000] * 10
    assert report["split"]["seed"] == 5
    assert report["split"]["val_size"] == 1000
    assert report["classes"] == list(CLASSES)


def test_info_folder_source_and_dirs(tmp_path, capsys):
    folder = write_tiny_folder(tmp_path / "images")
    cache = tmp_path / "my-cache"
    report = info_json(
        capsys, "--source", "folder", "--data-path", str(folder), "--val-size", "10",
        "--cache-dir", str(cache), "--data-dir", str(tmp_path / "my-data"),
    )
    assert report["loaded"]["source"] == "folder"
    assert report["counts"]["validation"] == [1] * 10
    assert report["counts"]["test"] == [1] * 10
    assert report["cache_dir"] == str(cache)
    assert any(cache.iterdir())
    assert str(tmp_path / "my-data") in report["sources"][1]["detail"]


def test_cache_dir_from_environment(tmp_path, capsys, monkeypatch):
    folder = write_tiny_folder(tmp_path / "images")
    cache = tmp_path / "env-cache"
    monkeypatch.setenv("CIFARLAB_CACHE_DIR", str(cache))
    report = info_json(capsys, "--source", "folder", "--data-path", str(folder), "--val-size", "10")
    assert report["cache_dir"] == str(cache)
    assert any(cache.iterdir())


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--source", "folder", "--data-path", "/no/such/folder"], "/no/such/folder does not exist"),
        (["--source", "batches"], "the 'batches' source needs a path"),
        (["--source", "canonical", "--data-dir", "/no/such/data"], "cifar-10-python.tar.gz"),
        (["--val-size", "60000"], "invalid validation size 60000"),
    ],
)
def test_info_errors_one_line(args, message, capsys):
    assert main(["data", "info", *args]) == 2
    stderr = capsys.readouterr().err
    assert message in stderr
    assert stderr.count("error:") == 1


def test_info_error_without_traceback():
    # The one test through `python -m cifarlab`, the entry point users run.
    result = run_cli("data", "info", "--source", "folder", "--data-path", "/no/such/folder")
    assert result.returncode == 2
    assert result.stderr.startswith("error: /no/such/folder does not exist")
    assert "Traceback" not in result.stderr


def test_download_offline_message(tmp_path, monkeypatch, capsys):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setattr(data, "CANONICAL_URL", f"http://127.0.0.1:{port}/cifar-10-python.tar.gz")
    code = main(["data", "download", "--data-dir", str(tmp_path), "--timeout", "2"])
    stderr = capsys.readouterr().err
    assert code == 2
    assert "170,498,071 bytes, MD5 c58f30108f718f92721af3b95e74349a" in stderr
    assert f"put it in {tmp_path}" in stderr
    assert "Traceback" not in stderr
    assert list(tmp_path.iterdir()) == []


def test_download_truncated_file_in_place(tmp_path, capsys):
    (tmp_path / data.CANONICAL_FILENAME).write_bytes(b"\x1f\x8b" + bytes(98))
    code = main(["data", "download", "--data-dir", str(tmp_path)])
    assert code == 2
    assert "is truncated: 100 bytes instead of 170,498,071" in capsys.readouterr().err


def test_download_rejects_bad_timeout(tmp_path, capsys):
    code = main(["data", "download", "--data-dir", str(tmp_path), "--timeout", "0"])
    assert code == 2
    assert "invalid --timeout 0" in capsys.readouterr().err


def test_data_help_lists_actions(capsys):
    with pytest.raises(SystemExit) as exited:
        main(["data", "--help"])
    assert exited.value.code == 0
    output = capsys.readouterr().out
    assert "info" in output
    assert "download" in output
