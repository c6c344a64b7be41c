"""The inference form of a MobileNetV1 and the runtimes that execute it.

``optimize(model, backend)`` returns a ``Predictor``: a callable from an NCHW float batch (already
preprocessed, [-1, 1]) to logits, whatever runs underneath. ``load_exported(path)`` does the same
for a file :mod:`mobilenet.export` wrote.

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
                   uint8 activations calibrated on sample images, QDQ format)
``openvino``       the ONNX export run by OpenVINO, fp32 (``openvino-bf16``: bf16 inference
                   precision; ``openvino-int8``: the quantized ONNX)
=================  ===========================================================================
"""

from __future__ import annotations

import os
import tempfile
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from .export import calibration_batches, export_onnx, onnx_config, portable_int8, quantize_onnx
from .extras import install_hint, missing, require
from .model import MobileNetV1, fold_batchnorm

__all__ = [
    "BACKENDS",
    "ExportedModel",
    "Predictor",
    "backend_available",
    "fold_batchnorm",
    "load_exported",
    "optimize",
    "settle_batchnorm",
]

BACKENDS: tuple[str, ...] = (
    "eager",
    "compiled",
    "bf16",
    "onnxruntime",
    "int8",
    "openvino",
    "openvino-bf16",
    "openvino-int8",
    "litert",
    "litert-int8",
    "executorch",
    "executorch-int8",
)
# The phone runtimes (mobilenet.litert, mobilenet.pte) come with the [mobile] extra.
_MOBILE = {
    "litert": ("ai_edge_litert",),
    "litert-int8": ("ai_edge_litert",),
    "executorch": ("executorch",),
    "executorch-int8": ("executorch", "torchao"),
}
_NEEDS = {
    "onnxruntime": ("onnxruntime", "onnxscript"),
    "int8": ("onnxruntime", "onnxscript"),
    "openvino": ("openvino", "onnxscript"),
    "openvino-bf16": ("openvino", "onnxscript"),
    "openvino-int8": ("openvino", "onnxruntime", "onnxscript"),
}


def backend_available(backend: str) -> str | None:
    """None if ``backend`` can run here, else a message saying what to install."""
    if backend not in BACKENDS:
        return f"unknown backend {backend!r}; choose from {', '.join(BACKENDS)}"
    absent = missing(*_NEEDS.get(backend, ()), *_MOBILE.get(backend, ()))
    if absent:
        hint = "pip install 'mobilenet[mobile]'" if backend in _MOBILE else install_hint(absent)
        return f"backend {backend!r} needs {', '.join(absent)}, which is not installed: {hint}"
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


class Predictor:
    """A callable ``(N, C, H, W) float tensor → logits tensor`` over one backend."""

    backend: str = ""

    def __call__(self, x: Tensor) -> Tensor:  # pragma: no cover - interface
        raise NotImplementedError

    def with_threads(self, threads: int) -> Predictor:
        """The same model on ``threads`` CPU threads (a runtime session fixes its count when made)."""
        torch.set_num_threads(threads)
        return self

    def raw_call(self, x: Tensor) -> Callable[[], Any] | None:
        """The runtime's own call on ``x`` already in its native form, with none of this wrapper's
        work (what ``bench`` times beside the wrapper to show its cost), or None for PyTorch."""
        return None


class TorchPredictor(Predictor):
    """PyTorch on the model's own device (CPU or GPU); inputs are moved there, logits come back
    as float32 on that device."""

    def __init__(
        self, module: nn.Module, backend: str, *, channels_last: bool, dtype: torch.dtype = torch.float32, device: torch.device
    ) -> None:
        self.module, self.backend, self.channels_last, self.dtype, self.device = module, backend, channels_last, dtype, device

    @torch.inference_mode()
    def __call__(self, x: Tensor) -> Tensor:
        layout = torch.channels_last if self.channels_last else torch.contiguous_format
        x = x.to(self.device, dtype=self.dtype, memory_format=layout, non_blocking=True)
        return self.module(x).float()


def _numpy_input(x: Tensor) -> Any:
    """A contiguous float32 array for a runtime. The copy, when one is needed, is numpy's: a torch
    copy would wake PyTorch's OpenMP threads, which then spin on the cores the runtime's own
    threads need (on 2 cores that doubled ONNX Runtime's latency)."""
    import numpy as np

    return np.ascontiguousarray(x.detach().cpu().numpy(), dtype=np.float32)


class OnnxRuntimePredictor(Predictor):
    def __init__(self, path: str | os.PathLike[str], backend: str, threads: int | None) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name
        self.path, self.backend = Path(path), backend

    def with_threads(self, threads: int) -> Predictor:
        return OnnxRuntimePredictor(self.path, self.backend, threads)

    def __call__(self, x: Tensor) -> Tensor:
        # ONNX Runtime reads a contiguous float32 array in place and returns a new array of its
        # own, which the tensor then shares: no copy either way.
        out = self.session.run(None, {self.input_name: _numpy_input(x)})[0]
        return torch.from_numpy(out)

    def raw_call(self, x: Tensor) -> Callable[[], Any]:
        feed = {self.input_name: _numpy_input(x)}
        return lambda: self.session.run(None, feed)


