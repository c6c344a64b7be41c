"""timm ``mobilenetv1_*`` state dicts → ours.

timm's MobileNetV1 (``mobilenetv1_100``, ``_125`` ...) is Table 1 with ReLU6, PyTorch's symmetric
padding and BN eps 1e-5. Its tensors come in the same order as ours: ``conv_stem``/``bn1``, then
per block ``conv_dw``/``bn1``/``conv_pw``/``bn2``, then ``classifier``. timm rounds widths to
multiples of 8 where TF-slim truncates; for α in {0.25, 0.5, 0.75, 1, 1.25} the two agree, and a
width where they differ is refused with a clear error rather than loaded wrongly.

Files: a ``torch.save`` checkpoint (``.pth``, read with ``weights_only=True``) or timm's
``model.safetensors`` as the Hugging Face hub serves it. Neither says which pretrained tag it came
from, so the config gets timm's common evaluation settings (resize and centre crop at
``crop_pct`` 0.875, mean and std 0.5); a registry entry replaces them with its tag's own.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from ..checkpoint import WeightsFileError, torch_load_error
from ..spec import MobileNetConfig, build_layers

__all__ = ["convert_timm_state_dict", "is_timm_state_dict", "load_timm_state_dict"]

_BLOCK = re.compile(r"^blocks\.(\d+)\.(\d+)\.(conv_dw|bn1|conv_pw|bn2)\.(.+)$")


def is_timm_state_dict(state: dict[str, Any]) -> bool:
    """Whether ``state`` has timm MobileNetV1's key layout (not whether its shapes fit)."""
    return "conv_stem.weight" in state and any(_BLOCK.match(k) for k in state)


def convert_timm_state_dict(
    state: dict[str, torch.Tensor], source: str = "timm state dict"
) -> tuple[dict[str, torch.Tensor], MobileNetConfig]:
    if not is_timm_state_dict(state):
        raise WeightsFileError(f"{source}: not a timm MobileNetV1 state dict (no conv_stem / blocks.*.*.conv_dw)")
    stages = sorted({(int(m[1]), int(m[2])) for k in state if (m := _BLOCK.match(k))})
    index = {stage: i for i, stage in enumerate(stages)}
    last_pw = state[f"blocks.{stages[-1][0]}.{stages[-1][1]}.conv_pw.weight"]
    num_classes = int(state["classifier.weight"].shape[0]) if "classifier.weight" in state else 0
    config = MobileNetConfig(
        width_mult=last_pw.shape[0] / 1024,
        resolution=224,
        num_classes=num_classes,
        activation="relu6",
        padding="symmetric",
        bn_eps=1e-5,
        labels="imagenet1000" if num_classes == 1000 else None,
        preprocess="torchvision",
        crop_pct=0.875,
        mean=(0.5, 0.5, 0.5),
        std=(0.5, 0.5, 0.5),
    )
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key.startswith("conv_stem."):
            out["stem.conv." + key.split(".", 1)[1]] = value
        elif key.startswith("bn1."):
            out["stem.bn." + key.split(".", 1)[1]] = value
        elif key.startswith("classifier."):
            out[key] = value
        elif m := _BLOCK.match(key):
            part = {"conv_dw": "dw.conv", "bn1": "dw.bn", "conv_pw": "pw.conv", "bn2": "pw.bn"}[m[3]]
            out[f"blocks.{index[(int(m[1]), int(m[2]))]}.{part}.{m[4]}"] = value
    expected = {layer.module + ".weight": layer for layer in build_layers(config)}
    for key, layer in expected.items():
        if key not in out:
            raise WeightsFileError(f"{source}: has no tensor for layer {layer.name} ({key}); not MobileNet v1's Table 1")
        if out[key].shape[0] != layer.out_channels:
            raise WeightsFileError(
                f"{source}: layer {layer.name} has {out[key].shape[0]} channels where α={config.width_mult:g} gives "
                f"{layer.out_channels} (timm rounds widths to multiples of 8; this width is not TF-slim's)"
            )
    return out, config


def load_timm_state_dict(path: str | os.PathLike[str] | dict[str, Any]) -> tuple[dict[str, torch.Tensor], MobileNetConfig]:
    """A timm checkpoint file (``.safetensors``, or ``torch.save`` read with ``weights_only=True``)
    or an in-memory state dict."""
    if isinstance(path, dict):
        return convert_timm_state_dict(path)
    path = Path(path)
    if path.suffix.lower() == ".safetensors":
        try:
            return convert_timm_state_dict(load_file(str(path)), str(path))
        except (SafetensorError, OSError) as exc:
            raise WeightsFileError(f"{path}: not a readable safetensors file ({exc})") from None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise torch_load_error(path, exc, "PyTorch state dict") from None
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise WeightsFileError(f"{path}: holds a {type(state).__name__}, not a state dict")
    return convert_timm_state_dict(state, str(path))
