"""External validation without fooling yourself: contamination, subsets, shift (chapter 08).

Taught in chapter 08 (``chapters/08_external_validation``); chapter 09 reads the numbers it
saves under ``results/<profile>/08_external_validation``.

A model trained on ``isic_balanced`` is scored on the paper's "external" ISIC 2019 set. Three
things decide what that score means, and this module owns the chapter's tools for each:

* **Contamination** — the external set shares images with the training set.
  :func:`external_pairs` loads the near-duplicate pairs chapter 01 saved
  (``results/<profile>/01_dataset/pairs_external.csv``) or, when that file is missing (a
  stand-alone run on Colab, before chapter 01), computes them with
  :mod:`skinlesion_utils.audit`. :func:`contamination_flags` turns the pairs into one row per
  external image (copy in ``isic_balanced`` train / test, seen in training, nearest distance).
* **Subsets** — :func:`subset_report` (every metric with a bootstrap CI on each subset, e.g.
  all / clean / contaminated). The difference of a metric between two subsets
  (:func:`skinlesion_utils.metrics.metric_difference`), two models on the same images
  (:func:`skinlesion_utils.metrics.paired_comparison`), the interval strings of the page
  (:func:`skinlesion_utils.metrics.ci_strings`) and which split of the released set an
  external image comes from (:func:`skinlesion_utils.splits.external_split`) live in the core
  modules.
* **Shift** — :func:`distribution_shift` (standardised mean difference and two-sample
  Kolmogorov–Smirnov test of per-image colour statistics, internal vs external).

Plus :func:`write_demo_folder`, which builds a small ``{benign,malignant}/*`` folder of images
in mixed formats, modes and sizes (in a folder the caller names, e.g. a temporary one — never
the data folder) to show :func:`skinlesion_utils.evaluate.evaluate_folder` and the
``evaluate`` command line on "your own" images.

Conventions as in :mod:`skinlesion_utils.metrics`: label 1 = malignant, scores are
P(malignant), metrics are fractions in [0, 1].
"""
from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath

import numpy as np
import pandas as pd
from PIL import Image

from ..errors import ConfigError
from .. import audit, data
from ..data import CLASSES, ENV_DATA, DataError, inside_data_folder, to_rgb
from ..metrics import ci_row, prediction_arrays, subset_mask
from ..profiles import profile_name
from ..results import results_dir
from ..splits import require_columns

__all__ = [
    "CHAPTER",
    "DEMO_VARIANTS",
    "external_pairs",
    "contamination_flags",
    "subset_report",
    "distribution_shift",
    "write_demo_folder",
]

#: The chapter that teaches this module and writes its results files.
CHAPTER = "08_external_validation"
_PAIR_COLUMNS = ["file_a", "file_b", "distance", "method"]


