"""Inference forms, export and int8: each checked against the PyTorch model it came from."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from mobilenet import mobilenet_v1
from mobilenet.bench import format_per_layer, per_layer_profile, plot_latency, run_grid
from mobilenet.deploy import BACKENDS, ExportedModel, backend_available, fold_batchnorm, load_exported, optimize, settle_batchnorm
from mobilenet.export import export_model, onnx_config

from .reference import MODELS, have_reference, photos, resized
from .test_cli import run_cli

ort = pytest.importorskip("onnxruntime", reason="the export extra (onnxruntime) is not installed")


@pytest.fixture(autouse=True)
def _keep_thread_count():
    """optimize(threads=...) sets PyTorch's thread count, as a deployment wants; tests put it back."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def _model(width: float = 0.25, size: int = 96, padding: str = "tf", classes: int = 17) -> torch.nn.Module:
    """A random-init model with non-trivial BN statistics (so a folding mistake shows)."""
    torch.manual_seed(0)
    model = mobilenet_v1(width_mult=width, resolution=size, padding=padding, activation="relu6", num_classes=classes)
    settle_batchnorm(model, size)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    return model.eval()


def _inputs(size: int, n: int = 3) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(1)) * 2 - 1


@pytest.mark.parametrize("padding", ["tf", "symmetric", "keras"])
def test_fold_batchnorm_is_the_same_function(padding):
    model = _model(padding=padding, size=99)
    folded = fold_batchnorm(model)
    x = _inputs(99)
    with torch.no_grad():
        want = model(x)
        torch.testing.assert_close(folded(x), want, rtol=1e-5, atol=1e-5)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())  # the original is untouched
    assert want.abs().max() > 0.1  # outputs of a useful size, so the comparison means something


@pytest.mark.parametrize("backend", ["eager", "compiled", "onnxruntime"])
def test_fp32_backends_match_pytorch(tmp_path, backend):
    model = _model()
    x = _inputs(96)
    with torch.no_grad():
        want = model(x)
    got = optimize(model, backend, workdir=tmp_path)(x)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)


def test_bf16_backend_is_close():
    model = _model()
    x = _inputs(96)
    with torch.no_grad():
        want = model(x)
    got = optimize(model, "bf16")(x)
    # bf16 keeps 8 bits of mantissa; over 28 layers of a random net the logits stay well aligned.
    assert torch.nn.functional.cosine_similarity(got, want).min() > 0.98


# (A traced TorchScript module has no dynamic-batch option: it takes any batch as it is.)
@pytest.mark.parametrize("fmt,dynamic", [("onnx", False), ("onnx", True), ("torchscript", False), ("pt2", False), ("pt2", True)])
def test_export_roundtrip(tmp_path, fmt, dynamic):
    model = _model(size=128)
    path = export_model(model, tmp_path / f"m.{fmt}", fmt, dynamic_batch=dynamic)
    x = _inputs(128, n=3 if dynamic else 1)
    with torch.no_grad():
        want = model(x)
    torch.testing.assert_close(load_exported(path)(x), want, rtol=1e-4, atol=1e-4)
    if fmt == "onnx":
        assert onnx_config(path) == model.config
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        shape = session.get_inputs()[0].shape
        assert (isinstance(shape[0], str)) == dynamic and shape[1:] == [3, 128, 128]


def test_int8_export_agrees_with_float(tmp_path):
    model = _model(width=0.5, size=64, classes=10)
    calibration = [_inputs(64, 16) for _ in range(4)]
    path = export_model(model, tmp_path / "m.int8.onnx", "onnx-int8", calibration=calibration)
    x = _inputs(64, 64)
    with torch.no_grad():
        want = model(x)
    got = ExportedModel(path)(x)
    fp32 = export_model(model, tmp_path / "m.onnx", "onnx")
    assert path.stat().st_size < 0.45 * fp32.stat().st_size  # int8 weights: about a quarter, plus the graph
    # A random net's top-1 sits on small margins, so compare the logits themselves; top-1 on real
    # weights and photos is checked below against Google's runtime.
    assert torch.nn.functional.cosine_similarity(got, want).mean() > 0.9  # 0.94 measured; broken int8 is near 0


def test_int8_needs_calibration(tmp_path):
    with pytest.raises(ValueError, match="calibration"):
        export_model(_model(), tmp_path / "m.onnx", "onnx-int8")
    with pytest.raises(ValueError, match="calibration"):
        optimize(_model(), "int8")


def test_unknown_or_missing_backend_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown backend"):
        optimize(_model(), "tensorrt-9000")
    assert backend_available("eager") is None
    for backend in BACKENDS:
        message = backend_available(backend)
        assert message is None or "pip install" in message


