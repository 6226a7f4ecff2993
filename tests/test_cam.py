"""Tests of skinlesion_utils.cam: target layers, batched Grad-CAM, hooks, the randomisation
sanity check, faithfulness, localisation scores, masks and the cam-score command.

Real images come from $SKINLESION_DATA/isic_balanced (read only; linked, never copied, into
temporary folders); models are small and randomly initialised, at 64 px.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from cam_support import TEST, count_hooks, real_images, test_files

from skinlesion_utils import cam as C
from skinlesion_utils.data import DataError, decode_image
from skinlesion_utils.models import build_model, list_models

needs_data = pytest.mark.skipif(not TEST.is_dir(), reason="needs the course data folder: set SKINLESION_DATA")


@pytest.fixture(scope="module")
def real64() -> torch.Tensor:
    """8 real test images (4 benign, 4 malignant), uint8 [8, 3, 64, 64]."""
    return real_images(4)


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
    from skinlesion_utils.train import normalise

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
    from skinlesion_utils.train import normalise

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


# --------------------------------------------------------------------------- localisation
def test_localisation_score_known_answers():
    mask = np.zeros((5, 32, 32), dtype=bool)
    mask[:, 8:24, 8:24] = True  # 16×16 = 25 % of the image
    cams = np.zeros((5, 32, 32), dtype=np.float32)
    cams[0, 10:20, 10:20] = 1.0  # fully inside
    cams[1, 0:5, 0:5] = 1.0  # fully outside
    cams[2] = 0.5  # uniform: energy = mask share, no maximum
    cams[3, 8:24, 0:16] = 1.0  # half in, half out
    cams[4, 16, 27] = 1.0  # a peak 4 px right of the mask
    cams[4, 16, 20] = 0.5
    df = C.localisation_score(cams, mask)
    np.testing.assert_allclose(df.energy_inside, [1.0, 0.0, 0.25, 0.5, 0.5 / 1.5])
    np.testing.assert_array_equal(df.pointing_hit.to_numpy()[[0, 1, 3, 4]], [1.0, 0.0, 0.0, 0.0])
    assert np.isnan(df.pointing_hit[2])  # a flat map points nowhere
    np.testing.assert_allclose(df.mask_fraction, 0.25)
    assert (df.mask_kind == "expert").all() and df.attrs["mask_kind"] == "expert"
    tol = C.localisation_score(cams, mask, mask_kind="approximate", tolerance_px=4)
    assert tol.pointing_hit[4] == 1.0 and (tol.mask_kind == "approximate").all()
    assert np.isnan(C.localisation_score(np.zeros((1, 32, 32)), mask[:1]).energy_inside[0])
    summary = C.summarise_localisation(df)
    assert summary["mask_kind"] == "expert" and summary["n_images"] == 5
    assert summary["energy_inside"]["mean"] == pytest.approx(np.mean([1.0, 0.0, 0.25, 0.5, 1 / 3]))
    assert summary["pointing_game"]["mean"] == pytest.approx(0.25) and summary["pointing_game"]["n"] == 4
    assert summary["energy_inside"]["ci_low"] <= summary["energy_inside"]["mean"] <= summary["energy_inside"]["ci_high"]
    assert summary["chance"] == pytest.approx(0.25)
    with pytest.raises(ValueError, match="same shape"):
        C.localisation_score(cams, mask[:, :16])
    with pytest.raises(ValueError, match="mask_kind"):
        C.localisation_score(cams, mask, mask_kind="guess")


# --------------------------------------------------------------------------- masks
def test_approximate_mask_synthetic_lesion():
    """A dark irregular lesion on noisy skin, with a dermatoscope's black ring and a hair."""
    rng = np.random.default_rng(0)
    h = w = 128
    yy, xx = np.mgrid[:h, :w]
    skin = np.array([225, 180, 170], np.float32)
    img = skin + rng.normal(0, 6, (h, w, 3))
    lesion = ((yy - 60) / 30) ** 2 + ((xx - 70) / 22) ** 2 < 1
    img[lesion] = np.array([120, 70, 50]) + rng.normal(0, 10, (lesion.sum(), 3))
    img[np.hypot(yy - 63.5, xx - 63.5) > 70] = 5  # black corners
    img[np.abs(yy - xx * 0.3 - 10) < 1] = 40  # a thin hair across the image
    img = np.clip(img, 0, 255).astype(np.uint8).transpose(2, 0, 1)
    mask = C.approximate_lesion_mask(img)
    assert mask.dtype == np.bool_ and mask.shape == (h, w)
    iou = (mask & lesion).sum() / (mask | lesion).sum()
    assert iou > 0.9, iou
    assert not mask[0, 0] and not mask[-1, -1]
    blank = np.full((3, 64, 64), 200, np.uint8)
    assert not C.approximate_lesion_mask(blank).any()
    with pytest.raises(ValueError, match="uint8 RGB"):
        C.approximate_lesion_mask(img.astype(np.float32))


