"""The shared training loop: one epoch of steps, validation, and the sum of metrics over DDP ranks.

It takes a :class:`~mobilenet.train.task.Task` (loss, hits, metric); without one it trains the
classifier, as :func:`mobilenet.train.train` does.
"""

from __future__ import annotations

import math
import time
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader

from .config import TrainConfig
from .recipes import recipe_for
from .task import Task, classification, to_device

__all__ = ["LOG_EVERY", "reduce_metrics", "train_one_epoch", "validate"]


LOG_EVERY = 20  # steps between host syncs (progress bar, NaN check)


def train_one_epoch(
    model: nn.Module,
    loader: DataLoader,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    cfg: TrainConfig,
    *,
    device: torch.device,
    epoch: int,
    teacher: nn.Module | None = None,
    ema: Any = None,
    show_progress: bool = False,
    task: Task | None = None,
) -> dict[str, float]:
    """One pass over ``loader``; returns the summed loss, correct count, images seen and images skipped.
    ``task`` gives the loss and the hits (default: the classifier's, distilled from ``teacher``).

    Metrics accumulate on the device and reach the host once per ``LOG_EVERY`` steps, which is
    also when a non-finite loss is caught (before any checkpoint is written).
    """
    task = task or classification(cfg, teacher=teacher)
    amp_dtype = torch.bfloat16 if cfg.amp else None
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    correct = torch.zeros((), dtype=torch.long, device=device)
    seen = skipped = 0
    t0 = time.perf_counter()
    bar = None
    if show_progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(loader), desc=f"epoch {epoch + 1}/{cfg.epochs}", leave=False, dynamic_ncols=True)
    for step, (images, targets, n_bad) in enumerate(loader):
        skipped += n_bad
        if images.numel() == 0:
            continue
        images, targets = images.to(device, non_blocking=True), to_device(targets, device)
        if cfg.channels_last and images.dim() == 4:
            images = images.to(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            outputs = model(images)
            loss = task.loss(outputs, targets, images)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        if ema is not None:
            ema.update_parameters(model)
        seen += len(images)
        loss_sum += loss.detach().double() * len(images)
        correct += task.hits(outputs, targets)
        if (step + 1) % LOG_EVERY == 0 or step + 1 == len(loader):
            mean_loss = float(loss_sum) / seen
            _check_finite(mean_loss, cfg, epoch, step)
            if bar is not None:
                rate = seen / max(time.perf_counter() - t0, 1e-9)
                bar.set_postfix(loss=f"{mean_loss:.3f}", acc=f"{int(correct) / seen:.3f}", img_s=f"{rate:.0f}", refresh=False)
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    return {
        "loss_sum": float(loss_sum),
        "correct": int(correct),
        "seen": seen,
        "skipped": skipped,
        "time": time.perf_counter() - t0,
    }


def _check_finite(mean_loss: float, cfg: TrainConfig, epoch: int, step: int) -> None:
    """A non-finite loss stops the run before any checkpoint of it is written."""
    if not math.isfinite(mean_loss):
        raise FloatingPointError(
            f"loss is {mean_loss} at epoch {epoch + 1}, step {step + 1} (or up to {LOG_EVERY - 1} steps before); "
            f"stopped. The {recipe_for(cfg)} recipe ran at lr {cfg.lr} with {cfg.optimizer}; "
            f"the last good checkpoint is kept in {cfg.out} (resume with a lower --lr)"
        )


def validate(
    model: nn.Module,
    loader: DataLoader,
    cfg: TrainConfig,
    *,
    num_classes: int | None = None,
    device: torch.device,
    task: Task | None = None,
    epoch: int | None = None,
) -> dict[str, Any]:
    """The task's metric of ``model`` on the validation loader (this process's share); for the
    classifier (the default), top-1, top-5 and loss over ``num_classes``. A non-finite loss or
    accuracy is an error (``epoch``, 0-based, names when)."""
    task = task or classification(cfg, num_classes=num_classes)
    amp_dtype = torch.bfloat16 if cfg.amp else None
    result = task.metric(model, loader, device=device, amp_dtype=amp_dtype, channels_last=cfg.channels_last)
    _check_finite_validation(result, cfg, epoch)
    return result


def _check_finite_validation(val: dict[str, Any], cfg: TrainConfig, epoch: int | None) -> None:
    """A non-finite validation loss or accuracy stops the run as a non-finite training loss does,
    before this epoch's checkpoint: a model that computes NaN is never saved, least of all as best.
    (Training can stay finite while validation is not: eval mode reads BN's running statistics.)"""
    bad = {k: val[k] for k in ("loss", "top1") if isinstance(val.get(k), float) and not math.isfinite(val[k])}
    if bad:
        when = f" at epoch {epoch + 1}" if epoch is not None else ""
        found = ", ".join(f"{k} {v}" for k, v in bad.items())
        raise FloatingPointError(
            f"validation {found}{when} while the training loss was finite; stopped, and this epoch's weights were not "
            f"saved. The model computes NaN in eval mode (its BN running statistics overflowed, or the starting weights "
            f"hold extreme values); the last good checkpoint, if any, is kept in {cfg.out}. Check the "
            "starting weights, or resume with a lower --lr"
        )


def reduce_metrics(train_stats: dict[str, float], val: dict[str, Any], device: torch.device) -> None:
    """Sums each process's counts across DDP ranks, in place."""
    n = val["images"]
    totals = torch.tensor(
        [
            val["top1"] * n,
            val["top5"] * n,
            val["loss"] * n,
            n,
            train_stats["loss_sum"],
            train_stats["correct"],
            train_stats["seen"],
        ],
        dtype=torch.float64,
        device=device,
    )
    dist.all_reduce(totals)
    val.update(
        top1=float(totals[0] / totals[3]),
        top5=float(totals[1] / totals[3]),
        loss=float(totals[2] / totals[3]),
        images=int(totals[3]),
    )
    train_stats.update(loss_sum=float(totals[4]), correct=int(totals[5]), seen=int(totals[6]))