def test_per_layer_profile_covers_every_layer():
    model = _model(width=0.5, size=128, classes=10)
    rows = per_layer_profile(model, _inputs(128, 1), iters=3)
    assert [r["layer"] for r in rows][:3] == ["conv1", "dw2", "pw2"] and rows[-1]["layer"] == "fc"
    assert all(r["ms"] > 0 for r in rows)
    assert sum(r["time_share"] for r in rows) == pytest.approx(1.0)
    assert sum(r["mult_adds_share"] for r in rows) == pytest.approx(1.0)
    assert "conv 1x1 (pointwise)" in format_per_layer(rows)


def test_run_grid_reports_each_setting(tmp_path):
    seen = []
    rows = run_grid(
        lambda a, r: _model(width=a, size=r),
        widths=[0.25],
        resolutions=[64, 96],
        batch_sizes=[1, 2],
        threads=[1],
        backends=["eager", "onnxruntime"],
        warmup=1,
        iters=2,
        min_seconds=0,
        report=seen.append,
    )
    # ONNX Runtime is timed twice: through our Predictor, and its own session.run beside it ("raw")
    assert len(rows) == len(seen) == 2 * 2 * 3
    assert {(t.resolution, t.batch_size, t.backend) for t in rows} == {
        (r, b, k) for r in (64, 96) for b in (1, 2) for k in ("eager", "onnxruntime", "onnxruntime raw")
    }
    assert all(t.p10_ms <= t.median_ms <= t.p90_ms and t.gmacs_per_s > 0 for t in rows)
    assert plot_latency(rows, tmp_path / "latency.png").stat().st_size > 1000


def test_cli_export_bench_and_predict(tmp_path):
    out = run_cli(
        "export", "-a", "0.25", "-r", "64", "--format", "onnx", "--dynamic-batch", "-o", str(tmp_path / "m.onnx")
    ).stdout
    assert "largest difference from PyTorch" in out
    rows = json.loads(
        run_cli("bench", "-a", "0.25", "-r", "64", "--backend", "eager", "onnxruntime", "-b", "1", "--iters", "3",
                "--min-seconds", "0", "--warmup", "1", "--json").stdout
    )  # fmt: skip
    assert {r["backend"] for r in rows} == {"eager", "onnxruntime", "onnxruntime raw"}
    assert all(r["median_ms"] > 0 and r["mult_adds"] > 0 for r in rows)
    proc = run_cli("bench", "--backend", "no-such", check=False)
    assert proc.returncode == 2 and "invalid choice" in proc.stderr
    table = run_cli("bench", "-a", "0.25", "-r", "64", "--per-layer").stdout
    assert "pw14" in table and "time %" in table


@pytest.mark.skipif(not have_reference(), reason="../shared/reference is not present")
def test_int8_from_google_ranges_and_every_backend_agrees_on_photos(tmp_path):
    """Google's 0.5-160: an int8 export that takes the TF Lite file's own activation ranges gives
    the same top-1 as the float model on the reference photos, as does every installed backend."""
    from mobilenet.weights.tflite import activation_quantization

    files = MODELS["0.5_160"]
    model = mobilenet_v1(weights=files)
    x = (torch.from_numpy(np.stack([resized(p, 160) for p in photos()])).permute(0, 3, 1, 2).float() - 128) / 128
    with torch.no_grad():
        want = model(x).argmax(1)
    for backend in ("eager", "bf16", "onnxruntime", "int8", "openvino", "openvino-bf16", "openvino-int8"):
        if backend_available(backend) is not None:
            continue
        ranges = activation_quantization(files) if "int8" in backend else None
        got = optimize(model, backend, activation_ranges=ranges, workdir=tmp_path / backend)(x).argmax(1)
        assert (got == want).all(), f"{backend}: {got.tolist()} vs eager {want.tolist()}"
    # the same through the CLI: export, then predict with the int8 file
    said = run_cli("export", "--weights", str(files[0]), "--format", "onnx-int8", "-o", str(tmp_path / "q.onnx")).stdout
    assert "int8 scheme: Google's integer arithmetic" in said and "1.4x faster" in said, said
    out = run_cli("predict", str(photos()[0].parent / "parrot.jpg"), "--weights", str(tmp_path / "q.onnx"), "--json").stdout
    pred = [json.loads(line) for line in out.splitlines()]  # JSON Lines: one object per image
    assert pred[0]["predictions"][0]["label"] == "macaw"


def test_missing_export_extra_names_what_to_install(tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnxscript" else real(name, *a))
    with pytest.raises(RuntimeError, match=r"pip install 'mobilenet\[export\]'"):
        export_model(_model(), tmp_path / "m.onnx", "onnx")
    assert "pip install" in backend_available("onnxruntime")
