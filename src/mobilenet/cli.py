"""The ``mobilenet`` command: it parses, calls one library function per subcommand, and prints.

Each subcommand is a row of :func:`_commands`: its help, its flags (as data; ``train`` and
``sweep`` generate theirs from :class:`~mobilenet.train.TrainConfig`) and the function that calls
the library and prints. Every choice a command makes is the library's (:mod:`mobilenet.commands`).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

__all__ = ["build_parser", "main"]

Flag = tuple[tuple[str, ...], dict[str, Any]]


def _print_json(obj: Any) -> None:
    json.dump(obj, sys.stdout, indent=2)
    sys.stdout.write("\n")


def _note(notes: Sequence[str]) -> None:
    for note in notes:
        print(f"note: {note}", file=sys.stderr)


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


def _cost(args: argparse.Namespace) -> None:
    from .cost import model_cost

    given = {k: getattr(args, k) for k in ("width_mult", "resolution", "num_classes", "variant") if getattr(args, k) is not None}
    if args.detector:
        report = _detector_cost(args, given)
    else:
        report = model_cost(**given)
    if args.json:
        _print_json(report.to_dict())
    else:
        print(report.format_table(per_layer=args.per_layer))


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


def _train(args: argparse.Namespace) -> None:
    from dataclasses import fields

    from .commands import train
    from .train import TrainConfig

    train(**_given(args, [f.name for f in fields(TrainConfig)]))


def _sweep(args: argparse.Namespace) -> None:
    from dataclasses import fields

    from .train import TrainConfig, sweep

    given = _given(args, [f.name for f in fields(TrainConfig)])
    widths, resolutions = given.pop("width_mult", None), given.pop("resolution", None)
    result = sweep(TrainConfig(**given), widths=widths, resolutions=resolutions)
    print(result["table"])
    print(f"plot: {result['plot']}")


def _eval(args: argparse.Namespace) -> None:
    from .commands import evaluate

    result = evaluate(
        args.weights,
        args.data,
        batch_size=args.batch_size,
        workers=args.workers,
        preprocess=args.preprocess,
        runtime=args.runtime,
        images=args.images,
        postprocess=args.postprocess,
        class_agnostic=args.class_agnostic,
    )
    if "map" in result:  # a detector's COCO AP
        _print_detection_eval(args, result)
        return
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
        classes, confusion = result["classes"], result["confusion"]
        # Only the classes the data holds: an ImageNet model has 1000, most absent from a small set.
        present = [i for i, row in enumerate(confusion) if sum(row)]
        for i in present:
            print(f"  {result['per_class_accuracy'][i]:.4f}  {classes[i]}  ({sum(confusion[i])} images)")
        if len(classes) <= 50:
            print("confusion matrix (rows: true class, columns: predicted):")
            for row in confusion:
                print("  " + " ".join(f"{v:4d}" for v in row))


def _predict(args: argparse.Namespace) -> None:
    from .commands import predict

    results = predict(args.images, args.weights, topk=args.topk, crop=args.crop, preprocess=args.preprocess, runtime=args.runtime)
    skipped = 0
    for r in results:  # printed as each batch finishes, not after the last image
        if args.json:  # JSON Lines: one object per image, {image, error} for an unreadable one
            print(json.dumps(r), flush=True)
            skipped += "error" in r
            continue
        if "error" in r:  # already warned about
            skipped += 1
            continue
        print(r["image"])
        for p in r["predictions"]:
            print(f"  {p['probability']:7.2%}  {p['index']:4d}  {p['label']}", flush=True)
    if skipped:
        print(f"skipped {skipped} unreadable image(s)", file=sys.stderr)


def _convert(args: argparse.Namespace) -> None:
    from .commands import convert

    result = convert([args.source, *([args.source2] if args.source2 else [])], args.output)
    _note(result.notes)
    print(result.summary)


def _export(args: argparse.Namespace) -> None:
    from .commands import export_model

    result = export_model(
        args.weights, args.output, args.format, width_mult=args.width_mult, resolution=args.resolution,
        num_classes=args.num_classes, dynamic_batch=args.dynamic_batch, calibration=args.calibration,
        calibration_images=args.calibration_images, calibration_method=args.calibration_method,
        int8_scheme=args.int8_scheme, recalibrate=args.recalibrate,
    )  # fmt: skip
    _note(result.notes)
    if result.summary:
        print(result.summary)
        return
    if result.ranges_from:
        print(f"int8 activation ranges: {result.ranges_from} (--recalibrate --calibration DIR calibrates on your images instead)")
    if result.int8_scheme == "uint8-grid":
        faster = "about 1.4x faster" if result.format == "onnx-int8" else "about 2x faster"
        print(
            "int8 scheme: Google's integer arithmetic, each weight on the grid it already lies on "
            "(with Google's file and its ranges, it computes what that file computes); --int8-scheme per-channel "
            f"writes int8 per-channel weights ({faster})"
        )
    check, path = result.check or {}, result.path
    size = f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)"
    if not check.get("int8"):
        n, kind = check.get("images", 0), "calibration image" if check.get("real_images") else "random input"
        print(f"{size}; largest difference from PyTorch on {n} {kind}{'s' * (n != 1)}: {check.get('max_diff', float('nan')):.2e}")
    elif check.get("agreement") is not None:
        n = check["images"]
        print(f"{size}; top-1 agreement with float on {n} calibration image{'s' * (n != 1)}: {check['agreement']:.1%}")
    else:  # agreement on random inputs says nothing about photos
        print(f"{size}; to see how often it agrees with float on your photos: mobilenet eval --weights {path} --data DIR")


def _bench(args: argparse.Namespace) -> int:
    from .bench import format_per_layer, format_timing, format_timings
    from .commands import bench

    if not args.json and not args.per_layer:
        from .bench import cpu_description

        print(f"cpu: {cpu_description()}")
        print(format_timings([]))
    result = bench(
        args.weights, width_mult=args.width_mult, resolution=args.resolution, num_classes=args.num_classes,
        batch_size=args.batch_size, threads=args.threads, backend=args.backend, warmup=args.warmup, iters=args.iters,
        min_seconds=args.min_seconds, per_layer=args.per_layer, calibration=args.calibration,
        calibration_images=args.calibration_images, int8_scheme=args.int8_scheme, plot=args.plot,
        report=None if args.json else lambda t: print(format_timing(t), flush=True),
        note=lambda text: print(f"note: {text}" if text.startswith("int8") else text, file=sys.stderr),
    )  # fmt: skip
    _note(result.notes)
    if result.rows is not None:
        if args.json:
            _print_json(result.rows)
        else:
            print(result.heading)
            print(format_per_layer(result.rows))
        return 0
    if args.json:
        _print_json([t.to_dict() for t in result.timings])
    if result.plot:
        print(f"wrote {result.plot}", file=sys.stderr)
    return 0


def _train_flags(sweep: bool = False) -> list[Flag]:
    """One flag per TrainConfig field, with its help text: the dataclass is the one source of
    every default and choice. Flags the user leaves out are absent, so the recipe decides them."""
    import typing
    from dataclasses import MISSING, fields

    from .train import TrainConfig

    hints = typing.get_type_hints(TrainConfig)
    flags_out: list[Flag] = []
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
        flags_out.append((tuple(flags), kwargs))
    return flags_out


# ---------------------------------------------------------------------------------------------
# Detection (mobilenet.detection): `detect`, and what `cost`, `eval` and `convert` need for detectors.
# Each command calls one library function; the library decides what the weights and data are.


def _detector_cost(args: argparse.Namespace, given: dict[str, Any]) -> Any:
    from .detection import detector_cost

    if "variant" in given:
        raise ValueError("--variant is for the classifier; SSD MobileNet v1 uses the paper's separable net")
    return detector_cost(**given)


def _folder_or_json(text: str) -> str:
    """An argparse type: an existing folder, or an annotation .json file (box data for detectors)."""
    from .detection.data import is_annotation_file

    if is_annotation_file(text):
        if not Path(text).exists():
            raise argparse.ArgumentTypeError(f"annotation file {text!r} does not exist")
        return text
    return _folder(text)


def _print_detection_eval(args: argparse.Namespace, result: dict[str, Any]) -> None:
    if args.json:
        _print_json(result)
        return
    print(
        f"{args.weights[0]}: COCO AP {result['map']:.4f}  AP50 {result['map_50']:.4f}  AP75 {result['map_75']:.4f}  on "
        f"{result['images']} images, {result['objects']} objects ({result['postprocess']} post-processing, "
        f"{result['runtime']}, {result['seconds']:.1f} s)"
    )


def _detect(args: argparse.Namespace) -> None:
    from .detection import detect_files

    results = detect_files(
        args.weights, args.images, runtime=args.runtime, postprocess=args.postprocess, score_threshold=args.score, draw=args.draw
    )
    if args.json:
        _print_json(results)
        return
    for r in results:
        print(f"{r['image']} ({r['width']}x{r['height']}): {len(r['detections'])} detection(s)")
        for d in r["detections"]:
            print(f"  {d['score']:6.3f}  {d['label']:<16} [{', '.join(f'{v:.0f}' for v in d['box'])}]")
        if "drawing" in r:
            print(f"  drew {r['drawing']}")


_DETECTOR_COST: Flag = (
    ("--detector",),
    {
        "choices": ["ssd"],
        "help": "ssd: SSD MobileNet v1 as TF OD API builds it (Table 13; default 300 px, 91 classes with background)",
    },
)
_DETECTION_EVAL: list[Flag] = [
    (("--images",), {"type": _folder, "help": "detectors: the image folder of a COCO JSON (default: COCO's layout)"}),
    (
        ("--postprocess",),
        {
            "choices": ["coco", "tflite"],
            "help": "detectors: coco = TF OD API's per-class NMS, 100 detections (default for eval); "
            "tflite = the phone file's fast NMS, 10 detections (default for detect: the weights' own)",
        },
    ),
    (("--class-agnostic",), {"action": "store_true", "help": "detectors: every detection counts as the data's one category"}),
]
_DETECT: list[Flag] = [
    (("images",), {"nargs": "+"}),
    (
        ("--weights",),
        {"required": True, "help": "a detector: Google's detect.tflite, or our .safetensors from mobilenet convert"},
    ),
    (
        ("--runtime",),
        {"choices": ["torch", "litert"], "default": "torch", "help": "litert: run the .tflite itself in LiteRT (default: ours)"},
    ),
    (
        ("--postprocess",),
        {
            "choices": ["coco", "tflite"],
            "help": "tflite: fast NMS, 10 detections; coco: per-class NMS (default: the weights' own)",
        },
    ),
    (
        ("--score",),
        {"type": _finite_float(0.0, "a score in [0, 1]"), "help": "show detections scoring at least this (default 0.5)"},
    ),
    (("--draw",), {"help": "folder to write each photo to, with its boxes and labels drawn (PNG)"}),
    (("--json",), {"action": "store_true"}),
]

#: Flags several subcommands share.
_JSON: Flag = (("--json",), {"action": "store_true", "help": "machine-readable output"})
_PREPROCESS_HELP = (
    "tf: the central 87.5%% of height and width, resized to SxS (how Google evaluated its weights); "
    "torchvision: short side resized, centre square. Default: what the weights carry"
)


def _inference_flags(json_help: str | None = None) -> list[Flag]:
    """The flags ``eval`` and ``predict`` share: the runtime, the preprocessing and ``--json``."""
    from .deploy import RUNTIMES
    from .spec import PREPROCESSES

    others = ", ".join(r for r in RUNTIMES if r != "torch")
    return [
        (
            ("--runtime",),
            {
                "choices": RUNTIMES,
                "default": "torch",
                "help": f"{others}: run that runtime's files there, anyone's (default: our exports run in their "
                "runtime, other files load as weights)",
            },
        ),
        (("--preprocess",), {"choices": PREPROCESSES, "help": _PREPROCESS_HELP}),
        (_JSON[0], {**_JSON[1], "help": json_help}) if json_help else _JSON,
    ]


def _commands() -> dict[str, tuple[str, list[Flag], Callable[[argparse.Namespace], int | None]]]:
    """Every subcommand: its help, its flags and what runs it. The parser is built from this."""
    from .deploy import BACKENDS
    from .export import FORMATS
    from .spec import MIN_RESOLUTION, VARIANTS

    resolution = _int_at_least(MIN_RESOLUTION, "input size in px: the net downsamples 32x; the paper uses 224, 192, 160, 128")
    weights = "weights file(s) or a registry name (two files for the split 1.0-224 TF Lite model)"
    random_weights = (("--weights",), {"nargs": "+", "help": "weights file(s) or registry name (default: random init)"})
    calibration_dir = "int8: folder of sample images (searched recursively)"
    return {
        "cost": ("Mult-Adds and params for any α, resolution, class count and variant", [
            # No defaults here: the library states them (224 px, 1000 classes; a detector's own).
            (("--width-mult", "-a"), {"type": _WIDTH, "help": "width multiplier α (default 1.0)"}),
            (("--resolution", "-r"), {"type": resolution, "help": "input size, the resolution multiplier ρ·224 (default 224)"}),
            (("--variant",), {"choices": VARIANTS, "help": "separable = the paper's net; conv = Table 4's Conv MobileNet; shallow = Table 5's"}),
            (("--num-classes",), {"type": _int_at_least(0, "0 = no classifier, the features only"), "help": "default 1000"}),
            _DETECTOR_COST,
            (("--per-layer",), {"action": "store_true", "help": "print one row per layer, as Table 1"}),
            (("--json",), {"action": "store_true", "help": "machine-readable output (always includes the per-layer rows)"}),
        ], _cost),
        "paper": ("the paper's printed cost tables next to ours", [(("--json",), {"action": "store_true"})], _paper),
        "train": ("train on the built-in digits or an ImageFolder tree (the paper's recipe)", _train_flags(), _train),
        "sweep": ("train an α x resolution grid and plot accuracy vs Mult-Adds (Figures 4, 5)", _train_flags(sweep=True), _sweep),
        "eval": ("top-1/top-5 of saved weights on an ImageFolder tree or the built-in set", [
            (("--weights",), {"required": True, "nargs": "+", "help": weights}),
            (("--data",), {"type": _folder_or_json, "help": "ImageFolder tree (class folders, or DIR/val/<class>); default: built-in digits val split. Detectors: a COCO instances JSON or a Pascal VOC root"}),
            (("--batch-size",), {"type": _BATCH, "default": 64}),
            (("--workers",), {"type": _int_at_least(0, "data-loading processes; 0 = in this process"), "default": 0}),
            (("--per-class",), {"action": "store_true", "help": "per-class accuracy and the confusion matrix"}),
            *_inference_flags(),
            *_DETECTION_EVAL,
        ], _eval),
        "predict": ("top-k labels for images", [
            (("images",), {"nargs": "+"}),
            (("--weights",), {"required": True, "nargs": "+", "help": weights}),
            (("--topk",), {"type": _int_at_least(1, "how many labels to show per image"), "default": 5}),
            (("--crop",), {"type": float, "help": "central crop fraction (default: the weights'; 1.0 = the whole image)"}),
            *_inference_flags(json_help="JSON Lines: one object per image ({image, predictions: [{index, label, probability}]}, or {image, error}), printed as each batch finishes"),
        ], _predict),
        "export": ("export to ONNX, TorchScript, PT2, TF Lite or ExecuTorch (fp32 or int8), checked against PyTorch", [
            random_weights,
            (("--format",), {"choices": FORMATS, "default": "onnx"}),
            (("--dynamic-batch",), {"action": "store_true", "help": "leave the batch size free (ONNX, PT2)"}),
            (("--width-mult", "-a"), {"type": _WIDTH, "help": "α, without --weights (default 1.0)"}),
            (("--resolution", "-r"), {"type": resolution, "help": "input size (default: the weights')"}),
            (("--num-classes",), {"type": _CLASSES, "help": "without --weights (default 1000)"}),
            (("--calibration",), {"type": _folder_or_json, "help": calibration_dir + "; detectors: their training photos, a Pascal VOC root or COCO JSON too"}),
            (("--calibration-images",), {"type": _CALIBRATION_IMAGES, "default": 256}),
            (("--calibration-method",), {"choices": ["minmax", "percentile", "entropy"], "default": "minmax"}),
            (("--recalibrate",), {"action": "store_true", "help": (
                "calibrate int8 ranges on --calibration images even when the weights carry the ranges they were "
                "trained with (Google's quantized files, --qat runs); without it those images only check the export. "
                "Classifiers only: a detector calibrates on --calibration when given")}),
            (("--int8-scheme",), {"choices": ["auto", "per-channel"], "default": "auto", "help": (
                "tflite-int8, pte-int8 and onnx-int8. auto: weights on a uint8 file's grid exported with that "
                "file's own ranges (Google's quantized files) keep its uint8 arithmetic and compute what it "
                "does; others get int8 per-channel weights. per-channel: always int8 per-channel (at 1.0-224 "
                "about 2x faster in LiteRT and ExecuTorch, 1.4x in ONNX Runtime; on Google's four models 4 points "
                "less to 2 more top-1 agreement with float). Classifiers only")}),
            (("-o", "--output"), {"help": "output file (default: next to the name of the weights)"}),
        ], _export),
        "bench": ("latency and throughput per backend; --per-layer: time vs Mult-Adds by layer", [
            random_weights,
            (("--width-mult", "-a"), {"type": _WIDTH, "nargs": "+", "help": "α values (default 1.0)"}),
            (("--resolution", "-r"), {"type": resolution, "nargs": "+", "help": "input sizes (default 224)"}),
            (("--num-classes",), {"type": _CLASSES, "help": "without --weights (default 1000)"}),
            (("--batch-size", "-b"), {"type": _BATCH, "nargs": "+", "default": [1]}),
            (("--threads", "-t"), {"type": _THREADS, "nargs": "+", "help": "CPU threads (default: PyTorch's default)"}),
            (("--backend",), {"nargs": "+", "default": ["eager"], "choices": BACKENDS, "metavar": "BACKEND", "help": ", ".join(BACKENDS)}),
            (("--warmup",), {"type": _int_at_least(0, "untimed calls before timing"), "default": 10}),
            (("--iters",), {"type": _int_at_least(1, "timed calls; the median needs one"), "default": 50, "help": "at least this many timed calls"}),
            (("--min-seconds",), {"type": _finite_float(0.0, "seconds of timed calls"), "default": 1.0, "help": "and at least this long"}),
            (("--per-layer",), {"action": "store_true", "help": "profile each layer (eager): share of time vs share of Mult-Adds"}),
            (("--calibration",), {"type": _folder, "help": "int8: folder of sample images (default: random inputs, speed only)"}),
            (("--calibration-images",), {"type": _CALIBRATION_IMAGES, "default": 64}),
            (("--int8-scheme",), {"choices": ["auto", "per-channel"], "default": "auto", "help": (
                "int8 backends of Google's quantized weights: auto times Google's own uint8 arithmetic "
                "(export's default), per-channel the faster int8 form")}),
            (("--plot",), {"help": "PNG: latency against Mult-Adds over the α x resolution grid"}),
            _JSON,
        ], _bench),
        "convert": ("import TF Lite / Keras .h5 / timm weights into a .safetensors file", [
            (("source",), {}),
            (("source2",), {"nargs": "?", "help": "second file (the head of Google's split 1.0-224 TF Lite model)"}),
            (("-o", "--output"), {"required": True}),
        ], _convert),
        "detect": ("objects in photos: label, score and pixel box [x0, y0, x1, y1] (SSD detectors)", _DETECT, _detect),
    }  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    """The parser, one subparser per row of :func:`_commands`."""
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="mobilenet", description="MobileNet v1, paper-exact: cost model, training, Google's weights, export."
    )
    parser.add_argument("--version", action="version", version=f"mobilenet {__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks (also: MOBILENET_DEBUG=1)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (help_text, flags, run) in _commands().items():
        p = sub.add_parser(name, help=help_text)
        p.set_defaults(run=run)
        for names, kwargs in flags:
            p.add_argument(*names, **kwargs)
    return parser


def _out_of_memory(exc: BaseException) -> str | None:
    """An allocation failure (numpy's MemoryError, PyTorch's "can't allocate memory") as one
    sentence saying what to do; None for any other error."""
    text = str(exc)
    if not isinstance(exc, MemoryError) and "can't allocate memory" not in text:
        return None
    import re

    wanted = re.search(r"allocate (\d+) bytes", text)
    size = f" ({int(wanted[1]) / 2**30:.1f} GiB for one tensor)" if wanted else ""
    return (
        f"out of memory{size}: use a smaller --resolution or --batch-size "
        "(the net is fully convolutional: any input size from 32 px works)"
    )


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
        return int(args.run(args) or 0)
    except (ValueError, OSError, RuntimeError, FloatingPointError, TypeError, KeyError, MemoryError) as exc:
        if debug:
            raise
        # Library errors are written for people; show them without a traceback (--debug shows it).
        print(f"mobilenet {args.command}: error: {_out_of_memory(exc) or exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        warnings.formatwarning = default_format  # main() may run inside another program (tests)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
