"""Google's TF Lite MobileNet v1 files → our state dict (float32, uint8 or int8 quantized).

The flatbuffer is parsed with the ``tflite`` schema package. The convolutions are taken in graph
order (CONV_2D, DEPTHWISE_CONV_2D, ..., the 1x1-conv classifier) and matched one to one against
the layers of our spec, by kind and shape. Quantized weights and biases are dequantized with
their own scales and zero points (per tensor or per channel). Batch norm is already folded into
these files, so each BN layer is loaded as an identity: scale 1, shift = the folded bias, running
mean 0, running variance ``1 - eps`` (so that ``sqrt(var + eps) == 1`` exactly).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..checkpoint import WeightsFileError
from ..extras import require
from ..spec import MobileNetConfig, build_layers

__all__ = ["DETECTION_POSTPROCESS", "TFLiteGraph", "activation_quantization", "check_split_pair", "load_tflite", "read_tflite"]

#: The custom op that ends Google's TF Lite SSD detectors: a file holding it is a detector, not a classifier.
DETECTION_POSTPROCESS = "TFLite_Detection_PostProcess"
_NUMPY_TYPES = {0: np.float32, 1: np.float16, 2: np.int32, 3: np.uint8, 9: np.int8}


class _Conv:
    def __init__(self, kind: str, weight: np.ndarray, bias: np.ndarray, stride: int, padding: str, activation: str) -> None:
        self.kind, self.weight, self.bias, self.stride, self.padding, self.activation = (
            kind,
            weight,
            bias,
            stride,
            padding,
            activation,
        )
        self.output_quant: tuple[float, int] | None = None  # (scale, zero point) of the op's uint8 output
        # Graph wiring, for networks that branch (a detector's heads read several feature maps).
        self.input_index = -1
        self.output_index = -1
        self.output_name = ""


def _output_quant(graph: Any, op: Any) -> tuple[float, int] | None:
    q = graph.Tensors(int(op.OutputsAsNumpy()[0])).Quantization()
    if q is None or q.ScaleLength() != 1:
        return None
    return float(q.ScaleAsNumpy()[0]), int(q.ZeroPointAsNumpy()[0]) if q.ZeroPointLength() else 0


class TFLiteGraph:
    """The parts of a MobileNet v1 TF Lite file we use: its convs, input size and quantization."""

    def __init__(self, convs: list[_Conv], input_shape: tuple[int, ...] | None, path: Path, quantized: bool) -> None:
        self.convs, self.input_shape, self.path, self.quantized = convs, input_shape, path, quantized
        self.pool_quant: tuple[float, int] | None = None
        #: Custom ops in graph order: (custom code, input tensor indices, raw options bytes).
        self.custom_ops: list[tuple[str, list[int], bytes]] = []
        #: (scale, zero point) of the graph's input, when it is quantized.
        self.input_quant: tuple[float, int] | None = None


def _fail(path: Path, message: str) -> WeightsFileError:
    return WeightsFileError(f"{path}: {message}")


def _tensor_values(model: Any, graph: Any, index: int, path: Path) -> np.ndarray:
    t = graph.Tensors(index)
    dtype = _NUMPY_TYPES.get(t.Type())
    if dtype is None:
        raise _fail(path, f"tensor {index} has unsupported type {t.Type()}")
    raw = model.Buffers(t.Buffer()).DataAsNumpy()
    if isinstance(raw, int) or raw is None or raw.size == 0:
        raise _fail(path, f"tensor {index} ({t.Name().decode(errors='replace')}) has no constant data")
    shape = tuple(int(s) for s in t.ShapeAsNumpy())
    values = np.frombuffer(raw.tobytes(), dtype=dtype)
    if values.size != int(np.prod(shape)):
        raise _fail(path, f"tensor {index} holds {values.size} values for shape {shape}: the file is corrupt")
    values = values.reshape(shape).astype(np.float64 if dtype != np.float32 else np.float32)
    q = t.Quantization()
    if dtype in (np.uint8, np.int8, np.int32) and q is not None and q.ScaleLength() > 0:
        scale = q.ScaleAsNumpy().astype(np.float64)
        zero = q.ZeroPointAsNumpy().astype(np.float64) if q.ZeroPointLength() else np.zeros_like(scale)
        if scale.size > 1:  # per channel, along the quantized dimension
            axis = q.QuantizedDimension()
            view = [1] * values.ndim
            view[axis] = scale.size
            scale, zero = scale.reshape(view), zero.reshape(view)
        values = (values - zero) * scale
    elif dtype != np.float32 and dtype != np.float16:
        raise _fail(path, f"tensor {index} is integer but carries no quantization scale")
    return values.astype(np.float32)


def read_tflite(path: str | os.PathLike[str]) -> TFLiteGraph:
    """Parses one TF Lite file into its list of convolutions (dequantized, in TF layouts)."""
    require("tflite", purpose="reading TF Lite files")
    import tflite

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"TF Lite file {str(path)!r} does not exist")
    buf = path.read_bytes()
    if len(buf) < 8 or buf[4:8] != b"TFL3":
        raise _fail(path, "not a TF Lite flatbuffer (no TFL3 identifier)")
    names = {v: k for k, v in vars(tflite.BuiltinOperator).items() if not k.startswith("_")}
    try:
        model = tflite.Model.GetRootAsModel(buf, 0)
        if model.SubgraphsLength() != 1:
            raise _fail(path, f"has {model.SubgraphsLength()} subgraphs; MobileNet v1 files have one")
        graph = model.Subgraphs(0)
        input_shape = tuple(int(s) for s in graph.Tensors(graph.Inputs(0)).ShapeAsNumpy())
        convs, quantized, pool_quant, custom_ops = [], False, None, []
        for i in range(graph.OperatorsLength()):
            op = graph.Operators(i)
            code_entry = model.OperatorCodes(op.OpcodeIndex())
            name = names.get(max(code_entry.BuiltinCode(), code_entry.DeprecatedBuiltinCode()), "?")
            if name == "AVERAGE_POOL_2D":
                pool_quant = _output_quant(graph, op)
            if name == "CUSTOM":
                code = (code_entry.CustomCode() or b"").decode(errors="replace")
                raw_options = op.CustomOptionsAsNumpy()
                options = b"" if isinstance(raw_options, int) else bytes(raw_options.tobytes())
                custom_ops.append((code, [int(j) for j in op.InputsAsNumpy()], options))
            if name not in ("CONV_2D", "DEPTHWISE_CONV_2D"):
                continue
            options_table = op.BuiltinOptions()
            opts = tflite.Conv2DOptions() if name == "CONV_2D" else tflite.DepthwiseConv2DOptions()
            opts.Init(options_table.Bytes, options_table.Pos)
            ins = op.InputsAsNumpy()
            quantized = quantized or graph.Tensors(int(ins[1])).Type() in (3, 9)
            weight = _tensor_values(model, graph, int(ins[1]), path)
            bias = (
                _tensor_values(model, graph, int(ins[2]), path)
                if len(ins) > 2 and ins[2] >= 0
                else np.zeros(weight.shape[0 if name == "CONV_2D" else 3], np.float32)
            )
            act = {0: "none", 1: "relu", 3: "relu6"}.get(opts.FusedActivationFunction(), "other")
            convs.append(
                _Conv(
                    "dw" if name == "DEPTHWISE_CONV_2D" else "conv",
                    weight,
                    bias,
                    int(opts.StrideH()),
                    "tf" if opts.Padding() == tflite.Padding.SAME else "valid",
                    act,
                )
            )
            convs[-1].output_quant = _output_quant(graph, op)
            convs[-1].input_index, convs[-1].output_index = int(ins[0]), int(op.OutputsAsNumpy()[0])
            convs[-1].output_name = graph.Tensors(convs[-1].output_index).Name().decode(errors="replace")
        input_q = graph.Tensors(graph.Inputs(0)).Quantization()
        input_quant = (
            (float(input_q.ScaleAsNumpy()[0]), int(input_q.ZeroPointAsNumpy()[0]) if input_q.ZeroPointLength() else 0)
            if input_q is not None and input_q.ScaleLength() == 1
            else None
        )
    except WeightsFileError:
        raise
    except Exception as exc:  # the flatbuffer reader raises anything on corrupt offsets
        raise _fail(path, f"corrupt or unreadable TF Lite file ({type(exc).__name__}: {exc})") from None
    result = TFLiteGraph(convs, input_shape, path, quantized)
    result.pool_quant = pool_quant
    result.custom_ops = custom_ops
    result.input_quant = input_quant
    return result


def load_tflite(
    paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
) -> tuple[dict[str, torch.Tensor], MobileNetConfig]:
    """One whole-network file, or the 1.0-224 extractor and head files together (any order)."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    graphs = [read_tflite(p) for p in paths]
    _check_file_set(graphs)  # every reader of TF Lite files (weights, LiteRT) comes through here
    # The extractor takes the image; the head takes a 1x1 feature map.
    graphs.sort(key=lambda g: -(g.input_shape[1] if g.input_shape and len(g.input_shape) == 4 else 0))
    convs = [c for g in graphs for c in g.convs]
    where = " + ".join(str(g.path) for g in graphs)
    if any(code == DETECTION_POSTPROCESS for g in graphs for code, _, _ in g.custom_ops):
        raise WeightsFileError(
            f"{where} is an object detector (it ends in {DETECTION_POSTPROCESS}), not a classifier; "
            "use `mobilenet detect` / `mobilenet eval --data ANNOTATIONS.json`, or mobilenet.ssd_mobilenet_v1(weights=...)"
        )
    if len(convs) < 3 or convs[0].kind != "conv" or convs[0].weight.shape[-1] != 3:
        raise WeightsFileError(f"{where}: not a MobileNet v1 network (no 3x3 RGB stem conv first)")
    last_pw = [c for c in convs if c.kind == "conv" and c.weight.shape[1:3] == (1, 1)]
    has_head = bool(last_pw) and convs[-1] is last_pw[-1] and len(convs) % 2 == 0
    body_out = (convs[-2] if has_head else convs[-1]).weight.shape[0]
    width_mult = body_out / 1024
    num_classes = convs[-1].weight.shape[0] if has_head else 0
    resolution = int(graphs[0].input_shape[1]) if graphs[0].input_shape else 224
    acts = {c.activation for c in (convs[:-1] if has_head else convs)}
    if acts - {"relu6", "relu"} or len(acts) != 1:
        raise WeightsFileError(f"{where}: activations {sorted(acts)} are not MobileNet v1's ReLU6/ReLU")
    try:
        config = MobileNetConfig(
            width_mult=width_mult,
            resolution=resolution,
            num_classes=num_classes,
            activation=acts.pop(),
            padding="tf" if convs[0].padding == "tf" else "symmetric",
            labels="imagenet1001" if num_classes == 1001 else None,
            preprocess="tf",  # TF-slim's inception preprocessing, with which Google measured these models
        )
    except ValueError as exc:
        raise WeightsFileError(f"{where}: not a MobileNet v1 network ({exc})") from None
    layers = build_layers(config)
    # Graph order must be Table 1's: stem, (dw, pw) pairs, then the 1x1-conv classifier.
    found = ["dw" if c.kind == "dw" else "conv" if c.weight.shape[1] == 3 else "pw" for c in convs]
    if num_classes:
        found[-1] = "fc"
    if found != [layer.kind for layer in layers]:
        raise WeightsFileError(f"{where}: its {len(convs)} convolutions do not follow MobileNet v1's Table 1 (α={width_mult:g})")
    state: dict[str, torch.Tensor] = {}
    eps = config.bn_eps
    for layer, conv in zip(layers, convs):
        if layer.kind == "dw":
            weight = torch.from_numpy(conv.weight.copy()).permute(3, 0, 1, 2)  # [1, kh, kw, C] -> [C, 1, kh, kw]
        else:
            weight = torch.from_numpy(conv.weight.copy()).permute(0, 3, 1, 2)  # [O, kh, kw, I] -> [O, I, kh, kw]
        want = (layer.out_channels, layer.in_channels // layer.groups, layer.kernel, layer.kernel)
        if layer.kind == "fc":
            want = (layer.out_channels, layer.in_channels, 1, 1)
        if tuple(weight.shape) != want or (conv.stride != layer.stride and layer.kind != "fc"):
            raise WeightsFileError(
                f"{where}: layer {layer.name} has weight {tuple(weight.shape)} stride {conv.stride}; "
                f"MobileNet v1 α={width_mult:g} needs {want} stride {layer.stride}"
            )
        bias = torch.from_numpy(conv.bias.copy()).float()
        if layer.kind == "fc":
            state["classifier.weight"] = weight.reshape(layer.out_channels, layer.in_channels).contiguous()
            state["classifier.bias"] = bias
            continue
        prefix = layer.module.rsplit(".", 1)[0]  # e.g. blocks.3.dw
        state[f"{prefix}.conv.weight"] = weight.contiguous()
        state[f"{prefix}.bn.weight"] = torch.ones(layer.out_channels)
        state[f"{prefix}.bn.bias"] = bias
        state[f"{prefix}.bn.running_mean"] = torch.zeros(layer.out_channels)
        state[f"{prefix}.bn.running_var"] = torch.full((layer.out_channels,), 1.0 - eps)
        state[f"{prefix}.bn.num_batches_tracked"] = torch.tensor(0)
    return state, config


def activation_quantization(paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]]) -> dict[str, tuple[float, int]]:
    """(scale, zero point) of each uint8 activation in a quantized file, by our module path:
    ``stem``, ``blocks.3.dw``, ``blocks.3.pw``, ..., ``global_pool``, ``classifier``.

    With these, a float model can emulate the integer runtime's rounding layer by layer, which is
    how the tests show that an import is exact rather than merely close.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    graphs = sorted(
        (read_tflite(p) for p in paths), key=lambda g: -(g.input_shape[1] if g.input_shape and len(g.input_shape) == 4 else 0)
    )
    _, config = load_tflite(paths)
    convs = [c for g in graphs for c in g.convs]
    out = {}
    for layer, conv in zip(build_layers(config), convs):
        if conv.output_quant is not None:
            key = "classifier" if layer.kind == "fc" else layer.module.rsplit(".", 1)[0]
            out[key] = conv.output_quant
    pools = [g.pool_quant for g in graphs if g.pool_quant is not None]
    if pools:
        out["global_pool"] = pools[0]
    return out


def _takes_image(graph: TFLiteGraph) -> bool:
    shape = graph.input_shape or ()
    return len(shape) == 4 and shape[1] > 1 and shape[-1] == 3


def _check_file_set(graphs: Sequence[TFLiteGraph]) -> None:
    """A TF Lite model is one file that takes an image, or Google's split pair: the
    embedding_extractor (it takes the image) and the head_layers (it takes its features)."""
    names = ", ".join(str(g.path) for g in graphs)
    pair = "Google's split model (its embedding_extractor and head_layers files)"
    if len(graphs) > 2:
        raise WeightsFileError(
            f"{names}: got {len(graphs)} TF Lite files; a model is one file, or the two of {pair}. Pass one at a time"
        )
    roles = ["an image (a whole network or an extractor)" if _takes_image(g) else "features (a head)" for g in graphs]
    if len(graphs) == 1 and not _takes_image(graphs[0]):
        shape = "x".join(map(str, graphs[0].input_shape or ()))
        raise WeightsFileError(
            f"{names}: takes features ({shape}), not an image: it is the head_layers half of {pair}; "
            "pass it together with its embedding_extractor file"
        )
    if len(graphs) == 2 and roles[0] == roles[1]:
        raise WeightsFileError(
            "weights: expected the embedding_extractor and the head_layers file of Google's split TF Lite model; "
            f"both {names} take {roles[0]}. A TF Lite model is one file: pass one"
        )


def check_split_pair(paths: Sequence[str | os.PathLike[str]]) -> None:
    """Two files must be the embedding extractor (it takes an image) and the head (it takes features)."""
    _check_file_set([read_tflite(p) for p in paths])
