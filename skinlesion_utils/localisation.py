"""Localisation: do the Grad-CAM maps lie on the lesion? Lesion masks, the scores, and what the
``cam-score`` command computes.

Taught in chapter 07 (``chapters/07_gradcam``, the localisation section); the maps come from
:mod:`skinlesion_utils.cam`.

* :func:`localisation_score` – per image: the share of the map's mass inside the lesion mask
  ("energy inside", Wang et al. 2020) and the pointing game (Zhang et al. 2018: is the map's
  maximum inside the mask?), next to the chance level (the mask's area fraction).
  :func:`summarise_localisation` – their means with bootstrap intervals; :func:`centre_prior` –
  the image-independent baseline map (a central Gaussian).
* :func:`load_masks` – expert masks from a folder, matched to images by file stem.
  :func:`approximate_lesion_mask` – a classical segmentation (Otsu on CIE L*, morphology,
  largest central component) for images without expert masks. Such masks are **approximate**
  and every table and file that uses them says so (``mask_kind="approximate"``).
* :func:`cam_score` – what the ``cam-score`` command computes (``python -m skinlesion_utils
  cam-score --checkpoint FILE --images FOLDER [--masks FOLDER] --out FILE.json``, defined in
  :mod:`skinlesion_utils.cli`); :func:`write_score` – its JSON file.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import torch
from PIL import Image
from scipy import ndimage as ndi

from .errors import ConfigError
from .cam import as_numpy, cam_map_size, cam_target_layer, compute_cams, faithfulness, target_layer_name
from .data import CLASSES, IMAGE_EXTENSIONS, DataError, ImageTensorStore, decode_image
from .metrics import mean_ci
from .profiles import resolve_device
from .results import write_json
from .checkpoints import load_checkpoint

__all__ = [
    "MASK_KINDS",
    "localisation_score",
    "summarise_localisation",
    "centre_prior",
    "load_masks",
    "approximate_lesion_mask",
    "approximate_lesion_masks",
    "cam_score",
    "write_score",
]

#: Kinds of lesion mask a localisation table can be built on (copied into every row).
MASK_KINDS = ("expert", "approximate")


# --------------------------------------------------------------------------- scores
def localisation_score(
    cams, masks, *, mask_kind: str = "expert", tolerance_px: int = 0
) -> pd.DataFrame:
    """How much of each map lies on the lesion.

    Args:
        cams: ``float [N, H, W]``, non-negative (from :func:`skinlesion_utils.cam.compute_cams`).
        masks: ``bool [N, H, W]``, True on the lesion (same H, W as the maps).
        mask_kind: ``"expert"`` (annotated masks, :func:`load_masks`) or ``"approximate"``
            (:func:`approximate_lesion_mask`); copied into every row and ``df.attrs`` so that a
            table built on approximate masks says so.
        tolerance_px: pointing game tolerance: a hit counts if the maximum lies within this many
            pixels of the mask (Zhang et al. use 15 px at 224 px; default 0 = strictly inside).

    Returns:
        DataFrame, one row per image: ``image``, ``energy_inside`` (Σ cam·mask / Σ cam, in
        [0, 1]; NaN for an all-zero map), ``pointing_hit`` (1.0 if the map's maximum – the first
        pixel attaining it in row-major order – lies in the mask, else 0.0; NaN for a
        constant map, which points nowhere), ``mask_fraction`` (the mask's area share: the
        expected value of both scores for a map that ignores the image, i.e. chance level),
        ``mask_kind``.
    """
    if mask_kind not in MASK_KINDS:
        raise ConfigError(f"mask_kind must be one of {MASK_KINDS}, got {mask_kind!r}.")
    c = as_numpy(cams).astype(np.float64)
    m = as_numpy(masks)
    if c.ndim == 2:
        c, m = c[None], m[None]
    if c.shape != m.shape or c.ndim != 3:
        raise ConfigError(
            f"cams and masks must both be [N, H, W] with the same shape; found {c.shape} and {m.shape}. "
            "Fix: load the masks at the images' resolution (load_masks(..., resolution=R))."
        )
    if m.dtype != np.bool_:
        if not np.isin(np.unique(m), (0, 1)).all():
            raise ConfigError("masks must be boolean (or 0/1); threshold them first, e.g. masks > 127.")
        m = m.astype(bool)
    if np.any(c < 0) or not np.all(np.isfinite(c)):
        raise ConfigError("cams must be finite and non-negative (Grad-CAM maps after ReLU, in [0, 1]).")
    hit_zone = m
    if tolerance_px > 0:
        yy, xx = np.mgrid[-tolerance_px:tolerance_px + 1, -tolerance_px:tolerance_px + 1]
        disk = (yy**2 + xx**2) <= tolerance_px**2
        hit_zone = np.stack([ndi.binary_dilation(mi, structure=disk) for mi in m])
    rows = []
    for i in range(c.shape[0]):
        ci, mi = c[i], m[i]
        total = ci.sum()
        energy = float((ci * mi).sum() / total) if total > 0 else float("nan")
        if ci.max() > ci.min():
            r, col = np.unravel_index(int(np.argmax(ci)), ci.shape)
            hit = float(hit_zone[i][r, col])
        else:
            hit = float("nan")
        rows.append({"image": i, "energy_inside": energy, "pointing_hit": hit,
                     "mask_fraction": float(mi.mean()), "mask_kind": mask_kind})
    df = pd.DataFrame(rows)
    df.attrs["mask_kind"] = mask_kind
    return df


def summarise_localisation(df: pd.DataFrame, seed: int = 0) -> dict:
    """Means of a :func:`localisation_score` table with 95 % bootstrap intervals.

    Returns a dict: ``n_images``, ``mask_kind``; ``energy_inside`` and ``pointing_game``
    (accuracy) as ``{"mean", "ci_low", "ci_high", "n"}``; ``chance`` (mean mask fraction, the
    level an image-independent map reaches on both); ``energy_inside_minus_chance`` (mean of
    the per-image differences, with its interval). Intervals: :func:`skinlesion_utils.metrics.
    mean_ci` (95 % percentile bootstrap, ``seed``).
    """
    kind = df.attrs.get("mask_kind") or (str(df["mask_kind"].iloc[0]) if "mask_kind" in df and len(df) else "unknown")
    out: dict = {"n_images": int(len(df)), "mask_kind": kind}
    for col, key in (("energy_inside", "energy_inside"), ("pointing_hit", "pointing_game")):
        v = df[col].to_numpy(dtype=np.float64)
        mean, lo, hi = mean_ci(v, seed)
        out[key] = {"mean": mean, "ci_low": lo, "ci_high": hi, "n": int(np.isfinite(v).sum())}
    out["chance"] = float(df["mask_fraction"].mean()) if len(df) else float("nan")
    d = (df["energy_inside"] - df["mask_fraction"]).to_numpy(dtype=np.float64)
    mean, lo, hi = mean_ci(d, seed)
    out["energy_inside_minus_chance"] = {"mean": mean, "ci_low": lo, "ci_high": hi, "n": int(np.isfinite(d).sum())}
    return out


def centre_prior(size: int, sigma: float = 0.25) -> np.ndarray:
    """A map that ignores the image and always favours the centre: a Gaussian of standard
    deviation ``sigma`` × side, ``float32 [size, size]`` in [0, 1] (peak 1 at the centre).
    Dermoscopy images are framed on the lesion, so this is the baseline a lesion-localising map
    must beat, not the area share alone."""
    c = (size - 1) / 2
    yy, xx = np.mgrid[:size, :size]
    g = np.exp(-((yy - c) ** 2 + (xx - c) ** 2) / (2 * (sigma * size) ** 2))
    return (g / g.max()).astype(np.float32)


# --------------------------------------------------------------------------- masks
_MASK_SUFFIXES = ("", "_segmentation", "_Segmentation", "_mask", "_Mask", "-mask", "_seg", "_lesion")


def _image_files(folder: Path, recursive: bool = True) -> list[Path]:
    """Image files (by ending, hidden files left out) in ``folder``, sorted."""
    it = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(p for p in it if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith("."))


def _decode_mask(path: Path, resolution: int) -> np.ndarray:
    """One mask file → ``bool [R, R]`` (grey, nearest-neighbour resize, > 127)."""
    try:
        with Image.open(path) as im:
            im.load()
            a = np.asarray(im.convert("L").resize((resolution, resolution), Image.NEAREST))
    except OSError as exc:
        raise DataError(f"Cannot read mask {path}: {exc}. Fix: re-export it as a PNG.") from exc
    return a > 127


def load_masks(folder: str | Path, ids: Sequence[str], resolution: int) -> np.ndarray:
    """Binary lesion masks for the images ``ids``, matched by file stem.

    For each id (``"test/benign/12.jpg"``, ``"ISIC_0000000.jpg"`` or a bare stem) the mask is
    ``<folder>/<same relative path>.<any image ending>`` if that exists, else the one file in
    ``folder`` (searched recursively) whose stem is the id's stem, optionally followed by
    ``_segmentation`` (the ISIC challenges' naming), ``_mask``, ``-mask``, ``_seg`` or ``_lesion``.
    Masks are read as grey, resized to ``resolution × resolution`` with nearest-neighbour
    interpolation (squash, like :func:`skinlesion_utils.data.decode_image`) and thresholded at 128.

    Returns:
        ``bool [N, resolution, resolution]``, True on the lesion.

    Raises:
        DataError: a missing folder, images without a mask (lists them), or a stem that matches
            several mask files.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"Mask folder {folder} does not exist. Fix: check the path (--masks).")
    files = _image_files(folder)
    by_rel = {p.relative_to(folder).with_suffix("").as_posix(): p for p in files}
    by_stem: dict[str, list[Path]] = {}
    for p in files:
        by_stem.setdefault(p.stem, []).append(p)
    found: list[Path] = []
    missing: list[str] = []
    for ident in ids:
        rel = Path(str(ident)).with_suffix("").as_posix() if Path(str(ident)).suffix else str(ident)
        if rel in by_rel:
            found.append(by_rel[rel])
            continue
        stem = Path(rel).name
        cands = [p for s in _MASK_SUFFIXES for p in by_stem.get(stem + s, [])]
        if len(cands) == 1:
            found.append(cands[0])
        elif not cands:
            missing.append(str(ident))
        else:
            raise DataError(
                f"Image {ident!r} matches {len(cands)} mask files: {', '.join(str(c) for c in cands[:4])}. "
                "Fix: keep one mask per image stem, or lay the mask folder out like the image folder "
                "(same relative paths)."
            )
    if missing:
        raise DataError(
            f"{len(missing)} of {len(ids)} images have no mask in {folder}: {', '.join(missing[:5])}"
            f"{' …' if len(missing) > 5 else ''}. A mask is matched by file stem (12.jpg ↔ 12.png or "
            "12_segmentation.png) or by the same relative path. Fix: add the masks, score only the "
            "images that have one, or leave out the masks to use approximate masks "
            "(approximate_lesion_mask; labelled 'approximate')."
        )
    if not found:
        return np.zeros((0, resolution, resolution), dtype=bool)
    return np.stack([_decode_mask(p, resolution) for p in found])


