"""timm import (matched against timm's own forward) and the weights registry."""

from __future__ import annotations

import pytest
import torch

from mobilenet import mobilenet_v1
from mobilenet.checkpoint import WeightsFileError, save_weights
from mobilenet.weights.registry import MobileNet_V1_Weights, download, get_weights

from .reference import MODELS, have_reference

timm = pytest.importorskip("timm", reason="the peers extra (timm) is not installed")


@pytest.mark.parametrize("name,size", [("mobilenetv1_100", 224), ("mobilenetv1_125", 160), ("mobilenetv1_100", 97)])
def test_timm_random_init_matches(tmp_path, name, size):
    torch.manual_seed(0)
    peer = timm.create_model(name, pretrained=False, num_classes=17).eval()
    for m in peer.modules():  # non-trivial BN statistics, so a BN mix-up cannot hide
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    torch.save(peer.state_dict(), tmp_path / "timm.pth")
    ours = mobilenet_v1(weights=tmp_path / "timm.pth")
    assert ours.config.activation == "relu6" and ours.config.num_classes == 17
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), peer(x), rtol=1e-5, atol=1e-5)
    # convert -> safetensors -> rebuild with no flags
    save_weights(tmp_path / "w.safetensors", ours)
    again = mobilenet_v1(weights=tmp_path / "w.safetensors")
    with torch.no_grad():
        torch.testing.assert_close(again(x), peer(x), rtol=1e-5, atol=1e-5)


def test_not_a_timm_state_dict(tmp_path):
    torch.save({"foo": torch.zeros(3)}, tmp_path / "x.pth")
    with pytest.raises(WeightsFileError, match="not a timm MobileNetV1"):
        mobilenet_v1(weights=tmp_path / "x.pth")


def test_registry_entries_and_meta():
    assert len(MobileNet_V1_Weights) == 20
    e = MobileNet_V1_Weights.TFLITE_QUANT_0_5_160.value
    assert e.meta["mult_adds"] == 76_524_800 + 512  # a 1001-way FC: one more output over 512 features
    assert e.meta["categories"][0] == "background" and len(e.meta["categories"]) == 1001
    assert get_weights("DEFAULT") is MobileNet_V1_Weights.KERAS_1_0_224.value
    assert e.transforms()  # resize, crop, normalize
    with pytest.raises(ValueError, match="known entries"):
        get_weights("NOPE")


@pytest.mark.skipif(not have_reference(), reason="../shared/reference is not present")
def test_registry_loads_from_cache_and_checks_hash(tmp_path, monkeypatch):
    import shutil

    monkeypatch.setenv("MOBILENET_CACHE", str(tmp_path))
    shutil.copy(MODELS["0.25_128"][0], tmp_path)
    model = mobilenet_v1(weights=MobileNet_V1_Weights.TFLITE_QUANT_0_25_128)
    assert model.config.width_mult == 0.25
    assert (tmp_path / "mobilenet_v1_0.25_128_quant.safetensors").exists()  # converted once, cached
    # a corrupted cached file is caught by its hash and deleted
    (tmp_path / "mobilenet_v1_0.5_160_quant.tflite").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="SHA-256"):
        mobilenet_v1(weights="TFLITE_QUANT_0_5_160")
    assert not (tmp_path / "mobilenet_v1_0.5_160_quant.tflite").exists()


def test_offline_download_names_the_file(tmp_path):
    with pytest.raises(RuntimeError, match="Put the file at"):
        download("http://127.0.0.1:9/mobilenet_test.h5", None, progress=False, directory=tmp_path)