@needs_data
def test_approximate_mask_on_real_images():
    imgs = np.stack([decode_image(p, 128) for p in test_files(8)])  # 16 images
    masks = C.approximate_lesion_masks(imgs)
    assert masks.shape == (16, 128, 128) and masks.dtype == np.bool_
    cover = masks.mean((1, 2))
    ok = 0
    for m, c in zip(masks, cover):
        if 0.02 <= c <= 0.90:
            cy, cx = np.argwhere(m).mean(0)
            ok += np.hypot(cy - 63.5, cx - 63.5) < 0.35 * 128
    assert ok >= 13, (ok, cover.round(2))
    assert len(np.unique(cover.round(2))) >= 8  # masks follow the image, not a fixed shape


def _write_mask(path: Path, arr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr.astype(np.uint8) * 255).save(path)


def test_load_masks_matches_stems_and_explains_misses(tmp_path):
    left = np.zeros((100, 100), bool)
    left[:, :50] = True
    top = np.zeros((60, 90), bool)
    top[:30] = True
    _write_mask(tmp_path / "m" / "ISIC_0000001_segmentation.png", left)
    _write_mask(tmp_path / "m" / "deep" / "7.bmp", top)
    _write_mask(tmp_path / "m" / "benign" / "12.png", left)
    _write_mask(tmp_path / "m" / "malignant" / "12.png", top)
    got = C.load_masks(tmp_path / "m", ["benign/ISIC_0000001.jpg", "test/7.jpg", "malignant/12.jpg", "benign/12.jpg"], 10)
    assert got.shape == (4, 10, 10) and got.dtype == np.bool_
    assert got[0, :, :5].all() and not got[0, :, 5:].any()  # nearest resize keeps the edge
    assert got[1, :5].all() and not got[1, 5:].any()
    np.testing.assert_array_equal(got[2], got[1])  # same relative path wins over the stem
    np.testing.assert_array_equal(got[3], got[0])
    with pytest.raises(DataError, match=r"(?s)2 of 3 images have no mask.*a\.jpg.*b\.jpg.*Fix"):
        C.load_masks(tmp_path / "m", ["a.jpg", "test/7.jpg", "b.jpg"], 10)
    with pytest.raises(DataError, match="matches 2 mask files"):
        C.load_masks(tmp_path / "m", ["test/12.jpg"], 10)
    with pytest.raises(DataError, match="does not exist"):
        C.load_masks(tmp_path / "nowhere", ["a.jpg"], 10)


# --------------------------------------------------------------------------- command line
@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, real64):
    """A real checkpoint written by train.fit (1 epoch on 8 real images; LeNet-5 at 64 px keeps
    the command's test fast: the CAM machinery of the big models is tested above)."""
    from skinlesion_utils.data import ImageTensorStore
    from skinlesion_utils.train import fit, make_model_spec

    out = tmp_path_factory.mktemp("run")
    store = ImageTensorStore(real64, torch.tensor([0] * 4 + [1] * 4), [str(p) for p in test_files(4)], 64)
    model = build_model("lenet5", seed=0)
    fit(model, store, epochs=1, batch_size=8, out_dir=out, progress=False, amp="off",
        model_spec=make_model_spec("lenet5", image_size=64))
    return out / "last.pt"


def _image_folder(root: Path, flat: bool) -> Path:
    for p in test_files(2):
        dest = root / f"{p.parent.name}_{p.name}" if flat else root / p.parent.name / p.name
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.symlink_to(p)  # the images are CC-BY-NC: linked, never copied
    return root


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    C.add_cam_score_parser(parser.add_subparsers(dest="command", required=True))
    return parser


