"""What the benchmarks share: where the data outside the repository lives (../shared: Google's
reference files, the flowers photos), the photos and varied inputs made from them, Google's own
runtime on Google's files, and the CPU's name for the results. The tests read the same files
through it (tests/reference.py).

A benchmark run as ``python benchmarks/NAME.py`` imports it as ``_common`` (its folder is on the
path); ``mobilenet`` itself comes from the installed package (``pip install -e .``).
"""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance, ImageOps

SHARED = Path(__file__).resolve().parents[2] / "shared"
REFERENCE = Path(os.environ.get("MOBILENET_REFERENCE", SHARED / "reference"))
FLOWERS = SHARED / "data" / "flowers"
TFLITE = REFERENCE / "tflite"
IMAGES = REFERENCE / "images"

MODELS = {
    "0.25_128": [TFLITE / "mobilenet_v1_0.25_128_quant.tflite"],
    "0.5_160": [TFLITE / "mobilenet_v1_0.5_160_quant.tflite"],
    "0.75_192": [TFLITE / "mobilenet_v1_0.75_192_quant.tflite"],
    "1.0_224": [
        TFLITE / "mobilenet_v1_1.0_224_quant_embedding_extractor.tflite",
        TFLITE / "mobilenet_v1_1.0_224_quant_head_layers.tflite",
    ],
}


def have_reference() -> bool:
    return TFLITE.is_dir() and IMAGES.is_dir()


def photos() -> list[Path]:
    return sorted(p for p in IMAGES.iterdir() if p.suffix.lower() in (".jpg", ".bmp", ".png"))


def varied_inputs(size: int, count: int, seed: int = 0) -> list[np.ndarray]:
    """Natural-looking uint8 inputs beyond the eight photos: random crops, flips, rotations,
    colour and brightness changes and blends of the photos, resized to ``size``."""
    rng = np.random.default_rng(seed)
    base = [Image.open(p).convert("RGB") for p in photos()]
    out = []
    for _ in range(count):
        img = base[rng.integers(len(base))]
        w, h = img.size
        scale = rng.uniform(0.35, 1.0)
        cw, ch = int(w * scale), int(h * scale)
        x0, y0 = rng.integers(0, w - cw + 1), rng.integers(0, h - ch + 1)
        img = img.crop((x0, y0, x0 + cw, y0 + ch))
        if rng.random() < 0.5:
            img = ImageOps.mirror(img)
        img = img.rotate(float(rng.uniform(-20, 20)), resample=Image.BILINEAR)
        img = ImageEnhance.Color(img).enhance(rng.uniform(0.5, 1.5))
        img = ImageEnhance.Brightness(img).enhance(rng.uniform(0.7, 1.3))
        img = img.resize((size, size), Image.BILINEAR)
        if rng.random() < 0.2:
            other = base[rng.integers(len(base))].resize((size, size), Image.BILINEAR)
            img = Image.blend(img, other, float(rng.uniform(0.2, 0.5)))
        out.append(np.asarray(img, dtype=np.uint8))
    return out


def resized(path: Path, size: int) -> np.ndarray:
    """The reference README's preprocessing: bilinear resize of the whole image, no crop."""
    return np.asarray(Image.open(path).convert("RGB").resize((size, size), Image.BILINEAR), dtype=np.uint8)


class LiteRT:
    """Google's runtime on one model (or the extractor + head pair): uint8 image → 1001 probabilities."""

    def __init__(self, files: list[Path], threads: int = 1) -> None:
        from ai_edge_litert.interpreter import Interpreter

        self.stages = []
        for f in files:
            it = Interpreter(model_path=str(f), num_threads=threads)
            it.allocate_tensors()
            self.stages.append(it)

    def __call__(self, image: np.ndarray) -> np.ndarray:
        x = image[None]
        for it in self.stages:
            it.set_tensor(it.get_input_details()[0]["index"], x.reshape(it.get_input_details()[0]["shape"]))
            it.invoke()
            detail = it.get_output_details()[0]
            x = it.get_tensor(detail["index"])
        scale, zero = detail["quantization"]
        return (x.reshape(-1).astype(np.float64) - zero) * scale


def cpu_name() -> str:
    """The CPU's model name (lscpu), for the tables in RESULTS.md."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        return next(line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name"))
    except (OSError, StopIteration):
        return platform.processor() or "unknown CPU"
