"""What every runtime module shares: the config an export records with the input it traces, and
:class:`Predictor`, the callable every runtime's model is (an NCHW float batch to logits)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from ..checkpoint import WeightsFileError
from ..spec import MobileNetConfig

#: Where an int8 export records which arithmetic it computes (a .pte's constant method, an .onnx
#: file's metadata): "uint8-grid" (a uint8 file's own, each weight tensor on its grid) or "per-channel".
INT8_SCHEME_KEY = "mobilenet_int8_scheme"

__all__ = [
    "INT8_SCHEME_KEY",
    "Predictor",
    "check_outputs",
    "config_and_example",
    "config_json",
    "example_input",
    "model_config",
    "numpy_input",
]


def model_config(model: nn.Module) -> MobileNetConfig:
    config = getattr(model, "config", None)
    if not isinstance(config, MobileNetConfig):
        raise TypeError(f"expected a MobileNetV1 (with .config), got {type(model).__name__}")
    return config


def config_and_example(
    model: nn.Module, resolution: int | None, example: Tensor | None, batch: int = 1
) -> tuple[MobileNetConfig | None, Tensor]:
    """The config to record (None for a model that has none, e.g. a peer's) and the input to trace.

    A model without our config needs ``example``; with one, the example defaults to zeros of the
    config's shape. A batch of at least ``batch`` is traced, so a dynamic batch size stays free.
    """
    config = getattr(model, "config", None)
    if not isinstance(config, MobileNetConfig):
        if example is None:
            raise TypeError(
                f"{type(model).__name__} has no MobileNetConfig (.config), so the input shape is unknown; "
                "pass example=torch.zeros(1, C, H, W)"
            )
        config = None
    if example is None:
        example = example_input(model, resolution)
    if example.shape[0] < batch:
        example = example[:1].expand(batch, *example.shape[1:]).contiguous()
    return config, example


def check_outputs(config: MobileNetConfig, outputs: Any, source: Any) -> None:
    """Refuses a file whose stored config and graph disagree: ``outputs`` (the graph's scores per
    image; a symbolic or unknown size is not checked) must be the config's classes (its features
    for a model without a classifier). Labels read from such a config would name the wrong classes."""
    if not isinstance(outputs, int) or isinstance(outputs, bool) or outputs <= 0:
        return
    want = config.num_classes or config.num_features
    if outputs != want:
        what = f"{config.num_classes} classes" if config.num_classes else f"{want} features (no classifier)"
        raise WeightsFileError(
            f"{source}: its mobilenet_config metadata says {what}, but the graph outputs {outputs} values per image: "
            "the config and the graph disagree (a file edited or mixed up after export); export it again from its weights"
        )


def config_json(config: MobileNetConfig, example: Tensor) -> str:
    """The config an export carries: the model's, with the input size it was exported at."""
    return json.dumps(config.replace(resolution=example.shape[-1]).to_dict())


def example_input(model: nn.Module, resolution: int | None, batch: int = 1) -> Tensor:
    config = model_config(model)
    size = resolution or config.resolution
    return torch.zeros(batch, config.in_chans, size, size)


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


def numpy_input(x: Tensor) -> Any:
    """A contiguous float32 array for a runtime. The copy, when one is needed, is numpy's: a torch
    copy would wake PyTorch's OpenMP threads, which then spin on the cores the runtime's own
    threads need (on 2 cores that doubled ONNX Runtime's latency). A contiguous float32 CPU tensor
    outside autograd (the usual input) is viewed with no PyTorch op at all: any op run between two
    runtime calls, even on 4 numbers, slowed ONNX Runtime's next call by about 2%
    (benchmarks/RESULTS.md, "Our Predictor against the runtime's own call")."""
    import numpy as np

    if x.device.type == "cpu" and x.dtype == torch.float32 and not x.requires_grad and x.is_contiguous():
        return x.numpy()
    return np.ascontiguousarray(x.detach().cpu().numpy(), dtype=np.float32)
