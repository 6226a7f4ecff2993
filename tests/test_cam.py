"""Tests of skinlesion_utils.cam: target layers, batched Grad-CAM (one layer and several layers
in one pass), hooks, the randomisation sanity check and its maps, and faithfulness.

Real images come from $SKINLESION_DATA/isic_balanced (read only); models are small and randomly
initialised, at 64 px.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cam_support import count_hooks, real_images

from skinlesion_utils import cam as C
from skinlesion_utils.models import build_model, list_models


@pytest.fixture(scope="module")
def real64() -> torch.Tensor:
    """8 real test images (4 benign, 4 malignant), uint8 [8, 3, 64, 64]."""
    return real_images(4)


@pytest.fixture(scope="module")
def real6() -> torch.Tensor:
    """6 real test images (3 benign, 3 malignant), uint8 [6, 3, 64, 64]."""
    return real_images(3)


# --------------------------------------------------------------------------- target layers
def test_target_layer_per_architecture():
    expected = {
        "lenet5": "features.3", "alexnet": "features.11", "vgg16": "features.29",
        "resnet34": "layer4.2", "resnet50": "layer4.2", "resnet101": "layer4.2",
        "mobilenet_v2": "features.18", "squeezenet1_1": "features.12", "densenet121": "features",
        "xception": "act4", "googlenet": "inception5b", "asff_resnet50": "cam_layer",
    }
    assert set(expected) == set(list_models())
    with torch.device("meta"):  # structure only: no weights are drawn
        for name in list_models():
            model = build_model(name)
            layer = C.cam_target_layer(model)
            assert model.get_submodule(expected[name]) is layer, name
    # VGG/AlexNet: the last conv block's ReLU, right before the final max-pool
    with torch.device("meta"):
        vgg = build_model("vgg16")
    assert isinstance(C.cam_target_layer(vgg), nn.ReLU) and isinstance(vgg.features[30], nn.MaxPool2d)


def test_target_layer_by_name_and_errors(asff):
    assert C.cam_target_layer(asff, "layer3") is asff.layer3
    assert C.cam_target_layer(asff, "layer4.2.conv3") is asff.layer4[2].conv3
    with pytest.raises(ValueError, match=r"(?s)no sub-module 'layer9'.*layer4.*Fix"):
        C.cam_target_layer(asff, "layer9")
    with pytest.raises(ValueError, match=r"(?s)does not know the architecture.*Sequential.*Fix.*target_layer"):
        C.cam_target_layer(nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.LazyLinear(2)))


def test_cam_map_sizes():
    """The map Grad-CAM upsamples: ResNet's layer4 is 1/32 of the input (2 × 2 at 64 px), the
    ASFF fused map is on layer3's grid (1/16), except for fusion='none' (layer4)."""
    expected = {
        ("resnet50", ""): [(2, 2), (4, 4), (7, 7)],
        ("asff_resnet50", "asff_text"): [(4, 4), (8, 8), (14, 14)],
        ("asff_resnet50", "none"): [(2, 2), (4, 4), (7, 7)],
        ("vgg16", ""): [(4, 4), (8, 8), (14, 14)],
        ("alexnet", ""): [(3, 3), (7, 7), (13, 13)],
        ("lenet5", ""): [(26, 26), (58, 58), (106, 106)],
    }
    with torch.device("meta"):  # shapes only: a forward pass on the meta device computes nothing
        for (name, fusion), sizes in expected.items():
            model = build_model(name, **({"fusion": fusion} if fusion else {}))
            assert [C.cam_map_size(model, s) for s in (64, 128, 224)] == sizes, name
            assert count_hooks(model) == 0


# --------------------------------------------------------------------------- compute_cams
def test_compute_cams_shape_range_batches_and_hooks_released(asff, real64):
    x = real64[[0, 1, 4, 5]]
    asff.train()  # the caller's mode must come back
    assert count_hooks(asff) == 0
    cams, logits = C.compute_cams(asff, x, batch_size=3, return_logits=True)  # two batches: 3 + 1
    assert cams.shape == (4, 64, 64) and cams.dtype == np.float32
    assert logits.shape == (4, 2)
    assert cams.min() >= 0.0 and cams.max() <= 1.0
    assert (cams.reshape(4, -1).max(1) > 0.99).sum() >= 3  # min-max scaled maps reach 1
    assert count_hooks(asff) == 0  # every hook removed by the `with` block
    assert asff.training
    assert all(p.grad is None and p.requires_grad for p in asff.parameters())
    # batches are sliced and put back in order; the default target is the predicted class
    last = C.compute_cams(asff, x[3:], targets=[int(logits[3].argmax())])
    np.testing.assert_array_equal(last, cams[3:])
    assert count_hooks(asff) == 0


