"""Checks of chapter 01's exercises (the data set and its leaks).

* :func:`check_majority_class_accuracy` — Exercise 1 (★☆☆): accuracy of the classifier that
  always answers the most frequent class (at the ISIC 2020 prevalence: the "all benign" model).
* :func:`check_hamming_distance` — Exercise 2 (★★☆): number of differing bits of two packed
  perceptual hashes (``np.packbits`` bytes, as in ``audit.HashTable.bits``).
* :func:`check_leaked_test_fraction` — Exercise 3 (★★★): the fraction of test rows whose
  patient is also in training, missing ids never matching (``audit.patient_overlap``).

Each check compares the learner's function with a reference computed another way
(scikit-learn's ``DummyClassifier``, ``np.unpackbits``, the package's ``audit.patient_overlap``)
on made-up cases and on cases built from the real data (the ISIC 2020 ground truth, hashes of
real images), and prints ✅ or ❌ with a hint — never the expected values.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
import pandas as pd

from .. import audit, data, splits
from . import Case, Check, describe

# ----------------------------------------------------------------- shared real data


@lru_cache(maxsize=1)
def _isic2020() -> pd.DataFrame:
    """The official ISIC 2020 training ground truth (33,126 rows); DataError when absent."""
    return pd.read_csv(data.locate("isic2020_metadata", download=False) / "ISIC_2020_Training_GroundTruth_v2.csv")


def _is_number(x) -> bool:
    return isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, (bool, np.bool_))


# ----------------------------------------------------------------- Exercise 1: majority class


def _majority_reference(labels) -> float:
    from sklearn.dummy import DummyClassifier

    y = np.asarray(labels)
    x = np.zeros((len(y), 1))
    return float(DummyClassifier(strategy="most_frequent").fit(x, y).score(x, y))


def _majority_compare(got, expected: float, case: Case) -> str | None:
    if not _is_number(got) and not (isinstance(got, np.ndarray) and got.shape == ()):
        return f"return one number (the accuracy, a float between 0 and 1); got {describe(got)}."
    value = float(got)
    if abs(value - expected) <= 1e-9:
        return None
    y = np.asarray(case.args[0])
    if abs(value - 100 * expected) <= 1e-6:
        return "return a fraction between 0 and 1, not a percentage."
    if abs(value - float(np.mean(y == 0))) <= 1e-9:
        return "you always predicted class 0; predict the class that is most frequent in the labels given."
    if abs(value - (1 - expected)) <= 1e-9:
        return "that is the accuracy of always predicting the *least* frequent class."
    if value > 1 or value < 0:
        return "an accuracy lies between 0 and 1; did you return a count instead of a fraction?"
    return "the accuracy differs from the reference."


def _majority_cases() -> list[Case]:
    rng = np.random.default_rng(1)
    return [
        Case("5 labels, 4 of them benign (0)", (np.array([0, 0, 1, 0, 0]),)),
        Case("7 labels, most of them malignant (1)", (np.array([1, 1, 0, 1, 1, 0, 1]),)),
        Case("every label the same", (np.zeros(9, dtype=np.int64),)),
        Case("1,000 random labels with 3 % malignant, as a pandas Series", (pd.Series((rng.random(1000) < 0.03).astype(int)),)),
    ]


def _majority_real_cases() -> list[Case]:
    meta = _isic2020()
    return [Case("the 33,126 'target' labels of the ISIC 2020 ground truth", (meta["target"].copy(),))]


check_majority_class_accuracy = Check(
    reference=_majority_reference,
    cases=_majority_cases,
    real_cases=_majority_real_cases,
    compare=_majority_compare,
    hint="find the most frequent label, then the fraction of labels equal to it (np.bincount or value_counts help).",
)
check_majority_class_accuracy.__doc__ = """Check Exercise 1: ``majority_class_accuracy(labels) -> float``.

``labels``: int array or Series [N] of 0 (benign) / 1 (malignant). Expected: the accuracy in
[0, 1] of always predicting the most frequent label. Prints ✅/❌; returns True/False."""

# ----------------------------------------------------------------- Exercise 2: Hamming distance


def _hamming_reference(h1: np.ndarray, h2: np.ndarray) -> int:
    return int(np.count_nonzero(np.unpackbits(np.asarray(h1, np.uint8)) != np.unpackbits(np.asarray(h2, np.uint8))))


def _hamming_compare(got, expected: int, case: Case) -> str | None:
    if not (_is_number(got) or (isinstance(got, np.ndarray) and got.shape == ())):
        return f"return one whole number (bits); got {describe(got)}."
    value = float(got)
    if value == expected:
        return None
    h1, h2 = (np.asarray(a, np.uint8) for a in case.args)
    if value != int(value):
        return "a number of bits is a whole number."
    if value == int(np.count_nonzero(h1 != h2)):
        return "you counted differing *bytes*; each byte holds 8 bits, count the bits that differ."
    if value == expected % 256:
        return "your count wrapped around at 256: sum in a wider type than uint8 (e.g. int64)."
    if value > 8 * h1.size:
        return f"two hashes of {h1.size} bytes differ in at most {8 * h1.size} bits."
    return "the number of differing bits differs from the reference."


def _hamming_cases() -> list[Case]:
    rng = np.random.default_rng(2)
    one_bit = np.zeros(8, dtype=np.uint8)
    one_bit[3] = 0b0001_0000
    a, b = rng.integers(0, 256, (2, 16), dtype=np.uint8)
    return [
        Case("two identical 8-byte hashes", (np.arange(8, dtype=np.uint8), np.arange(8, dtype=np.uint8))),
        Case("two 8-byte hashes that differ in one bit", (np.zeros(8, dtype=np.uint8), one_bit)),
        Case("0x0F against 0xF0 in every byte", (np.full(8, 0x0F, np.uint8), np.full(8, 0xF0, np.uint8))),
        Case("two random 16-byte (128-bit) hashes", (a, b)),
        Case("two 64-byte hashes that differ in every bit", (np.zeros(64, dtype=np.uint8), np.full(64, 255, np.uint8))),
    ]


def _hamming_real_cases() -> list[Case]:
    root = data.locate("isic_balanced", download=False)
    files = sorted((root / "test" / "malignant").glob("*.jpg"))[:2]
    bits = audit.compute_hashes(files, progress=False).bits[:, 0]  # whole-image view, 16 bytes
    return [Case("the 128-bit pHash+dHash of two real test images", (bits[0].copy(), bits[1].copy()))]


check_hamming_distance = Check(
    reference=_hamming_reference,
    cases=_hamming_cases,
    real_cases=_hamming_real_cases,
    compare=_hamming_compare,
    hint="XOR the two byte arrays (np.bitwise_xor): a 1 bit marks a difference; then count the 1 bits "
    "(np.unpackbits, or np.bitwise_count in numpy >= 2).",
)
check_hamming_distance.__doc__ = """Check Exercise 2: ``hamming_distance(h1, h2) -> int``.

