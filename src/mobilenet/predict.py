"""Top-k predictions for image files, with the weights' own preprocessing."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .data import open_rgb, transforms_for
from .labels import class_names_for
from .spec import check_crop_pct

__all__ = ["load_image", "predict"]

#: Kept for callers of the old name: decoding lives in :func:`mobilenet.data.open_rgb`.
load_image = open_rgb


@torch.inference_mode()
def predict(
    model: nn.Module,
    images: Sequence[str | os.PathLike[str]],
    topk: int = 5,
    crop: float | None = None,
    *,
    preprocess: str | None = None,
) -> list[dict[str, Any]]:
    """[{image, predictions: [{index, label, probability}]}] for each image file.

    The image is prepared as the model's config says (``preprocess``, ``crop_pct``, mean and std);
    ``crop`` and ``preprocess`` override it. For a 1001-class model, index 0 is "background":
    indices are the model's own, and background is shown only when it is among the top k by its
    own probability, like any class.
    """
    if isinstance(topk, bool) or not isinstance(topk, int) or topk < 1:
        raise ValueError(f"topk={topk!r} must be an integer >= 1 (how many labels to show per image)")
    if crop is not None:
        check_crop_pct(crop, "crop")
    config = model.config  # type: ignore[attr-defined]
    if config.num_classes < 1:
        raise ValueError(
            "this model has no classifier (num_classes=0: it returns features); predict needs class scores. "
            "Load weights with a classifier, or fine-tune one with mobilenet train --weights ..."
        )
    names = class_names_for(config.num_classes, config.labels, config.class_names)
    transform = transforms_for(config, preprocess=preprocess, crop=crop)
    model.eval()
    results = []
    for path in images:
        x = transform(open_rgb(path)).unsqueeze(0)
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
