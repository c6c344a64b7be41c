"""What each ``mobilenet`` subcommand does, as one Python function.

The CLI parses its flags, calls the function of its subcommand here (or the library function it
names: ``model_cost``, ``paper.compare``, ``train``, ``sweep``) and prints what comes back; every
choice a command makes lives in the library, so Python gets the same:

>>> import mobilenet
>>> result = mobilenet.export_model("runs/mobilenet/best.safetensors", "m.onnx", "onnx")  # doctest: +SKIP

``export_model`` here takes weights (files or a registry name; none for a random init) and does
what ``mobilenet export`` does; :func:`mobilenet.export.export_model` is the writer it calls, for
a model already in hand.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .spec import reconcile

__all__ = ["BenchResult", "ConvertResult", "ExportResult", "bench", "convert", "evaluate", "export_model", "predict", "train"]

Weights = str | os.PathLike[str] | Sequence[str | os.PathLike[str]]


def _files(weights: Weights | None) -> list[str]:
    if weights is None:
        return []
    return [str(weights)] if isinstance(weights, (str, os.PathLike)) else [str(w) for w in weights]


@dataclass
class ExportResult:
    """``path`` written as ``format``; ``notes`` for the user (a suffix added to the name);
    ``ranges_from``: where stored int8 ranges came from (None: calibrated, or fp32); ``check``:
    :func:`mobilenet.export.check_export`'s measurement (None when not checked)."""

    path: Path
    format: str
    notes: list[str] = field(default_factory=list)
    ranges_from: str | None = None
    check: dict[str, Any] | None = None
    summary: str | None = None  # a detector's export says what it wrote and how it was checked
    int8_scheme: str | None = None  # tflite-int8, pte-int8, onnx-int8: "uint8-grid" (Google's own arithmetic) or "per-channel"


