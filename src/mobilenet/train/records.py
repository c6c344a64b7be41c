"""What a run leaves behind: per-epoch metrics, checkpoints (weights first, then state), the
resume that reads them back, and the summary."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler

from ..checkpoint import load_state, load_weights_file, save_state, save_weights
from ..model import MobileNetV1
from .checks import check_resume_config
from .config import TrainConfig
from .recipes import recipe_for

__all__ = ["MetricsLog", "end_epoch", "resume_run", "save_checkpoint", "write_summary"]


class MetricsLog:
    """Per-epoch metrics as JSON lines (plus TensorBoard if asked), on rank 0 only."""

    def __init__(self, out: Path, start_epoch: int, tensorboard: bool) -> None:
        self.path = out / "metrics.jsonl"
        rows = []
        if self.path.exists() and start_epoch > 0:
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


def save_checkpoint(
    out: Path, model: MobileNetV1, ema: Any, state: dict[str, Any], is_best: bool, metadata: dict[str, str] | None = None
) -> None:
    """Weights first, then state: the state names an epoch only once its weights are on disk.
    With EMA on, last/best hold the averaged weights and last_raw the trained ones. ``metadata``
    goes into the weights files (a QAT run's int8 ranges)."""
    epoch = str(state["epoch"])
    weights = ema.module if ema is not None else model
    meta = metadata or {}
    save_weights(out / "last.safetensors", weights, model.config, epoch=epoch, **meta)
    if is_best:
        save_weights(out / "best.safetensors", weights, model.config, epoch=epoch, val_top1=f"{state['best_top1']:.6f}", **meta)
    if ema is not None:
        save_weights(out / "last_raw.safetensors", model, model.config)
    save_state(out / "last_state.pt", state)


def seed_epoch(cfg: TrainConfig, train_loader: DataLoader, epoch: int) -> None:
    """Per-epoch seeds make an epoch's shuffling, augmentation and dropout independent of whether
    the run was resumed."""
    torch.manual_seed(cfg.seed * 1000 + epoch)
    train_loader.generator.manual_seed(cfg.seed * 1000 + epoch)  # type: ignore[union-attr]
    if isinstance(train_loader.sampler, DistributedSampler):
        train_loader.sampler.set_epoch(epoch)


def end_epoch(
    out: Path,
    cfg: TrainConfig,
    epoch: int,
    stats: dict[str, float],
    val: dict[str, Any],
    logger: MetricsLog | None,
    model: MobileNetV1,
    optimizer: Any,
    scheduler: Any,
    ema: Any,
    best_top1: float,
    wall_time: float,
    metadata: dict[str, str],
) -> float:
    """Logs the epoch and writes its checkpoint (rank 0); returns the best val top-1 so far."""
    assert logger is not None
    row = epoch_row(epoch, stats, val, optimizer)
    logger.log(row)
    print(
        f"epoch {epoch + 1}/{cfg.epochs}  loss {row['train_loss']:.4f}  train acc {row['train_acc']:.4f}  "
        f"val top-1 {val['top1']:.4f}  top-5 {val['top5']:.4f}  {row['images_per_s']:.0f} img/s",
        flush=True,
    )
    if stats["skipped"]:
        print(f"epoch {epoch + 1}: skipped {stats['skipped']} unreadable image(s)")
    is_best = val["top1"] > best_top1
    state = {
        "epoch": epoch + 1,
        "best_top1": max(best_top1, val["top1"]),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "config": json.dumps(asdict(cfg)),
        "wall_time": wall_time,
    }
    if ema is not None:
        state["ema"] = ema.state_dict()
    save_checkpoint(out, model, ema, state, is_best, metadata)
    return state["best_top1"]


def epoch_row(epoch: int, stats: dict[str, float], val: dict[str, Any], optimizer: Any) -> dict[str, Any]:
    seen = max(stats["seen"], 1)
    return {
        "epoch": epoch + 1,
        "train_loss": stats["loss_sum"] / seen,
        "train_acc": stats["correct"] / seen,
        "val_loss": val["loss"],
        "val_top1": val["top1"],
        "val_top5": val["top5"],
        "lr": optimizer.param_groups[0]["lr"],
        "images_per_s": stats["seen"] / max(stats["time"], 1e-9),
        "epoch_time_s": stats["time"],
        "skipped": stats["skipped"],
    }


def resume_run(
    out: Path, model: nn.Module, optimizer: Any, scheduler: Any, ema: Any, is_main: bool, cfg: TrainConfig
) -> tuple[int, float, float]:
    state_path = out / "last_state.pt"
    state = load_state(state_path)
    check_resume_config(out, state, cfg)
    # With EMA on, last.safetensors holds the averaged weights; training goes on from the raw ones.
    weights_file = out / ("last_raw.safetensors" if ema is not None else "last.safetensors")
    weights, saved_config, _ = load_weights_file(weights_file)
    check_resume_classes(out, saved_config, model.config, cfg)
    own = model.state_dict()
    mismatch = [k for k in own if k not in weights or tuple(weights[k].shape) != tuple(own[k].shape)]
    if mismatch:
        k = mismatch[0]
        have = tuple(weights[k].shape) if k in weights else "missing"
        c = saved_config
        raise ValueError(
            f"--resume: the run in {out} is a different network (α={c.width_mult if c else '?'}, "
            f"{c.num_classes if c else '?'} classes; {k}: checkpoint {have} vs now {tuple(own[k].shape)}); "
            "resume with the flags it was started with, or pass --overwrite to start afresh"
        )
    model.load_state_dict(weights)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    if ema is not None and "ema" in state:
        ema.load_state_dict(state["ema"])
    if is_main:
        print(f"resumed from {state_path} at epoch {state['epoch']}")
    return state["epoch"], state["best_top1"], state.get("wall_time", 0.0)


def check_resume_classes(out: Path, saved: Any, now: Any, cfg: TrainConfig) -> None:
    """A resumed run must see the classes it was trained on, in the same order: the same count in
    another order (or other names) would go on training class k's outputs on another class's photos."""
    have = tuple(saved.class_names) if saved is not None and saved.class_names else None
    want = tuple(now.class_names) if now.class_names else None
    if have is None or want is None or have == want:
        return

    def show(names: tuple[str, ...]) -> str:
        listed = ", ".join(names[:8]) + (f", ... ({len(names)} in all)" if len(names) > 8 else "")
        return f"[{listed}]"

    first = next((i for i, (a, b) in enumerate(zip(have, want)) if a != b), min(len(have), len(want)))
    raise ValueError(
        f"--resume: the run in {out} was trained on the classes {show(have)}, but --data {cfg.data} has {show(want)} "
        f"(they differ from class {first}); resume with the data it was started with, or pass --overwrite "
        "(or another --out) to start afresh"
    )


def write_summary(
    out: Path, logger: MetricsLog, cfg: TrainConfig, cost: Any, best_top1: float, wall: float, world: int
) -> dict[str, Any]:
    assert logger is not None
    last = logger.rows[-1] if logger.rows else {}
    summary: dict[str, Any] = {
        "val_top1": last.get("val_top1"),
        "val_top5": last.get("val_top5"),
        "best_val_top1": best_top1,
        "epochs": cfg.epochs,
        "recipe": recipe_for(cfg),
        "mult_adds": cost.mult_adds,
        "params": cost.params,
        "wall_time_s": wall,
        "images_per_s": float(np.mean([r["images_per_s"] for r in logger.rows])) if logger.rows else None,
        "weights": str(out / "best.safetensors"),
        "world_size": world,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    try:
        from ..plots import plot_training

        plot_training(logger.rows, out / "curves.png")
        summary["plot"] = str(out / "curves.png")
    except ImportError:
        print("matplotlib is not installed; no plot written (pip install 'mobilenet[train]')")
    print(
        f"done: val top-1 {summary['val_top1']:.4f}, top-5 {summary['val_top5']:.4f} (best {best_top1:.4f}); "
        f"{cost.mult_adds / 1e6:.1f} M Mult-Adds, {cost.params / 1e6:.2f} M params; {wall:.1f} s, "
        f"{summary['images_per_s']:.0f} img/s; weights in {out}"
    )
    return summary
