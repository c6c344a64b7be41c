"""Latency and throughput of a Predictor, per-layer time against per-layer Mult-Adds, and the α x ρ grid.

Timing (:func:`time_calls`, the one timing loop of the library and of ``benchmarks/``): an
optional settle pause, ``warmup`` calls (allocators, oneDNN primitive caches, compiled graphs),
then calls until both ``iters`` calls and ``min_seconds`` have passed; median, p10 and p90 of the
per-call wall time. Work on a GPU is waited for (``torch.cuda.synchronize``) before each clock
read, else a call would be timed on its kernel launches alone. A noisy machine moves p90 first;
compare medians, and compare backends in one run.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor

from .cost import model_cost
from .spec import MobileNetConfig

__all__ = [
    "CallTimes",
    "Timing",
    "cpu_description",
    "format_per_layer",
    "format_timings",
    "per_layer_profile",
    "plot_latency",
    "run_grid",
    "time_calls",
]


# The CPU flags (Linux names) that decide how int8 and bf16 run: without VNNI, int8 dot products
# go through vpmaddubsw (see mobilenet.export.MATMUL_WEIGHT_QMAX) and run at about half the speed.
_INT8_FLAGS = {"avx512_vnni": "AVX512-VNNI", "avx_vnni": "AVX-VNNI", "amx_int8": "AMX-INT8"}
_BF16_FLAGS = {"avx512_bf16": "AVX512-BF16", "amx_bf16": "AMX-BF16"}


def cpu_description() -> str:
    """The CPU's model name and its int8 / bf16 instructions, e.g. ``"AMD EPYC 7B13; int8: AVX2
    only (no VNNI); bf16: none"``: numbers measured on CPUs that differ here must not be compared."""
    import platform

    name, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and value.strip():
                    name = value.strip()
                elif key.strip() == "flags":
                    flags = set(value.split())
                    break
    except OSError:
        return f"{name}; int8/bf16 features unknown"
    int8 = [label for flag, label in _INT8_FLAGS.items() if flag in flags]
    bf16 = [label for flag, label in _BF16_FLAGS.items() if flag in flags]
    base = "AVX2" if "avx2" in flags else "no AVX2"
    int8_text = ", ".join(int8) if int8 else f"{base} only (no VNNI)"
    return f"{name}; int8: {int8_text}; bf16: {', '.join(bf16) or 'none'}"


@dataclass(frozen=True)
class Timing:
    backend: str
    width_mult: float
    resolution: int
    batch_size: int
    threads: int
    median_ms: float
    p10_ms: float
    p90_ms: float
    calls: int
    mult_adds: int

    @property
    def images_per_s(self) -> float:
        return self.batch_size / (self.median_ms / 1e3)

    @property
    def gmacs_per_s(self) -> float:
        """Achieved billions of multiply-adds per second (the paper's Mult-Adds, at the median)."""
        return self.mult_adds * self.batch_size / (self.median_ms / 1e3) / 1e9

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "images_per_s": self.images_per_s, "gmacs_per_s": self.gmacs_per_s}


def _quantile(sorted_values: Sequence[float], q: float) -> float:
    index = q * (len(sorted_values) - 1)
    lo = int(index)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (index - lo)


@dataclass(frozen=True)
class CallTimes:
    """Per-call wall times in seconds, in call order, and their summary statistics."""

    times: tuple[float, ...]
    synchronized: bool  # whether each call was waited for on the GPU

    @property
    def median(self) -> float:
        return statistics.median(self.times)

    @property
    def p10(self) -> float:
        return _quantile(sorted(self.times), 0.1)

    @property
    def p90(self) -> float:
        return _quantile(sorted(self.times), 0.9)

    def __len__(self) -> int:
        return len(self.times)


def _on_cuda(value: Any) -> bool:
    """Whether a call's result (a tensor, or tensors in a tuple, list or dict) lives on a GPU."""
    if isinstance(value, Tensor):
        return value.is_cuda
    if isinstance(value, (tuple, list)):
        return any(_on_cuda(v) for v in value)
    if isinstance(value, dict):
        return any(_on_cuda(v) for v in value.values())
    return False


