"""The command line, end to end on the real data (small model, small images, one epoch)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

DATA = Path(os.environ.get("SKINLESION_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
pytestmark = pytest.mark.skipif(not (DATA / "isic_balanced").is_dir(), reason="needs SKINLESION_DATA")


def cli(*args, env_extra=None, check=True):
    env = {**os.environ, "SKINLESION_DATA": str(DATA), **(env_extra or {})}
    proc = subprocess.run([sys.executable, "-m", "skinlesion_utils", *map(str, args)], capture_output=True, text=True, env=env, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One real training run through the command line: LeNet-5, 32 px, 1 epoch."""
    tmp = tmp_path_factory.mktemp("cli")
    out = tmp / "run"
    proc = cli("train", "--model", "lenet5", "--profile", "ci", "--epochs", "1", "--image-size", "32", "--out", out,
               env_extra={"SKINLESION_CACHE": str(tmp / "cache")})
    return out, proc, tmp


def test_data_list_and_locate():
    out = cli("data", "list").stdout
    assert "isic_balanced" in out and "3297 files" in out
    assert cli("data", "locate", "isic_balanced").stdout.strip() == str(DATA / "isic_balanced")


def test_data_errors_are_one_line_for_people(tmp_path):
    proc = cli("data", "locate", "isic2018", check=False)
    assert proc.returncode == 2 and "Unknown dataset 'isic2018'" in proc.stderr and "Traceback" not in proc.stderr


def test_train_writes_results_and_checkpoint(trained):
    out, proc, _ = trained
    results = json.loads((out / "results.json").read_text())
    for key in ("accuracy", "precision", "recall", "specificity", "f1", "roc_auc", "pr_auc"):
        assert 0.0 <= results["metrics"]["test"][key] <= 1.0
    assert results["metrics"]["test"]["n"] == 660
    assert results["timing"]["train_seconds"] > 0
    assert results["config"]["model"] == "lenet5" and results["config"]["epochs"] == 1
    assert {"device", "package_version", "git_commit"} <= set(results)
    assert (out / "last.pt").is_file()
    assert "test accuracy" in proc.stdout


def test_train_refuses_unknown_model(tmp_path):
    proc = cli("train", "--model", "resnet51", "--out", tmp_path / "x", check=False)
    assert proc.returncode != 0 and "unknown model 'resnet51'" in proc.stderr and "resnet50" in proc.stderr


def test_evaluate_any_folder_size_format_mode(trained, tmp_path):
    out, _, _ = trained
    folder = tmp_path / "mine"
    src = DATA / "isic2019_external_sample"
    for cls in ("benign", "malignant"):
        (folder / cls).mkdir(parents=True)
        files = sorted((src / cls).glob("*.jpg"))[:3]
        shutil.copy(files[0], folder / cls / "a.jpg")  # JPEG, non-square, up to 512 px
        Image.open(files[1]).convert("L").save(folder / cls / "b.png")  # PNG, grey
        Image.open(files[2]).convert("RGBA").save(folder / cls / "c.bmp" if cls == "benign" else folder / cls / "c.png")
    result_file = tmp_path / "eval.json"
    proc = cli("evaluate", "--checkpoint", out / "last.pt", "--data", folder, "--out", result_file)
    res = json.loads(result_file.read_text())
    assert res["meta"]["counts"] == {"benign": 3, "malignant": 3} and res["meta"]["image_size"] == 32
    assert len(res["predictions"]) == 6 and all(0 <= p["y_score"] <= 1 for p in res["predictions"])
    assert set(res["ci95"]) >= {"accuracy", "roc_auc"} and "n=6" in proc.stdout


def test_evaluate_bad_folder_is_a_clear_error(trained, tmp_path):
    out, _, _ = trained
    proc = cli("evaluate", "--checkpoint", out / "last.pt", "--data", tmp_path / "nope", "--out", tmp_path / "e.json", check=False)
    assert proc.returncode == 2 and "does not exist" in proc.stderr and "Traceback" not in proc.stderr


def test_bench_prints_throughput_and_ratio(tmp_path):
    proc = cli("bench", "--models", "lenet5", "resnet34", "--image-size", "32", "--batch-size", "4", "--steps", "1",
               "--modes", "fp32", "--out", tmp_path / "b.json")
    assert "throughput ratio resnet34 / lenet5 (fp32)" in proc.stdout
    rows = json.loads((tmp_path / "b.json").read_text())["throughput"]
    assert [r["model"] for r in rows] == ["lenet5", "resnet34"] and all(r["images_per_second"] > 0 for r in rows)


def test_bench_pipeline_ratio(tmp_path):
    proc = cli("bench", "--models", "lenet5", "--image-size", "64", "--batch-size", "8", "--steps", "1", "--modes", "fp32",
               "--pipeline", "--pipeline-images", "256", "--out", tmp_path / "b.json")
    pc = json.loads((tmp_path / "b.json").read_text())["pipeline"]
    assert pc["images"] == 256 and pc["ratio"] > 1, "indexing a decoded tensor beats decoding JPEGs every epoch"
    assert "input pipeline at 64 px" in proc.stdout


def test_one_command_line_lists_every_sub_command_and_its_version():
    from skinlesion_utils import __version__

    assert cli("--version").stdout.strip() == f"skinlesion {__version__}"
    helptext = cli("--help").stdout
    for command in ("data", "audit", "train", "evaluate", "bench", "gpu-bench", "cam-score", "lab", "book"):
        assert f"    {command}" in helptext, f"`skinlesion --help` does not list {command}"
    assert "check" in cli("lab", "--help").stdout and "execute" in cli("book", "--help").stdout
