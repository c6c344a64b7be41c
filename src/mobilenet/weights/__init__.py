"""Weights: the registry of published checkpoints, the importers and the one loader.

``load_weights`` accepts a registry member or its name, or a local file: ``.safetensors`` (ours, or
timm's layout), TF Lite (Google's models; two files, extractor and head, as a tuple),
``.h5`` (Keras), ``.pth`` (timm).

Inside the package, imports run one way: ``registry`` (finds and hash-checks files) and the
importers (``tflite``, ``keras``, ``timm``: a file → ``(state, config)``) know nothing of each
other or of ``loader``, which uses them all.
"""

from __future__ import annotations

from ..checkpoint import WeightsFileError
from .loader import load_weights, read_weights
from .registry import MobileNet_V1_Weights, Weights, WeightsFile

__all__ = ["MobileNet_V1_Weights", "Weights", "WeightsFile", "WeightsFileError", "load_weights", "read_weights"]
