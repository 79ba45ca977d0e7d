"""Background training runs: one trainer process per run, watched through the files it writes.

A run lives in a folder ``runs_dir()/<run_id>/``:

- ``config.json``: the training configuration (``TrainConfig.to_dict()``);
- ``status.json``: what this module recorded about each trainer process it started (pid,
  process start time, state once known), written atomically;
- ``log.jsonl``: the JSON-lines records the trainer writes (``start``, ``batch``, ``epoch``,
  ``end``); a resumed run writes ``log-2.jsonl``, ``log-3.jsonl``, ... so no record is lost;
- ``stdout.txt`` and ``stderr.txt`` (``stdout-2.txt`` ... after a resume): the trainer's output;
- ``STOP``: created by :func:`stop_run`; the trainer checks for it after every batch and ends
  the run, keeping the last good checkpoint.

Each start or resume is one *attempt*: ``python -m cifarlab train --config ... --out ... --log
... --stop-file ...`` in a new session, so it keeps running when the page that started it is
closed or the app server stops. Every page reads the run back from these files, so every
browser session, and a restarted server, shows the same run. The checkpoint goes straight into
``user_checkpoint_dir()``, where the Models page lists it.

A run's state is one of ``running``, ``completed``, ``stopped``, ``failed`` and
``interrupted`` (its process is gone without an ``end`` record and without an error, for
example because the machine or the app server was shut down). One run at a time: the CPU or GPU
is shared, and a second run would slow both.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import logging
import math
import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from cifarlab import paths

logger = logging.getLogger(__name__)

RUNNING = "running"
COMPLETED = "completed"
STOPPED = "stopped"
FAILED = "failed"
INTERRUPTED = "interrupted"
STATES = (RUNNING, COMPLETED, STOPPED, FAILED, INTERRUPTED)
FINAL_STATES = (COMPLETED, STOPPED, FAILED, INTERRUPTED)
# A stopped, failed or interrupted run continues from its last checkpoint when resumed.
RESUMABLE_STATES = (STOPPED, FAILED, INTERRUPTED)

CONFIG_FILE = "config.json"
STATUS_FILE = "status.json"
STOP_FILE = "STOP"
_LOCK_FILE = ".lock"

# The exit status of `python -m cifarlab` after Ctrl+C (SIGINT): the run was interrupted, not
# broken.
_EXIT_INTERRUPTED = 130


class RunError(ValueError):
    """A run request that cannot be carried out. The message gives the reason and the fix."""


class RunActiveError(RunError):
    """A request rejected because another run, ``active``, is still running."""

    def __init__(self, active: Run):
        self.active = active
        started = time.strftime("%H:%M:%S", time.localtime(active.created_at))
        super().__init__(
            f"run {active.run_id} ({active.arch}, started at {started}) is still running; "
            "only one run trains at a time, so stop it or wait until it ends"
        )


@dataclass(frozen=True)
class Attempt:
    """One trainer process of a run: the first start, or one resume.

    ``pid_start_ticks`` is the process start time read from ``/proc/<pid>/stat`` (clock ticks
    since boot). It distinguishes the trainer from a later process that reuses its pid. ``state`` is None while the process
    has not been seen to end.
    """

    number: int
    pid: int
    pid_start_ticks: int | None
    started_at: float
    log_name: str
    stdout_name: str
    stderr_name: str
    resume_from: str | None = None
    state: str | None = None
    returncode: int | None = None
    ended_at: float | None = None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Attempt:
        names = {field.name for field in dataclasses.fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in names})


@dataclass(frozen=True)
class Run:
    """A snapshot of one run: its files, configuration and state when it was read.

    Call :func:`get_run` for a fresh snapshot; nothing here changes by itself.
    """

    run_id: str
    folder: Path
    config: dict[str, Any]
    checkpoint_path: Path
    created_at: float
    attempts: tuple[Attempt, ...]
    state: str
    stop_requested: bool
    error: str | None

    @property
    def arch(self) -> str:
        return str(self.config.get("arch", "?"))

    @property
    def is_running(self) -> bool:
        return self.state == RUNNING

    @property
    def resume_state_path(self) -> Path:
        """The trainer's full training state beside the checkpoint (``name.resume.pt``)."""
        from cifarlab.train.state import resume_path_for

        return resume_path_for(self.checkpoint_path)

    @property
    def can_resume(self) -> bool:
        return self.state in RESUMABLE_STATES and self.resume_state_path.is_file()

    @property
    def last_attempt(self) -> Attempt:
        return self.attempts[-1]

    @property
    def log_paths(self) -> list[Path]:
        return [self.folder / attempt.log_name for attempt in self.attempts]

    @property
    def stderr_path(self) -> Path:
        return self.folder / self.last_attempt.stderr_name

    @property
    def stdout_path(self) -> Path:
        return self.folder / self.last_attempt.stdout_name

    @property
    def stop_path(self) -> Path:
        return self.folder / STOP_FILE


