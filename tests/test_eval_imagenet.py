"""`mobilenet eval` on ImageNet-style folders named by WordNet id, with Google's 1001-class weights."""

from __future__ import annotations

import json
import shutil

import pytest

from mobilenet.labels import imagenet_names, imagenet_wnids

from .reference import IMAGES, MODELS, have_reference
from .test_cli import run_cli

pytestmark = pytest.mark.skipif(not have_reference(), reason="../shared/reference is not present")

# Photos whose class the reference README reports for every model, each a clear call.
CLEAR = {"parrot.jpg": "macaw", "bird.bmp": "chickadee", "sunflower.bmp": "daisy"}


def _wnid(name: str) -> str:
    return imagenet_wnids()[imagenet_names().index(name)]


def _folders(root, assign):
    for photo, wnid in assign.items():
        (root / wnid).mkdir(parents=True, exist_ok=True)
        shutil.copy(IMAGES / photo, root / wnid / photo)
    return root


def test_eval_on_wordnet_folders(tmp_path):
    data = _folders(tmp_path / "val", {photo: _wnid(name) for photo, name in CLEAR.items()})
    out = json.loads(run_cli("eval", "--weights", str(MODELS["0.5_160"][0]), "--data", str(tmp_path), "--json").stdout)
    assert out["images"] == 3 and out["top1"] == 1.0
    assert sorted(c for i, c in enumerate(out["classes"]) if (out["per_class_accuracy"][i] or 0) > 0) == sorted(
        p.name for p in data.iterdir()
    )
    # The same photos filed under the wrong synsets score nothing: the folder name is what counts.
    wrong = {photo: _wnid(name) for photo, name in zip(CLEAR, ["chickadee", "daisy", "macaw"])}
    _folders(tmp_path / "shuffled", wrong)
    out = json.loads(
        run_cli("eval", "--weights", str(MODELS["0.5_160"][0]), "--data", str(tmp_path / "shuffled"), "--json").stdout
    )
    assert out["top1"] == 0.0


def test_eval_split_model_and_per_class_text(tmp_path):
    _folders(tmp_path, {photo: _wnid(name) for photo, name in CLEAR.items()})
    proc = run_cli("eval", "--weights", *map(str, MODELS["1.0_224"]), "--data", str(tmp_path), "--per-class")
    assert "top-1 1.0000" in proc.stdout and "on 3 images" in proc.stdout
    assert "confusion matrix" not in proc.stdout  # 1000 classes: only the present ones are listed
    assert proc.stdout.count("(1 images)") == 3


def test_eval_rejects_folders_that_are_not_wordnet_ids(tmp_path):
    _folders(tmp_path, {"parrot.jpg": "macaw"})
    proc = run_cli("eval", "--weights", str(MODELS["0.25_128"][0]), "--data", str(tmp_path), check=False)
    assert proc.returncode == 2 and "WordNet ids" in proc.stderr and "Traceback" not in proc.stderr


FLOWERS = IMAGES.parents[1] / "data" / "flowers"


@pytest.mark.slow
@pytest.mark.skipif(not FLOWERS.is_dir(), reason="../shared/data/flowers is absent")
def test_tf_protocol_is_the_default_and_matches_litert(tmp_path):
    """The flowers' 120 daisies are ImageNet's daisy (n11939491): a real labelled ImageNet-style
    folder. With Google's weights, eval uses TF-slim's preprocessing by default, and our float
    model's top-1 there lands within two photos of Google's int8 file run in LiteRT."""
    daisy = tmp_path / _wnid("daisy")
    daisy.mkdir()
    for split in ("train", "val"):
        for photo in (FLOWERS / split / "daisy").iterdir():
            shutil.copy(photo, daisy / photo.name)
    weights = [str(p) for p in MODELS["1.0_224"]]

    def top1(*extra: str) -> float:
        out = json.loads(run_cli("eval", "--weights", *weights, "--data", str(tmp_path), "--json", *extra).stdout)
        assert out["images"] == 120
        return out["top1"]

    ours, tf, litert = top1(), top1("--preprocess", "tf"), top1("--runtime", "litert")
    assert ours == tf  # the weights carry the TF protocol
    assert abs(ours - litert) <= 2 / 120, (ours, litert)  # measured: 0.825 vs 0.833
    assert ours > 0.6  # a real ImageNet class, clearly recognised (chance is 1/1000)
