"""Training, read top to bottom: from scratch (the paper's recipe), fine-tuning and linear probes.

Five recipes, chosen by what the run starts from (:func:`recipe_for`), fill every setting the user
left out; :data:`RECIPES` is the one place their defaults are written.

- ``paper``: from scratch on an ImageFolder tree, as TF-slim trained Google's models (PAPER.md §5):
  RMSprop (decay 0.9, momentum 0.9, epsilon 1.0), lr 0.045 per 64 images, x0.94 every 2.5 epochs,
  weight decay 4e-5 on conv and FC weights but never on depthwise filters, BN or biases.
  PyTorch's RMSprop adds epsilon outside the square root where TF adds it inside; with epsilon 1.0
  both act as a damped momentum SGD early on, and the difference is small.
- ``digits``: the built-in digits, a small net and a short cosine schedule.
- ``finetune``: ``--weights`` given. The weights define the network; the classifier is new unless
  the weights were already trained on the data's classes (then it is kept). AdamW
  with a cosine schedule after a short warm-up, the new classifier at a higher rate than the
  backbone, batch norm frozen (see :func:`set_train_mode` for why), light label smoothing.
- ``linear-probe``: ``--weights`` and ``--freeze-backbone``. Only the classifier trains; without
  augmentation the pooled features are computed once and the classifier trains on them.
- ``qat``: ``--weights`` and ``--qat``. The fine-tune, through a simulation of the int8 arithmetic
  of a tflite-int8 export (:mod:`mobilenet.quantize`), at a backbone lr high enough for the weights
  to move; the weights file then carries the int8 activation ranges the export uses.

``torchrun --nproc_per_node=N -m mobilenet train ...`` runs DDP: one process per device, the
learning rate scaled to the global batch (paper recipe), logging and checkpoints on rank 0 only.
"""

from __future__ import annotations

import json
import math
import os
import random
import sys
import time
import warnings
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, DistributedSampler, Subset, TensorDataset

from .checkpoint import load_state, load_weights_file, save_state, save_weights, weights_metadata
from .cost import model_cost
from .data import DataSplit, DigitsDataset, check_seed, load_data, skip_bad_collate, train_transform, transforms_for
from .evaluate import evaluate
from .model import MobileNetV1, fold_batchnorm
from .quantize import FakeQuantMobileNet, calibrate_ranges, ranges_from_metadata, ranges_to_metadata
from .spec import ACTIVATIONS, PADDINGS, PREPROCESSES, VARIANTS, MobileNetConfig, check_resolution, check_width_mult
from .weights import load_weights

__all__ = [
    "RECIPES",
    "TrainConfig",
    "param_groups",
    "recipe_for",
    "resolve",
    "set_train_mode",
    "sweep",
    "train",
    "train_one_epoch",
    "validate",
]

BASE_BATCH = 64  # TF-slim's per-replica batch that lr 0.045 was tuned for
DEFAULT_BATCH = 64
BASE_LR = {"rmsprop": 0.045, "sgd": 0.1, "adamw": 1e-3}
OPTIMIZERS = ("rmsprop", "sgd", "adamw")
SCHEDULES = ("exponential", "cosine")
#: How batch norm behaves while training. "train": batch statistics (from scratch). "frozen": each
#: BN layer keeps its running statistics, its scale and shift still learn. "recalibrate": the
#: statistics are re-estimated on the training images first, with scale and shift adjusted so each
#: layer computes what it did, then BN trains as usual.
BN_MODES = ("train", "frozen", "recalibrate")


def _opt(help: str, **meta: Any) -> Any:
    """A TrainConfig field that the CLI offers as ``--name``; None means "the recipe decides"."""
    return field(default=meta.pop("default", None), metadata={"help": help, **meta})


