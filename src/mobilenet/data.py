"""Datasets and transforms: the built-in digits set, ImageFolder trees, and each weights' preprocessing.

A model's config says how its inputs are made (:data:`mobilenet.spec.PREPROCESSES`): Google's
weights were evaluated with TF-slim's inception preprocessing (the central 87.5% of the height and
of the width, resized to S x S, pixels scaled to [-1, 1]); models of our own default to
torchvision's resize-then-centre-crop; timm's MobileNet v1 weights want [-1, 1] too (their
pretrained_cfg's mean and std are 0.5; :mod:`mobilenet.weights.timm`).
:func:`transforms_for` turns a config into its evaluation transform. Training uses random resized
crops with a limited small-crop range (the paper uses less aggressive augmentation than
Inception) and horizontal flips.

Reading images follows one policy in every reader (training folders, ``eval``, ``predict``, int8
calibration), decided in :func:`open_rgb` and :func:`list_images`:

- Only regular files are read. A FIFO, socket or device named ``x.jpg`` is skipped (opening one
  blocks forever); a folder walk counts such entries in one warning.
- Folders are walked without following symlinked subfolders, so a link loop cannot repeat photos
  and a link to another class or split cannot relabel them (a class folder that is itself a link
  is followed). Linked files are read, but a photo reached twice in one class counts once.
- An image is refused before it is decoded when it has more than :data:`MAX_IMAGE_PIXELS` pixels
  (PIL's decompression-bomb limit, about which PIL itself only warns) or its long side is more than
  :data:`MAX_ASPECT_RATIO` times its short side (an 863-byte 1 x 200000 PNG resized to a 37 px
  short side is 7.4 M pixels long); a resize whose result would pass the pixel limit is refused too.
- Problems of one image (unreadable, truncated, absurd size) skip that image with a one-line
  warning naming it, and the run counts the skipped images. Problems of the layout refuse the run
  before any work: a missing folder, a ``val`` that is a file, a ``val/`` without ``train/``, a
  class folder that is (through a link) another class's or the data folder itself, a photo held
  by two classes, validation photos that are training photos.
"""

from __future__ import annotations

import logging
import os
import stat
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError
from torch import Tensor
from torch.utils.data import Dataset, default_collate
from torchvision import transforms as T
from torchvision.datasets.folder import IMG_EXTENSIONS

__all__ = [
    "CENTER_CROP",
    "MAX_ASPECT_RATIO",
    "MAX_IMAGE_PIXELS",
    "CentralCropResize",
    "DataSplit",
    "DigitsDataset",
    "ImageListing",
    "SafeImageFolder",
    "check_image_size",
    "check_seed",
    "eval_transform",
    "image_batches",
    "list_images",
    "load_data",
    "open_rgb",
    "skip_bad_collate",
    "split_folders",
    "train_transform",
    "transform_image",
    "transforms_for",
]

log = logging.getLogger(__name__)
CENTER_CROP = 0.875
MEAN = (0.5, 0.5, 0.5)  # (x - 0.5) / 0.5 maps [0, 1] to [-1, 1], as Google's MobileNets expect
STD = (0.5, 0.5, 0.5)
#: Smallest crop as a fraction of the image: Inception's 0.08 is more than a small net wants.
MIN_CROP_SCALE = 0.25
#: Most pixels an image may have, decoded or resized: PIL's own decompression-bomb limit
#: (``Image.MAX_IMAGE_PIXELS``'s default), which PIL enforces only at twice this and warns about below.
MAX_IMAGE_PIXELS = 89_478_485
#: Longest side over shortest side. Resizing the short side to the model's size stretches the long
#: side by the same factor, so an extreme ratio turns a tiny file into gigabytes; 100:1 is far beyond
#: any photo (a 360-degree panorama is about 8:1).
MAX_ASPECT_RATIO = 100
#: Seeds go to random, numpy (which takes 32 bits), torch and scikit-learn (also 32 bits).
MAX_SEED = 2**32 - 1


