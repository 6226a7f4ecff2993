"""Tests of skinlesion_utils.verdicts: the arithmetic of printed percentages (chapters 05 and 09,
against brute force over every ``k``) and the performance floors of chapters 02 and 06."""
from __future__ import annotations

import math
from itertools import product

import numpy as np
import pandas as pd
import pytest

from skinlesion_utils import verdicts as V


# --------------------------------------------------------------------------- paper arithmetic
def _brute_force_k(value: float, n: int, decimals: int) -> list[int]:
    return [k for k in range(n + 1) if round(100 * k / n, decimals) == value]


def test_achievable_accuracies():
    acc = V.achievable_accuracies(660)
    assert acc.shape == (661,)
    assert acc[0] == 0 and acc[-1] == 100
    assert acc[615] == pytest.approx(615 / 660 * 100)
    np.testing.assert_allclose(np.diff(acc), 100 / 660)


def test_nearest_fraction_paper_values():
    r = V.nearest_fraction(93.182, 660)
    assert r["k"] == 615 and r["n"] == 660 and r["decimals"] == 3
    assert r["exact"] == pytest.approx(100 * 615 / 660)   # 93.1818...
    assert abs(r["gap"]) < 0.0005
    assert r["consistent"] and r["candidates"] == _brute_force_k(93.182, 660, 3) == [615]

    r = V.nearest_fraction(90.958, 660)
    brute = _brute_force_k(90.958, 660, 3)
    assert r["candidates"] == brute
    assert r["consistent"] == bool(brute)
    # by computation: 600/660 = 90.909 %, 601/660 = 91.061 %, so nothing rounds to 90.958
    assert brute == [] and r["k"] == 600
    assert r["gap"] == pytest.approx(90.958 - 100 * 600 / 660)


def test_nearest_fraction_trailing_zeros_and_decimals():
    # "93.20" (2 decimals) is stricter than 93.2 (1 decimal)
    loose = V.nearest_fraction(93.2, 660)
    strict = V.nearest_fraction("93.20", 660)
    assert loose["decimals"] == 1 and strict["decimals"] == 2
    assert loose["candidates"] == _brute_force_k(93.2, 660, 1)
    assert strict["candidates"] == _brute_force_k(93.2, 660, 2)
    assert set(strict["candidates"]) <= set(loose["candidates"])
    with pytest.raises(ValueError, match="percentage"):
        V.nearest_fraction(193.2, 660)


def test_accuracy_from_recall_specificity():
    n_pos, n_neg = 300, 360
    tp, tn = 274, 341
    recall = f"{100 * tp / n_pos:.2f}"        # as a paper would print it
    spec = f"{100 * tn / n_neg:.2f}"
    acc = f"{100 * (tp + tn) / (n_pos + n_neg):.2f}"
    r = V.accuracy_from_recall_specificity(recall, spec, n_pos, n_neg, accuracy=acc)
    brute = [(a, b) for a, b in product(range(n_pos + 1), range(n_neg + 1))
             if f"{100 * a / n_pos:.2f}" == recall and f"{100 * b / n_neg:.2f}" == spec]
    got = list(zip(r["candidates"]["tp"], r["candidates"]["tn"]))
    assert sorted(got) == sorted(brute) and (tp, tn) in got
    assert r["consistent"] and r["accuracy_consistent"]
    assert r["implied_accuracy"] == pytest.approx(
        (float(recall) * n_pos + float(spec) * n_neg) / (n_pos + n_neg))
    assert r["accuracy_min"] <= 100 * (tp + tn) / 660 <= r["accuracy_max"]
    # an accuracy that no consistent confusion matrix produces is flagged
    far = V.accuracy_from_recall_specificity(recall, spec, n_pos, n_neg, accuracy="95.00")
    assert far["consistent"] and not far["accuracy_consistent"]
    # a recall that is no fraction of 300 (k/300 steps are 0.333 %) has no candidates
    bad = V.accuracy_from_recall_specificity("91.50", spec, n_pos, n_neg)
    assert not any(f"{100 * a / 300:.2f}" == "91.50" for a in range(301))
    assert not bad["consistent"] and math.isnan(bad["accuracy_min"])


