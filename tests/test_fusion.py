"""Tests of skinlesion_utils.fusion: the fusion modules (alignment, the gradient property of
eq. 6), their weight read-outs, and the readers of learned weights over a store (chapters 06 and
07). Small inputs keep the file fast on 2 CPU cores."""
from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest
import torch

from fusion_support import ADAPTIVE, asff as _asff, fusion_module as _fusion
from skinlesion_utils import fusion as FU
from skinlesion_utils import models as M
from skinlesion_utils.data import ImageTensorStore


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)


# --------------------------------------------------------------------------------------------
# the registry of fusions
# --------------------------------------------------------------------------------------------
def test_fusion_registry_names_and_adaptive_ones():
    assert FU.FUSIONS == ("none", "sum", "concat", "asff_text", "asff_code", "asff_spatial")
    assert FU.ADAPTIVE_FUSIONS == ADAPTIVE
    assert [FU.FUSION_CLASSES[f].adaptive for f in FU.FUSIONS] == [False, False, False, True, True, True]


# --------------------------------------------------------------------------------------------
# alignment
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("upsample", ["nearest", "bilinear"])
def test_project_first_gives_the_same_map_with_fewer_flops(upsample):
    torch.manual_seed(1)
    a = FU.LevelAlign(16, 8, upsample=upsample).double()
    b = FU.LevelAlign(16, 8, upsample=upsample, project_first=True).double()
    b.load_state_dict(a.state_dict())
    high = torch.randn(2, 16, 3, 5, dtype=torch.float64)
    torch.testing.assert_close(a(high, (6, 10)), b(high, (6, 10)))
    slow = M.count_flops(_asff("asff_text"), 32)
    faster = copy.deepcopy(_asff("asff_text"))
    faster.fusion.align.project_first = True
    # the saving is exactly the 1 × 1 projection run on 1 × 1 instead of 2 × 2 pixels
    assert slow - M.count_flops(faster, 32) == 2 * 2048 * 1024 * (4 - 1)


# --------------------------------------------------------------------------------------------
# The gradient property of eq. 6
# --------------------------------------------------------------------------------------------
def _broadcast(w: torch.Tensor, level: int, kind: str) -> torch.Tensor:
    """The weight multiplying level `level` (0: F1, 1: F2), broadcastable to [B, C, H, W]."""
    if kind == "asff_text":
        return w[:, level, None, None, None]
    if kind == "asff_code":
        wc = w[:, :, None, None]
        return wc if level == 0 else 1.0 - wc
    return w[:, level : level + 1]


@pytest.mark.parametrize("upsample", ["nearest", "bilinear"])
@pytest.mark.parametrize("kind", ADAPTIVE)
def test_eq6_gradient_is_the_weighted_fused_gradient(kind, upsample):
    """Eq. 6: with the weights held constant, dL/dF1 = ω · dL/dY and the gradient reaching the
    deep level is the resize/projection adjoint of (1 − ω) · dL/dY.

    ``detach_weights=True`` holds ω constant; the loss L = Σ Y ⊙ R makes dL/dY = R exactly.
    Without detaching, the path through ω adds a term, so the same identity must *fail* –
    eq. 6 describes only the part of the gradient that flows through the weighted sum."""
    torch.manual_seed(1)
    low = torch.randn(2, 8, 6, 6, dtype=torch.float64, requires_grad=True)
    high = torch.randn(2, 16, 3, 3, dtype=torch.float64, requires_grad=True)
    r = torch.randn(2, 8, 6, 6, dtype=torch.float64)

    results = {}
    for detach in (True, False):
        fusion = _fusion(kind, detach, upsample)
        low.grad = high.grad = None
        fused, w = fusion(low, high)
        (fused * r).sum().backward()
        w = w.detach()
        want_low = _broadcast(w, 0, kind) * r
        f2 = fusion.align(high, (6, 6))
        (want_high,) = torch.autograd.grad(f2, high, grad_outputs=_broadcast(w, 1, kind) * r)
        results[detach] = (fused.detach(), low.grad.clone(), want_low, high.grad.clone(), want_high)

    fused_d, g_low, want_low, g_high, want_high = results[True]
    torch.testing.assert_close(g_low, want_low)
    torch.testing.assert_close(g_high, want_high)

    fused_a, g_low_a, want_low_a, g_high_a, _ = results[False]
    torch.testing.assert_close(fused_a, fused_d)  # detaching changes gradients, not outputs
    assert (g_low_a - want_low_a).abs().max() > 1e-6 * want_low_a.abs().max()
    assert not torch.allclose(g_high_a, g_high)


# --------------------------------------------------------------------------------------------
# each module's read-out of its weights
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("fusion", ADAPTIVE)
def test_level_weights_rebuild_the_fused_map(fusion):
    """fused == F1·a + align(F2)·b with (a, b) from level_weights; layer3_share has the documented
    shape; uniform_weight is 1/(length of the softmax axis)."""
    module = _fusion(fusion, detach=False, upsample="bilinear")
    low = torch.randn(3, 8, 6, 6, dtype=torch.float64)
    high = torch.randn(3, 16, 3, 3, dtype=torch.float64)
    fused, w = module(low, high)
    a, b = module.level_weights(w)
    torch.testing.assert_close(fused, low * a + module.align(high, (6, 6)) * b)
    share = module.layer3_share(w)
    assert tuple(share.shape) == {"asff_text": (3,), "asff_code": (3, 8), "asff_spatial": (3, 6, 6)}[fusion]
    assert module.uniform_weight() == {"asff_text": 0.5, "asff_code": 1 / 8, "asff_spatial": 0.5}[fusion]
    with pytest.raises(TypeError, match="adaptive"):
        FU.SumFusion(8, 16).level_weights(w)
    with pytest.raises(TypeError, match="adaptive"):
        FU.SumFusion(8, 16).layer3_share(w)
    with pytest.raises(TypeError, match="adaptive"):
        FU.NoFusion(8, 16).uniform_weight()


