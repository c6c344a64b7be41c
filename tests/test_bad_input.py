"""Bad input through the real CLI: each case exits 2 with one message that names the problem, and
never a traceback. The bad files are made here."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from .conftest import build_once
from .reference import TFLITE

SMALL = TFLITE / "mobilenet_v1_0.25_128_quant.tflite"
OTHER = TFLITE / "mobilenet_v1_0.5_160_quant.tflite"
EXTRACTOR = TFLITE / "mobilenet_v1_1.0_224_quant_embedding_extractor.tflite"
HEAD = TFLITE / "mobilenet_v1_1.0_224_quant_head_layers.tflite"
MEDIUM = TFLITE / "mobilenet_v1_0.75_192_quant.tflite"
IMG = "{root}/two/val/a/0.png"
W = "{root}/w25.safetensors"  # ours: α 0.25, 32 px, 10 classes
FAST = ["-a", "0.25", "-r", "32", "--epochs", "1", "--no-progress"]


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mobilenet", *args], capture_output=True, text=True, timeout=600, cwd=cwd)


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    """Two small ImageFolder trees: `two` with two classes, `one` with a single class; a finished run."""
    root = tmp_path_factory.mktemp("bad")
    rng = np.random.default_rng(0)
    for name, classes in (("two", ("a", "b")), ("one", ("a",))):
        for split in ("train", "val"):
            for c in classes:
                d = root / name / split / c
                d.mkdir(parents=True)
                for i in range(4):
                    Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(d / f"{i}.png")
    (root / "file.txt").write_text("not a folder")
    (root / "run").mkdir()
    (root / "run" / "metrics.jsonl").write_text("")
    # Files whose name and content disagree, as a failed download or a mix-up leaves them.
    for name in ("fake.onnx", "fake.tflite", "fake.pte", "fake.safetensors", "fake.pt", "existing.txt"):
        (root / name).write_text("<html>not found</html>")
    (root / "empty.safetensors").write_bytes(b"")
    import torch

    from mobilenet import mobilenet_v1
    from mobilenet.checkpoint import save_state, save_weights

    save_weights(root / "w25.safetensors", mobilenet_v1(width_mult=0.25, resolution=32, num_classes=10))
    save_weights(root / "zero.safetensors", mobilenet_v1(width_mult=0.25, resolution=32, num_classes=0))
    save_weights(root / "run" / "best.safetensors", mobilenet_v1(width_mult=0.25, resolution=32, num_classes=10))
    save_state(root / "run" / "last_state.pt", {"epoch": 1, "best_top1": 0.5, "optimizer": {}, "scheduler": {}})
    torch.save({"conv_stem.weight": torch.zeros(1)}, root / "odd.pt")
    small = mobilenet_v1(width_mult=0.25, resolution=32, num_classes=10).eval()
    torch.jit.save(torch.jit.trace(small, torch.zeros(1, 3, 32, 32)), root / "m.torchscript.pt")
    _round_three_files(root)
    return root


def _png_header(width: int, height: int) -> bytes:
    """A PNG of a few dozen bytes that declares ``width`` x ``height`` pixels: a decompression bomb's header."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)) + chunk(b"IEND", b"")


def _round_three_files(root: Path) -> None:
    """Issue 20's inputs: absurd images, odd layouts, links, weights that load wrongly."""
    import argparse
    import json
    import os

    import torch
    from safetensors.torch import save_file

    from mobilenet import mobilenet_v1
    from mobilenet.checkpoint import save_weights, weights_metadata

    Image.new("RGB", (1, 200000)).save(root / "tall.png")  # 863 bytes; resized, 7.4 M pixels long
    (root / "huge.png").write_bytes(_png_header(10000, 10000))  # 1x to 2x PIL's limit: PIL only warns
    (root / "bomb.png").write_bytes(_png_header(30000, 30000))  # beyond 2x: PIL refuses with its own error
    os.mkfifo(root / "fifo.jpg")  # opening it would block forever
    two = root / "two"

    def tree_of(name: str, splits: tuple[str, ...] = ("train", "val")) -> Path:
        for split in splits:
            for c in ("a", "b"):
                (root / name / split / c).mkdir(parents=True)
                for i in range(4):
                    (root / name / split / c / f"{i}.png").write_bytes((two / "train" / c / f"{i}.png").read_bytes())
        return root / name

    tree_of("valonly", ("val",))
    tree_of("trainonly", ("train",))
    (tree_of("valfile", ("train",)) / "val").write_text("not a folder")
    os.symlink("..", tree_of("loopclass") / "train" / "c")  # a class folder that is the data folder's parent
    os.symlink("../../train/a/0.png", tree_of("leak") / "val" / "a" / "x.png")  # a training photo in val
    os.symlink("../b/0.png", tree_of("relabel") / "train" / "a" / "x.png")  # b's photo filed under a

    good = mobilenet_v1(width_mult=0.25, resolution=32, num_classes=10)
    nan = mobilenet_v1(width_mult=0.25, resolution=32, num_classes=10)
    with torch.no_grad():
        nan.blocks[3].pw.bn.running_var[0] = float("nan")
    save_weights(root / "nan.safetensors", nan)
    meta = weights_metadata(root / "w25.safetensors")
    ints = {k: v.round().long() if v.is_floating_point() else v for k, v in good.state_dict().items()}
    save_file(ints, str(root / "int.safetensors"), metadata=meta)
    floats = {k: v.contiguous() for k, v in good.state_dict().items()}
    for name, config in (("listconfig", [0.25, 32]), ("nullconfig", None)):
        save_file(floats, str(root / f"{name}.safetensors"), metadata={**meta, "mobilenet_config": json.dumps(config)})

    # Any object beyond tensors makes torch.save write a pickle that names code to run on loading.
    torch.save({"model": argparse.Namespace(lr=0.1)}, root / "pickle.pth")

    # Round four: a variance below zero (NaN in eval mode), a link to an input, a run that goes NaN in eval.
    negvar = mobilenet_v1(width_mult=0.25, resolution=32, num_classes=10)
    with torch.no_grad():
        negvar.blocks[0].dw.bn.running_var[:3] = -1.0
    save_weights(root / "negvar.safetensors", negvar)
    os.symlink("fake.tflite", root / "link.tflite")
    hugemean = mobilenet_v1(width_mult=0.25, resolution=32, num_classes=2)
    with torch.no_grad():  # finite, so it loads; in eval mode the stem's output overflows to inf, then NaN
        hugemean.stem.bn.running_mean.fill_(-3e38)
        hugemean.stem.bn.weight.fill_(10.0)
    save_weights(root / "hugemean.safetensors", hugemean)


