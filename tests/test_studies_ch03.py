"""Tests of chapter 03's study (skinlesion_utils.studies.ch03_asff): the eq. 6 check, the shape
walk-through, the fusion inputs, the weights at initialisation and the cost table. Real test
images at 64 px and batch 1–8 keep the file fast on 2 CPU cores."""
from __future__ import annotations

import pytest
import torch

from fusion_support import ADAPTIVE, asff as _asff, fusion_module as _fusion, real_batch as _real_batch
from skinlesion_utils import models as M
from skinlesion_utils.studies import ch03_asff as S


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)


def test_eq6_check_exact_when_detached_and_explained_by_the_weight_path_otherwise():
    torch.manual_seed(2)
    low = torch.randn(2, 8, 6, 6, dtype=torch.float64)
    high = torch.randn(2, 16, 3, 3, dtype=torch.float64)
    grad = torch.randn(2, 8, 6, 6, dtype=torch.float64)
    for kind in ADAPTIVE:
        det = S.eq6_gradient_check(_fusion(kind, True, "bilinear"), low, high, grad)
        assert det["eq6_low"] < 1e-12 * det["scale_low"] and det["eq6_high"] < 1e-12 * det["scale_high"]
        full = S.eq6_gradient_check(_fusion(kind, False, "bilinear"), low, high, grad)
        assert full["eq6_low"] > 1e-4 * full["scale_low"], kind  # eq. 6 misses the weight path
        assert full["path_low"] < 1e-12 * full["scale_low"] and full["path_high"] < 1e-12 * full["scale_high"]


def test_eq6_table_copies_modules_and_covers_both_settings():
    mods = {k: _fusion(k, False, "bilinear").float() for k in ADAPTIVE}
    low, high = torch.randn(2, 8, 4, 4), torch.randn(2, 16, 2, 2)
    table = S.eq6_gradient_table(mods, low, high)
    assert list(table.index) == [(k, d) for k in ADAPTIVE for d in (True, False)]
    assert (table.xs(True, level="weights detached")["eq6_low"] < 1e-12).all()
    assert (table.xs(False, level="weights detached")["eq6_low"] > 1e-8).all()
    for m in mods.values():  # originals untouched
        assert m.detach_weights is False and next(m.parameters()).dtype == torch.float32


@pytest.mark.parametrize("fusion", ADAPTIVE)
def test_walkthrough_records_every_step_from_hooks(fusion):
    model = _asff(fusion).train()
    walk = S.fusion_walkthrough(model, _real_batch(2))
    assert model.training  # mode restored
    shapes = dict(zip(walk.step, walk.dims))
    assert shapes["input"] == (3, 64, 64) and shapes["layer3"] == (1024, 4, 4) and shapes["layer4"] == (2048, 2, 2)
    assert shapes["upsample"] == (2048, 4, 4) and shapes["project"] == (1024, 4, 4)
    assert shapes["fused"] == (1024, 4, 4) and shapes["head_fc1"] == (2048,) and shapes["logits"] == (2,)
    expected_w = {"asff_text": (2,), "asff_code": (1024,), "asff_spatial": (2, 4, 4)}[fusion]
    assert shapes["softmax"] == expected_w
    if fusion == "asff_spatial":
        assert shapes["concat"] == (32, 4, 4) and shapes["logits_conv"] == (2, 4, 4)
    else:
        assert shapes["concat"] == (2048, 4, 4) and shapes["gap"] == (2048,) and shapes["fc1"] == (1024,)
    assert list(walk.shape_text[walk.step == "layer3"]) == ["1024×4×4"]


def test_walkthrough_follows_project_first_and_rejects_plain_models():
    model = M.build_model("asff_resnet50", fusion="asff_text", project_first=True, head_hidden=0, seed=0)
    walk = S.fusion_walkthrough(model, torch.randn(1, 3, 64, 64))
    steps = list(walk.step)
    assert steps.index("project") < steps.index("upsample") and "head_fc1" not in steps
    shapes = dict(zip(walk.step, walk.dims))
    assert shapes["project"] == (1024, 2, 2) and shapes["upsample"] == (1024, 4, 4)
    with pytest.raises(ValueError, match="asff_text"):
        S.fusion_walkthrough(_asff("sum"), torch.randn(1, 3, 64, 64))


