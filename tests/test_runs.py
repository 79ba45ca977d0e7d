"""Background runs: process management against a small fake trainer, then the real trainer.

The fake trainer speaks the real trainer's command line (``--config --out --log --stop-file
--resume``) and log format, with epochs of a few short batches, so starting, stopping, failing,
killing and resuming take a second or two each.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import textwrap
import time
from pathlib import Path

import pytest

# Run.resume_state_path imports the trainer's state module, which imports torch. Importing it
# here keeps that slow import out of the timing of the short fake runs below.
import cifarlab.train.state  # noqa: F401
from cifarlab import runs
from conftest import FILE_CLOCK_MARGIN_S

FAKE_TRAINER = textwrap.dedent(
    """
    import argparse, json, os, sys, time

    parser = argparse.ArgumentParser()
    parser.add_argument("train")
    parser.add_argument("--config")
    parser.add_argument("--out")
    parser.add_argument("--log")
    parser.add_argument("--stop-file")
    parser.add_argument("--resume")
    args = parser.parse_args()
    resume_path = args.out[: -len(".pt")] + ".resume.pt"

    def save(path, data):
        with open(path + ".tmp", "w") as file:
            json.dump(data, file)
        os.replace(path + ".tmp", path)

    first_epoch, config = 1, None
    if args.resume:
        state = json.load(open(resume_path))
        first_epoch, config = state["epoch"] + 1, state["config"]
    else:
        config = json.load(open(args.config))
    fake = config["fake"]
    epochs, batches = config["epochs"], fake["batches"]
    log = open(args.log, "a")

    def write(event, **fields):
        log.write(json.dumps({"event": event, "time": time.time(), **fields}) + "\\n")
        log.flush()

    write("start", epochs=epochs, start_epoch=first_epoch - 1,
          start_step=(first_epoch - 1) * batches, resumed_from=args.resume)
    for epoch in range(first_epoch, epochs + 1):
        for batch in range(1, batches + 1):
            time.sleep(fake.get("batch_s", 0.05))
            if fake.get("fail_at") == [epoch, batch]:
                raise RuntimeError("fake trainer failed on purpose")
            step = (epoch - 1) * batches + batch
            write("batch", epoch=epoch, epochs=epochs, batch=batch, batches=batches, step=step,
                  total_steps=epochs * batches, loss=1.0 / step, acc=0.1, lr=0.01,
                  images_per_s=100.0, eta_s=1.0)
            if os.path.exists(args.stop_file):
                write("end", status="stopped", epochs_completed=epoch - 1)
                sys.exit(0)
        # Like the real trainer: the epoch record first, then the checkpoint and resume state.
        write("epoch", epoch=epoch, epochs=epochs, step=epoch * batches, train_loss=1.0 / epoch,
              val_loss=1.5 / epoch, train_acc=0.1 * epoch, val_acc=0.09 * epoch, eta_s=2.0)
        save(args.out, {"epoch": epoch})
        save(resume_path, {"epoch": epoch, "config": config})
    os.remove(resume_path)
    write("end", status="completed", epochs_completed=epochs)
    """
)


@pytest.fixture
def fake_trainer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run the fake trainer instead of `python -m cifarlab train`, in a fresh runs folder."""
    script = tmp_path / "fake_trainer.py"
    script.write_text(FAKE_TRAINER)

    def fake_argv(*, config_path, checkpoint_path, log_path, stop_path, resume_from):
        argv = [sys.executable, str(script), "train"]
        if config_path is not None:
            argv += ["--config", str(config_path)]
        if resume_from is not None:
            argv += ["--resume", str(resume_from)]
        argv += ["--out", str(checkpoint_path), "--log", str(log_path), "--stop-file", str(stop_path)]
        return argv

    monkeypatch.setattr(runs, "_trainer_argv", fake_argv)
    monkeypatch.setenv("CIFARLAB_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("CIFARLAB_CHECKPOINT_DIR", str(tmp_path / "checkpoints"))
    return script


def fake_config(epochs: int = 2, batches: int = 4, **fake) -> dict:
    return {"arch": "fake", "epochs": epochs, "fake": {"batches": batches, **fake}}


def wait_for(predicate, timeout_s: float = 30.0, what: str = "condition"):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


def wait_until_final(run: runs.Run, timeout_s: float = 30.0) -> runs.Run:
    return wait_for(
        lambda: (fresh := runs.get_run(run.run_id)).state != runs.RUNNING and fresh,
        timeout_s,
        f"run {run.run_id} to end",
    )


def kill_and_reap(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)
    runs._reap(pid, timeout_s=10)


# ---------------------------------------------------------------------------------------------
# Process management with the fake trainer


def test_run_completes_and_writes_files(fake_trainer):
    run = runs.start_run(fake_config(epochs=2, batches=3, batch_s=0.01))

    assert run.state == runs.RUNNING
    assert run.folder.parent == Path(os.environ["CIFARLAB_RUNS_DIR"])
    assert json.loads((run.folder / "config.json").read_text())["arch"] == "fake"
    assert run.checkpoint_path.parent == Path(os.environ["CIFARLAB_CHECKPOINT_DIR"])

    run = wait_until_final(run)
    assert run.state == runs.COMPLETED
    assert run.error is None
    assert run.checkpoint_path.is_file()
    assert run.last_attempt.returncode == 0

    status = json.loads((run.folder / "status.json").read_text())
    assert status["attempts"][0]["state"] == runs.COMPLETED
    assert status["attempts"][0]["pid"] == run.last_attempt.pid


def test_progress_reports_epochs_and_fraction(fake_trainer):
    run = wait_until_final(runs.start_run(fake_config(epochs=2, batches=3, batch_s=0.01)))

    progress = runs.read_progress(run)
    assert progress.epochs_total == 2
    assert [record["epoch"] for record in progress.epochs] == [1, 2]
    assert len(progress.batches) == 6
    assert progress.end["status"] == "completed"
    assert progress.finished
    assert progress.fraction == 1.0
    assert progress.eta_s == 0.0


def test_progress_fraction_midway():
    records = [
        {"event": "start", "epochs": 4, "start_epoch": 0, "start_step": 0},
        {"event": "batch", "epoch": 1, "step": 10, "total_steps": 40, "time": 1.0, "eta_s": 30.0},
        {"event": "epoch", "epoch": 1, "step": 10, "time": 2.0, "eta_s": 29.0},
        {"event": "batch", "epoch": 2, "step": 15, "total_steps": 40, "time": 3.0, "eta_s": 25.0},
    ]
    progress = runs._progress_from_records(records, {"epochs": 4})

    assert progress.fraction == pytest.approx(15 / 40)
    assert progress.epochs_done == 1
    assert progress.eta_s == 25.0
    assert not progress.finished


def test_progress_eta_from_latest_record():
    records = [
        {"event": "start", "epochs": 2},
        {"event": "batch", "epoch": 1, "step": 10, "total_steps": 20, "time": 1.0, "eta_s": 9.0},
        {"event": "epoch", "epoch": 1, "step": 10, "time": 2.0, "eta_s": 7.0},
    ]

    assert runs._progress_from_records(records, {}).eta_s == 7.0


def test_progress_early_stopped_is_finished():
    records = [
        {"event": "start", "epochs": 10},
        {"event": "batch", "epoch": 3, "step": 30, "total_steps": 100},
        {"event": "end", "status": "early_stopped"},
    ]
    progress = runs._progress_from_records(records, {})

    assert progress.finished
    assert progress.fraction == 1.0


def test_second_run_rejected_naming_active(fake_trainer):
    first = runs.start_run(fake_config(epochs=50, batches=10, batch_s=0.05))
    try:
        with pytest.raises(runs.RunActiveError, match=first.run_id) as raised:
            runs.start_run(fake_config())
        assert raised.value.active.run_id == first.run_id
        assert runs.active_run().run_id == first.run_id
        assert len(runs.list_runs()) == 1
    finally:
        runs.stop_run(first)
        wait_until_final(first)


def test_stop_ends_within_one_batch(fake_trainer):
    batches = 40
    run = runs.start_run(fake_config(epochs=1, batches=batches, batch_s=0.05))
    wait_for(lambda: len(runs.read_progress(run).batches) >= 3, what="three batches")

    run = runs.stop_run(run)
    assert run.stop_requested
    assert run.stop_path.is_file()
    batches_at_stop = len(runs.read_progress(run).batches)

    run = wait_until_final(run)
    progress = runs.read_progress(run)
    assert run.state == runs.STOPPED
    assert progress.end["status"] == "stopped"
    assert not progress.finished
    # The trainer checks the stop file after every batch, so at most the batch in flight when
    # the request landed finishes after it.
    assert len(progress.batches) <= batches_at_stop + 1
    assert len(progress.batches) < batches
    assert runs.active_run() is None


def test_stop_keeps_last_checkpoint(fake_trainer):
    run = runs.start_run(fake_config(epochs=200, batches=3, batch_s=0.05))
    wait_for(run.resume_state_path.is_file, what="the first resume state")

    run = wait_until_final(runs.stop_run(run))

    assert run.state == runs.STOPPED
    assert run.can_resume
    assert run.resume_state_path.name == f"{run.run_id}.resume.pt"
    assert json.loads(run.checkpoint_path.read_text())["epoch"] >= 1


def test_failed_run_reports_error(fake_trainer):
    run = runs.start_run(fake_config(epochs=2, batches=3, batch_s=0.01, fail_at=[1, 2]))

    run = wait_until_final(run)

    assert run.state == runs.FAILED
    assert run.error == "RuntimeError: fake trainer failed on purpose"
    assert run.last_attempt.returncode == 1
    assert "Traceback" in runs.log_tail(run)
    assert runs.active_run() is None


def test_killed_run_is_interrupted(fake_trainer):
    run = runs.start_run(fake_config(epochs=50, batches=3, batch_s=0.05))
    wait_for(run.resume_state_path.is_file, what="the first resume state")

    kill_and_reap(run.last_attempt.pid)
    run = runs.get_run(run.run_id)

    assert run.state == runs.INTERRUPTED
    assert "SIGKILL" in run.error
    assert run.can_resume
    assert runs.active_run() is None


def test_orphaned_trainer_gone_is_interrupted(fake_trainer):
    """A trainer whose parent server restarted has no exit status: no error means interrupted."""
    run = runs.start_run(fake_config(epochs=50, batches=3, batch_s=0.05))
    wait_for(run.resume_state_path.is_file, what="the first resume state")
    kill_and_reap(run.last_attempt.pid)
    # A restarted server has no Popen objects and cannot wait for the dead trainer.
    runs._children.clear()
    status = json.loads((run.folder / "status.json").read_text())
    assert status["attempts"][0]["state"] is None

    run = runs.get_run(run.run_id)

    assert run.state == runs.INTERRUPTED
    assert run.last_attempt.returncode is None


def test_orphaned_trainer_with_traceback_failed(fake_trainer):
    run = runs.start_run(fake_config(epochs=50, batches=3, batch_s=0.05))
    wait_for(lambda: runs.read_progress(run).batches, what="a batch")
    kill_and_reap(run.last_attempt.pid)
    runs._children.clear()
    run.stderr_path.write_text(
        "Traceback (most recent call last):\n  File \"x.py\", line 1\nMemoryError: out of memory\n"
    )

    run = runs.get_run(run.run_id)

    assert run.state == runs.FAILED
    assert run.error == "MemoryError: out of memory"


def test_reused_pid_not_mistaken_for_trainer(fake_trainer):
    run = wait_until_final(runs.start_run(fake_config(epochs=1, batches=1, batch_s=0.01)))
    # Rewrite the record as if the trainer had ended unseen and its pid now belonged to this
    # test process, which is alive but started at another time.
    status = json.loads((run.folder / "status.json").read_text())
    status["attempts"][0].update(state=None, returncode=None, pid=os.getpid())
    status["attempts"][0]["pid_start_ticks"] = runs._process_start_ticks(os.getpid()) + 1
    (run.folder / "status.json").write_text(json.dumps(status))
    (run.folder / "log.jsonl").write_text('{"event": "start", "epochs": 1}\n')

    run = runs.get_run(run.run_id)

    assert run.state == runs.INTERRUPTED


def test_resume_continues_from_checkpoint(fake_trainer):
    run = runs.start_run(fake_config(epochs=3, batches=3, batch_s=0.1))
    wait_for(run.resume_state_path.is_file, what="the first resume state")
    kill_and_reap(run.last_attempt.pid)
    run = runs.get_run(run.run_id)
    assert run.state == runs.INTERRUPTED
    resumed_epoch = json.loads(run.resume_state_path.read_text())["epoch"]

    run = runs.resume_run(run)
    assert run.state == runs.RUNNING
    assert len(run.attempts) == 2
    assert run.last_attempt.resume_from == str(run.checkpoint_path)
    assert run.last_attempt.log_name == "log-2.jsonl"

    run = wait_until_final(run)
    progress = runs.read_progress(run)
    assert run.state == runs.COMPLETED
    assert [record["epoch"] for record in progress.epochs] == [1, 2, 3]
    assert progress.fraction == 1.0
    assert runs.read_records(run.folder / "log-2.jsonl")[0]["start_epoch"] == resumed_epoch
    # The first attempt's records stay on disk beside the resumed ones.
    assert runs.read_records(run.folder / "log.jsonl")[0]["event"] == "start"


def test_resume_rejects_completed_run(fake_trainer):
    run = wait_until_final(runs.start_run(fake_config(epochs=1, batches=1, batch_s=0.01)))

    with pytest.raises(runs.RunError, match="is completed"):
        runs.resume_run(run)


def test_resume_without_checkpoint_rejected(fake_trainer):
    run = runs.start_run(fake_config(epochs=5, batches=100, batch_s=0.05))
    wait_for(lambda: runs.read_progress(run).batches, what="a batch")
    run = wait_until_final(runs.stop_run(run))
    assert not run.resume_state_path.exists()
    assert not run.can_resume

    with pytest.raises(runs.RunError, match="no resume state"):
        runs.resume_run(run)


def test_resume_rejected_while_other_runs(fake_trainer):
    first = runs.start_run(fake_config(epochs=20, batches=3, batch_s=0.05))
    wait_for(first.resume_state_path.is_file, what="the first resume state")
    first = wait_until_final(runs.stop_run(first))
    second = runs.start_run(fake_config(epochs=50, batches=10, batch_s=0.05))
    try:
        with pytest.raises(runs.RunActiveError, match=second.run_id):
            runs.resume_run(first)
    finally:
        wait_until_final(runs.stop_run(second))


def test_force_stop_kills_trainer(fake_trainer):
    run = runs.start_run(fake_config(epochs=1, batches=1, batch_s=60))
    wait_for(lambda: runs._process_start_ticks(run.last_attempt.pid), what="the trainer")

    run = runs.stop_run(run, force=True)

    assert run.state == runs.INTERRUPTED
    assert "SIGKILL" in run.error


def test_list_runs_newest_first(fake_trainer):
    first = wait_until_final(runs.start_run(fake_config(epochs=1, batches=1, batch_s=0.01)))
    time.sleep(0.01)
    second = wait_until_final(runs.start_run(fake_config(epochs=1, batches=1, batch_s=0.01)))

    listed = [run.run_id for run in runs.list_runs()]

    assert listed == [second.run_id, first.run_id]
    assert first.run_id != second.run_id


def test_list_runs_skips_broken_folder(fake_trainer):
    broken = Path(os.environ["CIFARLAB_RUNS_DIR"]) / "broken"
    broken.mkdir(parents=True)
    (broken / "status.json").write_text("{not json")

    assert runs.list_runs() == []


def test_get_run_missing_raises(fake_trainer):
    with pytest.raises(runs.RunError, match="'nope' not found"):
        runs.get_run("nope")


def test_start_failure_leaves_no_active_run(fake_trainer, monkeypatch):
    monkeypatch.setattr(
        runs, "_trainer_argv", lambda **kwargs: ["/nonexistent/python-for-cifarlab"]
    )

    with pytest.raises(runs.RunError, match="could not start the trainer"):
        runs.start_run(fake_config())

    assert runs.active_run() is None


# ---------------------------------------------------------------------------------------------
# Log parsing


def test_records_skip_partial_last_line(tmp_path):
    log = tmp_path / "log.jsonl"
    log.write_text('{"event": "start"}\n{"event": "batch", "ba')

    assert runs.read_records(log) == [{"event": "start"}]

    with open(log, "a") as file:
        file.write('tch": 1}\n')
    assert runs.read_records(log) == [{"event": "start"}, {"event": "batch", "batch": 1}]


def test_records_skip_malformed_line(tmp_path):
    log = tmp_path / "log.jsonl"
    log.write_text('{"event": "start"}\nnot json\n[1, 2]\n{"event": "end"}\n')

    assert runs.read_records(log) == [{"event": "start"}, {"event": "end"}]


def test_records_reread_after_rewrite(tmp_path):
    log = tmp_path / "log.jsonl"
    log.write_text('{"event": "start", "n": 1}\n{"event": "end"}\n')
    assert len(runs.read_records(log)) == 2

    replacement = tmp_path / "replacement.jsonl"
    replacement.write_text('{"event": "start", "n": 2}\n')
    os.replace(replacement, log)

    assert runs.read_records(log) == [{"event": "start", "n": 2}]


def test_records_missing_file_empty(tmp_path):
    assert runs.read_records(tmp_path / "missing.jsonl") == []


def test_resumed_records_replace_later_ones():
    records = [
        {"event": "start", "epochs": 3, "start_epoch": 0, "start_step": 0},
        {"event": "batch", "epoch": 1, "step": 5},
        {"event": "epoch", "epoch": 1, "val_acc": 0.1},
        {"event": "batch", "epoch": 2, "step": 8},
        {"event": "batch", "epoch": 2, "step": 10},
        {"event": "epoch", "epoch": 2, "val_acc": 0.2},
        {"event": "batch", "epoch": 3, "step": 12},
        # The resume state was written at step 8, in epoch 2; the process was killed later.
        {"event": "start", "epochs": 3, "start_epoch": 1, "start_step": 8},
        {"event": "batch", "epoch": 2, "step": 9},
        {"event": "epoch", "epoch": 2, "val_acc": 0.25},
    ]

    progress = runs._progress_from_records(records, {})

    assert [record["val_acc"] for record in progress.epochs] == [0.1, 0.25]
    assert [record["step"] for record in progress.batches] == [5, 8, 9]


def test_log_tail_keeps_last_redraw(fake_trainer, tmp_path):
    run = wait_until_final(runs.start_run(fake_config(epochs=1, batches=1, batch_s=0.01)))
    run.stdout_path.write_text("epoch 1  10%\repoch 1 100%\ndone\n")

    assert runs.log_tail(run, stream="stdout") == "epoch 1 100%\ndone"


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0 s"), (12.4, "12 s"), (185, "3 min 05 s"), (3720, "1 h 02 min"), (None, "unknown")],
)
def test_format_duration(seconds, text):
    assert runs.format_duration(seconds) == text


