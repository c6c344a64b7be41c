"""Datasets and transforms: the built-in digits set, ImageFolder trees, and each weights' preprocessing.

A model's config says how its inputs are made (:data:`mobilenet.spec.PREPROCESSES`): Google's
weights were evaluated with TF-slim's inception preprocessing (the central 87.5% of the height and
of the width, resized to S x S, pixels scaled to [-1, 1]); models of our own default to
torchvision's resize-then-centre-crop; timm's MobileNet v1 weights want [-1, 1] too (their
pretrained_cfg's mean and std are 0.5; :mod:`mobilenet.weights.timm`).
:func:`transforms_for` turns a config into its evaluation transform. Training uses random resized
crops with a limited small-crop range (the paper uses less aggressive augmentation than
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
    "CentralCropResize",
    "DataSplit",
    "DigitsDataset",
    "SafeImageFolder",
    "eval_transform",
    "load_data",
    "open_rgb",
    "skip_bad_collate",
    "train_transform",
    "transforms_for",
]

log = logging.getLogger(__name__)
CENTER_CROP = 0.875
MEAN = (0.5, 0.5, 0.5)  # (x - 0.5) / 0.5 maps [0, 1] to [-1, 1], as Google's MobileNets expect
STD = (0.5, 0.5, 0.5)
#: Smallest crop as a fraction of the image: Inception's 0.08 is more than a small net wants.
MIN_CROP_SCALE = 0.25


def train_transform(resolution: int, *, flip: bool = True, mean: Sequence[float] = MEAN, std: Sequence[float] = STD) -> T.Compose:
    steps: list[Any] = [T.RandomResizedCrop(resolution, scale=(MIN_CROP_SCALE, 1.0), antialias=True)]
    if flip:
        steps.append(T.RandomHorizontalFlip())
    steps += [T.ToTensor(), T.Normalize(mean, std)]
    return T.Compose(steps)


class CentralCropResize:
    """TF-slim's evaluation crop: the central ``fraction`` of the height and of the width
    (``tf.image.central_crop``'s box), resized bilinearly to ``size`` x ``size``. The aspect ratio is
    not kept, so a wide photo is squeezed, as it was when Google measured its weights' accuracy."""

    def __init__(self, size: int, fraction: float = CENTER_CROP, interpolation: str = "bilinear") -> None:
        self.size, self.fraction, self.interpolation = size, fraction, interpolation

    def __call__(self, img: Image.Image) -> Image.Image:
        w, h = img.size
        top, left = int((h - h * self.fraction) / 2), int((w - w * self.fraction) / 2)
        # PIL crops and resizes in one pass, filtering over the whole box (antialiased), which is
        # closer to the photo than TF1's point-sampled resize_bilinear on large downscales.
        resample = Image.Resampling.BICUBIC if self.interpolation == "bicubic" else Image.Resampling.BILINEAR
        return img.resize((self.size, self.size), resample, box=(left, top, w - left, h - top))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(size={self.size}, fraction={self.fraction}, interpolation={self.interpolation})"


def eval_transform(
    resolution: int,
    crop: float = CENTER_CROP,
    *,
    preprocess: str = "torchvision",
    mean: Sequence[float] = MEAN,
    std: Sequence[float] = STD,
    interpolation: str = "bilinear",
) -> T.Compose:
    """``preprocess="torchvision"``: resize the short side to ``resolution / crop``, take the central
    square. ``"tf"``: :class:`CentralCropResize`. Then scale to ``(x - mean) / std``."""
    if preprocess == "tf":
        resize: list[Any] = [CentralCropResize(resolution, crop, interpolation)]
    elif preprocess == "torchvision":
        resize = [
            T.Resize(round(resolution / crop), interpolation=T.InterpolationMode(interpolation), antialias=True),
            T.CenterCrop(resolution),
        ]
    else:
        raise ValueError(f"preprocess={preprocess!r} is not supported; choose 'tf' or 'torchvision'")
    return T.Compose([*resize, T.ToTensor(), T.Normalize(mean, std)])


def transforms_for(
    config: Any, *, preprocess: str | None = None, crop: float | None = None, resolution: int | None = None
) -> T.Compose:
    """The evaluation transform a model's config asks for; ``preprocess``/``crop``/``resolution`` override it."""
    return eval_transform(
        resolution or config.resolution,
        config.crop_pct if crop is None else crop,
        preprocess=preprocess or config.preprocess,
        mean=config.mean,
        std=config.std,
        interpolation=getattr(config, "interpolation", "bilinear"),
    )


_DECODE_ERRORS = (OSError, UnidentifiedImageError, SyntaxError, ValueError, Image.DecompressionBombError)


def open_rgb(path: str | os.PathLike[str]) -> Image.Image:
    """Decodes an image file to 8-bit RGB, or raises ``ValueError`` naming the file.

    16-bit images (PNG, TIFF) are scaled to 8 bits, as torchvision's ``decode_png`` and
    ``ToDtype(torch.uint8, scale=True)`` would; PIL's own ``convert("RGB")`` clips them to white.
    """
    try:
        with Image.open(path) as img:
            img.load()
            if img.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N"):
                import numpy as np

                pixels = np.asarray(img, dtype=np.float64)
                high = 65535.0 if img.mode.startswith("I;16") or pixels.max() > 255 else 255.0
                img = Image.fromarray(np.clip(pixels / high * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")
            elif img.mode == "F":
                import numpy as np

                pixels = np.asarray(img, dtype=np.float64)
                img = Image.fromarray(
                    np.clip(pixels * (255.0 if pixels.max() <= 1.0 else 1.0) + 0.5, 0, 255).astype(np.uint8), "L"
                )
            return img.convert("RGB")
    except FileNotFoundError:
        raise FileNotFoundError(f"image {str(path)!r} does not exist") from None
    except _DECODE_ERRORS as exc:
        raise ValueError(f"{path}: not a readable image ({exc})") from None


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
            what = "is a file, not a folder" if root.exists() else "does not exist"
            raise FileNotFoundError(f"data folder {str(root)!r} {what}; expected {root}/<class>/<image> files")
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
            img = open_rgb(path)
        except (OSError, ValueError) as exc:
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
    if data is None:
        return DataSplit(
            DigitsDataset("train", resolution, seed=seed, val_fraction=val_fraction),
            DigitsDataset("val", resolution, seed=seed, val_fraction=val_fraction),
            DigitsDataset.classes,
            "digits",
        )
    train_tf = train_tf or train_transform(resolution)
    eval_tf = eval_tf or eval_transform(resolution)
    root = Path(data)
    if not root.exists():
        raise FileNotFoundError(f"data folder {str(root)!r} does not exist")
    if not root.is_dir():
        raise NotADirectoryError(f"data {str(root)!r} is a file; pass a folder holding train/<class>/* and val/<class>/*")
    if (root / "train").is_dir():
        train = SafeImageFolder(root / "train", train_tf)
        if (root / "val").is_dir():
            val = SafeImageFolder(root / "val", eval_tf, classes=train.classes)
            return DataSplit(train, val, train.classes, str(root))
        base = root / "train"
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


def image_batches(
    folder: str | os.PathLike[str],
    resolution: int,
    *,
    limit: int = 256,
    batch_size: int = 32,
    seed: int = 0,
    transform: Any = None,
) -> list[Tensor]:
    """Up to ``limit`` images from anywhere under ``folder`` (a seeded sample), preprocessed for
    evaluation (``transform``, default :func:`eval_transform`) and batched: calibration data for
    int8. Unreadable files are skipped."""
    import random

    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ValueError(f"calibration image count {limit!r} must be an integer >= 1 (a few hundred is typical)")
    root = Path(folder)
    if not root.is_dir():
        what = "is a file, not a folder" if root.exists() else "does not exist"
        raise FileNotFoundError(f"calibration folder {str(root)!r} {what}; pass a folder of sample images")
    files = sorted(p for p in root.rglob("*") if _is_image(p.name) and p.is_file())
    random.Random(seed).shuffle(files)
    transform = transform or eval_transform(resolution)
    images: list[Tensor] = []
    for path in files:
        if len(images) >= limit:
            break
        try:
            images.append(transform(open_rgb(path)))
        except (OSError, ValueError):
            continue
    if not images:
        raise ValueError(f"{root} holds no readable images ({', '.join(IMG_EXTENSIONS)})")
    return [torch.stack(images[i : i + batch_size]) for i in range(0, len(images), batch_size)]