def test_fusion_init_state_on_real_images_restores_bn_and_mode():
    x = _real_batch(8)
    # a fresh model: the shared _asff() ones have run training-mode passes that moved their
    # BatchNorm running statistics away from the initial values this test is about
    model = M.build_model("asff_resnet50", fusion="asff_code", seed=0).train()
    before = {k: v.clone() for k, v in model.named_buffers()}
    weights, scales = S.fusion_init_state(model, x)
    assert model.training
    for k, v in model.named_buffers():
        assert torch.equal(v, before[k]), f"{k} changed"
    train = weights[weights["mode"] == "train"]["value"]
    assert len(train) == 8 * 1024 and (weights["uniform"] == 1 / 1024).all()
    assert train.mean() == pytest.approx(1 / 1024, rel=1e-4)  # weights sum to 1 over 1024 channels
    assert train.max() < 0.05  # no channel gives layer3 even 5 % in training mode
    # eval mode of an untrained body: BatchNorm does not normalise, activations and logits blow up
    assert scales.loc["eval", "layer4_std"] > 3 * scales.loc["train", "layer4_std"]
    assert scales.loc["eval", "logit_std"] > 3 * scales.loc["train", "logit_std"]
    eval_w = weights[weights["mode"] == "eval"]["value"]
    assert eval_w.max() > 10 * train.max()  # a few channels grab most of the weight
    with pytest.raises(ValueError, match="train"):
        S.fusion_init_state(model, x, modes=("test",))


def test_overhead_table_counts_match_hand_counts():
    variants = {k: S.OVERHEAD_VARIANTS[k] for k in ("resnet50 (torchvision)", "none", "asff_text", "asff_text, project_first")}
    table = S.fusion_overhead_table(image_size=32, variants=variants)
    assert table.loc["resnet50 (torchvision)", "params"] == 25_557_032 - 998 * (2048 + 1)
    # the released code's head GAP → FC 2048 + ReLU → FC 2 replaces torchvision's FC 2048 → 2
    assert table.loc["none", "Δparams vs resnet50"] == 2048 * 2048 + 2048
    # asff_text: 1×1 projection 2048→1024 (+bias), FC 2048→1024 (+bias), FC 1024→2 (+bias);
    # the head now starts from 1024 instead of 2048 channels
    assert table.loc["asff_text", "Δparams vs none"] == (2048 * 1024 + 1024) * 2 + (1024 * 2 + 2) - 1024 * 2048
    assert table.loc["asff_text, project_first", "params"] == table.loc["asff_text", "params"]
    saved = table.loc["asff_text", "gmacs"] - table.loc["asff_text, project_first", "gmacs"]
    assert saved * 1e9 == pytest.approx(2048 * 1024 * (4 - 1))  # the projection at 1×1 instead of 2×2 px
    assert table.loc["asff_text", "ΔGMACs vs none"] > 0


def test_fusion_inputs_has_no_side_effects():
    model = _asff("asff_text").eval()
    before = {k: v.clone() for k, v in model.named_buffers()}
    x = _real_batch(4)
    low, high = S.fusion_inputs(model, x, mode="train")
    assert not model.training and tuple(low.shape) == (4, 1024, 4, 4) and tuple(high.shape) == (4, 2048, 2, 2)
    for k, v in model.named_buffers():
        assert torch.equal(v, before[k]), f"{k} changed"
    low_eval, _ = S.fusion_inputs(model, x, mode="eval")
    assert not torch.allclose(low, low_eval)  # batch statistics vs (initial) running statistics
    with torch.no_grad():  # and the maps are the ones the fusion really receives
        seen = {}
        h = model.fusion.register_forward_pre_hook(lambda m, i: seen.setdefault("in", i))
        model(x)
        h.remove()
    torch.testing.assert_close(seen["in"][0], low_eval)
    with pytest.raises(ValueError, match="train"):
        S.fusion_inputs(model, x, mode="test")
