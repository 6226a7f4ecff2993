"""Tests of the chapter-07 additions to skinlesion_utils.cam: several target layers in one pass,
map resizing, the image-independence controls, the maps of a cascading randomisation, paired
localisation comparisons, thin dark structures and example selection.

Real images come from $SKINLESION_DATA/isic_balanced (read only); models are small and randomly
initialised, at 64 px.
"""
from __future__ import annotations


import numpy as np
import pandas as pd
import pytest
import torch

from cam_support import count_hooks, real_images

from skinlesion_utils import cam as C, splits
from skinlesion_utils.models import build_model

@pytest.fixture(scope="module")
def real64() -> torch.Tensor:
    """6 real test images (3 benign, 3 malignant), uint8 [6, 3, 64, 64]."""
    return real_images(3)


# --------------------------------------------------------------------------- several layers
def test_compute_cams_layers_equals_one_call_per_layer(asff, resnet34, real64):
    x = real64[:4]
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


def test_compute_cams_layers_backward_stops_at_the_lowest_target(resnet34, real64):
    """The layers below the lowest target layer get no gradient (that is the saving); the full
    call of compute_cams back-propagates down to the image."""
    calls = []
    h = resnet34.conv1.register_full_backward_hook(lambda m, gi, go: calls.append(1))
    try:
        C.compute_cams_layers(resnet34, real64[:2], [None, "layer3"])
        assert calls == []
        C.compute_cams(resnet34, real64[:2])
        assert calls, "compute_cams back-propagates through conv1"
    finally:
        h.remove()
    assert count_hooks(resnet34) == 0


def test_compute_cams_layers_errors(resnet34, real64):
    with pytest.raises(ValueError, match="no sub-module 'layer9'"):
        C.compute_cams_layers(resnet34, real64[:1], ["layer9"])
    with pytest.raises(ValueError, match="layers is empty"):
        C.compute_cams_layers(resnet34, real64[:1], {})
    with pytest.raises(RuntimeError, match="exactly once per forward pass"):  # BasicBlock reuses its ReLU
        C.compute_cams_layers(resnet34, real64[:1], ["layer4.2.relu"])
    with pytest.raises(ValueError, match="Unknown method"):
        C.compute_cams_layers(resnet34, real64[:1], [None], method="gradcam3")
    assert count_hooks(resnet34) == 0


def test_resize_maps():
    c = np.zeros((2, 4, 4), np.float32)
    c[0, :, 2:] = 1.0  # right half
    c[1] = 0.5
    r = C.resize_maps(c, 16)
    assert r.shape == (2, 16, 16) and r.dtype == np.float32
    np.testing.assert_allclose(r[1], 0.5)
    np.testing.assert_allclose(r[0, :, :6], 0.0)  # far from the edge: unchanged
    np.testing.assert_allclose(r[0, :, 10:], 1.0)
    np.testing.assert_array_equal(r[0], np.broadcast_to(r[0, :1], (16, 16)))  # every row the same
    np.testing.assert_allclose(r[0, :, 8] + r[0, :, 7], 1.0, atol=1e-6)  # symmetric around the edge
    np.testing.assert_array_equal(C.resize_maps(c, 4), c)
    assert C.resize_maps(c[0], 8).shape == (1, 8, 8)


# --------------------------------------------------------------------------- randomisation
def test_stage_blocks():
    with torch.device("meta"):
        asff = build_model("asff_resnet50", fusion="asff_text")
        none = build_model("asff_resnet50", fusion="none")
    assert C.stage_blocks(asff) == ["head", "fusion", "layer4", "layer3", "layer2", "layer1", "bn1", "conv1"]
    assert C.stage_blocks(none) == ["head", "layer4", "layer3", "layer2", "layer1", "bn1", "conv1"]


def test_randomisation_maps_are_the_checks_maps(resnet34, real64):
    x = real64[[0, 4]]
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


def test_summarise_randomisation_counts_flat_maps_as_zero():
    df = pd.DataFrame({
        "step": [0, 0, 1, 1, 2, 2], "block": ["none", "none", "fc", "fc", "layer4", "layer4"],
        "mode": "cascading", "image": [0, 1] * 3,
        "spearman": [1.0, 1.0, 0.6, -0.2, np.nan, 0.1], "ssim": [1.0, 1.0, 0.5, 0.3, 0.0, 0.2],
        "flat": [False, False, False, False, True, False],
    })
    s = C.summarise_randomisation(df)
    assert list(s.index) == [0, 1, 2] and list(s.block) == ["none", "fc", "layer4"]
    np.testing.assert_allclose(s.spearman, [1.0, 0.2, 0.05])
    np.testing.assert_allclose(s.spearman_abs, [1.0, 0.4, 0.05])
    np.testing.assert_allclose(s.ssim, [1.0, 0.4, 0.1])
    np.testing.assert_allclose(s.flat_share, [0.0, 0.0, 0.5])
    assert (s.n == 2).all()


