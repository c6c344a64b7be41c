"""The MobileNet v1 network, built block by block from :mod:`mobilenet.spec`."""

from __future__ import annotations

import copy
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .checkpoint import WeightsFileError
from .spec import MIN_RESOLUTION, Block, MobileNetConfig, build_blocks, reconcile

__all__ = ["ConvBNAct", "DepthwiseSeparable", "FeatureExtractor", "MobileNetV1", "TFSamePad2d", "fold_batchnorm"]


class TFSamePad2d(nn.Module):
    """TensorFlow's 'SAME' padding for a strided conv, which depends on the input's parity.

    SAME pads ``max((ceil(n/s) - 1)·s + k - n, 0)`` in total, the smaller half before. For k=3, s=2
    that is (0, 1) on an even side and (1, 1) on an odd one; PyTorch's ``padding=1`` always pads
    (1, 1), so on even inputs it shifts the sampling grid by one pixel against Google's weights.
    """

    def __init__(self, kernel_size: int, stride: int) -> None:
        super().__init__()
        self.kernel_size = kernel_size
        self.stride = stride

    def _pads(self, size: int) -> tuple[int, int]:
        total = max((-(-size // self.stride) - 1) * self.stride + self.kernel_size - size, 0)
        return total // 2, total - total // 2

    def forward(self, x: Tensor) -> Tensor:
        top, bottom = self._pads(x.shape[-2])
        left, right = self._pads(x.shape[-1])
        return F.pad(x, (left, right, top, bottom))

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}"


def _activation(name: str) -> nn.Module:
    return nn.ReLU6(inplace=True) if name == "relu6" else nn.ReLU(inplace=True)


class ConvBNAct(nn.Sequential):
    """conv (no bias) → BN → activation, with TF 'SAME' padding as its own module when asked for."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int,
        *,
        groups: int = 1,
        config: MobileNetConfig,
    ) -> None:
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        padding = (kernel_size - 1) // 2
        # Only a strided conv needs the asymmetric pad: at stride 1, SAME with an odd kernel is the
        # symmetric (k-1)/2 on every input size.
        if config.padding == "keras" and stride > 1 and groups > 1:
            # keras.applications.MobileNet: ZeroPadding2D(((0, 1), (0, 1))) then a 'valid' conv.
            layers["pad"] = nn.ZeroPad2d((0, 1, 0, 1))
            padding = 0
        elif config.padding in ("tf", "keras") and stride > 1:
            layers["pad"] = TFSamePad2d(kernel_size, stride)
            padding = 0
        layers["conv"] = nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, groups=groups, bias=False)
        # TF-slim's BN decay 0.9997 is PyTorch momentum 0.0003; that suits long ImageNet runs but
        # leaves the running stats cold for short ones, so the trainer may set its own momentum.
        layers["bn"] = nn.BatchNorm2d(out_channels, eps=config.bn_eps)
        layers["act"] = _activation(config.activation)
        super().__init__(layers)


class DepthwiseSeparable(nn.Module):
    """3x3 depthwise conv → BN → act → 1x1 pointwise conv → BN → act (paper Figure 3)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, config: MobileNetConfig) -> None:
        super().__init__()
        self.dw = ConvBNAct(in_channels, in_channels, 3, stride, groups=in_channels, config=config)
        self.pw = ConvBNAct(in_channels, out_channels, 1, 1, config=config)

    def forward(self, x: Tensor) -> Tensor:
        return self.pw(self.dw(x))


def _make_block(block: Block, config: MobileNetConfig) -> nn.Module:
    if block.kind == "separable":
        return DepthwiseSeparable(block.in_channels, block.out_channels, block.stride, config)
    return ConvBNAct(block.in_channels, block.out_channels, 3, block.stride, config=config)


def _check_values(state: Mapping[str, Any], own: Mapping[str, Tensor], source: str) -> None:
    """Refuses tensors that ``load_state_dict`` would take silently and wrongly: integer (or bool)
    values for float parameters, which it would cast (quantized weights without their scales), and
    NaN or infinite values, which make every output NaN."""
    for key, mine in own.items():
        value = state.get(key)
        if not isinstance(value, Tensor):
            if key in state:
                raise WeightsFileError(f"{source}: {key} is a {type(value).__name__}, not a tensor")
            continue
        if mine.is_floating_point() and not value.is_floating_point():
            raise WeightsFileError(
                f"{source}: {key} holds {str(value.dtype).replace('torch.', '')} values where the model has "
                f"{str(mine.dtype).replace('torch.', '')}; integer weights (quantized ones without their scales?) "
                "would be cast, not dequantized. Load the float weights, or a .tflite through mobilenet convert"
            )
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            bad = int((~torch.isfinite(value)).sum())
            raise WeightsFileError(
                f"{source}: {key} holds {bad} NaN or infinite value(s), so every output would be NaN (a training run "
                "that diverged?); use other weights, e.g. the run's best.safetensors from before it diverged"
            )
        if key.endswith("running_var") and value.is_floating_point() and bool((value < 0).any()):
            bad = int((value < 0).sum())
            raise WeightsFileError(
                f"{source}: {key} holds {bad} negative value(s); a variance is never negative, and in eval mode its "
                "square root makes every output NaN. The file is damaged; use other weights"
            )


class MobileNetV1(nn.Module):
    """MobileNet v1 (Howard et al., 2017), Table 1, for any width multiplier α and input size.

    The resolution multiplier ρ is the input size itself: the network is fully convolutional up
    to a global average pool, so any input of at least 32x32 works, square or not.

    Module tree: ``stem`` (full 3x3 conv, stride 2), ``blocks`` (13 depthwise separable pairs for
    the paper's net), ``global_pool``, ``dropout``, ``classifier`` (the FC layer).
    """

    def __init__(self, config: MobileNetConfig | None = None, **kwargs: Any) -> None:
        super().__init__()
        if config is None:
            config = MobileNetConfig(**kwargs)
        elif not isinstance(config, MobileNetConfig):
            raise TypeError(
                f"config must be a MobileNetConfig, not {type(config).__name__} {config!r}; for a dict of fields use "
                "MobileNetConfig.from_dict(...) or MobileNetV1(**fields)"
            )
        elif kwargs:
            config = config.replace(**kwargs)
        self.config = config
        spec = build_blocks(config)
        self.stem = _make_block(spec[0], config)
        self.blocks = nn.Sequential(*(_make_block(b, config) for b in spec[1:]))
        self.num_features = spec[-1].out_channels
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(config.dropout)
        self.classifier: nn.Module = nn.Linear(self.num_features, config.num_classes) if config.num_classes > 0 else nn.Identity()
        # Where each downsampling stage ends, for detection/segmentation backbones (timm style).
        self.feature_info: list[dict[str, Any]] = []
        reduction = spec[0].stride
        for i, b in enumerate(spec[1:]):
            is_last_at_stride = i + 1 == len(spec) - 1 or spec[i + 2].stride > 1
            reduction *= b.stride
            if is_last_at_stride:
                self.feature_info.append({"num_chs": b.out_channels, "reduction": reduction, "module": f"blocks.{i}", "index": i})
        self._init_weights()

    @classmethod
    def from_state_dict(
        cls,
        state: Mapping[str, Tensor],
        config: MobileNetConfig,
        *,
        source: str = "state dict",
        overrides: Mapping[str, Any] | None = None,
    ) -> MobileNetV1:
        """The model for ``config`` holding ``state``, in eval mode; what every importer's
        ``(state, config)`` becomes.

        ``overrides`` (a caller's builder arguments) may restate the config or change ``dropout`` and
        ``resolution``; any other difference raises a ``ValueError`` naming both values, and a
        state that does not fit raises a :class:`~mobilenet.checkpoint.WeightsFileError` naming the
        first tensors that differ. ``source`` (a file name) goes into both messages.
        """
        config = reconcile(config, dict(overrides or {}), source=source)
        model = cls(config)
        own = model.state_dict()
        _check_values(state, own, source)
        mismatched = [k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
        missing = [k for k in own if k not in state]
        if mismatched or missing:
            detail = "; ".join(
                [f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}" for k in mismatched[:3]]
                + [f"missing {k}" for k in missing[:3]]
            )
            raise WeightsFileError(
                f"{source} does not fit MobileNet v1 with {config.width_mult=}, {config.num_classes=}: {detail}"
            )
        model.load_state_dict({k: state[k] for k in own})
        return model.eval()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    @property
    def num_classes(self) -> int:
        return self.config.num_classes

    def _check_input(self, x: Tensor) -> None:
        if torch.jit.is_tracing() or torch.jit.is_scripting():
            return
        if not isinstance(x, Tensor):
            raise TypeError(
                f"MobileNetV1 expects a torch.Tensor of shape (N, {self.config.in_chans}, H, W), got {type(x).__name__}"
            )
        if x.dim() != 4:
            raise ValueError(
                f"input has shape {tuple(x.shape)} (rank {x.dim()}); MobileNetV1 expects a batch of images of shape "
                f"(N, {self.config.in_chans}, H, W). For one image use x.unsqueeze(0)."
            )
        if x.shape[1] != self.config.in_chans:
            hint = " (channels-last data? use x.permute(0, 3, 1, 2))" if x.shape[-1] == self.config.in_chans else ""
            raise ValueError(
                f"input has {x.shape[1]} channels (shape {tuple(x.shape)}) but the model was built with "
                f"in_chans={self.config.in_chans}{hint}"
            )
        if x.shape[2] < MIN_RESOLUTION or x.shape[3] < MIN_RESOLUTION:
            raise ValueError(
                f"input of {x.shape[2]}x{x.shape[3]} px is too small; each side must be at least {MIN_RESOLUTION} px"
            )

    def forward_features(self, x: Tensor) -> Tensor:
        """Image batch → the last feature map, (N, 1024·α, H/32, W/32)."""
        self._check_input(x)
        return self.blocks(self.stem(x))

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        """Feature map → logits, or the pooled features (N, 1024·α) with ``pre_logits=True``."""
        x = self.dropout(torch.flatten(self.global_pool(x), 1))
        return x if pre_logits else self.classifier(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))

    def forward_intermediates(self, x: Tensor, reductions: tuple[int, ...] = (8, 16, 32)) -> list[Tensor]:
        """Feature maps at the given output strides (of 2, 4, 8, 16, 32), shallowest first."""
        wanted = {f["index"] for f in self.feature_infos_for(reductions)}
        self._check_input(x)
        x = self.stem(x)
        out = []
        last = max(wanted)
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i in wanted:
                out.append(x)
            if i == last:
                break
        return out

    def feature_infos_for(self, reductions: tuple[int, ...]) -> list[dict[str, Any]]:
        """The ``feature_info`` entries for the given output strides, or a ValueError naming what exists."""
        found = [f for f in self.feature_info if f["reduction"] in reductions]
        missing = set(reductions) - {f["reduction"] for f in found}
        if missing or not reductions:
            available = sorted(f["reduction"] for f in self.feature_info)
            raise ValueError(f"reductions={tuple(reductions)!r}: {sorted(missing)} not available; choose from {available}")
        return found

    def reset_classifier(self, num_classes: int) -> None:
        """Replaces the FC layer with a freshly initialized one (0 removes it: the model returns features)."""
        self.config = self.config.replace(num_classes=num_classes, class_names=None, labels=None)
        self.classifier = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()
        if num_classes > 0:
            nn.init.normal_(self.classifier.weight, 0, 0.01)  # type: ignore[arg-type]
            nn.init.zeros_(self.classifier.bias)  # type: ignore[arg-type]

    def get_classifier(self) -> nn.Module:
        return self.classifier


class FeatureExtractor(nn.Module):
    """``mobilenet_v1(features_only=True)``: returns the feature maps at strides 8, 16 and 32."""

    def __init__(self, model: MobileNetV1, reductions: tuple[int, ...] = (8, 16, 32)) -> None:
        super().__init__()
        self.model = model
        self.reductions = tuple(reductions)
        self.feature_info = model.feature_infos_for(self.reductions)

    def forward(self, x: Tensor) -> list[Tensor]:
        return self.model.forward_intermediates(x, self.reductions)


def fold_batchnorm(model: MobileNetV1) -> MobileNetV1:
    """A copy of ``model`` (in eval mode) with each BN folded into the conv before it.

    ``w' = w·γ/√(σ²+ε)`` and ``b' = β − μ·γ/√(σ²+ε)``: the same function, one pass over memory
    fewer per layer. The copy has the same module tree with each ``bn`` an ``Identity``.
    """
    folded = copy.deepcopy(model).eval()
    for module in folded.modules():
        if isinstance(module, ConvBNAct) and isinstance(module.bn, nn.BatchNorm2d):
            module.conv = torch.nn.utils.fusion.fuse_conv_bn_eval(module.conv, module.bn)
            module.bn = nn.Identity()
    for p in folded.parameters():
        p.requires_grad_(False)
    return folded
