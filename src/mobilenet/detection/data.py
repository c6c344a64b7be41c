"""Box data: COCO instance JSON and Pascal VOC folders, read into one form, and the detector's input.

Both readers return a :class:`DetectionSet`: a COCO-format ground truth (the dict pycocotools
evaluates) plus each image's file and torchvision-style target (``boxes`` [x0, y0, x1, y1] in
pixels, ``labels`` as category ids). Everything is checked on reading, so that a bad file fails
at once with a sentence naming it (a JSON that is not COCO, an image listed but missing, a box
outside its image, an empty set) rather than later inside pycocotools.

The detector's input (:func:`load_input`): the whole image squashed to S x S (bilinear, aspect
ratio not kept, as TF's SSD resizer does), kept as uint8, so LiteRT and PyTorch see the same bytes.

A training run's train and validation sets (:func:`read_splits`): a VOC root's ``train`` and ``val``
(or ``test``) lists, or a COCO train JSON and the ``val``/``test`` JSON beside it.
"""

from __future__ import annotations

import json
import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from ..data import open_rgb

__all__ = [
    "DetectionSet",
    "is_annotation_file",
    "is_detection_data",
    "load_input",
    "read_coco",
    "read_detection_data",
    "read_splits",
    "read_voc",
]

#: Boxes may overshoot their image by this many pixels (annotation tools round); more is an error.
BOX_TOLERANCE = 1.0


@dataclass
class DetectionSet:
    """Images with boxes: ``coco`` is the ground truth as pycocotools wants it; ``files[i]`` is the
    image file of ``coco['images'][i]``."""

    coco: dict[str, Any]
    files: list[Path]
    source: str
    categories: dict[int, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.categories = {int(c["id"]): str(c["name"]) for c in self.coco["categories"]}

    def __len__(self) -> int:
        return len(self.files)

    def target(self, i: int) -> dict[str, Tensor]:
        """torchvision's target for image i: boxes [x0, y0, x1, y1] in pixels, labels (category ids)."""
        image_id = self.coco["images"][i]["id"]
        anns = [a for a in self.coco["annotations"] if a["image_id"] == image_id]
        boxes = torch.tensor(
            [[a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2], a["bbox"][1] + a["bbox"][3]] for a in anns]
        )
        return {
            "boxes": boxes.reshape(-1, 4).float(),
            "labels": torch.tensor([int(a["category_id"]) for a in anns], dtype=torch.long),
            "image_id": torch.tensor(image_id),
        }


def load_input(path: str | os.PathLike[str], size: int, interpolation: str = "bilinear") -> tuple[Tensor, tuple[int, int]]:
    """An image file → (uint8 tensor (3, size, size), its original (width, height))."""
    img = open_rgb(path)
    resample = Image.Resampling.BICUBIC if interpolation == "bicubic" else Image.Resampling.BILINEAR
    pixels = np.asarray(img.resize((size, size), resample), dtype=np.uint8)
    return torch.from_numpy(pixels.copy()).permute(2, 0, 1), img.size


