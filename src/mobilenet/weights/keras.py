"""Keras ``MobileNet`` weights (.h5) → ours, read with h5py; TensorFlow and Keras are not needed.

Google's ``mobilenet_{1_0,7_5,5_0,2_5}_{224,192,160,128}_tf[_no_top].h5`` files name their layers
``conv1``, ``conv1_bn``, ``conv_dw_N``, ``conv_dw_N_bn``, ``conv_pw_N``, ``conv_pw_N_bn`` (N = 1..13)
and ``conv_preds`` (a 1x1 conv with bias, the classifier). Three on-disk layouts hold them:

- Keras 2 ``save_weights`` (Google's files): a root attribute ``layer_names``; each layer's group
  lists its tensors in the attribute ``weight_names`` (``conv1_bn/gamma:0`` ...).
- Keras' legacy whole-model ``model.save("x.h5")``: the same under a ``model_weights`` group, and
  the model's config, which gives the input size, in the root attribute ``model_config``.
- Keras 3 ``save_weights("x.weights.h5")``: ``layers/<object name>/vars/<i>``, with the layer's
  name in the ``vars`` group's ``name`` attribute and tensors in creation order.

Keras' numerics: ReLU6, BN eps 1e-3, TF 'SAME' on the stem and a fixed (0, 1) pad before each
strided depthwise conv, which is our ``padding="keras"``.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..checkpoint import WeightsFileError
from ..extras import require
from ..spec import MobileNetConfig, check_resolution

__all__ = ["convert_keras_layers", "load_keras_h5", "read_keras_h5"]

_BN_ORDER = ("gamma", "beta", "moving_mean", "moving_variance")
_BN_TO_TORCH = {"gamma": "weight", "beta": "bias", "moving_mean": "running_mean", "moving_variance": "running_var"}
_GOOGLE_NAME = re.compile(r"mobilenet_(\d)_(\d+)_(\d+)_tf")
_LAYER = re.compile(r"^(conv1|conv_(dw|pw)_(\d+))(_bn)?$|^conv_preds$")


def _text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _legacy_layers(group: Any) -> dict[str, list[np.ndarray]]:
    layers: dict[str, list[np.ndarray]] = {}
    for name in (_text(n) for n in group.attrs["layer_names"]):
        if not _LAYER.match(name):
            continue
        layer = group[name]
        layers[name] = [np.asarray(layer[_text(w)]) for w in layer.attrs.get("weight_names", [])]
    return layers


def _keras3_layers(group: Any) -> dict[str, list[np.ndarray]]:
    layers: dict[str, list[np.ndarray]] = {}
    for obj in group.values():
        if "vars" not in obj:
            continue
        variables = obj["vars"]
        name = _text(variables.attrs.get("name", ""))
        if _LAYER.match(name):
            layers[name] = [np.asarray(variables[str(i)]) for i in range(len(variables))]
    return layers


def _input_size(h5: Any, path: Path) -> int | None:
    """The input side the model was built for: from its saved config, else from Google's file name."""
    config_text = h5.attrs.get("model_config")
    if config_text is not None:
        try:
            config = json.loads(_text(config_text))
            for layer in config["config"]["layers"]:
                if layer.get("class_name") == "InputLayer":
                    shape = layer["config"].get("batch_shape") or layer["config"].get("batch_input_shape")
                    if shape and shape[1] and shape[1] == shape[2]:
                        return int(shape[1])
        except (ValueError, KeyError, TypeError, IndexError):
            pass
    match = _GOOGLE_NAME.search(path.name)
    return int(match[3]) if match else None


def read_keras_h5(path: str | os.PathLike[str]) -> tuple[dict[str, list[np.ndarray]], int | None]:
    """Layer name → its tensors in Keras order, and the input size if the file tells it."""
    require("h5py", purpose="reading Keras .h5 files")
    import h5py

    path = Path(path)
    try:
        with h5py.File(path, "r") as h5:
            if "layer_names" in h5.attrs:
                layers = _legacy_layers(h5)
            elif "model_weights" in h5 and "layer_names" in h5["model_weights"].attrs:
                layers = _legacy_layers(h5["model_weights"])
            elif "layers" in h5:
                layers = _keras3_layers(h5["layers"])
            else:
                raise WeightsFileError(f"{path}: an HDF5 file, but not Keras weights (no layer_names, model_weights or layers)")
            size = _input_size(h5, path)
    except WeightsFileError:
        raise
    except Exception as exc:  # h5py reports damage as OSError, KeyError, ValueError, ...
        raise WeightsFileError(f"{path}: not a readable Keras .h5 file ({type(exc).__name__}: {exc})") from None
    return layers, size


