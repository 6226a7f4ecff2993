"""Checks of chapter 02's exercises (the baselines under one protocol).

* :func:`check_above_chance` — Exercise 1 (★☆☆): which models' ROC AUC interval lies entirely
  above 0.5 (a results table with ``roc_auc_low``/``roc_auc_high`` columns).
* :func:`check_conv_flops` — Exercise 2 (★★☆): the FLOPs of one 2-D convolution from its shape
  (2 FLOPs per multiply-add, as ``torch.utils.flop_counter`` counts them).
* :func:`check_pareto_front` — Exercise 3 (★★★): the models no other model beats on both
  accuracy and FLOPs.

Each check compares the learner's function with a reference computed another way
(:func:`skinlesion_utils.metrics.report_with_ci` on real test images, PyTorch's own
``FlopCounterMode`` on a real convolution, a brute-force pairwise domination test) on made-up
cases and on cases built from the real data (colour rules on the test images; the chapter's stored results table), and prints ✅ or ❌ with a hint — never the
expected values.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
import pandas as pd
import torch

from ..data import DataError, ImageTensorStore
from ..metrics import report_with_ci
from ..results import read_results
from . import Case, Check, describe

# ----------------------------------------------------------------- real data: colour rules


@lru_cache(maxsize=1)
def _colour_rules() -> tuple[np.ndarray, dict[str, np.ndarray], torch.Tensor]:
    """Labels int [660], scores of three colour rules on the real test images at 64 px (weak but
    real classifiers that need no training), and the images uint8 [660, 3, 64, 64]."""
    test = ImageTensorStore.from_dataset("isic_balanced", split="test", resolution=64, progress=False)
    x = test.images.float() / 255
    bright = x.mean(dim=(1, 2, 3)).numpy()
    red = (x[:, 0] - x[:, 2]).mean(dim=(1, 2)).numpy()
    centre = x[:, :, 16:48, 16:48].mean(dim=(1, 2, 3)).numpy()

    def rank01(v):
        return (np.argsort(np.argsort(v)) + 0.5) / len(v)

    scores = {"darkness": rank01(-bright), "redness": rank01(red), "dark centre": rank01(bright - centre),
              "brightness": rank01(bright)}
    return test.labels.numpy().astype(np.int64), scores, test.images


def _real_table() -> pd.DataFrame:
    y, scores, _ = _colour_rules()
    rows = {}
    for name, s in scores.items():
        ci = report_with_ci(y, s, n_boot=400, seed=0, metrics=("accuracy", "roc_auc"))
        rows[name] = {"accuracy": ci.loc["accuracy", "point"], "roc_auc": ci.loc["roc_auc", "point"],
                      "roc_auc_low": ci.loc["roc_auc", "low"], "roc_auc_high": ci.loc["roc_auc", "high"]}
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("model")


# ----------------------------------------------------------------- Exercise 1: above chance


def _above_reference(table: pd.DataFrame) -> list[str]:
    return [m for m in table.index if table.loc[m, "roc_auc_low"] > 0.5]


def _above_compare(got, expected: list[str], case: Case) -> str | None:
    if isinstance(got, (pd.Index, np.ndarray, tuple, set, pd.Series)):
        got = list(got.index if isinstance(got, pd.Series) and got.dtype == bool else got)
    if not isinstance(got, list):
        return f"return a list of model names; got {describe(got)}."
    if got == expected:
        return None
    table = case.args[0]
    if sorted(map(str, got)) == sorted(map(str, expected)):
        return "right models, wrong order: keep the order of the table's rows."
    if got == [m for m in table.index if table.loc[m, "roc_auc"] > 0.5]:
        return ("you tested the point estimate; a model is above chance only when its whole interval is, "
                "i.e. its lower bound exceeds 0.5.")
    if got == [m for m in table.index if table.loc[m, "roc_auc_low"] >= 0.5]:
        return "a lower bound of exactly 0.5 does not exclude chance: use a strict inequality."
    if got == [m for m in table.index if table.loc[m, "roc_auc_high"] > 0.5]:
        return "you tested the upper bound; the interval must lie above 0.5 as a whole."
    return f"{len(set(got) ^ set(expected))} model(s) differ from the reference selection."


def _above_cases() -> list[Case]:
    def t(rows):
        return pd.DataFrame(rows, columns=["model", "roc_auc", "roc_auc_low", "roc_auc_high"]).set_index("model")

    return [
        Case("three models, one clearly above chance", (t([("a", 0.9, 0.85, 0.95), ("b", 0.55, 0.48, 0.61),
                                                            ("c", 0.5, 0.5, 0.5)]),)),
        Case("a model whose point estimate is above 0.5 but whose interval is not",
             (t([("x", 0.53, 0.49, 0.57), ("y", 0.7, 0.66, 0.74)]),)),
        Case("a lower bound exactly at 0.5", (t([("edge", 0.56, 0.5, 0.62), ("z", 0.8, 0.7, 0.9)]),)),
        Case("a model reliably worse than chance", (t([("inverted", 0.3, 0.25, 0.35), ("ok", 0.6, 0.52, 0.68)]),)),
        Case("no model above chance", (t([("p", 0.5, 0.45, 0.55)]),)),
    ]


check_above_chance = Check(
    reference=_above_reference,
    cases=_above_cases,
    real_cases=lambda: [Case("colour rules on the 660 real test images (bootstrap intervals)", (_real_table(),))],
    compare=_above_compare,
    hint="the table is indexed by model and has columns roc_auc, roc_auc_low, roc_auc_high (fractions).",
)
check_above_chance.__doc__ = """Check Exercise 1: ``above_chance(table) -> list[str]``.

