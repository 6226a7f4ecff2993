"""External validation without fooling yourself: contamination, subsets, shift (chapter 08).

Taught in chapter 08 (``chapters/08_external_validation``); chapter 09 reads the numbers it
saves under ``results/<profile>/08_external_validation``.

A model trained on ``isic_balanced`` is scored on the paper's "external" ISIC 2019 set. Three
things decide what that score means, and this module owns the tools for each:

* **Contamination** — the external set shares images with the training set.
  :func:`external_pairs` loads the near-duplicate pairs chapter 01 saved
  (``results/<profile>/01_dataset/pairs_external.csv``) or, when that file is missing (a
  stand-alone run on Colab, before chapter 01), computes them with
  :mod:`skinlesion_utils.audit`. :func:`contamination_flags` turns the pairs into one row per
  external image (copy in ``isic_balanced`` train / test, seen in training, nearest distance).
* **Subsets** — :func:`subset_report` (every metric with a bootstrap CI on each subset, e.g.
  all / clean / contaminated) and :func:`metric_difference` (the difference of one metric
  between two subsets with a bootstrap CI, paired by resampling the images once for both);
  :func:`paired_comparison` (McNemar, bootstrap AUC difference and DeLong for two models on
  the same images); :func:`external_split` (which split of the released external set, the
  repository's ``data3/train`` or ``data3/test``, an external image comes from).
* **Shift** — :func:`distribution_shift` (standardised mean difference and two-sample
  Kolmogorov–Smirnov test of per-image colour statistics, internal vs external).
* **Tables** — :func:`ci_columns` formats ``metric / _low / _high`` columns as
  ``"0.812 [0.788, 0.835]"`` for the page.

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

from . import audit
from . import metrics as M
from .data import CLASSES, DataError
from .splits import require_columns

__all__ = [
    "CHAPTER",
    "DEMO_VARIANTS",
    "external_pairs",
    "contamination_flags",
    "external_split",
    "subset_report",
    "metric_difference",
    "paired_comparison",
    "distribution_shift",
    "write_demo_folder",
    "ci_columns",
]

#: The chapter that teaches this module and writes its results files.
CHAPTER = "08_external_validation"
_PAIR_COLUMNS = ["file_a", "file_b", "distance", "method"]


def _profile_name(profile) -> str:
    from .profiles import profile as get_profile

    if profile is None:
        return get_profile().name
    return profile if isinstance(profile, str) else profile.name


# =========================================================================== contamination
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
    from . import data

    external = external or data.external_dataset_name()
    thr = audit.DEFAULT_THRESHOLD if threshold is None else int(threshold)
    if not 0 <= thr <= audit.HASH_BITS[audit.DEFAULT_METHOD]:
        raise ValueError(f"threshold={threshold}: expected whole bits in 0..{audit.HASH_BITS[audit.DEFAULT_METHOD]}, "
                         f"e.g. the default {audit.DEFAULT_THRESHOLD}.")
    ext_ids = set(data.get_spec(external).manifest_entries())
    pairs, source = None, "computed"
    if not recompute and thr <= audit.DEFAULT_THRESHOLD:
        name = _profile_name(profile)
        try:
            saved = audit.read_audit_pairs("external", name)
        except FileNotFoundError:
            saved = None
        if saved is not None and _usable(saved, external, ext_ids):
            pairs = saved[_PAIR_COLUMNS].copy()
            pairs["distance"] = pairs["distance"].astype(np.int64)
            pairs = pairs[pairs["distance"] <= thr]
            source = f"chapter 01 file {audit.results_dir(audit.AUDIT_CHAPTER, name) / audit.PAIRS_FILES['external']}"
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
            (its training split minus the validation images, :func:`runs.validation_split`).

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
        raise ValueError("ids holds repeated entries. Fix: pass each external image once (store.ids).")
    require_columns(pairs, "file_a", "file_b", "distance")
    unknown = sorted(set(pairs["file_b"].astype(str)) - set(ids))
    if unknown:
        raise ValueError(
            f"{len(unknown)} external image(s) of the pairs are not in ids, e.g. {unknown[:3]}: the pairs were "
            "computed for another external set. Fix: pass the ids of the same set (external_pairs(external=...))."
        )
    split = pairs["file_a"].astype(str).map(lambda f: PurePosixPath(f).parts[0])
    bad = sorted(set(split) - {"train", "test"})
    if bad:
        raise ValueError(f"file_a must be isic_balanced ids starting with 'train/' or 'test/'; found first folders {bad}.")
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


def external_split(ids: Sequence[str]) -> pd.Series:
    """Which split of the released external set (the repository's ``data3/train`` or
    ``data3/test``) each external image belongs to.

    Ids of the full set (``test/benign/ISIC_0000064.jpg``) carry it; ids of the course sample
    (``benign/ISIC_0000014.jpg``) are looked up by file name in the full set's manifest.

    Returns:
        Series of ``"train"`` / ``"test"`` (``""`` where the name is not in the full set),
        indexed by id.
    """
    from .data import get_spec

    by_name = {}
    for rel in get_spec("isic2019_external").manifest_entries():
        parts = PurePosixPath(rel).parts
        by_name[parts[-1]] = parts[0]
    out = []
    for i in map(str, ids):
        parts = PurePosixPath(i).parts
        out.append(parts[0] if parts[0] in ("train", "test") else by_name.get(parts[-1], ""))
    return pd.Series(out, index=pd.Index(list(map(str, ids)), name="id"), name="data3_split")


# =========================================================================== subsets
def _arrays(predictions: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    require_columns(predictions, "y_true", "y_score")
    return predictions["y_true"].to_numpy(np.int64), predictions["y_score"].to_numpy(np.float64)


def _mask(predictions: pd.DataFrame, mask, name: str) -> np.ndarray:
    m = np.asarray(mask)
    if m.dtype != bool or m.shape != (len(predictions),):
        raise ValueError(f"subset {name!r}: expected a bool mask of length {len(predictions)} (one per row of the "
                         f"predictions), found {m.dtype} of shape {m.shape}. Fix: e.g. flags['contaminated'].to_numpy().")
    return m


def subset_report(predictions: pd.DataFrame, subsets: Mapping[str, Sequence[bool]], *, threshold: float = 0.5,
                  n_boot: int = 2000, seed: int = 0,
                  metrics: Sequence[str] = ("accuracy", "recall", "specificity", "roc_auc")) -> pd.DataFrame:
    """Every metric with a stratified bootstrap 95 % CI on several subsets of one prediction table.

    Args:
        predictions: DataFrame with ``y_true`` (0/1) and ``y_score`` (P(malignant)), N rows.
        subsets: ``{name: bool mask [N]}``, e.g. ``{"all": all_true, "clean": ~flags.contaminated}``.
        threshold, n_boot, seed: as :func:`metrics.report_with_ci` (same seed for every subset).
        metrics: metric names of :data:`metrics.METRICS`.

    Returns:
        DataFrame indexed by subset name with ``n``, ``n_pos``, ``n_neg`` and, for each metric,
        ``<metric>``, ``<metric>_low``, ``<metric>_high``. A subset without both classes gets NaN
        metrics (its counts are still reported).
    """
    y, s = _arrays(predictions)
    rows = {}
    for name, mask in subsets.items():
        m = _mask(predictions, mask, name)
        yy, ss = y[m], s[m]
        row = {"n": int(m.sum()), "n_pos": int(yy.sum()), "n_neg": int(m.sum() - yy.sum())}
        if 0 < yy.sum() < yy.size:
            ci = M.report_with_ci(yy, ss, threshold=threshold, n_boot=n_boot, seed=seed, metrics=metrics)
            for metric, r in ci.iterrows():
                row.update({metric: r.point, f"{metric}_low": r.low, f"{metric}_high": r.high})
        else:
            row.update({f"{metric}{suffix}": np.nan for metric in metrics for suffix in ("", "_low", "_high")})
        rows[name] = row
    df = pd.DataFrame.from_dict(rows, orient="index")
    df.index.name = "subset"
    df.attrs.update(threshold=threshold, n_boot=n_boot, seed=seed)
    return df


def metric_difference(predictions: pd.DataFrame, mask_a: Sequence[bool], mask_b: Sequence[bool],
                      metric: str = "accuracy", *, threshold: float = 0.5, n_boot: int = 2000,
                      alpha: float = 0.05, seed: int = 0) -> dict:
    """``metric(subset a) − metric(subset b)`` with a percentile-bootstrap CI.

    Each resample draws N images with replacement from the whole table (stratified by class,
    :func:`metrics.bootstrap_samples`' convention) and evaluates the metric on the drawn members
    of ``a`` and of ``b``: the same draw serves both, so nested subsets (all vs clean) and
    disjoint ones (contaminated vs clean) are both handled, and subset sizes vary between
    resamples as they would between data sets. Uses the vectorised engine of
    :mod:`skinlesion_utils.metrics` (exact ROC AUC per resample).

    Args:
        predictions: DataFrame with ``y_true`` and ``y_score``, N rows.
        mask_a, mask_b: bool [N] masks of the two subsets (each with both classes for AUC).
        metric: a name of :data:`metrics.METRICS` (or an alias such as ``"auc"``).
        threshold, n_boot, alpha, seed: as :func:`metrics.bootstrap_ci`.

    Returns:
        ``dict(metric, a, b, delta, low, high, n_a, n_b, n_boot)``: point values on all images of
        each subset, their difference and its interval (resamples where a subset lacks a
        needed class are dropped; ``n_boot`` counts the ones kept).
    """
    y, s = _arrays(predictions)
    a = _mask(predictions, mask_a, "a")
    b = _mask(predictions, mask_b, "b")
    name = M._canonical(metric)
    for label, m in (("a", a), ("b", b)):
        if not (0 < y[m].sum() < m.sum()):
            raise ValueError(f"subset {label} needs both classes to compute {name}; it has {int(m.sum())} images, "
                             f"{int(y[m].sum())} malignant. Fix: use larger subsets or another metric.")
    counts = M._counts(M._draw_indices(y, n_boot, seed, True), y.size)
    va = M._Resampled(y, s, counts * a, threshold).value(name)
    vb = M._Resampled(y, s, counts * b, threshold).value(name)
    d = va - vb
    d = d[~np.isnan(d)]
    lo, hi = M._interval(d, alpha)
    pa = M.classification_report(y[a], s[a], threshold)[name]
    pb = M.classification_report(y[b], s[b], threshold)[name]
    return {"metric": name, "a": float(pa), "b": float(pb), "delta": float(pa - pb), "low": lo, "high": hi,
            "n_a": int(a.sum()), "n_b": int(b.sum()), "n_boot": int(d.size)}


def paired_comparison(y_true, score_a, score_b, *, threshold: float = 0.5, n_boot: int = 2000, seed: int = 0) -> dict:
    """Two models on the same images: McNemar (errors at ``threshold``), paired bootstrap and DeLong
    tests of the ROC-AUC difference ``A − B``.

    Args:
        y_true: int [N] 0/1 labels. score_a, score_b: float [N] P(malignant) of models A and B on
            the same images, in the same order.

    Returns:
        flat dict: ``n``, ``acc_a``, ``acc_b``, ``mcnemar_b`` (A right, B wrong),
        ``mcnemar_c`` (A wrong, B right), ``mcnemar_p``, ``auc_a``, ``auc_b``, ``auc_delta``,
        ``auc_low``, ``auc_high``, ``auc_p`` (bootstrap), ``delong_p``.
    """
    y = np.asarray(y_true, dtype=np.int64)
    sa, sb = np.asarray(score_a, dtype=np.float64), np.asarray(score_b, dtype=np.float64)
    pa, pb = (sa >= threshold).astype(np.int64), (sb >= threshold).astype(np.int64)
    mc = M.mcnemar(y, pa, pb)
    ad = M.auc_difference(y, sa, sb, n_boot=n_boot, seed=seed)
    dl = M.delong_test(y, sa, sb)
    return {"n": int(y.size), "acc_a": float((pa == y).mean()), "acc_b": float((pb == y).mean()),
            "mcnemar_b": mc["b"], "mcnemar_c": mc["c"], "mcnemar_p": mc["p_value"],
            "auc_a": ad["auc_a"], "auc_b": ad["auc_b"], "auc_delta": ad["delta"], "auc_low": ad["low"],
            "auc_high": ad["high"], "auc_p": ad["p_value"], "delong_p": dl["p_value"]}


# =========================================================================== shift
def distribution_shift(internal: pd.DataFrame, external: pd.DataFrame,
                       columns: Sequence[str] = ("mean_r", "mean_g", "mean_b", "brightness", "contrast")) -> pd.DataFrame:
    """How far apart two sets of per-image statistics are (e.g. :func:`data.colour_statistics`).

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
    :func:`evaluate.evaluate_folder` or ``python -m skinlesion_utils evaluate`` on a folder that
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
    from PIL import Image

    from .data import ENV_DATA, to_rgb

    dest = Path(dest)
    data_root = os.environ.get(ENV_DATA)
    if data_root and (dest.resolve() == Path(data_root).resolve() or Path(data_root).resolve() in dest.resolve().parents):
        raise DataError(f"Refusing to write the demo folder {dest} inside the data folder {data_root} (read-only). "
                        "Fix: use a temporary folder, e.g. tempfile.mkdtemp().")
    if dest.exists() and any(dest.iterdir()):
        raise DataError(f"{dest} exists and is not empty. Fix: pass a new or empty folder.")
    if not sources:
        raise ValueError("sources is empty. Fix: pass at least one (image file, label) pair.")
    if not variants:
        raise ValueError("variants is empty. Fix: pass (suffix, mode, scale) triples, e.g. DEMO_VARIANTS.")
    rows = []
    for i, (src, label) in enumerate(sources):
        if int(label) not in (0, 1):
            raise ValueError(f"label of {src} is {label!r}; expected 0 (benign) or 1 (malignant).")
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


# =========================================================================== tables
def ci_columns(df: pd.DataFrame, metrics: Sequence[str], decimals: int = 3, keep: Sequence[str] = ()) -> pd.DataFrame:
    """Format ``<metric>``, ``<metric>_low``, ``<metric>_high`` columns as ``"0.812 [0.788, 0.835]"``.

    Args:
        df: e.g. :func:`subset_report` (or the same read back from a results file).
        metrics: the metric names to format, in the order wanted.
        decimals: digits after the point.
        keep: other columns to keep unchanged, placed first (e.g. ``("n",)``).

    Returns:
        DataFrame with the same index, columns ``keep`` then one string column per metric;
        ``"–"`` where the point value is NaN.
    """
    missing = [c for m in metrics for c in (m, f"{m}_low", f"{m}_high") if c not in df.columns]
    missing += [c for c in keep if c not in df.columns]
    if missing:
        raise KeyError(f"columns {missing} not in the table (it has {list(df.columns)}). "
                       "Fix: pass metrics that subset_report computed (its metrics= argument).")
    out = df[list(keep)].copy()
    for m in metrics:
        out[m] = [("–" if pd.isna(p) else f"{p:.{decimals}f} [{lo:.{decimals}f}, {hi:.{decimals}f}]")
                  for p, lo, hi in zip(df[m], df[f"{m}_low"], df[f"{m}_high"])]
    return out
