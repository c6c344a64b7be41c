"""ExecuTorch export (.pte, XNNPACK-delegated, fp32 or int8) and an ExecuTorch runner.

Flow: ``torch.export`` of the BN-folded model → (int8: torchao's ``prepare_pt2e``/``convert_pt2e``
with the XNNPACK quantizer: int8 weights symmetric per output channel, int8 activations calibrated
on sample images or at the ranges the weights carry, conv + ReLU6 quantized as one op, a quantized
model's weight grid kept; for Google's quantized weights with their own ranges, Google's uint8
arithmetic itself) → ``to_edge_transform_and_lower`` with the XNNPACK partitioner → ``.pte``. The
model's global pool is ``AdaptiveAvgPool2d``, which XNNPACK takes (a ``mean((2, 3))`` would stay
on the portable CPU kernels).

The config (``MobileNetConfig`` JSON: α, resolution, classes, labels, preprocessing) rides in the
program as a constant method ``mobilenet_config``, so the file alone rebuilds the input pipeline.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import threading
import warnings
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..checkpoint import CONFIG_KEY, WeightsFileError, atomic_write, config_from_metadata
from ..extras import require
from ..model import MobileNetV1
from ..spec import MobileNetConfig
from .common import INT8_SCHEME_KEY, check_outputs

__all__ = [
    "INT8_SCHEME_KEY",
    "ExecuTorchModel",
    "export_pte",
    "load_pte_method",
    "lower_to_pte",
    "pte_config",
    "pte_constant",
    "run_pte",
]


def _annotate_conv_clamp(gm: torch.fx.GraphModule, config: Any) -> None:
    """Marks each conv → ReLU6 (``hardtanh(0, 6)``, or any clamp from 0) as one quantized op, as
    XNNPACK's quantizer does for conv → ReLU: the conv's inputs quantized, no requantization
    between the two, and the output observed after the clamp.

    XNNPACK's own patterns leave ReLU6 to share the conv's output range, which spans the conv's
    negative values and its peaks far above 6: on Google's 0.25-128 weights that cost the int8
    program a third of its top-1 agreement with the float model. XNNPACK fuses the clamp into
    the conv when it lowers, so the program runs the same kernels.
    """
    from torchao.quantization.pt2e.quantizer import (
        QuantizationAnnotation,
        get_bias_qspec,
        get_input_act_qspec,
        get_output_act_qspec,
        get_weight_qspec,
    )
    from torchao.quantization.pt2e.quantizer.quantizer import Q_ANNOTATION_KEY
    from torchao.quantization.pt2e.utils import _is_conv_node

    aten = torch.ops.aten
    clamps = {aten.hardtanh.default: (-1.0, 1.0), aten.hardtanh_.default: (-1.0, 1.0), aten.clamp.default: (None, None)}
    for node in gm.graph.nodes:
        if node.op != "call_function" or node.target not in clamps:
            continue
        low = node.args[1] if len(node.args) > 1 else node.kwargs.get("min_val", node.kwargs.get("min", clamps[node.target][0]))
        conv = node.args[0]
        if low != 0 or not isinstance(conv, torch.fx.Node) or not _is_conv_node(conv) or len(conv.users) > 1:
            continue
        parts = [node, conv, *(a for a in conv.args[1:3] if isinstance(a, torch.fx.Node))]
        if any(Q_ANNOTATION_KEY in n.meta for n in parts):
            continue
        inputs = {conv.args[0]: get_input_act_qspec(config), conv.args[1]: get_weight_qspec(config)}
        if len(conv.args) > 2 and isinstance(conv.args[2], torch.fx.Node):
            inputs[conv.args[2]] = get_bias_qspec(config)
        conv.meta[Q_ANNOTATION_KEY] = QuantizationAnnotation(input_qspec_map=inputs, _annotated=True)
        node.meta[Q_ANNOTATION_KEY] = QuantizationAnnotation(output_qspec=get_output_act_qspec(config), _annotated=True)
        for n in parts[2:]:  # the weight and bias: taken, so no other pattern claims them
            n.meta[Q_ANNOTATION_KEY] = QuantizationAnnotation(_annotated=True)


def _grid_observer() -> Any:
    """torchao's per-channel min/max weight observer, except that weights already lying on a
    quantized model's grid (Google's uint8 files) keep that grid where a channel fits in int8,
    as the TF Lite writer does: re-rounding them onto a new grid costs 0.25-128 about 10
    points of top-1 agreement."""
    from torchao.quantization.pt2e import PerChannelMinMaxObserver

    from ..quantize import grid_step

    class GridObserver(PerChannelMinMaxObserver):  # type: ignore[misc]
        def forward(self, x: Tensor) -> Tensor:
            self.last = x.detach()
            return super().forward(x)

        def calculate_qparams(self) -> tuple[Tensor, Tensor]:
            scale, zero = super().calculate_qparams()
            w = getattr(self, "last", None)
            step = None if w is None else grid_step(w.float().numpy())
            if step is not None:
                units = w.transpose(0, self.ch_axis).flatten(1) / step
                fits = (units.amax(1) <= self.quant_max + 0.01) & (units.amin(1) >= self.quant_min - 0.01)
                scale = torch.where(fits, torch.tensor(step, dtype=scale.dtype), scale)
            return scale, zero

    return GridObserver


def _uint8_grid_observer() -> Any:
    """A per-tensor weight observer giving each weight tensor the uint8 grid it already lies on
    (:func:`mobilenet.quantize.uint8_grid`): Google's own scale and zero point, nothing rounded again."""
    from torchao.quantization.pt2e import MinMaxObserver

    from ..quantize import uint8_grid

    class Uint8GridObserver(MinMaxObserver):  # type: ignore[misc]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            # The quantizer's weight spec must say "symmetric"; the grid's zero point is not 128.
            self.qscheme = torch.per_tensor_affine

        def forward(self, x: Tensor) -> Tensor:
            self.last = x.detach()
            return super().forward(x)

        def calculate_qparams(self) -> tuple[Tensor, Tensor]:
            grid = uint8_grid(self.last.float().numpy())
            if grid is None:
                raise ValueError("weights off a uint8 grid cannot keep Google's arithmetic; use --int8-scheme per-channel")
            return torch.tensor([grid[0]], dtype=torch.float32), torch.tensor([grid[1]], dtype=torch.int32)

    return Uint8GridObserver


