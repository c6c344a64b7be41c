"""OpenVINO running an ONNX export (fp32, bf16 inference precision, or the int8 ONNX)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .common import Predictor, numpy_input

__all__ = ["OpenVINOPredictor"]


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
        result = self.request.infer({0: numpy_input(x)}, share_inputs=True, share_outputs=True)
        return torch.from_numpy(result[0].copy())

    def raw_call(self, x: Tensor) -> Callable[[], Any]:
        feed = {0: numpy_input(x)}
        return lambda: self.request.infer(feed, share_inputs=True, share_outputs=True)
