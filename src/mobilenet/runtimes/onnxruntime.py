"""ONNX: the export (``torch.onnx.export(dynamo=True)``), its int8 form (ONNX Runtime's static
quantization, QDQ: int8 weights per output channel, uint8 activations), the config it carries,
and ONNX Runtime running it."""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..checkpoint import CONFIG_KEY, WeightsFileError, atomic_write, config_from_metadata
from ..extras import require
from ..spec import MobileNetConfig
from .common import INT8_SCHEME_KEY, Predictor, check_outputs, config_and_example, config_json, numpy_input

__all__ = [
    "ExportedModel",
    "OnnxRuntimePredictor",
    "export_onnx",
    "onnx_config",
    "onnx_config_from_model",
    "onnx_int8_scheme",
    "portable_int8",
    "quantize_onnx",
    "run_onnx",
    "write_onnx",
]


def export_onnx(
    model: nn.Module,
    path: str | os.PathLike[str],
    *,
    resolution: int | None = None,
    dynamic_batch: bool = False,
    opset: int = 18,
    example: Tensor | None = None,
    output_names: Sequence[str] = ("logits",),
    metadata: Mapping[str, str] | None = None,
) -> Path:
    """ONNX via ``torch.onnx.export(dynamo=True)``; the input is ``images`` (N, 3, H, W), the
    outputs ``output_names`` (a classifier's ``logits``).

    The spatial size is fixed (``resolution``, default the model's), so TF 'SAME' pads become
    constants that ONNX Runtime fuses into the convs; ``dynamic_batch`` leaves N free.
    ``example`` (an input batch) sets the shape instead, and lets a model without our config (a
    peer's, for comparison, or another task's) be exported; such a file carries no
    ``mobilenet_config``, only the ``metadata`` given.
    """
    require("onnx", "onnxscript", purpose="ONNX export")
    model = model.eval()
    config, example = config_and_example(model, resolution, example, batch=2 if dynamic_batch else 1)
    dynamic_shapes = {"x": {0: torch.export.Dim("batch", min=1, max=4096)}} if dynamic_batch else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            model,
            (example,),
            dynamo=True,
            input_names=["images"],
            output_names=list(output_names),
            dynamic_shapes=dynamic_shapes,
            opset_version=opset,
            verbose=False,
        )
    if config is not None:
        program.model.metadata_props[CONFIG_KEY] = config_json(config, example)
    program.model.metadata_props.update(metadata or {})
    # One self-contained file: MobileNet v1 is far below ONNX's 2 GB limit for inline weights.
    return atomic_write(path, lambda tmp: program.save(tmp, external_data=False))


def onnx_config(path: str | os.PathLike[str]) -> MobileNetConfig | None:
    """The config an ONNX file was exported with, or None if it carries none."""
    import onnx

    return onnx_config_from_model(onnx.load(str(path), load_external_data=False), source=path)


class _Batches:
    """ONNX Runtime's CalibrationDataReader protocol over an iterable of image batches."""

    def __init__(self, batches: Iterable[Tensor], input_name: str) -> None:
        self._it: Iterator[Tensor] = iter(batches)
        self._name = input_name
        self.count = 0
        self.extra: dict[str, Any] = {}  # the quantizer's extra_options for this model
        self.config: MobileNetConfig | None = None  # read from the model when no images were given

    def get_next(self) -> dict[str, Any] | None:
        batch = next(self._it, None)
        if batch is None:
            return None
        if isinstance(batch, (tuple, list)):
            batch = batch[0]
        self.count += int(batch.shape[0])
        return {self._name: batch.detach().float().contiguous().cpu().numpy()}


_SHAPE_OPS = ("Reshape", "Flatten", "Squeeze", "Unsqueeze")


def _uint8_override(scale: float, zero: int) -> list[dict[str, Any]]:
    """ONNX Runtime's override fixing a tensor's uint8 (scale, zero point)."""
    from onnxruntime.quantization import QuantType

    return [
        {"scale": np.array(scale, dtype=np.float32), "zero_point": np.array(zero, dtype=np.uint8), "quant_type": QuantType.QUInt8}
    ]


