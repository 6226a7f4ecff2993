"""Tests of skinlesion_utils.localisation: localisation scores against lesion masks, the centre
prior, expert and approximate masks, and the cam-score command (which scores a checkpoint's
Grad-CAMs on a folder of images).

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
from PIL import Image

from cam_support import TEST, real_images, test_files

from skinlesion_utils import cam as C, cli, localisation as L
from skinlesion_utils.data import DataError, decode_image
from skinlesion_utils.models import build_model

needs_data = pytest.mark.skipif(not TEST.is_dir(), reason="needs the course data folder: set SKINLESION_DATA")


@pytest.fixture(scope="module")
def real64() -> torch.Tensor:
    """8 real test images (4 benign, 4 malignant), uint8 [8, 3, 64, 64]."""
    return real_images(4)


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
    df = L.localisation_score(cams, mask)
    np.testing.assert_allclose(df.energy_inside, [1.0, 0.0, 0.25, 0.5, 0.5 / 1.5])
    np.testing.assert_array_equal(df.pointing_hit.to_numpy()[[0, 1, 3, 4]], [1.0, 0.0, 0.0, 0.0])
    assert np.isnan(df.pointing_hit[2])  # a flat map points nowhere
    np.testing.assert_allclose(df.mask_fraction, 0.25)
    assert (df.mask_kind == "expert").all() and df.attrs["mask_kind"] == "expert"
    tol = L.localisation_score(cams, mask, mask_kind="approximate", tolerance_px=4)
    assert tol.pointing_hit[4] == 1.0 and (tol.mask_kind == "approximate").all()
    assert np.isnan(L.localisation_score(np.zeros((1, 32, 32)), mask[:1]).energy_inside[0])
    summary = L.summarise_localisation(df)
    assert summary["mask_kind"] == "expert" and summary["n_images"] == 5
    assert summary["energy_inside"]["mean"] == pytest.approx(np.mean([1.0, 0.0, 0.25, 0.5, 1 / 3]))
    assert summary["pointing_game"]["mean"] == pytest.approx(0.25) and summary["pointing_game"]["n"] == 4
    assert summary["energy_inside"]["ci_low"] <= summary["energy_inside"]["mean"] <= summary["energy_inside"]["ci_high"]
    assert summary["chance"] == pytest.approx(0.25)
    with pytest.raises(ValueError, match="same shape"):
        L.localisation_score(cams, mask[:, :16])
    with pytest.raises(ValueError, match="mask_kind"):
        L.localisation_score(cams, mask, mask_kind="guess")


def test_centre_prior():
    g = L.centre_prior(33, sigma=0.2)
    assert g.shape == (33, 33) and g.dtype == np.float32
    assert g[16, 16] == pytest.approx(1.0) and g.min() > 0 and g.max() <= 1
    np.testing.assert_allclose(g, g.T)
    np.testing.assert_allclose(g, g[::-1])
    assert L.centre_prior(32)[0, 0] < L.centre_prior(32)[10, 10]


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
    mask = L.approximate_lesion_mask(img)
    assert mask.dtype == np.bool_ and mask.shape == (h, w)
    iou = (mask & lesion).sum() / (mask | lesion).sum()
    assert iou > 0.9, iou
    assert not mask[0, 0] and not mask[-1, -1]
    blank = np.full((3, 64, 64), 200, np.uint8)
    assert not L.approximate_lesion_mask(blank).any()
    with pytest.raises(ValueError, match="uint8 RGB"):
        L.approximate_lesion_mask(img.astype(np.float32))


@needs_data
def test_approximate_mask_on_real_images():
    imgs = np.stack([decode_image(p, 128) for p in test_files(8)])  # 16 images
    masks = L.approximate_lesion_masks(imgs)
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
    got = L.load_masks(tmp_path / "m", ["benign/ISIC_0000001.jpg", "test/7.jpg", "malignant/12.jpg", "benign/12.jpg"], 10)
    assert got.shape == (4, 10, 10) and got.dtype == np.bool_
    assert got[0, :, :5].all() and not got[0, :, 5:].any()  # nearest resize keeps the edge
    assert got[1, :5].all() and not got[1, 5:].any()
    np.testing.assert_array_equal(got[2], got[1])  # same relative path wins over the stem
    np.testing.assert_array_equal(got[3], got[0])
    with pytest.raises(DataError, match=r"(?s)2 of 3 images have no mask.*a\.jpg.*b\.jpg.*Fix"):
        L.load_masks(tmp_path / "m", ["a.jpg", "test/7.jpg", "b.jpg"], 10)
    with pytest.raises(DataError, match="matches 2 mask files"):
        L.load_masks(tmp_path / "m", ["test/12.jpg"], 10)
    with pytest.raises(DataError, match="does not exist"):
        L.load_masks(tmp_path / "nowhere", ["a.jpg"], 10)


# --------------------------------------------------------------------------- command line
@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, real64):
    """A real checkpoint written by train.fit (1 epoch on 8 real images; LeNet-5 at 64 px keeps
    the command's test fast: the CAM machinery of the big models is tested above)."""
    from skinlesion_utils.data import ImageTensorStore
    from skinlesion_utils.train import fit
    from skinlesion_utils.checkpoints import make_model_spec

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
    return cli.build_parser()


@needs_data
def test_cli_cam_score_end_to_end(tmp_path, checkpoint, capsys):
    from skinlesion_utils.checkpoints import load_checkpoint

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
    loc = L.localisation_score(cams, L.approximate_lesion_masks(x), mask_kind="approximate")
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
