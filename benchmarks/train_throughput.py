"""Training throughput: our MobileNetV1 vs timm's mobilenetv1_100, same loop, interleaved, one process.

CPU (always): the built-in digits at 32 px, α=0.5 (the README's main job), 2 threads, batch 64.
GPU (when CUDA is present): synthetic 224x224 batches of 256, bf16 autocast, channels_last, with and
without torch.compile.

    python benchmarks/train_throughput.py [--rounds 5] [--json]

Prints images/s for each model and the ratio ours / timm (above 1 means we are faster).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import torch
import torch.nn.functional as F

from mobilenet import mobilenet_v1


def _step_fn(model, optimizer, amp):
    def step(x, y):
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=amp):
            loss = F.cross_entropy(model(x).float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def _time(step, x, y, steps, device):
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):
        step(x, y)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return steps * x.shape[0] / (time.perf_counter() - t0)


def _timm_model(width, num_classes):
    import timm

    if width == 1.0:
        return timm.create_model("mobilenetv1_100", num_classes=num_classes)
    # timm registers only 1.0/1.25 MobileNetV1; its generator takes any channel multiplier.
    from timm.models.efficientnet import _gen_mobilenet_v1

    return _gen_mobilenet_v1("mobilenetv1_100", channel_multiplier=width, pretrained=False, num_classes=num_classes)


def compare(device, width, resolution, batch, num_classes, amp, channels_last, compile_, rounds, steps):
    models = {
        "ours": mobilenet_v1(width_mult=width, num_classes=num_classes),
        "timm": _timm_model(width, num_classes),
    }
    x = torch.randn(batch, 3, resolution, resolution, device=device)
    y = torch.randint(0, num_classes, (batch,), device=device)
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    steps_fn = {}
    for name, model in models.items():
        model.to(device).train()
        if channels_last:
            model.to(memory_format=torch.channels_last)
        opt = torch.optim.RMSprop(model.parameters(), lr=1e-3, alpha=0.9, momentum=0.9, eps=1.0)
        fn = _step_fn(torch.compile(model) if compile_ else model, opt, amp)
        for _ in range(3 if not compile_ else 5):  # warm-up (and compilation)
            fn(x, y)
        steps_fn[name] = fn
    rates = {name: [] for name in models}
    for _ in range(rounds):  # interleaved, so drift in machine load hits both alike
        for name, fn in steps_fn.items():
            rates[name].append(_time(fn, x, y, steps, device))
    med = {k: statistics.median(v) for k, v in rates.items()}
    return {"ours_img_s": med["ours"], "timm_img_s": med["timm"], "ratio": med["ours"] / med["timm"]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    results = {
        "machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}"
    }
    results["cpu digits-like 32px α=0.5 batch 64"] = compare(
        torch.device("cpu"), 0.5, 32, 64, 10, False, False, False, args.rounds, 10
    )
    results["cpu 224px α=1.0 batch 32"] = compare(
        torch.device("cpu"), 1.0, 224, 32, 1000, False, True, False, max(args.rounds // 2, 2), 2
    )
    if torch.cuda.is_available():
        results["gpu"] = torch.cuda.get_device_name()
        for comp in (False, True):
            key = f"gpu 224px α=1.0 batch 256 bf16 channels_last compile={comp}"
            results[key] = compare(torch.device("cuda"), 1.0, 224, 256, 1000, True, True, comp, args.rounds, 20)
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        for k, v in results.items():
            print(
                f"{k}: "
                + (
                    f"ours {v['ours_img_s']:.0f} img/s, timm {v['timm_img_s']:.0f} img/s, ratio {v['ratio']:.2f}"
                    if isinstance(v, dict)
                    else v
                )
            )


if __name__ == "__main__":
    main()
