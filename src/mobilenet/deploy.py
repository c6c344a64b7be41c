"""The inference form of a MobileNetV1 and the runtimes that execute it.

``optimize(model, backend)`` returns a ``Predictor``: a callable from an NCHW float batch (already
preprocessed, [-1, 1]) to logits, whatever runs underneath.

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

import copy
import os
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from .model import ConvBNAct, MobileNetV1

__all__ = ["BACKENDS", "Predictor", "backend_available", "fold_batchnorm", "optimize", "settle_batchnorm"]

BACKENDS: tuple[str, ...] = ("eager", "compiled", "bf16", "onnxruntime", "int8", "openvino", "openvino-bf16", "openvino-int8")
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
    import importlib.util

    missing = [m for m in _NEEDS.get(backend, ()) if importlib.util.find_spec(m) is None]
    if missing:
        extra = "pip install 'mobilenet[export]'" if "openvino" not in missing else "pip install openvino"
        return f"backend {backend!r} needs {', '.join(missing)}, which is not installed: {extra}"
    return None


def fold_batchnorm(model: MobileNetV1) -> MobileNetV1:
    """A copy of ``model`` (in eval mode) with each BN folded into the conv before it.

    ``w' = w·γ/√(σ²+ε)`` and ``b' = β − μ·γ/√(σ²+ε)``: the same function, one pass over memory
    fewer per layer. The copy has the same module tree with each ``bn`` an ``Identity``.
    """
    folded = copy.deepcopy(model).eval()
    for module in folded.modules():
        if isinstance(module, ConvBNAct) and isinstance(module.bn, nn.BatchNorm2d):
            module.conv = torch.nn.utils.fusion.fuse_conv_bn_eval(module.conv, module.bn)
            module.bn = nn.Identity()
    for p in folded.parameters():
        p.requires_grad_(False)
    return folded


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
        out = self.session.run(None, {self.input_name: _numpy_input(x)})[0]
        return torch.from_numpy(out)


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
        result = self.request.infer({0: _numpy_input(x)})
        return torch.from_numpy(next(iter(result.values())).copy())


def optimize(
    model: MobileNetV1,
    backend: str = "eager",
    *,
    threads: int | None = None,
    calibration: Iterable[Tensor] | None = None,
    activation_ranges: dict[str, tuple[float, int]] | None = None,
    workdir: str | os.PathLike[str] | None = None,
    resolution: int | None = None,
) -> Predictor:
    """The fastest form of ``model`` on ``backend`` (see the module docstring), ready to call.

    ``calibration`` (batches of preprocessed images) or ``activation_ranges`` (a quantized TF Lite
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

    from .export import export_onnx, quantize_onnx

    folder = Path(workdir) if workdir is not None else Path(tempfile.mkdtemp(prefix="mobilenet-"))
    folder.mkdir(parents=True, exist_ok=True)
    onnx_path = export_onnx(folded, folder / "model.onnx", resolution=resolution, dynamic_batch=True)
    if backend in ("int8", "openvino-int8"):
        if calibration is None and activation_ranges is None:
            raise ValueError(f"backend {backend!r} quantizes to int8 and needs calibration images (calibration=...)")
        onnx_path = quantize_onnx(onnx_path, folder / "model.int8.onnx", calibration, activation_ranges=activation_ranges)
    if backend.startswith("openvino"):
        return OpenVINOPredictor(onnx_path, backend, threads, "bf16" if backend == "openvino-bf16" else "f32")
    return OnnxRuntimePredictor(onnx_path, backend, threads)