def check_seed(seed: object, name: str = "seed") -> int:
    """A random seed: an integer in [0, 2**32 - 1], which every generator we seed accepts."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise ValueError(f"{name}={seed!r} must be a whole number from 0 to {MAX_SEED} (2**32 - 1)")
    return seed


def check_image_size(width: int, height: int, path: str | os.PathLike[str] | None = None) -> None:
    """Refuses, with a ``ValueError`` naming ``path``, an image too large or too elongated to decode."""
    where = f"{path}: " if path is not None else ""
    if width < 1 or height < 1:
        raise ValueError(f"{where}an image of {width}x{height} pixels has no pixels")
    if width * height > MAX_IMAGE_PIXELS:
        raise ValueError(
            f"{where}{width}x{height} is {width * height:,} pixels, more than the {MAX_IMAGE_PIXELS:,} we decode "
            "(PIL's decompression-bomb limit); shrink the image first"
        )
    if max(width, height) > MAX_ASPECT_RATIO * min(width, height):
        raise ValueError(
            f"{where}{width}x{height} pixels has a side ratio beyond {MAX_ASPECT_RATIO}:1; resized for the model it "
            "would be enormous, and a centre crop would see almost none of it. Crop the image first"
        )


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
    from .spec import check_crop_pct

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


_DECODE_ERRORS = (OSError, UnidentifiedImageError, SyntaxError, ValueError, Image.DecompressionBombError)


def open_rgb(path: str | os.PathLike[str]) -> Image.Image:
    """Decodes an image file to 8-bit RGB, or raises ``ValueError`` naming the file.

    Only a regular file is opened (a FIFO named ``x.jpg`` would block), and its size is checked
    from the header before any pixel is decoded (:func:`check_image_size`). 16-bit images (PNG,
    TIFF) are scaled to 8 bits, as torchvision's ``decode_png`` and ``ToDtype(torch.uint8,
    scale=True)`` would; PIL's own ``convert("RGB")`` clips them to white.
    """
    from .checkpoint import as_path

    path = as_path(path, "image")
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise FileNotFoundError(f"image {str(path)!r} does not exist") from None
    except OSError as exc:
        raise ValueError(f"{path}: not a readable image ({exc.strerror or exc})") from None
    if not stat.S_ISREG(mode):
        what = "a folder" if stat.S_ISDIR(mode) else "not a regular file (a FIFO, socket or device)"
        raise ValueError(f"{path}: not a readable image: it is {what}")
    try:
        # Our own size check comes first and is stricter; PIL's warning about the same would repeat it.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(path)
        with img:
            check_image_size(*img.size, path)
            img.load()
            if img.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N"):
                import numpy as np

                pixels = np.asarray(img, dtype=np.float64)
                high = 65535.0 if img.mode.startswith("I;16") or pixels.max() > 255 else 255.0
                img = Image.fromarray(np.clip(pixels / high * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")
            elif img.mode == "F":
                import numpy as np

                pixels = np.asarray(img, dtype=np.float64)
                img = Image.fromarray(
                    np.clip(pixels * (255.0 if pixels.max() <= 1.0 else 1.0) + 0.5, 0, 255).astype(np.uint8), "L"
                )
            return img.convert("RGB")
    except FileNotFoundError:
        raise FileNotFoundError(f"image {str(path)!r} does not exist") from None
    except Image.DecompressionBombError:
        # PIL refuses beyond twice its limit before our check can run; say it the same way.
        raise ValueError(
            f"{path}: more than the {MAX_IMAGE_PIXELS:,} pixels we decode (PIL's decompression-bomb limit); shrink the image first"
        ) from None
    except ValueError as exc:
        if str(exc).startswith(f"{path}: "):  # ours, from check_image_size
            raise
        raise ValueError(f"{path}: not a readable image ({exc})") from None
    except _DECODE_ERRORS as exc:
        raise ValueError(f"{path}: not a readable image ({exc})") from None


def transform_image(path: str | os.PathLike[str], transform: Any = None) -> Any:
    """:func:`open_rgb` then ``transform``; a transform's ``ValueError`` (a resize too large) names the file."""
    img = open_rgb(path)
    if transform is None:
        return img
    try:
        return transform(img)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None


