"""The real `mobilenet` command, run as a user would."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


def run_cli(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "mobilenet", *args], capture_output=True, text=True, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"mobilenet {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def test_cost_json():
    data = json.loads(run_cli("cost", "--json").stdout)
    assert data["mult_adds"] == 568_740_352 and data["params"] == 4_209_088
    assert len(data["layers"]) == 28


@pytest.mark.parametrize(
    "args,macs,params",
    [
        (["-a", "0.5", "-r", "160"], 76_524_800, 1_319_648),
        (["--width-mult", "0.25"], 41_030_272, 463_600),
        (["--variant", "shallow"], None, None),
    ],
)
def test_cost_settings(args, macs, params):
    data = json.loads(run_cli("cost", "--json", *args).stdout)
    if macs is not None:
        assert (data["mult_adds"], data["params"]) == (macs, params)
    else:
        assert 307e6 < data["mult_adds"] < 308e6


def test_cost_table_and_paper():
    out = run_cli("cost", "--per-layer").stdout
    assert "pw14" in out and "568,740,352" in out
    paper = run_cli("paper").stdout
    assert "0 disagree" in paper and "digit swap" in paper
    rows = json.loads(run_cli("paper", "--json").stdout)
    assert all(r["status"] in ("agrees", "explained") for r in rows)


def test_cli_bad_input_is_one_line():
    proc = run_cli("cost", "--width-mult", "-1", check=False)
    assert proc.returncode == 2
    assert "--width-mult" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["onnx", "tflite-int8"])
def test_export_through_the_cli_and_python_writes_the_same_file(tmp_path, fmt):
    """`mobilenet export` is `mobilenet.export_model`: the same choices (int8 calibrated on the
    digits the weights were trained on), the same file, the same check against PyTorch."""
    pytest.importorskip("ai_edge_litert" if fmt.startswith("tflite") else "onnxruntime")
    import torch

    import mobilenet
    from mobilenet.checkpoint import save_weights
    from mobilenet.export import DEFAULT_SUFFIX

    torch.manual_seed(0)
    model = mobilenet.mobilenet_v1(width_mult=0.25, resolution=32, num_classes=10)
    weights = save_weights(tmp_path / "w.safetensors", model, model.config.replace(labels="digits"))
    cli_out, py_out = tmp_path / f"cli{DEFAULT_SUFFIX[fmt]}", tmp_path / f"py{DEFAULT_SUFFIX[fmt]}"
    proc = run_cli("export", "--weights", str(weights), "--format", fmt, "--calibration-images", "64", "-o", str(cli_out))
    result = mobilenet.export_model(weights, py_out, fmt, calibration_images=64)
    assert result.path == py_out
    if fmt == "onnx":  # the exporter numbers its names per process: compare what the files hold and compute
        import onnx

        from mobilenet.deploy import load_exported

        a, b = (onnx.load(str(p)) for p in (cli_out, py_out))
        assert {(p.key, p.value) for p in a.metadata_props} == {(p.key, p.value) for p in b.metadata_props}
        x = torch.rand(1, 3, 32, 32) * 2 - 1
        torch.testing.assert_close(load_exported(cli_out)(x), load_exported(py_out)(x), rtol=0, atol=1e-6)
    else:
        assert cli_out.read_bytes() == py_out.read_bytes()
    assert f"on {result.check['images']} " in proc.stdout and f"{result.check['size_mb']:.1f} MB" in proc.stdout
