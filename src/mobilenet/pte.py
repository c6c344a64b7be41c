"""The ExecuTorch export and runner, kept importable here: they live in :mod:`mobilenet.runtimes.executorch`."""

from .runtimes.executorch import ExecuTorchModel, export_pte, pte_config

__all__ = ["ExecuTorchModel", "export_pte", "pte_config"]
