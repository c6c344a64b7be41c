"""Training: from scratch (the paper's recipe), fine-tuning, linear probes and quantization-aware
fine-tuning, in parts:

- :mod:`.recipes`: the recipes as data (:data:`RECIPES`) and how one is picked (:func:`recipe_for`);
- :mod:`.config`: :class:`TrainConfig`, one field per ``mobilenet train`` flag; :mod:`.checks`, its checks;
- :mod:`.run`: :func:`train`, a run as named steps; :mod:`.start` and :mod:`.records`, the steps
  before the epochs and what they leave on disk;
- :mod:`.loop`: the shared loop, :func:`train_one_epoch` and :func:`validate`, which take a
  :class:`~.task.Task` (loss, hits, metric, collate) and so know nothing of labels or boxes;
- :mod:`.optim`, :mod:`.batchnorm`, :mod:`.probe` (the linear probe), :mod:`.sweep` (Figures 4, 5).
"""

from __future__ import annotations

from .batchnorm import recalibrate_batchnorm, set_train_mode
from .config import TrainConfig
from .loop import reduce_metrics, train_one_epoch, validate
from .optim import make_optimizer, param_groups
from .probe import fit_classifier
from .recipes import RECIPES, Recipe, recipe_for, resolve
from .records import save_checkpoint
from .run import train
from .start import build_model
from .sweep import sweep
from .task import Task, classification

__all__ = [
    "RECIPES",
    "Recipe",
    "Task",
    "TrainConfig",
    "build_model",
    "classification",
    "fit_classifier",
    "make_optimizer",
    "param_groups",
    "recalibrate_batchnorm",
    "recipe_for",
    "reduce_metrics",
    "resolve",
    "save_checkpoint",
    "set_train_mode",
    "sweep",
    "train",
    "train_one_epoch",
    "validate",
]
