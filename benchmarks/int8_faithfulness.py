"""How faithful our int8 exports of Google's quantized MobileNets are: top-1 agreement with the
float PyTorch import of the same weights, next to Google's own int8 file in LiteRT (the bar).

Candidates, each written from Google's .tflite as weights:
  - google:                 Google's uint8 file(s) in LiteRT
  - tflite-int8:            ours, the default (`export --format tflite-int8`): Google's ranges and
                            Google's uint8 weight grid kept, run in LiteRT
  - tflite-int8 per-channel: ours with `--int8-scheme per-channel` (int8 weights per channel)
  - pte-int8:               ours, the default: Google's ranges and uint8 weight grid kept, run in
                            ExecuTorch (XNNPACK's uint8 kernels)
  - pte-int8 per-channel:   ours with `--int8-scheme per-channel`: Google's ranges, int8 weights
                            per channel
  - pte-int8 calibrated:    ours with `--recalibrate --calibration flowers/train` (256 photos)
  - onnx-int8:              ours, the default: Google's ranges and uint8 weight grid kept (uint8
                            weights per tensor), run in ONNX Runtime
  - onnx-int8 per-channel:  ours with `--int8-scheme per-channel`: int8 weights per channel, split
                            so that no CPU's integer arithmetic saturates

Photos: the 200 flowers val photos and the 8 reference photos (208), each model's own
preprocessing. Also printed: how often each candidate's top-1 equals Google's file's.

    python benchmarks/int8_faithfulness.py [--models 0.25_128 0.5_160 0.75_192 1.0_224]
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings
from pathlib import Path

import torch
from _common import FLOWERS, IMAGES, MODELS, cpu_name

from mobilenet.commands import export_model
from mobilenet.data import image_batches
from mobilenet.deploy import load_exported
from mobilenet.runtimes.litert import run_tflite
from mobilenet.weights import load_weights

CANDIDATES = {  # name: (format, export options)
    "tflite-int8": ("tflite-int8", {}),
    "tflite-int8 per-channel": ("tflite-int8", {"int8_scheme": "per-channel"}),
    "pte-int8": ("pte-int8", {}),
    "pte-int8 per-channel": ("pte-int8", {"int8_scheme": "per-channel"}),
    "pte-int8 calibrated": ("pte-int8", {"recalibrate": True, "calibration": FLOWERS / "train"}),
    "onnx-int8": ("onnx-int8", {}),
    "onnx-int8 per-channel": ("onnx-int8", {"int8_scheme": "per-channel"}),
}


def top1(fn, x: torch.Tensor, batch: int = 16) -> torch.Tensor:  # type: ignore[no-untyped-def]
    with torch.no_grad():
        return torch.cat([fn(b).argmax(1) for b in x.split(batch)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--candidates", nargs="+", default=list(CANDIDATES), choices=list(CANDIDATES))
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    print(f"cpu: {cpu_name()}; torch {torch.__version__}; {time.strftime('%Y-%m-%d')}")
    print("agreement with float (same top-1 as Google's file)")
    print("| model | photos | Google's file | " + " | ".join(args.candidates) + " |")
    print("|---|---|---|" + "---|" * len(args.candidates))
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            files = [str(f) for f in MODELS[name]]
            model = load_weights(files).eval()
            x = torch.cat(image_batches(FLOWERS / "val", model.config, limit=200) + image_batches(IMAGES, model.config, limit=20))
            want, google = top1(model, x), top1(run_tflite(files), x)
            cells = [f"{float((google == want).float().mean()):.3f}"]
            for candidate in args.candidates:
                fmt, options = CANDIDATES[candidate]
                out = Path(tmp) / f"{name}.{candidate.replace(' ', '_')}.{fmt.split('-')[0]}"
                path = export_model(files, out, fmt, check=False, **options).path  # type: ignore[arg-type]
                got = top1(load_exported(path, threads=1), x)
                cells.append(f"{float((got == want).float().mean()):.3f} ({float((got == google).float().mean()):.3f})")
            print(f"| {name} | {len(x)} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
