"""The int8 simulation (mobilenet.quantize) against the TF Lite writer run in LiteRT, and the
pieces QAT stands on: ranges in weights metadata, BN folding, range updates, the classifier kept
or replaced. Small random models: no data, no training."""

from __future__ import annotations

import importlib.util
import json

import pytest
import torch

from mobilenet.data import DataSplit
from mobilenet.deploy import settle_batchnorm
from mobilenet.model import MobileNetV1, fold_batchnorm
from mobilenet.quantize import (
    RANGES_KEY,
    FakeQuantMobileNet,
    calibrate_ranges,
    qparams,
    ranges_from_metadata,
    ranges_to_metadata,
    uint8_qparams,
)
from mobilenet.train import TrainConfig, build_model

has_litert = importlib.util.find_spec("ai_edge_litert") is not None


def _model(padding: str = "tf", activation: str = "relu6", classes: int = 5) -> MobileNetV1:
    torch.manual_seed(0)
    model = MobileNetV1(width_mult=0.25, num_classes=classes, padding=padding, activation=activation, resolution=64)
    return settle_batchnorm(model, 64).eval()  # type: ignore[return-value]


def _batches(n: int = 4, seed: int = 1) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.rand(8, 3, 64, 64, generator=g) * 2 - 1 for _ in range(n)]


@pytest.mark.skipif(not has_litert, reason="the mobile extra (ai-edge-litert) is not installed")
@pytest.mark.parametrize(("padding", "activation"), [("symmetric", "relu"), ("tf", "relu6"), ("keras", "relu6")])
def test_simulation_is_the_tflite_int8_arithmetic(tmp_path, padding, activation):
    """Layer by layer, LiteRT's int8 tensors (reference kernels) equal the simulation's to one
    step at rounding ties. Deeper in a random network those ties compound (this is why the
    whole-network check is on a trained model, in test_finetune.py); here the first layers show
    the arithmetic is the same. And the ranges a QAT run saves (metadata → uint8 → writer) give
    the calibrated file back."""
    import numpy as np
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    from mobilenet.litert import LiteRTModel, export_tflite

    model = _model(padding, activation)
    calibration = _batches()
    ranges = calibrate_ranges(fold_batchnorm(model), calibration)
    sim = FakeQuantMobileNet(model, ranges).eval()
    x = _batches(1, seed=7)[0][:1]
    path = export_tflite(model, tmp_path / "c.tflite", int8=True, calibration=calibration)

    runtime = Interpreter(
        model_path=str(path), experimental_preserve_all_tensors=True, experimental_op_resolver_type=OpResolverType.BUILTIN_REF
    )
    runtime.allocate_tensors()
    given = runtime.get_input_details()[0]
    scale, zero = given["quantization"]
    runtime.set_tensor(given["index"], np.clip(np.round(x.permute(0, 2, 3, 1).numpy() / scale) + zero, -128, 127).astype(np.int8))
    runtime.invoke()
    tensors = {d["name"]: d for d in runtime.get_tensor_details()}
    simulated: dict[str, torch.Tensor] = {}
    quantize_activation = sim._quant

    def record(t: torch.Tensor, index: int, observe: bool = True) -> torch.Tensor:
        out = quantize_activation(t, index, observe)
        if 1 <= index <= 3:
            simulated[sim.keys[index]] = out
        return out

    sim._quant = record  # type: ignore[method-assign]
    with torch.no_grad():
        sim(x)
    for name in ("stem", "blocks.0.dw", "blocks.0.pw"):
        detail = tensors[name]
        scale, zero = detail["quantization"]
        litert = (runtime.get_tensor(detail["index"]).astype(np.float32) - zero) * scale
        steps = np.abs(litert - simulated[name].permute(0, 2, 3, 1).numpy()) / scale
        assert steps.max() <= 2.01 and (steps > 0.5).mean() <= 0.02, (name, steps.max(), (steps > 0.5).mean())

    stored = ranges_from_metadata(ranges_to_metadata(sim.ranges()))
    assert stored == sim.ranges()
    again = export_tflite(model, tmp_path / "q.tflite", int8=True, activation_ranges=uint8_qparams(stored))
    images = torch.cat(_batches(2, seed=9))
    step = qparams(*ranges["classifier"])[0]
    assert float((LiteRTModel(again)(images) - LiteRTModel(path)(images)).abs().max()) <= step * 1.01


def test_ranges_move_in_training_only_and_bn_must_be_frozen():
    model = _model()
    sim = FakeQuantMobileNet(model, calibrate_ranges(fold_batchnorm(model), _batches()))
    before = sim.range_table.clone()
    sim.eval()
    with torch.no_grad():
        sim(_batches(1, seed=3)[0] * 3)
    assert torch.equal(sim.range_table, before)
    sim.train()
    with pytest.raises(RuntimeError, match="BN must be frozen"):
        sim(_batches(1)[0])
    for m in sim.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.eval()
    out = sim(_batches(1, seed=3)[0] * 3)
    assert not torch.equal(sim.range_table, before)
    out.sum().backward()  # gradients pass the rounding: the convs and the BN scales both get them
    assert model.stem.conv.weight.grad is not None and model.stem.conv.weight.grad.abs().sum() > 0
    assert model.stem.bn.weight.grad is not None


def test_ranges_metadata_is_checked():
    model = _model()
    ranges = calibrate_ranges(fold_batchnorm(model), _batches(1))
    assert ranges_from_metadata({}) is None
    with pytest.raises(ValueError, match="unreadable"):
        ranges_from_metadata({RANGES_KEY: "{not json"})
    with pytest.raises(ValueError, match="low <= high"):
        ranges_from_metadata({RANGES_KEY: json.dumps({"stem": [1.0, -1.0]})})
    partial = {k: v for k, v in ranges.items() if k != "classifier"}
    with pytest.raises(ValueError, match="missing for classifier"):
        FakeQuantMobileNet(model, partial)


def _split(classes: list[str]) -> DataSplit:
    return DataSplit(train=[], val=[], classes=classes, name="stub")  # type: ignore[arg-type]


def test_classifier_kept_only_for_the_same_classes_with_the_backbone_training():
    classes = ["a", "b", "c", "d", "e"]
    for split_classes, freeze, kept in (
        (classes, False, True),
        (["a", "b", "c", "d", "x"], False, False),
        (classes, True, False),  # a linear probe measures the features: a new classifier
    ):
        trained = _model()
        trained.config = trained.config.replace(class_names=tuple(classes))
        head = trained.classifier.weight.detach().clone()
        cfg = TrainConfig(weights="w.safetensors", freeze_backbone=freeze, progress=False)
        model, resolved = build_model(cfg, _split(split_classes), trained)
        assert torch.equal(model.classifier.weight, head) is kept, (split_classes, freeze)
        assert (resolved.probe_epochs == 0) is (kept or freeze)
        assert model.config.class_names == tuple(split_classes)