def _weighted_nodes(model: Any) -> Iterator[tuple[Any, np.ndarray, bool]]:
    """(node, weight array, depthwise) of every Conv and Gemm whose weight is an initializer."""
    from onnx import numpy_helper

    weights = {init.name: init for init in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type not in ("Conv", "Gemm") or len(node.input) < 2 or node.input[1] not in weights:
            continue
        w = numpy_helper.to_array(weights[node.input[1]])
        group = next((a.i for a in node.attribute if a.name == "group"), 1)
        yield node, w, node.op_type == "Conv" and group > 1 and group == w.shape[0]


def _range_overrides(model: Any, ranges: dict[str, tuple[float, int]]) -> dict[str, list[dict[str, Any]]]:
    """ONNX tensor name → Google's (scale, zero point), matched by graph order to our module paths.

    The export's graph is the network in order: Conv (+ Clip) per layer, then the pool and Gemm.
    """

    from ..spec import build_layers

    # The activations are uint8 here; ranges read from an int8 file (one of ours, brought back as
    # weights) have zero points in [-128, 127]: the same grid, shifted by 128.
    if any(zero < 0 for _, zero in ranges.values()):
        ranges = {k: (scale, zero + 128) for k, (scale, zero) in ranges.items()}
    config = onnx_config_from_model(model)
    if config is None:
        raise ValueError("the ONNX file carries no mobilenet_config; export it with mobilenet.export")
    modules = [layer.module.rsplit(".", 1)[0] for layer in build_layers(config) if layer.kind != "fc"]
    consumers: dict[str, list[Any]] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)

    def entry(key: str) -> list[dict[str, Any]]:
        return _uint8_override(*ranges[key])

    overrides: dict[str, list[dict[str, Any]]] = {model.graph.input[0].name: entry("input")}
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    if len(convs) != len(modules):
        raise ValueError(f"the ONNX graph has {len(convs)} convs where MobileNet v1 has {len(modules)}; cannot map ranges")
    for node, module in zip(convs, modules):
        names = [node.output[0]]
        names += [c.output[0] for c in consumers.get(node.output[0], []) if c.op_type in ("Clip", "Relu")]
        for name in names:
            overrides[name] = entry(module)
    for node in model.graph.node:
        if node.op_type in ("ReduceMean", "GlobalAveragePool") and "global_pool" in ranges:
            # The pooled features reach the classifier through shape-only ops (the flatten), and
            # ONNX Runtime quantizes the last of them: each carries the pool's range. A tensor left
            # without one would take the calibrator's range, which with stored ranges is only one
            # blank image's (it clipped 0.5-160's pooled features at 4.0 of 6.0 and cost 13
            # points of top-1 agreement with float on flowers photos).
            pooled = [node.output[0]]
            while len(nxt := [c for c in consumers.get(pooled[-1], []) if c.op_type in _SHAPE_OPS]) == 1:
                pooled.append(nxt[0].output[0])
            for name in pooled:
                overrides[name] = entry("global_pool")
        elif node.op_type in ("Gemm", "MatMul") and "classifier" in ranges:
            overrides[node.output[0]] = entry("classifier")
    # Data moves (a TF 'SAME' pad left unfused, gathers, joins) keep their input's grid.
    for node in model.graph.node:
        picks = node.op_type in ("Gather", "Pad", *_SHAPE_OPS) and node.input[0] in overrides
        joins = node.op_type == "Concat" and bool(node.input) and all(name in overrides for name in node.input)
        if picks or joins:
            overrides[node.output[0]] = overrides[node.input[0]]
    return overrides


#: The largest |int8 weight| of a conv or matrix product that ONNX Runtime and OpenVINO compute as
#: a matrix product (the standard conv, the pointwise convs, the classifier). On x86 CPUs without
#: VNNI (AMD before Zen 4, Intel client CPUs before Ice Lake) both multiply uint8 activations by
#: int8 weights with ``vpmaddubsw``, which adds two products into an int16 with saturation: with
#: activations up to 255, |w| <= 64 keeps 2 · 255 · 64 = 32640 below 32767, so the arithmetic
#: is the same on every x86 CPU. The 8-bit weights are kept, split into pieces within ±64 (two;
#: up to four for a uint8 file's integers, which reach 255 steps from zero; :func:`portable_int8`).
#: Depthwise convs are computed by kernels that widen to 16 bits first (no pairs), so they keep
#: their 8 bits as they are.
MATMUL_WEIGHT_QMAX = 64

DEPTHWISE_WEIGHT_QMAX = 127