``table``: DataFrame indexed by model with ``roc_auc, roc_auc_low, roc_auc_high``. Expected: the
models whose 95 % interval lies entirely above 0.5 (``roc_auc_low > 0.5``), in table order.
Prints ✅/❌; returns True/False."""

# ----------------------------------------------------------------- Exercise 2: conv FLOPs


def _conv_reference(c_in: int, c_out: int, kernel: int, stride: int, padding: int, groups: int, size: int) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    conv = torch.nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=padding, groups=groups, bias=False,
                           device="meta")
    counter = FlopCounterMode(display=False)
    with counter:
        conv(torch.zeros(1, c_in, size, size, device="meta"))
    return int(counter.get_total_flops())


def _conv_compare(got, expected: int, case: Case) -> str | None:
    if isinstance(got, torch.Tensor) and got.numel() == 1:
        got = got.item()
    if isinstance(got, float) and got.is_integer():
        got = int(got)
    if not isinstance(got, (int, np.integer)) or isinstance(got, bool):
        return f"return a whole number of FLOPs (int); got {describe(got)}."
    got = int(got)
    if got == expected:
        return None
    c_in, c_out, k, stride, padding, groups, size = case.args
    out = (size + 2 * padding - k) // stride + 1
    if got * 2 == expected:
        return "that is the number of multiply-adds; count 2 FLOPs per multiply-add."
    if groups > 1 and got == expected * groups:
        return "with groups, each output channel only sees c_in / groups input channels."
    if got == 2 * c_in * c_out * k * k * size * size // groups:
        return "the output is smaller than the input when stride > 1 or padding < k // 2: use the output size."
    if out > 0 and got == 2 * c_in * c_out * k * k * (out + 1) ** 2 // groups:
        return "the output side is floor((size + 2·padding − kernel) / stride) + 1; check the floor and the + 1."
    return "the count differs from PyTorch's FlopCounterMode."


def _conv_cases() -> list[Case]:
    return [
        Case("a 3×3 convolution, 16 → 32 channels, stride 1, padding 1, 8×8 input", (16, 32, 3, 1, 1, 1, 8)),
        Case("a 1×1 convolution, 64 → 16 channels, 5×5 input", (64, 16, 1, 1, 0, 1, 5)),
        Case("a 7×7 stride-2 convolution with padding 3 on a 31×31 input", (3, 8, 7, 2, 3, 1, 31)),
        Case("a depthwise 3×3 convolution (groups = channels), 32 channels, stride 2", (32, 32, 3, 2, 1, 32, 16)),
        Case("a grouped 3×3 convolution, 8 → 16 channels in 4 groups, no padding", (8, 16, 3, 1, 0, 4, 10)),
    ]


def _conv_real_cases() -> list[Case]:
    _, _, images = _colour_rules()
    size = int(images.shape[-1])
    return [
        Case(f"ResNet-50's first convolution (7×7, stride 2, padding 3, 3 → 64) on a real {size}-px test image",
             (3, 64, 7, 2, 3, 1, size)),
        Case(f"AlexNet's first convolution (11×11, stride 4, padding 2, 3 → 64) on a real {size}-px test image",
             (3, 64, 11, 4, 2, 1, size)),
    ]


check_conv_flops = Check(
    reference=_conv_reference,
    cases=_conv_cases,
    real_cases=_conv_real_cases,
    compare=_conv_compare,
    hint="FLOPs = 2 · (c_in / groups) · kernel² · c_out · H_out · W_out for a square input of side `size`, batch 1.",
)
check_conv_flops.__doc__ = """Check Exercise 2: ``conv_flops(c_in, c_out, kernel, stride, padding, groups, size) -> int``.

