"""Detection part 2: fine-tuning Google's detector on raccoon boxes, the loss and matching, and bad
training data. Reads ../shared in place (skips with a reason where it is absent)."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from mobilenet.cli import main
from mobilenet.detection import ssd_mobilenet_v1
from mobilenet.detection.anchors import ssd_anchors
from mobilenet.detection.spec import AnchorConfig
from mobilenet.detection.train import DetectionRecipe, _xyxy, detection_loss, match_anchors, train_detector

from .reference import REFERENCE

DETECT = REFERENCE / "detection" / "detect.tflite"
RACCOON = REFERENCE.parent / "data" / "raccoon"
COCO128 = REFERENCE.parent / "data" / "coco128"

needs_raccoon = pytest.mark.skipif(
    not (DETECT.is_file() and RACCOON.is_dir()), reason="../shared/reference/detection or ../shared/data/raccoon is not present"
)

# Measured on the 40 test photos (pycocotools, `coco` post-processing), Google's detector with its
# class head replaced for one class "raccoon" and not trained: a random head (RetinaNet's 0.01
# prior) reaches AP 0.035 / AP50 0.112; started from the COCO "cat" row (the recipe's warm start)
# AP 0.402 / AP50 0.759. The test's run (three epochs on the first 32 training photos, seed 0)
# measured AP 0.484 / AP50 0.862; the floors sit between that and the untrained head's.
SHORT_RUN_AP_FLOOR, SHORT_RUN_AP50_FLOOR = 0.43, 0.80


def _cli(capsys, *args) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


# ---------------------------------------------------------------------------------------------
# Matching and loss: no files


def test_matching_follows_tf_argmax_matcher():
    anchors = ssd_anchors(AnchorConfig(), [19, 10, 5, 3, 2, 1])
    corners = _xyxy(anchors)
    # A box equal to one anchor matches it (and any other anchor at IoU >= 0.5); a tiny box matches
    # no anchor at 0.5 but still gets its best one (force_match_for_each_row).
    big, tiny = corners[1000].clone(), torch.tensor([0.50, 0.50, 0.51, 0.51])
    classes, codes = match_anchors(torch.stack([big, tiny]), torch.tensor([1, 2]), corners, anchors, 0.5, (10.0, 10.0, 5.0, 5.0))
    assert classes[1000] == 1 and torch.allclose(codes[1000], torch.zeros(4), atol=1e-5)
    assert (classes == 2).sum() == 1 and (classes > 0).sum() >= 2
    empty_classes, _ = match_anchors(torch.zeros(0, 4), torch.zeros(0, dtype=torch.long), corners, anchors, 0.5, (10, 10, 5, 5))
    assert int(empty_classes.sum()) == 0


@pytest.mark.parametrize("loss", ["focal", "ohem"])
def test_loss_is_lower_for_right_answers(loss):
    recipe = DetectionRecipe(loss=loss)
    target_classes = torch.zeros(2, 50, dtype=torch.long)
    target_classes[0, 3] = 1  # the second image has no boxes: background only
    target_codes = torch.zeros(2, 50, 4)
    right = torch.full((2, 50, 2), -6.0)
    right[0, 3, 1] = 6.0
    wrong = -right
    codes = torch.zeros(2, 50, 4)
    good_cls, good_box = detection_loss(codes, right, target_classes, target_codes, recipe)
    bad_cls, _ = detection_loss(codes, wrong, target_classes, target_codes, recipe)
    assert float(good_box) == 0 and float(good_cls) < 0.05 < float(bad_cls)
    no_boxes = torch.zeros_like(target_classes)  # a batch of background-only photos still has a finite loss
    assert torch.isfinite(detection_loss(codes, wrong, no_boxes, target_codes, recipe)[0])


# ---------------------------------------------------------------------------------------------
# The short training run on raccoon


@needs_raccoon
@pytest.mark.slow
def test_short_finetune_on_raccoon_beats_the_untrained_head(tmp_path, capsys):
    out = tmp_path / "run"
    summary = train_detector(RACCOON, DETECT, out, limit=32, epochs=3, progress=False)
    first = capsys.readouterr().out.splitlines()[0]
    assert first.startswith("recipe ssd-heads") and "validate on test" in first
    assert summary["classes"] == ["raccoon"] and summary["train_photos"] == 32 and summary["validation"] == "test"
    assert summary["map"] >= SHORT_RUN_AP_FLOOR and summary["map_50"] >= SHORT_RUN_AP50_FLOOR
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2, 3] and all({"loss", "map", "map_50"} <= set(r) for r in rows)
    assert max(r["map"] for r in rows) == summary["map"]
    assert json.loads((out / "summary.json").read_text())["best_epoch"] == summary["best_epoch"]
    # best.safetensors is a detector of ours: it reloads with its classes and scores what training logged.
    model = ssd_mobilenet_v1(weights=out / "best.safetensors")
    assert model.config.names == ["background", "raccoon"] and model.num_classes == 2
    code, text, _ = _cli(capsys, "eval", "--weights", out / "best.safetensors", "--data", RACCOON, "--json")
    result = json.loads(text)
    assert code == 0 and result["map"] == pytest.approx(summary["map"], abs=1e-4)
    # Our own detector trains on: same classes, so its class head is kept (no warm start line).
    again = train_detector(RACCOON, out / "best.safetensors", tmp_path / "again", limit=16, epochs=1, progress=False)
    assert "warm start" not in capsys.readouterr().out and again["map"] >= SHORT_RUN_AP_FLOOR
    # Exported as a detect.tflite: Google's interface, and in LiteRT the file's own post-processing
    # finds what PyTorch finds (the export checks it and says so).
    pytest.importorskip("ai_edge_litert")
    tflite = tmp_path / "raccoon.tflite"
    code, text, err = _cli(capsys, "export", "--weights", out / "best.safetensors", "--format", "tflite", "-o", tflite)
    assert code == 0 and "the same detections" in text, err
    assert (tmp_path / "raccoon.labelmap.txt").read_text() == "???\nraccoon\n"
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(tflite))
    (inp,) = interpreter.get_input_details()
    outs = interpreter.get_output_details()
    assert list(inp["shape"]) == [1, 300, 300, 3] and inp["dtype"] == np.uint8 and inp["quantization"] == (1 / 128, 128)
    assert [o["name"] for o in outs] == ["TFLite_Detection_PostProcess"] + [
        f"TFLite_Detection_PostProcess:{i}" for i in (1, 2, 3)
    ]
    code, text, _ = _cli(
        capsys,
        "eval",
        "--weights",
        tflite,
        "--runtime",
        "litert",
        "--data",
        RACCOON,
        "--class-agnostic",
        "--postprocess",
        "tflite",
        "--json",
    )
    litert_map = json.loads(text)["map"]
    code, text, _ = _cli(
        capsys, "eval", "--weights", out / "best.safetensors", "--data", RACCOON, "--postprocess", "tflite", "--json"
    )
    assert litert_map == pytest.approx(json.loads(text)["map"], abs=0.005)
    _exports_keep_ap50(capsys, tmp_path, out / "best.safetensors", summary["map_50"])


def _exports_keep_ap50(capsys, tmp_path: Path, weights: Path, ap50: float) -> None:
    """The fine-tune as tflite-int8 (calibrated on its training photos) in LiteRT, and as ONNX and
    ExecuTorch files (raw outputs, our decoding): each keeps PyTorch's AP50 within 0.02."""
    for fmt, name, needs in (
        ("tflite-int8", "raccoon.int8.tflite", "ai_edge_litert"),
        ("onnx", "raccoon.onnx", "onnxruntime"),
        ("pte", "raccoon.pte", "executorch"),
    ):
        if importlib.util.find_spec(needs) is None:
            continue
        path = tmp_path / name
        code, text, err = _cli(capsys, "export", "--weights", weights, "--format", fmt, "--calibration", RACCOON, "-o", path)
        assert code == 0 and path.is_file(), err
        if fmt == "tflite-int8":
            assert "int8 ranges: calibrated on 160 images" in text  # the train split, not the test photos
        runtime = ["--runtime", "litert"] if fmt.startswith("tflite") else []
        code, text, err = _cli(capsys, "eval", "--weights", path, *runtime, "--data", RACCOON, "--json")
        assert code == 0, err
        assert json.loads(text)["map_50"] == pytest.approx(ap50, abs=0.02), fmt


