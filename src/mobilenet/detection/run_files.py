"""What a detector's training run writes to its ``--out`` folder, and how a stopped run is picked up.

After each epoch: ``metrics.jsonl`` (every row so far), ``last.safetensors``, ``best.safetensors``
when the epoch's val ``map`` is the best yet, and ``last_state.pt`` last (the model, optimizer, step,
random states and rows), from which ``--resume`` continues as if the run had not stopped. At the
end, ``summary.json``. Every file is written atomically.
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from ..checkpoint import atomic_write
from .model import SSDMobileNetV1
from .weights import save_detector

__all__ = ["RunFiles", "run_summary"]


class RunFiles:
    """What a run writes to ``out`` after each epoch: ``metrics.jsonl`` (all rows so far),
    ``last.safetensors``, ``best.safetensors`` when the epoch's val ``map`` is the best yet, and
    ``last_state.pt`` (written last: the model, optimizer, step, random states and rows) from
    which ``resume`` continues the run as if it had not stopped."""

    def __init__(self, out: Path, recipe: Any, identity: dict[str, Any]) -> None:
        self.out, self.recipe, self.identity = out, recipe, identity
        self.lines: list[str] = []
        self.best: dict[str, Any] = {"map": -1.0}

    def record(self, row: dict[str, Any], model: SSDMobileNetV1, optimizer: Any, step: int, generator: Any) -> None:
        self.lines.append(json.dumps(row))
        text = "\n".join(self.lines) + "\n"
        atomic_write(self.out / "metrics.jsonl", lambda tmp, text=text: Path(tmp).write_text(text))
        meta = {
            "epoch": str(row["epoch"]),
            "val_map": f"{row['map']:.5f}",
            "val_map_50": f"{row['map_50']:.5f}",
            "recipe": self.recipe.name,
        }
        save_detector(self.out / "last.safetensors", model, **meta)
        if row["map"] > self.best["map"]:
            self.best = row
            save_detector(self.out / "best.safetensors", model, **meta)
        state = {
            "epoch": row["epoch"],
            "step": step,
            "seconds": row["seconds"],
            "model": {k: v.detach().clone() for k, v in model.state_dict().items()},
            "optimizer": optimizer.state_dict(),
            "lines": list(self.lines),
            "best": json.dumps(self.best),
            "run": json.dumps(self.identity, sort_keys=True),
            "torch_rng": torch.get_rng_state(),
            "loader_rng": generator.get_state(),
            "python_rng": random.getstate(),
        }
        atomic_write(self.out / "last_state.pt", lambda tmp: torch.save(state, tmp))

    def resume(self, model: SSDMobileNetV1, optimizer: Any, generator: Any, *, write: bool = True) -> tuple[int, int, float]:
        """Restores the run from ``last_state.pt``; returns (the next epoch, the step, seconds so far).
        ``write=False`` (DDP's other processes) restores without touching the files or printing."""
        from ..checkpoint import load_state

        path = self.out / "last_state.pt"
        state = load_state(path)
        saved = json.loads(state["run"])
        for key, now in self.identity.items():
            if saved.get(key) != now:
                raise ValueError(
                    f"--resume: the run in {self.out} was started with {key}={saved.get(key)!r}, now {key}={now!r}; "
                    "resume with the settings it was started with, or pass --overwrite to start afresh"
                )
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["torch_rng"])
        generator.set_state(state["loader_rng"])
        version, internal, gauss = state["python_rng"]
        random.setstate((version, tuple(internal), gauss))
        self.lines, self.best = list(state["lines"]), json.loads(state["best"])
        if not write:
            return int(state["epoch"]) + 1, int(state["step"]), float(state["seconds"])
        text = "\n".join(self.lines) + "\n"  # rows of an epoch that ended after the state was saved are dropped
        atomic_write(self.out / "metrics.jsonl", lambda tmp: Path(tmp).write_text(text))
        print(f"resumed from {path} after epoch {state['epoch']}", flush=True)
        return int(state["epoch"]) + 1, int(state["step"]), float(state["seconds"])


def run_summary(
    recipe: Any,
    data: Any,
    weights: Any,
    val_name: str,
    train_photos: int,
    names: list[str],
    files: RunFiles,
    out: Path,
    seconds: float,
) -> dict[str, Any]:
    """What ``summary.json`` says of a finished run: its settings, its best epoch and its last."""
    best = files.best
    return {
        "task": "detection",
        "recipe": asdict(recipe),
        "data": str(data),
        "weights": str(weights[0] if isinstance(weights, (list, tuple)) else weights),
        "validation": val_name,
        "train_photos": train_photos,
        "classes": names[1:],
        "best_epoch": best["epoch"],
        "map": best["map"],
        "map_50": best["map_50"],
        "map_75": best["map_75"],
        "last": json.loads(files.lines[-1]),
        "seconds": round(seconds, 1),
        "best_weights": str(out / "best.safetensors"),
    }