@dataclass
class TrainConfig:
    """Every setting of a training run. ``None`` means "the recipe decides" (see :data:`RECIPES`);
    the ``mobilenet train`` flags are generated from these fields and their help texts."""

    data: str | None = _opt("ImageFolder tree DIR/train/<class>/*, DIR/val/<class>/* (default: the built-in digits)")
    out: str = _opt("output folder", default="runs/mobilenet")
    weights: str | tuple[str, ...] | None = _opt(
        "start from these weights (fine-tuning; a new classifier unless they were trained on the data's classes): "
        "a file, a registry name, or Google's two split 1.0-224 .tflite files",
        nargs="+",
    )
    freeze_backbone: bool = _opt("train the classifier only (a linear probe); needs --weights", default=False)
    width_mult: float | None = _opt("width multiplier α (default 1.0; digits 0.5; with --weights: theirs)", short="-a")
    resolution: int | None = _opt("input size, ρ·224 (default 224; digits 32; with --weights: theirs)", short="-r")
    activation: str | None = _opt("relu (the paper) or relu6 (default relu; with --weights: theirs)", choices=ACTIVATIONS)
    padding: str | None = _opt("symmetric, tf or keras (default symmetric; with --weights: theirs)", choices=PADDINGS)
    variant: str | None = _opt("separable (the paper's net), conv (Table 4) or shallow (Table 5)", choices=VARIANTS)
    bn_eps: float | None = _opt("batch norm epsilon (default 1e-3, TF-slim's; with --weights: theirs)")
    min_depth: int | None = _opt("smallest layer width after α (default 8; with --weights: theirs)")
    dropout: float | None = _opt("dropout before the classifier")
    epochs: int | None = _opt("passes over the training images")
    batch_size: int | None = _opt("images per step, per process (default 64, or the training images' count if fewer)")
    lr: float | None = _opt("learning rate (of the backbone when fine-tuning); default: the recipe's")
    head_lr_mult: float | None = _opt("the new classifier's lr as a multiple of --lr (fine-tuning)")
    probe_epochs: int | None = _opt(
        "fine-tuning: first fit the new classifier alone, this many passes over features computed once (0 = off)"
    )
    optimizer: str | None = _opt("rmsprop (the paper), sgd or adamw", choices=OPTIMIZERS)
    weight_decay: float | None = _opt("on conv and FC weights; never on depthwise filters, BN or biases")
    label_smoothing: float | None = _opt("label smoothing of the cross-entropy")
    schedule: str | None = _opt("exponential (x0.94 every 2.5 epochs) or cosine", choices=SCHEDULES)
    warmup: float | None = _opt("linear lr warm-up, in epochs")
    bn: str | None = _opt("batch norm while training: train, frozen or recalibrate", choices=BN_MODES)
    augment: bool | None = _opt("random resized crops and flips (default on; off for a linear probe)")
    preprocess: str | None = _opt("validation preprocessing: tf or torchvision (default: the weights')", choices=PREPROCESSES)
    qat: bool = _opt(
        "quantization-aware fine-tuning: train through the int8 rounding of a tflite-int8 export (needs --weights; "
        "the weights file then carries the int8 ranges that export uses)",
        default=False,
    )
    ema: float = _opt("EMA decay of the weights, e.g. 0.999 (0 = off)", default=0.0)
    bn_momentum: float = _opt("BN running-statistics momentum (PyTorch's convention)", default=0.1)
    teacher: str | tuple[str, ...] | None = _opt("distil from this model's outputs (same classes)", nargs="+")
    distill_temperature: float = _opt("distillation temperature", default=4.0)
    distill_alpha: float = _opt("weight of the distillation loss", default=0.5)
    amp: bool = _opt("bf16 autocast", default=False)
    channels_last: bool = _opt("channels-last memory format", default=False)
    compile: bool = _opt("torch.compile the training model", default=False)
    workers: int = _opt("data loader processes", default=0)
    seed: int = _opt("random seed", default=0)
    resume: bool = _opt("continue from OUT/last_state.pt", default=False)
    overwrite: bool = _opt("start afresh in an --out folder that holds an earlier run", default=False)
    tensorboard: bool = _opt("also log to TensorBoard", default=False)
    progress: bool = _opt("progress bars (only shown on a terminal)", default=True)
    device: str | None = _opt("cpu, cuda, cuda:1 ... (default: cuda if available)")

    def validate(self) -> None:
        """Checks every value the user gave, before any work starts."""

        def positive(name: str, integer: bool = False, allow_zero: bool = False) -> None:
            value = getattr(self, name)
            if value is None:
                return
            kind = int if integer else (int, float)
            bad = isinstance(value, bool) or not isinstance(value, kind) or not math.isfinite(value)
            if bad or value < 0 or (value == 0 and not allow_zero):
                bound = ">= 0" if allow_zero else "> 0"
                raise ValueError(f"{name}={value!r} must be {'an integer' if integer else 'a number'} {bound}")

        check_seed(self.seed)  # before 2**64 reaches torch as "Overflow when unpacking long"
        for name in ("epochs", "batch_size", "min_depth"):
            positive(name, integer=True)
        positive("workers", integer=True, allow_zero=True)
        positive("probe_epochs", integer=True, allow_zero=True)
        for name in ("lr", "head_lr_mult", "bn_eps", "distill_temperature"):
            positive(name)
        for name in ("weight_decay", "warmup", "ema", "label_smoothing", "dropout"):
            positive(name, allow_zero=True)
        if self.width_mult is not None:
            check_width_mult(self.width_mult)
        if self.resolution is not None:
            check_resolution(self.resolution)
        checks = [
            (
                self.label_smoothing is None or self.label_smoothing < 1,
                f"label_smoothing={self.label_smoothing} must be in [0, 1)",
            ),
            (self.dropout is None or self.dropout < 1, f"dropout={self.dropout} must be in [0, 1)"),
            (self.ema < 1, f"ema={self.ema} must be a decay in [0, 1), e.g. 0.999"),
            (0 <= self.distill_alpha <= 1, f"distill_alpha={self.distill_alpha} must be in [0, 1]"),
            (0 < self.bn_momentum <= 1, f"bn_momentum={self.bn_momentum} must be in (0, 1]"),
            (not (self.resume and self.overwrite), "resume and overwrite contradict each other; pass one"),
        ]
        for name, allowed in (
            ("optimizer", OPTIMIZERS),
            ("schedule", SCHEDULES),
            ("bn", BN_MODES),
            ("activation", ACTIVATIONS),
            ("padding", PADDINGS),
            ("variant", VARIANTS),
            ("preprocess", PREPROCESSES),
        ):
            value = getattr(self, name)
            checks.append((value is None or value in allowed, f"{name}={value!r} must be one of {', '.join(allowed)}"))
        if self.qat:
            qat_conflicts = [
                (not self.weights, "it fine-tunes a trained network: pass --weights"),
                (self.freeze_backbone, "a linear probe does not train the layers it would quantize: drop --freeze-backbone"),
                (self.bn not in (None, "frozen"), "BN is folded into the convs, as int8 runs it: drop --bn or pass --bn frozen"),
                (self.ema > 0, "the int8 ranges follow the trained weights, not an average: drop --ema"),
                (self.amp, "bf16 autocast would round before the int8 simulation does: drop --amp"),
            ]
            for bad, why in qat_conflicts:
                if bad:
                    checks.append((False, f"qat: {why}"))
        if self.freeze_backbone and not self.weights:
            checks.append(
                (
                    False,
                    "freeze_backbone without weights would train a classifier on a random backbone; "
                    "pass --weights (Google's or your own) or drop --freeze-backbone",
                )
            )
        for ok, message in checks:
            if not ok:
                raise ValueError(message)
        for name in ("weights", "teacher"):
            value = getattr(self, name)
            if isinstance(value, (list, tuple)):
                if not 1 <= len(value) <= 2:
                    raise ValueError(f"{name} takes one file (or Google's two split .tflite files), got {len(value)}")
                # One file is the plain path; two stay a list (extractor + head).
                setattr(self, name, value[0] if len(value) == 1 else tuple(value))


