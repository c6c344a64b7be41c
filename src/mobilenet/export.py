"""Export to ONNX, TorchScript and PT2 (``torch.export``), and int8 post-training quantization.

Running an exported file is :mod:`mobilenet.deploy`'s job (``load_exported``, ``ExportedModel``),
beside the runtimes; this module only writes files.

Every exported file carries the model's config (``mobilenet_config``: α, resolution, classes,
labels), in the ONNX metadata or beside the program, and every write is atomic.

int8 has one scheme per runtime. onnx-int8 is ONNX Runtime's static quantization in QDQ form:
int8 weights with one scale per output channel (depthwise filters vary too much across channels
for one scale), uint8 activations with ranges calibrated on sample images; for a desktop or server
file we chose it over OpenVINO's (a 180 MB runtime) because one portable file runs in ONNX
Runtime, OpenVINO and TensorRT. tflite-int8 is full-integer int8 written by
:mod:`mobilenet.litert` itself (the scheme of :mod:`mobilenet.quantize`), and pte-int8 is PyTorch's
PT2E flow (torchao) with XNNPACK's quantizer, which ExecuTorch needs (:mod:`mobilenet.pte`).
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from .checkpoint import CONFIG_KEY, atomic_write
from .extras import require
from .model import fold_batchnorm
from .spec import MobileNetConfig

__all__ = [
    "FORMATS",
    "export_model",
    "export_onnx",
    "export_output_path",
    "export_pt2",
    "export_torchscript",
    "onnx_config",
    "output_path",
    "quantize_onnx",
    "stored_activation_ranges",
]

FORMATS: tuple[str, ...] = ("onnx", "onnx-int8", "torchscript", "pt2", "tflite", "tflite-int8", "pte", "pte-int8")
DEFAULT_SUFFIX = {
    "onnx": ".onnx",
    "onnx-int8": ".int8.onnx",
    "torchscript": ".torchscript.pt",
    "pt2": ".pt2",
    # The phone formats (mobilenet.litert, mobilenet.pte): LiteRT / TF Lite and ExecuTorch.
    "tflite": ".tflite",
    "tflite-int8": ".int8.tflite",
    "pte": ".pte",
    "pte-int8": ".int8.pte",
}


# The suffixes a format's file may carry (what deploy.load_exported reads it by); the format's
# DEFAULT_SUFFIX is what a name without one gets.
OUTPUT_SUFFIXES: dict[str, tuple[str, ...]] = {
    "onnx": (".onnx",),
    "onnx-int8": (".onnx",),
    "torchscript": (".pt", ".pth", ".torchscript"),
    "pt2": (".pt2",),
    "tflite": (".tflite",),
    "tflite-int8": (".tflite",),
    "pte": (".pte",),
    "pte-int8": (".pte",),
}


def output_path(path: str | os.PathLike[str], suffixes: tuple[str, ...], default: str, what: str) -> tuple[Path, str | None]:
    """The file to write ``what`` to, checked before any work: ``(path, note)``.

    A suffix among ``suffixes`` is kept; a name without one gets ``default`` appended (the note
    says so); any other suffix is refused, so ``-o notes.txt`` never overwrites a file with a model
    its suffix contradicts. Only a suffix that starts with a letter counts as one: the ``.25_128``
    of ``mobilenet_v1_0.25_128`` is part of the name. (PIL decides the format by the suffix and
    refuses one it does not know; here the format is given, so the suffix only has to agree.)
    """
    import re

    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(
            f"{what}: output {str(path)!r} is a folder; pass a file name such as {path / ('model' + default)}"
        )
    suffix = path.suffix if re.fullmatch(r"\.[A-Za-z][A-Za-z0-9]*", path.suffix) else ""
    if suffix.lower() in suffixes:
        return path, None
    if not suffix:
        named = path.with_name(path.name + default)
        return named, f"{path} has no file suffix; writing {named}"
    raise ValueError(
        f"{what}: output {str(path)!r} ends in {suffix!r}, but this writes a {' / '.join(suffixes)} file; "
        f"name it {path.with_suffix(default)} (nothing was written)"
    )


def export_output_path(path: str | os.PathLike[str], fmt: str) -> tuple[Path, str | None]:
    """:func:`output_path` for an export ``fmt`` (one of :data:`FORMATS`)."""
    if fmt not in FORMATS:
        raise ValueError(f"format {fmt!r}: choose from {', '.join(FORMATS)}")
    return output_path(path, OUTPUT_SUFFIXES[fmt], DEFAULT_SUFFIX[fmt], f"--format {fmt}")


def _config(model: nn.Module) -> MobileNetConfig:
    config = getattr(model, "config", None)
    if not isinstance(config, MobileNetConfig):
        raise TypeError(f"expected a MobileNetV1 (with .config), got {type(model).__name__}")
    return config


def _config_and_example(
    model: nn.Module, resolution: int | None, example: Tensor | None, batch: int = 1
) -> tuple[MobileNetConfig | None, Tensor]:
    """The config to record (None for a model that has none, e.g. a peer's) and the input to trace.

    A model without our config needs ``example``; with one, the example defaults to zeros of the
    config's shape. A batch of at least ``batch`` is traced, so a dynamic batch size stays free.
    """
    config = getattr(model, "config", None)
    if not isinstance(config, MobileNetConfig):
        if example is None:
            raise TypeError(
                f"{type(model).__name__} has no MobileNetConfig (.config), so the input shape is unknown; "
                "pass example=torch.zeros(1, C, H, W)"
            )
        config = None
    if example is None:
        example = _example(model, resolution)
    if example.shape[0] < batch:
        example = example[:1].expand(batch, *example.shape[1:]).contiguous()
    return config, example


def _config_json(config: MobileNetConfig, example: Tensor) -> str:
    """The config an export carries: the model's, with the input size it was exported at."""
    return json.dumps(config.replace(resolution=example.shape[-1]).to_dict())


def _example(model: nn.Module, resolution: int | None, batch: int = 1) -> Tensor:
    config = _config(model)
    size = resolution or config.resolution
    return torch.zeros(batch, config.in_chans, size, size)


def export_onnx(
    model: nn.Module,
    path: str | os.PathLike[str],
    *,
    resolution: int | None = None,
    dynamic_batch: bool = False,
    opset: int = 18,
    example: Tensor | None = None,
) -> Path:
    """ONNX via ``torch.onnx.export(dynamo=True)``; the input is ``images`` (N, 3, H, W), output ``logits``.

    The spatial size is fixed (``resolution``, default the model's), so TF 'SAME' pads become
    constants that ONNX Runtime fuses into the convs; ``dynamic_batch`` leaves N free.
    ``example`` (an input batch) sets the shape instead, and lets a model without our config (a
    peer's, for comparison) be exported; such a file carries no ``mobilenet_config``.
    """
    require("onnx", "onnxscript", purpose="ONNX export")
    model = model.eval()
    config, example = _config_and_example(model, resolution, example, batch=2 if dynamic_batch else 1)
    dynamic_shapes = {"x": {0: torch.export.Dim("batch", min=1, max=4096)}} if dynamic_batch else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            model,
            (example,),
            dynamo=True,
            input_names=["images"],
            output_names=["logits"],
            dynamic_shapes=dynamic_shapes,
            opset_version=opset,
            verbose=False,
        )
    if config is not None:
        program.model.metadata_props[CONFIG_KEY] = _config_json(config, example)
    # One self-contained file: MobileNet v1 is far below ONNX's 2 GB limit for inline weights.
    return atomic_write(path, lambda tmp: program.save(tmp, external_data=False))


