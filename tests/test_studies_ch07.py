"""Tests of skinlesion_utils.studies.ch07_gradcam (chapter 07's analysis of Grad-CAM maps): map
resizing, randomisation summaries, the image-independence controls, localisation tables and
paired comparisons, thin dark structures, example selection, faithfulness summaries and the
claim table.

Real images come from $SKINLESION_DATA/isic_balanced (read only); models are small and randomly
initialised, at 64 px.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from cam_support import real_images

from skinlesion_utils import cam as C, localisation as L
from skinlesion_utils.studies import ch07_gradcam as S


@pytest.fixture(scope="module")
def real64() -> torch.Tensor:
    """6 real test images (3 benign, 3 malignant), uint8 [6, 3, 64, 64]."""
    return real_images(3)


# --------------------------------------------------------------------------- display size
def test_resize_maps():
    c = np.zeros((2, 4, 4), np.float32)
    c[0, :, 2:] = 1.0  # right half
    c[1] = 0.5
    r = S.resize_maps(c, 16)
    assert r.shape == (2, 16, 16) and r.dtype == np.float32
    np.testing.assert_allclose(r[1], 0.5)
    np.testing.assert_allclose(r[0, :, :6], 0.0)  # far from the edge: unchanged
    np.testing.assert_allclose(r[0, :, 10:], 1.0)
    np.testing.assert_array_equal(r[0], np.broadcast_to(r[0, :1], (16, 16)))  # every row the same
    np.testing.assert_allclose(r[0, :, 8] + r[0, :, 7], 1.0, atol=1e-6)  # symmetric around the edge
    np.testing.assert_array_equal(S.resize_maps(c, 4), c)
    assert S.resize_maps(c[0], 8).shape == (1, 8, 8)


# --------------------------------------------------------------------------- randomisation
def test_summarise_randomisation_counts_flat_maps_as_zero():
    df = pd.DataFrame({
        "step": [0, 0, 1, 1, 2, 2], "block": ["none", "none", "fc", "fc", "layer4", "layer4"],
        "mode": "cascading", "image": [0, 1] * 3,
        "spearman": [1.0, 1.0, 0.6, -0.2, np.nan, 0.1], "ssim": [1.0, 1.0, 0.5, 0.3, 0.0, 0.2],
        "flat": [False, False, False, False, True, False],
    })
    s = S.summarise_randomisation(df)
    assert list(s.index) == [0, 1, 2] and list(s.block) == ["none", "fc", "layer4"]
    np.testing.assert_allclose(s.spearman, [1.0, 0.2, 0.05])
    np.testing.assert_allclose(s.spearman_abs, [1.0, 0.4, 0.05])
    np.testing.assert_allclose(s.ssim, [1.0, 0.4, 0.1])
    np.testing.assert_allclose(s.flat_share, [0.0, 0.0, 0.5])
    assert (s.n == 2).all()


# --------------------------------------------------------------------------- controls
def test_blank_image_and_map_similarity(resnet34, real64):
    blank = S.blank_image(real64)
    assert blank.shape == (1, 3, 64, 64) and blank.dtype == torch.uint8
    want = real64.double().mean(dim=(0, 2, 3)).round()
    assert torch.equal(blank[0, :, 5, 7].double(), want) and (blank == blank[:, :, :1, :1]).all()
    assert S.blank_image(real64, size=32).shape == (1, 3, 32, 32)
    ramp = np.tile(np.linspace(0, 1, 16, dtype=np.float32), (16, 1))
    maps = np.stack([ramp, ramp[:, ::-1], np.full_like(ramp, 0.3), ramp ** 2])
    sim = S.map_similarity(maps, ramp)
    np.testing.assert_allclose(sim[[0, 1, 3]], [1.0, -1.0, 1.0])
    assert np.isnan(sim[2])
    with pytest.raises(ValueError, match=r"reference \[H, W\]"):
        S.map_similarity(maps, ramp[:8])
    # a model's map of the blank image, compared with itself and with real images' maps
    b_map = C.compute_cams(resnet34, blank)[0]
    np.testing.assert_allclose(S.map_similarity(C.compute_cams(resnet34, torch.cat([blank, blank])), b_map), 1.0)


def test_peak_grid():
    cams = np.zeros((5, 8, 8), np.float32)
    cams[0, 1, 1] = 1  # top-left cell of a 2×2 grid
    cams[1, 6, 7] = 1  # bottom-right
    cams[2, 5, 6] = 1  # bottom-right
    cams[3, 0, 7] = 1  # top-right
    cams[4] = 0.4  # flat: not counted
    np.testing.assert_array_equal(S.peak_grid(cams, 2), [[1, 1], [0, 2]])
    assert S.peak_grid(cams, (4, 2)).sum() == 4 and S.peak_grid(cams, 8)[6, 7] == 1


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
    prior = L.centre_prior(16)
    t = S.localisation_table({("A", "fused"): a, ("B", "layer4"): b, ("prior", "-"): prior}, mask, ids=ids,
                             labels=[0, 0, 1, 1], extra={("A", "fused"): {"pred": [0, 1, 1, 1]}})
    assert len(t) == 12 and t.attrs["mask_kind"] == "approximate" and (t.mask_kind == "approximate").all()
    assert list(t.columns[:5]) == ["model", "layer", "image", "id", "label"]
    ta = t[t.model == "A"]
    np.testing.assert_allclose(ta.energy_inside, 1.0)
    assert ta.pred.tolist() == [0, 1, 1, 1] and t[t.model == "B"].pred.isna().all()
    np.testing.assert_allclose(t[t.model == "prior"].energy_inside,
                               L.localisation_score(prior[None], mask[:1]).energy_inside[0])
    np.testing.assert_allclose(t[t.model == "B"].energy_inside.to_numpy(), [0, 0, 0, 0.5 / 4.5])
    s = S.summary_table(t)
    assert list(s.model) == ["A", "B", "prior"] and (s.n == 4).all()
    row = s.set_index("model").loc["A"]
    assert row.energy_inside == 1.0 and row.pointing_game == 1.0 and row.chance == pytest.approx(0.25)
    assert row.energy_minus_chance == pytest.approx(0.75)
    ref = L.summarise_localisation(L.localisation_score(b, mask, mask_kind="approximate"))
    rb = s.set_index("model").loc["B"]
    assert rb.energy_inside == pytest.approx(ref["energy_inside"]["mean"])
    assert (rb.energy_low, rb.energy_high) == pytest.approx((ref["energy_inside"]["ci_low"], ref["energy_inside"]["ci_high"]))
    with pytest.raises(ValueError, match="one entry per image"):
        S.localisation_table({("A", "x"): a}, mask, ids=ids[:3], labels=[0, 0, 1, 1])


def test_paired_localisation_known_answers():
    from statsmodels.stats.contingency_tables import mcnemar

    mask, a, b = _toy()
    la, lb = L.localisation_score(a, mask), L.localisation_score(b, mask)
    res = S.paired_localisation(la, lb)
    e, p = res["energy_inside"], res["pointing_game"]
    assert e["n"] == 4 and e["mean_diff"] == pytest.approx(np.mean([1, 1, 1, 1 - 0.5 / 4.5]))
    assert e["ci_low"] <= e["mean_diff"] <= e["ci_high"] and 0 < e["wilcoxon_p"] <= 1
    assert (p["n"], p["a_only"], p["b_only"], p["diff"]) == (4, 4, 0, 1.0)
    assert p["mcnemar_p"] == pytest.approx(mcnemar([[0, 4], [0, 0]], exact=True).pvalue)
    same = S.paired_localisation(la, la)
    assert same["energy_inside"]["mean_diff"] == 0 and same["energy_inside"]["wilcoxon_p"] == 1.0
    assert same["pointing_game"]["mcnemar_p"] == 1.0
    # a constant map (no pointing) and an all-zero map (no energy) are left out of their test
    c = a.copy()
    c[0] = 0.0
    c[1] = 0.2
    r = S.paired_localisation(L.localisation_score(c, mask), lb)
    assert r["energy_inside"]["n"] == 3 and r["pointing_game"]["n"] == 2
    lb2 = lb.copy()
    lb2["id"] = list("abcd")
    la2 = la.copy()
    la2["id"] = list("abdc")
    with pytest.raises(ValueError, match="different images"):
        S.paired_localisation(la2, lb2)
    with pytest.raises(ValueError, match="same images"):
        S.paired_localisation(la, lb.iloc[:3])


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
    score, masks = S.thin_dark_structures(img[None], lesion[None])
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
    s2, _ = S.thin_dark_structures(clean[None], lesion[None])
    assert s2[0] < 0.2 * score[0]
    # without a lesion mask the lesion's own border texture may be marked, but not its body
    _, m3 = S.thin_dark_structures(img[None])
    core = ((np.mgrid[:96, :96][0] - 48) / 14) ** 2 + ((np.mgrid[:96, :96][1] - 50) / 10) ** 2 < 1
    assert m3[0][core].mean() < 0.05
    with pytest.raises(ValueError, match="lesion_masks must be"):
        S.thin_dark_structures(img[None], lesion[None, :50])


def test_thin_dark_structures_on_real_images(real64):
    imgs = real64.numpy()
    score, masks = S.thin_dark_structures(imgs, L.approximate_lesion_masks(imgs))
    assert score.shape == (6,) and masks.shape == (6, 64, 64)
    assert ((score >= 0) & (score <= 1)).all()
    np.testing.assert_allclose(score, masks.mean((1, 2)))


# --------------------------------------------------------------------------- selection
def test_select_examples_groups():
    y = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    pa = np.array([0, 1, 0, 1, 1, 1, 1, 1])  # A right on 0, 2, 4, 5, 6, 7
    pb = np.array([0, 1, 1, 0, 1, 0, 0, 1])  # B right on 0, 3, 4, 7
    sel = S.select_examples(y, pa, pb, per_group=1, seed=0)
    assert list(sel.columns) == ["index", "label", "group", "a_right", "b_right"]
    for _, r in sel.iterrows():
        assert y[r["index"]] == r.label
        assert r.a_right == (pa[r["index"]] == y[r["index"]]) and r.b_right == (pb[r["index"]] == y[r["index"]])
    groups = sel.groupby("label").group.apply(list).to_dict()
    assert groups[0][0] == "both right" and groups[0][1] == "both wrong"  # image 1: both wrong
    assert groups[1] == ["both right", "A right, B wrong"]  # no malignant image is wrong for both
    assert set(sel.loc[sel.label == 0, "index"]) <= {0, 1, 2, 3}
    big = S.select_examples(y, pa, pb, per_group=5, seed=0)
    assert big["index"].is_unique and len(big) == 8  # every image lands in exactly one group
    with pytest.raises(ValueError, match="same length"):
        S.select_examples(y, pa[:4], pb)


# --------------------------------------------------------------------------- summaries
def test_summarise_faithfulness():
    from scipy.stats import bootstrap

    df = pd.DataFrame({"road_morf": [-0.2, -0.1, -0.3, np.nan], "road_lerf": [0.0, -0.05, 0.01, 0.02],
                       "road_combined": [0.1, 0.025, 0.155, np.nan], "confidence_change": [0.0, 0.0, 0.0, 0.0]})
    s = S.summarise_faithfulness(df, seed=0)
    assert set(s) == {"road_morf", "road_lerf", "road_combined", "confidence_change"}
    assert s["road_morf"]["n"] == 3 and s["road_morf"]["mean"] == pytest.approx(-0.2)
    ref = bootstrap((np.array([-0.2, -0.1, -0.3]),), np.mean, n_resamples=2000, method="percentile",
                    rng=np.random.default_rng(0)).confidence_interval
    assert (s["road_morf"]["ci_low"], s["road_morf"]["ci_high"]) == pytest.approx((ref.low, ref.high))
    assert s["confidence_change"] == {"mean": 0.0, "ci_low": 0.0, "ci_high": 0.0, "n": 4}
    assert list(S.summarise_faithfulness(df, columns=["road_lerf"])) == ["road_lerf"]


def test_claim_row():
    r = S.claim_row("ASFF beats chance", 0.05, 0.01, 0.09, what="energy − chance")
    assert r["holds"] is True and r["reading"] == "above 0"
    assert r["measured"] == "energy − chance +0.050 [+0.010, +0.090]"
    assert (r["mean"], r["ci_low"], r["ci_high"], r["reference"]) == (0.05, 0.01, 0.09, 0.0)
    assert S.claim_row("x", 0.01, -0.01, 0.03)["holds"] is False
    low = S.claim_row("x", -0.3, -0.4, -0.2, reference=0.5)
    assert low["holds"] is False and low["reading"] == "below 0.5"
    assert S.claim_row("x", float("nan"), float("nan"), float("nan"))["holds"] is False