def external_pairs(profile=None, external: str | None = None, *, threshold: int | None = None,
                   progress: bool = False, recompute: bool = False) -> pd.DataFrame:
    """Near-duplicate pairs ``isic_balanced`` ↔ external set: chapter 01's file, else computed.

    Chapter 01 saves the pairs of its audit as ``results/<profile>/01_dataset/pairs_external.csv``
    (read with :func:`audit.read_audit_pairs`). That file is used when it exists and was made for
    the same external set; otherwise (chapter 01 not run, e.g. this chapter alone on Colab, or
    ``recompute=True``) both sets are hashed with :func:`audit.hash_dataset` and searched with
    :func:`audit.hash_pairs` — about a minute for 3,297 + 1,000 images on two CPU cores.

    Args:
        profile: profile name or ``Profile`` whose results folder is read (default: active).
        external: the external data set (default :func:`data.external_dataset_name`).
        threshold: largest Hamming distance in bits (of 128) that counts as a copy; default
            :data:`audit.DEFAULT_THRESHOLD`. A threshold above the default recomputes (chapter
            01's file holds only pairs up to the default).
        progress: progress bars while hashing.
        recompute: ignore chapter 01's file.

    Returns:
        :func:`audit.annotate_pairs` table, one row per pair: ``dataset_a`` (``isic_balanced``),
        ``file_a`` (e.g. ``train/benign/12.jpg``), ``split_a``, ``label_a``, ``dataset_b``,
        ``file_b`` (an external id as in ``ImageTensorStore.ids``), ``split_b``, ``label_b``,
        ``distance`` (bits), ``method``; sorted by distance. ``attrs["source"]`` says where the
        pairs came from (``"chapter 01 file <path>"`` or ``"computed"``), ``attrs["threshold"]``
        the threshold.
    """
    external = external or data.external_dataset_name()
    thr = audit.DEFAULT_THRESHOLD if threshold is None else int(threshold)
    if not 0 <= thr <= audit.HASH_BITS[audit.DEFAULT_METHOD]:
        raise ConfigError(f"threshold={threshold}: expected whole bits in 0..{audit.HASH_BITS[audit.DEFAULT_METHOD]}, "
                         f"e.g. the default {audit.DEFAULT_THRESHOLD}.")
    ext_ids = set(data.get_spec(external).manifest_entries())
    pairs, source = None, "computed"
    if not recompute and thr <= audit.DEFAULT_THRESHOLD:
        name = profile_name(profile)
        try:
            saved = audit.read_audit_pairs("external", name)
        except FileNotFoundError:
            saved = None
        if saved is not None and _usable(saved, external, ext_ids):
            pairs = saved[_PAIR_COLUMNS].copy()
            pairs["distance"] = pairs["distance"].astype(np.int64)
            pairs = pairs[pairs["distance"] <= thr]
            source = f"chapter 01 file {results_dir(audit.AUDIT_CHAPTER, name) / audit.PAIRS_FILES['external']}"
    if pairs is None:
        a = audit.hash_dataset("isic_balanced", progress=progress)
        b = audit.hash_dataset(external, progress=progress)
        pairs = audit.hash_pairs(a, b, thr)
    out = audit.annotate_pairs(pairs.reset_index(drop=True), "isic_balanced", external)
    out = out.sort_values(["distance", "file_b", "file_a"], kind="stable").reset_index(drop=True)
    out.attrs.update(source=source, threshold=thr, external=external)
    return out


def _usable(saved: pd.DataFrame, external: str, ext_ids: set[str]) -> bool:
    """Chapter 01's table has the needed columns and was made for this external set."""
    if not set(_PAIR_COLUMNS) <= set(saved.columns):
        return False
    if "dataset_b" in saved.columns and len(saved) and not (saved["dataset_b"] == external).all():
        return False
    return set(saved["file_b"].astype(str)) <= ext_ids


def contamination_flags(ids: Sequence[str], pairs: pd.DataFrame, trained_ids: Sequence[str] | None = None) -> pd.DataFrame:
    """One row per external image: does the training data hold a copy of it?

    Args:
        ids: the external images (``ImageTensorStore.ids``), N of them.
        pairs: :func:`external_pairs` (``file_a`` an ``isic_balanced`` id starting with its split
            ``train/`` or ``test/``, ``file_b`` an external id, ``distance``).
        trained_ids: optional ids of the ``isic_balanced`` images a model was actually fitted on
            (its training split minus the validation images, :func:`skinlesion_utils.runs.validation_split`).

    Returns:
        DataFrame indexed by ``id`` (in the order of ``ids``) with bool columns ``copy_in_train``
        (a pair with an ``isic_balanced/train`` image), ``copy_in_test`` (with a test image),
        ``contaminated`` (either), with ``trained_ids`` also ``copy_seen`` (a pair with an image
        the model was fitted on); ``distance`` (smallest distance in bits, ``<NA>`` without a
        copy; nullable ``Int64``) and ``copy_of`` (the closest ``isic_balanced`` id, ``""``).

    Raises:
        ValueError: the pairs name external images that are not in ``ids`` (pairs of another set).
    """
    ids = [str(i) for i in ids]
    if len(set(ids)) != len(ids):
        raise ConfigError("ids holds repeated entries. Fix: pass each external image once (store.ids).")
    require_columns(pairs, "file_a", "file_b", "distance")
    unknown = sorted(set(pairs["file_b"].astype(str)) - set(ids))
    if unknown:
        raise ConfigError(
            f"{len(unknown)} external image(s) of the pairs are not in ids, e.g. {unknown[:3]}: the pairs were "
            "computed for another external set. Fix: pass the ids of the same set (external_pairs(external=...))."
        )
    split = pairs["file_a"].astype(str).map(lambda f: PurePosixPath(f).parts[0])
    bad = sorted(set(split) - {"train", "test"})
    if bad:
        raise ConfigError(f"file_a must be isic_balanced ids starting with 'train/' or 'test/'; found first folders {bad}.")
    out = pd.DataFrame(index=pd.Index(ids, name="id"))
    for name, which in (("copy_in_train", "train"), ("copy_in_test", "test")):
        out[name] = out.index.isin(pairs.loc[split == which, "file_b"].astype(str))
    out["contaminated"] = out["copy_in_train"] | out["copy_in_test"]
    if trained_ids is not None:
        seen = pairs["file_a"].astype(str).isin(set(map(str, trained_ids)))
        out["copy_seen"] = out.index.isin(pairs.loc[seen, "file_b"].astype(str))
    nearest = pairs.sort_values(["distance", "file_a"], kind="stable").drop_duplicates("file_b")
    nearest = nearest.set_index(nearest["file_b"].astype(str))
    out["distance"] = pd.array(nearest["distance"].reindex(out.index), dtype="Int64")
    out["copy_of"] = nearest["file_a"].reindex(out.index).fillna("").astype(str)
    return out


