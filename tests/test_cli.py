"""The real `mobilenet` command, run as a user would."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


def run_cli(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "mobilenet", *args], capture_output=True, text=True, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"mobilenet {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def test_cost_json():
    data = json.loads(run_cli("cost", "--json").stdout)
    assert data["mult_adds"] == 568_740_352 and data["params"] == 4_209_088
    assert len(data["layers"]) == 28


@pytest.mark.parametrize(
    "args,macs,params",
    [
        (["-a", "0.5", "-r", "160"], 76_524_800, 1_319_648),
        (["--width-mult", "0.25"], 41_030_272, 463_600),
        (["--variant", "shallow"], None, None),
    ],
)
def test_cost_settings(args, macs, params):
    data = json.loads(run_cli("cost", "--json", *args).stdout)
    if macs is not None:
        assert (data["mult_adds"], data["params"]) == (macs, params)
    else:
        assert 307e6 < data["mult_adds"] < 308e6


def test_cost_table_and_paper():
    out = run_cli("cost", "--per-layer").stdout
    assert "pw14" in out and "568,740,352" in out
    paper = run_cli("paper").stdout
    assert "0 disagree" in paper and "digit swap" in paper
    rows = json.loads(run_cli("paper", "--json").stdout)
    assert all(r["status"] in ("agrees", "explained") for r in rows)


def test_cli_bad_input_is_one_line():
    proc = run_cli("cost", "--width-mult", "-1", check=False)
    assert proc.returncode == 2
    assert "--width-mult" in proc.stderr and "Traceback" not in proc.stderr
