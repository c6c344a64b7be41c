"""TF Lite SSD MobileNet v1 files (Google's ``detect.tflite`` and any of its layout) → (state, config).

The convolutions come from :func:`mobilenet.weights.tflite.read_tflite` in graph order: the 27 of
the backbone (Table 1 up to conv13), the 8 of the extra blocks, then the heads. Each head is told
apart by the feature map it reads (graph wiring, not order) and box from class by its output
width (4 per anchor). The rest of the config is read from the file too: the input's
quantization gives the preprocessing, ``TFLite_Detection_PostProcess``'s options give the box
scales and the file's own post-processing, and its anchor constant is checked against our
generator. Batch norm is folded in these files, so each BN is loaded as an exact identity, as the
classifier importer does.

Quantized files show ReLU6 only as an output range of [0, 6] (no fused activation), so that range
counts as ReLU6.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..checkpoint import WeightsFileError
from ..spec import build_layers
from ..weights.tflite import DETECTION_POSTPROCESS, read_tflite
from .anchors import ssd_anchors
from .spec import BOX_RANGE, CLASS_RANGE, COCO_NAMES, AnchorConfig, DetectorConfig, PostProcessConfig, extra_depths

__all__ = ["is_tflite_detector", "load_detector_tflite", "postprocess_options", "sigmoid_input"]

#: Backbone convs: stem + 13 dw/pw pairs. conv11's and conv13's pointwise outputs feed the heads.
_BACKBONE_CONVS = 27
_SOURCE_CONVS = (22, 26)


def is_tflite_detector(path: str | os.PathLike[str]) -> bool:
    """Whether a .tflite file ends in TF Lite's detection post-processing op."""
    return any(code == DETECTION_POSTPROCESS for code, _, _ in read_tflite(path).custom_ops)


def postprocess_options(options: bytes) -> dict[str, Any]:
    """The flexbuffer map of ``TFLite_Detection_PostProcess``'s custom options."""
    from flatbuffers import flexbuffers

    try:
        values = flexbuffers.Loads(options)
    except Exception as exc:  # the flexbuffer reader raises anything on bad bytes
        raise ValueError(f"unreadable {DETECTION_POSTPROCESS} options ({type(exc).__name__}: {exc})") from None
    if not isinstance(values, dict):
        raise ValueError(f"{DETECTION_POSTPROCESS} options are not a map")
    return values


def sigmoid_input(path: str | os.PathLike[str], scores: int) -> int | None:
    """The input tensor of the LOGISTIC op that writes tensor ``scores`` (the class logits), if any."""
    import tflite

    model = tflite.Model.GetRootAsModel(Path(path).read_bytes(), 0)
    graph = model.Subgraphs(0)
    for i in range(graph.OperatorsLength()):
        op = graph.Operators(i)
        code = model.OperatorCodes(op.OpcodeIndex())
        if (
            max(code.BuiltinCode(), code.DeprecatedBuiltinCode()) == tflite.BuiltinOperator.LOGISTIC
            and int(op.OutputsAsNumpy()[0]) == scores
        ):
            return int(op.InputsAsNumpy()[0])
    return None


def _activation(conv: Any, where: str) -> str:
    if conv.activation in ("relu6", "relu"):
        return conv.activation
    if conv.activation == "none" and conv.output_quant is not None:
        scale, zero = conv.output_quant
        low, high = -zero * scale, (255 - zero) * scale
        if abs(low) < 1e-6 and abs(high - 6.0) < 0.05:
            return "relu6"
    raise WeightsFileError(f"{where}: conv {conv.output_name!r} has activation {conv.activation!r}; SSD MobileNet v1 uses ReLU6")


def _constant(path: Path, index: int) -> np.ndarray:
    """A constant tensor of the file, dequantized (the anchors)."""
    import tflite

    model = tflite.Model.GetRootAsModel(path.read_bytes(), 0)
    tensor = model.Subgraphs(0).Tensors(index)
    raw = model.Buffers(tensor.Buffer()).DataAsNumpy()
    if isinstance(raw, int) or raw.size == 0:
        raise WeightsFileError(f"{path}: tensor {tensor.Name().decode(errors='replace')!r} has no constant data")
    dtype = {0: np.float32, 3: np.uint8, 9: np.int8}.get(tensor.Type())
    if dtype is None:
        raise WeightsFileError(f"{path}: anchor tensor has unsupported type {tensor.Type()}")
    values = np.frombuffer(raw.tobytes(), dtype=dtype).reshape(tuple(int(s) for s in tensor.ShapeAsNumpy())).astype(np.float64)
    q = tensor.Quantization()
    if dtype != np.float32 and q is not None and q.ScaleLength():
        values = (values - float(q.ZeroPointAsNumpy()[0])) * float(q.ScaleAsNumpy()[0])
    return values


