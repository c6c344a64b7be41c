"""``train()``: a training run as named steps, each defined beside it in this package.

From what the run starts from (:mod:`.start`) through the recipe (:mod:`.recipes`), the checks
(:mod:`.checks`), the optimizer (:mod:`.optim`), the classifier-first stage (:mod:`.probe`), the
epochs (:mod:`.loop`) and what each leaves on disk (:mod:`.records`).

``torchrun --nproc_per_node=N -m mobilenet train ...`` runs DDP: one process per device, the
learning rate scaled to the global batch (paper recipe), logging and checkpoints on rank 0 only.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader

from ..checkpoint import save_weights
from ..cost import model_cost
from ..data import DataSplit
from ..model import MobileNetV1
from .batchnorm import recalibrate_batchnorm, set_train_mode
from .checks import check_combination, check_out_folder, fit_batch_size
from .config import TrainConfig
from .loop import reduce_metrics, train_one_epoch, validate
from .optim import optimization, wrap
from .probe import fit_classifier, what_trains
from .recipes import describe_recipe, recipe_for
from .records import MetricsLog, end_epoch, resume_run, seed_epoch, write_summary
from .start import (
    build_model,
    make_loaders,
    pick_device,
    place,
    pretrained_model,
    seed_everything,
    setup_distributed,
    simulate_int8,
    teacher_model,
    training_data,
    weights_metadata_of,
)
from .task import classification

__all__ = ["train"]


def _describe(cfg: TrainConfig, split: DataSplit, world: int, device: torch.device, cost: Any) -> str:
    lr = cfg.lr
    recipe = recipe_for(cfg)
    head = (
        f", classifier lr x{cfg.head_lr_mult:g} after {cfg.probe_epochs} classifier-only passes"
        if recipe in ("finetune", "qat")
        else ""
    )
    return (
        f"recipe: {describe_recipe(cfg)}: {cfg.optimizer}{head}, {cfg.schedule} schedule, warm-up {cfg.warmup:g} epochs, BN {cfg.bn}, "
        f"augmentation {'on' if cfg.augment else 'off'}, label smoothing {cfg.label_smoothing:g}, dropout {cfg.dropout:g}\n"
        f"training MobileNet v1 α={cfg.width_mult:g} at {cfg.resolution}px on {split.name}: {len(split.train)} train / "
        f"{len(split.val)} val images, {len(split.classes)} classes, {world} process(es) on {device}, "
        f"global batch {cfg.batch_size * world}, lr {lr:.4g}, {cost.mult_adds / 1e6:.1f} M Mult-Adds, {cost.params / 1e6:.2f} M params"
    )


def _fit_classifier_first(
    cfg: TrainConfig,
    model: MobileNetV1,
    pretrained: MobileNetV1 | None,
    val_loader: DataLoader,
    device: torch.device,
    is_main: bool,
) -> float:
    plain = training_data(cfg, pretrained.config if pretrained is not None else None, augment=False).train
    top1 = fit_classifier(cfg, model, plain, val_loader, device)
    if is_main:
        print(f"classifier fitted alone first ({cfg.probe_epochs} passes over features computed once): val top-1 {top1:.4f}")
    return top1


def train(cfg: TrainConfig) -> dict[str, Any]:
    """Trains a MobileNet v1 as ``cfg`` says; returns the summary (also written to ``out/summary.json``)."""
    cfg.check()
    out = check_out_folder(cfg)  # before any work: a refused run leaves nothing behind
    rank, local_rank, world = setup_distributed()
    is_main, device = rank == 0, pick_device(cfg, local_rank)
    seed_everything(cfg.seed)

    pretrained = pretrained_model(cfg)  # with --weights, the weights define the network
    split = training_data(cfg, pretrained.config if pretrained is not None else None)
    model, cfg = build_model(cfg, split, pretrained)
    cfg = fit_batch_size(cfg, len(split.train), world)
    check_combination(cfg)
    place(model, cfg, device)
    teacher = teacher_model(cfg, len(split.classes), device, model.config)
    task = classification(cfg, teacher=teacher, num_classes=len(split.classes))
    train_loader, val_loader = make_loaders(cfg, split, world, rank, device, task.collate)
    if cfg.bn == "recalibrate" and not cfg.resume:
        recalibrate_batchnorm(model, train_loader)
    step_model, train_loader, val_loader, cfg = what_trains(cfg, model, split, train_loader, val_loader, teacher, device)
    cfg, optimizer, scheduler, ema = optimization(cfg, step_model, model, world, len(train_loader))

    start_epoch, best_top1, history_time = 0, -1.0, 0.0
    if cfg.resume:
        start_epoch, best_top1, history_time = resume_run(out, model, optimizer, scheduler, ema, is_main, cfg)
    elif is_main:
        out.mkdir(parents=True, exist_ok=True)
    logger = MetricsLog(out, start_epoch, cfg.tensorboard) if is_main else None
    cost = model_cost(model.config)
    if is_main:
        print(_describe(cfg, split, world, device, cost), flush=True)
    if cfg.probe_epochs and not cfg.resume:
        probe_top1 = _fit_classifier_first(cfg, model, pretrained, val_loader, device, is_main)
        if is_main and not cfg.qat:
            # The classifier-first stage is a linear probe: the first candidate for best, so the
            # fine-tune never hands back a model worse on val than its own probe (on a 2-class
            # set of 245 photos its epochs ended 3 points below the probe).
            best_top1 = probe_top1
            save_weights(out / "best.safetensors", model, model.config, epoch="probe", val_top1=f"{probe_top1:.6f}")
    if cfg.qat:  # after the classifier is fitted: its output range is one of those calibrated
        step_model = simulate_int8(cfg, model, pretrained, out, device, is_main)
    train_model = wrap(step_model, cfg, world, local_rank, device)  # DDP's first broadcast syncs the fitted classifier

    t_start = time.perf_counter()
    for epoch in range(start_epoch, cfg.epochs):
        seed_epoch(cfg, train_loader, epoch)  # a resumed run then ends with the same weights
        set_train_mode(step_model, cfg.bn, frozen_backbone=cfg.freeze_backbone)
        stats = train_one_epoch(
            train_model, train_loader, optimizer, scheduler, cfg, device=device, epoch=epoch, task=task, ema=ema,
            show_progress=is_main and cfg.progress and sys.stderr.isatty(),
        )  # fmt: skip
        val = validate(ema.module if ema is not None else step_model, val_loader, cfg, device=device, task=task, epoch=epoch)
        if world > 1:
            reduce_metrics(stats, val, device)
        if is_main:
            wall = history_time + time.perf_counter() - t_start
            best_top1 = end_epoch(
                out,
                cfg,
                epoch,
                stats,
                val,
                logger,
                model,
                optimizer,
                scheduler,
                ema,
                best_top1,
                wall,
                weights_metadata_of(step_model),
            )
        if world > 1:
            dist.barrier()

    summary: dict[str, Any] = {}
    if is_main:
        summary = write_summary(out, logger, cfg, cost, best_top1, history_time + time.perf_counter() - t_start, world)
    if world > 1 and dist.is_initialized():
        dist.destroy_process_group()
    return summary
