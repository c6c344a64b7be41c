"""The one loader: any weights we can read → a :class:`~mobilenet.model.MobileNetV1`.

It sits above the registry (which only finds files) and the importers (which turn a file into
``(state, config)``), and below the builder, :func:`mobilenet.mobilenet_v1`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..checkpoint import WeightsFileError, load_weights_file, save_weights
from ..model import MobileNetV1
from ..spec import MobileNetConfig
from .keras import load_keras_h5
from .registry import Weights, get_weights
from .tflite import load_tflite
from .timm import convert_timm_state_dict, is_timm_state_dict, load_timm_state_dict

__all__ = ["load_weights", "read_weights"]

PathLike = str | os.PathLike[str]


def read_weights(paths: Sequence[PathLike]) -> tuple[dict[str, Any], MobileNetConfig]:
    """Local weights file(s) → ``(state, config)``, dispatching on what the file is."""
    first = Path(paths[0])
    suffix = first.suffix.lower()
    if not first.exists():
        raise FileNotFoundError(f"weights file {str(first)!r} does not exist")
    if suffix == ".safetensors":
        state, config, _ = load_weights_file(first)
        if config is not None:
            return state, config
        if is_timm_state_dict(state):  # e.g. timm's model.safetensors from the Hugging Face hub
            return convert_timm_state_dict(state, str(first))
        raise WeightsFileError(
            f"{first} has no mobilenet_config metadata and is not a timm MobileNetV1 state dict, so its α and "
            "class count are unknown; write it with mobilenet.checkpoint.save_weights or mobilenet convert"
        )
    if suffix == ".tflite":
        return load_tflite(paths)
    if suffix in (".h5", ".hdf5"):
        return load_keras_h5(first)
    if suffix == ".keras":
        raise ValueError(f"{first}: a .keras archive; save the weights as .h5 (model.save_weights('x.weights.h5')) and load that")
    if suffix in (".pth", ".pt", ".bin"):
        return load_timm_state_dict(first)
    raise ValueError(
        f"weights={str(first)!r}: unknown file type {suffix!r}; use .safetensors (ours or timm's), .tflite, .h5 or a timm .pth"
    )


def _converted_path(local: Path) -> Path:
    """Where a registry file's converted copy (our safetensors, config included) is cached."""
    converted = local.with_suffix(".safetensors")
    return converted if converted != local else local.with_name(local.stem + ".mobilenet.safetensors")


def _load_entry(entry: Weights, *, progress: bool, overrides: Mapping[str, Any]) -> MobileNetV1:
    """Fetches a registry entry's files, converts them once into our format, and loads that."""
    local = entry.fetch(progress=progress)
    converted = _converted_path(local[0])
    if not converted.exists():
        state, config = read_weights(local)
        save_weights(
            converted,
            MobileNetV1.from_state_dict(state, config, source=str(local[0])),
            source=" + ".join(f.url for f in entry.files),
        )
    state, config = read_weights([converted])
    # A file cannot say how its publisher evaluated it (timm's importer, say, cannot tell one tag
    # from another); the entry can.
    c = entry.config
    config = config.replace(preprocess=c.preprocess, crop_pct=c.crop_pct, mean=c.mean, std=c.std)
    return MobileNetV1.from_state_dict(state, config, source=str(converted), overrides=overrides)


def load_weights(weights: Any, *, progress: bool = True, **kwargs: Any) -> MobileNetV1:
    """Builds a MobileNetV1 from weights: a ``MobileNet_V1_Weights`` member or its name, or local
    file(s). ``kwargs`` may only restate or refine the weights' config (see
    :meth:`MobileNetV1.from_state_dict`)."""
    if isinstance(weights, (list, tuple)) and weights and all(isinstance(w, (str, os.PathLike)) for w in weights):
        paths: Sequence[PathLike] = list(weights)
    elif isinstance(weights, (str, os.PathLike)) and (Path(weights).suffix or os.sep in str(weights)):
        paths = [weights]
    else:
        return _load_entry(get_weights(weights), progress=progress, overrides=kwargs)
    state, config = read_weights(paths)
    return MobileNetV1.from_state_dict(state, config, source=str(paths[0]), overrides=kwargs)