def time_calls(
    fn: Callable[[], Any],
    *,
    warmup: int = 10,
    iters: int = 50,
    min_seconds: float = 1.0,
    settle: float = 0.0,
    sync_device: bool | None = None,
    max_calls: int | None = None,
) -> CallTimes:
    """Times ``fn()``: ``settle`` idle seconds, ``warmup`` untimed calls, then at least ``iters``
    calls and ``min_seconds``, at most ``max_calls`` (default ``100 * iters``).

    ``settle``: runtimes keep worker threads spinning for a while after their last call (OpenMP,
    ONNX Runtime, XNNPACK); on a small machine they slow whatever is timed next, so a pause lets
    them sleep. ``sync_device``: wait for the GPU after each call; None (the default) does so when
    a warm-up call returned a CUDA tensor (at least one untimed call is then made).
    """
    if settle > 0:
        time.sleep(settle)
    out = None
    for _ in range(max(warmup, 1 if sync_device is None else 0)):  # detecting needs one call's result
        out = fn()
    sync = _on_cuda(out) if sync_device is None else sync_device
    if sync:
        torch.cuda.synchronize()  # the warm-up's queued kernels must not land in the first timing
    limit = max_calls or 100 * iters
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < iters or time.perf_counter() - start < min_seconds:
        t0 = time.perf_counter()
        fn()
        if sync:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
        if len(times) >= limit:
            break
    return CallTimes(tuple(times), sync)


def summarize(times: CallTimes, *, backend: str, config: MobileNetConfig, batch_size: int, threads: int) -> Timing:
    return Timing(
        backend=backend,
        width_mult=config.width_mult,
        resolution=config.resolution,
        batch_size=batch_size,
        threads=threads,
        median_ms=times.median * 1e3,
        p10_ms=times.p10 * 1e3,
        p90_ms=times.p90 * 1e3,
        calls=len(times),
        mult_adds=model_cost(config).mult_adds,
    )


@torch.inference_mode()
def per_layer_profile(model: torch.nn.Module, x: Tensor, *, iters: int = 20) -> list[dict[str, Any]]:
    """Time each weight layer (conv1, dw2, pw2, ..., fc) with the PyTorch profiler.

    Each layer's module is wrapped in a ``record_function`` range named after its paper row, so the
    time includes everything its conv (BN already folded) costs, and nothing else. Returns rows
    with the layer's kind, Mult-Adds, milliseconds per call and both shares of the total.
    """
    from torch.profiler import ProfilerActivity, profile, record_function

    from .model import fold_batchnorm

    folded = fold_batchnorm(model).to(memory_format=torch.channels_last)  # type: ignore[arg-type]
    x = x.contiguous(memory_format=torch.channels_last)
    config: MobileNetConfig = folded.config
    cost = model_cost(config, resolution=tuple(x.shape[-2:]))  # type: ignore[arg-type]
    handles = []
    for row in cost.layers:
        module = folded.get_submodule(_module_path(row.name, config))
        label = f"mobilenet::{row.name}"

        def enter(_m: Any, _a: Any, label: str = label) -> None:
            ctx = record_function(label)
            ctx.__enter__()
            _m._mobilenet_range = ctx

        def leave(_m: Any, _a: Any, _o: Any) -> None:
            _m._mobilenet_range.__exit__(None, None, None)

        handles += [module.register_forward_pre_hook(enter), module.register_forward_hook(leave)]
    for _ in range(3):
        folded(x)
    try:
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(iters):
                folded(x)
    finally:
        for h in handles:
            h.remove()
    totals = {e.key: e.cpu_time_total for e in prof.key_averages() if e.key.startswith("mobilenet::")}
    layer_us = [totals.get(f"mobilenet::{row.name}", 0.0) / iters for row in cost.layers]
    all_us = sum(layer_us) or 1.0
    return [
        {
            "layer": row.name,
            "kind": row.kind,
            "mult_adds": row.mult_adds,
            "ms": us / 1e3,
            "time_share": us / all_us,
            "mult_adds_share": row.mult_adds / cost.mult_adds,
        }
        for row, us in zip(cost.layers, layer_us)
    ]