def portable_int8(folded: nn.Module, *, exact: bool = False) -> nn.Module:
    """The form of a BN-folded model that the ONNX int8 export quantizes: the same function, with
    8-bit weights stored so that none of a matrix product's exceeds :data:`MATMUL_WEIGHT_QMAX`
    (:func:`mobilenet.quantize.split_for_int8`). Measured on Google's 1.0-224 and flowers photos
    (benchmarks/RESULTS.md): the split costs 1.3-1.4x the time of unsafe 8-bit weights (still
    about 0.5x fp32); rounding to 7 bits instead cost 6 points of top-1 agreement with float.
    ``exact``: weights on a uint8 file's grid keep all of that grid's integers (more pieces)."""
    from ..quantize import split_for_int8

    return split_for_int8(folded, MATMUL_WEIGHT_QMAX, exact=exact)  # type: ignore[arg-type]


def _weight_overrides(model: Any) -> dict[str, list[dict[str, Any]]]:
    """ONNX Runtime's per-channel overrides for every conv and Gemm weight: the scales of
    :func:`mobilenet.quantize.channel_scales` (Google's own weight grid kept where it fits) within
    :data:`MATMUL_WEIGHT_QMAX` or :data:`DEPTHWISE_WEIGHT_QMAX`, given as the symmetric range
    ``±scale · qmax`` that ONNX Runtime turns back into exactly that scale."""
    from ..quantize import channel_scales

    overrides: dict[str, list[dict[str, Any]]] = {}
    for node, w, depthwise in _weighted_nodes(model):
        if node.op_type == "Gemm" and not any(a.name == "transB" and a.i for a in node.attribute):
            continue  # (in, out) weights: left to ONNX Runtime's own per-channel choice
        qmax = DEPTHWISE_WEIGHT_QMAX if depthwise else MATMUL_WEIGHT_QMAX
        scales = channel_scales(w, 0, qmax=qmax)
        scales = np.where(scales > 0, scales, 1.0)
        overrides[node.input[1]] = [
            # reduce_range: ONNX Runtime's int8 range ±64 instead of ±127, for the 64 of a matrix product
            {"axis": 0, "reduce_range": qmax <= 64, "rmin": -float(s) * qmax, "rmax": float(s) * qmax}
            for s in scales
        ]
    return overrides


def _depthwise_uint8_overrides(model: Any) -> dict[str, list[dict[str, Any]]]:
    """ONNX Runtime's per-tensor overrides for every depthwise conv's weight on a uint8 grid: the
    (scale, zero point) of :func:`mobilenet.quantize.uint8_grid`, so the weights are stored as the
    uint8 integers their file held (int8 per channel cannot hold a channel spanning more than 127
    steps on one side of zero). Depthwise kernels widen to 16 bits before multiplying. Refuses a
    model whose weights are not all on a grid (a matrix product's: one step a tensor, as
    ``portable_int8(..., exact=True)`` leaves a uint8 file's), which would not keep its arithmetic."""
    from ..quantize import grid_step, uint8_grid

    overrides: dict[str, list[dict[str, Any]]] = {}
    for node, w, depthwise in _weighted_nodes(model):
        # A matrix product stays int8 per channel at the grid's step (_weight_overrides).
        grid = uint8_grid(w) if depthwise else grid_step(w)
        if grid is None:
            raise ValueError(f"{node.name}: the weights are not on a uint8 file's grid; quantize with keep_grid=False")
        if depthwise:
            overrides[node.input[1]] = _uint8_override(*grid)  # type: ignore[misc]
    return overrides


def onnx_int8_scheme(path: str | os.PathLike[str]) -> str | None:
    """The int8 scheme an onnx-int8 file of ours records ("uint8-grid" or "per-channel"), else None."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return next((p.value for p in model.metadata_props if p.key == INT8_SCHEME_KEY), None)


def onnx_config_from_model(model: Any, source: str | os.PathLike[str] = "ONNX model") -> MobileNetConfig | None:
    for prop in model.metadata_props:
        if prop.key == CONFIG_KEY:
            return config_from_metadata(prop.value, source)
    return None


def _pre_processed(src: Path, dst: Path) -> Path:
    """ONNX Runtime's pre-pass over ``src`` (shape inference, graph clean-up), written beside ``dst``;
    the pre-pass only helps, so the export is copied as it is when it fails."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    prepared = dst.with_name(dst.name + ".prep.onnx")
    try:
        quant_pre_process(str(src), str(prepared), skip_symbolic_shape=False)
    except Exception:  # the pre-pass only helps; quantize the export as it is if it fails
        prepared.write_bytes(src.read_bytes())
    return prepared


