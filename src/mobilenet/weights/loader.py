"""The one loader: any weights we can read → a :class:`~mobilenet.model.MobileNetV1`.

It sits above the registry (which only finds files) and the importers (which turn a file into
``(state, config)``), and below the builder, :func:`mobilenet.mobilenet_v1`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..checkpoint import (
    DETECTOR_CONFIG_KEY,
    WeightsFileError,
    config_from_state_dict,
    is_own_state_dict,
    load_weights_file,
    save_weights,
    torch_load_error,
)
from ..model import MobileNetV1
from ..spec import MobileNetConfig
from .keras import load_keras_h5
from .registry import Weights, get_weights
from .tflite import load_tflite
from .timm import convert_timm_state_dict, is_timm_state_dict

__all__ = ["check_model_file", "file_kind", "load_weights", "read_weights"]

PathLike = str | os.PathLike[str]


# What a file is, from its first bytes, so that a file whose name and content disagree (a text
# file named .onnx, an empty download, a resume checkpoint) gets a sentence instead of a parser's
# DecodeError. Each entry: a description and a test on the first 16 bytes (plus the size).
_KINDS: dict[str, tuple[str, Any]] = {
    "safetensors": (
        "a safetensors file",
        lambda head, size: len(head) > 8 and 0 < int.from_bytes(head[:8], "little") < size and head[8:9] == b"{",
    ),
    "tflite": ("a TF Lite flatbuffer", lambda head, size: head[4:8] == b"TFL3"),
    "pte": ("an ExecuTorch .pte program", lambda head, size: head[4:6] == b"ET"),
    "hdf5": ("an HDF5 (Keras .h5) file", lambda head, size: head[:8] == b"\x89HDF\r\n\x1a\n"),
    "zip": (
        "a zip archive (torch.save, TorchScript or .pt2)",
        lambda head, size: head[:4] == b"PK\x03\x04",
    ),
    "pickle": (
        "a pickle (old torch.save)",
        lambda head, size: head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"),
    ),
    # ONNX is a protobuf ModelProto: ir_version (field 1, a varint) is written first.
    "onnx": ("an ONNX model", lambda head, size: head[:1] == b"\x08"),
}
# The kind each suffix promises; names that end in neither are refused by the callers.
SUFFIX_KINDS: dict[str, tuple[str, ...]] = {
    ".safetensors": ("safetensors",),
    ".tflite": ("tflite",),
    ".pte": ("pte",),
    ".h5": ("hdf5",),
    ".hdf5": ("hdf5",),
    ".pt": ("zip", "pickle"),
    ".pth": ("zip", "pickle"),
    ".bin": ("zip", "pickle"),
    ".pt2": ("zip",),
    ".onnx": ("onnx",),
}
# A torch.save dict with these keys is a training run's resume state, not weights.
_TRAINING_STATE_KEYS = {"optimizer", "scheduler", "epoch", "rng", "best_top1"}


def file_kind(path: PathLike) -> str | None:
    """The kind of file ``path`` is by its first bytes (a key of ``_KINDS``), ``"empty"``, or None."""
    path = Path(path)
    size = path.stat().st_size
    if size == 0:
        return "empty"
    with open(path, "rb") as f:
        head = f.read(16)
    return next((kind for kind, (_, test) in _KINDS.items() if test(head, size)), None)


def check_model_file(path: PathLike, what: str = "weights") -> Path:
    """Refuses, with one sentence naming the path, a file that does not exist, is a folder, is
    empty, or whose content is not what its suffix says. Returns the path."""
    path = Path(path)
    if path.is_dir():
        inside = [n for n in ("best.safetensors", "last.safetensors") if (path / n).is_file()]
        hint = f"; did you mean {path / inside[0]}?" if inside else "; pass a file"
        raise IsADirectoryError(f"{what} {str(path)!r} is a folder{hint}")
    if not path.exists():
        raise FileNotFoundError(f"{what} file {str(path)!r} does not exist")
    try:
        kind = file_kind(path)
    except OSError as exc:
        raise OSError(f"cannot read {what} file {str(path)!r}: {exc.strerror or exc}") from None
    if kind == "empty":
        raise WeightsFileError(f"{what} file {str(path)!r} is empty (0 bytes): an interrupted download or copy? Fetch it again")
    suffix = path.suffix.lower()
    expected = SUFFIX_KINDS.get(suffix)
    if expected is not None and kind not in expected:
        found = _KINDS[kind][0] if kind else "not a format we know"
        raise WeightsFileError(
            f"{what} file {str(path)!r} is named {suffix} but its content is {found}, not "
            f"{_KINDS[expected[0]][0]}; check which file this is (a failed download saves an HTML page)"
        )
    return path


def _check_pair(paths: Sequence[PathLike]) -> None:
    """Two files are only Google's split TF Lite model: the embedding extractor and the head."""
    if len(paths) == 1:
        return
    names = ", ".join(str(p) for p in paths)
    if len(paths) > 2 or any(Path(p).suffix.lower() != ".tflite" for p in paths):
        raise ValueError(
            f"weights: got {len(paths)} files ({names}); more than one file is only for Google's split TF Lite "
            "model (the embedding_extractor and the head_layers .tflite); pass one weights file"
        )
    from .tflite import read_tflite

    def takes_image(graph: Any) -> bool:
        shape = graph.input_shape or ()
        return len(shape) == 4 and shape[1] > 1 and shape[-1] == 3

    roles = ["an image (a whole network or an extractor)" if takes_image(read_tflite(p)) else "features (a head)" for p in paths]
    if roles[0] == roles[1]:
        raise ValueError(
            f"weights: expected the embedding_extractor and the head_layers file of Google's split TF Lite model; "
            f"both {names} take {roles[0]}"
        )


def _is_exported_program(path: Path) -> bool:
    """Whether a zip is a TorchScript module or a torch.export program (code inside, not a state dict)."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as z:
            return any(n.split("/", 1)[-1].startswith(("code/", "constants.pkl", "models/")) for n in z.namelist())
    except (OSError, zipfile.BadZipFile):
        return False


def _load_torch_file(path: Path) -> tuple[dict[str, Any], MobileNetConfig]:
    """A torch.save file: timm's state dict, or (refused with directions) a resume checkpoint."""
    import torch

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


def read_weights(paths: Sequence[PathLike]) -> tuple[dict[str, Any], MobileNetConfig]:
    """Local weights file(s) → ``(state, config)``, dispatching on what the file is."""
    for p in paths:
        check_model_file(p)
    _check_pair(paths)
    first = Path(paths[0])
    suffix = first.suffix.lower()
    if suffix == ".safetensors":
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
    if suffix == ".tflite":
        return load_tflite(paths)
    if suffix in (".h5", ".hdf5"):
        return load_keras_h5(first)
    if suffix == ".keras":
        raise ValueError(f"{first}: a .keras archive; save the weights as .h5 (model.save_weights('x.weights.h5')) and load that")
    if suffix in (".pth", ".pt", ".bin"):
        return _load_torch_file(first)
    if suffix in (".onnx", ".pt2", ".pte"):
        runs = "mobilenet.deploy.load_exported runs it" + (" (as do `mobilenet predict` and `eval`)" if suffix != ".pt2" else "")
        raise ValueError(
            f"weights={str(first)!r}: an exported {suffix} model cannot be loaded back as PyTorch weights; {runs}. "
            "For weights, use the .safetensors it was exported from"
        )
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
