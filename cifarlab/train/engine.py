"""The training loop: batches sliced from device tensors, augmented on the device, logged."""

from __future__ import annotations

import copy
import logging
import math
import os
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cifarlab.train.config import TrainConfig
from cifarlab.train.dataset import TrainingData, prepare_data
from cifarlab.train.distributed import (
    DistributedContext,
    all_reduce_sum,
    init_distributed,
    resolve_device,
    shutdown_distributed,
)
from cifarlab.train.optim import build_optimizer, lr_at_step, set_lr
from cifarlab.train.records import Callback, RecordSink
from cifarlab.train.state import (
    delete_resume_state,
    load_resume_state,
    merge_resume_config,
    resume_path_for,
    save_resume_state,
)

logger = logging.getLogger(__name__)

COMPLETED = "completed"
STOPPED = "stopped"
EARLY_STOPPED = "early_stopped"
FAILED = "failed"
RUNNING = "running"  # checkpoint status between epochs, and of a run that failed later

TEST_NOTE = "measured once on the best-on-validation model after training; never used for selection"

# An estimate: a forward pass without gradients costs about a third of a training step per
# image. The ETA uses it for validation until the first validation pass has been timed.
EVAL_COST_RATIO = 1 / 3


class StopRequest(Protocol):
    def is_set(self) -> bool: ...


class TrainError(ValueError):
    """A run that cannot go on, such as one with a diverging loss; the message names the fix."""


@dataclass
class TrainResult:
    """Outcome of a completed, stopped or early-stopped run."""

    status: str  # completed, stopped or early_stopped
    config: TrainConfig
    model: nn.Module  # best-on-validation weights (the latest if no epoch finished), CPU, eval mode
    history: list[dict[str, Any]]  # the epoch records, in order
    epochs_completed: int
    best_epoch: int | None  # 1-based; None before the first finished epoch
    best_val_loss: float | None
    best_val_acc: float | None
    test_acc: float | None  # measured once on the final best model; never used for selection
    test_loss: float | None
    checkpoint_path: Path | None
    resume_path: Path | None  # resume state left for a stopped run, else None
    train_time_s: float  # seconds spent training and validating, summed over resumed sessions
    device: str
    world_size: int = 1
    notes: list[str] = field(default_factory=list)


def train(
    config: TrainConfig | None,
    data: Any = None,
    *,
    callback: Callback | None = None,
    stop: StopRequest | None = None,
    resume_from: str | os.PathLike | None = None,
    checkpoint_path: str | os.PathLike | None = None,
    log_path: str | os.PathLike | None = None,
) -> TrainResult:
    """Train ``config.arch`` on CIFAR-10 and keep the best-on-validation weights.

    Args:
        config: the run's hyperparameters. With ``resume_from`` it may be None (use the stored
            config) or differ from the stored one only in hardware and reporting fields.
        data: a ``cifarlab.data.Cifar10`` (or any object with its four arrays); None loads
            ``config.data_source``.
        callback: called with each progress record (a plain dict) on rank 0.
        stop: a ``threading.Event``-like object; once set, training ends after the current
            batch, writing the checkpoint and resume state.
        resume_from: a checkpoint (or its ``.resume.pt``) of a stopped run to continue.
        checkpoint_path: where to write the checkpoint after every epoch; with ``resume_from``
            and no path, the resumed checkpoint is updated in place. None writes no file.
        log_path: JSON-lines file receiving every record (rank 0 only).

    Raises:
        ValueError: on invalid data or a resume state that does not fit; ``TrainError`` when
            the loss diverges. A failure after the start record writes an ``end`` record with
            status ``failed`` before it propagates.
    """
    resume_state = None
    resume_source = None
    if resume_from is not None:
        resume_state, resume_source = load_resume_state(resume_from)
        stored = TrainConfig.from_dict(resume_state["config"])
        config = merge_resume_config(stored, config)
        if checkpoint_path is None:
            checkpoint_path = resume_state.get("checkpoint_path")
    if config is None:
        raise ValueError("train() needs a TrainConfig, or resume_from to read one from a checkpoint")

    if config.num_threads is not None:
        torch.set_num_threads(config.num_threads)
    device = resolve_device(config.device)
    context, device = init_distributed(device)
    try:
        run = _Run(
            config,
            device,
            context,
            checkpoint_path=Path(checkpoint_path) if checkpoint_path is not None else None,
            sink=RecordSink(callback, log_path, append=resume_state is not None) if context.is_main else None,
        )
        try:
            try:
                run.setup(data, resume_state, resume_source)
            except BaseException as error:
                run.record_failure(error)
                raise
            return run.fit(stop)
        finally:
            run.close()
    finally:
        shutdown_distributed(context)