def test_compute_cams_is_grad_cam(resnet34, real64):
    """Against Grad-CAM written out: weights = spatial mean of d logit / d A; ReLU(Σ w·A)."""
    from skinlesion_utils.augment import normalise

    x = real64[[0, 5]]
    model = resnet34.eval()
    acts = {}
    h = model.layer4.register_forward_hook(lambda m, i, o: acts.__setitem__("a", o))
    try:
        logits = model(normalise(x))
        a = acts["a"]
        grads = torch.autograd.grad(logits[:, 1].sum(), a)[0]
    finally:
        h.remove()
    raw = F.relu((grads.mean((2, 3), keepdim=True) * a).sum(1)).detach()
    lo = raw.flatten(1).min(1).values[:, None, None]
    raw = raw - lo
    raw = raw / (raw.flatten(1).max(1).values[:, None, None] + 1e-7)
    manual = F.interpolate(raw[:, None], size=64, mode="bilinear", align_corners=False)[:, 0].numpy()
    got = C.compute_cams(model, x, targets=1)
    np.testing.assert_allclose(got, manual, atol=1e-4)
    other = C.compute_cams(model, x, targets=0)
    assert np.abs(other - got).max() > 0.1  # the class matters
    assert all(p.grad is None for p in model.parameters())


def test_compute_cams_input_checks(resnet34, real64):
    from skinlesion_utils.augment import normalise

    x = real64[:2]
    np.testing.assert_allclose(C.compute_cams(resnet34, normalise(x[:1])), C.compute_cams(resnet34, x[:1].numpy()), atol=1e-6)
    with pytest.raises(ValueError, match=r"(?s)raw pixel values.*Fix"):
        C.compute_cams(resnet34, x.float() / 255)
    with pytest.raises(ValueError, match=r"(?s)raw pixel values"):
        C.compute_cams(resnet34, x.float())
    with pytest.raises(ValueError, match=r"\[N, 3, H, W\]"):
        C.compute_cams(resnet34, x.permute(0, 2, 3, 1))
    with pytest.raises(ValueError, match="3 targets for 2 images"):
        C.compute_cams(resnet34, x, targets=[0, 1, 1])
    with pytest.raises(RuntimeError, match=r"(?s)IndexError.*target class outside"):  # not swallowed
        C.compute_cams(resnet34, x[:1], targets=5)
    with pytest.raises(ValueError, match="Unknown method"):
        C.compute_cams(resnet34, x, method="gradcam3")
    with pytest.raises(ValueError, match="not a sub-module"):
        C.compute_cams(resnet34, x, target_layer=nn.Conv2d(3, 3, 1))
    assert count_hooks(resnet34) == 0


# --------------------------------------------------------------------------- several layers
def test_compute_cams_layers_equals_one_call_per_layer(asff, resnet34, real6):
    x = real6[:4]
    asff.train()
    maps, logits = C.compute_cams_layers(asff, x, {"fused": None, "l3": "layer3"}, batch_size=3, return_logits=True)
    assert list(maps) == ["fused", "l3"]
    for name, layer in (("fused", asff.cam_layer), ("l3", asff.layer3)):
        assert maps[name].shape == (4, 64, 64) and maps[name].dtype == np.float32
        assert maps[name].min() >= 0 and maps[name].max() <= 1
        np.testing.assert_allclose(maps[name], C.compute_cams(asff, x, layer), atol=1e-5)
    _, ref_logits = C.compute_cams(asff, x, return_logits=True)
    np.testing.assert_allclose(logits, ref_logits, atol=1e-5)
    assert asff.training and count_hooks(asff) == 0
    assert all(p.grad is None and p.requires_grad for p in asff.parameters())
    # layers given out of forward order, a module object, a list of names; explicit targets
    got = C.compute_cams_layers(resnet34, x, {"deep": None, "mid": resnet34.layer2[1]}, targets=1)
    np.testing.assert_allclose(got["mid"], C.compute_cams(resnet34, x, resnet34.layer2[1], targets=1), atol=1e-5)
    np.testing.assert_allclose(got["deep"], C.compute_cams(resnet34, x, targets=1), atol=1e-5)
    assert list(C.compute_cams_layers(resnet34, x[:1], [None, "layer3"])) == ["default", "layer3"]
    assert count_hooks(resnet34) == 0


