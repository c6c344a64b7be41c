"""Optional dependencies: whether one is installed, and an error naming what to install."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from typing import Any

__all__ = ["EXTRAS", "MissingDependency", "install_hint", "lazy_names", "missing", "require"]


class MissingDependency(RuntimeError):
    """An optional module is not installed; the message names what to install."""


def missing(*modules: str) -> list[str]:
    """Those of ``modules`` that cannot be imported here (found without importing them)."""
    return [m for m in modules if importlib.util.find_spec(m) is None]


#: The extra that brings each optional module (OpenVINO is installed by its own name).
EXTRAS = {
    "onnx": "export",
    "onnxruntime": "export",
    "onnxscript": "export",
    "ai_edge_litert": "mobile",
    "executorch": "mobile",
    "torchao": "mobile",
    "tflite": "import",
    "h5py": "import",
}


def install_hint(modules: list[str]) -> str:
    """The command that installs ``modules``: their extras, or OpenVINO where it is among them."""
    if "openvino" in modules:
        return "pip install openvino"
    extras = sorted({EXTRAS.get(m, "export") for m in modules})
    return "pip install " + " ".join(f"'mobilenet[{e}]'" for e in extras)


def require(*modules: str, purpose: str) -> None:
    """A clear error naming what to install, instead of an ImportError from deep inside."""
    absent = missing(*modules)
    if absent:
        raise MissingDependency(f"{purpose} needs {', '.join(absent)}, which is not installed: {install_hint(absent)}")


def lazy_names(package: str, homes: dict[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """A package's ``__getattr__`` and ``__dir__`` (PEP 562) that load each public name from its
    module (``homes``: name → module, relative to ``package``) on first use, so importing the
    package does not import every module under it."""
    import importlib
    import sys

    def __getattr__(name: str) -> Any:
        home = homes.get(name)
        if home is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(home if home.startswith(".") else f".{home}", package), name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted([*vars(sys.modules[package]), *homes])

    return __getattr__, __dir__