# ---------------------------------------------------------------------------------------------
# Bad training data: one line, exit 2, nothing written


def _voc_copy(tmp_path: Path, count: int = 6) -> Path:
    """A small VOC root with the first photos of raccoon's train and test splits (links to the JPEGs)."""
    root = tmp_path / "voc"
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (root / sub).mkdir(parents=True)
    for split in ("train", "test"):
        ids = (RACCOON / "ImageSets" / "Main" / f"{split}.txt").read_text().split()[:count]
        (root / "ImageSets" / "Main" / f"{split}.txt").write_text("\n".join(ids) + "\n")
        for stem in ids:
            shutil.copy(RACCOON / "Annotations" / f"{stem}.xml", root / "Annotations")
            (root / "JPEGImages" / f"{stem}.jpg").symlink_to(RACCOON / "JPEGImages" / f"{stem}.jpg")
    return root


def _first_xml(root: Path, split: str = "train") -> Path:
    stem = (root / "ImageSets" / "Main" / f"{split}.txt").read_text().split()[0]
    return root / "Annotations" / f"{stem}.xml"


@needs_raccoon
@pytest.mark.parametrize(
    "case,match",
    [
        ("no_split", "no training split"),
        ("no_val", "no validation split"),
        ("swapped", "each max must exceed its min"),
        ("outside", "box outside its image"),
        ("new_val_class", "have no training boxes"),
        ("classifier_weights", "not an object detector"),
        ("no_weights", "starts from a detector"),
        ("foreign_flag", "does not apply to detector training"),
    ],
)
def test_bad_training_data_is_refused_before_writing(capsys, tmp_path, case, match):
    root = _voc_copy(tmp_path)
    weights: object = DETECT
    extra: list[str] = []
    if case == "no_split":
        (root / "ImageSets" / "Main" / "train.txt").unlink()
    elif case == "no_val":
        (root / "ImageSets" / "Main" / "test.txt").unlink()
    elif case in ("swapped", "outside"):
        xml = _first_xml(root)
        text = xml.read_text()
        start, end = text.index("<xmin>") + 6, text.index("</xmin>")
        value = "99999" if case == "swapped" else "-50"
        xml.write_text(text[:start] + value + text[end:])
    elif case == "new_val_class":
        xml = _first_xml(root, "test")
        xml.write_text(xml.read_text().replace("<name>raccoon</name>", "<name>badger</name>", 1))
    elif case == "classifier_weights":
        from mobilenet import mobilenet_v1
        from mobilenet.checkpoint import save_weights

        weights = save_weights(tmp_path / "c.safetensors", mobilenet_v1(width_mult=0.25, resolution=32, num_classes=10))
    elif case == "foreign_flag":
        extra = ["--workers", "2"]
    out = tmp_path / "out"
    args = ["train", "--data", root, "--out", out, "--epochs", "1", *extra]
    if case != "no_weights":
        args += ["--weights", weights]
    code, _, err = _cli(capsys, *args)
    assert code == 2 and match in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not out.exists()