#: Each recipe's defaults: the one place they are written. ``lr=None`` in "paper" and "digits"
#: means the optimizer's base rate scaled by global batch / 64.
RECIPES: dict[str, dict[str, Any]] = {
    "paper": dict(
        width_mult=1.0,
        resolution=224,
        epochs=10,
        optimizer="rmsprop",
        lr=None,
        head_lr_mult=1.0,
        probe_epochs=0,
        weight_decay=4e-5,
        label_smoothing=0.0,
        schedule="exponential",
        warmup=0.0,
        dropout=0.001,  # TF-slim's keep_prob 0.999
        bn="train",
        augment=True,
    ),
    "finetune": dict(
        epochs=5,
        optimizer="adamw",
        lr=3e-5,  # small: the classifier arrives fitted, the backbone only adapts
        head_lr_mult=10.0,
        probe_epochs=30,
        weight_decay=1e-2,
        label_smoothing=0.1,
        schedule="cosine",
        warmup=0.5,
        dropout=0.2,
        bn="frozen",
        augment=True,
    ),
    "linear-probe": dict(
        epochs=30,  # passes over cached features take a moment each
        optimizer="adamw",
        lr=1e-2,
        head_lr_mult=1.0,
        probe_epochs=0,
        weight_decay=1e-4,
        label_smoothing=0.0,
        schedule="cosine",
        warmup=0.0,
        dropout=0.2,
        bn="frozen",
        augment=False,
    ),
}
RECIPES["digits"] = {**RECIPES["paper"], "width_mult": 0.5, "resolution": 32, "epochs": 25, "schedule": "cosine", "warmup": 1.0}
# Quantization-aware fine-tuning: the fine-tune, with a backbone lr high enough for the weights to
# move onto what survives int8 rounding (0.25-128 on flowers: lr 3e-5 x 3 epochs 0.795 in LiteRT,
# 1e-4 x 5 epochs 0.82; benchmarks/RESULTS.md "Quantization-aware training").
RECIPES["qat"] = {**RECIPES["finetune"], "lr": 1e-4}
_ARCH_DEFAULTS = {"activation": "relu", "padding": "symmetric", "variant": "separable", "bn_eps": 1e-3, "min_depth": 8}
_ARCH_FIELDS = ("width_mult", "activation", "padding", "variant", "bn_eps", "min_depth")


def recipe_for(cfg: TrainConfig) -> str:
    if cfg.weights and cfg.freeze_backbone:
        return "linear-probe"
    if cfg.weights:
        return "qat" if cfg.qat else "finetune"
    return "digits" if cfg.data is None else "paper"


def resolve(cfg: TrainConfig, source: MobileNetConfig | None = None) -> TrainConfig:
    """``cfg`` with every ``None`` filled: from the weights' config ``source`` for the architecture,
    then from the recipe. A given architecture value that contradicts the weights is an error."""
    values: dict[str, Any] = {}
    if source is not None:
        for name in _ARCH_FIELDS:
            given, have = getattr(cfg, name), getattr(source, name)
            if given is not None and given != have:
                flag = "--" + name.replace("_", "-")
                raise ValueError(
                    f"{flag} {given} contradicts --weights {_name(cfg.weights)}, whose network has {name}={have}; "
                    f"the weights define the network: drop {flag}"
                )
            values[name] = have
        values["resolution"] = cfg.resolution or source.resolution
    recipe = RECIPES[recipe_for(cfg)]
    for f in fields(cfg):
        if getattr(cfg, f.name) is None and f.name not in values:
            if f.name in recipe:
                values[f.name] = recipe[f.name]
            elif f.name in _ARCH_DEFAULTS:
                values[f.name] = _ARCH_DEFAULTS[f.name]
    return replace(cfg, **values)


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


def _make_optimizer(cfg: TrainConfig, model: nn.Module, lr: float) -> torch.optim.Optimizer:
    groups = param_groups(model, cfg.weight_decay, cfg.head_lr_mult)
    for g in groups:
        g["lr"] = lr * g["lr_mult"]
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


def set_train_mode(model: nn.Module, bn: str, *, frozen_backbone: bool = False) -> nn.Module:
    """``model.train()``, except that BN layers stay in eval mode when ``bn == "frozen"``, and the
    whole backbone does under ``frozen_backbone`` (a linear probe).

    Why frozen BN is the fine-tuning default: Google's TF Lite files arrive with BN folded into the
    convs, loaded as identity layers whose running statistics say nothing about real activations.
    In train mode BN would normalize with each small batch's own statistics, a different function
    from the one the weights were trained as, and the features fall apart in the first steps.
    """
    model.train()
    if bn == "frozen":
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.eval()
    if frozen_backbone and isinstance(model, MobileNetV1):
        model.stem.eval()
        model.blocks.eval()
    return model


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, batches: Any, *, max_images: int = 512) -> int:
    """Re-estimates each BN layer's statistics on ``batches`` and adjusts its scale and shift so the
    layer computes exactly what it did: ``γ' = γ·s'/s``, ``β' = β + γ·(μ' - μ)/s`` with ``s = sqrt(var + eps)``.

    The model runs in eval mode throughout, so each layer's statistics are those of the real
    activations of the unchanged network. Afterwards batch-statistics training starts from the
    same function the weights had. Returns the number of images used.
    """
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    sums: dict[nn.Module, list[Tensor]] = {}

    def record(module: nn.Module, inputs: tuple[Tensor, ...]) -> None:
        x = inputs[0].double()
        n = x.numel() / x.shape[1]
        s, sq = x.sum((0, 2, 3)), (x * x).sum((0, 2, 3))
        if module in sums:
            sums[module][0] += n
            sums[module][1] += s
            sums[module][2] += sq
        else:
            sums[module] = [torch.tensor(n, dtype=torch.float64), s, sq]

    hooks = [m.register_forward_pre_hook(record) for m in bns]
    model.eval()
    seen = 0
    device = next(model.parameters()).device
    try:
        for batch in batches:
            images = batch[0]
            if images.numel() == 0:
                continue
            model(images.to(device))
            seen += len(images)
            if seen >= max_images:
                break
    finally:
        for h in hooks:
            h.remove()
    for m in bns:
        n, s, sq = sums[m]
        mean = s / n
        var = (sq / n - mean * mean).clamp(min=0)
        old_std = (m.running_var.double() + m.eps).sqrt()
        new_std = (var + m.eps).sqrt()
        gamma = m.weight.double()
        m.bias.copy_((m.bias.double() + gamma * (mean - m.running_mean.double()) / old_std).float())
        m.weight.copy_((gamma * new_std / old_std).float())
        m.running_mean.copy_(mean.float())
        m.running_var.copy_(var.float())
    return seen


