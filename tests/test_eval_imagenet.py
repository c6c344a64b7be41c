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
    assert sorted(c for i, c in enumerate(out["classes"]) if out["per_class_accuracy"][i] > 0) == sorted(
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
