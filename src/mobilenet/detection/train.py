"""Fine-tuning a detector on your own boxes: ``mobilenet train --data DIR --weights detect.tflite``.

The recipe (:data:`RECIPE`), read top to bottom in :func:`train_detector`:

1. Data: a Pascal VOC root (train on ``train``, validate on ``val``, or ``test`` when there is no
   ``val``) or a COCO instances JSON (validated on the ``val``/``test`` JSON beside it). The
   classes are the training set's; a validation class the training set lacks is an error.
2. Model: the detector's backbone and extra layers keep their weights, BN folded and frozen (160
   photos cannot retrain 3.2 M weights; Google's COCO features already see animals). The box head
   is kept (box regression is class-agnostic in SSD); the class head is replaced by one for the
   data's classes, its background row kept and each new class row started from the COCO class the
   training boxes are most often detected as (a warm start: the zero-shot detector already finds
   raccoons as cats, dogs and bears). Weights of ours already trained on these classes keep both.
3. Targets: each anchor matched to a box at IoU >= 0.5 (torchvision's ``Matcher``; every box
   also gets its best anchor), box codes [ty, tx, th, tw] with TF's scales 10/10/5/5.
4. Loss: smooth L1 on the matched anchors' codes, plus sigmoid focal loss on the classes (the
   detector scores classes with a sigmoid), both over the number of matched anchors.
5. Augmentation (torchvision.transforms.v2, boxes follow the pixels): photometric distortion,
   zoom out, IoU crop, horizontal flip, squash to 300x300, drop boxes cropped away.
6. AdamW with a cosine schedule after a short warm-up; after each epoch, val COCO AP with
   pycocotools (``map``, ``map_50``) into ``metrics.jsonl``; ``best.safetensors`` (best ``map``),
   ``last.safetensors`` and ``summary.json``; every file written atomically.
"""

from __future__ import annotations

import json
import math
import os
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..checkpoint import atomic_write
from ..data import open_rgb
from .data import DetectionSet, load_input, read_splits
from .loss import _xyxy, detection_loss, match_anchors
from .model import SSDMobileNetV1
from .run_files import RunFiles, run_summary
from .weights import read_detector

__all__ = ["RECIPE", "DetectionRecipe", "detection_loss", "match_anchors", "train_detector"]

PathLike = str | os.PathLike[str]

#: Photos are kept in memory with their longer side at most this (a crop then a 300 px squash
#: needs no more; raccoon's 2000 px photos would otherwise be decoded every epoch).
_CACHE_SIDE = 640


@dataclass(frozen=True)
class DetectionRecipe:
    """The settings of a detector fine-tuning run (``mobilenet train`` flags of the same names)."""

    name: str = "ssd-heads"
    epochs: int = 10
    batch_size: int = 16
    lr: float = 3e-3
    weight_decay: float = 1e-4
    warmup: float = 1.0  # epochs of linear warm-up
    loss: str = "focal"  # focal (sigmoid focal loss) or ohem (sigmoid BCE, hard negatives 3:1)
    focal_alpha: float = 0.25
    focal_gamma: float = 2.0
    neg_pos_ratio: int = 3
    match_iou: float = 0.5
    train_box_head: bool = True
    warm_start: bool = True  # new class rows from the COCO class the train boxes are detected as
    augment: bool = True
    seed: int = 0

    def describe(self) -> str:
        cls = "sigmoid focal" if self.loss == "focal" else f"sigmoid BCE + hard negatives {self.neg_pos_ratio}:1"
        return (
            f"recipe {self.name}: frozen backbone and extras (BN folded), "
            f"{'box head fine-tuned' if self.train_box_head else 'box head kept frozen'}, new class head; "
            f"{cls} + smooth L1, match IoU {self.match_iou:g}; AdamW lr {self.lr:g} wd {self.weight_decay:g}, cosine; "
            f"{self.epochs} epochs x batch {self.batch_size}"
        )


RECIPE = DetectionRecipe()


# ---------------------------------------------------------------------------------------------
# Data


def _bar(items: Any, show: bool, desc: str) -> Any:
    """tqdm over ``items`` on a terminal (a log file gets the per-epoch lines only)."""
    import sys

    if not (show and sys.stderr.isatty()):
        return items
    from tqdm.auto import tqdm

    return tqdm(items, desc=desc, leave=False, dynamic_ncols=True)


