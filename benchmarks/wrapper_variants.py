"""Where our ONNX Runtime call's cost over the raw call goes: the parts of `optimize(model,
"onnxruntime")(x)` timed one at a time against `session.run` on a prepared array.

Each round times every variant `--calls` times, in a shuffled order that flips call by call; the
ratio of each variant's median to the raw call's is taken inside the round, then reported as the
median over rounds with a 95% bootstrap interval. "control" is the raw call on a second prepared
array: how far from 1.000 the method reads when there is nothing to find.

    python benchmarks/wrapper_variants.py [--rounds 30] [--calls 12] [--threads 2] [--only NAME ...]

``--only`` times a subset (names as printed, matched by their start), which narrows the intervals.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable

import numpy as np
import torch

from mobilenet import mobilenet_v1
from mobilenet.bench import cpu_description
from mobilenet.deploy import optimize, settle_batchnorm
from mobilenet.runtimes.common import numpy_input


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--calls", type=int, default=12)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--only", nargs="+", default=None, help="variants to time (by the start of their names)")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    torch.manual_seed(0)
    model = settle_batchnorm(mobilenet_v1(width_mult=1.0, resolution=224, activation="relu6", padding="tf"), 224).eval()
    x = torch.rand(1, 3, 224, 224) * 2 - 1
    predictor = optimize(model, "onnxruntime", threads=args.threads, workdir=tempfile.mkdtemp())  # type: ignore[arg-type]
    session, name = predictor.session, predictor.input_name  # type: ignore[attr-defined]
    out_name = session.get_outputs()[0].name
    prepared, second = x.numpy(), x.numpy().copy()
    per_call = session.io_binding()

    def bound_per_call() -> torch.Tensor:
        per_call.bind_input(name, "cpu", 0, np.float32, list(x.shape), x.data_ptr())
        out = torch.empty(x.shape[0], 1000)
        per_call.bind_output(out_name, "cpu", 0, np.float32, list(out.shape), out.data_ptr())
        session.run_with_iobinding(per_call)
        return out

    once, fixed_out = session.io_binding(), torch.empty(1, 1000)
    once.bind_input(name, "cpu", 0, np.float32, list(x.shape), x.data_ptr())
    once.bind_output(out_name, "cpu", 0, np.float32, [1, 1000], fixed_out.data_ptr())
    # The output bound once: only the input is handed over per call (its memory, as ours does).
    input_only, bound_out = session.io_binding(), torch.empty(1, 1000)
    input_only.bind_output(out_name, "cpu", 0, np.float32, [1, 1000], bound_out.data_ptr())

    def input_bound_per_call() -> torch.Tensor:
        input_only.bind_input(name, "cpu", 0, np.float32, list(x.shape), x.data_ptr())
        session.run_with_iobinding(input_only)
        return bound_out.clone()

    # A staging buffer bound once (input and output): each call copies the image into it.
    stage, stage_out = np.empty(tuple(x.shape), np.float32), np.empty((1, 1000), np.float32)
    staged = session.io_binding()
    staged.bind_input(name, "cpu", 0, np.float32, list(x.shape), stage.ctypes.data)
    staged.bind_output(out_name, "cpu", 0, np.float32, [1, 1000], stage_out.ctypes.data)

    def staged_call() -> torch.Tensor:
        np.copyto(stage, x.numpy())
        session.run_with_iobinding(staged)
        return torch.from_numpy(stage_out.copy())

    # Work after a raw call, before the next: PyTorch calls (an op on 4 unrelated numbers, the two
    # our call makes, a detach), or a numpy op on 4 numbers.
    other, other_np, small = torch.zeros(4), np.zeros(4), np.zeros(4, np.float32)

    def raw_then(work: Callable[[], object]) -> Callable[[], object]:
        def call() -> object:
            out = session.run(None, {name: prepared})
            work()
            return out

        return call

    variants = {
        "raw (session.run, prepared array)": lambda: session.run(None, {name: prepared}),
        "ours": lambda: predictor(x),
        "control: raw on a second prepared array": lambda: session.run(None, {name: second}),
        "raw on x.numpy() made in the call": lambda: session.run(None, {name: x.numpy()}),
        "raw on numpy_input(x) (our input step)": lambda: session.run(None, {name: numpy_input(x)}),
        "raw on x.numpy(), output by torch.from_numpy": lambda: torch.from_numpy(session.run(None, {name: x.numpy()})[0]),
        "raw, output wrapped by torch.from_numpy": lambda: torch.from_numpy(session.run(None, {name: prepared})[0]),
        "I/O binding per call (input, fresh output)": bound_per_call,
        "I/O binding made once, reused": lambda: session.run_with_iobinding(once),
        "input bound per call, output bound once (copied out)": input_bound_per_call,
        "staged: the image copied into a buffer bound once": staged_call,
        "raw, then a PyTorch op on 4 unrelated numbers": raw_then(lambda: other.add_(1.0)),
        "raw, then x.numpy()": raw_then(lambda: x.numpy()),
        "raw, then torch.from_numpy of 4 numbers": raw_then(lambda: torch.from_numpy(small)),
        "raw, then x.detach()": raw_then(lambda: x.detach()),
        "raw, then a numpy op on 4 unrelated numbers": raw_then(lambda: np.add(other_np, 1.0, out=other_np)),
    }
    if args.only:
        first = next(iter(variants))
        variants = {n: f for n, f in variants.items() if n == first or any(n.startswith(o) for o in args.only)}
    names = list(variants)
    for _ in range(20):
        for call in variants.values():
            call()
    ratios: dict[str, list[float]] = {n: [] for n in names}
    raw_ms = []
    for r in range(args.rounds):
        order = names[:]
        random.Random(r).shuffle(order)
        times: dict[str, list[float]] = {n: [] for n in names}
        for i in range(args.calls):
            for n in order if i % 2 == 0 else order[::-1]:
                start = time.perf_counter()
                variants[n]()
                times[n].append(time.perf_counter() - start)
        medians = {n: statistics.median(times[n]) for n in names}
        raw_ms.append(medians[names[0]] * 1e3)
        for n in names:
            ratios[n].append(medians[n] / medians[names[0]])
    rng = np.random.default_rng(0)
    print(f"cpu: {cpu_description()}; torch {torch.__version__}; {time.strftime('%Y-%m-%d')}")
    print(f"ONNX Runtime, α=1.0, 224 px, batch 1, {args.threads} threads; raw median {statistics.median(raw_ms):.2f} ms")
    print("| variant | ratio to raw (95% interval) |\n|---|---|")
    for n in names[1:]:
        values = np.array(ratios[n])
        boots = [np.median(rng.choice(values, values.size)) for _ in range(2000)]
        low, high = np.percentile(boots, [2.5, 97.5])
        print(f"| {n} | {np.median(values):.3f} ({low:.3f}-{high:.3f}) |")


if __name__ == "__main__":
    main()
