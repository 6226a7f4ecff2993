"""Fixtures shared by several test modules."""
from __future__ import annotations

import pytest

from skinlesion_utils.models import build_model


@pytest.fixture(scope="module")
def asff():
    """ASFF-ResNet50 with the paper's fusion, seeded random weights (Grad-CAM tests)."""
    return build_model("asff_resnet50", fusion="asff_text", seed=0)


@pytest.fixture(scope="module")
def resnet34():
    """ResNet-34, seeded random weights (Grad-CAM tests)."""
    return build_model("resnet34", seed=0)
