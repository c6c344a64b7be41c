"""SSD's training targets and loss: anchors matched to boxes (TF's ArgMaxMatcher at IoU 0.5, every
box also taking its best anchor), box codes with TF's scales, and smooth L1 on matched anchors plus
sigmoid focal loss (or SSD's BCE with 3:1 hard-negative mining) over all of them."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch.nn import functional as F

__all__ = ["detection_loss", "match_anchors"]


def _xyxy(anchors: Tensor) -> Tensor:
    yc, xc, h, w = anchors.unbind(-1)
    return torch.stack([xc - w / 2, yc - h / 2, xc + w / 2, yc + h / 2], -1)


def match_anchors(
    boxes: Tensor, labels: Tensor, anchors_xyxy: Tensor, anchors: Tensor, iou: float, scales: tuple[float, ...]
) -> tuple[Tensor, Tensor]:
    """One image's boxes (K, 4) normalized [x0, y0, x1, y1] and labels (K,) 1-based → per anchor
    (class target (A,), 0 = background; box code target (A, 4) [ty, tx, th, tw], valid where class > 0)."""
    from torchvision.models.detection._utils import Matcher
    from torchvision.ops import box_iou

    from .boxes import encode_boxes

    count = anchors.shape[0]
    if boxes.numel() == 0:
        return torch.zeros(count, dtype=torch.long), torch.zeros(count, 4)
    # As TF's ArgMaxMatcher(0.5, 0.5, force_match_for_each_row=True) does for SSD.
    matched = Matcher(iou, iou, allow_low_quality_matches=True)(box_iou(boxes, anchors_xyxy))
    positive = matched >= 0
    index = matched.clamp(min=0)
    classes = torch.where(positive, labels[index], torch.zeros_like(index))
    codes = encode_boxes(boxes[index], anchors, scales)
    return classes, torch.where(positive[:, None], codes, torch.zeros_like(codes))


def detection_loss(
    codes: Tensor, logits: Tensor, target_classes: Tensor, target_codes: Tensor, recipe: Any
) -> tuple[Tensor, Tensor]:
    """(classification, box) losses of a batch, each summed and divided by the matched anchors.

    ``logits`` (N, A, C) have background in column 0; only columns 1.. are trained, as one sigmoid
    per class (background is "no class fires"), which is how the detector's post-processing reads them.
    """
    from torchvision.ops import sigmoid_focal_loss

    positive = target_classes > 0
    num_pos = max(1, int(positive.sum()))
    onehot = F.one_hot(target_classes, logits.shape[-1])[..., 1:].float()
    fg = logits[..., 1:].float()
    if recipe.loss == "focal":
        cls = sigmoid_focal_loss(fg, onehot, alpha=recipe.focal_alpha, gamma=recipe.focal_gamma, reduction="sum")
    else:
        per_anchor = F.binary_cross_entropy_with_logits(fg, onehot, reduction="none").sum(-1)  # (N, A)
        # SSD's hard-negative mining: per image, the 3 x (its positives) background anchors with the
        # highest loss (at least a few, so a photo without boxes still teaches "nothing here").
        negative_loss = per_anchor.detach().masked_fill(positive, -1.0)
        rank = negative_loss.argsort(1, descending=True).argsort(1)
        keep = (rank < (recipe.neg_pos_ratio * positive.sum(1, keepdim=True)).clamp(min=8)) & ~positive
        cls = per_anchor[positive | keep].sum()
    box = F.smooth_l1_loss(codes.float()[positive], target_codes[positive], beta=1.0, reduction="sum")
    return cls / num_pos, box / num_pos


# ---------------------------------------------------------------------------------------------
# Model
