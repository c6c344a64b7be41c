"""SSD MobileNet v1: the cost row of Table 13, TF's anchors, the box code and NMS, Google's
detect.tflite imported and checked against LiteRT on real photos, COCO AP on coco128, the CLI,
and bad input. Reads ../shared in place (skips with a reason where it is absent)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torchvision.ops import batched_nms, box_iou

import mobilenet
from mobilenet.checkpoint import WeightsFileError
from mobilenet.cli import main
from mobilenet.detection import COCO_NAMES, POSTPROCESSES, AnchorConfig, DetectorConfig, SSDMobileNetV1, detector_cost
from mobilenet.detection.anchors import ssd_anchors
from mobilenet.detection.boxes import decode_boxes, encode_boxes, postprocess
from mobilenet.detection.spec import PostProcessConfig

from .reference import REFERENCE

DETECTION = REFERENCE / "detection"
DETECT = DETECTION / "detect.tflite"
PHOTOS = [DETECTION / n for n in ("cat.png", "grace_hopper.png", "kite_and_cold.jpg", "pets.jpg")]
COCO128 = REFERENCE.parent / "data" / "coco128"
COCO_JSON = COCO128 / "annotations" / "instances_train2017.json"
CLASSIFIER = REFERENCE / "tflite" / "mobilenet_v1_0.25_128_quant.tflite"

needs_files = pytest.mark.skipif(not DETECT.is_file(), reason="../shared/reference/detection is not present")
needs_coco = pytest.mark.skipif(not COCO_JSON.is_file(), reason="../shared/data/coco128 is not present")

# Tolerances of issue 18: our float import against the uint8 file in LiteRT, on identical inputs.
BOX_CODE_MAX, LOGIT_MAX, MEAN_MAX = 1.0, 0.6, 0.06
MIN_IOU, SCORE_DIFF = 0.8, 0.04
# Below the IoU 0.8 only for small boxes: a kite of 15x23 px (of the 300 px input) moves by up
# to 3 px between float and uint8 activations (IoU 0.71), and the file's own op decodes with uint8
# anchors (steps of 0.0065 = 2 px). So two boxes also agree when no edge differs by more than 4 px.
MAX_EDGE_PX = 4.0
# COCO AP on coco128 under the `coco` post-processing: LiteRT's raw outputs, per the reference README.
README_LITERT_AP = 0.2336


# ---------------------------------------------------------------------------------------------
# Spec, cost, anchors, box code, NMS: no files


def test_cost_reproduces_table13_ssd_row():
    report = detector_cost(width_mult=1.0)
    assert (report.mult_adds, report.params) == (1_237_129_408, 6_791_360)
    assert (round(report.mult_adds / 1e9, 1), round(report.params / 1e6, 1)) == (1.2, 6.8)  # Table 13: 1.2 B, 6.8 M
    assert report.to_dict()["anchors"] == 1917
    # Google's file: depth 0.75, "about 4.1 M parameters" (its README).
    assert round(detector_cost(width_mult=0.75).params / 1e6, 1) == 4.1


def test_model_matches_its_cost_and_layout():
    model = mobilenet.ssd_mobilenet_v1().eval()
    report = detector_cost(model.config)
    assert sum(p.numel() for p in model.parameters() if p.dim() > 1) == report.params
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter, torch.no_grad():
        codes, logits = model(torch.zeros(1, 3, 300, 300))
    assert counter.get_total_flops() // 2 == report.mult_adds
    assert codes.shape == (1, 1917, 4) and logits.shape == (1, 1917, 91)
    assert [tuple(f.shape[1:]) for f in model.forward_features(torch.zeros(1, 3, 300, 300))] == [
        (512, 19, 19),
        (1024, 10, 10),
        (512, 5, 5),
        (256, 3, 3),
        (256, 2, 2),
        (128, 1, 1),
    ]


@needs_files
def test_anchors_match_tf_to_1e6():
    ref = np.load(DETECTION / "anchors_1917_float.npy")
    ours = ssd_anchors(AnchorConfig(), DetectorConfig().feature_sizes()).numpy()
    assert ours.shape == ref.shape == (1917, 4)
    assert np.abs(ours - ref).max() <= 1e-6


def test_box_code_round_trip():
    anchors = ssd_anchors(AnchorConfig(), [19, 10, 5, 3, 2, 1])
    codes = torch.randn(2, 1917, 4)
    again = encode_boxes(decode_boxes(codes, anchors), anchors)
    assert torch.allclose(again, codes, atol=1e-3)


def test_postprocessings():
    torch.manual_seed(0)
    xy = torch.rand(1917, 2) * 0.8
    boxes = torch.cat([xy, xy + 0.02 + torch.rand(1917, 2) * 0.2], 1)
    scores = torch.sigmoid(torch.randn(1917, 91) * 2 - 3)
    fast = postprocess(boxes, scores, POSTPROCESSES["tflite"])
    assert len(fast["boxes"]) == 10 and fast["labels"].min() >= 1
    assert (box_iou(fast["boxes"], fast["boxes"]).triu(1) <= 0.6 + 1e-6).all()  # class-agnostic: no two overlap
    assert torch.equal(fast["scores"], fast["scores"].sort(descending=True).values)
    coco = postprocess(boxes, scores, POSTPROCESSES["coco"])
    assert len(coco["boxes"]) == 100
    # The early-stopping NMS equals one batched_nms over every candidate (per-class top-k kept).
    pp = POSTPROCESSES["coco"]
    top, anchors = scores[:, 1:].topk(pp.pre_nms_top_k, dim=0)
    labels = torch.arange(90).expand_as(top)
    cand = boxes.clamp(0, 1)[anchors.flatten()]
    keep = batched_nms(cand, top.flatten(), labels.flatten(), pp.iou_threshold)[:100]
    assert torch.allclose(coco["scores"], top.flatten()[keep])
    assert torch.equal(coco["labels"], labels.flatten()[keep] + 1)
    capped = postprocess(boxes, scores, PostProcessConfig("x", max_per_class=2, max_detections=50))
    assert torch.bincount(capped["labels"]).max() <= 2


def test_config_travels_through_json():
    config = DetectorConfig(width_mult=0.5, postprocess=POSTPROCESSES["tflite"], class_names=tuple(f"c{i}" for i in range(91)))
    assert DetectorConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    assert DetectorConfig().names == list(COCO_NAMES) and COCO_NAMES[17] == "cat"
    with pytest.raises(ValueError, match="num_classes"):
        DetectorConfig(num_classes=1)


# ---------------------------------------------------------------------------------------------
# Google's detect.tflite: import, LiteRT parity, the cat


@pytest.fixture(scope="module")
def imported():
    pytest.importorskip("ai_edge_litert", reason="ai-edge-litert is not installed")
    if not DETECT.is_file():
        pytest.skip("../shared/reference/detection is not present")
    from mobilenet.detection.runtime import LiteRTDetector, TorchDetector

    return TorchDetector(mobilenet.ssd_mobilenet_v1(weights=DETECT)), LiteRTDetector(DETECT, threads=1)


def test_config_read_from_the_file(imported):
    c = imported[0].config
    assert (c.width_mult, c.num_classes, c.resolution, c.activation, c.padding, c.head_kernel) == (
        0.75,
        91,
        300,
        "relu6",
        "tf",
        1,
    )
    assert (c.mean, c.std, c.box_scales) == (128.0, 128.0, (10.0, 10.0, 5.0, 5.0))
    pp = c.postprocess
    assert (pp.name, pp.class_agnostic, round(pp.iou_threshold, 6), pp.max_detections) == ("tflite", True, 0.6, 10)


def test_parity_with_litert_on_the_photos(imported):
    from mobilenet.detection.data import load_input

    ours, theirs = imported
    batch = torch.stack([load_input(p, 300)[0] for p in PHOTOS])
    (c1, l1), (c2, l2) = ours.raw(batch), theirs.raw(batch)
    box_diff, logit_diff = (c1 - c2).abs(), (l1 - l2).abs()
    assert box_diff.max() < BOX_CODE_MAX and logit_diff.max() < LOGIT_MAX, (box_diff.max(), logit_diff.max())
    assert box_diff.mean() < MEAN_MAX and logit_diff.mean() < MEAN_MAX
    # Detections, both raw outputs through the same post-processing (the file's: fast NMS, 10 boxes).
    matched = _match(ours.detections(batch, "tflite"), theirs.detections(batch, "tflite"))
    assert matched >= 15  # the cat, Grace Hopper and her tie, the kite flyers, two dogs


def test_our_tflite_postprocessing_is_the_files_own(imported):
    """LiteRT's raw outputs through our `tflite` post-processing against the file's own op. The op
    decodes with its uint8 anchors, so a box whose overlap with a better one sits at the IoU
    threshold may be kept by one and suppressed by the other: on grace_hopper.png the op keeps a
    second tie at IoU 0.595 to the first, ours finds 0.6+. Such borderline boxes are allowed."""
    from mobilenet.detection.data import load_input

    theirs = imported[1]
    batch = torch.stack([load_input(p, 300)[0] for p in PHOTOS])
    borderline = []
    matched = _match(theirs.detections(batch, "tflite"), theirs.detections(batch, own=True), borderline=borderline)
    assert matched >= 15 and len(borderline) <= 1


def _match(ours: list[dict], google: list[dict], *, borderline: list | None = None) -> int:
    """Every detection scoring >= 0.5 on either side has one of the same label on the other, with
    IoU >= 0.8 and a score within 0.04. Returns how many were matched."""
    iou_threshold = POSTPROCESSES["tflite"].iou_threshold
    matched = 0
    for a_side, b_side in ((ours, google), (google, ours)):
        for a, b in zip(a_side, b_side):
            for i, (box, score, label) in enumerate(zip(a["boxes"], a["scores"], a["labels"])):
                if score < 0.5:
                    continue
                same = b["labels"] == label
                iou = box_iou(box[None], b["boxes"][same])[0] if same.any() else torch.zeros(1)
                best = int(iou.argmax())
                edge = float((box - b["boxes"][same][best]).abs().max()) * 300 if same.any() else 1e9
                close = iou[best] >= MIN_IOU or edge <= MAX_EDGE_PX
                if close and abs(float(b["scores"][same][best]) - float(score)) <= SCORE_DIFF:
                    matched += 1
                    continue
                # NMS decided this box differently: it overlaps a better box of its own side at the threshold.
                better = (a["labels"][:i] == label) & (a["scores"][:i] >= score)
                overlap = box_iou(box[None], a["boxes"][:i][better])[0].max() if better.any() else torch.tensor(0.0)
                if borderline is not None and abs(float(overlap) - iou_threshold) < 0.02:
                    borderline.append((COCO_NAMES[label], float(score), float(overlap)))
                    continue
                raise AssertionError(
                    f"{COCO_NAMES[label]} ({float(score):.3f}) has no counterpart: best IoU {float(iou[best]):.3f}"
                )
    return matched


def test_detect_finds_the_cat(imported):
    (det,) = mobilenet.detection.detect(imported[0], [DETECTION / "cat.png"])
    names = [COCO_NAMES[i] for i in det["labels"]]
    assert names[0] == "cat" and det["scores"][0] > 0.7
    # Coral's expected box (a 1.0-depth model: near, not equal).
    assert box_iou(det["boxes"][:1], torch.tensor([[29.0, 39.0, 377.0, 347.0]]))[0, 0] > 0.7


def test_converted_file_carries_its_config(imported, tmp_path):
    out = tmp_path / "det.safetensors"
    assert main(["convert", str(DETECT), "-o", str(out)]) == 0
    model = mobilenet.ssd_mobilenet_v1(weights=out)
    assert model.config == imported[0].config
    x = torch.rand(1, 3, 300, 300) * 2 - 1
    with torch.no_grad():
        a, b = model(x), imported[0].model(x.contiguous(memory_format=torch.channels_last))
    assert (a[0] - b[0]).abs().max() < 1e-3 and (a[1] - b[1]).abs().max() < 1e-3
    with pytest.raises(ValueError, match="width_mult"):
        mobilenet.ssd_mobilenet_v1(weights=out, width_mult=1.0)


# ---------------------------------------------------------------------------------------------
# COCO AP on coco128


@needs_coco
@pytest.mark.slow
def test_coco128_ap_matches_litert(imported):
    """Ours under `coco` post-processing against LiteRT's raw outputs under the same (the reference
    README's 0.2336; benchmarks/detection.py runs LiteRT live: 0.2347 vs ours 0.2350)."""
    from mobilenet.detection import evaluate_detector

    ours = evaluate_detector(imported[0], COCO_JSON, postprocess="coco")
    assert ours["images"] == 128 and ours["objects"] == 939 and ours["categories"] == 80
    assert abs(ours["map"] - README_LITERT_AP) <= 0.005, ours["map"]
    # Its time ("seconds", 20-50 s on 2 loaded cores) is reported in benchmarks/RESULTS.md, not
    # asserted: tests never assert wall-clock time.
    assert ours["seconds"] > 0


