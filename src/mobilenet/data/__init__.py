"""Datasets and transforms: the built-in digits set, ImageFolder trees, and each weights' preprocessing.

A model's config says how its inputs are made (:data:`mobilenet.spec.PREPROCESSES`): Google's
weights were evaluated with TF-slim's inception preprocessing (the central 87.5% of the height and
of the width, resized to S x S, pixels scaled to [-1, 1]); models of our own default to
torchvision's resize-then-centre-crop; timm's MobileNet v1 weights want [-1, 1] too (their
pretrained_cfg's mean and std are 0.5; :mod:`mobilenet.weights.timm`).
:func:`transforms_for` turns a config into its evaluation transform. Training uses random resized
crops with a limited small-crop range (the paper uses less aggressive augmentation than
Inception) and horizontal flips.

The package has a module for each part: :mod:`~mobilenet.data.images` (reading, under the policy
below), :mod:`~mobilenet.data.transforms` (each model's preprocessing), :mod:`~mobilenet.data.digits`
and :mod:`~mobilenet.data.folders` (the data sets), :mod:`~mobilenet.data.splits` (a run's train
and val) and :mod:`~mobilenet.data.calibration` (int8 calibration batches). Every public name is
importable from ``mobilenet.data``.

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

from typing import TYPE_CHECKING

from ..extras import lazy_names

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

#: Where each name lives; a module loads on first use (PEP 562), so reading an image or checking a
#: seed does not import torchvision's datasets.
_HOMES = {
    "image_batches": "calibration",
    "DigitsDataset": "digits",
    "SafeImageFolder": "folders",
    "skip_bad_collate": "folders",
    "MAX_ASPECT_RATIO": "images",
    "MAX_IMAGE_PIXELS": "images",
    "ImageListing": "images",
    "check_image_size": "images",
    "list_images": "images",
    "open_rgb": "images",
    "transform_image": "images",
    "DataSplit": "splits",
    "check_seed": "splits",
    "load_data": "splits",
    "split_folders": "splits",
    "CENTER_CROP": "transforms",
    "CentralCropResize": "transforms",
    "eval_transform": "transforms",
    "train_transform": "transforms",
    "transforms_for": "transforms",
    # Constants the single data.py module had, still importable from here.
    "MEAN": "transforms",
    "STD": "transforms",
    "MIN_CROP_SCALE": "transforms",
    "LimitResize": "transforms",
    "IMG_EXTENSIONS": "images",
    "MAX_SEED": "..spec",
}


__getattr__, __dir__ = lazy_names(__name__, _HOMES)


if TYPE_CHECKING:
    from .calibration import image_batches
    from .digits import DigitsDataset
    from .folders import SafeImageFolder, skip_bad_collate
    from .images import MAX_ASPECT_RATIO, MAX_IMAGE_PIXELS, ImageListing, check_image_size, list_images, open_rgb, transform_image
    from .splits import DataSplit, check_seed, load_data, split_folders
    from .transforms import CENTER_CROP, CentralCropResize, eval_transform, train_transform, transforms_for