def approximate_lesion_mask(image) -> np.ndarray:
    """An **approximate** lesion mask by classical segmentation, for images without expert masks.

    ``image: uint8 [3, H, W]`` (or ``[H, W, 3]``) RGB → ``bool [H, W]``.

    1. The dark field of view of a dermatoscope (near-black pixels, < 25 % of the 95th
       percentile of brightness, connected to the image border) is set aside.
    2. Darkness = 255 − CIE L* (lightness), smoothed by a Gaussian of ~3 % of the image side.
    3. Otsu's threshold on the darkness inside the field of view: darker pixels are lesion
       candidates.
    4. Opening then closing with a disk of ~2 % of the side removes hairs and specks and
       bridges small gaps.
    5. Of the connected components the one with the largest centre-weighted area (Gaussian
       weight, σ = 20 % of the side, around the image centre), discounted by
       ``exp(−8 · share of the image frame it touches)``, is kept (a lesion that fills the frame
       is still kept when it is the only candidate; skin shading along an edge loses to a
       central lesion); its holes are filled.

    Checked by eye on 40 images of ``isic_balanced`` (at 64, 128 and 224 px) and 24 of the
    external sample: it outlines typical dermoscopy lesions (one lesion, darker than the skin,
    roughly central, with or without the dark ring of the dermatoscope) well; it fails on
    lesions barely darker than the skin (it then follows skin shading), cuts off blue-grey or
    pale parts of a lesion, merges satellite spots, and is meaningless on clinical
    (non-dermoscopic) photos. An empty mask is returned if nothing is darker than the skin.
    """
    import cv2

    a = as_numpy(image)
    if a.ndim == 3 and a.shape[0] == 3 and a.shape[-1] != 3:
        a = a.transpose(1, 2, 0)
    if a.ndim != 3 or a.shape[-1] != 3 or a.dtype != np.uint8:
        raise ConfigError(
            f"approximate_lesion_mask expects one uint8 RGB image [3, H, W] or [H, W, 3]; found "
            f"{a.dtype} {a.shape}. Fix: pass store.images[i]."
        )
    a = np.ascontiguousarray(a)
    h, w = a.shape[:2]
    side = min(h, w)
    lum = a.astype(np.float32).mean(axis=2)
    dark = lum < 0.25 * np.percentile(lum, 95)
    lab, _ = ndi.label(dark)
    border = np.unique(np.concatenate([lab[0], lab[-1], lab[:, 0], lab[:, -1]]))
    outside = np.isin(lab, border[border > 0])
    darkness = 255.0 - cv2.cvtColor(a, cv2.COLOR_RGB2LAB)[..., 0].astype(np.float32)
    k = max(3, int(round(side * 0.03)) | 1)
    darkness = cv2.GaussianBlur(darkness, (k, k), 0)
    inside = darkness[~outside]
    if inside.size == 0 or np.ptp(inside) < 1:
        return np.zeros((h, w), dtype=bool)
    t, _ = cv2.threshold(np.clip(inside, 0, 255).astype(np.uint8).reshape(-1, 1), 0, 255,
                         cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    mask = (darkness > t) & ~outside
    r = max(1, int(round(side * 0.02)))
    disk = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
    mask = cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_OPEN, disk)
    mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, disk).astype(bool)
    lab, n = ndi.label(mask)
    if n == 0:
        return mask
    yy, xx = np.mgrid[:h, :w]
    weight = np.exp(-(((yy - (h - 1) / 2) / h) ** 2 + ((xx - (w - 1) / 2) / w) ** 2) / (2 * 0.2**2))
    index = np.arange(1, n + 1)
    frame = np.zeros((h, w), dtype=bool)
    frame[0] = frame[-1] = frame[:, 0] = frame[:, -1] = True
    touch = ndi.sum(frame, lab, index=index) / frame.sum()  # share of the image frame it covers
    scores = ndi.sum(weight, lab, index=index) * np.exp(-8.0 * touch)
    return ndi.binary_fill_holes(lab == 1 + int(np.argmax(scores)))


