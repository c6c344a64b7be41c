"""Weights and training state on disk: safetensors with the model's config, written atomically.

A weights file is a plain safetensors file whose metadata holds ``mobilenet_config`` (JSON of
:class:`MobileNetConfig`), so ``mobilenet_v1(weights="file.safetensors")`` rebuilds the model with
no flags. Training state (optimizer, scheduler, RNG) is a ``torch.save`` file read back with
``weights_only=True``: tensors, numbers and strings only, never arbitrary pickles.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from .spec import MobileNetConfig

__all__ = [
    "WeightsFileError",
    "atomic_write",
    "load_state",
    "load_weights_file",
    "save_state",
    "save_weights",
    "weights_metadata",
]

CONFIG_KEY = "mobilenet_config"
#: An object detector's config (mobilenet.detection) is stored under its own key, so that a
#: classifier loader can say "this is a detector" instead of failing on its tensors.
DETECTOR_CONFIG_KEY = "mobilenet_detector_config"


class WeightsFileError(ValueError):
    """A weights or checkpoint file that cannot be used; the message names the file and the problem."""


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: str | os.PathLike[str], write: Callable[[str], None]) -> Path:
    """Calls ``write(tmp_path)`` then renames onto ``path``, so a crash never leaves a half file.

    Errors name ``path``, never the temporary file; the result gets the permissions ``open()``
    would give it (0666 less the umask), not ``mkstemp``'s private 0600.
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"output {str(path)!r} is a folder; pass a file name (e.g. {path / 'model'}...)")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # Writers that look at the suffix see the real one.
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=f".tmp{path.suffix}")
    except OSError as exc:
        raise OSError(f"cannot write {str(path)!r}: {exc.strerror or exc} (is its folder writable?)") from None
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except OSError as exc:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise OSError(f"cannot write {str(path)!r}: {exc.strerror or exc}") from None
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def _unwrap(model: nn.Module) -> nn.Module:
    for attr in ("module", "_orig_mod"):  # DDP, torch.compile
        while hasattr(model, attr) and isinstance(getattr(model, attr), nn.Module):
            model = getattr(model, attr)
    return model


def save_weights(path: str | os.PathLike[str], model: nn.Module, config: MobileNetConfig | None = None, **metadata: str) -> Path:
    """Writes the model's weights and config to a safetensors file (atomically)."""
    model = _unwrap(model)
    config = config or model.config  # type: ignore[assignment]
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    meta = {CONFIG_KEY: json.dumps(config.to_dict()), "format": "pt", **{k: str(v) for k, v in metadata.items()}}
    return atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=meta))


def weights_metadata(path: str | os.PathLike[str]) -> dict[str, str]:
    """A safetensors file's metadata (its header only; no tensor is read)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file {str(path)!r} does not exist")
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            return dict(f.metadata() or {})
    except (SafetensorError, OSError, ValueError) as exc:
        raise WeightsFileError(f"{path}: not a readable safetensors file ({exc})") from None


def load_weights_file(path: str | os.PathLike[str]) -> tuple[dict[str, torch.Tensor], MobileNetConfig | None, dict[str, str]]:
    """Reads a safetensors weights file: (state_dict, config or None, metadata)."""
    path = Path(path)
    meta = weights_metadata(path)
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise WeightsFileError(f"{path}: not a readable safetensors file ({exc})") from None
    config = None
    if CONFIG_KEY in meta:
        try:
            config = MobileNetConfig.from_dict(json.loads(meta[CONFIG_KEY]))
        except (json.JSONDecodeError, TypeError, ValueError) as exc:
            raise WeightsFileError(f"{path}: its {CONFIG_KEY} metadata is unreadable ({exc})") from None
    return tensors, config, meta


def save_state(path: str | os.PathLike[str], state: dict[str, Any]) -> Path:
    """Writes training state (must hold only tensors, numbers, strings, lists and dicts)."""
    return atomic_write(path, lambda tmp: torch.save(state, tmp))


def load_state(path: str | os.PathLike[str]) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for corrupt or unsafe files
        raise WeightsFileError(f"{path}: not a loadable training checkpoint ({type(exc).__name__}: {exc})") from None
