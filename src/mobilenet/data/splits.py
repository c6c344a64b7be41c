"""A training run's data: the built-in digits or a folder tree, split into train and val by seed."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from ..spec import check_seed
from .digits import DigitsDataset
from .folders import SafeImageFolder, check_disjoint
from .transforms import eval_transform, train_transform


@dataclass
class DataSplit:
    train: Dataset
    val: Dataset
    classes: list[str]
    name: str


def split_folders(root: Path) -> tuple[Path | None, Path | None]:
    """A data folder's ``train/`` and ``val/`` (None where absent); either one being a file is refused."""
    found: list[Path | None] = []
    for name in ("train", "val"):
        path = root / name
        if path.exists() and not path.is_dir():
            raise NotADirectoryError(
                f"{path} is a file, not a folder; a data folder holds train/<class>/* and val/<class>/* (or class "
                "folders directly). Move or rename it"
            )
        found.append(path if path.is_dir() else None)
    return found[0], found[1]


def load_data(
    data: str | os.PathLike[str] | None,
    resolution: int,
    *,
    seed: int = 0,
    val_fraction: float = 0.2,
    train_tf: Any = None,
    eval_tf: Any = None,
) -> DataSplit:
    """The built-in digits (``data=None``) or an ImageFolder tree: ``DIR/train/<class>/*`` and
    ``DIR/val/<class>/*``; without ``val/`` (or with class folders directly under DIR), a seeded
    split of the images. ``train_tf``/``eval_tf`` default to :func:`train_transform` and
    :func:`eval_transform` at ``resolution``."""
    check_seed(seed)
    if data is None:
        return DataSplit(
            DigitsDataset("train", resolution, seed=seed, val_fraction=val_fraction),
            DigitsDataset("val", resolution, seed=seed, val_fraction=val_fraction),
            DigitsDataset.classes,
            "digits",
        )
    from ..checkpoint import as_path

    root = as_path(data, "data folder")
    if not root.exists():
        raise FileNotFoundError(f"data folder {str(root)!r} does not exist")
    if not root.is_dir():
        raise NotADirectoryError(f"data {str(root)!r} is a file; pass a folder holding train/<class>/* and val/<class>/*")
    train_dir, val_dir = split_folders(root)
    train_tf = train_tf or train_transform(resolution)
    eval_tf = eval_tf or eval_transform(resolution)
    if val_dir is not None and train_dir is None:
        raise ValueError(
            f"data folder {str(root)!r} has val/ but no train/; put the training images in {root / 'train'}/<class>/ "
            "(or pass a folder of class folders, which is split into train and val)"
        )
    if train_dir is not None:
        train = SafeImageFolder(train_dir, train_tf)
        if val_dir is not None:
            val = SafeImageFolder(val_dir, eval_tf, classes=train.classes)
            check_disjoint(train, val)
            return DataSplit(train, val, train.classes, str(root))
        base = train_dir
    else:
        base = root
    full_train = SafeImageFolder(base, train_tf)
    full_val = SafeImageFolder(base, eval_tf, classes=full_train.classes)
    from sklearn.model_selection import train_test_split

    idx = list(range(len(full_train)))
    stratify = full_train.targets if min(full_train.targets.count(c) for c in set(full_train.targets)) >= 2 else None
    tr, va = train_test_split(idx, test_size=val_fraction, random_state=seed, stratify=stratify)
    return DataSplit(
        torch.utils.data.Subset(full_train, sorted(tr)),
        torch.utils.data.Subset(full_val, sorted(va)),
        full_train.classes,
        str(root),
    )
