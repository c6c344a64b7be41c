"""The checks of a training config: each value alone (:func:`check_config`, before any work),
values that contradict each other once the recipe has filled the rest, the output folder, the
batch against the data, and a resumed run against the run it continues."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..spec import ACTIVATIONS, PADDINGS, PREPROCESSES, VARIANTS, check_resolution, check_seed, check_width_mult
from .recipes import ARCH_FIELDS, BN_MODES, DEFAULT_BATCH, OPTIMIZERS, RECIPES, SCHEDULES

__all__ = ["check_combination", "check_config", "check_out_folder", "check_resume_config", "fit_batch_size"]


def check_config(cfg: Any) -> None:
    """Checks every value the user gave, before any work starts (:meth:`TrainConfig.check`).
    A list of one or two weights files becomes the plain path or a tuple."""

    def positive(name: str, integer: bool = False, allow_zero: bool = False) -> None:
        value = getattr(cfg, name)
        if value is None:
            return
        kind = int if integer else (int, float)
        bad = isinstance(value, bool) or not isinstance(value, kind) or not math.isfinite(value)
        if bad or value < 0 or (value == 0 and not allow_zero):
            bound = ">= 0" if allow_zero else "> 0"
            raise ValueError(f"{name}={value!r} must be {'an integer' if integer else 'a number'} {bound}")

    check_seed(cfg.seed)  # before 2**64 reaches torch as "Overflow when unpacking long"
    for name in ("epochs", "batch_size", "min_depth"):
        positive(name, integer=True)
    positive("workers", integer=True, allow_zero=True)
    positive("probe_epochs", integer=True, allow_zero=True)
    for name in ("lr", "head_lr_mult", "bn_eps", "distill_temperature"):
        positive(name)
    for name in ("weight_decay", "warmup", "ema", "label_smoothing", "dropout"):
        positive(name, allow_zero=True)
    if cfg.width_mult is not None:
        check_width_mult(cfg.width_mult)
    if cfg.resolution is not None:
        check_resolution(cfg.resolution)
    checks = [
        (
            cfg.label_smoothing is None or cfg.label_smoothing < 1,
            f"label_smoothing={cfg.label_smoothing} must be in [0, 1)",
        ),
        (cfg.dropout is None or cfg.dropout < 1, f"dropout={cfg.dropout} must be in [0, 1)"),
        (cfg.ema < 1, f"ema={cfg.ema} must be a decay in [0, 1), e.g. 0.999"),
        (0 <= cfg.distill_alpha <= 1, f"distill_alpha={cfg.distill_alpha} must be in [0, 1]"),
        (0 < cfg.bn_momentum <= 1, f"bn_momentum={cfg.bn_momentum} must be in (0, 1]"),
        (not (cfg.resume and cfg.overwrite), "resume and overwrite contradict each other; pass one"),
    ]
    for name, allowed in (
        ("optimizer", OPTIMIZERS),
        ("schedule", SCHEDULES),
        ("bn", BN_MODES),
        ("activation", ACTIVATIONS),
        ("padding", PADDINGS),
        ("variant", VARIANTS),
        ("preprocess", PREPROCESSES),
        ("recipe", tuple(RECIPES)),
    ):
        value = getattr(cfg, name)
        checks.append((value is None or value in allowed, f"{name}={value!r} must be one of {', '.join(allowed)}"))
    checks += [(False, why) for why in _conflicts(cfg)]
    for ok, message in checks:
        if not ok:
            raise ValueError(message)
    for name in ("weights", "teacher"):
        value = getattr(cfg, name)
        if isinstance(value, (list, tuple)):
            if not 1 <= len(value) <= 2:
                raise ValueError(f"{name} takes one file (or Google's two split TF Lite files), got {len(value)}")
            # One file is the plain path; two stay a list (extractor + head).
            setattr(cfg, name, value[0] if len(value) == 1 else tuple(value))


def _conflicts(cfg: Any) -> list[str]:
    """Flags that contradict each other (or the recipe asked for), each as a sentence."""
    found: list[str] = []
    if cfg.qat:
        qat_conflicts = [
            (not cfg.weights, "it fine-tunes a trained network: pass --weights"),
            (cfg.freeze_backbone, "a linear probe does not train the layers it would quantize: drop --freeze-backbone"),
            (cfg.bn not in (None, "frozen"), "BN is folded into the convs, as int8 runs it: drop --bn or pass --bn frozen"),
            (cfg.ema > 0, "the int8 ranges follow the trained weights, not an average: drop --ema"),
            (cfg.amp, "bf16 autocast would round before the int8 simulation does: drop --amp"),
        ]
        for bad, why in qat_conflicts:
            if bad:
                found.append(f"qat: {why}")
    if cfg.freeze_backbone and not cfg.weights:
        found.append(
            "freeze_backbone without weights would train a classifier on a random backbone; "
            "pass --weights (Google's or your own) or drop --freeze-backbone"
        )
    if cfg.recipe in RECIPES:
        for name in RECIPES[cfg.recipe].needs:
            if not getattr(cfg, name):
                flag = "--" + name.replace("_", "-")
                found.append(f"recipe={cfg.recipe!r} is for runs with {flag}: pass {flag}, or another --recipe")
    return found


def check_combination(cfg: Any) -> None:
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


def fit_batch_size(cfg: Any, images: int, world: int) -> Any:
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


def check_out_folder(cfg: Any) -> Path:
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


RESUME_MUST_MATCH = ("weights", "freeze_backbone", "optimizer", "ema", "probe_epochs", "bn", "qat", "recipe", *ARCH_FIELDS)


def check_resume_config(out: Path, state: dict[str, Any], cfg: Any) -> None:
    """A resumed run must be the run that was started: same starting weights, recipe and network."""
    try:
        saved = json.loads(state.get("config", "{}"))
    except (TypeError, json.JSONDecodeError):
        return
    for name in RESUME_MUST_MATCH:
        have, now = saved.get(name), getattr(cfg, name)
        if isinstance(have, list):
            have = tuple(have)
        if name in saved and have != now:
            raise ValueError(
                f"--resume: the run in {out} was started with {name}={have!r}, now {name}={now!r}; "
                "resume with the flags it was started with, or pass --overwrite to start afresh"
            )
