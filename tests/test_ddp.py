"""``torchrun --nproc_per_node 2 -m cifarlab train`` on the CPU: gloo, sharded batches, one writer."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from cifarlab.checkpoints import load_checkpoint
from cifarlab.train import COMPLETED, TrainConfig, read_log, resume_path_for, train

REPO_ROOT = Path(__file__).resolve().parent.parent

# torchrun starts three Python processes that each import torch and load the data set.
pytestmark = pytest.mark.slow

# LeNet has neither batch norm nor dropout, and no augmentation runs, so two processes that each
# take half of every batch compute the same averaged gradient as one process with the whole
# batch: the weights may differ only by float rounding.
CONFIG = TrainConfig(
    arch="lenet",
    epochs=1,
    batch_size=50,
    optimizer="adam",
    lr=2e-3,
    recipe="none",
    train_subset=200,
    val_size=100,
    device="cpu",
    evaluate_test=False,
)
CLI_ARGS = [
    "--arch", "lenet", "--epochs", "1", "--batch-size", "50", "--optimizer", "adam",
    "--lr", "0.002", "--recipe", "none", "--train-subset", "200", "--val-size", "100",
    "--device", "cpu", "--no-test",
]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _torchrun() -> list[str]:
    script = Path(sys.executable).with_name("torchrun")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "torch.distributed.run"]


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    folder = tmp_path_factory.mktemp("ddp")
    checkpoint = folder / "ddp.pt"
    log = folder / "ddp.jsonl"
    command = [
        *_torchrun(),
        "--nnodes", "1",
        "--nproc-per-node", "2",
        "--master-addr", "127.0.0.1",
        "--master-port", str(_free_port()),
        "-m", "cifarlab", "train", *CLI_ARGS,
        "--out", str(checkpoint),
        # --log-path, because torchrun takes --log for an abbreviation of its --log-dir.
        "--log-path", str(log),
    ]
    result = subprocess.run(
        command,
        cwd=REPO_ROOT,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    return {"result": result, "folder": folder, "checkpoint": checkpoint, "log": log}


def test_ddp_run_completes(ddp_run):
    result = ddp_run["result"]

    assert result.returncode == 0, result.stderr[-3000:]
    assert "rank 1 of 2, backend gloo" in result.stderr
    assert "Traceback" not in result.stderr


def test_ddp_only_rank_zero_writes(ddp_run):
    records = read_log(ddp_run["log"])
    events = [record["event"] for record in records]

    assert events.count("start") == 1
    assert events.count("epoch") == 1
    assert events.count("end") == 1
    assert records[0]["world_size"] == 2
    assert records[-1]["status"] == COMPLETED
    # The completed run leaves its checkpoint and log, and no resume state or temporary file.
    assert sorted(path.name for path in ddp_run["folder"].iterdir()) == ["ddp.jsonl", "ddp.pt"]
    assert not resume_path_for(ddp_run["checkpoint"]).exists()


def test_ddp_matches_single_process(ddp_run):
    torch.set_num_threads(1)
    single = train(CONFIG)

    loaded = load_checkpoint(ddp_run["checkpoint"])
    epoch = read_log(ddp_run["log"])[-2]
    assert epoch["event"] == "epoch"
    # Validation is split over both processes and summed, so it covers every image once.
    assert epoch["val_acc"] == pytest.approx(single.history[0]["val_acc"], abs=0.011)
    assert epoch["train_loss"] == pytest.approx(single.history[0]["train_loss"], rel=1e-4)
    for name, tensor in single.model.state_dict().items():
        torch.testing.assert_close(loaded.model.state_dict()[name], tensor, rtol=1e-4, atol=1e-5)
    assert loaded.meta["training"]["world_size"] == 2
