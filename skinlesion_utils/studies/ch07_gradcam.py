"""Chapter 07's analysis of Grad-CAM maps: what only ``chapters/07_gradcam`` needs.

The mechanism – target layers, batched maps, the randomisation check and faithfulness in
:mod:`skinlesion_utils.cam`; lesion masks, the localisation score and the centre prior in
:mod:`skinlesion_utils.localisation` – is shared with the lab and the command line. This module
turns its output into the chapter's tables and figures:

* maps at the display size (:func:`resize_maps`) and per-step summaries of a randomisation
  check (:func:`summarise_randomisation`);
* image-independence controls: the map of a blank image (:func:`blank_image`), how alike the
  maps are (:func:`map_similarity`), where their maxima fall (:func:`peak_grid`);
* several models' localisation scores on the same images (:func:`localisation_table`,
  :func:`summary_table`) and a paired comparison of two of them (:func:`paired_localisation`);
* thin dark structures (hair, ruler marks) as an artifact proxy (:func:`thin_dark_structures`);
* example selection (:func:`select_examples`), faithfulness summaries
  (:func:`summarise_faithfulness`) and the claim-by-claim table (:func:`claim_row`, worded by
  :func:`skinlesion_utils.metrics.interval_word`).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from scipy.stats import wilcoxon

from ..errors import ConfigError
from ..cam import as_images, as_numpy, spearman
from ..localisation import localisation_score, summarise_localisation
from ..metrics import interval_word, mean_ci

__all__ = [
    "resize_maps",
    "summarise_randomisation",
    "blank_image",
    "map_similarity",
    "peak_grid",
    "localisation_table",
    "summary_table",
    "paired_localisation",
    "thin_dark_structures",
    "select_examples",
    "summarise_faithfulness",
    "claim_row",
]


def resize_maps(cams, size: int) -> np.ndarray:
    """``float [N, h, w]`` maps → ``float32 [N, size, size]``, bilinear (``align_corners=False``,
    like the library's own upsampling), clipped to [0, 1]. Used to lay maps computed at a model's
    input size over images (and masks) at another size."""
    c = np.asarray(as_numpy(cams), dtype=np.float32)
    if c.ndim == 2:
        c = c[None]
    if c.ndim != 3:
        raise ConfigError(f"cams must be [N, H, W]; found shape {c.shape}.")
    if c.shape[1:] == (size, size):
        return c.copy()
    out = F.interpolate(torch.from_numpy(c)[:, None], size=(size, size), mode="bilinear", align_corners=False)
    return np.clip(out[:, 0].numpy(), 0.0, 1.0)



def summarise_randomisation(df: pd.DataFrame) -> pd.DataFrame:
    """Per step of a :func:`randomisation_check` table: ``block``, ``n`` images, ``spearman``
    (mean rank correlation with the original maps, a *flat* map – one that ranks no pixel,
    typically all zero after Grad-CAM's ReLU – counted as 0: it keeps nothing of the original),
    ``spearman_abs`` (mean |ρ|, as Adebayo et al. also report), ``ssim`` (mean) and
    ``flat_share``. Indexed by ``step``."""
    d = df.copy()
    rho = d["spearman"].where(~d["flat"], 0.0)
    d["spearman"] = rho
    d["spearman_abs"] = rho.abs()
    g = d.groupby("step")
    out = g.agg(block=("block", "first"), n=("image", "size"), spearman=("spearman", "mean"),
                spearman_abs=("spearman_abs", "mean"), ssim=("ssim", "mean"), flat_share=("flat", "mean"))
    return out



def blank_image(images, size: int | None = None) -> torch.Tensor:
    """A uniform image of the images' mean colour, ``uint8 [1, 3, S, S]`` (``S`` = ``size`` or
    the images' side): the control input of "does the map depend on the image?" – skin-coloured
    and in the data's range, but without a lesion, hair or anything else to point at."""
    x = as_images(images)
    if x.dtype != torch.uint8:
        raise ConfigError("blank_image needs uint8 images (ImageTensorStore.images).")
    s = int(size or x.shape[-1])
    mean = x.double().mean(dim=(0, 2, 3)).round().clamp(0, 255).to(torch.uint8)
    return mean.view(1, 3, 1, 1).expand(1, 3, s, s).clone()



def map_similarity(cams, reference) -> np.ndarray:
    """Spearman rank correlation of each map with one reference map: ``cams float [N, H, W]``,
    ``reference float [H, W]`` → ``float64 [N]`` (NaN where a map is constant). Near 1 for every
    image = the maps do not depend on the image."""
    c = as_numpy(cams)
    r = as_numpy(reference)
    if c.ndim != 3 or r.shape != c.shape[1:]:
        raise ConfigError(f"cams must be [N, H, W] and reference [H, W]; found {c.shape} and {r.shape}.")
    return np.array([spearman(ci, r) for ci in c], dtype=np.float64)



def peak_grid(cams, grid: int | tuple[int, int]) -> np.ndarray:
    """Where the maps' maxima fall: counts on a ``grid`` (e.g. the target layer's own h × w).

    ``cams float [N, H, W]`` → ``int64 [gh, gw]``: each non-constant map adds 1 to the cell of
    its first maximum (row-major, as the pointing game of
    :func:`~skinlesion_utils.localisation.localisation_score`); constant maps are not counted.
    All counts in one cell = every map points at the same place, whatever the image.
    """
    c = as_numpy(cams)
    gh, gw = (grid, grid) if isinstance(grid, (int, np.integer)) else grid
    counts = np.zeros((int(gh), int(gw)), dtype=np.int64)
    h, w = c.shape[1:]
    for ci in c:
        if ci.max() > ci.min():
            r, col = np.unravel_index(int(np.argmax(ci)), ci.shape)
            counts[r * gh // h, col * gw // w] += 1
    return counts



def localisation_table(maps, masks, *, ids: Sequence[str], labels, mask_kind: str = "approximate",
                       extra: dict | None = None) -> pd.DataFrame:
    """:func:`~skinlesion_utils.localisation.localisation_score` of several sets of maps on the
    same images, stacked long.

    Args:
        maps: ``{(model, layer): float [N, H, W]}``; a single ``float [H, W]`` map (a control
            that ignores the image) is scored against every mask.
        masks: ``bool [N, H, W]``.
        ids, labels: per image (``ImageTensorStore.ids`` / ``.labels``).
        mask_kind: ``"approximate"`` or ``"expert"`` (copied into every row).
        extra: ``{(model, layer): {column: values [N]}}`` added to that group's rows (e.g. the
            predicted class).

    Returns:
        DataFrame with ``model``, ``layer``, ``image`` (0..N-1), ``id``, ``label``,
        ``energy_inside``, ``pointing_hit``, ``mask_fraction``, ``mask_kind`` (+ extra columns);
        ``attrs["mask_kind"]`` is set.
    """
    m = as_numpy(masks)
    labels = np.asarray(as_numpy(labels))
    if len(ids) != len(m) or len(labels) != len(m):
        raise ConfigError(f"ids ({len(ids)}), labels ({len(labels)}) and masks ({len(m)}) must have one entry per image.")
    parts = []
    for (model_name, layer_name), c in maps.items():
        c = as_numpy(c)
        if c.ndim == 2:
            c = np.broadcast_to(c, m.shape)
        df = localisation_score(c, m, mask_kind=mask_kind)
        df.insert(0, "model", model_name)
        df.insert(1, "layer", layer_name)
        df.insert(3, "id", list(ids))
        df.insert(4, "label", labels.astype(np.int64))
        for col, values in ((extra or {}).get((model_name, layer_name)) or {}).items():
            df[col] = np.asarray(values)
        parts.append(df)
    out = pd.concat(parts, ignore_index=True)
    out.attrs["mask_kind"] = mask_kind
    return out



def summary_table(table: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """One row per ``(model, layer)`` of a :func:`localisation_table`: ``n``, energy inside the
    mask and pointing game with 95 % bootstrap intervals, ``chance`` (mean mask area share) and
    energy minus chance with its interval (:func:`~skinlesion_utils.localisation.summarise_localisation`)."""
    rows = []
    for (model_name, layer_name), g in table.groupby(["model", "layer"], sort=False):
        g = g.copy()
        g.attrs["mask_kind"] = table.attrs.get("mask_kind", str(g["mask_kind"].iloc[0]))
        s = summarise_localisation(g, seed=seed)
        e, p, d = s["energy_inside"], s["pointing_game"], s["energy_inside_minus_chance"]
        rows.append({"model": model_name, "layer": layer_name, "n": s["n_images"], "mask_kind": s["mask_kind"],
                     "energy_inside": e["mean"], "energy_low": e["ci_low"], "energy_high": e["ci_high"],
                     "pointing_game": p["mean"], "pointing_low": p["ci_low"], "pointing_high": p["ci_high"],
                     "pointing_n": p["n"], "chance": s["chance"], "energy_minus_chance": d["mean"],
                     "energy_minus_chance_low": d["ci_low"], "energy_minus_chance_high": d["ci_high"]})
    return pd.DataFrame(rows)



def paired_localisation(a: pd.DataFrame, b: pd.DataFrame, seed: int = 0) -> dict:
    """Paired comparison of two :func:`~skinlesion_utils.localisation.localisation_score` tables
    of the *same* images (A − B).

    * Energy inside the mask: mean of the per-image differences with a 95 % percentile-bootstrap
      interval, and the two-sided Wilcoxon signed-rank test (``scipy.stats.wilcoxon``) – images
      where either map is all zero are left out.
    * Pointing game: difference of hit rates with its bootstrap interval, and the exact McNemar
      test (``statsmodels``) on the discordant images (``a_only`` = A hits and B misses,
      ``b_only`` the reverse) – images where either map is constant are left out.

    Returns:
        ``{"energy_inside": {"mean_diff", "ci_low", "ci_high", "n", "wilcoxon_p"},
        "pointing_game": {"diff", "ci_low", "ci_high", "n", "a_only", "b_only", "mcnemar_p"}}``.
    """
    from statsmodels.stats.contingency_tables import mcnemar

    if len(a) != len(b):
        raise ConfigError(f"Both tables must score the same images; found {len(a)} and {len(b)} rows.")
    if "id" in a and "id" in b and list(a["id"]) != list(b["id"]):
        raise ConfigError("The two tables list different images (or another order); align them on 'id' first.")
    ea, eb = a["energy_inside"].to_numpy(float), b["energy_inside"].to_numpy(float)
    ok = np.isfinite(ea) & np.isfinite(eb)
    d = ea[ok] - eb[ok]
    mean, lo, hi = mean_ci(d, seed)
    p_w = float(wilcoxon(d).pvalue) if d.size and np.any(d != 0) else 1.0
    ha, hb = a["pointing_hit"].to_numpy(float), b["pointing_hit"].to_numpy(float)
    okp = np.isfinite(ha) & np.isfinite(hb)
    ha, hb = ha[okp].astype(bool), hb[okp].astype(bool)
    dm, dlo, dhi = mean_ci(ha.astype(float) - hb.astype(float), seed)
    a_only, b_only = int(np.sum(ha & ~hb)), int(np.sum(~ha & hb))
    table = [[int(np.sum(ha & hb)), a_only], [b_only, int(np.sum(~ha & ~hb))]]
    p_m = float(mcnemar(table, exact=True).pvalue) if okp.any() else float("nan")
    return {
        "energy_inside": {"mean_diff": mean, "ci_low": lo, "ci_high": hi, "n": int(ok.sum()), "wilcoxon_p": p_w},
        "pointing_game": {"diff": dm, "ci_low": dlo, "ci_high": dhi, "n": int(okp.sum()),
                          "a_only": a_only, "b_only": b_only, "mcnemar_p": p_m},
    }



def thin_dark_structures(images, lesion_masks=None, *, radius: float = 0.03, threshold: float = 20.0):
    """Thin dark structures – hairs, ruler ticks and pen marks – by a morphological black-hat.

    Per image ``uint8 [3, H, W]``: lightness L* (OpenCV's 8-bit CIE Lab, 0..255); black-hat =
    closing(L*) − L* with a disk of radius ``radius`` × side (≈ 4 px at 128 px), which is large
    where a structure is darker than its surroundings *and* narrower than the disk (a hair, a
    tick mark; not a whole lesion). A pixel is marked when its black-hat exceeds ``threshold``
    L* levels, its closing is bright (≥ 25 % of the image's 95th-percentile lightness: not in
    the dermatoscope's black field of view) and, if ``lesion_masks`` are given, it lies outside
    the lesion mask dilated by the same disk (structures *on* the lesion – pigment network,
    dots – are the lesion, not artifacts).

    Args:
        images: ``uint8 [N, 3, H, W]``.
        lesion_masks: ``bool [N, H, W]`` or ``None``.

    Returns:
        ``(score float64 [N], masks bool [N, H, W])``: ``score`` is the marked share of the
        image. It is a rule for *finding* hairy / ruler images to look at, not a validated
        artifact detector: it also marks dark creases, freckles and vessels.
    """
    import cv2

    x = as_numpy(as_images(images))
    if x.dtype != np.uint8:
        raise ConfigError("thin_dark_structures needs uint8 images (ImageTensorStore.images).")
    n, _, h, w = x.shape
    lm = None if lesion_masks is None else as_numpy(lesion_masks).astype(bool)
    if lm is not None and lm.shape != (n, h, w):
        raise ConfigError(f"lesion_masks must be [N, H, W] = {(n, h, w)}; found {lm.shape}.")
    r = max(1, int(round(radius * min(h, w))))
    disk = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
    masks = np.zeros((n, h, w), dtype=bool)
    for i in range(n):
        rgb = np.ascontiguousarray(x[i].transpose(1, 2, 0))
        light = cv2.cvtColor(rgb, cv2.COLOR_RGB2LAB)[..., 0]
        closed = cv2.morphologyEx(light, cv2.MORPH_CLOSE, disk)
        hat = closed.astype(np.int16) - light.astype(np.int16)
        m = (hat > threshold) & (closed >= 0.25 * np.percentile(light, 95))
        if lm is not None:
            m &= ~cv2.dilate(lm[i].astype(np.uint8), disk).astype(bool)
        masks[i] = m
    return masks.mean(axis=(1, 2)).astype(np.float64), masks



def select_examples(y_true, pred_a, pred_b, per_group: int = 1, seed: int = 0) -> pd.DataFrame:
    """Images to show two models side by side: per true class, ``per_group`` seeded random
    images where both models are right, where both are wrong, and where they disagree.

    Args:
        y_true, pred_a, pred_b: ``int [N]`` labels and the two models' predicted classes.

    Returns:
        DataFrame (one row per chosen image, classes in order) with ``index`` (into the N
        images), ``label``, ``group`` (``"both right"``, ``"both wrong"``, ``"A right, B
        wrong"``, ``"A wrong, B right"``), ``a_right``, ``b_right``. A group with no image is
        skipped (check ``group`` for what was found).
    """
    y, pa, pb = (np.asarray(as_numpy(v)).astype(np.int64) for v in (y_true, pred_a, pred_b))
    if not (len(y) == len(pa) == len(pb)):
        raise ConfigError(f"y_true, pred_a, pred_b must have the same length; found {len(y)}, {len(pa)}, {len(pb)}.")
    ra, rb = pa == y, pb == y
    rng = np.random.default_rng(seed)
    rows = []
    for c in np.unique(y):
        for name, sel in (("both right", ra & rb), ("both wrong", ~ra & ~rb), ("disagree", ra != rb)):
            idx = np.flatnonzero((y == c) & sel)
            if len(idx) == 0:
                continue
            for i in np.sort(rng.choice(idx, size=min(per_group, len(idx)), replace=False)):
                group = name if name != "disagree" else ("A right, B wrong" if ra[i] else "A wrong, B right")
                rows.append({"index": int(i), "label": int(c), "group": group,
                             "a_right": bool(ra[i]), "b_right": bool(rb[i])})
    return pd.DataFrame(rows, columns=["index", "label", "group", "a_right", "b_right"])



def summarise_faithfulness(df: pd.DataFrame, seed: int = 0,
                           columns: Sequence[str] = ("road_morf", "road_lerf", "road_combined", "confidence_change")) -> dict:
    """Means of a :func:`faithfulness` table with 95 % percentile-bootstrap intervals:
    ``{column: {"mean", "ci_low", "ci_high", "n"}}`` (NaN rows left out)."""
    out = {}
    for col in columns:
        v = df[col].to_numpy(dtype=np.float64)
        mean, lo, hi = mean_ci(v, seed)
        out[col] = {"mean": mean, "ci_low": lo, "ci_high": hi, "n": int(np.isfinite(v).sum())}
    return out



def claim_row(statement: str, mean: float, low: float, high: float, reference: float = 0.0,
              what: str = "") -> dict:
    """One row of a claim-by-claim table: the claim ``statement`` holds when the whole 95 %
    interval ``[low, high]`` of the measured quantity lies above ``reference``.

    Returns:
        ``{"statement", "holds" (bool), "measured" (what, mean and interval as text),
        "reading" (:func:`~skinlesion_utils.metrics.interval_word` against the reference), "mean", "ci_low", "ci_high",
        "reference"}``.
    """
    word = interval_word(low, high, reference)
    return {"statement": statement, "holds": bool(word == "above"),
            "measured": f"{what + ' ' if what else ''}{mean:+.3f} [{low:+.3f}, {high:+.3f}]",
            "reading": f"{word} {reference:g}", "mean": float(mean), "ci_low": float(low),
            "ci_high": float(high), "reference": float(reference)}
