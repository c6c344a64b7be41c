"""Weights: the registry of published checkpoints, the importers and the one loader.

``load_weights`` accepts a registry member or its name, or a local file: ``.safetensors`` (ours, or
timm's layout), TF Lite (Google's models; two files, extractor and head, as a tuple),
``.h5`` (Keras), ``.pth`` (timm).

Inside the package, imports run one way: ``registry`` (finds and hash-checks files) and the
importers (``tflite``, ``keras``, ``timm``: a file → ``(state, config)``) know nothing of each
other or of ``loader``, which uses them all.

The importers sit below the format table (:mod:`mobilenet.formats` names them as its readers) and
the loader above it (it reads through the table). So importing this package does not import the
loader: ``load_weights`` and ``read_weights`` load it when first asked for. Were the loader
imported here, ``formats`` importing ``weights.tflite`` would run this file, whose loader imports
``formats`` again: a cycle that only the order of ``mobilenet/__init__.py`` kept from failing.
"""

from __future__ import annotations

from typing import Any

from ..checkpoint import WeightsFileError
from .registry import MobileNet_V1_Weights, Weights, WeightsFile

__all__ = ["MobileNet_V1_Weights", "Weights", "WeightsFile", "WeightsFileError", "load_weights", "read_weights"]

#: Names this package hands out from :mod:`.loader`, imported on first use (see above).
_FROM_LOADER = ("load_weights", "read_weights")


def __getattr__(name: str) -> Any:
    if name in _FROM_LOADER:
        from . import loader

        value = globals()[name] = getattr(loader, name)
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_FROM_LOADER})
