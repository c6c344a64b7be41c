"""CPU inference: our fp32, bf16 and int8 paths against LiteRT, ONNX Runtime and timm, in one process.

Models: Google's MobileNet v1 1.0-224 and 0.25-128 (../shared/reference/tflite), imported into ours.
Peers, each in its own fastest documented form:
  - litert-int8:  Google's int8 .tflite files under LiteRT (XNNPACK), uint8 input
  - ort-timm:     ONNX Runtime fp32 on an ONNX export of timm's mobilenetv1_100 (1.0-224 only)
  - timm-eager:   timm's mobilenetv1_100 in eager PyTorch, channels_last, inference_mode (1.0-224 only)
Ours: every backend of mobilenet.deploy that is installed.

Backends run interleaved: in each round every backend is timed once, and a ratio is taken inside
each round before the median over rounds, so a slow minute on a shared machine hits both sides.
Then the accuracy side: bf16 vs fp32 and int8 vs float and vs LiteRT, top-1 agreement on the
reference photos and varied crops of them.

    python benchmarks/inference.py [--rounds 5] [--agreement-count 500] [--write]

--write replaces the inference section of benchmarks/RESULTS.md with this run's tables.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import sys
from pathlib import Path

import numpy as np
import torch
from _common import MODELS, LiteRT, photos, resized, varied_inputs

from mobilenet import mobilenet_v1
from mobilenet.bench import time_calls
from mobilenet.deploy import backend_available, optimize

RESULTS = Path(__file__).with_name("RESULTS.md")
BEGIN, END = "<!-- inference:begin -->", "<!-- inference:end -->"


def to_float(images: np.ndarray) -> torch.Tensor:
    """uint8 NHWC → our input: NCHW in [-1, 1] with LiteRT's own mapping (p - 128) / 128."""
    return (torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() - 128) / 128


class LiteRTBatch:
    """Google's runtime on a model (or the extractor + head pair) for a batch of images.

    The interpreter is resized to the batch where the graph allows it; the split 1.0-224 model's
    head has a fixed reshape, so there each image is run in turn, as Google's examples do.
    """

    def __init__(self, files: list[Path], batch: int, threads: int) -> None:
        from ai_edge_litert.interpreter import Interpreter

        self.stages = []
        self.batched = True
        for f in files:
            it = Interpreter(model_path=str(f), num_threads=threads)
            detail = it.get_input_details()[0]
            try:
                it.resize_tensor_input(detail["index"], [batch, *detail["shape"][1:]])
                it.allocate_tensors()
            except (RuntimeError, ValueError):
                self.batched = False
            self.stages.append((f, it))
        if not self.batched:  # fresh interpreters at their own batch size of 1
            self.stages = []
            for f in files:
                it = Interpreter(model_path=str(f), num_threads=threads)
                it.allocate_tensors()
                self.stages.append((f, it))

    def _run(self, x: np.ndarray) -> np.ndarray:
        for _, it in self.stages:
            detail = it.get_input_details()[0]
            it.set_tensor(detail["index"], x.reshape(detail["shape"]))
            it.invoke()
            out = it.get_output_details()[0]
            x = it.get_tensor(out["index"])
        scale, zero = out["quantization"]
        return (x.reshape(x.shape[0], -1).astype(np.float64) - zero) * scale

    def __call__(self, images: np.ndarray) -> np.ndarray:
        if self.batched:
            return self._run(images)
        return np.concatenate([self._run(images[i : i + 1]) for i in range(len(images))])


def timm_peers(batch_sizes: list[int], workdir: Path) -> dict[str, object]:
    import timm

    from mobilenet.export import export_onnx

    model = timm.create_model("mobilenetv1_100", pretrained=False).eval()
    # Give timm's BN realistic statistics, as ours have from Google's weights.
    from mobilenet.deploy import settle_batchnorm

    settle_batchnorm(model, 224)
    path = export_onnx(model, workdir / "timm.onnx", dynamic_batch=True, example=torch.zeros(2, 3, 224, 224))
    return {"model": model.to(memory_format=torch.channels_last), "onnx": path}


def time_round(fn, calls: int, min_seconds: float, settle: float) -> float:
    # Every runtime here keeps worker threads that spin for a while after their last call (OpenMP,
    # ONNX Runtime, XNNPACK); on 2 cores they would slow whichever backend runs next, so each
    # slice starts after a pause (settle) and three untimed calls.
    return time_calls(fn, warmup=3, iters=calls, min_seconds=min_seconds, settle=settle).median