@needs_data
def test_cli_cam_score_end_to_end(tmp_path, checkpoint, capsys):
    from skinlesion_utils.train import load_checkpoint

    images = _image_folder(tmp_path / "imgs", flat=False)
    out = tmp_path / "scores" / "cam.json"
    args = _parser().parse_args(["cam-score", "--checkpoint", str(checkpoint), "--images", str(images),
                                 "--out", str(out), "--batch-size", "3"])
    assert args.func(args) == 0
    assert "approximate masks" in capsys.readouterr().out
    res = json.loads(out.read_text())
    assert res["mask_kind"] == "approximate" and "APPROXIMATE" in res["mask_note"]
    assert res["image_size"] == 64 and res["target_layer"] == "features.3" and res["cam_map_size"] == [26, 26]
    assert res["model"]["name"] == "lenet5"
    rows = res["per_image"]
    assert [r["id"] for r in rows] == sorted(f"{p.parent.name}/{p.name}" for p in test_files(2))
    assert [r["label"] for r in rows] == [0, 0, 1, 1]
    assert all(r["mask_kind"] == "approximate" for r in rows)
    # the command's numbers are the API's numbers
    model, _ = load_checkpoint(checkpoint)
    x = torch.from_numpy(np.stack([decode_image(images / r["id"], 64) for r in rows]))
    cams, logits = C.compute_cams(model, x, return_logits=True)
    loc = C.localisation_score(cams, C.approximate_lesion_masks(x), mask_kind="approximate")
    np.testing.assert_allclose([r["energy_inside"] for r in rows], loc.energy_inside, atol=1e-6)
    np.testing.assert_allclose([r["p_malignant"] for r in rows], torch.softmax(torch.from_numpy(logits), 1)[:, 1], atol=1e-6)
    assert [r["target"] for r in rows] == logits.argmax(1).tolist()
    assert res["summary"]["energy_inside"]["mean"] == pytest.approx(float(loc.energy_inside.mean()))
    assert not list(out.parent.glob(".*tmp"))  # atomic write left no temporary file

    # expert masks from a folder, flat image folder, faithfulness columns
    flat = _image_folder(tmp_path / "flat", flat=True)
    for p in flat.iterdir():
        _write_mask(tmp_path / "masks" / f"{p.stem}_segmentation.png", np.ones((20, 20), bool))
    out2 = tmp_path / "cam2.json"
    args = _parser().parse_args(["cam-score", "--checkpoint", str(checkpoint), "--images", str(flat),
                                 "--masks", str(tmp_path / "masks"), "--out", str(out2), "--limit", "3",
                                 "--faithfulness"])
    assert args.func(args) == 0
    res2 = json.loads(out2.read_text())
    assert res2["mask_kind"] == "expert" and len(res2["per_image"]) == 3
    for r in res2["per_image"]:
        assert r["label"] == -1 and r["mask_fraction"] == 1.0 and r["energy_inside"] == pytest.approx(1.0)
        assert -1.0 <= r["road_combined"] <= 1.0
    assert res2["summary"]["chance"] == 1.0


@needs_data
def test_cli_through_main_reports_missing_masks(tmp_path, checkpoint, capsys):
    """`python -m skinlesion_utils cam-score` (its main(), in process): a person's error, no traceback."""
    from skinlesion_utils import cli

    images = _image_folder(tmp_path / "imgs", flat=False)
    (tmp_path / "masks").mkdir()
    rc = cli.main(["cam-score", "--checkpoint", str(checkpoint), "--images", str(images),
                   "--masks", str(tmp_path / "masks"), "--out", str(tmp_path / "x.json")])
    assert rc == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "4 of 4 images have no mask" in err and "approximate" in err
    assert not (tmp_path / "x.json").exists()
    assert cli.main(["cam-score", "--checkpoint", str(checkpoint), "--images", str(images),
                     "--out", str(tmp_path / "y.json"), "--limit", "2"]) == 0
    assert len(json.loads((tmp_path / "y.json").read_text())["per_image"]) == 2