# =========================================================================== subsets
def subset_report(predictions: pd.DataFrame, subsets: Mapping[str, Sequence[bool]], *, threshold: float = 0.5,
                  n_boot: int = 2000, seed: int = 0,
                  metrics: Sequence[str] = ("accuracy", "recall", "specificity", "roc_auc")) -> pd.DataFrame:
    """Every metric with a stratified bootstrap 95 % CI on several subsets of one prediction table.

    Args:
        predictions: DataFrame with ``y_true`` (0/1) and ``y_score`` (P(malignant)), N rows.
        subsets: ``{name: bool mask [N]}``, e.g. ``{"all": all_true, "clean": ~flags.contaminated}``.
        threshold, n_boot, seed: as :func:`skinlesion_utils.metrics.report_with_ci` (same seed for
            every subset).
        metrics: metric names of :data:`skinlesion_utils.metrics.METRICS`.

    Returns:
        DataFrame indexed by subset name with ``n``, ``n_pos``, ``n_neg`` and, for each metric,
        ``<metric>``, ``<metric>_low``, ``<metric>_high``. A subset without both classes gets NaN
        metrics (its counts are still reported).
    """
    y, s = prediction_arrays(predictions)
    rows = {}
    for name, mask in subsets.items():
        m = subset_mask(predictions, mask, name)
        yy, ss = y[m], s[m]
        row = {"n": int(m.sum()), "n_pos": int(yy.sum()), "n_neg": int(m.sum() - yy.sum())}
        if 0 < yy.sum() < yy.size:
            row.update(ci_row(yy, ss, metrics, threshold=threshold, n_boot=n_boot, seed=seed))
        else:
            row.update({f"{metric}{suffix}": np.nan for metric in metrics for suffix in ("", "_low", "_high")})
        rows[name] = row
    df = pd.DataFrame.from_dict(rows, orient="index")
    df.index.name = "subset"
    df.attrs.update(threshold=threshold, n_boot=n_boot, seed=seed)
    return df


# =========================================================================== shift
def distribution_shift(internal: pd.DataFrame, external: pd.DataFrame,
                       columns: Sequence[str] = ("mean_r", "mean_g", "mean_b", "brightness", "contrast")) -> pd.DataFrame:
    """How far apart two sets of per-image statistics are (e.g. :func:`skinlesion_utils.image_stats.colour_statistics`).

    For each column: the means, the standardised mean difference
    ``SMD = (mean_ext − mean_int) / sqrt((sd_int² + sd_ext²) / 2)`` (|SMD| > 0.2 is a small,
    > 0.8 a large shift by Cohen's convention) and the two-sample Kolmogorov–Smirnov statistic
    (largest gap between the two empirical CDFs, in [0, 1]) with its p-value
    (``scipy.stats.ks_2samp``).

    Returns:
        DataFrame indexed by column name with ``internal_mean``, ``external_mean``,
        ``internal_sd``, ``external_sd``, ``smd``, ``ks``, ``ks_p``.
    """
    from scipy.stats import ks_2samp

    rows = {}
    for c in columns:
        if c not in internal.columns or c not in external.columns:
            raise KeyError(f"column {c!r} missing: internal has {list(internal.columns)}, external has "
                           f"{list(external.columns)}. Fix: pass columns both tables have.")
        a, b = internal[c].to_numpy(np.float64), external[c].to_numpy(np.float64)
        sd_a, sd_b = a.std(ddof=1), b.std(ddof=1)
        pooled = np.sqrt((sd_a ** 2 + sd_b ** 2) / 2)
        ks = ks_2samp(a, b)
        rows[c] = {"internal_mean": a.mean(), "external_mean": b.mean(), "internal_sd": sd_a, "external_sd": sd_b,
                   "smd": (b.mean() - a.mean()) / pooled if pooled > 0 else 0.0,
                   "ks": float(ks.statistic), "ks_p": float(ks.pvalue)}
    df = pd.DataFrame.from_dict(rows, orient="index")
    df.index.name = "statistic"
    return df