def _conv_kernel(kernel: np.ndarray, depthwise: bool) -> torch.Tensor:
    # Keras stores HWIO (full conv) and HWC1 (depthwise); PyTorch wants OIHW and C1HW.
    return torch.from_numpy(np.ascontiguousarray(kernel.transpose((2, 3, 0, 1) if depthwise else (3, 2, 0, 1))))


def convert_keras_layers(
    layers: dict[str, list[np.ndarray]], resolution: int | None = None, source: str = "Keras weights"
) -> tuple[dict[str, torch.Tensor], MobileNetConfig]:
    """Keras MobileNet tensors by layer name → our state dict and config."""
    if "conv1" not in layers or "conv_pw_1" not in layers:
        raise WeightsFileError(f"{source}: no conv1 / conv_pw_1 layers; not a keras.applications.MobileNet")
    blocks = sorted({int(m[3]) for name in layers if (m := _LAYER.match(name)) and m[3]})
    if blocks != list(range(1, len(blocks) + 1)) or len(blocks) != 13:
        raise WeightsFileError(f"{source}: has depthwise separable blocks {blocks}; MobileNet v1 has 1..13")
    state: dict[str, torch.Tensor] = {}

    def put(keras_name: str, prefix: str, depthwise: bool = False) -> None:
        tensors = layers.get(keras_name)
        bn = layers.get(keras_name + "_bn")
        if not tensors or not bn or len(bn) != 4:
            raise WeightsFileError(f"{source}: layer {keras_name} or its batch norm is missing or incomplete")
        kernel = tensors[0]
        if kernel.ndim != 4 or kernel.shape[:2] not in ((3, 3), (1, 1)):
            raise WeightsFileError(f"{source}: {keras_name} kernel has shape {kernel.shape}, not a conv kernel")
        if depthwise and kernel.shape[3] != 1:
            raise WeightsFileError(f"{source}: {keras_name} has depth_multiplier {kernel.shape[3]}; only 1 is MobileNet v1")
        state[prefix + ".conv.weight"] = _conv_kernel(kernel, depthwise)
        for key, value in zip(_BN_ORDER, bn):
            state[f"{prefix}.bn.{_BN_TO_TORCH[key]}"] = torch.from_numpy(np.asarray(value, dtype=np.float32))
        state[prefix + ".bn.num_batches_tracked"] = torch.tensor(0)

    put("conv1", "stem")
    for n in blocks:
        put(f"conv_dw_{n}", f"blocks.{n - 1}.dw", depthwise=True)
        put(f"conv_pw_{n}", f"blocks.{n - 1}.pw")
    num_classes = 0
    if "conv_preds" in layers:
        preds = layers["conv_preds"]
        if len(preds) != 2 or preds[0].ndim != 4 or preds[0].shape[:2] != (1, 1):
            raise WeightsFileError(f"{source}: conv_preds is not a 1x1 conv with bias")
        state["classifier.weight"] = torch.from_numpy(np.ascontiguousarray(preds[0][0, 0].T))
        state["classifier.bias"] = torch.from_numpy(np.asarray(preds[1]))
        num_classes = int(preds[0].shape[3])
    width = state[f"blocks.{blocks[-1] - 1}.pw.conv.weight"].shape[0] / 1024
    config = MobileNetConfig(
        width_mult=width,
        resolution=resolution or 224,
        num_classes=num_classes,
        activation="relu6",
        padding="keras",
        bn_eps=1e-3,
        labels="imagenet1000" if num_classes == 1000 else None,
        preprocess="tf",  # the files are TF-slim's checkpoints, evaluated with its inception preprocessing
    )
    return state, config


def load_keras_h5(path: str | os.PathLike[str]) -> tuple[dict[str, torch.Tensor], MobileNetConfig]:
    layers, size = read_keras_h5(path)
    if size is not None:
        try:
            check_resolution(size)
        except ValueError:
            size = None
    return convert_keras_layers(layers, size, str(path))
