"""Spec and cost model: pure arithmetic, no torch module built."""

from __future__ import annotations

import math

import pytest

from mobilenet.cost import model_cost, separable_conv_cost, separable_cost_ratio, standard_conv_cost
from mobilenet.paper import compare
from mobilenet.spec import TABLE1, MobileNetConfig, build_layers, conv_defs, scaled_depth

# The paper (../shared/PAPER.md §4, outside this repository): exact Mult-Adds and params, 1000 classes, paper's convention.
PAPER_EXACT = [
    (1.0, 224, 568_740_352, 4_209_088),
    (1.0, 192, 418_121_728, 4_209_088),
    (1.0, 160, 290_675_200, 4_209_088),
    (1.0, 128, 186_400_768, 4_209_088),
    (0.75, 224, 325_400_448, 2_568_144),
    (0.5, 224, 149_497_088, 1_319_648),
    (0.5, 160, 76_524_800, 1_319_648),
    (0.25, 224, 41_030_272, 463_600),
]


@pytest.mark.parametrize("alpha,res,macs,params", PAPER_EXACT)
def test_paper_exact_totals(alpha, res, macs, params):
    report = model_cost(width_mult=alpha, resolution=res)
    assert report.mult_adds == macs
    assert report.params == params


def test_tf_slim_body_without_fc():
    report = model_cost(num_classes=0)
    assert report.mult_adds == 567_716_352
    assert report.params == 3_185_088


def test_table1_structure():
    # 1 full conv, then 13 separable pairs with the corrected stride-1 last pair: 28 layers with the FC.
    assert TABLE1[0].kind == "conv" and TABLE1[0].stride == 2
    assert [d.stride for d in TABLE1[1:]] == [1, 2, 1, 2, 1, 2, 1, 1, 1, 1, 1, 2, 1]
    layers = build_layers(MobileNetConfig())
    assert len(layers) == 28
    assert sum(layer.kind == "dw" for layer in layers) == 13
    # Table 1's input column: the 7x7 map after layer 24/25 is kept by the last pair.
    rows = model_cost().layers
    assert rows[-2].input_shape == (7, 7, 1024) and rows[-2].output_shape == (7, 7, 1024)
    assert rows[0].input_shape == (224, 224, 3)


def test_variants():
    assert len(conv_defs("shallow")) == len(TABLE1) - 5
    assert all(d.kind == "conv" for d in conv_defs("conv"))
    conv = model_cost(variant="conv")
    assert conv.mult_adds - conv.layers[-1].mult_adds == 4_866_269_184  # Table 4 prints 4866 (FC left out)
    assert round(conv.params / 1e6, 1) == 29.3
    shallow = model_cost(variant="shallow")
    assert round(shallow.mult_adds / 1e6) == 307 and round(shallow.params / 1e6, 1) == 2.9


def test_table3_one_layer_formulas():
    std = standard_conv_cost(3, 512, 512, 14)
    sep = separable_conv_cost(3, 512, 512, 14)
    assert std == (462_422_016, 2_359_296)
    assert sep == (3 * 3 * 512 * 196 + 512 * 512 * 196, 3 * 3 * 512 + 512 * 512)
    assert math.isclose(sep[0] / std[0], separable_cost_ratio(3, 512))
    assert 1 / 9 < separable_cost_ratio(3, 512) < 1 / 8  # "8 to 9 times less computation"


def test_width_rounding_follows_tf_slim():
    assert scaled_depth(32, 0.25) == 8
    assert scaled_depth(32, 0.1) == 8  # min_depth floor
    assert scaled_depth(1024, 0.75) == 768
    assert scaled_depth(1024, 1.25) == 1280
    assert scaled_depth(64, 0.35, min_depth=4) == 22


def test_table10_params_with_120_classes():
    assert round(model_cost(num_classes=120).params / 1e6, 1) == 3.3
    assert round(model_cost(width_mult=0.75, num_classes=120).params / 1e6, 1) == 1.9


def test_paper_comparison_all_agree_or_explained():
    rows = compare()
    assert rows and all(r.status in ("agrees", "explained") for r in rows)
    explained = {(r.table, r.row) for r in rows if r.status == "explained"}
    # Exactly the known misprints and Table 10's reuse of the 1000-class Mult-Adds.
    assert ("2", "Conv 3x3") in explained and ("4", "Conv MobileNet") in explained
    assert all(t in ("2", "4", "10") for t, _ in explained)


def test_table2_shares_sum_to_100():
    by_kind = model_cost().by_kind()
    total_macs = sum(m for m, _ in by_kind.values())
    assert round(100 * by_kind["conv"][0] / total_macs, 2) == 1.91


def test_non_square_resolution():
    report = model_cost(resolution=(224, 160))
    assert report.layers[0].output_shape == (112, 80, 32)
    assert report.layers[-2].output_shape == (7, 5, 1024)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"width_mult": 0}, "width_mult"),
        ({"width_mult": -1.0}, "width_mult"),
        ({"width_mult": float("nan")}, "width_mult"),
        ({"width_mult": 1e6}, "width_mult"),
        ({"width_mult": "1"}, "width_mult"),
        ({"resolution": 16}, "resolution"),
        ({"variant": "deep"}, "variant"),
        ({"activation": "gelu"}, "activation"),
        ({"padding": "same"}, "padding"),
        ({"num_classes": -3}, "num_classes"),
        ({"dropout": 1.5}, "dropout"),
    ],
)
def test_bad_config_names_the_argument(kwargs, match):
    with pytest.raises(ValueError, match=match) as info:
        MobileNetConfig(**kwargs)
    assert repr(next(iter(kwargs.values())))[:5] in str(info.value)


def test_config_roundtrip():
    cfg = MobileNetConfig(width_mult=0.5, num_classes=10, class_names=tuple("abcdefghij"), labels="digits")
    assert MobileNetConfig.from_dict(cfg.to_dict()) == cfg
    assert MobileNetConfig.from_dict({**cfg.to_dict(), "from_the_future": 1}) == cfg