def onnx_config(path: str | os.PathLike[str]) -> MobileNetConfig | None:
    """The config an ONNX file was exported with, or None if it carries none."""
    import onnx

    return onnx_config_from_model(onnx.load(str(path), load_external_data=False))


def export_torchscript(
    model: nn.Module, path: str | os.PathLike[str], *, resolution: int | None = None, example: Tensor | None = None
) -> Path:
    """A traced TorchScript module (``torch.jit.load`` reads it); the config is in its extra files."""
    config, example = _config_and_example(model, resolution, example)
    with torch.no_grad(), warnings.catch_warnings():
        # PyTorch marks TorchScript deprecated in favour of torch.export (format "pt2"); it is still
        # what many C++ and mobile deployments load, so we keep offering it.
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(model.eval(), example, check_trace=False)
        extra = {CONFIG_KEY: _config_json(config, example)} if config is not None else {}
        return atomic_write(path, lambda tmp: torch.jit.save(traced, tmp, _extra_files=extra))


def export_pt2(
    model: nn.Module,
    path: str | os.PathLike[str],
    *,
    resolution: int | None = None,
    dynamic_batch: bool = False,
    example: Tensor | None = None,
) -> Path:
    """A ``torch.export`` program (``torch.export.load`` reads it back), config in its extra files."""
    config, example = _config_and_example(model, resolution, example, batch=2 if dynamic_batch else 1)
    dynamic_shapes = {"x": {0: torch.export.Dim("batch", min=1, max=4096)}} if dynamic_batch else None
    program = torch.export.export(model.eval(), (example,), dynamic_shapes=dynamic_shapes)
    extra = {CONFIG_KEY: _config_json(config, example)} if config is not None else {}
    return atomic_write(path, lambda tmp: torch.export.save(program, tmp, extra_files=extra))


