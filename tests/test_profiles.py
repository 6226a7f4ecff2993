"""The profile switch (`profiles.profile_choice`) and the one T4 time formula (`profiles.t4_minutes`)."""
from __future__ import annotations

import pytest
import torch

from skinlesion_utils import models, profiles


@pytest.fixture
def no_profile_env(monkeypatch):
    monkeypatch.setenv(profiles.ENV_PROFILE, "x")
    monkeypatch.delenv(profiles.ENV_PROFILE)  # restored after the test


def test_a_gpu_with_nothing_set_runs_full(monkeypatch, no_profile_env):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    name, why = profiles.profile_choice()
    assert name == "full" and "not set" in why and "GPU" in why
    assert profiles.profile().name == "full"


def test_no_gpu_with_nothing_set_runs_ci(monkeypatch, no_profile_env):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert profiles.profile_choice()[0] == "ci" and profiles.profile().name == "ci"
    monkeypatch.setenv(profiles.ENV_PROFILE, "  ")  # blank counts as unset
    assert profiles.profile().name == "ci"


def test_the_variable_wins_over_the_hardware(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setenv(profiles.ENV_PROFILE, "ci")
    assert profiles.profile_choice() == ("ci", "SKINLESION_PROFILE=ci")
    assert profiles.profile().name == "ci"
    monkeypatch.setenv(profiles.ENV_PROFILE, "gpu")
    with pytest.raises(Exception, match="Unknown profile 'gpu'"):
        profiles.profile()


def test_every_model_has_a_t4_throughput_with_its_source():
    assert set(models.list_models()) <= set(profiles.T4_THROUGHPUT)
    for name, (rate, source) in profiles.T4_THROUGHPUT.items():
        assert 10 < rate < 5000 and len(source) > 20, name
    # the anchor: NVIDIA's published T4 figure ÷ the forward passes of a training step
    assert profiles.T4_THROUGHPUT["resnet50"][0] == pytest.approx(1128 / 3)
    # timm's relative speeds keep their order: ResNet-34 faster, VGG-16 slower than ResNet-50
    t = {k: v[0] for k, v in profiles.T4_THROUGHPUT.items()}
    assert t["resnet34"] > t["resnet50"] > t["resnet101"] > t["vgg16"]


def test_t4_minutes_is_images_over_throughput():
    rate = profiles.T4_THROUGHPUT["resnet50"][0]
    assert profiles.t4_minutes([("resnet50", rate * 60, "train")]) == pytest.approx(1.0)
    assert profiles.t4_minutes([("resnet50", rate * 60, "gradcam")]) == pytest.approx(1.0)
    assert profiles.t4_minutes([("resnet50", rate * 60, "eval")]) == pytest.approx(1 / 3)
    assert profiles.t4_minutes([]) == 0
    with pytest.raises(KeyError, match="T4_THROUGHPUT"):
        profiles.t4_minutes([("no_such_model", 10, "train")])
    with pytest.raises(ValueError, match="kind"):
        profiles.t4_minutes([("resnet50", 10, "predict")])
