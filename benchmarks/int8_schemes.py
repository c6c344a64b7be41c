"""ONNX int8 weight schemes on Google's quantized MobileNets: top-1 agreement with float on real
photos, and speed, side by side; ONNX Runtime and OpenVINO, and OpenVINO on its AVX2 kernels.

Schemes (activations: Google's own uint8 ranges in every case):
  - uint8-grid:  what `export --format onnx-int8` writes for Google's files: each weight tensor as
                 the uint8 integers of Google's file, per tensor (uint8 x uint8 products)
  - portable:    what `export --format onnx-int8 --int8-scheme per-channel` writes (and the default
                 for other weights): 8-bit weights per channel (Google's grid kept where it fits)
                 split so that no weight of a matrix product exceeds 64 (mobilenet.quantize.split_for_int8)
  - 7bit:        the matrix products' weights rounded to |w| <= 64 (ONNX Runtime's reduce_range)
  - 8bit-unsafe: 8-bit weights as they are; saturates on CPUs without VNNI (the speed reference)
  - fp32:        the float ONNX export (the speed of no quantization)
  - google:      Google's own .tflite in LiteRT (agreement only)

Agreement is over 200 flowers photos and the 8 reference photos, each model's own preprocessing.
OpenVINO is also run with ONEDNN_MAX_CPU_ISA=AVX2 (a CPU without VNNI) in a child process, which
shows which schemes give the same answers there.

    python benchmarks/int8_schemes.py [--models 0.25-128 0.5-160 1.0-224] [--rounds 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

import mobilenet.runtimes.onnxruntime as export  # where the int8 scheme and its constants live
from mobilenet import mobilenet_v1
from mobilenet.bench import cpu_description
from mobilenet.data import image_batches
from mobilenet.deploy import OnnxRuntimePredictor, OpenVINOPredictor
from mobilenet.model import fold_batchnorm
from mobilenet.weights.tflite import activation_quantization

SHARED = Path(__file__).resolve().parents[2] / "shared"
TFLITE = SHARED / "reference" / "tflite"
MODELS = {
    "0.25-128": [TFLITE / "mobilenet_v1_0.25_128_quant.tflite"],
    "0.5-160": [TFLITE / "mobilenet_v1_0.5_160_quant.tflite"],
    "1.0-224": [
        TFLITE / "mobilenet_v1_1.0_224_quant_embedding_extractor.tflite",
        TFLITE / "mobilenet_v1_1.0_224_quant_head_layers.tflite",
    ],
}


def write_scheme(model: torch.nn.Module, ranges: dict, scheme: str, folder: Path) -> Path:
    folded = fold_batchnorm(model)
    if scheme == "fp32":
        return export.export_onnx(folded, folder / "fp32.onnx", dynamic_batch=True)
    saved = export.MATMUL_WEIGHT_QMAX
    try:
        export.MATMUL_WEIGHT_QMAX = 127 if scheme == "8bit-unsafe" else 64
        grid = scheme == "uint8-grid"
        source = export.portable_int8(folded, exact=grid) if scheme in ("portable", "uint8-grid") else folded
        fp32 = export.export_onnx(source, folder / f"{scheme}.fp32.onnx", dynamic_batch=True)
        return export.quantize_onnx(fp32, folder / f"{scheme}.onnx", None, activation_ranges=ranges, keep_grid=grid)
    finally:
        export.MATMUL_WEIGHT_QMAX = saved


def google_logits(files: list[Path], x: torch.Tensor) -> torch.Tensor:
    from ai_edge_litert.interpreter import Interpreter

    stages = [Interpreter(model_path=str(f), num_threads=2) for f in files]
    for it in stages:
        it.allocate_tensors()
    images = (x * 128 + 128).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    out = []
    for image in images:
        y = image[None]
        for it in stages:
            detail = it.get_input_details()[0]
            it.set_tensor(detail["index"], y.reshape(detail["shape"]))
            it.invoke()
            y = it.get_tensor(it.get_output_details()[0]["index"])
        out.append(y.reshape(-1).astype(np.float32))
    return torch.from_numpy(np.stack(out))


def openvino_avx2(path: Path, x: torch.Tensor) -> torch.Tensor:
    """OpenVINO's logits with oneDNN capped at AVX2 (the kernels of a CPU without VNNI)."""
    with tempfile.TemporaryDirectory() as tmp:
        np.save(Path(tmp) / "x.npy", x.numpy())
        code = (
            "import numpy as np, openvino as ov, sys\n"
            "m = ov.Core().compile_model(sys.argv[1], 'CPU', {'INFERENCE_PRECISION_HINT': 'f32'})\n"
            "np.save(sys.argv[3], m(np.load(sys.argv[2]))[0])\n"
        )
        env = {**os.environ, "ONEDNN_MAX_CPU_ISA": "AVX2"}
        subprocess.run([sys.executable, "-c", code, str(path), f"{tmp}/x.npy", f"{tmp}/y.npy"], env=env, check=True)
        return torch.from_numpy(np.load(f"{tmp}/y.npy"))