# --------------------------------------------------------------------------- controls
def test_blank_image_and_map_similarity(resnet34, real64):
    blank = C.blank_image(real64)
    assert blank.shape == (1, 3, 64, 64) and blank.dtype == torch.uint8
    want = real64.double().mean(dim=(0, 2, 3)).round()
    assert torch.equal(blank[0, :, 5, 7].double(), want) and (blank == blank[:, :, :1, :1]).all()
    assert C.blank_image(real64, size=32).shape == (1, 3, 32, 32)
    ramp = np.tile(np.linspace(0, 1, 16, dtype=np.float32), (16, 1))
    maps = np.stack([ramp, ramp[:, ::-1], np.full_like(ramp, 0.3), ramp ** 2])
    sim = C.map_similarity(maps, ramp)
    np.testing.assert_allclose(sim[[0, 1, 3]], [1.0, -1.0, 1.0])
    assert np.isnan(sim[2])
    with pytest.raises(ValueError, match=r"reference \[H, W\]"):
        C.map_similarity(maps, ramp[:8])
    # a model's map of the blank image, compared with itself and with real images' maps
    b_map = C.compute_cams(resnet34, blank)[0]
    np.testing.assert_allclose(C.map_similarity(C.compute_cams(resnet34, torch.cat([blank, blank])), b_map), 1.0)


def test_centre_prior_and_peak_grid():
    g = C.centre_prior(33, sigma=0.2)
    assert g.shape == (33, 33) and g.dtype == np.float32
    assert g[16, 16] == pytest.approx(1.0) and g.min() > 0 and g.max() <= 1
    np.testing.assert_allclose(g, g.T)
    np.testing.assert_allclose(g, g[::-1])
    assert C.centre_prior(32)[0, 0] < C.centre_prior(32)[10, 10]
    cams = np.zeros((5, 8, 8), np.float32)
    cams[0, 1, 1] = 1  # top-left cell of a 2×2 grid
    cams[1, 6, 7] = 1  # bottom-right
    cams[2, 5, 6] = 1  # bottom-right
    cams[3, 0, 7] = 1  # top-right
    cams[4] = 0.4  # flat: not counted
    np.testing.assert_array_equal(C.peak_grid(cams, 2), [[1, 1], [0, 2]])
    assert C.peak_grid(cams, (4, 2)).sum() == 4 and C.peak_grid(cams, 8)[6, 7] == 1


# --------------------------------------------------------------------------- tables
def _toy():
    mask = np.zeros((4, 16, 16), bool)
    mask[:, 4:12, 4:12] = True  # a quarter of the image
    a = np.zeros((4, 16, 16), np.float32)
    a[:, 6:10, 6:10] = 1.0  # inside
    b = np.zeros((4, 16, 16), np.float32)
    b[:, 0:2, 0:2] = 1.0  # outside
    b[3, 8, 8] = 0.5
    b[3, 0, 0] = 1.0  # mostly outside, peak outside
    return mask, a, b


def test_localisation_table_and_summary():
    mask, a, b = _toy()
    ids = [f"test/benign/{i}.jpg" for i in range(4)]
    prior = C.centre_prior(16)
    t = C.localisation_table({("A", "fused"): a, ("B", "layer4"): b, ("prior", "-"): prior}, mask, ids=ids,
                             labels=[0, 0, 1, 1], extra={("A", "fused"): {"pred": [0, 1, 1, 1]}})
    assert len(t) == 12 and t.attrs["mask_kind"] == "approximate" and (t.mask_kind == "approximate").all()
    assert list(t.columns[:5]) == ["model", "layer", "image", "id", "label"]
    ta = t[t.model == "A"]
    np.testing.assert_allclose(ta.energy_inside, 1.0)
    assert ta.pred.tolist() == [0, 1, 1, 1] and t[t.model == "B"].pred.isna().all()
    np.testing.assert_allclose(t[t.model == "prior"].energy_inside,
                               C.localisation_score(prior[None], mask[:1]).energy_inside[0])
    np.testing.assert_allclose(t[t.model == "B"].energy_inside.to_numpy(), [0, 0, 0, 0.5 / 4.5])
    s = C.summary_table(t)
    assert list(s.model) == ["A", "B", "prior"] and (s.n == 4).all()
    row = s.set_index("model").loc["A"]
    assert row.energy_inside == 1.0 and row.pointing_game == 1.0 and row.chance == pytest.approx(0.25)
    assert row.energy_minus_chance == pytest.approx(0.75)
    ref = C.summarise_localisation(C.localisation_score(b, mask, mask_kind="approximate"))
    rb = s.set_index("model").loc["B"]
    assert rb.energy_inside == pytest.approx(ref["energy_inside"]["mean"])
    assert (rb.energy_low, rb.energy_high) == pytest.approx((ref["energy_inside"]["ci_low"], ref["energy_inside"]["ci_high"]))
    with pytest.raises(ValueError, match="one entry per image"):
        C.localisation_table({("A", "x"): a}, mask, ids=ids[:3], labels=[0, 0, 1, 1])


