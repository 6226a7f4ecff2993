"""Shared by the fusion, model and chapter-03 study tests (test_fusion.py, test_models.py,
test_studies_ch03.py): seeded ASFF-ResNet50 models and fusion modules, and real test images from
$SKINLESION_DATA/isic_balanced (read only). Small inputs and batch 1–4 keep them fast on 2 CPU
cores."""
from __future__ import annotations

import functools
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from skinlesion_utils import data
from skinlesion_utils import fusion as FU
from skinlesion_utils import models as M
from skinlesion_utils.augment import normalise

ADAPTIVE = ("asff_text", "asff_code", "asff_spatial")


@functools.lru_cache(maxsize=None)
def asff(fusion: str) -> M.ASFFResNet50:
    """One freshly initialised ASFF-ResNet50 per fusion, shared by the tests (built once; tests
    that train work on a deep copy)."""
    return M.build_model("asff_resnet50", fusion=fusion, seed=0)


def fusion_module(kind: str, detach: bool, upsample: str) -> nn.Module:
    """A small float64 adaptive fusion module (8 low / 16 high channels), seed 0."""
    cls = {"asff_text": FU.ASFFText, "asff_code": FU.ASFFCode, "asff_spatial": FU.ASFFSpatial}[kind]
    extra = {"compress": 4} if kind == "asff_spatial" else {"hidden": 16}
    torch.manual_seed(0)
    return cls(8, 16, detach_weights=detach, upsample=upsample, **extra).double()


def real_batch(n: int = 8, size: int = 64) -> torch.Tensor:
    """n real test images (half benign, half malignant), ImageNet-normalised float32 [n,3,S,S]."""
    root = Path(os.environ.get("SKINLESION_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
    folder = root / "isic_balanced" / "test"
    if not folder.is_dir():
        pytest.skip(f"real images not found under {folder}; set SKINLESION_DATA to the course data folder")
    files = [p for cls in data.CLASSES for p in sorted((folder / cls).glob("*.jpg"))[: n // 2]]
    return normalise(torch.from_numpy(np.stack([data.decode_image(p, size) for p in files])))