@needs_raccoon
def test_out_folder_with_a_run_is_not_overwritten(capsys, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "metrics.jsonl").write_text("{}\n")
    code, _, err = _cli(capsys, "train", "--data", RACCOON, "--weights", DETECT, "--out", out)
    assert code == 2 and "--overwrite" in err and (out / "metrics.jsonl").read_text() == "{}\n"


@pytest.mark.skipif(not (COCO128 / "annotations").is_dir(), reason="../shared/data/coco128 is not present")
def test_coco_layout_splits_and_crowd_boxes(tmp_path):
    from mobilenet.detection.train import read_splits

    data = json.loads((COCO128 / "annotations" / "instances_train2017.json").read_text())
    crowd_images = {a["image_id"] for a in data["annotations"] if a["iscrowd"]}
    (tmp_path / "annotations").mkdir()
    for split, images in (("train", data["images"][:100]), ("val", data["images"][100:])):
        ids = {im["id"] for im in images}
        part = {**data, "images": images, "annotations": [a for a in data["annotations"] if a["image_id"] in ids]}
        (tmp_path / "annotations" / f"instances_{split}2017.json").write_text(json.dumps(part))
        (tmp_path / f"{split}2017").symlink_to(COCO128 / "train2017")
    train, val, name = read_splits(tmp_path / "annotations" / "instances_train2017.json")
    assert name == "instances_val2017.json" and len(train) == 100 and len(val) == 28
    assert crowd_images & {im["id"] for im in train.coco["images"]}  # coco128's first photos hold crowd boxes ...
    assert not any(a["iscrowd"] for a in train.coco["annotations"])  # ... which are not training targets
    with pytest.raises(FileNotFoundError, match="no validation JSON"):
        read_splits(COCO128 / "annotations" / "instances_train2017.json")