def _conv_state(prefix: str, conv: Any, eps: float, *, bn: bool = True) -> dict[str, torch.Tensor]:
    if conv.kind == "dw":
        weight = torch.from_numpy(conv.weight.copy()).permute(3, 0, 1, 2)  # [1, kh, kw, C] -> [C, 1, kh, kw]
    else:
        weight = torch.from_numpy(conv.weight.copy()).permute(0, 3, 1, 2)  # [O, kh, kw, I] -> [O, I, kh, kw]
    bias = torch.from_numpy(conv.bias.copy()).float()
    if not bn:
        return {f"{prefix}.weight": weight.contiguous(), f"{prefix}.bias": bias}
    out = weight.shape[0]
    return {
        f"{prefix}.conv.weight": weight.contiguous(),
        f"{prefix}.bn.weight": torch.ones(out),
        f"{prefix}.bn.bias": bias,
        f"{prefix}.bn.running_mean": torch.zeros(out),
        f"{prefix}.bn.running_var": torch.full((out,), 1.0 - eps),
        f"{prefix}.bn.num_batches_tracked": torch.tensor(0),
    }


def _postprocess_op(path: Path, graph: Any) -> tuple[list[int], dict[str, Any]]:
    """The inputs of the file's ``TFLite_Detection_PostProcess`` op and its options; a file
    without one is a classifier (or something else), refused with a sentence saying so."""
    posts = [op for op in graph.custom_ops if op[0] == DETECTION_POSTPROCESS]
    if not posts:
        raise WeightsFileError(
            f"{path} is not an object detector (no {DETECTION_POSTPROCESS} op): a classifier? "
            "Use `mobilenet predict`/`eval --data FOLDER` for classifiers"
        )
    try:
        options = postprocess_options(posts[0][2])
    except ValueError as exc:
        raise WeightsFileError(f"{path}: {exc}") from None
    return posts[0][1], options


def _own_postprocess(options: dict[str, Any]) -> PostProcessConfig:
    """The file's own post-processing, from its op's options (TF's defaults where one is missing)."""
    regular = bool(options.get("use_regular_nms", False))
    max_det = int(options.get("max_detections", 10))
    return PostProcessConfig(
        "tflite",
        class_agnostic=not regular,
        iou_threshold=float(options.get("nms_iou_threshold", 0.6)),
        score_threshold=float(options.get("nms_score_threshold", 0.0)),
        max_detections=max_det,
        max_per_class=int(options.get("detections_per_class", 100)) if regular else max_det,
        clip=False,
    )


def _read_config(path: Path, graph: Any, options: dict[str, Any]) -> DetectorConfig:
    """The detector's config, read from the file: width from conv13's depth, activation from the
    backbone's, preprocessing from the input's quantization, classes and box scales from the op."""
    convs = graph.convs
    if len(convs) < _BACKBONE_CONVS + 8 + 12:
        raise WeightsFileError(f"{path}: {len(convs)} convolutions; SSD MobileNet v1 has 47 (27 backbone, 8 extra, 12 heads)")
    width_mult = convs[_BACKBONE_CONVS - 1].weight.shape[0] / 1024
    acts = {_activation(c, str(path)) for c in convs[: _BACKBONE_CONVS + 8]}
    if len(acts) != 1:
        raise WeightsFileError(f"{path}: mixed activations {sorted(acts)}; SSD MobileNet v1 uses one (ReLU6)")
    if graph.input_quant is not None:
        scale, zero = graph.input_quant
        mean, std = float(zero), 1.0 / scale
    else:  # float files take (x - 127.5) / 127.5, TF OD API's resizer + [-1, 1] scaling
        mean, std = 127.5, 127.5
    num_classes = int(options.get("num_classes", 90)) + 1  # the op's count leaves out background
    scales = tuple(
        float(options.get(k, d)) for k, d in (("y_scale", 10.0), ("x_scale", 10.0), ("h_scale", 5.0), ("w_scale", 5.0))
    )
    head_convs = convs[_BACKBONE_CONVS + 8 :]
    resolution = int(graph.input_shape[1]) if graph.input_shape and len(graph.input_shape) == 4 else 300
    try:
        return DetectorConfig(
            width_mult=width_mult,
            num_classes=num_classes,
            resolution=resolution,
            activation=acts.pop(),
            padding="tf" if convs[0].padding == "tf" else "symmetric",
            head_kernel=int(head_convs[0].weight.shape[1]),
            box_scales=scales,  # type: ignore[arg-type]
            postprocess=_own_postprocess(options),
            labels="coco" if num_classes == len(COCO_NAMES) else None,
            mean=mean,
            std=std,
        )
    except ValueError as exc:
        raise WeightsFileError(f"{path}: not an SSD MobileNet v1 of TF's layout ({exc})") from None


