"""int8 that computes the same on every x86 CPU, and calibration on the model's own preprocessing.

CPUs without VNNI (AMD before Zen 4, Intel client CPUs before Ice Lake) multiply uint8
activations by int8 weights with ``vpmaddubsw``, which saturates a sum of two products at 32767.
These tests check what holds on every CPU: the stored weights cannot reach that limit, OpenVINO
forced onto its AVX2 kernels gives the same logits as on this CPU's best ones, and int8 agrees
with float on real photos.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from mobilenet import mobilenet_v1
from mobilenet.data import image_batches
from mobilenet.deploy import backend_available, optimize
from mobilenet.export import DEPTHWISE_WEIGHT_QMAX, MATMUL_WEIGHT_QMAX, export_model

from .reference import MODELS, REFERENCE, have_reference

pytest.importorskip("onnxruntime", reason="the export extra (onnxruntime) is not installed")
FLOWERS = REFERENCE.parent / "data" / "flowers"
needs_files = pytest.mark.skipif(not (have_reference() and FLOWERS.is_dir()), reason="../shared is not present")


def _quantized_weights(path: Path) -> list[tuple[str, bool, np.ndarray, np.ndarray, np.ndarray]]:
    """(op, depthwise, stored integers, scale, zero point) of every quantized Conv and Gemm weight
    in a QDQ ONNX file."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    producer = {out: node for node in model.graph.node for out in node.output}
    found = []
    for node in model.graph.node:
        if node.op_type not in ("Conv", "Gemm"):
            continue
        dq = producer.get(node.input[1])
        assert dq is not None and dq.op_type == "DequantizeLinear", f"{node.name}: weights are not quantized"
        w, scale, zero = (inits[name] for name in dq.input[:3])
        group = next((a.i for a in node.attribute if a.name == "group"), 1)
        found.append((node.op_type, group > 1 and group == w.shape[0], w, scale, zero))
    return found


def _assert_cannot_saturate(path: Path, depthwise_dtype: type = np.int8) -> None:
    weights = _quantized_weights(path)
    assert len(weights) == 28  # conv1, 13 depthwise, 13 pointwise, the classifier
    for op, depthwise, w, _, _ in weights:
        top = int(np.abs(w.astype(np.int32)).max())
        if depthwise:  # widened to 16 bits before multiplying: no pairs to saturate
            assert w.dtype == depthwise_dtype, f"{op}: {w.dtype}"
            assert w.dtype == np.uint8 or top <= DEPTHWISE_WEIGHT_QMAX
        else:  # two uint8 x int8 products in one int16: 2 * 255 * |w| must stay <= 32767
            assert w.dtype == np.int8
            assert top <= MATMUL_WEIGHT_QMAX and 2 * 255 * top <= 32767, f"{op} weight {top}"


def _google(name: str) -> torch.nn.Module:
    return mobilenet_v1(weights=[str(f) for f in MODELS[name]]).eval()


def _photos(model: torch.nn.Module, limit: int = 120) -> torch.Tensor:
    return torch.cat(image_batches(FLOWERS / "val", model.config, limit=limit, seed=3))


def _agreement(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.argmax(1) == b.argmax(1)).float().mean())


def test_random_model_int8_weights_cannot_saturate(tmp_path):
    torch.manual_seed(0)
    model = mobilenet_v1(width_mult=0.25, resolution=64, num_classes=10, activation="relu6").eval()
    calibration = [torch.rand(8, 3, 64, 64) * 2 - 1 for _ in range(2)]
    _assert_cannot_saturate(export_model(model, tmp_path / "m.int8.onnx", "onnx-int8", calibration=calibration))