# --------------------------------------------------------------------------------------------
# Starting, stopping and resuming


def start_run(config: Any, *, run_id: str | None = None) -> Run:
    """Start training ``config`` in a background process and return the new run.

    ``config`` is a ``TrainConfig`` or a dict of its fields, which the trainer validates.
    Raises RunActiveError, naming the active run, while another run is still running.
    """
    config_dict = config if isinstance(config, dict) else config.to_dict()
    with _runs_lock():
        active = active_run()
        if active is not None:
            raise RunActiveError(active)

        run_id = run_id or _new_run_id(str(config_dict.get("arch", "run")))
        folder = paths.runs_dir() / run_id
        folder.mkdir(parents=True, exist_ok=False)
        checkpoint_path = paths.user_checkpoint_dir() / f"{run_id}.pt"
        checkpoint_path.parent.mkdir(parents=True, exist_ok=True)
        _write_json_atomic(folder / CONFIG_FILE, config_dict)

        status = {
            "run_id": run_id,
            "created_at": time.time(),
            "checkpoint_path": str(checkpoint_path),
            "attempts": [],
        }
        try:
            attempt = _launch_attempt(folder, checkpoint_path, number=1, resume_from=None)
        except OSError as error:
            raise RunError(f"could not start the trainer for run {run_id}: {error}") from error
        status["attempts"].append(attempt.to_dict())
        _write_json_atomic(folder / STATUS_FILE, status)

    logger.info("started run %s (pid %d, arch %s)", run_id, attempt.pid, config_dict.get("arch"))
    return get_run(run_id)


def resume_run(run: Run) -> Run:
    """Continue a stopped, failed or interrupted run from its last checkpoint.

    The trainer reads the configuration stored in the resume state and continues from the
    step where it stopped. It writes its records to a new log file, so the earlier ones stay
    on disk. Raises RunActiveError while another run is running, and RunError when ``run``
    cannot be resumed.
    """
    with _runs_lock():
        run = get_run(run.run_id)
        if run.state not in RESUMABLE_STATES:
            raise RunError(
                f"run {run.run_id} is {run.state}; only a stopped, failed or interrupted run "
                "can be resumed"
            )
        if not run.resume_state_path.is_file():
            raise RunError(
                f"run {run.run_id} has no resume state at {run.resume_state_path}, because it "
                "ended before its first checkpoint was written; start a new run instead"
            )
        active = active_run()
        if active is not None:
            raise RunActiveError(active)

        run.stop_path.unlink(missing_ok=True)
        attempt = _launch_attempt(
            run.folder,
            run.checkpoint_path,
            number=len(run.attempts) + 1,
            resume_from=run.checkpoint_path,
        )
        status = _read_status(run.folder)
        status["attempts"].append(attempt.to_dict())
        status.pop("stop_requested_at", None)
        _write_json_atomic(run.folder / STATUS_FILE, status)

    logger.info("resumed run %s from %s (pid %d)", run.run_id, run.checkpoint_path, attempt.pid)
    return get_run(run.run_id)


