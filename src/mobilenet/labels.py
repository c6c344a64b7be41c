"""Class names: ImageNet-1k (by WordNet id, in the sorted order Google's models use) and others."""

from __future__ import annotations

from functools import lru_cache
from importlib import resources

__all__ = ["class_names_for", "imagenet_names", "imagenet_wnids"]


@lru_cache(maxsize=1)
def _imagenet_table() -> tuple[tuple[str, str], ...]:
    text = resources.files("mobilenet").joinpath("resources/imagenet_classes.tsv").read_text(encoding="utf-8")
    rows = [line.split("\t", 1) for line in text.splitlines() if line and not line.startswith("#")]
    return tuple((w, n) for w, n in rows)


def imagenet_wnids() -> list[str]:
    """The 1000 ILSVRC-2012 synsets, n01440764 ... n15075141, sorted: class k of a 1000-way model."""
    return [w for w, _ in _imagenet_table()]


def imagenet_names() -> list[str]:
    return [n for _, n in _imagenet_table()]


def class_names_for(num_classes: int, labels: str | None = None, class_names: tuple[str, ...] | None = None) -> list[str]:
    """Names for a model's outputs: its own, ImageNet's (with "background" first for 1001), or indices."""
    if class_names is not None:
        return list(class_names)
    if num_classes == 1001 or labels == "imagenet1001":
        return ["background", *imagenet_names()]
    if num_classes == 1000 or labels == "imagenet1000":
        return imagenet_names()
    if labels == "digits" and num_classes == 10:
        return [str(i) for i in range(10)]
    return [f"class {i}" for i in range(num_classes)]
