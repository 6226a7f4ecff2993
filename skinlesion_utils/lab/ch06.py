"""Checks of chapter 06's exercises (the fusion ablation).

* :func:`check_gain_per_seed` — Exercise 1 (★☆☆): each fusion's gain over the reference, paired
  by seed, from a long table of runs.
* :func:`check_effective_channels` — Exercise 2 (★★☆): the effective number of channels
  ``1 / Σ w²`` of per-channel weights that sum to 1 (what ``asff_code`` learns).
* :func:`check_mcnemar_p` — Exercise 3 (★★★): the exact two-sided McNemar p-value of two
  classifiers on the same images, from the binomial distribution.

Each check compares the learner's function with a reference computed another way (a pandas
merge, the package's :func:`skinlesion_utils.fusion.fusion_weight_summary`, statsmodels'
exact McNemar through :func:`skinlesion_utils.metrics.mcnemar`) on made-up cases and on cases
built from the real test images, and prints ✅ or ❌ with a hint — never the expected values.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
import pandas as pd
import torch

from ..data import ImageTensorStore
from ..fusion import fusion_weight_summary
from ..metrics import classification_report, mcnemar
from . import Case, Check, describe

# ----------------------------------------------------------------- real data: colour rules


@lru_cache(maxsize=1)
def _test_images() -> tuple[np.ndarray, torch.Tensor]:
    """Labels int [660] and images uint8 [660, 3, 64, 64] of the real test split."""
    test = ImageTensorStore.from_dataset("isic_balanced", split="test", resolution=64, progress=False)
    return test.labels.numpy().astype(np.int64), test.images


def _rule_predictions(seed: int) -> dict[str, np.ndarray]:
    """Hard predictions of colour rules on the real test images; ``seed`` jitters each rule's
    threshold, like a retrained model that lands somewhere else."""
    y, images = _test_images()
    x = images.float() / 255
    feats = {"darkness": -x.mean(dim=(1, 2, 3)).numpy(), "redness": (x[:, 0] - x[:, 2]).mean(dim=(1, 2)).numpy(),
             "contrast": x.std(dim=(1, 2, 3)).numpy()}
    rng = np.random.default_rng(seed)
    return {k: (v >= np.quantile(v, rng.uniform(0.4, 0.6))).astype(np.int64) for k, v in feats.items()}


# ----------------------------------------------------------------- Exercise 1: gain per seed


def _gain_reference(table: pd.DataFrame, metric: str, reference: str = "none") -> pd.DataFrame:
    ref = table[table["fusion"] == reference][["seed", metric]].rename(columns={metric: "_ref"})
    other = table[table["fusion"] != reference]
    merged = other.merge(ref, on="seed", how="inner")
    merged["gain"] = merged[metric] - merged["_ref"]
    return merged[["fusion", "seed", "gain"]].reset_index(drop=True)


def _gain_compare(got, expected: pd.DataFrame, case: Case) -> str | None:
    if not isinstance(got, pd.DataFrame):
        return f"return a pandas DataFrame with columns fusion, seed, gain; got {describe(got)}."
    got = got.reset_index()
    missing = [c for c in ("fusion", "seed", "gain") if c not in got.columns]
    if missing:
        return f"the DataFrame needs the columns fusion, seed and gain; {missing} missing."
    key = ["fusion", "seed"]
    g = got[key + ["gain"]].sort_values(key).reset_index(drop=True)
    e = expected.sort_values(key).reset_index(drop=True)
    if len(g) != len(e):
        reference = case.kwargs.get("reference", case.args[2] if len(case.args) > 2 else "none")
        if (g["fusion"] == reference).any():
            return "leave the reference itself out: its gain over itself is 0 by definition."
        return f"expected one row per (fusion, seed) of the non-reference runs; got {len(g)} rows."
    if list(map(tuple, g[key].astype(str).values)) != list(map(tuple, e[key].astype(str).values)):
        return "the (fusion, seed) pairs differ from the runs in the table."
    if np.allclose(g["gain"], e["gain"], atol=1e-9):
        return None
    if np.allclose(g["gain"], -e["gain"], atol=1e-9):
        return "the sign is flipped: the gain is fusion minus reference."
    return ("some gains differ: subtract the reference run with the *same seed*, not the reference's mean "
            "or another seed.")


def _gain_cases() -> list[Case]:
    t1 = pd.DataFrame({"fusion": ["none", "none", "sum", "sum", "asff", "asff"], "seed": [0, 1, 0, 1, 0, 1],
                       "accuracy": [0.80, 0.70, 0.82, 0.71, 0.79, 0.75]})
    shuffled = t1.sample(frac=1.0, random_state=3).reset_index(drop=True)
    t3 = pd.DataFrame({"fusion": ["concat", "base", "concat", "base", "concat", "base"], "seed": [2, 0, 0, 1, 1, 2],
                       "roc_auc": [0.9, 0.8, 0.85, 0.81, 0.8, 0.95]})
    return [
        Case("two seeds, reference listed first", (t1, "accuracy")),
        Case("the same runs in shuffled row order", (shuffled, "accuracy")),
        Case("another metric, another reference name, seeds out of order", (t3, "roc_auc"), {"reference": "base"}),
    ]


def _gain_real_cases() -> list[Case]:
    y, _ = _test_images()
    rows = []
    for seed in (0, 1, 2):
        preds = _rule_predictions(seed)
        for fusion, name in (("none", "darkness"), ("redness", "redness"), ("contrast", "contrast")):
            rows.append({"fusion": fusion, "seed": seed, "accuracy": classification_report(y, preds[name])["accuracy"]})
    return [Case("three colour rules × three threshold seeds on the real test images", (pd.DataFrame(rows), "accuracy"))]


check_gain_per_seed = Check(
    reference=_gain_reference,
    cases=_gain_cases,
    real_cases=_gain_real_cases,
    compare=_gain_compare,
    hint="pair each run with the reference run of the same seed (a merge on 'seed'), then subtract.",
)
check_gain_per_seed.__doc__ = """Check Exercise 1: ``gain_per_seed(table, metric, reference="none") -> pd.DataFrame``.

