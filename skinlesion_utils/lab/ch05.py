"""Checks of chapter 05's exercises (evaluating a classifier honestly).

* :func:`check_sensitivity_specificity` — Exercise 1 (★☆☆): sensitivity and specificity from a
  2×2 confusion matrix in scikit-learn's layout ``[[tn, fp], [fn, tp]]``.
* :func:`check_is_achievable` — Exercise 2 (★★☆): can a percentage printed with ``d``
  decimals be ``k / n`` for an integer ``k``?
* :func:`check_bootstrap_accuracy_ci` — Exercise 3 (★★☆): a percentile-bootstrap 95 %
  interval for accuracy, by hand.

Each check compares the learner's function with a reference computed another way
(scikit-learn's recall on the expanded labels, :func:`skinlesion_utils.verdicts.nearest_fraction`,
``scipy.stats.bootstrap``) on made-up cases and on cases built from the real test images (a
"darker lesion = malignant" rule, so no trained model is needed), and prints ✅ or ❌ with a hint —
never the expected values.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

from .. import data
from ..data import ImageTensorStore
from ..verdicts import nearest_fraction
from . import Case, Check, as_float_pair, describe

# ----------------------------------------------------------------- real data: a darkness rule


@lru_cache(maxsize=1)
def _darkness_rule() -> tuple[np.ndarray, np.ndarray]:
    """(labels int [660], predictions int [660]) of "darker than the median = malignant" on the
    real test images at 64 px — a weak but real classifier."""
    test = ImageTensorStore.from_dataset("isic_balanced", split="test", resolution=64, progress=False)
    brightness = test.images.float().mean(dim=(1, 2, 3)).numpy()
    pred = (brightness < np.median(brightness)).astype(np.int64)
    return test.labels.numpy().astype(np.int64), pred


def _real_confusion() -> np.ndarray:
    from sklearn.metrics import confusion_matrix

    y, pred = _darkness_rule()
    return confusion_matrix(y, pred, labels=[0, 1])


# ----------------------------------------------------------------- Exercise 1: sens / spec


def _sens_spec_reference(cm: np.ndarray) -> tuple[float, float]:
    from sklearn.metrics import recall_score

    cm = np.asarray(cm)
    y_true = np.repeat([0, 0, 1, 1], cm.ravel())
    y_pred = np.repeat([0, 1, 0, 1], cm.ravel())
    sens = recall_score(y_true, y_pred, pos_label=1, zero_division=0)
    spec = recall_score(y_true, y_pred, pos_label=0, zero_division=0)
    return float(sens), float(spec)


def _sens_spec_compare(got, expected: tuple[float, float], case: Case) -> str | None:
    pair = as_float_pair(got)
    if pair is None:
        return f"return a tuple (sensitivity, specificity) of two floats; got {describe(got)}."
    if np.allclose(pair, expected, atol=1e-9):
        return None
    cm = np.asarray(case.args[0], dtype=float)
    (tn, fp), (fn, tp) = cm
    if np.allclose(pair, expected[::-1], atol=1e-9):
        return "the two values are swapped: return (sensitivity, specificity) in that order."
    if np.allclose(pair, 100 * np.asarray(expected), atol=1e-6):
        return "return fractions between 0 and 1, not percentages."
    with np.errstate(divide="ignore", invalid="ignore"):
        ppv, npv = tp / (tp + fp), tn / (tn + fn)
    if np.isclose(pair[0], ppv) or np.isclose(pair[1], npv):
        return ("you divided by a column (the images *predicted* malignant or benign) — that is precision "
                "or NPV. Sensitivity and specificity divide by a row: the images that *are* malignant or benign.")
    if max(pair) > 1 or min(pair) < 0:
        return "a rate lies between 0 and 1; one of yours does not."
    return "at least one of the two values differs from the reference. Rows are the true class, columns the prediction."


check_sensitivity_specificity = Check(
    reference=_sens_spec_reference,
    cases=[
        Case("a 10-image matrix [[4, 2], [1, 3]]", (np.array([[4, 2], [1, 3]]),)),
        Case("a matrix with no false positives", (np.array([[50, 0], [7, 43]]),)),
        Case("a 660-image matrix with 300 malignant and 360 benign", (np.array([[331, 29], [16, 284]]),)),
        Case("a classifier that calls every image malignant", (np.array([[0, 360], [0, 300]]),)),
    ],
    real_cases=lambda: [Case("the confusion matrix of a darkness rule on the 660 real test images", (_real_confusion(),))],
    compare=_sens_spec_compare,
    hint="cm = [[tn, fp], [fn, tp]]: row 0 = truly benign, row 1 = truly malignant; column = the prediction.",
)
check_sensitivity_specificity.__doc__ = """Check Exercise 1: ``sensitivity_specificity(cm) -> (float, float)``.