def test_compute_cams_layers_backward_stops_at_the_lowest_target(resnet34, real6):
    """The layers below the lowest target layer get no gradient (that is the saving); the full
    call of compute_cams back-propagates down to the image."""
    calls = []
    h = resnet34.conv1.register_full_backward_hook(lambda m, gi, go: calls.append(1))
    try:
        C.compute_cams_layers(resnet34, real6[:2], [None, "layer3"])
        assert calls == []
        C.compute_cams(resnet34, real6[:2])
        assert calls, "compute_cams back-propagates through conv1"
    finally:
        h.remove()
    assert count_hooks(resnet34) == 0


def test_compute_cams_layers_errors(resnet34, real6):
    with pytest.raises(ValueError, match="no sub-module 'layer9'"):
        C.compute_cams_layers(resnet34, real6[:1], ["layer9"])
    with pytest.raises(ValueError, match="layers is empty"):
        C.compute_cams_layers(resnet34, real6[:1], {})
    with pytest.raises(RuntimeError, match="exactly once per forward pass"):  # BasicBlock reuses its ReLU
        C.compute_cams_layers(resnet34, real6[:1], ["layer4.2.relu"])
    with pytest.raises(ValueError, match="Unknown method"):
        C.compute_cams_layers(resnet34, real6[:1], [None], method="gradcam3")
    assert count_hooks(resnet34) == 0


# --------------------------------------------------------------------------- sanity check
def test_ssim_known_values():
    rng = np.random.default_rng(0)
    a = rng.random((40, 40))
    assert C.ssim(a, a) == pytest.approx(1.0)
    assert C.ssim(a, a[::-1]) == pytest.approx(C.ssim(a[::-1], a))
    noisy = np.clip(a + rng.normal(0, 0.3, a.shape), 0, 1)
    assert C.ssim(a, noisy) < 0.8
    # two constant maps: SSIM = (2 μa μb + C1) / (μa² + μb² + C1), C1 = 0.01²
    c1 = 0.01**2
    assert C.ssim(np.full((30, 30), 0.2), np.full((30, 30), 0.6)) == pytest.approx((2 * 0.12 + c1) / (0.04 + 0.36 + c1))


def test_randomisation_check_cams_change_and_model_untouched(resnet34, real64):
    x = real64[[0, 1, 4]]
    before = {k: v.clone() for k, v in resnet34.state_dict().items()}
    blocks = ["fc", "layer4", "layer2", "conv1"]
    df = C.randomisation_check(resnet34, x, blocks=blocks, batch_size=4, seed=0)
    assert all(torch.equal(before[k], v) for k, v in resnet34.state_dict().items())
    assert count_hooks(resnet34) == 0
    assert list(df.columns) == ["step", "block", "mode", "image", "spearman", "ssim", "flat"]
    assert len(df) == 3 * (1 + len(blocks))
    control = df[df.step == 0]
    assert (control.block == "none").all()
    np.testing.assert_allclose(control.spearman, 1.0, atol=1e-9)
    np.testing.assert_allclose(control.ssim, 1.0, atol=1e-9)
    per_step = df[df.step > 0].groupby("step").ssim.mean()
    assert list(df[df.step > 0].groupby("step").block.first()) == blocks
    assert (per_step < 0.7).all(), per_step  # every cascading step destroys the map's structure
    # independent mode, same seed: its first step is the cascade's first step (only fc is new)
    ind = C.randomisation_check(resnet34, x, blocks=["fc"], mode="independent", batch_size=4, seed=0)
    np.testing.assert_allclose(ind[ind.step == 1].ssim.to_numpy(), df[df.step == 1].ssim.to_numpy(), atol=1e-9)
    assert C.default_blocks(resnet34)[:4] == ["fc", "layer4.2", "layer4.1", "layer4.0"]
    with pytest.raises(ValueError, match="No block 'layer7'"):
        C.randomisation_check(resnet34, x, blocks=["layer7"])