Expected: the FLOPs of ``nn.Conv2d(c_in, c_out, kernel, stride, padding, groups=groups, bias=False)``
on one ``[1, c_in, size, size]`` input, 2 FLOPs per multiply-add (``FlopCounterMode``'s count).
Prints ✅/❌; returns True/False."""

# ----------------------------------------------------------------- Exercise 3: Pareto front


def _pareto_reference(table: pd.DataFrame) -> list[str]:
    acc = table["accuracy"].to_numpy(float)
    fl = table["gflops"].to_numpy(float)
    keep = []
    for i, name in enumerate(table.index):
        dominated = any((acc[j] >= acc[i]) and (fl[j] <= fl[i]) and ((acc[j] > acc[i]) or (fl[j] < fl[i]))
                        for j in range(len(acc)) if j != i)
        if not dominated:
            keep.append(name)
    order = np.argsort(table.loc[keep, "gflops"].to_numpy(float), kind="stable")
    return [keep[k] for k in order]


def _pareto_compare(got, expected: list[str], case: Case) -> str | None:
    if isinstance(got, (pd.Index, np.ndarray, tuple)):
        got = list(got)
    if not isinstance(got, list):
        return f"return a list of model names; got {describe(got)}."
    if got == expected:
        return None
    if sorted(map(str, got)) == sorted(map(str, expected)):
        return "right models, wrong order: sort the front by FLOPs, cheapest first."
    missing, extra = set(expected) - set(got), set(got) - set(expected)
    if extra and not missing:
        return (f"{len(extra)} model(s) in your front are dominated: another model is at least as accurate "
                "and at most as costly, and strictly better in one of the two.")
    if missing and not extra:
        return (f"{len(missing)} model(s) are missing: a tie in one criterion is not domination — the other "
                "model must be strictly better in at least one.")
    return f"{len(missing ^ extra)} model(s) differ from the reference front."


def _pareto_cases() -> list[Case]:
    def t(rows):
        return pd.DataFrame(rows, columns=["model", "accuracy", "gflops"]).set_index("model")

    return [
        Case("three models on a line of increasing cost and accuracy",
             (t([("big", 0.9, 4.0), ("small", 0.7, 0.5), ("mid", 0.8, 1.0)]),)),
        Case("one model dominates every other", (t([("a", 0.6, 2.0), ("b", 0.9, 0.1), ("c", 0.7, 1.0)]),)),
        Case("two models with the same accuracy, different cost", (t([("cheap", 0.8, 1.0), ("dear", 0.8, 3.0),
                                                                     ("best", 0.85, 5.0)]),)),
        Case("two identical models (neither dominates the other)", (t([("twin1", 0.75, 1.0), ("twin2", 0.75, 1.0),
                                                                       ("low", 0.6, 2.0)]),)),
        Case("a single model", (t([("only", 0.5, 1.0)]),)),
    ]


def _pareto_real_cases() -> list[Case]:
    try:
        table = read_results("02_baselines", "baselines", profile="ci")
    except FileNotFoundError as exc:
        raise DataError(f"the chapter's results table is missing: {str(exc).splitlines()[0]}") from None
    return [Case("the chapter's own results: the 11 baselines' accuracy and GFLOPs (ci profile)",
                 (table[["accuracy", "gflops"]].copy(),))]


check_pareto_front = Check(
    reference=_pareto_reference,
    cases=_pareto_cases,
    real_cases=_pareto_real_cases,
    compare=_pareto_compare,
    hint="model i is dominated when some j has accuracy_j ≥ accuracy_i and gflops_j ≤ gflops_i, "
         "with at least one strict inequality.",
)
check_pareto_front.__doc__ = """Check Exercise 3: ``pareto_front(table) -> list[str]``.

``table``: DataFrame indexed by model with ``accuracy`` (fraction) and ``gflops``. Expected: the
models that no other model dominates (at least as accurate and at most as costly, strictly better
in one), sorted by ``gflops`` ascending (ties in table order). Prints ✅/❌; returns True/False."""

__all__ = ["check_above_chance", "check_conv_flops", "check_pareto_front"]
