"""Tests of skinlesion_utils.metrics against scikit-learn, scipy and hand computation."""
from __future__ import annotations

import math
import time

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sklearn import calibration
from sklearn.metrics import accuracy_score
from sklearn import metrics as skm

from skinlesion_utils import metrics as M


# --------------------------------------------------------------------------- fixtures
def _scores(n_pos: int, n_neg: int, sep: float = 0.4, seed: int = 0, decimals: int | None = 2):
    """Labels (malignant first) and P(malignant)-like scores; rounding creates ties."""
    rng = np.random.default_rng(seed)
    y = np.r_[np.ones(n_pos, dtype=np.int64), np.zeros(n_neg, dtype=np.int64)]
    s = np.clip(rng.normal(0.3 + sep * y, 0.2), 0.0, 1.0)
    if decimals is not None:
        s = s.round(decimals)
    return y, s


@pytest.fixture(scope="module")
def test_split():
    """The size of the paper's test split: 300 malignant, 360 benign."""
    return _scores(300, 360, seed=1)


# Hand-computed 2x2 case (10 images).
# positives: 0.9 0.8 0.6 0.3 ; negatives: 0.7 0.55 0.4 0.2 0.1 0.05 ; threshold 0.5
# -> tp=3 (0.9, 0.8, 0.6), fn=1 (0.3), fp=2 (0.7, 0.55), tn=4
# AUC: 0.9 beats 6, 0.8 beats 6, 0.6 beats 5, 0.3 beats 3 negatives -> 20 / 24
# AP: ranks of positives 1, 2, 4, 7 -> (1/1 + 2/2 + 3/4 + 4/7) / 4
HAND_Y = np.array([1, 1, 1, 1, 0, 0, 0, 0, 0, 0])
HAND_S = np.array([0.9, 0.8, 0.6, 0.3, 0.7, 0.55, 0.4, 0.2, 0.1, 0.05])


# --------------------------------------------------------------------------- point metrics
def test_confusion_hand_case():
    y = [1, 1, 1, 0, 0, 0, 0, 1]
    p = [1, 0, 1, 0, 1, 0, 0, 1]
    assert M.confusion(y, p) == {"tp": 3, "fp": 1, "tn": 3, "fn": 1}


def test_classification_report_hand_case():
    r = M.classification_report(HAND_Y, HAND_S, threshold=0.5)
    assert (r["tp"], r["fp"], r["tn"], r["fn"]) == (3, 2, 4, 1)
    assert r["accuracy"] == pytest.approx(7 / 10)
    assert r["precision"] == pytest.approx(3 / 5)
    assert r["recall"] == pytest.approx(3 / 4)
    assert r["specificity"] == pytest.approx(4 / 6)
    assert r["f1"] == pytest.approx(2 * 3 / (2 * 3 + 2 + 1))
    assert r["balanced_accuracy"] == pytest.approx((3 / 4 + 4 / 6) / 2)
    assert r["roc_auc"] == pytest.approx(20 / 24)
    assert r["pr_auc"] == pytest.approx((1 + 1 + 3 / 4 + 4 / 7) / 4)
    assert (r["n"], r["n_pos"], r["n_neg"], r["threshold"]) == (10, 4, 6, 0.5)


