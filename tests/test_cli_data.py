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


def test_info_bundled_table():
    result = run_cli("data", "info")
    assert result.returncode == 0, result.stderr
    assert "bundled    available" in result.stdout
    assert "canonical  missing" in result.stdout
    lines = {line.split()[0]: line.split()[1:] for line in result.stdout.splitlines() if line.strip()}
    for name in CLASSES:
        assert lines[name] == ["4,500", "500", "1,000"]
    assert lines["total"] == ["45,000", "5,000", "10,000"]
    assert "seed 0" in result.stdout


def test_info_json_counts():
    result = run_cli("data", "info", "--json", "--val-size", "1000", "--seed", "5")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["counts"]["validation"] == [100] * 10
    assert report["counts"]["train"] == [4900] * 10
    assert report["counts"]["test"] == [1000] * 10
    assert report["split"]["seed"] == 5
    assert report["split"]["val_size"] == 1000
    assert report["classes"] == list(CLASSES)


def test_info_folder_source_and_dirs(tmp_path):
    folder = write_tiny_folder(tmp_path / "images")
    cache = tmp_path / "my-cache"
    result = run_cli(
        "data", "info", "--json", "--source", "folder", "--data-path", str(folder),
        "--val-size", "10", "--cache-dir", str(cache), "--data-dir", str(tmp_path / "my-data"),
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["loaded"]["source"] == "folder"
    assert report["counts"]["validation"] == [1] * 10
    assert report["counts"]["test"] == [1] * 10
    assert report["cache_dir"] == str(cache)
    assert any(cache.iterdir())
    assert str(tmp_path / "my-data") in report["sources"][1]["detail"]


def test_cache_dir_from_environment(tmp_path):
    folder = write_tiny_folder(tmp_path / "images")
    cache = tmp_path / "env-cache"
    result = run_cli(
        "data", "info", "--source", "folder", "--data-path", str(folder), "--val-size", "10",
        env={"CIFARLAB_CACHE_DIR": str(cache)},
    )
    assert result.returncode == 0, result.stderr
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
def test_info_errors_without_traceback(args, message):
    result = run_cli("data", "info", *args)
    assert result.returncode == 2
    assert message in result.stderr
    assert result.stderr.count("error:") == 1
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


def test_data_help_lists_actions():
    result = run_cli("data", "--help")
    assert result.returncode == 0
    assert "info" in result.stdout
    assert "download" in result.stdout
