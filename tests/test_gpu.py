"""CUDA paths: they run where a GPU is present and skip elsewhere (CI has none)."""

from __future__ import annotations

import contextlib

import pytest
import torch

from mobilenet import mobilenet_v1
from mobilenet.deploy import fold_batchnorm, settle_batchnorm
from mobilenet.train import TrainConfig, train

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


@contextlib.contextmanager
def full_fp32():
    """No TF32 in convolutions and matmuls, so GPU and CPU results can be compared tightly."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def test_forward_on_gpu_matches_cpu():
    model = settle_batchnorm(mobilenet_v1(width_mult=0.5, activation="relu6", padding="tf", num_classes=100), 160).eval()
    x = torch.rand(4, 3, 161, 160) * 2 - 1  # an odd side: the TF pads differ per parity
    with full_fp32(), torch.no_grad():
        want = model(x)
        gpu = model.cuda()(x.cuda()).cpu()
    torch.testing.assert_close(gpu, want, rtol=1e-4, atol=1e-4)
    with torch.no_grad():
        fast = fold_batchnorm(model).to(dtype=torch.bfloat16, memory_format=torch.channels_last)
        got = fast(x.cuda().to(dtype=torch.bfloat16, memory_format=torch.channels_last)).float().cpu()
    assert torch.nn.functional.cosine_similarity(got, want).min() > 0.98


def test_compiled_bf16_gpu_model_matches_eager():
    model = fold_batchnorm(settle_batchnorm(mobilenet_v1(activation="relu6", padding="tf"), 224).eval())
    model = model.cuda().to(dtype=torch.bfloat16, memory_format=torch.channels_last)
    x = (torch.rand(8, 3, 224, 224, device="cuda") * 2 - 1).to(dtype=torch.bfloat16, memory_format=torch.channels_last)
    with torch.inference_mode():
        eager = model(x).float()
        compiled = torch.compile(model, mode="reduce-overhead")
        for _ in range(3):  # the CUDA graph is recorded on a later call
            got = compiled(x).float()
    assert torch.nn.functional.cosine_similarity(got, eager).min() > 0.99


def test_training_on_gpu_with_amp_learns(tmp_path):
    summary = train(
        TrainConfig(
            out=str(tmp_path),
            width_mult=0.25,
            resolution=32,
            epochs=6,
            schedule="cosine",
            warmup=1,
            amp=True,
            channels_last=True,
            device="cuda",
            progress=False,
        )
    )
    assert summary["val_top1"] > 0.7
    again = mobilenet_v1(weights=tmp_path / "best.safetensors")  # GPU-trained weights load on the CPU
    assert again.config.num_classes == 10


def test_optimize_on_gpu():
    from mobilenet.deploy import optimize

    model = settle_batchnorm(mobilenet_v1(width_mult=0.5, activation="relu6", padding="tf"), 160).eval()
    x = torch.rand(4, 3, 160, 160) * 2 - 1
    with torch.no_grad():
        want = model(x)
    model = model.cuda()
    with full_fp32():
        for backend in ("eager", "compiled"):
            got = optimize(model, backend)(x).cpu()  # a CPU batch goes to the model's device
            torch.testing.assert_close(got, want, rtol=2e-4, atol=2e-4)
    got = optimize(model, "bf16")(x).cpu()
    assert torch.nn.functional.cosine_similarity(got, want).min() > 0.98
    with pytest.raises(ValueError, match="runs on the CPU"):
        optimize(model, "onnxruntime")


def test_time_calls_waits_for_the_gpu():
    """Timed on kernel launches alone, a GPU call looks almost free; time_calls must wait for it."""
    from mobilenet.bench import time_calls

    def spin() -> torch.Tensor:
        torch.cuda._sleep(50_000_000)  # a kernel that keeps the GPU busy for tens of ms
        return torch.empty(1, device="cuda")

    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    spin()
    start.record()
    spin()
    end.record()
    end.synchronize()
    gpu_seconds = start.elapsed_time(end) / 1e3
    timed = time_calls(spin, warmup=1, iters=3, min_seconds=0)  # a CUDA result: synchronized by itself
    assert timed.synchronized and timed.median >= 0.8 * gpu_seconds
    launches = time_calls(spin, warmup=1, iters=3, min_seconds=0, sync_device=False)
    torch.cuda.synchronize()
    assert launches.median < 0.5 * gpu_seconds  # the wrong number an unsynchronized loop reports


def test_bench_grid_on_gpu_is_synchronized():
    from mobilenet.bench import time_calls
    from mobilenet.deploy import optimize

    model = settle_batchnorm(mobilenet_v1(width_mult=0.25), 128).eval().cuda()
    predictor = optimize(model, "eager")
    x = torch.rand(2, 3, 128, 128)
    assert time_calls(lambda: predictor(x), warmup=2, iters=3, min_seconds=0).synchronized
