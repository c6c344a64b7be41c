"""Optional dependencies: whether one is installed, and an error naming what to install."""

from __future__ import annotations

import importlib.util

__all__ = ["install_hint", "missing", "require"]


def missing(*modules: str) -> list[str]:
    """Those of ``modules`` that cannot be imported here (found without importing them)."""
    return [m for m in modules if importlib.util.find_spec(m) is None]


def install_hint(modules: list[str]) -> str:
    """The command that installs ``modules``: the export extra, or OpenVINO where it is among them."""
    return "pip install openvino" if "openvino" in modules else "pip install 'mobilenet[export]'"


def require(*modules: str, purpose: str) -> None:
    """A clear error naming what to install, instead of an ImportError from deep inside."""
    absent = missing(*modules)
    if absent:
        raise RuntimeError(f"{purpose} needs {', '.join(absent)}, which is not installed: {install_hint(absent)}")
