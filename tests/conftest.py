"""Fixtures shared by several test modules."""
from __future__ import annotations

import os

import pytest

# The tests are written against the `ci` profile. Unset, a machine with a CUDA GPU would pick
# `full` (profiles.profile_choice); tests of that rule unset the variable themselves.
os.environ.setdefault("SKINLESION_PROFILE", "ci")

from skinlesion_utils.models import build_model  # noqa: E402


@pytest.fixture(scope="module")
def asff():
    """ASFF-ResNet50 with the paper's fusion, seeded random weights (Grad-CAM tests)."""
    return build_model("asff_resnet50", fusion="asff_text", seed=0)


@pytest.fixture(scope="module")
def resnet34():
    """ResNet-34, seeded random weights (Grad-CAM tests)."""
    return build_model("resnet34", seed=0)
