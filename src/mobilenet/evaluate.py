"""Top-1 / top-5 accuracy, loss, per-class accuracy and the confusion matrix of a classifier."""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["evaluate", "evaluation_data", "topk_correct"]


def topk_correct(logits: Tensor, targets: Tensor, ks: tuple[int, ...] = (1, 5)) -> list[int]:
    """How many rows have their target among the top-k logits, for each k (k capped at the class count)."""
    maxk = min(max(ks), logits.shape[1])
    top = logits.topk(maxk, dim=1).indices
    hits = top.eq(targets.unsqueeze(1))
    return [int(hits[:, : min(k, maxk)].any(dim=1).sum()) for k in ks]


@torch.inference_mode()
def evaluate(
    model: nn.Module,
    batches: Iterable[Any],
    *,
    num_classes: int,
    device: torch.device | str = "cpu",
    label_offset: int = 0,
    amp_dtype: torch.dtype | None = None,
    channels_last: bool = False,
) -> dict[str, Any]:
    """Runs ``model`` over ``(images, targets[, skipped])`` batches.

    ``label_offset`` maps dataset targets to model outputs, e.g. 1 for Google's 1001-class models
    (index 0 is "background"), whose class k+1 is the dataset's class k.
    """
    model.eval()
    confusion = torch.zeros(num_classes, num_classes, dtype=torch.long)
    loss_sum, n, top1, top5, skipped = 0.0, 0, 0, 0, 0
    for batch in batches:
        images, targets = batch[0], batch[1]
        skipped += int(batch[2]) if len(batch) > 2 else 0
        if images.numel() == 0:
            continue
        images = images.to(device, non_blocking=True)
        if channels_last:
            images = images.to(memory_format=torch.channels_last)
        targets = targets.to(device) + label_offset
        with torch.autocast(torch.device(device).type, dtype=amp_dtype, enabled=amp_dtype is not None):
            logits = model(images)
        logits = logits.float()
        if logits.dim() != 2 or logits.shape[1] < label_offset + num_classes:
            # Metadata that names more classes than the model scores (a .tflite claiming ImageNet on a
            # 10-class head) would index past the logits, or score against the wrong classes.
            scores = logits.shape[1] if logits.dim() == 2 else f"outputs of shape {tuple(logits.shape)}, not"
            raise ValueError(
                f"the model gives {scores} scores per image, but evaluating {num_classes} classes needs "
                f"{label_offset + num_classes}; its metadata does not match its outputs"
            )
        loss_sum += float(F.cross_entropy(logits, targets, reduction="sum"))
        c1, c5 = topk_correct(logits, targets)
        top1, top5, n = top1 + c1, top5 + c5, n + len(targets)
        pred = logits[:, label_offset : label_offset + num_classes].argmax(1)
        confusion += torch.bincount((targets - label_offset).cpu() * num_classes + pred.cpu(), minlength=num_classes**2).view(
            num_classes, num_classes
        )
    if n == 0:
        raise ValueError("evaluation saw no readable images")
    # A class without images has no accuracy: None (JSON null), not a 0.0 that reads as "all wrong".
    hits, counts = confusion.diag().tolist(), confusion.sum(1).tolist()
    per_class = [h / c if c else None for h, c in zip(hits, counts)]
    return {
        "top1": top1 / n,
        "top5": top5 / n,
        "loss": loss_sum / n,
        "images": n,
        "skipped": skipped,
        "per_class_accuracy": per_class,
        "confusion": confusion.tolist(),
    }


def evaluation_data(
    model: nn.Module,
    data: str | os.PathLike[str] | None,
    *,
    batch_size: int = 64,
    workers: int = 0,
    preprocess: str | None = None,
) -> tuple[Any, int, list[str]]:
    """A loader for ``model`` on ``data`` with the model's own preprocessing (``preprocess`` overrides it).

    Returns (loader, label_offset, class names in dataset order). Folders are matched to the
    model's classes by name: the model's ``class_names`` for fine-tuned models, or WordNet ids
    (n01440764, ...) for ImageNet models, whose class k is the k-th synset in sorted order.
    """
    from torch.utils.data import DataLoader

    from .data import DigitsDataset, SafeImageFolder, skip_bad_collate, transforms_for
    from .labels import imagenet_wnids

    config = model.config  # type: ignore[attr-defined]
    if data is None:
        if config.num_classes != 10:
            raise ValueError(f"these weights predict {config.num_classes} classes; the built-in digits have 10. Pass --data DIR")
        dataset = DigitsDataset("val", config.resolution)
        return DataLoader(dataset, batch_size, num_workers=workers, collate_fn=skip_bad_collate), 0, DigitsDataset.classes
    from .checkpoint import as_path
    from .data import split_folders

    root = as_path(data, "data folder")
    if not root.is_dir():
        what = "is a file, not a folder" if root.exists() else "does not exist"
        raise FileNotFoundError(f"data folder {str(root)!r} {what}")
    train_dir, val_dir = split_folders(root)
    if val_dir is not None:
        root = val_dir
    elif train_dir is not None:
        raise ValueError(
            f"data folder {str(root)!r} has train/ but no val/; eval measures held-out images in {root / 'val'}/<class>/ "
            f"(to score the training images, pass --data {train_dir})"
        )
    folders = SafeImageFolder(root, transforms_for(config, preprocess=preprocess))
    label_offset = 1 if config.num_classes == 1001 else 0
    if config.class_names is not None:
        names = list(config.class_names)
    elif config.num_classes in (1000, 1001):
        names = imagenet_wnids()
    else:
        names = None
    if names is not None:
        unknown = [c for c in folders.classes if c not in names]
        if unknown:
            raise ValueError(
                f"{root}: class folders {unknown[:5]} are not classes of these weights "
                f"({'WordNet ids such as n01440764' if config.num_classes in (1000, 1001) else ', '.join(names[:5])})"
            )
        folders.samples = [(p, names.index(folders.classes[t])) for p, t in folders.samples]
        folders.targets = [t for _, t in folders.samples]
        folders.classes = names
    elif len(folders.classes) != config.num_classes:
        raise ValueError(f"{root} has {len(folders.classes)} class folders; these weights predict {config.num_classes} classes")
    loader = DataLoader(folders, batch_size, num_workers=workers, collate_fn=skip_bad_collate)
    return loader, label_offset, folders.classes