def _stamp_config(path: Path, config: MobileNetConfig, images: int, scheme: str) -> None:
    """Writes the model's config (ours replacing any ``mobilenet_`` entries the quantizer carried
    over), the number of calibration images and the int8 scheme into the int8 file's metadata."""
    import onnx

    quantized = onnx.load(str(path))
    keep = [p for p in quantized.metadata_props if not p.key.startswith("mobilenet_")]
    del quantized.metadata_props[:]
    quantized.metadata_props.extend(keep)
    quantized.metadata_props.add(key=CONFIG_KEY, value=json.dumps(config.to_dict()))
    quantized.metadata_props.add(key="mobilenet_calibration_images", value=str(images))
    quantized.metadata_props.add(key=INT8_SCHEME_KEY, value=scheme)
    atomic_write(path, lambda tmp: onnx.save(quantized, tmp))


def _reader(
    prepared: Path,
    src: Path,
    calibration: Iterable[Tensor] | None,
    activation_ranges: dict[str, tuple[float, int]] | None,
    keep_grid: bool = False,
) -> _Batches:
    """The calibration reader for the pre-processed model, carrying the quantizer's overrides
    (``extra``: weights on their grid, fixed activation ranges) and, when the ranges are fixed
    and no images were given, the config read from the model (``config``)."""
    import onnx

    from ..quantize import with_input_range

    model = onnx.load(str(prepared))
    extra: dict[str, Any] = {"TensorQuantOverrides": _weight_overrides(model)}
    if keep_grid and activation_ranges is None:
        raise ValueError("keep_grid keeps a quantized file's arithmetic: it needs that file's activation ranges")
    if keep_grid:
        extra["TensorQuantOverrides"].update(_depthwise_uint8_overrides(model))
    config = None
    if activation_ranges is not None:
        extra["TensorQuantOverrides"].update(_range_overrides(model, with_input_range(activation_ranges)[0]))
        if calibration is None:  # every activation's range is fixed; the calibrator only needs to run
            config = onnx_config_from_model(model)
            if config is None:
                raise ValueError(f"{src}: no mobilenet_config, so the input shape is unknown; pass calibration images")
            calibration = [torch.zeros(1, config.in_chans, config.resolution, config.resolution)]
    if calibration is None:
        raise ValueError("int8 quantization needs calibration images or the activation ranges of a quantized model")
    reader = _Batches(calibration, model.graph.input[0].name)
    reader.extra, reader.config = extra, config
    return reader


def quantize_onnx(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    calibration: Iterable[Tensor] | None,
    *,
    method: str = "minmax",
    activation_ranges: dict[str, tuple[float, int]] | None = None,
    keep_grid: bool = False,
) -> Path:
    """Static int8 quantization of an fp32 ONNX file, calibrated on ``calibration`` batches.

    ``method``: ``minmax`` (ranges cover every calibration activation), ``percentile`` (clip the
    0.001% tails) or ``entropy`` (KL-divergence ranges).

    ``activation_ranges`` (:func:`stored_activation_ranges`: Google's quantized files' own, or a
    ``--qat`` run's) fixes every activation's uint8 scale and zero point instead of calibrating:
    the int8 model then rounds where that model was trained to round, and needs no calibration
    images.

    Weights are int8 per channel (the source should be :func:`portable_int8`'s, within
    :data:`MATMUL_WEIGHT_QMAX`). ``keep_grid`` (a source from ``portable_int8(..., exact=True)``):
    the depthwise weights are stored as uint8 on their grid, per tensor
    (:func:`_depthwise_uint8_overrides`), and the file computes a uint8 file's own integer
    products. The file's metadata ``mobilenet_int8_scheme`` says which (``uint8-grid`` or
    ``per-channel``).
    """
    require("onnx", "onnxruntime", purpose="int8 quantization")
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    methods = {
        "minmax": CalibrationMethod.MinMax,
        "percentile": CalibrationMethod.Percentile,
        "entropy": CalibrationMethod.Entropy,
    }
    if method not in methods:
        raise ValueError(f"calibration method {method!r}: choose from {', '.join(methods)}")
    src, dst = Path(src), Path(dst)
    config = onnx_config(src)
    prepared = _pre_processed(src, dst)
    try:  # the pre-pass's file goes however the quantization ends
        reader = _reader(prepared, src, calibration, activation_ranges, keep_grid)
        out = atomic_write(dst, lambda tmp: quantize_static(
            str(prepared), tmp, reader, quant_format=QuantFormat.QDQ, per_channel=True,
            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, calibrate_method=methods[method],
            extra_options=reader.extra,
        ))  # fmt: skip
    finally:
        prepared.unlink(missing_ok=True)
    config = reader.config or config
    if reader.count == 0:
        dst.unlink(missing_ok=True)
        raise ValueError("int8 calibration saw no images; pass a folder with some (a few hundred is typical)")
    if config is not None:
        _stamp_config(out, config, reader.count, "uint8-grid" if keep_grid else "per-channel")
    return out