def export_model(
    weights: Weights | None = None,
    output: str | os.PathLike[str] | None = None,
    format: str = "onnx",
    *,
    width_mult: float | None = None,
    resolution: int | None = None,
    num_classes: int | None = None,
    dynamic_batch: bool = False,
    calibration: str | os.PathLike[str] | None = None,
    calibration_images: int = 256,
    calibration_method: str = "minmax",
    int8_scheme: str = "auto",
    recalibrate: bool = False,
    check: bool = True,
) -> ExportResult:
    """``mobilenet export``: the weights (or a random init of the asked shape,
    :func:`mobilenet.deploy.model_for`) written as ``format``, int8 from the ranges the weights
    carry or from ``calibration`` images (:func:`mobilenet.export.int8_inputs`), then checked
    against PyTorch. ``int8_scheme`` for tflite-int8, pte-int8 and onnx-int8 (:func:`mobilenet.litert.export_tflite`,
    :func:`mobilenet.pte.export_pte`, :func:`mobilenet.runtimes.onnxruntime.write_onnx`): ``auto`` keeps Google's own uint8 arithmetic for weights on
    its grid with its ranges, ``per-channel`` always writes int8 per-channel weights (faster). ``recalibrate``: calibrate on
    ``calibration`` even when the weights carry the ranges they were trained with. ``output`` defaults to the weights' name with the format's suffix; a name
    whose suffix contradicts the format, or that is one of the input files (by resolved path or
    ``os.path.samefile``, the default name included), is refused before any work. The file is
    written under a hidden name and becomes ``output`` only once its check has passed: a failed
    check (a difference, or out of memory) leaves no file, and a file already there stays."""
    from .checkpoint import refuse_overwriting_inputs, staged_output
    from .deploy import model_for
    from .detection.weights import is_detector
    from .export import DEFAULT_SUFFIX, check_export, export_output_path, int8_inputs
    from .export import export_model as write

    if int8_scheme not in ("auto", "per-channel"):
        raise ValueError(f"int8_scheme must be 'auto' or 'per-channel', not {int8_scheme!r}")
    files, notes = _files(weights), []
    if files and is_detector(files):
        from .detection.export import export_detector

        # The detector's writer decides its own name; the input is never its output either way.
        refuse_overwriting_inputs(output or Path(files[0]).stem + DEFAULT_SUFFIX["tflite"], files, default=not output)
        path, summary = export_detector(files[0], output, format, calibration=calibration, calibration_images=calibration_images)
        if recalibrate or int8_scheme != "auto":
            notes.append("--recalibrate and --int8-scheme are for classifiers: a detector calibrates on --calibration when given")
        return ExportResult(path, format, notes, summary=summary)
    out = None
    if output:  # checked before any work: the format decides the file kind, the suffix must agree
        out, note = export_output_path(output, format)
        notes += [note] if note else []
        refuse_overwriting_inputs(out, files)
    elif files:  # the default name is the weights' own, in the current folder: never the weights themselves
        refuse_overwriting_inputs(Path(files[0]).stem + DEFAULT_SUFFIX[format], files, default=True)
    model = model_for(files, width_mult=width_mult, resolution=resolution, num_classes=num_classes)
    config = model.config
    size = resolution or config.resolution
    if out is None:
        stem = Path(files[0]).stem if files else f"mobilenet_v1_{config.width_mult:g}_{size}"
        out = Path(stem + DEFAULT_SUFFIX[format])
    batches, ranges, source = int8_inputs(
        format, weights=files, calibration=calibration, config=config, resolution=size,
        calibration_images=calibration_images, recalibrate=recalibrate,
    )  # fmt: skip
    # Written under a hidden name and checked there: only a file that passed (or a run without a
    # check) becomes ``out``; one that failed, or whose check ran out of memory, is removed.
    with staged_output(out) as staged:
        path = write(
            # With stored ranges the images only check the file: the writer does not calibrate on them.
            model, staged, format, resolution=size, dynamic_batch=dynamic_batch, calibration=None if ranges else batches,
            calibration_method=calibration_method, activation_ranges=ranges, keep_grid=int8_scheme == "auto",
        )  # fmt: skip
        checked = (
            check_export(model, path, format, batches, dynamic_batch=dynamic_batch, resolution=size, name=out) if check else None
        )
    scheme = None
    if format == "tflite-int8" and out.exists():
        from .runtimes.litert import tflite_input_type

        scheme = "uint8-grid" if tflite_input_type(out) == "uint8" else "per-channel"
    elif format == "pte-int8" and out.exists():
        from .runtimes.executorch import INT8_SCHEME_KEY, pte_constant

        scheme = pte_constant(out, INT8_SCHEME_KEY)
    elif format == "onnx-int8" and out.exists():
        from .runtimes.onnxruntime import onnx_int8_scheme

        scheme = onnx_int8_scheme(out)
    return ExportResult(out, format, notes, source, checked, int8_scheme=scheme)


def train(**settings: Any) -> Any:
    """``mobilenet train``: a detector's fine-tune when the weights or the data are a detection
    task's (:func:`mobilenet.detection.is_detection_task`), else the classifier trainer, with
    ``settings`` as :class:`mobilenet.train.TrainConfig` fields."""
    from .detection import is_detection_task

    if is_detection_task(settings.get("weights"), settings.get("data")):
        from .detection.train import train_detector

        return train_detector(**settings)
    from .train import TrainConfig
    from .train import train as train_classifier

    return train_classifier(TrainConfig(**settings))


def evaluate(
    weights: Weights,
    data: str | None = None,
    *,
    batch_size: int = 64,
    workers: int = 0,
    preprocess: str | None = None,
    runtime: str = "torch",
    images: str | None = None,
    postprocess: str | None = None,
    class_agnostic: bool = False,
) -> dict[str, Any]:
    """``mobilenet eval``: top-1, top-5, loss, per-class accuracy and the confusion matrix of the
    weights (or an exported file, in its runtime: :func:`mobilenet.deploy.inference_model`) on
    ``data`` (default: the built-in digits' val split), with the weights' own preprocessing. A
    detector, or box data, is the detection task's: COCO AP from
    :func:`mobilenet.detection.evaluate_detector` (``images``, ``postprocess``, ``class_agnostic``)."""
    from .deploy import inference_model
    from .detection import evaluate_detector, is_detection_task
    from .evaluate import evaluate as measure
    from .evaluate import evaluation_data

    files = _files(weights)
    if is_detection_task(files, data):
        if len(files) != 1:
            raise ValueError(f"a detector is one weights file; got {len(files)}")
        return evaluate_detector(
            files[0], data, images=images, runtime=runtime, postprocess=postprocess or "coco",
            class_agnostic=class_agnostic, batch_size=min(batch_size, 16),
        )  # fmt: skip
    model = inference_model(files, runtime)
    loader, label_offset, classes = evaluation_data(model, data, batch_size=batch_size, workers=workers, preprocess=preprocess)
    result = measure(model, loader, num_classes=len(classes), label_offset=label_offset)
    result["classes"] = classes
    return result


