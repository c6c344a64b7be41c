"""ImageFolder trees read under the image policy: each photo one label, unreadable ones skipped."""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset, default_collate
from torchvision.datasets.folder import IMG_EXTENSIONS

from .images import ImageListing, list_images, transform_image


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
        from ..checkpoint import as_path

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


def check_disjoint(train: SafeImageFolder, val: SafeImageFolder) -> None:
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