class _Photos(torch.utils.data.Dataset):
    """Training photos, decoded once (longer side <= _CACHE_SIDE), with boxes and 1-based labels;
    each access draws a fresh augmentation and squashes to ``size``."""

    def __init__(self, data: DetectionSet, class_of: dict[int, int], size: int, augment: bool, progress: bool) -> None:
        from torchvision import tv_tensors
        from torchvision.transforms import v2

        self.items = []
        for i in _bar(range(len(data)), progress, "reading photos"):
            img = open_rgb(data.files[i])
            scale = min(1.0, _CACHE_SIDE / max(img.size))
            if scale < 1:
                img = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))))
            target = data.target(i)
            # Pixel boxes rescaled by the actual resize, from the annotated size (the file's may differ).
            info = data.coco["images"][i]
            sx, sy = img.width / float(info["width"]), img.height / float(info["height"])
            boxes = target["boxes"] * torch.tensor([sx, sy, sx, sy])
            pixels = torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1)
            labels = torch.tensor([class_of[int(c)] for c in target["labels"]], dtype=torch.long)
            self.items.append(
                (tv_tensors.Image(pixels), tv_tensors.BoundingBoxes(boxes, format="XYXY", canvas_size=pixels.shape[-2:]), labels)
            )
        steps: list[Any] = []
        if augment:
            steps += [
                v2.RandomZoomOut(fill={tv_tensors.Image: (124, 116, 104), "others": 0}, side_range=(1.0, 2.0), p=0.3),
                v2.RandomIoUCrop(),
                v2.RandomHorizontalFlip(),
            ]
        steps += [v2.Resize((size, size), antialias=True), v2.SanitizeBoundingBoxes(min_size=1)]
        if augment:
            # Colour changes after the squash: on 300x300 pixels they cost a third of what they do on the photo.
            steps.append(v2.RandomPhotometricDistort(p=0.5))
        self.transform = v2.Compose(steps)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor, Tensor]:
        image, boxes, labels = self.items[i]
        out = self.transform({"image": image, "boxes": boxes, "labels": labels})
        size = out["image"].shape[-1]
        return out["image"].as_subclass(Tensor), out["boxes"].as_subclass(Tensor) / size, out["labels"]


def _collate(batch: list[tuple[Tensor, Tensor, Tensor]]) -> tuple[Tensor, list[Tensor], list[Tensor]]:
    return torch.stack([b[0] for b in batch]), [b[1] for b in batch], [b[2] for b in batch]


# ---------------------------------------------------------------------------------------------
# Targets and loss


def _warm_rows(source: SSDMobileNetV1, trunk: nn.Module, photos: _Photos, num_new: int, batch: int = 16) -> list[int]:
    """For each new class, the source class whose score is highest on the anchors matched to its
    training boxes (un-augmented photos, at most 64: the vote settles long before): the row its
    class head starts from."""
    from torchvision.transforms.v2 import functional as TF

    votes = torch.zeros(num_new + 1, source.num_classes)
    anchors = source.anchors()
    corners = _xyxy(anchors)
    size = source.config.resolution
    items = photos.items[:64]
    with torch.inference_mode():
        for first in range(0, len(items), batch):
            chunk = items[first : first + batch]
            x = torch.stack([TF.resize(image.as_subclass(Tensor), [size, size], antialias=True) for image, _, _ in chunk])
            _, logits = _heads(source, trunk(_scale(x, source)))
            for (image, boxes, labels), image_logits in zip(chunk, logits):
                h, w = image.shape[-2:]
                scaled = boxes.as_subclass(Tensor) / torch.tensor([w, h, w, h])
                classes, _ = match_anchors(scaled, labels, corners, anchors, 0.5, source.config.box_scales)
                probs = torch.sigmoid(image_logits)
                for c in range(1, num_new + 1):
                    votes[c] += probs[classes == c].sum(0)
    votes[:, 0] = -1  # background is never a class's warm start
    return [int(votes[c].argmax()) for c in range(num_new + 1)]


def _scale(images: Tensor, model: SSDMobileNetV1) -> Tensor:
    return ((images.float() - model.config.mean) / model.config.std).contiguous(memory_format=torch.channels_last)