def run_setting(name, files, batch, threads, rounds, calls, min_seconds, settle, calibration, workdir):
    """Median ms per backend and per-round ratios for one (model, batch, threads) setting."""
    import onnxruntime as ort

    torch.set_num_threads(threads)
    ours = mobilenet_v1(weights=[str(f) for f in files]).eval()
    size = ours.config.resolution
    images = np.stack(varied_inputs(size, batch, seed=7))
    x = to_float(images).contiguous()  # every runtime gets the same ready NCHW array
    runners: dict[str, object] = {}
    for backend in ("eager", "compiled", "bf16", "onnxruntime", "int8", "openvino", "openvino-bf16", "openvino-int8"):
        if backend_available(backend) is None:
            predictor = optimize(
                ours, backend, threads=threads, calibration=calibration if "int8" in backend else None, workdir=workdir / backend
            )
            runners[f"ours-{backend}"] = lambda p=predictor: p(x)
    litert = LiteRTBatch(files, batch, threads)
    runners["litert-int8"] = lambda: litert(images)
    if name == "1.0-224":
        peers = timm_peers([batch], workdir)
        options = ort.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
        session = ort.InferenceSession(str(peers["onnx"]), options, providers=["CPUExecutionProvider"])
        xn = x.numpy()
        runners["ort-timm"] = lambda: session.run(None, {"images": xn})
        timm_model = peers["model"]
        xc = x.contiguous(memory_format=torch.channels_last)

        def timm_eager() -> None:
            with torch.inference_mode():
                timm_model(xc)

        runners["timm-eager"] = timm_eager
    per_round: dict[str, list[float]] = {k: [] for k in runners}
    for _ in range(rounds):
        for key, fn in runners.items():
            torch.set_num_threads(threads)
            per_round[key].append(time_round(fn, calls, min_seconds, settle) * 1e3)
    return per_round


def ratio(per_round: dict[str, list[float]], ours: str, peer: str) -> float | None:
    if ours not in per_round or peer not in per_round:
        return None
    return statistics.median(a / b for a, b in zip(per_round[ours], per_round[peer]))


