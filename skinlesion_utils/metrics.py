"""Binary-classification metrics, confidence intervals, paired tests and calibration.

Taught in chapter 05 (how to evaluate a classifier honestly); chapters 02, 06 and 08 use its
intervals and paired tests on their predictions. The arithmetic of printed percentages (is a
paper's number ``k / n``?) lives in :mod:`skinlesion_utils.verdicts`.

Conventions used everywhere in this module:

* label ``1`` = **malignant** = the positive class, label ``0`` = benign
  (the same as ``skinlesion_utils.data.CLASSES``);
* ``y_score`` is ``P(malignant)``, a float in ``[0, 1]`` per image (the softmax column 1 of a
  two-logit model, or the sigmoid of a one-logit model);
* a prediction is malignant when ``y_score >= threshold`` (default ``0.5``);
* metrics are fractions in ``[0, 1]``; only the paper-arithmetic helpers speak in percent,
  because that is how papers print them.

What lives here:

* point metrics — :func:`confusion`, :func:`classification_report` (scikit-learn underneath);
* uncertainty — :func:`bootstrap_samples`, :func:`bootstrap_ci`, :func:`report_with_ci`
  (vectorised percentile bootstrap, stratified by class by default), :func:`ci_row` (the same
  as one flat ``m, m_low, m_high`` record) and :func:`ci_strings` (such columns as
  ``"0.812 [0.788, 0.835]"`` for a page); :func:`mean_sd_table` (mean ± sd over seeds);
* comparing two models on the same images — :func:`mcnemar` (exact, statsmodels),
  :func:`auc_difference` (paired bootstrap) and :func:`delong_test` (DeLong's test with the
  fast algorithm of Sun & Xu 2014), all three at once by :func:`paired_comparison`;
* comparing two subsets of one prediction table — :func:`metric_difference` (paired bootstrap
  interval of a metric's difference; :func:`prediction_arrays`, :func:`subset_mask` read and
  check the table and the masks);
* calibration — :func:`reliability_curve`, :func:`expected_calibration_error`;
* operating points — :func:`threshold_at_sensitivity`, :func:`specificity_at_threshold`,
  :func:`operating_point_table` (a triage threshold chosen on validation versus on test).
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
from scipy import stats
from sklearn import metrics as skm
from .errors import ConfigError

__all__ = [
    "METRICS",
    "confusion",
    "classification_report",
    "bootstrap_samples",
    "bootstrap_ci",
    "report_with_ci",
    "mcnemar",
    "auc_difference",
    "delong_test",
    "reliability_curve",
    "expected_calibration_error",
    "threshold_at_sensitivity",
    "specificity_at_threshold",
    "operating_point_table",
    "mean_sd_table",
    "CI_METRICS",
    "ci_row",
    "ci_strings",
    "paired_comparison",
    "prediction_arrays",
    "subset_mask",
    "metric_difference",
    "mean_ci",
    "interval_word",
]

#: Metric names understood by :func:`bootstrap_ci` / :func:`report_with_ci`, in report order.
METRICS: tuple[str, ...] = (
    "accuracy", "precision", "recall", "specificity", "f1", "balanced_accuracy",
    "roc_auc", "pr_auc",
)
_ALIASES = {"sensitivity": "recall", "tpr": "recall", "tnr": "specificity", "auc": "roc_auc",
            "average_precision": "pr_auc", "ap": "pr_auc", "ppv": "precision"}
_THRESHOLD_METRICS = {"accuracy", "precision", "recall", "specificity", "f1", "balanced_accuracy"}
#: Metrics the many-model tables of chapters 02 and 06 report with a bootstrap interval, in table order.
CI_METRICS: tuple[str, ...] = ("accuracy", "precision", "recall", "specificity", "f1", "roc_auc")


# =========================================================================== input checks
def _labels(y_true, name: str = "y_true") -> np.ndarray:
    """``y_true`` -> int64 [N] of 0/1, with an error a person can act on."""
    if hasattr(y_true, "detach"):
        y_true = y_true.detach().cpu().numpy()
    y = np.asarray(y_true)
    if y.ndim != 1:
        raise ConfigError(f"{name}: expected a 1-D array of 0/1 labels [N], found shape {y.shape}.")
    if y.size == 0:
        raise ConfigError(f"{name}: got no samples; pass at least one label.")
    if y.dtype == bool:
        return y.astype(np.int64)
    bad = ~np.isin(y, (0, 1))
    if bad.any():
        found = np.unique(y[bad])[:5].tolist()
        raise ConfigError(
            f"{name}: expected binary labels 0 (benign) / 1 (malignant), found values {found}. "
            "Map class names with `(labels == 'malignant').astype(int)`."
        )
    return y.astype(np.int64)


def _scores(y_score, n: int, name: str = "y_score", probability: bool = True) -> np.ndarray:
    """``y_score`` -> float64 [N], finite (and in [0, 1] when ``probability``)."""
    if hasattr(y_score, "detach"):
        y_score = y_score.detach().cpu().numpy()
    s = np.asarray(y_score, dtype=np.float64)
    if s.ndim == 2 and s.shape[1] == 2:
        raise ConfigError(
            f"{name}: found shape {s.shape} (two columns). Pass P(malignant) only, "
            f"i.e. `{name}[:, 1]` of the softmax output."
        )
    if s.ndim != 1:
        raise ConfigError(f"{name}: expected a 1-D array of scores [N], found shape {s.shape}.")
    if s.shape[0] != n:
        raise ConfigError(
            f"{name}: has {s.shape[0]} entries but y_true has {n}; pass one score per image, "
            "in the same order."
        )
    if not np.all(np.isfinite(s)):
        raise ConfigError(f"{name}: contains NaN or inf; check the model output for the "
                         f"{int((~np.isfinite(s)).sum())} affected images.")
    if probability and (s.min() < 0.0 or s.max() > 1.0):
        raise ConfigError(
            f"{name}: expected probabilities P(malignant) in [0, 1], found range "
            f"[{s.min():.4g}, {s.max():.4g}]. Apply softmax (take column 1) or sigmoid to the "
            "logits first."
        )
    return s


def _both_classes(y: np.ndarray, what: str) -> None:
    n_pos = int(y.sum())
    if n_pos == 0 or n_pos == y.size:
        raise ConfigError(
            f"{what} needs both classes in y_true, found only "
            f"{'malignant (1)' if n_pos else 'benign (0)'} ({y.size} samples). "
            "Evaluate on a split that contains benign and malignant images."
        )


def _canonical(metric: str) -> str:
    key = _ALIASES.get(metric.lower(), metric.lower())
    if key not in METRICS:
        raise ConfigError(
            f"unknown metric {metric!r}; expected one of {list(METRICS)} "
            f"(aliases {sorted(_ALIASES)}) or a callable f(y_true, y_score) -> float."
        )
    return key


# =========================================================================== point metrics
def confusion(y_true, y_pred) -> dict[str, int]:
    """Confusion counts of hard predictions, malignant = positive.

    Args:
        y_true: int [N], 0 = benign, 1 = malignant.
        y_pred: int [N] (or bool), the predicted labels.

    Returns:
        ``dict(tp, fp, tn, fn)`` of Python ints (images).
    """
    y = _labels(y_true)
    p = _labels(y_pred, "y_pred")
    if p.shape != y.shape:
        raise ConfigError(f"y_pred has {p.size} entries but y_true has {y.size}; "
                         "pass one prediction per image.")
    tn, fp, fn, tp = skm.confusion_matrix(y, p, labels=[0, 1]).ravel()
    return {"tp": int(tp), "fp": int(fp), "tn": int(tn), "fn": int(fn)}


def classification_report(y_true, y_score, threshold: float = 0.5) -> dict:
    """Every headline metric of a binary classifier at one threshold.

    Args:
        y_true: int [N], 0 = benign, 1 = malignant (both classes must occur).
        y_score: float [N] in [0, 1], P(malignant).
        threshold: predict malignant when ``y_score >= threshold``.

    Returns:
        dict with ``accuracy, precision, recall`` (= sensitivity), ``specificity, f1,
        balanced_accuracy, roc_auc, pr_auc`` (average precision) as fractions in [0, 1],
        ``n, n_pos, n_neg`` (images), ``threshold`` and the counts ``tp, fp, tn, fn``.
        Precision and F1 are 0 when nothing is predicted malignant (scikit-learn's
        ``zero_division=0``).
    """
    y = _labels(y_true)
    s = _scores(y_score, y.size)
    _both_classes(y, "classification_report")
    pred = (s >= threshold).astype(np.int64)
    c = confusion(y, pred)
    out = {
        "accuracy": float(skm.accuracy_score(y, pred)),
        "precision": float(skm.precision_score(y, pred, zero_division=0)),
        "recall": float(skm.recall_score(y, pred, zero_division=0)),
        "specificity": c["tn"] / (c["tn"] + c["fp"]),
        "f1": float(skm.f1_score(y, pred, zero_division=0)),
        "balanced_accuracy": float(skm.balanced_accuracy_score(y, pred)),
        "roc_auc": float(skm.roc_auc_score(y, s)),
        "pr_auc": float(skm.average_precision_score(y, s)),
        "n": int(y.size),
        "n_pos": int(y.sum()),
        "n_neg": int(y.size - y.sum()),
        "threshold": float(threshold),
    }
    out.update(c)
    return out


# =========================================================================== bootstrap
def _draw_indices(y: np.ndarray, n_boot: int, seed: int, stratified: bool) -> np.ndarray:
    """Resample indices int64 [n_boot, N]; stratified keeps n_pos and n_neg fixed."""
    rng = np.random.default_rng(seed)
    n = y.size
    if not stratified:
        return rng.integers(0, n, size=(n_boot, n))
    pos = np.flatnonzero(y == 1)
    neg = np.flatnonzero(y == 0)
    parts = []
    for group in (pos, neg):
        if group.size:
            parts.append(group[rng.integers(0, group.size, size=(n_boot, group.size))])
    return np.concatenate(parts, axis=1)


def _counts(idx: np.ndarray, n: int) -> np.ndarray:
    """How often each sample occurs in each resample: int64 [n_boot, N]."""
    b = idx.shape[0]
    flat = (idx + n * np.arange(b)[:, None]).ravel()
    return np.bincount(flat, minlength=b * n).reshape(b, n)


def _safe_div(num, den) -> np.ndarray:
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    return np.divide(num, den, out=np.zeros(np.broadcast(num, den).shape), where=den > 0)


class _Resampled:
    """All named metrics of every resample, computed from occurrence counts ``W [B, N]``.

    Threshold metrics are matrix-vector products; ROC AUC (Mann-Whitney with ties counted
    1/2) and average precision (scikit-learn's step-wise definition) come from per-distinct-
    score sums, so everything is exact and O(B * N). A resample that lacks a class gets NaN
    for the metrics that need that class.
    """

    def __init__(self, y: np.ndarray, s: np.ndarray, w: np.ndarray, threshold: float):
        self.y, self.s, self.w, self.threshold = y, s, w.astype(np.float64), threshold
        posm = y == 1
        pred = s >= threshold
        self.n_pos = self.w[:, posm].sum(1)
        self.n_neg = self.w[:, ~posm].sum(1)
        self.tp = self.w[:, posm] @ pred[posm].astype(np.float64)
        self.fp = self.w[:, ~posm] @ pred[~posm].astype(np.float64)
        self.fn = self.n_pos - self.tp
        self.tn = self.n_neg - self.fp
        self._grouped = None

    def _groups(self):
        if self._grouped is None:
            order = np.argsort(self.s, kind="mergesort")
            ss = self.s[order]
            starts = np.flatnonzero(np.r_[True, ss[1:] != ss[:-1]])
            ws = self.w[:, order]
            ys = self.y[order].astype(np.float64)
            pg = np.add.reduceat(ws * ys, starts, axis=1)          # positives per distinct score
            ng = np.add.reduceat(ws * (1.0 - ys), starts, axis=1)  # negatives per distinct score
            self._grouped = (pg, ng)
        return self._grouped

    def value(self, name: str) -> np.ndarray:
        nan = np.nan
        has_pos, has_neg = self.n_pos > 0, self.n_neg > 0
        if name == "accuracy":
            return (self.tp + self.tn) / (self.n_pos + self.n_neg)
        if name == "precision":
            return _safe_div(self.tp, self.tp + self.fp)
        if name == "recall":
            return np.where(has_pos, _safe_div(self.tp, self.n_pos), nan)
        if name == "specificity":
            return np.where(has_neg, _safe_div(self.tn, self.n_neg), nan)
        if name == "f1":
            return _safe_div(2 * self.tp, 2 * self.tp + self.fp + self.fn)
        if name == "balanced_accuracy":
            return 0.5 * (self.value("recall") + self.value("specificity"))
        if name == "roc_auc":
            pg, ng = self._groups()
            neg_below = np.cumsum(ng, axis=1) - ng
            u = (pg * (neg_below + 0.5 * ng)).sum(1)
            return np.where(has_pos & has_neg, _safe_div(u, self.n_pos * self.n_neg), nan)
        if name == "pr_auc":
            pg, ng = self._groups()
            tp_ge = np.cumsum(pg[:, ::-1], axis=1)[:, ::-1]   # positives with score >= t
            fp_ge = np.cumsum(ng[:, ::-1], axis=1)[:, ::-1]
            prec = _safe_div(tp_ge, tp_ge + fp_ge)
            ap = _safe_div((pg * prec).sum(1), self.n_pos)
            return np.where(has_pos, ap, nan)
        raise AssertionError(name)


def _point(name: str, y: np.ndarray, s: np.ndarray, threshold: float) -> float:
    rep = classification_report(y, s, threshold)
    return float(rep[name])


def bootstrap_samples(y_true, y_score, metric: str | Callable = "accuracy", n_boot: int = 2000,
                      seed: int = 0, stratified: bool = True, threshold: float = 0.5
                      ) -> np.ndarray:
    """The bootstrap distribution of one metric: float64 [n_boot].

    Args:
        y_true: int [N], 0 = benign, 1 = malignant.
        y_score: float [N] in [0, 1], P(malignant) (hard 0/1 predictions work for the
            threshold metrics).
        metric: a name from :data:`METRICS` (vectorised, exact) or a callable
            ``f(y_true_b, y_score_b) -> float`` evaluated on each resample (slow path, same
            resamples for the same seed).
        n_boot: number of resamples.
        seed: seed of ``numpy.random.default_rng``.
        stratified: resample benign and malignant images separately, so every resample keeps
            the original ``n_pos`` and ``n_neg`` (the usual choice for a fixed test set).
        threshold: decision threshold of the threshold metrics.

    Returns:
        float64 [n_boot]; NaN where a non-stratified resample lacks a class the metric needs
        (for a callable: lacks either class). Intervals ignore the NaN resamples.
    """
    y = _labels(y_true)
    s = _scores(y_score, y.size)
    if n_boot < 1:
        raise ConfigError(f"n_boot must be >= 1, got {n_boot}.")
    idx = _draw_indices(y, n_boot, seed, stratified)
    if callable(metric):
        out = np.empty(n_boot)
        for b in range(n_boot):
            yb = y[idx[b]]
            out[b] = metric(yb, s[idx[b]]) if 0 < yb.sum() < yb.size else np.nan
        return out
    name = _canonical(metric)
    return _Resampled(y, s, _counts(idx, y.size), threshold).value(name)


def _interval(values: np.ndarray, alpha: float) -> tuple[float, float]:
    if not 0.0 < alpha < 1.0:
        raise ConfigError(f"alpha must be in (0, 1), e.g. 0.05 for a 95 % interval; got {alpha}.")
    if np.all(np.isnan(values)):
        return math.nan, math.nan
    lo, hi = np.nanpercentile(values, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return float(lo), float(hi)


def bootstrap_ci(y_true, y_score, metric: str | Callable = "accuracy", n_boot: int = 2000,
                 alpha: float = 0.05, seed: int = 0, stratified: bool = True,
                 threshold: float = 0.5) -> tuple[float, float, float]:
    """Point estimate and percentile-bootstrap ``1 - alpha`` confidence interval of a metric.

    Args: as :func:`bootstrap_samples`, plus ``alpha`` (0.05 gives a 95 % interval).

    Returns:
        ``(point, low, high)``, fractions for the named metrics. The point estimate is the
        metric on all images (not the bootstrap mean). 2000 resamples of 660 images take a
        few tens of milliseconds for the threshold metrics.
    """
    y = _labels(y_true)
    s = _scores(y_score, y.size)
    vals = bootstrap_samples(y, s, metric, n_boot, seed, stratified, threshold)
    if callable(metric):
        point = float(metric(y, s))
    else:
        point = _point(_canonical(metric), y, s, threshold)
    lo, hi = _interval(vals, alpha)
    return point, lo, hi


def report_with_ci(y_true, y_score, threshold: float = 0.5, n_boot: int = 2000,
                   alpha: float = 0.05, seed: int = 0, stratified: bool = True,
                   metrics: Sequence[str] = METRICS) -> pd.DataFrame:
    """Every metric with its percentile-bootstrap interval, all from the same resamples.

    Args: as :func:`bootstrap_ci`; ``metrics`` selects rows (names from :data:`METRICS`).

    Returns:
        DataFrame, index = metric names, columns ``point, low, high`` (fractions);
        ``df.attrs`` records ``n_boot, alpha, seed, stratified, threshold, n, n_pos, n_neg``.
    """
    y = _labels(y_true)
    s = _scores(y_score, y.size)
    _both_classes(y, "report_with_ci")
    names = [_canonical(m) for m in metrics]
    rep = classification_report(y, s, threshold)
    res = _Resampled(y, s, _counts(_draw_indices(y, n_boot, seed, stratified), y.size), threshold)
    rows = {}
    for name in names:
        lo, hi = _interval(res.value(name), alpha)
        rows[name] = {"point": rep[name], "low": lo, "high": hi}
    df = pd.DataFrame.from_dict(rows, orient="index")[["point", "low", "high"]]
    df.index.name = "metric"
    df.attrs.update(n_boot=n_boot, alpha=alpha, seed=seed, stratified=stratified,
                    threshold=threshold, n=rep["n"], n_pos=rep["n_pos"], n_neg=rep["n_neg"])
    return df


def ci_row(y_true, y_score, metrics: Sequence[str] = CI_METRICS, *, point_only: Sequence[str] = (),
           threshold: float = 0.5, n_boot: int = 2000, seed: int = 0) -> dict:
    """:func:`report_with_ci` as one flat record, the row of a results table.

    Args:
        y_true, y_score: as :func:`report_with_ci`.
        metrics: metrics reported with their interval.
        point_only: metrics reported without one (e.g. ``("pr_auc",)``), after ``metrics``.
        threshold, n_boot, seed: as :func:`report_with_ci`.

    Returns:
        ``{m: point, m_low: low, m_high: high}`` per metric of ``metrics`` (canonical names,
        fractions) and ``{m: point}`` per metric of ``point_only``, in that order.
    """
    ci = report_with_ci(y_true, y_score, threshold=threshold, n_boot=n_boot, seed=seed,
                        metrics=tuple(metrics) + tuple(point_only))
    bare = {_canonical(m) for m in point_only}
    row = {}
    for m in ci.index:
        row[m] = float(ci.loc[m, "point"])
        if m not in bare:
            row[f"{m}_low"], row[f"{m}_high"] = float(ci.loc[m, "low"]), float(ci.loc[m, "high"])
    return row


def ci_strings(table: pd.DataFrame, metrics: Sequence[str] = CI_METRICS, decimals: int = 3,
               percent: bool = False, keep: Sequence[str] = ()) -> pd.DataFrame:
    """``"0.812 [0.781, 0.843]"`` strings from the ``m, m_low, m_high`` columns of a table.

    Args:
        table: e.g. a chapter 02 benchmark table or a chapter 08 subset report (or the same
            read back from a results file): any frame with those columns.
        metrics: metric names whose three columns exist, in the order wanted.
        decimals: digits after the point.
        percent: print as percentages (the paper's unit).
        keep: other columns to keep unchanged, placed first (e.g. ``("n",)``).

    Returns:
        DataFrame with the same index, columns ``keep`` then one string column per metric;
        ``"–"`` where the point value is NaN.

    Raises:
        KeyError: a needed column is missing (the message lists the table's columns).
    """
    missing = [c for m in metrics for c in (m, f"{m}_low", f"{m}_high") if c not in table.columns]
    missing += [c for c in keep if c not in table.columns]
    if missing:
        raise KeyError(f"ci_strings: columns {missing} not in the table (it has {list(table.columns)}). "
                       "Fix: pass metrics whose point, _low and _high columns the table holds.")
    scale = 100.0 if percent else 1.0
    out = table[list(keep)].copy()
    for m in metrics:
        out[m] = [("–" if pd.isna(p) else f"{scale * p:.{decimals}f} [{scale * lo:.{decimals}f}, {scale * hi:.{decimals}f}]")
                  for p, lo, hi in zip(table[m], table[f"{m}_low"], table[f"{m}_high"])]
    return out


# =========================================================================== paired tests
def mcnemar(y_true, pred_a, pred_b) -> dict:
    """Exact McNemar test: do two classifiers err on different images more than chance?

    Only discordant images count: ``b`` = A right and B wrong, ``c`` = A wrong and B right.
    Under H0 (same error rate) ``b ~ Binomial(b + c, 1/2)``; the two-sided exact p-value comes
    from ``statsmodels.stats.contingency_tables.mcnemar(table, exact=True)``.

    Args:
        y_true: int [N], 0/1 labels.
        pred_a, pred_b: int [N], hard predictions of the two classifiers on the same images.

    Returns:
        ``dict(b, c, statistic, p_value, exact=True, table)`` with ``statistic = min(b, c)``
        and ``table`` the 2x2 [[both right, b], [c, both wrong]] as nested lists.
    """
    from statsmodels.stats.contingency_tables import mcnemar as _sm_mcnemar

    y = _labels(y_true)
    a = _labels(pred_a, "pred_a")
    bb = _labels(pred_b, "pred_b")
    if not (a.size == bb.size == y.size):
        raise ConfigError(f"y_true, pred_a, pred_b must have the same length, found "
                         f"{y.size}, {a.size}, {bb.size}; pass predictions on the same images.")
    ra, rb = a == y, bb == y
    table = np.array([[np.sum(ra & rb), np.sum(ra & ~rb)],
                      [np.sum(~ra & rb), np.sum(~ra & ~rb)]], dtype=np.int64)
    res = _sm_mcnemar(table, exact=True)
    return {"b": int(table[0, 1]), "c": int(table[1, 0]), "statistic": float(res.statistic),
            "p_value": float(res.pvalue), "exact": True, "table": table.tolist()}


def auc_difference(y_true, score_a, score_b, n_boot: int = 2000, seed: int = 0,
                   alpha: float = 0.05, stratified: bool = True) -> dict:
    """Paired bootstrap of the ROC-AUC difference ``AUC(A) - AUC(B)`` on the same images.

    Each resample draws the same images for both models, so the correlation between the
    two AUCs is kept (that is what makes the comparison paired).

    Args:
        y_true: int [N], 0/1 labels (both classes).
        score_a, score_b: float [N], scores of the two models (any monotone score works for
            AUC; probabilities in [0, 1] are typical).
        n_boot, seed, alpha, stratified: as :func:`bootstrap_ci`.

    Returns:
        ``dict(delta, low, high, p_value, auc_a, auc_b, n_boot)``: ``delta`` on all images,
        the percentile interval, and the two-sided bootstrap p-value
        ``min(1, 2 * min(P*(delta_b <= 0), P*(delta_b >= 0)))`` with the ``(1 + k)/(B + 1)``
        correction (1.0 when the scores are identical).
    """
    y = _labels(y_true)
    sa = _scores(score_a, y.size, "score_a", probability=False)
    sb = _scores(score_b, y.size, "score_b", probability=False)
    _both_classes(y, "auc_difference")
    w = _counts(_draw_indices(y, n_boot, seed, stratified), y.size)
    da = _Resampled(y, sa, w, 0.5).value("roc_auc")
    db = _Resampled(y, sb, w, 0.5).value("roc_auc")
    d = da - db
    d = d[~np.isnan(d)]
    auc_a, auc_b = float(skm.roc_auc_score(y, sa)), float(skm.roc_auc_score(y, sb))
    lo, hi = _interval(d, alpha)
    k = d.size
    p_le = (1 + np.sum(d <= 0)) / (k + 1)
    p_ge = (1 + np.sum(d >= 0)) / (k + 1)
    return {"delta": auc_a - auc_b, "low": lo, "high": hi,
            "p_value": float(min(1.0, 2 * min(p_le, p_ge))),
            "auc_a": auc_a, "auc_b": auc_b, "n_boot": int(k)}


def delong_test(y_true, score_a, score_b, alpha: float = 0.05) -> dict:
    """DeLong's test for two correlated ROC AUCs (fast algorithm of Sun & Xu, 2014).

    The AUC is a two-sample U-statistic; DeLong et al. (1988) estimate its covariance from
    the structural components ``V10`` (one per malignant image) and ``V01`` (one per benign
    image). Sun & Xu compute these from mid-ranks in O(N log N).

    Args:
        y_true: int [N], 0/1 labels (both classes).
        score_a, score_b: float [N], scores of the two models on the same images.
        alpha: for the normal-approximation interval of the difference.

    Returns:
        ``dict(auc_a, auc_b, delta, se, z, p_value, low, high, var_a, var_b, cov)``; when the
        variance of the difference is 0 (e.g. identical scores) ``z = 0`` and ``p_value = 1``
        if ``delta == 0``.
    """
    y = _labels(y_true)
    sa = _scores(score_a, y.size, "score_a", probability=False)
    sb = _scores(score_b, y.size, "score_b", probability=False)
    _both_classes(y, "delong_test")
    pos, neg = y == 1, y == 0
    m, n = int(pos.sum()), int(neg.sum())
    preds = np.vstack([sa, sb])                      # [k=2, N]
    x, yy = preds[:, pos], preds[:, neg]             # [2, m], [2, n]
    tx = stats.rankdata(x, axis=1)                   # mid-ranks among positives
    ty = stats.rankdata(yy, axis=1)                  # mid-ranks among negatives
    tz = stats.rankdata(np.hstack([x, yy]), axis=1)  # mid-ranks among all
    aucs = (tz[:, :m].sum(1) / m - (m + 1) / 2.0) / n
    v10 = (tz[:, :m] - tx) / n                       # [2, m]
    v01 = 1.0 - (tz[:, m:] - ty) / m                 # [2, n]
    sx = np.atleast_2d(np.cov(v10)) if m > 1 else np.zeros((2, 2))
    sy = np.atleast_2d(np.cov(v01)) if n > 1 else np.zeros((2, 2))
    cov = sx / m + sy / n
    var = float(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1])
    delta = float(aucs[0] - aucs[1])
    if var <= 1e-15:
        se, z = 0.0, 0.0
        p = 1.0 if abs(delta) < 1e-12 else 0.0
    else:
        se = math.sqrt(var)
        z = delta / se
        p = float(2 * stats.norm.sf(abs(z)))
    q = stats.norm.ppf(1 - alpha / 2)
    return {"auc_a": float(aucs[0]), "auc_b": float(aucs[1]), "delta": delta, "se": se,
            "z": z, "p_value": p, "low": float(delta - q * se), "high": float(delta + q * se),
            "var_a": float(cov[0, 0]), "var_b": float(cov[1, 1]), "cov": float(cov[0, 1])}


def paired_comparison(y_true, score_a, score_b, *, threshold: float = 0.5, n_boot: int = 2000,
                      seed: int = 0) -> dict:
    """Two models on the same images: McNemar (errors at ``threshold``), paired bootstrap and DeLong
    tests of the ROC-AUC difference ``A − B`` — the one paired test of chapters 06 and 08.

    Args:
        y_true: int [N] 0/1 labels. score_a, score_b: float [N] P(malignant) of models A and B on
            the same images, in the same order.
        threshold: P(malignant) at which a prediction is malignant.
        n_boot, seed: bootstrap of the AUC difference (:func:`auc_difference`).

    Returns:
        flat dict: ``n``, ``acc_a``, ``acc_b``, ``mcnemar_b`` (A right, B wrong),
        ``mcnemar_c`` (A wrong, B right), ``mcnemar_p``, ``auc_a``, ``auc_b``, ``auc_delta``,
        ``auc_low``, ``auc_high``, ``auc_p`` (bootstrap), ``delong_p``.
    """
    y = np.asarray(y_true, dtype=np.int64)
    sa, sb = np.asarray(score_a, dtype=np.float64), np.asarray(score_b, dtype=np.float64)
    pa, pb = (sa >= threshold).astype(np.int64), (sb >= threshold).astype(np.int64)
    mc = mcnemar(y, pa, pb)
    ad = auc_difference(y, sa, sb, n_boot=n_boot, seed=seed)
    dl = delong_test(y, sa, sb)
    return {"n": int(y.size), "acc_a": float((pa == y).mean()), "acc_b": float((pb == y).mean()),
            "mcnemar_b": mc["b"], "mcnemar_c": mc["c"], "mcnemar_p": mc["p_value"],
            "auc_a": ad["auc_a"], "auc_b": ad["auc_b"], "auc_delta": ad["delta"], "auc_low": ad["low"],
            "auc_high": ad["high"], "auc_p": ad["p_value"], "delong_p": dl["p_value"]}


# =========================================================================== subsets of one table
def prediction_arrays(predictions: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """``y_true`` int64 [N] and ``y_score`` float64 [N] of a predictions table.

    Raises:
        KeyError: the table lacks ``y_true`` or ``y_score``.
    """
    missing = [c for c in ("y_true", "y_score") if c not in predictions.columns]
    if missing:
        raise KeyError(f"Column(s) {missing} not in the table; it has {list(predictions.columns)}. "
                       "Fix: pass existing column names.")
    return predictions["y_true"].to_numpy(np.int64), predictions["y_score"].to_numpy(np.float64)


def subset_mask(predictions: pd.DataFrame, mask, name: str) -> np.ndarray:
    """``mask`` as a bool [N] array, one entry per row of ``predictions``.

    Raises:
        ValueError: ``mask`` is not bool or not of length N (names the subset ``name``).
    """
    m = np.asarray(mask)
    if m.dtype != bool or m.shape != (len(predictions),):
        raise ConfigError(f"subset {name!r}: expected a bool mask of length {len(predictions)} (one per row of the "
                         f"predictions), found {m.dtype} of shape {m.shape}. Fix: e.g. flags['contaminated'].to_numpy().")
    return m


def metric_difference(predictions: pd.DataFrame, mask_a: Sequence[bool], mask_b: Sequence[bool],
                      metric: str = "accuracy", *, threshold: float = 0.5, n_boot: int = 2000,
                      alpha: float = 0.05, seed: int = 0) -> dict:
    """``metric(subset a) − metric(subset b)`` with a percentile-bootstrap CI (chapter 08).

    Each resample draws N images with replacement from the whole table (stratified by class,
    :func:`bootstrap_samples`' convention) and evaluates the metric on the drawn members of
    ``a`` and of ``b``: the same draw serves both, so nested subsets (all vs clean) and
    disjoint ones (contaminated vs clean) are both handled, and subset sizes vary between
    resamples as they would between data sets. Exact ROC AUC per resample.

    Args:
        predictions: DataFrame with ``y_true`` and ``y_score``, N rows.
        mask_a, mask_b: bool [N] masks of the two subsets (each with both classes for AUC).
        metric: a name of :data:`METRICS` (or an alias such as ``"auc"``).
        threshold, n_boot, alpha, seed: as :func:`bootstrap_ci`.

    Returns:
        ``dict(metric, a, b, delta, low, high, n_a, n_b, n_boot)``: point values on all images of
        each subset, their difference and its interval (resamples where a subset lacks a
        needed class are dropped; ``n_boot`` counts the ones kept).
    """
    y, s = prediction_arrays(predictions)
    a = subset_mask(predictions, mask_a, "a")
    b = subset_mask(predictions, mask_b, "b")
    name = _canonical(metric)
    for label, m in (("a", a), ("b", b)):
        if not (0 < y[m].sum() < m.sum()):
            raise ConfigError(f"subset {label} needs both classes to compute {name}; it has {int(m.sum())} images, "
                             f"{int(y[m].sum())} malignant. Fix: use larger subsets or another metric.")
    counts = _counts(_draw_indices(y, n_boot, seed, True), y.size)
    va = _Resampled(y, s, counts * a, threshold).value(name)
    vb = _Resampled(y, s, counts * b, threshold).value(name)
    d = va - vb
    d = d[~np.isnan(d)]
    lo, hi = _interval(d, alpha)
    pa = classification_report(y[a], s[a], threshold)[name]
    pb = classification_report(y[b], s[b], threshold)[name]
    return {"metric": name, "a": float(pa), "b": float(pb), "delta": float(pa - pb), "low": lo, "high": hi,
            "n_a": int(a.sum()), "n_b": int(b.sum()), "n_boot": int(d.size)}


# =========================================================================== calibration
def reliability_curve(y_true, y_score, n_bins: int = 10) -> pd.DataFrame:
    """Per-bin observed malignant rate versus mean predicted P(malignant).

    Bins are ``n_bins`` equal-width intervals of [0, 1], right-closed as in
    ``sklearn.calibration.calibration_curve(strategy="uniform")`` (a score of exactly 0.1
    falls in the first of ten bins), so the non-empty rows equal that function's output.

    Args:
        y_true: int [N], 0/1 labels.
        y_score: float [N] in [0, 1], P(malignant).
        n_bins: number of bins.

    Returns:
        DataFrame with one row per bin (empty bins included): ``bin_lo, bin_hi, bin_centre``,
        ``accuracy`` (observed fraction malignant, NaN if empty), ``confidence`` (mean
        predicted P(malignant), NaN if empty), ``count`` (images).
    """
    y = _labels(y_true)
    s = _scores(y_score, y.size)
    if n_bins < 1:
        raise ConfigError(f"n_bins must be >= 1, got {n_bins}.")
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    ids = np.searchsorted(edges[1:-1], s)            # same rule as scikit-learn
    count = np.bincount(ids, minlength=n_bins)
    pos = np.bincount(ids, weights=y, minlength=n_bins)
    conf = np.bincount(ids, weights=s, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        acc = np.where(count > 0, pos / count, np.nan)
        mean_conf = np.where(count > 0, conf / count, np.nan)
    return pd.DataFrame({"bin_lo": edges[:-1], "bin_hi": edges[1:],
                         "bin_centre": (edges[:-1] + edges[1:]) / 2, "accuracy": acc,
                         "confidence": mean_conf, "count": count.astype(np.int64)})


def expected_calibration_error(y_true, y_score, n_bins: int = 10) -> float:
    """Expected calibration error of P(malignant): ``sum_b n_b / N * |acc_b - conf_b|``.

    ``acc_b`` is the observed malignant fraction and ``conf_b`` the mean P(malignant) in bin
    ``b`` (bins of :func:`reliability_curve`). This is the binary, positive-class ECE; 0 means
    that in every bin the predicted risk equals the observed rate.

    Returns:
        float in [0, 1].
    """
    rc = reliability_curve(y_true, y_score, n_bins)
    rc = rc[rc["count"] > 0]
    n = rc["count"].sum()
    return float((rc["count"] / n * (rc["accuracy"] - rc["confidence"]).abs()).sum())


# =========================================================================== operating points
def threshold_at_sensitivity(y_true, y_score, target: float = 0.95) -> float:
    """The largest threshold whose sensitivity (recall of malignant) is at least ``target``.

    Choose it on a validation split, then report specificity on the test split with
    :func:`specificity_at_threshold` — choosing it on the test split is optimistic.

    Args:
        y_true: int [N], 0/1 labels (with malignant images).
        y_score: float [N] in [0, 1], P(malignant).
        target: sensitivity in (0, 1].

    Returns:
        float threshold ``t`` (one of the scores): predicting malignant when ``score >= t``
        reaches sensitivity >= target on these data, and any larger threshold does not.
    """
    y = _labels(y_true)
    s = _scores(y_score, y.size)
    if not 0.0 < target <= 1.0:
        raise ConfigError(f"target sensitivity must be in (0, 1], got {target}.")
    if y.sum() == 0:
        raise ConfigError("threshold_at_sensitivity needs malignant images (label 1) in y_true; "
                         "found none.")
    pos_scores = np.sort(s[y == 1])[::-1]            # descending
    k = math.ceil(target * pos_scores.size - 1e-9)   # positives that must be caught
    return float(pos_scores[max(k, 1) - 1])


def specificity_at_threshold(y_true, y_score, threshold: float) -> float:
    """Specificity (true-negative rate of benign images) when predicting ``score >= threshold``.

    Returns:
        float in [0, 1]; raises if there are no benign images.
    """
    y = _labels(y_true)
    s = _scores(y_score, y.size)
    neg = y == 0
    if not neg.any():
        raise ConfigError("specificity_at_threshold needs benign images (label 0); found none.")
    return float(np.mean(s[neg] < threshold))


def operating_point_table(y_val, s_val, y_test, s_test, target: float = 0.95, n_boot: int = 2000,
                          alpha: float = 0.05, seed: int = 0) -> pd.DataFrame:
    """Test sensitivity and specificity at a threshold chosen for ``target`` sensitivity, two ways.

    Row ``"validation"``: the threshold is chosen on the validation images
    (:func:`threshold_at_sensitivity`) and then applied, unchanged, to the test images — an
    honest estimate of what a clinic would see. Row ``"test (leaky)"``: the threshold is chosen
    on the test images themselves, so the test sensitivity meets the target by construction and
    the test specificity is optimistic (the test set took part in a decision).

    Args:
        y_val, s_val: int [Nv] 0/1 labels and float [Nv] P(malignant) of the validation images.
        y_test, s_test: the same for the test images.
        target: required sensitivity in (0, 1] (0.95 for a triage clinic).
        n_boot, alpha, seed: stratified percentile bootstrap of the test metrics at the fixed
            threshold (:func:`bootstrap_ci`); for the leaky row the interval ignores that the
            threshold itself was fitted to these images, so it is too narrow as well.

    Returns:
        DataFrame indexed by ``chosen_on`` with ``threshold``, ``choice_sensitivity`` and
        ``choice_specificity`` (on the images used to choose), ``sensitivity``,
        ``sensitivity_low``, ``sensitivity_high``, ``specificity``, ``specificity_low``,
        ``specificity_high`` (test images, fractions), ``tp, fn, tn, fp`` (test images) and
        ``meets_target`` (test sensitivity >= target).
    """
    yv = _labels(y_val, "y_val")
    sv = _scores(s_val, yv.size, "s_val")
    yt = _labels(y_test, "y_test")
    st = _scores(s_test, yt.size, "s_test")
    _both_classes(yv, "operating_point_table (validation)")
    _both_classes(yt, "operating_point_table (test)")
    rows = []
    for chosen_on, (yc, sc) in (("validation", (yv, sv)), ("test (leaky)", (yt, st))):
        t = threshold_at_sensitivity(yc, sc, target)
        choice = classification_report(yc, sc, t)
        rep = classification_report(yt, st, t)
        row = {"chosen_on": chosen_on, "threshold": t, "choice_sensitivity": choice["recall"],
               "choice_specificity": choice["specificity"]}
        for name in ("sensitivity", "specificity"):
            point, lo, hi = bootstrap_ci(yt, st, name, n_boot=n_boot, alpha=alpha, seed=seed,
                                         threshold=t)
            row.update({name: point, f"{name}_low": lo, f"{name}_high": hi})
        row.update({k: rep[k] for k in ("tp", "fn", "tn", "fp")})
        row["meets_target"] = bool(rep["recall"] >= target - 1e-12)
        rows.append(row)
    df = pd.DataFrame(rows).set_index("chosen_on")
    df.attrs.update(target=target, n_boot=n_boot, alpha=alpha, seed=seed)
    return df


# =========================================================================== mean ± sd over runs
def mean_sd_table(df: pd.DataFrame, group: str | Sequence[str], value: str | Sequence[str],
                  decimals: int = 3, ddof: int = 1) -> pd.DataFrame:
    """Mean ± standard deviation of ``value`` per ``group`` (e.g. per model over seeds).

    Args:
        df: long table, one row per run (e.g. columns ``model, seed, accuracy``).
        group: column(s) to group by.
        value: column(s) to summarise.
        decimals: rounding of the ``"mean ± sd"`` strings.
        ddof: 1 = sample standard deviation (NaN for a single run).

    Returns:
        DataFrame indexed by group with, per value column, ``<v>_n, <v>_mean, <v>_sd`` and a
        printable ``<v>`` = ``"mean ± sd"``.
    """
    values = [value] if isinstance(value, str) else list(value)
    groups = [group] if isinstance(group, str) else list(group)
    missing = [c for c in groups + values if c not in df.columns]
    if missing:
        raise KeyError(f"mean_sd_table: columns {missing} not in the table; "
                       f"found {list(df.columns)}.")
    g = df.groupby(groups, sort=False)
    out = pd.DataFrame(index=g.size().index)
    for v in values:
        out[f"{v}_n"] = g[v].count()
        out[f"{v}_mean"] = g[v].mean()
        out[f"{v}_sd"] = g[v].std(ddof=ddof)
        out[v] = [f"{m:.{decimals}f} ± {s:.{decimals}f}"
                  for m, s in zip(out[f"{v}_mean"], out[f"{v}_sd"])]
    return out


# =========================================================================== intervals of means, in words
def mean_ci(values, seed: int, n_resamples: int = 2000) -> tuple[float, float, float]:
    """``(mean, low, high)`` of the finite ``values``: the mean with its 95 % percentile-bootstrap
    interval (``scipy.stats.bootstrap``, ``n_resamples``, seeded). NaN × 3 when no value is
    finite; the mean three times for fewer than 2 values or constant values. Used for the
    per-image scores of chapter 07 (energy inside the mask, pointing game, ROAD)."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return float("nan"), float("nan"), float("nan")
    if v.size < 2 or np.ptp(v) == 0:
        return float(v.mean()), float(v.mean()), float(v.mean())
    res = stats.bootstrap((v,), np.mean, n_resamples=n_resamples, method="percentile",
                          rng=np.random.default_rng(seed))
    return float(v.mean()), float(res.confidence_interval.low), float(res.confidence_interval.high)


def interval_word(low: float, high: float, reference: float = 0.0) -> str:
    """How a 95 % interval ``[low, high]`` lies relative to ``reference``: ``"above"`` (the whole
    interval is above it), ``"below"``, or ``"not distinguishable from"`` (it contains it).
    Used to turn the chapter's tables into sentences without typing a number (chapters 07, 09)."""
    if not (np.isfinite(low) and np.isfinite(high)):
        return "not measurable against"
    if low > reference:
        return "above"
    if high < reference:
        return "below"
    return "not distinguishable from"
