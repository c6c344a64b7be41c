"""Training throughput: our MobileNetV1 vs timm's mobilenetv1_100, both driven by the library's own
``train_one_epoch`` (the step ``mobilenet train`` runs), interleaved, one process, timed by
``mobilenet.bench.time_calls``.

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

import torch

from mobilenet import mobilenet_v1


class _Batches:
    """A loader stand-in: the same ``steps`` batches each epoch, in the (images, targets, skipped) form."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, steps: int) -> None:
        self.batch, self.steps = (x, y, 0), steps

    def __len__(self) -> int:
        return self.steps

    def __iter__(self):
        return iter([self.batch] * self.steps)


def _epoch_fn(model, batches, cfg, device):
    """One call = one ``train_one_epoch`` over ``batches`` with the recipe's optimizer."""
    from mobilenet.train import make_optimizer, set_train_mode, train_one_epoch

    optimizer = make_optimizer(cfg, model, 1e-3)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    set_train_mode(model, cfg.bn)
    step_model = torch.compile(model) if cfg.compile else model
    return lambda: train_one_epoch(step_model, batches, optimizer, scheduler, cfg, device=device, epoch=0)


def _timm_model(width, num_classes):
    import timm

    if width == 1.0:
        return timm.create_model("mobilenetv1_100", num_classes=num_classes)
    # timm registers only 1.0/1.25 MobileNetV1; its generator takes any channel multiplier.
    from timm.models.efficientnet import _gen_mobilenet_v1

    return _gen_mobilenet_v1("mobilenetv1_100", channel_multiplier=width, pretrained=False, num_classes=num_classes)


def compare(device, width, resolution, batch, num_classes, amp, channels_last, compile_, rounds, steps):
    from mobilenet.bench import time_calls
    from mobilenet.train import TrainConfig, resolve

    cfg = resolve(TrainConfig(amp=amp, channels_last=channels_last, compile=compile_, progress=False))
    models = {
        "ours": mobilenet_v1(width_mult=width, num_classes=num_classes),
        "timm": _timm_model(width, num_classes),
    }
    x = torch.randn(batch, 3, resolution, resolution, device=device)
    y = torch.randint(0, num_classes, (batch,), device=device)
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    epochs = {}
    for name, model in models.items():
        model.to(device)
        if channels_last:
            model.to(memory_format=torch.channels_last)
        epochs[name] = _epoch_fn(model, _Batches(x, y, steps), cfg, device)
    rates = {name: [] for name in models}
    for _ in range(rounds):  # interleaved, so drift in machine load hits both alike
        for name, fn in epochs.items():
            times = time_calls(fn, warmup=1 if not compile_ else 2, iters=1, min_seconds=0.0, sync_device=device.type == "cuda")
            rates[name].append(steps * batch / times.median)
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