# --------------------------------------------------------------------------- achievability
def _brute_force(value: str, n: int) -> list[int]:
    d = len(value.split(".")[1]) if "." in value else 0
    v = float(value)
    return [k for k in range(n + 1) if abs(100 * k / n - v) <= 0.5 * 10 ** -d + 1e-9]


def test_achievability_table_paper_values_by_hand():
    t = V.achievability_table({"headline": "93.182", "resnet": "90.958"}, 660)
    # 615 / 660 = 93.1818... rounds to 93.182; 600 / 660 = 90.9091, 601 / 660 = 91.0606
    assert t.loc["headline", "verdict"] == "consistent" and t.loc["headline", "k"] == "615"
    assert t.loc["headline", "k_below"] == t.loc["headline", "k_above"] == 615
    assert t.loc["resnet", "verdict"] == "inconsistent" and t.loc["resnet", "k"] == ""
    assert (t.loc["resnet", "k_below"], t.loc["resnet", "k_above"]) == (600, 601)
    assert t.loc["resnet", "pct_below"] == pytest.approx(100 * 600 / 660)
    assert t.loc["resnet", "pct_above"] == pytest.approx(100 * 601 / 660)
    assert t.loc["resnet", "gap"] == pytest.approx(90.958 - 100 * 600 / 660)
    assert list(t.index) == ["headline", "resnet"] and set(t["n"]) == {660}


@pytest.mark.parametrize("value,n", [("93.182", 660), ("90.958", 660), ("93.10", 660), ("80.15", 3297),
                                     ("50", 7), ("33.3", 3), ("100", 660), ("0.0", 11)])
def test_achievability_table_equals_brute_force(value, n):
    row = V.achievability_table({"x": value}, n).loc["x"]
    fits = _brute_force(value, n)
    assert row["verdict"] == ("consistent" if fits else "inconsistent")
    assert row["k"] == ", ".join(map(str, fits))
    assert row["decimals"] == (len(value.split(".")[1]) if "." in value else 0)
    if fits:
        assert (row["k_below"], row["k_above"]) == (min(fits), max(fits))
    else:  # neighbours bracket the printed value and are adjacent
        assert row["k_above"] == row["k_below"] + 1
        assert row["pct_below"] < float(value) < row["pct_above"]


def test_achievability_table_errors():
    with pytest.raises(ValueError, match="non-empty dict"):
        V.achievability_table({}, 660)
    with pytest.raises(ValueError, match="percentage"):
        V.achievability_table({"x": "193.0"}, 660)


# --------------------------------------------------------------------------- floors
def test_floors_table_marks_each_check():
    t = V.floors_table([("auc", 0.8, 0.85), ("count", 7, 6), ("equal", 0.5, 0.5)])
    assert t["passes"].tolist() == [True, False, True] and list(t.index) == ["auc", "count", "equal"]
    assert list(t.columns) == ["floor", "measured", "passes"]


# --------------------------------------------------------------------------- one verdict per row
def test_printed_row_prints_the_five_cells_worked_by_hand():
    # 271/300 = 90.333, 293/360 = 81.389, 564/660 = 85.455, 271/338 = 80.178, F1 = 542/638 = 84.953
    assert V.printed_row(271, 293, 300, 360) == {"accuracy": "85.455", "precision": "80.178", "recall": "90.333",
                                                 "specificity": "81.389", "f1": "84.953"}
    # 2 of 3 positives, 1 of 2 negatives: accuracy 3/5, precision 2/3, recall 2/3, specificity 1/2, F1 2/3
    assert V.printed_row(2, 1, 3, 2, decimals=1) == {"accuracy": "60.0", "precision": "66.7", "recall": "66.7",
                                                     "specificity": "50.0", "f1": "66.7"}


