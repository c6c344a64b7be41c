"""SSD's box code and the two post-processings, on torchvision.ops.

Box code (TF's FasterRcnnBoxCoder as SSD uses it): an anchor [yc, xc, h, w] and a code
[ty, tx, th, tw] give the box centre ``(ty / 10 · h + yc, tx / 10 · w + xc)`` and size
``(exp(th / 5) · h, exp(tw / 5) · w)``, in normalized image coordinates. Boxes leave this module
as torchvision does them: [x0, y0, x1, y1].
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torchvision.ops import batched_nms, box_convert, clip_boxes_to_image

from .spec import PostProcessConfig

__all__ = ["decode_boxes", "encode_boxes", "postprocess"]


def decode_boxes(codes: Tensor, anchors: Tensor, scales: Sequence[float] = (10.0, 10.0, 5.0, 5.0)) -> Tensor:
    """Codes (..., A, 4) [ty, tx, th, tw] and anchors (A, 4) [yc, xc, h, w] → boxes (..., A, 4) [x0, y0, x1, y1]."""
    sy, sx, sh, sw = scales
    yc, xc, h, w = anchors.unbind(-1)
    ty, tx, th, tw = codes.float().unbind(-1)
    cx = tx / sx * w + xc
    cy = ty / sy * h + yc
    width = torch.exp(tw / sw) * w
    height = torch.exp(th / sh) * h
    return box_convert(torch.stack([cx, cy, width, height], dim=-1), "cxcywh", "xyxy")


def encode_boxes(boxes: Tensor, anchors: Tensor, scales: Sequence[float] = (10.0, 10.0, 5.0, 5.0)) -> Tensor:
    """The inverse of :func:`decode_boxes`: boxes (..., A, 4) [x0, y0, x1, y1] → codes [ty, tx, th, tw]."""
    sy, sx, sh, sw = scales
    yc, xc, h, w = anchors.unbind(-1)
    cx, cy, width, height = box_convert(boxes.float(), "xyxy", "cxcywh").unbind(-1)
    return torch.stack([(cy - yc) / h * sy, (cx - xc) / w * sx, torch.log(height / h) * sh, torch.log(width / w) * sw], dim=-1)


def _empty(device: torch.device) -> dict[str, Tensor]:
    return {
        "boxes": torch.zeros(0, 4, device=device),
        "scores": torch.zeros(0, device=device),
        "labels": torch.zeros(0, dtype=torch.long, device=device),
    }


def postprocess(boxes: Tensor, scores: Tensor, config: PostProcessConfig) -> dict[str, Tensor]:
    """One image's decoded boxes (A, 4) and class scores (A, C), background in column 0 → detections.

    Returns torchvision's dict: ``boxes`` (K, 4) [x0, y0, x1, y1] normalized, ``scores`` (K,),
    ``labels`` (K,) as the model's class indices (1..C-1), best first. Runs on one CPU thread: its
    tensors are small, and on a busy machine handing each small op to a thread pool made it 8x slower
    (measured: 9 ms vs 76 ms per image on 2 shared cores).
    """
    threads = torch.get_num_threads()
    if boxes.device.type != "cpu" or threads == 1:
        return _postprocess(boxes, scores, config)
    torch.set_num_threads(1)
    try:
        return _postprocess(boxes, scores, config)
    finally:
        torch.set_num_threads(threads)


def _postprocess(boxes: Tensor, scores: Tensor, config: PostProcessConfig) -> dict[str, Tensor]:
    if boxes.dim() != 2 or scores.dim() != 2 or boxes.shape[0] != scores.shape[0]:
        raise ValueError(
            f"postprocess takes one image: boxes (A, 4) and scores (A, C); got {tuple(boxes.shape)}, {tuple(scores.shape)}"
        )
    boxes, scores = boxes.float(), scores.float()[:, 1:]  # background never becomes a detection
    if config.clip:
        # TF OD API clips to the image window before NMS and drops boxes left with no area.
        boxes = clip_boxes_to_image(boxes, (1, 1))
    if config.class_agnostic:
        # TF Lite's fast NMS: an anchor is its best class; one NMS over all anchors.
        best, label = scores.max(dim=1)
        keep = best > config.score_threshold
        cand_boxes, cand_scores, cand_labels = boxes[keep], best[keep], label[keep]
        groups = torch.zeros_like(cand_labels)
    else:
        # TF OD API's per-class NMS; only each class's best ``pre_nms_top_k`` anchors enter it.
        k = min(config.pre_nms_top_k, scores.shape[0])
        top_scores, top_anchors = scores.topk(k, dim=0)  # (k, C-1)
        classes = torch.arange(scores.shape[1], device=scores.device).expand(k, -1)
        keep = top_scores > config.score_threshold
        cand_boxes, cand_scores, cand_labels = boxes[top_anchors[keep]], top_scores[keep], classes[keep]
        groups = cand_labels
    if config.clip:
        area = (cand_boxes[:, 2] - cand_boxes[:, 0]) * (cand_boxes[:, 3] - cand_boxes[:, 1])
        ok = area > 0
        cand_boxes, cand_scores, cand_labels, groups = cand_boxes[ok], cand_scores[ok], cand_labels[ok], groups[ok]
    if cand_scores.numel() == 0:
        return _empty(boxes.device)
    kept = _nms(cand_boxes, cand_scores, groups, config)
    return {"boxes": cand_boxes[kept], "scores": cand_scores[kept], "labels": cand_labels[kept] + 1}


def _nms(boxes: Tensor, scores: Tensor, groups: Tensor, config: PostProcessConfig) -> Tensor:
    """batched_nms, then at most ``max_per_class`` per group and ``max_detections`` in all, best first.

    Whether greedy NMS keeps a box depends only on the higher-scoring boxes of its group, so the
    first ``max_detections`` kept boxes of the best M candidates are exactly those of all
    candidates once M candidates yield that many: M starts small and grows only when needed.
    This is what makes per-class NMS over thousands of candidates cost milliseconds.
    """
    order = torch.argsort(scores, descending=True, stable=True)  # ties (uint8 models have many) in candidate order
    m = 4 * config.max_detections
    while True:
        sub = order[:m]
        kept = sub[batched_nms(boxes[sub], scores[sub], groups[sub], config.iou_threshold)]  # best first
        if not config.class_agnostic:
            # At most max_per_class per class: the rank of each kept box within its class.
            labels = groups[kept]
            by_label = torch.argsort(labels, stable=True)
            sorted_labels = labels[by_label]
            first = torch.searchsorted(sorted_labels, sorted_labels, right=False)
            rank = torch.empty_like(by_label)
            rank[by_label] = torch.arange(len(by_label), device=by_label.device) - first
            kept = kept[rank < config.max_per_class]
        if len(kept) >= config.max_detections or m >= len(order):
            return kept[: config.max_detections]
        m *= 4