class _Batches:
    """ONNX Runtime's CalibrationDataReader protocol over an iterable of image batches."""

    def __init__(self, batches: Iterable[Tensor], input_name: str) -> None:
        self._it: Iterator[Tensor] = iter(batches)
        self._name = input_name
        self.count = 0

    def get_next(self) -> dict[str, Any] | None:
        batch = next(self._it, None)
        if batch is None:
            return None
        if isinstance(batch, (tuple, list)):
            batch = batch[0]
        self.count += int(batch.shape[0])
        return {self._name: batch.detach().float().contiguous().cpu().numpy()}


def _range_overrides(model: Any, ranges: dict[str, tuple[float, int]]) -> dict[str, list[dict[str, Any]]]:
    """ONNX tensor name → Google's (scale, zero point), matched by graph order to our module paths.

    The export's graph is the network in order: Conv (+ Clip) per layer, then the pool and Gemm.
    """
    import numpy as np
    from onnxruntime.quantization import QuantType

    from .spec import build_layers

    config = onnx_config_from_model(model)
    if config is None:
        raise ValueError("the ONNX file carries no mobilenet_config; export it with mobilenet.export")
    modules = [layer.module.rsplit(".", 1)[0] for layer in build_layers(config) if layer.kind != "fc"]
    consumers: dict[str, list[Any]] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)

    def entry(key: str) -> list[dict[str, Any]]:
        scale, zero = ranges[key]
        return [
            {
                "scale": np.array(scale, dtype=np.float32),
                "zero_point": np.array(zero, dtype=np.uint8),
                "quant_type": QuantType.QUInt8,
            }
        ]

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
            overrides[node.output[0]] = entry("global_pool")
        elif node.op_type in ("Gemm", "MatMul") and "classifier" in ranges:
            overrides[node.output[0]] = entry("classifier")
    return overrides


def onnx_config_from_model(model: Any) -> MobileNetConfig | None:
    for prop in model.metadata_props:
        if prop.key == CONFIG_KEY:
            return MobileNetConfig.from_dict(json.loads(prop.value))
    return None


def quantize_onnx(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    calibration: Iterable[Tensor] | None,
    *,
    method: str = "minmax",
    activation_ranges: dict[str, tuple[float, int]] | None = None,
) -> Path:
    """Static int8 quantization of an fp32 ONNX file, calibrated on ``calibration`` batches.

    ``method``: ``minmax`` (ranges cover every calibration activation), ``percentile`` (clip the
    0.001% tails) or ``entropy`` (KL-divergence ranges).

    ``activation_ranges`` (:func:`stored_activation_ranges`: Google's quantized files' own, or a
    ``--qat`` run's) fixes every activation's uint8 scale and zero point instead of calibrating:
    the int8 model then rounds where that model was trained to round, and needs no calibration
    images.
    """
    require("onnx", "onnxruntime", purpose="int8 quantization")
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    methods = {
        "minmax": CalibrationMethod.MinMax,
        "percentile": CalibrationMethod.Percentile,
        "entropy": CalibrationMethod.Entropy,
    }
    if method not in methods:
        raise ValueError(f"calibration method {method!r}: choose from {', '.join(methods)}")
    src, dst = Path(src), Path(dst)
    config = onnx_config(src)
    prepared = dst.with_name(dst.name + ".prep.onnx")
    try:
        quant_pre_process(str(src), str(prepared), skip_symbolic_shape=False)
    except Exception:  # the pre-pass only helps; quantize the export as it is if it fails
        prepared.write_bytes(src.read_bytes())
    import onnx

    prepared_model = onnx.load(str(prepared))
    input_name = prepared_model.graph.input[0].name
    extra: dict[str, Any] = {}
    if activation_ranges is not None:
        extra["TensorQuantOverrides"] = _range_overrides(prepared_model, {"input": (1 / 128, 128), **activation_ranges})
        if calibration is None:  # every activation's range is fixed; the calibrator only needs to run
            config = onnx_config_from_model(prepared_model)
            if config is None:
                raise ValueError(f"{src}: no mobilenet_config, so the input shape is unknown; pass calibration images")
            calibration = [torch.zeros(1, config.in_chans, config.resolution, config.resolution)]
    if calibration is None:
        raise ValueError("int8 quantization needs calibration images or the activation ranges of a quantized model")
    reader = _Batches(calibration, input_name)

    def write(tmp: str) -> None:
        quantize_static(
            str(prepared),
            tmp,
            reader,
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=methods[method],
            extra_options=extra,
        )

    try:
        out = atomic_write(dst, write)
    finally:
        prepared.unlink(missing_ok=True)
    if reader.count == 0:
        dst.unlink(missing_ok=True)
        raise ValueError("int8 calibration saw no images; pass a folder with some (a few hundred is typical)")
    if config is not None:
        quantized = onnx.load(str(out))
        keep = [p for p in quantized.metadata_props if not p.key.startswith("mobilenet_")]
        del quantized.metadata_props[:]
        quantized.metadata_props.extend(keep)
        quantized.metadata_props.add(key=CONFIG_KEY, value=json.dumps(config.to_dict()))
        quantized.metadata_props.add(key="mobilenet_calibration_images", value=str(reader.count))
        atomic_write(out, lambda tmp: onnx.save(quantized, tmp))
    return out


