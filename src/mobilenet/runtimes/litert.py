"""LiteRT (TF Lite) export, written as a flatbuffer by us, and a LiteRT runner for any .tflite.

Why write the flatbuffer ourselves: Google's converter (litert-torch) is a 300 MB+ install that
pulls in JAX and transformers, while MobileNet v1 needs five builtin ops: CONV_2D,
DEPTHWISE_CONV_2D, PAD, AVERAGE_POOL_2D and RESHAPE. ``ai-edge-litert`` ships the TF Lite schema's
object API (``ModelT``, ``TensorT``, ... ``.Pack()``), which is all a writer needs.

Graph (NHWC, as TF Lite wants): ``images`` (N, H, W, C) → per layer [PAD] → conv with fused
ReLU/ReLU6 → AVERAGE_POOL_2D over the whole map → 1x1 CONV_2D classifier (as Google's files do)
→ RESHAPE to ``logits`` (N, classes). Padding reproduces the model's exactly: where a layer's pads
equal TF's SAME (every stride-1 3x3, and strided ones on TF-padded models) the conv says SAME;
otherwise (PyTorch's symmetric pad on an even map, Keras' fixed (0, 1)) an explicit PAD precedes a
VALID conv.

int8 is full-integer: int8 input, activations and output; int8 weights with one symmetric scale
per output channel (depthwise filters differ too much across channels for one scale); int32
biases at ``input_scale · weight_scale``. Each activation's (scale, zero point) comes from
calibration images (min/max or a percentile of what the float model produces there), or, for
Google's quantized TF Lite weights, from the file's own uint8 ranges (shifted by 128 to int8).
Google's weights with Google's ranges are written in Google's own scheme instead, uint8 with one
scale and zero point per weight tensor (:class:`Uint8GridQuantizer`), and compute exactly what
Google's file computes; int8 per channel would re-round the channels that do not fit it.

The file carries ``mobilenet_config`` (the JSON of :class:`MobileNetConfig`: α, resolution,
classes, labels, preprocessing) in the TF Lite metadata, so ``mobilenet predict``/``eval``/``bench``
take it with no flags.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..checkpoint import CONFIG_KEY, WeightsFileError, atomic_write, config_from_metadata
from ..extras import require
from ..model import MobileNetV1, TFSamePad2d
from ..quantize import calibrate_ranges, channel_scales, conv_units, on_uint8_grid, qparams, uint8_grid, with_input_range
from ..spec import MobileNetConfig
from ..weights.tflite import load_tflite, read_tflite
from .common import check_outputs

__all__ = [
    "LiteRTModel",
    "Uint8GridQuantizer",
    "export_tflite",
    "google_ranges",
    "run_tflite",
    "tflite_config",
    "tflite_input_type",
]


# ---------------------------------------------------------------------------------------------
# The network as a list of TF Lite convolutions


@dataclass
class TFLiteConv:
    name: str  # module path: "stem", "blocks.3.dw", ...
    depthwise: bool
    weight: np.ndarray  # TF Lite layout: OHWI for a conv, 1HWC for a depthwise conv
    bias: np.ndarray
    stride: int
    pads: tuple[int, int, int, int]  # top, bottom, left, right, exactly as the PyTorch module pads
    same: bool  # the pads equal TF's SAME, so the conv can pad itself
    out_size: tuple[int, int]


def _same_pads(size: int, kernel: int, stride: int) -> tuple[int, int]:
    total = max((-(-size // stride) - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def tflite_convs(
    folded: MobileNetV1 | None, size: tuple[int, int], units: Sequence[tuple[str, Any]] | None = None
) -> list[TFLiteConv]:
    """Every conv of a BN-folded model (or the given chain of BN-folded ``units``, as the detector's
    extra layers are) with the pads it applies at input ``size`` (H, W)."""
    h, w = size
    out = []
    for name, unit in units if units is not None else conv_units(folded):  # type: ignore[arg-type]
        conv: nn.Conv2d = unit.conv  # type: ignore[assignment]
        k, s = conv.kernel_size[0], conv.stride[0]
        pad = unit._modules.get("pad")
        if isinstance(pad, TFSamePad2d):
            (top, bottom), (left, right) = pad._pads(h), pad._pads(w)
        elif isinstance(pad, nn.ZeroPad2d):
            left, right, top, bottom = pad.padding  # type: ignore[misc]
        elif pad is None:
            (top, left), (bottom, right) = conv.padding, conv.padding  # type: ignore[misc]
        else:
            raise ValueError(f"{name}: padding module {type(pad).__name__} has no TF Lite form")
        pads = (int(top), int(bottom), int(left), int(right))
        same = pads == (*_same_pads(h, k, s), *_same_pads(w, k, s))
        h, w = (h + top + bottom - k) // s + 1, (w + left + right - k) // s + 1
        weight = conv.weight.detach().float().numpy()
        depthwise = conv.groups > 1
        if depthwise and conv.groups != conv.in_channels:
            raise ValueError(f"{name}: grouped conv with {conv.groups} groups is not depthwise; TF Lite has no such op")
        # PyTorch OIHW → TF Lite OHWI (conv) or 1HWC (depthwise: O = C, I = 1).
        weight = weight.transpose(1, 2, 3, 0) if depthwise else weight.transpose(0, 2, 3, 1)
        bias = conv.bias.detach().float().numpy() if conv.bias is not None else np.zeros(conv.out_channels, np.float32)
        out.append(TFLiteConv(name, depthwise, np.ascontiguousarray(weight), bias, s, pads, same, (h, w)))
    return out


# ---------------------------------------------------------------------------------------------
# Activation ranges given as uint8 (scale, zero point): Google's files' own, or a QAT run's


def google_ranges(uint8_ranges: dict[str, tuple[float, int]]) -> dict[str, tuple[float, int]]:
    """uint8 (scale, zero point) per activation, in the form Google's files give them, as int8:
    the same scale, zero point - 128, with the input's [-1, 1] mapping (1/128, 128) added unless
    the ranges carry their own (a QAT run's do). Keys as :func:`mobilenet.quantize.calibrate_ranges`.

    Ranges read from an int8 file (one we wrote, brought back as weights) are int8 already: there
    a ReLU's output has zero point -128, which no uint8 file has, and they are kept as they are."""
    ranges, lowest = with_input_range(uint8_ranges)
    shift = 128 + lowest  # 0 for int8 ranges
    return {k: (scale, zero - shift) for k, (scale, zero) in ranges.items()}


# ---------------------------------------------------------------------------------------------
# Flatbuffer writing


class TFLiteGraph:
    """A one-subgraph TF Lite model under construction (the schema's object API)."""

    def __init__(self) -> None:
        from ai_edge_litert import schema_py_generated as schema

        self.s = schema
        self.model = schema.ModelT()
        self.model.version = 3
        self.model.description = "MobileNet v1 (mobilenet)"
        self.model.buffers = [schema.BufferT()]  # buffer 0 is the schema's empty sentinel
        self.model.operatorCodes = []
        self.model.metadata = []
        self.sub = schema.SubGraphT()
        self.sub.tensors, self.sub.operators, self.sub.name = [], [], "main"
        self._codes: dict[int, int] = {}

    def buffer(self, data: bytes) -> int:
        b = self.s.BufferT()
        b.data = np.frombuffer(data, dtype=np.uint8)
        self.model.buffers.append(b)
        return len(self.model.buffers) - 1

    def tensor(
        self,
        name: str,
        shape: Sequence[int],
        dtype: int,
        data: np.ndarray | None = None,
        quant: tuple[Sequence[float], Sequence[int], int] | None = None,
        batch_free: bool = False,
    ) -> int:
        t = self.s.TensorT()
        t.name, t.type = name, dtype
        t.shape = np.array(shape, dtype=np.int32)
        if batch_free:  # the first dimension may be resized by the runtime
            t.shapeSignature = np.array([-1, *shape[1:]], dtype=np.int32)
        t.buffer = self.buffer(np.ascontiguousarray(data).tobytes()) if data is not None else 0
        if quant is not None:
            q = self.s.QuantizationParametersT()
            q.scale = np.asarray(quant[0], dtype=np.float32)
            q.zeroPoint = np.asarray(quant[1], dtype=np.int64)
            q.quantizedDimension = quant[2]
            t.quantization = q
        self.sub.tensors.append(t)
        return len(self.sub.tensors) - 1

    def op(
        self, code: int, version: int, inputs: list[int], outputs: list[int], options_type: int = 0, options: Any = None
    ) -> None:
        if code not in self._codes:
            oc = self.s.OperatorCodeT()
            oc.builtinCode, oc.deprecatedBuiltinCode, oc.version = code, min(code, 127), version
            self.model.operatorCodes.append(oc)
            self._codes[code] = len(self.model.operatorCodes) - 1
        op = self.s.OperatorT()
        op.opcodeIndex = self._codes[code]
        op.inputs, op.outputs = np.array(inputs, dtype=np.int32), np.array(outputs, dtype=np.int32)
        op.builtinOptionsType, op.builtinOptions = options_type, options
        self.sub.operators.append(op)

    def metadata(self, name: str, data: bytes) -> None:
        m = self.s.MetadataT()
        m.name, m.buffer = name, self.buffer(data)
        self.model.metadata.append(m)

    def serialize(self, inputs: list[int], outputs: list[int]) -> bytes:
        import flatbuffers

        self.sub.inputs, self.sub.outputs = np.array(inputs, dtype=np.int32), np.array(outputs, dtype=np.int32)
        self.model.subgraphs = [self.sub]
        builder = flatbuffers.Builder(1 << 20)
        builder.Finish(self.model.Pack(builder), file_identifier=b"TFL3")
        return bytes(builder.Output())


class Int8Quantizer:
    """int8 tensors for a graph: activations from ranges, weights per channel (or per tensor)."""

    tensor_type = "INT8"
    conv_version, op_version = 3, 2  # int8 per-channel convs are version 3, the other int8 ops 2

    def __init__(self, ranges: dict[str, tuple[float, Any]], *, per_channel: bool, fixed: bool) -> None:
        # fixed: ranges are already (scale, zero point) in int8 (Google's); else (low, high) floats
        self.ranges, self.per_channel, self.fixed = ranges, per_channel, fixed

    def activation(self, key: str) -> tuple[float, int]:
        if key not in self.ranges:
            raise ValueError(f"no int8 range for activation {key!r}; the ranges do not come from this model")
        a, b = self.ranges[key]
        return (float(a), int(b)) if self.fixed else qparams(float(a), float(b))

    def weight(
        self, w: np.ndarray, axis: int, bias: np.ndarray, in_scale: float
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """int8 weight, its per-channel scales and zero points (0), and the int32 bias at
        in_scale · weight_scale."""
        # int8 holds -128 too: the channel holding Google's zero point's far end still fits.
        scale = channel_scales(w, axis, qmax=127, qmin=-128, per_channel=self.per_channel)
        # A scale must be positive, and the bias must fit in int32 at in_scale · scale.
        scale = np.maximum(scale, np.abs(bias) / (in_scale * 2**30))
        scale = np.where(scale > 0, scale, 1.0)
        view = [1] * w.ndim
        view[axis] = -1
        q = np.clip(np.round(w / scale.reshape(view)), -128, 127).astype(np.int8)
        qbias = np.round(bias / (in_scale * scale)).astype(np.int32)
        return q, scale.astype(np.float32), np.zeros(len(scale), np.int64), qbias


class Uint8GridQuantizer(Int8Quantizer):
    """Google's own arithmetic, for weights that are a uint8 file's (Google's quantized
    MobileNets): uint8 tensors, each weight tensor on the grid it already lies on (one scale and
    zero point per tensor, :func:`mobilenet.quantize.uint8_grid`), activations at the file's own
    uint8 (scale, zero point). Nothing is rounded again, so the file computes what Google's does.

    Why not int8: TF Lite's int8 weights are symmetric, and a uint8 tensor's zero point leaves
    about one channel a layer spanning e.g. [-204, 51] steps; rounding those onto a coarser grid
    cost our int8 files 1-4 points of top-1 agreement with float against Google's file.
    """

    tensor_type = "UINT8"
    conv_version, op_version = 1, 1

    def __init__(self, ranges: dict[str, tuple[float, int]]) -> None:
        super().__init__(with_input_range(ranges)[0], per_channel=False, fixed=True)

    def weight(
        self, w: np.ndarray, axis: int, bias: np.ndarray, in_scale: float
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        grid = uint8_grid(w)
        if grid is None:
            raise ValueError("weights off a uint8 grid cannot keep Google's arithmetic; export with int8 ranges instead")
        step, zero = grid
        q = (np.round(w / step) + zero).astype(np.uint8)
        qbias = np.round(bias / (in_scale * step)).astype(np.int32)
        return q, np.array([step], np.float32), np.array([zero], np.int64), qbias


class TFLiteOps:
    """Adds tensors and conv ops to a graph, in float or (with a quantizer) int8."""

    def __init__(self, g: TFLiteGraph, quantizer: Int8Quantizer | None, *, batch_free: bool = True) -> None:
        self.g, self.s, self.quantizer, self.batch_free = g, g.s, quantizer, batch_free
        self.qv = quantizer.conv_version if quantizer else 1
        self.op_version = quantizer.op_version if quantizer else 1  # PAD, pool, concatenation
        self.qtype = getattr(g.s.TensorType, quantizer.tensor_type) if quantizer else g.s.TensorType.FLOAT32

    def activation(self, name: str, shape: Sequence[int], key: str) -> tuple[int, float]:
        """A float tensor, or an 8-bit one with the range of activation ``key``; and its scale."""
        g, s, quantizer = self.g, self.s, self.quantizer
        if quantizer is None:
            return g.tensor(name, shape, s.TensorType.FLOAT32, batch_free=self.batch_free), 1.0
        scale, zero = quantizer.activation(key)
        return g.tensor(name, shape, self.qtype, quant=([scale], [zero], 0), batch_free=self.batch_free), scale

    def padded_conv(
        self, x: int, x_scale: float, key: str, shape: Sequence[int], c: TFLiteConv, act: int, out_key: str | None = None
    ) -> tuple[int, float, list[int]]:
        """[PAD →] conv ``c`` on ``x`` (of ``shape``, activation ``key``); returns the output tensor,
        its scale and shape. The output's range is ``out_key``'s (default: the conv's own name)."""
        g, s = self.g, self.s
        if not c.same:
            top, bottom, left, right = c.pads
            pads = np.array([[0, 0], [top, bottom], [left, right], [0, 0]], dtype=np.int32)
            p = g.tensor(f"{c.name}.paddings", pads.shape, s.TensorType.INT32, pads)
            padded_shape = [shape[0], shape[1] + top + bottom, shape[2] + left + right, shape[3]]
            # A PAD keeps its input's quantization, so its zeros are the input's zero point: exact 0.0.
            padded, _ = self.activation(f"{c.name}.padded", padded_shape, key)
            g.op(s.BuiltinOperator.PAD, self.op_version, [x, p], [padded], s.BuiltinOptions.PadOptions, s.PadOptionsT())
            x = padded
        out_key = out_key or c.name
        y, y_scale = self.conv(x, x_scale, key, c, out_key, act, c.name)
        return y, y_scale, [shape[0], *c.out_size, c.weight.shape[3 if c.depthwise else 0]]

    def conv(
        self, src: int, src_scale: float, src_key: str, c: TFLiteConv, out_key: str, act: int, out_name: str
    ) -> tuple[int, float]:
        g, s, quantizer, qv = self.g, self.s, self.quantizer, self.qv
        f32, i32 = s.TensorType.FLOAT32, s.TensorType.INT32
        axis = 3 if c.depthwise else 0
        channels = c.weight.shape[axis]
        out, out_scale = self.activation(out_name, [1, *c.out_size, channels], out_key)
        if quantizer is None:
            w = g.tensor(f"{c.name}.weight", c.weight.shape, f32, c.weight.astype(np.float32))
            b = g.tensor(f"{c.name}.bias", c.bias.shape, f32, c.bias.astype(np.float32))
        else:
            qw, wscale, wzero, qb = quantizer.weight(c.weight, axis, c.bias, src_scale)
            w = g.tensor(f"{c.name}.weight", qw.shape, self.qtype, qw, quant=(wscale, wzero, axis if len(wscale) > 1 else 0))
            b = g.tensor(f"{c.name}.bias", qb.shape, i32, qb, quant=(wscale * np.float32(src_scale), [0] * len(wscale), 0))
        padding = s.Padding.SAME if c.same else s.Padding.VALID
        if c.depthwise:
            opts = s.DepthwiseConv2DOptionsT()
            opts.padding, opts.strideH, opts.strideW, opts.depthMultiplier = padding, c.stride, c.stride, 1
            opts.dilationWFactor = opts.dilationHFactor = 1
            opts.fusedActivationFunction = act
            g.op(s.BuiltinOperator.DEPTHWISE_CONV_2D, qv, [src, w, b], [out], s.BuiltinOptions.DepthwiseConv2DOptions, opts)
        else:
            opts = s.Conv2DOptionsT()
            opts.padding, opts.strideH, opts.strideW = padding, c.stride, c.stride
            opts.dilationWFactor = opts.dilationHFactor = 1
            opts.fusedActivationFunction = act
            g.op(s.BuiltinOperator.CONV_2D, qv, [src, w, b], [out], s.BuiltinOptions.Conv2DOptions, opts)
        return out, out_scale


def _build(
    folded: MobileNetV1,
    size: tuple[int, int],
    convs: Sequence[TFLiteConv],
    quantizer: Int8Quantizer | None,
    config_json: str,
) -> bytes:
    g = TFLiteGraph()
    s = g.s
    ops = TFLiteOps(g, quantizer)
    config = folded.config
    fused = s.ActivationFunctionType.RELU6 if config.activation == "relu6" else s.ActivationFunctionType.RELU

    h, w = size
    x, x_scale = ops.activation("images", [1, h, w, config.in_chans], "input")
    inputs = [x]
    key = "input"
    shape = [1, h, w, config.in_chans]
    for c in convs:
        x, x_scale, shape = ops.padded_conv(x, x_scale, key, shape, c, fused)
        key = c.name
    logits = _head(ops, folded, x, x_scale, key, shape)
    g.metadata(CONFIG_KEY, config_json.encode())
    g.metadata("min_runtime_version", b"2.3.0")
    return g.serialize(inputs, [logits])


def _head(ops: TFLiteOps, folded: MobileNetV1, x: int, x_scale: float, key: str, shape: list[int]) -> int:
    """The global pool, the 1x1-conv classifier and the reshape to ``logits``; returns that tensor."""
    g, s, config = ops.g, ops.s, folded.config
    i32 = s.TensorType.INT32
    # Global average pool. int8 AVERAGE_POOL_2D keeps its input's quantization (TF Lite requires it).
    pool_opts = s.Pool2DOptionsT()
    pool_opts.padding, pool_opts.strideH, pool_opts.strideW = s.Padding.VALID, 1, 1
    pool_opts.filterHeight, pool_opts.filterWidth = shape[1], shape[2]
    pooled, _ = ops.activation("global_pool", [1, 1, 1, shape[3]], key)
    g.op(s.BuiltinOperator.AVERAGE_POOL_2D, ops.op_version, [x], [pooled], s.BuiltinOptions.Pool2DOptions, pool_opts)
    x, channels = pooled, shape[3]
    if config.num_classes > 0:
        fc: nn.Linear = folded.classifier  # type: ignore[assignment]
        weight = fc.weight.detach().float().numpy().reshape(config.num_classes, 1, 1, channels)
        head = TFLiteConv("classifier", False, weight, fc.bias.detach().float().numpy(), 1, (0, 0, 0, 0), True, (1, 1))
        x, _ = ops.conv(x, x_scale, key, head, "classifier", s.ActivationFunctionType.NONE, "classifier")
        key, channels = "classifier", config.num_classes
    new_shape = np.array([-1, channels], dtype=np.int32)
    shape_tensor = g.tensor("logits.shape", [2], i32, new_shape)
    logits, _ = ops.activation("logits", [1, channels], key)
    reshape_opts = s.ReshapeOptionsT()
    reshape_opts.newShape = new_shape
    g.op(s.BuiltinOperator.RESHAPE, 1, [x, shape_tensor], [logits], s.BuiltinOptions.ReshapeOptions, reshape_opts)
    return logits


def export_tflite(
    model: MobileNetV1,
    path: str | os.PathLike[str],
    *,
    resolution: int | None = None,
    int8: bool = False,
    calibration: Iterable[Tensor] | None = None,
    calibration_method: str = "minmax",
    activation_ranges: dict[str, tuple[float, int]] | None = None,
    per_channel: bool = True,
    keep_grid: bool = True,
) -> Path:
    """Writes ``model`` (BN is folded here) as a .tflite file, fp32 or full-integer int8.

    int8 takes its activation ranges from ``activation_ranges`` when given: uint8 (scale, zero
    point) by module path, those of Google's quantized files or those a ``--qat`` run learned
    (:func:`mobilenet.export.stored_activation_ranges`); otherwise from ``calibration`` batches
    (``calibration_method``: ``minmax`` or ``percentile``). ``per_channel=False`` gives one weight
    scale per tensor (worse; for comparison).

    Weights that are a uint8 file's (Google's quantized MobileNets, imported), exported with that
    file's own ranges, keep Google's arithmetic: the file is uint8 inside, as Google's is, and
    computes what Google's computes (:class:`Uint8GridQuantizer`); ``keep_grid=False`` writes
    int8 with per-channel weights instead, re-rounding the channels that do not fit int8.
    """
    require("ai_edge_litert", purpose="TF Lite export")
    from ..model import fold_batchnorm

    config = getattr(model, "config", None)
    if not isinstance(model, MobileNetV1) or not isinstance(config, MobileNetConfig):
        raise TypeError(f"TF Lite export takes a MobileNetV1, got {type(model).__name__}")
    size = resolution or config.resolution
    folded = fold_batchnorm(model)
    convs = tflite_convs(folded, (size, size))
    quantizer = None
    if int8:
        if activation_ranges is not None:  # the ranges the weights were trained with win
            weights = [c.weight for c in convs]
            if folded.config.num_classes > 0:
                weights.append(folded.classifier.weight.detach().float().numpy())  # type: ignore[union-attr]
            if keep_grid and per_channel and on_uint8_grid(weights, activation_ranges):
                quantizer = Uint8GridQuantizer(activation_ranges)
            else:
                quantizer = Int8Quantizer(google_ranges(activation_ranges), per_channel=per_channel, fixed=True)
        elif calibration is not None:
            ranges = calibrate_ranges(folded, calibration, method=calibration_method)
            quantizer = Int8Quantizer(ranges, per_channel=per_channel, fixed=False)  # type: ignore[arg-type]
        else:
            raise ValueError(
                "tflite-int8 needs calibration images: pass --calibration DIR (a few hundred images like the real inputs)"
            )
    config_json = json.dumps(config.replace(resolution=size).to_dict())
    data = _build(folded, (size, size), convs, quantizer, config_json)

    def write(tmp: str) -> None:
        Path(tmp).write_bytes(data)

    return atomic_write(path, write)


# ---------------------------------------------------------------------------------------------
# Reading and running


def tflite_metadata(path: str | os.PathLike[str], name: str) -> bytes | None:
    """The bytes of a .tflite file's metadata entry ``name`` (where our exports keep their config), or None."""
    require("ai_edge_litert", purpose="reading TF Lite metadata")
    from ai_edge_litert import schema_py_generated as schema

    buf = Path(path).read_bytes()
    if len(buf) < 8 or buf[4:8] != b"TFL3":
        raise WeightsFileError(f"{path}: not a TF Lite flatbuffer (no TFL3 identifier)")
    model = schema.Model.GetRootAs(buf, 0)
    for i in range(model.MetadataLength()):
        meta = model.Metadata(i)
        if meta.Name() and meta.Name().decode() == name:
            return bytes(model.Buffers(meta.Buffer()).DataAsNumpy())
    return None


def tflite_input_type(path: str | os.PathLike[str]) -> str:
    """The element type of a .tflite graph's first input, lower case: ``float32``, ``int8``, ``uint8``."""
    require("ai_edge_litert", purpose="reading a .tflite file")
    from ai_edge_litert import schema_py_generated as schema

    model = schema.Model.GetRootAs(Path(path).read_bytes(), 0)
    graph = model.Subgraphs(0)
    code = graph.Tensors(graph.Inputs(0)).Type()
    names = {v: k for k, v in vars(schema.TensorType).items() if not k.startswith("_")}
    return names[code].lower()


def tflite_config(path: str | os.PathLike[str]) -> MobileNetConfig | None:
    """The config a .tflite file was exported with by us, or None (someone else's file)."""
    data = tflite_metadata(path, CONFIG_KEY)
    return None if data is None else config_from_metadata(data.decode(errors="replace"), path)


def _output_size(path: Path) -> int | None:
    """The last dimension of a .tflite graph's first output, from the flatbuffer."""
    from ai_edge_litert import schema_py_generated as schema

    model = schema.Model.GetRootAs(path.read_bytes(), 0)
    graph = model.Subgraphs(0)
    shape = graph.Tensors(graph.Outputs(0)).ShapeAsNumpy()
    return int(shape[-1]) if not isinstance(shape, int) and len(shape) else None


class LiteRTModel:
    """One .tflite file (or Google's extractor + head pair, run in turn) in LiteRT's Interpreter,
    behind the interface ``predict``/``evaluate`` use: ``config``, ``eval()``, NCHW images → logits.

    Quantized inputs are quantized with the file's own (scale, zero point), quantized outputs
    dequantized, so callers always pass and get floats. The batch dimension is resized where the
    graph allows (ours do); otherwise each image is run in turn.
    """

    backend = "litert"

    def __init__(self, paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]], *, threads: int | None = None) -> None:
        require("ai_edge_litert", purpose="running a .tflite file")
        self.paths = [Path(p) for p in ([paths] if isinstance(paths, (str, os.PathLike)) else paths)]
        for p in self.paths:
            if not p.is_file():
                raise FileNotFoundError(f"TF Lite file {str(p)!r} does not exist")
        config = tflite_config(self.paths[0]) if len(self.paths) == 1 else None
        if config is not None:  # ours: the config it carries must be the graph's
            check_outputs(config, _output_size(self.paths[0]), self.paths[0])
        else:  # Google's files: the importer knows their config
            graphs = sorted((read_tflite(p) for p in self.paths), key=lambda g: -(g.input_shape[1] if g.input_shape else 0))
            self.paths = [g.path for g in graphs]  # the extractor first
            config = load_tflite(self.paths)[1]
        self.config = config
        self.threads = threads
        self._stages: list[Any] = []
        self._batch = 0
        self._probabilities = False

    def eval(self) -> LiteRTModel:
        return self

    def with_threads(self, threads: int) -> LiteRTModel:
        return LiteRTModel(self.paths, threads=threads)

    def _interpreters(self, batch: int) -> None:
        from ai_edge_litert.interpreter import Interpreter

        stages = []
        for p in self.paths:
            it = Interpreter(model_path=str(p), num_threads=self.threads)
            detail = it.get_input_details()[0]
            if batch != detail["shape"][0]:
                it.resize_tensor_input(detail["index"], [batch, *detail["shape"][1:]])
            it.allocate_tensors()
            stages.append(it)
        self._stages, self._batch = stages, batch
        # Google's files end in SOFTMAX: they return probabilities, and callers expect logits.
        self._probabilities = "SOFTMAX" in {op["op_name"] for op in stages[-1]._get_ops_details()}

    def _run(self, x: np.ndarray) -> np.ndarray:
        for it in self._stages:
            detail = it.get_input_details()[0]
            if detail["dtype"] != np.float32 and x.dtype == np.float32:
                scale, zero = detail["quantization"]
                info = np.iinfo(detail["dtype"])
                x = np.clip(np.round(x / scale) + zero, info.min, info.max).astype(detail["dtype"])
            it.set_tensor(detail["index"], np.ascontiguousarray(x.reshape(detail["shape"])))
            it.invoke()
            out = it.get_output_details()[0]
            x = it.get_tensor(out["index"])
        x = x.reshape(x.shape[0], -1)
        if x.dtype != np.float32:
            scale, zero = out["quantization"]
            x = ((x.astype(np.float32) - zero) * scale).astype(np.float32)
        if self._probabilities:  # log-probabilities are logits: softmax gives the same probabilities back
            x = np.log(np.maximum(x, 1e-12)).astype(np.float32)
        return x

    def __call__(self, x: Tensor) -> Tensor:
        # NCHW float → NHWC, the layout TF Lite graphs take.
        images = np.ascontiguousarray(x.detach().float().cpu().numpy().transpose(0, 2, 3, 1))
        n = images.shape[0]
        if n != self._batch:
            try:
                self._interpreters(n)
            except (RuntimeError, ValueError):  # a graph with a fixed batch (Google's split head)
                self._interpreters(1)
        if self._batch == n:
            return torch.from_numpy(self._run(images))
        return torch.from_numpy(np.concatenate([self._run(images[i : i + 1]) for i in range(n)]))


def run_tflite(paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]], *, threads: int | None = None) -> LiteRTModel:
    """TF Lite file(s) in LiteRT: a callable with the model's config (ours carry it)."""
    return LiteRTModel(paths, threads=threads)
