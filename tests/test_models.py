"""Tests of skinlesion_utils.models: shapes, fusion weights, eq. 6, training step, registry,
offline errors and summaries. Small inputs and batch 1–4 keep the file fast on 2 CPU cores."""
from __future__ import annotations

import copy
import functools

import torch
import torchvision
from torch import nn

import pytest

from skinlesion_utils import models as M

ADAPTIVE = ("asff_text", "asff_code", "asff_spatial")


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)


@functools.lru_cache(maxsize=None)
def _asff(fusion: str) -> M.ASFFResNet50:
    """One freshly initialised ASFF-ResNet50 per fusion, shared by the tests (built once; tests
    that train work on a deep copy)."""
    return M.build_model("asff_resnet50", fusion=fusion, seed=0)


# --------------------------------------------------------------------------------------------
# registry
# --------------------------------------------------------------------------------------------
def test_list_models_names_the_paper_zoo():
    assert M.list_models() == [
        "lenet5", "alexnet", "vgg16", "resnet34", "resnet50", "resnet101", "mobilenet_v2",
        "squeezenet1_1", "densenet121", "xception", "googlenet", "asff_resnet50",
    ]  # fmt: skip


def test_unknown_name_lists_valid_names():
    with pytest.raises(ValueError) as err:
        M.build_model("resnet-5O")
    msg = str(err.value)
    assert "resnet-5O" in msg
    for name in M.list_models():
        assert name in msg


def test_unknown_fusion_and_upsample_are_rejected():
    with pytest.raises(ValueError, match="asff_text"):
        M.ASFFResNet50(fusion="asff")
    with pytest.raises(ValueError, match="bilinear"):
        M.LevelAlign(8, 4, upsample="area")


def test_head_hidden_only_where_classifier_is_gap_linear():
    with pytest.raises(ValueError, match="head_hidden"):
        M.build_model("alexnet", head_hidden=512)
    m = M.build_model("resnet34", head_hidden=64, num_classes=3)
    assert isinstance(m.fc, nn.Sequential) and m.fc[0].out_features == 64
    assert m(torch.randn(2, 3, 32, 32)).shape == (2, 3)


@pytest.mark.parametrize("name", M.list_models())
def test_every_model_gives_logits_at_224_and_64(name):
    model = M.build_model(name, num_classes=3, seed=0).eval()
    with torch.no_grad():
        for size in (224, 64):
            out = model(torch.randn(1, 3, size, size))
            assert out.shape == (1, 3), (name, size)
            assert torch.isfinite(out).all()


def test_googlenet_has_no_aux_logits_and_returns_a_tensor_in_training():
    model = M.build_model("googlenet", seed=0).train()
    assert model.aux1 is None and model.aux2 is None
    out = model(torch.randn(2, 3, 64, 64))
    assert isinstance(out, torch.Tensor) and out.shape == (2, 2)


def test_seed_gives_same_weights_and_leaves_global_rng_alone():
    state = torch.random.get_rng_state()
    a = M.build_model("lenet5", seed=3)
    b = M.build_model("lenet5", seed=3)
    c = M.build_model("lenet5", seed=4)
    assert torch.equal(torch.random.get_rng_state(), state)
    for pa, pb, pc in zip(a.parameters(), b.parameters(), c.parameters()):
        assert torch.equal(pa, pb)
    assert not all(torch.equal(pa, pc) for pa, pc in zip(a.parameters(), c.parameters()))


# --------------------------------------------------------------------------------------------
# ASFF-ResNet50: shapes, weights, Grad-CAM layer
# --------------------------------------------------------------------------------------------
FUSED_SHAPE_224 = {
    "none": (2048, 7, 7),
    "sum": (1024, 14, 14),
    "concat": (2048, 14, 14),
    "asff_text": (1024, 14, 14),
    "asff_code": (1024, 14, 14),
    "asff_spatial": (1024, 14, 14),
}


@pytest.mark.parametrize("fusion", M.FUSIONS)
def test_asff_resnet50_shapes_weights_and_cam_layer(fusion):
    model = _asff(fusion).eval()
    seen = {}

    def keep(key):  # a forward hook that records the output (returns None: output unchanged)
        return lambda mod, inp, out: seen.__setitem__(key, out)

    handles = [model.cam_layer.register_forward_hook(keep("cam")),
               model.layer3.register_forward_hook(keep("l3"))]  # fmt: skip
    with torch.no_grad():
        logits, w = model(torch.randn(1, 3, 224, 224), return_weights=True)
    for h in handles:
        h.remove()
    assert logits.shape == (1, 2)
    assert tuple(seen["l3"].shape[1:]) == (1024, 14, 14)
    assert tuple(seen["cam"].shape[1:]) == FUSED_SHAPE_224[fusion]
    if fusion not in ADAPTIVE:
        assert w is None and model.last_fusion_weights is None
        return
    expected_w = {"asff_text": (1, 2), "asff_code": (1, 1024), "asff_spatial": (1, 2, 14, 14)}
    assert tuple(w.shape) == expected_w[fusion]
    assert torch.equal(model.last_fusion_weights, w)


