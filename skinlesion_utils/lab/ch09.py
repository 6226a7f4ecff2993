"""Checks of chapter 09's exercises (the reproduction audit).

* :func:`check_verdict` — Exercise 1 (★☆☆): the verdict on one claim from the paper's value, our
  95 % interval and whether our setting is the paper's.
* :func:`check_implied_accuracy` — Exercise 2 (★★☆): the accuracy that a printed recall and
  specificity imply on a test set with ``n_pos`` malignant and ``n_neg`` benign images.
* :func:`check_accuracy_range` — Exercise 3 (★★★): every accuracy that integer counts can give
  when recall and specificity are only known to their printed decimals (the smallest and the
  largest).

Each check compares the learner's function with a reference computed another way (a closed
``pandas.Interval``; :func:`skinlesion_utils.verdicts.accuracy_from_recall_specificity`, which
enumerates the confusion matrices) on made-up cases and on cases with the real test set's class
sizes (read from the packaged manifest), and prints ✅ or ❌ with a hint — never the expected values.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .. import data, paper
from ..verdicts import accuracy_from_recall_specificity
from . import Case, Check, as_float_pair, describe

# ----------------------------------------------------------------- Exercise 1: verdict


def _verdict_reference(paper_value: float, low: float, high: float, comparable: bool) -> str:
    if not comparable:
        return "not measurable here"
    return "reproduced" if paper_value in pd.Interval(low, high, closed="both") else "not reproduced"


_VERDICT_WORDS = ("reproduced", "not reproduced", "not measurable here")


def _verdict_compare(got, expected: str, case: Case) -> str | None:
    if isinstance(got, (bool, np.bool_)):
        return ("return the verdict as a string ('reproduced', 'not reproduced' or 'not measurable here'), "
                "not True/False.")
    if not isinstance(got, str):
        return f"return a string; got {describe(got)}."
    if got not in _VERDICT_WORDS:
        return f"return exactly one of {list(_VERDICT_WORDS)}; got a different string."
    if got == expected:
        return None
    paper_value, low, high, comparable = case.args
    if not comparable:
        return ("our setting is not the paper's here, so the interval says nothing about the claim: check "
                "`comparable` first.")
    if paper_value in (low, high):
        return "a value exactly on a bound is inside a closed interval: use <= on both sides."
    if expected == "reproduced":
        return "the paper's value lies between low and high here; check the comparison (low <= value <= high)."
    return "the paper's value lies outside [low, high] here; a value outside the interval is not reproduced."


def _wilson(k: int, n: int) -> tuple[float, float]:
    from statsmodels.stats.proportion import proportion_confint

    lo, hi = proportion_confint(k, n, alpha=0.05, method="wilson")
    return 100 * float(lo), 100 * float(hi)


def _verdict_cases() -> list[Case]:
    head = paper.claim("headline.accuracy").number
    lo, hi = _wilson(615, 660)
    lo2, hi2 = _wilson(560, 660)
    return [
        Case("a value in the middle of the interval, comparable setting", (93.2, 91.0, 95.0, True)),
        Case("a value below the interval, comparable setting", (88.0, 91.0, 95.0, True)),
        Case("a value above the interval, comparable setting", (96.5, 91.0, 95.0, True)),
        Case("a value exactly on the lower bound", (91.0, 91.0, 95.0, True)),
        Case("a value exactly on the upper bound", (0.9717, 0.90, 0.9717, True)),
        Case("a value inside the interval, but measured at 64 px from scratch", (93.2, 91.0, 95.0, False)),
        Case("a value outside the interval, measured at another setting", (50.0, 91.0, 95.0, False)),
        Case("the paper's headline against a Wilson interval of 615/660", (head, lo, hi, True)),
        Case("the paper's headline against a Wilson interval of 560/660", (head, lo2, hi2, True)),
    ]


def _verdict_real_cases() -> list[Case]:
    n_pos, n_neg = _test_sizes()
    lo, hi = _wilson(n_neg, n_pos + n_neg)  # the do-nothing classifier: every image benign
    n = n_pos + n_neg
    return [
        Case("the paper's headline against the interval of 'always benign' on the real test set",
             (paper.claim("headline.accuracy").number, lo, hi, True)),
        Case("the paper's test-set size against the real test set's image count",
             (paper.claim("data.test_total").number, float(n), float(n), True)),
    ]


check_verdict = Check(
    reference=_verdict_reference,
    cases=_verdict_cases,
    real_cases=_verdict_real_cases,
    compare=_verdict_compare,
    hint="first: is the setting comparable? then: low <= paper_value <= high.",
)
check_verdict.__doc__ = """Check Exercise 1: ``verdict(paper_value, low, high, comparable) -> str``.