def test_paired_localisation_known_answers():
    from statsmodels.stats.contingency_tables import mcnemar

    mask, a, b = _toy()
    la, lb = C.localisation_score(a, mask), C.localisation_score(b, mask)
    res = C.paired_localisation(la, lb)
    e, p = res["energy_inside"], res["pointing_game"]
    assert e["n"] == 4 and e["mean_diff"] == pytest.approx(np.mean([1, 1, 1, 1 - 0.5 / 4.5]))
    assert e["ci_low"] <= e["mean_diff"] <= e["ci_high"] and 0 < e["wilcoxon_p"] <= 1
    assert (p["n"], p["a_only"], p["b_only"], p["diff"]) == (4, 4, 0, 1.0)
    assert p["mcnemar_p"] == pytest.approx(mcnemar([[0, 4], [0, 0]], exact=True).pvalue)
    same = C.paired_localisation(la, la)
    assert same["energy_inside"]["mean_diff"] == 0 and same["energy_inside"]["wilcoxon_p"] == 1.0
    assert same["pointing_game"]["mcnemar_p"] == 1.0
    # a constant map (no pointing) and an all-zero map (no energy) are left out of their test
    c = a.copy()
    c[0] = 0.0
    c[1] = 0.2
    r = C.paired_localisation(C.localisation_score(c, mask), lb)
    assert r["energy_inside"]["n"] == 3 and r["pointing_game"]["n"] == 2
    lb2 = lb.copy()
    lb2["id"] = list("abcd")
    la2 = la.copy()
    la2["id"] = list("abdc")
    with pytest.raises(ValueError, match="different images"):
        C.paired_localisation(la2, lb2)
    with pytest.raises(ValueError, match="same images"):
        C.paired_localisation(la, lb.iloc[:3])


