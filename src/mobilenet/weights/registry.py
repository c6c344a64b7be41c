"""Published MobileNet v1 checkpoints, torchvision style: ``MobileNet_V1_Weights``.

Each member is a :class:`Weights`: its files (URL, SHA-256 and size where we could compute them from
a copy of the file), the config it loads as, its preprocessing (``transforms()``) and metadata
(Mult-Adds, params, published accuracy, source). Hashes are never guessed: where one is unknown
(the Keras .h5 files, timm's Hugging Face files), the first download records the file's hash beside
it and later loads check against that record.

This module only finds files: :meth:`Weights.fetch` returns local paths (downloaded once, hash
checked). Turning them into a model is the loader's job (:func:`mobilenet.weights.load_weights`),
which sits above both this registry and the importers.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from ..cost import model_cost
from ..labels import class_names_for
from ..spec import MobileNetConfig

__all__ = ["MobileNet_V1_Weights", "Weights", "WeightsFile", "cache_dir", "download", "get_weights"]

_CORAL = "https://github.com/google-coral/test_data/raw/104342d2d3480b3e66203073dac24f4e2dbb4c41/"
_KERAS = "https://storage.googleapis.com/tensorflow/keras-applications/mobilenet/"
_HF = "https://huggingface.co/timm/"
# The paper (../shared/PAPER.md §6, outside this repository): Google's top-1 on ImageNet val for float and quantized models, by α and resolution.
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
class WeightsFile:
    """One published file. ``sha256=None``: no hash was ever published; the first download records one."""

    url: str
    sha256: str | None = None
    size: int | None = None
    #: The file's name in the cache; the URL's last part unless two entries would share it
    #: (every timm file on the Hugging Face hub is called ``model.safetensors``).
    filename: str | None = None

    @property
    def name(self) -> str:
        return self.filename or self.url.rsplit("/", 1)[-1]

    def fetch(self, *, progress: bool = True, directory: Path | None = None) -> Path:
        return download(self.url, self.sha256, progress=progress, directory=directory, filename=self.name)


@dataclass(frozen=True, eq=False)  # identity equality: a member's alias (DEFAULT) is the same object
class Weights:
    """A registry entry: the files, the config they load as, and what torchvision puts in ``meta``."""

    files: tuple[WeightsFile, ...]
    config: MobileNetConfig
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return self.files[0].url

    @property
    def width_mult(self) -> float:
        return self.config.width_mult

    @property
    def resolution(self) -> int:
        return self.config.resolution

    @property
    def num_classes(self) -> int:
        return self.config.num_classes

    def transforms(self) -> Any:
        """The evaluation transform the publisher measured these weights with (``transforms_for``)."""
        # Imported here so that ``import mobilenet`` does not pull in torchvision's transforms.
        from ..data import transforms_for

        return transforms_for(self.config)

    def fetch(self, *, progress: bool = True, directory: Path | None = None) -> list[Path]:
        """The local files, downloaded into the cache once and hash-checked on every call."""
        return [f.fetch(progress=progress, directory=directory) for f in self.files]


def _meta(config: MobileNetConfig, top1: float | None, source: str, quantized: bool, **extra: Any) -> dict[str, Any]:
    cost = model_cost(config)
    return {
        "categories": class_names_for(config.num_classes),
        "num_params": cost.params,
        "mult_adds": cost.mult_adds,
        "_metrics": {"ImageNet-1K": {"acc@1": top1}} if top1 is not None else {},
        "source": source,
        "license": "Apache-2.0",
        "quantized": quantized,
        "min_size": (32, 32),
        **extra,
    }


def _tf_config(alpha: float, res: int, num_classes: int, padding: str) -> MobileNetConfig:
    return MobileNetConfig(
        width_mult=alpha,
        resolution=res,
        num_classes=num_classes,
        activation="relu6",
        padding=padding,
        bn_eps=1e-3,
        labels=f"imagenet{num_classes}",
        preprocess="tf",  # TF-slim's central crop: how Google measured the published accuracies
        crop_pct=0.875,
    )


def _coral(alpha: float, res: int, files: tuple[tuple[str, str, int], ...]) -> Weights:
    """A quantized TF Lite model from google-coral/test_data, files as (name, SHA-256, size)."""
    config = _tf_config(alpha, res, 1001, "tf")
    return Weights(
        tuple(WeightsFile(_CORAL + name, sha, size) for name, sha, size in files),
        config,
        _meta(config, _TOP1_QUANT[alpha][_RES.index(res)], "google-coral/test_data (TF-slim, quantized)", True),
    )


def _keras(alpha: float, res: int) -> Weights:
    """A float keras.applications.MobileNet file (with top, 1000 classes); its hash was never published."""
    tag = {1.0: "1_0", 0.75: "7_5", 0.5: "5_0", 0.25: "2_5"}[alpha]  # Keras' own spelling of α
    config = _tf_config(alpha, res, 1000, "keras")
    return Weights(
        (WeightsFile(f"{_KERAS}mobilenet_{tag}_{res}_tf.h5"),),
        config,
        _meta(config, _TOP1_FLOAT[alpha][_RES.index(res)], "Keras applications (float, 1000 classes)", False),
    )


def _timm(name: str, alpha: float, crop_pct: float, top1: float | None) -> Weights:
    """timm's ``mobilenetv1_*`` weights on the Hugging Face hub (safetensors, timm layout, no published hash).

    ``crop_pct`` is timm's at the 224 px train size (its pretrained cfg; it tests at 256 px with
    a larger crop), mean and std are timm's "inception" (0.5, 0.5, 0.5), and it resizes bicubically.
    """
    config = MobileNetConfig(
        width_mult=alpha,
        resolution=224,
        num_classes=1000,
        activation="relu6",
        padding="symmetric",
        bn_eps=1e-5,
        labels="imagenet1000",
        preprocess="torchvision",
        crop_pct=crop_pct,
        interpolation="bicubic",
    )
    return Weights(
        (WeightsFile(f"{_HF}{name}/resolve/main/model.safetensors", filename=f"{name}.timm.safetensors"),),
        config,
        _meta(config, top1, f"timm {name} (Hugging Face hub, float)", False, timm_name=name),
    )


class MobileNet_V1_Weights(Enum):
    """Published MobileNet v1 weights: ``mobilenet_v1(weights=MobileNet_V1_Weights.KERAS_1_0_224)``.

    A member passes ``url``, ``meta``, ``config``, ``files``, ``transforms()`` and ``fetch()``
    through to its :class:`Weights`.
    """

    # Google's quantized TF Lite models (uint8, 1001 classes with "background"), hashes computed from copies.
    TFLITE_QUANT_0_25_128 = _coral(
        0.25,
        128,
        (("mobilenet_v1_0.25_128_quant.tflite", "cb273c23ee76374b05b9583177e28aa19744858a7679c56a250e83d0333da785", 525598),),
    )
    TFLITE_QUANT_0_5_160 = _coral(
        0.5,
        160,
        (("mobilenet_v1_0.5_160_quant.tflite", "3cc6d2ca460abd2e0f699a6d0d2550c6b61c6e3b0e27a3616e384ea74cb86f43", 1392846),),
    )
    TFLITE_QUANT_0_75_192 = _coral(
        0.75,
        192,
        (("mobilenet_v1_0.75_192_quant.tflite", "41daeb22fdcf947e0e5ec32373aa9df7c31f3ef45dbd0ef7b5940fbce3c20f6a", 2652542),),
    )
    # The 1.0-224 model is published in two parts: the feature extractor and the classifier head.
    TFLITE_QUANT_1_0_224 = _coral(
        1.0,
        224,
        (
            (
                "mobilenet_v1_1.0_224_quant_embedding_extractor.tflite",
                "f409ef4f73fcbb9667841965623c5c8524aac33d41b9bf5f3667161fb4a76319",
                3251736,
            ),
            (
                "mobilenet_v1_1.0_224_quant_head_layers.tflite",
                "65a88984b258c6f3c99d7573acac8cf85bd747293d83d51fafc1c2fb6d632286",
                1030768,
            ),
        ),
    )
    # keras.applications.MobileNet, float, 1000 classes.
    KERAS_1_0_224 = _keras(1.0, 224)
    KERAS_1_0_192 = _keras(1.0, 192)
    KERAS_1_0_160 = _keras(1.0, 160)
    KERAS_1_0_128 = _keras(1.0, 128)
    KERAS_0_75_224 = _keras(0.75, 224)
    KERAS_0_75_192 = _keras(0.75, 192)
    KERAS_0_75_160 = _keras(0.75, 160)
    KERAS_0_75_128 = _keras(0.75, 128)
    KERAS_0_5_224 = _keras(0.5, 224)
    KERAS_0_5_192 = _keras(0.5, 192)
    KERAS_0_5_160 = _keras(0.5, 160)
    KERAS_0_5_128 = _keras(0.5, 128)
    KERAS_0_25_224 = _keras(0.25, 224)
    KERAS_0_25_192 = _keras(0.25, 192)
    KERAS_0_25_160 = _keras(0.25, 160)
    KERAS_0_25_128 = _keras(0.25, 128)
    # timm's ra4 recipe (3600 epochs), float, 1000 classes; top-1 at 224 px from timm's results
    # (76.9 for α=1.25 at 224; 77.6 at timm's 256 px test size).
    TIMM_1_0_224_RA4 = _timm("mobilenetv1_100.ra4_e3600_r224_in1k", 1.0, 0.875, 75.4)
    TIMM_1_25_224_RA4 = _timm("mobilenetv1_125.ra4_e3600_r224_in1k", 1.25, 0.9, 76.9)

    DEFAULT = KERAS_1_0_224  # an alias: the same Weights object, so Enum makes it the same member

    @property
    def url(self) -> str:
        return self.value.url

    @property
    def meta(self) -> dict[str, Any]:
        return self.value.meta

    @property
    def config(self) -> MobileNetConfig:
        return self.value.config

    @property
    def files(self) -> tuple[WeightsFile, ...]:
        return self.value.files

    def transforms(self) -> Any:
        return self.value.transforms()

    def fetch(self, *, progress: bool = True, directory: Path | None = None) -> list[Path]:
        return self.value.fetch(progress=progress, directory=directory)


def get_weights(weights: Any) -> Weights:
    """A registry member, its name (``"KERAS_1_0_224"``, ``"MobileNet_V1_Weights.DEFAULT"``) or a
    :class:`Weights` → its :class:`Weights`."""
    if isinstance(weights, MobileNet_V1_Weights):
        return weights.value
    if isinstance(weights, Weights):
        return weights
    if isinstance(weights, bytes):
        raise TypeError(f"weights={weights!r} is bytes; pass a str or pathlib.Path (os.fsdecode converts bytes)")
    if isinstance(weights, str) and not weights.strip():
        raise ValueError("weights='' is an empty string; pass a file path or a registry name such as KERAS_1_0_224")
    if isinstance(weights, str):
        key = weights.split(".")[-1]
        if key in MobileNet_V1_Weights.__members__:  # aliases included
            return MobileNet_V1_Weights[key].value
    names = ", ".join(MobileNet_V1_Weights.__members__)
    raise ValueError(f"weights={weights!r} is neither a file nor a known entry; known entries: {names}")


def cache_dir() -> Path:
    """``$MOBILENET_CACHE``, else torch hub's ``checkpoints/mobilenet``; a variable naming a file is refused."""
    import torch.hub

    value = os.environ.get("MOBILENET_CACHE", "")
    if not value.strip():  # unset or empty: an empty value would mean the current folder
        return Path(torch.hub.get_dir()) / "checkpoints" / "mobilenet"
    path = Path(value).expanduser()
    if path.exists() and not path.is_dir():
        raise NotADirectoryError(
            f"MOBILENET_CACHE={value!r} is a file, not a folder; set MOBILENET_CACHE to a folder for downloaded weights "
            "(or unset it to use torch hub's cache)"
        )
    return path


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def download(
    url: str, sha256: str | None, *, progress: bool = True, directory: Path | None = None, filename: str | None = None
) -> Path:
    """Fetches ``url`` into the cache (as ``filename``, default the URL's last part) once and
    checks its hash. A mismatching file is never deleted (it may be the user's own, put there by
    hand): it is moved aside to ``<name>.mismatch-<hash8>`` and the error says where. With
    ``sha256=None`` the first download records the file's hash beside it and later calls check
    against that record."""
    import torch.hub

    directory = directory or cache_dir()
    if directory.exists() and not directory.is_dir():
        raise NotADirectoryError(f"weights cache {str(directory)!r} is a file, not a folder; pass or set a folder")
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OSError(
            f"cannot create the weights cache {str(directory)!r}: {exc.strerror or exc} (set MOBILENET_CACHE)"
        ) from None
    dest = directory / (filename or url.rsplit("/", 1)[-1])
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
        aside = dest.with_name(f"{dest.name}.mismatch-{digest[:8]}")
        os.replace(dest, aside)
        raise ValueError(
            f"{dest}: SHA-256 {digest} does not match the expected {expected}; the file was moved to {aside} (not "
            f"deleted) and the next call downloads it again. Delete {aside.name} if it is not yours"
        )
    return dest
