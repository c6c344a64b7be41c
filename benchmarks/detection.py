"""Google's SSD MobileNet v1 (detect.tflite): our float import against LiteRT, and COCO AP on coco128.

1. Raw outputs on identical 300x300 uint8 inputs (the four reference photos, then the 128 coco128
   photos): largest and mean |difference| of box codes and class logits.
2. COCO AP (pycocotools) on coco128: ours and LiteRT's raw outputs under the `coco`
   post-processing, and both under the file's `tflite` one (LiteRT: the file's own op), with the
   time each evaluation took.

    python benchmarks/detection.py
"""

from __future__ import annotations

import time
from pathlib import Path

import torch
from _common import REFERENCE

import mobilenet
from mobilenet.detection import evaluate_detector
from mobilenet.detection.data import load_input, read_coco
from mobilenet.detection.runtime import LiteRTDetector, TorchDetector

DETECT = REFERENCE / "detection" / "detect.tflite"
PHOTOS = [REFERENCE / "detection" / n for n in ("cat.png", "grace_hopper.png", "kite_and_cold.jpg", "pets.jpg")]
COCO = REFERENCE.parent / "data" / "coco128" / "annotations" / "instances_train2017.json"


def parity(ours: TorchDetector, theirs: LiteRTDetector, files: list[Path], name: str) -> None:
    box_max = logit_max = box_sum = logit_sum = 0.0
    n_box = n_logit = 0
    for i in range(0, len(files), 16):
        batch = torch.stack([load_input(f, 300)[0] for f in files[i : i + 16]])
        (c1, l1), (c2, l2) = ours.raw(batch), theirs.raw(batch)
        db, dl = (c1 - c2).abs(), (l1 - l2).abs()
        box_max, logit_max = max(box_max, float(db.max())), max(logit_max, float(dl.max()))
        box_sum, logit_sum = box_sum + float(db.sum()), logit_sum + float(dl.sum())
        n_box, n_logit = n_box + db.numel(), n_logit + dl.numel()
    print(
        f"{name} ({len(files)} images): box codes max {box_max:.3f} mean {box_sum / n_box:.4f}; "
        f"logits max {logit_max:.3f} mean {logit_sum / n_logit:.4f}"
    )


def main() -> None:
    torch.set_num_threads(2)
    ours = TorchDetector(mobilenet.ssd_mobilenet_v1(weights=DETECT))
    theirs = LiteRTDetector(DETECT, threads=2)
    parity(ours, theirs, PHOTOS, "reference photos")
    parity(ours, theirs, read_coco(COCO).files, "coco128")
    for pp in ("coco", "tflite"):
        for name, runner in (("ours (PyTorch)", ours), ("LiteRT", theirs)):
            start = time.perf_counter()
            r = evaluate_detector(runner, COCO, postprocess=pp)
            print(
                f"{pp:<6} {name:<15} AP {r['map']:.4f}  AP50 {r['map_50']:.4f}  AP75 {r['map_75']:.4f}  "
                f"{r['detections']} detections  {time.perf_counter() - start:.1f} s"
            )


if __name__ == "__main__":
    main()