def stop_run(run: Run, *, force: bool = False) -> Run:
    """Ask the trainer of ``run`` to stop after its current batch, keeping its last checkpoint.

    With ``force=True`` the trainer's process group is killed at once instead. This is for a
    trainer that no longer reads its stop file, for example one stuck loading data. What it
    wrote so far stays on disk and the run becomes interrupted.
    """
    run = get_run(run.run_id)
    if not run.is_running:
        return run

    _write_text_atomic(run.stop_path, f"stop requested at {time.time():.3f}\n")
    with _runs_lock():
        status = _read_status(run.folder)
        status.setdefault("stop_requested_at", time.time())
        _write_json_atomic(run.folder / STATUS_FILE, status)
    logger.info("requested run %s to stop", run.run_id)

    if force:
        attempt = run.last_attempt
        if _process_is_alive(attempt):
            # The trainer leads its own session, so its pid is also its process group id.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(attempt.pid, signal.SIGKILL)
            _reap(attempt.pid, timeout_s=5.0)
            logger.warning("killed run %s (pid %d)", run.run_id, attempt.pid)
    return get_run(run.run_id)


def _launch_attempt(
    folder: Path, checkpoint_path: Path, *, number: int, resume_from: Path | None
) -> Attempt:
    suffix = "" if number == 1 else f"-{number}"
    log_name = f"log{suffix}.jsonl"
    stdout_name = f"stdout{suffix}.txt"
    stderr_name = f"stderr{suffix}.txt"
    argv = _trainer_argv(
        # A resumed trainer takes its configuration from the resume state.
        config_path=folder / CONFIG_FILE if resume_from is None else None,
        checkpoint_path=checkpoint_path,
        log_path=folder / log_name,
        stop_path=folder / STOP_FILE,
        resume_from=resume_from,
    )

    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    # The repository root goes first so `-m cifarlab` finds this checkout even when the package
    # is not installed.
    env["PYTHONPATH"] = os.pathsep.join(
        part for part in (str(paths.REPO_ROOT), env.get("PYTHONPATH", "")) if part
    )
    with open(folder / stdout_name, "wb") as stdout, open(folder / stderr_name, "wb") as stderr:
        process = subprocess.Popen(
            argv,
            cwd=folder,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
            # A session of its own keeps the trainer alive when the app server gets Ctrl+C,
            # and makes its pid the process group id that a forced stop kills.
            start_new_session=True,
        )
    with _children_lock:
        _children[process.pid] = process

    return Attempt(
        number=number,
        pid=process.pid,
        pid_start_ticks=_process_start_ticks(process.pid),
        started_at=time.time(),
        log_name=log_name,
        stdout_name=stdout_name,
        stderr_name=stderr_name,
        resume_from=str(resume_from) if resume_from is not None else None,
    )


def _trainer_argv(
    *,
    config_path: Path | None,
    checkpoint_path: Path,
    log_path: Path,
    stop_path: Path,
    resume_from: Path | None,
) -> list[str]:
    """Return the command line of the trainer process."""
    argv = [sys.executable, "-m", "cifarlab", "train"]
    if config_path is not None:
        argv += ["--config", str(config_path)]
    if resume_from is not None:
        argv += ["--resume", str(resume_from)]
    argv += [
        "--out", str(checkpoint_path),
        "--log", str(log_path),
        "--stop-file", str(stop_path),
    ]
    return argv


def _new_run_id(arch: str) -> str:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    safe_arch = re.sub(r"[^A-Za-z0-9_]+", "-", arch).strip("-") or "run"
    run_id = f"{stamp}-{safe_arch}"
    number = 2
    while (paths.runs_dir() / run_id).exists():
        run_id = f"{stamp}-{safe_arch}-{number}"
        number += 1
    return run_id