def agreement(files: list[Path], count: int, calibration: list[torch.Tensor], workdir: Path) -> dict[str, str]:
    """Top-1 agreement of each backend with our fp32 model and (int8) with LiteRT.

    Overall, and where the reference's leader is clear (top probability ahead of the runner-up by
    0.1 or more): the varied crops include blends of two photos, made to be close calls, and on a
    close call any two correct implementations can disagree.
    """
    ours = mobilenet_v1(weights=[str(f) for f in files]).eval()
    size = ours.config.resolution
    photo_images = np.stack([resized(p, size) for p in photos()])
    every = np.concatenate([photo_images, np.stack(varied_inputs(size, count, seed=0))])
    x = to_float(every).contiguous()
    runtime = LiteRT(files)
    lite_probs = np.stack([runtime(im) for im in every])
    lite = lite_probs.argmax(1)
    with torch.inference_mode():
        fp32_probs = torch.cat([ours(x[i : i + 64]) for i in range(0, len(x), 64)]).softmax(1).numpy()
    fp32 = fp32_probs.argmax(1)

    def clear(probs: np.ndarray) -> np.ndarray:
        top2 = np.sort(probs, 1)[:, -2:]
        return top2[:, 1] - top2[:, 0] >= 0.1

    def share(same: np.ndarray) -> str:
        return f"{same.sum()}/{len(same)} ({same.mean():.1%})"

    fp32_clear, lite_clear = clear(fp32_probs), clear(lite_probs)
    n = len(photo_images)
    out: dict[str, str] = {
        "fp32 vs LiteRT": f"all {share(fp32 == lite)}; LiteRT clear {share((fp32 == lite)[lite_clear])}; photos {share((fp32 == lite)[:n])}"
    }
    for backend in ("bf16", "onnxruntime", "int8", "openvino-bf16", "openvino-int8"):
        if backend_available(backend) is not None:
            continue
        predictor = optimize(
            ours, backend, calibration=calibration if "int8" in backend else None, workdir=workdir / f"agree-{backend}"
        )
        top1 = torch.cat([predictor(x[i : i + 64]) for i in range(0, len(x), 64)]).argmax(1).numpy()
        out[f"{backend} vs fp32"] = (
            f"all {share(top1 == fp32)}; fp32 clear {share((top1 == fp32)[fp32_clear])}; photos {share((top1 == fp32)[:n])}"
        )
        if "int8" in backend:
            same = top1 == lite
            out[f"{backend} vs LiteRT"] = f"all {share(same)}; LiteRT clear {share(same[lite_clear])}; photos {share(same[:n])}"
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--calls", type=int, default=10, help="timed calls per backend per round (at least)")
    p.add_argument("--min-seconds", type=float, default=0.3, help="and at least this long per backend per round")
    p.add_argument("--settle", type=float, default=0.5, help="idle seconds before each backend's slice")
    p.add_argument("--batch", type=int, nargs="+", default=[1, 32])
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--models", nargs="+", default=["1.0-224", "0.25-128"])
    p.add_argument("--agreement-count", type=int, default=500, help="varied inputs for the accuracy checks")
    p.add_argument("--calibration-count", type=int, default=256)
    p.add_argument("--write", action="store_true", help="write the tables into benchmarks/RESULTS.md")
    args = p.parse_args()
    import tempfile

    workdir = Path(tempfile.mkdtemp(prefix="mobilenet-bench-"))
    keys = {"1.0-224": "1.0_224", "0.25-128": "0.25_128"}
    lines = [
        f"- Machine: {platform.machine()} {platform.processor() or ''}, {os.cpu_count()} cores; torch {torch.__version__}. "
        f"Date: {datetime.date.today()}.",
        f"- Command: `python benchmarks/inference.py {' '.join(sys.argv[1:])}`",
        "- Median latency in ms (batch 1) or per batch (batch 32) over rounds; ratios are medians of per-round ratios.",
        "",
    ]
    for name in args.models:
        files = MODELS[keys[name]]
        size = int(name.split("-")[1])
        # Calibration images: varied crops of the photos from a seed the agreement check does not use.
        calibration = list(to_float(np.stack(varied_inputs(size, args.calibration_count, seed=1234))).split(32))
        header = None
        rows = []
        for batch in args.batch:
            for threads in args.threads:
                per_round = run_setting(
                    name, files, batch, threads, args.rounds, args.calls, args.min_seconds, args.settle, calibration, workdir
                )
                if header is None:
                    header = list(per_round)
                    lines += [
                        f"### {name}",
                        "",
                        "| batch | threads | " + " | ".join(header) + " |",
                        "|---" * (len(header) + 2) + "|",
                    ]
                med = {k: statistics.median(v) for k, v in per_round.items()}
                lines.append(f"| {batch} | {threads} | " + " | ".join(f"{med[k]:.2f}" for k in header) + " |")
                print(lines[-1], flush=True)
                rows.append((batch, threads, per_round))
        lines += ["", "Ratios (ours / peer latency; below 1 is faster):", ""]
        for batch, threads, per_round in rows:
            parts = []
            for ours, peer in [
                ("ours-onnxruntime", "ort-timm"),
                ("ours-compiled", "ort-timm"),
                ("ours-bf16", "ort-timm"),
                ("ours-openvino-bf16", "ort-timm"),
                ("ours-int8", "ort-timm"),
                ("ours-int8", "litert-int8"),
                ("ours-openvino-int8", "litert-int8"),
                ("ours-eager", "timm-eager"),
                ("ours-compiled", "timm-eager"),
            ]:
                r = ratio(per_round, ours, peer)
                if r is not None:
                    parts.append(f"{ours} / {peer} {r:.2f}")
            lines.append(f"- batch {batch}, {threads} thread(s): " + "; ".join(parts))
        lines.append("")
        print("\n".join(lines[-len(rows) - 1 :]), flush=True)
        result = agreement(files, args.agreement_count, calibration, workdir)
        lines += [f"Top-1 agreement, {name} (8 photos + {args.agreement_count} varied crops):", ""]
        lines += [f"- {k}: {v}" for k, v in result.items()]
        lines.append("")
        print("\n".join(lines[-len(result) - 1 :]), flush=True)
    text = "\n".join(lines)
    if args.write:
        old = RESULTS.read_text()
        section = f"{BEGIN}\n## Inference on CPU (`benchmarks/inference.py`)\n\n{text}\n{END}"
        if BEGIN in old:
            new = old[: old.index(BEGIN)] + section + old[old.index(END) + len(END) :]
        else:
            new = old.rstrip() + "\n\n" + section + "\n"
        RESULTS.write_text(new)
        print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