@needs_coco
@pytest.mark.slow
def test_our_int8_detector_scores_as_googles_own_file(imported, tmp_path, capsys):
    """tflite-int8 of Google's detector, from the ranges the file was trained with: Google's phone
    interface (uint8 image in, the post-processing op's four float outputs), and on coco128 under
    each file's own post-processing op, AP within 0.01 of Google's file, both run here in LiteRT."""
    pytest.importorskip("ai_edge_litert")
    from ai_edge_litert.interpreter import Interpreter

    from mobilenet.detection import evaluate_detector

    path = tmp_path / "detect.int8.tflite"
    code, out, err = _cli(capsys, "export", "--weights", str(DETECT), "--format", "tflite-int8", "-o", str(path))
    assert code == 0 and "int8 ranges: the TF Lite file's own" in out, err
    interpreter = Interpreter(model_path=str(path))
    (inp,) = interpreter.get_input_details()
    assert list(inp["shape"]) == [1, 300, 300, 3] and inp["dtype"] == np.uint8
    assert [o["dtype"] for o in interpreter.get_output_details()] == [np.float32] * 4
    ops = {op["op_name"] for op in interpreter._get_ops_details()}
    assert {"CONV_2D", "DEPTHWISE_CONV_2D", "TFLite_Detection_PostProcess"} <= ops
    weights = [d for d in interpreter.get_tensor_details() if d["name"].endswith(".weight")]
    assert weights and all(d["dtype"] == np.int8 for d in weights)
    ours = evaluate_detector(path, COCO_JSON, runtime="litert", postprocess="tflite")
    google = evaluate_detector(DETECT, COCO_JSON, runtime="litert", postprocess="tflite")
    assert abs(ours["map"] - google["map"]) <= 0.01, (ours["map"], google["map"])