``cm``: int [2, 2], ``[[tn, fp], [fn, tp]]`` (rows true class, columns prediction; malignant =
positive). Expected: ``(tp / (tp + fn), tn / (tn + fp))``. Prints ✅/❌; returns True/False."""

# ----------------------------------------------------------------- Exercise 2: k / n achievable


def _achievable_reference(printed: str, n: int) -> bool:
    return bool(nearest_fraction(printed, n)["consistent"])


def _achievable_compare(got, expected: bool, case: Case) -> str | None:
    if not isinstance(got, (bool, np.bool_)):
        return f"return True or False; got {describe(got)}."
    if bool(got) == expected:
        return None
    printed, n = case.args
    if "." in printed and printed.endswith("0") and got:
        return (f"{printed!r} is printed with {len(printed.split('.')[1])} decimals: its trailing zero counts. "
                "float() forgets it, so count the decimals on the string.")
    if expected and not got:
        return ("a printed value is rounded: ask whether some 100·k/n rounds to it at the printed number of "
                "decimals (within half a unit of the last digit), not whether it equals it exactly.")
    return ("some value was accepted that no k/n rounds to. Allow a distance of at most half a unit of the "
            "last printed digit (0.0005 for three decimals), and try every k from 0 to n.")


def _achievable_real_cases() -> list[Case]:
    counts = data.dataset_table("isic_balanced")
    n_test = int(counts.loc["test", "total"])
    return [Case("the v2 headline '93.182' on the real test set's size", ("93.182", n_test)),
            Case("'90.958' on the real test set's size", ("90.958", n_test))]


check_is_achievable = Check(
    reference=_achievable_reference,
    cases=[
        Case("'80.15' on 660 images", ("80.15", 660)),
        Case("'80.15' on 3297 images", ("80.15", 3297)),
        Case("'93.20' on 660 images (mind the trailing zero)", ("93.20", 660)),
        Case("'93.2' on 660 images", ("93.2", 660)),
        Case("'14.29' on 7 images", ("14.29", 7)),
        Case("'14.28' on 7 images", ("14.28", 7)),
        Case("'100' on 7 images", ("100", 7)),
        Case("'33.3' on 3 images", ("33.3", 3)),
    ],
    real_cases=_achievable_real_cases,
    compare=_achievable_compare,
    hint="with d decimals, p is achievable when |100·k/n − p| ≤ 0.5·10^(−d) for some integer k in 0..n.",
)
check_is_achievable.__doc__ = """Check Exercise 2: ``is_achievable(printed, n) -> bool``.

