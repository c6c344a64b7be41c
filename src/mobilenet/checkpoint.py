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
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from .spec import MobileNetConfig

__all__ = [
    "WeightsFileError",
    "as_path",
    "atomic_write",
    "config_from_metadata",
    "config_from_state_dict",
    "is_own_state_dict",
    "load_state",
    "load_weights_file",
    "refuse_overwriting_inputs",
    "save_state",
    "save_weights",
    "staged_output",
    "torch_load_error",
    "weights_metadata",
]

CONFIG_KEY = "mobilenet_config"
#: An object detector's config (mobilenet.detection) is stored under its own key, so that a
#: classifier loader can say "this is a detector" instead of failing on its tensors.
DETECTOR_CONFIG_KEY = "mobilenet_detector_config"


class WeightsFileError(ValueError):
    """A weights or checkpoint file that cannot be used; the message names the file and the problem."""


def as_path(value: object, what: str = "path") -> Path:
    """A path argument as a ``Path``. Bytes, an empty string and things that are not paths are
    refused by name: ``Path("")`` is the current folder, which no caller means."""
    text = os.fspath(value) if isinstance(value, (str, os.PathLike)) else value
    if isinstance(text, bytes):
        raise TypeError(f"{what} {value!r} is bytes; pass a str or pathlib.Path (os.fsdecode converts bytes)")
    if not isinstance(text, str):
        raise TypeError(f"{what} must be a file path (a str or pathlib.Path), not {type(value).__name__} {value!r}")
    if not text.strip():
        raise ValueError(f"{what} is an empty string; pass a file path")
    return Path(text)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: str | os.PathLike[str], write: Callable[[str], None]) -> Path:
    """Calls ``write(tmp_path)`` then renames onto ``path``, so a crash never leaves a half file.

    Errors name ``path``, never the temporary file; the result gets the permissions ``open()``
    would give it (0666 less the umask), not ``mkstemp``'s private 0600.
    """
    path = as_path(path, "output")
    tmp = _temporary_beside(path, "tmp")
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


def _temporary_beside(path: Path, tag: str) -> str:
    """An empty hidden file in ``path``'s folder (made if missing), named after it and ending in its
    suffix (writers that look at the suffix see the real one)."""
    if path.is_dir():
        raise IsADirectoryError(f"output {str(path)!r} is a folder; pass a file name (e.g. {path / 'model'}...)")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=f".{tag}{path.suffix}")
    except OSError as exc:
        raise OSError(f"cannot write {str(path)!r}: {exc.strerror or exc} (is its folder writable?)") from None
    os.close(fd)
    return tmp


@contextmanager
def staged_output(path: str | os.PathLike[str]) -> Iterator[Path]:
    """A hidden temporary name beside ``path`` to write a file under and check it; the file becomes
    ``path`` (one rename) only when the block ends without an error, and is removed otherwise. So a
    file that fails its check, or whose check runs out of memory, is never left where the user
    asked for it, and a file that was there before stays as it was. Folders made for it are
    removed again on failure."""
    path = as_path(path, "output")
    made, parent = [], path.parent
    while not parent.exists() and parent != parent.parent:
        made.append(parent)
        parent = parent.parent
    tmp = _temporary_beside(path, "unchecked")
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        for folder in made:  # the deepest first
            try:
                folder.rmdir()
            except OSError:
                break
        raise


def refuse_overwriting_inputs(
    output: str | os.PathLike[str], inputs: Iterable[str | os.PathLike[str]], *, flag: str = "-o", default: bool = False
) -> None:
    """Refuses an ``output`` that is one of the ``inputs`` (the same file by its resolved path, or by
    ``os.path.samefile`` for links), before any work: writing it would destroy what is read.
    ``default``: the output name was chosen for the user, not given."""
    out = Path(output)
    for given in inputs:
        source = Path(given)
        if not source.exists():  # a registry name, or nothing to destroy
            continue
        same = out.resolve() == source.resolve()
        if not same and out.exists():
            try:
                same = os.path.samefile(out, source)
            except OSError:
                same = False
        if same:
            how = f"the default output name {str(out)!r}" if default else f"{flag} {str(out)!r}"
            raise FileExistsError(
                f"{how} is the input file {str(given)!r} itself; writing it would destroy the input. "
                f"Pass another {flag} (nothing was written)"
            )


