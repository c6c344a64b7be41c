"""The ``mobilenet`` command: a thin argparse front over the library."""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

__all__ = ["main"]

_COMMANDS: dict[str, Callable[[argparse.Namespace], int | None]] = {}


def _command(name: str) -> Callable[[Callable[[argparse.Namespace], int | None]], Callable[[argparse.Namespace], int | None]]:
    def register(fn: Callable[[argparse.Namespace], int | None]) -> Callable[[argparse.Namespace], int | None]:
        _COMMANDS[name] = fn
        return fn

    return register


def _print_json(obj: Any) -> None:
    json.dump(obj, sys.stdout, indent=2)
    sys.stdout.write("\n")


def _int_at_least(minimum: int, why: str) -> Callable[[str], int]:
    """An argparse type: a whole number >= ``minimum``, refused at parse time with the flag named
    (argparse prefixes "argument --flag:") and ``why``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number ({why})") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{value} is too small: it must be at least {minimum} ({why})")
        return value

    parse.__name__ = f"integer >= {minimum}"
    return parse


def _finite_float(minimum: float, why: str, *, inclusive: bool = True) -> Callable[[str], float]:
    """An argparse type: a finite number >= ``minimum`` (> with ``inclusive=False``)."""

    def parse(text: str) -> float:
        import math

        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number ({why})") from None
        if not math.isfinite(value) or value < minimum or (value == minimum and not inclusive):
            bound = f"at least {minimum:g}" if inclusive else f"above {minimum:g}"
            raise argparse.ArgumentTypeError(f"{text} is not allowed: it must be a finite number {bound} ({why})")
        return value

    parse.__name__ = "number"
    return parse


def _folder(text: str) -> str:
    """An argparse type: an existing folder (a file or a missing path is refused at parse time)."""
    path = Path(text)
    if path.is_file():
        raise argparse.ArgumentTypeError(f"{text!r} is a file, not a folder; pass the folder that holds the images")
    if not path.exists():
        raise argparse.ArgumentTypeError(f"folder {text!r} does not exist")
    return text


def _resolution_type() -> Callable[[str], int]:
    from .spec import MIN_RESOLUTION

    return _int_at_least(MIN_RESOLUTION, "input size in px: the net downsamples 32x; the paper uses 224, 192, 160, 128")


_WIDTH = _finite_float(0.0, "the width multiplier α, e.g. 1, 0.75, 0.5, 0.25", inclusive=False)
_CLASSES = _int_at_least(1, "number of output classes")
_BATCH = _int_at_least(1, "images per batch")
_THREADS = _int_at_least(1, "CPU threads")
_CALIBRATION_IMAGES = _int_at_least(1, "how many calibration images int8 uses; a few hundred is typical")


def _add_arch_args(p: argparse.ArgumentParser, *, defaults: bool = True) -> None:
    p.add_argument("--width-mult", "-a", type=_WIDTH, default=1.0 if defaults else None, help="width multiplier α (default 1.0)")
    p.add_argument(
        "--resolution",
        "-r",
        type=_resolution_type(),
        default=224 if defaults else None,
        help="input size, the resolution multiplier ρ·224 (default 224)",
    )
    p.add_argument(
        "--variant",
        choices=["separable", "conv", "shallow"],
        default="separable" if defaults else None,
        help="separable = the paper's net; conv = Table 4's Conv MobileNet; shallow = Table 5's",
    )


@_command("cost")
def _cost(args: argparse.Namespace) -> None:
    from .cost import model_cost

    report = model_cost(
        width_mult=args.width_mult, resolution=args.resolution, num_classes=args.num_classes, variant=args.variant
    )
    if args.json:
        _print_json(report.to_dict())
    else:
        print(report.format_table(per_layer=args.per_layer))


@_command("paper")
def _paper(args: argparse.Namespace) -> int:
    from .paper import compare, format_comparison

    rows = compare()
    if args.json:
        _print_json([r.to_dict() for r in rows])
    else:
        print(format_comparison(rows))
    return 0 if all(r.status != "DISAGREES" for r in rows) else 1


def _given(args: argparse.Namespace, names: Any) -> dict[str, Any]:
    """The TrainConfig values the user typed: the CLI passes only those, the recipe fills the rest."""
    return {name: getattr(args, name) for name in names if hasattr(args, name)}


@_command("train")
def _train(args: argparse.Namespace) -> None:
    from dataclasses import fields

    from .train import TrainConfig, train

    train(TrainConfig(**_given(args, [f.name for f in fields(TrainConfig)])))


@_command("sweep")
def _sweep(args: argparse.Namespace) -> None:
    from dataclasses import fields

    from .train import TrainConfig, sweep

    given = _given(args, [f.name for f in fields(TrainConfig)])
    widths, resolutions = given.pop("width_mult", None), given.pop("resolution", None)
    result = sweep(TrainConfig(**given), widths=widths, resolutions=resolutions)
    print(result["table"])
    print(f"plot: {result['plot']}")


@_command("eval")
def _eval(args: argparse.Namespace) -> None:
    from .evaluate import evaluate, evaluation_data

    model = _inference_model(args.weights, args.runtime)
    loader, label_offset, classes = evaluation_data(
        model, args.data, batch_size=args.batch_size, workers=args.workers, preprocess=args.preprocess
    )
    result = evaluate(model, loader, num_classes=len(classes), label_offset=label_offset)
    result["classes"] = classes
    if args.json:
        if not args.per_class:
            result.pop("confusion")
        _print_json(result)
        return
    print(
        f"{' + '.join(args.weights)}: top-1 {result['top1']:.4f}  top-5 {result['top5']:.4f}  loss {result['loss']:.4f}  on {result['images']} images"
    )
    if result["skipped"]:
        print(f"skipped {result['skipped']} unreadable image(s)")
    if args.per_class:
        confusion = result["confusion"]
        # Only the classes the data holds: an ImageNet model has 1000, most absent from a small set.
        present = [i for i, row in enumerate(confusion) if sum(row)]
        for i in present:
            print(f"  {result['per_class_accuracy'][i]:.4f}  {classes[i]}  ({sum(confusion[i])} images)")
        if len(classes) <= 50:
            print("confusion matrix (rows: true class, columns: predicted):")
            for row in confusion:
                print("  " + " ".join(f"{v:4d}" for v in row))


def _weights_arg(values: list[str]) -> Any:
    return values[0] if len(values) == 1 else values


def _inference_model(values: list[str], runtime: str = "torch") -> Any:
    """Weights for predict/eval: anything load_weights reads, an exported .onnx (fp32 or int8), a
    .tflite or .pte file we exported (run in LiteRT / ExecuTorch), or with ``runtime="litert"``
    any .tflite (Google's too) in LiteRT. Someone else's .tflite otherwise loads as weights."""
    from .weights.loader import check_model_file

    for value in values:  # a local file is checked for what it is before any runtime parses it
        if Path(value).suffix or os.sep in value or Path(value).exists():
            check_model_file(value)
    suffixes = {Path(v).suffix.lower() for v in values}
    if runtime == "litert":
        if suffixes != {".tflite"}:
            raise ValueError(f"--runtime litert runs .tflite files; got {' '.join(values)}")
        from .litert import LiteRTModel

        return LiteRTModel(values)
    if len(values) == 1 and suffixes == {".onnx"}:
        from .deploy import ExportedModel

        return ExportedModel(values[0])
    if len(values) == 1 and suffixes == {".pte"}:
        from .pte import ExecuTorchModel

        return ExecuTorchModel(values[0])
    if len(values) == 1 and suffixes == {".tflite"}:
        import importlib.util

        if importlib.util.find_spec("ai_edge_litert") is not None:
            from .litert import LiteRTModel, tflite_config

            if tflite_config(values[0]) is not None:  # ours: it says how to run it
                return LiteRTModel(values[0])
    from .weights import load_weights

    return load_weights(_weights_arg(values))


@_command("predict")
def _predict(args: argparse.Namespace) -> None:
    from .predict import predict

    model = _inference_model(args.weights, args.runtime)
    results = predict(model, args.images, topk=args.topk, crop=args.crop, preprocess=args.preprocess)
    if args.json:
        _print_json(results)
        return
    for r in results:
        print(r["image"])
        for p in r["predictions"]:
            print(f"  {p['probability']:7.2%}  {p['index']:4d}  {p['label']}")


@_command("convert")
def _convert(args: argparse.Namespace) -> None:
    from .checkpoint import save_weights
    from .export import output_path
    from .weights import load_weights

    out = _noted(output_path(args.output, (".safetensors",), ".safetensors", "convert"))
    sources = [args.source, *([args.source2] if args.source2 else [])]
    model = load_weights(_weights_arg(sources))
    out = save_weights(out, model, source=" + ".join(Path(s).name for s in sources))
    c = model.config
    print(
        f"wrote {out}: MobileNet v1 α={c.width_mult:g}, {c.resolution}px, {c.num_classes} classes, {c.activation}, padding={c.padding}"
    )


def _model_for(args: argparse.Namespace, width_mult: float | None = None, resolution: int | None = None) -> Any:
    """The model a deploy command works on: the weights given, or a random init of the asked shape."""
    from .builder import mobilenet_v1

    if args.weights:
        from .weights import load_weights

        model = load_weights(_weights_arg(args.weights)).eval()
        # The weights fix α and the classes; a flag that says otherwise is a mistake, not a request
        # (mobilenet_v1(weights=..., width_mult=...) refuses it too). A resolution is an input size:
        # the net is fully convolutional, so any size >= 32 runs the same weights.
        c = model.config
        for flag, given, have in (("--width-mult", width_mult, c.width_mult), ("--num-classes", args.num_classes, c.num_classes)):
            if given is not None and given != have:
                raise ValueError(
                    f"{flag} {given:g} contradicts the weights {' + '.join(args.weights)}, which have {have:g}; "
                    f"drop {flag} (the weights fix it) or pass other weights"
                )
        return model
    from .deploy import settle_batchnorm

    model = mobilenet_v1(
        width_mult=width_mult or 1.0,
        resolution=resolution or 224,
        num_classes=args.num_classes or 1000,
        activation="relu6",
        padding="tf",
    )
    return settle_batchnorm(model, resolution or 224).eval()


def _calibration(args: argparse.Namespace, config: Any, resolution: int) -> list[Any]:
    import torch

    from .data import DigitsDataset, image_batches

    if args.calibration:
        return image_batches(args.calibration, resolution, limit=args.calibration_images)
    if config is not None and config.labels == "digits" and config.num_classes == 10:
        digits = DigitsDataset("train", resolution, augment=False)
        images = torch.stack([digits[i][0] for i in range(min(args.calibration_images, len(digits)))])
        return list(images.split(32))
    raise ValueError(
        "int8 needs calibration images like the real inputs: pass --calibration DIR (any folder of images; "
        f"{args.calibration_images} are used)"
    )


def _noted(checked: tuple[Path, str | None]) -> Path:
    """The output path from :func:`mobilenet.export.output_path`, its note (a suffix added) on stderr."""
    path, note = checked
    if note:
        print(f"note: {note}", file=sys.stderr)
    return path


def _stored_ranges(args: argparse.Namespace) -> tuple[dict[str, tuple[float, int]], str] | None:
    """int8 uses the ranges the weights carry (Google's quantized files, a --qat run) unless the
    user asks to calibrate."""
    if not args.weights or args.calibration:
        return None
    from .export import stored_activation_ranges

    return stored_activation_ranges(w for w in args.weights if Path(w).exists())


@_command("export")
def _export(args: argparse.Namespace) -> None:
    import torch

    from .export import DEFAULT_SUFFIX, export_model, export_output_path

    out = None
    if args.output:  # checked before any work: the format decides the file kind, the suffix must agree
        out = _noted(export_output_path(args.output, args.format))
    model = _model_for(args, args.width_mult, args.resolution)
    config = model.config
    resolution = args.resolution or config.resolution
    if out is None:
        stem = Path(args.weights[0]).stem if args.weights else f"mobilenet_v1_{config.width_mult:g}_{resolution}"
        out = Path(stem + DEFAULT_SUFFIX[args.format])
    calibration, ranges = None, None
    if args.format == "pte-int8":  # the PT2E flow calibrates; a TF Lite file's ranges do not carry over
        calibration = _calibration(args, config, resolution)
    elif args.format in ("onnx-int8", "tflite-int8"):
        stored = _stored_ranges(args)
        if stored is not None:
            ranges, source = stored
            print(f"int8 activation ranges: {source} (pass --calibration DIR to calibrate instead)")
        else:
            calibration = _calibration(args, config, resolution)
    path = export_model(
        model,
        out,
        args.format,
        resolution=resolution,
        dynamic_batch=args.dynamic_batch,
        calibration=calibration,
        calibration_method=args.calibration_method,
        activation_ranges=ranges,
    )
    # Check the file against the PyTorch model it came from, on real inputs where we have them.
    x = calibration[0][:8] if calibration else torch.rand(8, config.in_chans, resolution, resolution) * 2 - 1
    if not args.dynamic_batch and args.format in ("onnx", "pt2", "torchscript"):
        x = x[:1]
    from .deploy import load_exported

    with torch.inference_mode():
        want = model(x)
    got = load_exported(path)(x)
    if args.format.endswith("-int8"):
        size = f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)"
        if calibration:
            agree = float((got.argmax(1) == want.argmax(1)).float().mean())
            print(f"{size}; top-1 agreement with float on {len(x)} calibration images: {agree:.1%}")
        else:  # agreement on random inputs says nothing about photos
            print(f"{size}; to see how often it agrees with float on your photos: mobilenet eval --weights {path} --data DIR")
    else:
        diff = float((got - want).abs().max())
        print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB); largest difference from PyTorch: {diff:.2e}")
        if diff > 1e-3:
            raise RuntimeError(f"{path}: the exported model differs from PyTorch by {diff:.3g}; please report this")


@_command("bench")
def _bench(args: argparse.Namespace) -> int:
    import torch

    from .bench import format_per_layer, format_timing, format_timings, per_layer_profile, plot_latency, run_grid

    if args.weights and args.width_mult:
        raise ValueError("--width-mult is for random-init models; the weights fix α (drop one of the two)")
    if args.plot:  # checked before the timings, not after them
        from .export import output_path

        args.plot = _noted(output_path(args.plot, (".png",), ".png", "--plot"))
    cores = os.cpu_count() or 1
    for n in args.threads or []:
        if n > cores:
            warnings.warn(
                f"--threads {n} is more than this machine's {cores} CPU cores; the timings will measure oversubscription",
                stacklevel=1,
            )
    if args.threads:
        torch.set_num_threads(args.threads[0])
    first = _model_for(args, args.width_mult[0] if args.width_mult else None, args.resolution[0] if args.resolution else None)
    widths = args.width_mult or [first.config.width_mult]
    resolutions = args.resolution or [first.config.resolution]

    if args.per_layer:
        res, batch = resolutions[0], args.batch_size[0]
        rows = per_layer_profile(first, torch.rand(batch, first.config.in_chans, res, res) * 2 - 1)
        if args.json:
            _print_json(rows)
        else:
            print(f"eager PyTorch (BN folded, channels_last), α={first.config.width_mult:g}, {res} px, batch {batch}")
            print(format_per_layer(rows))
        return 0

    def build(alpha: float, res: int) -> Any:
        # With --weights there is one model; the resolution only sets the input (the net is fully convolutional).
        return first if args.weights or (alpha, res) == (widths[0], resolutions[0]) else _model_for(args, alpha, res)

    def calibration(res: int) -> list[Any]:
        if args.calibration:
            return _calibration(args, None, res)
        print("note: int8 calibrated on random inputs (speed only); pass --calibration DIR for a usable model", file=sys.stderr)
        return [torch.rand(8, first.config.in_chans, res, res) * 2 - 1 for _ in range(4)]

    stored = _stored_ranges(args) if any("int8" in b for b in args.backend) else None
    ranges = stored[0] if stored else None
    if not args.json:
        print(format_timings([]))
    results = run_grid(
        build,
        activation_ranges=ranges,
        widths=widths,
        resolutions=resolutions,
        batch_sizes=args.batch_size,
        threads=args.threads or [torch.get_num_threads()],
        backends=args.backend,
        calibration=calibration,
        warmup=args.warmup,
        iters=args.iters,
        min_seconds=args.min_seconds,
        report=None if args.json else lambda t: print(format_timing(t), flush=True),
        skipped=lambda b, why: print(f"skipping {b}: {why}", file=sys.stderr),
    )
    if not results:
        raise ValueError("no backend could run; see the messages above")
    if args.json:
        _print_json([t.to_dict() for t in results])
    if args.plot:
        print(f"wrote {plot_latency(results, args.plot)}", file=sys.stderr)
    return 0


def _add_train_args(p: argparse.ArgumentParser, sweep: bool = False) -> None:
    """One flag per TrainConfig field, with its help text: the dataclass is the one source of
    every default and choice. Flags the user leaves out are absent, so the recipe decides them."""
    import typing
    from dataclasses import MISSING, fields

    from .train import TrainConfig

    hints = typing.get_type_hints(TrainConfig)
    for f in fields(TrainConfig):
        meta = dict(f.metadata)
        flags = [meta.pop("short")] if "short" in meta else []
        flags.insert(0, "--" + f.name.replace("_", "-"))
        kwargs: dict[str, Any] = {"default": argparse.SUPPRESS, "help": meta.pop("help", "")}
        if f.default not in (None, MISSING) and not isinstance(f.default, bool):
            kwargs["help"] += f" (default {f.default})"
        hint = hints[f.name]
        args_of = set(typing.get_args(hint)) or {hint}
        if bool in args_of:
            kwargs["action"] = argparse.BooleanOptionalAction
        else:
            kwargs["type"] = int if int in args_of else float if float in args_of else str
        if "nargs" in meta:
            kwargs["nargs"] = meta.pop("nargs")
        if "choices" in meta:
            kwargs["choices"] = meta.pop("choices")
        if sweep and f.name in ("width_mult", "resolution"):
            kwargs["nargs"] = "+"
            kwargs["help"] = "the grid's " + (
                "α values (default 1 .75 .5 .25)"
                if f.name == "width_mult"
                else "input sizes (default 224 192 160 128; digits 32 48 64)"
            )
        if sweep and f.name == "out":
            kwargs["help"] = "output folder; each grid point trains in OUT/a<α>_r<size> (default runs/sweep)"
        p.add_argument(*flags, **kwargs)


def _add_preprocess_arg(p: argparse.ArgumentParser) -> None:
    from .spec import PREPROCESSES

    p.add_argument(
        "--preprocess",
        choices=PREPROCESSES,
        help="tf: the central 87.5%% of height and width, resized to SxS (how Google evaluated its weights); "
        "torchvision: short side resized, centre square. Default: what the weights carry",
    )


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="mobilenet", description="MobileNet v1, paper-exact: cost model, training, Google's weights, export."
    )
    parser.add_argument("--version", action="version", version=f"mobilenet {__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks (also: MOBILENET_DEBUG=1)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("cost", help="Mult-Adds and params for any α, resolution, class count and variant")
    _add_arch_args(p)
    p.add_argument("--num-classes", type=_int_at_least(0, "0 = no classifier, the features only"), default=1000)
    p.add_argument("--per-layer", action="store_true", help="print one row per layer, as Table 1")
    p.add_argument("--json", action="store_true", help="machine-readable output (always includes the per-layer rows)")

    p = sub.add_parser("paper", help="the paper's printed cost tables next to ours")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("train", help="train on the built-in digits or an ImageFolder tree (the paper's recipe)")
    _add_train_args(p)
    p = sub.add_parser("sweep", help="train an α x resolution grid and plot accuracy vs Mult-Adds (Figures 4, 5)")
    _add_train_args(p, sweep=True)

    p = sub.add_parser("eval", help="top-1/top-5 of saved weights on an ImageFolder tree or the built-in set")
    p.add_argument("--weights", required=True, nargs="+", help="weights file(s) or a registry name")
    p.add_argument(
        "--data", type=_folder, help="ImageFolder tree (class folders, or DIR/val/<class>); default: built-in digits val split"
    )
    p.add_argument("--batch-size", type=_BATCH, default=64)
    p.add_argument("--workers", type=_int_at_least(0, "data-loading processes; 0 = in this process"), default=0)
    p.add_argument("--per-class", action="store_true", help="per-class accuracy and the confusion matrix")
    p.add_argument(
        "--runtime",
        choices=["torch", "litert"],
        default="torch",
        help="litert: run .tflite file(s) in LiteRT, Google's too (default: ours run in LiteRT, others load as weights)",
    )
    _add_preprocess_arg(p)
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("predict", help="top-k labels for images")
    p.add_argument("images", nargs="+")
    p.add_argument(
        "--weights",
        required=True,
        nargs="+",
        help="weights file(s) or a registry name (two files for the split 1.0-224 TF Lite model)",
    )
    p.add_argument("--topk", type=_int_at_least(1, "how many labels to show per image"), default=5)
    p.add_argument(
        "--runtime",
        choices=["torch", "litert"],
        default="torch",
        help="litert: run .tflite file(s) in LiteRT, Google's too (default: ours run in LiteRT, others load as weights)",
    )
    p.add_argument("--crop", type=float, help="central crop fraction (default: the weights'; 1.0 = the whole image)")
    _add_preprocess_arg(p)
    p.add_argument("--json", action="store_true")

    from .deploy import BACKENDS
    from .export import FORMATS

    p = sub.add_parser(
        "export", help="export to ONNX, TorchScript, PT2, TF Lite or ExecuTorch (fp32 or int8), checked against PyTorch"
    )
    p.add_argument("--weights", nargs="+", help="weights file(s) or registry name (default: random init, for trying it out)")
    p.add_argument("--format", choices=FORMATS, default="onnx")
    p.add_argument("--dynamic-batch", action="store_true", help="leave the batch size free (ONNX, PT2)")
    p.add_argument("--width-mult", "-a", type=_WIDTH, help="α, without --weights (default 1.0)")
    p.add_argument("--resolution", "-r", type=_resolution_type(), help="input size (default: the weights')")
    p.add_argument("--num-classes", type=_CLASSES, help="without --weights (default 1000)")
    p.add_argument("--calibration", type=_folder, help="int8: folder of sample images (searched recursively)")
    p.add_argument("--calibration-images", type=_CALIBRATION_IMAGES, default=256)
    p.add_argument("--calibration-method", choices=["minmax", "percentile", "entropy"], default="minmax")
    p.add_argument("-o", "--output", help="output file (default: next to the name of the weights)")

    p = sub.add_parser("bench", help="latency and throughput per backend; --per-layer: time vs Mult-Adds by layer")
    p.add_argument("--weights", nargs="+", help="weights file(s) or registry name (default: random init)")
    p.add_argument("--width-mult", "-a", type=_WIDTH, nargs="+", help="α values (default 1.0)")
    p.add_argument("--resolution", "-r", type=_resolution_type(), nargs="+", help="input sizes (default 224)")
    p.add_argument("--num-classes", type=_CLASSES, help="without --weights (default 1000)")
    p.add_argument("--batch-size", "-b", type=_BATCH, nargs="+", default=[1])
    p.add_argument("--threads", "-t", type=_THREADS, nargs="+", help="CPU threads (default: PyTorch's default)")
    p.add_argument("--backend", nargs="+", default=["eager"], choices=BACKENDS, metavar="BACKEND", help=f"{', '.join(BACKENDS)}")
    p.add_argument("--warmup", type=_int_at_least(0, "untimed calls before timing"), default=10)
    p.add_argument(
        "--iters", type=_int_at_least(1, "timed calls; the median needs one"), default=50, help="at least this many timed calls"
    )
    p.add_argument("--min-seconds", type=_finite_float(0.0, "seconds of timed calls"), default=1.0, help="and at least this long")
    p.add_argument("--per-layer", action="store_true", help="profile each layer (eager): share of time vs share of Mult-Adds")
    p.add_argument("--calibration", type=_folder, help="int8: folder of sample images (default: random inputs, speed only)")
    p.add_argument("--calibration-images", type=_CALIBRATION_IMAGES, default=64)
    p.add_argument("--plot", help="PNG: latency against Mult-Adds over the α x resolution grid")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("convert", help="import TF Lite / Keras .h5 / timm weights into a .safetensors file")
    p.add_argument("source")
    p.add_argument("source2", nargs="?", help="second file (the head of Google's split 1.0-224 TF Lite model)")
    p.add_argument("-o", "--output", required=True)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    debug = args.debug or os.environ.get("MOBILENET_DEBUG", "") not in ("", "0")
    default_format = warnings.formatwarning
    if not debug:
        ours = str(Path(__file__).parent)

        def one_line(message: Any, category: Any, filename: str, lineno: int, line: str | None = None) -> str:
            # Our warnings read as one line, like the errors; other libraries' keep Python's form,
            # so that their deprecation notes are not taken for ours.
            if str(filename).startswith(ours):
                return f"mobilenet {args.command}: warning: {message}\n"
            return default_format(message, category, filename, lineno, line)

        warnings.formatwarning = one_line
    try:
        return int(_COMMANDS[args.command](args) or 0)
    except (ValueError, OSError, RuntimeError, FloatingPointError, TypeError, KeyError) as exc:
        if debug:
            raise
        # Library errors are written for people; show them without a traceback (--debug shows it).
        print(f"mobilenet {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        warnings.formatwarning = default_format  # main() may run inside another program (tests)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
