"""Agreement of our float import of Google's quantized MobileNets with Google's LiteRT runtime.

For each of the four reference models: the eight reference photos plus N varied inputs (crops,
flips, rotations, colour changes, blends of the photos). Prints top-1 agreement overall and where
LiteRT's leader is clear (margin >= 0.1), and the largest and median probability difference.

    python benchmarks/litert_agreement.py [--count 200]
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from _common import MODELS, LiteRT, photos, resized, varied_inputs

from mobilenet import mobilenet_v1


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--count", type=int, default=200)
    args = p.parse_args()
    torch.set_num_threads(2)
    for name, files in MODELS.items():
        model = mobilenet_v1(weights=[str(f) for f in files]).eval()
        size = model.config.resolution
        runtime = LiteRT(files)
        images = [resized(p, size) for p in photos()] + varied_inputs(size, args.count)
        agree = clear = clear_agree = 0
        diffs = []
        for im in images:
            ref = runtime(im)
            with torch.no_grad():
                x = (torch.from_numpy(im.copy()).permute(2, 0, 1)[None].float() - 128) / 128
                ours = model(x).softmax(1)[0].double().numpy()
            lead = np.sort(ref)[-2:]
            is_clear = lead[1] - lead[0] >= 0.1
            same = ours.argmax() == ref.argmax()
            agree += same
            clear += is_clear
            clear_agree += same and is_clear
            diffs.append(np.abs(ours - ref).max())
        print(
            f"{name}: top-1 agree {agree}/{len(images)}, where LiteRT is clear {clear_agree}/{clear}; "
            f"probability difference max {max(diffs):.4f}, median {np.median(diffs):.4f}"
        )


if __name__ == "__main__":
    main()