def predict(
    images: Sequence[str | os.PathLike[str]],
    weights: Weights,
    *,
    topk: int = 5,
    crop: float | None = None,
    preprocess: str | None = None,
    runtime: str = "torch",
) -> Iterator[dict[str, Any]]:
    """``mobilenet predict``: the top-k labels of each image, yielded a batch at a time
    (:func:`mobilenet.predict.iter_predictions`; ``{image, error}`` for an unreadable one)."""
    from .deploy import inference_model
    from .predict import iter_predictions

    return iter_predictions(inference_model(_files(weights), runtime), images, topk=topk, crop=crop, preprocess=preprocess)


@dataclass
class ConvertResult:
    """``path`` written; ``summary``, one line on what it holds; ``notes`` for the user."""

    path: Path
    summary: str
    notes: list[str] = field(default_factory=list)


def convert(sources: Weights, output: str | os.PathLike[str]) -> ConvertResult:
    """``mobilenet convert``: TF Lite (two files for the split 1.0-224 model), Keras .h5 or timm
    weights into our safetensors file, config included."""
    from .checkpoint import refuse_overwriting_inputs, save_weights
    from .detection import convert_detector, is_detection_task
    from .export import output_path
    from .formats import FORMATS
    from .weights import load_weights

    suffixes = FORMATS["safetensors"].suffixes
    out, note = output_path(output, suffixes, suffixes[0], "convert")
    files, notes = _files(sources), [note] if note else []
    refuse_overwriting_inputs(out, files)
    if len(files) == 1 and is_detection_task(files):
        path, summary = convert_detector(files[0], out)
        return ConvertResult(path, summary, notes)
    model = load_weights(files[0] if len(files) == 1 else files)
    out = save_weights(out, model, source=" + ".join(Path(s).name for s in files))
    c = model.config
    summary = f"wrote {out}: MobileNet v1 α={c.width_mult:g}, {c.resolution}px, {c.num_classes} classes, {c.activation}, padding={c.padding}"
    return ConvertResult(out, summary, notes)


@dataclass
class BenchResult:
    """``timings`` (:class:`~mobilenet.bench.Timing`), or with ``per_layer`` the profile's ``rows``
    and a ``heading`` saying what was profiled; ``plot``: the latency plot written, if asked for; ``notes`` for the user (a suffix added)."""

    timings: list[Any] = field(default_factory=list)
    rows: list[dict[str, Any]] | None = None
    heading: str = ""
    plot: Path | None = None
    notes: list[str] = field(default_factory=list)


