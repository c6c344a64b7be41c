"""Phone runtimes on this CPU, side by side: Google's int8 .tflite against our exports of the same weights.

Models: Google's MobileNet v1 1.0-224 (two files, run one after the other) and 0.25-128
(../shared/reference/tflite), imported into ours. Candidates, batch 1, at 1 and 2 threads:
  - google-int8:  Google's own int8 .tflite in LiteRT (XNNPACK)
  - tflite-uint8: ours, the default for Google's weights (`export --format tflite-int8`): Google's
                  uint8 arithmetic, in LiteRT (it computes what Google's file does:
                  benchmarks/int8_faithfulness.py)
  - pte-uint8:    ours, the default (`export --format pte-int8`): the same arithmetic in ExecuTorch
                  (XNNPACK's uint8 kernels)
  - tflite-int8, pte-int8: ours with `--int8-scheme per-channel` (int8 weights per channel, the
                  file's own activation ranges)
  - tflite, pte:  ours in fp32
Every runner is called through the library's own wrapper (float NCHW tensor in, logits out), so
each pays the same small Python cost around the runtime.

Candidates run interleaved: in each round every candidate is timed once with
``mobilenet.bench.time_calls``; median / p10 / p90 are over all calls of all rounds, and each
ratio to google-int8 is taken inside a round, then the median over rounds.

    python benchmarks/mobile.py [--rounds 7] [--seconds 0.5] [--threads 1 2] [--write]

--write appends this run's section to benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import datetime
import statistics
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any

import torch
from _common import IMAGES, TFLITE, cpu_name

from mobilenet.bench import CallTimes, time_calls
from mobilenet.data import open_rgb, transforms_for
from mobilenet.litert import LiteRTModel, export_tflite
from mobilenet.pte import ExecuTorchModel, export_pte
from mobilenet.weights import load_weights
from mobilenet.weights.tflite import activation_quantization

MODELS = {
    "1.0-224": [
        TFLITE / "mobilenet_v1_1.0_224_quant_embedding_extractor.tflite",
        TFLITE / "mobilenet_v1_1.0_224_quant_head_layers.tflite",
    ],
    "0.25-128": [TFLITE / "mobilenet_v1_0.25_128_quant.tflite"],
}
CANDIDATES = ("google-int8", "tflite-uint8", "pte-uint8", "tflite-int8", "pte-int8", "tflite", "pte")
RESULTS = Path(__file__).with_name("RESULTS.md")


def build_files(name: str, files: list[Path], folder: Path) -> tuple[dict[str, list[Path]], Any]:
    """The candidates' files for one model, and a photo to feed them."""
    model = load_weights([str(f) for f in files]).eval()
    transform = transforms_for(model.config)
    ranges = activation_quantization(files)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = {
            "google-int8": list(files),
            "tflite-uint8": [export_tflite(model, folder / f"{name}-uint8.tflite", int8=True, activation_ranges=ranges)],
            "pte-uint8": [export_pte(model, folder / f"{name}-uint8.pte", int8=True, activation_ranges=ranges)],
            "tflite-int8": [
                export_tflite(model, folder / f"{name}-int8.tflite", int8=True, activation_ranges=ranges, keep_grid=False)
            ],
            "pte-int8": [export_pte(model, folder / f"{name}-int8.pte", int8=True, activation_ranges=ranges, keep_grid=False)],
            "tflite": [export_tflite(model, folder / f"{name}.tflite")],
            "pte": [export_pte(model, folder / f"{name}.pte")],
        }
    photo = transform(open_rgb(IMAGES / "parrot.jpg")).unsqueeze(0)
    return out, photo


def runner(candidate: str, paths: list[Path], threads: int) -> Any:
    if candidate.startswith("pte"):
        return ExecuTorchModel(paths[0], threads=threads)  # resets XNNPACK's process-wide pool to `threads`
    return LiteRTModel(paths, threads=threads)


def measure(files: dict[str, list[Path]], photo: torch.Tensor, threads: int, rounds: int, seconds: float) -> dict[str, Any]:
    runners = {c: runner(c, files[c], threads) for c in CANDIDATES}
    calls: dict[str, list[float]] = {c: [] for c in CANDIDATES}
    ratios: dict[str, list[float]] = {c: [] for c in CANDIDATES}
    for _ in range(rounds):
        medians = {}
        for c, run in runners.items():
            # settle: the previous runtime's spinning worker threads go to sleep first.
            t = time_calls(lambda r=run: r(photo), warmup=5, iters=10, min_seconds=seconds, settle=0.2)
            calls[c] += t.times
            medians[c] = t.median
        for c in CANDIDATES:
            ratios[c].append(medians[c] / medians["google-int8"])
    return {c: (CallTimes(tuple(calls[c]), False), statistics.median(ratios[c])) for c in CANDIDATES}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--seconds", type=float, default=0.5, help="at least this long per candidate per round")
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS))
    p.add_argument("--write", action="store_true")
    args = p.parse_args()
    missing = [str(f) for m in args.models for f in MODELS[m] if not f.is_file()]
    if missing:
        sys.exit(f"missing reference files: {', '.join(missing)}")

    lines = [
        "| model | threads | candidate | size | median ms | p10 | p90 | x google-int8 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    with tempfile.TemporaryDirectory(prefix="mobilenet-mobile-") as tmp:
        for name in args.models:
            files, photo = build_files(name, MODELS[name], Path(tmp))
            sizes = {c: sum(f.stat().st_size for f in files[c]) / 1e6 for c in CANDIDATES}
            for threads in args.threads:
                for c, (t, ratio) in measure(files, photo, threads, args.rounds, args.seconds).items():
                    row = (
                        f"| {name} | {threads} | {c} | {sizes[c]:.2f} MB | {t.median * 1e3:.2f} | {t.p10 * 1e3:.2f} "
                        f"| {t.p90 * 1e3:.2f} | {ratio:.2f} |"
                    )
                    lines.append(row)
                    print(row, flush=True)
    table = "\n".join(lines)
    command = "python benchmarks/mobile.py " + " ".join(sys.argv[1:])
    print(f"\n{cpu_name()}, {datetime.date.today()}: {command}\n{table}")
    if args.write:
        section = (
            f"\n## Phone runtimes (`benchmarks/mobile.py`)\n\n{datetime.date.today()}, {cpu_name()}, torch {torch.__version__}.\n"
            f"Command: `{command.replace(' --write', '')}`.\n\n{table}\n"
        )
        with RESULTS.open("a") as f:
            f.write(section)


if __name__ == "__main__":
    main()
