"""The training recipes, as data: each one's defaults, when it applies, and how it reads.

Five recipes fill every setting the user left out. Without ``--recipe NAME`` the first one in
:data:`RECIPES` whose :attr:`Recipe.when` holds for the run is used (what the run starts from), and
the run's first line names it.

- ``paper``: from scratch on an ImageFolder tree, as TF-slim trained Google's models (the paper,
  ../shared/PAPER.md §5, outside this repository): RMSprop (decay 0.9, momentum 0.9, epsilon 1.0),
  lr 0.045 per 64 images, x0.94 every 2.5 epochs, weight decay 4e-5 on conv and FC weights but
  never on depthwise filters, BN or biases. PyTorch's RMSprop adds epsilon outside the square root
  where TF adds it inside; with epsilon 1.0 both act as a damped momentum SGD early on, and the
  difference is small.
- ``digits``: the built-in digits, a small net and a short cosine schedule.
- ``finetune``: ``--weights`` given. The weights define the network; the classifier is new unless
  the weights were already trained on the data's classes (then it is kept). AdamW with a cosine
  schedule after a short warm-up, the new classifier at a higher rate than the backbone, batch
  norm frozen (see :func:`mobilenet.train.batchnorm.set_train_mode` for why), light label smoothing.
- ``linear-probe``: ``--weights`` and ``--freeze-backbone``. Only the classifier trains; without
  augmentation the pooled features are computed once and the classifier trains on them.
- ``qat``: ``--weights`` and ``--qat``. The fine-tune, through a simulation of the int8 arithmetic
  of a tflite-int8 export (:mod:`mobilenet.quantize`), at a backbone lr high enough for the weights
  to move; the weights file then carries the int8 activation ranges the export uses.

This module knows the config only by its field names, so the checks and the config sit above it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

__all__ = ["ARCH_DEFAULTS", "ARCH_FIELDS", "RECIPES", "Recipe", "describe_recipe", "recipe_for", "resolve", "weights_name"]

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

#: The network's shape when neither the weights nor the user say otherwise.
ARCH_DEFAULTS = {"activation": "relu", "padding": "symmetric", "variant": "separable", "bn_eps": 1e-3, "min_depth": 8}
#: The config fields that weights fix (``resolution`` is only an input size, so it is not one).
ARCH_FIELDS = ("width_mult", "activation", "padding", "variant", "bn_eps", "min_depth")


@dataclass(frozen=True)
class Recipe:
    """One recipe. ``when``: the settings that pick it implicitly (a field name with the truth
    value it must have; ``data: False`` is "no --data"); ``needs``: settings an explicit
    ``--recipe`` still requires; ``what``: the run's first line (``{weights}`` is filled in)."""

    what: str
    defaults: Mapping[str, Any]
    when: Mapping[str, bool]
    needs: tuple[str, ...] = ()

    def applies(self, cfg: Any) -> bool:
        return all(bool(getattr(cfg, name)) == value for name, value in self.when.items())


_PAPER = dict(
    width_mult=1.0,
    resolution=224,
    epochs=10,
    optimizer="rmsprop",
    lr=None,  # None: the optimizer's base rate scaled by global batch / 64
    head_lr_mult=1.0,
    probe_epochs=0,
    weight_decay=4e-5,
    label_smoothing=0.0,
    schedule="exponential",
    warmup=0.0,
    dropout=0.001,  # TF-slim's keep_prob 0.999
    bn="train",
    augment=True,
)
_FINETUNE = dict(
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
)

#: Every recipe, in the order the implicit choice tries them: the one place their defaults are written.
RECIPES: dict[str, Recipe] = {
    "linear-probe": Recipe(
        what="linear-probe recipe on {weights}",
        defaults=dict(
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
        when={"weights": True, "freeze_backbone": True},
        needs=("weights", "freeze_backbone"),
    ),
    # Quantization-aware fine-tuning: the fine-tune, with a backbone lr high enough for the weights
    # to move onto what survives int8 rounding (0.25-128 on flowers: lr 3e-5 x 3 epochs 0.795 in
    # LiteRT, 1e-4 x 5 epochs 0.82; benchmarks/RESULTS.md "Quantization-aware training").
    "qat": Recipe(
        what="quantization-aware fine-tuning recipe from {weights} (int8 rounding simulated in training and validation)",
        defaults={**_FINETUNE, "lr": 1e-4},
        when={"weights": True, "qat": True},
        needs=("weights", "qat"),
    ),
    "finetune": Recipe(what="fine-tuning recipe from {weights}", defaults=_FINETUNE, when={"weights": True}, needs=("weights",)),
    "digits": Recipe(
        what="the digits recipe from scratch",
        defaults={**_PAPER, "width_mult": 0.5, "resolution": 32, "epochs": 25, "schedule": "cosine", "warmup": 1.0},
        when={"data": False},
    ),
    "paper": Recipe(what="the paper's recipe from scratch", defaults=_PAPER, when={}),
}


def recipe_for(cfg: Any) -> str:
    """The recipe's name: ``cfg.recipe`` if given, else the first of :data:`RECIPES` that applies."""
    if getattr(cfg, "recipe", None):
        return cfg.recipe
    return next(name for name, recipe in RECIPES.items() if recipe.applies(cfg))


def weights_name(weights: str | tuple[str, ...] | None) -> str:
    """``--weights`` as the user gave it: one file, or the two of Google's split model."""
    return " + ".join(weights) if isinstance(weights, tuple) else str(weights)


def describe_recipe(cfg: Any) -> str:
    """How the run reads in its first line: the recipe, and why it was picked."""
    name = recipe_for(cfg)
    what = RECIPES[name].what.format(weights=weights_name(cfg.weights))
    if getattr(cfg, "recipe", None):
        return f"{what} (--recipe {name})"
    picked = ", ".join(("--" if v else "no --") + k.replace("_", "-") for k, v in RECIPES[name].when.items())
    return f"{what} (picked by {picked or 'default'}; --recipe NAME picks another)"


def resolve(cfg: Any, source: Any = None) -> Any:
    """``cfg`` with every ``None`` filled: from the weights' config ``source`` for the architecture,
    then from the recipe. A given architecture value that contradicts the weights is an error
    (:func:`mobilenet.spec.reconcile`, the one place flags meet weights)."""
    from ..spec import reconcile

    values: dict[str, Any] = {}
    if source is not None:
        given = {name: getattr(cfg, name) for name in ARCH_FIELDS}
        reconciled = reconcile(source, given, source=f"--weights {weights_name(cfg.weights)}", flags=True)
        values = {name: getattr(reconciled, name) for name in ARCH_FIELDS}
        values["resolution"] = cfg.resolution or source.resolution
    recipe = RECIPES[recipe_for(cfg)].defaults
    for f in fields(cfg):
        if getattr(cfg, f.name) is None and f.name not in values:
            if f.name in recipe:
                values[f.name] = recipe[f.name]
            elif f.name in ARCH_DEFAULTS:
                values[f.name] = ARCH_DEFAULTS[f.name]
    return replace(cfg, **values)
