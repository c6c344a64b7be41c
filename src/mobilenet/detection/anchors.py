"""TF's multiple-grid anchor generator, the one SSD MobileNet v1's anchors come from.

Each feature map of side n gets a grid of n x n cells with centres ``(i + 0.5) / n`` (normalized
image coordinates); each cell gets one box per (scale, aspect ratio) of its layer
(:meth:`~mobilenet.detection.spec.AnchorConfig.box_specs`), with height ``scale / sqrt(ratio)``
and width ``scale · sqrt(ratio)``. Anchors run over maps, then rows, then columns, then the boxes
of a cell: the order in which the heads' outputs are flattened. Arithmetic is float32, as in TF,
so the result equals Google's anchors to float rounding.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from .spec import AnchorConfig

__all__ = ["grid_anchors", "ssd_anchors"]


def grid_anchors(size: tuple[int, int], specs: Sequence[tuple[float, float]], base: tuple[float, float] = (1.0, 1.0)) -> Tensor:
    """(n_h · n_w · len(specs), 4) anchors [yc, xc, h, w] of one feature map of ``size`` (rows, cols)."""
    f32 = torch.float32
    scales = torch.tensor([s for s, _ in specs], dtype=f32)
    ratio_sqrts = torch.sqrt(torch.tensor([a for _, a in specs], dtype=f32))
    heights = scales / ratio_sqrts * base[0]
    widths = scales * ratio_sqrts * base[1]
    stride_y = torch.tensor(1.0, dtype=f32) / size[0]
    stride_x = torch.tensor(1.0, dtype=f32) / size[1]
    yc = torch.arange(size[0], dtype=f32) * stride_y + 0.5 * stride_y
    xc = torch.arange(size[1], dtype=f32) * stride_x + 0.5 * stride_x
    k = len(specs)
    yy = yc.view(-1, 1, 1).expand(size[0], size[1], k)
    xx = xc.view(1, -1, 1).expand(size[0], size[1], k)
    hh = heights.view(1, 1, -1).expand(size[0], size[1], k)
    ww = widths.view(1, 1, -1).expand(size[0], size[1], k)
    # TF stores corners and reads centres and sizes back from them; doing the same keeps its rounding.
    ymin, xmin, ymax, xmax = yy - 0.5 * hh, xx - 0.5 * ww, yy + 0.5 * hh, xx + 0.5 * ww
    out = torch.stack([(ymin + ymax) / 2, (xmin + xmax) / 2, ymax - ymin, xmax - xmin], dim=-1)
    return out.reshape(-1, 4)


def ssd_anchors(config: AnchorConfig, feature_sizes: Sequence[int | tuple[int, int]]) -> Tensor:
    """All anchors [yc, xc, h, w] for the given feature-map sides (19, 10, 5, 3, 2, 1 at 300 px: 1917)."""
    specs = config.box_specs()
    if len(feature_sizes) != len(specs):
        raise ValueError(f"{len(feature_sizes)} feature maps given; the anchor config has {len(specs)} layers")
    sizes = [(s, s) if isinstance(s, int) else tuple(s) for s in feature_sizes]
    return torch.cat([grid_anchors(size, spec, config.base_anchor_size) for size, spec in zip(sizes, specs)])  # type: ignore[arg-type]