@needs_files
def test_google_int8_keeps_googles_integers_and_cannot_saturate(tmp_path):
    """Google's 0.5-160 with its own ranges, both schemes: no weight of a matrix product beyond
    the range no CPU saturates. By default every weight is an integer of Google's file: the
    matrix products' on Google's step (per-channel scales all equal to it; the integers beyond
    ±64 split into pieces, exactly the exact split's), the depthwise ones stored as Google's
    uint8 values per tensor (repeated filters included)."""
    from mobilenet.export import stored_activation_ranges
    from mobilenet.model import fold_batchnorm
    from mobilenet.quantize import grid_step, split_for_int8

    model = _google("0.5_160")
    ranges, _ = stored_activation_ranges(MODELS["0.5_160"])
    path = export_model(model, tmp_path / "g.int8.onnx", "onnx-int8", activation_ranges=ranges)
    _assert_cannot_saturate(path, np.uint8)
    folded = fold_batchnorm(model)
    split = split_for_int8(folded, MATMUL_WEIGHT_QMAX, exact=True)  # type: ignore[arg-type]
    layers = [m for m in split.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    for (op, depthwise, w, scale, zero), layer in zip(_quantized_weights(path), layers, strict=True):
        want = layer.weight.detach().double().numpy()
        step = grid_step(want)
        assert step is not None
        if depthwise:
            assert w.dtype == np.uint8 and scale.size == 1, op
            dequantized = (w.astype(np.float64) - float(zero)) * float(scale)
        else:
            np.testing.assert_allclose(scale, step, rtol=1e-5)
            assert w.dtype == np.int8 and not zero.any(), op
            dequantized = w.astype(np.float64) * scale.astype(np.float64).reshape((-1,) + (1,) * (w.ndim - 1))
        np.testing.assert_allclose(dequantized, want, rtol=0, atol=step * 1e-3)
    _assert_cannot_saturate(
        export_model(model, tmp_path / "pc.int8.onnx", "onnx-int8", activation_ranges=ranges, keep_grid=False)
    )


def test_exact_split_computes_the_same_function():
    """The split of a uint8 file's weights into pieces within ±64 (up to four, where Google's
    integers reach 255 steps) changes no output: the split model in float equals the folded one."""
    from mobilenet.model import fold_batchnorm
    from mobilenet.quantize import split_for_int8

    torch.manual_seed(0)
    model = fold_batchnorm(mobilenet_v1(width_mult=0.25, resolution=64, num_classes=10, activation="relu6").eval())
    step = 1 / 256
    for module in model.modules():  # integers on one step reaching 255 steps on one side of zero
        if isinstance(module, (torch.nn.Conv2d, torch.nn.Linear)):
            units = torch.randint(0, 256, module.weight.shape) - torch.randint(0, 256, (module.weight.shape[0],)).view(
                -1, *[1] * (module.weight.dim() - 1)
            )
            module.weight.data = units.float() * step
    split = split_for_int8(model, MATMUL_WEIGHT_QMAX, exact=True)
    for module in split.modules():
        if isinstance(module, (torch.nn.Conv2d, torch.nn.Linear)) and not getattr(module, "groups", 1) > 1:
            units = module.weight.double() / step
            assert float((units - units.round()).abs().max()) < 1e-3  # still whole steps
            assert float(units.abs().max()) <= MATMUL_WEIGHT_QMAX  # each piece within ±64
    x = torch.rand(4, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(split(x), model(x), rtol=1e-4, atol=1e-4)


@needs_files
@pytest.mark.skipif(backend_available("litert-int8") is not None, reason="ai-edge-litert is not installed")
def test_onnx_int8_of_googles_weights_computes_what_googles_file_does(tmp_path):
    """`export --format onnx-int8` of Google's file, no calibration images: the same top-1 as
    Google's file in LiteRT on nearly every photo, and as much agreement with float. Measured on
    208 photos (benchmarks/int8_faithfulness.py): 0.995-1.000 the same top-1 on Google's four
    models; per-channel int8 (before) 0.90-0.96, and 3.4 points less agreement at 0.25-128."""
    from mobilenet.commands import export_model as export
    from mobilenet.deploy import load_exported
    from mobilenet.runtimes.litert import run_tflite

    files = [str(f) for f in MODELS["0.25_128"]]
    result = export(files, tmp_path / "q.onnx", "onnx-int8", check=False)
    assert result.int8_scheme == "uint8-grid"
    model = _google("0.25_128")
    x = _photos(model, 128)
    with torch.no_grad():
        want = model(x)
    ours, googles = load_exported(result.path)(x), run_tflite(files)(x)
    # Measured: 127 of these 128 photos (ONNX Runtime requantizes in float, LiteRT in fixed point).
    assert _agreement(ours, googles) >= 0.985
    assert _agreement(ours, want) >= _agreement(googles, want) - 0.02


def _openvino_logits(path: Path, isa: str | None, x: np.ndarray) -> np.ndarray:
    """Logits of an int8 ONNX file in OpenVINO, in a fresh process; ``isa`` caps oneDNN's
    instruction set (ONEDNN_MAX_CPU_ISA), so AVX2 runs the kernels of a CPU without VNNI."""
    env = dict(os.environ)
    env.pop("ONEDNN_MAX_CPU_ISA", None)
    if isa:
        env["ONEDNN_MAX_CPU_ISA"] = isa
    folder = path.parent
    np.save(folder / "x.npy", x)
    code = (
        "import numpy as np, openvino as ov, sys\n"
        "m = ov.Core().compile_model(sys.argv[1], 'CPU', {'INFERENCE_PRECISION_HINT': 'f32'})\n"
        "np.save(sys.argv[3], m(np.load(sys.argv[2]))[0])\n"
    )
    out = folder / f"logits-{isa or 'native'}.npy"
    subprocess.run([sys.executable, "-c", code, str(path), str(folder / "x.npy"), str(out)], env=env, check=True, timeout=300)
    return np.load(out)


@needs_files
@pytest.mark.slow
def test_openvino_int8_is_the_same_on_avx2_kernels(tmp_path):
    """On this CPU and on its AVX2 kernels (those of a CPU without VNNI), OpenVINO computes our
    int8 files, both schemes, to the same logits. (ONNX Runtime has no such switch; its kernels
    saturate under the same condition, which the weight check above rules out.)"""
    if backend_available("openvino-int8") is not None:
        pytest.skip("openvino is not installed")
    from mobilenet.export import stored_activation_ranges

    model = _google("0.25_128")
    ranges, _ = stored_activation_ranges(MODELS["0.25_128"])
    x = _photos(model, 64).numpy()
    for keep_grid in (True, False):
        path = export_model(
            model, tmp_path / f"g{keep_grid}.int8.onnx", "onnx-int8", activation_ranges=ranges, keep_grid=keep_grid
        )
        native, avx2 = _openvino_logits(path, None, x), _openvino_logits(path, "AVX2", x)
        # The same integers: at most a rounding tie apart, one output step (the logits' scale).
        step = np.diff(np.unique(native)).min()
        assert np.abs(native - avx2).max() <= step * 1.01
        assert (native.argmax(1) == avx2.argmax(1)).mean() >= 0.98


_RUN = {
    "onnxruntime": (
        "import sys, numpy as np, onnxruntime as ort\n"
        "s = ort.InferenceSession(sys.argv[1], providers=['CPUExecutionProvider'])\n"
        "np.save(sys.argv[3], s.run(None, {s.get_inputs()[0].name: np.load(sys.argv[2])})[0])\n"
    ),
    "openvino": (
        "import sys, numpy as np, openvino as ov\n"
        "m = ov.Core().compile_model(sys.argv[1], 'CPU', {'INFERENCE_PRECISION_HINT': 'f32'})\n"
        "np.save(sys.argv[3], m(np.load(sys.argv[2]))[0])\n"
    ),
}


def _logits(path: Path, x: np.ndarray, emulate: str | None, runtime: str = "onnxruntime") -> np.ndarray:
    """Logits of an ONNX file in ``runtime``, in a fresh process; ``emulate`` runs that process
    under QEMU's user mode as that CPU model (ONNX Runtime and OpenVINO pick kernels from CPUID)."""
    np.save(path.parent / "x.npy", x)
    out = path.parent / f"{path.stem}-{runtime}-{emulate or 'native'}.npy"
    command = [sys.executable, "-c", _RUN[runtime], str(path), str(path.parent / "x.npy"), str(out)]
    if emulate:
        command = ["qemu-x86_64", "-cpu", emulate, *command]
    subprocess.run(command, check=True, timeout=600, stderr=subprocess.DEVNULL)
    return np.load(out)


@needs_files
@pytest.mark.slow
@pytest.mark.skipif(shutil.which("qemu-x86_64") is None, reason="qemu-user is not installed (apt-get install qemu-user)")
def test_int8_is_the_same_on_an_emulated_zen3(tmp_path, monkeypatch):
    """ONNX Runtime on a Zen 3 (AVX2, no VNNI; the CPU the suite once failed on), emulated by QEMU:
    both our int8 files (Google's uint8 grid, the default here; per-channel int8) give exactly this
    machine's logits, and OpenVINO there gives the uint8-grid file's within one output step. The
    control, the same weights as plain 8-bit int8 without the split, must come out different
    there: otherwise the emulation did not reach the non-VNNI kernels and the test would show
    nothing (measured: logits 6.4 apart, top-1 agreement with float 0.917 -> 0.792 on 24 photos
    of 0.5-160; benchmarks/int8_emulated_avx2.py)."""
    import mobilenet.runtimes.onnxruntime as ort_export
    from mobilenet.model import fold_batchnorm
    from mobilenet.weights.tflite import activation_quantization

    model = _google("0.5_160")
    ranges = activation_quantization(MODELS["0.5_160"])
    x = _photos(model, 8).numpy()
    grid = export_model(model, tmp_path / "grid.int8.onnx", "onnx-int8", activation_ranges=ranges)
    channel = export_model(model, tmp_path / "channel.int8.onnx", "onnx-int8", activation_ranges=ranges, keep_grid=False)
    monkeypatch.setattr(ort_export, "MATMUL_WEIGHT_QMAX", 127)  # the control: every weight 8 bits, no split
    fp32 = ort_export.export_onnx(fold_batchnorm(model), tmp_path / "plain.onnx", dynamic_batch=True)
    plain = ort_export.quantize_onnx(fp32, tmp_path / "plain.int8.onnx", None, activation_ranges=ranges)
    if np.array_equal(_logits(plain, x, None), _logits(plain, x, "EPYC-Milan")):
        pytest.skip("QEMU's EPYC-Milan did not reach ONNX Runtime's non-VNNI kernels here (plain 8-bit did not saturate)")
    for ours in (grid, channel):
        np.testing.assert_array_equal(_logits(ours, x, "EPYC-Milan"), _logits(ours, x, None))
    if backend_available("openvino-int8") is None:
        native, zen3 = _logits(grid, x, None, "openvino"), _logits(grid, x, "EPYC-Milan", "openvino")
        step = np.diff(np.unique(native)).min()
        assert np.abs(native - zen3).max() <= step * 1.01


@needs_files
@pytest.mark.slow
def test_export_calibrates_on_the_weights_preprocessing(tmp_path):
    """`export --calibration DIR` and export_model(calibration=DIR) preprocess the calibration
    photos as the weights expect (Google's: [-1, 1], central crop), so the int8 file agrees with
    float on held-out photos; both give the same file."""
    from .test_cli import run_cli

    weights = str(MODELS["0.25_128"][0])
    cli_path = tmp_path / "cli.int8.onnx"
    # --recalibrate: Google's file carries the ranges it was trained with, which win otherwise.
    run_cli("export", "--weights", weights, "--format", "onnx-int8", "--recalibrate", "--calibration", str(FLOWERS / "train"),
            "--calibration-images", "64", "-o", str(cli_path))  # fmt: skip
    model = _google("0.25_128")
    from mobilenet.data import image_batches as batches

    api_path = export_model(
        model, tmp_path / "api.int8.onnx", "onnx-int8", calibration=batches(FLOWERS / "train", model.config, limit=64)
    )
    import onnx

    cli_model, api_model = onnx.load(str(cli_path)), onnx.load(str(api_path))
    assert [i.raw_data for i in cli_model.graph.initializer] == [i.raw_data for i in api_model.graph.initializer]
    x = _photos(model)
    with torch.no_grad():
        want = model(x)
    from mobilenet.deploy import ExportedModel

    got = ExportedModel(cli_path)(x)
    agreement = _agreement(got, want)
    assert agreement >= 0.80, agreement


@needs_files
def test_optimize_takes_a_calibration_folder(tmp_path):
    model = _google("0.25_128")
    predictor = optimize(model, "int8", calibration=FLOWERS / "train", workdir=tmp_path)
    x = _photos(model, 32)
    with torch.no_grad():
        want = model(x)
    assert _agreement(predictor(x), want) >= 0.75


def test_image_batches_needs_a_config(tmp_path):
    with pytest.raises(TypeError):
        image_batches(tmp_path)  # type: ignore[call-arg]


def test_bench_names_the_cpu_features():
    from mobilenet.bench import cpu_description

    text = cpu_description()
    assert "int8:" in text and "bf16:" in text
    json.dumps(text)