``table``: one row per run with ``fusion``, ``seed`` and the metric column. Expected: one row per
non-reference run with ``fusion, seed, gain`` = metric(fusion, seed) − metric(reference, seed) (any
row order). Prints ✅/❌; returns True/False."""

# ----------------------------------------------------------------- Exercise 2: effective channels


def _eff_reference(w: torch.Tensor) -> torch.Tensor:
    return torch.tensor(fusion_weight_summary(w, "asff_code")["effective_n"].to_numpy(), dtype=torch.float64)


def _eff_compare(got, expected: torch.Tensor, case: Case) -> str | None:
    if isinstance(got, np.ndarray):
        got = torch.from_numpy(got)
    if not isinstance(got, torch.Tensor):
        return f"return a torch.Tensor with one value per row; got {describe(got)}."
    if tuple(got.shape) != tuple(expected.shape):
        return (f"expected shape {tuple(expected.shape)} — one number per image (row) — got {tuple(got.shape)}. "
                "Reduce over the channels (dim 1) only.")
    g = got.detach().double()
    if torch.allclose(g, expected, rtol=1e-4, atol=1e-6):
        return None
    w = case.args[0].double()
    if torch.allclose(g, 1.0 / expected, rtol=1e-4):
        return "you returned Σ w², the inverse of what is asked."
    ent = torch.exp(-(w * torch.log(w.clamp_min(1e-300))).sum(1))
    if torch.allclose(g, ent, rtol=1e-4):
        return "that is exp(entropy), another 'effective number'; this exercise asks for 1 / Σ w²."
    return "some values differ from 1 / Σ_c w_c² per row."


def _eff_cases() -> list[Case]:
    g = torch.Generator().manual_seed(0)
    peaked = torch.zeros(2, 16)
    peaked[0, 3] = 1.0
    peaked[1, :2] = 0.5
    return [
        Case("uniform weights over 1024 channels", (torch.full((3, 1024), 1 / 1024),)),
        Case("one channel takes everything; two channels share equally", (peaked,)),
        Case("random softmax weights, 5 images × 64 channels", (torch.softmax(torch.randn(5, 64, generator=g), 1),)),
        Case("sharp softmax weights in float64", (torch.softmax(8 * torch.randn(4, 32, generator=g, dtype=torch.float64), 1),)),
    ]


def _eff_real_cases() -> list[Case]:
    _, images = _test_images()
    x = images[:8].float().mean(1).reshape(8, -1) / 255  # brightness of 4,096 pixels per image
    return [Case("a softmax over the 4,096 pixel brightnesses of 8 real test images", (torch.softmax(10 * x, 1),))]


check_effective_channels = Check(
    reference=_eff_reference,
    cases=_eff_cases,
    real_cases=_eff_real_cases,
    compare=_eff_compare,
    hint="w is float [N, C], each row sums to 1; the result is float [N].",
)
check_effective_channels.__doc__ = """Check Exercise 2: ``effective_channels(w) -> torch.Tensor``.