def is_annotation_file(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is named as a COCO annotation file (``.json``); it need not exist."""
    return Path(path).suffix.lower() == ".json"


def is_detection_data(data: str | os.PathLike[str] | None) -> bool:
    """Whether ``data`` names box data: a .json file, or a folder in Pascal VOC's layout."""
    if data is None:
        return False
    path = Path(data)
    if is_annotation_file(path):
        return True
    return path.is_dir() and (path / "Annotations").is_dir() and (path / "JPEGImages").is_dir()


def _fail(source: Any, message: str) -> ValueError:
    return ValueError(f"{source}: {message}")


def _check_box(source: Any, where: str, box: list[float], width: float, height: float) -> None:
    x, y, w, h = box
    if not all(np.isfinite(v) for v in box):
        raise _fail(source, f"{where} has a non-finite box {box}")
    if w <= 0 or h <= 0:
        raise _fail(source, f"{where} has an empty box [x, y, w, h] = {box} (width and height must be > 0)")
    t = BOX_TOLERANCE
    if x < -t or y < -t or x + w > width + t or y + h > height + t:
        raise _fail(
            source,
            f"{where} has a box outside its image: [x0, y0, x1, y1] = [{x:g}, {y:g}, {x + w:g}, {y + h:g}] in a "
            f"{width:g}x{height:g} image; fix or drop that annotation",
        )


def _default_images_dir(annotations: Path) -> Path:
    """COCO's layout: ROOT/annotations/instances_<split>.json beside ROOT/<split>/."""
    stem = annotations.stem
    split = stem.split("_", 1)[1] if "_" in stem else stem
    if annotations.parent.name == "annotations" and (annotations.parent.parent / split).is_dir():
        return annotations.parent.parent / split
    return annotations.parent


def read_coco(annotations: str | os.PathLike[str], images: str | os.PathLike[str] | None = None) -> DetectionSet:
    """A COCO instances JSON (``images``, ``annotations``, ``categories``) and its image folder
    (default: COCO's layout, ``annotations/instances_<split>.json`` beside ``<split>/``)."""
    path = Path(annotations)
    if not path.is_file():
        what = "is a folder, not a JSON file" if path.is_dir() else "does not exist"
        raise FileNotFoundError(f"annotation file {str(path)!r} {what}")
    if path.stat().st_size == 0:
        raise _fail(path, "the annotation file is empty (0 bytes); expected COCO instances JSON")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise _fail(path, f"not valid JSON ({exc})") from None
    missing = [
        k for k in ("images", "annotations", "categories") if not isinstance(data, dict) or not isinstance(data.get(k), list)
    ]
    if missing:
        raise _fail(
            path,
            f"not a COCO instances JSON: no {', '.join(repr(k) for k in missing)} list"
            + (" (a JSON list, not an object)" if isinstance(data, list) else "")
            + "; expected {'images': [...], 'annotations': [...], 'categories': [...]}",
        )
    if not data["images"]:
        raise _fail(path, "lists no images: nothing to evaluate")
    if not data["categories"]:
        raise _fail(path, "lists no categories: nothing to evaluate")
    folder = Path(images) if images is not None else _default_images_dir(path)
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder {str(folder)!r} does not exist (pass --images DIR)")
    try:
        sizes = {int(im["id"]): (float(im["width"]), float(im["height"])) for im in data["images"]}
        category_ids = {int(c["id"]) for c in data["categories"]}
        for c in data["categories"]:
            str(c["name"])
    except (KeyError, TypeError, ValueError) as exc:
        raise _fail(
            path, f"not a COCO instances JSON: an image or category entry lacks {exc} (id, width, height, name)"
        ) from None
    for n, ann in enumerate(data["annotations"]):
        if not isinstance(ann, dict):
            raise _fail(path, f"annotation {n} is a {type(ann).__name__}, not an object")
        ann.setdefault("id", n + 1)
        where = f"annotation {ann.get('id', '?')} (image {ann.get('image_id', '?')})"
        try:
            image_id, box, category = int(ann["image_id"]), [float(v) for v in ann["bbox"]], int(ann["category_id"])
        except (KeyError, TypeError, ValueError) as exc:
            raise _fail(path, f"{where} lacks a usable {exc} (COCO annotations have image_id, bbox, category_id)") from None
        if image_id not in sizes:
            raise _fail(path, f"{where} refers to image id {image_id}, which the JSON does not list")
        if category not in category_ids:
            raise _fail(path, f"{where} has category_id {category}, which the JSON's categories do not list")
        if len(box) != 4:
            raise _fail(path, f"{where} has bbox {ann['bbox']}; COCO boxes are [x, y, width, height]")
        _check_box(path, where, box, *sizes[image_id])
        ann.setdefault("iscrowd", 0)
        ann.setdefault("area", box[2] * box[3])
    files = []
    for im in data["images"]:
        name = im.get("file_name")
        if not name:
            raise _fail(path, f"image {im['id']} has no file_name")
        file = folder / name
        if not file.is_file():
            raise FileNotFoundError(
                f"{path}: image {im['id']} is listed as {name!r}, but {str(file)!r} does not exist (wrong --images?)"
            )
        files.append(file)
    return DetectionSet(data, files, str(path))


def read_voc(root: str | os.PathLike[str], split: str | None = None) -> DetectionSet:
    """A Pascal VOC root (JPEGImages/, Annotations/, ImageSets/Main/<split>.txt) as a COCO-format set.

    VOC's pixel boxes are 1-based and inclusive; they become COCO's 0-based [x, y, w, h] as
    ``[xmin - 1, ymin - 1, xmax - xmin + 1, ymax - ymin + 1]``. Categories are numbered from 1 in
    sorted name order; ``difficult`` objects are kept as COCO's ``iscrowd`` (ignored by the metric).
    Without ``split``: ``test``, else ``val``, else every annotation file.
    """
    root = Path(root)
    if not (root / "Annotations").is_dir() or not (root / "JPEGImages").is_dir():
        raise FileNotFoundError(f"{root} is not a Pascal VOC root: expected {root}/JPEGImages/ and {root}/Annotations/")
    sets = root / "ImageSets" / "Main"
    if split is None:
        split = next((s for s in ("test", "val") if (sets / f"{s}.txt").is_file()), None)
    if split is not None:
        listing = sets / f"{split}.txt"
        if not listing.is_file():
            raise FileNotFoundError(f"{root}: split {split!r} has no list {listing}")
        ids = [line.split()[0] for line in listing.read_text().splitlines() if line.strip()]
    else:
        ids = sorted(p.stem for p in (root / "Annotations").glob("*.xml"))
    if not ids:
        raise _fail(root, f"split {split!r} lists no images" if split else "has no annotation files")
    images, annotations, files, names = [], [], [], set()
    parsed = []
    for image_id, stem in enumerate(ids, start=1):
        xml = root / "Annotations" / f"{stem}.xml"
        if not xml.is_file():
            raise FileNotFoundError(f"{root}: image {stem!r} is listed in {split}.txt but {xml} does not exist")
        try:
            tree = ET.parse(xml).getroot()
            file_name = tree.findtext("filename") or f"{stem}.jpg"
            width, height = float(tree.findtext("size/width") or 0), float(tree.findtext("size/height") or 0)
            objects = []
            for obj in tree.findall("object"):
                bb = obj.find("bndbox")
                coords = [float(bb.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax")]  # type: ignore[union-attr, arg-type]
                objects.append((obj.findtext("name", "").strip(), coords, int(obj.findtext("difficult") or 0)))
        except (ET.ParseError, AttributeError, TypeError, ValueError) as exc:
            raise _fail(xml, f"not a readable Pascal VOC annotation ({exc})") from None
        file = root / "JPEGImages" / file_name
        if not file.is_file():
            file = root / "JPEGImages" / f"{stem}.jpg"
        if not file.is_file():
            raise FileNotFoundError(f"{xml}: its image {file_name!r} is missing from {root / 'JPEGImages'}")
        if width <= 0 or height <= 0:
            width, height = (float(v) for v in open_rgb(file).size)
        parsed.append((image_id, file, width, height, objects, xml))
        names |= {name for name, _, _ in objects}
    categories = [{"id": i, "name": n, "supercategory": ""} for i, n in enumerate(sorted(names), start=1)]
    by_name = {c["name"]: c["id"] for c in categories}
    for image_id, file, width, height, objects, xml in parsed:
        images.append({"id": image_id, "file_name": file.name, "width": width, "height": height})
        files.append(file)
        for name, (x0, y0, x1, y1), difficult in objects:
            if x1 <= x0 or y1 <= y0:
                # Inclusive VOC corners allow a 1-pixel box, but a max at or before its min is a
                # swapped or unfinished annotation, not a box.
                raise _fail(
                    xml,
                    f"object {name!r} has xmin={x0:g}, ymin={y0:g}, xmax={x1:g}, ymax={y1:g}: each max must exceed its min; "
                    "fix or drop that <object>",
                )
            box = [x0 - 1, y0 - 1, x1 - x0 + 1, y1 - y0 + 1]
            _check_box(xml, f"object {name!r}", box, width, height)
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": by_name[name],
                    "bbox": box,
                    "area": box[2] * box[3],
                    "iscrowd": difficult,
                }
            )
    if not categories:
        raise _fail(root, "its annotations hold no objects: nothing to evaluate")
    return DetectionSet({"images": images, "annotations": annotations, "categories": categories}, files, str(root))


def training_photos(data: str | os.PathLike[str]) -> list[Path]:
    """The photos a detector trains on in box data: a Pascal VOC root's ``train`` split (without
    one, the split :func:`read_voc` picks), or every photo of a COCO instances JSON."""
    path = Path(data)
    if path.is_dir() and is_detection_data(path):
        has_train = (path / "ImageSets" / "Main" / "train.txt").is_file()
        return read_voc(path, "train" if has_train else None).files
    return read_detection_data(path).files


def read_detection_data(data: str | os.PathLike[str], images: str | os.PathLike[str] | None = None) -> DetectionSet:
    """A COCO instances JSON (with its image folder) or a Pascal VOC root, by what ``data`` is."""
    path = Path(data)
    if path.suffix.lower() == ".json" or path.is_file():
        return read_coco(path, images)
    if is_detection_data(path):
        if images is not None:
            raise ValueError("--images is for a COCO JSON; a Pascal VOC root holds its images in JPEGImages/")
        return read_voc(path)
    if not path.exists():
        raise FileNotFoundError(f"data {str(path)!r} does not exist")
    raise ValueError(
        f"--data {str(path)!r} is not box data: pass a COCO instances JSON (annotations/instances_<split>.json) "
        "or a Pascal VOC root (JPEGImages/, Annotations/, ImageSets/Main/<split>.txt)"
    )


def _voc_splits(root: Path) -> tuple[str, str]:
    sets = root / "ImageSets" / "Main"
    if not (sets / "train.txt").is_file():
        have = sorted(p.stem for p in sets.glob("*.txt")) if sets.is_dir() else []
        raise FileNotFoundError(
            f"{root}: no training split {sets / 'train.txt'} (found: {', '.join(have) or 'no split files'}); "
            "list the training photos' names there, one a line"
        )
    val = next((s for s in ("val", "test") if (sets / f"{s}.txt").is_file()), None)
    if val is None:
        raise FileNotFoundError(
            f"{root}: no validation split: write {sets / 'val.txt'} (or test.txt) listing the photos to validate on"
        )
    return "train", val


def _coco_val(path: Path) -> Path:
    for word in ("val", "test"):
        if "train" in path.name:
            candidate = path.with_name(path.name.replace("train", word))
            if candidate.is_file():
                return candidate
    raise FileNotFoundError(
        f"{path}: no validation JSON beside it; write one named like it with 'train' replaced by 'val' "
        "(e.g. instances_train.json -> instances_val.json), or pass a Pascal VOC root with a val split"
    )


def read_splits(data: str | os.PathLike[str]) -> tuple[DetectionSet, DetectionSet, str]:
    """(train set, validation set, the validation split's name) of a VOC root or a COCO train JSON."""
    path = Path(data)
    if path.suffix.lower() == ".json" or path.is_file():
        val_path = _coco_val(path)
        train, val, val_name = read_coco(path), read_coco(val_path), val_path.name
        # COCO crowd boxes mark regions to ignore in the metric; as training targets they would be wrong.
        train.coco["annotations"] = [a for a in train.coco["annotations"] if not a.get("iscrowd")]
    else:
        if not path.exists():
            raise FileNotFoundError(f"data {str(path)!r} does not exist")
        if not ((path / "Annotations").is_dir() and (path / "JPEGImages").is_dir()):
            raise ValueError(
                f"--data {str(path)!r} is not box data: a detector trains on a Pascal VOC root "
                "(JPEGImages/, Annotations/, ImageSets/Main/train.txt) or a COCO instances JSON"
            )
        train_split, val_name = _voc_splits(path)
        train, val = read_voc(path, train_split), read_voc(path, val_name)
        train.coco["annotations"] = [a for a in train.coco["annotations"] if not a.get("iscrowd")]  # VOC 'difficult'
    train_names = {n.strip().lower() for n in train.categories.values()}
    extra = sorted(n for n in val.categories.values() if n.strip().lower() not in train_names)
    if extra:
        raise ValueError(
            f"{val.source}: validation class(es) {', '.join(map(repr, extra))} have no training boxes in {train.source}; "
            "add training boxes of them or drop them from the validation set"
        )
    if not train.coco["annotations"]:
        raise ValueError(f"{train.source}: the training split holds no boxes: nothing to learn")
    return train, val, val_name
