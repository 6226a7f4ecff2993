"""Shared by the many-run tests (test_studies_ch02.py, test_studies_ch06.py): a tiny CNN that
trains on 120 real training images at 16 px in seconds, and the real-data switch.

Tiny CNNs (through ``model_fn``) are evaluated on the 660 real test images, so every table, file
and test statistic is produced for real.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
import torch.nn as nn

from skinlesion_utils import runs as R
from skinlesion_utils.data import ImageTensorStore

DATA = Path(os.environ.get("SKINLESION_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
needs_data = pytest.mark.skipif(not (DATA / "isic_balanced").is_dir(), reason="needs SKINLESION_DATA")


#: A tiny CNN as source text, for the tests that train it in a subprocess (the SIGKILL, DDP and
#: kill-between-writes tests): 3×16×16 → 2 logits, BatchNorm included so buffers are exercised.
TINY_CNN_SRC = '''
import torch.nn as nn
class TinyCNN(nn.Module):
    """3×16×16 → 2 logits; BatchNorm included so buffers are exercised too."""
    def __init__(self, width=8):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.BatchNorm2d(2 * width), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(2 * width, 2)
    def forward(self, x):
        return self.head(self.features(x))
'''


class TinyFusionCNN(nn.Module):
    """3×S×S → 2 logits; ``fusion="mix"`` mimics an adaptive fusion: it keeps per-image weights
    [B, 2] (softmax) in ``last_fusion_weights`` like ASFFResNet50 does."""

    def __init__(self, width=8, fusion="none"):
        super().__init__()
        self.fusion_name = fusion
        self.features = nn.Sequential(
            nn.Conv2d(3, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(width, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.gate = nn.Linear(width, 2) if fusion == "mix" else None
        self.head = nn.Linear(width, 2)
        self.last_fusion_weights = None

    def forward(self, x):
        z = self.features(x)
        if self.gate is not None:
            w = torch.softmax(self.gate(z), 1)
            self.last_fusion_weights = w.detach()
            z = z * w[:, :1]
        return self.head(z)


def tiny_fn(cfg):
    """The ``model_fn`` of the tiny runs: a :class:`TinyFusionCNN` with the config's kwargs."""
    return TinyFusionCNN(**cfg.kwargs)


@pytest.fixture(scope="module")
def subset():
    """120 real training images (60 per class): the tiny runs' ``train_subset``."""
    store = ImageTensorStore.from_dataset("isic_balanced", split="train", resolution=16, progress=False)
    return tuple(i for c in (0, 1) for i in torch.nonzero(store.labels == c).flatten()[:60].tolist())


def tiny_config(subset, model="tiny_fusion_test", seed=0, **kwargs):
    """A one-epoch 16-px :class:`~skinlesion_utils.runs.RunConfig` of the tiny CNN (``kwargs``: its width, fusion)."""
    return R.RunConfig(model=model, model_kwargs=kwargs, profile="ci", recipe="fast", epochs=1, image_size=16,
                       batch_size=32, seed=seed, lr=5e-3, train_subset=subset)
