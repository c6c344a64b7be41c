"""Batch norm while training: kept frozen for fine-tuning, or re-estimated on the training images."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from ..model import MobileNetV1

__all__ = ["recalibrate_batchnorm", "set_train_mode"]


def set_train_mode(model: nn.Module, bn: str, *, frozen_backbone: bool = False) -> nn.Module:
    """``model.train()``, except that BN layers stay in eval mode when ``bn == "frozen"``, and the
    whole backbone does under ``frozen_backbone`` (a linear probe).

    Why frozen BN is the fine-tuning default: Google's TF Lite files arrive with BN folded into the
    convs, loaded as identity layers whose running statistics say nothing about real activations.
    In train mode BN would normalize with each small batch's own statistics, a different function
    from the one the weights were trained as, and the features fall apart in the first steps.
    """
    model.train()
    if bn == "frozen":
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.eval()
    if frozen_backbone and isinstance(model, MobileNetV1):
        model.stem.eval()
        model.blocks.eval()
    return model


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, batches: Any, *, max_images: int = 512) -> int:
    """Re-estimates each BN layer's statistics on ``batches`` and adjusts its scale and shift so the
    layer computes exactly what it did: ``γ' = γ·s'/s``, ``β' = β + γ·(μ' - μ)/s`` with ``s = sqrt(var + eps)``.

    The model runs in eval mode throughout, so each layer's statistics are those of the real
    activations of the unchanged network. Afterwards batch-statistics training starts from the
    same function the weights had. Returns the number of images used.
    """
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    sums: dict[nn.Module, list[Tensor]] = {}

    def record(module: nn.Module, inputs: tuple[Tensor, ...]) -> None:
        x = inputs[0].double()
        n = x.numel() / x.shape[1]
        s, sq = x.sum((0, 2, 3)), (x * x).sum((0, 2, 3))
        if module in sums:
            sums[module][0] += n
            sums[module][1] += s
            sums[module][2] += sq
        else:
            sums[module] = [torch.tensor(n, dtype=torch.float64), s, sq]

    hooks = [m.register_forward_pre_hook(record) for m in bns]
    model.eval()
    seen = 0
    device = next(model.parameters()).device
    try:
        for batch in batches:
            images = batch[0]
            if images.numel() == 0:
                continue
            model(images.to(device))
            seen += len(images)
            if seen >= max_images:
                break
    finally:
        for h in hooks:
            h.remove()
    for m in bns:
        n, s, sq = sums[m]
        mean = s / n
        var = (sq / n - mean * mean).clamp(min=0)
        old_std = (m.running_var.double() + m.eps).sqrt()
        new_std = (var + m.eps).sqrt()
        gamma = m.weight.double()
        m.bias.copy_((m.bias.double() + gamma * (mean - m.running_mean.double()) / old_std).float())
        m.weight.copy_((gamma * new_std / old_std).float())
        m.running_mean.copy_(mean.float())
        m.running_var.copy_(var.float())
    return seen
