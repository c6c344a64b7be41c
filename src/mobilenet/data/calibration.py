"""Batches of sample photos, preprocessed as one model expects: int8 calibration data."""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torchvision.datasets.folder import IMG_EXTENSIONS

from .images import list_images, transform_image
from .splits import check_seed
from .transforms import transforms_for


def image_batches(
    folder: str | os.PathLike[str],
    config: Any,
    *,
    resolution: int | None = None,
    limit: int = 256,
    batch_size: int = 32,
    seed: int = 0,
) -> list[Tensor]:
    """Up to ``limit`` images from anywhere under ``folder`` (a seeded sample), preprocessed as the
    model whose ``config`` is given expects them (:func:`transforms_for`: its resize, crop, mean
    and std; ``resolution`` overrides its input size) and batched: calibration data for int8, or
    photos to compare two forms of one model on. The config is required so that int8 ranges are
    never calibrated on inputs scaled differently from what the model will see. Unreadable files
    are skipped."""
    import random

    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ValueError(f"calibration image count {limit!r} must be an integer >= 1 (a few hundred is typical)")
    check_seed(seed)
    from ..checkpoint import as_path

    root = as_path(folder, "calibration folder")
    if not root.is_dir():
        what = "is a file, not a folder" if root.exists() else "does not exist"
        raise FileNotFoundError(f"calibration folder {str(root)!r} {what}; pass a folder of sample images")
    listing = list_images(root)
    listing.warn(root)
    files = sorted(Path(f) for f in listing.files)  # Path order, as before: the seeded sample stays the same
    random.Random(seed).shuffle(files)
    transform = transforms_for(config, resolution=resolution)
    images: list[Tensor] = []
    skipped: list[str] = []
    for path in files:
        if len(images) >= limit:
            break
        try:
            images.append(transform_image(path, transform))
        except (OSError, ValueError) as exc:
            skipped.append(str(exc))
    if skipped:
        warnings.warn(f"{root}: skipped {len(skipped)} unreadable image(s), e.g. {skipped[0]}", stacklevel=2)
    if not images:
        raise ValueError(f"{root} holds no readable images ({', '.join(IMG_EXTENSIONS)})")
    return [torch.stack(images[i : i + batch_size]) for i in range(0, len(images), batch_size)]