@pytest.mark.parametrize("threshold", [0.2, 0.5, 0.73])
def test_classification_report_matches_sklearn(threshold):
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 500)
    s = rng.random(500)
    pred = (s >= threshold).astype(int)
    r = M.classification_report(y, s, threshold)
    assert r["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))
    assert r["precision"] == pytest.approx(skm.precision_score(y, pred, zero_division=0))
    assert r["recall"] == pytest.approx(skm.recall_score(y, pred))
    assert r["specificity"] == pytest.approx(skm.recall_score(1 - y, 1 - pred))
    assert r["f1"] == pytest.approx(skm.f1_score(y, pred))
    assert r["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(y, pred))
    assert r["roc_auc"] == pytest.approx(skm.roc_auc_score(y, s))
    assert r["pr_auc"] == pytest.approx(skm.average_precision_score(y, s))
    tn, fp, fn, tp = skm.confusion_matrix(y, pred).ravel()
    assert (r["tp"], r["fp"], r["tn"], r["fn"]) == (tp, fp, tn, fn)


def test_inputs_are_checked_with_helpful_errors():
    y = np.array([0, 1, 1, 0])
    with pytest.raises(ValueError, match=r"\[:, 1\]"):
        M.classification_report(y, np.full((4, 2), 0.5))
    with pytest.raises(ValueError, match="softmax"):
        M.classification_report(y, np.array([-2.0, 3.0, 1.0, 0.0]))
    with pytest.raises(ValueError, match="binary labels"):
        M.classification_report(np.array([0, 1, 2, 0]), np.full(4, 0.5))
    with pytest.raises(ValueError, match="same order"):
        M.classification_report(y, np.full(3, 0.5))
    with pytest.raises(ValueError, match="both classes"):
        M.classification_report(np.zeros(4, int), np.full(4, 0.5))
    with pytest.raises(ValueError, match="unknown metric"):
        M.bootstrap_ci(y, np.full(4, 0.5), metric="acuracy")


# --------------------------------------------------------------------------- bootstrap
def _sk(name, threshold=0.5):
    """scikit-learn reference of each named metric, as f(y_true, y_score)."""
    hard = {
        "accuracy": skm.accuracy_score,
        "precision": lambda a, b: skm.precision_score(a, b, zero_division=0),
        "recall": skm.recall_score,
        "specificity": lambda a, b: skm.recall_score(1 - a, 1 - b),
        "f1": skm.f1_score,
        "balanced_accuracy": skm.balanced_accuracy_score,
    }
    if name in hard:
        return lambda a, s: hard[name](a, (s >= threshold).astype(int))
    return {"roc_auc": skm.roc_auc_score, "pr_auc": skm.average_precision_score}[name]


@pytest.mark.parametrize("stratified", [True, False])
def test_vectorised_bootstrap_equals_sklearn_on_every_resample(stratified):
    y, s = _scores(60, 80, seed=5)  # rounded scores: many ties
    for name in M.METRICS:
        fast = M.bootstrap_samples(y, s, name, n_boot=100, seed=7, stratified=stratified,
                                   threshold=0.45)
        slow = M.bootstrap_samples(y, s, _sk(name, 0.45), n_boot=100, seed=7,
                                   stratified=stratified)
        np.testing.assert_allclose(fast, slow, atol=1e-12, err_msg=name)


def test_stratified_bootstrap_keeps_class_counts():
    y, s = _scores(30, 50, seed=2)
    # a perfect classifier stays perfect on every resample
    vals = M.bootstrap_samples(y, y.astype(float), "accuracy", n_boot=200)
    assert np.all(vals == 1.0)
    idx = M._draw_indices(y, 200, seed=0, stratified=True)
    assert np.all(y[idx].sum(1) == 30)
    idx = M._draw_indices(y, 200, seed=0, stratified=False)
    assert np.unique(y[idx].sum(1)).size > 5  # class counts vary without stratification


def test_bootstrap_ci_contains_point_and_shrinks_with_n():
    widths = {}
    for n in (100, 1600):
        y, s = _scores(n, n, seed=11, decimals=None)
        for name in ("accuracy", "roc_auc", "specificity"):
            point, lo, hi = M.bootstrap_ci(y, s, name, n_boot=1000, seed=0)
            assert lo <= point <= hi, (name, n, lo, point, hi)
            ref = _sk(name)(y, s)
            assert point == pytest.approx(ref)
            widths[(name, n)] = hi - lo
    for name in ("accuracy", "roc_auc", "specificity"):
        # 16x the data: the width should fall by about 4x; demand at least 2.5x
        assert widths[(name, 1600)] < widths[(name, 100)] / 2.5, widths


def test_bootstrap_ci_callable_equals_named_and_is_seeded(test_split):
    y, s = test_split
    named = M.bootstrap_ci(y, s, "f1", n_boot=300, seed=4)
    called = M.bootstrap_ci(y, s, _sk("f1"), n_boot=300, seed=4)
    assert named == pytest.approx(called, abs=1e-12)
    assert M.bootstrap_ci(y, s, "f1", n_boot=300, seed=4) == named
    assert M.bootstrap_ci(y, s, "f1", n_boot=300, seed=5) != named
    # a narrower interval at alpha=0.5 than at alpha=0.05, same resamples
    _, lo50, hi50 = M.bootstrap_ci(y, s, "f1", n_boot=300, seed=4, alpha=0.5)
    assert named[1] < lo50 < hi50 < named[2]


def test_bootstrap_is_vectorised_for_threshold_metrics(test_split):
    """A ratio within one run, not a wall-clock budget: the vectorised bootstrap of 2,000
    resamples beats a per-resample loop of sklearn calls by a wide margin on any machine."""
    y, s = test_split
    M.bootstrap_ci(y, s, "accuracy", n_boot=50)  # warm-up
    t0 = time.perf_counter()
    M.bootstrap_ci(y, s, "accuracy", n_boot=2000)
    vectorised = time.perf_counter() - t0
    rng = np.random.default_rng(0)
    pred = (np.asarray(s) >= 0.5).astype(int)
    t0 = time.perf_counter()
    for _ in range(200):
        idx = rng.integers(0, len(y), len(y))
        accuracy_score(np.asarray(y)[idx], pred[idx])
    loop = (time.perf_counter() - t0) * 10  # per 2,000 resamples
    print(f"bootstrap of 2,000 resamples: vectorised {vectorised:.3f} s, sklearn loop {loop:.3f} s")
    assert vectorised * 3 < loop, f"vectorised {vectorised:.3f} s vs loop {loop:.3f} s"


def test_report_with_ci(test_split):
    y, s = test_split
    df = M.report_with_ci(y, s, n_boot=500, seed=0)
    assert list(df.index) == list(M.METRICS)
    assert list(df.columns) == ["point", "low", "high"]
    rep = M.classification_report(y, s)
    for name in M.METRICS:
        assert df.loc[name, "point"] == pytest.approx(rep[name])
        assert df.loc[name, "low"] <= df.loc[name, "point"] <= df.loc[name, "high"]
        # one shared resampling: each row equals the single-metric interval, same seed
        assert tuple(df.loc[name]) == pytest.approx(
            M.bootstrap_ci(y, s, name, n_boot=500, seed=0), abs=1e-12)
    assert df.attrs["n_pos"] == 300 and df.attrs["n_neg"] == 360


# --------------------------------------------------------------------------- paired tests
def _mcnemar_case(b: int, c: int, both_right: int, both_wrong: int):
    """Labels and two prediction vectors with the requested discordant counts."""
    y = np.r_[np.ones(both_right + b + c + both_wrong, int)]
    right = y.copy()
    wrong = 1 - y
    pa = np.r_[right[:both_right], right[:b], wrong[:c], wrong[:both_wrong]]
    pb = np.r_[right[:both_right], wrong[:b], right[:c], wrong[:both_wrong]]
    return y, pa, pb


def test_mcnemar_known_table():
    y, pa, pb = _mcnemar_case(b=10, c=2, both_right=50, both_wrong=5)
    r = M.mcnemar(y, pa, pb)
    assert (r["b"], r["c"]) == (10, 2)
    assert r["table"] == [[50, 10], [2, 5]]
    assert r["exact"] is True
    assert r["statistic"] == 2
    # two-sided exact binomial: 2 * P(X <= 2), X ~ Bin(12, 1/2) = 2 * (1 + 12 + 66) / 4096
    assert r["p_value"] == pytest.approx(2 * (1 + 12 + 66) / 4096)
    assert r["p_value"] == pytest.approx(stats.binomtest(2, 12, 0.5).pvalue)
    swapped = M.mcnemar(y, pb, pa)
    assert (swapped["b"], swapped["c"]) == (2, 10)
    assert swapped["p_value"] == pytest.approx(r["p_value"])
    same = M.mcnemar(y, pa, pa)
    assert (same["b"], same["c"], same["p_value"]) == (0, 0, 1.0)


def _naive_delong(y, sa, sb):
    """DeLong 1988 straight from the definition, O(m n): structural components via psi."""
    out = []
    for s in (sa, sb):
        x, z = s[y == 1], s[y == 0]
        psi = (x[:, None] > z[None, :]) + 0.5 * (x[:, None] == z[None, :])
        out.append((psi.mean(), psi.mean(1), psi.mean(0)))
    (auc_a, v10a, v01a), (auc_b, v10b, v01b) = out
    m, n = v10a.size, v01a.size
    s10, s01 = np.cov(np.vstack([v10a, v10b])), np.cov(np.vstack([v01a, v01b]))
    cov = s10 / m + s01 / n
    return auc_a, auc_b, cov


def test_delong_fast_algorithm_equals_definition():
    y, sa = _scores(70, 90, seed=21)                      # ties from rounding
    sb = np.clip(sa + np.random.default_rng(22).normal(0, 0.15, sa.size), 0, 1).round(2)
    r = M.delong_test(y, sa, sb)
    auc_a, auc_b, cov = _naive_delong(y, sa, sb)
    assert r["auc_a"] == pytest.approx(auc_a) and r["auc_b"] == pytest.approx(auc_b)
    assert r["auc_a"] == pytest.approx(skm.roc_auc_score(y, sa))
    assert r["var_a"] == pytest.approx(cov[0, 0])
    assert r["var_b"] == pytest.approx(cov[1, 1])
    assert r["cov"] == pytest.approx(cov[0, 1])
    se = math.sqrt(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1])
    assert r["se"] == pytest.approx(se)
    assert r["p_value"] == pytest.approx(2 * stats.norm.sf(abs(auc_a - auc_b) / se))


def test_auc_difference_identical_scores(test_split):
    y, s = test_split
    r = M.auc_difference(y, s, s, n_boot=500)
    assert r["delta"] == 0 and r["low"] == 0 and r["high"] == 0
    assert r["p_value"] == 1.0
    d = M.delong_test(y, s, s)
    assert d["delta"] == 0 and d["p_value"] == 1.0


def test_auc_difference_clearly_better_and_agrees_with_delong(test_split):
    y, s = test_split
    worse = np.clip(s + np.random.default_rng(9).normal(0, 0.25, s.size), 0, 1)
    r = M.auc_difference(y, s, worse, n_boot=2000, seed=0)
    assert r["delta"] == pytest.approx(skm.roc_auc_score(y, s) - skm.roc_auc_score(y, worse))
    assert r["delta"] > 0.03
    assert 0 < r["low"] < r["delta"] < r["high"]
    assert r["p_value"] < 0.01
    d = M.delong_test(y, s, worse)
    assert d["delta"] == pytest.approx(r["delta"])
    assert d["p_value"] < 0.01
    # DeLong's standard error and the paired-bootstrap spread estimate the same thing
    boot_se = (r["high"] - r["low"]) / (2 * stats.norm.ppf(0.975))
    assert d["se"] == pytest.approx(boot_se, rel=0.2)
    # and the reversed comparison flips the sign, not the p-value
    rev = M.auc_difference(y, worse, s, n_boot=2000, seed=0)
    assert rev["delta"] == pytest.approx(-r["delta"])
    assert rev["p_value"] == pytest.approx(r["p_value"])


def test_delong_variance_matches_bootstrap_of_one_auc(test_split):
    y, s = test_split
    other = np.clip(s + np.random.default_rng(2).normal(0, 0.1, s.size), 0, 1)
    d = M.delong_test(y, s, other)
    boot = M.bootstrap_samples(y, s, "roc_auc", n_boot=2000, seed=1)
    assert d["var_a"] == pytest.approx(np.var(boot, ddof=1), rel=0.2)


# --------------------------------------------------------------------------- calibration
def test_ece_zero_for_perfectly_calibrated_bins():
    # 20 images per bin, all scored at the bin centre c, exactly 20*c of them malignant
    ys, ss = [], []
    for c in np.arange(0.05, 1.0, 0.1):
        k = int(round(20 * c))
        assert k == pytest.approx(20 * c)
        ys += [1] * k + [0] * (20 - k)
        ss += [c] * 20
    # 20 * 0.05 = 1 malignant, ... 20 * 0.95 = 19 malignant
    assert M.expected_calibration_error(ys, ss, n_bins=10) == pytest.approx(0.0, abs=1e-12)
    rc = M.reliability_curve(ys, ss, n_bins=10)
    np.testing.assert_allclose(rc["accuracy"], rc["confidence"])
    assert rc["count"].tolist() == [20] * 10


def test_ece_hand_case_overconfident():
    # everything scored 0.9 but only half malignant -> |0.5 - 0.9| = 0.4
    y = np.r_[np.ones(50, int), np.zeros(50, int)]
    assert M.expected_calibration_error(y, np.full(100, 0.9)) == pytest.approx(0.4)
    # two bins: 0.2 (10 images, 1 malignant) and 0.8 (30 images, 30 malignant)
    y2 = np.r_[1, np.zeros(9, int), np.ones(30, int)]
    s2 = np.r_[np.full(10, 0.2), np.full(30, 0.8)]
    assert M.expected_calibration_error(y2, s2) == pytest.approx(10 / 40 * 0.1 + 30 / 40 * 0.2)


def test_reliability_curve_matches_sklearn(test_split):
    y, s = test_split
    rc = M.reliability_curve(y, s, n_bins=10)
    prob_true, prob_pred = calibration.calibration_curve(y, s, n_bins=10, strategy="uniform")
    ne = rc[rc["count"] > 0]
    np.testing.assert_allclose(ne["accuracy"], prob_true)
    np.testing.assert_allclose(ne["confidence"], prob_pred)
    assert rc["count"].sum() == y.size


# --------------------------------------------------------------------------- operating points
@pytest.mark.parametrize("target", [0.8, 0.9, 0.95, 1.0])
def test_threshold_at_sensitivity_is_largest_reaching_target(test_split, target):
    y, s = test_split  # rounded scores -> ties
    t = M.threshold_at_sensitivity(y, s, target)
    assert np.mean(s[y == 1] >= t) >= target
    larger = np.unique(s[s > t])
    if larger.size:
        assert np.mean(s[y == 1] >= larger.min()) < target
    spec = M.specificity_at_threshold(y, s, t)
    assert spec == pytest.approx(M.classification_report(y, s, t)["specificity"])
    assert spec == pytest.approx(np.mean(s[y == 0] < t))


def test_threshold_on_validation_applies_to_test():
    yv, sv = _scores(150, 180, seed=31, decimals=None)
    yt, st = _scores(150, 180, seed=32, decimals=None)
    t = M.threshold_at_sensitivity(yv, sv, 0.95)
    assert M.classification_report(yv, sv, t)["recall"] >= 0.95
    test_sens = M.classification_report(yt, st, t)["recall"]
    assert 0.85 < test_sens <= 1.0  # close to, not guaranteed at, the validation target


def test_mean_sd_table():
    df = pd.DataFrame({"model": ["a"] * 3 + ["b"] * 2,
                       "acc": [0.8, 0.9, 0.85, 0.7, 0.72]})
    t = M.mean_sd_table(df, "model", "acc", decimals=3)
    assert t.loc["a", "acc_mean"] == pytest.approx(0.85)
    assert t.loc["a", "acc_sd"] == pytest.approx(np.std([0.8, 0.9, 0.85], ddof=1))
    assert t.loc["b", "acc_n"] == 2
    assert t.loc["a", "acc"] == "0.850 ± 0.050"
    with pytest.raises(KeyError, match="found"):
        M.mean_sd_table(df, "variant", "acc")


# --------------------------------------------------------------------------- intervals in words
def test_interval_word():
    assert M.interval_word(0.01, 0.03) == "above"
    assert M.interval_word(-0.03, -0.01) == "below"
    assert M.interval_word(-0.01, 0.02) == "not distinguishable from"
    assert M.interval_word(0.0, 0.02) == "not distinguishable from"  # touching the reference is not above it
    assert M.interval_word(0.3, 0.5, reference=0.2) == "above" and M.interval_word(0.1, 0.19, 0.2) == "below"
    assert M.interval_word(float("nan"), 0.1) == "not measurable against"
