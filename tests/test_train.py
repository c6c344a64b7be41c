"""Training: a real run on the built-in digits, resume after SIGKILL, DDP with gloo, bad input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from mobilenet import mobilenet_v1
from mobilenet.train import TrainConfig, param_groups, train

FAST = ["--width-mult", "0.25", "--resolution", "32", "--no-progress", "--batch-size", "128"]


def cli(*args: str, **kw) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "mobilenet", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw
    )


def test_no_weight_decay_on_depthwise_bn_or_bias():
    model = mobilenet_v1(width_mult=0.25, num_classes=10)
    groups = param_groups(model, 4e-5, head_lr_mult=10.0)
    decayed = {id(p) for g in groups if g["weight_decay"] > 0 for p in g["params"]}
    head = {id(p) for g in groups if g["lr_mult"] == 10.0 for p in g["params"]}
    assert head == {id(model.classifier.weight), id(model.classifier.bias)}
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Conv2d):
            assert (id(module.weight) in decayed) == (module.groups == 1), name
        if isinstance(module, torch.nn.BatchNorm2d):
            assert id(module.weight) not in decayed and id(module.bias) not in decayed
    assert id(model.classifier.weight) in decayed and id(model.classifier.bias) not in decayed
    assert {g["weight_decay"] for g in groups} == {0.0, 4e-5}


@pytest.mark.slow
def test_train_learns_digits_and_writes_everything(tmp_path):
    summary = train(
        TrainConfig(
            out=str(tmp_path),
            width_mult=0.25,
            resolution=32,
            epochs=6,
            batch_size=64,
            schedule="cosine",
            warmup=1,
            progress=False,
        )
    )
    assert summary["val_top1"] > 0.7  # chance is 0.1; 0.80-0.85 seen, depending on the thread count
    for name in ("last.safetensors", "best.safetensors", "last_state.pt", "metrics.jsonl", "summary.json", "curves.png"):
        assert (tmp_path / name).is_file(), name
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == list(range(1, 7))
    model = mobilenet_v1(weights=tmp_path / "best.safetensors")
    assert model.config.num_classes == 10 and model.config.class_names == tuple("0123456789")
    # eval through the CLI gives the logged best accuracy
    out = subprocess.run(
        [sys.executable, "-m", "mobilenet", "eval", "--weights", str(tmp_path / "best.safetensors"), "--json"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(out.stdout)["top1"] == pytest.approx(max(r["val_top1"] for r in rows))


def kill_after_first_checkpoint(victim: subprocess.Popen, out: Path) -> None:
    state = out / "last_state.pt"
    deadline = time.time() + 300
    while not state.exists() and time.time() < deadline and victim.poll() is None:
        time.sleep(0.02)
    assert victim.poll() is None, "the run finished before it could be killed"
    victim.send_signal(signal.SIGKILL)
    victim.wait()


@pytest.mark.slow
def test_sigkill_then_resume_equals_uninterrupted(tmp_path):
    common = [*FAST, "--epochs", "4", "--seed", "3"]
    straight = cli("train", *common, "--out", str(tmp_path / "a"))
    assert straight.wait(timeout=600) == 0, straight.stderr.read()

    victim = cli("train", *common, "--out", str(tmp_path / "b"))
    kill_after_first_checkpoint(victim, tmp_path / "b")
    killed_at = torch.load(tmp_path / "b" / "last_state.pt", weights_only=True)["epoch"]
    assert killed_at < 4

    resumed = cli("train", *common, "--out", str(tmp_path / "b"), "--resume")
    stdout, stderr = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, stderr
    assert f"at epoch {killed_at}" in stdout
    a = load_file(tmp_path / "a" / "last.safetensors")
    b = load_file(tmp_path / "b" / "last.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    rows = [json.loads(line) for line in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4]


@pytest.mark.slow
def test_ddp_two_cpu_processes(tmp_path):
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node=2",
            "--master_port=29517",
            "-m",
            "mobilenet",
            "train",
            *FAST,
            "--batch-size",
            "32",
            "--epochs",
            "5",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=900,
        env=env,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    assert "2 process(es)" in proc.stdout and "global batch 64" in proc.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert summary["world_size"] == 2
    assert summary["best_val_top1"] > 0.5  # learns: chance is 0.1
    model = mobilenet_v1(weights=out / "best.safetensors")  # loads like a single-process checkpoint
    assert not any(k.startswith("module.") for k in model.state_dict())


def test_resume_without_checkpoint_is_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        train(TrainConfig(out=str(tmp_path), width_mult=0.25, resolution=32, epochs=1, resume=True, progress=False))


def test_missing_and_empty_data(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        train(TrainConfig(data=str(tmp_path / "nope"), out=str(tmp_path / "o"), progress=False))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no class subfolders"):
        train(TrainConfig(data=str(tmp_path / "empty"), out=str(tmp_path / "o"), progress=False))
    (tmp_path / "oneempty" / "cats").mkdir(parents=True)
    with pytest.raises(ValueError, match="contain no images"):
        train(TrainConfig(data=str(tmp_path / "oneempty"), out=str(tmp_path / "o"), progress=False))


def _image_tree(root: Path, per_class: int = 6) -> None:
    g = torch.Generator().manual_seed(0)
    for c, color in (("red", (200, 30, 30)), ("blue", (30, 30, 200))):
        for split in ("train", "val"):
            d = root / split / c
            d.mkdir(parents=True)
            for i in range(per_class):
                noise = torch.randint(0, 40, (40, 48, 3), generator=g).numpy().astype("uint8")
                Image.fromarray(noise + torch.tensor(color).numpy().astype("uint8")).save(d / f"{i}.png")


def test_imagefolder_skips_bad_images_and_counts(tmp_path, capsys):
    _image_tree(tmp_path)
    (tmp_path / "train" / "red" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    good = (tmp_path / "train" / "blue" / "0.png").read_bytes()
    (tmp_path / "train" / "blue" / "truncated.png").write_bytes(good[: len(good) // 2])
    with pytest.warns(UserWarning, match="skipping unreadable image"):
        summary = train(
            TrainConfig(
                data=str(tmp_path),
                out=str(tmp_path / "o"),
                width_mult=0.25,
                resolution=32,
                epochs=2,
                batch_size=7,
                progress=False,
            )
        )
    rows = [json.loads(line) for line in (tmp_path / "o" / "metrics.jsonl").read_text().splitlines()]
    assert all(r["skipped"] == 2 for r in rows)
    assert "skipped 2 unreadable" in capsys.readouterr().out
    assert summary["val_top1"] is not None


def test_finetune_weights_of_other_width_is_clear(tmp_path):
    from mobilenet.checkpoint import save_weights

    save_weights(tmp_path / "w.safetensors", mobilenet_v1(width_mult=0.5, num_classes=10))
    with pytest.raises(ValueError, match=r"width_mult=0.5.*--width-mult"):
        train(
            TrainConfig(
                out=str(tmp_path / "o"),
                width_mult=0.25,
                resolution=32,
                epochs=1,
                weights=str(tmp_path / "w.safetensors"),
                progress=False,
            )
        )


def test_nan_loss_stops_with_step_and_keeps_checkpoint(tmp_path):
    with pytest.raises(FloatingPointError, match=r"epoch 1, step \d+"):
        train(TrainConfig(out=str(tmp_path), width_mult=0.25, resolution=32, epochs=2, lr=1e30, optimizer="sgd", progress=False))
    assert not (tmp_path / "last.safetensors").exists()


def test_cli_train_bad_input_one_line(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "mobilenet", "train", "--data", str(tmp_path / "missing"), "--out", str(tmp_path)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2 and "does not exist" in proc.stderr and "Traceback" not in proc.stderr
    proc = subprocess.run(
        [sys.executable, "-m", "mobilenet", "train", "--resume", "--out", str(tmp_path / "none")], capture_output=True, text=True
    )
    assert proc.returncode == 2 and "no checkpoint" in proc.stderr


def test_resume_refuses_other_settings_and_probe_epochs_need_weights(tmp_path):
    base = dict(out=str(tmp_path), width_mult=0.25, resolution=32, epochs=1, batch_size=128, progress=False)
    train(TrainConfig(**base))
    with pytest.raises(ValueError, match="was started with optimizer='rmsprop', now optimizer='sgd'"):
        train(TrainConfig(**{**base, "epochs": 2}, resume=True, optimizer="sgd"))
    with pytest.raises(ValueError, match="backbone is random"):
        train(TrainConfig(**{**base, "out": str(tmp_path / "p")}, probe_epochs=3))


def test_qat_refuses_what_it_cannot_simulate():
    for extra, phrase in (
        ({}, "pass --weights"),
        ({"weights": "w.safetensors", "freeze_backbone": True}, "drop --freeze-backbone"),
        ({"weights": "w.safetensors", "bn": "train"}, "BN is folded"),
        ({"weights": "w.safetensors", "ema": 0.99}, "drop --ema"),
        ({"weights": "w.safetensors", "amp": True}, "drop --amp"),
    ):
        with pytest.raises(ValueError, match=phrase):
            TrainConfig(qat=True, **extra).check()


@pytest.mark.slow
def test_qat_continues_a_run_keeps_its_classifier_and_resumes_exactly(tmp_path):
    """Digits: a float run, then --qat from its weights (same classes: the classifier is kept).
    A QAT run killed after its first epoch and resumed ends with the same weights and int8 ranges
    as one that ran straight through, and the simulated int8 model stays close to the float one."""
    from mobilenet.checkpoint import load_weights_file
    from mobilenet.quantize import ranges_from_metadata

    float_run = train(TrainConfig(out=str(tmp_path / "float"), epochs=2, width_mult=0.25, resolution=32, batch_size=128))
    common = [*FAST, "--epochs", "2", "--weights", str(tmp_path / "float" / "best.safetensors"), "--qat"]
    straight = cli("train", *common, "--out", str(tmp_path / "a"))
    stdout, stderr = straight.communicate(timeout=600)
    assert straight.returncode == 0, stderr
    assert "quantization-aware" in stdout and "after 0 classifier-only passes" in stdout

    victim = cli("train", *common, "--out", str(tmp_path / "b"))
    kill_after_first_checkpoint(victim, tmp_path / "b")
    resumed = cli("train", *common, "--out", str(tmp_path / "b"), "--resume")
    assert resumed.wait(timeout=600) == 0, resumed.stderr.read()

    a, _, meta_a = load_weights_file(tmp_path / "a" / "last.safetensors")
    b, _, meta_b = load_weights_file(tmp_path / "b" / "last.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert ranges_from_metadata(meta_a) == ranges_from_metadata(meta_b) is not None
    qat = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert qat["best_val_top1"] >= float_run["best_val_top1"] - 0.05, (qat, float_run)


def test_recipes_are_data_and_one_can_be_named():
    from mobilenet.train import RECIPES, recipe_for
    from mobilenet.train.recipes import describe_recipe

    assert recipe_for(TrainConfig()) == "digits" and recipe_for(TrainConfig(data="d")) == "paper"
    assert recipe_for(TrainConfig(weights="w", freeze_backbone=True)) == "linear-probe"
    assert recipe_for(TrainConfig(weights="w", qat=True)) == "qat"
    assert recipe_for(TrainConfig(recipe="paper")) == "paper"  # named: the digits run with the paper's defaults
    assert RECIPES["qat"].defaults["lr"] == 1e-4 and RECIPES["digits"].defaults["resolution"] == 32
    assert "picked by no --data" in describe_recipe(TrainConfig())
    assert "(--recipe paper)" in describe_recipe(TrainConfig(recipe="paper"))
    with pytest.raises(ValueError, match="recipe='finetune' is for runs with --weights"):
        TrainConfig(recipe="finetune").check()
    with pytest.raises(ValueError, match="recipe='nope' must be one of"):
        TrainConfig(recipe="nope").check()
