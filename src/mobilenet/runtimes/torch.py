"""PyTorch's own files: a traced TorchScript module and a ``torch.export`` program (.pt2), each
with the config in its extra files; and PyTorch running a model (eager, compiled, bf16)."""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor, nn

from ..checkpoint import CONFIG_KEY, atomic_write
from .common import Predictor, config_and_example, config_json

__all__ = [
    "TorchPredictor",
    "export_pt2",
    "export_torchscript",
    "run_pt2",
    "run_torchscript",
]


def export_torchscript(
    model: nn.Module, path: str | os.PathLike[str], *, resolution: int | None = None, example: Tensor | None = None
) -> Path:
    """A traced TorchScript module (``torch.jit.load`` reads it); the config is in its extra files."""
    config, example = config_and_example(model, resolution, example)
    with torch.no_grad(), warnings.catch_warnings():
        # PyTorch marks TorchScript deprecated in favour of torch.export (format "pt2"); it is still
        # what many C++ and mobile deployments load, so we keep offering it.
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(model.eval(), example, check_trace=False)
        extra = {CONFIG_KEY: config_json(config, example)} if config is not None else {}
        return atomic_write(path, lambda tmp: torch.jit.save(traced, tmp, _extra_files=extra))


def export_pt2(
    model: nn.Module,
    path: str | os.PathLike[str],
    *,
    resolution: int | None = None,
    dynamic_batch: bool = False,
    example: Tensor | None = None,
) -> Path:
    """A ``torch.export`` program (``torch.export.load`` reads it back), config in its extra files."""
    config, example = config_and_example(model, resolution, example, batch=2 if dynamic_batch else 1)
    dynamic_shapes = {"x": {0: torch.export.Dim("batch", min=1, max=4096)}} if dynamic_batch else None
    program = torch.export.export(model.eval(), (example,), dynamic_shapes=dynamic_shapes)
    extra = {CONFIG_KEY: config_json(config, example)} if config is not None else {}
    return atomic_write(path, lambda tmp: torch.export.save(program, tmp, extra_files=extra))


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


def _runner(module: Callable[[Tensor], Tensor]) -> Callable[[Tensor], Tensor]:
    def run(x: Tensor) -> Tensor:
        with torch.inference_mode():
            return module(x)

    return run


def run_pt2(path: str | os.PathLike[str], *, threads: int | None = None) -> Callable[[Tensor], Tensor]:
    """A ``torch.export`` program as a callable ``NCHW tensor → logits``."""
    return _runner(torch.export.load(path).module())


def run_torchscript(path: str | os.PathLike[str], *, threads: int | None = None) -> Callable[[Tensor], Tensor]:
    """A TorchScript module as a callable ``NCHW tensor → logits``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return _runner(torch.jit.load(str(path), map_location="cpu"))
