"""Training: one config, one loop, progress as records, checkpoints that resume exactly.

``train(config, data)`` trains ``config.arch`` on the training split, validates after every
epoch, keeps the best-on-validation weights and writes them with the run's metadata through
:mod:`cifarlab.checkpoints` after every epoch. The data stay on the device as ``uint8`` tensors.
Each batch is sliced from them in an order drawn by a seeded generator and augmented on the
device by :class:`cifarlab.augment.BatchAugmenter`, so no Python code runs per image. The test set is
never used to pick the model; ``test_acc`` is measured once, on the final best model.

Progress records
----------------
Every record is a plain dict of JSON values, passed to ``callback`` and written as one line of
the JSON-lines ``log_path`` (flushed at once; a resumed run appends, a new run truncates). All
records carry ``event`` and ``time`` (Unix seconds). Losses are cross-entropy in nats per image,
accuracies are fractions in [0, 1], ``lr`` is the learning rate of the step, ``eta_s`` is an
estimate of the seconds left (training at this session's pace plus the remaining validation
and test passes), and values that do not exist yet are null. Epochs are counted from 1.

``start``
    ``config`` (``TrainConfig.to_dict()``), ``arch``, ``epochs`` (target), ``start_epoch``
    (epochs already done, 0 unless resumed), ``start_step``, ``resumed_from`` (path or null),
    ``sizes`` ({"train", "val", "test"}: image counts, "train" with any offline copies),
    ``steps_per_epoch``, ``total_steps``,
    ``batch_size``, ``device``, ``world_size``, ``amp``, ``amp_dtype``, ``channels_last``,
    ``parameters``, ``trainable_parameters``, ``data_source``, ``split`` (seed, sizes and a
    fingerprint of the validation ids), ``checkpoint``, ``torch_version``, ``notes`` (list of
    strings, for example that ``amp`` is ignored on the CPU).
``batch`` (every ``log_every_steps`` steps and at the last step of each epoch)
    ``epoch``, ``epochs``, ``batch`` (steps done in this epoch), ``batches`` (steps per epoch),
    ``step`` (steps done in the run), ``total_steps``, ``loss`` and ``acc`` (means over the
    steps since the previous batch record, with label smoothing and on the augmented images;
    on a mixed image a hit is the label with the larger share), ``lr``, ``images_per_s``
    (training images per second so far in this epoch, all processes together), ``eta_s``.
``epoch``
    ``epoch``, ``epochs``, ``step``, ``train_loss``, ``train_acc`` (means over the epoch, as
    in ``batch``), ``val_loss``, ``val_acc`` (plain cross-entropy and accuracy on the
    validation split; null when ``val_size`` is 0), ``lr`` (of the last step), ``epoch_time_s``
    (``epoch_train_s`` + ``epoch_val_s``, the seconds spent training and validating),
    ``images_per_s``, ``eta_s``, ``is_best``, ``best_epoch``, ``epochs_without_improvement``.
``end``
    ``status`` (``completed``, ``stopped``, ``early_stopped`` or ``failed``),
    ``epochs_completed``, ``monitor``, ``best_epoch``, ``best_val_loss``, ``best_val_acc``,
    ``test_acc``, ``test_loss`` and ``test_note`` (null unless measured; never used for
    selection), ``checkpoint`` (path of the written file or null), ``resume_state`` (path, for
    a stopped or failed run), ``train_time_s`` (all sessions), and ``error`` when failed.

Checkpoints and resuming
------------------------
``checkpoint_path`` receives, after every epoch and at the end, the best weights so far with
``config``, ``history`` (the epoch records), ``best``, ``data``, ``training`` and, at the end,
``test`` in its metadata. A run stopped before its first epoch ends saves its latest weights,
and ``best`` is null. Beside it, ``name.resume.pt`` holds the full training state (see
:mod:`cifarlab.train.state`); ``train(None, resume_from=checkpoint_path)`` continues from
the exact step where the run stopped, to the same epoch target and schedule position.

Distributed training
--------------------
Under ``torchrun`` every process runs ``train`` with the same config: each takes a share of
every batch (``batch_size`` is the global batch), gradients are averaged by
DistributedDataParallel (gloo on the CPU, nccl on CUDA), validation is split over the processes
and summed, and only rank 0 writes the log and the files.
"""

from cifarlab.train.config import MONITORS, OPTIMIZERS, SCHEDULES, TrainConfig
from cifarlab.train.engine import (
    COMPLETED,
    EARLY_STOPPED,
    FAILED,
    STOPPED,
    TrainError,
    TrainResult,
    train,
)
from cifarlab.train.optim import lr_at_step
from cifarlab.train.records import read_log
from cifarlab.train.state import read_resume_config, resume_path_for

__all__ = [
    "COMPLETED",
    "EARLY_STOPPED",
    "FAILED",
    "MONITORS",
    "OPTIMIZERS",
    "SCHEDULES",
    "STOPPED",
    "TrainConfig",
    "TrainError",
    "TrainResult",
    "lr_at_step",
    "read_log",
    "read_resume_config",
    "resume_path_for",
    "train",
]