def test_row_consistency_on_rows_worked_by_hand():
    rows = pd.DataFrame.from_dict({
        # tp=271 of 300 -> 90.333, tn=293 of 360 -> 81.389, (271+293)/660 = 564/660 = 85.455,
        # precision 271/(271+67) = 80.178, F1 = 542/(542+67+29) = 84.953: one matrix prints all five
        "from counts": {"accuracy": "85.455", "precision": "80.178", "recall": "90.333", "specificity": "81.389",
                        "f1": "84.953"},
        # accuracy above both recall (90.333) and specificity (83.611): impossible for a weighted mean of the two;
        # and 90.958 % of 660 is 600.3 images (600/660 = 90.909, 601/660 = 91.061)
        "impossible accuracy": {"accuracy": "90.958", "precision": "90.742", "recall": "90.333",
                                "specificity": "83.611", "f1": "90.769"},
        # recall 85.583 % of 300 = 256.75 images: no count; F1 of P=85.336, R=85.583 is 85.459, not 85.395
        "no recall count": {"accuracy": "85.455", "precision": "85.336", "recall": "85.583", "specificity": "78.333",
                            "f1": "85.395"},
    }, orient="index")
    out = V.row_consistency(rows, 300, 360)
    ok = out.loc["from counts"]
    assert ok["verdict"] == "consistent" and ok["one_matrix"] == "tp=271 tn=293"
    assert (ok["accuracy_k"], ok["recall_k"], ok["specificity_k"]) == ("564/660", "271/300", "293/360")
    assert ok["acc_between"] and ok["f1_from_pr"].endswith("fits") and ok["detail"] == "every check passes"
    bad = out.loc["impossible accuracy"]
    assert bad["verdict"] == "inconsistent" and not bad["acc_between"]
    assert bad["accuracy_k"].startswith("no k/660 (nearest 600/660")
    assert (bad["recall_k"], bad["specificity_k"]) == ("271/300", "301/360")
    # implied accuracy (271 + 301) / 660 = 86.667 %
    assert bad["implied_accuracy"] == "86.667-86.667, printed 90.958"
    nr = out.loc["no recall count"]
    assert nr["recall_k"].startswith("no k/300") and nr["specificity_k"] == "282/360"
    assert nr["f1_from_pr"] == "85.459, printed 85.395" and "F1 from precision and recall" in nr["detail"]
    assert not out["r_eq_s_eq_acc"].any() and (out["weighted_fit"] == "").all()


def test_row_consistency_agrees_with_brute_force_on_random_matrices():
    rng = np.random.default_rng(0)
    for tp, tn in rng.integers([0, 0], [301, 361], size=(20, 2)):
        tp, tn = max(int(tp), 1), int(tn)
        row = V.printed_row(tp, tn, 300, 360)
        r = V.row_consistency(pd.DataFrame([row], index=["x"]), 300, 360).loc["x"]
        assert r["verdict"] == "consistent", (tp, tn, r["detail"])
        m = V.matching_matrices(row, 300, 360)
        assert (tp, tn) in set(zip(m["tp"], m["tn"]))


def test_weighted_averages_make_recall_equal_accuracy_and_fractions_convert():
    assert V.to_percent("0.7652", "fraction") == "76.52" and V.to_percent("0.80", "fraction") == "80"
    assert V.to_percent("93.182") == "93.182"
    # class-weighted recall is the accuracy for every matrix: (300 * r_pos + 360 * r_neg) / 660
    g = V.matching_matrices({}, 30, 36, average="weighted")
    np.testing.assert_allclose(g["recall"], 100 * (g["tp"] + g["tn"]) / 66)
    # a row printed from weighted averages of tp=20, tn=30 on 30/36 is found under "weighted", flagged equal
    w = g[(g["tp"] == 20) & (g["tn"] == 30)].iloc[0]
    row = {c: f"{w[c] / 100:.4f}" for c in V.ROW_COLUMNS}
    out = V.row_consistency(pd.DataFrame([row], index=["w"]), 30, 36, unit="fraction").loc["w"]
    assert out["r_eq_s_eq_acc"] and "tp=20 tn=30" in out["weighted_fit"]
    assert out["verdict"] == "inconsistent" and "recall = k/30" in out["detail"]
    with pytest.raises(ValueError, match="columns"):
        V.row_consistency(pd.DataFrame([{"accuracy": "1"}]), 30, 36)


def test_f1_from_precision_recall_bounds():
    r = V.f1_from_precision_recall("80.178", "90.333", "84.953")
    assert r["consistent"] and r["low"] <= r["implied"] <= r["high"]
    assert r["implied"] == pytest.approx(2 * 80.178 * 90.333 / (80.178 + 90.333))
    assert not V.f1_from_precision_recall("80.178", "90.333", "84.960")["consistent"]
