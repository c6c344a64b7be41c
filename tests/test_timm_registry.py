"""timm import (matched against timm's own forward) and the weights registry."""

from __future__ import annotations

import pytest
import torch

from mobilenet import mobilenet_v1
from mobilenet.checkpoint import WeightsFileError, save_weights
from mobilenet.data import transforms_for
from mobilenet.weights import MobileNet_V1_Weights
from mobilenet.weights.registry import Weights, WeightsFile, download, get_weights

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


def _timm_peer(name: str, **kwargs) -> torch.nn.Module:
    torch.manual_seed(0)
    peer = timm.create_model(name, pretrained=False, **kwargs).eval()
    for m in peer.modules():  # non-trivial BN statistics, so a BN mix-up cannot hide
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    return peer


def test_timm_safetensors_file_loads(tmp_path):
    """timm's own file layout on the Hugging Face hub: safetensors, timm keys, no mobilenet_config."""
    from safetensors.torch import save_file

    peer = _timm_peer("mobilenetv1_100", num_classes=11)
    save_file({k: v.contiguous() for k, v in peer.state_dict().items()}, tmp_path / "model.safetensors")
    ours = mobilenet_v1(weights=tmp_path / "model.safetensors")
    assert (ours.config.preprocess, ours.config.crop_pct, ours.config.mean) == ("torchvision", 0.875, (0.5, 0.5, 0.5))
    x = torch.randn(2, 3, 160, 160)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), peer(x), rtol=1e-5, atol=1e-5)
    save_file({"foo": torch.zeros(3)}, tmp_path / "other.safetensors")
    with pytest.raises(WeightsFileError, match="no mobilenet_config metadata and is not a timm"):
        mobilenet_v1(weights=tmp_path / "other.safetensors")


def test_registry_entries_and_meta():
    assert len(MobileNet_V1_Weights) == 22  # DEFAULT is an alias, not an entry
    e = MobileNet_V1_Weights.TFLITE_QUANT_0_5_160
    assert e.meta["mult_adds"] == 76_524_800 + 512  # a 1001-way FC: one more output over 512 features
    assert e.meta["categories"][0] == "background" and len(e.meta["categories"]) == 1001
    assert e.url.endswith("/mobilenet_v1_0.5_160_quant.tflite") and isinstance(e.files[0], WeightsFile)
    assert e.files[0].sha256 and e.files[0].size == 1392846
    assert MobileNet_V1_Weights.DEFAULT is MobileNet_V1_Weights.KERAS_1_0_224
    assert "DEFAULT" in MobileNet_V1_Weights.__members__
    assert get_weights("DEFAULT") is MobileNet_V1_Weights.KERAS_1_0_224.value
    assert get_weights("MobileNet_V1_Weights.TFLITE_QUANT_0_5_160") is e.value
    assert isinstance(e.value, Weights)
    with pytest.raises(ValueError, match="known entries"):
        get_weights("NOPE")
    # cache names are unique (every timm file on the hub is called model.safetensors)
    names = [f.name for m in MobileNet_V1_Weights for f in m.files]
    assert len(names) == len(set(names))


@pytest.mark.parametrize(
    "member,preprocess,crop,resolution",
    [
        (MobileNet_V1_Weights.TFLITE_QUANT_0_5_160, "tf", 0.875, 160),
        (MobileNet_V1_Weights.KERAS_0_25_128, "tf", 0.875, 128),
        (MobileNet_V1_Weights.TIMM_1_0_224_RA4, "torchvision", 0.875, 224),
        (MobileNet_V1_Weights.TIMM_1_25_224_RA4, "torchvision", 0.9, 224),
    ],
)
def test_registry_transforms_follow_the_entry_config(member, preprocess, crop, resolution):
    c = member.config
    assert (c.preprocess, c.crop_pct, c.resolution) == (preprocess, crop, resolution)
    assert repr(member.transforms()) == repr(transforms_for(c))


def test_timm_registry_entry_loads_from_cache(tmp_path, monkeypatch):
    """A timm entry: the cached hub file is converted once and gets the entry's own crop_pct."""
    from safetensors.torch import save_file

    monkeypatch.setenv("MOBILENET_CACHE", str(tmp_path))
    member = MobileNet_V1_Weights.TIMM_1_25_224_RA4
    assert member.url == "https://huggingface.co/timm/mobilenetv1_125.ra4_e3600_r224_in1k/resolve/main/model.safetensors"
    peer = _timm_peer("mobilenetv1_125")
    save_file({k: v.contiguous() for k, v in peer.state_dict().items()}, tmp_path / member.files[0].name)
    model = mobilenet_v1(weights=member)
    assert (model.config.width_mult, model.config.crop_pct, model.config.preprocess) == (1.25, 0.9, "torchvision")
    assert (tmp_path / (member.files[0].name + ".sha256")).exists()  # no published hash: recorded on first use
    assert (tmp_path / "mobilenetv1_125.ra4_e3600_r224_in1k.timm.mobilenet.safetensors").exists()
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(model(x), peer(x), rtol=1e-5, atol=1e-5)
        again = mobilenet_v1(weights="TIMM_1_25_224_RA4", dropout=0.1)  # from the converted copy
        torch.testing.assert_close(again(x), peer(x), rtol=1e-5, atol=1e-5)
    assert again.config.crop_pct == 0.9
    with pytest.raises(ValueError, match="num_classes=10 was asked for"):
        mobilenet_v1(weights=member, num_classes=10)


@pytest.mark.skipif(not have_reference(), reason="../shared/reference is not present")
def test_registry_loads_from_cache_and_checks_hash(tmp_path, monkeypatch):
    import shutil

    monkeypatch.setenv("MOBILENET_CACHE", str(tmp_path))
    shutil.copy(MODELS["0.25_128"][0], tmp_path)
    model = mobilenet_v1(weights=MobileNet_V1_Weights.TFLITE_QUANT_0_25_128)
    assert model.config.width_mult == 0.25
    assert (model.config.preprocess, model.config.crop_pct) == ("tf", 0.875)
    assert (tmp_path / "mobilenet_v1_0.25_128_quant.safetensors").exists()  # converted once, cached
    # a corrupted cached file is caught by its hash and moved aside (never deleted: it may be someone's own)
    (tmp_path / "mobilenet_v1_0.5_160_quant.tflite").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="SHA-256"):
        mobilenet_v1(weights="TFLITE_QUANT_0_5_160")
    assert not (tmp_path / "mobilenet_v1_0.5_160_quant.tflite").exists()
    (aside,) = tmp_path.glob("mobilenet_v1_0.5_160_quant.tflite.mismatch-*")
    assert aside.read_bytes() == b"garbage"


def test_offline_download_names_the_file(tmp_path):
    with pytest.raises(RuntimeError, match="Put the file at"):
        download("http://127.0.0.1:9/mobilenet_test.h5", None, progress=False, directory=tmp_path)


def test_export_takes_an_example_input_for_a_model_without_our_config(tmp_path):
    from mobilenet.export import export_torchscript

    peer = _timm_peer("mobilenetv1_100")
    with pytest.raises(TypeError, match="pass example="):
        export_torchscript(peer, tmp_path / "x.pt")
    path = export_torchscript(peer, tmp_path / "timm.pt", example=torch.zeros(1, 3, 96, 96))
    x = torch.randn(1, 3, 96, 96)
    with torch.no_grad():
        torch.testing.assert_close(torch.jit.load(str(path))(x), peer(x), rtol=1e-5, atol=1e-5)
    assert not hasattr(peer, "config")
