"""What our Predictor costs over the runtime's own call: `optimize(model, backend)(x)` against
`Predictor.raw_call(x)` (ONNX Runtime's session.run, OpenVINO's infer on a prepared array).

Calls alternate one by one, in an order that flips every round (ours, raw, raw again; then raw
again, raw, ours), so a change in the machine's load, and whatever the previous call leaves behind
(caches, the runtime's spinning threads), hits all of them alike. The ratio is the median of ours
over the median of raw, per backend; "raw again" (a second raw call on its own prepared array) over
raw is the control: how far from 1.000 the method reads when there is nothing to find.

    python benchmarks/wrapper_overhead.py [--calls 400] [--width 1.0] [--resolution 224] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import warnings

import numpy as np
import torch

from mobilenet import mobilenet_v1
from mobilenet.bench import cpu_description
from mobilenet.deploy import backend_available, optimize, settle_batchnorm


def own_work(x: torch.Tensor, raw: object) -> float:
    """Seconds per call of what our call does besides the runtime's: the tensor-to-array view on
    the way in and the array-to-tensor view (or the 4 kB copy) on the way out."""
    from mobilenet.runtimes.common import numpy_input

    out = np.zeros((1, 1000), dtype=np.float32)
    start = time.perf_counter()
    for _ in range(10000):
        numpy_input(x)
        torch.from_numpy(out.copy())
    return (time.perf_counter() - start) / 10000


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
    print("| backend | ours median ms | raw median ms | ours / raw | control: raw again / raw | our own work per call |")
    print("|---|---|---|---|---|---|")
    torch.manual_seed(0)
    model = mobilenet_v1(width_mult=args.width, resolution=args.resolution, activation="relu6", padding="tf")
    model = settle_batchnorm(model, args.resolution).eval()
    x = torch.rand(1, 3, args.resolution, args.resolution) * 2 - 1
    calibration = [torch.rand(8, 3, args.resolution, args.resolution) * 2 - 1 for _ in range(2)]
    for backend in args.backends:
        if backend_available(backend) is not None:
            print(f"| {backend} | not installed | | | | |")
            continue
        with tempfile.TemporaryDirectory() as tmp:
            predictor = optimize(model, backend, threads=args.threads, workdir=tmp, calibration=calibration)
            raw = predictor.raw_call(x)
            assert raw is not None
            calls = {"ours": lambda p=predictor: p(x), "raw": raw, "again": predictor.raw_call(x)}
            for _ in range(10):
                for call in calls.values():
                    call()
            times: dict[str, list[float]] = {name: [] for name in calls}
            for i in range(args.calls):
                for name in list(calls) if i % 2 == 0 else list(calls)[::-1]:
                    start = time.perf_counter()
                    calls[name]()
                    times[name].append(time.perf_counter() - start)
            ours, raw_ms, again = (statistics.median(times[k]) for k in ("ours", "raw", "again"))
            work = own_work(x, raw)
            print(
                f"| {backend} | {ours * 1e3:.2f} | {raw_ms * 1e3:.2f} | {ours / raw_ms:.3f} | {again / raw_ms:.3f} "
                f"| {work * 1e6:.1f} us ({work / raw_ms:.2%}) |",
                flush=True,
            )


if __name__ == "__main__":
    main()
