"""Throughput modes of ``skinlesion_utils.bench`` follow the one precision rule (``train.amp_for_device``)."""
from __future__ import annotations

import pytest
import torch

from skinlesion_utils import bench, train


def _fake_gpu(monkeypatch, capability):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)  # what a T4 answers


@pytest.mark.parametrize("capability, precision", [((7, 5), "fp16"), ((8, 0), "bf16"), ((9, 0), "bf16")])
def test_gpu_modes_follow_the_compute_capability(monkeypatch, capability, precision):
    _fake_gpu(monkeypatch, capability)
    assert bench.modes_for("cuda") == ["fp32", precision, f"{precision}_channels_last",
                                       f"{precision}_channels_last_compile"]
    assert bench.modes_for("cuda", compile=False)[-1] == f"{precision}_channels_last"
    assert bench.best_mode("cuda") == f"{precision}_channels_last"
    assert set(bench.modes_for("cuda")) <= set(bench.MODES)


def test_no_tensor_cores_means_fp32_only(monkeypatch):
    _fake_gpu(monkeypatch, (6, 1))
    assert bench.modes_for("cuda") == ["fp32"] and bench.best_mode("cuda") == "fp32"


def test_cpu_modes_are_the_cpus_precision():
    expected = train.precision_name(train.amp_for_device("cpu"))
    assert bench.best_mode("cpu") == ("fp32" if expected == "fp32" else f"{expected}_channels_last")


@pytest.mark.parametrize("mode", ["fp16", "fp16_channels_last", "bf16_channels_last", "fp32"])
def test_every_precision_mode_measures_real_steps_on_cpu(mode):
    tp = bench.training_throughput("lenet5", image_size=32, batch_size=4, mode=mode, steps=2, warmup=1, device="cpu")
    assert tp.mode == mode and tp.images_per_second > 0 and tp.device == "cpu"


def test_unknown_mode_is_refused():
    with pytest.raises(ValueError, match="Unknown mode"):
        bench.training_throughput("lenet5", mode="fp8")
