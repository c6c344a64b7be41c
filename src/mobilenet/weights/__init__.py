"""Weights: the registry of Google's published checkpoints, importers and the one loader.

``load_weights`` accepts a registry member or its name, or a local file: ``.safetensors`` (ours),
``.tflite`` (Google's TF Lite models; two files, extractor and head, as a tuple), ``.h5`` (Keras).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from torch import nn

from ..checkpoint import WeightsFileError, load_weights_file
from ..model import MobileNetV1
from ..spec import MobileNetConfig

__all__ = ["MobileNet_V1_Weights", "WeightsFileError", "load_weights", "model_from_state_dict"]


def __getattr__(name: str) -> Any:
    if name == "MobileNet_V1_Weights":
        from .registry import MobileNet_V1_Weights

        return MobileNet_V1_Weights
    raise AttributeError(name)


def model_from_state_dict(
    state: dict[str, Any], config: MobileNetConfig, source: str, strict_overrides: dict[str, Any] | None = None
) -> MobileNetV1:
    """Builds a model for ``config`` and loads ``state``, with an error that names what differs."""
    overrides = dict(strict_overrides or {})
    for key, value in overrides.items():
        if key in ("dropout", "resolution"):
            continue
        have = getattr(config, key, None)
        if have is not None and value != have:
            raise ValueError(
                f"{source} holds a model with {key}={have!r}, but {key}={value!r} was asked for; "
                f"drop the argument, or fine-tune with a new classifier (mobilenet train --weights ...)"
            )
    config = config.replace(**{k: v for k, v in overrides.items() if k in ("dropout", "resolution")})
    model = MobileNetV1(config)
    own = model.state_dict()
    mismatched = [k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    missing = [k for k in own if k not in state]
    if mismatched or missing:
        detail = "; ".join(
            [f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}" for k in mismatched[:3]]
            + [f"missing {k}" for k in missing[:3]]
        )
        raise WeightsFileError(f"{source} does not fit MobileNet v1 with {config.width_mult=}, {config.num_classes=}: {detail}")
    model.load_state_dict({k: state[k] for k in own})
    return model.eval()


def load_weights(weights: Any, *, progress: bool = True, **kwargs: Any) -> nn.Module:
    """Builds a MobileNetV1 from weights; ``kwargs`` may only restate or refine the weights' config."""
    if isinstance(weights, (list, tuple)) and weights and all(isinstance(w, (str, os.PathLike)) for w in weights):
        paths: Sequence[str | os.PathLike[str]] = list(weights)
    elif isinstance(weights, (str, os.PathLike)) and (Path(weights).suffix or os.sep in str(weights)):
        paths = [weights]
    else:
        from .registry import get_weights

        entry = get_weights(weights)
        return entry.build(progress=progress, **kwargs)
    first = Path(paths[0])
    suffix = first.suffix.lower()
    if not first.exists():
        raise FileNotFoundError(f"weights file {str(first)!r} does not exist")
    if suffix == ".safetensors":
        state, config, _ = load_weights_file(first)
        if config is None:
            raise WeightsFileError(
                f"{first} has no mobilenet_config metadata, so its α and class count are unknown; "
                "write it with mobilenet.checkpoint.save_weights or mobilenet convert"
            )
        return model_from_state_dict(state, config, str(first), kwargs)
    if suffix == ".tflite":
        from .tflite import load_tflite

        state, config = load_tflite(paths)
        return model_from_state_dict(state, config, str(first), kwargs)
    if suffix in (".h5", ".hdf5"):
        from .keras import load_keras_h5

        state, config = load_keras_h5(first)
        return model_from_state_dict(state, config, str(first), kwargs)
    if suffix == ".keras":
        raise ValueError(f"{first}: a .keras archive; save the weights as .h5 (model.save_weights('x.weights.h5')) and load that")
    if suffix in (".pth", ".pt", ".bin"):
        from .timm import load_timm_state_dict

        state, config = load_timm_state_dict(first)
        return model_from_state_dict(state, config, str(first), kwargs)
    raise ValueError(f"weights={str(first)!r}: unknown file type {suffix!r}; use .safetensors, .tflite, .h5 or a timm .pth")