# --------------------------------------------------------------------------------------------
# Finding runs and their state


def get_run(run_id: str) -> Run:
    """Read the run ``run_id`` and work out its state now; raises RunError if it is missing."""
    folder = paths.runs_dir() / run_id
    if not (folder / STATUS_FILE).is_file():
        raise RunError(f"run {run_id!r} not found in {paths.runs_dir()}")
    return _read_run(folder)


def list_runs() -> list[Run]:
    """Return every run under ``runs_dir()``, newest first; unreadable folders are skipped."""
    root = paths.runs_dir()
    if not root.is_dir():
        return []
    runs = []
    for folder in root.iterdir():
        if not (folder / STATUS_FILE).is_file():
            continue
        try:
            runs.append(_read_run(folder))
        except (OSError, ValueError, KeyError, TypeError) as error:
            logger.warning("skipping unreadable run folder %s: %s", folder, error)
    runs.sort(key=lambda run: run.created_at, reverse=True)
    return runs


def active_run() -> Run | None:
    """Return the run that is still training, or None."""
    for run in list_runs():
        if run.is_running:
            return run
    return None


def _read_run(folder: Path) -> Run:
    status = _read_status(folder)
    config = json.loads((folder / CONFIG_FILE).read_text())
    attempts = [Attempt.from_dict(item) for item in status["attempts"]]
    if not attempts:
        raise ValueError(f"{folder / STATUS_FILE} lists no trainer process")

    last = attempts[-1]
    if last.state is None:
        settled = _settle_attempt(folder, last, stop_requested="stop_requested_at" in status)
        if settled.state is not None:
            attempts[-1] = settled
            _record_attempt(folder, settled)

    last = attempts[-1]
    return Run(
        run_id=status["run_id"],
        folder=folder,
        config=config,
        checkpoint_path=Path(status["checkpoint_path"]),
        created_at=float(status["created_at"]),
        attempts=tuple(attempts),
        state=last.state or RUNNING,
        stop_requested="stop_requested_at" in status and last.state is None,
        error=last.error,
    )


def _settle_attempt(folder: Path, attempt: Attempt, *, stop_requested: bool) -> Attempt:
    """Return ``attempt`` with its final state filled in if its process has ended."""
    returncode = _poll_child(attempt.pid)
    if returncode is None and _process_is_alive(attempt):
        return attempt

    end = _end_record(folder / attempt.log_name)
    stderr_text = _read_tail(folder / attempt.stderr_name, max_bytes=64_000)
    error = _error_message(stderr_text)

    if end is not None and end.get("status") == FAILED:
        state = FAILED
        error = end.get("error") or error or "the trainer reported a failure"
    elif end is not None and returncode in (None, 0):
        state = STOPPED if _end_is_stop(end, stop_requested) else COMPLETED
        error = None
    elif returncode is not None and returncode < 0:
        # Killed by a signal (a forced stop, the out-of-memory killer, a shutdown): whatever
        # it wrote is kept and the run can continue from its last checkpoint.
        state = INTERRUPTED
        error = f"the trainer was killed by {_signal_name(-returncode)}"
    elif returncode == _EXIT_INTERRUPTED:
        state = INTERRUPTED
    elif returncode is not None:
        state = FAILED
        error = error or f"the trainer exited with status {returncode}"
    elif error is not None:
        # NOTE: a trainer that ended while no process of this server was its parent (the
        # server restarted) has no exit status to read. An error on its stderr is then the
        # only sign that it failed rather than was killed.
        state = FAILED
    else:
        state = INTERRUPTED

    return dataclasses.replace(
        attempt,
        state=state,
        returncode=returncode,
        ended_at=_ended_at(folder, attempt, end),
        error=error,
    )