def _module_path(layer_name: str, config: MobileNetConfig) -> str:
    from .spec import build_layers

    for layer in build_layers(config):
        if layer.name == layer_name:
            return layer.module
    raise KeyError(layer_name)


def format_per_layer(rows: Sequence[dict[str, Any]]) -> str:
    """Per-layer table, then time and Mult-Adds by kind (the paper's Table 2, measured)."""
    lines = [f"{'layer':<7}{'kind':<6}{'Mult-Adds':>14}{'ms':>9}{'time %':>9}{'MACs %':>9}"]
    for r in rows:
        lines.append(
            f"{r['layer']:<7}{r['kind']:<6}{r['mult_adds']:>14,}{r['ms']:>9.3f}{100 * r['time_share']:>9.1f}{100 * r['mult_adds_share']:>9.1f}"
        )
    lines.append("")
    lines.append(f"{'kind':<24}{'time %':>9}{'MACs %':>9}   (paper, Table 2: 1x1 conv 95% of MACs)")
    names = {"pw": "conv 1x1 (pointwise)", "dw": "conv dw 3x3", "conv": "conv 3x3 (full)", "fc": "fully connected"}
    for kind, name in names.items():
        sel = [r for r in rows if r["kind"] == kind]
        if sel:
            t = 100 * sum(r["time_share"] for r in sel)
            m = 100 * sum(r["mult_adds_share"] for r in sel)
            lines.append(f"{name:<24}{t:>9.1f}{m:>9.1f}")
    return "\n".join(lines)


def run_grid(
    build: Callable[[float, int], torch.nn.Module],
    *,
    widths: Sequence[float],
    resolutions: Sequence[int],
    batch_sizes: Sequence[int],
    threads: Sequence[int],
    backends: Sequence[str],
    calibration: Callable[[int], list[Tensor]] | None = None,
    activation_ranges: dict[str, tuple[float, int]] | None = None,
    warmup: int = 10,
    iters: int = 50,
    min_seconds: float = 1.0,
    report: Callable[[Timing], None] | None = None,
    skipped: Callable[[str, str], None] | None = None,
    keep_grid: bool = True,
) -> list[Timing]:
    """Times every backend over the α x resolution x batch x threads grid.

    ``build(α, resolution)`` makes the model; int8 backends take ``activation_ranges`` (a TF Lite
    model's own) if given, else ``calibration(resolution)`` batches; weights on a uint8 file's grid
    with that file's ranges keep its uint8 scheme in every int8 backend, as export's default does
    (``keep_grid=False``: int8 per-channel instead). A backend that is not installed is reported
    once through ``skipped`` and left out.
    """
    from .deploy import backend_available, optimize

    results: list[Timing] = []
    usable = []
    for backend in backends:
        problem = backend_available(backend)
        if problem:
            if skipped:
                skipped(backend, problem)
        else:
            usable.append(backend)
    for alpha in widths:
        for res in resolutions:
            model = build(alpha, res)
            for backend in usable:
                int8 = "int8" in backend
                ranges = activation_ranges if int8 else None
                calib = calibration(res) if calibration and int8 and ranges is None else None
                predictor = optimize(
                    model,  # type: ignore[arg-type]
                    backend,
                    threads=max(threads),
                    calibration=calib,
                    activation_ranges=ranges,
                    resolution=res,
                    keep_grid=keep_grid,
                )
                for n_threads in threads:
                    runner = predictor.with_threads(n_threads)
                    for batch in batch_sizes:
                        x = torch.rand(batch, model.config.in_chans, res, res) * 2 - 1  # type: ignore[union-attr]
                        timed = _time_with_raw(runner, x, warmup=warmup, iters=iters, min_seconds=min_seconds)
                        for suffix, times in timed:
                            timing = summarize(
                                times,
                                backend=backend + suffix,
                                config=model.config.replace(resolution=res),  # type: ignore[union-attr]
                                batch_size=batch,
                                threads=n_threads,
                            )
                            results.append(timing)
                            if report:
                                report(timing)
    return results


