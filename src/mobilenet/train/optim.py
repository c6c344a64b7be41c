"""The optimizer, its learning-rate schedule, weight averaging and the wrapped training module."""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import torch
from torch import nn

from ..model import MobileNetV1
from .config import TrainConfig
from .recipes import BASE_BATCH, BASE_LR

__all__ = ["lr_lambda", "make_optimizer", "optimization", "param_groups", "wrap"]


def param_groups(model: nn.Module, weight_decay: float, head_lr_mult: float = 1.0) -> list[dict[str, Any]]:
    """Weight decay on full and pointwise conv weights and the FC weight only; the classifier's
    parameters in their own groups, with ``lr_mult`` for fine-tuning.

    The paper: "very little or no weight decay on the depthwise filters since there are so few
    parameters in them". BN parameters and biases are not decayed either.
    """
    groups: dict[tuple[bool, bool], list[nn.Parameter]] = {(d, h): [] for d in (True, False) for h in (False, True)}
    for module_name, module in model.named_modules():
        for name, p in module.named_parameters(recurse=False):
            if not p.requires_grad:
                continue
            is_depthwise = isinstance(module, nn.Conv2d) and module.groups > 1
            decay = name == "weight" and isinstance(module, (nn.Conv2d, nn.Linear)) and not is_depthwise
            is_head = module_name == "classifier" or module_name.endswith(".classifier")
            groups[(decay, is_head)].append(p)
    return [
        {"params": params, "weight_decay": weight_decay if decay else 0.0, "lr_mult": head_lr_mult if head else 1.0}
        for (decay, head), params in groups.items()
        if params
    ]


def make_optimizer(cfg: TrainConfig, model: nn.Module, lr: float) -> torch.optim.Optimizer:
    groups = param_groups(model, cfg.weight_decay, cfg.head_lr_mult)
    for g in groups:
        g["lr"] = lr * g["lr_mult"]
    if cfg.optimizer == "rmsprop":
        return torch.optim.RMSprop(groups, lr=lr, alpha=0.9, momentum=0.9, eps=1.0)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=0.9, nesterov=True)
    return torch.optim.AdamW(groups, lr=lr)


def lr_lambda(cfg: TrainConfig, steps_per_epoch: int):
    warmup_steps = cfg.warmup * steps_per_epoch
    total = cfg.epochs * steps_per_epoch

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        epoch = step / steps_per_epoch
        if cfg.schedule == "exponential":
            return 0.94 ** math.floor(epoch / 2.5)  # TF-slim: staircase x0.94 every 2.5 epochs
        progress = (step - warmup_steps) / max(total - warmup_steps, 1)
        return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))

    return factor


def optimization(
    cfg: TrainConfig, step_model: nn.Module, model: MobileNetV1, world: int, steps_per_epoch: int
) -> tuple[TrainConfig, torch.optim.Optimizer, Any, Any]:
    lr = cfg.lr if cfg.lr is not None else BASE_LR[cfg.optimizer] * cfg.batch_size * world / BASE_BATCH
    cfg = replace(cfg, lr=lr)
    optimizer = make_optimizer(cfg, step_model, lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(cfg, max(steps_per_epoch, 1)))
    ema = None
    if cfg.ema > 0:
        ema = torch.optim.swa_utils.AveragedModel(
            model, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(cfg.ema), use_buffers=True
        )
    return cfg, optimizer, scheduler, ema


def wrap(step_model: nn.Module, cfg: TrainConfig, world: int, local_rank: int, device: torch.device) -> nn.Module:
    train_model = step_model
    if world > 1:
        train_model = nn.parallel.DistributedDataParallel(step_model, device_ids=[local_rank] if device.type == "cuda" else None)
    if cfg.compile:
        train_model = torch.compile(train_model)
    return train_model
