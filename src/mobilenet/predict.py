"""Top-k predictions for image files, with the weights' own preprocessing.

Images are decoded one at a time and run in batches (:data:`BATCH_SIZE` for a PyTorch model; an
exported model, whose graph may take one image, runs them one by one), and results come out a batch
at a time (:func:`iter_predictions`), so a long list shows progress instead of silence. An image that
cannot be read (missing, not an image, absurdly large) is skipped with a one-line warning and an
``error`` entry; only when no image at all can be read is that an error. Outputs that are NaN are
refused: they come from the weights, and a "nan%" table would look like an answer.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Iterator
from typing import Any

import torch
from torch import Tensor, nn

from .checkpoint import as_path
from .data import open_rgb, transform_image, transforms_for
from .labels import class_names_for
from .spec import check_crop_pct

__all__ = ["BATCH_SIZE", "SMALL_MODEL_MULT_ADDS", "iter_predictions", "load_image", "predict", "predict_threads"]

#: Kept for callers of the old name: decoding lives in :func:`mobilenet.data.open_rgb`.
load_image = open_rgb
#: Images per forward pass of a PyTorch model: enough to amortize a call's fixed cost, few enough
#: that the first results appear at once.
BATCH_SIZE = 16
#: Below this many Mult-Adds per image, a PyTorch model runs on one CPU thread (see :func:`predict_threads`).
SMALL_MODEL_MULT_ADDS = 100_000_000


def predict_threads(model: Any) -> int | None:
    """The CPU threads :func:`iter_predictions` runs a PyTorch model with; None leaves PyTorch's choice.

    Measured on a 2-core machine with a load average of 5 (other jobs running): α=0.25 at 32 px
    took 2.5 ms/image on one thread and 104 ms/image on two, batched by 16 (17 vs 162 ms unbatched),
    and even 1.0-224 took 68 vs 153 ms/image. OpenMP's threads wait for each other at every layer,
    and on a busy machine one of them is always waiting for a core. So one thread is used for a
    small model (under :data:`SMALL_MODEL_MULT_ADDS` per image, where there is little work to share)
    and whenever the load average is at least the cores we may use. A caller's ``OMP_NUM_THREADS``
    is left alone, and ``iter_predictions(threads=...)`` overrides this choice.
    """
    if not isinstance(model, nn.Module) or os.environ.get("OMP_NUM_THREADS") or torch.get_num_threads() == 1:
        return None
    from .cost import model_cost

    try:
        small = model_cost(model.config).mult_adds < SMALL_MODEL_MULT_ADDS  # type: ignore[attr-defined]
    except (AttributeError, ValueError, TypeError):
        small = False
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    busy = hasattr(os, "getloadavg") and os.getloadavg()[0] >= cores
    return 1 if small or busy else None


def _names_for_outputs(config: Any, outputs: int) -> list[str]:
    """The labels of a model's ``outputs`` scores; class indices, with a warning, when its config
    names a different number of classes (metadata that claims ImageNet on a 10-class model)."""
    names = class_names_for(config.num_classes, config.labels, config.class_names)
    if len(names) == outputs:
        return names
    warnings.warn(
        f"the model gives {outputs} scores per image but its metadata names {len(names)} classes "
        f"(num_classes={config.num_classes}, labels={config.labels!r}); showing class indices instead of labels",
        stacklevel=3,
    )
    return [f"class {i}" for i in range(outputs)]


class _Batches:
    """The images read and not yet run (a tensor, or the error that kept one from being read), and
    the forward pass that turns them into results: a batch of up to ``per_call`` at a time."""

    def __init__(self, model: Any, config: Any, topk: int, threads: int | None) -> None:
        self.model, self.config, self.topk, self.threads = model, config, topk, threads
        self.names: list[str] | None = None
        self.pending: list[tuple[str, Tensor | Exception]] = []

    def ready(self) -> int:
        """How many read images wait for the model."""
        return sum(isinstance(x, Tensor) for _, x in self.pending)

    def _probabilities(self) -> Tensor:
        """The softmax of the waiting images' outputs (none: an empty tensor); NaN outputs are refused."""
        tensors = [x for _, x in self.pending if isinstance(x, Tensor)]
        if not tensors:
            return torch.empty(0)
        before = torch.get_num_threads()
        if self.threads is not None:
            torch.set_num_threads(self.threads)
        try:
            with torch.inference_mode():
                logits = self.model(torch.stack(tensors)).float()
        finally:
            torch.set_num_threads(before)  # the caller's setting, between batches too
        if not torch.isfinite(logits).all():
            first = next(p for p, x in self.pending if isinstance(x, Tensor))
            raise ValueError(
                f"the model's outputs for {first} are NaN or infinite: these weights produce NaN (a training run "
                "that diverged, or a damaged file); there is nothing to predict with. Use other weights"
            )
        return logits.softmax(1)

    def run(self) -> Iterator[dict[str, Any]]:
        """The waiting images' results, in order (an ``error`` entry for each unreadable one)."""
        probs = self._probabilities()
        if len(probs) and self.names is None:
            self.names = _names_for_outputs(self.config, probs.shape[1])
        row = 0
        for path, x in self.pending:
            if not isinstance(x, Tensor):
                yield {"image": path, "error": str(x)}
                continue
            top = probs[row].topk(min(self.topk, probs.shape[1]))
            row += 1
            yield {
                "image": path,
                "predictions": [
                    {"index": int(i), "label": self.names[int(i)], "probability": float(p)}  # type: ignore[index]
                    for p, i in zip(top.values, top.indices)
                ],
            }
        self.pending.clear()


