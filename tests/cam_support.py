"""Shared by the Grad-CAM tests (test_cam.py, test_localisation.py, test_studies_ch07.py): real
test images from $SKINLESION_DATA/isic_balanced (read only) and a count of the hooks a model
carries."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from skinlesion_utils.data import decode_image

DATA = Path(os.environ.get("SKINLESION_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
TEST = DATA / "isic_balanced" / "test"


def test_files(per_class: int) -> list[Path]:
    """The first ``per_class`` benign and malignant test images, sorted by name."""
    return [p for cls in ("benign", "malignant") for p in sorted((TEST / cls).glob("*.jpg"))[:per_class]]


test_files.__test__ = False  # a helper, not a test


def real_images(per_class: int, size: int = 64) -> torch.Tensor:
    """``2 × per_class`` real test images, uint8 [N, 3, size, size]; skips without the data."""
    if not TEST.is_dir():
        pytest.skip("needs the course data folder: set SKINLESION_DATA")
    return torch.from_numpy(np.stack([decode_image(p, size) for p in test_files(per_class)]))


def count_hooks(model: nn.Module) -> int:
    """Forward, pre-forward and backward hooks registered anywhere in ``model``."""
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
               + len(getattr(m, "_backward_pre_hooks", {})) for m in model.modules())
