"""``mobilenet_v1(...)``, the torchvision-style builder: a random-init model, or one with weights.

It sits above both the network (:mod:`mobilenet.model`) and the weights (:mod:`mobilenet.weights`),
so neither needs to know of the other.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from .model import FeatureExtractor, MobileNetV1
from .weights import load_weights

__all__ = ["mobilenet_v1"]


def mobilenet_v1(
    *,
    weights: Any = None,
    progress: bool = True,
    features_only: bool = False,
    out_reductions: tuple[int, ...] = (8, 16, 32),
    **kwargs: Any,
) -> nn.Module:
    """Builds MobileNet v1, torchvision style.

    Args:
        weights: None for random init; a ``MobileNet_V1_Weights`` member, its name, or a path to a
            file of any format :mod:`mobilenet.formats` reads as weights (ours, Google's TF Lite, Keras' .h5, timm's). The weights' own config (α,
            classes, activation, padding) is used; passing a conflicting value raises a ``ValueError``.
        progress: show a download progress bar.
        features_only: return a backbone whose forward gives the maps at ``out_reductions``.
        **kwargs: fields of :class:`~mobilenet.spec.MobileNetConfig`: ``num_classes``,
            ``width_mult``, ``dropout``, ``in_chans``, ``activation``, ``padding``, ``min_depth``,
            ``variant``, ``resolution``.
    """
    model = load_weights(weights, progress=progress, **kwargs) if weights is not None else MobileNetV1(**kwargs)
    if features_only:
        return FeatureExtractor(model, out_reductions)
    return model
