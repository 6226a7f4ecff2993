"""The GPU benchmark (`skinlesion gpu-bench`), run on the CPU with a tiny configuration (as `make test` does)."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from skinlesion_utils import bench, cli

DATA = Path(os.environ.get("SKINLESION_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
pytestmark = pytest.mark.skipif(not (DATA / "isic_balanced").is_dir(), reason="needs SKINLESION_DATA")


def test_pack_and_load_gpu_data(tmp_path):
    info = bench.pack_gpu_data(tmp_path / "d.pt", max_per_class=5)
    assert info["images"] == 20 and 0 < info["mean_abs_pixel_change"] < 5
    stores = bench.load_gpu_data(tmp_path / "d.pt")
    assert len(stores["train"]) == 10 and len(stores["test"]) == 10
    assert stores["train"].images.shape[1:] == (3, 224, 224) and stores["train"].images.dtype == torch.uint8
    assert stores["test"].class_counts() == {"benign": 5, "malignant": 5}


def test_full_pack_extrapolates_under_60_megabytes(tmp_path):
    # 100 real images (25 per split/class) → size per image × 3,297 must stay under 60 MB.
    info = bench.pack_gpu_data(tmp_path / "d.pt", max_per_class=25)
    assert info["images"] == 100
    assert info["megabytes"] / 100 * 3297 < 60


def test_tiny_gpu_bench_end_to_end(tmp_path):
    bench.pack_gpu_data(tmp_path / "d.pt", max_per_class=24)
    out = tmp_path / "out"
    rc = cli.main(["gpu-bench", "--data", str(tmp_path / "d.pt"), "--out", str(out), "--work", str(tmp_path / "work"), "--tiny", "--image-size", "32",
                         "--steps", "1", "--warmup", "1", "--no-compile", "--epochs", "1", "--batch-size", "8"])
    assert rc == 0
    bench_json = json.loads((out / "bench.json").read_text())
    ref = json.loads((out / "reference.json").read_text())
    for blob in (bench_json, ref):
        assert {"device", "date", "commit"} <= set(blob["provenance"])
    modes = {(r["model"], r["mode"]) for r in bench_json["throughput"]}
    # the modes of this device's precision rule (train.amp_for_device), nothing else
    assert modes == {(label, m) for label in ("ResNet-50", "ASFF-ResNet50") for m in bench.modes_for("cpu", compile=False)}
    assert bench_json["training_mode"] == ref["setup"]["mode"] == bench.best_mode("cpu")
    assert all(r["images_per_second"] > 0 for r in bench_json["throughput"])
    assert set(ref["results"]) == {"ResNet-50", "ASFF-ResNet50"}
    assert 0 <= ref["results"]["ASFF-ResNet50"]["metrics"]["accuracy"] <= 1
    assert 0 <= ref["paired"]["mcnemar"]["p_value"] <= 1
    assert "ASFF-ResNet50" in (out / "summary.txt").read_text()
    assert not list(out.rglob("*.pt")), "checkpoints stay out of the results folder"
