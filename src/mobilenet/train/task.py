"""What the shared training pieces need of a task, passed in rather than branched on.

The loop (:mod:`mobilenet.train.loop`), the loaders and the checkpoints know nothing of labels
or boxes: a :class:`Task` gives them the loss, the count of right answers for the running
accuracy, the validation metric and the collate that batches the data. :func:`classification`
is the classifier's; a detector (``mobilenet.detection``) passes its own.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..data import skip_bad_collate
from ..evaluate import evaluate

__all__ = ["Task", "classification", "classification_loss", "to_device"]


@dataclass(frozen=True)
class Task:
    """``loss(outputs, targets, images)``: the batch's mean loss. ``hits(outputs, targets)``: how
    many of the batch are right (a tensor; the running train accuracy). ``metric(model, loader, *,
    device, amp_dtype, channels_last)``: the validation dict (``loss`` and ``top1`` at least, which
    the logs and best-checkpoint choice read). ``collate``: a DataLoader ``collate_fn`` giving
    ``(images, targets, skipped)``."""

    name: str
    loss: Callable[[Any, Any, Tensor], Tensor]
    hits: Callable[[Any, Any], Tensor]
    metric: Callable[..., dict[str, Any]]
    collate: Callable[[list[Any]], tuple[Tensor, Any, int]] = skip_bad_collate


def classification_loss(logits: Tensor, targets: Tensor, images: Tensor, teacher: nn.Module | None, cfg: Any) -> Tensor:
    loss = F.cross_entropy(logits.float(), targets, label_smoothing=cfg.label_smoothing)
    if teacher is None:
        return loss
    with torch.no_grad():
        t_logits = teacher(images).float()
    temp = cfg.distill_temperature
    kd = F.kl_div(
        F.log_softmax(logits.float() / temp, 1), F.log_softmax(t_logits / temp, 1), reduction="batchmean", log_target=True
    )
    return (1 - cfg.distill_alpha) * loss + cfg.distill_alpha * temp * temp * kd


def classification(cfg: Any, *, teacher: nn.Module | None = None, num_classes: int | None = None) -> Task:
    """Cross-entropy (label smoothing and distillation from ``teacher`` as ``cfg`` says), top-1
    hits, and :func:`mobilenet.evaluate.evaluate` over ``num_classes`` for validation."""

    def metric(model: nn.Module, loader: Any, **kwargs: Any) -> dict[str, Any]:
        if num_classes is None:
            raise ValueError("classification validation needs num_classes")
        return evaluate(model, loader, num_classes=num_classes, **kwargs)

    return Task(
        name="classification",
        loss=lambda logits, targets, images: classification_loss(logits, targets, images, teacher, cfg),
        hits=lambda logits, targets: (logits.detach().argmax(1) == targets).sum(),
        metric=metric,
    )


def to_device(value: Any, device: torch.device) -> Any:
    """A batch's targets on ``device``: a tensor, or lists, tuples and dicts of them (boxes)."""
    if isinstance(value, Tensor):
        return value.to(device, non_blocking=True)
    if isinstance(value, (list, tuple)):
        return type(value)(to_device(v, device) for v in value)
    if isinstance(value, dict):
        return {k: to_device(v, device) for k, v in value.items()}
    return value