def bench(
    weights: Weights | None = None,
    *,
    width_mult: Sequence[float] | None = None,
    resolution: Sequence[int] | None = None,
    num_classes: int | None = None,
    batch_size: Sequence[int] = (1,),
    threads: Sequence[int] | None = None,
    backend: Sequence[str] = ("eager",),
    warmup: int = 10,
    iters: int = 50,
    min_seconds: float = 1.0,
    per_layer: bool = False,
    calibration: str | os.PathLike[str] | None = None,
    calibration_images: int = 64,
    int8_scheme: str = "auto",
    plot: str | os.PathLike[str] | None = None,
    report: Callable[[Any], None] | None = None,
    note: Callable[[str], None] | None = None,
) -> BenchResult:
    """``mobilenet bench``: a :class:`~mobilenet.bench.Timing` per backend over the α x resolution x
    batch x threads grid (``per_layer``: the per-layer profile instead). The weights fix α (a
    different ``width_mult`` is an error); without weights each α is a random init. int8 takes
    the ranges the weights carry, else ``calibration`` images, else random inputs (speed only;
    said through ``note``); ``int8_scheme`` as for :func:`export_model`. ``report`` sees each timing as it comes; ``plot`` (a PNG) is checked
    before the timings and written after them."""
    import torch

    from .bench import per_layer_profile, plot_latency, run_grid
    from .deploy import model_for
    from .export import int8_calibration, output_path, stored_activation_ranges

    files, note = _files(weights), note or (lambda _: None)
    result = BenchResult()
    if plot:  # checked before the timings, not after them
        plot, plot_note = output_path(plot, (".png",), ".png", "--plot")
        result.notes += [plot_note] if plot_note else []
    _warn_oversubscribed(threads)
    if threads:
        torch.set_num_threads(threads[0])
    widths = list(width_mult or [])
    first = model_for(
        files, width_mult=widths[0] if widths else None, resolution=resolution[0] if resolution else None, num_classes=num_classes
    )
    for alpha in widths[1:] if files else []:  # the weights fix α: every one asked for must be theirs
        reconcile(first.config, {"width_mult": alpha}, source=f"the weights {' + '.join(files)}", flags=True)
    widths = widths or [first.config.width_mult]
    resolutions = list(resolution or [first.config.resolution])
    if per_layer:
        res, batch = resolutions[0], batch_size[0]
        result.rows = per_layer_profile(first, torch.rand(batch, first.config.in_chans, res, res) * 2 - 1)
        result.heading = f"eager PyTorch (BN folded, channels_last), α={first.config.width_mult:g}, {res} px, batch {batch}"
        return result

    def build(alpha: float, res: int) -> Any:
        # With weights there is one model; the resolution only sets the input (the net is fully convolutional).
        if files or (alpha, res) == (widths[0], resolutions[0]):
            return first
        return model_for(width_mult=alpha, resolution=res, num_classes=num_classes)

    def calibrate(res: int) -> list[Any]:
        if calibration:
            return int8_calibration(calibration, first.config, res, calibration_images)
        note("int8 calibrated on random inputs (speed only); pass --calibration DIR for a usable model")
        return [torch.rand(8, first.config.in_chans, res, res) * 2 - 1 for _ in range(4)]

    stored = None
    if files and any("int8" in b for b in backend):  # the ranges the weights were trained with win, as in export
        stored = stored_activation_ranges(f for f in files if Path(f).exists())
    if stored is not None:
        note(f"int8 backends use the activation ranges the weights carry ({stored[1]}), as export does")
        kept = [b for b in ("litert-int8", "executorch-int8", "int8", "openvino-int8") if b in backend]
        if kept and int8_scheme == "auto":
            note(f"{' and '.join(kept)} of weights on a uint8 grid keep Google's integer arithmetic, as export's default does; "
                 "--int8-scheme per-channel times the faster int8 form")  # fmt: skip
    result.timings = run_grid(
        build, activation_ranges=stored[0] if stored else None, widths=widths, resolutions=resolutions,
        batch_sizes=batch_size, threads=threads or [torch.get_num_threads()], backends=backend, calibration=calibrate,
        warmup=warmup, iters=iters, min_seconds=min_seconds, report=report,
        skipped=lambda b, why: note(f"skipping {b}: {why}"), keep_grid=int8_scheme == "auto",
    )  # fmt: skip
    if not result.timings:
        raise ValueError("no backend could run; see the messages above")
    if plot:
        result.plot = plot_latency(result.timings, plot)
    return result


def _warn_oversubscribed(threads: Sequence[int] | None) -> None:
    cores = os.cpu_count() or 1
    for n in threads or []:
        if n > cores:
            warnings.warn(
                f"--threads {n} is more than this machine's {cores} CPU cores; the timings will measure oversubscription",
                stacklevel=3,
            )
