"""Top-k predictions for image files, with the weights' own preprocessing."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from PIL import Image, UnidentifiedImageError
from torch import nn

from .data import eval_transform
from .labels import class_names_for

__all__ = ["load_image", "predict"]


def load_image(path: str | os.PathLike[str]) -> Image.Image:
    try:
        with Image.open(path) as img:
            return img.convert("RGB")
    except FileNotFoundError:
        raise FileNotFoundError(f"image {str(path)!r} does not exist") from None
    except (OSError, UnidentifiedImageError, SyntaxError) as exc:
        raise ValueError(f"{path}: not a readable image ({exc})") from None


@torch.inference_mode()
def predict(
    model: nn.Module, images: Sequence[str | os.PathLike[str]], topk: int = 5, crop: float = 0.875
) -> list[dict[str, Any]]:
    """[{image, predictions: [{index, label, probability}]}] for each image file.

    For a 1001-class model, index 0 is "background": indices are the model's own, and background
    is shown only when it is among the top k by its own probability, like any class.
    """
    config = model.config  # type: ignore[attr-defined]
    names = class_names_for(config.num_classes, config.labels, config.class_names)
    transform = eval_transform(config.resolution, crop)
    model.eval()
    results = []
    for path in images:
        x = transform(load_image(path)).unsqueeze(0)
        probs = model(x).float().softmax(1)[0]
        top = probs.topk(min(topk, probs.numel()))
        results.append(
            {
                "image": str(Path(path)),
                "predictions": [
                    {"index": int(i), "label": names[int(i)], "probability": float(p)} for p, i in zip(top.values, top.indices)
                ],
            }
        )
    return results