def _derive_seed(*parts: int) -> int:
    """Mix integers into one 32-bit seed (order matters), for counter-based random streams."""
    return int(np.random.SeedSequence([int(part) for part in parts]).generate_state(1)[0])


def _cpu_copy(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {
        name: tensor.detach().to("cpu", memory_format=torch.contiguous_format, copy=True)
        for name, tensor in state.items()
    }


class _Run:
    """The state of one training session (a fresh start or one resumption)."""

    def __init__(
        self,
        config: TrainConfig,
        device: torch.device,
        context: DistributedContext,
        *,
        checkpoint_path: Path | None,
        sink: RecordSink | None,
    ):
        self.config = config
        self.device = device
        self.context = context
        self.checkpoint_path = checkpoint_path
        self.resume_path = resume_path_for(checkpoint_path) if checkpoint_path is not None else None
        self.sink = sink
        self.notes: list[str] = []

        # Position: epochs fully done, steps done inside the current epoch, steps done overall.
        self.epoch = 0
        self.epoch_step = 0
        self.global_step = 0
        self.history: list[dict[str, Any]] = []
        self.best: dict[str, Any] | None = None  # epoch, val_loss, val_acc of the best epoch
        self.best_state: dict[str, torch.Tensor] | None = None
        self.epochs_without_improvement = 0
        self.train_time_s = 0.0  # summed over earlier sessions of this run
        self.last_val_time_s: float | None = None
        self.resumed_epoch_sums: torch.Tensor | None = None  # of a half-finished epoch
        self.seconds_per_step: float | None = None  # training pace of this session
        # MPS has no float64; float32 sums of at most one epoch's images stay exact enough.
        self.sums_dtype = torch.float32 if device.type == "mps" else torch.float64

    # --- set-up -----------------------------------------------------------------------------

    def setup(self, data: Any, resume_state: dict[str, Any] | None, resume_source: Path | None) -> None:
        config = self.config
        self._configure_precision()

        self.data: TrainingData = prepare_data(config, data, self.device)
        self.notes.extend(self.data.notes)
        self.steps_per_epoch = self._steps_per_epoch()
        self.total_steps = self.steps_per_epoch * config.epochs

        from cifarlab.augment import BatchAugmenter, Recipe
        from cifarlab.data import NUM_CLASSES
        from cifarlab.models import build_model

        self.augmenter = BatchAugmenter(Recipe.from_dict(config.recipe))

        # Seeding right before the build makes the initial weights a function of the seed alone.
        # A resumed run loads every weight from its resume state, so it needs no ImageNet file.
        torch.manual_seed(config.seed)
        model = build_model(
            config.arch,
            num_classes=NUM_CLASSES,
            fetch_weights=resume_state is None,
            **config.arch_options,
        )
        self.best_model = copy.deepcopy(model).eval()  # stays on the CPU with the best weights
        model = model.to(self.device)
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.model = model
        self.optimizer = build_optimizer(model, config)
        self.scaler = torch.amp.GradScaler("cuda") if self.amp_dtype == torch.float16 else None

        if resume_state is not None:
            self._restore(resume_state)

        self.parallel_model = model
        if self.context.enabled:
            device_ids = [self.device.index] if self.device.type == "cuda" else None
            self.parallel_model = nn.parallel.DistributedDataParallel(model, device_ids=device_ids)

        self._emit(
            "start",
            config=config.to_dict(),
            arch=config.arch,
            epochs=config.epochs,
            start_epoch=self.epoch,
            start_step=self.global_step,
            resumed_from=str(resume_source) if resume_source is not None else None,
            sizes=self.data.sizes(),
            steps_per_epoch=self.steps_per_epoch,
            total_steps=self.total_steps,
            batch_size=config.batch_size,
            device=str(self.device),
            world_size=self.context.world_size,
            amp=self.amp_dtype is not None,
            amp_dtype=str(self.amp_dtype).removeprefix("torch.") if self.amp_dtype else None,
            channels_last=self.channels_last,
            parameters=sum(p.numel() for p in model.parameters()),
            trainable_parameters=sum(p.numel() for p in model.parameters() if p.requires_grad),
            data_source=self.data.source,
            split=self.data.split,
            checkpoint=str(self.checkpoint_path) if self.checkpoint_path else None,
            torch_version=torch.__version__,
            notes=list(self.notes),
        )
        if self.context.is_main:
            for note in self.notes:
                logger.info("%s", note)

    def _configure_precision(self) -> None:
        config = self.config
        self.amp_dtype = None
        if config.amp and self.device.type == "cuda":
            self.amp_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        elif config.amp:
            self.notes.append(f"amp=True is ignored on {self.device.type}: mixed precision is used on CUDA only")

        self.channels_last = config.channels_last
        if self.device.type == "cuda":
            # Lets cuDNN time its convolution algorithms once per input shape and keep the
            # fastest; results on a GPU are then not bit-for-bit repeatable.
            torch.backends.cudnn.benchmark = True

    def _steps_per_epoch(self) -> int:
        images = len(self.data.train_labels)
        batch_size = self.config.batch_size
        world_size = self.context.world_size
        if batch_size < world_size:
            raise ValueError(
                f"invalid batch_size={batch_size}: a distributed run needs at least one image per "
                f"process, so use a batch size of at least {world_size}"
            )
        steps = math.ceil(images / batch_size)
        # A last batch of fewer than two images per process is dropped: batch norm cannot
        # compute a variance from one value per channel.
        last = images - (steps - 1) * batch_size
        if last < 2 * world_size and steps > 1:
            steps -= 1
        if steps == 0 or images < 2 * world_size:
            raise ValueError(
                f"the training split has {images} image(s), too few to train on; lower val_size "
                "or raise train_subset"
            )
        return steps

    def _restore(self, state: dict[str, Any]) -> None:
        if state["steps_per_epoch"] != self.steps_per_epoch:
            raise ValueError(
                f"cannot resume: the stored run has {state['steps_per_epoch']} steps per epoch but "
                f"this data gives {self.steps_per_epoch}; resume with the same data source"
            )
        self.model.load_state_dict(state["model_state"])
        self.optimizer.load_state_dict(state["optimizer_state"])
        if self.scaler is not None and state.get("scaler_state"):
            self.scaler.load_state_dict(state["scaler_state"])
        torch.set_rng_state(state["rng_state"])
        if self.device.type == "cuda" and state.get("cuda_rng_state") is not None:
            torch.cuda.set_rng_state(state["cuda_rng_state"], self.device)

        self.epoch = int(state["epoch"])
        self.epoch_step = int(state["epoch_step"])
        self.global_step = int(state["global_step"])
        self.history = list(state["history"])
        self.best = state["best"]
        self.best_state = state["best_state"]
        if self.best_state is not None:
            self.best_model.load_state_dict(self.best_state)
        self.epochs_without_improvement = int(state["epochs_without_improvement"])
        self.train_time_s = float(state["train_time_s"])
        self.last_val_time_s = state.get("last_val_time_s")
        self.resumed_epoch_sums = state.get("epoch_sums")

    # --- training -----------------------------------------------------------------------------

    def fit(self, stop: StopRequest | None) -> TrainResult:
        status = COMPLETED
        try:
            while self.epoch < self.config.epochs:
                if not self._train_epoch(stop):
                    status = STOPPED
                    break
                if self._finish_epoch():
                    status = EARLY_STOPPED
                    break
            return self._finish(status)
        except BaseException as error:
            logger.error("training failed at epoch %d, step %d: %s", self.epoch + 1, self.global_step, error)
            self.record_failure(error)
            raise

    def record_failure(self, error: BaseException) -> None:
        """Emit the ``end`` record of a failed run; the files of the last good epoch stay."""
        self._emit(
            "end",
            status=FAILED,
            error=f"{type(error).__name__}: {error}",
            epochs_completed=self.epoch,
            **self._best_fields(),
            checkpoint=str(self.checkpoint_path) if self._checkpoint_exists() else None,
            resume_state=str(self.resume_path) if self._resume_exists() else None,
            train_time_s=self._train_time(),
        )

    def _train_epoch(self, stop: StopRequest | None) -> bool:
        """Run the rest of the current epoch; return False if a stop request ended it early."""
        config = self.config
        data = self.data
        rank, world_size = self.context.rank, self.context.world_size
        self.parallel_model.train()

        # The shuffle order and each batch's augmentation are functions of (seed, epoch, step,
        # rank): a run resumed mid-epoch or split over processes needs no saved generator state.
        shuffle = torch.Generator().manual_seed(_derive_seed(config.seed, 0, self.epoch))
        order = torch.randperm(len(data.train_labels), generator=shuffle).to(self.device)
        augment_generator = torch.Generator(device=self.device)

        # Sums of loss * images, correct predictions and images, kept on the device so that no
        # step waits for the GPU; they are read only when a record is due.
        epoch_sums = torch.zeros(3, dtype=self.sums_dtype, device=self.device)
        if self.resumed_epoch_sums is not None:
            # The stored sums cover all processes, so only one process adds them back.
            if self.context.is_main:
                epoch_sums += self.resumed_epoch_sums.to(self.device, self.sums_dtype)
            self.resumed_epoch_sums = None
        window_sums = torch.zeros_like(epoch_sums)

        self.epoch_start = time.perf_counter()
        self.epoch_steps_timed = 0
        self.epoch_images_timed = 0.0
        while self.epoch_step < self.steps_per_epoch:
            begin = self.epoch_step * config.batch_size
            batch_ids = order[begin : begin + config.batch_size][rank::world_size]
            images = data.train_images[batch_ids]
            labels = data.train_labels[batch_ids]
            augment_generator.manual_seed(_derive_seed(config.seed, 1, self.epoch, self.epoch_step, rank))
            inputs, targets = self.augmenter(images, labels, augment_generator)

            lr = lr_at_step(config, self.global_step, self.steps_per_epoch)
            step_sums = self._train_step(inputs, targets, lr)
            epoch_sums += step_sums
            window_sums += step_sums
            self.epoch_step += 1
            self.global_step += 1
            self.epoch_steps_timed += 1

            last_step = self.epoch_step == self.steps_per_epoch
            if self.epoch_step % config.log_every_steps == 0 or last_step:
                self._log_batch(window_sums, lr)
                window_sums.zero_()
            if self._stop_requested(stop):
                self._save_stopped(epoch_sums)
                return False

        self.epoch_sums = epoch_sums
        return True

    def _train_step(self, inputs: torch.Tensor, targets: torch.Tensor, lr: float) -> torch.Tensor:
        if self.channels_last:
            inputs = inputs.contiguous(memory_format=torch.channels_last)
        set_lr(self.optimizer, lr)

        with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None):
            logits = self.parallel_model(inputs)
        # Soft targets carry mixup's label mixture; label smoothing spreads a share of each
        # target over all classes on top of that.
        loss = F.cross_entropy(logits.float(), targets, label_smoothing=self.config.label_smoothing)

        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            loss.backward()
            self.optimizer.step()

        # Accuracy counts a hit when the top logit is the target's largest class (for a mixed
        # image, the label with the larger share).
        count = len(targets)
        with torch.no_grad():
            correct = (logits.argmax(dim=1) == targets.argmax(dim=1)).sum()
            # full_like fills on the device, so no step copies a number from the host.
            sums = torch.stack([loss.detach() * count, correct.float(), torch.full_like(loss, count)])
        return sums.to(self.sums_dtype)

    def _log_batch(self, window_sums: torch.Tensor, lr: float) -> None:
        totals = all_reduce_sum(window_sums.clone(), self.context).tolist()
        loss_sum, correct, count = totals
        loss = loss_sum / count
        if not math.isfinite(loss):
            raise TrainError(
                f"the training loss became {loss} at epoch {self.epoch + 1}, step {self.epoch_step}; "
                f"lower the learning rate (lr={self.config.lr}) or turn on warm-up"
            )
        elapsed = time.perf_counter() - self.epoch_start
        self.epoch_images_timed += count
        self.seconds_per_step = elapsed / self.epoch_steps_timed
        images_per_s = self.epoch_images_timed / elapsed if elapsed > 0 else None
        self._emit(
            "batch",
            epoch=self.epoch + 1,
            epochs=self.config.epochs,
            batch=self.epoch_step,
            batches=self.steps_per_epoch,
            step=self.global_step,
            total_steps=self.total_steps,
            loss=loss,
            acc=correct / count,
            lr=lr,
            images_per_s=images_per_s,
            eta_s=self._eta(),
        )

    def _stop_requested(self, stop: StopRequest | None) -> bool:
        requested = stop is not None and stop.is_set()
        if not self.context.enabled:
            return requested
        # Every process must stop at the same step, or the others would wait forever in the
        # next gradient all-reduce.
        flag = torch.tensor([1.0 if requested else 0.0], device=self.device)
        return all_reduce_sum(flag, self.context).item() > 0

    # --- end of an epoch --------------------------------------------------------------------

    def _finish_epoch(self) -> bool:
        """Validate, record and save the epoch just trained; return True to stop early."""
        config = self.config
        train_seconds = time.perf_counter() - self.epoch_start
        loss_sum, correct, count = all_reduce_sum(self.epoch_sums.clone(), self.context).tolist()

        val_start = time.perf_counter()
        val_loss, val_acc = self.evaluate(self.data.val_images, self.data.val_labels)
        val_seconds = time.perf_counter() - val_start
        if len(self.data.val_labels):
            self.last_val_time_s = val_seconds

        self.epoch += 1
        self.epoch_step = 0
        improved = self._update_best(val_loss, val_acc)
        self.train_time_s += train_seconds + val_seconds

        record = self._emit(
            "epoch",
            epoch=self.epoch,
            epochs=config.epochs,
            step=self.global_step,
            train_loss=loss_sum / count,
            train_acc=correct / count,
            val_loss=val_loss,
            val_acc=val_acc,
            lr=lr_at_step(config, self.global_step - 1, self.steps_per_epoch),
            epoch_time_s=train_seconds + val_seconds,
            epoch_train_s=train_seconds,
            epoch_val_s=val_seconds,
            images_per_s=self.epoch_images_timed / train_seconds if self.epoch_steps_timed else None,
            eta_s=self._eta(),
            is_best=improved,
            best_epoch=self.best["epoch"] if self.best else None,
            epochs_without_improvement=self.epochs_without_improvement,
        )
        self.history.append(record)

        stop_early = config.early_stopping and self.epochs_without_improvement >= config.patience
        self._save(RUNNING)
        if stop_early:
            logger.info(
                "early stopping after epoch %d: %s has not improved for %d epochs",
                self.epoch,
                config.monitor,
                self.epochs_without_improvement,
            )
        return stop_early

    def _update_best(self, val_loss: float | None, val_acc: float | None) -> bool:
        config = self.config
        if val_loss is None:
            # Without a validation split the latest epoch is the one kept.
            improved = True
        else:
            value = val_acc if config.monitor == "val_acc" else val_loss
            if self.best is None:
                improved = True
            elif config.monitor_mode == "max":
                improved = value > self.best[config.monitor] + config.min_delta
            else:
                improved = value < self.best[config.monitor] - config.min_delta

        if improved:
            self.best = {"epoch": self.epoch, "val_loss": val_loss, "val_acc": val_acc}
            self.best_state = _cpu_copy(self.model.state_dict())
            self.best_model.load_state_dict(self.best_state)
            self.epochs_without_improvement = 0
        else:
            self.epochs_without_improvement += 1
        return improved

    @torch.no_grad()
    def evaluate(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[float | None, float | None]:
        """Return the mean cross-entropy (no label smoothing) and accuracy, summed over processes."""
        if len(labels) == 0:
            return None, None
        model = self.model
        was_training = model.training
        model.eval()
        if self.context.enabled:
            # Each process updates its batch-norm running statistics from its own images, so
            # they drift apart. Evaluating with rank 0's, which are the ones saved, keeps the
            # metrics true to the checkpoint.
            for buffer in model.buffers():
                torch.distributed.broadcast(buffer, src=0)

        # Each process evaluates every world_size-th image; the sums make every process see the
        # same metrics, so early stopping and selection agree across processes.
        shard = slice(self.context.rank, None, self.context.world_size)
        images, labels = images[shard], labels[shard]
        sums = torch.zeros(3, dtype=self.sums_dtype, device=self.device)
        for begin in range(0, len(labels), self.config.eval_batch_size):
            batch = images[begin : begin + self.config.eval_batch_size].float().div_(255)
            batch_labels = labels[begin : begin + self.config.eval_batch_size]
            if self.channels_last:
                batch = batch.contiguous(memory_format=torch.channels_last)
            with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None):
                logits = model(batch)
            sums[0] += F.cross_entropy(logits.float(), batch_labels, reduction="sum")
            sums[1] += (logits.argmax(dim=1) == batch_labels).sum()
            sums[2] += len(batch_labels)
        model.train(was_training)

        loss_sum, correct, count = all_reduce_sum(sums, self.context).tolist()
        return loss_sum / count, correct / count

    # --- saving -----------------------------------------------------------------------------

    def _save_stopped(self, epoch_sums: torch.Tensor) -> None:
        self.train_time_s += time.perf_counter() - self.epoch_start
        epoch_sums = all_reduce_sum(epoch_sums.clone(), self.context)
        if self.best_state is None:
            # No epoch has finished, so no weights were validated: keep the latest ones so the
            # stopped run still has a model to show and resume from.
            self.best_model.load_state_dict(_cpu_copy(self.model.state_dict()))
        self._save(STOPPED, epoch_sums=epoch_sums)

    def _save(
        self,
        status: str,
        *,
        epoch_sums: torch.Tensor | None = None,
        test: dict[str, Any] | None = None,
        final: bool = False,
    ) -> None:
        """Write the checkpoint (best weights) and, unless final, the resume state; rank 0 only."""
        if self.checkpoint_path is None or not self.context.is_main:
            return
        from cifarlab.checkpoints import save_checkpoint

        save_checkpoint(self.checkpoint_path, self.best_model, self._checkpoint_meta(status, test))
        if final:
            return
        save_resume_state(
            self.resume_path,
            {
                "config": self.config.to_dict(),
                "checkpoint_path": str(self.checkpoint_path),
                "epoch": self.epoch,
                "epoch_step": self.epoch_step,
                "global_step": self.global_step,
                "steps_per_epoch": self.steps_per_epoch,
                "epoch_sums": epoch_sums.detach().cpu() if epoch_sums is not None else None,
                "model_state": _cpu_copy(self.model.state_dict()),
                "optimizer_state": self.optimizer.state_dict(),
                "scaler_state": self.scaler.state_dict() if self.scaler is not None else None,
                "rng_state": torch.get_rng_state(),
                "cuda_rng_state": torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None,
                "history": self.history,
                "best": self.best,
                "best_state": self.best_state,
                "epochs_without_improvement": self.epochs_without_improvement,
                "train_time_s": self.train_time_s,
                "last_val_time_s": self.last_val_time_s,
            },
        )

    def _checkpoint_meta(self, status: str, test: dict[str, Any] | None) -> dict[str, Any]:
        """Return the checkpoint metadata, in the keys ``cifarlab.checkpoints`` documents."""
        from cifarlab.data import CLASSES

        config = self.config
        meta = {
            "config": config.to_dict(),
            "class_names": list(CLASSES),
            "history": self.history,
            "best": dict(self.best, monitor=config.monitor) if self.best else None,
            "data": {
                "source": self.data.source,
                "description": self.data.description,
                "split": self.data.split,
            },
            "training": {
                "status": status,
                "epochs_completed": self.epoch,
                "epochs": config.epochs,
                "time_s": self._train_time(),
                "device": str(self.device),
                "world_size": self.context.world_size,
                "amp_dtype": str(self.amp_dtype).removeprefix("torch.") if self.amp_dtype else None,
                "host": platform.node(),
            },
        }
        if test is not None:
            meta["test"] = test
        return meta

    # --- end of the run ---------------------------------------------------------------------

    def _finish(self, status: str) -> TrainResult:
        test_loss = test_acc = None
        if status in (COMPLETED, EARLY_STOPPED):
            if self.best_state is not None:
                self.model.load_state_dict(self.best_state)
            if self.config.evaluate_test and self.data.test_labels is not None:
                test_loss, test_acc = self.evaluate(self.data.test_images, self.data.test_labels)
            test = {"acc": test_acc, "loss": test_loss, "note": TEST_NOTE} if test_acc is not None else None
            self._save(status, test=test, final=True)
            if self.resume_path is not None and self.context.is_main:
                delete_resume_state(self.resume_path)

        resume_left = status == STOPPED and self._resume_exists()
        self._emit(
            "end",
            status=status,
            epochs_completed=self.epoch,
            **self._best_fields(),
            test_acc=test_acc,
            test_loss=test_loss,
            test_note=TEST_NOTE if test_acc is not None else None,
            checkpoint=str(self.checkpoint_path) if self._checkpoint_exists() else None,
            resume_state=str(self.resume_path) if resume_left else None,
            train_time_s=self._train_time(),
        )
        return TrainResult(
            status=status,
            config=self.config,
            model=self.best_model.eval(),
            history=list(self.history),
            epochs_completed=self.epoch,
            best_epoch=self.best["epoch"] if self.best else None,
            best_val_loss=self.best["val_loss"] if self.best else None,
            best_val_acc=self.best["val_acc"] if self.best else None,
            test_acc=test_acc,
            test_loss=test_loss,
            checkpoint_path=self.checkpoint_path if self._checkpoint_exists() else None,
            resume_path=self.resume_path if resume_left else None,
            train_time_s=self._train_time(),
            device=str(self.device),
            world_size=self.context.world_size,
            notes=list(self.notes),
        )

    def _best_fields(self) -> dict[str, Any]:
        best = self.best or {}
        return {
            "monitor": self.config.monitor,
            "best_epoch": best.get("epoch"),
            "best_val_loss": best.get("val_loss"),
            "best_val_acc": best.get("val_acc"),
        }

    def _eta(self) -> float | None:
        """Estimate the seconds left: remaining steps at this session's pace, plus evaluation."""
        seconds_per_step = self.seconds_per_step
        if seconds_per_step is None:
            return None
        remaining_steps = self.total_steps - self.global_step
        seconds_per_image = seconds_per_step / self.config.batch_size

        val_images = len(self.data.val_labels)
        val_seconds = self.last_val_time_s
        if val_seconds is None:
            val_seconds = val_images * seconds_per_image * EVAL_COST_RATIO
        # The epoch being trained has not been validated yet, even after its last step.
        remaining_validations = self.config.epochs - self.epoch
        test_images = len(self.data.test_labels) if self.data.test_labels is not None and self.config.evaluate_test else 0
        test_seconds = test_images * seconds_per_image * EVAL_COST_RATIO
        return remaining_steps * seconds_per_step + remaining_validations * val_seconds + test_seconds

    def _train_time(self) -> float:
        return round(self.train_time_s, 3)

    def _checkpoint_exists(self) -> bool:
        return self.checkpoint_path is not None and self.checkpoint_path.is_file()

    def _resume_exists(self) -> bool:
        return self.resume_path is not None and self.resume_path.is_file()

    def _emit(self, event: str, **fields: Any) -> dict[str, Any]:
        if self.sink is None:
            return {"event": event, **fields}
        return self.sink.emit(event, **fields)

    def close(self) -> None:
        if self.sink is not None:
            self.sink.close()