def _heads(model: SSDMobileNetV1, maps: list[Tensor]) -> tuple[Tensor, Tensor]:
    n = maps[0].shape[0]
    codes = [h(m).permute(0, 2, 3, 1).reshape(n, -1, 4) for h, m in zip(model.box_heads, maps)]
    logits = [h(m).permute(0, 2, 3, 1).reshape(n, -1, model.num_classes) for h, m in zip(model.class_heads, maps)]
    return torch.cat(codes, 1), torch.cat(logits, 1)


class _Heads(nn.Module):
    """The box and class heads, the part that trains: feature maps → (box codes, class logits).
    Its own module so that DDP wraps (and all-reduces) only what has gradients."""

    def __init__(self, model: SSDMobileNetV1) -> None:
        super().__init__()
        self.model = [model]  # a list, so the detector is not registered (and synced) as a submodule
        self.box_heads, self.class_heads = model.box_heads, model.class_heads

    def forward(self, maps: list[Tensor]) -> tuple[Tensor, Tensor]:
        return _heads(self.model[0], maps)


class _Trunk(nn.Module):
    """The frozen backbone and extra layers, BN folded: images → the six feature maps."""

    def __init__(self, model: SSDMobileNetV1) -> None:
        super().__init__()
        from ..model import fold_batchnorm

        # One fold covers the backbone and the extras (both are ConvBNAct units).
        self.folded = fold_batchnorm(model).to(memory_format=torch.channels_last)  # type: ignore[arg-type]
        self.requires_grad_(False)
        self.eval()

    def forward(self, x: Tensor) -> list[Tensor]:
        return self.folded.forward_features(x)


def _build(source_state: dict[str, Tensor], source_config: Any, names: list[str]) -> tuple[SSDMobileNetV1, bool]:
    """The detector for ``names`` (background first): source weights everywhere the shapes allow;
    returns (model, whether the class head was kept because the source already has these classes)."""
    source = SSDMobileNetV1.from_state_dict(source_state, source_config)
    same = [n.lower() for n in source.config.names] == [n.lower() for n in names]
    config = source.config.replace(num_classes=len(names), class_names=tuple(names), labels=None)
    model = SSDMobileNetV1(config)
    own = model.state_dict()
    model.load_state_dict(
        {k: (source_state[k] if k in source_state and source_state[k].shape == v.shape else v) for k, v in own.items()}
    )
    return model, same


# ---------------------------------------------------------------------------------------------
# The run


def _check_out(out: Path, overwrite: bool, resume: bool) -> None:
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"--out {str(out)!r} is a file; pass a folder for the run's outputs")
    if resume and overwrite:
        raise ValueError("resume and overwrite contradict each other; pass one")
    if resume and not (out / "last_state.pt").is_file():
        raise FileNotFoundError(f"--resume: no checkpoint at {out / 'last_state.pt'}; run without --resume to start fresh")
    holds_run = any((out / n).exists() for n in ("metrics.jsonl", "last.safetensors", "summary.json"))
    if holds_run and not (overwrite or resume):
        raise FileExistsError(
            f"--out {out} already holds a training run; pass --resume to continue it, --overwrite to replace it, or another --out"
        )


def _recipe_from(given: dict[str, Any]) -> DetectionRecipe:
    known = {f.name for f in fields(DetectionRecipe)}
    changes = {k: v for k, v in given.items() if k in known and v is not None}
    recipe = RECIPE.__class__(**{**asdict(RECIPE), **changes})
    for name in ("epochs", "batch_size"):
        value = getattr(recipe, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name}={value!r} must be an integer >= 1")
    for name in ("lr", "weight_decay", "warmup"):
        value = getattr(recipe, name)
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0) or (name == "lr" and value == 0):
            raise ValueError(f"{name}={value!r} must be a finite number {'> 0' if name == 'lr' else '>= 0'}")
    if recipe.loss not in ("focal", "ohem"):
        raise ValueError(f"loss={recipe.loss!r}: choose 'focal' or 'ohem'")
    return recipe


