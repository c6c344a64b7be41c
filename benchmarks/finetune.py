"""Transfer learning on the flowers set: Google's four TF Lite models x {linear probe, full fine-tune}.

Each cell runs the library's ``train`` with the recipe it picks by default (the README's command),
and records the best val top-1 and the wall time. Prints a markdown table to paste into
RESULTS.md; ``--json FILE`` also writes the rows.

    python benchmarks/finetune.py [--epochs 5] [--models 1.0-224 0.5-160] [--modes probe finetune] [--bn frozen recalibrate]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from _common import FLOWERS, TFLITE, cpu_name

from mobilenet.train import TrainConfig, train

MODELS = {
    "1.0-224": [
        str(TFLITE / "mobilenet_v1_1.0_224_quant_embedding_extractor.tflite"),
        str(TFLITE / "mobilenet_v1_1.0_224_quant_head_layers.tflite"),
    ],
    "0.75-192": str(TFLITE / "mobilenet_v1_0.75_192_quant.tflite"),
    "0.5-160": str(TFLITE / "mobilenet_v1_0.5_160_quant.tflite"),
    "0.25-128": str(TFLITE / "mobilenet_v1_0.25_128_quant.tflite"),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--modes", nargs="+", default=["probe", "finetune"], choices=["probe", "finetune"])
    parser.add_argument("--bn", nargs="+", default=[None], help="fine-tune BN modes to compare (default: the recipe's)")
    parser.add_argument("--epochs", type=int, help="default: the recipe's")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="also write the rows here")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            weights = tuple(MODELS[name]) if isinstance(MODELS[name], list) else MODELS[name]
            for mode in args.modes:
                for bn in args.bn if mode == "finetune" else [None]:
                    cfg = TrainConfig(
                        data=str(FLOWERS),
                        weights=weights,
                        freeze_backbone=mode == "probe",
                        epochs=args.epochs,
                        bn=bn,
                        seed=args.seed,
                        out=str(Path(tmp) / f"{name}-{mode}-{bn}"),
                        progress=False,
                    )
                    t0 = time.perf_counter()
                    result = train(cfg)
                    rows.append(
                        {
                            "model": name,
                            "mode": mode,
                            "bn": bn or "recipe",
                            "val_top1": result["best_val_top1"],
                            "final_val_top1": result["val_top1"],
                            "epochs": result["epochs"],
                            "wall_s": time.perf_counter() - t0,
                        }
                    )
                    print(json.dumps(rows[-1]), flush=True)
    print(f"\n{cpu_name()}, {time.strftime('%Y-%m-%d')}, torch threads default\n")
    print("| model | mode | BN | epochs | best val top-1 | last val top-1 | wall (s) |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['model']} | {r['mode']} | {r['bn']} | {r['epochs']} | {r['val_top1']:.3f} | {r['final_val_top1']:.3f} | {r['wall_s']:.0f} |"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