Expected: ``"not measurable here"`` when ``comparable`` is False; otherwise ``"reproduced"`` when
``low <= paper_value <= high`` (bounds included) and ``"not reproduced"`` when not.
Prints ✅/❌; returns True/False."""

# ----------------------------------------------------------------- Exercise 2: implied accuracy


def _implied_reference(recall: float, specificity: float, n_pos: int, n_neg: int) -> float:
    return float(accuracy_from_recall_specificity(recall, specificity, n_pos, n_neg)["implied_accuracy"])


def _implied_compare(got, expected: float, case: Case) -> str | None:
    if isinstance(got, (tuple, list, np.ndarray, pd.Series)):
        return f"return one number (the accuracy in percent); got {describe(got)}."
    try:
        g = float(got)
    except (TypeError, ValueError):
        return f"return a number; got {describe(got)}."
    if math.isclose(g, expected, abs_tol=1e-9):
        return None
    recall, spec, n_pos, n_neg = case.args
    if math.isclose(g, expected / 100, abs_tol=1e-11):
        return "recall and specificity are given in percent; return the accuracy in percent too."
    if math.isclose(g, (recall + spec) / 2, abs_tol=1e-9):
        return ("that is the plain mean of recall and specificity (the balanced accuracy). Accuracy weighs each "
                "rate by the number of images of its class.")
    if math.isclose(g, (recall * n_neg + spec * n_pos) / (n_pos + n_neg), abs_tol=1e-9):
        return ("the weights are swapped: recall is measured on the malignant images (n_pos), specificity on the "
                "benign ones (n_neg).")
    if not (min(recall, spec) - 1e-9 <= g <= max(recall, spec) + 1e-9):
        return "a weighted mean of recall and specificity lies between the two; yours does not."
    return "the value differs from the reference: accuracy = (recall·n_pos + specificity·n_neg) / (n_pos + n_neg)."


def _test_sizes() -> tuple[int, int]:
    t = data.dataset_table("isic_balanced")  # counted in the packaged manifest
    return int(t.loc["test", "malignant"]), int(t.loc["test", "benign"])


def _implied_real_cases() -> list[Case]:
    n_pos, n_neg = _test_sizes()
    return [Case("recall 93.0 % and specificity 93.333 % on the real test set's class sizes", (93.0, 93.333, n_pos, n_neg)),
            Case("recall 100 % and specificity 0 % on the real test set's class sizes", (100.0, 0.0, n_pos, n_neg))]


check_implied_accuracy = Check(
    reference=_implied_reference,
    cases=[
        Case("recall 80 %, specificity 90 %, 300 malignant, 360 benign", (80.0, 90.0, 300, 360)),
        Case("equal rates (the class sizes cannot matter)", (75.0, 75.0, 10, 90)),
        Case("recall 100 %, specificity 50 %, 1 malignant, 99 benign", (100.0, 50.0, 1, 99)),
        Case("recall 60 %, specificity 95 %, 900 malignant, 100 benign", (60.0, 95.0, 900, 100)),
        Case("recall 91.333 %, specificity 94.722 %, 300 malignant, 360 benign", (91.333, 94.722, 300, 360)),
    ],
    real_cases=_implied_real_cases,
    compare=_implied_compare,
    hint="tp = recall·n_pos and tn = specificity·n_neg (in percent of each class); accuracy = (tp + tn) / all images.",
)
check_implied_accuracy.__doc__ = """Check Exercise 2: ``implied_accuracy(recall, specificity, n_pos, n_neg) -> float``.

