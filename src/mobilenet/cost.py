"""Mult-Adds and parameters under the paper's convention, walked from the same spec as the model.

Convention (the paper's, and TF-slim's): count the multiply-adds of convolutions and the fully
connected layer, and as parameters only their weights (no biases, no batch norm). Pooling, BN and
activations are free. A stride-s conv is charged for its output pixels, ``ceil(H / s)``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from .spec import Layer, MobileNetConfig, build_layers, check_resolution, output_size

__all__ = [
    "CostReport",
    "LayerCost",
    "model_cost",
    "separable_conv_cost",
    "separable_cost_ratio",
    "standard_conv_cost",
]


@dataclass(frozen=True)
class LayerCost:
    name: str
    kind: str
    stride: int
    filter_shape: tuple[int, ...]  # as Table 1 prints it: (k, k, in, out), (k, k, ch) for dw, (in, out) for fc
    input_shape: tuple[int, int, int]  # (H, W, C)
    output_shape: tuple[int, int, int]
    mult_adds: int
    params: int


@dataclass(frozen=True)
class CostReport:
    config: MobileNetConfig
    resolution: tuple[int, int]
    layers: tuple[LayerCost, ...]

    @property
    def mult_adds(self) -> int:
        return sum(r.mult_adds for r in self.layers)

    @property
    def params(self) -> int:
        return sum(r.params for r in self.layers)

    def by_kind(self) -> dict[str, tuple[int, int]]:
        """(Mult-Adds, params) summed per layer type, in Table 2's order of types."""
        out: dict[str, tuple[int, int]] = {}
        for r in self.layers:
            m, p = out.get(r.kind, (0, 0))
            out[r.kind] = (m + r.mult_adds, p + r.params)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "width_mult": self.config.width_mult,
            "resolution": list(self.resolution),
            "num_classes": self.config.num_classes,
            "variant": self.config.variant,
            "min_depth": self.config.min_depth,
            "mult_adds": self.mult_adds,
            "params": self.params,
            "layers": [asdict(r) for r in self.layers],
        }

    def format_table(self, per_layer: bool = True) -> str:
        lines = []
        h, w = self.resolution
        head = (
            f"MobileNet v1 ({self.config.variant}) α={self.config.width_mult:g} input {h}x{w}x{self.config.in_chans}, "
            f"{self.config.num_classes} classes"
        )
        lines.append(head)
        if per_layer:
            lines.append(f"{'layer':<6} {'type/stride':<12} {'filter shape':<18} {'input':<14} {'Mult-Adds':>13} {'params':>11}")
            for r in self.layers:
                kind = {"conv": "Conv", "dw": "Conv dw", "pw": "Conv", "fc": "FC"}[r.kind]
                lines.append(
                    f"{r.name:<6} {f'{kind} / s{r.stride}':<12} {'x'.join(map(str, r.filter_shape)):<18} "
                    f"{'x'.join(map(str, r.input_shape)):<14} {r.mult_adds:>13,} {r.params:>11,}"
                )
        lines.append(
            f"total Mult-Adds {self.mult_adds:,} ({self.mult_adds / 1e6:.1f} M), params {self.params:,} ({self.params / 1e6:.2f} M)"
        )
        return "\n".join(lines)


def _filter_shape(layer: Layer) -> tuple[int, ...]:
    if layer.kind == "fc":
        return (layer.in_channels, layer.out_channels)
    if layer.kind == "dw":
        return (layer.kernel, layer.kernel, layer.in_channels)
    return (layer.kernel, layer.kernel, layer.in_channels, layer.out_channels)


def model_cost(
    config: MobileNetConfig | None = None, resolution: int | tuple[int, int] | None = None, **kwargs: Any
) -> CostReport:
    """Per-layer and total Mult-Adds and params for any α, resolution, class count and variant.

    >>> model_cost(width_mult=1.0, resolution=224).mult_adds
    568740352
    """
    if config is None:
        config = MobileNetConfig(**({"resolution": resolution} if isinstance(resolution, int) else {}), **kwargs)
    elif kwargs:
        config = config.replace(**kwargs)
    h, w = check_resolution(config.resolution if resolution is None else resolution)
    rows = []
    for layer in build_layers(config):
        if layer.kind == "fc":
            # The global average pool leaves a 1x1 map.
            h = w = 1
        fixed = config.padding == "keras" and layer.kind == "dw"
        oh, ow = output_size(h, layer.stride, fixed_pad=fixed), output_size(w, layer.stride, fixed_pad=fixed)
        macs = layer.weight_count * oh * ow
        rows.append(
            LayerCost(
                layer.name,
                layer.kind,
                layer.stride,
                _filter_shape(layer),
                (h, w, layer.in_channels),
                (oh, ow, layer.out_channels),
                macs,
                layer.weight_count,
            )
        )
        h, w = oh, ow
    return CostReport(config, check_resolution(config.resolution if resolution is None else resolution), tuple(rows))


def standard_conv_cost(kernel: int, in_channels: int, out_channels: int, size: int) -> tuple[int, int]:
    """(Mult-Adds, params) of a standard conv: D_K·D_K·M·N·D_F·D_F and D_K·D_K·M·N (paper eq. 2)."""
    params = kernel * kernel * in_channels * out_channels
    return params * size * size, params


def separable_conv_cost(kernel: int, in_channels: int, out_channels: int, size: int) -> tuple[int, int]:
    """(Mult-Adds, params) of depthwise + pointwise: D_K·D_K·M·D_F² + M·N·D_F² (paper eq. 5)."""
    params = kernel * kernel * in_channels + in_channels * out_channels
    return params * size * size, params


def separable_cost_ratio(kernel: int, out_channels: int) -> float:
    """Depthwise separable over standard cost: 1/N + 1/D_K² (independent of M and D_F)."""
    return 1.0 / out_channels + 1.0 / (kernel * kernel)
