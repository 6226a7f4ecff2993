"""Who goes where: subsets and splits of the images (defined in chapter 01, used by 02, 04–08).

* :func:`split_labels`, :func:`stratified_subset` — a dataset split's labels from its manifest
  and a fixed class-stratified subset of it (the ``ci`` many-model budget of chapters 02 and 06).
* :func:`per_class_subset` — a seeded sample with the same number of images per class
  (chapter 07's Grad-CAM images).
* :func:`train_val_split` — the validation split carved from the training store (every run).
* :func:`grouped_split`, :func:`balanced_sample`, :func:`patient_overlap` — splits that keep a
  patient (or a near-duplicate cluster) on one side, and the check that they did (chapter 01).
* :func:`external_split` — which split of the released external set (``data3/train`` or
  ``data3/test``) an external image comes from (chapter 08).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold, train_test_split

from .errors import ConfigError
from .data import get_spec, labels_of, split_files


def require_columns(df: pd.DataFrame, *cols: str) -> None:
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise KeyError(f"Column(s) {missing} not in the table; it has {list(df.columns)}. Fix: pass existing column names.")


def split_labels(name: str, split: str | None = None) -> np.ndarray:
    """Labels (0 benign, 1 malignant) of a dataset split, read from its manifest (no decoding),
    in the order of ``ImageTensorStore.from_dataset(name, split)``: sorted relative paths.

    Raises:
        DataError: an unknown split (naming the valid ones).
    """
    return np.array(labels_of(split_files(get_spec(name), split)), dtype=np.int64)


def stratified_subset(name: str, split: str | None, n: int, seed: int = 0) -> list[int]:
    """A fixed, class-stratified subset of ``n`` images of a dataset split (chapters 02 and 06
    train the `ci` profile's many models on it, see ``Profile.bench_train_images``).

    Args:
        name, split: the dataset and split (as for ``ImageTensorStore.from_dataset``).
        n: number of images, from 2 up to the split's size (the whole split is returned as is).
        seed: the subset's seed; the same arguments always give the same indices.

    Returns:
        Sorted indices into the split's store order; class ratio that of the split (± 1 image).

    Raises:
        ValueError: ``n`` is below 2 or above the split's size.
    """
    labels = split_labels(name, split)
    if not 2 <= n <= len(labels):
        raise ConfigError(
            f"A subset of {n} images of {name}/{split or 'all'} is impossible: the split holds {len(labels)}. "
            f"Fix: choose n between 2 and {len(labels)}."
        )
    if n == len(labels):
        return list(range(n))
    chosen, _ = train_test_split(np.arange(len(labels)), train_size=n, stratify=labels, random_state=seed)
    return sorted(int(i) for i in chosen)


def per_class_subset(labels, per_class: int, seed: int = 0) -> np.ndarray:
    """A seeded random subset with ``per_class`` images of each class: ``int64`` indices, sorted.

    Raises:
        ValueError: a class has fewer than ``per_class`` images.
    """
    y = np.asarray(labels.detach().cpu().numpy() if hasattr(labels, "detach") else labels)
    rng = np.random.default_rng(seed)
    picks = []
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        if len(idx) < per_class:
            raise ConfigError(f"class {c} has {len(idx)} images, fewer than per_class={per_class}.")
        picks.append(rng.choice(idx, size=per_class, replace=False))
    return np.sort(np.concatenate(picks)).astype(np.int64)


def train_val_split(store, val_fraction: float = 0.15, seed: int = 0):
    """Carve a stratified validation store out of a training store.

    Args:
        store: an ``ImageTensorStore`` (N images).
        val_fraction: share of the images that go to validation, in (0, 1).
        seed: split seed.

    Returns:
        ``(train_store, val_store)``; both keep the class ratio of ``store`` (± 1 image).
    """
    if not 0 < val_fraction < 1:
        raise ConfigError(f"val_fraction must be in (0, 1); found {val_fraction}.")
    idx = np.arange(len(store))
    tr, va = train_test_split(idx, test_size=val_fraction, stratify=store.labels.numpy(), random_state=seed)
    return store.subset(np.sort(tr)), store.subset(np.sort(va))


def grouped_split(
    df: pd.DataFrame, group_col: str, label_col: str, test_size: float = 0.2, seed: int = 0
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split rows into train/test so that no group is on both sides, stratified by label.

    Uses scikit-learn's ``StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)``
    with ``k = round(1 / test_size)`` and returns its first fold as the test set, so the
    test fraction is about ``1/k`` (0.2 → 5 folds → ~20 %); the class ratios of both sides
    stay close to the whole table's as far as the group sizes allow.

    Args:
        df: one row per image.
        group_col: patient id, lesion id, or a duplicate cluster (:func:`duplicate_clusters`).
        label_col: class label column.
        test_size: wanted test fraction, in (0, 0.5].
        seed: seeds the shuffle; the same seed gives the same split.

    Returns:
        ``(train_df, test_df)``: row subsets of ``df`` in its original order (index kept).

    Raises:
        ValueError: missing group ids, fewer groups than folds, or a bad ``test_size``.
    """
    require_columns(df, group_col, label_col)
    if not 0 < test_size <= 0.5:
        raise ConfigError(f"test_size={test_size}: expected a fraction in (0, 0.5], e.g. 0.2.")
    n_missing = int(df[group_col].isna().sum())
    if n_missing:
        raise ConfigError(
            f"{n_missing} row(s) have no {group_col!r}. A missing id would put possibly-related "
            "images on both sides. Fix: fill them, e.g. with duplicate clusters "
            "(duplicate_clusters(find_near_duplicates(files), files)) or one unique id per row "
            "if you know the images are unrelated."
        )
    if df[label_col].isna().any():
        raise ConfigError(f"Column {label_col!r} has missing labels. Fix: drop or label those rows first.")
    k = max(2, round(1 / test_size))
    n_groups = df[group_col].nunique()
    if n_groups < k:
        raise ConfigError(f"Only {n_groups} distinct {group_col!r} value(s); need at least {k} groups for test_size={test_size}.")
    splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    y = pd.factorize(df[label_col], sort=True)[0]
    groups = pd.factorize(df[group_col], sort=True)[0]
    train_idx, test_idx = next(splitter.split(np.zeros(len(df)), y, groups))
    return df.iloc[np.sort(train_idx)], df.iloc[np.sort(test_idx)]


def balanced_sample(
    df: pd.DataFrame,
    label_col: str,
    n_per_class: int | Mapping[object, int] | None = None,
    *,
    ratio: Mapping[object, float] | None = None,
    seed: int = 0,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Seeded class-balanced (or fixed-ratio) random sample of a metadata table.

    Exactly one way to say how many rows each class keeps:

    * ``n_per_class=None, ratio=None`` — every class down to the smallest class's count;
    * ``n_per_class=int`` — that many of every class; a mapping gives one count per class;
    * ``ratio={label: weight}`` — the largest sample with those proportions, e.g.
      ``{"benign": 1800, "malignant": 1497}`` (the paper's ratio).

    Args:
        df: table with one row per image.
        label_col: class column.
        seed: ``numpy.random.default_rng(seed)`` draws the rows, classes in sorted order.

    Returns:
        ``(sample, report)``: ``sample`` — the kept rows in ``df``'s original order;
        ``report`` — one row per class (index = label) with ``available``, ``kept``,
        ``dropped`` and ``kept_fraction``.

    Raises:
        ValueError: a class asked for more rows than it has, unknown labels, both
        ``n_per_class`` and ``ratio`` given.
    """
    require_columns(df, label_col)
    if n_per_class is not None and ratio is not None:
        raise ConfigError("Give n_per_class or ratio, not both.")
    counts = df[label_col].value_counts().sort_index()
    labels = list(counts.index)
    if isinstance(n_per_class, Mapping) or isinstance(ratio, Mapping):
        given = n_per_class if n_per_class is not None else ratio
        unknown = [k for k in given if k not in counts.index]
        absent = [k for k in labels if k not in given]
        if unknown or absent:
            raise ConfigError(
                f"Classes {list(given)} do not match the table's classes {labels} "
                f"(unknown: {unknown}, not given: {absent}). Fix: give one entry per class."
            )
    if ratio is not None:
        w = pd.Series({k: float(ratio[k]) for k in labels})
        if (w <= 0).any():
            raise ConfigError(f"ratio weights must be positive, got {dict(w)}.")
        scale = float((counts / w).min())  # the class that runs out first sets the size
        want = {k: int(np.floor(w[k] * scale + 1e-9)) for k in labels}
    elif n_per_class is None:
        want = {k: int(counts.min()) for k in labels}
    elif isinstance(n_per_class, Mapping):
        want = {k: int(n_per_class[k]) for k in labels}
    else:
        want = {k: int(n_per_class) for k in labels}
    short = {k: (want[k], int(counts[k])) for k in labels if want[k] > counts[k] or want[k] < 0}
    if short:
        raise ConfigError(
            "Cannot draw that many rows: "
            + ", ".join(f"class {k!r} wants {w} but has {c}" for k, (w, c) in short.items())
            + ". Fix: lower n_per_class (or use ratio=...)."
        )
    rng = np.random.default_rng(seed)
    values = df[label_col].to_numpy()
    chosen = []
    for k in labels:
        pos = np.flatnonzero(values == k)
        chosen.append(rng.choice(pos, size=want[k], replace=False))
    keep = np.sort(np.concatenate(chosen)) if chosen else np.array([], dtype=np.int64)
    sample = df.iloc[keep]
    kept = pd.Series(want)
    report = pd.DataFrame({"available": counts, "kept": kept, "dropped": counts - kept})
    report["kept_fraction"] = report["kept"] / report["available"]
    report.index.name = label_col
    return sample, report


@dataclass(frozen=True)
class GroupOverlap:
    """How much of a test set shares a group (patient, lesion) with its training set.

    Attributes:
        shared: the group ids present on both sides (sorted).
        train_groups, test_groups: distinct ids per side (missing ids not counted).
        test_rows: rows of the test table.
        test_rows_leaked: test rows whose group is also in train.
    """

    shared: tuple
    train_groups: int
    test_groups: int
    test_rows: int
    test_rows_leaked: int

    @property
    def n_shared(self) -> int:
        return len(self.shared)

    @property
    def leaked_fraction(self) -> float:
        """Fraction of test rows whose group also appears in training (0 for a clean split)."""
        return self.test_rows_leaked / self.test_rows if self.test_rows else 0.0

    def __str__(self) -> str:
        return (
            f"{self.n_shared} of {self.test_groups} test groups also in train; "
            f"{self.test_rows_leaked}/{self.test_rows} test rows ({self.leaked_fraction:.1%}) leak"
        )


def patient_overlap(train_df: pd.DataFrame, test_df: pd.DataFrame, group_col: str) -> GroupOverlap:
    """Groups (e.g. ``patient_id``) that appear in both ``train_df`` and ``test_df``.

    Rows with a missing id cannot be matched and are not counted as leaked.
    """
    require_columns(train_df, group_col)
    require_columns(test_df, group_col)
    tr = set(train_df[group_col].dropna())
    te = set(test_df[group_col].dropna())
    shared = tr & te
    leaked = int(test_df[group_col].isin(shared).sum())
    return GroupOverlap(tuple(sorted(shared, key=str)), len(tr), len(te), len(test_df), leaked)


# ----------------------------------------------------------------------------- data sets, copies


def external_split(ids: Sequence[str]) -> pd.Series:
    """Which split of the released external set (the repository's ``data3/train`` or
    ``data3/test``) each external image belongs to (chapter 08).

    Ids of the full set (``test/benign/ISIC_0000064.jpg``) carry it; ids of the course sample
    (``benign/ISIC_0000014.jpg``) are looked up by file name in the full set's manifest.

    Returns:
        Series of ``"train"`` / ``"test"`` (``""`` where the name is not in the full set),
        indexed by id.
    """
    by_name = {}
    for rel in get_spec("isic2019_external").manifest_entries():
        parts = PurePosixPath(rel).parts
        by_name[parts[-1]] = parts[0]
    out = []
    for i in map(str, ids):
        parts = PurePosixPath(i).parts
        out.append(parts[0] if parts[0] in ("train", "test") else by_name.get(parts[-1], ""))
    return pd.Series(out, index=pd.Index(list(map(str, ids)), name="id"), name="data3_split")
