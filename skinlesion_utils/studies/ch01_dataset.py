"""Chapter 01's own analysis of the leakage audit (mirrors ``lab/ch01``).

* :data:`COPY_TRANSFORMS`, :func:`copy_distances` — how far the perceptual hash moves under the
  edits a copy goes through (re-encoding, resizing, cropping, brightness): what sets the
  threshold of the pair search.
* :func:`pair_summary` — how many images of each side are in a near-duplicate pair.
* :func:`pair_gallery` — pairs side by side, for a person to judge.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
from PIL import Image, ImageEnhance

from ..errors import ConfigError
from .. import data, plots
from ..audit import DEFAULT_CROPS, DEFAULT_METHOD, HashTable, as_paths, compute_hashes, forget_hashes, paired_distances
from ..data import to_rgb
from ..splits import require_columns


def _copy_jpeg(img, q: int):
    return img, dict(format="JPEG", quality=q)


def _copy_half(img):
    w, h = img.size
    return img.resize((max(1, w // 2), max(1, h // 2)), _bicubic()), dict(format="PNG")


def _copy_crop(img, frac: float):
    w, h = img.size
    dx, dy = round(w * (1 - frac) / 2), round(h * (1 - frac) / 2)
    return img.crop((dx, dy, w - dx, h - dy)), dict(format="JPEG", quality=90)


def _copy_brightness(img, factor: float):
    return ImageEnhance.Brightness(img).enhance(factor), dict(format="JPEG", quality=90)


def _copy_combined(img):
    cropped, _ = _copy_crop(img, 0.95)
    half, _ = _copy_half(cropped)
    return half, dict(format="JPEG", quality=50)


def _bicubic():
    return Image.Resampling.BICUBIC


#: The edits :func:`copy_distances` applies: name -> ``f(PIL image) -> (image, save options)``.
COPY_TRANSFORMS = {
    "JPEG quality 50": lambda img: _copy_jpeg(img, 50),
    "half size": _copy_half,
    "centre crop 95 %": lambda img: _copy_crop(img, 0.95),
    "brightness +10 %": lambda img: _copy_brightness(img, 1.10),
    "crop + half + JPEG 50": _copy_combined,
}


def copy_distances(
    paths: str | os.PathLike | Sequence[str | os.PathLike],
    transforms: Sequence[str] | None = None,
    *,
    method: str = DEFAULT_METHOD,
    crops: Sequence[float] = DEFAULT_CROPS,
    progress: bool = False,
) -> pd.DataFrame:
    """How far an edited copy of an image lands from the original, in hash bits.

    Each image is re-saved with every edit of :data:`COPY_TRANSFORMS` (re-encoding, resizing,
    a centre crop, a brightness change, a combination) into a temporary folder (deleted on
    return; nothing is written next to the images), hashed, and compared with its original by
    :func:`paired_distances`. This is the distribution a duplicate threshold must cover.

    Args:
        paths: a folder or a list of image files (the originals).
        transforms: names from :data:`COPY_TRANSFORMS` (default: all).
        method, crops, progress: see :func:`compute_hashes`.

    Returns:
        DataFrame ``file, edit, distance (int, bits)``, one row per image and edit (the name
        from :data:`COPY_TRANSFORMS`), in the order of ``paths`` then ``transforms``.
    """
    names = list(COPY_TRANSFORMS) if transforms is None else list(transforms)
    unknown = [t for t in names if t not in COPY_TRANSFORMS]
    if unknown:
        raise ConfigError(f"Unknown transform(s) {unknown}. Fix: use names from {list(COPY_TRANSFORMS)}.")
    files = as_paths(paths)
    originals = compute_hashes(files, method, crops=crops, progress=progress)
    rows_file, rows_kind, copies = [], [], []
    with tempfile.TemporaryDirectory(prefix="skinlesion-copies-") as tmp:
        for i, path in enumerate(files):
            with Image.open(path) as img:
                img = to_rgb(img, path)
                img.load()
            for k, kind in enumerate(names):
                edited, options = COPY_TRANSFORMS[kind](img)
                out = Path(tmp) / f"{i:06d}_{k:02d}.{'png' if options['format'] == 'PNG' else 'jpg'}"
                edited.save(out, **options)
                rows_file.append(str(path))
                rows_kind.append(kind)
                copies.append(out)
        table = compute_hashes(copies, method, crops=crops, progress=progress)
        forget_hashes(tmp)  # temporary files: forget their hashes
    repeat = np.repeat(np.arange(len(files)), len(names))
    orig = HashTable(tuple(originals.files[j] for j in repeat), originals.bits[repeat], originals.method, originals.crops)
    return pd.DataFrame({"file": rows_file, "edit": rows_kind, "distance": paired_distances(orig, table)})


def pair_summary(pairs: pd.DataFrame, n_a: int, n_b: int) -> dict:
    """Counts of a cross-set pair table (``a`` = the reference set, ``b`` = the audited set).

    Args:
        pairs: an :func:`annotate_pairs` table (or any table with ``file_a, file_b, distance``;
            the label and split counts need the annotated columns).
        n_a, n_b: images in each set.

    Returns:
        ``dict`` of plain ints/floats: ``pairs``, ``exact_pairs`` (distance 0), ``a_images``,
        ``b_images``, ``a_with_copy`` / ``b_with_copy`` (distinct images of each set in at least
        one pair), ``b_fraction_with_copy``, and with annotations ``label_disagreements`` (pairs
        whose classes differ) and ``b_with_copy_by_split_a`` (distinct ``b`` images with a copy
        in each split of ``a``).
    """
    require_columns(pairs, "file_a", "file_b", "distance")
    b_with = int(pairs["file_b"].nunique())
    out = {
        "pairs": int(len(pairs)),
        "exact_pairs": int((pairs["distance"] == 0).sum()),
        "a_images": int(n_a),
        "b_images": int(n_b),
        "a_with_copy": int(pairs["file_a"].nunique()),
        "b_with_copy": b_with,
        "b_fraction_with_copy": b_with / n_b if n_b else 0.0,
    }
    if {"label_a", "label_b"} <= set(pairs.columns):
        out["label_disagreements"] = int((pairs["label_a"] != pairs["label_b"]).sum())
    if "split_a" in pairs.columns and (pairs["split_a"] != "").any():
        out["b_with_copy_by_split_a"] = {str(k): int(v) for k, v in pairs.groupby("split_a")["file_b"].nunique().items()}
    return out


def pair_gallery(
    pairs: pd.DataFrame,
    root_a: str | os.PathLike,
    root_b: str | os.PathLike | None = None,
    *,
    size: int = 160,
    ncols: int = 8,
    title: str | None = None,
):
    """Show pairs side by side: for each row, ``file_a`` then ``file_b``, titled with the id
    (``split/class/name``) and the distance. Images are squashed to ``size``² for display.

    Args:
        pairs: rows of a pair table (``file_a, file_b, distance``) with ids as files
            (:func:`hash_dataset`); pass the few rows to show (e.g. ``pairs.head(8)``).
        root_a, root_b: data set folders the ids are relative to (``root_b=None``: ``root_a``).
        size: display side in pixels. ncols: panels per row (even: pairs stay together).
        title: overall title.

    Returns:
        The matplotlib Figure from :func:`skinlesion_utils.plots.image_grid` (2 panels per row
        of ``pairs``).
    """
    if pairs.empty:
        raise ConfigError("pair_gallery: no pairs to show. Fix: pass at least one row of a pair table.")
    if ncols % 2:
        raise ConfigError(f"pair_gallery: ncols={ncols} must be even so that the two images of a pair share a row.")
    root_a = Path(root_a)
    root_b = root_a if root_b is None else Path(root_b)
    images, titles = [], []
    for fa, fb, dist in zip(pairs["file_a"], pairs["file_b"], pairs["distance"]):
        for root, f in ((root_a, fa), (root_b, fb)):
            images.append(data.decode_image(root / f, size))
            name = Path(str(f))
            titles.append("/".join(name.parts[-3:-1] + (name.stem,)) + (f"\nd = {dist}" if f == fb else "\n"))
    ncols = min(ncols, len(images))
    nrows = -(-len(images) // ncols)
    figsize = (1.6 * ncols, 2.0 * nrows + (0.4 if title else 0.0))  # room for two-line titles
    return plots.image_grid(images, titles=titles, ncols=ncols, figsize=figsize, title=title)
