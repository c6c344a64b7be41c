"""SSD MobileNet v1: extra layers and box/class heads over the classifier's backbone.

The backbone is :class:`mobilenet.model.MobileNetV1` itself (no classifier), read at conv11 and
conv13 through ``forward_intermediates`` (output strides 16 and 32); the classifier modules know
nothing of boxes. ``forward`` returns the raw outputs TF's graph has before post-processing: box
codes (N, A, 4) [ty, tx, th, tw] and class logits (N, A, C), background first, anchors in the
order of :func:`mobilenet.detection.anchors.ssd_anchors`. :meth:`SSDMobileNetV1.predict` decodes
and post-processes them into torchvision-style detections.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from ..checkpoint import WeightsFileError
from ..model import ConvBNAct, MobileNetV1
from .anchors import ssd_anchors
from .boxes import decode_boxes, postprocess
from .spec import POSTPROCESSES, DetectorConfig, PostProcessConfig, extra_depths

__all__ = ["SSDMobileNetV1"]

#: Config fields a caller may change when loading weights: neither shapes a tensor.
_FREE_OVERRIDES = ("resolution", "postprocess", "class_names", "labels")


class SSDMobileNetV1(nn.Module):
    """SSD with a MobileNet v1 backbone, as TF Object Detection API builds ``ssd_mobilenet_v1``.

    Module tree: ``backbone`` (MobileNetV1, ``num_classes=0``), ``extras`` (four blocks of a 1x1
    ConvBNAct then a 3x3 stride-2 ConvBNAct), ``box_heads`` and ``class_heads`` (one conv with bias
    per feature map).
    """

    def __init__(self, config: DetectorConfig | None = None, **kwargs: Any) -> None:
        super().__init__()
        if config is None:
            config = DetectorConfig(**kwargs)
        elif kwargs:
            config = config.replace(**kwargs)
        self.config = config
        backbone_config = config.backbone
        self.backbone = MobileNetV1(backbone_config)
        channels = [self.backbone.feature_infos_for((16,))[0]["num_chs"], self.backbone.num_features]
        self.extras = nn.ModuleList()
        for mid, out in extra_depths(config.width_mult):
            self.extras.append(
                nn.Sequential(
                    ConvBNAct(channels[-1], mid, 1, 1, config=backbone_config),
                    ConvBNAct(mid, out, 3, 2, config=backbone_config),
                )
            )
            channels.append(out)
        k = config.head_kernel
        anchors = config.anchors.anchors_per_location()
        self.box_heads = nn.ModuleList(nn.Conv2d(c, a * 4, k, padding=k // 2) for c, a in zip(channels, anchors))
        self.class_heads = nn.ModuleList(
            nn.Conv2d(c, a * config.num_classes, k, padding=k // 2) for c, a in zip(channels, anchors)
        )
        self.feature_channels = channels
        self._anchor_cache: dict[tuple[tuple[int, int], ...], Tensor] = {}
        for head in [*self.box_heads, *self.class_heads]:
            nn.init.normal_(head.weight, 0, 0.03)
            nn.init.zeros_(head.bias)

    @classmethod
    def from_state_dict(
        cls,
        state: Mapping[str, Tensor],
        config: DetectorConfig,
        *,
        source: str = "state dict",
        overrides: Mapping[str, Any] | None = None,
    ) -> SSDMobileNetV1:
        """The detector for ``config`` holding ``state``, in eval mode. ``overrides`` may restate the
        config or change the input size, post-processing and names; anything else that differs is
        a ``ValueError`` naming both values, and a state that does not fit a ``WeightsFileError``."""
        overrides = dict(overrides or {})
        for key, value in overrides.items():
            if key in _FREE_OVERRIDES:
                continue
            have = getattr(config, key, None)
            if value != have:
                raise ValueError(
                    f"{source} holds a detector with {key}={have!r}, but {key}={value!r} was asked for; drop the argument"
                )
        free = {k: v for k, v in overrides.items() if k in _FREE_OVERRIDES}
        if isinstance(free.get("postprocess"), str):
            free["postprocess"] = postprocess_config(free["postprocess"])
        config = config.replace(**free)
        model = cls(config)
        own = model.state_dict()
        mismatched = [k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
        missing = [k for k in own if k not in state]
        if mismatched or missing:
            detail = "; ".join(
                [f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}" for k in mismatched[:3]]
                + [f"missing {k}" for k in missing[:3]]
            )
            raise WeightsFileError(
                f"{source} does not fit SSD MobileNet v1 with width_mult={config.width_mult}, num_classes={config.num_classes}: {detail}"
            )
        model.load_state_dict({k: state[k] for k in own})
        return model.eval()

    @property
    def num_classes(self) -> int:
        return self.config.num_classes

    def forward_features(self, x: Tensor) -> list[Tensor]:
        """The six feature maps the heads read: conv11, conv13, then one per extra block."""
        maps = self.backbone.forward_intermediates(x, (16, 32))
        y = maps[-1]
        for block in self.extras:
            y = block(y)
            maps.append(y)
        return maps

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Images (N, 3, H, W), already scaled → (box codes (N, A, 4), class logits (N, A, C))."""
        maps = self.forward_features(x)
        n = x.shape[0]
        codes = [h(m).permute(0, 2, 3, 1).reshape(n, -1, 4) for h, m in zip(self.box_heads, maps)]
        logits = [h(m).permute(0, 2, 3, 1).reshape(n, -1, self.config.num_classes) for h, m in zip(self.class_heads, maps)]
        return torch.cat(codes, 1), torch.cat(logits, 1)

    def feature_sizes(self, height: int, width: int) -> list[tuple[int, int]]:
        """(rows, cols) of each feature map for an input of ``height`` x ``width``."""
        rows = self.config.feature_sizes(height)
        cols = self.config.feature_sizes(width) if width != height else rows
        return list(zip(rows, cols))

    def anchors(self, height: int | None = None, width: int | None = None) -> Tensor:
        """Anchors [yc, xc, h, w] (A, 4) for inputs of ``height`` x ``width`` (default: the config's size)."""
        height = height or self.config.resolution
        width = width or height
        sizes = tuple(self.feature_sizes(height, width))
        if sizes not in self._anchor_cache:
            self._anchor_cache[sizes] = ssd_anchors(self.config.anchors, sizes)
        return self._anchor_cache[sizes]

    def decode(self, codes: Tensor, logits: Tensor, height: int | None = None, width: int | None = None) -> tuple[Tensor, Tensor]:
        """Raw outputs → (boxes (N, A, 4) [x0, y0, x1, y1] normalized, class scores (N, A, C) by sigmoid)."""
        anchors = self.anchors(height, width).to(codes.device)
        return decode_boxes(codes, anchors, self.config.box_scales), torch.sigmoid(logits.float())

    @torch.inference_mode()
    def predict(self, x: Tensor, postprocess_with: str | PostProcessConfig | None = None) -> list[dict[str, Tensor]]:
        """Scaled images (N, 3, H, W) → one dict per image: ``boxes`` [x0, y0, x1, y1] normalized to
        [0, 1], ``scores``, ``labels`` (class indices, background = 0 never appears)."""
        pp = postprocess_config(postprocess_with, self.config)
        codes, logits = self(x)
        boxes, scores = self.decode(codes, logits, x.shape[-2], x.shape[-1])
        return [postprocess(b, s, pp) for b, s in zip(boxes, scores)]


def postprocess_config(choice: str | PostProcessConfig | None, config: DetectorConfig | None = None) -> PostProcessConfig:
    """A post-processing by name ('tflite', 'coco'), as given, or the config's own (None)."""
    if isinstance(choice, PostProcessConfig):
        return choice
    if choice is None:
        return config.postprocess if config is not None else POSTPROCESSES["coco"]
    if config is not None and config.postprocess.name == choice:
        return config.postprocess  # the weights' own settings under that name (an imported file's)
    if choice not in POSTPROCESSES:
        raise ValueError(f"postprocess={choice!r} is not supported; choose one of {', '.join(map(repr, POSTPROCESSES))}")
    return POSTPROCESSES[choice]