@pytest.mark.skipif(not DETECT.is_file(), reason="../shared/reference/detection is not present")
def test_detector_export_refusals_write_nothing(capsys, tmp_path):
    code, _, err = _cli(capsys, "export", "--weights", DETECT, "--format", "torchscript", "-o", tmp_path / "x.pt")
    assert code == 2 and "a detector exports as tflite, tflite-int8, onnx" in err and not (tmp_path / "x.pt").exists()
    float_detector = tmp_path / "det.safetensors"
    assert _cli(capsys, "convert", DETECT, "-o", float_detector)[0] == 0
    code, _, err = _cli(capsys, "export", "--weights", float_detector, "--format", "tflite-int8", "-o", tmp_path / "x.tflite")
    assert code == 2 and "needs calibration photos" in err and not (tmp_path / "x.tflite").exists()
    code, _, err = _cli(capsys, "export", "--weights", DETECT, "--format", "tflite", "-o", tmp_path / "x.onnx")
    assert code == 2 and "ends in .tflite" in err
    if (COCO128 / "annotations").is_dir():  # a COCO JSON calibrates too: its photos
        coco = COCO128 / "annotations" / "instances_train2017.json"
        args = ("--calibration", coco, "--calibration-images", "4", "-o", tmp_path / "c.tflite")
        code, out, err = _cli(capsys, "export", "--weights", float_detector, "--format", "tflite-int8", *args)
        assert code == 0 and "int8 ranges: calibrated on 4 images" in out, err


@needs_raccoon
@pytest.mark.slow
def test_photo_without_boxes_is_background(tmp_path, capsys):
    import re

    root = _voc_copy(tmp_path, count=4)
    xml = _first_xml(root)
    xml.write_text(re.sub(r"<object>.*?</object>", "", xml.read_text(), flags=re.S))
    summary = train_detector(root, DETECT, tmp_path / "out", epochs=1, progress=False)
    assert summary["train_photos"] == 4 and summary["classes"] == ["raccoon"] and 0 <= summary["map"] <= 1
    assert (tmp_path / "out" / "best.safetensors").is_file()


@needs_raccoon
@pytest.mark.slow
def test_a_stopped_run_resumes_as_if_it_had_not_stopped(tmp_path, capsys, monkeypatch):
    """Killed after epoch 1 of 2, `--resume` ends where the uninterrupted run ends: the same rows
    and the same best weights; resuming with other settings is refused by name."""
    from safetensors.torch import load_file

    import mobilenet.detection.train as det_train

    settings = dict(limit=8, epochs=2, batch_size=4, warm_start=False, progress=False)
    whole = train_detector(RACCOON, DETECT, tmp_path / "whole", **settings)
    record = det_train.RunFiles.record

    def stop_after_first_epoch(self, row, *args):
        record(self, row, *args)
        if row["epoch"] == 1:
            raise KeyboardInterrupt

    monkeypatch.setattr(det_train.RunFiles, "record", stop_after_first_epoch)
    with pytest.raises(KeyboardInterrupt):
        train_detector(RACCOON, DETECT, tmp_path / "stopped", **settings)
    monkeypatch.setattr(det_train.RunFiles, "record", record)
    with pytest.raises(FileExistsError, match="pass --resume to continue it"):
        train_detector(RACCOON, DETECT, tmp_path / "stopped", **settings)
    with pytest.raises(ValueError, match="started with recipe="):
        train_detector(RACCOON, DETECT, tmp_path / "stopped", resume=True, **{**settings, "lr": 0.01})
    capsys.readouterr()
    resumed = train_detector(RACCOON, DETECT, tmp_path / "stopped", resume=True, **settings)
    assert "resumed from" in capsys.readouterr().out
    rows = [
        [
            {k: v for k, v in json.loads(line).items() if k != "seconds"}
            for line in (run / "metrics.jsonl").read_text().splitlines()
        ]
        for run in (tmp_path / "whole", tmp_path / "stopped")
    ]
    assert rows[0] == rows[1] and len(rows[0]) == 2
    assert resumed["map"] == whole["map"]
    a, b = (load_file(str(run / "best.safetensors")) for run in (tmp_path / "whole", tmp_path / "stopped"))
    assert all(torch.equal(a[k], b[k]) for k in a)


@needs_raccoon
@pytest.mark.slow
def test_ddp_two_cpu_processes_train_a_detector(tmp_path):
    """`torchrun --nproc_per_node=2 -m mobilenet train` on boxes: the photos are shared between two
    processes, rank 0 validates and writes, and the run reaches the short run's floors."""
    import os
    import subprocess
    import sys

    out = tmp_path / "ddp"
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29541", "-m", "mobilenet",
         "train", "--data", str(RACCOON), "--weights", str(DETECT), "--out", str(out), "--epochs", "1",
         "--batch-size", "8", "--no-progress"],
        capture_output=True, text=True, timeout=900, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    assert proc.stdout.count("recipe ssd-heads") == 1 and "2 process(es), global batch 16" in proc.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["train_photos"] == 160
    assert summary["map"] >= SHORT_RUN_AP_FLOOR and summary["map_50"] >= SHORT_RUN_AP50_FLOOR
    assert ssd_mobilenet_v1(weights=out / "best.safetensors").config.names == ["background", "raccoon"]
