"""The inference form of a MobileNetV1 and the runtimes that execute it.

``optimize(model, backend)`` returns a ``Predictor``: a callable from an NCHW float batch (already
preprocessed, [-1, 1]) to logits, whatever runs underneath. ``load_exported(path)`` does the same
for a file :mod:`mobilenet.export` wrote, and :func:`inference_model` for whatever ``predict`` and
``evaluate`` are given (weights, or an exported file run in its runtime). Which runtime runs which
file is the format table's (:mod:`mobilenet.formats`); each runtime is a module of
:mod:`mobilenet.runtimes`.

=================  ===========================================================================
backend            what runs
=================  ===========================================================================
``eager``          PyTorch, BN folded into the convs, channels_last, ``inference_mode``
``compiled``       the same through ``torch.compile`` with weight freezing (Inductor fuses
                   conv + bias + ReLU into oneDNN primitives), fp32
``bf16``           ``compiled`` with bf16 weights and activations (fp32 accumulation), for
                   CPUs with bf16 instructions (AVX512-BF16, AMX)
``onnxruntime``    an ONNX export run by ONNX Runtime, fp32
``int8``           ONNX Runtime on a statically quantized copy (int8 weights per channel,
                   uint8 activations calibrated on sample images, QDQ format; a uint8 file's
                   weights with its ranges keep its integers, ``keep_grid``: int8 pieces at its
                   step, depthwise weights uint8)
``openvino``       the ONNX export run by OpenVINO, fp32 (``openvino-bf16``: bf16 inference
                   precision; ``openvino-int8``: the quantized ONNX)
=================  ===========================================================================
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from .export import calibration_batches
from .extras import install_hint, missing
from .formats import FORMATS, check_model_file, export_format, format_of
from .model import MobileNetV1, fold_batchnorm
from .runtimes.common import Predictor
from .runtimes.onnxruntime import ExportedModel, OnnxRuntimePredictor
from .runtimes.openvino import OpenVINOPredictor
from .runtimes.torch import TorchPredictor
from .spec import reconcile
from .weights import load_weights

__all__ = [
    "BACKENDS",
    "RUNTIMES",
    "ExportedModel",
    "OnnxRuntimePredictor",
    "OpenVINOPredictor",
    "Predictor",
    "TorchPredictor",
    "backend_available",
    "fold_batchnorm",
    "inference_model",
    "load_exported",
    "model_for",
    "optimize",
    "settle_batchnorm",
]

#: Each backend: the format it exports to and runs (None: the PyTorch model itself), whether int8,
#: and the modules it needs where its runtime is not the format's own (OpenVINO runs the ONNX file).
_BACKENDS: dict[str, tuple[str | None, bool, tuple[str, ...] | None]] = {
    "eager": (None, False, None),
    "compiled": (None, False, None),
    "bf16": (None, False, None),
    "onnxruntime": ("onnx", False, None),
    "int8": ("onnx", True, None),
    "openvino": ("onnx", False, ("openvino", "onnxscript")),
    "openvino-bf16": ("onnx", False, ("openvino", "onnxscript")),
    "openvino-int8": ("onnx", True, ("openvino", "onnxruntime", "onnxscript")),
    "litert": ("tflite", False, None),
    "litert-int8": ("tflite", True, None),
    "executorch": ("pte", False, None),
    "executorch-int8": ("pte", True, None),
}
BACKENDS: tuple[str, ...] = tuple(_BACKENDS)
#: What ``predict`` and ``evaluate`` may run files in: PyTorch (weights), or the runtime of a
#: format that is also read as weights (``litert``: any TF Lite file, Google's too).
RUNTIMES: tuple[str, ...] = ("torch", *(f.runtime for f in FORMATS.values() if f.read_weights and f.model))


def backend_available(backend: str) -> str | None:
    """None if ``backend`` can run here, else a message saying what to install."""
    if backend not in BACKENDS:
        return f"unknown backend {backend!r}; choose from {', '.join(BACKENDS)}"
    fmt, int8, needs = _BACKENDS[backend]
    if needs is None and fmt is not None:
        needs = FORMATS[fmt].needs + (FORMATS[fmt].int8_needs if int8 else ())
    absent = missing(*(needs or ()))
    if absent:
        return f"backend {backend!r} needs {', '.join(absent)}, which is not installed: {install_hint(absent)}"
    return None


@torch.no_grad()
def settle_batchnorm(model: nn.Module, resolution: int, *, batches: int = 4, batch_size: int = 8, seed: int = 0) -> nn.Module:
    """Sets a random-init model's BN statistics from random inputs, as training would have.

    In a freshly initialized net the activations shrink layer by layer (logits near 1e-18 for
    1.0-224), so comparing an export's outputs with PyTorch's proves nothing, and values that
    small can reach float32's denormal range, which some CPUs run far slower. Benchmarks and
    export checks of random-init models use this first.
    """
    generator = torch.Generator().manual_seed(seed)
    in_chans = getattr(getattr(model, "config", None), "in_chans", 3)
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    saved = [(m.momentum, m.training) for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # a plain average over the batches
        m.train()
    try:
        for _ in range(batches):
            model(torch.rand(batch_size, in_chans, resolution, resolution, generator=generator) * 2 - 1)
    finally:
        for m, (momentum, training) in zip(norms, saved):
            m.momentum = momentum
            m.train(training)
    return model


def optimize(
    model: MobileNetV1,
    backend: str = "eager",
    *,
    threads: int | None = None,
    calibration: Iterable[Tensor] | str | os.PathLike[str] | None = None,
    activation_ranges: dict[str, tuple[float, int]] | None = None,
    workdir: str | os.PathLike[str] | None = None,
    resolution: int | None = None,
    keep_grid: bool = True,
) -> Predictor:
    """The fastest form of ``model`` on ``backend`` (see the module docstring), ready to call.

    ``calibration`` (a folder of sample images, preprocessed as the model's config says, or
    batches already preprocessed that way) or ``activation_ranges`` (a quantized TF Lite
    model's own, from :func:`mobilenet.weights.tflite.activation_quantization`) is needed by the
    int8 backends;
    ``workdir`` keeps the ONNX files the ONNX backends write (default: a temporary folder).
    ``keep_grid=False``: the int8 backends, for weights on a uint8 file's grid with its ranges, use
    int8 per-channel weights (faster) instead of that file's own uint8 arithmetic.
    """
    problem = backend_available(backend)
    if problem:
        raise ValueError(problem)
    device = next(model.parameters()).device
    if device.type != "cpu" and backend not in ("eager", "compiled", "bf16"):
        raise ValueError(
            f"backend {backend!r} runs on the CPU; move the model there first (model.cpu()), or use eager, compiled or bf16"
        )
    if threads:
        torch.set_num_threads(threads)
    calibration = calibration_batches(model, calibration, resolution)
    folded = fold_batchnorm(model)
    if backend in ("eager", "compiled", "bf16"):
        # bf16: weights and activations in bfloat16 throughout (oneDNN accumulates in fp32); the
        # same numbers as autocast, without a cast around every op.
        dtype = torch.bfloat16 if backend == "bf16" else torch.float32
        folded = folded.to(dtype=dtype, memory_format=torch.channels_last)
        module: nn.Module | Callable[..., Any] = folded
        if backend != "eager":
            # Freezing turns the weights into constants, so Inductor can pre-pack them for oneDNN
            # and fold the bias and ReLU6 into the conv primitive. One graph per input shape.
            module = torch.compile(folded, dynamic=False, options={"freezing": True})
        return TorchPredictor(module, backend, channels_last=True, dtype=dtype, device=device)  # type: ignore[arg-type]

    folder = Path(workdir) if workdir is not None else Path(tempfile.mkdtemp(prefix="mobilenet-"))
    folder.mkdir(parents=True, exist_ok=True)
    return _exported(folded, backend, folder, threads, calibration, activation_ranges, resolution, keep_grid)


def _exported(
    folded: MobileNetV1,
    backend: str,
    folder: Path,
    threads: int | None,
    calibration: Iterable[Tensor] | None,
    activation_ranges: dict[str, tuple[float, int]] | None,
    resolution: int | None,
    keep_grid: bool = True,
) -> Predictor:
    """``folded`` written in the backend's format and run in its runtime."""
    name, int8, _ = _BACKENDS[backend]
    fmt = FORMATS[name]  # type: ignore[index]
    if not fmt.stored_ranges:  # a format whose int8 writer takes no ranges
        activation_ranges = None
    if int8 and calibration is None and activation_ranges is None:
        raise ValueError(f"backend {backend!r} quantizes to int8 and needs calibration images (calibration=...)")
    suffix = export_format(f"{name}-int8" if int8 else name)[3]  # type: ignore[str-bytes-safe]
    assert fmt.run is not None
    path = fmt.write(
        folded, folder / f"{backend}{suffix}", resolution=resolution, dynamic_batch=True, int8=int8,
        calibration=calibration, activation_ranges=activation_ranges, keep_grid=keep_grid,
    )  # fmt: skip
    if backend.startswith("openvino"):
        return OpenVINOPredictor(path, backend, threads, "bf16" if backend == "openvino-bf16" else "f32")
    predictor = fmt.run(path, threads=threads)
    if hasattr(predictor, "backend"):
        predictor.backend = backend
    return predictor


def load_exported(path: str | os.PathLike[str], *, threads: int | None = None) -> Any:
    """An exported file as a callable ``NCHW tensor → logits``, run as its format says: .onnx
    through ONNX Runtime, .pt2 through ``torch.export.load``, TorchScript through ``torch.jit.load``,
    TF Lite in LiteRT, ExecuTorch programs in ExecuTorch."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"exported model {str(path)!r} does not exist")
    fmt = format_of(path) or FORMATS["torchscript"]
    if fmt.run is None:
        raise ValueError(
            f"{path} is {fmt.description}, weights rather than an exported model; load it with mobilenet_v1(weights=...)"
        )
    return fmt.run(path, threads=threads)


def _weights_arg(values: Sequence[str]) -> Any:
    return values[0] if len(values) == 1 else list(values)


def inference_model(
    weights: str | os.PathLike[str] | Sequence[str], runtime: str = "torch", *, threads: int | None = None
) -> Any:
    """What ``predict`` and ``evaluate`` run: weights (anything :func:`~mobilenet.weights.load_weights`
    reads), or an exported file that carries our config run in its format's runtime (.onnx in ONNX
    Runtime, a TF Lite or ExecuTorch file we wrote in LiteRT / ExecuTorch). With ``runtime`` other than
    ``"torch"`` (one of :data:`RUNTIMES`), files of that runtime's format run there whoever wrote
    them (Google's TF Lite files in LiteRT); someone else's TF Lite file otherwise loads as weights."""
    values = [str(weights)] if isinstance(weights, (str, os.PathLike)) else [str(w) for w in weights]
    for value in values:  # a local file is checked for what it is before any runtime parses it
        if value.strip() and (Path(value).suffix or os.sep in value or Path(value).exists()):
            check_model_file(value)
    formats = {format_of(v) for v in values}
    if runtime != "torch":
        fmt = next((f for f in FORMATS.values() if f.runtime == runtime and f.model is not None), None)
        if fmt is None or formats != {fmt}:
            runs = " / ".join(fmt.suffixes) if fmt else "no"
            raise ValueError(f"--runtime {runtime} runs {runs} files; got {' '.join(values)}")
        return fmt.model(values, threads=threads)
    fmt = formats.pop() if len(values) == 1 else None
    if fmt is not None and fmt.model is not None:
        if fmt.read_weights is None:  # only runnable: ours, exported
            return fmt.model(values[0], threads=threads)
        if not missing(*fmt.needs) and fmt.read_config is not None and fmt.read_config(Path(values[0])) is not None:
            return fmt.model(values[0], threads=threads)  # ours: it says how to run it
    return load_weights(_weights_arg(values))


def model_for(
    weights: str | Sequence[str] | None = None,
    *,
    width_mult: float | None = None,
    resolution: int | None = None,
    num_classes: int | None = None,
) -> MobileNetV1:
    """The model ``export`` and ``bench`` work on, in eval mode: the weights given (α and the
    classes are theirs: a value that contradicts them is an error, :func:`mobilenet.spec.reconcile`;
    a resolution is only an input size), or a random init of the asked shape with Google's choices
    (ReLU6, TF padding) and BN statistics settled on random inputs (:func:`settle_batchnorm`), so
    that its outputs are not vanishingly small."""
    if weights:
        values = [weights] if isinstance(weights, (str, os.PathLike)) else list(weights)
        model = load_weights(_weights_arg(values)).eval()
        given = {"width_mult": width_mult, "num_classes": num_classes}
        reconcile(model.config, given, source=f"the weights {' + '.join(map(str, values))}", flags=True)
        return model
    model = MobileNetV1(
        width_mult=width_mult or 1.0,
        resolution=resolution or 224,
        num_classes=num_classes or 1000,
        activation="relu6",
        padding="tf",
    )
    return settle_batchnorm(model, resolution or 224).eval()  # type: ignore[return-value]
