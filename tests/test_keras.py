"""Keras .h5 import, matched against keras.applications.MobileNet itself (Keras 3, torch backend)."""

from __future__ import annotations

import contextlib
import os

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mobilenet import mobilenet_v1
from mobilenet.checkpoint import WeightsFileError, save_weights
from mobilenet.weights.keras import load_keras_h5

os.environ.setdefault("KERAS_BACKEND", "torch")
keras = pytest.importorskip("keras", reason="the peers extra (keras) is not installed")
h5py = pytest.importorskip("h5py")
if keras.backend.backend() != "torch":
    pytest.skip("these tests run Keras on its torch backend (KERAS_BACKEND=torch)", allow_module_level=True)


def _keras_mobilenet(alpha: float, size: int, include_top: bool, seed: int = 0):
    keras.utils.set_random_seed(seed)
    model = keras.applications.MobileNet(
        alpha=alpha, input_shape=(size, size, 3), weights=None, include_top=include_top, pooling=None if include_top else "avg"
    )
    rng = np.random.default_rng(seed)
    for layer in model.layers:  # non-trivial BN statistics and a non-zero classifier bias
        if isinstance(layer, keras.layers.BatchNormalization):
            n = layer.gamma.shape[0]
            layer.set_weights(
                [rng.uniform(0.5, 1.5, n), rng.uniform(-0.2, 0.2, n), rng.uniform(-0.5, 0.5, n), rng.uniform(0.5, 2.0, n)]
            )
        elif layer.name == "conv_preds":
            kernel, bias = layer.get_weights()
            layer.set_weights([kernel, rng.uniform(-0.1, 0.1, bias.shape)])
    return model


def _save(model, path, layout: str) -> None:
    if layout == "keras2":  # what Google's mobilenet_*_tf.h5 files are: root layer_names/weight_names
        from keras.src.legacy.saving import legacy_h5_format

        with h5py.File(path, "w") as f:
            legacy_h5_format.save_weights_to_hdf5_group(f, model)
    elif layout == "model":
        model.save(path)
    else:
        model.save_weights(path)


def _keras_forward(model, x: torch.Tensor) -> torch.Tensor:
    out = model(x.permute(0, 2, 3, 1).contiguous(), training=False)
    return torch.as_tensor(np.asarray(keras.ops.convert_to_numpy(out))).reshape(x.shape[0], -1)


@pytest.mark.parametrize(
    "alpha,size,include_top,layout",
    [
        (0.25, 128, True, "keras2"),
        (0.5, 160, True, "model"),
        (0.75, 192, False, "weights"),
        (1.0, 224, True, "weights"),
        (0.5, 200, True, "model"),  # 200 -> 100 -> 50 -> 25: an odd map before a strided dw conv
    ],
)
def test_keras_mobilenet_matches(tmp_path, alpha, size, include_top, layout):
    peer = _keras_mobilenet(alpha, size, include_top)
    path = tmp_path / ("m.weights.h5" if layout == "weights" else "m.h5")
    _save(peer, path, layout)
    ours = mobilenet_v1(weights=path, resolution=size)
    assert ours.config.padding == "keras" and ours.config.activation == "relu6"
    assert ours.config.num_classes == (1000 if include_top else 0)
    if layout == "model":  # the whole-model file carries its input size
        assert ours.config.resolution == size
    x = torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(1)) * 2 - 1
    with torch.no_grad():
        mine = ours(x)
    want = _keras_forward(peer, x)
    if include_top:  # Keras ends in softmax
        mine = mine.softmax(-1)
        torch.testing.assert_close(mine, want, rtol=0, atol=1e-4)
    else:
        torch.testing.assert_close(mine, want, rtol=1e-4, atol=1e-4)
    # convert -> safetensors -> rebuild with no flags
    save_weights(tmp_path / "w.safetensors", ours)
    again = mobilenet_v1(weights=tmp_path / "w.safetensors")
    assert again.config == ours.config
    with torch.no_grad():
        torch.testing.assert_close(again(x), ours(x), rtol=0, atol=0)


def test_keras_padding_differs_from_tf_only_on_odd_maps():
    from mobilenet.cost import model_cost

    assert model_cost(padding="keras", resolution=224).mult_adds == model_cost(padding="tf", resolution=224).mult_adds
    keras_rows = model_cost(padding="keras", resolution=200).layers
    tf_rows = model_cost(padding="tf", resolution=200).layers
    assert [r.output_shape for r in keras_rows] != [r.output_shape for r in tf_rows]
    model = mobilenet_v1(padding="keras", resolution=200, num_classes=0).eval()
    with torch.no_grad():
        maps = model.forward_intermediates(torch.zeros(1, 3, 200, 200))
    assert maps[-1].shape[-1] == 6  # floor-halving 25 -> 12 -> 6, where SAME gives 13 -> 7


def test_not_keras_and_damaged_files(tmp_path):
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f["x"] = np.zeros(3)
    with pytest.raises(WeightsFileError, match="not Keras weights"):
        mobilenet_v1(weights=tmp_path / "other.h5")
    (tmp_path / "junk.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 100)
    with pytest.raises(WeightsFileError, match="not a readable Keras"):
        mobilenet_v1(weights=tmp_path / "junk.h5")
    # a Keras model that is not MobileNet v1
    keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(4, 3, name="conv1")]).save(tmp_path / "small.h5")
    with pytest.raises(WeightsFileError, match=r"not a keras\.applications\.MobileNet"):
        mobilenet_v1(weights=tmp_path / "small.h5")


def test_width_or_classes_that_do_not_match(tmp_path):
    _save(_keras_mobilenet(0.25, 128, True), tmp_path / "m.h5", "keras2")
    with pytest.raises(ValueError, match="width_mult"):
        mobilenet_v1(weights=tmp_path / "m.h5", width_mult=0.5)
    with pytest.raises(ValueError, match="num_classes"):
        mobilenet_v1(weights=tmp_path / "m.h5", num_classes=10)


@pytest.fixture(scope="module")
def keras_bytes(tmp_path_factory) -> bytes:
    path = tmp_path_factory.mktemp("keras") / "m.h5"
    _save(_keras_mobilenet(0.25, 128, True), path, "keras2")
    return path.read_bytes()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fuzzed_h5_raises_our_error(tmp_path, keras_bytes, data):
    blob = bytearray(keras_bytes)
    if data.draw(st.booleans(), label="truncate"):
        blob = blob[: data.draw(st.integers(0, len(blob) - 1), label="cut")]
    else:
        for _ in range(data.draw(st.integers(1, 20), label="flips")):
            i = data.draw(st.integers(0, len(blob) - 1))
            blob[i] = data.draw(st.integers(0, 255))
    path = tmp_path / "fuzz.h5"
    path.write_bytes(bytes(blob))
    with contextlib.suppress(WeightsFileError):  # any other exception fails the test
        load_keras_h5(path)