def approximate_lesion_masks(images) -> np.ndarray:
    """:func:`approximate_lesion_mask` of every image: ``uint8 [N, 3, H, W]`` → ``bool [N, H, W]``
    (**approximate** masks: pass ``mask_kind="approximate"`` to :func:`localisation_score`)."""
    a = as_numpy(images)
    return np.stack([approximate_lesion_mask(im) for im in a]) if len(a) else np.zeros((0,) + a.shape[2:], bool)


# --------------------------------------------------------------------------- the cam-score command
def _load_images(folder: Path, resolution: int) -> tuple[torch.Tensor, list[str], list[int]]:
    """uint8 [N,3,R,R], ids, labels (-1 when the folder is flat) from a class or flat folder."""
    if not folder.is_dir():
        raise DataError(f"Image folder {folder} does not exist. Fix: check the path (--images).")
    if any((folder / c).is_dir() for c in CLASSES):
        store = ImageTensorStore.from_folder(folder, resolution=resolution, progress=False)
        return store.images, list(store.ids), store.labels.tolist()
    files = _image_files(folder, recursive=False)
    if not files:
        raise DataError(
            f"No images in {folder}: expected image files directly in it (flat) or sub-folders "
            "benign/ and malignant/. Fix: point --images at such a folder."
        )
    imgs = torch.from_numpy(np.stack([decode_image(p, resolution) for p in files]))
    return imgs, [p.name for p in files], [-1] * len(files)