CASES = [
    # (arguments, phrase the message must hold); {root} is the fixture's folder
    (["train", "--data", "{root}/one", *FAST, "--out", "{root}/o1"], "at least 2 class folders"),
    (["train", "--data", "{root}/two", "--freeze-backbone", *FAST, "--out", "{root}/o2"], "random backbone"),
    (["train", "--data", "{root}/two", "--batch-size", "100000", *FAST, "--out", "{root}/o3"], "more than the 8 training images"),
    (["train", "--data", "{root}/two", *FAST, "--out", "{root}/run"], "already holds a training run"),
    (["train", "--data", "{root}/file.txt", *FAST, "--out", "{root}/o4"], "is a file"),
    (["train", *FAST, "--out", "{root}/file.txt"], "is a file"),
    (["train", *FAST, "--batch-size", "0", "--out", "{root}/o5"], "batch_size=0"),
    (["train", *FAST, "--lr", "nan", "--out", "{root}/o6"], "lr=nan"),
    (["train", *FAST, "--resume", "--overwrite", "--out", "{root}/o7"], "contradict"),
    (["sweep", "-a", "0.25", "0.25", "-r", "32", "--epochs", "1", "--out", "{root}/s"], "more than once"),
    (["predict", IMG, "--weights", str(SMALL), "--topk", "0"], "argument --topk: 0 is too small"),
    (["predict", "{root}/two/val/a/0.png", "--weights", str(SMALL), "--crop", "0"], "crop=0"),
    (["predict", "{root}/two/val/a/0.png", "--weights", str(SMALL), "--crop", "1.5"], "crop=1.5"),
    (["predict", "{root}/two/val/a/0.png", "--weights", str(SMALL), "--crop", "nan"], "crop=nan"),
    (["predict", "{root}/file.txt", "--weights", str(SMALL)], "not a readable image"),
    (
        ["train", "--data", "{root}/two", "--weights", str(SMALL), "-a", "0.5", "--epochs", "1", "--out", "{root}/o8"],
        "contradicts",
    ),
    # 1. Silent wrong results: the weights fix α and the classes; two files only for the split model.
    (["export", "--weights", W, "--width-mult", "0.5", "-o", "{root}/fresh/e.onnx"], "--width-mult 0.5 contradicts"),
    (["export", "--weights", W, "--num-classes", "5", "-o", "{root}/fresh/e.onnx"], "--num-classes 5 contradicts"),
    (["bench", "--weights", W, "--num-classes", "5"], "--num-classes 5 contradicts"),
    (["predict", IMG, "--weights", W, W], "only for Google's split TF Lite"),
    (["eval", "--weights", W, "{root}/odd.pt"], "only for Google's split TF Lite"),
    (["bench", "-a", "0.25", "-r", "32", "--batch-size", "0"], "argument --batch-size/-b: 0 is too small"),
    # 2. Numbers checked at parse time, with the flag named.
    (["bench", "-a", "0.25", "-r", "32", "--iters", "0"], "argument --iters: 0 is too small"),
    (["bench", "-a", "0.25", "-r", "32", "--warmup", "-1"], "argument --warmup: -1 is too small"),
    (["bench", "-a", "0.25", "-r", "32", "--threads", "0"], "argument --threads/-t: 0 is too small"),
    (["bench", "-a", "0.25", "-r", "32", "--min-seconds", "nan"], "argument --min-seconds: nan is not allowed"),
    (["bench", "-a", "0", "-r", "32"], "argument --width-mult/-a: 0 is not allowed"),
    (["export", "-a", "0.25", "--resolution", "16", "-o", "{root}/fresh/e.onnx"], "argument --resolution/-r: 16 is too small"),
    (["cost", "--resolution", "16"], "argument --resolution/-r: 16 is too small"),
    (["cost", "--num-classes", "-1"], "argument --num-classes: -1 is too small"),
    (["export", "--format", "onnx-int8", "--calibration-images", "0"], "argument --calibration-images: 0 is too small"),
    (["eval", "--weights", W, "--batch-size", "x"], "argument --batch-size: 'x' is not a whole number"),
    # 2. Files that are not what their name says, and things that are not files.
    (["predict", IMG, "--weights", "{root}/zero.safetensors"], "no classifier"),
    (["predict", IMG, "--weights", "{root}/fake.onnx"], "is named .onnx but its content is not a format we know"),
    (["predict", IMG, "--weights", "{root}/fake.tflite"], "is named .tflite but"),
    (["predict", IMG, "--weights", "{root}/fake.pte"], "is named .pte but"),
    (["predict", IMG, "--weights", "{root}/fake.safetensors"], "is named .safetensors but"),
    (["export", "--weights", "{root}/fake.pt", "-o", "{root}/fresh/e.onnx"], "is named .pt but"),
    (["predict", IMG, "--weights", "{root}/empty.safetensors"], "is empty (0 bytes)"),
    (["predict", IMG, "--weights", "{root}/run"], "is a folder; did you mean"),
    (["eval", "--weights", "{root}/w25.onnx"], "does not exist"),
    # 3. Messages that name the right thing.
    (["export", "--format", "onnx-int8", "--calibration", "{root}/file.txt"], "is a file, not a folder"),
    (["bench", "--calibration", "{root}/file.txt"], "is a file, not a folder"),
    (["eval", "--weights", W, "--data", "{root}/file.txt"], "is a file, not a folder"),
    (["eval", "--weights", W, "--data", "{root}/nowhere"], "does not exist"),
    (["predict", IMG, "--weights", "{root}/run/last_state.pt"], "is a resume checkpoint"),
    (["predict", IMG, "--weights", "{root}/m.torchscript.pt"], "is an exported TorchScript"),
    (
        ["convert", str(SMALL), str(OTHER), "-o", "{root}/fresh/c.safetensors"],
        "expected the embedding_extractor and the head_layers",
    ),
    (["convert", str(EXTRACTOR), str(EXTRACTOR), "-o", "{root}/fresh/c.safetensors"], "expected the embedding_extractor"),
    # 4. Output files: the format decides the kind; a contradicting suffix is refused before any work.
    (["export", "--weights", W, "-o", "{root}/existing.txt"], "ends in '.txt', but this writes a .onnx file"),
    (["export", "--weights", W, "--format", "torchscript", "-o", "{root}/fresh/x.onnx"], "name it"),
    (["export", "--weights", W, "--format", "pt2", "-o", "{root}/run"], "is a folder"),
    (["convert", str(SMALL), "-o", "{root}/fresh/c.txt"], "ends in '.txt'"),
    (["bench", "-a", "0.25", "-r", "32", "--plot", "{root}/fresh/p.txt"], "ends in '.txt'"),
    # Round three (issue 20). 1. Images: one reading policy, refused before anything is decoded.
    (["predict", "{root}/tall.png", "--weights", W], "1x200000 pixels has a side ratio beyond 100:1"),
    (["predict", "{root}/huge.png", "--weights", W], "decompression-bomb limit"),
    (["predict", "{root}/bomb.png", "--weights", W], "decompression-bomb limit"),
    (["predict", "{root}/fifo.jpg", "--weights", W], "not a regular file"),
    (
        ["predict", IMG, "--weights", W, "--crop", "1e-6", "--preprocess", "torchvision"],
        "crop=1e-06 must be a fraction in [0.05, 1]",
    ),
    (["train", "--data", "{root}/loopclass", *FAST, "--out", "{root}/o9"], "holds the data folder itself"),
    (["train", "--data", "{root}/leak", *FAST, "--out", "{root}/o10"], "validation must be held out"),
    (["train", "--data", "{root}/relabel", *FAST, "--out", "{root}/o11"], "a photo must have one label"),
    # 2. Layouts that are not what they seem.
    (["train", "--data", "{root}/valonly", *FAST, "--out", "{root}/o12"], "has val/ but no train/"),
    (["train", "--data", "{root}/valfile", *FAST, "--out", "{root}/o13"], "val is a file, not a folder"),
    (["eval", "--weights", W, "--data", "{root}/valfile"], "val is a file, not a folder"),
    (["eval", "--weights", W, "--data", "{root}/trainonly"], "has train/ but no val/"),
    # 3. Weights that would load and answer wrongly.
    (["predict", IMG, "--weights", "{root}/nan.safetensors"], "blocks.3.pw.bn.running_var holds 1 NaN or infinite value"),
    (["predict", IMG, "--weights", "{root}/int.safetensors"], "stem.conv.weight holds int64 values where the model has float32"),
    # 4. Tracebacks that became sentences.
    (["predict", IMG, "--weights", "{root}/listconfig.safetensors"], "must be a dict of fields (a JSON object), not list"),
    (["predict", IMG, "--weights", "{root}/nullconfig.safetensors"], "must be a dict of fields (a JSON object), not NoneType"),
    (["predict", IMG, "--weights", ""], "weights='' is an empty string"),
    (["predict", "", "--weights", W], "image is an empty string"),
    # 7. A pickle is refused with the reason, never with torch's "weights_only=False will likely succeed".
    (["predict", IMG, "--weights", "{root}/pickle.pth"], "loading such a pickle runs whatever code it carries"),
    # 9. Seeds every generator accepts.
    (["train", *FAST, "--seed", str(2**64), "--out", "{root}/o14"], "seed=18446744073709551616 must be a whole number"),
    (["train", *FAST, "--seed", "-1", "--out", "{root}/o15"], "seed=-1 must be a whole number"),
    # Round four (issue 21). 1. Nothing destroyed: an output that is an input is refused before any work.
    (["export", "--weights", "{root}/fake.tflite", "--format", "tflite", "-o", "{root}/fake.tflite"], "is the input file"),
    (["export", "--weights", "{root}/fake.tflite", "--format", "tflite", "-o", "{root}/two/../fake.tflite"], "is the input file"),
    (["export", "--weights", "{root}/link.tflite", "--format", "tflite", "-o", "{root}/fake.tflite"], "is the input file"),
    (["export", "--weights", "{root}/fake.pt", "--format", "torchscript", "-o", "{root}/fake.pt"], "is the input file"),
    (["convert", "{root}/w25.safetensors", "-o", "{root}/w25.safetensors"], "writing it would destroy the input"),
    # 5. TF Lite files that are not one model, in either runtime.
    (["predict", IMG, "--runtime", "litert", "--weights", str(SMALL), str(OTHER)], "A TF Lite model is one file"),
    (["predict", IMG, "--weights", str(SMALL), str(OTHER)], "A TF Lite model is one file"),
    (["predict", IMG, "--runtime", "litert", "--weights", str(SMALL), str(OTHER), str(MEDIUM)], "got 3 TF Lite files"),
    (["eval", "--runtime", "litert", "--weights", str(SMALL), str(OTHER), str(MEDIUM)], "a model is one file, or the two"),
    (["predict", IMG, "--runtime", "litert", "--weights", str(HEAD)], "it is the head_layers half of Google's split"),
    (["predict", IMG, "--weights", str(HEAD)], "pass it together with its embedding_extractor file"),
    # Weights that load and compute NaN in eval mode.
    (["predict", IMG, "--weights", "{root}/negvar.safetensors"], "blocks.0.dw.bn.running_var holds 3 negative value(s)"),
]