# ---------------------------------------------------------------------------------------------
# The CLI and bad input


def _subset(tmp_path: Path, count: int = 6, edit=None) -> Path:
    data = json.loads(COCO_JSON.read_text())
    data["images"] = data["images"][:count]
    ids = {im["id"] for im in data["images"]}
    data["annotations"] = [a for a in data["annotations"] if a["image_id"] in ids]
    if edit:
        edit(data)
    path = tmp_path / "subset.json"
    path.write_text(json.dumps(data))
    return path


def _cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cli_cost_detector(capsys):
    code, out, _ = _cli(capsys, "cost", "--detector", "ssd", "--json")
    data = json.loads(out)
    assert code == 0 and (data["mult_adds"], data["params"]) == (1_237_129_408, 6_791_360)
    code, out, _ = _cli(capsys, "cost", "--detector", "ssd")
    assert "1.24 B" in out and "Table 13" in out


@needs_files
def test_cli_detect_and_draw(capsys, tmp_path):
    code, out, _ = _cli(capsys, "detect", DETECTION / "cat.png", "--weights", DETECT, "--json", "--draw", tmp_path / "drawn")
    (result,) = json.loads(out)
    assert code == 0 and result["detections"][0]["label"] == "cat" and result["detections"][0]["score"] > 0.7
    assert len(result["detections"][0]["box"]) == 4 and Path(result["drawing"]).is_file()
    code, out, _ = _cli(capsys, "detect", DETECTION / "cat.png", "--weights", DETECT, "--runtime", "litert")
    assert code == 0 and "cat" in out


