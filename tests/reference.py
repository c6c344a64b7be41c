"""Google's reference files (../shared/reference) for the tests: the helpers the benchmarks
share (benchmarks/_common.py), found through the repository root that pytest puts on the path."""

from __future__ import annotations

from benchmarks._common import IMAGES, MODELS, REFERENCE, TFLITE, LiteRT, have_reference, photos, resized, varied_inputs

__all__ = ["IMAGES", "MODELS", "REFERENCE", "TFLITE", "LiteRT", "have_reference", "photos", "resized", "varied_inputs"]