def avx2_agreement(path: Path, x: torch.Tensor, want: torch.Tensor) -> float | str:
    try:
        return agreement(openvino_avx2(path, x), want)
    except subprocess.CalledProcessError:
        return "fails"


def agreement(got: torch.Tensor, want: torch.Tensor) -> float:
    return float((got.argmax(1) == want.argmax(1)).float().mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    print(f"cpu: {cpu_description()}; torch {torch.__version__}; {time.strftime('%Y-%m-%d')}")
    print(
        "| model | scheme | ONNX Runtime agreement | OpenVINO | OpenVINO, AVX2 kernels | ORT ms | OV ms | ORT ms / 8bit-unsafe |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name in args.models:
        files = MODELS[name]
        model = mobilenet_v1(weights=[str(f) for f in files]).eval()
        x = torch.cat(image_batches(SHARED / "data" / "flowers" / "val", model.config, limit=200)
                      + image_batches(SHARED / "reference" / "images", model.config, limit=20))  # fmt: skip
        with torch.no_grad():
            want = model(x)
        print(f"| {name} | google (LiteRT) | {agreement(google_logits(files, x), want):.3f} | | | | | |", flush=True)
        ranges = activation_quantization(files)
        with tempfile.TemporaryDirectory() as tmp:
            rows = {}
            runners = {}
            for scheme in ("uint8-grid", "portable", "7bit", "8bit-unsafe", "fp32"):
                path = write_scheme(model, ranges, scheme, Path(tmp))
                ort = OnnxRuntimePredictor(path, "int8", 2)
                ov = OpenVINOPredictor(path, "openvino-int8", 2, "f32")
                rows[scheme] = [
                    agreement(torch.cat([ort(b) for b in x.split(16)]), want),
                    agreement(torch.cat([ov(b) for b in x.split(16)]), want),
                    avx2_agreement(path, x, want),
                ]
                runners[scheme] = (ort, ov)
            one = x[:1].contiguous()
            times: dict[tuple[str, int], list[float]] = {(s, i): [] for s in runners for i in (0, 1)}
            for _ in range(args.rounds):  # interleaved: each round times every candidate once
                for (scheme, i), seen in times.items():
                    fn = runners[scheme][i]
                    for _ in range(3):
                        fn(one)
                    calls = []
                    for _ in range(20):
                        start = time.perf_counter()
                        fn(one)
                        calls.append(time.perf_counter() - start)
                    seen.append(statistics.median(calls))
            base = times[("8bit-unsafe", 0)]
            for scheme, (a_ort, a_ov, a_avx2) in rows.items():
                ort_ms = 1e3 * statistics.median(times[(scheme, 0)])
                ov_ms = 1e3 * statistics.median(times[(scheme, 1)])
                ratio = statistics.median(a / b for a, b in zip(times[(scheme, 0)], base))
                print(
                    f"| {name} | {scheme} | {a_ort:.3f} | {a_ov:.3f} | {a_avx2 if isinstance(a_avx2, str) else format(a_avx2, '.3f')} | {ort_ms:.1f} | {ov_ms:.1f} | {ratio:.2f} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