_HOOKS_LOCK = threading.Lock()


@contextlib.contextmanager
def _xnnpack_takes_uint8() -> Iterator[list[int]]:
    """For the time of a lowering, lets ExecuTorch's XNNPACK delegate take uint8 programs; yields a
    one-item list counting the uint8 tensors written (none: these hooks no longer reach the
    serializer, and the program would fail to load).

    XNNPACK runs uint8 ("qu8") convolutions with a weight zero point natively, which Google's
    arithmetic needs (its int8 weights must be symmetric), but ExecuTorch 1.5 serializes every
    per-tensor quantized value as int8 and keeps uint8 quantize/dequantize ops out of its
    partitions. Two hooks fix that: uint8 values are written as XNNPACK's quint8, and uint8
    quantize/dequantize ops join the partition, so the whole network is one XNNPACK subgraph.
    A lock keeps concurrent lowerings from seeing (or leaving) the hooks.
    """
    from executorch.backends.xnnpack.operators import node_visitor
    from executorch.backends.xnnpack.partition.config import xnnpack_config
    from executorch.backends.xnnpack.serialization.xnnpack_graph_schema import XNNDatatype
    from executorch.backends.xnnpack.utils.quant_utils import is_dequant, is_quant

    visitor, config = node_visitor.NodeVisitor, xnnpack_config.XNNPartitionerConfig
    written = [0]

    with _HOOKS_LOCK:
        serialized_dtype, valid_dtype = visitor.get_serialized_dtype, config._check_node_has_valid_dtype

        def get_serialized_dtype(self: Any, quant_params: Any, node: Any, **kwargs: Any) -> Any:
            dtype = serialized_dtype(self, quant_params, node, **kwargs)
            if quant_params is not None and not quant_params.per_channel and quant_params.dtype == torch.uint8:
                written[0] += 1
                return XNNDatatype.xnn_datatype_quint8
            return dtype

        def check_node_has_valid_dtype(self: Any, node: Any) -> bool:
            if valid_dtype(self, node):
                return True
            if node.op == "call_function" and (is_quant(node) or is_dequant(node)):
                ok = {torch.float32, torch.uint8, torch.int32}
                return bool(self._check_inputs_are_valid_dtypes(node, ok) and self._check_outputs_are_valid_dtypes(node, ok))
            return False

        visitor.get_serialized_dtype, config._check_node_has_valid_dtype = get_serialized_dtype, check_node_has_valid_dtype
        try:
            yield written
        finally:
            visitor.get_serialized_dtype, config._check_node_has_valid_dtype = serialized_dtype, valid_dtype


