"""Readers of plain weights files, each ``path → (state, config)``: our safetensors (or timm's, as the
Hugging Face hub serves it) and a ``torch.save`` file (timm's ``.pth``). The format table
(:mod:`mobilenet.formats`) names them beside the TF Lite and Keras importers."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..checkpoint import (
    DETECTOR_CONFIG_KEY,
    WeightsFileError,
    config_from_state_dict,
    is_own_state_dict,
    load_weights_file,
    torch_load_error,
)
from ..spec import MobileNetConfig
from .timm import convert_timm_state_dict, is_timm_state_dict

__all__ = ["load_torch_file", "read_safetensors"]

PathLike = str | os.PathLike[str]


def read_safetensors(path: PathLike) -> tuple[dict[str, Any], MobileNetConfig]:
    """Our weights file (config in its metadata), or timm's layout without one."""
    first = Path(path)
    state, config, meta = load_weights_file(first)
    if DETECTOR_CONFIG_KEY in meta:
        raise WeightsFileError(
            f"{first} is an object detector (SSD), not a classifier; use `mobilenet detect` / "
            "`mobilenet eval --data ANNOTATIONS.json`, or mobilenet.ssd_mobilenet_v1(weights=...)"
        )
    if config is not None:
        return state, config
    if is_timm_state_dict(state):  # e.g. timm's model.safetensors from the Hugging Face hub
        return convert_timm_state_dict(state, str(first))
    raise WeightsFileError(
        f"{first} has no mobilenet_config metadata and is not a timm MobileNetV1 state dict, so its α and "
        "class count are unknown; write it with mobilenet.checkpoint.save_weights or mobilenet convert"
    )


# A torch.save dict with these keys is a training run's resume state, not weights.
_TRAINING_STATE_KEYS = {"optimizer", "scheduler", "epoch", "rng", "best_top1"}


def _is_exported_program(path: Path) -> bool:
    """Whether a zip is a TorchScript module or a torch.export program (code inside, not a state dict)."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as z:
            return any(n.split("/", 1)[-1].startswith(("code/", "constants.pkl", "models/")) for n in z.namelist())
    except (OSError, zipfile.BadZipFile):
        return False


def load_torch_file(path: PathLike) -> tuple[dict[str, Any], MobileNetConfig]:
    """A torch.save file: timm's state dict or ours, or (refused with directions) a resume checkpoint."""
    import torch

    path = Path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for corrupt or unsafe files
        if _is_exported_program(path):
            raise WeightsFileError(
                f"{path} is an exported TorchScript or torch.export program, not weights; load it with "
                "mobilenet.deploy.load_exported, or use the .safetensors it was exported from"
            ) from None
        raise torch_load_error(path, exc, "PyTorch state dict") from None
    if isinstance(state, dict) and "state_dict" in state:  # timm's own training checkpoints hold the weights
        state = state["state_dict"]
    elif isinstance(state, dict) and _TRAINING_STATE_KEYS & state.keys():
        raise WeightsFileError(
            f"{path} is a resume checkpoint (training state: {', '.join(sorted(_TRAINING_STATE_KEYS & state.keys()))}), "
            f"not weights; use {path.with_name('best.safetensors')} (or last.safetensors) from the same run, "
            "or continue training with `mobilenet train --resume --out DIR`"
        )
    if not isinstance(state, dict):
        raise WeightsFileError(f"{path}: holds a {type(state).__name__}, not a state dict")
    if is_own_state_dict(state):  # torch.save(model.state_dict()) of one of ours
        return state, config_from_state_dict(state, str(path))
    return convert_timm_state_dict(state, str(path))