@pytest.mark.parametrize("args,phrase", CASES, ids=[" ".join([*a[:1], p]) for a, p in CASES])
def test_bad_input_is_one_clear_line(tree, args, phrase):
    if any(not f.is_file() and str(f) == a for f in (SMALL, OTHER, EXTRACTOR, HEAD, MEDIUM) for a in args):
        pytest.skip("Google's TF Lite files are absent")
    if "litert" in args:
        pytest.importorskip("ai_edge_litert")
    args = [a.replace("{root}", str(tree)) for a in args]
    proc = run(*args)
    assert proc.returncode == 2, (proc.returncode, proc.stdout[-1000:], proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr, proc.stderr
    assert phrase in proc.stderr, proc.stderr
    assert "weights_only=False" not in proc.stderr, "torch's advice to load untrusted pickles was passed on"
    # Validation comes before work: a refused run leaves no output folder behind.
    for flag in ("--out",):
        if flag in args and "already holds" not in phrase and "is a file" not in phrase:
            assert not Path(args[args.index(flag) + 1]).exists()
    assert not (tree / "fresh").exists(), "a refused run created its output folder"
    for name in ("existing.txt", "fake.tflite", "fake.pt"):
        assert (tree / name).read_text() == "<html>not found</html>", f"a refused command overwrote {name}"
    assert (tree / "w25.safetensors").stat().st_size > 100_000


def test_debug_shows_the_traceback(tree):
    proc = run("--debug", "train", "--data", str(tree / "one"), *FAST, "--out", str(tree / "dbg"))
    assert proc.returncode != 0 and "Traceback" in proc.stderr


def test_sixteen_bit_png_is_scaled_not_clipped(tmp_path):
    """A 16-bit grey PNG at mid-grey decodes to mid-grey, as torchvision would, not to white."""
    from mobilenet.data import open_rgb

    path = tmp_path / "grey16.png"
    Image.fromarray(np.full((20, 20), 32768, dtype=np.uint16)).save(path)
    pixels = np.asarray(open_rgb(path))
    assert pixels.shape == (20, 20, 3) and abs(int(pixels.mean()) - 128) <= 1


def test_output_folder_given_as_file_names_the_users_path(tmp_path):
    from mobilenet import mobilenet_v1
    from mobilenet.checkpoint import save_weights

    with pytest.raises(IsADirectoryError, match="is a folder"):
        save_weights(tmp_path, mobilenet_v1(width_mult=0.25, num_classes=2))
    with pytest.raises(OSError, match=r"cannot write '/proc/nope/w\.safetensors'"):
        save_weights("/proc/nope/w.safetensors", mobilenet_v1(width_mult=0.25, num_classes=2))


def test_export_without_suffix_gets_the_formats(tree, tmp_path):
    """`-o model` with --format onnx writes model.onnx (with a note) and checks it as ONNX."""
    pytest.importorskip("onnxruntime")
    proc = run("export", "--weights", str(tree / "w25.safetensors"), "-o", str(tmp_path / "model"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "writing" in proc.stderr and (tmp_path / "model.onnx").is_file() and not (tmp_path / "model").exists()


def test_export_restating_the_weights_alpha_is_fine(tree, tmp_path):
    """-a equal to the weights' α, and a resolution other than theirs (the net is fully convolutional)."""
    proc = run(
        "export",
        "--weights",
        str(tree / "w25.safetensors"),
        "--format",
        "torchscript",
        "-a",
        "0.25",
        "-r",
        "64",
        "-o",
        str(tmp_path / "m.pt"),
    )
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_bench_columns_never_run_together():
    from mobilenet.bench import Timing, format_timings

    table = format_timings([Timing("eager", 0.25, 128, 100000, 1000, 1.5, 1.0, 2.0, 5, 14e6)])
    assert " 100000 1000 " in table


def test_output_files_respect_the_umask(tmp_path):
    """Written atomically through a private temporary file, but ending with open()'s permissions."""
    import os

    from mobilenet.checkpoint import atomic_write

    old = os.umask(0o027)
    try:
        path = atomic_write(tmp_path / "x.txt", lambda tmp: Path(tmp).write_text("hi"))
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o640


# Round three (issue 20): what the library refuses without the CLI, and what goes on despite bad input.


def _api_cases() -> list[tuple[str, Any, type[Exception], str]]:
    from mobilenet import MobileNetConfig, MobileNetV1, mobilenet_v1
    from mobilenet.checkpoint import save_weights
    from mobilenet.data import eval_transform, load_data, open_rgb
    from mobilenet.train import TrainConfig

    small = mobilenet_v1(width_mult=0.25, resolution=32, num_classes=2)
    return [
        ("bn_eps inf", lambda: mobilenet_v1(bn_eps=float("inf")), ValueError, "bn_eps=inf must be a finite number > 0"),
        ("bn_eps nan", lambda: mobilenet_v1(bn_eps=float("nan")), ValueError, "bn_eps=nan must be a finite number > 0"),
        ("bn_eps 0", lambda: mobilenet_v1(bn_eps=0.0), ValueError, "bn_eps=0.0 must be a finite number > 0"),
        ("list config", lambda: MobileNetV1([0.25, 32]), TypeError, "config must be a MobileNetConfig, not list"),
        (
            "null config",
            lambda: MobileNetConfig.from_dict(None),
            TypeError,
            "must be a dict of fields (a JSON object), not NoneType",
        ),
        ("bytes weights", lambda: mobilenet_v1(weights=b"w.safetensors"), TypeError, "weights=b'w.safetensors' is bytes"),
        ("empty weights", lambda: mobilenet_v1(weights=""), ValueError, "weights='' is an empty string"),
        ("bytes data", lambda: load_data(b"data", 32), TypeError, "data folder b'data' is bytes"),
        ("empty data", lambda: load_data("", 32), ValueError, "data folder is an empty string"),
        ("seed 1.5", lambda: load_data(None, 32, seed=1.5), ValueError, "seed=1.5 must be a whole number"),
        ("seed 2**64", lambda: load_data(None, 32, seed=2**64), ValueError, "seed=18446744073709551616 must be"),
        ("train seed 1.5", lambda: TrainConfig(seed=1.5).check(), ValueError, "seed=1.5 must be a whole number"),
        ("bytes image", lambda: open_rgb(b"x.png"), TypeError, "image b'x.png' is bytes"),
        ("empty output", lambda: save_weights("", small), ValueError, "output is an empty string"),
        ("tiny crop", lambda: eval_transform(32, 1e-6), ValueError, "crop=1e-06 must be a fraction in [0.05, 1]"),
    ]


API_NAMES = [
    "bn_eps inf", "bn_eps nan", "bn_eps 0", "list config", "null config", "bytes weights", "empty weights", "bytes data",
    "empty data", "seed 1.5", "seed 2**64", "train seed 1.5", "bytes image", "empty output", "tiny crop",
]  # fmt: skip


@pytest.mark.parametrize("name", API_NAMES)
def test_api_refuses_with_the_cause_named(name):
    cases = {case[0]: case[1:] for case in _api_cases()}
    assert sorted(cases) == sorted(API_NAMES)
    call, kind, phrase = cases[name]
    with pytest.raises(kind) as info:
        call()
    assert phrase in str(info.value)


def test_eval_skips_bad_images_and_leaves_absent_classes_null(tree, tmp_path):
    """One policy in eval: a FIFO and a symlinked folder are passed over with a warning each, an
    unreadable and an absurd image are skipped and counted, and a class without images has no
    accuracy (null), not 0.0."""
    import json
    import os
    import shutil

    from mobilenet import mobilenet_v1
    from mobilenet.checkpoint import save_weights

    data = tmp_path / "data"
    shutil.copytree(tree / "two" / "val", data / "val")
    os.mkfifo(data / "val" / "a" / "fifo.jpg")
    shutil.copy(tree / "tall.png", data / "val" / "a" / "tall.png")
    (data / "val" / "b" / "broken.png").write_text("<html>not found</html>")
    os.symlink("../..", data / "val" / "a" / "loop")  # followed, it would repeat every photo, under class a
    weights = tmp_path / "w3.safetensors"
    save_weights(weights, mobilenet_v1(width_mult=0.25, resolution=32, num_classes=3, class_names=("a", "b", "c")))
    proc = run("eval", "--weights", str(weights), "--data", str(data), "--per-class", "--json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout)
    assert (out["images"], out["skipped"]) == (8, 2)
    assert out["classes"] == ["a", "b", "c"] and out["per_class_accuracy"][2] is None
    assert all(isinstance(v, float) for v in out["per_class_accuracy"][:2])
    for phrase in ("not regular files", "symlinked subfolders, not followed", "tall.png: 1x200000", "broken.png: not a readable"):
        assert phrase in proc.stderr, proc.stderr


def test_predict_skips_bad_images_and_goes_on(tree):
    proc = run("predict", str(tree / "tall.png"), IMG.format(root=tree), str(tree / "fifo.jpg"), "--weights", W.format(root=tree))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert IMG.format(root=tree) in proc.stdout and "%" in proc.stdout and "tall.png" not in proc.stdout
    assert "skipping" in proc.stderr and "skipped 2 unreadable image(s)" in proc.stderr


def test_predict_streams_batches(tree):
    """Results come a batch at a time: the first is out before the later images are even read."""
    from mobilenet import mobilenet_v1
    from mobilenet.predict import iter_predictions

    taken: list[str] = []

    def paths():
        for i in range(6):
            taken.append(str(i))
            yield str(tree / "two" / "val" / "a" / f"{i % 4}.png")

    results = iter_predictions(mobilenet_v1(width_mult=0.25, resolution=32, num_classes=10), paths(), batch_size=2)
    first = next(results)
    assert "predictions" in first and len(taken) == 2
    assert len([first, *results]) == 6 and len(taken) == 6


def test_predict_refuses_nan_outputs(tree):
    import torch

    from mobilenet import mobilenet_v1
    from mobilenet.predict import predict

    model = mobilenet_v1(width_mult=0.25, resolution=32, num_classes=10)
    with torch.no_grad():
        model.classifier.bias.fill_(float("nan"))  # after loading: the load-time check cannot see it
    with pytest.raises(ValueError, match="NaN or infinite: these weights produce NaN"):
        predict(model, [IMG.format(root=tree)])


def test_labels_follow_the_outputs_not_the_metadata(tree):
    """Metadata claiming ImageNet on a 10-logit model: indices with a warning, never ImageNet's names;
    evaluation refuses rather than score the wrong classes."""
    import torch

    from mobilenet import MobileNetConfig
    from mobilenet.evaluate import evaluate
    from mobilenet.predict import predict

    class Liar:  # what a .tflite with the wrong metadata looks like through LiteRTModel
        config = MobileNetConfig(width_mult=0.25, resolution=32, num_classes=1000, labels="imagenet1000")

        def eval(self):
            return self

        def __call__(self, x):
            return torch.arange(10.0).expand(len(x), 10)

    with pytest.warns(UserWarning, match="gives 10 scores per image but its metadata names 1000 classes"):
        (result,) = predict(Liar(), [IMG.format(root=tree)], topk=2)
    assert [p["label"] for p in result["predictions"]] == ["class 9", "class 8"]
    with pytest.raises(ValueError, match="metadata does not match its outputs"):
        evaluate(Liar(), [(torch.zeros(2, 3, 32, 32), torch.tensor([0, 999]))], num_classes=1000)


def test_predict_thread_choice(monkeypatch):
    import torch

    from mobilenet import mobilenet_v1
    from mobilenet.predict import predict_threads

    small = mobilenet_v1(width_mult=0.25, resolution=32, num_classes=10)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
        assert predict_threads(small) == 1
        monkeypatch.setenv("OMP_NUM_THREADS", "2")
        assert predict_threads(small) is None  # the user's choice stands
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("alpha,variant", [(0.25, "separable"), (0.75, "shallow"), (0.5, "conv")])
def test_our_own_state_dict_pth_loads(tmp_path, alpha, variant):
    """torch.save(model.state_dict()) of our own model: α, classes and variant read from the shapes."""
    import torch

    from mobilenet import mobilenet_v1

    model = mobilenet_v1(width_mult=alpha, resolution=32, num_classes=7, variant=variant).eval()
    torch.save(model.state_dict(), tmp_path / "m.pth")
    with pytest.warns(UserWarning, match="bare state dict"):
        loaded = mobilenet_v1(weights=str(tmp_path / "m.pth"))
    c = loaded.config
    assert (c.width_mult, c.num_classes, c.variant) == (alpha, 7, variant)
    x = torch.rand(2, 3, 32, 32)
    assert torch.equal(loaded(x), model(x))


@pytest.mark.parametrize(
    "fmt,name,needs",
    [("onnx", "m.ONNX", "onnxruntime"), ("tflite", "m.TFLITE", "ai_edge_litert"), ("pte", "m.PTE", "executorch")],
)
def test_exported_suffix_in_capitals(tree, tmp_path, fmt, name, needs):
    """m.ONNX, m.TFLITE and m.PTE are written and read back as what they are."""
    pytest.importorskip(needs)
    out = tmp_path / name
    proc = run("export", "--weights", W.format(root=tree), "--format", fmt, "-o", str(out))
    assert proc.returncode == 0 and out.is_file(), proc.stderr[-2000:]
    proc = run("predict", IMG.format(root=tree), "--weights", str(out))
    assert proc.returncode == 0 and "%" in proc.stdout, proc.stderr[-2000:]


def test_links_inside_a_class_are_not_followed_and_shared_folders_refused(tree, tmp_path):
    import os
    import shutil

    from mobilenet.data import SafeImageFolder, load_data

    data = tmp_path / "d"
    shutil.copytree(tree / "two", data)
    os.symlink("../b", data / "train" / "a" / "more")  # would relabel b's photos as a
    os.symlink("0.png", data / "train" / "b" / "again.png")  # the same photo twice
    with pytest.warns(UserWarning) as record:
        folder = SafeImageFolder(data / "train")
    assert [t for _, t in folder.samples] == [0] * 4 + [1] * 4
    messages = " ".join(str(w.message) for w in record)
    assert "symlinked subfolders, not followed" in messages and "links to photos already listed" in messages
    shutil.rmtree(data / "val" / "a")
    os.symlink("../train/a", data / "val" / "a")  # the validation class is the training class
    with pytest.raises(ValueError, match="share photos"), pytest.warns(UserWarning):
        load_data(str(data), 32)


def test_cache_mismatch_is_moved_aside_not_deleted(tmp_path, monkeypatch):
    from mobilenet.weights.registry import cache_dir, download

    mine = tmp_path / "model.tflite"
    mine.write_bytes(b"my own file, not the download")
    with pytest.raises(ValueError, match=r"moved to .*model\.tflite\.mismatch-") as info:
        download("https://example.invalid/model.tflite", "0" * 64, directory=tmp_path)
    (aside,) = tmp_path.glob("model.tflite.mismatch-*")
    assert aside.read_bytes() == b"my own file, not the download" and str(aside) in str(info.value)
    monkeypatch.setenv("MOBILENET_CACHE", str(mine.with_name("file.txt")))
    mine.with_name("file.txt").write_text("x")
    with pytest.raises(NotADirectoryError, match=r"MOBILENET_CACHE=.*is a file, not a folder"):
        cache_dir()


# Round four (issue 21): nothing destroyed, nothing silently wrong.


def test_export_default_name_never_overwrites_the_weights(tree, tmp_path):
    """`export --weights m.tflite --format tflite` in the weights' folder: the default name is the
    input itself, refused; the file keeps every byte."""
    if not SMALL.is_file():
        pytest.skip("Google's TF Lite files are absent")
    import shutil

    weights = shutil.copy(SMALL, tmp_path / "m.tflite")
    before = Path(weights).read_bytes()
    proc = run("export", "--weights", "m.tflite", "--format", "tflite", cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert "the default output name 'm.tflite' is the input file" in proc.stderr and "another -o" in proc.stderr
    assert Path(weights).read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["m.tflite"]


@pytest.mark.parametrize("failure", [MemoryError, RuntimeError])
def test_failed_export_check_leaves_no_file(tree, tmp_path, monkeypatch, failure):
    """The check against PyTorch runs before the file is visible: when it fails (out of memory, or
    a difference), no file is left, a file already there stays as it was, and no folder is made."""
    import mobilenet.export
    from mobilenet.commands import export_model

    def fails(*args, **kwargs):
        raise failure("the check failed")

    monkeypatch.setattr(mobilenet.export, "check_export", fails)
    weights = W.format(root=tree)
    with pytest.raises(failure):
        export_model(weights, tmp_path / "new" / "m.pt", "torchscript")
    assert not (tmp_path / "new").exists()
    (tmp_path / "old.pt").write_text("the user's file")
    with pytest.raises(failure):
        export_model(weights, tmp_path / "old.pt", "torchscript")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old.pt"] and (tmp_path / "old.pt").read_text() == "the user's file"
    monkeypatch.undo()
    result = export_model(weights, tmp_path / "old.pt", "torchscript")  # a checked export replaces it
    assert result.path == tmp_path / "old.pt" and result.check["path"] == str(tmp_path / "old.pt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old.pt"]


def test_out_of_memory_is_one_sentence(monkeypatch, capsys):
    from mobilenet import cli

    def oom(args):
        raise RuntimeError(
            "[enforce fail at alloc_cpu.cpp:127] DefaultCPUAllocator: can't allocate memory: you tried to allocate 2400000000 bytes"
        )

    monkeypatch.setattr(cli, "_cost", oom)
    assert cli.main(["cost"]) == 2
    err = capsys.readouterr().err
    assert "out of memory (2.2 GiB for one tensor): use a smaller --resolution or --batch-size" in err and "enforce" not in err


def test_nan_validation_stops_training_and_saves_no_best(tree, tmp_path):
    """Finite training loss, NaN validation loss (eval mode reads BN's running statistics): the run
    stops with the cause, and no best.safetensors that predicts nan% is left."""
    out = tmp_path / "run"
    weights = str(tree / "hugemean.safetensors")
    proc = run("train", "--data", str(tree / "two"), "--weights", weights, "--recipe", "paper", *FAST, "--out", str(out))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert "validation loss nan at epoch 1 while the training loss was finite" in proc.stderr
    assert not (out / "best.safetensors").exists() and not (out / "last.safetensors").exists()


def test_resume_with_other_classes_is_refused(tree, tmp_path):
    """The same number of classes under other names (or in another order) would train class k's
    outputs on another class's photos: --resume refuses, naming both lists."""
    import shutil

    out, other = tmp_path / "run", tmp_path / "bc"
    for split in ("train", "val"):
        shutil.copytree(tree / "two" / split / "a", other / split / "c")
        shutil.copytree(tree / "two" / split / "b", other / split / "b")
    proc = run("train", "--data", str(tree / "two"), *FAST, "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-2000:]
    before = (out / "last.safetensors").read_bytes()
    proc = run("train", "--data", str(other), *FAST[:-3], "--epochs", "2", "--no-progress", "--resume", "--out", str(out))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert f"was trained on the classes [a, b], but --data {other} has [b, c]" in proc.stderr
    assert (out / "last.safetensors").read_bytes() == before


@pytest.fixture(scope="session")
def exported(tmp_path_factory) -> Path:
    """A model like our w25 (α 0.25, 32 px, 10 classes) exported to each runtime's format, then
    damaged: truncated, or with its stored config replaced (a list, null, an impossible class
    count, a class count its graph contradicts). Built once for the run (the exports take a while)."""

    def build(folder: Path) -> None:
        import torch

        from mobilenet import mobilenet_v1
        from mobilenet.export import export_model
        from mobilenet.extras import missing
        from mobilenet.formats import FORMATS

        with torch.random.fork_rng():  # whichever worker builds this, its own random stream stays as it was
            torch.manual_seed(0)
            model = mobilenet_v1(width_mult=0.25, resolution=32, num_classes=10).eval()
        for fmt in ("onnx", "tflite", "pte"):
            if missing(*FORMATS[fmt].needs):
                continue
            good = export_model(model, folder / f"ours.{fmt}", fmt)
            data = good.read_bytes()
            (folder / f"trunc.{fmt}").write_bytes(data[:100])
            (folder / f"half.{fmt}").write_bytes(data[: len(data) // 2])
            start = data.index(b'{"width_mult"')
            end = data.index(b"}", start) + 1
            config = data[start:end]
            for name, replacement in (
                ("list", b"[0.25, 32]"),
                ("null", b"null"),
                ("count", config.replace(b'"num_classes": 10', b'"num_classes": -1')),
                ("claims", config.replace(b'"num_classes": 10', b'"num_classes":100')),  # the graph gives 10
            ):
                # The same length, so the container (protobuf, flatbuffer, program) stays valid.
                (folder / f"{name}.{fmt}").write_bytes(data[:start] + replacement.ljust(len(config)) + data[end:])

    return build_once(tmp_path_factory, "damaged-exports", build)


CORRUPT = [
    # (file, phrase): each through predict; the message names the file and says what it is
    ("trunc.onnx", "cannot be read as an ONNX model: the file is corrupt or truncated"),
    ("half.onnx", "cannot be read as an ONNX model"),
    ("trunc.tflite", "cannot be read as a TF Lite flatbuffer: the file is corrupt or truncated"),
    ("half.tflite", "cannot be read as a TF Lite flatbuffer"),
    ("trunc.pte", "cannot be read as an ExecuTorch .pte program: the file is corrupt or truncated"),
    ("half.pte", "cannot be read as an ExecuTorch .pte program"),
    *[
        (f"list.{e}", "mobilenet_config metadata is unreadable (a MobileNet config must be a dict")
        for e in ("onnx", "tflite", "pte")
    ],
    *[
        (f"null.{e}", "not NoneType None); the file is damaged or was not written by mobilenet")
        for e in ("onnx", "tflite", "pte")
    ],
    *[(f"count.{e}", "metadata is unreadable (num_classes=-1 must be an integer >= 0)") for e in ("onnx", "tflite", "pte")],
    *[(f"claims.{e}", "metadata says 100 classes, but the graph outputs 10 values per image") for e in ("onnx", "tflite", "pte")],
]


@pytest.mark.parametrize("name,phrase", CORRUPT, ids=[c[0] for c in CORRUPT])
def test_damaged_export_is_one_line_naming_it(tree, exported, name, phrase, capsys):
    """In this process (each runtime imported once): main() returns 2 only for an error it turned
    into a sentence; anything else would raise here."""
    from mobilenet.cli import main

    path = exported / name
    if not path.exists():
        pytest.skip(f"the runtime of {path.suffix} is not installed")
    for runtime in ["torch", *(["litert"] if path.suffix == ".tflite" else [])]:
        assert main(["predict", IMG.format(root=tree), "--weights", str(path), "--runtime", runtime]) == 2
        err = capsys.readouterr().err
        assert f"error: {path}: " in err and phrase in err, (runtime, err)


def test_predict_json_is_json_lines(tree):
    """--json: one JSON object per line (JSON Lines), in order, an unreadable image's error in place."""
    import json

    img = IMG.format(root=tree)
    proc = run("predict", img, str(tree / "file.txt"), img, "--weights", W.format(root=tree), "--topk", "2", "--json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r["image"] for r in rows] == [img, str(tree / "file.txt"), img]
    assert len(rows[0]["predictions"]) == 2 and "not a readable image" in rows[1]["error"]


def test_int8_quantization_refused_early_leaves_no_working_file(tmp_path: Path) -> None:
    # quantize_onnx with neither images nor ranges says so, and the pre-pass's file beside the
    # output is gone too (it used to stay as <out>.prep.onnx).
    pytest.importorskip("onnxruntime")
    import torch

    from mobilenet import MobileNetV1
    from mobilenet.runtimes.onnxruntime import export_onnx, quantize_onnx

    fp32 = export_onnx(MobileNetV1(width_mult=0.25, num_classes=3, resolution=32).eval(), tmp_path / "m.onnx", resolution=32)
    with pytest.raises(ValueError, match="calibration images"):
        quantize_onnx(fp32, tmp_path / "q.onnx", None)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]
    quantize_onnx(fp32, tmp_path / "q.onnx", [torch.rand(1, 3, 32, 32) * 2 - 1])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx", "q.onnx"]


def test_detector_check_names_a_missing_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Whether an .onnx is a detector is read from its metadata: without onnx installed that is
    # the install hint, not a silent "not a detector" that fails later somewhere else.
    import importlib.util

    from mobilenet.detection.weights import is_detector
    from mobilenet.extras import MissingDependency

    path = tmp_path / "m.onnx"
    path.write_bytes(b"\x08\x07" + b"\x00" * 64)
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnx" else real(name, *a))
    with pytest.raises(MissingDependency, match=r"mobilenet\[export\]"):
        is_detector(path)
    monkeypatch.undo()
    assert is_detector(path) is False  # a damaged file is not a detector; its reader says what is wrong
