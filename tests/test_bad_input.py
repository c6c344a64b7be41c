"""Bad input through the real CLI: each case exits 2 with one message that names the problem, and
never a traceback. The bad files are made here."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from .reference import TFLITE

SMALL = TFLITE / "mobilenet_v1_0.25_128_quant.tflite"
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
    return root


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
    (["predict", "{root}/two/val/a/0.png", "--weights", str(SMALL), "--topk", "0"], "topk=0"),
    (["predict", "{root}/two/val/a/0.png", "--weights", str(SMALL), "--crop", "0"], "crop=0"),
    (["predict", "{root}/two/val/a/0.png", "--weights", str(SMALL), "--crop", "1.5"], "crop=1.5"),
    (["predict", "{root}/two/val/a/0.png", "--weights", str(SMALL), "--crop", "nan"], "crop=nan"),
    (["predict", "{root}/file.txt", "--weights", str(SMALL)], "not a readable image"),
    (
        ["train", "--data", "{root}/two", "--weights", str(SMALL), "-a", "0.5", "--epochs", "1", "--out", "{root}/o8"],
        "contradicts",
    ),
]


@pytest.mark.parametrize("args,phrase", CASES, ids=[" ".join([*a[:1], p]) for a, p in CASES])
def test_bad_input_is_one_clear_line(tree, args, phrase):
    if not SMALL.is_file() and any(str(SMALL) == a for a in args):
        pytest.skip("Google's TF Lite files are absent")
    args = [a.replace("{root}", str(tree)) for a in args]
    proc = run(*args)
    assert proc.returncode == 2, (proc.returncode, proc.stdout[-1000:], proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr, proc.stderr
    assert phrase in proc.stderr, proc.stderr
    # Validation comes before work: a refused run leaves no output folder behind.
    for flag in ("--out",):
        if flag in args and "already holds" not in phrase and "is a file" not in phrase:
            assert not Path(args[args.index(flag) + 1]).exists()


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
