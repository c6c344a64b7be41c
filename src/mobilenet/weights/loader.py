"""The one loader: any weights we can read → a :class:`~mobilenet.model.MobileNetV1`.

It sits above the registry (which only finds files) and the importers (which turn a file into
``(state, config)``), and below the builder, :func:`mobilenet.mobilenet_v1`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..checkpoint import save_weights
from ..formats import FORMATS, check_model_file, file_kind, format_of
from ..model import MobileNetV1
from ..spec import MobileNetConfig
from .registry import Weights, get_weights
from .tflite import check_split_pair

__all__ = ["check_model_file", "file_kind", "load_weights", "read_weights"]

PathLike = str | os.PathLike[str]


def _check_pair(paths: Sequence[PathLike]) -> None:
    """Two files are only a format's split model (Google's TF Lite extractor and head)."""
    if len(paths) == 1:
        return
    names = ", ".join(str(p) for p in paths)
    formats = {format_of(p) for p in paths}
    fmt = formats.pop() if len(formats) == 1 else None
    if len(paths) > 2 or fmt is None or not fmt.pairs:
        raise ValueError(
            f"weights: got {len(paths)} files ({names}); more than one file is only for Google's split TF Lite "
            "model (the embedding_extractor and the head_layers files); pass one weights file"
        )
    check_split_pair(paths)


def read_weights(paths: Sequence[PathLike]) -> tuple[dict[str, Any], MobileNetConfig]:
    """Local weights file(s) → ``(state, config)``, read as the format table says."""
    for p in paths:
        check_model_file(p)
    _check_pair(paths)
    first = Path(paths[0])
    fmt = format_of(first)
    if fmt is not None and fmt.read_weights is not None:
        return fmt.read_weights([Path(p) for p in paths])
    suffix = first.suffix.lower()
    if suffix == ".keras":
        raise ValueError(f"{first}: a .keras archive; save the weights as .h5 (model.save_weights('x.weights.h5')) and load that")
    if fmt is not None:
        runs = "mobilenet.deploy.load_exported runs it" + (" (as do `mobilenet predict` and `eval`)" if fmt.read_config else "")
        raise ValueError(
            f"weights={str(first)!r}: an exported {suffix} model cannot be loaded back as PyTorch weights; {runs}. "
            "For weights, use the .safetensors it was exported from"
        )
    readable = ", ".join(f.suffixes[0] for f in FORMATS.values() if f.read_weights is not None)
    raise ValueError(
        f"weights={str(first)!r}: unknown file type {suffix!r}; use one of {readable} (ours, Google's, Keras' or timm's)"
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
    config = config.replace(preprocess=c.preprocess, crop_pct=c.crop_pct, mean=c.mean, std=c.std, interpolation=c.interpolation)
    return MobileNetV1.from_state_dict(state, config, source=str(converted), overrides=overrides)


def load_weights(weights: Any, *, progress: bool = True, **kwargs: Any) -> MobileNetV1:
    """Builds a MobileNetV1 from weights: a ``MobileNet_V1_Weights`` member or its name, or local
    file(s). ``kwargs`` may only restate or refine the weights' config (see
    :meth:`MobileNetV1.from_state_dict`)."""
    if isinstance(weights, (list, tuple)) and weights and all(isinstance(w, (str, os.PathLike)) for w in weights):
        paths: Sequence[PathLike] = list(weights)
    elif isinstance(weights, str) and not weights.strip():  # Path("") would be the current folder
        raise ValueError("weights='' is an empty string; pass a file path or a registry name such as KERAS_1_0_224")
    elif isinstance(weights, (str, os.PathLike)) and (Path(weights).suffix or os.sep in str(weights) or Path(weights).exists()):
        paths = [weights]
    else:
        return _load_entry(get_weights(weights), progress=progress, overrides=kwargs)
    state, config = read_weights(paths)
    return MobileNetV1.from_state_dict(state, config, source=str(paths[0]), overrides=kwargs)
