"""The int8 scheme of our TF Lite export, written once: the writer (:mod:`mobilenet.litert`) emits
it, and :class:`FakeQuantMobileNet` simulates it in float for quantization-aware training (QAT)
and for checking in PyTorch what an int8 file will compute.

The scheme:

- weights: int8, symmetric, one scale per output channel, ``scale = max|w| / 127``, taken of the
  conv with its BN folded in (BN frozen: QAT fine-tunes a trained network, as TF-slim's did);
- activations: int8, asymmetric, one (scale, zero point) per tensor from a (low, high) range
  that always holds 0.0 exactly (zero padding must stay exact): the input, each conv's output
  after its ReLU/ReLU6, and the classifier's output;
- the global average pool keeps its input's (scale, zero point), as TF Lite's int8 pool must.

Fake quantization rounds a float tensor onto its int8 grid and back, and lets gradients through
unchanged inside the range (the straight-through estimator), so training sees the rounding and
clipping the integer runtime will apply and learns weights that survive it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .model import ConvBNAct, DepthwiseSeparable, MobileNetV1

__all__ = [
    "CALIBRATION_METHODS",
    "RANGES_KEY",
    "FakeQuantMobileNet",
    "activation_keys",
    "calibrate_ranges",
    "channel_scales",
    "conv_units",
    "grid_step",
    "int8_grid",
    "layer_weights",
    "on_uint8_grid",
    "qparams",
    "ranges_from_metadata",
    "ranges_to_metadata",
    "split_for_int8",
    "uint8_grid",
    "uint8_qparams",
    "with_input_range",
]

CALIBRATION_METHODS = ("minmax", "percentile")
#: Weights-file metadata holding the activation ranges a QAT run learned (JSON {key: [low, high]}).
RANGES_KEY = "mobilenet_int8_ranges"
QMIN, QMAX = -128, 127


def conv_units(model: MobileNetV1) -> list[tuple[str, ConvBNAct]]:
    """Every conv → BN → activation unit, in order, by module path ("stem", "blocks.3.dw", ...)."""
    units: list[tuple[str, ConvBNAct]] = [("stem", model.stem)]  # type: ignore[list-item]
    for i, block in enumerate(model.blocks):
        if isinstance(block, DepthwiseSeparable):
            units += [(f"blocks.{i}.dw", block.dw), (f"blocks.{i}.pw", block.pw)]
        else:
            units.append((f"blocks.{i}", block))  # type: ignore[arg-type]
    return units


def activation_keys(model: MobileNetV1) -> list[str]:
    """The activations that carry their own range: ``input``, each unit, ``classifier``."""
    keys = ["input", *(name for name, _ in conv_units(model))]
    return keys + (["classifier"] if model.config.num_classes > 0 else [])


def qparams(low: float, high: float) -> tuple[float, int]:
    """Asymmetric int8 (scale, zero point) for a range, widened to hold 0.0 exactly."""
    low, high = min(low, 0.0), max(high, 0.0)
    scale = (high - low) / 255 if high > low else 1.0
    zero = int(np.clip(round(-128 - low / scale), QMIN, QMAX))
    return float(scale), zero


def uint8_qparams(ranges: Mapping[str, tuple[float, float]]) -> dict[str, tuple[float, int]]:
    """(low, high) ranges as uint8 (scale, zero point), the form Google's quantized TF Lite files
    give (:func:`mobilenet.weights.tflite.activation_quantization`), which the tflite-int8 and
    onnx-int8 exporters take as ``activation_ranges``."""
    out = {}
    for key, (low, high) in ranges.items():
        scale, zero = qparams(low, high)
        out[key] = (scale, zero + 128)
    return out


def _check_ranges(ranges: Mapping[str, tuple[float, float]]) -> None:
    for key, (low, high) in ranges.items():
        if not (np.isfinite(low) and np.isfinite(high)) or low > high:
            raise ValueError(f"int8 range for {key!r} is ({low}, {high}); it must be finite with low <= high")


def ranges_to_metadata(ranges: Mapping[str, tuple[float, float]]) -> dict[str, str]:
    return {RANGES_KEY: json.dumps({k: [float(lo), float(hi)] for k, (lo, hi) in ranges.items()})}


def ranges_from_metadata(metadata: Mapping[str, str]) -> dict[str, tuple[float, float]] | None:
    """The QAT ranges a weights file carries, or None if it has none."""
    if RANGES_KEY not in metadata:
        return None
    try:
        raw = json.loads(metadata[RANGES_KEY])
        ranges = {str(k): (float(v[0]), float(v[1])) for k, v in raw.items()}
    except (json.JSONDecodeError, TypeError, ValueError, IndexError, AttributeError) as exc:
        raise ValueError(f"the weights' {RANGES_KEY} metadata is unreadable ({exc})") from None
    _check_ranges(ranges)
    return ranges


def int8_grid(w: np.ndarray, kmax: int = 127) -> float | None:
    """The scale of an int8 grid through 0 holding every value of one channel (an int8 file's
    dequantized weights: ``q · scale``, |q| <= ``kmax``, the largest |q| = k), or None. The finest
    such grid, so the bias keeps its precision too."""
    top = float(np.abs(w).max())
    if top == 0:
        return None
    k = np.arange(kmax, 0, -1, dtype=np.float64)
    probe = w[:16].astype(np.float64)[None, :] * k[:, None] / top  # a cheap first cut on a few values
    for kk in k[np.abs(probe - np.round(probe)).max(axis=1) < 1e-3]:
        units = w.astype(np.float64) * kk / top
        if np.abs(units - np.round(units)).max() < 1e-3:
            return top / kk
    return None


def channel_scales(w: np.ndarray, axis: int, *, qmax: int = 127, qmin: int | None = None, per_channel: bool = True) -> np.ndarray:
    """One symmetric int8 scale per slice of ``w`` along ``axis`` (one per tensor if not
    ``per_channel``), so that every weight rounds into ``[qmin, qmax]`` (``qmin`` defaults to
    ``-qmax``): ``max|w| / qmax``, except where the weights already lie on a quantized model's
    grid. Then a channel whose values fit keeps that grid exactly and no rounding is added:
    Google's uint8 files (one step for the whole tensor, :func:`grid_step`) and our own int8
    files brought back as weights (a step per channel, :func:`int8_grid`). Re-rounding Google's
    QAT weights onto a new grid costs 0.25-128 about 10 points of top-1 agreement with float."""
    qmin = -qmax if qmin is None else qmin
    other = tuple(i for i in range(w.ndim) if i != axis)
    absmax = np.abs(w).max(axis=other).astype(np.float64)
    if not per_channel:
        return np.full_like(absmax, absmax.max() / qmax)
    scale = absmax / qmax
    step = grid_step(w)
    if step is not None:
        fits = (w.max(axis=other) <= (qmax + 0.01) * step) & ((w.min(axis=other) / step).round() >= qmin)
        return np.where(fits, step, scale)
    for c in range(w.shape[axis]):
        own = int8_grid(np.take(w, c, axis=axis).ravel(), kmax=qmax)
        if own is not None:
            scale[c] = own
    return scale


#: The largest share of a conv's input channels that :func:`split_for_int8` feeds twice (the
#: first conv and the classifier aside); a conv that would need more is rounded to the smaller
#: range instead. Google's QAT weights need 3-36%
#: in the pointwise convs (1.0-224, 0.5-160); float-trained and random weights need nearly all.
MAX_FED_TWICE = 0.5


class _FedTwice(nn.Module):
    """A layer fed its input and, once more, the channels ``index`` of it (repeats allowed)."""

    def __init__(self, layer: nn.Module, index: Tensor) -> None:
        super().__init__()
        self.layer = layer
        self.register_buffer("index", index)

    def forward(self, x: Tensor) -> Tensor:
        return self.layer(torch.cat([x, x.index_select(1, self.index)], 1))


def _int8_units(weight: Tensor, qmax: int = 127) -> tuple[np.ndarray, np.ndarray]:
    """Integer weights within ``±qmax`` per output channel (:func:`channel_scales`), and their scales."""
    w = weight.detach().double().numpy()
    scale = channel_scales(w, 0, qmax=qmax)
    scale = np.where(scale > 0, scale, 1.0)
    q = np.clip(np.round(w / scale.reshape((-1,) + (1,) * (w.ndim - 1))), -qmax, qmax)
    return q, scale


def _with_weight(layer: nn.Module, weight: np.ndarray, bias: np.ndarray | None) -> nn.Module:
    """``layer`` (a Conv2d or Linear) rebuilt around a weight of another shape."""
    w = torch.from_numpy(weight).float()
    if isinstance(layer, nn.Linear):
        new: nn.Module = nn.Linear(w.shape[1], w.shape[0], bias=bias is not None)
    else:
        assert isinstance(layer, nn.Conv2d)
        groups = w.shape[0] if layer.groups > 1 else 1
        new = nn.Conv2d(
            w.shape[1] * groups, w.shape[0], layer.kernel_size, layer.stride, layer.padding, groups=groups, bias=bias is not None
        )  # type: ignore[arg-type]
    new.weight.data.copy_(w)  # type: ignore[operator]
    if bias is not None:
        new.bias.data.copy_(torch.from_numpy(bias).float())  # type: ignore[union-attr,operator]
    return new.requires_grad_(False)


def _pieces(units: np.ndarray, half: int) -> list[np.ndarray]:
    """``units`` as a sum of pieces within ``±half``: the first ``clip(units, ±half)``, each next
    one the same of what is left, until nothing is."""
    pieces, rest = [], units
    while True:
        piece = np.clip(rest, -half, half)
        pieces.append(piece)
        rest = rest - piece
        if not rest.any():
            return pieces


def split_for_int8(folded: MobileNetV1, half: int, *, exact: bool = False) -> MobileNetV1:
    """A copy of a BN-folded model that computes what its 8-bit weights compute (per output
    channel, :func:`channel_scales`, Google's grid kept), with no weight of a matrix product (the
    standard and pointwise convs, the classifier) above ``half`` in magnitude.

    Each 8-bit weight ``q`` is stored as ``hi = clip(q, -half, half)`` plus ``lo = q - hi``. The
    input channels where some ``lo`` is non-zero are fed to the layer twice, once against ``hi``
    and once against ``lo``: the layer before it produces those channels a second time (a
    pointwise conv repeats the rows, a depthwise conv between them repeats its filters), so no
    data is copied at run time; the first conv picks them from the image. (The classifier's come
    from the last pointwise conv, which then costs up to twice its Mult-Adds, 7-9% of the network's;
    picking them from the pooled features instead measured 3% faster at 1.0-224 but up to 10%
    slower at 0.25-128, where the two extra ops weigh more than the arithmetic.) A conv after the first
    that would read more than :data:`MAX_FED_TWICE` of its inputs twice is rounded to ``±half``.
    Depthwise convs keep their 8 bits as they are.

    ``exact`` (weights on a uint8 file's grid, :func:`on_uint8_grid`): every matrix product's
    weights keep that grid's integers, which span up to 255 steps from zero where int8 holds 127:
    each weight is a sum of as many pieces within ``±half`` as it needs (up to ``ceil(255 / half)``,
    four at ±64), an input channel is fed once per piece, and no conv is rounded. The depthwise convs are left to be stored as
    uint8 on their grid (no int8 per-channel form holds them all)."""
    import copy

    model = copy.deepcopy(folded).eval()
    units = [unit for _, unit in conv_units(model)]
    layers: list[nn.Module] = [unit.conv for unit in units]
    classifier = isinstance(model.classifier, nn.Linear)
    if classifier:
        layers.append(model.classifier)
    weights = [layer.weight.detach().double().numpy() for layer in layers]  # type: ignore[union-attr]
    biases = [None if layer.bias is None else layer.bias.detach().double().numpy() for layer in layers]  # type: ignore[union-attr]
    matmul = [not (isinstance(layer, nn.Conv2d) and layer.groups > 1) for layer in layers]
    scales: list[np.ndarray | None] = [None] * len(layers)
    extra = [np.zeros(0, dtype=np.int64) for _ in layers]  # output channels produced once more (repeats allowed)
    fed: list[list[np.ndarray]] = [[] for _ in layers]  # per piece after the first: the input channels it reads
    fed_again = [np.zeros(0, dtype=np.int64) for _ in layers]  # those, one piece after another
    for j, layer in enumerate(layers):
        if not matmul[j]:
            continue
        weights[j], scales[j] = _int8_units(layer.weight, 255 if exact else 127)  # type: ignore[arg-type]
        pieces = _pieces(weights[j], half)
        needed = [np.abs(piece).reshape(piece.shape[0], piece.shape[1], -1).max(axis=(0, 2)) > 0 for piece in pieces[1:]]
        if not exact and needed and needed[0].mean() > MAX_FED_TWICE and 0 < j < len(units):
            # Float-trained weights: nearly every input channel meets some output channel's large
            # weight, and feeding them all twice would double the layer; 7 bits cost less. (The
            # first conv is always split, 7 bits there cost 1.5-3.5 points of agreement with
            # float, see below; so is the classifier, which was not measured on its own.)
            weights[j], scales[j] = _int8_units(layer.weight, half)  # type: ignore[arg-type]
            continue
        index = [np.flatnonzero(n) for n in needed]
        count = sum(i.size for i in index)
        # CPU kernels run whole vectors of 16 channels fastest: the first piece after the first
        # with channels to spare reads a few more (zeros there), making the count a multiple of 16.
        roomy = [k for k, n in enumerate(needed) if not n.all()]
        if count % 16 and roomy:
            spare = np.flatnonzero(~needed[roomy[0]])[: 16 - count % 16]
            index[roomy[0]] = np.sort(np.concatenate([index[roomy[0]], spare]))
        fed[j] = index
        fed_again[j] = np.concatenate(index) if index else fed_again[j]
        p = j - 1
        while fed_again[j].size and p >= 0:  # back through the depthwise convs to a matrix product
            extra[p] = fed_again[j]
            if matmul[p]:
                break
            p -= 1
    for j, layer in enumerate(layers):
        w, b, scale = weights[j], biases[j], scales[j]
        if extra[j].size:
            w = np.concatenate([w, w[extra[j]]], axis=0)
            b = None if b is None else np.concatenate([b, b[extra[j]]])
            scale = None if scale is None else np.concatenate([scale, scale[extra[j]]])
        if scale is not None:  # a matrix product: 8-bit units, split where needed, back to floats
            pieces = _pieces(w, half)  # the same number as above: ``extra`` only repeats rows
            assert len(pieces) == len(fed[j]) + 1
            columns = [pieces[0]] + [piece[:, index] for piece, index in zip(pieces[1:], fed[j], strict=True)]
            w = np.concatenate(columns, axis=1) * scale.reshape((-1,) + (1,) * (w.ndim - 1))
        new = _with_weight(layer, w, b)
        if j == 0 and fed_again[0].size:
            # The first conv reads the image, which no layer could produce twice: it picks the
            # channels itself. That copy of the image costs about 10% of 1.0-224's int8 time;
            # rounding its weights to 7 bits instead cost 1.5-3.5 points of agreement with float.
            new = _FedTwice(new, torch.from_numpy(fed_again[0]).long())
        if j < len(units):
            units[j].conv = new
        else:
            model.classifier = new
    return model


def grid_step(w: np.ndarray) -> float | None:
    """The step of a uniform grid through 0 that every weight lies on (a quantized model's
    dequantized weights: ``(q - zero) · scale``), or None for float-trained weights."""
    values = np.unique(np.abs(w.astype(np.float64)))
    gaps = np.diff(values)
    if gaps.size == 0 or gaps.max() <= 0:
        return None
    rough = float(gaps[gaps > values[-1] * 1e-6].min())
    units = np.round(values / rough)
    # Least squares over every value: float32 storage blurs the single smallest gap.
    step = float((values * units).sum() / (units * units).sum())
    if units[-1] > 255 or np.abs(values / step - units).max() > 1e-3:
        return None
    return step


def with_input_range(ranges: Mapping[str, tuple[float, int]]) -> tuple[dict[str, tuple[float, int]], int]:
    """Stored activation ranges, (scale, zero point) by module path, with the input's [-1, 1]
    mapping (scale 1/128) added unless they carry their own (a QAT run's do); and the lowest
    quantized value of their kind: 0 for uint8 ranges (Google's files, ``--qat`` runs), -128 for
    an int8 file's brought back as weights (there a ReLU's output has zero point -128)."""
    lowest = -128 if any(zero < 0 for _, zero in ranges.values()) else 0
    return {"input": (1 / 128, 128 + lowest), **ranges}, lowest


def uint8_grid(w: np.ndarray) -> tuple[float, int] | None:
    """(scale, zero point) of a uint8 grid holding every value of ``w`` exactly (a uint8 file's
    dequantized weights: ``(q - zero) · scale``, ``0 <= q <= 255``), or None.

    A tensor that does not reach both ends of [0, 255] fits under several zero points; each
    gives the same products (``q - zero`` is the same integer), and 128 is kept where it fits."""
    step = grid_step(w)
    if step is None:
        return None
    units = np.round(w.astype(np.float64) / step)
    low, high = int(units.min()), int(units.max())
    if high - low > 255:
        return None
    return step, int(np.clip(128, -low if high - low == 255 else 1 - low, 255 - high))


def layer_weights(model: nn.Module) -> list[np.ndarray]:
    """The weights of every conv and linear layer of ``model``, in order, as float32 arrays."""
    return [m.weight.detach().float().numpy() for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def on_uint8_grid(weights: Iterable[Any], ranges: Mapping[str, tuple[float, int]]) -> bool:
    """Whether ``ranges`` are a uint8 file's (every zero point in [0, 255]) and every weight tensor
    lies on a uint8 grid (:func:`uint8_grid`): what an int8 writer needs to keep that file's own
    arithmetic (Google's quantized MobileNets, imported, with their ranges)."""
    return all(0 <= zero <= 255 for _, zero in ranges.values()) and all(
        uint8_grid(np.asarray(w, dtype=np.float32)) is not None for w in weights
    )


def calibrate_ranges(
    model: MobileNetV1, batches: Iterable[Tensor], *, method: str = "minmax", percentile: float = 99.99
) -> dict[str, tuple[float, float]]:
    """(low, high) of each activation the int8 graph stores, seen on ``batches`` of preprocessed
    images: ``input``, each conv unit's output (after its activation), ``global_pool`` and
    ``classifier``.

    ``minmax`` covers every value seen. ``percentile`` clips each tensor to the given percentile
    of its values (the mean over batches): a few outliers then cost fewer rounding steps for the
    rest.
    """
    if method not in CALIBRATION_METHODS:
        raise ValueError(f"calibration method {method!r}: choose from {', '.join(CALIBRATION_METHODS)}")
    ranges: dict[str, list[tuple[float, float]]] = {}

    def observe(key: str, t: Tensor) -> None:
        t = t.detach().float().flatten()
        if method == "minmax":
            lo, hi = float(t.min()), float(t.max())
        else:
            if t.numel() > 2_000_000:  # torch.quantile's limit is 16M; a strided sample is plenty
                t = t[:: t.numel() // 2_000_000 + 1]
            q = torch.tensor([(100 - percentile) / 100, percentile / 100])
            lo, hi = (float(v) for v in torch.quantile(t, q))
        ranges.setdefault(key, []).append((lo, hi))

    handles = []
    modules: dict[str, nn.Module] = dict(conv_units(model))
    modules.update({"global_pool": model.global_pool, "classifier": model.classifier})
    for key, module in modules.items():
        handles.append(module.register_forward_hook(lambda _m, _i, out, key=key: observe(key, out)))
    seen = 0
    try:
        with torch.inference_mode():
            for batch in batches:
                if isinstance(batch, (tuple, list)):
                    batch = batch[0]
                observe("input", batch)
                model(batch.float())
                seen += int(batch.shape[0])
    finally:
        for h in handles:
            h.remove()
    if not seen:
        raise ValueError("int8 calibration saw no images; pass a folder with some (a few hundred is typical)")
    if method == "minmax":
        return {k: (min(v[0] for v in vs), max(v[1] for v in vs)) for k, vs in ranges.items()}
    return {k: (float(np.mean([v[0] for v in vs])), float(np.mean([v[1] for v in vs]))) for k, vs in ranges.items()}


def _folded(unit: ConvBNAct) -> tuple[Tensor, Tensor]:
    """The unit's conv weight and bias with its BN (in eval mode) folded in, differentiably."""
    conv, bn = unit.conv, unit.bn
    weight = conv.weight
    bias = conv.bias if conv.bias is not None else torch.zeros(conv.out_channels, device=weight.device, dtype=weight.dtype)
    if isinstance(bn, nn.BatchNorm2d):
        if bn.training:
            raise RuntimeError(
                "quantization-aware training folds BN into the convs, so BN must be frozen: put the BN layers in eval "
                "mode (mobilenet.train.set_train_mode(model, 'frozen'), or model.eval())"
            )
        gain = bn.weight / torch.sqrt(bn.running_var + bn.eps)  # type: ignore[operator]
        weight = weight * gain.reshape(-1, 1, 1, 1)
        bias = (bias - bn.running_mean) * gain + bn.bias  # type: ignore[operator]
    return weight, bias


def _fake_quant_weight(weight: Tensor, exact: bool = False) -> Tensor:
    """Symmetric int8 per output channel (axis 0), scale = max|w| / 127. ``exact`` (evaluation):
    the writer's own scales, :func:`channel_scales`, which keep a quantized model's grid where the
    weights lie on one (a fine-tune whose best is its classifier-first stage still holds Google's
    backbone exactly); too slow to recompute at every training step, where weights leave any grid."""
    if exact:
        found = channel_scales(weight.detach().double().cpu().numpy(), 0, qmax=127, qmin=-128)
        scale = torch.from_numpy(np.where(found > 0, found, 1.0)).to(weight.device, torch.float32)
    else:
        absmax = weight.detach().abs().flatten(1).amax(1).float()
        scale = torch.where(absmax > 0, absmax / 127, torch.ones_like(absmax))
    zero = torch.zeros_like(scale, dtype=torch.int32)
    return torch.fake_quantize_per_channel_affine(weight, scale, zero, 0, -128, 127)


class FakeQuantMobileNet(nn.Module):
    """``model`` computing as its int8 TF Lite export will: BN folded, weights and activations
    rounded to int8 in float. It shares ``model``'s parameters, so an optimizer over either trains
    both.

    ``ranges`` ((low, high) per :func:`activation_keys`) fix the activation grids; in training mode
    each is moved towards the batch's min and max by ``momentum`` every step (an exponential
    moving average, as TF-slim's quantization-aware training did). :meth:`ranges` reads them back.
    """

    def __init__(self, model: MobileNetV1, ranges: Mapping[str, tuple[float, float]], *, momentum: float = 0.01) -> None:
        super().__init__()
        self.model = model
        self.config = model.config
        self.keys = activation_keys(model)
        missing = [k for k in self.keys if k not in ranges]
        if missing:
            raise ValueError(f"int8 ranges are missing for {', '.join(missing)}; they do not come from this model")
        _check_ranges(ranges)
        self.momentum = momentum
        self.register_buffer("range_table", torch.tensor([list(ranges[k]) for k in self.keys], dtype=torch.float32))
        self._units = conv_units(model)

    def ranges(self) -> dict[str, tuple[float, float]]:
        """(low, high) per activation, ``global_pool`` included (the last conv's: the pool keeps it)."""
        table = self.range_table.detach().cpu().tolist()
        out = {k: (float(lo), float(hi)) for k, (lo, hi) in zip(self.keys, table)}
        out["global_pool"] = out[self._units[-1][0]]
        return out

    def _observe(self, x: Tensor, index: int) -> None:
        # Under DDP, rank 0's buffers are broadcast before every forward: all ranks round with the
        # same grids, and rank 0's batches move them.
        with torch.no_grad():
            seen = torch.stack([x.detach().min(), x.detach().max()]).float()
            self.range_table[index].lerp_(seen, self.momentum)

    def _quant(self, x: Tensor, index: int, observe: bool = True) -> Tensor:
        if observe and self.training:
            self._observe(x, index)
        low, high = self.range_table[index].clamp(max=0.0)[0], self.range_table[index].clamp(min=0.0)[1]
        scale = torch.where(high > low, (high - low) / 255, torch.ones_like(high))
        zero = torch.clamp(torch.round(-128 - low / scale), QMIN, QMAX).to(torch.int32)
        return torch.fake_quantize_per_tensor_affine(x, scale.float(), zero, QMIN, QMAX)

    def forward(self, x: Tensor) -> Tensor:
        model = self.model
        model._check_input(x)
        x = self._quant(x, 0)
        for i, (_, unit) in enumerate(self._units, start=1):
            pad = unit._modules.get("pad")
            if pad is not None:
                x = pad(x)
            conv: nn.Conv2d = unit.conv  # type: ignore[assignment]
            weight, bias = _folded(unit)
            x = F.conv2d(
                x, _fake_quant_weight(weight, not self.training), bias, conv.stride, conv.padding, conv.dilation, conv.groups
            )
            x = self._quant(unit.act(x), i)
        # TF Lite's int8 average pool rounds onto its input's grid.
        x = self._quant(model.global_pool(x), len(self._units), observe=False)
        pooled = torch.flatten(x, 1)
        x = model.dropout(pooled)
        if model.config.num_classes == 0:
            return x
        fc: nn.Linear = model.classifier  # type: ignore[assignment]
        weight = _fake_quant_weight(fc.weight, not self.training)
        logits = F.linear(x, weight, fc.bias)
        if self.training and model.dropout.p > 0:
            # Dropout's 1/(1-p) scaling widens the training logits; the range is of the logits
            # the exported model will produce, without it.
            self._observe(F.linear(pooled, weight, fc.bias), len(self.keys) - 1)
            return self._quant(logits, len(self.keys) - 1, observe=False)
        return self._quant(logits, len(self.keys) - 1)

    def extra_repr(self) -> str:
        return f"int8 simulation: {len(self.keys)} activation ranges, momentum={self.momentum}"