def _backbone_state(path: Path, convs: list[Any], config: DetectorConfig) -> dict[str, torch.Tensor]:
    """Table 1 to conv13, matched layer by layer as the classifier importer does."""
    state: dict[str, torch.Tensor] = {}
    for layer, conv in zip(build_layers(config.backbone), convs[:_BACKBONE_CONVS]):
        want_kind = "dw" if layer.kind == "dw" else "conv"
        shape = tuple(conv.weight.shape)
        want = (
            (1, 3, 3, layer.in_channels)
            if layer.kind == "dw"
            else (layer.out_channels, layer.kernel, layer.kernel, layer.in_channels)
        )
        if conv.kind != want_kind or shape != want or conv.stride != layer.stride:
            raise WeightsFileError(
                f"{path}: backbone layer {layer.name} has weight {shape} stride {conv.stride}; "
                f"MobileNet v1 α={config.width_mult:g} needs {want} stride {layer.stride}"
            )
        state.update(_conv_state("backbone." + layer.module.rsplit(".", 1)[0], conv, config.bn_eps))
    return state


def _extras_state(path: Path, convs: list[Any], config: DetectorConfig) -> dict[str, torch.Tensor]:
    """The extra blocks after the backbone: (1x1, 3x3 stride 2) x 4."""
    state: dict[str, torch.Tensor] = {}
    in_ch = build_layers(config.backbone)[-1].out_channels
    for i, (mid, out) in enumerate(extra_depths(config.width_mult)):
        a, b = convs[_BACKBONE_CONVS + 2 * i], convs[_BACKBONE_CONVS + 2 * i + 1]
        if a.weight.shape != (mid, 1, 1, in_ch) or b.weight.shape != (out, 3, 3, mid) or b.stride != 2:
            raise WeightsFileError(
                f"{path}: extra block {i + 1} has weights {a.weight.shape}, {b.weight.shape} (stride {b.stride}); "
                f"SSD MobileNet v1 α={config.width_mult:g} needs {(mid, 1, 1, in_ch)} then {(out, 3, 3, mid)} stride 2"
            )
        state.update(_conv_state(f"extras.{i}.0", a, config.bn_eps))
        state.update(_conv_state(f"extras.{i}.1", b, config.bn_eps))
        in_ch = out
    return state


def _heads_state(path: Path, convs: list[Any], config: DetectorConfig) -> dict[str, torch.Tensor]:
    """The box and class heads, told apart by the feature map they read (the graph's wiring, not
    its order) and box from class by output width (4 per anchor)."""
    state: dict[str, torch.Tensor] = {}
    head_convs = convs[_BACKBONE_CONVS + 8 :]
    num_classes = config.num_classes
    sources = [convs[i].output_index for i in _SOURCE_CONVS] + [convs[_BACKBONE_CONVS + 2 * i + 1].output_index for i in range(4)]
    for j, (tensor, anchors) in enumerate(zip(sources, config.anchors.anchors_per_location())):
        pair = [c for c in head_convs if c.input_index == tensor]
        if len(pair) != 2:
            raise WeightsFileError(
                f"{path}: feature map {j} feeds {len(pair)} head convs; SSD has a box and a class head on each"
            )
        box = next((c for c in pair if c.weight.shape[0] == anchors * 4 and "class" not in c.output_name.lower()), None)
        cls = next((c for c in pair if c is not box), None)
        if box is None or cls is None or cls.weight.shape[0] != anchors * num_classes:
            raise WeightsFileError(
                f"{path}: heads on feature map {j} give {[c.weight.shape[0] for c in pair]} channels; with {anchors} anchors per cell "
                f"and {num_classes} classes SSD needs {anchors * 4} (boxes) and {anchors * num_classes} (classes)"
            )
        state.update(_conv_state(f"box_heads.{j}", box, config.bn_eps, bn=False))
        state.update(_conv_state(f"class_heads.{j}", cls, config.bn_eps, bn=False))
    return state


