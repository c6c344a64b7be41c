"""Reading images, one policy for every reader (training folders, ``eval``, ``predict``, int8
calibration): :func:`open_rgb` decodes one file, :func:`list_images` walks a folder. The policy is
set out in :mod:`mobilenet.data`'s docstring."""

from __future__ import annotations

import os
import stat
import warnings
from dataclasses import dataclass
from typing import Any

from PIL import Image, UnidentifiedImageError
from torchvision.datasets.folder import IMG_EXTENSIONS

#: Most pixels an image may have, decoded or resized: PIL's own decompression-bomb limit
#: (``Image.MAX_IMAGE_PIXELS``'s default), which PIL enforces only at twice this and warns about below.
MAX_IMAGE_PIXELS = 89_478_485
#: Longest side over shortest side. Resizing the short side to the model's size stretches the long
#: side by the same factor, so an extreme ratio turns a tiny file into gigabytes; 100:1 is far beyond
#: any photo (a 360-degree panorama is about 8:1).
MAX_ASPECT_RATIO = 100


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


_DECODE_ERRORS = (OSError, UnidentifiedImageError, SyntaxError, ValueError, Image.DecompressionBombError)


def open_rgb(path: str | os.PathLike[str]) -> Image.Image:
    """Decodes an image file to 8-bit RGB, or raises ``ValueError`` naming the file.

    Only a regular file is opened (a FIFO named ``x.jpg`` would block), and its size is checked
    from the header before any pixel is decoded (:func:`check_image_size`). 16-bit images (PNG,
    TIFF) are scaled to 8 bits, as torchvision's ``decode_png`` and ``ToDtype(torch.uint8,
    scale=True)`` would; PIL's own ``convert("RGB")`` clips them to white.
    """
    from ..checkpoint import as_path

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