class OpenVINOPredictor(Predictor):
    def __init__(self, path: str | os.PathLike[str], backend: str, threads: int | None, precision: str) -> None:
        import openvino as ov

        config: dict[str, Any] = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": precision}
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        self.compiled = ov.Core().compile_model(str(path), "CPU", config)
        self.request = self.compiled.create_infer_request()
        self.path, self.backend, self.precision = Path(path), backend, precision

    def with_threads(self, threads: int) -> Predictor:
        return OpenVINOPredictor(self.path, self.backend, threads, self.precision)

    def __call__(self, x: Tensor) -> Tensor:
        # share_inputs: OpenVINO reads the array in place instead of copying it into its own
        # tensor (at 1.0-224 that copy is 0.6 MB per image). The output lives in the request's
        # buffer, which the next call overwrites, so the logits (4 kB an image) are copied out.
        result = self.request.infer({0: _numpy_input(x)}, share_inputs=True, share_outputs=True)
        return torch.from_numpy(result[0].copy())

    def raw_call(self, x: Tensor) -> Callable[[], Any]:
        feed = {0: _numpy_input(x)}
        return lambda: self.request.infer(feed, share_inputs=True, share_outputs=True)


def optimize(
    model: MobileNetV1,
    backend: str = "eager",
    *,
    threads: int | None = None,
    calibration: Iterable[Tensor] | str | os.PathLike[str] | None = None,
    activation_ranges: dict[str, tuple[float, int]] | None = None,
    workdir: str | os.PathLike[str] | None = None,
    resolution: int | None = None,
) -> Predictor:
    """The fastest form of ``model`` on ``backend`` (see the module docstring), ready to call.

    ``calibration`` (a folder of sample images, preprocessed as the model's config says, or
    batches already preprocessed that way) or ``activation_ranges`` (a quantized TF Lite
    model's own, from :func:`mobilenet.weights.tflite.activation_quantization`) is needed by the
    int8 backends;
    ``workdir`` keeps the ONNX files the ONNX backends write (default: a temporary folder).
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
    if backend in _MOBILE:
        return _mobile(folded, backend, folder, threads, calibration, activation_ranges, resolution)
    int8 = backend in ("int8", "openvino-int8")
    onnx_path = export_onnx(portable_int8(folded) if int8 else folded, folder / "model.onnx", resolution=resolution, dynamic_batch=True)
    if int8:
        if calibration is None and activation_ranges is None:
            raise ValueError(f"backend {backend!r} quantizes to int8 and needs calibration images (calibration=...)")
        onnx_path = quantize_onnx(onnx_path, folder / "model.int8.onnx", calibration, activation_ranges=activation_ranges)
    if backend.startswith("openvino"):
        return OpenVINOPredictor(onnx_path, backend, threads, "bf16" if backend == "openvino-bf16" else "f32")
    return OnnxRuntimePredictor(onnx_path, backend, threads)


def _mobile(
    folded: MobileNetV1,
    backend: str,
    folder: Path,
    threads: int | None,
    calibration: Iterable[Tensor] | None,
    activation_ranges: dict[str, tuple[float, int]] | None,
    resolution: int | None,
) -> Predictor:
    """A LiteRT (.tflite) or ExecuTorch (.pte) export of ``folded`` run in its own runtime."""
    int8 = backend.endswith("-int8")
    if backend.startswith("litert"):
        from .litert import LiteRTModel, export_tflite

        if int8 and calibration is None and activation_ranges is None:
            raise ValueError(f"backend {backend!r} quantizes to int8 and needs calibration images (calibration=...)")
        path = export_tflite(
            folded, folder / f"{backend}.tflite", resolution=resolution, int8=int8, calibration=calibration,
            activation_ranges=activation_ranges,
        )  # fmt: skip
        return LiteRTModel(path, threads=threads)  # type: ignore[return-value]
    from .pte import ExecuTorchModel, export_pte

    if int8 and calibration is None:  # a TF Lite file's ranges do not carry over to the PT2E flow
        raise ValueError(f"backend {backend!r} quantizes to int8 and needs calibration images (calibration=...)")
    path = export_pte(folded, folder / f"{backend}.pte", resolution=resolution, int8=int8, calibration=calibration)
    return ExecuTorchModel(path, threads=threads)  # type: ignore[return-value]


def load_exported(path: str | os.PathLike[str], *, threads: int | None = None) -> Any:
    """An exported file as a callable ``NCHW tensor → logits``: .onnx through ONNX Runtime,
    .pt2 through ``torch.export.load``, TorchScript through ``torch.jit.load``."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"exported model {str(path)!r} does not exist")
    suffix = path.suffix.lower()  # m.ONNX is an ONNX file too
    if suffix == ".onnx":
        require("onnxruntime", purpose="running an ONNX file")
        return OnnxRuntimePredictor(path, "onnxruntime", threads)
    if suffix == ".tflite":
        from .litert import LiteRTModel

        return LiteRTModel(path, threads=threads)
    if suffix == ".pte":
        from .pte import ExecuTorchModel

        return ExecuTorchModel(path, threads=threads)
    if suffix == ".pt2":
        module = torch.export.load(path).module()
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            module = torch.jit.load(str(path), map_location="cpu")

    def run(x: Tensor) -> Tensor:
        with torch.inference_mode():
            return module(x)

    return run


class ExportedModel:
    """An exported ONNX file (fp32 or int8) behind the small part of MobileNetV1's interface that
    ``predict`` and ``evaluate`` use: ``config``, ``eval()`` and a call from images to logits."""

    def __init__(self, path: str | os.PathLike[str], *, threads: int | None = None) -> None:
        config = onnx_config(path)
        if config is None:
            raise ValueError(f"{path}: an ONNX file without mobilenet_config metadata; export it with `mobilenet export`")
        self.config = config
        self.path = Path(path)
        self._run = load_exported(path, threads=threads)

    def eval(self) -> ExportedModel:
        return self

    def __call__(self, x: Tensor) -> Tensor:
        return self._run(x.float())
