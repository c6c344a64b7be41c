"""SSD MobileNet v1 as data: the detector's layout, anchors, post-processing and cost, no torch.

The layout is TF Object Detection API's ``ssd_mobilenet_v1`` (the model behind Table 13's SSD row
and Google's phone detector): MobileNet v1's conv11 and conv13 maps, then four extra blocks (a
1x1 conv to half the depth, then a 3x3 stride-2 conv, each with BN and ReLU6, TF SAME padding),
and on each of the six maps a 1x1 box head (4 numbers per anchor) and a 1x1 class head (one logit
per class and anchor, background first). Everything that shapes a tensor or reads the outputs
lives in :class:`DetectorConfig`, which travels with the weights.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from ..cost import LayerCost, model_cost
from ..spec import MobileNetConfig, output_size, scaled_depth

__all__ = [
    "COCO_NAMES",
    "POSTPROCESSES",
    "AnchorConfig",
    "DetectorConfig",
    "DetectorCostReport",
    "PostProcessConfig",
    "detector_cost",
    "extra_depths",
]

#: TF OD API's ssd_mobilenet_v1 extra layers at depth 1.0: each block is 1x1 to depth/2, then 3x3 s2.
EXTRA_DEPTHS = (512, 256, 256, 128)
#: TF OD API's depth floor for the SSD feature extractor (the classifier's is 8).
EXTRA_MIN_DEPTH = 16
#: The int8 range shared by every head of a kind (int8 CONCATENATION needs one scale for all its inputs).
BOX_RANGE, CLASS_RANGE = "box_heads", "class_heads"
#: The backbone blocks whose outputs feed the heads: conv11 and conv13 pointwise (``blocks.10``, ``blocks.12``).
SOURCE_BLOCKS = (10, 12)

#: COCO's 2017 detection categories by id (1..90, ids absent from COCO are "n/a"), background at 0:
#: the 91 outputs of Google's COCO detectors. Names as COCO's instance JSON spells them.
_COCO = {
    1: "person", 2: "bicycle", 3: "car", 4: "motorcycle", 5: "airplane", 6: "bus", 7: "train", 8: "truck", 9: "boat",
    10: "traffic light", 11: "fire hydrant", 13: "stop sign", 14: "parking meter", 15: "bench", 16: "bird", 17: "cat",
    18: "dog", 19: "horse", 20: "sheep", 21: "cow", 22: "elephant", 23: "bear", 24: "zebra", 25: "giraffe", 27: "backpack",
    28: "umbrella", 31: "handbag", 32: "tie", 33: "suitcase", 34: "frisbee", 35: "skis", 36: "snowboard",
    37: "sports ball", 38: "kite", 39: "baseball bat", 40: "baseball glove", 41: "skateboard", 42: "surfboard",
    43: "tennis racket", 44: "bottle", 46: "wine glass", 47: "cup", 48: "fork", 49: "knife", 50: "spoon", 51: "bowl",
    52: "banana", 53: "apple", 54: "sandwich", 55: "orange", 56: "broccoli", 57: "carrot", 58: "hot dog", 59: "pizza",
    60: "donut", 61: "cake", 62: "chair", 63: "couch", 64: "potted plant", 65: "bed", 67: "dining table", 70: "toilet",
    72: "tv", 73: "laptop", 74: "mouse", 75: "remote", 76: "keyboard", 77: "cell phone", 78: "microwave", 79: "oven",
    80: "toaster", 81: "sink", 82: "refrigerator", 84: "book", 85: "clock", 86: "vase", 87: "scissors",
    88: "teddy bear", 89: "hair drier", 90: "toothbrush",
}  # fmt: skip
COCO_NAMES: tuple[str, ...] = ("background", *(_COCO.get(i, "n/a") for i in range(1, 91)))


@dataclass(frozen=True)
class AnchorConfig:
    """TF's SSD anchor generator (``ssd_anchor_generator``): one scale per feature map, evenly from
    ``min_scale`` to ``max_scale``, each with every aspect ratio plus one box at the geometric mean
    of this scale and the next (``interpolated_scale_aspect_ratio``); the first map, with
    ``reduce_boxes_in_lowest_layer``, gets only (0.1, 1), (scale, 2) and (scale, 1/2).

    The aspect ratio written 1/3 is 0.3333 in Google's pipeline configs, and that is what their
    anchors were made with (the difference is 1e-5, larger than the test's 1e-6).
    """

    num_layers: int = 6
    min_scale: float = 0.2
    max_scale: float = 0.95
    aspect_ratios: tuple[float, ...] = (1.0, 2.0, 0.5, 3.0, 0.3333)
    interpolated_scale_aspect_ratio: float = 1.0
    reduce_boxes_in_lowest_layer: bool = True
    base_anchor_size: tuple[float, float] = (1.0, 1.0)

    def __post_init__(self) -> None:
        object.__setattr__(self, "aspect_ratios", tuple(float(a) for a in self.aspect_ratios))
        object.__setattr__(self, "base_anchor_size", tuple(float(a) for a in self.base_anchor_size))
        if self.num_layers < 1 or not 0 < self.min_scale <= self.max_scale or not self.aspect_ratios:
            raise ValueError(f"anchors: {self} needs num_layers >= 1, 0 < min_scale <= max_scale and aspect ratios")
        if any(a <= 0 for a in self.aspect_ratios):
            raise ValueError(f"anchors: aspect_ratios={self.aspect_ratios} must all be positive")

    def scales(self) -> list[float]:
        """One scale per layer, then 1.0 (the 'next' scale of the last layer)."""
        n = self.num_layers
        if n == 1:
            return [self.min_scale, 1.0]
        return [self.min_scale + (self.max_scale - self.min_scale) * i / (n - 1) for i in range(n)] + [1.0]

    def box_specs(self) -> list[list[tuple[float, float]]]:
        """(scale, aspect ratio) of each anchor of a cell, per feature map."""
        scales = self.scales()
        specs = []
        for layer in range(self.num_layers):
            scale, following = scales[layer], scales[layer + 1]
            if layer == 0 and self.reduce_boxes_in_lowest_layer:
                specs.append([(0.1, 1.0), (scale, 2.0), (scale, 0.5)])
                continue
            cell = [(scale, a) for a in self.aspect_ratios]
            if self.interpolated_scale_aspect_ratio > 0:
                cell.append((math.sqrt(scale * following), self.interpolated_scale_aspect_ratio))
            specs.append(cell)
        return specs

    def anchors_per_location(self) -> list[int]:
        return [len(s) for s in self.box_specs()]


@dataclass(frozen=True)
class PostProcessConfig:
    """How raw outputs become detections.

    ``class_agnostic``: TF Lite's fast NMS: each anchor keeps only its best class, and one NMS runs
    over all anchors. Otherwise TF OD API's per-class NMS: each class keeps up to ``max_per_class``
    boxes, ``max_detections`` in all. ``pre_nms_top_k`` keeps only each class's best boxes before
    NMS (without it the per-class NMS sees every anchor of every class, ~170k boxes).
    """

    name: str = "coco"
    class_agnostic: bool = False
    iou_threshold: float = 0.6
    score_threshold: float = 1e-8
    max_detections: int = 100
    max_per_class: int = 100
    pre_nms_top_k: int = 100
    #: Clip boxes to the image before NMS (TF OD API does; TF Lite's op does not).
    clip: bool = True

    def __post_init__(self) -> None:
        if not 0 <= self.iou_threshold <= 1:
            raise ValueError(f"postprocess {self.name!r}: iou_threshold={self.iou_threshold!r} must be in [0, 1]")
        if not 0 <= self.score_threshold < 1:
            raise ValueError(f"postprocess {self.name!r}: score_threshold={self.score_threshold!r} must be in [0, 1)")
        for key in ("max_detections", "max_per_class", "pre_nms_top_k"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"postprocess {self.name!r}: {key}={value!r} must be an integer >= 1")


#: The two named post-processings. ``tflite``: what ``TFLite_Detection_PostProcess`` does in Google's
#: file (fast class-agnostic NMS, IoU 0.6, 10 detections). ``coco``: TF OD API's evaluation setting
#: (per-class NMS, IoU 0.6, 100 per class, 100 in all), the one COCO mAP is reported under.
POSTPROCESSES: dict[str, PostProcessConfig] = {
    "tflite": PostProcessConfig("tflite", class_agnostic=True, max_detections=10, max_per_class=10, clip=False),
    "coco": PostProcessConfig("coco"),
}


def extra_depths(width_mult: float) -> list[tuple[int, int]]:
    """(1x1 depth, 3x3 depth) of each extra block: TF's ``max(int(d·α), 16)`` applied to d/2 and d."""
    return [
        (scaled_depth(d // 2, width_mult, EXTRA_MIN_DEPTH), scaled_depth(d, width_mult, EXTRA_MIN_DEPTH)) for d in EXTRA_DEPTHS
    ]


def _check_choice(name: str, value: object, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{name}={value!r} is not supported; choose one of {', '.join(map(repr, allowed))}")


@dataclass(frozen=True)
class DetectorConfig:
    """Everything needed to rebuild an SSD MobileNet v1 and read its outputs; travels with its weights.

    ``num_classes`` counts background (index 0): 91 for Google's COCO detectors, whose index k is
    COCO category id k. Inputs: the whole image squashed to ``resolution`` x ``resolution`` (no
    crop, aspect ratio not kept), then ``(pixel - mean) / std`` on 0..255 pixels.
    """

    width_mult: float = 1.0
    num_classes: int = 91
    resolution: int = 300
    activation: str = "relu6"
    padding: str = "tf"
    bn_eps: float = 1e-3
    head_kernel: int = 1
    anchors: AnchorConfig = field(default_factory=AnchorConfig)
    #: Scales of the box code [ty, tx, th, tw] (TF's FasterRcnnBoxCoder in SSD: 10, 10, 5, 5).
    box_scales: tuple[float, float, float, float] = (10.0, 10.0, 5.0, 5.0)
    #: The post-processing `detect` uses by default (a name of POSTPROCESSES, or the file's own).
    postprocess: PostProcessConfig = field(default_factory=lambda: POSTPROCESSES["coco"])
    #: Label set: "coco" (COCO_NAMES) or None; ``class_names`` overrides it.
    labels: str | None = "coco"
    class_names: tuple[str, ...] | None = None
    mean: float = 128.0
    std: float = 128.0
    interpolation: str = "bilinear"

    def __post_init__(self) -> None:
        if isinstance(self.anchors, dict):
            object.__setattr__(self, "anchors", AnchorConfig(**self.anchors))
        if isinstance(self.postprocess, dict):
            object.__setattr__(self, "postprocess", PostProcessConfig(**self.postprocess))
        self.backbone  # noqa: B018 - validates width, activation, padding, eps
        if isinstance(self.num_classes, bool) or not isinstance(self.num_classes, int) or self.num_classes < 2:
            raise ValueError(f"num_classes={self.num_classes!r} must be an integer >= 2 (background plus at least one class)")
        if isinstance(self.resolution, bool) or not isinstance(self.resolution, int) or self.resolution < 64:
            raise ValueError(f"resolution={self.resolution!r} must be an integer >= 64 (SSD MobileNet v1 uses 300)")
        if self.head_kernel not in (1, 3):
            raise ValueError(f"head_kernel={self.head_kernel!r} must be 1 (TF's ssd_mobilenet_v1) or 3")
        if self.anchors.num_layers != 6:
            raise ValueError(f"anchors.num_layers={self.anchors.num_layers} must be 6: one per SSD feature map")
        object.__setattr__(self, "box_scales", tuple(float(s) for s in self.box_scales))
        if len(self.box_scales) != 4 or min(self.box_scales) <= 0:
            raise ValueError(f"box_scales={self.box_scales!r} must be four positive numbers (ty, tx, th, tw)")
        if not (math.isfinite(self.std) and self.std > 0 and math.isfinite(self.mean)):
            raise ValueError(f"mean={self.mean!r}, std={self.std!r}: the input scaling needs a finite mean and std > 0")
        _check_choice("interpolation", self.interpolation, ("bilinear", "bicubic"))
        if self.class_names is not None:
            object.__setattr__(self, "class_names", tuple(self.class_names))
            if len(self.class_names) != self.num_classes:
                raise ValueError(f"class_names has {len(self.class_names)} entries but num_classes={self.num_classes}")

    @property
    def backbone(self) -> MobileNetConfig:
        """The classifier config of the backbone (no classifier: ``num_classes=0``)."""
        return MobileNetConfig(
            width_mult=self.width_mult,
            resolution=self.resolution,
            num_classes=0,
            activation=self.activation,
            padding=self.padding,
            bn_eps=self.bn_eps,
        )

    @property
    def names(self) -> list[str]:
        """A name for each output index (background first)."""
        if self.class_names is not None:
            return list(self.class_names)
        if self.labels == "coco" and self.num_classes == len(COCO_NAMES):
            return list(COCO_NAMES)
        return ["background", *(f"class {i}" for i in range(1, self.num_classes))]

    def replace(self, **changes: Any) -> DetectorConfig:
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for key in ("class_names",):
            if d[key] is not None:
                d[key] = list(d[key])
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DetectorConfig:
        """From :meth:`to_dict`'s output, ignoring keys it does not know (files written by newer versions)."""
        known = {f.name for f in fields(cls)}
        data = {k: v for k, v in data.items() if k in known}
        if isinstance(data.get("anchors"), dict):
            keys = {f.name for f in fields(AnchorConfig)}
            data["anchors"] = AnchorConfig(**{k: v for k, v in data["anchors"].items() if k in keys})
        if isinstance(data.get("postprocess"), dict):
            keys = {f.name for f in fields(PostProcessConfig)}
            data["postprocess"] = PostProcessConfig(**{k: v for k, v in data["postprocess"].items() if k in keys})
        return cls(**data)

    def feature_sizes(self, resolution: int | None = None) -> list[int]:
        """Side of each of the six feature maps for a square input (19, 10, 5, 3, 2, 1 at 300 px)."""
        size = resolution or self.resolution
        report = model_cost(self.backbone, resolution=size)
        by_name = {r.name: r for r in report.layers}
        sizes = [by_name["pw12"].output_shape[0], by_name["pw14"].output_shape[0]]
        for _ in EXTRA_DEPTHS:
            sizes.append(output_size(sizes[-1], 2))
        return sizes


@dataclass(frozen=True)
class DetectorCostReport:
    """Mult-Adds and params (the paper's convention: conv weights only, no biases or BN)."""

    config: DetectorConfig
    resolution: int
    layers: tuple[LayerCost, ...]

    @property
    def mult_adds(self) -> int:
        return sum(r.mult_adds for r in self.layers)

    @property
    def params(self) -> int:
        return sum(r.params for r in self.layers)

    def by_part(self) -> dict[str, tuple[int, int]]:
        out: dict[str, tuple[int, int]] = {}
        for r in self.layers:
            part = "heads" if r.name.startswith(("box", "class")) else "extras" if r.name.startswith("extra") else "backbone"
            m, p = out.get(part, (0, 0))
            out[part] = (m + r.mult_adds, p + r.params)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": "ssd_mobilenet_v1",
            "width_mult": self.config.width_mult,
            "resolution": [self.resolution, self.resolution],
            "num_classes": self.config.num_classes,
            "anchors": sum(
                s * s * a for s, a in zip(self.config.feature_sizes(self.resolution), self.config.anchors.anchors_per_location())
            ),
            "mult_adds": self.mult_adds,
            "params": self.params,
            "parts": {k: {"mult_adds": m, "params": p} for k, (m, p) in self.by_part().items()},
            "paper": {"table": 13, "row": "SSD 300 MobileNet", "mult_adds": 1.2e9, "params": 6.8e6, "coco_map": 19.3},
            "layers": [asdict(r) for r in self.layers],
        }

    def format_table(self, per_layer: bool = False) -> str:
        c = self.config
        lines = [
            f"SSD MobileNet v1 α={c.width_mult:g} input {self.resolution}x{self.resolution}x3, {c.num_classes} classes "
            f"(background included), {c.head_kernel}x{c.head_kernel} heads"
        ]
        if per_layer:
            lines.append(f"{'layer':<14} {'stride':<6} {'filter shape':<18} {'input':<14} {'Mult-Adds':>13} {'params':>11}")
            for r in self.layers:
                lines.append(
                    f"{r.name:<14} {f's{r.stride}':<6} {'x'.join(map(str, r.filter_shape)):<18} "
                    f"{'x'.join(map(str, r.input_shape)):<14} {r.mult_adds:>13,} {r.params:>11,}"
                )
        for part, (m, p) in self.by_part().items():
            lines.append(f"  {part:<9} Mult-Adds {m:>13,}  params {p:>10,}")
        lines.append(
            f"total Mult-Adds {self.mult_adds:,} ({self.mult_adds / 1e9:.2f} B), params {self.params:,} ({self.params / 1e6:.2f} M)"
        )
        if c.width_mult == 1.0 and self.resolution == 300 and c.num_classes == 91:
            lines.append("paper, Table 13 (SSD 300, MobileNet): 1.2 B Mult-Adds, 6.8 M params, 19.3 COCO mAP")
        return "\n".join(lines)


def detector_cost(config: DetectorConfig | None = None, resolution: int | None = None, **kwargs: Any) -> DetectorCostReport:
    """Per-layer Mult-Adds and params of SSD MobileNet v1, walked from the same spec as the model.

    >>> r = detector_cost(width_mult=1.0)
    >>> round(r.mult_adds / 1e9, 1), round(r.params / 1e6, 1)
    (1.2, 6.8)
    """
    if config is None:
        config = DetectorConfig(**kwargs)
    elif kwargs:
        config = config.replace(**kwargs)
    size = resolution or config.resolution
    backbone = model_cost(config.backbone, resolution=size)
    rows = [r for r in backbone.layers if r.kind != "fc"]
    by_name = {r.name: r for r in rows}
    sources = [by_name["pw12"].output_shape, by_name["pw14"].output_shape]  # conv11, conv13 in TF's 0-based names
    h, w, ch = sources[-1]
    for i, (mid, out) in enumerate(extra_depths(config.width_mult)):
        rows.append(
            LayerCost(f"extra{i + 1}_1x1", "conv", 1, (1, 1, ch, mid), (h, w, ch), (h, w, mid), ch * mid * h * w, ch * mid)
        )
        oh, ow = output_size(h, 2), output_size(w, 2)
        rows.append(
            LayerCost(
                f"extra{i + 1}_3x3",
                "conv",
                2,
                (3, 3, mid, out),
                (h, w, mid),
                (oh, ow, out),
                9 * mid * out * oh * ow,
                9 * mid * out,
            )
        )
        h, w, ch = oh, ow, out
        sources.append((h, w, ch))
    k = config.head_kernel
    for i, ((h, w, ch), anchors) in enumerate(zip(sources, config.anchors.anchors_per_location())):
        for head, per_anchor in (("box", 4), ("class", config.num_classes)):
            out = anchors * per_anchor
            rows.append(
                LayerCost(
                    f"{head}{i}", "conv", 1, (k, k, ch, out), (h, w, ch), (h, w, out), k * k * ch * out * h * w, k * k * ch * out
                )
            )
    return DetectorCostReport(config, size, tuple(rows))
