"""Optimizer and learning-rate schedule of a training run."""

from __future__ import annotations

import math

import torch
from torch import nn

from cifarlab.train.config import TrainConfig


def build_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """Build the optimizer over the model's trainable parameters.

    Weight decay applies to weights with two or more dimensions only: decaying biases and
    batch-norm scales pulls them towards zero without regularizing the function. Frozen
    parameters (a transfer-learning backbone) are left out.
    """
    decay, no_decay = [], []
    for parameter in model.parameters():
        if not parameter.requires_grad:
            continue
        (decay if parameter.ndim >= 2 else no_decay).append(parameter)
    if not decay and not no_decay:
        raise ValueError(
            f"model {config.arch!r} has no trainable parameters; "
            "unfreeze part of it (for example full fine-tuning) before training"
        )
    groups = [
        {"params": decay, "weight_decay": config.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]

    if config.optimizer == "sgd":
        return torch.optim.SGD(
            groups, lr=config.lr, momentum=config.momentum, nesterov=config.nesterov
        )
    if config.optimizer == "adam":
        return torch.optim.Adam(groups, lr=config.lr)
    return torch.optim.AdamW(groups, lr=config.lr)


def lr_at_step(config: TrainConfig, step: int, steps_per_epoch: int) -> float:
    """Return the learning rate for optimizer step ``step`` (0-based) of the whole run.

    Every schedule starts with a linear warm-up from 0 to ``config.lr`` over
    ``effective_warmup_epochs()``, then:

    - ``onecycle``: falls linearly towards 0 at the end (a triangle with the default 30% rise);
    - ``cosine``: follows half a cosine down towards 0 at the end;
    - ``step``: multiplies by ``step_gamma`` every ``step_size_epochs`` epochs;
    - ``none``: stays at ``config.lr``.

    The rate is a pure function of the step, so resuming a run needs only the step count.
    """
    total_steps = config.epochs * steps_per_epoch
    warmup_steps = min(round(config.effective_warmup_epochs() * steps_per_epoch), total_steps)

    # The first warm-up step uses 1/warmup_steps of the rate, not 0, so no step is wasted.
    if step < warmup_steps:
        return config.lr * (step + 1) / warmup_steps

    if config.schedule == "none":
        return config.lr
    if config.schedule == "step":
        decays = step // (config.step_size_epochs * steps_per_epoch)
        return config.lr * config.step_gamma**decays

    # Progress runs from 0 at the first step after the warm-up to just below 1 at the last
    # step, so the last step still learns.
    decay_steps = max(total_steps - warmup_steps, 1)
    progress = min((step - warmup_steps) / decay_steps, 1.0)
    if config.schedule == "onecycle":
        return config.lr * (1.0 - progress)
    return config.lr * 0.5 * (1.0 + math.cos(math.pi * progress))


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