@pytest.mark.parametrize("fusion", ADAPTIVE)
def test_fusion_weights_are_a_partition_of_unity(fusion):
    """Weights lie in [0, 1] and sum to 1 over the axis the variant normalises: levels for
    asff_text / asff_spatial (dim 1 of [B, 2] / [B, 2, H, W]), channels for asff_code."""
    model = _asff(fusion).train()
    with torch.no_grad():
        model(torch.randn(3, 3, 32, 32))
    w = model.last_fusion_weights
    assert not w.requires_grad
    assert w.shape[0] == 3
    assert (w >= 0).all() and (w <= 1).all()
    torch.testing.assert_close(w.sum(dim=1), torch.ones_like(w.sum(dim=1)))
    # per-image weights: the three images do not all get the same weights
    assert not torch.allclose(w[0], w[1]) or not torch.allclose(w[1], w[2])


def test_asff_code_starts_as_almost_pure_layer4():
    """Released-code fusion: a softmax over 1024 channels makes every w_c ≈ 1/1024 at
    initialisation, so the fused map is ≈ the projected layer4 (F2) and layer3 is nearly off."""
    x = torch.randn(4, 3, 32, 32)
    code, text = _asff("asff_code").train(), _asff("asff_text").train()
    with torch.no_grad():
        code(x)
        text(x)
    assert code.last_fusion_weights.max() < 10 / 1024  # no channel gives layer3 even 1 %
    # whereas the paper-text variant starts with a real mixture between the two levels
    assert text.last_fusion_weights[:, 0].min() > 10 / 1024


def test_fusion_none_is_plain_resnet50():
    """With fusion='none' and no hidden layer the model *is* torchvision's ResNet-50."""
    ref = torchvision.models.resnet50(num_classes=2).eval()
    model = M.ASFFResNet50(num_classes=2, fusion="none", head_hidden=0).eval()
    state = {k.replace("fc.", "head.mlp.2."): v for k, v in ref.state_dict().items()}
    model.load_state_dict(state, strict=True)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(x), ref(x))


@pytest.mark.parametrize("upsample", ["nearest", "bilinear"])
def test_project_first_gives_the_same_map_with_fewer_flops(upsample):
    torch.manual_seed(1)
    a = M.LevelAlign(16, 8, upsample=upsample).double()
    b = M.LevelAlign(16, 8, upsample=upsample, project_first=True).double()
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
def _fusion(kind: str, detach: bool, upsample: str) -> nn.Module:
    cls = {"asff_text": M.ASFFText, "asff_code": M.ASFFCode, "asff_spatial": M.ASFFSpatial}[kind]
    extra = {"compress": 4} if kind == "asff_spatial" else {"hidden": 16}
    torch.manual_seed(0)
    return cls(8, 16, detach_weights=detach, upsample=upsample, **extra).double()


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
# training step
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("fusion", M.FUSIONS)
def test_one_sgd_step_moves_body_fusion_and_head(fusion):
    model = copy.deepcopy(_asff(fusion)).train()
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    x, y = torch.randn(2, 3, 32, 32), torch.tensor([0, 1])
    nn.functional.cross_entropy(model(x), y).backward()

    fusion_params = dict(model.fusion.named_parameters())
    if fusion == "none":
        assert not fusion_params
    else:
        assert fusion_params
        for name, p in fusion_params.items():
            assert p.grad is not None and p.grad.abs().sum() > 0, f"no gradient reaches fusion.{name}"
    opt.step()
    changed = {k for k, v in model.named_parameters() if not torch.equal(v, before[k])}
    for prefix in ("conv1.", "layer3.", "layer4.", "head.", *(("fusion.",) if fusion_params else ())):
        assert any(k.startswith(prefix) for k in changed), f"{prefix} did not move"


