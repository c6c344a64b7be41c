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
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..checkpoint import DETECTOR_CONFIG_KEY, atomic_write
from ..weights.tflite import DETECTION_POSTPROCESS
from .model import SSDMobileNetV1
from .spec import BOX_RANGE, CLASS_RANGE, SOURCE_BLOCKS

__all__ = ["DETECTOR_EXPORTS", "calibrate_detector", "detector_calibration_images", "export_detector", "export_detector_tflite"]


def detector_units(folded: SSDMobileNetV1) -> list[tuple[str, nn.Module]]:
    """The detector's conv units in graph order by module path: the backbone's (``backbone.stem``,
    ``backbone.blocks.3.dw``, ...) and the extra layers' (``extras.0.0``, ...). The heads are not units."""
    from ..quantize import conv_units

    units = [(f"backbone.{name}", unit) for name, unit in conv_units(folded.backbone)]  # type: ignore[arg-type]
    return units + [(f"extras.{i}.{j}", unit) for i, block in enumerate(folded.extras) for j, unit in enumerate(block)]


@torch.inference_mode()
def calibrate_detector(folded: SSDMobileNetV1, images: Iterable[Tensor]) -> dict[str, tuple[float, float]]:
    """(low, high) of every activation the int8 detector stores, seen on uint8 ``images`` (3, S, S):
    each unit's output (after its activation), and one range for all box heads and one for all class heads."""
    seen: dict[str, tuple[float, float]] = {}

    def record(key: str) -> Any:
        def hook(_module: nn.Module, _inputs: Any, out: Tensor) -> None:
            low, high = float(out.min()), float(out.max())
            old = seen.get(key, (low, high))
            seen[key] = (min(old[0], low), max(old[1], high))

        return hook

    handles = [unit.register_forward_hook(record(name)) for name, unit in detector_units(folded)]
    handles += [head.register_forward_hook(record(BOX_RANGE)) for head in folded.box_heads]
    handles += [head.register_forward_hook(record(CLASS_RANGE)) for head in folded.class_heads]
    config = folded.config
    try:
        for image in images:
            folded((image[None].float() - config.mean) / config.std)
    finally:
        for h in handles:
            h.remove()
    if not seen:
        raise ValueError("int8 calibration needs at least one image")
    return seen


def export_detector_tflite(
    model: SSDMobileNetV1,
    path: str | os.PathLike[str],
    *,
    int8: bool = False,
    ranges: dict[str, tuple[float, float]] | None = None,
) -> Path:
    """Writes ``model`` as a TF Lite SSD ending in ``TFLite_Detection_PostProcess``: float32, or with
    ``int8`` full-integer convolutions (per-channel int8 weights; activation ``ranges`` as
    :func:`calibrate_detector` gives them, or Google's file's own). Either way the input is uint8
    and the four outputs are float, as in Google's files."""
    from ..extras import require
    from ..model import fold_batchnorm
    from ..quantize import qparams
    from ..runtimes.litert import Int8Quantizer, TFLiteGraph, TFLiteOps

    require("ai_edge_litert", purpose="exporting a detector to TF Lite")
    config = model.config
    if float(int(config.mean)) != config.mean or not 0 <= config.mean <= 255:
        raise ValueError(f"mean={config.mean}: a uint8 input needs an integer zero point in 0..255")
    quantizer = None
    if int8:
        if ranges is None:
            raise ValueError("an int8 detector needs activation ranges: calibration images, or a quantized file's own")
        # The uint8 image becomes int8 by a shift of its zero point: exact.
        fixed: dict[str, tuple[float, Any]] = {"input": (1 / config.std, int(config.mean) - 128)}
        fixed.update({key: qparams(low, high) for key, (low, high) in ranges.items()})
        quantizer = Int8Quantizer(fixed, per_channel=True, fixed=True)
    g = TFLiteGraph()
    g.model.description = "SSD MobileNet v1 (mobilenet)"
    ops = TFLiteOps(g, quantizer, batch_free=False)
    image, codes, logits = _detector_body(ops, fold_batchnorm(model))  # type: ignore[arg-type]
    outs = _postprocess_op(ops, model, codes, logits)
    g.metadata(DETECTOR_CONFIG_KEY, json.dumps(config.to_dict()).encode())
    g.metadata("min_runtime_version", b"1.14.0")
    data = g.serialize([image], outs)
    return atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))


