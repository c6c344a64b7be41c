"""The α x resolution sweep: Figures 4 and 5 of the paper, accuracy against Mult-Adds."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from .checks import check_out_folder
from .config import TrainConfig
from .run import train

__all__ = ["sweep"]


def sweep(base: TrainConfig, *, widths: list[float] | None = None, resolutions: list[int] | None = None) -> dict[str, Any]:
    """Trains an α x resolution grid (Figures 4 and 5: accuracy against Mult-Adds) into
    ``base.out/a<α>_r<size>``. Every point is checked before the first one trains."""
    if base.weights:
        raise ValueError("a sweep trains each α from scratch; --weights fixes one network (use mobilenet train for it)")
    if base.qat:
        raise ValueError(
            "a sweep trains each α from scratch; --qat fine-tunes a trained network (mobilenet train --weights W --qat)"
        )
    widths = list(widths or [1.0, 0.75, 0.5, 0.25])
    resolutions = list(resolutions or ([32, 48, 64] if base.data is None else [224, 192, 160, 128]))
    for name, values in (("--width-mult", widths), ("--resolution", resolutions)):
        repeated = sorted({v for v in values if values.count(v) > 1})
        if repeated:
            raise ValueError(f"{name} lists {', '.join(map(str, repeated))} more than once; each grid point trains once")
    root = Path(base.out if base.out != "runs/mobilenet" else "runs/sweep")
    points = [replace(base, width_mult=a, resolution=r, out=str(root / f"a{a:g}_r{r}")) for a in widths for r in resolutions]
    for point in points:
        point.check()
        check_out_folder(point)
    results = [{"width_mult": p.width_mult, "resolution": p.resolution, **train(p)} for p in points]
    rows = sorted(results, key=lambda p: p["mult_adds"])
    table = ["| α | resolution | Mult-Adds (M) | params (M) | val top-1 |", "|---|---|---|---|---|"]
    table += [
        f"| {p['width_mult']:g} | {p['resolution']} | {p['mult_adds'] / 1e6:.1f} | {p['params'] / 1e6:.2f} | {p['val_top1']:.4f} |"
        for p in rows
    ]
    from ..checkpoint import atomic_write
    from ..plots import plot_tradeoff

    text = "\n".join(table) + "\n"
    atomic_write(root / "sweep.md", lambda tmp: Path(tmp).write_text(text))
    atomic_write(root / "sweep.json", lambda tmp: Path(tmp).write_text(json.dumps(rows, indent=2) + "\n"))
    plot = plot_tradeoff(rows, root / "sweep.png")
    return {"rows": rows, "table": "\n".join(table), "plot": plot}
