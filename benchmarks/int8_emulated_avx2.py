"""ONNX Runtime's int8 on a CPU without VNNI, emulated: our onnx-int8 files run under QEMU's user
mode as an AMD EPYC Milan (Zen 3: AVX2, no AVX-512, no VNNI), the CPU the issue failed on.

ONNX Runtime has no switch to force its non-VNNI kernels; it picks them from CPUID. Under
`qemu-x86_64 -cpu EPYC-Milan` the same wheel sees a Zen 3 and runs its AVX2 u8s8 path
(`vpmaddubsw`, two products summed into an int16). Each scheme's file (written here, natively) runs
on the same photos natively and emulated; we print top-1 agreement with the float model and how far
the emulated logits are from the native ones. The 8-bit file without our split is the control: it
must saturate there, or the emulation is not showing the AVX2 path.

Needs `qemu-user` (Debian: `apt-get install qemu-user`). Slow: the emulated process runs at a few
percent of native speed, so the photo count is small.

    python benchmarks/int8_emulated_avx2.py [--models 0.5-160] [--photos 48]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from int8_schemes import MODELS, SHARED, agreement, write_scheme

from mobilenet import mobilenet_v1
from mobilenet.bench import cpu_description
from mobilenet.data import image_batches
from mobilenet.weights.tflite import activation_quantization

CPU = "EPYC-Milan"
RUN = (
    "import sys, numpy as np, onnxruntime as ort\n"
    "s = ort.InferenceSession(sys.argv[1], providers=['CPUExecutionProvider'])\n"
    "x = np.load(sys.argv[2])\n"
    "np.save(sys.argv[3], np.concatenate([s.run(None, {s.get_inputs()[0].name: x[i:i + 8]})[0] for i in range(0, len(x), 8)]))\n"
)


def run_onnx(path: Path, x: np.ndarray, folder: Path, emulated: bool) -> np.ndarray:
    np.save(folder / "x.npy", x)
    command = [sys.executable, "-c", RUN, str(path), str(folder / "x.npy"), str(folder / "y.npy")]
    if emulated:
        command = ["qemu-x86_64", "-cpu", CPU, *command]
    subprocess.run(command, check=True, stderr=subprocess.DEVNULL)
    return np.load(folder / "y.npy")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["0.5-160"], choices=list(MODELS))
    parser.add_argument("--photos", type=int, default=48)
    args = parser.parse_args()
    if shutil.which("qemu-x86_64") is None:
        sys.exit("needs qemu-x86_64 (Debian: apt-get install qemu-user)")
    warnings.filterwarnings("ignore")
    print(f"native cpu: {cpu_description()}; emulated: QEMU -cpu {CPU} (AVX2, no AVX-512, no VNNI); {time.strftime('%Y-%m-%d')}")
    print("| model | scheme | agreement native | agreement emulated Zen 3 | largest logit difference emulated vs native |")
    print("|---|---|---|---|---|")
    for name in args.models:
        files = MODELS[name]
        model = mobilenet_v1(weights=[str(f) for f in files]).eval()
        x = torch.cat(
            image_batches(SHARED / "reference" / "images", model.config, limit=8)
            + image_batches(SHARED / "data" / "flowers" / "val", model.config, limit=args.photos - 8)
        )
        with torch.no_grad():
            want = model(x)
        ranges = activation_quantization(files)
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            for scheme in ("uint8-grid", "portable", "8bit-unsafe"):
                path = write_scheme(model, ranges, scheme, folder)
                native = run_onnx(path, x.numpy(), folder, emulated=False)
                emulated = run_onnx(path, x.numpy(), folder, emulated=True)
                a_native = agreement(torch.from_numpy(native), want)
                a_emulated = agreement(torch.from_numpy(emulated), want)
                diff = float(np.abs(native - emulated).max())
                print(f"| {name} | {scheme} | {a_native:.3f} | {a_emulated:.3f} | {diff:.3g} |", flush=True)


if __name__ == "__main__":
    main()