def _json_clean(x):
    """``x`` with numpy scalars as Python numbers, paths as strings and non-finite floats as
    ``None`` (JSON has no NaN), recursively through dicts, lists and tuples."""
    if isinstance(x, dict):
        return {str(k): _json_clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_json_clean(v) for v in x]
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        return None if not math.isfinite(float(x)) else float(x)
    if isinstance(x, Path):
        return str(x)
    return x


def cam_score(
    checkpoint: str | Path,
    images: str | Path,
    masks: str | Path | None = None,
    *,
    image_size: int | None = None,
    method: str = "gradcam",
    layer: str | None = None,
    batch_size: int = 32,
    limit: int | None = None,
    with_faithfulness: bool = False,
    device: str = "auto",
    seed: int = 0,
) -> dict:
    """Localisation score of a checkpoint's Grad-CAMs on a folder of images (``cam-score``).

    Args:
        checkpoint: a ``last.pt`` / ``best.pt`` of :func:`skinlesion_utils.train.fit`.
        images: a ``{benign,malignant}/*`` folder or a flat folder of images.
        masks: folder of expert masks (:func:`load_masks`); ``None`` → **approximate** masks
            (:func:`approximate_lesion_mask`), labelled so in the result.
        image_size: side R the images are decoded at; default the checkpoint's training size.
        method, layer: CAM method and target layer name (default
            :func:`skinlesion_utils.cam.cam_target_layer`).
        limit: score only the first N images (sorted by id).
        with_faithfulness: add ROAD and the confidence change per image (slower).

    Returns:
        ``{"checkpoint", "model", "images", "masks", "mask_kind", "image_size", "method",
        "target_layer", "cam_map_size", "summary", "per_image": [...]}``; per image: ``id``,
        ``label`` (-1 for a flat folder), ``target`` (predicted class explained),
        ``p_malignant``, ``energy_inside``, ``pointing_hit``, ``mask_fraction``, ``mask_kind``
        (+ the :func:`skinlesion_utils.cam.faithfulness` columns).
    """
    model, ckpt = load_checkpoint(checkpoint)
    spec = ckpt.get("spec") or {}
    size = int(image_size or spec.get("image_size") or 224)
    model.to(resolve_device(device))
    imgs, ids, labels = _load_images(Path(images), size)
    if limit is not None:
        imgs, ids, labels = imgs[:limit], ids[:limit], labels[:limit]
    target_layer = cam_target_layer(model, layer)
    cams, logits = compute_cams(model, imgs, target_layer, None, method, batch_size, return_logits=True)
    loc, kind, probs = _score_table(cams, logits, imgs, ids, labels, masks, size)
    summary = summarise_localisation(loc, seed=seed)
    if with_faithfulness:
        _add_faithfulness(loc, summary, model, imgs, cams, probs.argmax(1), batch_size, seed)
    per_image = loc.drop(columns=["image"]).to_dict(orient="records")
    return {
        "command": "cam-score",
        "checkpoint": str(checkpoint),
        "model": {"name": spec.get("name"), "kwargs": spec.get("kwargs"), "trained_image_size": spec.get("image_size")},
        "images": str(images),
        "masks": str(masks) if masks is not None else None,
        "mask_kind": kind,
        "mask_note": ("expert masks matched by file stem" if kind == "expert" else
                      "APPROXIMATE masks from classical segmentation (Otsu on CIE L*), not expert "
                      "annotations: treat the scores as rough"),
        "image_size": size,
        "method": method,
        "target_layer": target_layer_name(model, target_layer),
        "cam_map_size": list(cam_map_size(model, size, target_layer)),
        "summary": summary,
        "per_image": per_image,
    }