def _detector_body(ops: Any, folded: SSDMobileNetV1) -> tuple[int, int, int]:
    """uint8 image → [int8] convs → heads, reshaped and concatenated in our anchor order; returns the
    image tensor, the float box codes (1, A, 4) and the class logits (1, A, C)."""
    from ..runtimes.litert import TFLiteConv, tflite_convs

    g, s, config = ops.g, ops.s, folded.config
    size = config.resolution
    f32, u8 = s.TensorType.FLOAT32, s.TensorType.UINT8
    relu = s.ActivationFunctionType.RELU6 if config.activation == "relu6" else s.ActivationFunctionType.RELU
    image = g.tensor("normalized_input_image_tensor", [1, size, size, 3], u8, quant=([1 / config.std], [int(config.mean)], 0))
    shape = [1, size, size, 3]
    x, x_scale = ops.activation("preprocessed", shape, "input")
    if ops.quantizer is None:
        g.op(s.BuiltinOperator.DEQUANTIZE, 1, [image], [x])
    else:
        g.op(s.BuiltinOperator.QUANTIZE, 2, [image], [x])
    key, maps = "input", []
    sources = {f"backbone.blocks.{i}.pw" for i in SOURCE_BLOCKS}
    units = detector_units(folded)
    backbone = [u for u in units if u[0].startswith("backbone.")]
    convs = tflite_convs(None, (size, size), backbone)
    convs += tflite_convs(None, convs[-1].out_size, [u for u in units if not u[0].startswith("backbone.")])
    for c in convs:
        x, x_scale, shape = ops.padded_conv(x, x_scale, key, shape, c, relu)
        key = c.name
        if c.name in sources or (c.name.startswith("extras.") and c.name.endswith(".1")):
            maps.append((x, x_scale, key, shape))
    parts: dict[str, list[int]] = {BOX_RANGE: [], CLASS_RANGE: []}
    for i, (m, m_scale, m_key, m_shape) in enumerate(maps):
        for kind, head, width in ((BOX_RANGE, folded.box_heads[i], 4), (CLASS_RANGE, folded.class_heads[i], config.num_classes)):
            weight = head.weight.detach().float().numpy().transpose(0, 2, 3, 1)
            k = head.kernel_size[0]
            c = TFLiteConv(
                f"{kind}.{i}",
                False,
                np.ascontiguousarray(weight),
                head.bias.detach().float().numpy(),
                1,
                (k // 2,) * 4,
                True,
                tuple(m_shape[1:3]),
            )
            out, _, out_shape = ops.padded_conv(m, m_scale, m_key, m_shape, c, s.ActivationFunctionType.NONE, kind)
            count = out_shape[1] * out_shape[2] * out_shape[3] // width
            new_shape = np.array([1, count, width], dtype=np.int32)
            shape_tensor = g.tensor(f"{kind}.{i}.shape", [3], s.TensorType.INT32, new_shape)
            flat, _ = ops.activation(f"{kind}.{i}.flat", [1, count, width], kind)
            opts = s.ReshapeOptionsT()
            opts.newShape = new_shape
            g.op(s.BuiltinOperator.RESHAPE, 1, [out, shape_tensor], [flat], s.BuiltinOptions.ReshapeOptions, opts)
            parts[kind].append(flat)
    total = int(folded.anchors().shape[0])
    outputs = []
    for kind, name, width in (
        (BOX_RANGE, "raw_outputs/box_encodings", 4),
        (CLASS_RANGE, "raw_outputs/class_logits", config.num_classes),
    ):
        joined, _ = ops.activation(f"{kind}.concat" if ops.quantizer else name, [1, total, width], kind)
        opts = s.ConcatenationOptionsT()
        opts.axis = 1
        g.op(
            s.BuiltinOperator.CONCATENATION,
            ops.op_version,
            parts[kind],
            [joined],
            s.BuiltinOptions.ConcatenationOptions,
            opts,
        )
        if ops.quantizer:  # the post-processing reads floats: one DEQUANTIZE of 1917 x C values
            flat = g.tensor(name, [1, total, width], f32)
            g.op(s.BuiltinOperator.DEQUANTIZE, 2, [joined], [flat])
            joined = flat
        outputs.append(joined)
    return image, outputs[0], outputs[1]


def _postprocess_op(ops: Any, model: SSDMobileNetV1, box_codes: int, class_logits: int) -> list[int]:
    """LOGISTIC on the class logits, the anchors as a constant, and ``TFLite_Detection_PostProcess``
    with the model's options; returns its four outputs (boxes, classes, scores, count)."""
    from flatbuffers import flexbuffers

    g, s, config = ops.g, ops.s, model.config
    f32 = s.TensorType.FLOAT32
    anchors = model.anchors().numpy().astype(np.float32)
    total = anchors.shape[0]
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
    return outs


#: What a detector exports as: Google's phone format (float, or int8 inside with the same uint8 input
#: and float outputs), and ONNX and ExecuTorch ending at the raw outputs (our runner decodes them).
DETECTOR_EXPORTS = ("tflite", "tflite-int8", "onnx", "pte", "pte-int8")


def detector_calibration_images(source: str | os.PathLike[str], size: int, count: int = 256) -> list[Tensor]:
    """Up to ``count`` uint8 images (3, size, size), spread evenly over ``source``: box data (a COCO
    instances JSON or a Pascal VOC root: its training photos) or any folder of images. Unreadable
    photos are skipped with a warning, as training skips them."""
    import warnings

    from ..data import list_images
    from .data import is_detection_data, load_input, training_photos

    path = Path(source)
    if is_detection_data(path):
        files = [str(f) for f in training_photos(path)]
    elif path.is_dir():
        listing = list_images(path)
        listing.warn(path)
        files = listing.files
    else:
        raise ValueError(
            f"--calibration {str(path)!r}: pass the training photos (a Pascal VOC root, a COCO instances JSON) or a folder of images"
        )
    if not files:
        raise ValueError(f"--calibration {str(path)!r} holds no images")
    picked = [files[round(i * len(files) / min(count, len(files)))] for i in range(min(count, len(files)))]
    images = []
    for f in picked:
        try:
            images.append(load_input(f, size)[0])
        except ValueError as exc:
            warnings.warn(f"calibration: skipped {exc}", stacklevel=2)
    if not images:
        raise ValueError(f"--calibration {str(path)!r}: none of its images could be read")
    return images


def _write(
    model: SSDMobileNetV1, out: Path, fmt: str, weights: Path, calibration: list[Tensor] | None
) -> tuple[Path, str | None]:
    """Writes the export; returns its path and where int8 ranges came from (None for float)."""
    from ..export import export_format
    from ..model import fold_batchnorm

    kind, int8, _, _ = export_format(fmt)
    folded = fold_batchnorm(model)
    size = model.config.resolution
    source = None
    if kind.name == "tflite":
        ranges = None
        if int8 and calibration is not None:
            ranges, source = calibrate_detector(folded, calibration), f"calibrated on {len(calibration)} images"  # type: ignore[arg-type]
        elif int8:
            from .tflite_import import detector_activation_ranges

            stored = detector_activation_ranges(weights) if kind.name == (_format_name(weights) or "") else None
            if stored is None:
                raise ValueError(_needs_calibration(fmt))
            ranges, source = stored, "the TF Lite file's own"
        return export_detector_tflite(model, out, int8=int8, ranges=ranges), source
    scaled = None
    if int8:
        if calibration is None:
            raise ValueError(_needs_calibration(fmt))
        scaled = [((image[None].float() - model.config.mean) / model.config.std) for image in calibration]
        source = f"calibrated on {len(calibration)} images"
    example = torch.zeros(1, 3, size, size)
    constants = {DETECTOR_CONFIG_KEY: json.dumps(model.config.to_dict())}
    if kind.name == "onnx":
        from ..runtimes.onnxruntime import export_onnx

        names = ("box_codes", "class_logits")
        return export_onnx(folded, out, dynamic_batch=True, example=example, output_names=names, metadata=constants), source
    from ..runtimes.executorch import lower_to_pte

    return lower_to_pte(folded, out, example, constants, int8=int8, calibration=scaled), source


def _format_name(path: Path) -> str | None:
    from ..formats import format_of

    f = format_of(path)
    return f.name if f is not None else None


def _needs_calibration(fmt: str) -> str:
    return (
        f"--format {fmt} needs calibration photos: pass --calibration with the training photos (a Pascal VOC root, "
        "a COCO instances JSON) or a folder of images like the real inputs"
    )


def _check(model: SSDMobileNetV1, path: Path, int8: bool, images: list[Tensor] | None) -> str:
    """Runs the export in its runtime beside PyTorch; raises when a float export differs, and
    returns what was measured as a phrase."""
    from torchvision.ops import box_iou

    from .runtime import TorchDetector, open_detector

    size = model.config.resolution
    if images:
        x = torch.stack(images[:4])
    else:
        x = torch.randint(0, 256, (1, 3, size, size), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    theirs, ours = open_detector(path), TorchDetector(model)
    (tc, tl), (oc, ol) = theirs.raw(x), ours.raw(x)
    code_diff, logit_diff = float((tc - oc).abs().max()), float((tl - ol).abs().max())
    mine = ours.detections(x, model.config.postprocess)
    found = theirs.detections(x, model.config.postprocess)
    if hasattr(theirs, "own"):  # the file's own post-processing op is what apps run
        found = theirs.own(x)
    if not int8:
        same = all(
            a["labels"].tolist() == b["labels"].tolist() and torch.allclose(a["boxes"], b["boxes"], atol=1e-3)
            for a, b in zip(found, mine)
        )
        if not (code_diff <= 1e-3 and logit_diff <= 1e-3 and same):  # NaN fails too
            raise RuntimeError(
                f"{path} disagrees with PyTorch (box codes {code_diff:.2g}, logits {logit_diff:.2g}, detections "
                f"{'same' if same else 'differ'}); please report this"
            )
        return f"box codes within {code_diff:.1g}, logits within {logit_diff:.1g}, the same detections"
    if not (np.isfinite(code_diff) and np.isfinite(logit_diff)):
        raise RuntimeError(f"{path} computes NaN or infinity; please report this")
    confident = [(a["boxes"][a["scores"] >= 0.5], a["labels"][a["scores"] >= 0.5]) for a in mine]
    total = sum(len(b) for b, _ in confident)
    kept = 0
    for (boxes, labels), b in zip(confident, found):
        if len(boxes) and len(b["boxes"]):
            iou = box_iou(boxes, b["boxes"]) * (labels[:, None] == b["labels"][None, :])
            kept += int((iou.max(1).values >= 0.5).sum())
    where = f"{len(x)} calibration photos" if images else "a random image"
    found_note = f"{kept} of PyTorch's {total} detections scoring >= 0.5 found (same label, IoU >= 0.5); " if total else ""
    return f"on {where}: {found_note}largest difference in logits {logit_diff:.2g}, box codes {code_diff:.2g}"


def export_detector(
    weights: str | os.PathLike[str],
    output: str | os.PathLike[str] | None = None,
    fmt: str = "tflite",
    *,
    calibration: str | os.PathLike[str] | None = None,
    calibration_images: int = 256,
) -> tuple[Path, str]:
    """``mobilenet export`` for a detector (``fmt`` one of :data:`DETECTOR_EXPORTS`): the file,
    checked in its runtime against PyTorch; returns (path, a summary line).

    int8 takes its activation ranges from ``calibration`` (the training photos: a VOC root, a COCO
    JSON, or a folder of images; ``calibration_images`` of them) or, for tflite-int8 of a quantized
    TF Lite detector (Google's detect.tflite), from the file itself."""
    from ..export import export_format
    from .weights import load_detector

    if fmt not in DETECTOR_EXPORTS:
        raise ValueError(
            f"--format {fmt}: a detector exports as {', '.join(DETECTOR_EXPORTS)} (tflite: Google's detect.tflite "
            "interface, uint8 input and TFLite_Detection_PostProcess's four outputs; onnx and pte end at the raw outputs)"
        )
    _, int8, suffixes, default = export_format(fmt)
    out = Path(output) if output is not None else Path(Path(weights).stem + default)
    if out.suffix.lower() not in suffixes:
        raise ValueError(f"--output {str(out)!r}: a {fmt} file ends in {' or '.join(suffixes)}")
    if out.resolve() == Path(weights).resolve():
        raise ValueError(f"--output {str(out)!r} is the weights file itself; pass another name")
    model = load_detector(weights)
    c = model.config
    images = detector_calibration_images(calibration, c.resolution, calibration_images) if calibration is not None else None
    path, source = _write(model, out, fmt, Path(weights), images)
    try:
        checked = _check(model, path, int8, images)
    except BaseException:
        path.unlink(missing_ok=True)  # a file that failed its check is not left behind as if it were good
        raise
    labels_note = ""
    if _format_name(path) == "tflite":
        # Apps that load Google's file read its labelmap.txt: "???" for background, then a class a line.
        labels = path.with_suffix(".labelmap.txt")
        text = "\n".join(["???", *c.names[1:]]) + "\n"
        atomic_write(labels, lambda tmp: Path(tmp).write_text(text))
        labels_note = f"; labels in {labels}"
    io = (
        f"{c.resolution}x{c.resolution} uint8 input, TFLite_Detection_PostProcess ({c.postprocess.max_detections} detections)"
        if _format_name(path) == "tflite"
        else f"input (N, 3, {c.resolution}, {c.resolution}) scaled as (x - {c.mean:g}) / {c.std:g}, raw box codes and class logits"
    )
    ranges = f"; int8 ranges: {source}" if source else ""
    return path, (
        f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB): SSD MobileNet v1 α={c.width_mult:g}, {c.num_classes - 1} class{'es' * (c.num_classes != 2)} "
        f"({', '.join(c.names[1:4])}{', ...' if c.num_classes > 4 else ''}), {io}{ranges}; checked against PyTorch: {checked}{labels_note}"
    )
