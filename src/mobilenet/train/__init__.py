"""Training: from scratch (the paper's recipe), fine-tuning, linear probes and quantization-aware
fine-tuning, in parts:

- :mod:`.recipes`: the recipes as data (:data:`RECIPES`) and how one is picked (:func:`recipe_for`);
- :mod:`.config`: :class:`TrainConfig`, one field per ``mobilenet train`` flag; :mod:`.checks`, its checks;
- :mod:`.run`: :func:`train`, a run as named steps; :mod:`.start` and :mod:`.records`, the steps
  before the epochs and what they leave on disk;
- :mod:`.loop`: the shared loop, :func:`train_one_epoch` and :func:`validate`, which take a
  :class:`~.task.Task` (loss, hits, metric, collate) and so know nothing of labels or boxes;
- :mod:`.optim`, :mod:`.batchnorm`, :mod:`.probe` (the linear probe), :mod:`.sweeps` (the α x ρ grid of Figures 4, 5).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..extras import lazy_names

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

#: Where each name lives; a module loads on first use (PEP 562), so the CLI's parser (which reads
#: TrainConfig's fields) does not import the training loop, torchvision or the data sets.
_HOMES = {
    "recalibrate_batchnorm": "batchnorm",
    "set_train_mode": "batchnorm",
    "TrainConfig": "config",
    "reduce_metrics": "loop",
    "train_one_epoch": "loop",
    "validate": "loop",
    "make_optimizer": "optim",
    "param_groups": "optim",
    "fit_classifier": "probe",
    "RECIPES": "recipes",
    "Recipe": "recipes",
    "recipe_for": "recipes",
    "resolve": "recipes",
    "save_checkpoint": "records",
    "train": "run",
    "build_model": "start",
    "sweep": "sweeps",
    "Task": "task",
    "classification": "task",
}


__getattr__, __dir__ = lazy_names(__name__, _HOMES)


if TYPE_CHECKING:
    from .batchnorm import recalibrate_batchnorm, set_train_mode
    from .config import TrainConfig
    from .loop import reduce_metrics, train_one_epoch, validate
    from .optim import make_optimizer, param_groups
    from .probe import fit_classifier
    from .recipes import RECIPES, Recipe, recipe_for, resolve
    from .records import save_checkpoint
    from .run import train
    from .start import build_model
    from .sweeps import sweep
    from .task import Task, classification
