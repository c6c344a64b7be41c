"""MobileNet v1 as data: Table 1 of the paper, width rounding and the ablation variants.

Everything else in the package (the ``nn.Module``, the cost model, the printed tables) walks the
layer list produced here, so the architecture is written down exactly once. This module is plain
Python: no torch, so the cost model and its tests run without building a network.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Literal

__all__ = [
    "ACTIVATIONS",
    "INTERPOLATIONS",
    "MAX_WIDTH_MULT",
    "MIN_CROP_PCT",
    "MIN_RESOLUTION",
    "PADDINGS",
    "PREPROCESSES",
    "TABLE1",
    "VARIANTS",
    "Block",
    "ConvDef",
    "Layer",
    "MobileNetConfig",
    "build_blocks",
    "build_layers",
    "conv_defs",
    "output_size",
    "reconcile",
    "scaled_depth",
]

Variant = Literal["separable", "conv", "shallow"]
VARIANTS: tuple[str, ...] = ("separable", "conv", "shallow")
ACTIVATIONS: tuple[str, ...] = ("relu", "relu6")
#: "symmetric": PyTorch's padding=1. "tf": TF 'SAME' (TF-slim, TF Lite). "keras": keras.applications'
#: MobileNet, which pads strided depthwise convs by a fixed (0, 1) instead of SAME; the two differ
#: only where such a conv sees an odd-sized map (never at 128, 160, 192 or 224 px).
PADDINGS: tuple[str, ...] = ("symmetric", "tf", "keras")
#: How an evaluation image becomes the model's input. "tf": TF-slim's inception preprocessing, with
#: which Google's weights were evaluated: keep the central ``crop_pct`` of the height and of the
#: width, then resize to S x S (the aspect ratio is not kept). "torchvision": resize the short side
#: to S / ``crop_pct`` and take the central S x S square.
PREPROCESSES: tuple[str, ...] = ("tf", "torchvision")
INTERPOLATIONS: tuple[str, ...] = ("bilinear", "bicubic")

#: Smallest input side we accept. The net downsamples by 32; below that the last stages would see
#: 1x1 maps made mostly of padding, which is never what a user meant.
MIN_RESOLUTION = 32
#: Smallest central crop. The torchvision preprocessing resizes the short side to S / crop before
#: cropping, so crop=1e-6 asked for a 32-million-pixel side (a MemoryError, or a machine brought down).
MIN_CROP_PCT = 0.05
#: Widths above this are almost certainly a typo (α=100 instead of 1.00); timm publishes 1.25.
MAX_WIDTH_MULT = 4.0


@dataclass(frozen=True)
class ConvDef:
    """One row group of Table 1: a full 3x3 conv or a depthwise separable pair."""

    kind: Literal["conv", "separable"]
    stride: int
    depth: int  # output channels at α = 1


# Table 1 of the paper, with the layer-26 typo corrected (stride 1, the map stays 7x7), in the
# same shape as TF-slim's MOBILENETV1_CONV_DEFS.
TABLE1: tuple[ConvDef, ...] = (
    ConvDef("conv", 2, 32),
    ConvDef("separable", 1, 64),
    ConvDef("separable", 2, 128),
    ConvDef("separable", 1, 128),
    ConvDef("separable", 2, 256),
    ConvDef("separable", 1, 256),
    ConvDef("separable", 2, 512),
    *(ConvDef("separable", 1, 512) for _ in range(5)),
    ConvDef("separable", 2, 1024),
    ConvDef("separable", 1, 1024),
)


def conv_defs(variant: str = "separable") -> tuple[ConvDef, ...]:
    """Table 1 transformed into one of the paper's ablation networks.

    - ``separable``: the paper's MobileNet.
    - ``conv``: Table 4's "Conv MobileNet": each dw/pw pair becomes one full 3x3 conv with the
      pair's stride and output width.
    - ``shallow``: Table 5's "Shallow MobileNet": the five 14x14x512 pairs (rows 14-23) removed.
    """
    _check_choice("variant", variant, VARIANTS)
    if variant == "conv":
        return tuple(ConvDef("conv", d.stride, d.depth) for d in TABLE1)
    if variant == "shallow":
        return tuple(d for d in TABLE1 if not (d.kind == "separable" and d.stride == 1 and d.depth == 512))
    return TABLE1


def scaled_depth(channels: int, width_mult: float, min_depth: int = 8) -> int:
    """TF-slim's width rule, ``max(int(c * α), min_depth)``: what Google's weights were built with."""
    return max(int(channels * width_mult), min_depth)


def output_size(size: int, stride: int, *, fixed_pad: bool = False) -> int:
    """Spatial size after a 3x3 (or 1x1) conv. TF 'SAME' and PyTorch ``padding=1`` agree on it;
    Keras' fixed (0, 1) pad before a strided depthwise conv (``fixed_pad``) rounds down instead."""
    return size // stride if fixed_pad else -(-size // stride)


