"""Tests of skinlesion_utils.models: the registry, ASFF-ResNet50 (shapes, fusion weights,
training step), offline errors and summaries. Small inputs and batch 1–4 keep the file fast on 2
CPU cores. The fusion modules are tested in test_fusion.py, chapter 03's study in
test_studies_ch03.py."""
from __future__ import annotations

import copy

import torch
import torchvision
from torch import nn

import pytest

from fusion_support import ADAPTIVE, asff as _asff
from skinlesion_utils import fusion as FU
from skinlesion_utils import models as M


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)


# --------------------------------------------------------------------------------------------
# registry
# --------------------------------------------------------------------------------------------
def test_list_models_names_the_paper_zoo():
    assert M.list_models() == [
        "lenet5", "alexnet", "vgg16", "resnet34", "resnet50", "resnet101", "mobilenet_v2",
        "squeezenet1_1", "densenet121", "xception", "googlenet", "asff_resnet50",
    ]  # fmt: skip


def test_register_model_refuses_a_name_twice():
    with pytest.raises(ValueError, match="already registered"):
        M.register_model("resnet50", "another ResNet-50")(lambda num_classes, pretrained, head_hidden: None)
    assert M.list_models().count("resnet50") == 1


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
        FU.LevelAlign(8, 4, upsample="area")


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


@pytest.mark.parametrize("fusion", FU.FUSIONS)
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


# --------------------------------------------------------------------------------------------
# training step
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("fusion", FU.FUSIONS)
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