def _setup_distributed() -> tuple[int, int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 0, 1
    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return dist.get_rank(), int(os.environ.get("LOCAL_RANK", "0")), world


def _pick_device(cfg: TrainConfig, local_rank: int) -> torch.device:
    if cfg.device:
        return torch.device(cfg.device)
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _check_out_folder(cfg: TrainConfig) -> Path:
    out = Path(cfg.out)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"--out {out} is a file; pass a folder for the run's checkpoints and logs")
    # A run that failed before its first epoch ended leaves only an empty metrics.jsonl (and the
    # probe's best.safetensors): nothing to resume, so a rerun simply starts again.
    metrics = out / "metrics.jsonl"
    holds_run = (out / "last_state.pt").exists() or (out / "last.safetensors").exists()
    holds_run = holds_run or (metrics.is_file() and metrics.stat().st_size > 0)
    if holds_run and not (cfg.resume or cfg.overwrite):
        raise FileExistsError(
            f"--out {out} already holds a training run; pass --resume to continue it, --overwrite to replace it, or another --out"
        )
    if cfg.resume and not (out / "last_state.pt").exists():
        raise FileNotFoundError(f"--resume: no checkpoint at {out / 'last_state.pt'}; run without --resume to start fresh")
    return out


def build_model(cfg: TrainConfig, split: DataSplit, pretrained: MobileNetV1 | None = None) -> tuple[MobileNetV1, TrainConfig]:
    """The network to train and the fully resolved config. With weights, the weights define the
    network and the classifier is replaced for the data's classes, unless the weights were trained
    on exactly these classes and the backbone trains too (a fine-tune continued, or made
    quantization-aware); a linear probe always starts from a new classifier, so that it measures
    the features."""
    classes = tuple(split.classes)
    labels = "digits" if isinstance(split.train, DigitsDataset) else None
    if pretrained is None:
        cfg = resolve(cfg)
        config = MobileNetConfig(
            **{k: getattr(cfg, k) for k in _ARCH_FIELDS},
            resolution=cfg.resolution,
            num_classes=len(classes),
            dropout=cfg.dropout,
            labels=labels,
            class_names=classes,
            **({"preprocess": cfg.preprocess} if cfg.preprocess else {}),
        )
        return MobileNetV1(config), cfg
    model = pretrained
    source = model.config
    keep_classifier = source.class_names == classes and source.num_classes == len(classes) and not cfg.freeze_backbone
    if keep_classifier and cfg.probe_epochs is None:
        cfg = replace(cfg, probe_epochs=0)  # the classifier already fits these classes
    cfg = resolve(cfg, source)
    if abs(cfg.resolution / source.resolution - 1) > 0.25:
        warnings.warn(
            f"--resolution {cfg.resolution} is far from the {source.resolution} px these weights were trained at; "
            "accuracy may suffer (the network accepts any size >= 32)",
            stacklevel=2,
        )
    # Weights already trained on these classes (a fine-tune continued, or made quantization-aware)
    # keep their classifier; any other weights get a new one for the data's classes.
    if not keep_classifier:
        model.reset_classifier(len(classes))
    model.dropout.p = cfg.dropout
    model.config = model.config.replace(resolution=cfg.resolution, dropout=cfg.dropout, labels=labels, class_names=classes)
    if cfg.preprocess:  # validated this way: saved this way, so eval reproduces the logged accuracy
        model.config = model.config.replace(preprocess=cfg.preprocess)
    return model, cfg


def _loaders(cfg: TrainConfig, split: DataSplit, world: int, rank: int, device: torch.device) -> tuple[DataLoader, DataLoader]:
    train_sampler = DistributedSampler(split.train, world, rank, shuffle=True, seed=cfg.seed) if world > 1 else None
    val_sampler = DistributedSampler(split.val, world, rank, shuffle=False) if world > 1 else None
    common = dict(
        num_workers=cfg.workers,
        collate_fn=skip_bad_collate,
        pin_memory=device.type == "cuda",
        # Not persistent: fresh workers each epoch take their seeds from the reseeded generator, so
        # a resumed run augments exactly as an uninterrupted one.
        persistent_workers=False,
    )
    train_loader = DataLoader(
        split.train,
        cfg.batch_size,
        shuffle=train_sampler is None,
        sampler=train_sampler,
        drop_last=len(split.train) > cfg.batch_size * world,
        generator=torch.Generator(),
        **common,
    )
    val_loader = DataLoader(split.val, max(cfg.batch_size, 128), sampler=val_sampler, **common)
    return train_loader, val_loader


@torch.inference_mode()
def _pooled_features(model: MobileNetV1, loader: DataLoader, device: torch.device) -> TensorDataset:
    """Backbone features for every image, once: what a linear probe without augmentation trains on."""
    model.eval()
    feats, targets = [], []
    for images, y, _ in loader:
        if images.numel():
            feats.append(model.forward_head(model.forward_features(images.to(device)), pre_logits=True).float())
            targets.append(y.to(device))
    return TensorDataset(torch.cat(feats), torch.cat(targets))


