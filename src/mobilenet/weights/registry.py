"""Google's published MobileNet v1 checkpoints, torchvision style: ``MobileNet_V1_Weights``.

Each entry carries its URL, its SHA-256 where we could compute it from a copy of the file, its
preprocessing (``transforms()``) and metadata (Mult-Adds, params, published accuracy, source).
Hashes are never guessed: where one is unknown (the Keras .h5 files), the first download records
the file's hash beside it and later loads check against that record.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from ..cost import model_cost
from ..data import eval_transform
from ..labels import class_names_for

__all__ = ["MobileNet_V1_Weights", "WeightsEntry", "cache_dir", "get_weights"]

_CORAL = "https://github.com/google-coral/test_data/raw/104342d2d3480b3e66203073dac24f4e2dbb4c41/"
_KERAS = "https://storage.googleapis.com/tensorflow/keras-applications/mobilenet/"
# PAPER.md §6: Google's top-1 on ImageNet val for float and quantized models, by α and resolution.
_TOP1_FLOAT = {
    1.0: (70.9, 70.0, 68.0, 65.2),
    0.75: (68.4, 67.2, 65.3, 62.1),
    0.5: (63.3, 61.7, 59.1, 56.3),
    0.25: (49.8, 47.7, 45.5, 41.5),
}
_TOP1_QUANT = {
    1.0: (70.1, 69.2, 67.2, 63.4),
    0.75: (66.8, 66.1, 62.3, 55.8),
    0.5: (60.7, 60.0, 57.7, 54.5),
    0.25: (48.0, 46.0, 43.4, 39.5),
}
_RES = (224, 192, 160, 128)


@dataclass(frozen=True)
class WeightsEntry:
    files: tuple[str, ...]  # URLs
    sha256: tuple[str | None, ...]
    sizes: tuple[int | None, ...]
    width_mult: float
    resolution: int
    num_classes: int
    meta: dict[str, Any] = field(default_factory=dict)

    def transforms(self):
        """Resize so a central 87.5% crop is ``resolution`` px, crop, scale to [-1, 1]."""
        return eval_transform(self.resolution)

    def build(self, *, progress: bool = True, **kwargs: Any):
        from . import load_weights

        local = [download(url, sha, progress=progress) for url, sha in zip(self.files, self.sha256)]
        converted = local[0].with_suffix(".safetensors")
        if not converted.exists():
            from ..checkpoint import save_weights

            save_weights(converted, load_weights(local if len(local) > 1 else local[0]), source=" + ".join(self.files))
        return load_weights(converted, **kwargs)


def _meta(alpha: float, res: int, classes: int, top1: float, source: str, quantized: bool) -> dict[str, Any]:
    cost = model_cost(width_mult=alpha, resolution=res, num_classes=classes)
    return {
        "categories": class_names_for(classes),
        "num_params": cost.params,
        "mult_adds": cost.mult_adds,
        "_metrics": {"ImageNet-1K": {"acc@1": top1}},
        "source": source,
        "license": "Apache-2.0",
        "quantized": quantized,
        "min_size": (32, 32),
    }


def _entries() -> dict[str, WeightsEntry]:
    out: dict[str, WeightsEntry] = {}
    coral = {
        (0.25, 128): ("cb273c23ee76374b05b9583177e28aa19744858a7679c56a250e83d0333da785", 525598),
        (0.5, 160): ("3cc6d2ca460abd2e0f699a6d0d2550c6b61c6e3b0e27a3616e384ea74cb86f43", 1392846),
        (0.75, 192): ("41daeb22fdcf947e0e5ec32373aa9df7c31f3ef45dbd0ef7b5940fbce3c20f6a", 2652542),
    }
    for (alpha, res), (sha, size) in coral.items():
        top1 = _TOP1_QUANT[alpha][_RES.index(res)]
        name = f"mobilenet_v1_{alpha}_{res}_quant.tflite"
        out[f"TFLITE_QUANT_{str(alpha).replace('.', '_')}_{res}"] = WeightsEntry(
            (_CORAL + name,),
            (sha,),
            (size,),
            alpha,
            res,
            1001,
            _meta(alpha, res, 1001, top1, "google-coral/test_data (TF-slim, quantized)", True),
        )
    out["TFLITE_QUANT_1_0_224"] = WeightsEntry(
        (
            _CORAL + "mobilenet_v1_1.0_224_quant_embedding_extractor.tflite",
            _CORAL + "mobilenet_v1_1.0_224_quant_head_layers.tflite",
        ),
        (
            "f409ef4f73fcbb9667841965623c5c8524aac33d41b9bf5f3667161fb4a76319",
            "65a88984b258c6f3c99d7573acac8cf85bd747293d83d51fafc1c2fb6d632286",
        ),
        (3251736, 1030768),
        1.0,
        224,
        1001,
        _meta(1.0, 224, 1001, _TOP1_QUANT[1.0][0], "google-coral/test_data (TF-slim, quantized)", True),
    )
    for alpha, tag in ((1.0, "1_0"), (0.75, "7_5"), (0.5, "5_0"), (0.25, "2_5")):
        for i, res in enumerate(_RES):
            out[f"KERAS_{str(alpha).replace('.', '_')}_{res}"] = WeightsEntry(
                (f"{_KERAS}mobilenet_{tag}_{res}_tf.h5",),
                (None,),
                (None,),
                alpha,
                res,
                1000,
                _meta(alpha, res, 1000, _TOP1_FLOAT[alpha][i], "Keras applications (float, 1000 classes)", False),
            )
    return out


MobileNet_V1_Weights = Enum("MobileNet_V1_Weights", _entries())  # type: ignore[misc]
MobileNet_V1_Weights.DEFAULT = MobileNet_V1_Weights.KERAS_1_0_224  # type: ignore[attr-defined]


def get_weights(weights: Any) -> WeightsEntry:
    if isinstance(weights, MobileNet_V1_Weights):
        return weights.value
    if isinstance(weights, WeightsEntry):
        return weights
    if isinstance(weights, str):
        key = weights.split(".")[-1]
        if key == "DEFAULT":
            return MobileNet_V1_Weights.DEFAULT.value  # type: ignore[attr-defined]
        if key in MobileNet_V1_Weights.__members__:
            return MobileNet_V1_Weights[key].value
    names = ", ".join(MobileNet_V1_Weights.__members__)
    raise ValueError(f"weights={weights!r} is neither a file nor a known entry; known entries: {names}")


def cache_dir() -> Path:
    import torch.hub

    return Path(os.environ.get("MOBILENET_CACHE", Path(torch.hub.get_dir()) / "checkpoints" / "mobilenet"))


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def download(url: str, sha256: str | None, *, progress: bool = True, directory: Path | None = None) -> Path:
    """Fetches ``url`` into the cache once and checks its hash; a mismatching file is deleted."""
    import torch.hub

    directory = directory or cache_dir()
    directory.mkdir(parents=True, exist_ok=True)
    dest = directory / url.rsplit("/", 1)[-1]
    record = dest.with_name(dest.name + ".sha256")
    if not dest.exists():
        try:
            torch.hub.download_url_to_file(url, str(dest), progress=progress)  # writes a temp file, then renames
        except Exception as exc:
            raise RuntimeError(
                f"could not download {url} ({type(exc).__name__}: {exc}). Offline? Put the file at {dest} "
                "(or set MOBILENET_CACHE to a folder holding it) and try again"
            ) from None
    digest = _sha256(dest)
    expected = sha256 or (record.read_text().strip() if record.exists() else None)
    if expected is None:
        record.write_text(digest + "\n")  # first download of a file whose hash nobody published
    elif digest != expected:
        dest.unlink()
        raise ValueError(
            f"{dest}: SHA-256 {digest} does not match the expected {expected}; the file was deleted, download it again"
        )
    return dest
