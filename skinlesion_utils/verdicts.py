"""Verdicts on numbers: can a printed percentage be ``k / n``, and does a result pass its floor.

Taught in chapter 05 (``chapters/05_evaluation``: a test set of ``n`` images allows only the
accuracies ``100 k / n``, so a printed value that no ``k`` rounds to cannot be an accuracy on
it); :mod:`skinlesion_utils.paper` builds the paper's arithmetic checks (chapter 09) on these
functions, and chapters 02 and 06 assert their performance floors with :func:`floors_table`.

What lives here:

* paper arithmetic — :func:`achievable_accuracies`, :func:`nearest_fraction`,
  :func:`accuracy_from_recall_specificity` and :func:`achievability_table` (the paper's
  printed accuracies against ``k / n``, with their neighbours);
* :func:`floors_table` — the floors a chapter asserts beside what its execution measured.

Percentages here are as papers print them (in ``[0, 100]``; a string keeps its trailing zeros,
``"93.10"`` is read at 2 decimals); the measured metrics of :mod:`skinlesion_utils.metrics`
are fractions.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from decimal import Decimal

import numpy as np
import pandas as pd

__all__ = [
    "achievable_accuracies",
    "nearest_fraction",
    "accuracy_from_recall_specificity",
    "achievability_table",
    "floors_table",
]


# =========================================================================== paper arithmetic
def _decimals_of(value) -> int:
    """Decimal places as printed: ``"93.10"`` -> 2, ``93.182`` -> 3 (shortest float repr)."""
    d = Decimal(value if isinstance(value, str) else repr(float(value)))
    return max(0, -d.as_tuple().exponent)


def _percent(value, name: str) -> float:
    v = float(value)
    if not 0.0 <= v <= 100.0:
        raise ValueError(f"{name}: expected a percentage in [0, 100] as printed in the paper, "
                         f"found {value!r}.")
    return v


def _rounds_to(exact_percent: np.ndarray | float, value: float, decimals: int) -> np.ndarray:
    """Does the exact percentage round (half up or half even, either) to ``value``?"""
    half = 0.5 * 10.0 ** (-decimals)
    return np.abs(np.asarray(exact_percent) - value) <= half + 1e-9


def achievable_accuracies(n: int) -> np.ndarray:
    """All accuracies possible on ``n`` images: ``100 * k / n`` for ``k = 0..n``, percent [n+1]."""
    if int(n) != n or n < 1:
        raise ValueError(f"n must be a positive integer (number of test images), got {n!r}.")
    return 100.0 * np.arange(int(n) + 1) / int(n)


def nearest_fraction(value_percent, n: int, decimals: int | None = None) -> dict:
    """Is a reported percentage ``k / n`` for some integer ``k``?

    Args:
        value_percent: the value as printed, in percent (a string keeps trailing zeros,
            e.g. ``"93.10"``).
        n: denominator (e.g. 660 test images).
        decimals: decimal places it was rounded to; default: as many as printed.

    Returns:
        ``dict(k, n, exact, gap, decimals, consistent, candidates)``: the nearest ``k``, its
        exact percentage ``100 k / n``, ``gap = value - exact`` in percentage points,
        whether some ``k`` rounds to the printed value (``consistent``) and all such ``k``.
    """
    v = _percent(value_percent, "value_percent")
    d = _decimals_of(value_percent) if decimals is None else int(decimals)
    acc = achievable_accuracies(n)
    k = int(np.argmin(np.abs(acc - v)))
    cands = np.flatnonzero(_rounds_to(acc, v, d)).tolist()
    return {"k": k, "n": int(n), "exact": float(acc[k]), "gap": float(v - acc[k]),
            "decimals": d, "consistent": bool(cands), "candidates": cands}


def accuracy_from_recall_specificity(recall, specificity, n_pos: int, n_neg: int,
                                     accuracy=None, decimals: int | None = None) -> dict:
    """Which confusion matrices fit a paper's rounded recall and specificity?

    Accuracy is the class-size-weighted mean of recall and specificity:
    ``acc = (recall * n_pos + specificity * n_neg) / (n_pos + n_neg)``.

    Args:
        recall, specificity: as printed, in percent (strings keep trailing zeros).
        n_pos, n_neg: malignant and benign test images (300 and 360 in the paper's test split).
        accuracy: optionally the printed accuracy (percent), to check against the candidates.
        decimals: decimal places of the printed values; default: as printed, per value.

    Returns:
        dict with ``implied_accuracy`` (percent, from the printed values as if exact),
        ``candidates`` (DataFrame of every integer ``tp, tn`` whose exact recall and
        specificity round to the printed ones, with the exact ``recall, specificity,
        accuracy`` in percent), ``accuracy_min``/``accuracy_max`` over candidates (NaN if
        none), ``consistent`` (any candidate), and, when ``accuracy`` is given,
        ``accuracy_consistent`` (some candidate's accuracy rounds to it).
    """
    r = _percent(recall, "recall")
    sp = _percent(specificity, "specificity")
    n_pos, n_neg = int(n_pos), int(n_neg)
    if n_pos < 1 or n_neg < 1:
        raise ValueError(f"n_pos and n_neg must be positive image counts, got {n_pos}, {n_neg}.")
    dr = _decimals_of(recall) if decimals is None else int(decimals)
    ds = _decimals_of(specificity) if decimals is None else int(decimals)
    tps = np.flatnonzero(_rounds_to(100.0 * np.arange(n_pos + 1) / n_pos, r, dr))
    tns = np.flatnonzero(_rounds_to(100.0 * np.arange(n_neg + 1) / n_neg, sp, ds))
    tp, tn = np.meshgrid(tps, tns, indexing="ij")
    cand = pd.DataFrame({"tp": tp.ravel(), "tn": tn.ravel()}, dtype=np.int64)
    cand["recall"] = 100.0 * cand["tp"] / n_pos
    cand["specificity"] = 100.0 * cand["tn"] / n_neg
    cand["accuracy"] = 100.0 * (cand["tp"] + cand["tn"]) / (n_pos + n_neg)
    out = {
        "implied_accuracy": (r * n_pos + sp * n_neg) / (n_pos + n_neg),
        "candidates": cand,
        "accuracy_min": float(cand["accuracy"].min()) if len(cand) else math.nan,
        "accuracy_max": float(cand["accuracy"].max()) if len(cand) else math.nan,
        "consistent": bool(len(cand)),
    }
    if accuracy is not None:
        a = _percent(accuracy, "accuracy")
        da = _decimals_of(accuracy) if decimals is None else int(decimals)
        ok = _rounds_to(cand["accuracy"].to_numpy(), a, da)
        out["accuracy_consistent"] = bool(ok.any())
        out["candidates"] = cand.assign(matches_accuracy=ok)
    return out


def achievability_table(printed: Mapping[str, str | float], n: int) -> pd.DataFrame:
    """Which printed percentages are ``100 k / n`` for an integer ``k``, and their neighbours.

    Args:
        printed: ``{subject: value as printed, in percent}``; strings keep trailing zeros
            (``"93.10"`` is checked at 2 decimals), e.g. ``{"headline": "93.182"}``.
        n: the denominator (e.g. 660 test images).

    Returns:
        DataFrame indexed by subject with ``printed`` (str), ``n``, ``decimals``, ``verdict``
        (``"consistent"`` when some ``k / n`` rounds to the printed value at its precision, else
        ``"inconsistent"``), ``k`` (the fitting counts, e.g. ``"615"``, empty when none),
        ``k_below``/``pct_below`` and ``k_above``/``pct_above`` (for an inconsistent value the
        neighbours: largest ``k`` with ``100 k / n <= value`` and smallest with ``>= value``; for
        a consistent one the smallest and largest fitting ``k``; with their exact percent) and
        ``gap`` (printed − nearest achievable, percentage points).
    """
    if not isinstance(printed, Mapping) or not printed:
        raise ValueError("printed: expected a non-empty dict {subject: percentage as printed}, e.g. "
                         f"{{'headline': '93.182'}}; found {type(printed).__name__}.")
    n = int(n)
    acc = achievable_accuracies(n)
    rows = []
    for subject, value in printed.items():
        r = nearest_fraction(value, n)
        v = _percent(value, f"printed[{subject!r}]")
        if r["consistent"]:  # the fitting counts themselves
            below, above = min(r["candidates"]), max(r["candidates"])
        else:  # the achievable values on either side of the printed one
            below = int(np.flatnonzero(acc <= v)[-1])
            above = int(np.flatnonzero(acc >= v)[0])
        rows.append({
            "subject": subject, "printed": str(value), "n": n, "decimals": r["decimals"],
            "verdict": "consistent" if r["consistent"] else "inconsistent",
            "k": ", ".join(str(k) for k in r["candidates"]),
            "k_below": below, "pct_below": float(acc[below]),
            "k_above": above, "pct_above": float(acc[above]), "gap": r["gap"],
        })
    return pd.DataFrame(rows).set_index("subject")


# =========================================================================== floors
def floors_table(checks: Sequence[tuple[str, float, float]]) -> pd.DataFrame:
    """The performance floors a chapter asserts, beside what its execution measured (chapters 02, 06).

    Args:
        checks: ``(check, floor, measured)`` triples; a check passes when ``measured >= floor``.

    Returns:
        DataFrame indexed by ``check`` with ``floor``, ``measured`` and ``passes``.
    """
    floors = pd.DataFrame(list(checks), columns=["check", "floor", "measured"]).set_index("check")
    floors["passes"] = floors["measured"] >= floors["floor"]
    return floors