def _all_delegated(program: Any) -> bool:
    """Whether a lowered program's graph is only XNNPACK delegate calls (no op left to ExecuTorch's
    portable kernels, which a phone's XNNPACK-only runtime may not have)."""
    calls = (str(node.target) for node in program.graph_module.graph.nodes if node.op == "call_function")
    return all("executorch_call_delegate" in target or "getitem" in target for target in calls)


def _range_key(node: torch.fx.Node, ranges: Mapping[str, Any]) -> str | None:
    """The activation (a key of ``ranges``: a conv unit's path, ``global_pool``, ``classifier``,
    ``input``) whose values ``node`` carries. A pad, flatten or dropout carries its input's, as
    does an observer; a conv unit's values are observed after its ReLU (``<unit>.act``)."""
    while True:
        if node.op == "placeholder":
            return "input" if "input" in ranges else None
        stack = node.meta.get("nn_module_stack") or {}
        path = list(stack.values())[-1][0] if stack else ""
        unit = path[: -len(".act")] if path.endswith(".act") else path
        if node.op == "call_function" and unit in ranges:
            return unit
        args = [a for a in node.args if isinstance(a, torch.fx.Node)]
        if not args:
            return None
        node = args[0]


def _set_ranges(prepared: torch.fx.GraphModule, ranges: Mapping[str, tuple[float, int]]) -> None:
    """Puts uint8 (scale, zero point) ``ranges`` (those the weights were trained with) into every
    activation observer of a prepared program, so that int8 computes on the weights' own ranges."""
    from ..quantize import with_input_range

    ranges, lowest = with_input_range(ranges)
    for node in prepared.graph.nodes:
        observer = getattr(prepared, str(node.target), None) if node.op == "call_module" else None
        if observer is None or not hasattr(observer, "min_val") or getattr(observer, "ch_axis", None) is not None:
            continue
        source = node.args[0]
        if isinstance(source, torch.fx.Node) and source.op == "get_attr":
            continue  # a weight's observer
        key = _range_key(source, ranges) if isinstance(source, torch.fx.Node) else None
        if key is None:
            raise ValueError(f"no stored activation range for {source}; calibrate instead: --recalibrate --calibration DIR")
        scale, zero = ranges[key]
        observer.min_val = torch.tensor((lowest - zero) * scale, dtype=torch.float32)
        observer.max_val = torch.tensor((lowest + 255 - zero) * scale, dtype=torch.float32)


def _quantize(
    program: Any,
    calibration: Iterable[Tensor] | None,
    ranges: Mapping[str, tuple[float, int]] | None = None,
    *,
    uint8: bool = False,
) -> torch.nn.Module:
    """``program`` quantized: int8 with per-channel weights, or with ``uint8`` Google's own
    arithmetic (uint8 activations, each weight tensor on its uint8 grid; needs ``ranges``)."""
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import XNNPACKQuantizer, get_symmetric_quantization_config
    from torchao.quantization.pt2e import MinMaxObserver
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
    from torchao.quantization.pt2e.quantizer import QuantizationSpec

    config = get_symmetric_quantization_config(is_per_channel=not uint8)
    # XNNPACK's default activation observer is a histogram with L2-optimal clipping: on these
    # models it agreed less often with the float model than plain min/max ranges and made
    # calibration about 20x slower (measured on 0.25-128, flowers photos).
    act = dataclasses.replace(config.input_activation, observer_or_fake_quant_ctr=MinMaxObserver.with_args(eps=2**-12))
    weight = dataclasses.replace(config.weight, observer_or_fake_quant_ctr=_grid_observer().with_args(eps=2**-12))
    if uint8:
        act = QuantizationSpec(
            dtype=torch.uint8, quant_min=0, quant_max=255, qscheme=torch.per_tensor_affine,
            observer_or_fake_quant_ctr=MinMaxObserver.with_args(eps=2**-12),
        )  # fmt: skip
        weight = QuantizationSpec(
            dtype=torch.uint8, quant_min=0, quant_max=255, qscheme=torch.per_tensor_symmetric,
            observer_or_fake_quant_ctr=_uint8_grid_observer(),
        )  # fmt: skip
    config = dataclasses.replace(config, input_activation=act, output_activation=act, weight=weight)

    class Quantizer(XNNPACKQuantizer):  # type: ignore[misc]
        def annotate(self, model: torch.fx.GraphModule) -> torch.fx.GraphModule:
            _annotate_conv_clamp(model, config)
            return super().annotate(model)

    quantizer = Quantizer().set_global(config)
    prepared = prepare_pt2e(program.module(), quantizer)
    if calibration is None and ranges is not None:
        # The weights' observers see the weights in a forward pass; the activations' ranges are given.
        example = program.example_inputs[0][0]
        calibration = [torch.zeros_like(example)]
    seen = 0
    with torch.no_grad():
        for batch in calibration or ():
            if isinstance(batch, (tuple, list)):
                batch = batch[0]
            prepared(batch.float())
            seen += int(batch.shape[0])
    if not seen:
        raise ValueError("int8 calibration saw no images; pass a folder with some (a few hundred is typical)")
    if ranges is not None:
        _set_ranges(prepared, ranges)
    return convert_pt2e(prepared)