def test_stage_blocks():
    with torch.device("meta"):
        asff = build_model("asff_resnet50", fusion="asff_text")
        none = build_model("asff_resnet50", fusion="none")
    assert C.stage_blocks(asff) == ["head", "fusion", "layer4", "layer3", "layer2", "layer1", "bn1", "conv1"]
    assert C.stage_blocks(none) == ["head", "layer4", "layer3", "layer2", "layer1", "bn1", "conv1"]


def test_randomisation_maps_are_the_checks_maps(resnet34, real6):
    x = real6[[0, 4]]
    before = {k: v.clone() for k, v in resnet34.state_dict().items()}
    blocks = ["fc", "layer4", "layer3"]
    steps, maps = C.randomisation_maps(resnet34, x, blocks=blocks, target_layer=resnet34.layer3[-1], seed=3)
    assert steps == ["none", *blocks] and maps.shape == (4, 2, 64, 64)
    assert all(torch.equal(before[k], v) for k, v in resnet34.state_dict().items())
    np.testing.assert_array_equal(maps[0], C.compute_cams(resnet34, x, resnet34.layer3[-1]))
    df = C.randomisation_check(resnet34, x, blocks=blocks, target_layer=resnet34.layer3[-1], seed=3)
    for step in range(1, 4):
        want = df[df.step == step].ssim.to_numpy()
        got = [C.ssim(maps[0, i], maps[step, i]) for i in range(2)]
        np.testing.assert_allclose(got, want, atol=1e-9)
    assert not np.allclose(maps[1], maps[3])  # later steps randomise more
    assert count_hooks(resnet34) == 0
    with pytest.raises(ValueError, match="No block 'layer7'"):
        C.randomisation_maps(resnet34, x, blocks=["layer7"])


# --------------------------------------------------------------------------- faithfulness
class LeftHalfModel(nn.Module):
    """P(class 1) depends only on the left half of the image: the evidence is known."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(1.0))

    def forward(self, x):
        m = x[:, :, :, : x.shape[-1] // 2].mean((1, 2, 3))
        return torch.stack([torch.zeros_like(m), self.scale * (m - 0.3)], dim=1)


def test_faithfulness_prefers_the_map_on_the_evidence(real64):
    x = real64[:3]
    model = LeftHalfModel()
    ramp = np.linspace(1.0, 0.0, 64, dtype=np.float32)[None, None, :].repeat(64, 1).repeat(3, 0)  # high on the left
    left = C.faithfulness(model, x, ramp, targets=1, removal=(20, 40, 60, 80))
    right = C.faithfulness(model, x, ramp[:, :, ::-1].copy(), targets=1, removal=(20, 40, 60, 80))
    assert list(left.columns[:3]) == ["image", "target", "p_target"]
    assert {"morf_20", "lerf_80", "road_morf", "road_lerf", "road_combined", "confidence_change"} <= set(left.columns)
    assert (left.p_target > 0.05).all() and (left.p_target < 0.95).all()  # not saturated
    # removing the 20/40 % most relevant pixels of the right-high map touches only the right half
    np.testing.assert_allclose(right[["morf_20", "morf_40"]].to_numpy(), 0.0, atol=1e-6)
    np.testing.assert_allclose(left[["lerf_20", "lerf_40"]].to_numpy(), 0.0, atol=1e-6)
    assert (left.morf_40.abs() > 0.01).all()
    assert (left.road_combined > right.road_combined).all()
    np.testing.assert_allclose(left.road_combined, (left.road_lerf - left.road_morf) / 2)
    # the image times the map: the left-high map keeps the left half's evidence better
    assert (left.confidence_change.abs() < right.confidence_change.abs()).all()
    again = C.faithfulness(model, x, ramp, targets=1, removal=(20, 40, 60, 80))
    np.testing.assert_array_equal(again.to_numpy(), left.to_numpy())  # seeded imputation noise
    with pytest.raises(ValueError, match="cams must be"):
        C.faithfulness(model, x, ramp[:, :32], targets=1)
