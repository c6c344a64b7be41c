"""Plots: training curves and the paper's accuracy vs Mult-Adds trade-off (Figures 4 and 5)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["plot_tradeoff", "plot_training"]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: str | os.PathLike[str]) -> Path:
    from .checkpoint import atomic_write

    return atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=120, bbox_inches="tight", format="png"))


def plot_training(rows: Sequence[dict[str, Any]], path: str | os.PathLike[str]) -> Path:
    """Loss and accuracy per epoch from the metrics log."""
    plt = _pyplot()
    epochs = [r["epoch"] for r in rows]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    ax_loss.plot(epochs, [r["train_loss"] for r in rows], "o-", label="train")
    ax_loss.plot(epochs, [r["val_loss"] for r in rows], "o-", label="val")
    ax_loss.set(xlabel="epoch", ylabel="cross-entropy loss", title="Loss")
    ax_acc.plot(epochs, [r["train_acc"] for r in rows], "o-", label="train top-1")
    ax_acc.plot(epochs, [r["val_top1"] for r in rows], "o-", label="val top-1")
    ax_acc.plot(epochs, [r["val_top5"] for r in rows], "--", label="val top-5")
    ax_acc.set(xlabel="epoch", ylabel="accuracy", title="Accuracy", ylim=(0, 1.01))
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend()
    out = _save(fig, path)
    plt.close(fig)
    return out


def plot_tradeoff(
    points: Sequence[dict[str, Any]], path: str | os.PathLike[str], *, y: str = "val_top1", ylabel: str = "val top-1"
) -> Path:
    """Accuracy (or latency) against Mult-Adds on a log axis, one marker per α, labelled by resolution."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 5))
    for alpha in sorted({p["width_mult"] for p in points}, reverse=True):
        pts = sorted((p for p in points if p["width_mult"] == alpha), key=lambda p: p["mult_adds"])
        ax.plot([p["mult_adds"] / 1e6 for p in pts], [p[y] for p in pts], "o-", label=f"α = {alpha:g}")
        for p in pts:
            ax.annotate(str(p["resolution"]), (p["mult_adds"] / 1e6, p[y]), textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.set_xscale("log")
    ax.set(xlabel="Mult-Adds (millions, log scale)", ylabel=ylabel, title=f"MobileNet v1: {ylabel} vs computation")
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    out = _save(fig, path)
    plt.close(fig)
    return out
