"""The detection journeys: build, detect, evaluate, convert; one function per CLI command.

``ssd_mobilenet_v1`` builds the detector (random init or from weights); :func:`detect` returns
torchvision-style dicts for image files; :func:`evaluate_detector` gives COCO AP on a COCO JSON
or a Pascal VOC root; :func:`convert_detector` imports a TF Lite SSD into our safetensors.
:func:`is_detection_task` is how the shared ``eval`` and ``convert`` commands decide to come here.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .data import DetectionSet, is_detection_data, load_input, read_detection_data
from .model import SSDMobileNetV1
from .runtime import LiteRTDetector, RawOutputDetector, TorchDetector, open_detector
from .weights import is_detector, load_detector, save_detector

__all__ = [
    "convert_detector",
    "detect",
    "detect_files",
    "evaluate_detector",
    "is_detection_task",
    "ssd_mobilenet_v1",
]

PathLike = str | os.PathLike[str]
#: Detections below this score are not shown by ``detect`` (TF's demos use 0.5).
DEFAULT_SCORE = 0.5


def ssd_mobilenet_v1(
    *, width_mult: float | None = None, num_classes: int | None = None, weights: Any = None, **kwargs: Any
) -> SSDMobileNetV1:
    """SSD MobileNet v1 as TF Object Detection API builds it (Table 13's SSD 300 at α = 1).

    Args:
        width_mult: α of the backbone and extra layers (default 1.0, or the weights').
        num_classes: outputs per anchor, background included (default 91: COCO's ids 1..90).
        weights: None for random init; a detector file: our ``.safetensors`` or a TF Lite SSD
            ``.tflite`` such as Google's detect.tflite (α and classes come from the file; a value
            given here that contradicts them is a ``ValueError``).
        **kwargs: other :class:`~mobilenet.detection.spec.DetectorConfig` fields (``resolution``,
            ``head_kernel``, ``postprocess``, ...).
    """
    given = {k: v for k, v in (("width_mult", width_mult), ("num_classes", num_classes)) if v is not None}
    if weights is not None:
        return load_detector(weights, **given, **kwargs)
    if isinstance(kwargs.get("postprocess"), str):
        from .model import postprocess_config

        kwargs["postprocess"] = postprocess_config(kwargs["postprocess"])
    return SSDMobileNetV1(**given, **kwargs)


def is_detection_task(weights: Any, data: PathLike | None = None) -> bool:
    """Whether ``eval``/``convert`` are about detection: the data is box data (a COCO JSON or a
    Pascal VOC root), or the weights are a detector (by their stored config, or a .tflite's
    post-processing op)."""
    return is_detection_data(data) or is_detector(weights)


def _runner(model: Any, runtime: str = "torch") -> Any:
    if isinstance(model, (TorchDetector, RawOutputDetector)):
        return model
    if isinstance(model, SSDMobileNetV1):
        return TorchDetector(model)
    return open_detector(model, runtime)


def _run(runner: Any, batch: Tensor, postprocess: str | None) -> list[dict[str, Tensor]]:
    if isinstance(runner, LiteRTDetector) and postprocess == "tflite":
        return runner.detections(batch, own=True)  # Google's own op, not our reading of it
    return runner.detections(batch, postprocess)


def _to_pixels(det: dict[str, Tensor], width: int, height: int) -> dict[str, Tensor]:
    scale = torch.tensor([width, height, width, height], dtype=torch.float32)
    return {"boxes": det["boxes"] * scale, "scores": det["scores"], "labels": det["labels"]}


def detect(
    model: Any,
    images: Sequence[PathLike],
    *,
    postprocess: str | None = None,
    score_threshold: float = DEFAULT_SCORE,
    runtime: str = "torch",
) -> list[dict[str, Tensor]]:
    """Detections for image files: one dict per image with ``boxes`` (K, 4) [x0, y0, x1, y1] in the
    image's pixels, ``scores`` and ``labels`` (class indices; names in ``model.config.names``).

    ``model``: an :class:`SSDMobileNetV1`, or weights (with ``runtime="litert"``, a .tflite run in
    LiteRT). ``postprocess``: 'tflite' or 'coco' (default: the weights' own).
    """
    if not 0 <= score_threshold <= 1:
        raise ValueError(f"score threshold {score_threshold!r} must be in [0, 1]")
    runner = _runner(model, runtime)
    out = []
    for path in images:
        pixels, (width, height) = load_input(path, runner.config.resolution, runner.config.interpolation)
        det = _to_pixels(_run(runner, pixels[None], postprocess)[0], width, height)
        keep = det["scores"] >= score_threshold
        out.append({k: v[keep] for k, v in det.items()})
    return out


def _draw(path: PathLike, det: dict[str, Tensor], names: list[str], folder: Path, used: set[str]) -> Path:
    import numpy as np
    from PIL import Image
    from torchvision.utils import draw_bounding_boxes

    from ..checkpoint import atomic_write
    from ..data import open_rgb

    img = torch.from_numpy(np.asarray(open_rgb(path), dtype=np.uint8).copy()).permute(2, 0, 1)
    labels = [f"{names[int(i)]} {float(s):.2f}" for i, s in zip(det["labels"], det["scores"])]
    width = max(2, round(max(img.shape[1:]) / 250))
    drawn = draw_bounding_boxes(img, det["boxes"], labels=labels, colors="red", width=width)
    stem = Path(path).stem
    name, n = f"{stem}.png", 1
    while name in used:  # two inputs with one name (a/x.jpg, b/x.jpg) get two drawings
        n += 1
        name = f"{stem}_{n}.png"
    used.add(name)
    out = folder / name
    return atomic_write(out, lambda tmp: Image.fromarray(drawn.permute(1, 2, 0).numpy()).save(tmp, format="PNG"))


def detect_files(
    weights: Any,
    images: Sequence[PathLike],
    *,
    runtime: str = "torch",
    postprocess: str | None = None,
    score_threshold: float | None = None,
    draw: PathLike | None = None,
) -> list[dict[str, Any]]:
    """``mobilenet detect``: per image its file, size and detections [{label, index, score, box}]
    with pixel boxes [x0, y0, x1, y1]; with ``draw``, each photo with its boxes is written there
    as PNG (``drawing`` in the result)."""
    runner = open_detector(weights, runtime)
    score = DEFAULT_SCORE if score_threshold is None else score_threshold
    missing = [str(p) for p in images if not Path(p).is_file()]
    if missing:
        raise FileNotFoundError(
            f"image {missing[0]!r} does not exist" + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else "")
        )
    folder = None
    if draw is not None:
        folder = Path(draw)
        if folder.exists() and not folder.is_dir():
            raise NotADirectoryError(f"--draw {str(folder)!r} is a file; pass a folder to write the drawings to")
    results = detect(runner, images, postprocess=postprocess, score_threshold=score)
    names = runner.config.names
    out, used = [], set()
    for path, det in zip(images, results):
        from PIL import Image

        with Image.open(path) as img:
            width, height = img.size
        entry: dict[str, Any] = {
            "image": str(path),
            "width": width,
            "height": height,
            "detections": [
                {"label": names[int(i)], "index": int(i), "score": round(float(s), 4), "box": [round(float(v), 1) for v in b]}
                for b, s, i in zip(det["boxes"], det["scores"], det["labels"])
            ],
        }
        if folder is not None:
            entry["drawing"] = str(_draw(path, det, names, folder, used))
        out.append(entry)
    return out


def _category_map(names: list[str], data: DetectionSet, class_agnostic: bool) -> dict[int, int]:
    """Model class index → the data's category id, by name (case-insensitive)."""
    if class_agnostic:
        if len(data.categories) != 1:
            raise ValueError(f"class-agnostic evaluation needs data with one category; {data.source} has {len(data.categories)}")
        (only,) = data.categories
        return {i: only for i in range(1, len(names))}
    wanted = {name.strip().lower(): cid for cid, name in data.categories.items()}
    mapping = {i: wanted[n.strip().lower()] for i, n in enumerate(names) if i > 0 and n.strip().lower() in wanted}
    if not mapping:
        raise ValueError(
            f"none of {data.source}'s categories ({', '.join(list(data.categories.values())[:5])}) is a class of these weights "
            f"({', '.join(names[1:6])}, ...); evaluate on data of the model's classes, or with class_agnostic=True "
            "(--class-agnostic) for one-category data"
        )
    return mapping


def _coco_detections(
    runner: Any,
    dataset: DetectionSet,
    count: int,
    batch_size: int,
    postprocess: str,
    mapping: dict[int, int],
    inputs: Sequence[Tensor] | None,
) -> list[dict[str, Any]]:
    """The detector's boxes on the first ``count`` images, in batches, as COCO results (pixel
    [x, y, w, h], the data's category ids); detections of classes the data lacks are dropped."""
    found: list[dict[str, Any]] = []
    for first in range(0, count, batch_size):
        infos = dataset.coco["images"][first : min(first + batch_size, count)]
        if inputs is not None:
            batch = torch.stack(list(inputs[first : first + len(infos)]))
        else:
            batch = torch.stack(
                [
                    load_input(f, runner.config.resolution, runner.config.interpolation)[0]
                    for f in dataset.files[first : first + len(infos)]
                ]
            )
        for info, det in zip(infos, _run(runner, batch, postprocess)):
            det = _to_pixels(det, float(info["width"]), float(info["height"]))
            xywh = det["boxes"].clone()
            xywh[:, 2:] -= xywh[:, :2]
            for box, score, label in zip(xywh.tolist(), det["scores"].tolist(), det["labels"].tolist()):
                if int(label) in mapping:
                    found.append({"image_id": info["id"], "category_id": mapping[int(label)], "bbox": box, "score": score})
    return found


def _first_images(dataset: DetectionSet, count: int) -> dict[str, Any]:
    """The ground truth of the first ``count`` images only (``limit``), so AP is not charged for the rest."""
    coco = dataset.coco
    if count >= len(dataset):
        return coco
    ids = {im["id"] for im in coco["images"][:count]}
    return {
        **coco,
        "images": coco["images"][:count],
        "annotations": [a for a in coco["annotations"] if a["image_id"] in ids],
    }


def evaluate_detector(
    weights: Any,
    data: PathLike | DetectionSet,
    *,
    images: PathLike | None = None,
    runtime: str = "torch",
    postprocess: str = "coco",
    class_agnostic: bool = False,
    batch_size: int = 8,
    limit: int | None = None,
    inputs: Sequence[Tensor] | None = None,
) -> dict[str, Any]:
    """COCO AP (pycocotools) of a detector on a COCO instances JSON or a Pascal VOC root.

    ``postprocess`` defaults to 'coco' (TF OD API's per-class NMS, 100 detections), the setting
    COCO mAP is reported under; 'tflite' is the phone file's 10 detections (with
    ``runtime="litert"``: the file's own op). Model classes are matched to the data's categories
    by name; ``class_agnostic`` counts every detection as the data's one category. ``data`` may
    also be a :class:`~mobilenet.detection.data.DetectionSet` already read, and ``inputs`` its
    images already loaded by :func:`load_input` (training's validation, every epoch).
    """
    from .evaluate import coco_map

    if isinstance(data, DetectionSet):
        pass
    elif data is None:
        raise ValueError("a detector is evaluated on boxes: pass --data ANNOTATIONS.json (COCO) or a Pascal VOC root")
    elif not is_detection_data(data):
        kind = "a folder of class folders (classifier data)" if Path(data).is_dir() else "not box data"
        raise ValueError(
            f"--data {str(data)!r} is {kind}; a detector is evaluated on a COCO instances JSON or a Pascal VOC root "
            "(JPEGImages/, Annotations/, ImageSets/Main/<split>.txt)"
        )
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size={batch_size!r} must be an integer >= 1")
    dataset = data if isinstance(data, DetectionSet) else read_detection_data(data, images)
    runner = _runner(weights, runtime)
    mapping = _category_map(runner.config.names, dataset, class_agnostic)
    count = len(dataset) if limit is None else min(limit, len(dataset))
    start = time.perf_counter()
    found = _coco_detections(runner, dataset, count, batch_size, postprocess, mapping, inputs)
    seconds = time.perf_counter() - start
    ground_truth = _first_images(dataset, count)
    metrics = coco_map(ground_truth, found)
    return {
        "task": "detection",
        "weights": str(weights) if isinstance(weights, (str, os.PathLike)) else type(weights).__name__,
        "data": dataset.source,
        "runtime": runner.backend,
        "postprocess": postprocess,
        "images": count,
        "objects": len(ground_truth["annotations"]),
        "categories": len(dataset.categories),
        "detections": len(found),
        **metrics,
        "seconds": round(seconds, 2),
    }


def convert_detector(source: PathLike, output: PathLike) -> tuple[Path, str]:
    """Imports a TF Lite SSD (or re-saves ours) into our safetensors; returns (path, a summary line)."""
    model = load_detector(source)
    path = save_detector(output, model, source=Path(source).name)
    c = model.config
    return path, (
        f"wrote {path}: SSD MobileNet v1 α={c.width_mult:g}, {c.resolution}px, {c.num_classes} classes (background included), "
        f"{c.activation}, padding={c.padding}, post-processing {c.postprocess.name!r}"
    )