def _ended_at(folder: Path, attempt: Attempt, end: dict[str, Any] | None) -> float:
    """Return when the trainer of ``attempt`` ended, as well as its files tell."""
    if end is not None and end.get("time") is not None:
        return float(end["time"])
    # Without an end record, the last write to its log or output is the closest known time.
    times = []
    for name in (attempt.log_name, attempt.stdout_name, attempt.stderr_name):
        with contextlib.suppress(OSError):
            times.append((folder / name).stat().st_mtime)
    return max(times, default=time.time())


def _record_attempt(folder: Path, settled: Attempt) -> None:
    """Store the final state of ``settled`` in status.json, unless a resume replaced it."""
    with _runs_lock():
        status = _read_status(folder)
        for index, item in enumerate(status["attempts"]):
            if item.get("number") == settled.number and item.get("pid") == settled.pid:
                if item.get("state") is None:
                    status["attempts"][index] = settled.to_dict()
                    _write_json_atomic(folder / STATUS_FILE, status)
                    logger.info(
                        "run %s attempt %d ended: %s", folder.name, settled.number, settled.state
                    )
                return


def _end_is_stop(end: dict[str, Any], stop_requested: bool) -> bool:
    """Tell a stopped run from a finished one by its ``end`` record's status.

    Early stopping on the validation metric finishes a run; only a stop request stops it.
    """
    status = end.get("status")
    if status is not None:
        return status == STOPPED
    return stop_requested


def _end_record(log_path: Path) -> dict[str, Any] | None:
    records = read_records(log_path)
    for record in reversed(records):
        if record.get("event") == "end":
            return record
    return None


_ERROR_LINE = re.compile(r"^(error: .+|[A-Za-z_][\w.]*(Error|Exception): .+)$")


def _error_message(stderr_text: str) -> str | None:
    """Return the last error line of the trainer's stderr (a CLI error or an exception)."""
    for line in reversed(stderr_text.splitlines()):
        line = line.strip()
        if _ERROR_LINE.match(line):
            return line
    if "Traceback (most recent call last)" in stderr_text:
        return "the trainer raised an exception; see its log below"
    return None


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


# --------------------------------------------------------------------------------------------
# Processes

# The Popen objects of trainers started by this server. Keeping them stops the garbage
# collector's own reaping, which would hide their exit status.
_children: dict[int, subprocess.Popen] = {}
_children_lock = threading.Lock()


def _poll_child(pid: int) -> int | None:
    """Return the exit status of a trainer this process started, or None if unknown or alive."""
    with _children_lock:
        process = _children.get(pid)
    if process is not None:
        return process.poll()
    # A child started before this module was reloaded is still this process's child.
    try:
        waited_pid, wait_status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return None
    if waited_pid == 0:
        return None
    return os.waitstatus_to_exitcode(wait_status)


def _reap(pid: int, *, timeout_s: float) -> None:
    with _children_lock:
        process = _children.get(pid)
    if process is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=timeout_s)


