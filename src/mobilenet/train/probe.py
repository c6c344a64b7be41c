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
from .records import seed_epoch

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
    pretrained backbone. Keeps the pass with the best val top-1, and returns that top-1."""
    probe = RECIPES["linear-probe"].defaults
    # The linear-probe recipe exactly, its loss included (no label smoothing): with the fine-tune's
    # smoothed loss this stage's best pass fell below a linear probe's (five flowers classes, 20
    # photos each: 0.825 against 0.86), and the fine-tune then could not catch up.
    keys = ("optimizer", "lr", "weight_decay", "schedule", "warmup", "label_smoothing")
    probe_cfg = replace(cfg, **{k: probe[k] for k in keys})
    probe_cfg = replace(probe_cfg, head_lr_mult=1.0, epochs=cfg.probe_epochs, channels_last=False, amp=False, ema=0.0)
    train_feats, val_feats = feature_loaders(
        probe_cfg, model, train_images, val_loader, device, torch.Generator().manual_seed(cfg.seed)
    )
    head = nn.Sequential(model.dropout, model.classifier)
    optimizer = make_optimizer(probe_cfg, head, probe_cfg.lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(probe_cfg, len(train_feats)))
    # Each pass is validated (on cached features, a moment each) and the best pass's classifier is
    # kept, as a linear-probe run keeps its best epoch: the fine-tune then starts from, and can
    # only hand back something at least as good as, the probe.
    best_top1, best_state = -1.0, None
    for epoch in range(probe_cfg.epochs):
        seed_epoch(probe_cfg, train_feats, epoch)  # the batches and dropout of a linear-probe run's epoch
        head.train()
        train_one_epoch(head, train_feats, optimizer, scheduler, probe_cfg, device=device, epoch=epoch)
        top1 = validate(head, val_feats, probe_cfg, num_classes=model.config.num_classes, device=device)["top1"]
        if top1 > best_top1:
            best_top1, best_state = top1, {k: v.detach().clone() for k, v in head.state_dict().items()}
    if best_state is not None:
        head.load_state_dict(best_state)
    return best_top1


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
