"""Datasets and transforms: the built-in digits set, ImageFolder trees, and the paper's preprocessing.

Preprocessing follows Google's weights: pixels scaled to [-1, 1]; evaluation resizes so that a
central crop of 87.5% of the image is taken at the model's resolution. Training uses random
resized crops with a limited small-crop range (the paper uses less aggressive augmentation than
Inception) and horizontal flips.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError
from torch import Tensor
from torch.utils.data import Dataset, default_collate
from torchvision import transforms as T
from torchvision.datasets.folder import IMG_EXTENSIONS

__all__ = [
    "CENTER_CROP",
    "DataSplit",
    "DigitsDataset",
    "SafeImageFolder",
    "eval_transform",
    "load_data",
    "skip_bad_collate",
    "train_transform",
]

log = logging.getLogger(__name__)
CENTER_CROP = 0.875
MEAN = (0.5, 0.5, 0.5)  # (x - 0.5) / 0.5 maps [0, 1] to [-1, 1], as Google's MobileNets expect
STD = (0.5, 0.5, 0.5)
#: Smallest crop as a fraction of the image: Inception's 0.08 is more than a small net wants.
MIN_CROP_SCALE = 0.25


def train_transform(resolution: int, *, flip: bool = True) -> T.Compose:
    steps: list[Any] = [T.RandomResizedCrop(resolution, scale=(MIN_CROP_SCALE, 1.0), antialias=True)]
    if flip:
        steps.append(T.RandomHorizontalFlip())
    steps += [T.ToTensor(), T.Normalize(MEAN, STD)]
    return T.Compose(steps)


def eval_transform(resolution: int, crop: float = CENTER_CROP) -> T.Compose:
    """Resize the short side to ``resolution / crop``, then take the central ``resolution`` square."""
    return T.Compose(
        [
            T.Resize(round(resolution / crop), interpolation=T.InterpolationMode.BILINEAR, antialias=True),
            T.CenterCrop(resolution),
            T.ToTensor(),
            T.Normalize(MEAN, STD),
        ]
    )


class DigitsDataset(Dataset):
    """scikit-learn's handwritten digits (1,797 8x8 images, 10 classes), upscaled, as 3-channel tensors.

    The split is stratified and seeded, so train and val never overlap and are the same on every
    run. Everything is decoded once into one tensor; augmentation is a small random shift and scale
    (no flips: a mirrored 2 is not a 2).
    """

    classes: ClassVar[list[str]] = [str(i) for i in range(10)]

    def __init__(
        self, split: str = "train", resolution: int = 32, *, val_fraction: float = 0.2, seed: int = 0, augment: bool | None = None
    ) -> None:
        try:
            from sklearn.datasets import load_digits
            from sklearn.model_selection import train_test_split
        except ImportError as exc:  # pragma: no cover - the train extra installs it
            raise RuntimeError("the built-in digits dataset needs scikit-learn: pip install 'mobilenet[train]'") from exc
        if split not in ("train", "val"):
            raise ValueError(f"split={split!r} must be 'train' or 'val'")
        digits = load_digits()
        idx = list(range(len(digits.target)))
        train_idx, val_idx = train_test_split(idx, test_size=val_fraction, random_state=seed, stratify=digits.target)
        chosen = sorted(train_idx if split == "train" else val_idx)
        images = torch.tensor(digits.images[chosen], dtype=torch.float32).unsqueeze(1) / 16.0
        images = F.interpolate(images, size=(resolution, resolution), mode="bilinear", align_corners=False)
        self.images = ((images - 0.5) / 0.5).expand(-1, 3, -1, -1).contiguous()
        self.targets = torch.tensor(digits.target[chosen], dtype=torch.long)
        self.resolution = resolution
        self.augment = split == "train" if augment is None else augment

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        x = self.images[i]
        if self.augment:
            # Shift by up to 1/8 of the side, padding with the background value (-1).
            r = self.resolution
            pad = max(r // 8, 1)
            x = F.pad(x, (pad, pad, pad, pad), value=-1.0)
            dy, dx = torch.randint(0, 2 * pad + 1, (2,)).tolist()
            x = x[:, dy : dy + r, dx : dx + r]
        return x, int(self.targets[i])


def _is_image(path: str) -> bool:
    return path.lower().endswith(IMG_EXTENSIONS)


class SafeImageFolder(Dataset):
    """An ImageFolder that skips unreadable or truncated images with a warning instead of failing.

    A skipped sample comes back as ``None``; :func:`skip_bad_collate` drops it from the batch and
    the training loop counts it.
    """

    def __init__(self, root: str | os.PathLike[str], transform: Any = None, classes: Sequence[str] | None = None) -> None:
        root = Path(root)
        if not root.is_dir():
            raise FileNotFoundError(f"data folder {str(root)!r} does not exist; expected {root}/<class>/<image> files")
        found = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
        if not found:
            raise ValueError(f"data folder {str(root)!r} has no class subfolders; expected {root}/<class>/<image> files")
        self.classes = list(classes) if classes is not None else found
        unknown = set(found) - set(self.classes)
        if unknown:
            raise ValueError(f"{root}: class folders {sorted(unknown)} are not among the training classes")
        self.class_to_idx = {c: i for i, c in enumerate(self.classes)}
        self.samples: list[tuple[str, int]] = []
        empty = []
        for c in found:
            files = sorted(
                os.path.join(dirpath, f)
                for dirpath, _, names in os.walk(root / c, followlinks=True)
                for f in names
                if _is_image(f)
            )
            if not files:
                empty.append(c)
            self.samples += [(f, self.class_to_idx[c]) for f in files]
        if empty:
            raise ValueError(
                f"{root}: class folder(s) {empty} contain no images (extensions {', '.join(IMG_EXTENSIONS)}); "
                "add images or remove the folder"
            )
        self.targets = [t for _, t in self.samples]
        self.transform = transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[Tensor, int] | None:
        path, target = self.samples[i]
        try:
            with Image.open(path) as img:
                img = img.convert("RGB")
        except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as exc:
            warnings.warn(f"skipping unreadable image {path}: {exc}", stacklevel=1)
            return None
        return (self.transform(img) if self.transform else img), target


def skip_bad_collate(batch: list[Any]) -> tuple[Tensor, Tensor, int]:
    """Collates the readable samples; returns (images, targets, number skipped)."""
    good = [b for b in batch if b is not None]
    skipped = len(batch) - len(good)
    if not good:
        return torch.empty(0), torch.empty(0, dtype=torch.long), skipped
    images, targets = default_collate(good)
    return images, targets, skipped


@dataclass
class DataSplit:
    train: Dataset
    val: Dataset
    classes: list[str]
    name: str


def load_data(data: str | os.PathLike[str] | None, resolution: int, *, seed: int = 0, val_fraction: float = 0.2) -> DataSplit:
    """The built-in digits (``data=None``) or an ImageFolder tree: ``DIR/train/<class>/*`` and
    ``DIR/val/<class>/*``; without ``val/`` (or with class folders directly under DIR), a seeded
    split of the images."""
    if data is None:
        return DataSplit(
            DigitsDataset("train", resolution, seed=seed, val_fraction=val_fraction),
            DigitsDataset("val", resolution, seed=seed, val_fraction=val_fraction),
            DigitsDataset.classes,
            "digits",
        )
    root = Path(data)
    if not root.is_dir():
        raise FileNotFoundError(f"data folder {str(root)!r} does not exist")
    if (root / "train").is_dir():
        train = SafeImageFolder(root / "train", train_transform(resolution))
        if (root / "val").is_dir():
            val = SafeImageFolder(root / "val", eval_transform(resolution), classes=train.classes)
            return DataSplit(train, val, train.classes, str(root))
        base = root / "train"
    else:
        base = root
    full_train = SafeImageFolder(base, train_transform(resolution))
    full_val = SafeImageFolder(base, eval_transform(resolution), classes=full_train.classes)
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


IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm")


def image_batches(
    folder: str | os.PathLike[str], resolution: int, *, limit: int = 256, batch_size: int = 32, seed: int = 0
) -> list[Tensor]:
    """Up to ``limit`` images from anywhere under ``folder`` (a seeded sample), preprocessed for
    evaluation and batched: calibration data for int8. Unreadable files are skipped."""
    import random

    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"calibration folder {str(root)!r} does not exist")
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    random.Random(seed).shuffle(files)
    transform = eval_transform(resolution)
    images: list[Tensor] = []
    for path in files:
        if len(images) >= limit:
            break
        try:
            with Image.open(path) as img:
                images.append(transform(img.convert("RGB")))
        except (OSError, UnidentifiedImageError, ValueError):
            continue
    if not images:
        raise ValueError(f"{root} holds no readable images ({', '.join(IMAGE_SUFFIXES)})")
    return [torch.stack(images[i : i + batch_size]) for i in range(0, len(images), batch_size)]
