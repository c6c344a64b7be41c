"""Export: a model to any format of the table (:mod:`mobilenet.formats`), fp32 or int8, with the
choices the ``mobilenet export`` command makes (where an output goes, which images calibrate
int8, the ranges stored in the weights, the check against PyTorch).

The writers themselves live with their runtimes (:mod:`mobilenet.runtimes`); running an
exported file is :mod:`mobilenet.deploy`'s job (``load_exported``).

Every exported file carries the model's config (``mobilenet_config``: α, resolution, classes,
labels), in the ONNX metadata or beside the program, and every write is atomic.

int8 has one scheme per runtime. onnx-int8 is ONNX Runtime's static quantization in QDQ form:
int8 weights with one scale per output channel (depthwise filters vary too much across channels
for one scale), uint8 activations with ranges calibrated on sample images; for a desktop or server
file we chose it over OpenVINO's (a 180 MB runtime) because one portable file runs in ONNX
Runtime, OpenVINO and TensorRT. tflite-int8 is full-integer int8 written by
:mod:`mobilenet.litert` itself (the scheme of :mod:`mobilenet.quantize`), and pte-int8 is PyTorch's
PT2E flow (torchao) with XNNPACK's quantizer, which ExecuTorch needs (:mod:`mobilenet.pte`).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from .formats import EXPORTS, export_format, format_of
from .formats import FORMATS as _TABLE
from .model import fold_batchnorm
from .runtimes.common import model_config
from .runtimes.onnxruntime import (
    DEPTHWISE_WEIGHT_QMAX,
    MATMUL_WEIGHT_QMAX,
    export_onnx,
    onnx_config,
    portable_int8,
    quantize_onnx,
)
from .runtimes.torch import export_pt2, export_torchscript

__all__ = [
    "DEFAULT_SUFFIX",
    "DEPTHWISE_WEIGHT_QMAX",
    "FORMATS",
    "MATMUL_WEIGHT_QMAX",
    "calibration_batches",
    "check_export",
    "export_model",
    "export_onnx",
    "export_output_path",
    "export_pt2",
    "export_torchscript",
    "int8_calibration",
    "int8_inputs",
    "onnx_config",
    "output_path",
    "portable_int8",
    "quantize_onnx",
    "stored_activation_ranges",
]

#: The export formats (``--format``), from the format table.
FORMATS: tuple[str, ...] = EXPORTS
#: The suffix an export gets when its name has none.
DEFAULT_SUFFIX: dict[str, str] = {fmt: export_format(fmt)[3] for fmt in EXPORTS}


def output_path(path: str | os.PathLike[str], suffixes: tuple[str, ...], default: str, what: str) -> tuple[Path, str | None]:
    """The file to write ``what`` to, checked before any work: ``(path, note)``.

    A suffix among ``suffixes`` is kept; a name without one gets ``default`` appended (the note
    says so); any other suffix is refused, so ``-o notes.txt`` never overwrites a file with a model
    its suffix contradicts. Only a suffix that starts with a letter counts as one: the ``.25_128``
    of ``mobilenet_v1_0.25_128`` is part of the name. (PIL decides the format by the suffix and
    refuses one it does not know; here the format is given, so the suffix only has to agree.)
    """
    import re

    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(
            f"{what}: output {str(path)!r} is a folder; pass a file name such as {path / ('model' + default)}"
        )
    suffix = path.suffix if re.fullmatch(r"\.[A-Za-z][A-Za-z0-9]*", path.suffix) else ""
    if suffix.lower() in suffixes:
        return path, None
    if not suffix:
        named = path.with_name(path.name + default)
        return named, f"{path} has no file suffix; writing {named}"
    raise ValueError(
        f"{what}: output {str(path)!r} ends in {suffix!r}, but this writes a {' / '.join(suffixes)} file; "
        f"name it {path.with_suffix(default)} (nothing was written)"
    )


def export_output_path(path: str | os.PathLike[str], fmt: str) -> tuple[Path, str | None]:
    """:func:`output_path` for an export ``fmt`` (one of :data:`FORMATS`)."""
    _, _, suffixes, default = export_format(fmt)
    return output_path(path, suffixes, default, f"--format {fmt}")


def stored_activation_ranges(weights: Iterable[str | os.PathLike[str]]) -> tuple[dict[str, tuple[float, int]], str] | None:
    """The int8 activation ranges that weights files already carry, as uint8 (scale, zero point)
    by module path (the ``activation_ranges`` every int8 exporter takes), and where they came
    from; None when they carry none.

    Google's quantized TF Lite files hold the ranges they were trained with; a ``--qat`` run's
    safetensors holds the ranges it learned (metadata ``mobilenet_int8_ranges``).
    """
    from .checkpoint import weights_metadata
    from .quantize import ranges_from_metadata, uint8_qparams

    paths = [Path(w) for w in weights]
    tflite = [p for p in paths if format_of(p) is _TABLE["tflite"]]
    if tflite:
        from .weights.tflite import activation_quantization

        return activation_quantization(tflite), "the TF Lite file's own"
    for p in paths:
        if format_of(p) is _TABLE["safetensors"] and p.is_file():
            try:
                ranges = ranges_from_metadata(weights_metadata(p))
            except ValueError as exc:
                raise ValueError(f"{p}: {exc}") from None
            if ranges is not None:
                return uint8_qparams(ranges), "learned in quantization-aware training (--qat)"
    return None


def calibration_batches(
    model: nn.Module, calibration: Iterable[Tensor] | str | os.PathLike[str] | None, resolution: int | None = None
) -> Iterable[Tensor] | None:
    """``calibration`` as batches: a folder becomes the model's own preprocessing of its images."""
    if isinstance(calibration, (str, os.PathLike)):
        from .data import image_batches

        return image_batches(calibration, model_config(model), resolution=resolution)
    return calibration