@needs_coco
def test_cli_eval_coco_json(capsys, tmp_path):
    subset = _subset(tmp_path)
    code, out, _ = _cli(capsys, "eval", "--weights", DETECT, "--data", subset, "--images", COCO128 / "train2017", "--json")
    result = json.loads(out)
    assert code == 0 and result["images"] == 6 and 0.05 < result["map"] <= 1 and result["map_50"] >= result["map"]


@needs_files
def test_cli_eval_voc_root(capsys):
    raccoon = REFERENCE.parent / "data" / "raccoon"
    if not raccoon.is_dir():
        pytest.skip("../shared/data/raccoon is not present")
    from mobilenet.detection.data import read_voc

    data = read_voc(raccoon)
    assert len(data) == 40 and len(data.coco["annotations"]) == 44 and data.categories == {1: "raccoon"}
    code, _, err = _cli(capsys, "eval", "--weights", DETECT, "--data", raccoon)  # raccoon is not a COCO class
    assert code == 2 and "none of" in err and "--class-agnostic" in err


@needs_coco
@pytest.mark.parametrize(
    "case,match",
    [
        ("not_coco", "not a COCO instances JSON"),
        ("empty_file", "empty"),
        ("no_images", "lists no images"),
        ("box_outside", "box outside its image"),
        ("missing_image", "does not exist"),
    ],
)
def test_bad_annotations(capsys, tmp_path, case, match):
    if case == "not_coco":
        path = tmp_path / "x.json"
        path.write_text(json.dumps({"foo": [1, 2]}))
    elif case == "empty_file":
        path = tmp_path / "x.json"
        path.write_bytes(b"")
    elif case == "no_images":
        path = _subset(tmp_path, edit=lambda d: d.update(images=[], annotations=[]))
    elif case == "box_outside":
        path = _subset(tmp_path, edit=lambda d: d["annotations"][0]["bbox"].__setitem__(0, 5000.0))
    else:
        path = _subset(tmp_path, edit=lambda d: d["images"][0].update(file_name="missing.jpg"))
    code, _, err = _cli(capsys, "eval", "--weights", DETECT, "--data", path, "--images", COCO128 / "train2017")
    assert code == 2 and match in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


@needs_files
def test_classifier_and_detector_weights_are_not_mixed_up(capsys, tmp_path):
    classifier = tmp_path / "c.safetensors"
    from mobilenet.checkpoint import save_weights

    save_weights(classifier, mobilenet.mobilenet_v1(width_mult=0.25, resolution=32, num_classes=10))
    code, _, err = _cli(capsys, "detect", DETECTION / "cat.png", "--weights", classifier)
    assert code == 2 and "classifier, not an object detector" in err
    if CLASSIFIER.is_file():
        code, _, err = _cli(capsys, "detect", DETECTION / "cat.png", "--weights", CLASSIFIER)
        assert code == 2 and "not an object detector" in err
    flowers = REFERENCE.parent / "data" / "flowers"
    if flowers.is_dir():
        code, _, err = _cli(capsys, "eval", "--weights", DETECT, "--data", flowers)
        assert code == 2 and "classifier data" in err
    with pytest.raises(WeightsFileError, match="object detector"):
        mobilenet.mobilenet_v1(weights=DETECT)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        mobilenet.detection.detect_files(DETECT, [tmp_path / "nope.jpg"])
    assert isinstance(SSDMobileNetV1(width_mult=0.25), SSDMobileNetV1)