def stored_activation_ranges(weights: Iterable[str | os.PathLike[str]]) -> tuple[dict[str, tuple[float, int]], str] | None:
    """The int8 activation ranges that weights files already carry, as uint8 (scale, zero point)
    by module path (the ``activation_ranges`` the tflite-int8 and onnx-int8 exporters take; the
    PT2E flow of pte-int8 calibrates its own), and where they came from; None when they carry none.

    Google's quantized TF Lite files hold the ranges they were trained with; a ``--qat`` run's
    safetensors holds the ranges it learned (metadata ``mobilenet_int8_ranges``).
    """
    from .checkpoint import weights_metadata
    from .quantize import ranges_from_metadata, uint8_qparams

    paths = [Path(w) for w in weights]
    tflite = [p for p in paths if p.suffix.lower() == ".tflite"]
    if tflite:
        from .weights.tflite import activation_quantization

        return activation_quantization(tflite), "the TF Lite file's own"
    for p in paths:
        if p.suffix.lower() == ".safetensors" and p.is_file():
            try:
                ranges = ranges_from_metadata(weights_metadata(p))
            except ValueError as exc:
                raise ValueError(f"{p}: {exc}") from None
            if ranges is not None:
                return uint8_qparams(ranges), "learned in quantization-aware training (--qat)"
    return None


def export_model(
    model: nn.Module,
    path: str | os.PathLike[str],
    fmt: str,
    *,
    resolution: int | None = None,
    dynamic_batch: bool = False,
    calibration: Iterable[Tensor] | None = None,
    calibration_method: str = "minmax",
    activation_ranges: dict[str, tuple[float, int]] | None = None,
) -> Path:
    """One entry point for the CLI: ``fmt`` is one of :data:`FORMATS`. BN is folded first."""
    if fmt not in FORMATS:
        raise ValueError(f"format {fmt!r}: choose from {', '.join(FORMATS)}")
    folded = fold_batchnorm(model)  # type: ignore[arg-type]
    if fmt == "torchscript":
        return export_torchscript(folded, path, resolution=resolution)
    if fmt == "pt2":
        return export_pt2(folded, path, resolution=resolution, dynamic_batch=dynamic_batch)
    if fmt == "onnx":
        return export_onnx(folded, path, resolution=resolution, dynamic_batch=dynamic_batch)
    if fmt.startswith("tflite"):
        from .litert import export_tflite

        return export_tflite(
            folded,  # type: ignore[arg-type]
            path,
            resolution=resolution,
            int8=fmt == "tflite-int8",
            calibration=calibration,
            calibration_method=calibration_method,
            activation_ranges=activation_ranges,
        )
    if fmt.startswith("pte"):
        from .pte import export_pte

        return export_pte(folded, path, resolution=resolution, int8=fmt == "pte-int8", calibration=calibration)  # type: ignore[arg-type]
    if calibration is None and activation_ranges is None:
        raise ValueError("onnx-int8 needs calibration images: pass --calibration DIR (a few hundred images like the real inputs)")
    path = Path(path)
    fp32 = export_onnx(folded, path.with_name(path.name + ".fp32.onnx"), resolution=resolution, dynamic_batch=True)
    try:
        return quantize_onnx(fp32, path, calibration, method=calibration_method, activation_ranges=activation_ranges)
    finally:
        fp32.unlink(missing_ok=True)