``recall``, ``specificity``: percent; ``n_pos``/``n_neg``: malignant/benign test images. Expected:
``(recall·n_pos + specificity·n_neg) / (n_pos + n_neg)``, percent. Prints ✅/❌; returns True/False."""

# ----------------------------------------------------------------- Exercise 3: accuracy range


def _range_reference(recall: str, specificity: str, n_pos: int, n_neg: int) -> tuple[float, float]:
    r = accuracy_from_recall_specificity(recall, specificity, n_pos, n_neg)
    return float(r["accuracy_min"]), float(r["accuracy_max"])


def _range_compare(got, expected: tuple[float, float], case: Case) -> str | None:
    pair = as_float_pair(got)
    if pair is None:
        return f"return a tuple (lowest, highest) of two floats; got {describe(got)}."
    exp_nan = all(math.isnan(v) for v in expected)
    if exp_nan:
        if all(math.isnan(v) for v in pair):
            return None
        return ("no integer count rounds to one of the printed rates here, so no confusion matrix fits: return "
                "(nan, nan). Compare at the printed number of decimals.")
    if any(math.isnan(v) for v in pair):
        return ("you found no fitting counts, but some exist: a count fits when its exact rate lies within half a unit "
                "of the last printed digit (e.g. ±0.005 for two decimals).")
    if np.allclose(pair, expected, atol=1e-9):
        return None
    recall, spec, n_pos, n_neg = case.args
    if np.allclose(pair, [100 * v for v in expected[::-1]][::-1], atol=1e-6) or max(pair) <= 1.0 < max(expected):
        return "return percentages, like the printed rates."
    if pair[0] > pair[1]:
        return "return (lowest, highest): your first value is the larger one."
    implied = (float(recall) * n_pos + float(spec) * n_neg) / (n_pos + n_neg)
    if math.isclose(pair[0], implied, abs_tol=1e-9) and math.isclose(pair[1], implied, abs_tol=1e-9):
        return ("that is the accuracy of the printed rates taken as exact; the exercise asks for every accuracy that "
                "integer tp and tn can give whose rates round to the printed ones.")
    if pair[1] - pair[0] < expected[1] - expected[0] - 1e-9:
        return ("your range is too narrow: keep every tp (and tn) whose exact rate rounds to the printed value, not "
                "only the nearest one. Count the decimals on the string ('80.00' has two, '80' none).")
    return ("your range is too wide: a count fits only when its exact rate is within half a unit of the last printed "
            "digit. Count the decimals on the string: '90.0' has one, so ±0.05.")


def _range_real_cases() -> list[Case]:
    n_pos, n_neg = _test_sizes()
    return [Case("recall '93.0', specificity '93.3' on the real test set's class sizes", ("93.0", "93.3", n_pos, n_neg)),
            Case("recall '91', specificity '95' (no decimals) on the real test set's class sizes", ("91", "95", n_pos, n_neg))]


check_accuracy_range = Check(
    reference=_range_reference,
    cases=[
        Case("'80.00' and '90.00' on 300 malignant / 360 benign", ("80.00", "90.00", 300, 360)),
        Case("'80' and '90' (no decimals) on 300 malignant / 360 benign", ("80", "90", 300, 360)),
        Case("'90.0' and '90.0' on 1000 / 1000 images", ("90.0", "90.0", 1000, 1000)),
        Case("'33.34' and '50.0' on 3 malignant / 4 benign", ("33.34", "50.0", 3, 4)),
        Case("'50' and '100' on 7 malignant / 5 benign", ("50", "100", 7, 5)),
        Case("'66.7' and '60.0' on 3 / 5", ("66.7", "60.0", 3, 5)),
    ],
    real_cases=_range_real_cases,
    compare=_range_compare,
    hint="loop over tp in 0..n_pos and tn in 0..n_neg; keep those with |100·tp/n_pos − recall| ≤ half a unit of the "
         "last printed digit (same for tn), and take the min and max of 100·(tp + tn)/(n_pos + n_neg).",
)
check_accuracy_range.__doc__ = """Check Exercise 3: ``accuracy_range(recall, specificity, n_pos, n_neg) -> (low, high)``.

``recall``, ``specificity``: percent **as printed** (strings; trailing zeros count). Expected: the
smallest and largest accuracy (percent) over integer ``tp``, ``tn`` whose exact rates round to the
printed ones; ``(nan, nan)`` when none fits. Prints ✅/❌; returns True/False."""

__all__ = ["check_verdict", "check_implied_accuracy", "check_accuracy_range"]
