"""The linear probe: the classifier alone, trained on pooled backbone features computed once.

Used as a recipe of its own (``linear-probe``) and as the first stage of a fine-tune (the new
classifier fitted before the backbone moves).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset

from ..data import DataSplit, skip_bad_collate
from ..model import MobileNetV1
from .config import TrainConfig
from .loop import train_one_epoch, validate
from .optim import lr_lambda, make_optimizer
from .recipes import RECIPES

__all__ = ["feature_loaders", "fit_classifier", "pooled_features", "what_trains"]


@torch.inference_mode()
def pooled_features(model: MobileNetV1, loader: DataLoader, device: torch.device) -> TensorDataset:
    """Backbone features for every image, once: what a linear probe without augmentation trains on."""
    model.eval()
    feats, targets = [], []
    for images, y, _ in loader:
        if images.numel():
            feats.append(model.forward_head(model.forward_features(images.to(device)), pre_logits=True).float())
            targets.append(y.to(device))
    return TensorDataset(torch.cat(feats), torch.cat(targets))


def feature_loaders(
    cfg: TrainConfig, model: MobileNetV1, train_images: Any, val_loader: DataLoader, device: torch.device, generator: Any
) -> tuple[DataLoader, DataLoader]:
    def collate(batch: list[tuple[Tensor, Tensor]]) -> tuple[Tensor, Tensor, int]:
        x, y = zip(*batch)
        return torch.stack(x), torch.stack(y), 0

    images = DataLoader(train_images, 128, collate_fn=skip_bad_collate, num_workers=cfg.workers, pin_memory=device.type == "cuda")
    train_feats = pooled_features(model, images, device)
    val_feats = pooled_features(model, val_loader, device)
    return (
        DataLoader(train_feats, cfg.batch_size, shuffle=True, collate_fn=collate, generator=generator),
        DataLoader(val_feats, 1024, collate_fn=collate),
    )


def fit_classifier(
    cfg: TrainConfig, model: MobileNetV1, train_images: Any, val_loader: DataLoader, device: torch.device
) -> float:
    """The first stage of fine-tuning (linear probe, then fine-tune): the new classifier alone, on
    features computed once, with the linear-probe recipe. Starting the full fine-tune from a
    classifier that already fits keeps the first steps' large, random gradients out of the
    pretrained backbone. Returns the classifier's val top-1."""
    probe = RECIPES["linear-probe"].defaults
    # The same loss as the fine-tune that follows (label smoothing included): a classifier fitted
    # to another target would send large gradients into the backbone in its first steps.
    probe_cfg = replace(cfg, **{k: probe[k] for k in ("optimizer", "lr", "weight_decay", "schedule", "warmup")})
    probe_cfg = replace(probe_cfg, head_lr_mult=1.0, epochs=cfg.probe_epochs, channels_last=False, amp=False, ema=0.0)
    train_feats, val_feats = feature_loaders(
        probe_cfg, model, train_images, val_loader, device, torch.Generator().manual_seed(cfg.seed)
    )
    head = nn.Sequential(model.dropout, model.classifier)
    optimizer = make_optimizer(probe_cfg, head, probe_cfg.lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(probe_cfg, len(train_feats)))
    for epoch in range(probe_cfg.epochs):
        head.train()
        train_one_epoch(head, train_feats, optimizer, scheduler, probe_cfg, device=device, epoch=epoch)
    return validate(head, val_feats, probe_cfg, num_classes=model.config.num_classes, device=device)["top1"]


def what_trains(
    cfg: TrainConfig,
    model: MobileNetV1,
    split: DataSplit,
    train_loader: DataLoader,
    val_loader: DataLoader,
    teacher: Any,
    device: torch.device,
) -> tuple[nn.Module, DataLoader, DataLoader, TrainConfig]:
    """The module the optimizer steps, and its loaders: the whole model, or for a linear probe
    without augmentation, the classifier alone on pooled features computed once."""
    if cfg.freeze_backbone:
        for name, p in model.named_parameters():
            p.requires_grad = name.startswith("classifier.")
    if not (cfg.freeze_backbone and not cfg.augment and teacher is None):
        return model, train_loader, val_loader, cfg
    train_loader, val_loader = feature_loaders(cfg, model, split.train, val_loader, device, train_loader.generator)
    head = nn.Sequential(model.dropout, model.classifier)
    return head, train_loader, val_loader, replace(cfg, channels_last=False)  # the step sees (N, C) features
