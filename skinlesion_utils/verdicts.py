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
from .errors import ConfigError

__all__ = [
    "achievable_accuracies",
    "nearest_fraction",
    "accuracy_from_recall_specificity",
    "achievability_table",
    "check_accuracy",
    "check_recall_specificity",
    "check_gain",
    "ROW_COLUMNS",
    "to_percent",
    "matching_matrices",
    "f1_from_precision_recall",
    "row_consistency",
    "printed_row",
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
        raise ConfigError(f"{name}: expected a percentage in [0, 100] as printed in the paper, "
                         f"found {value!r}.")
    return v


def _rounds_to(exact_percent: np.ndarray | float, value: float, decimals: int) -> np.ndarray:
    """Does the exact percentage round (half up or half even, either) to ``value``?"""
    half = 0.5 * 10.0 ** (-decimals)
    return np.abs(np.asarray(exact_percent) - value) <= half + 1e-9


def achievable_accuracies(n: int) -> np.ndarray:
    """All accuracies possible on ``n`` images: ``100 * k / n`` for ``k = 0..n``, percent [n+1]."""
    if int(n) != n or n < 1:
        raise ConfigError(f"n must be a positive integer (number of test images), got {n!r}.")
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
        raise ConfigError(f"n_pos and n_neg must be positive image counts, got {n_pos}, {n_neg}.")
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
        raise ConfigError("printed: expected a non-empty dict {subject: percentage as printed}, e.g. "
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


# =========================================================================== checks of printed numbers
def _within(exact, printed: float, decimals: int) -> np.ndarray:
    return np.abs(np.asarray(exact, dtype=float) - printed) <= 0.5 * 10.0 ** (-decimals) + 1e-9


def check_accuracy(printed: str, n: int) -> dict:
    """Is a printed accuracy (percent) ``100 k / n`` for some integer ``k``, at its printed precision?

    Args:
        printed: the accuracy as printed, in percent (``"93.182"``).
        n: number of images it was measured on.

    Returns:
        dict with ``check``, ``printed``, ``n``, ``verdict`` (``"consistent"`` /
        ``"inconsistent"``), ``k`` (nearest integer), ``exact`` (``100 k / n``), ``gap``
        (printed - exact, points), ``candidates`` (every k that rounds to it) and ``detail``
        (one sentence).
    """
    r = nearest_fraction(printed, int(n))
    verdict = "consistent" if r["consistent"] else "inconsistent"
    if r["consistent"]:
        detail = (f"{printed} % = {', '.join(f'{k}/{n}' for k in r['candidates'])} "
                  f"({r['exact']:.4f} %) at {r['decimals']} decimals")
    else:
        detail = (f"no k/{n} rounds to {printed} at {r['decimals']} decimals; nearest {r['k']}/{n} = "
                  f"{r['exact']:.4f} % (gap {r['gap']:+.4f} points)")
    return {"check": f"accuracy = k/{n}", "printed": printed, "n": int(n), "verdict": verdict, "k": r["k"],
            "exact": r["exact"], "gap": r["gap"], "candidates": r["candidates"], "detail": detail}


def check_recall_specificity(recall: str, specificity: str, n_pos: int, n_neg: int,
                             accuracy: str | None = None) -> dict:
    """Do a printed recall and specificity (percent) come from integer counts, and do they imply
    the printed accuracy?

    Args:
        recall, specificity: as printed, percent.
        n_pos, n_neg: malignant and benign images (300 and 360 on the paper's test set).
        accuracy: the printed accuracy, percent, or None.

    Returns:
        dict with ``check``, ``verdict`` (``"consistent"``: some integer ``tp``, ``tn`` round to
        the printed recall and specificity and, when given, to the printed accuracy;
        ``"inconsistent"`` otherwise), ``implied_accuracy`` (percent, from the printed values),
        ``accuracy_min``/``accuracy_max`` over the fitting counts, ``n_candidates`` and ``detail``.
    """
    r = accuracy_from_recall_specificity(recall, specificity, int(n_pos), int(n_neg), accuracy=accuracy)
    cands = r["candidates"]
    if not r["consistent"]:
        verdict = "inconsistent"
        detail = (f"no integer tp/{n_pos} rounds to recall {recall} or no tn/{n_neg} to specificity {specificity}")
    elif accuracy is not None and not r["accuracy_consistent"]:
        verdict = "inconsistent"
        detail = (f"recall {recall} and specificity {specificity} give accuracies "
                  f"{r['accuracy_min']:.4f}-{r['accuracy_max']:.4f} %, none rounds to the printed {accuracy}")
    else:
        verdict = "consistent"
        fits = cands[cands["matches_accuracy"]] if accuracy is not None else cands
        pairs = ", ".join(f"tp={a} tn={b}" for a, b in zip(fits["tp"].head(3), fits["tn"].head(3)))
        detail = f"fits {pairs}" + (" ..." if len(fits) > 3 else "")
    return {"check": f"recall & specificity -> accuracy (n_pos={n_pos}, n_neg={n_neg})", "verdict": verdict,
            "implied_accuracy": r["implied_accuracy"], "accuracy_min": r["accuracy_min"],
            "accuracy_max": r["accuracy_max"], "n_candidates": int(len(cands)), "detail": detail}


def check_gain(gain: str, value: str, n: int) -> dict:
    """Is a printed gain the difference between the printed accuracy and some achievable baseline?

    Both readings are tried: percentage points, ``100 (k - k0) / n``, and relative percent,
    ``100 (k - k0) / k0``, where ``k`` is any count that rounds to ``value`` and ``k0`` any
    baseline count in ``0..n``.

    Args:
        gain: the gain as printed, percent (``"2.224"``).
        value: the improved model's accuracy as printed, percent.
        n: images both accuracies were measured on.

    Returns:
        dict with ``check``, ``verdict`` (``"consistent"`` when either reading fits; ``"not
        checkable"`` when ``value`` itself is no k/n), ``points`` and ``relative`` (lists of
        fitting baseline accuracies, percent) and ``detail``.
    """
    g = float(str(gain).strip().lstrip("+").rstrip("%"))
    dg = _decimals_of(str(gain).strip().lstrip("+").rstrip("%"))
    acc = nearest_fraction(value, int(n))
    base = {"check": f"gain over some k0/{n}", "printed": gain, "n": int(n)}
    if not acc["consistent"]:
        return {**base, "verdict": "not checkable", "points": [], "relative": [],
                "detail": f"{value} is itself no k/{n}, so no baseline count can be tested"}
    k0 = np.arange(int(n) + 1)
    points, relative = [], []
    for k in acc["candidates"]:
        pp = 100.0 * (k - k0) / n
        points += [100.0 * b / n for b in k0[_within(pp, g, dg)]]
        with np.errstate(divide="ignore", invalid="ignore"):
            rel = np.where(k0 > 0, 100.0 * (k - k0) / np.maximum(k0, 1), np.nan)
        relative += [100.0 * b / n for b in k0[_within(rel, g, dg)]]
    if points or relative:
        parts = []
        if points:
            parts.append("as points from baseline " + ", ".join(f"{p:.3f} %" for p in points))
        if relative:
            parts.append("as relative gain from baseline " + ", ".join(f"{p:.3f} %" for p in relative))
        verdict, detail = "consistent", "; ".join(parts)
    else:
        verdict = "inconsistent"
        detail = (f"no baseline k0/{n} gives a gain of {gain} over {value} %, neither in percentage points "
                  "nor relative (so it is the difference of two rounded printed values rather than of two "
                  "counts, refers to another metric or other data, is a mean over runs, or is mis-printed)")
    return {**base, "verdict": verdict, "points": points, "relative": relative, "detail": detail}


# =========================================================================== one verdict per table row
#: The metric columns :func:`row_consistency` reads (percent strings as printed).
ROW_COLUMNS = ("accuracy", "precision", "recall", "specificity", "f1")


def printed_row(tp: int, tn: int, n_pos: int, n_neg: int, decimals: int = 3) -> dict[str, str]:
    """The five cells of :data:`ROW_COLUMNS` a results table prints (percent, ``decimals``
    places) for ``tp`` of ``n_pos`` positives and ``tn`` of ``n_neg`` negatives right: the row
    that :func:`row_consistency` must find ``consistent`` (chapter 05 works one by hand)."""
    if not (0 < tp <= n_pos and 0 <= tn <= n_neg):
        raise ConfigError(f"printed_row needs 0 < tp <= n_pos and 0 <= tn <= n_neg (precision and F1 are "
                         f"undefined without a true positive), got tp={tp}, tn={tn}, n_pos={n_pos}, n_neg={n_neg}.")
    fp = n_neg - tn
    precision = tp / (tp + fp)
    recall = tp / n_pos
    exact = {"accuracy": (tp + tn) / (n_pos + n_neg), "precision": precision, "recall": recall,
             "specificity": tn / n_neg, "f1": 2 * precision * recall / (precision + recall)}
    return {k: f"{100 * exact[k]:.{decimals}f}" for k in ROW_COLUMNS}


def to_percent(printed: str, unit: str = "%") -> str:
    """A printed cell in percent, keeping its precision: ``to_percent("0.7652", "fraction")`` ->
    ``"76.52"``; a ``"%"`` cell is returned unchanged."""
    if unit == "%":
        return str(printed)
    if unit != "fraction":
        raise ConfigError(f"unit must be '%' or 'fraction', got {unit!r}.")
    return format(Decimal(str(printed).strip()).scaleb(2), "f")


def _half(printed: str) -> float:
    return 0.5 * 10.0 ** (-_decimals_of(printed))


def _fits(exact, printed: str) -> np.ndarray:
    return _rounds_to(np.asarray(exact, dtype=float), float(printed), _decimals_of(printed))


def _grid_metrics(n_pos: int, n_neg: int, average: str) -> dict[str, np.ndarray]:
    """Every confusion matrix on ``n_pos`` positives and ``n_neg`` negatives (``tp`` x ``tn`` grid) and
    its five metrics in percent: per class with malignant positive (``"binary"``), or averaged over
    the two classes weighted by their support (``"weighted"``, scikit-learn's ``average="weighted"``;
    its recall is the accuracy, and the specificity is taken as that same weighted recall)."""
    tp, tn = np.meshgrid(np.arange(n_pos + 1), np.arange(n_neg + 1), indexing="ij")
    fp, fn = n_neg - tn, n_pos - tp
    with np.errstate(divide="ignore", invalid="ignore"):
        acc = 100.0 * (tp + tn) / (n_pos + n_neg)
        p_pos = np.where(tp + fp > 0, tp / np.maximum(tp + fp, 1), 0.0)
        r_pos, r_neg = tp / n_pos, tn / n_neg
        f_pos = np.where(p_pos + r_pos > 0, 2 * p_pos * r_pos / np.maximum(p_pos + r_pos, 1e-300), 0.0)
        if average == "binary":
            return {"tp": tp, "tn": tn, "accuracy": acc, "precision": 100 * p_pos, "recall": 100 * r_pos,
                    "specificity": 100 * r_neg, "f1": 100 * f_pos}
        p_neg = np.where(tn + fn > 0, tn / np.maximum(tn + fn, 1), 0.0)
        f_neg = np.where(p_neg + r_neg > 0, 2 * p_neg * r_neg / np.maximum(p_neg + r_neg, 1e-300), 0.0)
    w_pos, w_neg = n_pos / (n_pos + n_neg), n_neg / (n_pos + n_neg)
    return {"tp": tp, "tn": tn, "accuracy": acc, "precision": 100 * (w_pos * p_pos + w_neg * p_neg),
            "recall": acc, "specificity": acc, "f1": 100 * (w_pos * f_pos + w_neg * f_neg)}


def matching_matrices(row: Mapping[str, str], n_pos: int, n_neg: int, average: str = "binary") -> pd.DataFrame:
    """Every integer confusion matrix whose metrics round to all the printed cells of ``row``.

    Args:
        row: ``{metric: percent as printed}`` for any of :data:`ROW_COLUMNS`; cells that are
            missing, ``None`` or ``"-"`` are not used.
        n_pos, n_neg: positives (malignant) and negatives (benign) of the test set.
        average: ``"binary"`` (metrics of the malignant class, specificity of the benign) or
            ``"weighted"`` (class-weighted averages, see :func:`_grid_metrics`).

    Returns:
        DataFrame with ``tp``, ``tn`` and the exact metrics (percent) of each fitting matrix.
    """
    if average not in ("binary", "weighted"):
        raise ConfigError(f"average must be 'binary' or 'weighted', got {average!r}.")
    g = _grid_metrics(int(n_pos), int(n_neg), average)
    ok = np.ones(g["tp"].shape, dtype=bool)
    for col in ROW_COLUMNS:
        cell = row.get(col)
        if cell is not None and str(cell).strip() not in ("", "-", "–", "—"):
            ok &= _fits(g[col], str(cell))
    return pd.DataFrame({k: v[ok] for k, v in g.items()})


def f1_from_precision_recall(precision: str, recall: str, f1: str) -> dict:
    """Does the printed F1 follow from the printed precision and recall, ``F1 = 2PR / (P + R)``?

    F1 increases with both P and R, so the rounding intervals of P and R bound it:
    ``[F1(P - h, R - h), F1(P + h, R + h)]``. The printed F1 is consistent when its own rounding
    interval meets that range.

    Returns:
        dict with ``implied`` (F1 of the printed P and R), ``low``, ``high`` and ``consistent``.
    """
    p, r, f = float(precision), float(recall), float(f1)
    hp, hr, hf = _half(precision), _half(recall), _half(f1)
    h = lambda a, b: 2 * a * b / (a + b) if a + b > 0 else 0.0  # noqa: E731
    lo, hi = h(p - hp, r - hr), h(p + hp, r + hr)
    return {"implied": h(p, r), "low": lo, "high": hi, "consistent": bool(f + hf >= lo - 1e-9 and f - hf <= hi + 1e-9)}


def _k_text(printed: str, n: int) -> tuple[bool, str]:
    r = nearest_fraction(printed, n)
    if r["consistent"]:
        return True, " or ".join(f"{k}/{n}" for k in r["candidates"])
    return False, f"no k/{n} (nearest {r['k']}/{n} = {r['exact']:.3f})"


def _row_verdict(cells: Mapping[str, str], n_pos: int, n_neg: int) -> dict:
    """The checks of one row (percent strings), see :func:`row_consistency`."""
    n = n_pos + n_neg
    out, failed = {}, []
    for col, den in (("accuracy", n), ("recall", n_pos), ("specificity", n_neg)):
        ok, out[f"{col}_k"] = _k_text(cells[col], den)
        if not ok:
            failed.append(f"{col} = k/{den}")
    lo, hi = sorted((float(cells["recall"]), float(cells["specificity"])))
    a, ha = float(cells["accuracy"]), _half(cells["accuracy"])
    out["acc_between"] = bool(lo - _half(cells["recall"]) - ha <= a <= hi + _half(cells["specificity"]) + ha)
    if not out["acc_between"]:
        failed.append("accuracy between recall and specificity")
    imp = accuracy_from_recall_specificity(cells["recall"], cells["specificity"], n_pos, n_neg,
                                           accuracy=cells["accuracy"])
    implied = f"{imp['implied_accuracy']:.3f}"
    if not imp["consistent"]:
        out["implied_accuracy"] = f"{implied} (recall or specificity is no count)"
        failed.append("implied accuracy")
    elif not imp["accuracy_consistent"]:
        out["implied_accuracy"] = f"{imp['accuracy_min']:.3f}-{imp['accuracy_max']:.3f}, printed {cells['accuracy']}"
        failed.append("implied accuracy")
    else:
        out["implied_accuracy"] = f"{implied} fits"
    f1 = f1_from_precision_recall(cells["precision"], cells["recall"], cells["f1"])
    out["f1_from_pr"] = f"{f1['implied']:.3f}" + (" fits" if f1["consistent"] else f", printed {cells['f1']}")
    if not f1["consistent"]:
        failed.append("F1 from precision and recall")
    m = matching_matrices(cells, n_pos, n_neg)
    out["one_matrix"] = (", ".join(f"tp={a} tn={b}" for a, b in zip(m["tp"][:2], m["tn"][:2])) if len(m) else "none")
    if not len(m):
        failed.append("one confusion matrix for all five")
    out["failed"] = failed
    return out


def row_consistency(rows: pd.DataFrame, n_pos: int, n_neg: int, unit: str = "%") -> pd.DataFrame:
    """One verdict per row of a paper's results table: could its five printed numbers come from
    one confusion matrix on ``n_pos`` malignant and ``n_neg`` benign test images? (Chapters 05, 09.)

    Checks per row, each on the printed strings at their printed precision: accuracy = k/(n_pos +
    n_neg), recall = k/n_pos, specificity = k/n_neg; the accuracy implied by recall and
    specificity (``(recall n_pos + specificity n_neg) / n``); F1 from precision and recall
    (:func:`f1_from_precision_recall`); one integer confusion matrix reproducing all five
    (:func:`matching_matrices`). A row whose recall, specificity and accuracy are printed equal
    is also tested as class-weighted averages (``average="weighted"``), under which recall equals
    accuracy for every confusion matrix.

    Args:
        rows: DataFrame indexed by row name with the columns :data:`ROW_COLUMNS` (strings as printed),
            e.g. ``paper.table(2)``.
        n_pos, n_neg: malignant and benign images of the set the row was measured on.
        unit: ``"%"`` or ``"fraction"`` (Table 4), converted with :func:`to_percent`.

    Returns:
        DataFrame indexed like ``rows``: ``n``, ``accuracy_k``, ``recall_k``, ``specificity_k``
        (the fitting counts, or the nearest), ``acc_between``, ``implied_accuracy``, ``f1_from_pr``, ``one_matrix``
        (up to two fitting ``tp``/``tn``, or ``"none"``), ``r_eq_s_eq_acc`` (recall, specificity and
        accuracy printed equal), ``weighted_fit`` (a matrix under class-weighted averaging, ``"none"``,
        or ``""`` when not tested), ``verdict`` (``"consistent"`` when every check passes, else
        ``"inconsistent"``) and ``detail`` (the failed checks in words).
    """
    missing = [c for c in ROW_COLUMNS if c not in rows.columns]
    if missing:
        raise ConfigError(f"rows lacks the columns {missing}; expected {list(ROW_COLUMNS)} as printed.")
    out = []
    for name, r in rows.iterrows():
        cells = {c: to_percent(r[c], unit) for c in ROW_COLUMNS}
        res = _row_verdict(cells, int(n_pos), int(n_neg))
        equal = cells["recall"] == cells["specificity"] == cells["accuracy"]
        weighted = ""
        if equal:
            w = matching_matrices(cells, n_pos, n_neg, average="weighted")
            weighted = ", ".join(f"tp={a} tn={b}" for a, b in zip(w["tp"][:2], w["tn"][:2])) if len(w) else "none"
        failed = res.pop("failed")
        detail = "every check passes" if not failed else "fails: " + "; ".join(failed)
        if equal:
            detail += (". Recall = specificity = accuracy: class-weighted averages (recall_weighted is the accuracy "
                       "by construction) " + ("fit with " + weighted if weighted != "none" else "do not fit either"))
        out.append({"row": name, "n": int(n_pos) + int(n_neg), **res, "r_eq_s_eq_acc": equal,
                    "weighted_fit": weighted, "verdict": "inconsistent" if failed else "consistent", "detail": detail})
    return pd.DataFrame(out).set_index("row")


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