class OnnxRuntimePredictor(Predictor):
    def __init__(self, path: str | os.PathLike[str], backend: str, threads: int | None) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name
        self.path, self.backend = Path(path), backend

    def with_threads(self, threads: int) -> Predictor:
        return OnnxRuntimePredictor(self.path, self.backend, threads)

    def __call__(self, x: Tensor) -> Tensor:
        # ONNX Runtime reads a contiguous float32 array in place and returns a new array of its
        # own, which the tensor then shares: no copy either way.
        out = self.session.run(None, {self.input_name: numpy_input(x)})[0]
        return torch.from_numpy(out)

    def raw_call(self, x: Tensor) -> Callable[[], Any]:
        feed = {self.input_name: numpy_input(x)}
        return lambda: self.session.run(None, feed)


class ExportedModel:
    """An exported ONNX file (fp32 or int8) behind the small part of MobileNetV1's interface that
    ``predict`` and ``evaluate`` use: ``config``, ``eval()`` and a call from images to logits."""

    def __init__(self, path: str | os.PathLike[str], *, threads: int | None = None) -> None:
        config = onnx_config(path)
        if config is None:
            raise WeightsFileError(f"{path}: an ONNX file without mobilenet_config metadata; export it with `mobilenet export`")
        self.config = config
        self.path = Path(path)
        self._run = run_onnx(path, threads=threads)
        check_outputs(config, self._run.session.get_outputs()[0].shape[-1], self.path)

    def eval(self) -> ExportedModel:
        return self

    def __call__(self, x: Tensor) -> Tensor:
        return self._run(x.float())


def write_onnx(
    model: nn.Module,
    path: str | os.PathLike[str],
    *,
    resolution: int | None = None,
    dynamic_batch: bool = False,
    int8: bool = False,
    calibration: Iterable[Tensor] | None = None,
    calibration_method: str = "minmax",
    activation_ranges: dict[str, tuple[float, int]] | None = None,
    keep_grid: bool = True,
) -> Path:
    """The format table's writer (BN already folded): fp32 ONNX, or int8 through a temporary fp32 file.

    int8 is per-channel int8 weights split so that no CPU saturates (:func:`portable_int8`).
    Weights on a uint8 file's grid, with that file's ranges (Google's quantized MobileNets), keep
    that file's integer arithmetic unless ``keep_grid=False``: every matrix product's weights
    split into as many pieces as its integers need, the depthwise weights stored as uint8."""
    from ..quantize import layer_weights, on_uint8_grid

    if not int8:
        return export_onnx(model, path, resolution=resolution, dynamic_batch=dynamic_batch)
    if calibration is None and activation_ranges is None:
        raise ValueError("onnx-int8 needs calibration images: pass --calibration DIR (a few hundred images like the real inputs)")
    path = Path(path)
    grid = bool(keep_grid and activation_ranges is not None and on_uint8_grid(layer_weights(model), activation_ranges))
    source = portable_int8(model, exact=grid)
    fp32 = export_onnx(source, path.with_name(path.name + ".fp32.onnx"), resolution=resolution, dynamic_batch=True)
    try:
        return quantize_onnx(
            fp32, path, calibration, method=calibration_method, activation_ranges=activation_ranges, keep_grid=grid
        )
    finally:
        fp32.unlink(missing_ok=True)


def run_onnx(path: str | os.PathLike[str], *, threads: int | None = None) -> OnnxRuntimePredictor:
    """An ONNX file in ONNX Runtime, as a callable ``NCHW tensor → logits``."""
    require("onnxruntime", purpose="running an ONNX file")
    return OnnxRuntimePredictor(path, "onnxruntime", threads)