def _process_is_alive(attempt: Attempt) -> bool:
    """Tell whether the trainer of ``attempt`` still runs, guarding against pid reuse."""
    stat = _read_proc_stat(attempt.pid)
    if stat is not None:
        state, start_ticks = stat
        if state in ("Z", "X"):
            return False
        return attempt.pid_start_ticks is None or start_ticks == attempt.pid_start_ticks
    if Path("/proc/self/stat").exists():
        return False

    # NOTE: without /proc (macOS), a pid reused by another process after the trainer ended
    # reads as a live trainer until that process ends too.
    try:
        os.kill(attempt.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _process_start_ticks(pid: int) -> int | None:
    stat = _read_proc_stat(pid)
    return stat[1] if stat is not None else None


def _read_proc_stat(pid: int) -> tuple[str, int] | None:
    """Return the state letter and start time (clock ticks since boot) from /proc/<pid>/stat."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name in field 2 may contain spaces and parentheses, so split after its last
    # closing parenthesis: field 3 is the state and field 22 the start time (proc(5)).
    fields = text[text.rindex(")") + 2 :].split()
    return fields[0], int(fields[19])


# --------------------------------------------------------------------------------------------
# Progress


@dataclass(frozen=True)
class Progress:
    """The progress of a run so far, from the trainer's log (record fields: ``cifarlab.train``).

    ``epochs`` contains one ``epoch`` record per finished epoch and ``batches`` the ``batch``
    records, which the live loss curve draws. After a resume, the resumed trainer's records
    replace those the earlier process wrote after the step it resumed from. ``start`` and
    ``end`` are the latest such records, or None.
    """

    start: dict[str, Any] | None
    epochs: list[dict[str, Any]]
    batches: list[dict[str, Any]]
    end: dict[str, Any] | None
    epochs_total: int | None

    @property
    def last_batch(self) -> dict[str, Any] | None:
        return self.batches[-1] if self.batches else None

    @property
    def epochs_done(self) -> int:
        return len(self.epochs)

    @property
    def finished(self) -> bool:
        """Whether the run trained to its end (all epochs, or early stopping)."""
        return self.end is not None and self.end.get("status") in (COMPLETED, "early_stopped")

    @property
    def fraction(self) -> float:
        """Fraction of the run's training steps done, in [0, 1]."""
        if self.finished:
            return 1.0
        batch = self.last_batch
        if batch is not None and batch.get("total_steps"):
            return _clip01(batch["step"] / batch["total_steps"])
        if self.epochs_total:
            return _clip01(self.epochs_done / self.epochs_total)
        return 0.0

    @property
    def images_per_s(self) -> float | None:
        """Training throughput of the current epoch (all processes together)."""
        for record in (self.last_batch, self.epochs[-1] if self.epochs else None):
            if record is not None and record.get("images_per_s"):
                return float(record["images_per_s"])
        return None

    @property
    def eta_s(self) -> float | None:
        """The trainer's estimate of the seconds left, from its latest record."""
        if self.end is not None:
            return 0.0
        latest = max(
            (record for record in (self.last_batch, self.epochs[-1] if self.epochs else None) if record),
            key=lambda record: record.get("time", 0.0),
            default=None,
        )
        if latest is None or latest.get("eta_s") is None:
            return None
        return float(latest["eta_s"])


def _clip01(value: float) -> float:
    return min(1.0, max(0.0, float(value)))


def read_progress(run: Run) -> Progress:
    """Parse the run's log files into a Progress; a half-written last line is left for later."""
    records: list[dict[str, Any]] = []
    for log_path in run.log_paths:
        records.extend(read_records(log_path))
    return _progress_from_records(records, run.config)


def _progress_from_records(records: list[dict[str, Any]], config: dict[str, Any]) -> Progress:
    start = None
    end = None
    epochs: dict[int, dict[str, Any]] = {}
    batches: list[dict[str, Any]] = []
    for record in records:
        event = record.get("event")
        if event == "start":
            start = record
            end = None
            # A resumed trainer continues from the step of its resume state. The earlier
            # process's records after that step describe training that was lost, so they go.
            start_epoch = int(record.get("start_epoch") or 0)
            start_step = record.get("start_step")
            epochs = {number: item for number, item in epochs.items() if number <= start_epoch}
            if start_step is not None:
                batches = [item for item in batches if int(item.get("step", 0)) <= start_step]
            else:
                batches = [item for item in batches if int(item.get("epoch", 0)) <= start_epoch]
        elif event == "batch":
            batches.append(record)
        elif event == "epoch":
            epochs[int(record.get("epoch", len(epochs) + 1))] = record
        elif event == "end":
            end = record

    epochs_total = None
    if start is not None and start.get("epochs") is not None:
        epochs_total = int(start["epochs"])
    elif config.get("epochs") is not None:
        epochs_total = int(config["epochs"])
    return Progress(
        start=start,
        epochs=[epochs[number] for number in sorted(epochs)],
        batches=batches,
        end=end,
        epochs_total=epochs_total,
    )


@dataclass
class _LogCache:
    identity: tuple[int, int]
    offset: int
    records: list[dict[str, Any]]


_log_cache: dict[Path, _LogCache] = {}
_log_cache_lock = threading.Lock()


def read_records(log_path: Path) -> list[dict[str, Any]]:
    """Return the complete JSON records of a JSON-lines log, reading only what is new.

    A last line without its newline is still being written by the trainer, so a later call
    reads it. A line that is not valid JSON is skipped with a warning. A missing file has no
    records.
    """
    try:
        stat = log_path.stat()
    except FileNotFoundError:
        return []
    identity = (stat.st_dev, stat.st_ino)

    with _log_cache_lock:
        cache = _log_cache.get(log_path)
        if cache is None or cache.identity != identity or stat.st_size < cache.offset:
            cache = _LogCache(identity=identity, offset=0, records=[])
            _log_cache[log_path] = cache
        if stat.st_size > cache.offset:
            with open(log_path, "rb") as file:
                file.seek(cache.offset)
                chunk = file.read(stat.st_size - cache.offset)
            complete = chunk[: chunk.rfind(b"\n") + 1]
            for line in complete.splitlines():
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    logger.warning("skipping a malformed line in %s: %.80r", log_path, line)
                    continue
                if isinstance(record, dict):
                    cache.records.append(record)
            cache.offset += len(complete)
        return list(cache.records)


def log_tail(run: Run, *, lines: int = 40, stream: str = "stderr") -> str:
    """Return the last ``lines`` lines of the latest trainer's ``stderr`` or ``stdout``."""
    path = run.stderr_path if stream == "stderr" else run.stdout_path
    text = _read_tail(path, max_bytes=256 * lines)
    # Progress bars redraw with carriage returns; keep only the last drawing of each line.
    cleaned = [line.rsplit("\r", 1)[-1] for line in text.rstrip("\n").split("\n")]
    return "\n".join(cleaned[-lines:])


def _read_tail(path: Path, *, max_bytes: int) -> str:
    try:
        with open(path, "rb") as file:
            file.seek(0, os.SEEK_END)
            size = file.tell()
            file.seek(max(0, size - max_bytes))
            return file.read().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return ""


def format_duration(seconds: float | None) -> str:
    """Format a duration in seconds as ``1 h 02 min``, ``3 min 05 s`` or ``12 s``."""
    if seconds is None or not math.isfinite(seconds):
        return "unknown"
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    if minutes:
        return f"{minutes} min {secs:02d} s"
    return f"{secs} s"


# --------------------------------------------------------------------------------------------
# Files


def _read_status(folder: Path) -> dict[str, Any]:
    return json.loads((folder / STATUS_FILE).read_text())


def _write_json_atomic(path: Path, data: Any) -> None:
    _write_text_atomic(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def _write_text_atomic(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


_lock_depth = threading.local()


@contextlib.contextmanager
def _runs_lock() -> Iterator[None]:
    """Hold an exclusive lock on the runs folder, across threads and processes; reentrant.

    ``flock`` locks belong to an open file description, so two threads of the app server that
    each open the lock file exclude each other as two processes would. A thread that already
    holds the lock only counts the nesting, because a second ``flock`` would wait for itself.
    """
    depth = getattr(_lock_depth, "value", 0)
    if depth:
        _lock_depth.value = depth + 1
        try:
            yield
        finally:
            _lock_depth.value = depth
        return

    root = paths.runs_dir()
    root.mkdir(parents=True, exist_ok=True)
    with open(root / _LOCK_FILE, "a") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        _lock_depth.value = 1
        try:
            yield
        finally:
            _lock_depth.value = 0
            fcntl.flock(lock_file, fcntl.LOCK_UN)