# --------------------------------------------------------------------------------------------
# pretrained weights without internet
# --------------------------------------------------------------------------------------------
@pytest.fixture
def offline(monkeypatch, tmp_path):
    """An empty weights cache and a proxy that refuses every connection: a real download is
    attempted and fails quickly, on this offline machine and on a connected one alike."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    for var in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.setenv(var, "http://127.0.0.1:9")
    for var in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(var, raising=False)
    return tmp_path


@pytest.mark.parametrize("name", ["squeezenet1_1", "xception", "asff_resnet50"])
def test_pretrained_without_internet_raises_one_clear_error(offline, name):
    with pytest.raises(RuntimeError) as err:
        M.build_model(name, pretrained=True)
    msg = str(err.value)
    assert repr(name) in msg
    assert "Cause:" in msg and "internet" in msg
    assert str(offline / "torch" / "hub" / "checkpoints") in msg
    assert "pretrained=False" in msg and "SKINLESION_PROFILE=ci" in msg
    assert isinstance(err.value.__cause__, OSError)


def test_lenet5_has_no_pretrained_weights():
    with pytest.raises(ValueError, match="pretrained=False"):
        M.build_model("lenet5", pretrained=True)


# --------------------------------------------------------------------------------------------
# summaries
# --------------------------------------------------------------------------------------------
def test_flops_convention_on_a_hand_countable_model():
    """FlopCounterMode counts 2 FLOPs per multiply-add: conv 3→8, 3×3, on 16×16 'same' = 8·27·256
    MACs; the linear layer 8·16·16 → 5 adds 2048·5 MACs."""
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.Flatten(), nn.Linear(8 * 16 * 16, 5))
    s = M.model_summary(model, image_size=16)
    macs = 8 * 27 * 256 + 2048 * 5
    assert s["macs"] == macs and s["flops"] == 2 * macs
    assert s["params_total"] == (8 * 27 + 8) + (2048 * 5 + 5)
    assert s["min_input_size"] == 16  # the Linear layer fixes the input size


def test_resnet50_summary_matches_published_size_and_cost():
    model = M.build_model("resnet50", num_classes=2)
    model.layer1.requires_grad_(False)
    s = M.model_summary(model, image_size=224)
    # torchvision documents 25,557,032 parameters with 1000 classes; 2 classes drop 998 rows
    assert s["params_total"] == 25_557_032 - 998 * (2048 + 1)
    frozen = sum(p.numel() for p in model.layer1.parameters())
    assert s["params_trainable"] == s["params_total"] - frozen
    assert 4.0 < s["gmacs"] < 4.2  # ≈ 4.1 G multiply-adds (torchvision: "4.09 GFLOPS")
    assert s["gflops"] == pytest.approx(2 * s["gmacs"])
    assert s["min_input_size"] == 1  # stride-2 stages with padding never shrink below 1 px


def test_min_input_size_is_the_boundary():
    model = M.build_model("lenet5").eval()
    m = M.min_input_size(model)
    assert m == 16  # 16 →conv5→ 12 →pool→ 6 →conv5→ 2 →pool→ 1
    with torch.no_grad():
        model(torch.zeros(1, 3, m, m))
        with pytest.raises(RuntimeError):
            model(torch.zeros(1, 3, m - 1, m - 1))


# --------------------------------------------------------------------------------------------
# chapter 03 helpers: level weights, eq. 6 check, walk-through, weights at init, cost table
# --------------------------------------------------------------------------------------------
def _real_batch(n: int = 8, size: int = 64) -> torch.Tensor:
    """n real test images (half benign, half malignant), ImageNet-normalised float32 [n,3,S,S]."""
    import os
    from pathlib import Path

    from skinlesion_utils import data
    from skinlesion_utils.train import normalise

    root = Path(os.environ.get("SKINLESION_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
    folder = root / "isic_balanced" / "test"
    if not folder.is_dir():
        pytest.skip(f"real images not found under {folder}; set SKINLESION_DATA to the course data folder")
    files = [p for cls in data.CLASSES for p in sorted((folder / cls).glob("*.jpg"))[: n // 2]]
    import numpy as np

    return normalise(torch.from_numpy(np.stack([data.decode_image(p, size) for p in files])))


@pytest.mark.parametrize("fusion", ADAPTIVE)
def test_level_weights_rebuild_the_fused_map(fusion):
    """fused == F1·a + align(F2)·b with (a, b) from level_weights; layer3_share has the documented
    shape; uniform_weight is 1/(length of the softmax axis)."""
    module = _fusion(fusion, detach=False, upsample="bilinear")
    low = torch.randn(3, 8, 6, 6, dtype=torch.float64)
    high = torch.randn(3, 16, 3, 3, dtype=torch.float64)
    fused, w = module(low, high)
    a, b = M.level_weights(module, w)
    torch.testing.assert_close(fused, low * a + module.align(high, (6, 6)) * b)
    share = M.layer3_share(module, w)
    assert tuple(share.shape) == {"asff_text": (3,), "asff_code": (3, 8), "asff_spatial": (3, 6, 6)}[fusion]
    assert M.uniform_weight(module) == {"asff_text": 0.5, "asff_code": 1 / 8, "asff_spatial": 0.5}[fusion]
    with pytest.raises(TypeError, match="adaptive"):
        M.level_weights(M.SumFusion(8, 16), w)


def test_eq6_check_exact_when_detached_and_explained_by_the_weight_path_otherwise():
    torch.manual_seed(2)
    low = torch.randn(2, 8, 6, 6, dtype=torch.float64)
    high = torch.randn(2, 16, 3, 3, dtype=torch.float64)
    grad = torch.randn(2, 8, 6, 6, dtype=torch.float64)
    for kind in ADAPTIVE:
        det = M.eq6_gradient_check(_fusion(kind, True, "bilinear"), low, high, grad)
        assert det["eq6_low"] < 1e-12 * det["scale_low"] and det["eq6_high"] < 1e-12 * det["scale_high"]
        full = M.eq6_gradient_check(_fusion(kind, False, "bilinear"), low, high, grad)
        assert full["eq6_low"] > 1e-4 * full["scale_low"], kind  # eq. 6 misses the weight path
        assert full["path_low"] < 1e-12 * full["scale_low"] and full["path_high"] < 1e-12 * full["scale_high"]


def test_eq6_table_copies_modules_and_covers_both_settings():
    mods = {k: _fusion(k, False, "bilinear").float() for k in ADAPTIVE}
    low, high = torch.randn(2, 8, 4, 4), torch.randn(2, 16, 2, 2)
    table = M.eq6_gradient_table(mods, low, high)
    assert list(table.index) == [(k, d) for k in ADAPTIVE for d in (True, False)]
    assert (table.xs(True, level="weights detached")["eq6_low"] < 1e-12).all()
    assert (table.xs(False, level="weights detached")["eq6_low"] > 1e-8).all()
    for m in mods.values():  # originals untouched
        assert m.detach_weights is False and next(m.parameters()).dtype == torch.float32


@pytest.mark.parametrize("fusion", ADAPTIVE)
def test_walkthrough_records_every_step_from_hooks(fusion):
    model = _asff(fusion).train()
    walk = M.fusion_walkthrough(model, _real_batch(2))
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
    walk = M.fusion_walkthrough(model, torch.randn(1, 3, 64, 64))
    steps = list(walk.step)
    assert steps.index("project") < steps.index("upsample") and "head_fc1" not in steps
    shapes = dict(zip(walk.step, walk.dims))
    assert shapes["project"] == (1024, 2, 2) and shapes["upsample"] == (1024, 4, 4)
    with pytest.raises(ValueError, match="asff_text"):
        M.fusion_walkthrough(_asff("sum"), torch.randn(1, 3, 64, 64))


def test_fusion_init_state_on_real_images_restores_bn_and_mode():
    x = _real_batch(8)
    # a fresh model: the shared _asff() ones have run training-mode passes that moved their
    # BatchNorm running statistics away from the initial values this test is about
    model = M.build_model("asff_resnet50", fusion="asff_code", seed=0).train()
    before = {k: v.clone() for k, v in model.named_buffers()}
    weights, scales = M.fusion_init_state(model, x)
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
        M.fusion_init_state(model, x, modes=("test",))


def test_overhead_table_counts_match_hand_counts():
    variants = {k: M.OVERHEAD_VARIANTS[k] for k in ("resnet50 (torchvision)", "none", "asff_text", "asff_text, project_first")}
    table = M.fusion_overhead_table(image_size=32, variants=variants)
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
    low, high = M.fusion_inputs(model, x, mode="train")
    assert not model.training and tuple(low.shape) == (4, 1024, 4, 4) and tuple(high.shape) == (4, 2048, 2, 2)
    for k, v in model.named_buffers():
        assert torch.equal(v, before[k]), f"{k} changed"
    low_eval, _ = M.fusion_inputs(model, x, mode="eval")
    assert not torch.allclose(low, low_eval)  # batch statistics vs (initial) running statistics
    with torch.no_grad():  # and the maps are the ones the fusion really receives
        seen = {}
        h = model.fusion.register_forward_pre_hook(lambda m, i: seen.setdefault("in", i))
        model(x)
        h.remove()
    torch.testing.assert_close(seen["in"][0], low_eval)
    with pytest.raises(ValueError, match="train"):
        M.fusion_inputs(model, x, mode="test")
