"""Google's TF Lite MobileNets imported into our model, checked against Google's own runtime (LiteRT).

Two comparisons per model:
- float: our float32 model with the dequantized weights. LiteRT rounds every activation to uint8,
  so probabilities differ; the top-1 must agree wherever LiteRT's leader is clear.
- emulated: the same model with each layer's output rounded to the file's own activation scale
  and zero point (forward hooks). This isolates the import from quantization noise: what remains is
  LiteRT's fixed-point requantization, a few output quanta (1/256).
"""

from __future__ import annotations

import contextlib
import subprocess
import sys

import numpy as np
import pytest
import torch

from mobilenet import mobilenet_v1
from mobilenet.checkpoint import WeightsFileError
from mobilenet.weights.tflite import activation_quantization

from .reference import MODELS, LiteRT, have_reference, photos, resized, varied_inputs

pytestmark = pytest.mark.skipif(not have_reference(), reason="../shared/reference is not present (Google's TF Lite files)")
litert = pytest.importorskip("ai_edge_litert", reason="the peers extra (ai-edge-litert) is not installed")

QUANTUM = 1 / 256  # the uint8 softmax output's scale in all four files
# A leader is "clear" when it leads by 40 output quanta: more than twice the largest deviation the
# emulated model shows (16 quanta), so activation rounding cannot flip it.
CLEAR_MARGIN = 40 * QUANTUM
# Float vs the uint8 runtime: 27 layers of activation rounding move the 0.25 model's probabilities
# by up to about 0.2 on unlucky inputs (measured), so the float bound is loose and a median bound
# carries the weight; the emulated comparison below is the tight one.
FLOAT_MAX_DIFF = 0.25
FLOAT_MEDIAN_DIFF = 0.03
EMULATED_MAX_DIFF = 24 * QUANTUM
EMULATED_MEDIAN_DIFF = 4 * QUANTUM


def _ours(model: torch.nn.Module, image: np.ndarray) -> np.ndarray:
    x = (torch.from_numpy(image.copy()).permute(2, 0, 1)[None].float() - 128) / 128  # the files' input scale
    with torch.no_grad():
        return model(x).softmax(1)[0].double().numpy()


def _emulating(model: torch.nn.Module, files) -> torch.nn.Module:
    def rounding(scale: float, zero: int):
        return lambda _m, _i, out: (torch.clamp(torch.round(out / scale) + zero, 0, 255) - zero) * scale

    for path, (scale, zero) in activation_quantization(files).items():
        model.get_submodule(path).register_forward_hook(rounding(scale, zero))
    return model


@pytest.fixture(scope="module", params=list(MODELS))
def pair(request):
    files = MODELS[request.param]
    model = mobilenet_v1(weights=[str(f) for f in files])
    return request.param, files, model, LiteRT(files)


def test_config_read_from_file(pair):
    name, _, model, _ = pair
    alpha, res = name.split("_")
    c = model.config
    assert (c.width_mult, c.resolution, c.num_classes) == (float(alpha), int(res), 1001)
    assert (c.activation, c.padding, c.labels) == ("relu6", "tf", "imagenet1001")


def test_reference_photos_agree_with_litert(pair):
    _, _, model, runtime = pair
    size = model.config.resolution
    for path in photos():
        image = resized(path, size)
        ref, ours = runtime(image), _ours(model, image)
        lead = np.sort(ref)[-2:]
        if lead[1] - lead[0] >= CLEAR_MARGIN:
            assert ours.argmax() == ref.argmax(), path.name
        assert np.abs(ours - ref).max() <= FLOAT_MAX_DIFF, path.name


def test_varied_inputs_agree_with_litert(pair):
    _, files, model, runtime = pair
    size = model.config.resolution
    images = varied_inputs(size, 60, seed=1)
    refs = [runtime(im) for im in images]
    clear, float_diffs = 0, []
    for image, ref in zip(images, refs):
        ours = _ours(model, image)
        float_diffs.append(np.abs(ours - ref).max())
        lead = np.sort(ref)[-2:]
        if lead[1] - lead[0] >= CLEAR_MARGIN:
            clear += 1
            assert ours.argmax() == ref.argmax()
        assert np.abs(ours - ref).max() <= FLOAT_MAX_DIFF
    assert clear >= len(images) // 3  # the check above must actually have been exercised
    assert float(np.median(float_diffs)) <= FLOAT_MEDIAN_DIFF
    emulated = _emulating(mobilenet_v1(weights=[str(f) for f in files]), files)
    diffs = [np.abs(np.round(_ours(emulated, im) / QUANTUM) * QUANTUM - ref).max() for im, ref in zip(images, refs)]
    assert max(diffs) <= EMULATED_MAX_DIFF
    assert float(np.median(diffs)) <= EMULATED_MEDIAN_DIFF


def test_predict_cli_parrot_is_macaw():
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "mobilenet",
            "predict",
            str(photos()[0].parent / "parrot.jpg"),
            "--weights",
            str(MODELS["0.5_160"][0]),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out.splitlines()[1].split()[-1] == "macaw"


def test_split_model_needs_both_files_and_any_order():
    extractor, head = MODELS["1.0_224"]
    a = mobilenet_v1(weights=[str(head), str(extractor)])
    assert a.config.num_classes == 1001
    body = mobilenet_v1(weights=str(extractor))  # the extractor alone: a headless body
    assert body.config.num_classes == 0
    with pytest.raises(WeightsFileError, match=r"takes features .*, not an image: it is the head_layers half"):
        mobilenet_v1(weights=str(head))


def test_mismatched_request_is_clear():
    with pytest.raises(ValueError, match=r"width_mult=0\.25.*width_mult=0\.5"):
        mobilenet_v1(weights=str(MODELS["0.25_128"][0]), width_mult=0.5)
    with pytest.raises(ValueError, match="num_classes=1001"):
        mobilenet_v1(weights=str(MODELS["0.25_128"][0]), num_classes=1000)


def test_truncated_and_not_tflite(tmp_path):
    data = MODELS["0.25_128"][0].read_bytes()
    (tmp_path / "cut.tflite").write_bytes(data[: len(data) // 3])
    with pytest.raises(WeightsFileError, match=r"cut\.tflite"):
        mobilenet_v1(weights=str(tmp_path / "cut.tflite"))
    (tmp_path / "text.tflite").write_text("hello")
    with pytest.raises(WeightsFileError, match="not a TF Lite flatbuffer"):
        mobilenet_v1(weights=str(tmp_path / "text.tflite"))


def test_fuzzed_bytes_raise_our_error(tmp_path):
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    data = bytearray(MODELS["0.25_128"][0].read_bytes())

    @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.lists(st.tuples(st.integers(0, 4096), st.integers(0, 255)), min_size=1, max_size=8), st.integers(100, len(data)))
    def check(flips, length):
        buf = bytearray(data[:length])
        for pos, value in flips:
            if pos < len(buf):
                buf[pos] = value
        path = tmp_path / "fuzz.tflite"
        path.write_bytes(bytes(buf))
        with contextlib.suppress(WeightsFileError):  # our error, or a file that still loads
            mobilenet_v1(weights=str(path))

    check()