def config_from_metadata(text: str, source: str | os.PathLike[str], key: str = CONFIG_KEY) -> MobileNetConfig:
    """The config a file stores as JSON (``mobilenet_config``), or an error naming the file: JSON
    that is not an object of our fields (a list, null, a class count its class names contradict) is
    a damaged file or not one of ours."""
    try:
        return MobileNetConfig.from_dict(json.loads(text))
    except (json.JSONDecodeError, UnicodeDecodeError, TypeError, ValueError) as exc:
        raise WeightsFileError(
            f"{source}: its {key} metadata is unreadable ({exc}); the file is damaged or was not written by mobilenet"
        ) from None


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
    config = config_from_metadata(meta[CONFIG_KEY], path) if CONFIG_KEY in meta else None
    return tensors, config, meta


def torch_load_error(path: str | os.PathLike[str], exc: BaseException, what: str) -> WeightsFileError:
    """The error for a file that ``torch.load(weights_only=True)`` refused, naming ``path``.

    torch's own message suggests ``weights_only=False``; we never pass it on. A pickle that holds
    more than tensors can run any code when it is loaded, so such a file is refused, with what to
    use instead.
    """
    import pickle
    import re

    text = str(exc)
    if isinstance(exc, pickle.UnpicklingError) or "weights_only" in text:
        found = re.search(r"GLOBAL ([\w.]+)", text)
        holds = f" ({found[1]})" if found else ""
        return WeightsFileError(
            f"{path}: refused: it holds Python objects beyond tensors{holds}, and loading such a pickle runs whatever "
            "code it carries, so torch files are read with weights_only=True only. Use weights in safetensors "
            "(mobilenet.checkpoint.save_weights; `mobilenet convert` imports TF Lite, Keras and timm files); for a file "
            "you trust, save its state_dict() with safetensors.torch.save_file"
        )
    first = text.strip().splitlines()[0] if text.strip() else ""
    return WeightsFileError(f"{path}: not a loadable {what} ({type(exc).__name__}: {first})")


def is_own_state_dict(state: dict[str, Any]) -> bool:
    """Whether ``state`` has our MobileNetV1's key layout (``stem.conv.weight``, ``blocks.N...``)."""
    return "stem.conv.weight" in state and any(k.startswith("blocks.") for k in state)


def config_from_state_dict(state: dict[str, Any], source: str = "state dict") -> MobileNetConfig:
    """The config of one of our models saved as a bare ``state_dict()`` (``torch.save(model.state_dict())``):
    α, classes, input channels and variant from the tensor shapes. Activation, padding and BN eps
    leave no trace in the tensors, so the defaults are assumed, with a warning."""
    import re
    import warnings

    from .spec import VARIANTS, build_blocks

    def shape(key: str) -> tuple[int, ...]:
        value = state.get(key)
        if not isinstance(value, torch.Tensor):
            raise WeightsFileError(f"{source}: has no tensor {key}; not a MobileNet v1 state dict")
        return tuple(value.shape)

    blocks = sorted({int(m[1]) for k in state if (m := re.match(r"blocks\.(\d+)\.", k))})
    if blocks != list(range(len(blocks))):
        raise WeightsFileError(f"{source}: its blocks are numbered {blocks}; not a MobileNet v1 state dict")
    kinds = ["separable" if f"blocks.{i}.dw.conv.weight" in state else "conv" for i in blocks]
    last = f"blocks.{blocks[-1]}.pw.conv.weight" if kinds[-1] == "separable" else f"blocks.{blocks[-1]}.conv.weight"
    width, in_chans = shape(last)[0], shape("stem.conv.weight")[1]
    num_classes = shape("classifier.weight")[0] if "classifier.weight" in state else 0
    # The block widths are int(depth * α): several α give the same ones; the first that does is used.
    for variant in VARIANTS:
        for alpha in (round(width / 1024, 4), width / 1024, (width + 0.5) / 1024):
            try:
                config = MobileNetConfig(width_mult=alpha, num_classes=num_classes, in_chans=in_chans, variant=variant)
            except ValueError:
                continue
            spec = build_blocks(config)
            if len(spec) - 1 != len(blocks) or any(
                b.kind != kind or shape(f"blocks.{i}.{'pw.conv' if kind == 'separable' else 'conv'}.weight")[0] != b.out_channels
                for i, (b, kind) in enumerate(zip(spec[1:], kinds))
            ):
                continue
            warnings.warn(
                f"{source} is a bare state dict (no config): α={config.width_mult:g}, {num_classes} classes and the "
                f"{variant} variant come from its shapes, but activation, padding and bn_eps are not stored, so "
                f"{config.activation}, {config.padding} and {config.bn_eps:g} are assumed. Save models with "
                "mobilenet.checkpoint.save_weights to keep their config",
                stacklevel=2,
            )
            return config
    raise WeightsFileError(f"{source}: its layer widths fit no MobileNet v1 (α, variant) of Table 1")


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
        raise torch_load_error(path, exc, "training checkpoint") from None
