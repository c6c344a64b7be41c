"""The TF Lite writer and LiteRT runner, kept importable here: they live in :mod:`mobilenet.runtimes.litert`."""

from .runtimes.litert import LiteRTModel, export_tflite, google_ranges, tflite_config, tflite_input_type

__all__ = ["LiteRTModel", "export_tflite", "google_ranges", "tflite_config", "tflite_input_type"]