def _checked_recipe(data: Any, weights: Any, limit: Any, settings: dict[str, Any]) -> DetectionRecipe:
    """The run's recipe, once the flags, the data and the weights named and ``limit`` are all sound."""
    unknown = sorted(set(settings) - {f.name for f in fields(DetectionRecipe)})
    if unknown:
        raise ValueError(
            f"{', '.join('--' + u.replace('_', '-') for u in unknown)} {'does' if len(unknown) == 1 else 'do'} not apply to detector training; "
            f"detector flags: {', '.join('--' + f.name.replace('_', '-') for f in fields(DetectionRecipe) if f.name != 'name')}"
        )
    recipe = _recipe_from(settings)
    if data is None:
        raise ValueError("detector training needs boxes: pass --data, a Pascal VOC root or a COCO instances JSON")
    if weights is None:
        raise ValueError("detector training starts from a detector: pass --weights detect.tflite (Google's) or one of ours")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValueError(f"limit={limit!r} must be an integer >= 1")
    return recipe


def _start_class_head(
    model: SSDMobileNetV1,
    source: SSDMobileNetV1,
    trunk: nn.Module,
    photos: _Photos,
    names: list[str],
    warm_start: bool,
    quiet: bool = False,
) -> None:
    """A new class head's first weights: small random ones with a low prior, or, with ``warm_start``,
    each class's row copied from the source class its training boxes are most often detected as."""
    with torch.no_grad():
        for head in model.class_heads:
            head.weight.normal_(0, 0.03)
            # A low prior for every new class (RetinaNet's 0.01), so the first steps are not
            # swamped by the ~1900 background anchors.
            head.bias.fill_(-math.log(99.0))
        if not warm_start:
            return
        rows = _warm_rows(source, trunk, photos, len(names) - 1)
        if not quiet:
            print(
                f"class head warm start: {', '.join(f'{names[c]} <- {source.config.names[r]}' for c, r in enumerate(rows) if c)}"
            )
        for head, old in zip(model.class_heads, source.class_heads):
            # A head's output channels are (anchor, class) pairs: copy each anchor's row of the class.
            per = old.out_channels // source.num_classes
            w_old = old.weight.view(per, source.num_classes, *old.weight.shape[1:])
            b_old = old.bias.view(per, source.num_classes)
            w_new = head.weight.view(per, len(names), *head.weight.shape[1:])
            b_new = head.bias.view(per, len(names))
            for c, r in enumerate(rows):
                w_new[:, c] = w_old[:, 0 if c == 0 else r]
                b_new[:, c] = b_old[:, 0 if c == 0 else r]


def _optimizer_and_loader(
    model: SSDMobileNetV1, photos: _Photos, recipe: DetectionRecipe, rank: int = 0, world: int = 1
) -> tuple[torch.optim.Optimizer, torch.utils.data.DataLoader]:
    """AdamW over the heads only (the box head too unless the recipe keeps it frozen), and the
    seeded, shuffled batches of training photos (under DDP each process its share of them)."""
    train_params = [*model.class_heads.parameters()] + ([*model.box_heads.parameters()] if recipe.train_box_head else [])
    model.requires_grad_(False)
    for p in train_params:
        p.requires_grad_(True)
    optimizer = torch.optim.AdamW(train_params, lr=recipe.lr, weight_decay=recipe.weight_decay)
    generator = torch.Generator().manual_seed(recipe.seed)
    sampler = torch.utils.data.DistributedSampler(photos, world, rank, shuffle=True, seed=recipe.seed) if world > 1 else None
    loader = torch.utils.data.DataLoader(
        photos,
        batch_size=min(recipe.batch_size, len(photos)),
        shuffle=sampler is None,
        sampler=sampler,
        drop_last=False,
        collate_fn=_collate,
        generator=generator,
    )
    return optimizer, loader


def _lr_schedule(recipe: DetectionRecipe, steps_per_epoch: int) -> Callable[[int], float]:
    """The learning rate at each step: a linear warm-up of ``recipe.warmup`` epochs, then cosine to 0."""
    total_steps = recipe.epochs * steps_per_epoch
    warm_steps = max(1, round(recipe.warmup * steps_per_epoch)) if recipe.warmup > 0 else 0

    def lr_at(step: int) -> float:
        if step < warm_steps:
            return recipe.lr * (step + 1) / warm_steps
        t = (step - warm_steps) / max(1, total_steps - warm_steps)
        return recipe.lr * 0.5 * (1 + math.cos(math.pi * t))

    return lr_at