def _feature_loaders(
    cfg: TrainConfig, model: MobileNetV1, train_images: Any, val_loader: DataLoader, device: torch.device, generator: Any
) -> tuple[DataLoader, DataLoader]:
    def collate(batch: list[tuple[Tensor, Tensor]]) -> tuple[Tensor, Tensor, int]:
        x, y = zip(*batch)
        return torch.stack(x), torch.stack(y), 0

    images = DataLoader(train_images, 128, collate_fn=skip_bad_collate, num_workers=cfg.workers, pin_memory=device.type == "cuda")
    train_feats = _pooled_features(model, images, device)
    val_feats = _pooled_features(model, val_loader, device)
    return (
        DataLoader(train_feats, cfg.batch_size, shuffle=True, collate_fn=collate, generator=generator),
        DataLoader(val_feats, 1024, collate_fn=collate),
    )


def fit_classifier(
    cfg: TrainConfig, model: MobileNetV1, train_images: Any, val_loader: DataLoader, device: torch.device
) -> float:
    """The first stage of fine-tuning (linear probe, then fine-tune): the new classifier alone, on
    features computed once, with the linear-probe recipe. Starting the full fine-tune from a
    classifier that already fits keeps the first steps' large, random gradients out of the
    pretrained backbone. Keeps the pass with the best val top-1, and returns that top-1."""
    probe = RECIPES["linear-probe"]
    # The linear-probe recipe exactly, its loss included (no label smoothing): with the fine-tune's
    # smoothed loss this stage's best pass fell below a linear probe's (five flowers classes, 20
    # photos each: 0.825 against 0.86), and the fine-tune then could not catch up.
    keys = ("optimizer", "lr", "weight_decay", "schedule", "warmup", "label_smoothing")
    probe_cfg = replace(cfg, **{k: probe[k] for k in keys})
    probe_cfg = replace(probe_cfg, head_lr_mult=1.0, epochs=cfg.probe_epochs, channels_last=False, amp=False, ema=0.0)
    train_feats, val_feats = _feature_loaders(
        probe_cfg, model, train_images, val_loader, device, torch.Generator().manual_seed(cfg.seed)
    )
    head = nn.Sequential(model.dropout, model.classifier)
    optimizer = _make_optimizer(probe_cfg, head, probe_cfg.lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(probe_cfg, len(train_feats)))
    # Each pass is validated (on cached features, a moment each) and the best pass's classifier is
    # kept, as a linear-probe run keeps its best epoch: the fine-tune then starts from, and can
    # only hand back something at least as good as, the probe.
    best_top1, best_state = -1.0, None
    for epoch in range(probe_cfg.epochs):
        _seed_epoch(probe_cfg, train_feats, epoch)  # the batches and dropout of a linear-probe run's epoch
        head.train()
        train_one_epoch(head, train_feats, optimizer, scheduler, probe_cfg, device=device, epoch=epoch)
        top1 = validate(head, val_feats, probe_cfg, num_classes=model.config.num_classes, device=device)["top1"]
        if top1 > best_top1:
            best_top1, best_state = top1, {k: v.detach().clone() for k, v in head.state_dict().items()}
    if best_state is not None:
        head.load_state_dict(best_state)
    return best_top1


class _Logger:
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


