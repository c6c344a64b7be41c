"""What a run starts from: processes and device, the data, the weights, the model to train and
its loaders, and for ``--qat`` the int8 simulation around it."""

from __future__ import annotations

import os
import random
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, Subset

from ..checkpoint import weights_metadata
from ..data import DataSplit, DigitsDataset, load_data, skip_bad_collate, train_transform, transforms_for
from ..model import MobileNetV1, fold_batchnorm
from ..quantize import FakeQuantMobileNet, calibrate_ranges, ranges_from_metadata, ranges_to_metadata
from ..spec import MobileNetConfig
from ..weights import load_weights
from .config import TrainConfig
from .recipes import ARCH_FIELDS, RECIPES, recipe_for, resolve, weights_name

__all__ = ["build_model", "make_loaders", "pretrained_model", "training_data"]


def setup_distributed() -> tuple[int, int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 0, 1
    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return dist.get_rank(), int(os.environ.get("LOCAL_RANK", "0")), world


def pick_device(cfg: TrainConfig, local_rank: int) -> torch.device:
    if cfg.device:
        return torch.device(cfg.device)
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def training_data(cfg: TrainConfig, source: MobileNetConfig | None, augment: bool | None = None) -> DataSplit:
    """The data split, with the transforms that the weights (if any) expect. Reads only folder
    listings: no image is decoded until training starts."""
    resolution = cfg.resolution or (source.resolution if source else RECIPES[recipe_for(cfg)].defaults["resolution"])
    template = (source or MobileNetConfig()).replace(resolution=resolution)
    if augment is None:
        augment = cfg.augment if cfg.augment is not None else RECIPES[recipe_for(cfg)].defaults["augment"]
    eval_tf = transforms_for(template, preprocess=cfg.preprocess)
    train_tf = train_transform(resolution, mean=template.mean, std=template.std) if augment else eval_tf
    split = load_data(cfg.data, resolution, seed=cfg.seed, train_tf=train_tf, eval_tf=eval_tf)
    if len(split.classes) < 2:
        raise ValueError(
            f"{split.name} has {len(split.classes)} class ({', '.join(split.classes)}); a classifier needs at least 2 "
            "class folders (train/<class>/*)"
        )
    if len(split.train) == 0 or len(split.val) == 0:
        raise ValueError(f"{split.name}: the train or val split is empty; add images")
    return split


def pretrained_model(cfg: TrainConfig) -> MobileNetV1 | None:
    if not cfg.weights:
        return None
    model = load_weights(cfg.weights)
    if not isinstance(model, MobileNetV1):
        raise ValueError(f"--weights {weights_name(cfg.weights)} did not load as a MobileNet v1 model")
    return model


def teacher_model(cfg: TrainConfig, num_classes: int, device: torch.device, student: MobileNetConfig) -> nn.Module | None:
    if not cfg.teacher:
        return None
    teacher = load_weights(cfg.teacher).to(device).eval()
    if teacher.config.num_classes != num_classes:
        raise ValueError(
            f"--teacher {weights_name(cfg.teacher)} predicts {teacher.config.num_classes} classes; the data has {num_classes}"
        )
    if (teacher.config.mean, teacher.config.std) != (student.mean, student.std):
        warnings.warn(
            f"--teacher {weights_name(cfg.teacher)} expects inputs normalized with mean {teacher.config.mean}, std {teacher.config.std}; "
            f"it will see the student's ({student.mean}, {student.std})",
            stacklevel=2,
        )
    return teacher


def build_model(cfg: TrainConfig, split: DataSplit, pretrained: MobileNetV1 | None = None) -> tuple[MobileNetV1, TrainConfig]:
    """The network to train and the fully resolved config. With weights, the weights define the
    network and the classifier is replaced for the data's classes, unless the weights were trained
    on exactly these classes and the backbone trains too (a fine-tune continued, or made
    quantization-aware); a linear probe always starts from a new classifier, so that it measures
    the features."""
    classes = tuple(split.classes)
    labels = "digits" if isinstance(split.train, DigitsDataset) else None
    if pretrained is None:
        cfg = resolve(cfg)
        config = MobileNetConfig(
            **{k: getattr(cfg, k) for k in ARCH_FIELDS},
            resolution=cfg.resolution,
            num_classes=len(classes),
            dropout=cfg.dropout,
            labels=labels,
            class_names=classes,
            **({"preprocess": cfg.preprocess} if cfg.preprocess else {}),
        )
        return MobileNetV1(config), cfg
    model = pretrained
    source = model.config
    keep_classifier = source.class_names == classes and source.num_classes == len(classes) and not cfg.freeze_backbone
    if keep_classifier and cfg.probe_epochs is None:
        cfg = replace(cfg, probe_epochs=0)  # the classifier already fits these classes
    cfg = resolve(cfg, source)
    if abs(cfg.resolution / source.resolution - 1) > 0.25:
        warnings.warn(
            f"--resolution {cfg.resolution} is far from the {source.resolution} px these weights were trained at; "
            "accuracy may suffer (the network accepts any size >= 32)",
            stacklevel=2,
        )
    # Weights already trained on these classes (a fine-tune continued, or made quantization-aware)
    # keep their classifier; any other weights get a new one for the data's classes.
    if not keep_classifier:
        model.reset_classifier(len(classes))
    model.dropout.p = cfg.dropout
    model.config = model.config.replace(resolution=cfg.resolution, dropout=cfg.dropout, labels=labels, class_names=classes)
    if cfg.preprocess:  # validated this way: saved this way, so eval reproduces the logged accuracy
        model.config = model.config.replace(preprocess=cfg.preprocess)
    return model, cfg


def make_loaders(
    cfg: TrainConfig, split: DataSplit, world: int, rank: int, device: torch.device, collate: Any = skip_bad_collate
) -> tuple[DataLoader, DataLoader]:
    """The training and validation loaders (DDP-sharded when ``world > 1``); ``collate`` is the task's."""
    train_sampler = DistributedSampler(split.train, world, rank, shuffle=True, seed=cfg.seed) if world > 1 else None
    val_sampler = DistributedSampler(split.val, world, rank, shuffle=False) if world > 1 else None
    common = dict(
        num_workers=cfg.workers,
        collate_fn=collate,
        pin_memory=device.type == "cuda",
        # Not persistent: fresh workers each epoch take their seeds from the reseeded generator, so
        # a resumed run augments exactly as an uninterrupted one.
        persistent_workers=False,
    )
    train_loader = DataLoader(
        split.train,
        cfg.batch_size,
        shuffle=train_sampler is None,
        sampler=train_sampler,
        drop_last=len(split.train) > cfg.batch_size * world,
        generator=torch.Generator(),
        **common,
    )
    val_loader = DataLoader(split.val, max(cfg.batch_size, 128), sampler=val_sampler, **common)
    return train_loader, val_loader


def place(model: MobileNetV1, cfg: TrainConfig, device: torch.device) -> None:
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.momentum = cfg.bn_momentum
    model.to(device)
    if cfg.channels_last:
        model.to(memory_format=torch.channels_last)


def simulate_int8(
    cfg: TrainConfig, model: MobileNetV1, pretrained: MobileNetV1 | None, out: Path, device: torch.device, is_main: bool
) -> FakeQuantMobileNet:
    """QAT: the model wrapped to compute as its tflite-int8 export will. The activation ranges
    start where post-training calibration would put them (the float model's min and max on up
    to 256 training images, unaugmented) and follow the batches from there; a resumed run takes
    them from its last checkpoint."""
    if cfg.resume:
        last = out / "last.safetensors"
        try:
            ranges = ranges_from_metadata(weights_metadata(last))
        except ValueError as exc:
            raise ValueError(f"--resume --qat: {last}: {exc}") from None
        if ranges is None:
            raise ValueError(f"--resume --qat: {out / 'last.safetensors'} holds no int8 ranges; it was not a --qat run")
    else:
        plain = training_data(cfg, pretrained.config if pretrained is not None else None, augment=False).train
        picked = torch.randperm(len(plain), generator=torch.Generator().manual_seed(cfg.seed))[:256].tolist()
        loader = DataLoader(Subset(plain, picked), 64, collate_fn=skip_bad_collate, num_workers=cfg.workers)
        ranges = calibrate_ranges(fold_batchnorm(model), (images.to(device) for images, _, _ in loader))
        if is_main:
            print(
                f"quantization-aware: int8 ranges calibrated on {len(picked)} training images; validation runs the int8 simulation"
            )
    return FakeQuantMobileNet(model, ranges).to(device)


def weights_metadata_of(step_model: nn.Module) -> dict[str, str]:
    return ranges_to_metadata(step_model.ranges()) if isinstance(step_model, FakeQuantMobileNet) else {}
