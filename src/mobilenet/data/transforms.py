"""Each model's preprocessing: the evaluation transform its config asks for (:func:`transforms_for`)
and the training augmentation."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from PIL import Image
from torchvision import transforms as T

from .images import MAX_IMAGE_PIXELS

CENTER_CROP = 0.875
MEAN = (0.5, 0.5, 0.5)  # (x - 0.5) / 0.5 maps [0, 1] to [-1, 1], as Google's MobileNets expect
STD = (0.5, 0.5, 0.5)
#: Smallest crop as a fraction of the image: Inception's 0.08 is more than a small net wants.
MIN_CROP_SCALE = 0.25


def train_transform(resolution: int, *, flip: bool = True, mean: Sequence[float] = MEAN, std: Sequence[float] = STD) -> T.Compose:
    steps: list[Any] = [T.RandomResizedCrop(resolution, scale=(MIN_CROP_SCALE, 1.0), antialias=True)]
    if flip:
        steps.append(T.RandomHorizontalFlip())
    steps += [T.ToTensor(), T.Normalize(mean, std)]
    return T.Compose(steps)


class CentralCropResize:
    """TF-slim's evaluation crop: the central ``fraction`` of the height and of the width
    (``tf.image.central_crop``'s box), resized bilinearly to ``size`` x ``size``. The aspect ratio is
    not kept, so a wide photo is squeezed, as it was when Google measured its weights' accuracy."""

    def __init__(self, size: int, fraction: float = CENTER_CROP, interpolation: str = "bilinear") -> None:
        self.size, self.fraction, self.interpolation = size, fraction, interpolation

    def __call__(self, img: Image.Image) -> Image.Image:
        w, h = img.size
        top, left = int((h - h * self.fraction) / 2), int((w - w * self.fraction) / 2)
        # PIL crops and resizes in one pass, filtering over the whole box (antialiased), which is
        # closer to the photo than TF1's point-sampled resize_bilinear on large downscales.
        resample = Image.Resampling.BICUBIC if self.interpolation == "bicubic" else Image.Resampling.BILINEAR
        return img.resize((self.size, self.size), resample, box=(left, top, w - left, h - top))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(size={self.size}, fraction={self.fraction}, interpolation={self.interpolation})"


class LimitResize:
    """Refuses an image whose resize to ``size`` px on its short side would pass
    :data:`MAX_IMAGE_PIXELS`: what stands before torchvision's ``Resize``, which would allocate it."""

    def __init__(self, size: int) -> None:
        self.size = size

    def __call__(self, img: Image.Image) -> Image.Image:
        w, h = img.size
        scale = self.size / max(min(w, h), 1)
        out_w, out_h = max(round(w * scale), 1), max(round(h * scale), 1)
        if out_w * out_h > MAX_IMAGE_PIXELS:
            raise ValueError(
                f"a {w}x{h} image resized to {self.size} px on its short side would be {out_w}x{out_h} pixels, "
                f"more than the {MAX_IMAGE_PIXELS:,} allowed"
            )
        return img

    def __repr__(self) -> str:
        return f"{type(self).__name__}(size={self.size})"


def eval_transform(
    resolution: int,
    crop: float = CENTER_CROP,
    *,
    preprocess: str = "torchvision",
    mean: Sequence[float] = MEAN,
    std: Sequence[float] = STD,
    interpolation: str = "bilinear",
) -> T.Compose:
    """``preprocess="torchvision"``: resize the short side to ``resolution / crop``, take the central
    square. ``"tf"``: :class:`CentralCropResize`. Then scale to ``(x - mean) / std``."""
    from ..spec import check_crop_pct

    check_crop_pct(crop, "crop")
    if preprocess == "tf":
        resize: list[Any] = [CentralCropResize(resolution, crop, interpolation)]
    elif preprocess == "torchvision":
        short = round(resolution / crop)
        resize = [
            LimitResize(short),
            T.Resize(short, interpolation=T.InterpolationMode(interpolation), antialias=True),
            T.CenterCrop(resolution),
        ]
    else:
        raise ValueError(f"preprocess={preprocess!r} is not supported; choose 'tf' or 'torchvision'")
    return T.Compose([*resize, T.ToTensor(), T.Normalize(mean, std)])


def transforms_for(
    config: Any, *, preprocess: str | None = None, crop: float | None = None, resolution: int | None = None
) -> T.Compose:
    """The evaluation transform a model's config asks for; ``preprocess``/``crop``/``resolution`` override it."""
    return eval_transform(
        resolution or config.resolution,
        config.crop_pct if crop is None else crop,
        preprocess=preprocess or config.preprocess,
        mean=config.mean,
        std=config.std,
        interpolation=getattr(config, "interpolation", "bilinear"),
    )
