"""GPU inference throughput: MobileNet v1 1.0-224 vs timm's mobilenetv1_100, same settings, one process.

Both models: bf16 weights and activations, channels_last, eval + inference_mode, batch 256, in
three forms: eager; torch.compile (default mode); torch.compile(mode="reduce-overhead"), which
replays the whole forward as one CUDA graph. Ours is timed with BN folded (mobilenet.deploy), in
both paddings: 'symmetric' (timm's, our default) and 'tf' (what Google's weights need). Rounds
are interleaved and the ratio is taken inside each round. Each round's figure is the batch over
the median per-call time (mobilenet.bench.time_calls, synchronizing the GPU after each call).

    python benchmarks/gpu_inference.py [--rounds 5] [--batch 256] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys

import torch

from mobilenet import mobilenet_v1
from mobilenet.bench import time_calls
from mobilenet.deploy import fold_batchnorm, settle_batchnorm


def images_per_second(fn, x: torch.Tensor, iters: int) -> float:
    # The library's timing loop, waiting for the GPU after each call (sync_device=True).
    times = time_calls(lambda: fn(x), warmup=3, iters=iters, min_seconds=0.0, settle=0.2, sync_device=True)
    return x.shape[0] / times.median


def prepare(model: torch.nn.Module, mode: str):
    model = model.cuda().to(dtype=torch.bfloat16, memory_format=torch.channels_last).eval()
    if mode == "eager":
        net = model
    elif mode == "compiled":
        net = torch.compile(model)
    else:
        net = torch.compile(model, mode="reduce-overhead")

    @torch.inference_mode()
    def run(x: torch.Tensor) -> torch.Tensor:
        return net(x)

    return run


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--iters", type=int, default=50)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    if not torch.cuda.is_available():
        sys.exit("no CUDA device: this benchmark needs a GPU")
    import timm

    torch.backends.cudnn.benchmark = True
    x = (torch.rand(args.batch, 3, 224, 224, device="cuda") * 2 - 1).to(dtype=torch.bfloat16, memory_format=torch.channels_last)
    models = {
        "ours (symmetric pad)": fold_batchnorm(settle_batchnorm(mobilenet_v1(activation="relu6"), 224).eval()),
        "ours (tf pad)": fold_batchnorm(settle_batchnorm(mobilenet_v1(activation="relu6", padding="tf"), 224).eval()),
        "timm": settle_batchnorm(timm.create_model("mobilenetv1_100"), 224).eval(),
    }
    results: dict[str, dict[str, list[float]]] = {}
    for mode in ("eager", "compiled", "reduce-overhead"):
        runners = {name: prepare(m, mode) for name, m in models.items()}
        rounds: dict[str, list[float]] = {name: [] for name in runners}
        for _ in range(args.rounds):
            for name, fn in runners.items():
                rounds[name].append(images_per_second(fn, x, args.iters))
        results[mode] = rounds
    rows = []
    for mode, rounds in results.items():
        for name, values in rounds.items():
            ratio = statistics.median(a / b for a, b in zip(values, rounds["timm"]))
            rows.append({"mode": mode, "model": name, "images_per_s": statistics.median(values), "vs_timm": ratio})
    if args.json:
        print(json.dumps({"device": torch.cuda.get_device_name(), "torch": torch.__version__, "rows": rows}, indent=2))
        return
    print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}, batch {args.batch}, bf16, channels_last")
    print("| mode | model | images/s | ours / timm |\n|---|---|---|---|")
    for r in rows:
        print(f"| {r['mode']} | {r['model']} | {r['images_per_s']:,.0f} | {r['vs_timm']:.2f} |")


if __name__ == "__main__":
    main()