def export_pte(
    model: MobileNetV1,
    path: str | os.PathLike[str],
    *,
    resolution: int | None = None,
    int8: bool = False,
    calibration: Iterable[Tensor] | None = None,
    activation_ranges: Mapping[str, tuple[float, int]] | None = None,
    keep_grid: bool = True,
) -> Path:
    """Writes ``model`` (BN folded here) as an XNNPACK-delegated ExecuTorch program, batch 1.

    ``int8`` needs ``calibration`` batches of preprocessed images like the real inputs, or
    ``activation_ranges``: uint8 (scale, zero point) by module path, those the weights were
    trained with (Google's quantized files, a ``--qat`` run), which are then used as they are.

    Weights that are a uint8 file's (Google's quantized MobileNets, imported), exported with that
    file's own ranges, keep Google's arithmetic unless ``keep_grid=False``: uint8 activations,
    each weight tensor on the grid it already lies on, run by XNNPACK's uint8 kernels; the
    program then computes what Google's file computes. Otherwise int8 weights are per channel
    (about 2x faster in XNNPACK, re-rounding the channels that do not fit int8). The program
    records which in its constant method ``mobilenet_int8_scheme``.
    """
    from ..model import fold_batchnorm
    from ..quantize import layer_weights, on_uint8_grid

    config = getattr(model, "config", None)
    if not isinstance(model, MobileNetV1) or not isinstance(config, MobileNetConfig):
        raise TypeError(f"ExecuTorch export takes a MobileNetV1, got {type(model).__name__}")
    size = resolution or config.resolution
    example = torch.zeros(1, config.in_chans, size, size)
    folded = fold_batchnorm(model)
    constants = {CONFIG_KEY: json.dumps(config.replace(resolution=size).to_dict())}
    uint8 = False
    if int8:
        uint8 = bool(keep_grid and activation_ranges is not None and on_uint8_grid(layer_weights(folded), activation_ranges))
        constants[INT8_SCHEME_KEY] = "uint8-grid" if uint8 else "per-channel"
    return lower_to_pte(
        folded, path, example, constants, int8=int8, calibration=calibration, activation_ranges=activation_ranges, uint8=uint8
    )