def _loss(logits: Tensor, targets: Tensor, images: Tensor, teacher: nn.Module | None, cfg: TrainConfig) -> Tensor:
    loss = F.cross_entropy(logits.float(), targets, label_smoothing=cfg.label_smoothing)
    if teacher is None:
        return loss
    with torch.no_grad():
        t_logits = teacher(images).float()
    temp = cfg.distill_temperature
    kd = F.kl_div(
        F.log_softmax(logits.float() / temp, 1), F.log_softmax(t_logits / temp, 1), reduction="batchmean", log_target=True
    )
    return (1 - cfg.distill_alpha) * loss + cfg.distill_alpha * temp * temp * kd


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
) -> dict[str, float]:
    """One pass over ``loader``; returns the summed loss, correct count, images seen and images skipped.

    Metrics accumulate on the device and reach the host once per ``LOG_EVERY`` steps, which is
    also when a non-finite loss is caught (before any checkpoint is written).
    """
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
        images, targets = images.to(device, non_blocking=True), targets.to(device, non_blocking=True)
        if cfg.channels_last and images.dim() == 4:
            images = images.to(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            logits = model(images)
            loss = _loss(logits, targets, images, teacher, cfg)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        if ema is not None:
            ema.update_parameters(model)
        seen += len(targets)
        loss_sum += loss.detach().double() * len(targets)
        correct += (logits.detach().argmax(1) == targets).sum()
        if (step + 1) % LOG_EVERY == 0 or step + 1 == len(loader):
            mean_loss = float(loss_sum) / seen
            if not math.isfinite(mean_loss):
                raise FloatingPointError(
                    f"loss is {mean_loss} at epoch {epoch + 1}, step {step + 1} (or up to {LOG_EVERY - 1} steps before); "
                    f"stopped. The {recipe_for(cfg)} recipe ran at lr {cfg.lr} with {cfg.optimizer}; "
                    f"the last good checkpoint is kept in {cfg.out} (resume with a lower --lr)"
                )
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


def validate(model: nn.Module, loader: DataLoader, cfg: TrainConfig, *, num_classes: int, device: torch.device) -> dict[str, Any]:
    """Top-1, top-5 and loss of ``model`` on the validation loader (this process's share)."""
    amp_dtype = torch.bfloat16 if cfg.amp else None
    return evaluate(model, loader, num_classes=num_classes, device=device, amp_dtype=amp_dtype, channels_last=cfg.channels_last)


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


def _summary(
    out: Path, logger: _Logger, cfg: TrainConfig, cost: Any, best_top1: float, wall: float, world: int
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
    return summary


def _name(weights: str | tuple[str, ...] | None) -> str:
    return " + ".join(weights) if isinstance(weights, tuple) else str(weights)


def _describe(cfg: TrainConfig, split: DataSplit, world: int, device: torch.device, cost: Any) -> str:
    lr = cfg.lr
    recipe = recipe_for(cfg)
    what = {
        "paper": "the paper's recipe from scratch",
        "digits": "the digits recipe from scratch",
        "finetune": f"fine-tuning recipe from {_name(cfg.weights)}",
        "linear-probe": f"linear-probe recipe on {_name(cfg.weights)}",
        "qat": f"quantization-aware fine-tuning recipe from {_name(cfg.weights)} (int8 rounding simulated in training "
        "and validation)",
    }[recipe]
    head = (
        f", classifier lr x{cfg.head_lr_mult:g} after {cfg.probe_epochs} classifier-only passes"
        if recipe in ("finetune", "qat")
        else ""
    )
    return (
        f"recipe: {what}: {cfg.optimizer}{head}, {cfg.schedule} schedule, warm-up {cfg.warmup:g} epochs, BN {cfg.bn}, "
        f"augmentation {'on' if cfg.augment else 'off'}, label smoothing {cfg.label_smoothing:g}, dropout {cfg.dropout:g}\n"
        f"training MobileNet v1 α={cfg.width_mult:g} at {cfg.resolution}px on {split.name}: {len(split.train)} train / "
        f"{len(split.val)} val images, {len(split.classes)} classes, {world} process(es) on {device}, "
        f"global batch {cfg.batch_size * world}, lr {lr:.4g}, {cost.mult_adds / 1e6:.1f} M Mult-Adds, {cost.params / 1e6:.2f} M params"
    )


def _data(cfg: TrainConfig, source: MobileNetConfig | None, augment: bool | None = None) -> DataSplit:
    """The data split, with the transforms that the weights (if any) expect. Reads only folder
    listings: no image is decoded until training starts."""
    resolution = cfg.resolution or (source.resolution if source else RECIPES[recipe_for(cfg)]["resolution"])
    template = (source or MobileNetConfig()).replace(resolution=resolution)
    if augment is None:
        augment = cfg.augment if cfg.augment is not None else RECIPES[recipe_for(cfg)]["augment"]
    eval_tf = transforms_for(template, preprocess=cfg.preprocess)
    train_tf = train_transform(resolution, mean=template.mean, std=template.std) if augment else eval_tf
    split = load_data(cfg.data, resolution, seed=cfg.seed, train_tf=train_tf, eval_tf=eval_tf)
    if len(split.classes) < 2:
        raise ValueError(
            f"{split.name} has {len(split.classes)} class ({', '.join(split.classes)}); a classifier needs at least 2 "
            "class folders (train/<class>/*)"
        )
    if len(split.train) == 0 or len(split.val) == 0:
        raise ValueError(f"{split.name}: the train or val split is empty; add images")
    return split


def train(cfg: TrainConfig) -> dict[str, Any]:
    """Trains a MobileNet v1 as ``cfg`` says; returns the summary (also written to ``out/summary.json``)."""
    cfg.validate()
    out = _check_out_folder(cfg)  # before any work: a refused run leaves nothing behind
    rank, local_rank, world = _setup_distributed()
    is_main, device = rank == 0, _pick_device(cfg, local_rank)
    _seed_everything(cfg.seed)

    pretrained = _pretrained(cfg)  # with --weights, the weights define the network
    split = _data(cfg, pretrained.config if pretrained is not None else None)
    model, cfg = build_model(cfg, split, pretrained)
    cfg = _fit_batch_size(cfg, len(split.train), world)
    _check_combination(cfg)
    _place(model, cfg, device)
    train_loader, val_loader = _loaders(cfg, split, world, rank, device)
    if cfg.bn == "recalibrate" and not cfg.resume:
        recalibrate_batchnorm(model, train_loader)
    teacher = _teacher(cfg, len(split.classes), device, model.config)
    step_model, train_loader, val_loader, cfg = _what_trains(cfg, model, split, train_loader, val_loader, teacher, device)
    cfg, optimizer, scheduler, ema = _optimization(cfg, step_model, model, world, len(train_loader))

    start_epoch, best_top1, history_time = 0, -1.0, 0.0
    if cfg.resume:
        start_epoch, best_top1, history_time = _resume(out, model, optimizer, scheduler, ema, is_main, cfg)
    elif is_main:
        out.mkdir(parents=True, exist_ok=True)
    logger = _Logger(out, start_epoch, cfg.tensorboard) if is_main else None
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
        step_model = _simulate_int8(cfg, model, pretrained, out, device, is_main)
    train_model = _wrap(step_model, cfg, world, local_rank, device)  # DDP's first broadcast syncs the fitted classifier

    t_start = time.perf_counter()
    for epoch in range(start_epoch, cfg.epochs):
        _seed_epoch(cfg, train_loader, epoch)  # a resumed run then ends with the same weights
        set_train_mode(step_model, cfg.bn, frozen_backbone=cfg.freeze_backbone)
        stats = train_one_epoch(
            train_model, train_loader, optimizer, scheduler, cfg, device=device, epoch=epoch, teacher=teacher, ema=ema,
            show_progress=is_main and cfg.progress and sys.stderr.isatty(),
        )  # fmt: skip
        val = validate(
            ema.module if ema is not None else step_model, val_loader, cfg, num_classes=len(split.classes), device=device
        )
        if world > 1:
            reduce_metrics(stats, val, device)
        if is_main:
            wall = history_time + time.perf_counter() - t_start
            best_top1 = _end_epoch(
                out, cfg, epoch, stats, val, logger, model, optimizer, scheduler, ema, best_top1, wall, _metadata(step_model)
            )
        if world > 1:
            dist.barrier()

    summary: dict[str, Any] = {}
    if is_main:
        summary = _summary(out, logger, cfg, cost, best_top1, history_time + time.perf_counter() - t_start, world)
    if world > 1 and dist.is_initialized():
        dist.destroy_process_group()
    return summary


def _check_combination(cfg: TrainConfig) -> None:
    """Settings that each make sense alone but not together (checked once the recipe has filled the rest)."""
    if cfg.probe_epochs and (not cfg.weights or cfg.freeze_backbone):
        raise ValueError(
            f"probe_epochs={cfg.probe_epochs} fits a new classifier before fine-tuning pretrained weights; "
            + ("without --weights the backbone is random" if not cfg.weights else "a linear probe is that stage alone")
            + ": drop --probe-epochs"
        )
    if cfg.ema and cfg.freeze_backbone and not cfg.augment:
        raise ValueError(
            "ema averages the whole network, but a linear probe without augmentation trains only the classifier on "
            "cached features; drop --ema (or pass --augment)"
        )


def _fit_batch_size(cfg: TrainConfig, images: int, world: int) -> TrainConfig:
    """The default batch shrinks to a small training set; a batch the user asked for that no epoch
    can fill is an error (it would also scale the paper recipe's lr for images that never come)."""
    per_process = max(images // world, 1)
    if cfg.batch_size is None:
        return replace(cfg, batch_size=min(DEFAULT_BATCH, per_process))
    if cfg.batch_size > per_process:
        raise ValueError(
            f"batch_size={cfg.batch_size} x {world} process(es) is more than the {images} training images; "
            f"pass --batch-size {per_process} or less"
        )
    return cfg


def _place(model: MobileNetV1, cfg: TrainConfig, device: torch.device) -> None:
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.momentum = cfg.bn_momentum
    model.to(device)
    if cfg.channels_last:
        model.to(memory_format=torch.channels_last)


def _what_trains(
    cfg: TrainConfig,
    model: MobileNetV1,
    split: DataSplit,
    train_loader: DataLoader,
    val_loader: DataLoader,
    teacher: Any,
    device: torch.device,
) -> tuple[nn.Module, DataLoader, DataLoader, TrainConfig]:
    """The module the optimizer steps, and its loaders: the whole model, or for a linear probe
    without augmentation, the classifier alone on pooled features computed once."""
    if cfg.freeze_backbone:
        for name, p in model.named_parameters():
            p.requires_grad = name.startswith("classifier.")
    if not (cfg.freeze_backbone and not cfg.augment and teacher is None):
        return model, train_loader, val_loader, cfg
    train_loader, val_loader = _feature_loaders(cfg, model, split.train, val_loader, device, train_loader.generator)
    head = nn.Sequential(model.dropout, model.classifier)
    return head, train_loader, val_loader, replace(cfg, channels_last=False)  # the step sees (N, C) features


def _optimization(
    cfg: TrainConfig, step_model: nn.Module, model: MobileNetV1, world: int, steps_per_epoch: int
) -> tuple[TrainConfig, torch.optim.Optimizer, Any, Any]:
    lr = cfg.lr if cfg.lr is not None else BASE_LR[cfg.optimizer] * cfg.batch_size * world / BASE_BATCH
    cfg = replace(cfg, lr=lr)
    optimizer = _make_optimizer(cfg, step_model, lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(cfg, max(steps_per_epoch, 1)))
    ema = None
    if cfg.ema > 0:
        ema = torch.optim.swa_utils.AveragedModel(
            model, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(cfg.ema), use_buffers=True
        )
    return cfg, optimizer, scheduler, ema


def _wrap(step_model: nn.Module, cfg: TrainConfig, world: int, local_rank: int, device: torch.device) -> nn.Module:
    train_model = step_model
    if world > 1:
        train_model = nn.parallel.DistributedDataParallel(step_model, device_ids=[local_rank] if device.type == "cuda" else None)
    if cfg.compile:
        train_model = torch.compile(train_model)
    return train_model


def _fit_classifier_first(
    cfg: TrainConfig,
    model: MobileNetV1,
    pretrained: MobileNetV1 | None,
    val_loader: DataLoader,
    device: torch.device,
    is_main: bool,
) -> float:
    plain = _data(cfg, pretrained.config if pretrained is not None else None, augment=False).train
    top1 = fit_classifier(cfg, model, plain, val_loader, device)
    if is_main:
        print(f"classifier fitted alone first ({cfg.probe_epochs} passes over features computed once): val top-1 {top1:.4f}")
    return top1


def _seed_epoch(cfg: TrainConfig, train_loader: DataLoader, epoch: int) -> None:
    """Per-epoch seeds make an epoch's shuffling, augmentation and dropout independent of whether
    the run was resumed."""
    torch.manual_seed(cfg.seed * 1000 + epoch)
    train_loader.generator.manual_seed(cfg.seed * 1000 + epoch)  # type: ignore[union-attr]
    if isinstance(train_loader.sampler, DistributedSampler):
        train_loader.sampler.set_epoch(epoch)


def _end_epoch(
    out: Path,
    cfg: TrainConfig,
    epoch: int,
    stats: dict[str, float],
    val: dict[str, Any],
    logger: _Logger | None,
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
    row = _epoch_row(epoch, stats, val, optimizer)
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


def _simulate_int8(
    cfg: TrainConfig, model: MobileNetV1, pretrained: MobileNetV1 | None, out: Path, device: torch.device, is_main: bool
) -> FakeQuantMobileNet:
    """QAT: the model wrapped to compute as its tflite-int8 export will. The activation ranges
    start where post-training calibration would put them (the float model's min and max on up
    to 256 training images, unaugmented) and follow the batches from there; a resumed run takes
    them from its last checkpoint."""
    if cfg.resume:
        last = out / "last.safetensors"
        try:
            ranges = ranges_from_metadata(weights_metadata(last))
        except ValueError as exc:
            raise ValueError(f"--resume --qat: {last}: {exc}") from None
        if ranges is None:
            raise ValueError(f"--resume --qat: {out / 'last.safetensors'} holds no int8 ranges; it was not a --qat run")
    else:
        plain = _data(cfg, pretrained.config if pretrained is not None else None, augment=False).train
        picked = torch.randperm(len(plain), generator=torch.Generator().manual_seed(cfg.seed))[:256].tolist()
        loader = DataLoader(Subset(plain, picked), 64, collate_fn=skip_bad_collate, num_workers=cfg.workers)
        ranges = calibrate_ranges(fold_batchnorm(model), (images.to(device) for images, _, _ in loader))
        if is_main:
            print(
                f"quantization-aware: int8 ranges calibrated on {len(picked)} training images; validation runs the int8 simulation"
            )
    return FakeQuantMobileNet(model, ranges).to(device)


def _metadata(step_model: nn.Module) -> dict[str, str]:
    return ranges_to_metadata(step_model.ranges()) if isinstance(step_model, FakeQuantMobileNet) else {}


def _pretrained(cfg: TrainConfig) -> MobileNetV1 | None:
    if not cfg.weights:
        return None
    model = load_weights(cfg.weights)
    if not isinstance(model, MobileNetV1):
        raise ValueError(f"--weights {_name(cfg.weights)} did not load as a MobileNet v1 model")
    return model


def _teacher(cfg: TrainConfig, num_classes: int, device: torch.device, student: MobileNetConfig) -> nn.Module | None:
    if not cfg.teacher:
        return None
    teacher = load_weights(cfg.teacher).to(device).eval()
    if teacher.config.num_classes != num_classes:
        raise ValueError(
            f"--teacher {_name(cfg.teacher)} predicts {teacher.config.num_classes} classes; the data has {num_classes}"
        )
    if (teacher.config.mean, teacher.config.std) != (student.mean, student.std):
        warnings.warn(
            f"--teacher {_name(cfg.teacher)} expects inputs normalized with mean {teacher.config.mean}, std {teacher.config.std}; "
            f"it will see the student's ({student.mean}, {student.std})",
            stacklevel=2,
        )
    return teacher


_RESUME_MUST_MATCH = ("weights", "freeze_backbone", "optimizer", "ema", "probe_epochs", "bn", "qat", *_ARCH_FIELDS)


def _check_resume_config(out: Path, state: dict[str, Any], cfg: TrainConfig) -> None:
    """A resumed run must be the run that was started: same starting weights, recipe and network."""
    try:
        saved = json.loads(state.get("config", "{}"))
    except (TypeError, json.JSONDecodeError):
        return
    for name in _RESUME_MUST_MATCH:
        have, now = saved.get(name), getattr(cfg, name)
        if isinstance(have, list):
            have = tuple(have)
        if name in saved and have != now:
            raise ValueError(
                f"--resume: the run in {out} was started with {name}={have!r}, now {name}={now!r}; "
                "resume with the flags it was started with, or pass --overwrite to start afresh"
            )


def _resume(
    out: Path, model: nn.Module, optimizer: Any, scheduler: Any, ema: Any, is_main: bool, cfg: TrainConfig
) -> tuple[int, float, float]:
    state_path = out / "last_state.pt"
    state = load_state(state_path)
    _check_resume_config(out, state, cfg)
    # With EMA on, last.safetensors holds the averaged weights; training goes on from the raw ones.
    weights_file = out / ("last_raw.safetensors" if ema is not None else "last.safetensors")
    weights, saved_config, _ = load_weights_file(weights_file)
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


def _epoch_row(epoch: int, stats: dict[str, float], val: dict[str, Any], optimizer: Any) -> dict[str, Any]:
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


def sweep(base: TrainConfig, *, widths: list[float] | None = None, resolutions: list[int] | None = None) -> dict[str, Any]:
    """Trains an α x resolution grid (Figures 4 and 5: accuracy against Mult-Adds) into
    ``base.out/a<α>_r<size>``. Every point is checked before the first one trains."""
    if base.weights:
        raise ValueError("a sweep trains each α from scratch; --weights fixes one network (use mobilenet train for it)")
    if base.qat:
        raise ValueError(
            "a sweep trains each α from scratch; --qat fine-tunes a trained network (mobilenet train --weights W --qat)"
        )
    widths = list(widths or [1.0, 0.75, 0.5, 0.25])
    resolutions = list(resolutions or ([32, 48, 64] if base.data is None else [224, 192, 160, 128]))
    for name, values in (("--width-mult", widths), ("--resolution", resolutions)):
        repeated = sorted({v for v in values if values.count(v) > 1})
        if repeated:
            raise ValueError(f"{name} lists {', '.join(map(str, repeated))} more than once; each grid point trains once")
    root = Path(base.out if base.out != "runs/mobilenet" else "runs/sweep")
    points = [replace(base, width_mult=a, resolution=r, out=str(root / f"a{a:g}_r{r}")) for a in widths for r in resolutions]
    for point in points:
        point.validate()
        _check_out_folder(point)
    results = [{"width_mult": p.width_mult, "resolution": p.resolution, **train(p)} for p in points]
    rows = sorted(results, key=lambda p: p["mult_adds"])
    table = ["| α | resolution | Mult-Adds (M) | params (M) | val top-1 |", "|---|---|---|---|---|"]
    table += [
        f"| {p['width_mult']:g} | {p['resolution']} | {p['mult_adds'] / 1e6:.1f} | {p['params'] / 1e6:.2f} | {p['val_top1']:.4f} |"
        for p in rows
    ]
    from .checkpoint import atomic_write
    from .plots import plot_tradeoff

    text = "\n".join(table) + "\n"
    atomic_write(root / "sweep.md", lambda tmp: Path(tmp).write_text(text))
    atomic_write(root / "sweep.json", lambda tmp: Path(tmp).write_text(json.dumps(rows, indent=2) + "\n"))
    plot = plot_tradeoff(rows, root / "sweep.png")
    return {"rows": rows, "table": "\n".join(table), "plot": plot}
