"""Every setting of a training run, one dataclass field each: the ``mobilenet train`` flags are
generated from these fields, their help texts and choices."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..spec import ACTIVATIONS, PADDINGS, PREPROCESSES, VARIANTS
from .checks import check_config
from .recipes import BN_MODES, OPTIMIZERS, RECIPES, SCHEDULES

__all__ = ["TrainConfig"]


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
        "a file, a registry name, or Google's two split 1.0-224 TF Lite files",
        nargs="+",
    )
    freeze_backbone: bool = _opt("train the classifier only (a linear probe); needs --weights", default=False)
    recipe: str | None = _opt(
        "the recipe that fills every setting not given (default: picked by what the run starts from, and printed)",
        choices=tuple(RECIPES),
    )
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

    def check(self) -> None:
        """Checks every value given, before any work starts (:func:`mobilenet.train.checks.check_config`)."""
        check_config(self)
