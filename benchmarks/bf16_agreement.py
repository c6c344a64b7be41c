"""How often bf16 inference picks the same top-1 as fp32, and where the rounding that moves it sits.

On real photos (the flowers set, 600, plus the reference photos, 8) with Google's weights (and
optionally any other weights, e.g. a flowers fine-tune), each variant's top-1 is compared with
the fp32 model's:

- ``bf16 backend``: ``mobilenet.deploy.optimize(model, "bf16")`` as shipped (torch.compile,
  bf16 weights and activations, fp32 accumulation in oneDNN);
- the same arithmetic emulated layer by layer in fp32, with bf16 rounding switched on for the
  weights only, the activations only, everything, or everything except the first conv and the
  classifier;
- for each, the fp32 model's top-1 minus top-2 probability on the photos where the two disagree
  (how close to a tie they were).

    python benchmarks/bf16_agreement.py [--weights W ...] [--limit N]
"""

from __future__ import annotations

import argparse
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F
from _common import IMAGES, MODELS, REFERENCE, cpu_name

from mobilenet import mobilenet_v1
from mobilenet.data import image_batches
from mobilenet.deploy import optimize
from mobilenet.model import fold_batchnorm
from mobilenet.quantize import conv_units

GOOGLE = {f"google {name.replace('_', '-')}": MODELS[name] for name in ("1.0_224", "0.25_128")}


def _bf16(t: torch.Tensor) -> torch.Tensor:
    return t.to(torch.bfloat16).float()


@torch.inference_mode()
def emulate(
    folded: torch.nn.Module, x: torch.Tensor, *, weights: bool, activations: bool, keep_ends_fp32: bool = False
) -> torch.Tensor:
    """The BN-folded model in fp32 with bf16 rounding where asked: each conv's weight and bias,
    and each layer's input and output (the tensors a bf16 runtime stores)."""
    for i, (_, unit) in enumerate(conv_units(folded)):
        exact = keep_ends_fp32 and i == 0
        conv = unit.conv
        w, b = conv.weight, conv.bias
        if weights and not exact:
            w, b = _bf16(w), _bf16(b)
        if activations and not exact:
            x = _bf16(x)
        pad = unit._modules.get("pad")
        if pad is not None:
            x = pad(x)
        x = unit.act(F.conv2d(x, w, b, conv.stride, conv.padding, conv.dilation, conv.groups))
    x = torch.flatten(folded.global_pool(x), 1)
    fc = folded.classifier
    w, b = fc.weight, fc.bias
    exact = keep_ends_fp32
    if weights and not exact:
        w, b = _bf16(w), _bf16(b)
    if activations and not exact:
        x = _bf16(x)
    return F.linear(x, w, b)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", nargs="+", action="append", default=[], help="more weights to study (repeatable)")
    p.add_argument("--limit", type=int, default=10_000, help="photos per folder at most")
    p.add_argument("--no-google", action="store_true", help="only the --weights given")
    args = p.parse_args()
    torch.set_num_threads(2)
    print(f"CPU: {cpu_name()}; torch {torch.__version__}")
    studies = {} if args.no_google else dict(GOOGLE)
    for files in args.weights:
        studies[" + ".join("/".join(Path(f).parts[-2:]) for f in files)] = files
    print("| model | variant | agrees with fp32 | disagreements | fp32 top-1 - top-2 there (max) |")
    print("|---|---|---|---|---|")
    for name, files in studies.items():
        model = mobilenet_v1(weights=[str(f) for f in files] if len(files) > 1 else str(files[0])).eval()
        photos = image_batches(REFERENCE.parent / "data" / "flowers", model.config, limit=args.limit)
        photos += image_batches(IMAGES, model.config, limit=args.limit)
        x = torch.cat(photos)
        folded = fold_batchnorm(model)
        with torch.inference_mode():
            ref = torch.cat([folded(b) for b in x.split(64)])
        probs = ref.softmax(1).topk(2, dim=1).values
        margin = probs[:, 0] - probs[:, 1]
        backend = optimize(model, "bf16")
        variants = {
            "bf16 backend (compiled)": backend,
            "bf16 weights, fp32 activations": partial(emulate, folded, weights=True, activations=False),
            "fp32 weights, bf16 activations": partial(emulate, folded, weights=False, activations=True),
            "bf16 weights and activations": partial(emulate, folded, weights=True, activations=True),
            "bf16, first conv and classifier fp32": partial(emulate, folded, weights=True, activations=True, keep_ends_fp32=True),
        }
        for label, run in variants.items():
            out = torch.cat([run(b) for b in x.split(64)])
            differ = out.argmax(1) != ref.argmax(1)
            worst = f"{float(margin[differ].max()):.3f}" if differ.any() else "-"
            print(
                f"| {name} ({len(x)} photos) | {label} | {1 - float(differ.float().mean()):.1%} | {int(differ.sum())} | {worst} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