``h1, h2``: uint8 [n_bytes], hashes packed with ``np.packbits``. Expected: the number of bits
that differ (0 .. 8·n_bytes). Prints ✅/❌; returns True/False."""

# ----------------------------------------------------------------- Exercise 3: leaked fraction


def _leak_reference(train: pd.DataFrame, test: pd.DataFrame, group_col: str) -> float:
    return float(splits.patient_overlap(train, test, group_col).leaked_fraction)


def _leak_compare(got, expected: float, case: Case) -> str | None:
    if not (_is_number(got) or (isinstance(got, np.ndarray) and got.shape == ())):
        return f"return one number (a fraction between 0 and 1); got {describe(got)}."
    value = float(got)
    if np.isnan(value):
        return "your result is NaN; an empty test table leaks nothing (0.0)."
    if abs(value - expected) <= 1e-9:
        return None
    train, test, col = case.args
    if abs(value - 100 * expected) <= 1e-6 and expected:
        return "return a fraction between 0 and 1, not a percentage."
    naive = float(test[col].isin(train[col]).mean()) if len(test) else 0.0
    if abs(value - naive) <= 1e-9:
        return "rows with a missing id were counted as leaked: NaN must never match NaN (drop missing ids before comparing)."
    shared = set(train[col].dropna()) & set(test[col].dropna())
    if len(test) and abs(value - len(shared) / max(1, test[col].nunique())) <= 1e-9:
        return "that is the fraction of test *patients* that are shared; the exercise asks for the fraction of test *rows*."
    if test[col].notna().any() and abs(value - float(test[col].dropna().isin(shared).mean())) <= 1e-9:
        return "divide by every test row, including rows whose id is missing."
    if value > 1 or value < 0:
        return "a fraction lies between 0 and 1."
    return "the fraction differs from the reference."


def _frame(ids: list, col: str = "patient_id") -> pd.DataFrame:
    return pd.DataFrame({col: pd.Series(ids, dtype=object), "target": np.arange(len(ids)) % 2})


def _leak_cases() -> list[Case]:
    return [
        Case("a clean split (no patient on both sides)", (_frame(["p1", "p1", "p2"]), _frame(["p3", "p4"]), "patient_id")),
        Case("one patient with 3 test rows, also in train", (_frame(["p1", "p2"]), _frame(["p1", "p1", "p1", "p9"]), "patient_id")),
        Case("missing ids on both sides", (_frame(["p1", None, "p2"]), _frame([None, None, "p2", "p2", "p5"]), "patient_id")),
        Case("an empty test table", (_frame(["p1"]), _frame([]), "patient_id")),
        Case("ids in a column named 'lesion_id'", (_frame(["L1", "L2"], "lesion_id"), _frame(["L2", "L3", "L2"], "lesion_id"), "lesion_id")),
    ]


def _leak_real_cases() -> list[Case]:
    from sklearn.model_selection import train_test_split

    meta = _isic2020()
    train, test = train_test_split(meta, test_size=0.2, random_state=0, stratify=meta["target"])
    small = meta.iloc[::50]
    return [
        Case("a naive image-level 80/20 split of the ISIC 2020 ground truth", (train, test, "patient_id")),
        Case("every 50th ISIC 2020 row vs the rest, by lesion", (meta.drop(small.index), small, "lesion_id")),
    ]


check_leaked_test_fraction = Check(
    reference=_leak_reference,
    cases=_leak_cases,
    real_cases=_leak_real_cases,
    compare=_leak_compare,
    hint="collect the ids of train (without missing values) in a set, then count the test rows whose id is in it.",
)
check_leaked_test_fraction.__doc__ = """Check Exercise 3: ``leaked_test_fraction(train, test, group_col) -> float``.

``train``, ``test``: DataFrames with a ``group_col`` column (patient or lesion ids, possibly
missing). Expected: the fraction in [0, 1] of test rows whose id also occurs in train; missing
ids never match; 0.0 for an empty test table. Prints ✅/❌; returns True/False."""

__all__ = ["check_majority_class_accuracy", "check_hamming_distance", "check_leaked_test_fraction"]