def lower_to_pte(
    module: torch.nn.Module,
    path: str | os.PathLike[str],
    example: Tensor,
    constants: dict[str, str],
    *,
    int8: bool = False,
    calibration: Iterable[Tensor] | None = None,
    activation_ranges: Mapping[str, tuple[float, int]] | None = None,
    uint8: bool = False,
) -> Path:
    """Any BN-folded network as an XNNPACK-delegated ExecuTorch program at ``example``'s shape, with
    ``constants`` (name → string: our configs) as constant methods; int8 calibrated on ``calibration``
    or on ``activation_ranges``; ``uint8``: Google's arithmetic (see :func:`export_pte`)."""
    require("executorch", *(("torchao",) if int8 else ()), purpose="ExecuTorch export")
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    if int8 and calibration is None and activation_ranges is None:
        raise ValueError("pte-int8 needs calibration images: pass --calibration DIR (a few hundred images like the real inputs)")
    if uint8 and activation_ranges is None:
        raise ValueError("Google's uint8 arithmetic needs the ranges the weights were trained with")
    with warnings.catch_warnings(), _xnnpack_takes_uint8() if uint8 else contextlib.nullcontext([1]) as uint8_written:
        warnings.simplefilter("ignore")  # torchao and exir announce deprecations of their own internals
        if int8:
            # Calibrate on whole batches (a free batch dimension), then fix batch 1 for the phone.
            batch = {"x": {0: torch.export.Dim("batch", min=1, max=4096)}}
            free = torch.export.export(module, (example.expand(2, -1, -1, -1).contiguous(),), dynamic_shapes=batch)
            quantized = _quantize(free, calibration, activation_ranges, uint8=uint8)
            program = torch.export.export(quantized, (example,))  # type: ignore[arg-type]
        else:
            program = torch.export.export(module, (example,))
        edge = to_edge_transform_and_lower({"forward": program}, partitioner=[XnnpackPartitioner()], constant_methods=constants)
        if uint8 and (not _all_delegated(edge.exported_program()) or not uint8_written[0]):
            raise RuntimeError(
                "this ExecuTorch could not lower the uint8 program to XNNPACK whole; export with --int8-scheme per-channel"
            )
        buffer = edge.to_executorch().buffer

    def write(tmp: str) -> None:
        Path(tmp).write_bytes(buffer)

    return atomic_write(path, write)


def _runtime() -> Any:
    from executorch.runtime import Runtime

    return Runtime.get()


def load_pte_method(path: str | os.PathLike[str], method: str = "forward", *, threads: int | None = None) -> Any:
    """A .pte program's method, ready to ``execute``, with XNNPACK's pool at ``threads``."""
    require("executorch", purpose="running a .pte file")
    if threads:
        # XNNPACK's thread pool is process-wide in ExecuTorch's Python bindings.
        from executorch.extension.pybindings.portable_lib import _unsafe_reset_threadpool

        _unsafe_reset_threadpool(threads)
    return _runtime().load_program(Path(path)).load_method(method)


def pte_constant(path: str | os.PathLike[str], name: str) -> str | None:
    """The string constant method ``name`` of a .pte program (where we keep configs), or None."""
    require("executorch", purpose="reading a .pte file")
    program = _runtime().load_program(Path(path))
    if name not in program.method_names:
        return None
    (value,) = program.load_method(name).execute([])
    return str(value)


def pte_config(path: str | os.PathLike[str]) -> MobileNetConfig | None:
    """The config a .pte file was exported with by us, or None (a program without it)."""
    value = pte_constant(path, CONFIG_KEY)
    return None if value is None else config_from_metadata(value, path)


def _output_size(path: Path, method: str = "forward") -> int | None:
    """The last dimension of a .pte method's first output, from the program's metadata."""
    sizes = tuple(_runtime().load_program(path).metadata(method).output_tensor_meta(0).sizes())
    return int(sizes[-1]) if sizes else None


class ExecuTorchModel:
    """A .pte file in ``executorch.runtime`` behind the interface ``predict``/``evaluate`` use:
    ``config``, ``eval()`` and NCHW images → logits. The program takes one image at a time (it
    was exported at batch 1, as phones run it); a batch is run image by image."""

    backend = "executorch"

    def __init__(self, path: str | os.PathLike[str], *, threads: int | None = None) -> None:
        require("executorch", purpose="running a .pte file")
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"ExecuTorch file {str(self.path)!r} does not exist")
        config = pte_config(self.path)
        if config is None:
            raise WeightsFileError(
                f"{self.path}: a .pte without mobilenet_config; export it with `mobilenet export --format pte`"
            )
        self.config = config
        self.threads = threads
        check_outputs(config, _output_size(self.path), self.path)  # the config it carries must be the graph's
        self._method = load_pte_method(self.path, threads=threads)

    def eval(self) -> ExecuTorchModel:
        return self

    def with_threads(self, threads: int) -> ExecuTorchModel:
        return ExecuTorchModel(self.path, threads=threads)

    def __call__(self, x: Tensor) -> Tensor:
        x = x.detach().float().cpu().contiguous()
        outs = [self._method.execute([image])[0] for image in x.split(1)]
        return torch.cat(outs).float()


def run_pte(path: str | os.PathLike[str], *, threads: int | None = None) -> ExecuTorchModel:
    """A .pte program in ExecuTorch: a callable with the model's config."""
    return ExecuTorchModel(path, threads=threads)