def _score_table(cams, logits, imgs, ids, labels, masks, size: int) -> tuple[pd.DataFrame, str, np.ndarray]:
    """The per-image table of :func:`cam_score`: :func:`localisation_score` against the expert
    masks in ``masks`` (or approximate masks for ``None``), with ``id``, ``label``, ``target``
    (the predicted class) and ``p_malignant`` first. Returns ``(table, mask kind, softmax
    probabilities [N, C])``."""
    if masks is not None:
        mask_arr, kind = load_masks(masks, ids, size), "expert"
    else:
        mask_arr, kind = approximate_lesion_masks(imgs), "approximate"
    loc = localisation_score(cams, mask_arr, mask_kind=kind)
    probs = torch.softmax(torch.from_numpy(logits), dim=1).numpy()
    loc.insert(0, "id", ids)
    loc.insert(1, "label", labels)
    loc.insert(2, "target", probs.argmax(1))
    loc.insert(3, "p_malignant", probs[:, 1] if probs.shape[1] > 1 else probs[:, 0])
    return loc, kind, probs


def _add_faithfulness(loc: pd.DataFrame, summary: dict, model, imgs, cams, targets, batch_size: int,
                      seed: int) -> None:
    """Add the :func:`~skinlesion_utils.cam.faithfulness` summary columns to :func:`cam_score`'s
    table and summary (in place)."""
    fa = faithfulness(model, imgs, cams, targets, batch_size=batch_size, seed=seed)
    for col in ("road_morf", "road_lerf", "road_combined", "confidence_change"):
        loc[col] = fa[col].to_numpy()
        summary[col] = dict(zip(("mean", "ci_low", "ci_high"), mean_ci(fa[col].to_numpy(), seed)))


def write_score(result: dict, path: str | Path) -> Path:
    """Write a :func:`cam_score` result to ``path`` atomically, as the ``cam-score`` command does:
    JSON with indent 2, numpy numbers as Python numbers, non-finite numbers as ``null``, and a
    final newline. Returns the path."""
    return write_json(Path(path), _json_clean(result), indent=2, allow_nan=False)
