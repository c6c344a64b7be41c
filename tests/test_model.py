"""The nn.Module against the spec: structure, shapes, padding, FLOPs and parameter counts."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from mobilenet import MobileNetV1, mobilenet_v1, model_cost
from mobilenet.model import TFSamePad2d

ALPHAS = [0.25, 0.5, 0.75, 1.0, 1.25]


def test_depthwise_convs_are_depthwise():
    model = mobilenet_v1()
    dw = [m for m in model.modules() if isinstance(m, nn.Conv2d) and m.groups > 1]
    assert len(dw) == 13
    for conv in dw:
        assert conv.groups == conv.in_channels == conv.out_channels
        assert conv.weight.shape[1:] == (1, 3, 3)
    strides = [c.stride[0] for c in dw]
    assert strides == [1, 2, 1, 2, 1, 2, 1, 1, 1, 1, 1, 2, 1]
    assert model.stem.conv.stride == (2, 2) and model.stem.conv.groups == 1
    assert all(m.bias is None for m in model.modules() if isinstance(m, nn.Conv2d))


@pytest.mark.parametrize("alpha", ALPHAS)
@pytest.mark.parametrize("size", [(224, 224), (128, 128), (97, 161), (32, 33)])
def test_output_shapes(alpha, size):
    model = mobilenet_v1(width_mult=alpha, num_classes=7).eval()
    x = torch.randn(2, 3, *size)
    with torch.no_grad():
        feats = model.forward_features(x)
        logits = model.forward_head(feats)
        pooled = model.forward_head(feats, pre_logits=True)
    c = max(int(1024 * alpha), 8)
    assert feats.shape == (2, c, -(-size[0] // 32), -(-size[1] // 32))
    assert logits.shape == (2, 7)
    assert pooled.shape == (2, c)


def test_feature_maps_at_strides_8_16_32():
    model = mobilenet_v1(width_mult=0.5).eval()
    maps = model.forward_intermediates(torch.randn(1, 3, 224, 224))
    assert [tuple(m.shape[1:]) for m in maps] == [(128, 28, 28), (256, 14, 14), (512, 7, 7)]
    backbone = mobilenet_v1(width_mult=0.5, features_only=True)
    assert [f["reduction"] for f in backbone.feature_info] == [8, 16, 32]
    assert len(backbone(torch.randn(1, 3, 64, 64))) == 3
    with pytest.raises(ValueError, match="reductions"):
        model.forward_intermediates(torch.randn(1, 3, 64, 64), reductions=(64,))


def test_reset_classifier():
    model = mobilenet_v1()
    model.reset_classifier(5)
    assert model(torch.randn(1, 3, 64, 64)).shape == (1, 5)
    model.reset_classifier(0)
    assert model(torch.randn(1, 3, 64, 64)).shape == (1, 1024)


def _tf_same_reference(x: torch.Tensor, weight: torch.Tensor, stride: int) -> torch.Tensor:
    """TF SAME written from its definition: out = ceil(in/s); pad_total = max((out-1)*s + k - in, 0)."""
    k = weight.shape[-1]
    pads = []
    for n in (x.shape[3], x.shape[2]):  # F.pad order: last dim first
        out = (n + stride - 1) // stride
        total = max((out - 1) * stride + k - n, 0)
        pads += [total // 2, total - total // 2]
    return F.conv2d(F.pad(x, pads), weight, stride=stride, groups=weight.shape[0] if weight.shape[1] == 1 else 1)


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("size", [(8, 8), (9, 9), (8, 11), (15, 6)])
def test_tf_padding_matches_same(stride, size):
    torch.manual_seed(0)
    model = mobilenet_v1(padding="tf", width_mult=0.25)
    block = model.blocks[0] if stride == 1 else model.blocks[1]
    conv = block.dw.conv
    x = torch.randn(1, conv.in_channels, *size)
    got = block.dw.conv(block.dw.pad(x)) if hasattr(block.dw, "pad") else conv(x)
    want = _tf_same_reference(x, conv.weight, stride)
    assert got.shape == want.shape
    torch.testing.assert_close(got, want)
    if stride == 2 and size[0] % 2 == 0:
        # On even inputs PyTorch's symmetric padding really is different: this is why 'tf' exists.
        symmetric = F.conv2d(x, conv.weight, stride=2, padding=1, groups=conv.groups)
        assert not torch.allclose(symmetric, want)


def test_tf_same_pad_module_even_odd():
    pad = TFSamePad2d(3, 2)
    assert pad(torch.zeros(1, 1, 8, 9)).shape == (1, 1, 9, 11)  # even: (0,1); odd: (1,1)


@pytest.mark.parametrize("alpha", [0.25, 0.75, 1.0])
@pytest.mark.parametrize("res", [128, 224, (96, 160)])
@pytest.mark.parametrize("variant", ["separable", "conv", "shallow"])
def test_flop_counter_matches_cost_model(alpha, res, variant):
    model = mobilenet_v1(width_mult=alpha, variant=variant, num_classes=10).eval()
    size = (res, res) if isinstance(res, int) else res
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(torch.randn(1, 3, *size))
    report = model_cost(width_mult=alpha, variant=variant, num_classes=10, resolution=size)
    assert counter.get_total_flops() == 2 * report.mult_adds


@pytest.mark.parametrize("alpha", ALPHAS)
@pytest.mark.parametrize("variant", ["separable", "conv", "shallow"])
def test_param_count_matches_cost_model(alpha, variant):
    model = mobilenet_v1(width_mult=alpha, variant=variant)
    weights = sum(m.weight.numel() for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear)))
    assert weights == model_cost(width_mult=alpha, variant=variant).params


def test_module_paths_in_spec_exist():
    from mobilenet.spec import build_layers

    model = mobilenet_v1(width_mult=0.5)
    for layer in build_layers(model.config):
        module = model.get_submodule(layer.module)
        assert module.weight.shape[0] == layer.out_channels


@pytest.mark.parametrize("activation,cls", [("relu", nn.ReLU), ("relu6", nn.ReLU6)])
def test_activation(activation, cls):
    model = mobilenet_v1(activation=activation)
    acts = [m for m in model.modules() if isinstance(m, (nn.ReLU, nn.ReLU6))]
    assert len(acts) == 27 and all(type(a) is cls for a in acts)


@pytest.mark.parametrize(
    "shape,match",
    [
        ((3, 224, 224), "rank 3"),
        ((1, 1, 224, 224), "1 channels"),
        ((1, 224, 224, 3), "channels-last"),
        ((1, 3, 16, 64), "too small"),
    ],
)
def test_bad_input_is_a_clear_error(shape, match):
    model = mobilenet_v1(width_mult=0.25)
    with pytest.raises(ValueError, match=match):
        model(torch.zeros(shape))


@pytest.mark.parametrize("kwargs", [{"width_mult": 0}, {"variant": "x"}, {"activation": "tanh"}, {"padding": 1}])
def test_bad_builder_args(kwargs):
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        mobilenet_v1(**kwargs)


def test_train_step_runs_and_grad_flows():
    model = MobileNetV1(width_mult=0.25, num_classes=3)
    out = model(torch.randn(4, 3, 64, 64))
    out.sum().backward()
    assert model.stem.conv.weight.grad is not None


def test_channels_last_and_compile_free_equivalence():
    model = mobilenet_v1(width_mult=0.25).eval()
    x = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        ref = model(x)
        cl = model.to(memory_format=torch.channels_last)(x.to(memory_format=torch.channels_last))
    torch.testing.assert_close(ref, cl, rtol=1e-4, atol=1e-5)


def test_from_state_dict_rebuilds_and_names_what_differs():
    from mobilenet.checkpoint import WeightsFileError

    model = MobileNetV1(width_mult=0.25, num_classes=7).eval()
    state = model.state_dict()
    again = MobileNetV1.from_state_dict(state, model.config, source="x.safetensors", overrides={"dropout": 0.2})
    assert not again.training and again.config.dropout == 0.2
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(again.eval()(x), model(x))
    with pytest.raises(ValueError, match=r"x.safetensors holds a model with num_classes=7, but num_classes=10 was asked for"):
        MobileNetV1.from_state_dict(state, model.config, source="x.safetensors", overrides={"num_classes": 10})
    with pytest.raises(
        WeightsFileError, match=r"x.safetensors does not fit .*classifier.weight: file \(7, 256\) vs model \(9, 256\)"
    ):
        MobileNetV1.from_state_dict(state, model.config.replace(num_classes=9), source="x.safetensors")
    del state["stem.conv.weight"]
    with pytest.raises(WeightsFileError, match=r"missing stem\.conv\.weight"):
        MobileNetV1.from_state_dict(state, model.config)
