"""Training, read top to bottom: the paper's recipe on one CPU, or many GPUs with DDP.

Recipe (PAPER.md §5, TF-slim's defaults around Google's weights): RMSprop with decay 0.9,
momentum 0.9 and epsilon 1.0; lr 0.045 per 64 images, decayed x0.94 every 2.5 epochs; weight decay
4e-5 on conv and FC weights but never on depthwise filters, BN or biases; no label smoothing.
PyTorch's RMSprop adds epsilon outside the square root where TF adds it inside; with epsilon 1.0
both act as a damped momentum SGD early on, and the difference is small.

``torchrun --nproc_per_node=N -m mobilenet train ...`` runs DDP: one process per device, the
learning rate scaled to the global batch, logging and checkpoints on rank 0 only.
"""

from __future__ import annotations

import json
import math
import os
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler

from .checkpoint import load_state, load_weights_file, save_state, save_weights
from .cost import model_cost
from .data import DigitsDataset, load_data, skip_bad_collate
from .evaluate import evaluate
from .model import MobileNetV1
from .spec import MobileNetConfig

__all__ = ["TrainConfig", "param_groups", "train"]

BASE_BATCH = 64  # TF-slim's per-replica batch that lr 0.045 was tuned for


@dataclass
class TrainConfig:
    data: str | None = None  # None: the built-in digits
    out: str = "runs/mobilenet"
    width_mult: float = 1.0
    resolution: int = 224
    activation: str = "relu"
    padding: str = "symmetric"
    variant: str = "separable"
    dropout: float = 0.001  # TF-slim's keep_prob 0.999
    epochs: int = 10
    batch_size: int = 64  # per process
    lr: float | None = None  # None: the optimizer's base lr scaled by global batch / 64
    optimizer: str = "rmsprop"
    weight_decay: float = 4e-5
    label_smoothing: float = 0.0
    schedule: str = "exponential"
    warmup: float = 0.0  # epochs
    ema: float = 0.0  # decay, 0 = off
    bn_momentum: float = 0.1
    amp: bool = False
    channels_last: bool = False
    compile: bool = False
    workers: int = 0
    seed: int = 0
    resume: bool = False
    weights: str | None = None  # start from these weights with a new classifier
    freeze_backbone: bool = False
    teacher: str | None = None
    distill_temperature: float = 4.0
    distill_alpha: float = 0.5
    tensorboard: bool = False
    progress: bool = True
    device: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> None:
        checks = [
            (self.epochs >= 1, f"epochs={self.epochs} must be >= 1"),
            (self.batch_size >= 1, f"batch_size={self.batch_size} must be >= 1"),
            (self.lr is None or (math.isfinite(self.lr) and self.lr > 0), f"lr={self.lr} must be a positive number"),
            (self.optimizer in ("rmsprop", "sgd", "adamw"), f"optimizer={self.optimizer!r} must be rmsprop, sgd or adamw"),
            (self.schedule in ("exponential", "cosine"), f"schedule={self.schedule!r} must be exponential or cosine"),
            (0 <= self.label_smoothing < 1, f"label_smoothing={self.label_smoothing} must be in [0, 1)"),
            (0 <= self.ema < 1, f"ema={self.ema} must be a decay in [0, 1), e.g. 0.999"),
            (self.weight_decay >= 0, f"weight_decay={self.weight_decay} must be >= 0"),
            (self.warmup >= 0, f"warmup={self.warmup} must be >= 0 epochs"),
            (self.workers >= 0, f"workers={self.workers} must be >= 0"),
            (0 <= self.distill_alpha <= 1, f"distill_alpha={self.distill_alpha} must be in [0, 1]"),
            (self.distill_temperature > 0, f"distill_temperature={self.distill_temperature} must be > 0"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)


BASE_LR = {"rmsprop": 0.045, "sgd": 0.1, "adamw": 1e-3}


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Weight decay on full and pointwise conv weights and the FC weight only.

    The paper: "very little or no weight decay on the depthwise filters since there are so few
    parameters in them". BN parameters and biases are not decayed either.
    """
    decay, no_decay = [], []
    for module in model.modules():
        for name, p in module.named_parameters(recurse=False):
            if not p.requires_grad:
                continue
            is_depthwise = isinstance(module, nn.Conv2d) and module.groups > 1
            if name == "weight" and isinstance(module, (nn.Conv2d, nn.Linear)) and not is_depthwise:
                decay.append(p)
            else:
                no_decay.append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def _make_optimizer(cfg: TrainConfig, model: nn.Module, lr: float) -> torch.optim.Optimizer:
    groups = param_groups(model, cfg.weight_decay)
    if cfg.optimizer == "rmsprop":
        return torch.optim.RMSprop(groups, lr=lr, alpha=0.9, momentum=0.9, eps=1.0)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=0.9, nesterov=True)
    return torch.optim.AdamW(groups, lr=lr)


def _lr_lambda(cfg: TrainConfig, steps_per_epoch: int):
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


def _setup_distributed() -> tuple[int, int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 0, 1
    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return dist.get_rank(), int(os.environ.get("LOCAL_RANK", "0")), world


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _load_backbone(model: MobileNetV1, path: str) -> None:
    """Fine-tuning start: every weight but the classifier, from a file of the same width."""
    from .weights import load_weights

    source = load_weights(path)
    state = {k: v for k, v in source.state_dict().items() if not k.startswith("classifier.")}
    own = model.state_dict()
    bad = [k for k in state if k in own and own[k].shape != state[k].shape]
    if bad:
        raise ValueError(
            f"--weights {path} has width_mult={source.config.width_mult} but training asks for "
            f"width_mult={model.config.width_mult} ({bad[0]}: {tuple(state[bad[0]].shape)} vs {tuple(own[bad[0]].shape)}); "
            "pass the matching --width-mult"
        )
    model.load_state_dict(state, strict=False)


class _Logger:
    """Per-epoch metrics as JSON lines (plus TensorBoard if asked), on rank 0 only."""

    def __init__(self, out: Path, start_epoch: int, tensorboard: bool) -> None:
        self.path = out / "metrics.jsonl"
        rows = []
        if self.path.exists():
            rows = [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]
        # A resumed run rewrites what came after its checkpoint, so the log matches the weights.
        self.rows = [r for r in rows if r["epoch"] <= start_epoch]
        self.path.write_text("".join(json.dumps(r) + "\n" for r in self.rows))
        self.tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(out / "tensorboard"))
            except ImportError:
                print("tensorboard is not installed (pip install tensorboard); logging to metrics.jsonl only")

    def log(self, row: dict[str, Any]) -> None:
        self.rows.append(row)
        with open(self.path, "a") as f:
            f.write(json.dumps(row) + "\n")
        if self.tb is not None:
            for k, v in row.items():
                if isinstance(v, (int, float)) and k != "epoch":
                    self.tb.add_scalar(k, v, row["epoch"])


def train(cfg: TrainConfig) -> dict[str, Any]:
    """Trains a MobileNet v1 as ``cfg`` says; returns the summary (also written to ``out/summary.json``)."""
    cfg.validate()
    rank, local_rank, world = _setup_distributed()
    is_main = rank == 0
    if cfg.device:
        device = torch.device(cfg.device)
    elif torch.cuda.is_available():
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    out = Path(cfg.out)
    if is_main:
        out.mkdir(parents=True, exist_ok=True)
    _seed_everything(cfg.seed)

    # ---- data
    split = load_data(cfg.data, cfg.resolution, seed=cfg.seed)
    num_classes = len(split.classes)
    if len(split.train) == 0 or len(split.val) == 0:
        raise ValueError(f"{split.name}: the train or val split is empty; add images")
    train_sampler = DistributedSampler(split.train, world, rank, shuffle=True, seed=cfg.seed) if world > 1 else None
    val_sampler = DistributedSampler(split.val, world, rank, shuffle=False) if world > 1 else None
    loader_gen = torch.Generator()
    pin = device.type == "cuda"
    persistent = cfg.workers > 0
    train_loader = DataLoader(
        split.train,
        cfg.batch_size,
        shuffle=train_sampler is None,
        sampler=train_sampler,
        num_workers=cfg.workers,
        collate_fn=skip_bad_collate,
        pin_memory=pin,
        drop_last=len(split.train) > cfg.batch_size * world,
        generator=loader_gen,
        persistent_workers=persistent,
    )
    val_loader = DataLoader(
        split.val,
        max(cfg.batch_size, 128),
        sampler=val_sampler,
        num_workers=cfg.workers,
        collate_fn=skip_bad_collate,
        pin_memory=pin,
        persistent_workers=persistent,
    )

    # ---- model
    labels = "digits" if isinstance(split.train, DigitsDataset) else None
    mcfg = MobileNetConfig(
        width_mult=cfg.width_mult,
        resolution=cfg.resolution,
        num_classes=num_classes,
        activation=cfg.activation,
        padding=cfg.padding,
        variant=cfg.variant,
        dropout=cfg.dropout,
        labels=labels,
        class_names=tuple(split.classes),
    )
    model = MobileNetV1(mcfg)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.momentum = cfg.bn_momentum
    if cfg.weights:
        _load_backbone(model, cfg.weights)
    if cfg.freeze_backbone:
        for name, p in model.named_parameters():
            p.requires_grad = name.startswith("classifier.")
    model.to(device)
    if cfg.channels_last:
        model.to(memory_format=torch.channels_last)
    teacher = None
    if cfg.teacher:
        from .weights import load_weights

        teacher = load_weights(cfg.teacher).to(device).eval()
        if teacher.config.num_classes != num_classes:
            raise ValueError(f"--teacher {cfg.teacher} predicts {teacher.config.num_classes} classes; the data has {num_classes}")

    global_batch = cfg.batch_size * world
    lr = cfg.lr if cfg.lr is not None else BASE_LR[cfg.optimizer] * global_batch / BASE_BATCH
    optimizer = _make_optimizer(cfg, model, lr)
    steps_per_epoch = max(len(train_loader), 1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(cfg, steps_per_epoch))
    ema = None
    if cfg.ema > 0:
        ema = torch.optim.swa_utils.AveragedModel(
            model, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(cfg.ema), use_buffers=True
        )

    # ---- resume
    start_epoch, best_top1, history_time = 0, -1.0, 0.0
    state_path = out / "last_state.pt"
    if cfg.resume:
        if not state_path.exists():
            raise FileNotFoundError(f"--resume: no checkpoint at {state_path}; run without --resume to start fresh")
        state = load_state(state_path)
        weights, _, _ = load_weights_file(out / "last.safetensors")
        model.load_state_dict(weights)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if ema is not None and "ema" in state:
            ema.load_state_dict(state["ema"])
        start_epoch, best_top1, history_time = state["epoch"], state["best_top1"], state.get("wall_time", 0.0)
        torch.set_rng_state(state["rng_torch"])
        if is_main:
            print(f"resumed from {state_path} at epoch {start_epoch}")

    train_model: nn.Module = model
    if world > 1:
        train_model = nn.parallel.DistributedDataParallel(model, device_ids=[local_rank] if device.type == "cuda" else None)
    if cfg.compile:
        train_model = torch.compile(train_model)
    amp_dtype = torch.bfloat16 if cfg.amp else None
    logger = _Logger(out, start_epoch, cfg.tensorboard) if is_main else None
    cost = model_cost(mcfg)
    if is_main:
        print(
            f"training MobileNet v1 α={cfg.width_mult:g} at {cfg.resolution}px on {split.name}: {len(split.train)} train / "
            f"{len(split.val)} val images, {num_classes} classes, {world} process(es) on {device}, global batch {global_batch}, "
            f"lr {lr:.4g}, {cost.mult_adds / 1e6:.1f} M Mult-Adds, {cost.params / 1e6:.2f} M params"
        )

    # ---- loop
    from tqdm.auto import tqdm

    t_start = time.perf_counter()
    for epoch in range(start_epoch, cfg.epochs):
        # Per-epoch seeds make an epoch's shuffling, augmentation and dropout independent of
        # whether the run was resumed: a resumed run ends with the same weights.
        torch.manual_seed(cfg.seed * 1000 + epoch)
        loader_gen.manual_seed(cfg.seed * 1000 + epoch)
        if train_sampler is not None:
            train_sampler.set_epoch(epoch)
        train_model.train()
        seen = correct = skipped = 0
        loss_sum = 0.0
        t0 = time.perf_counter()
        bar = tqdm(
            train_loader,
            desc=f"epoch {epoch + 1}/{cfg.epochs}",
            disable=not (is_main and cfg.progress),
            leave=False,
            dynamic_ncols=True,
        )
        for step, (images, targets, n_bad) in enumerate(bar):
            skipped += n_bad
            if images.numel() == 0:
                continue
            images, targets = images.to(device, non_blocking=True), targets.to(device, non_blocking=True)
            if cfg.channels_last:
                images = images.to(memory_format=torch.channels_last)
            with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                logits = train_model(images)
                loss = F.cross_entropy(logits.float(), targets, label_smoothing=cfg.label_smoothing)
                if teacher is not None:
                    with torch.no_grad():
                        t_logits = teacher(images).float()
                    temp = cfg.distill_temperature
                    kd = F.kl_div(
                        F.log_softmax(logits.float() / temp, 1),
                        F.log_softmax(t_logits / temp, 1),
                        reduction="batchmean",
                        log_target=True,
                    )
                    loss = (1 - cfg.distill_alpha) * loss + cfg.distill_alpha * temp * temp * kd
            if not torch.isfinite(loss):
                raise FloatingPointError(
                    f"loss is {loss.item()} at epoch {epoch + 1}, step {step + 1}; stopped. The last good checkpoint "
                    f"is kept in {out} (resume with a lower --lr)"
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            if ema is not None:
                ema.update_parameters(model)
            seen += len(targets)
            loss_sum += float(loss.detach()) * len(targets)
            correct += int((logits.argmax(1) == targets).sum())
            if is_main and cfg.progress:
                rate = seen * world / max(time.perf_counter() - t0, 1e-9)
                bar.set_postfix(loss=f"{loss_sum / seen:.3f}", acc=f"{correct / seen:.3f}", img_s=f"{rate:.0f}", refresh=False)
        bar.close()
        epoch_time = time.perf_counter() - t0
        if skipped and is_main:
            print(f"epoch {epoch + 1}: skipped {skipped} unreadable image(s)")

        eval_model = ema.module if ema is not None else model
        val = evaluate(
            eval_model, val_loader, num_classes=num_classes, device=device, amp_dtype=amp_dtype, channels_last=cfg.channels_last
        )
        if world > 1:
            totals = torch.tensor(
                [val["top1"] * val["images"], val["top5"] * val["images"], val["loss"] * val["images"], val["images"]],
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
            stats = torch.tensor([loss_sum, correct, seen], dtype=torch.float64, device=device)
            dist.all_reduce(stats)
            loss_sum, correct, seen = float(stats[0]), int(stats[1]), int(stats[2])
        row = {
            "epoch": epoch + 1,
            "train_loss": loss_sum / max(seen, 1),
            "train_acc": correct / max(seen, 1),
            "val_loss": val["loss"],
            "val_top1": val["top1"],
            "val_top5": val["top5"],
            "lr": optimizer.param_groups[0]["lr"],
            "images_per_s": seen / max(epoch_time, 1e-9),
            "epoch_time_s": epoch_time,
            "skipped": skipped,
        }
        if is_main:
            assert logger is not None
            logger.log(row)
            print(
                f"epoch {epoch + 1}/{cfg.epochs}  loss {row['train_loss']:.4f}  train acc {row['train_acc']:.4f}  "
                f"val top-1 {val['top1']:.4f}  top-5 {val['top5']:.4f}  {row['images_per_s']:.0f} img/s"
            )
            # Weights first, then state: the state names an epoch only once its weights are on disk.
            save_weights(out / "last.safetensors", eval_model, mcfg, epoch=str(epoch + 1))
            if val["top1"] > best_top1:
                best_top1 = val["top1"]
                save_weights(out / "best.safetensors", eval_model, mcfg, epoch=str(epoch + 1), val_top1=f"{best_top1:.6f}")
            if ema is not None:
                save_weights(out / "last_raw.safetensors", model, mcfg)
            state = {
                "epoch": epoch + 1,
                "best_top1": best_top1,
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "rng_torch": torch.get_rng_state(),
                "config": json.dumps(asdict(cfg)),
                "wall_time": history_time + time.perf_counter() - t_start,
            }
            if ema is not None:
                state["ema"] = ema.state_dict()
            save_state(state_path, state)
        if world > 1:
            dist.barrier()
    # With EMA on, last/best hold the averaged weights; the raw ones are in last_raw.safetensors.
    wall = history_time + time.perf_counter() - t_start
    summary: dict[str, Any] = {}
    if is_main:
        assert logger is not None
        last = logger.rows[-1] if logger.rows else {}
        summary = {
            "val_top1": last.get("val_top1"),
            "val_top5": last.get("val_top5"),
            "best_val_top1": best_top1,
            "epochs": cfg.epochs,
            "mult_adds": cost.mult_adds,
            "params": cost.params,
            "wall_time_s": wall,
            "images_per_s": float(np.mean([r["images_per_s"] for r in logger.rows])) if logger.rows else None,
            "weights": str(out / "best.safetensors"),
            "world_size": world,
        }
        (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        try:
            from .plots import plot_training

            plot_training(logger.rows, out / "curves.png")
            summary["plot"] = str(out / "curves.png")
        except ImportError:
            print("matplotlib is not installed; no plot written (pip install 'mobilenet[train]')")
        print(
            f"done: val top-1 {summary['val_top1']:.4f}, top-5 {summary['val_top5']:.4f} (best {best_top1:.4f}); "
            f"{cost.mult_adds / 1e6:.1f} M Mult-Adds, {cost.params / 1e6:.2f} M params; {wall:.1f} s, "
            f"{summary['images_per_s']:.0f} img/s; weights in {out}"
        )
    if world > 1 and dist.is_initialized():
        dist.destroy_process_group()
    return summary