# --------------------------------------------------------------------------------------------
# learned weights over a store
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("fusion,shape", [("asff_text", (6, 2)), ("asff_code", (6, 1024)),
                                          ("asff_spatial", (6, 2, 2, 2))])
def test_fusion_weights_of_real_asff_models(fusion, shape):
    torch.manual_seed(0)
    model = M.build_model("asff_resnet50", fusion=fusion)
    store = ImageTensorStore(torch.randint(0, 256, (6, 3, 32, 32), dtype=torch.uint8),
                             torch.tensor([0, 1, 0, 1, 0, 1]), [f"x/{i}.jpg" for i in range(6)], 32)
    w = FU.fusion_weights(model, store, batch_size=4)  # two batches
    assert w.shape == shape and model.training  # mode restored
    total = w.sum(1)
    assert torch.allclose(total, torch.ones_like(total), atol=1e-4)
    summary = FU.fusion_weight_summary(w, fusion)
    assert len(summary) == 6 and summary["layer3_share"].between(0, 1).all()
    assert (summary["layer3_max"] >= summary["layer3_share"] - 1e-12).all()


def test_fusion_weight_summary_on_known_weights():
    text = torch.tensor([[0.2, 0.8], [0.9, 0.1]])
    s = FU.fusion_weight_summary(text, "asff_text")
    assert s["layer3_share"].tolist() == pytest.approx([0.2, 0.9]) and (s["layer3_sd"] == 0).all()
    uniform = torch.full((3, 1024), 1 / 1024)
    peaked = torch.zeros(1, 1024)
    peaked[0, 7] = 1.0
    code = FU.fusion_weight_summary(torch.cat([uniform, peaked]), "asff_code")
    assert code["effective_n"].tolist() == pytest.approx([1024, 1024, 1024, 1])
    assert code["layer3_share"].tolist() == pytest.approx([1 / 1024] * 4)  # sums to 1 over channels
    assert code["layer3_max"].iloc[3] == 1.0
    alpha = torch.tensor([[[0.0, 1.0], [0.5, 0.5]]])
    spatial = FU.fusion_weight_summary(torch.stack([alpha, 1 - alpha], 1), "asff_spatial")
    assert spatial["layer3_share"].iloc[0] == pytest.approx(0.5)
    assert spatial["layer3_max"].iloc[0] == 1.0 and spatial["layer3_sd"].iloc[0] > 0.3
    with pytest.raises(ValueError, match="learns no weights"):
        FU.fusion_weight_summary(text, "sum")
    with pytest.raises(ValueError, match=r"\[N, 2\]"):
        FU.fusion_weight_summary(torch.ones(2, 3), "asff_text")


def test_fusion_weight_readings_tell_switched_off_from_mixed():
    y = np.r_[np.zeros(6, int), np.ones(4, int)]
    text_off = torch.stack([torch.full((10,), 1e-9), 1 - torch.full((10,), 1e-9)], 1)
    text_mixed = torch.stack([torch.linspace(0.3, 0.7, 10), 1 - torch.linspace(0.3, 0.7, 10)], 1)
    peaked = torch.zeros(10, 1024)
    peaked[:, 3] = 1.0
    alpha = torch.full((10, 1, 2, 2), 0.5)
    alpha[y == 1] = 0.8  # malignant images lean on layer3
    parts = []
    for f, s, w in (("asff_text", 0, text_off), ("asff_text", 1, text_mixed), ("asff_code", 0, peaked),
                    ("asff_spatial", 0, torch.cat([alpha, 1 - alpha], 1))):
        df = FU.fusion_weight_summary(w, f)
        df.insert(0, "y_true", y)
        df.insert(0, "seed", s)
        df.insert(0, "fusion", f)
        parts.append(df)
    r = FU.fusion_weight_readings(pd.concat(parts, ignore_index=True)).set_index(["fusion", "seed"])
    assert r.loc[("asff_text", 0), "share_layer3_ignored"] == 1.0
    assert "switched off" in r.loc[("asff_text", 0), "reading"]
    assert r.loc[("asff_text", 1), "share_layer3_ignored"] == 0.0
    assert "mixed" in r.loc[("asff_text", 1), "reading"]
    assert r.loc[("asff_code", 0), "median_effective_channels"] == pytest.approx(1.0)
    assert np.isnan(r.loc[("asff_code", 0), "share_layer3_ignored"])
    assert r.loc[("asff_spatial", 0), ["benign_mean", "malignant_mean"]].tolist() == pytest.approx([0.5, 0.8])
    assert (r["images"] == 10).all()
    with pytest.raises(ValueError, match="no adaptive fusion"):
        FU.fusion_weight_readings(pd.DataFrame({"fusion": ["none"], "seed": [0], "y_true": [0],
                                                "layer3_share": [0.5], "effective_n": [np.nan]}))
    with pytest.raises(ValueError, match="lacks"):
        FU.fusion_weight_readings(pd.DataFrame({"fusion": ["asff_text"]}))