def _stream(
    images: Iterable[str | os.PathLike[str]], transform: Any, per_call: int, batches: _Batches
) -> Iterator[dict[str, Any]]:
    """Reads the images one at a time and runs them ``per_call`` at a time, yielding as it goes."""
    # Failures before the first success are held back: when nothing can be read, the error says
    # so once instead of a warning and an error about the same file.
    held: list[tuple[str, Exception]] = []
    read = 0
    for image in images:
        path = str(as_path(image, "image"))
        try:
            batches.pending.append((path, transform_image(path, transform)))
            read += 1
        except (OSError, ValueError) as exc:
            batches.pending.append((path, exc))
            if read:
                warnings.warn(f"skipping {exc}", stacklevel=2)
            else:
                held.append((path, exc))
        if read and held:
            for _, exc in held:
                warnings.warn(f"skipping {exc}", stacklevel=2)
            held.clear()
        if batches.ready() >= per_call:
            yield from batches.run()
    if not read:
        if len(held) == 1:
            raise held[0][1]
        if held:
            raise ValueError(f"none of the {len(held)} images could be read; the first: {held[0][1]}")
        raise ValueError("no images given")
    yield from batches.run()


def iter_predictions(
    model: nn.Module,
    images: Iterable[str | os.PathLike[str]] | str | os.PathLike[str],
    topk: int = 5,
    crop: float | None = None,
    *,
    preprocess: str | None = None,
    batch_size: int = BATCH_SIZE,
    threads: int | None = None,
) -> Iterator[dict[str, Any]]:
    """One result per image, in order, yielded a batch at a time: ``{image, predictions: [{index,
    label, probability}]}``, or ``{image, error}`` for an image that could not be read (also
    warned about). Raises when no image can be read, and when the model's outputs are NaN.

    The image is prepared as the model's config says (``preprocess``, ``crop_pct``, mean and std);
    ``crop`` and ``preprocess`` override it. For a 1001-class model, index 0 is "background":
    indices are the model's own, and background is shown only when it is among the top k by its
    own probability, like any class. ``threads``: CPU threads for a PyTorch model (default
    :func:`predict_threads`).
    """
    if isinstance(topk, bool) or not isinstance(topk, int) or topk < 1:
        raise ValueError(f"topk={topk!r} must be an integer >= 1 (how many labels to show per image)")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size={batch_size!r} must be an integer >= 1")
    if crop is not None:
        check_crop_pct(crop, "crop")
    if isinstance(images, (str, bytes, os.PathLike)):
        images = [images]  # one path, not its characters
    config = model.config  # type: ignore[attr-defined]
    if config.num_classes < 1:
        raise ValueError(
            "this model has no classifier (num_classes=0: it returns features); predict needs class scores. "
            "Load weights with a classifier, or fine-tune one with mobilenet train --weights ..."
        )
    transform = transforms_for(config, preprocess=preprocess, crop=crop)
    # An exported graph may take a batch of exactly one; our own network takes any.
    per_call = batch_size if isinstance(model, nn.Module) else 1
    model.eval()
    if threads is None:
        threads = predict_threads(model)
    elif isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads={threads!r} must be an integer >= 1")
    # The arguments above are checked now, at the call; the images are read as the results are taken.
    return _stream(images, transform, per_call, _Batches(model, config, topk, threads))


def predict(
    model: nn.Module,
    images: Iterable[str | os.PathLike[str]] | str | os.PathLike[str],
    topk: int = 5,
    crop: float | None = None,
    *,
    preprocess: str | None = None,
    batch_size: int = BATCH_SIZE,
    threads: int | None = None,
) -> list[dict[str, Any]]:
    """[{image, predictions: [{index, label, probability}]}] for each image file (``{image, error}``
    for one that could not be read): :func:`iter_predictions`, collected."""
    return list(iter_predictions(model, images, topk, crop, preprocess=preprocess, batch_size=batch_size, threads=threads))