# ---------------------------------------------------------------------------------------------
# The real trainer: `python -m cifarlab train` on a few hundred bundled images


@pytest.fixture
def real_run_folders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("CIFARLAB_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("CIFARLAB_CHECKPOINT_DIR", str(tmp_path / "checkpoints"))
    return tmp_path


def tiny_real_config(**changes):
    from cifarlab.train import TrainConfig

    fields = dict(
        arch="mlp",
        arch_options={"widths": [32, 32, 32, 32]},
        epochs=1,
        train_subset=200,
        val_size=100,
        batch_size=50,
        evaluate_test=False,
        num_threads=1,
    )
    fields.update(changes)
    return TrainConfig(**fields)


@pytest.mark.slow
def test_real_run_completes_with_checkpoint(real_run_folders):
    from cifarlab.checkpoints import list_checkpoints, load_checkpoint

    run = runs.start_run(tiny_real_config())
    run = wait_until_final(run, timeout_s=600)

    assert run.state == runs.COMPLETED, runs.log_tail(run)
    progress = runs.read_progress(run)
    assert progress.finished
    assert progress.fraction == 1.0
    assert [record["epoch"] for record in progress.epochs] == [1]
    assert len(progress.batches) == 4
    assert progress.start["sizes"]["train"] == 200
    loaded = load_checkpoint(run.checkpoint_path)
    assert loaded.meta["arch"] == "mlp"
    assert loaded.meta["training"]["status"] == "completed"
    assert run.checkpoint_path in [info.path for info in list_checkpoints()]
    assert not run.resume_state_path.exists()


@pytest.mark.slow
def test_real_run_stops_and_resumes(real_run_folders):
    # 200 steps of 10 images per epoch: the stop lands well inside the first epoch.
    run = runs.start_run(tiny_real_config(epochs=2, train_subset=2000, batch_size=10))
    wait_for(lambda: len(runs.read_progress(run).batches) >= 5, 600, "five batches")

    run = wait_until_final(runs.stop_run(run), timeout_s=120)

    progress = runs.read_progress(run)
    assert run.state == runs.STOPPED, runs.log_tail(run)
    assert progress.end["status"] == "stopped"
    # A batch of 10 images takes about 3 ms, so batches that finished while the file clock
    # lagged would look later than the stop request; the margin keeps them out of the count.
    stop_requested_at = run.stop_path.stat().st_mtime + FILE_CLOCK_MARGIN_S
    assert len([batch for batch in progress.batches if batch["time"] > stop_requested_at]) <= 1
    assert progress.batches[-1]["step"] < 200
    assert run.checkpoint_path.is_file()
    assert run.can_resume
    stopped_at_step = progress.batches[-1]["step"]

    run = wait_until_final(runs.resume_run(run), timeout_s=600)

    progress = runs.read_progress(run)
    assert run.state == runs.COMPLETED, runs.log_tail(run)
    assert progress.start["start_step"] == stopped_at_step
    assert [record["epoch"] for record in progress.epochs] == [1, 2]
    steps = [batch["step"] for batch in progress.batches]
    assert steps == list(range(1, 401))
