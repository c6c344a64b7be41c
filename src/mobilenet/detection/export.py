"""A detector as a TF Lite file that phone apps load the way they load Google's detect.tflite.

The file has Google's interface: one uint8 input ``normalized_input_image_tensor`` [1, S, S, 3]
(scale 1/128, zero point 128, so the graph sees ``(x - 128) / 128`` as our model does), and the
four float outputs of ``TFLite_Detection_PostProcess``: boxes [1, K, 4] (ymin, xmin, ymax, xmax,
normalized), classes [1, K] (0-based, background excluded), scores [1, K] and the count [1].
In between: DEQUANTIZE, the BN-folded convolutions (float32), the heads reshaped and
concatenated in our anchor order, a LOGISTIC on the class logits, and the anchors as a constant.
Apps that read Google's file (TF Lite's object detection examples, MediaPipe's ObjectDetector)
read this one the same way; our own importer reads it back (:mod:`.tflite_import`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from ..checkpoint import DETECTOR_CONFIG_KEY, atomic_write
from ..weights.tflite import DETECTION_POSTPROCESS
from .model import SSDMobileNetV1
from .spec import SOURCE_BLOCKS

__all__ = ["export_detector", "export_detector_tflite"]


def export_detector_tflite(model: SSDMobileNetV1, path: str | os.PathLike[str]) -> Path:
    """Writes ``model`` as a float32 TF Lite SSD ending in ``TFLite_Detection_PostProcess``."""
    from flatbuffers import flexbuffers

    from ..extras import require
    from ..model import fold_batchnorm
    from ..runtimes.litert import _Conv, _convs, _Graph

    require("ai_edge_litert", purpose="exporting a detector to TF Lite")
    folded = fold_batchnorm(model)  # type: ignore[arg-type]
    config = model.config
    size = config.resolution
    g = _Graph()
    s = g.s
    f32, u8, i32 = s.TensorType.FLOAT32, s.TensorType.UINT8, s.TensorType.INT32
    relu = s.ActivationFunctionType.RELU6 if config.activation == "relu6" else s.ActivationFunctionType.RELU
    g.model.description = "SSD MobileNet v1 (mobilenet)"

    shapes: dict[int, list[int]] = {}

    def conv(src: int, c: _Conv, act: int) -> int:
        channels = c.weight.shape[3 if c.depthwise else 0]
        out = g.tensor(c.name, [1, *c.out_size, channels], f32)
        shapes[out] = [1, *c.out_size, channels]
        w = g.tensor(f"{c.name}.weight", c.weight.shape, f32, c.weight.astype(np.float32))
        b = g.tensor(f"{c.name}.bias", c.bias.shape, f32, c.bias.astype(np.float32))
        if not c.same:
            top, bottom, left, right = c.pads
            pads = np.array([[0, 0], [top, bottom], [left, right], [0, 0]], dtype=np.int32)
            p = g.tensor(f"{c.name}.paddings", pads.shape, i32, pads)
            n, h, w, ch = shapes[src]
            padded = g.tensor(f"{c.name}.padded", [n, h + top + bottom, w + left + right, ch], f32)
            g.op(s.BuiltinOperator.PAD, 1, [src, p], [padded], s.BuiltinOptions.PadOptions, s.PadOptionsT())
            src = padded
        padding = s.Padding.SAME if c.same else s.Padding.VALID
        if c.depthwise:
            opts = s.DepthwiseConv2DOptionsT()
            opts.padding, opts.strideH, opts.strideW, opts.depthMultiplier = padding, c.stride, c.stride, 1
            opts.dilationWFactor = opts.dilationHFactor = 1
            opts.fusedActivationFunction = act
            g.op(s.BuiltinOperator.DEPTHWISE_CONV_2D, 1, [src, w, b], [out], s.BuiltinOptions.DepthwiseConv2DOptions, opts)
        else:
            opts = s.Conv2DOptionsT()
            opts.padding, opts.strideH, opts.strideW = padding, c.stride, c.stride
            opts.dilationWFactor = opts.dilationHFactor = 1
            opts.fusedActivationFunction = act
            g.op(s.BuiltinOperator.CONV_2D, 1, [src, w, b], [out], s.BuiltinOptions.Conv2DOptions, opts)
        return out

    image = g.tensor("normalized_input_image_tensor", [1, size, size, 3], u8, quant=([1 / config.std], [int(config.mean)], 0))
    if float(int(config.mean)) != config.mean or not 0 <= config.mean <= 255:
        raise ValueError(f"mean={config.mean}: a uint8 input needs an integer zero point in 0..255")
    x = g.tensor("preprocessed", [1, size, size, 3], f32)
    shapes[x] = [1, size, size, 3]
    g.op(s.BuiltinOperator.DEQUANTIZE, 1, [image], [x])
    maps = []
    sources = {f"blocks.{i}.pw" for i in SOURCE_BLOCKS}
    for c in _convs(folded.backbone, (size, size)):
        x = conv(x, c, relu)
        if c.name in sources:
            maps.append((x, c.out_size))
    side = maps[-1][1]
    units = [(f"extras.{i}.{j}", unit) for i, block in enumerate(folded.extras) for j, unit in enumerate(block)]
    for c in _convs(None, side, units):
        x = conv(x, c, relu)
        if c.name.endswith(".1"):
            maps.append((x, c.out_size))
    codes, logits = [], []
    for i, (m, hw) in enumerate(maps):
        for kind, head, width, bucket in (
            ("box", folded.box_heads[i], 4, codes),
            ("class", folded.class_heads[i], config.num_classes, logits),
        ):
            weight = head.weight.detach().float().numpy().transpose(0, 2, 3, 1)
            bias = head.bias.detach().float().numpy()
            k = head.kernel_size[0]
            c = _Conv(f"{kind}_head.{i}", False, np.ascontiguousarray(weight), bias, 1, (k // 2,) * 4, True, hw)
            out = conv(m, c, s.ActivationFunctionType.NONE)
            count = hw[0] * hw[1] * head.out_channels // width
            new_shape = np.array([1, count, width], dtype=np.int32)
            shape_tensor = g.tensor(f"{kind}_head.{i}.shape", [3], i32, new_shape)
            flat = g.tensor(f"{kind}_head.{i}.flat", [1, count, width], f32)
            opts = s.ReshapeOptionsT()
            opts.newShape = new_shape
            g.op(s.BuiltinOperator.RESHAPE, 1, [out, shape_tensor], [flat], s.BuiltinOptions.ReshapeOptions, opts)
            bucket.append((flat, count))
    anchors = model.anchors().numpy().astype(np.float32)
    total = anchors.shape[0]

    def concat(parts: list[tuple[int, int]], name: str, width: int) -> int:
        out = g.tensor(name, [1, total, width], f32)
        opts = s.ConcatenationOptionsT()
        opts.axis = 1
        g.op(s.BuiltinOperator.CONCATENATION, 1, [p for p, _ in parts], [out], s.BuiltinOptions.ConcatenationOptions, opts)
        return out

    box_codes = concat(codes, "raw_outputs/box_encodings", 4)
    class_logits = concat(logits, "raw_outputs/class_logits", config.num_classes)
    scores = g.tensor("raw_outputs/class_predictions", [1, total, config.num_classes], f32)
    g.op(s.BuiltinOperator.LOGISTIC, 1, [class_logits], [scores])
    anchor_tensor = g.tensor("anchors", [total, 4], f32, anchors)

    pp = config.postprocess
    max_det = pp.max_detections
    options = {
        "max_detections": max_det,
        "max_classes_per_detection": 1,
        "detections_per_class": pp.max_per_class,
        "use_regular_nms": not pp.class_agnostic,
        "nms_score_threshold": float(pp.score_threshold),
        "nms_iou_threshold": float(pp.iou_threshold),
        "num_classes": config.num_classes - 1,
        "y_scale": config.box_scales[0],
        "x_scale": config.box_scales[1],
        "h_scale": config.box_scales[2],
        "w_scale": config.box_scales[3],
    }
    outs = [
        g.tensor("TFLite_Detection_PostProcess", [1, max_det, 4], f32),
        g.tensor("TFLite_Detection_PostProcess:1", [1, max_det], f32),
        g.tensor("TFLite_Detection_PostProcess:2", [1, max_det], f32),
        g.tensor("TFLite_Detection_PostProcess:3", [1], f32),
    ]
    code = s.OperatorCodeT()
    code.builtinCode = code.deprecatedBuiltinCode = s.BuiltinOperator.CUSTOM
    code.customCode, code.version = DETECTION_POSTPROCESS, 1
    g.model.operatorCodes.append(code)
    op = s.OperatorT()
    op.opcodeIndex = len(g.model.operatorCodes) - 1
    op.inputs = np.array([box_codes, scores, anchor_tensor], dtype=np.int32)
    op.outputs = np.array(outs, dtype=np.int32)
    op.customOptions = np.frombuffer(bytes(flexbuffers.Dumps(options)), dtype=np.uint8)
    op.customOptionsFormat = s.CustomOptionsFormat.FLEXBUFFERS
    g.sub.operators.append(op)
    g.metadata(DETECTOR_CONFIG_KEY, json.dumps(config.to_dict()).encode())
    g.metadata("min_runtime_version", b"1.14.0")
    data = g.serialize([image], outs)
    return atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))


def export_detector(
    weights: str | os.PathLike[str], output: str | os.PathLike[str] | None = None, fmt: str = "tflite"
) -> tuple[Path, str]:
    """``mobilenet export`` for a detector: the TF Lite file, checked in LiteRT against PyTorch on
    one photo-sized random image (raw box codes and logits, and the detections); returns (path, a
    summary line)."""
    import torch

    from .runtime import LiteRTDetector, TorchDetector
    from .weights import load_detector

    if fmt != "tflite":
        raise ValueError(
            f"--format {fmt}: a detector exports as --format tflite (float32, Google's detect.tflite interface: "
            "uint8 input, TFLite_Detection_PostProcess's four outputs); the other formats are for classifiers"
        )
    out = Path(output) if output is not None else Path(Path(weights).stem + ".tflite")
    if out.suffix.lower() != ".tflite":
        raise ValueError(f"--output {str(out)!r}: a TF Lite file ends in .tflite")
    if out.resolve() == Path(weights).resolve():
        raise ValueError(f"--output {str(out)!r} is the weights file itself; pass another name")
    model = load_detector(weights)
    path = export_detector_tflite(model, out)
    size = model.config.resolution
    x = torch.randint(0, 256, (1, 3, size, size), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    lite, ours = LiteRTDetector(path), TorchDetector(model)
    (lc, ll), (oc, ol) = lite.raw(x), ours.raw(x)
    code_diff, logit_diff = float((lc - oc).abs().max()), float((ll - ol).abs().max())
    own, mine = lite.detections(x, own=True)[0], ours.detections(x, model.config.postprocess)[0]
    same = own["labels"].tolist() == mine["labels"].tolist() and torch.allclose(own["boxes"], mine["boxes"], atol=1e-3)
    if code_diff > 1e-3 or logit_diff > 1e-3 or not same:
        raise RuntimeError(
            f"{path} disagrees with PyTorch in LiteRT (box codes {code_diff:.2g}, logits {logit_diff:.2g}, detections "
            f"{'same' if same else 'differ'}); please report this"
        )
    c = model.config
    # Apps that load Google's file read its labelmap.txt: "???" for background, then a class a line.
    labels = path.with_suffix(".labelmap.txt")
    text = "\n".join(["???", *c.names[1:]]) + "\n"
    atomic_write(labels, lambda tmp: Path(tmp).write_text(text))
    return path, (
        f"wrote {path}: SSD MobileNet v1 α={c.width_mult:g}, {size}x{size} uint8 input, {c.num_classes - 1} classes "
        f"({', '.join(c.names[1:4])}{', ...' if c.num_classes > 4 else ''}), TFLite_Detection_PostProcess "
        f"({c.postprocess.max_detections} detections); checked in LiteRT: box codes within {code_diff:.1g}, "
        f"logits within {logit_diff:.1g}, the file's own post-processing gives our detections; labels in {labels}"
    )
