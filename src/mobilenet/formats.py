"""The one table of file formats: each declared once, with everything the package does with it.

A :class:`Format` says what its files are called (suffixes) and what their first bytes are (the
content kinds of :data:`CONTENTS`), which modules its runtime needs, and four optional hooks:
how to read it as weights (``path(s) → (state, config)``), how to run an exported file
(``path → callable NCHW → logits``, with ``.config`` where the file carries one), how to write a
BN-folded model to it, and how to read the config stored inside. The weights loader, the
exporter, the runtimes (:mod:`mobilenet.deploy`) and the CLI all consult :data:`FORMATS`; each
runtime's code lives in its module of :mod:`mobilenet.runtimes`.

A new format is one entry here and one module in ``runtimes/`` (its writer, runner and config
reader); :data:`EXPORTS` (the ``--format`` names), the suffix checks and ``load_exported`` follow.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .checkpoint import CONFIG_KEY, WeightsFileError, config_from_metadata, weights_metadata
from .extras import MissingDependency
from .runtimes import executorch, litert, onnxruntime
from .runtimes import torch as torch_runtime
from .spec import MobileNetConfig
from .weights.files import load_torch_file, read_safetensors
from .weights.keras import load_keras_h5
from .weights.tflite import load_tflite

__all__ = [
    "CONTENTS",
    "EXPORTS",
    "FORMATS",
    "Format",
    "check_model_file",
    "export_format",
    "file_kind",
    "format_of",
    "stored_config",
]

PathLike = str | os.PathLike[str]

#: What a file is, from its first bytes, so that a file whose name and content disagree (a text
#: file named .onnx, an empty download, a resume checkpoint) gets a sentence instead of a parser's
#: DecodeError. Each entry: a description and a test on the first 16 bytes (plus the size).
CONTENTS: dict[str, tuple[str, Callable[[bytes, int], bool]]] = {
    "safetensors": (
        "a safetensors file",
        lambda head, size: len(head) > 8 and 0 < int.from_bytes(head[:8], "little") < size and head[8:9] == b"{",
    ),
    "tflite": ("a TF Lite flatbuffer", lambda head, size: head[4:8] == b"TFL3"),
    "pte": ("an ExecuTorch .pte program", lambda head, size: head[4:6] == b"ET"),
    "hdf5": ("an HDF5 (Keras .h5) file", lambda head, size: head[:8] == b"\x89HDF\r\n\x1a\n"),
    "zip": ("a zip archive (torch.save, TorchScript or .pt2)", lambda head, size: head[:4] == b"PK\x03\x04"),
    "pickle": (
        "a pickle (old torch.save)",
        lambda head, size: head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"),
    ),
    # ONNX is a protobuf ModelProto: ir_version (field 1, a varint) is written first.
    "onnx": ("an ONNX model", lambda head, size: head[:1] == b"\x08"),
}


@dataclass(frozen=True)
class Format:
    """One file format. ``suffixes``: the names its files carry (the first is an export's default
    unless ``export_suffix`` says otherwise; ``output_suffixes`` narrows what an export may be
    named). ``contents``: the :data:`CONTENTS` kinds its first bytes may be. ``runtime``: the
    module of :mod:`mobilenet.runtimes` that runs it, and ``needs`` the modules that takes
    (``int8_needs`` more for its int8 form). ``int8``: the writer has an int8 form, exported as
    ``<name>-int8``, which takes the int8 ranges stored in weights when ``stored_ranges``.
    ``pairs``: two files may form one model (Google's split TF Lite model). ``fixed_batch``: an
    export without a dynamic batch takes batch 1 only.

    The hooks: ``read_weights(paths) → (state, config)``; ``run(path, *, threads) → callable``
    (NCHW tensor → logits); ``model(path, *, threads)``, the same with the ``config`` (and
    ``eval()``) that ``predict`` and ``evaluate`` use; ``writer(folded_model, path, *, resolution,
    dynamic_batch, int8, calibration, calibration_method, activation_ranges) → path``, taking
    those keywords it needs;
    ``read_config(path) → config or None``."""

    name: str
    suffixes: tuple[str, ...]
    contents: tuple[str, ...]
    runtime: str = "torch"
    needs: tuple[str, ...] = ()
    int8_needs: tuple[str, ...] = ()
    read_weights: Callable[[Sequence[Path]], tuple[dict[str, Any], MobileNetConfig]] | None = None
    run: Callable[..., Any] | None = None
    model: Callable[..., Any] | None = None
    writer: Callable[..., Path] | None = None
    read_config: Callable[[Path], MobileNetConfig | None] | None = None
    int8: bool = False
    stored_ranges: bool = False
    pairs: bool = False
    fixed_batch: bool = False
    export_suffix: str | None = None
    output_suffixes: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        # Every read of a file of this format goes through these hooks: each is guarded once
        # here, so a truncated or corrupt file is one sentence naming it, whatever reads it.
        for hook in ("read_weights", "run", "model", "read_config"):
            read = getattr(self, hook)
            if read is not None and not getattr(read, "guarded", False):
                object.__setattr__(self, hook, _guarded(read, self))

    @property
    def description(self) -> str:
        return CONTENTS[self.contents[0]][0]

    def write(self, model: Any, path: PathLike, **options: Any) -> Path:
        """``writer(model, path, ...)`` with those of ``options`` it takes (a writer without an
        int8 form takes no ``int8``; TF Lite, batch-free, no ``dynamic_batch``)."""
        import inspect

        if self.writer is None:
            raise ValueError(f"{self.name} files are read, not written")
        takes = inspect.signature(self.writer).parameters
        return self.writer(model, path, **{k: v for k, v in options.items() if k in takes})


#: Errors that already say what is wrong in a sentence of ours: passed on as they are.
_CLEAR = (WeightsFileError, OSError, ImportError, MissingDependency, MemoryError)


def _guarded(read: Callable[..., Any], fmt: Format) -> Callable[..., Any]:
    """``read`` (a hook of ``fmt`` taking a path or paths first), with anything its parser raises
    on a damaged file (protobuf's DecodeError, flatbuffers' struct.error, ExecuTorch's "Failed to
    load program", ONNX Runtime's InvalidProtobuf) turned into one sentence naming the file."""
    import functools

    @functools.wraps(read)
    def guarded(target: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return read(target, *args, **kwargs)
        except _CLEAR:
            raise
        except Exception as exc:
            where = " + ".join(map(str, target)) if isinstance(target, (list, tuple)) else str(target)
            first = (str(exc).strip().splitlines() or [""])[0][:200]
            raise WeightsFileError(
                f"{where}: cannot be read as {fmt.description}: the file is corrupt or truncated (an interrupted "
                f"download or copy?), or not a model of ours ({type(exc).__name__}: {first}); fetch or export it again"
            ) from None

    guarded.guarded = True  # type: ignore[attr-defined]
    return guarded


def _safetensors_config(path: Path) -> MobileNetConfig | None:
    meta = weights_metadata(path)
    return config_from_metadata(meta[CONFIG_KEY], path) if CONFIG_KEY in meta else None


#: Every format, in the order exports are offered.
FORMATS: dict[str, Format] = {
    "onnx": Format(
        "onnx",
        (".onnx",),
        ("onnx",),
        runtime="onnxruntime",
        needs=("onnxruntime", "onnxscript"),
        run=onnxruntime.run_onnx,
        model=onnxruntime.ExportedModel,
        writer=onnxruntime.write_onnx,
        read_config=onnxruntime.onnx_config,
        int8=True,
        stored_ranges=True,
        fixed_batch=True,
    ),
    "torchscript": Format(
        "torchscript",
        (".pt", ".pth", ".bin", ".torchscript"),
        ("zip", "pickle"),
        read_weights=lambda paths: load_torch_file(paths[0]),  # timm's torch.save state dicts
        run=torch_runtime.run_torchscript,
        writer=torch_runtime.export_torchscript,
        export_suffix=".torchscript.pt",
        output_suffixes=(".pt", ".pth", ".torchscript"),
        fixed_batch=True,
    ),
    "pt2": Format("pt2", (".pt2",), ("zip",), run=torch_runtime.run_pt2, writer=torch_runtime.export_pt2, fixed_batch=True),
    "tflite": Format(
        "tflite",
        (".tflite",),
        ("tflite",),
        runtime="litert",
        needs=("ai_edge_litert",),
        read_weights=load_tflite,
        run=litert.run_tflite,
        model=litert.run_tflite,
        writer=litert.export_tflite,
        read_config=litert.tflite_config,
        int8=True,
        stored_ranges=True,
        pairs=True,
    ),
    "pte": Format(
        "pte",
        (".pte",),
        ("pte",),
        runtime="executorch",
        needs=("executorch",),
        int8_needs=("torchao",),
        run=executorch.run_pte,
        model=executorch.run_pte,
        writer=executorch.export_pte,
        read_config=executorch.pte_config,
        int8=True,
        stored_ranges=True,
    ),
    "safetensors": Format(
        "safetensors",
        (".safetensors",),
        ("safetensors",),
        read_weights=lambda paths: read_safetensors(paths[0]),
        read_config=_safetensors_config,
    ),
    "keras": Format("keras", (".h5", ".hdf5"), ("hdf5",), read_weights=lambda paths: load_keras_h5(paths[0])),
}

#: The export formats (``--format``): each writable format, and ``<name>-int8`` where it has an int8 form.
EXPORTS: tuple[str, ...] = tuple(
    name for f in FORMATS.values() if f.writer is not None for name in (f.name, *((f"{f.name}-int8",) if f.int8 else ()))
)


def export_format(fmt: str) -> tuple[Format, bool, tuple[str, ...], str]:
    """An export name of :data:`EXPORTS` → ``(format, int8, suffixes an output may carry, default suffix)``."""
    if fmt not in EXPORTS:
        raise ValueError(f"format {fmt!r}: choose from {', '.join(EXPORTS)}")
    int8 = fmt.endswith("-int8")
    f = FORMATS[fmt.removesuffix("-int8")]
    default = (".int8" if int8 else "") + (f.export_suffix or f.suffixes[0])
    return f, int8, f.output_suffixes or f.suffixes, default


def format_of(path: PathLike) -> Format | None:
    """The format a file's name says it is (None for a suffix no format has)."""
    suffix = Path(path).suffix.lower()
    return next((f for f in FORMATS.values() if suffix in f.suffixes), None)


def file_kind(path: PathLike) -> str | None:
    """The kind of file ``path`` is by its first bytes (a key of :data:`CONTENTS`), ``"empty"``, or None."""
    path = Path(path)
    size = path.stat().st_size
    if size == 0:
        return "empty"
    with open(path, "rb") as f:
        head = f.read(16)
    return next((kind for kind, (_, test) in CONTENTS.items() if test(head, size)), None)


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
    fmt = format_of(path)
    if fmt is not None and kind not in fmt.contents:
        found = CONTENTS[kind][0] if kind else "not a format we know"
        raise WeightsFileError(
            f"{what} file {str(path)!r} is named {path.suffix.lower()} but its content is {found}, not "
            f"{fmt.description}; check which file this is (a failed download saves an HTML page)"
        )
    return path


def stored_config(path: PathLike) -> MobileNetConfig | None:
    """The config a file carries inside (our weights and exports do), or None."""
    fmt = format_of(path)
    return fmt.read_config(Path(path)) if fmt is not None and fmt.read_config is not None else None