def _time_with_raw(runner: Any, x: Tensor, *, warmup: int, iters: int, min_seconds: float) -> list[tuple[str, CallTimes]]:
    """``runner(x)`` timed, and, for a runtime (ONNX Runtime, OpenVINO), the runtime's own call on
    the same input beside it (a row named "<backend> raw"): the difference is what our wrapper
    costs. The two alternate over three rounds, so a change in the machine's load hits both."""
    raw = runner.raw_call(x) if hasattr(runner, "raw_call") else None
    if raw is None:
        return [("", time_calls(lambda: runner(x), warmup=warmup, iters=iters, min_seconds=min_seconds))]
    ours: list[float] = []
    theirs: list[float] = []
    for _ in range(3):
        ours += time_calls(lambda: runner(x), warmup=warmup, iters=max(1, iters // 3), min_seconds=min_seconds / 3).times
        theirs += time_calls(raw, warmup=warmup, iters=max(1, iters // 3), min_seconds=min_seconds / 3).times
    return [("", CallTimes(tuple(ours), False)), (" raw", CallTimes(tuple(theirs), False))]


# (heading, width, format) per column; columns are joined by a space, so a value wider than its
# column (batch 100000, 1000 threads, a long backend name) pushes the row out but never runs into
# its neighbour.
_COLUMNS = (
    ("backend", 13, "<"),
    ("α", 4, ">g"),
    ("res", 4, ">"),
    ("batch", 5, ">"),
    ("thr", 3, ">"),
    ("median ms", 10, ">.3f"),
    ("p10", 7, ">.3f"),
    ("p90", 7, ">.3f"),
    ("img/s", 8, ">.1f"),
    ("GMAC/s", 7, ">.1f"),
    ("MMACs", 7, ">.1f"),
)


def format_timings(rows: Sequence[Timing]) -> str:
    head = " ".join(f"{name:{'<' if align.startswith('<') else '>'}{width}}" for name, width, align in _COLUMNS)
    return "\n".join([head, *(format_timing(t) for t in rows)])


def format_timing(t: Timing) -> str:
    values = (t.backend, t.width_mult, t.resolution, t.batch_size, t.threads, t.median_ms, t.p10_ms, t.p90_ms)
    values += (t.images_per_s, t.gmacs_per_s, t.mult_adds / 1e6)
    return " ".join(f"{v:{align[0]}{width}{align[1:]}}" for v, (_, width, align) in zip(values, _COLUMNS))


def plot_latency(rows: Sequence[Timing], path: Any) -> Any:
    """Latency against Mult-Adds over the α x ρ grid (log-log): a line per backend and α, each point
    labelled by its resolution. Batch size and threads: those of the first row."""
    from .plots import _pyplot, _save

    plt = _pyplot()
    first = rows[0]
    chosen = [t for t in rows if t.batch_size == first.batch_size and t.threads == first.threads]
    fig, ax = plt.subplots(figsize=(7.5, 5))
    backends = list(dict.fromkeys(t.backend for t in chosen))
    for b_index, backend in enumerate(backends):
        for alpha in sorted({t.width_mult for t in chosen if t.backend == backend}, reverse=True):
            pts = sorted((t for t in chosen if t.backend == backend and t.width_mult == alpha), key=lambda t: t.mult_adds)
            ax.plot(
                [t.mult_adds / 1e6 for t in pts],
                [t.median_ms for t in pts],
                marker="osD^v<>x"[b_index % 8],
                color=f"C{b_index % 10}",
                alpha=0.5 + 0.5 * alpha / max(t.width_mult for t in chosen),
                label=f"{backend}, α = {alpha:g}",
            )
            for t in pts:
                ax.annotate(
                    str(t.resolution), (t.mult_adds / 1e6, t.median_ms), textcoords="offset points", xytext=(4, 4), fontsize=7
                )
    ax.set_xscale("log")
    ax.set_yscale("log")
    from matplotlib.ticker import NullFormatter

    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set(
        xlabel="Mult-Adds (millions)",
        ylabel="median latency (ms)",
        title=f"MobileNet v1 latency vs Mult-Adds (batch {first.batch_size}, {first.threads} threads)",
    )
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    out = _save(fig, path)
    plt.close(fig)
    return out
