"""The built-in data set: scikit-learn's handwritten digits, for a training run with no photos."""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset


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