def export_model(
    model: nn.Module,
    path: str | os.PathLike[str],
    fmt: str,
    *,
    resolution: int | None = None,
    dynamic_batch: bool = False,
    calibration: Iterable[Tensor] | str | os.PathLike[str] | None = None,
    calibration_method: str = "minmax",
    activation_ranges: dict[str, tuple[float, int]] | None = None,
    keep_grid: bool = True,
) -> Path:
    """Writes ``model`` as ``fmt`` (one of :data:`FORMATS`) with its format's writer; BN is folded first.

    ``calibration`` for the int8 formats: a folder of sample images, preprocessed as the model's
    config says (:func:`mobilenet.data.image_batches`, 256 of them), or batches already
    preprocessed that way. ``keep_grid``: int8 of weights on a uint8 file's grid with that
    file's ranges keeps its arithmetic (:func:`mobilenet.litert.export_tflite`,
    :func:`mobilenet.pte.export_pte`, :func:`mobilenet.runtimes.onnxruntime.write_onnx`)."""
    writer, int8, _, _ = export_format(fmt)
    calibration = calibration_batches(model, calibration, resolution)
    return writer.write(
        fold_batchnorm(model),  # type: ignore[arg-type]
        path,
        resolution=resolution,
        dynamic_batch=dynamic_batch,
        int8=int8,
        calibration=calibration,
        calibration_method=calibration_method,
        activation_ranges=activation_ranges,
        keep_grid=keep_grid,
    )


def int8_calibration(folder: str | os.PathLike[str] | None, config: Any, resolution: int, limit: int = 256) -> list[Any]:
    """The images int8 is calibrated on: ``folder``'s (any images like the real inputs, ``limit``
    of them), or for a model trained on the built-in digits, those; otherwise an error saying
    what to pass."""
    import torch

    from .data import DigitsDataset, image_batches

    if folder:
        return image_batches(folder, config, resolution=resolution, limit=limit)
    if config is not None and config.labels == "digits" and config.num_classes == 10:
        digits = DigitsDataset("train", resolution, augment=False)
        images = torch.stack([digits[i][0] for i in range(min(limit, len(digits)))])
        return list(images.split(32))
    raise ValueError(
        f"int8 needs calibration images like the real inputs: pass --calibration DIR (any folder of images; {limit} are used)"
    )


def int8_inputs(
    fmt: str,
    *,
    weights: Iterable[str | os.PathLike[str]] = (),
    calibration: str | os.PathLike[str] | None = None,
    config: Any = None,
    resolution: int = 224,
    calibration_images: int = 256,
    recalibrate: bool = False,
) -> tuple[list[Any] | None, dict[str, tuple[float, int]] | None, str | None]:
    """What an int8 export of ``fmt`` is built from: ``(calibration batches, stored ranges, where
    the ranges came from)``. The ranges the weights were trained with (Google's quantized files,
    a ``--qat`` run) are used unless ``recalibrate``; a ``calibration`` folder then only serves
    the export's check (top-1 agreement on real photos). Otherwise the ranges come from
    calibration images. An fp32 format needs neither.

    Why trained ranges win: the weights learned to work within them. Measured on Google's four
    quantized MobileNets (208 photos, top-1 agreement with float), pte-int8 on Google's ranges
    agreed as often as on 256 calibration photos or more on three of them (1.0-224: 95.7% against
    92.3%), and tflite-int8 on them computes exactly what Google's file does."""
    writer, int8, _, _ = export_format(fmt)
    if not int8:
        return None, None, None
    if writer.stored_ranges and not recalibrate:
        stored = stored_activation_ranges(w for w in weights if Path(w).exists())
        if stored is not None:
            batches = int8_calibration(calibration, config, resolution, calibration_images) if calibration else None
            return batches, stored[0], stored[1]
    return int8_calibration(calibration, config, resolution, calibration_images), None, None


def check_export(
    model: nn.Module,
    path: str | os.PathLike[str],
    fmt: str,
    calibration: list[Tensor] | None = None,
    *,
    dynamic_batch: bool = False,
    resolution: int | None = None,
    name: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """Runs an export beside the PyTorch model it came from, on real inputs where there are some
    (the first calibration images) and random ones otherwise. fp32: the largest difference (over
    1e-3 is an error); int8 on real inputs: how often the top-1 agrees. Returns what was measured.
    ``name``: the file's name for messages and the result, when ``path`` is a staged temporary."""
    import torch

    writer, int8, _, _ = export_format(fmt)
    config = model.config  # type: ignore[union-attr]
    size = resolution or config.resolution
    x = calibration[0][:8] if calibration else torch.rand(8, config.in_chans, size, size) * 2 - 1
    if not dynamic_batch and writer.fixed_batch:
        x = x[:1]
    path = Path(path)
    with torch.inference_mode():
        want = model(x)
    assert writer.run is not None
    got = writer.run(path)(x)
    shown = Path(name) if name is not None else path
    result: dict[str, Any] = {
        "path": str(shown),
        "size_mb": path.stat().st_size / 1e6,
        "int8": int8,
        "images": len(x),
        "real_images": bool(calibration),
    }
    if int8:
        # agreement on random inputs says nothing about photos
        result["agreement"] = float((got.argmax(1) == want.argmax(1)).float().mean()) if calibration else None
        return result
    diff = float((got - want).abs().max())
    if not diff <= 1e-3:  # NaN included: a file that computes NaN is no export
        raise RuntimeError(f"{shown}: the exported model differs from PyTorch by {diff:.3g}; please report this")
    result["max_diff"] = diff
    return result
