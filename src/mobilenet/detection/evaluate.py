"""COCO box AP with pycocotools: the metric Table 13 and Google's model zoo report."""

from __future__ import annotations

import contextlib
import io
from typing import Any

__all__ = ["STAT_NAMES", "coco_map"]

#: COCOeval.stats in order: AP@[.5:.95], AP50, AP75, AP small/medium/large, AR@1/10/100, AR small/medium/large.
STAT_NAMES = (
    "map",
    "map_50",
    "map_75",
    "map_small",
    "map_medium",
    "map_large",
    "mar_1",
    "mar_10",
    "mar_100",
    "mar_small",
    "mar_medium",
    "mar_large",
)


def coco_map(ground_truth: dict[str, Any], detections: list[dict[str, Any]]) -> dict[str, float]:
    """COCO's box metrics for ``detections`` ([{image_id, category_id, bbox [x, y, w, h], score}])
    against a COCO-format ground truth dict. pycocotools' console output is swallowed; -1 (no
    ground truth of that size) is kept as pycocotools reports it."""
    try:
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval
    except ImportError as exc:  # pragma: no cover - the detection extra installs it
        raise RuntimeError("COCO evaluation needs pycocotools: pip install 'mobilenet[detection]'") from exc
    if not detections:
        return dict.fromkeys(STAT_NAMES, 0.0)
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = {"info": {}, "licenses": [], **ground_truth}
        gt.createIndex()
        dt = gt.loadRes(detections)
        run = COCOeval(gt, dt, "bbox")
        run.evaluate()
        run.accumulate()
        run.summarize()
    return {name: float(v) for name, v in zip(STAT_NAMES, run.stats)}