``w``: float [N, C], non-negative, rows sum to 1. Expected: float [N], ``1 / Σ_c w_c²`` per row
(C for uniform weights, 1 when one channel takes all). Prints ✅/❌; returns True/False."""

# ----------------------------------------------------------------- Exercise 3: exact McNemar


def _mcnemar_reference(y_true, pred_a, pred_b) -> float:
    return float(mcnemar(y_true, pred_a, pred_b)["p_value"])


def _mcnemar_compare(got, expected: float, case: Case) -> str | None:
    if isinstance(got, (np.floating, np.integer)):
        got = float(got)
    if isinstance(got, torch.Tensor) and got.numel() == 1:
        got = got.item()
    if not isinstance(got, (float, int)) or isinstance(got, bool):
        return f"return the p-value as a float; got {describe(got)}."
    got = float(got)
    if not 0.0 <= got <= 1.0:
        return "a p-value lies in [0, 1]; clip the doubled tail at 1."
    if abs(got - expected) <= 1e-9 + 1e-6 * expected:
        return None
    y, a, b = (np.asarray(v) for v in case.args)
    ra, rb = a == y, b == y
    n01, n10 = int(np.sum(ra & ~rb)), int(np.sum(~ra & rb))
    from scipy.stats import binom

    one_sided = float(binom.cdf(min(n01, n10), n01 + n10, 0.5))
    if n01 + n10 and abs(got - one_sided) <= 1e-9:
        return "that is the one-sided tail; the test is two-sided (double it, at most 1)."
    if n01 + n10 and abs(got - min(1.0, 2 * float(binom.cdf(min(n01, n10) - 1, n01 + n10, 0.5)))) <= 1e-9:
        return "the tail must include min(b, c) itself: P(X ≤ min(b, c)), not P(X < min(b, c))."
    return ("the p-value differs. Only the discordant images count (one classifier right, the other wrong); "
            "under H0 their split is Binomial(b + c, 1/2).")


def _mcnemar_cases() -> list[Case]:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 60)
    a = np.where(rng.random(60) < 0.8, y, 1 - y)
    b = np.where(rng.random(60) < 0.6, y, 1 - y)
    same = a.copy()
    y2 = np.r_[np.zeros(10, int), np.ones(10, int)]
    a2 = y2.copy()
    b2 = y2.copy()
    b2[:3] = 1  # B wrong on 3 benign images, A right on all
    return [
        Case("60 images, A right 80 % of the time, B 60 %", (y, a, b)),
        Case("two identical classifiers (no discordant image)", (y, a, same)),
        Case("A always right, B wrong on three images", (y2, a2, b2)),
        Case("the same pair with A and B swapped", (y2, b2, a2)),
    ]


def _mcnemar_real_cases() -> list[Case]:
    y, _ = _test_images()
    p0, p1 = _rule_predictions(0), _rule_predictions(1)
    return [
        Case("the darkness and redness rules on the 660 real test images", (y, p0["darkness"], p0["redness"])),
        Case("the darkness rule at two nearby thresholds (few discordant images)", (y, p0["darkness"], p1["darkness"])),
    ]


check_mcnemar_p = Check(
    reference=_mcnemar_reference,
    cases=_mcnemar_cases,
    real_cases=_mcnemar_real_cases,
    compare=_mcnemar_compare,
    hint="count b (A right, B wrong) and c (A wrong, B right); p = min(1, 2·P(X ≤ min(b, c))) with "
         "X ~ Binomial(b + c, 1/2); scipy.stats.binom.cdf gives P(X ≤ k).",
)
check_mcnemar_p.__doc__ = """Check Exercise 3: ``mcnemar_p(y_true, pred_a, pred_b) -> float``.

``y_true, pred_a, pred_b``: int [N] 0/1 arrays on the same images. Expected: the exact two-sided
McNemar p-value, ``min(1, 2 · P(X ≤ min(b, c)))`` with ``X ~ Binomial(b + c, 1/2)`` (1.0 when
b + c = 0). Prints ✅/❌; returns True/False."""

__all__ = ["check_gain_per_seed", "check_effective_channels", "check_mcnemar_p"]