# --------------------------------------------------------------------------- artifacts
def _skin_with_hair(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """uint8 [3, 96, 96] skin with a dark lesion, a thin hair and black corners; the lesion and
    the hair as masks."""
    rng = np.random.default_rng(seed)
    h = w = 96
    yy, xx = np.mgrid[:h, :w]
    img = np.array([220, 175, 165], np.float32) + rng.normal(0, 4, (h, w, 3))
    lesion = ((yy - 48) / 20) ** 2 + ((xx - 50) / 16) ** 2 < 1
    img[lesion] = np.array([110, 70, 50]) + rng.normal(0, 8, (lesion.sum(), 3))
    hair = (np.abs(yy - 0.5 * xx - 5) < 1) & ~lesion
    img[hair] = 45
    img[np.hypot(yy - 47.5, xx - 47.5) > 60] = 4
    return np.clip(img, 0, 255).astype(np.uint8).transpose(2, 0, 1), lesion, hair


def test_thin_dark_structures_marks_hair_not_lesion_or_dark_field():
    img, lesion, hair = _skin_with_hair()
    score, masks = C.thin_dark_structures(img[None], lesion[None])
    m = masks[0]
    assert masks.shape == (1, 96, 96) and masks.dtype == np.bool_
    assert m[hair].mean() > 0.8  # the hair is found
    assert not (m & lesion).any()  # nothing on the lesion
    far = np.hypot(*np.mgrid[:96, :96] - 47.5) > 62
    assert not m[far].any()  # nor in the black field of view
    assert (m & ~hair).sum() < 0.2 * hair.sum()  # few false marks on plain skin
    assert score[0] == pytest.approx(m.mean())
    clean = img.copy()
    clean[:, hair] = clean[:, 40:41, 80:81].reshape(3, 1)  # paint the hair over with skin
    s2, _ = C.thin_dark_structures(clean[None], lesion[None])
    assert s2[0] < 0.2 * score[0]
    # without a lesion mask the lesion's own border texture may be marked, but not its body
    _, m3 = C.thin_dark_structures(img[None])
    core = ((np.mgrid[:96, :96][0] - 48) / 14) ** 2 + ((np.mgrid[:96, :96][1] - 50) / 10) ** 2 < 1
    assert m3[0][core].mean() < 0.05
    with pytest.raises(ValueError, match="lesion_masks must be"):
        C.thin_dark_structures(img[None], lesion[None, :50])


def test_thin_dark_structures_on_real_images(real64):
    imgs = real64.numpy()
    score, masks = C.thin_dark_structures(imgs, C.approximate_lesion_masks(imgs))
    assert score.shape == (6,) and masks.shape == (6, 64, 64)
    assert ((score >= 0) & (score <= 1)).all()
    np.testing.assert_allclose(score, masks.mean((1, 2)))


# --------------------------------------------------------------------------- selection
def test_stratified_subset():
    y = np.array([0] * 10 + [1] * 5)
    idx = splits.per_class_subset(y, 3, seed=1)
    assert len(idx) == 6 and (np.diff(idx) > 0).all()
    assert (y[idx] == 0).sum() == 3 and (y[idx] == 1).sum() == 3
    np.testing.assert_array_equal(idx, splits.per_class_subset(y, 3, seed=1))
    assert not all(np.array_equal(idx, splits.per_class_subset(y, 3, seed=s)) for s in range(2, 6))
    with pytest.raises(ValueError, match="fewer than per_class"):
        splits.per_class_subset(y, 6)


def test_select_examples_groups():
    y = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    pa = np.array([0, 1, 0, 1, 1, 1, 1, 1])  # A right on 0, 2, 4, 5, 6, 7
    pb = np.array([0, 1, 1, 0, 1, 0, 0, 1])  # B right on 0, 3, 4, 7
    sel = C.select_examples(y, pa, pb, per_group=1, seed=0)
    assert list(sel.columns) == ["index", "label", "group", "a_right", "b_right"]
    for _, r in sel.iterrows():
        assert y[r["index"]] == r.label
        assert r.a_right == (pa[r["index"]] == y[r["index"]]) and r.b_right == (pb[r["index"]] == y[r["index"]])
    groups = sel.groupby("label").group.apply(list).to_dict()
    assert groups[0][0] == "both right" and groups[0][1] == "both wrong"  # image 1: both wrong
    assert groups[1] == ["both right", "A right, B wrong"]  # no malignant image is wrong for both
    assert set(sel.loc[sel.label == 0, "index"]) <= {0, 1, 2, 3}
    big = C.select_examples(y, pa, pb, per_group=5, seed=0)
    assert big["index"].is_unique and len(big) == 8  # every image lands in exactly one group
    with pytest.raises(ValueError, match="same length"):
        C.select_examples(y, pa[:4], pb)


def test_summarise_faithfulness():
    from scipy.stats import bootstrap

    df = pd.DataFrame({"road_morf": [-0.2, -0.1, -0.3, np.nan], "road_lerf": [0.0, -0.05, 0.01, 0.02],
                       "road_combined": [0.1, 0.025, 0.155, np.nan], "confidence_change": [0.0, 0.0, 0.0, 0.0]})
    s = C.summarise_faithfulness(df, seed=0)
    assert set(s) == {"road_morf", "road_lerf", "road_combined", "confidence_change"}
    assert s["road_morf"]["n"] == 3 and s["road_morf"]["mean"] == pytest.approx(-0.2)
    ref = bootstrap((np.array([-0.2, -0.1, -0.3]),), np.mean, n_resamples=2000, method="percentile",
                    rng=np.random.default_rng(0)).confidence_interval
    assert (s["road_morf"]["ci_low"], s["road_morf"]["ci_high"]) == pytest.approx((ref.low, ref.high))
    assert s["confidence_change"] == {"mean": 0.0, "ci_low": 0.0, "ci_high": 0.0, "n": 4}
    assert list(C.summarise_faithfulness(df, columns=["road_lerf"])) == ["road_lerf"]


def test_interval_word():
    assert C.interval_word(0.01, 0.03) == "above"
    assert C.interval_word(-0.03, -0.01) == "below"
    assert C.interval_word(-0.01, 0.02) == "not distinguishable from"
    assert C.interval_word(0.0, 0.02) == "not distinguishable from"  # touching the reference is not above it
    assert C.interval_word(0.3, 0.5, reference=0.2) == "above" and C.interval_word(0.1, 0.19, 0.2) == "below"
    assert C.interval_word(float("nan"), 0.1) == "not measurable against"


def test_claim_row():
    r = C.claim_row("ASFF beats chance", 0.05, 0.01, 0.09, what="energy − chance")
    assert r["holds"] is True and r["reading"] == "above 0"
    assert r["measured"] == "energy − chance +0.050 [+0.010, +0.090]"
    assert (r["mean"], r["ci_low"], r["ci_high"], r["reference"]) == (0.05, 0.01, 0.09, 0.0)
    assert C.claim_row("x", 0.01, -0.01, 0.03)["holds"] is False
    low = C.claim_row("x", -0.3, -0.4, -0.2, reference=0.5)
    assert low["holds"] is False and low["reading"] == "below 0.5"
    assert C.claim_row("x", float("nan"), float("nan"), float("nan"))["holds"] is False