# =========================================================================== demo folder
#: The variants :func:`write_demo_folder` cycles through: (file suffix, PIL mode, scale factor).
#: The first is lossless and keeps every pixel (an opaque RGBA PNG), so a model must give it
#: exactly the score of the source image.
DEMO_VARIANTS: tuple[tuple[str, str, float], ...] = (
    ("png", "RGBA", 1.0),   # lossless, with an (opaque) alpha channel
    ("bmp", "RGB", 1.0),
    ("tif", "RGB", 1.0),
    ("webp", "RGB", 1.0),
    ("jpg", "L", 1.0),      # greyscale JPEG
    ("jpg", "CMYK", 1.0),   # print-style CMYK JPEG
    ("png", "P", 1.0),      # 256-colour palette
    ("jpg", "RGB", 3.0),    # three times larger than the source
)


def write_demo_folder(sources: Sequence[tuple[str | os.PathLike, int]], dest: str | os.PathLike,
                      variants: Sequence[tuple[str, str, float]] = DEMO_VARIANTS) -> pd.DataFrame:
    """Write a small ``dest/{benign,malignant}/*`` folder of images in mixed formats, modes and sizes.

    Image ``i`` of ``sources`` is saved with ``variants[i % len(variants)]``: converted to that
    PIL mode, resized by the factor, saved in that format. Use it to try
    :func:`skinlesion_utils.evaluate.evaluate_folder` or ``python -m skinlesion_utils evaluate`` on a folder that
    looks like a reader's own images. Write it under a temporary folder, never into the data
    folder (this function refuses a ``dest`` inside ``$SKINLESION_DATA``).

    Args:
        sources: ``(image file, label)`` pairs, label 0 = benign, 1 = malignant.
        dest: the folder to create (must not exist yet, or be empty).
        variants: ``(suffix, mode, scale)`` triples (default :data:`DEMO_VARIANTS`).

    Returns:
        DataFrame, one row per written file: ``file`` (relative to ``dest``, e.g.
        ``benign/00_ISIC_0000014.png``), ``source`` (the source file's name), ``label``,
        ``format``, ``mode``, ``width``, ``height``.
    """
    dest = Path(dest)
    data_root = os.environ.get(ENV_DATA)
    if inside_data_folder(dest):
        raise DataError(f"Refusing to write the demo folder {dest} inside the data folder {data_root} (read-only). "
                        "Fix: use a temporary folder, e.g. tempfile.mkdtemp().")
    if dest.exists() and any(dest.iterdir()):
        raise DataError(f"{dest} exists and is not empty. Fix: pass a new or empty folder.")
    if not sources:
        raise ConfigError("sources is empty. Fix: pass at least one (image file, label) pair.")
    if not variants:
        raise ConfigError("variants is empty. Fix: pass (suffix, mode, scale) triples, e.g. DEMO_VARIANTS.")
    rows = []
    for i, (src, label) in enumerate(sources):
        if int(label) not in (0, 1):
            raise ConfigError(f"label of {src} is {label!r}; expected 0 (benign) or 1 (malignant).")
        suffix, mode, scale = variants[i % len(variants)]
        with Image.open(src) as img:
            img = to_rgb(img, src)
            img.load()
        if scale != 1.0:
            img = img.resize((round(img.width * scale), round(img.height * scale)), Image.Resampling.BICUBIC)
        img = img.convert(mode) if mode != "P" else img.convert("P", palette=Image.Palette.ADAPTIVE, colors=256)
        rel = Path(CLASSES[int(label)]) / f"{i:02d}_{Path(src).stem}.{suffix}"
        out = dest / rel
        out.parent.mkdir(parents=True, exist_ok=True)
        img.save(out)
        with Image.open(out) as check:
            rows.append({"file": rel.as_posix(), "source": Path(src).name, "label": int(label), "format": check.format,
                         "mode": check.mode, "width": check.width, "height": check.height})
    return pd.DataFrame(rows)