def _train_epoch(
    model: SSDMobileNetV1,
    trunk: nn.Module,
    heads: nn.Module,
    batches: Any,
    optimizer: torch.optim.Optimizer,
    lr_at: Callable[[int], float],
    step: int,
    recipe: DetectionRecipe,
) -> tuple[dict[str, float], int]:
    """One pass over the training batches; returns the losses summed over the photos, and the step reached."""
    model.train()
    anchors = model.anchors()
    corners = _xyxy(anchors)
    sums = {"loss": 0.0, "loss_cls": 0.0, "loss_box": 0.0}
    for images, boxes, labels in batches:
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step)
        targets = [
            match_anchors(b, lab, corners, anchors, recipe.match_iou, model.config.box_scales) for b, lab in zip(boxes, labels)
        ]
        target_classes = torch.stack([t[0] for t in targets])
        target_codes = torch.stack([t[1] for t in targets])
        with torch.no_grad():  # the trunk is frozen: only the heads learn
            maps = trunk(_scale(images, model))
        codes, logits = heads(maps)
        loss_cls, loss_box = detection_loss(codes, logits, target_classes, target_codes, recipe)
        loss = loss_cls + loss_box
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        step += 1
        n = images.shape[0]
        sums["loss"] += float(loss.detach()) * n
        sums["loss_cls"] += float(loss_cls.detach()) * n
        sums["loss_box"] += float(loss_box.detach()) * n
        if hasattr(batches, "set_postfix"):
            batches.set_postfix(loss=f"{float(loss.detach()):.3f}")
    return sums, step


def train_detector(
    data: PathLike | None = None,
    weights: Any = None,
    out: PathLike = "runs/detector",
    *,
    overwrite: bool = False,
    resume: bool = False,
    progress: bool = True,
    limit: int | None = None,
    **settings: Any,
) -> dict[str, Any]:
    """Fine-tunes a detector (Google's detect.tflite, or one of ours) on a VOC root or COCO JSON.

    ``settings`` override :data:`RECIPE` (``epochs``, ``batch_size``, ``lr``, ``loss``, ...);
    ``limit`` trains on the first ``limit`` training photos only (quick runs and tests). Returns
    the summary, also written to ``out/summary.json``. Nothing is written to ``out`` before the
    data, the weights and the settings have all been checked. ``resume`` continues a stopped run
    in ``out`` from its last finished epoch, as if it had not stopped (same settings required).
    """
    from ..train.start import setup_distributed
    from .api import evaluate_detector

    recipe = _checked_recipe(data, weights, limit, settings)
    out = Path(out)
    _check_out(out, overwrite, resume)
    train_set, val_set, val_name = read_splits(data)
    if limit is not None and limit < len(train_set):
        train_set = _subset(train_set, limit)
    source_state, source_config = read_detector(weights)
    names = ["background", *sorted(train_set.categories.values(), key=str.lower)]
    rank, _, world = setup_distributed()  # torchrun: one process per CPU share (gloo), rank 0 validates and writes
    main = rank == 0
    if main:
        ddp = f"; {world} process(es), global batch {recipe.batch_size * world}" if world > 1 else ""
        boxes = len(train_set.coco["annotations"])
        print(f"{recipe.describe()}; train: {train_set.source} ({len(train_set)} photos, {boxes} boxes), "
              f"validate on {val_name} ({len(val_set)} photos){ddp}", flush=True)  # fmt: skip

    model, trunk, photos = _start(
        source_state, source_config, names, train_set, recipe, progress=progress and main, quiet=not main
    )
    optimizer, loader = _optimizer_and_loader(model, photos, recipe, rank, world)
    heads = _Heads(model)
    train_heads = nn.parallel.DistributedDataParallel(heads) if world > 1 else heads
    lr_at = _lr_schedule(recipe, len(loader))
    # The validation photos as the detector sees them, loaded once (decoding 2000 px JPEGs every epoch costs seconds).
    val_inputs = [load_input(f, model.config.resolution, model.config.interpolation)[0] for f in val_set.files] if main else []
    if main:
        out.mkdir(parents=True, exist_ok=True)
    identity = {"recipe": asdict(recipe), "data": str(data), "weights": str(weights), "limit": limit, "classes": names}
    identity["processes"] = world  # the steps per epoch, and so the lr schedule, depend on it
    files = RunFiles(out, recipe, identity)
    first, step, before = files.resume(model, optimizer, loader.generator, write=main) if resume else (1, 0, 0.0)
    start = time.perf_counter() - before
    for epoch in range(first, recipe.epochs + 1):
        if world > 1:  # each process its own augmentations, seeded per epoch so that a resumed run draws the same
            random.seed(seed := (recipe.seed * 1000 + rank) * 1000 + epoch)
            torch.manual_seed(seed)
        if isinstance(loader.sampler, torch.utils.data.DistributedSampler):
            loader.sampler.set_epoch(epoch)
        bar = _bar(loader, progress and main, f"epoch {epoch}/{recipe.epochs}")
        sums, step = _train_epoch(model, trunk, train_heads, bar, optimizer, lr_at, step, recipe)
        sums = _summed_over_processes(sums, world)
        if not main:
            continue
        model.eval()
        result = evaluate_detector(model, val_set, postprocess="coco", inputs=val_inputs)
        row = {
            "epoch": epoch,
            **{k: round(v / len(photos), 5) for k, v in sums.items()},
            "lr": lr_at(step - 1),
            **{k: round(result[k], 5) for k in ("map", "map_50", "map_75")},
            "seconds": round(time.perf_counter() - start, 1),
        }
        files.record(row, model, optimizer, step, loader.generator)
        _print_epoch(row, recipe.epochs, val_name)
    if not main:
        return {"rank": rank}
    summary = run_summary(recipe, data, weights, val_name, len(photos), names, files, out, time.perf_counter() - start)
    return _finish(summary, files, out, world)


