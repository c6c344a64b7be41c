"""Detector weights on disk: our safetensors (config in the metadata) and TF Lite SSD files.

A detector's safetensors file holds its :class:`DetectorConfig` as JSON under
``mobilenet_detector_config``, beside the tensors, as a classifier's holds ``mobilenet_config``;
so ``ssd_mobilenet_v1(weights="det.safetensors")`` rebuilds the model, its anchors, its
post-processing, its class names and its preprocessing with no flags.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from ..checkpoint import CONFIG_KEY, DETECTOR_CONFIG_KEY, WeightsFileError, atomic_write, weights_metadata
from ..extras import MissingDependency, require
from ..formats import check_model_file, format_of
from .model import SSDMobileNetV1
from .spec import DetectorConfig
from .tflite_import import is_tflite_detector, load_detector_tflite

__all__ = ["is_detector", "load_detector", "read_detector", "save_detector"]

PathLike = str | os.PathLike[str]


def save_detector(path: PathLike, model: SSDMobileNetV1, **metadata: str) -> Path:
    """Writes the detector's weights and config to a safetensors file (atomically)."""
    from safetensors.torch import save_file

    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    meta = {DETECTOR_CONFIG_KEY: json.dumps(model.config.to_dict()), "format": "pt", **{k: str(v) for k, v in metadata.items()}}
    return atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=meta))


def _paths(weights: Any) -> list[Path]:
    if isinstance(weights, (str, os.PathLike)):
        return [Path(weights)]
    if isinstance(weights, Sequence) and len(weights) == 1 and isinstance(weights[0], (str, os.PathLike)):
        return [Path(weights[0])]
    raise ValueError(f"weights={weights!r}: a detector is one file (a .safetensors of ours or a TF Lite SSD .tflite)")


def _format_name(path: Path) -> str | None:
    """The name of the format (:data:`mobilenet.formats.FORMATS`) that ``path``'s suffix says, or None."""
    fmt = format_of(path)
    return fmt.name if fmt is not None else None


def is_detector(weights: Any) -> bool:
    """Whether ``weights`` (a path, or a list of one) is a detector: our safetensors with a detector
    config, a .tflite ending in TF Lite's detection post-processing, or an .onnx/.pte we exported
    from a detector. Unreadable files are not (their readers say what is wrong with them)."""
    try:
        (path,) = _paths(weights)
    except ValueError:
        return False
    if not path.is_file():
        return False
    kind = _format_name(path)
    try:
        if kind == "safetensors":
            return DETECTOR_CONFIG_KEY in weights_metadata(path)
        if kind == "tflite":
            return is_tflite_detector(path)
        return exported_detector_config(path) is not None
    except MissingDependency:  # a runtime to install is worth saying, whatever the file holds
        raise
    except Exception:  # protobuf and ExecuTorch raise their own kinds on a corrupt file
        return False


def exported_detector_config(path: PathLike) -> str | None:
    """The detector config (JSON) an exported ``.onnx`` or ``.pte`` of ours carries, or None."""
    path, kind = Path(path), _format_name(Path(path))
    if kind == "onnx":
        require("onnx", purpose="reading an .onnx file")
        import onnx

        meta = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
        return meta.get(DETECTOR_CONFIG_KEY)
    if kind == "pte":
        from ..runtimes.executorch import pte_constant

        return pte_constant(path, DETECTOR_CONFIG_KEY)
    return None


def read_detector(weights: Any) -> tuple[dict[str, torch.Tensor], DetectorConfig]:
    """A detector file → (state, config), or a one-line error saying what the file is instead."""
    (path,) = _paths(weights)
    check_model_file(path)
    kind = _format_name(path)
    if kind == "tflite":
        return load_detector_tflite(path)
    if kind != "safetensors":
        suffix = path.suffix.lower()
        raise ValueError(
            f"weights={str(path)!r}: a detector is a .safetensors file of ours or a TF Lite SSD .tflite, not {suffix or 'a file without suffix'}"
        )
    meta = weights_metadata(path)
    if DETECTOR_CONFIG_KEY not in meta:
        what = (
            "a MobileNet v1 classifier" if CONFIG_KEY in meta else "not a detector of ours (no detector config in its metadata)"
        )
        raise WeightsFileError(
            f"{path} is {what}, not an object detector; detection needs SSD weights "
            "(e.g. Google's detect.tflite, or a .safetensors written by `mobilenet convert` from one)"
        )
    try:
        config = DetectorConfig.from_dict(json.loads(meta[DETECTOR_CONFIG_KEY]))
    except (json.JSONDecodeError, TypeError, ValueError) as exc:
        raise WeightsFileError(f"{path}: its {DETECTOR_CONFIG_KEY} metadata is unreadable ({exc})") from None
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise WeightsFileError(f"{path}: not a readable safetensors file ({exc})") from None
    return state, config


def load_detector(weights: Any, **overrides: Any) -> SSDMobileNetV1:
    """An :class:`SSDMobileNetV1` in eval mode from a detector file. ``overrides`` may restate the
    config or change ``resolution``, ``postprocess`` (a name or a config), ``class_names``, ``labels``."""
    state, config = read_detector(weights)
    return SSDMobileNetV1.from_state_dict(state, config, source=str(_paths(weights)[0]), overrides=overrides)