def _check_anchors(path: Path, post_inputs: list[int], config: DetectorConfig) -> None:
    """The file's anchors (the op's third input) must be our generator's, to the uint8 constant's rounding."""
    anchor_input = post_inputs[2] if len(post_inputs) > 2 else -1
    if anchor_input < 0:
        return
    theirs = _constant(path, anchor_input)
    ours = ssd_anchors(AnchorConfig(), config.feature_sizes()).double().numpy()
    if theirs.shape != ours.shape or np.abs(theirs - ours).max() > 0.01:
        diff = "shape " + str(theirs.shape) if theirs.shape != ours.shape else f"up to {np.abs(theirs - ours).max():.3g}"
        raise WeightsFileError(
            f"{path}: its anchors differ from TF's SSD anchor generator (scales 0.2-0.95, ratios 1, 2, 1/2, 3, 1/3) by {diff}"
        )


def load_detector_tflite(path: str | os.PathLike[str]) -> tuple[dict[str, torch.Tensor], DetectorConfig]:
    """A TF Lite SSD MobileNet v1 → (state dict of :class:`SSDMobileNetV1`, its config)."""
    path = Path(path)
    graph = read_tflite(path)
    post_inputs, options = _postprocess_op(path, graph)
    config = _read_config(path, graph, options)
    # BN is folded in these files: each is loaded as an exact identity (see _conv_state).
    state = {
        **_backbone_state(path, graph.convs, config),
        **_extras_state(path, graph.convs, config),
        **_heads_state(path, graph.convs, config),
    }
    _check_anchors(path, post_inputs, config)
    # Our exports carry their config (class names, post-processing): it is the file's own word.
    return state, _exported_config(path) or config


def _exported_config(path: Path) -> DetectorConfig | None:
    """The config our exporter stored in the file (class names, post-processing), or None (Google's files)."""
    import json

    from ..checkpoint import DETECTOR_CONFIG_KEY
    from ..runtimes.litert import tflite_metadata

    text = tflite_metadata(path, DETECTOR_CONFIG_KEY)
    if text is None:
        return None
    try:
        return DetectorConfig.from_dict(json.loads(text.decode()))
    except (UnicodeDecodeError, json.JSONDecodeError, TypeError, ValueError, AttributeError) as exc:
        raise WeightsFileError(f"{path}: its {DETECTOR_CONFIG_KEY} metadata is unreadable ({exc})") from None


def detector_activation_ranges(path: str | os.PathLike[str]) -> dict[str, tuple[float, float]] | None:
    """The (low, high) range of each activation a quantized TF Lite SSD stores (Google's detect.tflite
    holds the ranges it was trained with), keyed as :func:`mobilenet.detection.export.calibrate_detector`
    keys them; None for a float file. The heads' ranges are the union over each kind of head."""
    convs = read_tflite(path).convs
    if len(convs) < _BACKBONE_CONVS + 8 or any(c.output_quant is None for c in convs):
        return None

    # Google's files are uint8; ours (a tflite-int8 export read back) int8, where a ReLU6 output has
    # zero point -128, which no uint8 tensor has (the rule google_ranges uses for classifiers too).
    low_q, high_q = (-128, 127) if any(c.output_quant[1] < 0 for c in convs) else (0, 255)

    def span(conv: Any) -> tuple[float, float]:
        scale, zero = conv.output_quant
        return (low_q - zero) * scale, (high_q - zero) * scale

    backbone = [f"backbone.{layer.module.rsplit('.', 1)[0]}" for layer in build_layers(DetectorConfig().backbone)]
    extras = [f"extras.{i}.{j}" for i in range(4) for j in range(2)]
    ranges = {key: span(conv) for key, conv in zip(backbone + extras, convs[: _BACKBONE_CONVS + 8])}
    for kind, is_box in ((BOX_RANGE, True), (CLASS_RANGE, False)):
        heads = [span(c) for c in convs[_BACKBONE_CONVS + 8 :] if ("class" not in c.output_name.lower()) == is_box]
        ranges[kind] = (min(low for low, _ in heads), max(high for _, high in heads))
    return ranges