def _finish(summary: dict[str, Any], files: RunFiles, out: Path, world: int) -> dict[str, Any]:
    best = files.best
    summary["world_size"] = world
    atomic_write(out / "summary.json", lambda tmp: Path(tmp).write_text(json.dumps(summary, indent=2) + "\n"))
    print(f"best: epoch {best['epoch']}, val map {best['map']:.4f}, map_50 {best['map_50']:.4f} -> {out / 'best.safetensors'}")
    return summary


def _start(
    source_state: dict[str, Tensor],
    source_config: Any,
    names: list[str],
    train_set: DetectionSet,
    recipe: DetectionRecipe,
    *,
    progress: bool,
    quiet: bool,
) -> tuple[SSDMobileNetV1, nn.Module, _Photos]:
    """The detector for ``names``, its frozen trunk and the training photos, with the class head
    started (kept when the source has these classes, else new, warm-started if the recipe says)."""
    # Seeded before anything random is drawn: the model's build, the new head's start, the shuffles.
    random.seed(recipe.seed)
    torch.manual_seed(recipe.seed)
    model, kept_classes = _build(source_state, source_config, names)
    trunk = _Trunk(model)
    class_of = {cid: names.index(name) for cid, name in train_set.categories.items()}
    photos = _Photos(train_set, class_of, model.config.resolution, recipe.augment, progress)
    if not kept_classes:
        source = SSDMobileNetV1.from_state_dict(source_state, source_config)
        _start_class_head(model, source, trunk, photos, names, recipe.warm_start, quiet=quiet)
    return model, trunk, photos


def _print_epoch(row: dict[str, Any], epochs: int, val_name: str) -> None:
    print(
        f"epoch {row['epoch']}/{epochs}: loss {row['loss']:.4f} (cls {row['loss_cls']:.4f}, box {row['loss_box']:.4f})  "
        f"val {val_name} map {row['map']:.4f}  map_50 {row['map_50']:.4f}  [{row['seconds']:.0f}s]",
        flush=True,
    )


def _summed_over_processes(sums: dict[str, float], world: int) -> dict[str, float]:
    """Each process's loss sums added up over the DDP processes (as they are with one)."""
    if world <= 1:
        return sums
    import torch.distributed as dist

    values = torch.tensor(list(sums.values()), dtype=torch.float64)
    dist.all_reduce(values)
    return dict(zip(sums, values.tolist()))


def _subset(data: DetectionSet, count: int) -> DetectionSet:
    images = data.coco["images"][:count]
    ids = {im["id"] for im in images}
    coco = {**data.coco, "images": images, "annotations": [a for a in data.coco["annotations"] if a["image_id"] in ids]}
    return DetectionSet(coco, data.files[:count], data.source)