class DigitsDataset(Dataset):
    """scikit-learn's handwritten digits (1,797 8x8 images, 10 classes), upscaled, as 3-channel tensors.

    The split is stratified and seeded, so train and val never overlap and are the same on every
    run. Everything is decoded once into one tensor; augmentation is a small random shift and scale
    (no flips: a mirrored 2 is not a 2).
    """

    classes: ClassVar[list[str]] = [str(i) for i in range(10)]

    def __init__(
        self, split: str = "train", resolution: int = 32, *, val_fraction: float = 0.2, seed: int = 0, augment: bool | None = None
    ) -> None:
        try:
            from sklearn.datasets import load_digits
            from sklearn.model_selection import train_test_split
        except ImportError as exc:  # pragma: no cover - the train extra installs it
            raise RuntimeError("the built-in digits dataset needs scikit-learn: pip install 'mobilenet[train]'") from exc
        if split not in ("train", "val"):
            raise ValueError(f"split={split!r} must be 'train' or 'val'")
        digits = load_digits()
        idx = list(range(len(digits.target)))
        train_idx, val_idx = train_test_split(idx, test_size=val_fraction, random_state=seed, stratify=digits.target)
        chosen = sorted(train_idx if split == "train" else val_idx)
        images = torch.tensor(digits.images[chosen], dtype=torch.float32).unsqueeze(1) / 16.0
        images = F.interpolate(images, size=(resolution, resolution), mode="bilinear", align_corners=False)
        self.images = ((images - 0.5) / 0.5).expand(-1, 3, -1, -1).contiguous()
        self.targets = torch.tensor(digits.target[chosen], dtype=torch.long)
        self.resolution = resolution
        self.augment = split == "train" if augment is None else augment

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        x = self.images[i]
        if self.augment:
            # Shift by up to 1/8 of the side, padding with the background value (-1).
            r = self.resolution
            pad = max(r // 8, 1)
            x = F.pad(x, (pad, pad, pad, pad), value=-1.0)
            dy, dx = torch.randint(0, 2 * pad + 1, (2,)).tolist()
            x = x[:, dy : dy + r, dx : dx + r]
        return x, int(self.targets[i])


def _is_image(path: str) -> bool:
    return path.lower().endswith(IMG_EXTENSIONS)


@dataclass
class ImageListing:
    """The image files under a folder, as :func:`list_images` walks it, and what it passed over."""

    #: Image files to read, sorted (regular files, or links to them).
    files: list[str]
    #: For the files that are symlinks: their real path → their listed path.
    linked: dict[str, str]
    #: Entries named like images that are not regular files: FIFOs, sockets, devices, broken links.
    not_regular: list[str]
    #: Symlinked subfolders, not followed.
    linked_folders: list[str]
    #: Folders that could not be listed (permissions).
    unreadable: list[str]
    #: Links to a photo already listed, dropped.
    duplicates: list[str]

    def warn(self, where: str | os.PathLike[str]) -> None:
        """One warning per kind of entry passed over, with a count and an example."""
        notes = [
            (self.not_regular, "named like images but not regular files (FIFOs, sockets, devices or broken links)"),
            (
                self.linked_folders,
                "symlinked subfolders, not followed (a link loop or a link to another class would repeat or relabel photos)",
            ),
            (self.duplicates, "links to photos already listed, counted once"),
            (self.unreadable, "subfolders that could not be listed"),
        ]
        for entries, what in notes:
            if entries:
                warnings.warn(f"{where}: skipped {len(entries)} {what}, e.g. {entries[0]}", stacklevel=3)


def list_images(folder: str | os.PathLike[str]) -> ImageListing:
    """The image files anywhere under ``folder``, by :data:`IMG_EXTENSIONS`, under this module's
    policy: regular files only, symlinked subfolders not followed (``folder`` itself may be a link),
    a photo reached through several links listed once. Nothing is opened."""
    top = str(folder)
    found: list[tuple[str, bool]] = []
    listing = ImageListing([], {}, [], [], [], [])
    stack = [top]
    while stack:
        current = stack.pop()
        try:
            with os.scandir(current) as it:
                entries = list(it)
        except OSError:
            listing.unreadable.append(current)
            continue
        for e in entries:
            try:
                if e.is_dir(follow_symlinks=False):
                    stack.append(e.path)
                elif e.is_symlink() and e.is_dir():
                    listing.linked_folders.append(e.path)
                elif not _is_image(e.name):
                    continue
                elif e.is_file():  # follows a link: a link to a regular file is read
                    found.append((e.path, e.is_symlink()))
                else:
                    listing.not_regular.append(e.path)
            except OSError:
                listing.not_regular.append(e.path)
    found.sort()
    listed = {path for path, _ in found}
    real_top = os.path.realpath(top)
    for path, is_link in found:
        if is_link:
            real = os.path.realpath(path)
            # A link to a photo listed under its own name (no link on its way: those are not walked),
            # or to one that an earlier link reached.
            rel = os.path.relpath(real, real_top)
            inside = rel != os.pardir and not rel.startswith(os.pardir + os.sep)
            if real in listing.linked or (inside and os.path.join(top, rel) in listed):
                listing.duplicates.append(path)
                continue
            listing.linked[real] = path
        listing.files.append(path)
    listing.not_regular.sort()
    listing.linked_folders.sort()
    return listing


def _owner(real: str, roots: dict[str, str]) -> str | None:
    """The value of the entry of ``roots`` (real folder → name) whose folder holds ``real``, if any."""
    while True:
        if real in roots:
            return roots[real]
        parent = os.path.dirname(real)
        if parent == real:
            return None
        real = parent


class SafeImageFolder(Dataset):
    """An ImageFolder that skips unreadable or truncated images with a warning instead of failing.

    A skipped sample comes back as ``None``; :func:`skip_bad_collate` drops it from the batch and
    the training loop counts it. Folders are listed by :func:`list_images`; a class folder that is,
    through a link, another class's (or the data folder itself), and a photo that two classes hold,
    are refused: each photo must have one label.
    """

    def __init__(self, root: str | os.PathLike[str], transform: Any = None, classes: Sequence[str] | None = None) -> None:
        from .checkpoint import as_path

        root = as_path(root, "data folder")
        if not root.is_dir():
            what = "is a file, not a folder" if root.exists() else "does not exist"
            raise FileNotFoundError(f"data folder {str(root)!r} {what}; expected {root}/<class>/<image> files")
        found = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
        if not found:
            raise ValueError(f"data folder {str(root)!r} has no class subfolders; expected {root}/<class>/<image> files")
        self.classes = list(classes) if classes is not None else found
        unknown = set(found) - set(self.classes)
        if unknown:
            raise ValueError(f"{root}: class folders {sorted(unknown)} are not among the training classes")
        self.class_to_idx = {c: i for i, c in enumerate(self.classes)}
        self.root = root
        #: Each class folder's real path, and the real path of each linked photo → (its class, its
        #: listed path): what :func:`load_data` compares to keep validation photos out of training.
        self.roots: dict[str, str] = {c: os.path.realpath(root / c) for c in found}
        self.linked: dict[str, tuple[str, str]] = {}
        self._check_class_folders()
        self.samples: list[tuple[str, int]] = []
        empty = []
        passed_over = ImageListing([], {}, [], [], [], [])
        by_root = {r: c for c, r in self.roots.items()}
        for c in found:
            listing = list_images(root / c)
            for real, path in listing.linked.items():
                other = _owner(real, by_root) or self.linked.get(real, (None,))[0]
                if other is not None and other != c:
                    raise ValueError(
                        f"{path} (class {c!r}) is a link to {real}, a photo of class {other!r}; a photo must have one "
                        "label. Remove the link or the photo from one class"
                    )
                self.linked[real] = (c, path)
            for name in ("not_regular", "linked_folders", "unreadable", "duplicates"):
                getattr(passed_over, name).extend(getattr(listing, name))
            if not listing.files:
                empty.append(c)
            self.samples += [(f, self.class_to_idx[c]) for f in listing.files]
        if empty:
            raise ValueError(
                f"{root}: class folder(s) {empty} contain no images (extensions {', '.join(IMG_EXTENSIONS)}); "
                "add images or remove the folder"
            )
        passed_over.warn(root)
        self.targets = [t for _, t in self.samples]
        self.transform = transform

    def _check_class_folders(self) -> None:
        """Refuses class folders that are, through links, the same folder, one inside another, or
        folders that hold the data folder itself (a loop): their photos would get two labels."""
        by_root: dict[str, str] = {}
        top = os.path.realpath(self.root)
        for c, real in self.roots.items():
            if real in by_root:
                raise ValueError(
                    f"{self.root}: class folders {by_root[real]!r} and {c!r} are the same folder ({real}, through a "
                    "symlink); each photo must have one label. Remove the link"
                )
            if _owner(top, {real: c}) is not None:
                raise ValueError(
                    f"{self.root}: class folder {c!r} is a link to {real}, which holds the data folder itself (a link "
                    "loop); remove it"
                )
            by_root[real] = c
        for c, real in self.roots.items():
            outer = _owner(os.path.dirname(real), by_root)
            if outer is not None:
                raise ValueError(
                    f"{self.root}: class folder {c!r} ({real}) lies inside class folder {outer!r} (through a symlink); "
                    "each photo must have one label. Remove the link"
                )

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[Tensor, int] | None:
        path, target = self.samples[i]
        try:
            x = transform_image(path, self.transform)
        except (OSError, ValueError) as exc:
            warnings.warn(f"skipping unreadable image {path}: {exc}", stacklevel=1)
            return None
        return x, target


def _check_disjoint(train: SafeImageFolder, val: SafeImageFolder) -> None:
    """Refuses validation photos that are training photos (through links): a flattered accuracy."""
    train_roots = {r: c for c, r in train.roots.items()}
    val_roots = {r: c for c, r in val.roots.items()}
    for ours, theirs in ((val_roots, train_roots), (train_roots, val_roots)):
        for real, c in ours.items():
            other = _owner(real, theirs)  # one class folder is (inside) the other, through a link
            if other is not None:
                v, t = (c, other) if ours is val_roots else (other, c)
                raise ValueError(
                    f"{val.root}: validation class folder {v!r} and training class folder {t!r} share photos "
                    f"({real}, through a symlink); validation must be held out. Remove the link"
                )
    shared = [path for real, (_, path) in val.linked.items() if _owner(real, train_roots) or real in train.linked]
    shared += [path for real, (_, path) in train.linked.items() if _owner(real, val_roots)]
    if shared:
        raise ValueError(
            f"{len(shared)} photo(s) are in both {train.root} and {val.root} through symlinks, e.g. {shared[0]}; "
            "validation must be held out. Remove the links"
        )


def skip_bad_collate(batch: list[Any]) -> tuple[Tensor, Tensor, int]:
    """Collates the readable samples; returns (images, targets, number skipped)."""
    good = [b for b in batch if b is not None]
    skipped = len(batch) - len(good)
    if not good:
        return torch.empty(0), torch.empty(0, dtype=torch.long), skipped
    images, targets = default_collate(good)
    return images, targets, skipped


@dataclass
class DataSplit:
    train: Dataset
    val: Dataset
    classes: list[str]
    name: str


def split_folders(root: Path) -> tuple[Path | None, Path | None]:
    """A data folder's ``train/`` and ``val/`` (None where absent); either one being a file is refused."""
    found: list[Path | None] = []
    for name in ("train", "val"):
        path = root / name
        if path.exists() and not path.is_dir():
            raise NotADirectoryError(
                f"{path} is a file, not a folder; a data folder holds train/<class>/* and val/<class>/* (or class "
                "folders directly). Move or rename it"
            )
        found.append(path if path.is_dir() else None)
    return found[0], found[1]


def load_data(
    data: str | os.PathLike[str] | None,
    resolution: int,
    *,
    seed: int = 0,
    val_fraction: float = 0.2,
    train_tf: Any = None,
    eval_tf: Any = None,
) -> DataSplit:
    """The built-in digits (``data=None``) or an ImageFolder tree: ``DIR/train/<class>/*`` and
    ``DIR/val/<class>/*``; without ``val/`` (or with class folders directly under DIR), a seeded
    split of the images. ``train_tf``/``eval_tf`` default to :func:`train_transform` and
    :func:`eval_transform` at ``resolution``."""
    check_seed(seed)
    if data is None:
        return DataSplit(
            DigitsDataset("train", resolution, seed=seed, val_fraction=val_fraction),
            DigitsDataset("val", resolution, seed=seed, val_fraction=val_fraction),
            DigitsDataset.classes,
            "digits",
        )
    from .checkpoint import as_path

    root = as_path(data, "data folder")
    if not root.exists():
        raise FileNotFoundError(f"data folder {str(root)!r} does not exist")
    if not root.is_dir():
        raise NotADirectoryError(f"data {str(root)!r} is a file; pass a folder holding train/<class>/* and val/<class>/*")
    train_dir, val_dir = split_folders(root)
    train_tf = train_tf or train_transform(resolution)
    eval_tf = eval_tf or eval_transform(resolution)
    if val_dir is not None and train_dir is None:
        raise ValueError(
            f"data folder {str(root)!r} has val/ but no train/; put the training images in {root / 'train'}/<class>/ "
            "(or pass a folder of class folders, which is split into train and val)"
        )
    if train_dir is not None:
        train = SafeImageFolder(train_dir, train_tf)
        if val_dir is not None:
            val = SafeImageFolder(val_dir, eval_tf, classes=train.classes)
            _check_disjoint(train, val)
            return DataSplit(train, val, train.classes, str(root))
        base = train_dir
    else:
        base = root
    full_train = SafeImageFolder(base, train_tf)
    full_val = SafeImageFolder(base, eval_tf, classes=full_train.classes)
    from sklearn.model_selection import train_test_split

    idx = list(range(len(full_train)))
    stratify = full_train.targets if min(full_train.targets.count(c) for c in set(full_train.targets)) >= 2 else None
    tr, va = train_test_split(idx, test_size=val_fraction, random_state=seed, stratify=stratify)
    return DataSplit(
        torch.utils.data.Subset(full_train, sorted(tr)),
        torch.utils.data.Subset(full_val, sorted(va)),
        full_train.classes,
        str(root),
    )


def image_batches(
    folder: str | os.PathLike[str],
    config: Any,
    *,
    resolution: int | None = None,
    limit: int = 256,
    batch_size: int = 32,
    seed: int = 0,
) -> list[Tensor]:
    """Up to ``limit`` images from anywhere under ``folder`` (a seeded sample), preprocessed as the
    model whose ``config`` is given expects them (:func:`transforms_for`: its resize, crop, mean
    and std; ``resolution`` overrides its input size) and batched: calibration data for int8, or
    photos to compare two forms of one model on. The config is required so that int8 ranges are
    never calibrated on inputs scaled differently from what the model will see. Unreadable files
    are skipped."""
    import random

    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ValueError(f"calibration image count {limit!r} must be an integer >= 1 (a few hundred is typical)")
    check_seed(seed)
    from .checkpoint import as_path

    root = as_path(folder, "calibration folder")
    if not root.is_dir():
        what = "is a file, not a folder" if root.exists() else "does not exist"
        raise FileNotFoundError(f"calibration folder {str(root)!r} {what}; pass a folder of sample images")
    listing = list_images(root)
    listing.warn(root)
    files = sorted(Path(f) for f in listing.files)  # Path order, as before: the seeded sample stays the same
    random.Random(seed).shuffle(files)
    transform = transforms_for(config, resolution=resolution)
    images: list[Tensor] = []
    skipped: list[str] = []
    for path in files:
        if len(images) >= limit:
            break
        try:
            images.append(transform_image(path, transform))
        except (OSError, ValueError) as exc:
            skipped.append(str(exc))
    if skipped:
        warnings.warn(f"{root}: skipped {len(skipped)} unreadable image(s), e.g. {skipped[0]}", stacklevel=2)
    if not images:
        raise ValueError(f"{root} holds no readable images ({', '.join(IMG_EXTENSIONS)})")
    return [torch.stack(images[i : i + batch_size]) for i in range(0, len(images), batch_size)]
