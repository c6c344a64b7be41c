"""What our Predictor costs over the runtime's own call: `optimize(model, backend)(x)` against
`Predictor.raw_call(x)` (ONNX Runtime's session.run, OpenVINO's infer on a prepared array).

Calls alternate one by one (ours, raw, ours, raw, ...), so a change in the machine's load hits
both; the ratio is the median of ours over the median of raw, per backend.

    python benchmarks/wrapper_overhead.py [--calls 400] [--width 1.0] [--resolution 224] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import warnings

import torch

from mobilenet import mobilenet_v1
from mobilenet.bench import cpu_description
from mobilenet.deploy import backend_available, optimize, settle_batchnorm


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=400)
    parser.add_argument("--width", type=float, default=1.0)
    parser.add_argument("--resolution", type=int, default=224)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--backends", nargs="+", default=["onnxruntime", "openvino", "int8", "openvino-int8"])
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    print(f"cpu: {cpu_description()}; torch {torch.__version__}; {time.strftime('%Y-%m-%d')}")
    print(f"α={args.width:g}, {args.resolution} px, batch 1, {args.threads} threads, {args.calls} alternating calls each")
    print("| backend | ours median ms | raw median ms | ours / raw |")
    print("|---|---|---|---|")
    torch.manual_seed(0)
    model = mobilenet_v1(width_mult=args.width, resolution=args.resolution, activation="relu6", padding="tf")
    model = settle_batchnorm(model, args.resolution).eval()
    x = torch.rand(1, 3, args.resolution, args.resolution) * 2 - 1
    calibration = [torch.rand(8, 3, args.resolution, args.resolution) * 2 - 1 for _ in range(2)]
    for backend in args.backends:
        if backend_available(backend) is not None:
            print(f"| {backend} | not installed | | |")
            continue
        with tempfile.TemporaryDirectory() as tmp:
            predictor = optimize(model, backend, threads=args.threads, workdir=tmp, calibration=calibration)
            raw = predictor.raw_call(x)
            assert raw is not None
            for _ in range(10):
                predictor(x)
                raw()
            ours_s, raw_s = [], []
            for _ in range(args.calls):
                start = time.perf_counter()
                predictor(x)
                ours_s.append(time.perf_counter() - start)
                start = time.perf_counter()
                raw()
                raw_s.append(time.perf_counter() - start)
            a, b = statistics.median(ours_s), statistics.median(raw_s)
            print(f"| {backend} | {a * 1e3:.2f} | {b * 1e3:.2f} | {a / b:.3f} |", flush=True)


if __name__ == "__main__":
    main()