@dataclass(frozen=True)
class Block:
    """A unit of the module tree: the stem conv, a full conv, or a dw/pw pair (``separable``)."""

    name: str
    kind: Literal["conv", "separable"]
    stride: int
    in_channels: int
    out_channels: int


@dataclass(frozen=True)
class Layer:
    """One weight layer as the paper counts them (conv, dw, pw or fc), with its module path."""

    name: str  # paper-style row name: conv1, dw2, pw2, ..., fc
    kind: Literal["conv", "dw", "pw", "fc"]
    module: str  # dotted path of the nn.Module that holds its weight
    stride: int
    kernel: int
    in_channels: int
    out_channels: int

    @property
    def groups(self) -> int:
        return self.in_channels if self.kind == "dw" else 1

    @property
    def weight_count(self) -> int:
        return self.kernel * self.kernel * (self.in_channels // self.groups) * self.out_channels


def _check_choice(name: str, value: object, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{name}={value!r} is not supported; choose one of {', '.join(map(repr, allowed))}")


def check_width_mult(width_mult: object) -> float:
    if isinstance(width_mult, bool) or not isinstance(width_mult, (int, float)):
        raise ValueError(f"width_mult={width_mult!r} must be a number in (0, {MAX_WIDTH_MULT}], e.g. 1.0, 0.75, 0.5, 0.25")
    if not math.isfinite(width_mult) or not 0 < width_mult <= MAX_WIDTH_MULT:
        raise ValueError(
            f"width_mult={width_mult!r} is out of range; it must be a finite number in (0, {MAX_WIDTH_MULT}] "
            "(the paper uses 1.0, 0.75, 0.5, 0.25)"
        )
    return float(width_mult)


#: Seeds go to random, numpy (which takes 32 bits), torch and scikit-learn (also 32 bits).
MAX_SEED = 2**32 - 1


def check_seed(seed: object, name: str = "seed") -> int:
    """A random seed: an integer in [0, 2**32 - 1], which every generator we seed accepts."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise ValueError(f"{name}={seed!r} must be a whole number from 0 to {MAX_SEED} (2**32 - 1)")
    return seed


def check_resolution(resolution: object, name: str = "resolution") -> tuple[int, int]:
    """Accepts an int or an (H, W) pair; returns (H, W) or raises a ValueError that says why."""
    pair = (resolution, resolution) if isinstance(resolution, int) and not isinstance(resolution, bool) else resolution
    ok = isinstance(pair, (tuple, list)) and len(pair) == 2 and all(isinstance(v, int) and not isinstance(v, bool) for v in pair)
    if not ok:
        raise ValueError(f"{name}={resolution!r} must be an int or a pair of ints (height, width), e.g. 224")
    h, w = pair  # type: ignore[misc]
    if h < MIN_RESOLUTION or w < MIN_RESOLUTION:
        raise ValueError(
            f"{name}={resolution!r} is too small: MobileNet v1 downsamples by 32, so each side must be at least "
            f"{MIN_RESOLUTION} px (the paper uses 224, 192, 160 and 128)"
        )
    return int(h), int(w)


def check_crop_pct(crop_pct: object, name: str = "crop_pct") -> float:
    """The central fraction of an image that evaluation keeps: a number in [:data:`MIN_CROP_PCT`, 1]."""
    if (
        isinstance(crop_pct, bool)
        or not isinstance(crop_pct, (int, float))
        or not math.isfinite(crop_pct)
        or not MIN_CROP_PCT <= crop_pct <= 1
    ):
        raise ValueError(
            f"{name}={crop_pct!r} must be a fraction in [{MIN_CROP_PCT}, 1]: the central part of the image to keep "
            "(0.875 is Google's and torchvision's; 1.0 keeps the whole image)"
        )
    return float(crop_pct)


def _check_positive_int(name: str, value: object, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name}={value!r} must be an integer >= {minimum}")
    return value


@dataclass(frozen=True)
class MobileNetConfig:
    """Everything needed to rebuild a MobileNetV1; travels with weights, checkpoints and exports."""

    width_mult: float = 1.0
    resolution: int = 224
    num_classes: int = 1000
    in_chans: int = 3
    activation: str = "relu"
    padding: str = "symmetric"
    variant: str = "separable"
    min_depth: int = 8
    dropout: float = 0.0
    bn_eps: float = 1e-3  # TF-slim's value; timm-imported weights carry 1e-5
    #: Name of the label set the classifier predicts ("imagenet1001" for Google's weights with the
    #: background class, "imagenet1000", "digits", or a user's own); None if unknown.
    labels: str | None = None
    #: Class names, when the weights carry their own (fine-tuned models); otherwise looked up by ``labels``.
    class_names: tuple[str, ...] | None = field(default=None, compare=False)
    #: The input pipeline the weights expect (see PREPROCESSES), and their normalization: pixels in
    #: [0, 1] become ``(x - mean) / std``. Google's weights want [-1, 1] (mean = std = 0.5), and so do
    #: timm's MobileNet v1 weights (their pretrained_cfg says 0.5; see mobilenet.weights.timm).
    preprocess: str = field(default="torchvision", compare=False)
    crop_pct: float = field(default=0.875, compare=False)
    mean: tuple[float, float, float] = field(default=(0.5, 0.5, 0.5), compare=False)
    std: tuple[float, float, float] = field(default=(0.5, 0.5, 0.5), compare=False)
    #: How the resize samples: "bilinear" (TF-slim, torchvision) or "bicubic" (timm's recipes).
    interpolation: str = field(default="bilinear", compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "width_mult", check_width_mult(self.width_mult))
        check_resolution(self.resolution)
        _check_positive_int("num_classes", self.num_classes, 0)
        _check_positive_int("in_chans", self.in_chans)
        _check_positive_int("min_depth", self.min_depth)
        _check_choice("activation", self.activation, ACTIVATIONS)
        _check_choice("padding", self.padding, PADDINGS)
        _check_choice("variant", self.variant, VARIANTS)
        if isinstance(self.dropout, bool) or not (isinstance(self.dropout, (int, float)) and 0.0 <= self.dropout < 1.0):
            raise ValueError(f"dropout={self.dropout!r} must be a probability in [0, 1)")
        # NaN fails every comparison and inf passes "> 0": both would make every BN output 0 or NaN.
        if isinstance(self.bn_eps, bool) or not (
            isinstance(self.bn_eps, (int, float)) and math.isfinite(self.bn_eps) and self.bn_eps > 0
        ):
            raise ValueError(f"bn_eps={self.bn_eps!r} must be a finite number > 0 (TF-slim uses 1e-3, PyTorch 1e-5)")
        _check_choice("preprocess", self.preprocess, PREPROCESSES)
        _check_choice("interpolation", self.interpolation, INTERPOLATIONS)
        check_crop_pct(self.crop_pct)
        for name in ("mean", "std"):
            value = getattr(self, name)
            if isinstance(value, (tuple, list)) and value and len(set(value)) == 1:
                value = (value[0],) * self.in_chans  # one value for every channel (in_chans != 3)
            ok = isinstance(value, (tuple, list)) and len(value) == self.in_chans
            ok = ok and all(isinstance(v, (int, float)) and math.isfinite(v) for v in value)
            if not ok or (name == "std" and min(value) <= 0):
                positive = ", all > 0" if name == "std" else ""
                raise ValueError(f"{name}={value!r} must be {self.in_chans} finite numbers (one per channel){positive}")
            object.__setattr__(self, name, tuple(float(v) for v in value))
        if self.class_names is not None:
            object.__setattr__(self, "class_names", tuple(self.class_names))
            if len(self.class_names) != self.num_classes:
                raise ValueError(f"class_names has {len(self.class_names)} entries but num_classes={self.num_classes}")

    def replace(self, **changes: Any) -> MobileNetConfig:
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        if d["class_names"] is not None:
            d["class_names"] = list(d["class_names"])
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MobileNetConfig:
        """Builds a config from a dict, ignoring keys it does not know (files written by newer versions)."""
        if not isinstance(data, dict):
            raise TypeError(f"a MobileNet config must be a dict of fields (a JSON object), not {type(data).__name__} {data!r}")
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    @property
    def num_features(self) -> int:
        """Width of the pooled features that feed the classifier (1024·α)."""
        return build_blocks(self)[-1].out_channels


def build_blocks(config: MobileNetConfig) -> list[Block]:
    """The module-level blocks of the network for a config: ``stem`` then ``blocks.0`` ... ``blocks.N``."""
    blocks: list[Block] = []
    in_ch = config.in_chans
    for i, d in enumerate(conv_defs(config.variant)):
        out_ch = scaled_depth(d.depth, config.width_mult, config.min_depth)
        name = "stem" if i == 0 else f"blocks.{i - 1}"
        blocks.append(Block(name, d.kind, d.stride, in_ch, out_ch))
        in_ch = out_ch
    return blocks


def build_layers(config: MobileNetConfig) -> list[Layer]:
    """Every weight layer in order, as the paper's Table 1 lists them (conv1, dw2/pw2, ..., fc)."""
    layers: list[Layer] = []
    row = 1
    for b in build_blocks(config):
        if b.kind == "separable":
            layers.append(Layer(f"dw{row}", "dw", f"{b.name}.dw.conv", b.stride, 3, b.in_channels, b.in_channels))
            layers.append(Layer(f"pw{row}", "pw", f"{b.name}.pw.conv", 1, 1, b.in_channels, b.out_channels))
            row += 1
        else:
            layers.append(Layer(f"conv{row}", "conv", f"{b.name}.conv", b.stride, 3, b.in_channels, b.out_channels))
            row += 1
    if config.num_classes > 0:
        layers.append(Layer("fc", "fc", "classifier", 1, 1, layers[-1].out_channels, config.num_classes))
    return layers


#: Config fields that may differ from the weights': neither shapes a tensor.
FREE_FIELDS = ("dropout", "resolution")


def reconcile(
    config: MobileNetConfig,
    given: dict[str, Any],
    *,
    source: str,
    flags: bool = False,
    free: tuple[str, ...] = FREE_FIELDS,
) -> MobileNetConfig:
    """The one place where what a caller asks for meets what the weights are (torchvision's
    ``_ovewrite_named_param``): ``config`` is the weights', ``given`` the caller's values (``None``
    means not given). A value of a ``free`` field replaces the weights'; any other must restate
    the weights' value, or a ``ValueError`` names both. ``flags``: the caller typed command-line
    flags (``--width-mult``), so the message names the flag; otherwise the argument.

    Model building (:meth:`MobileNetV1.from_state_dict`), training, export and bench all call it.
    """
    for key, value in given.items():
        have = getattr(config, key, None)
        if value is None or key in free or have is None or value == have:
            continue
        if flags:
            flag = "--" + key.replace("_", "-")
            raise ValueError(
                f"{flag} {value} contradicts {source}, whose network has {key}={have}; "
                f"the weights define the network: drop {flag} (or pass other weights)"
            )
        raise ValueError(
            f"{source} holds a model with {key}={have!r}, but {key}={value!r} was asked for; "
            "drop the argument, or fine-tune with a new classifier (mobilenet train --weights ...)"
        )
    return config.replace(**{k: v for k, v in given.items() if k in free and v is not None})