``printed``: a percentage as printed (str, trailing zeros count), ``n``: images. Expected: True
when some integer ``k`` in ``0..n`` has ``100 k / n`` within half a unit of the last printed digit.
Prints ✅/❌; returns True/False."""

# ----------------------------------------------------------------- Exercise 3: bootstrap CI


def _ci_reference(correct: np.ndarray, n_boot: int = 2000, seed: int = 0) -> tuple[float, float]:
    from scipy import stats

    x = np.asarray(correct, dtype=float)
    if np.all(x == x[0]):  # scipy refuses a degenerate sample; every resample has the same mean
        return float(x[0]), float(x[0])
    res = stats.bootstrap((x,), np.mean, n_resamples=n_boot, confidence_level=0.95, method="percentile",
                          random_state=np.random.default_rng(seed), vectorized=True)
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def _ci_compare(got, expected: tuple[float, float], case: Case) -> str | None:
    pair = as_float_pair(got)
    if pair is None:
        return f"return a tuple (low, high) of two floats; got {describe(got)}."
    low, high = pair
    correct = np.asarray(case.args[0], dtype=float)
    n, acc = correct.size, correct.mean()
    if np.allclose(pair, 100 * np.asarray(expected), atol=1.0) and expected[1] > 0.05:
        return "return fractions between 0 and 1, not percentages."
    if low > high:
        return "low is above high: return (lower bound, upper bound)."
    if not (low - 1e-9 <= acc <= high + 1e-9):
        return "your interval does not contain the accuracy measured on all images; check which percentiles you take."
    tol = 2.5 / n  # two correct bootstraps differ by Monte-Carlo noise: up to 2 steps of 1/n here
    if abs(low - expected[0]) <= tol and abs(high - expected[1]) <= tol:
        return None
    if high - low < 1e-12 and 0 < acc < 1:
        return ("your interval has zero width: each resample must draw n images WITH replacement "
                "(rng.integers(0, n, n) or rng.choice(n, n, replace=True)), not a permutation.")
    if (high - low) > (expected[1] - expected[0]) + 2 * tol:
        return "your interval is too wide: take the 2.5th and 97.5th percentiles of the resampled accuracies."
    return ("your interval is too narrow: take the 2.5th and 97.5th percentiles (a 95 % interval) of resamples "
            "that each draw n images with replacement.")


def _ci_cases() -> list[Case]:
    rng = np.random.default_rng(0)
    paper_like = np.r_[np.ones(615, bool), np.zeros(45, bool)]
    rng.shuffle(paper_like)
    small = np.r_[np.ones(40, bool), np.zeros(10, bool)]
    rng.shuffle(small)
    middle = np.r_[np.ones(240, bool), np.zeros(160, bool)]
    rng.shuffle(middle)
    return [
        Case("660 predictions of which 615 are right, 10000 resamples", (paper_like,), {"n_boot": 10000}),
        Case("50 predictions of which 40 are right", (small,)),
        Case("30 predictions, half of them right", (np.tile([True, False], 15),)),
        Case("200 predictions, all right", (np.ones(200, bool),)),
        Case("400 predictions of which 240 are right, 10000 resamples, seed 7", (middle,), {"n_boot": 10000, "seed": 7}),
    ]


def _ci_real_cases() -> list[Case]:
    y, pred = _darkness_rule()
    return [Case("which of the 660 real test images a darkness rule gets right, 10000 resamples", (pred == y,),
                 {"n_boot": 10000})]


check_bootstrap_accuracy_ci = Check(
    reference=_ci_reference,
    cases=_ci_cases,
    real_cases=_ci_real_cases,
    compare=_ci_compare,
    hint="draw n_boot resamples of n indices with replacement, take the mean of `correct` in each, then the "
         "2.5th and 97.5th percentiles (np.percentile).",
)
check_bootstrap_accuracy_ci.__doc__ = """Check Exercise 3: ``bootstrap_accuracy_ci(correct, n_boot=2000, seed=0) -> (low, high)``.

``correct``: bool [N], whether each prediction is right. Expected: the 95 % percentile-bootstrap
interval of the accuracy, fractions, within Monte-Carlo tolerance of ``scipy.stats.bootstrap``.
Prints ✅/❌; returns True/False."""

__all__ = ["check_sensitivity_specificity", "check_is_achievable", "check_bootstrap_accuracy_ci"]
