# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 06 · The fusion ablation: is ASFF's gain larger than seed noise?
#
# The paper credits adaptive spatial feature fusion with a gain of about two accuracy points
# over plain ResNet-50. A gain measured once, with one seed, is only meaningful if retraining the
# *same* model with another seed moves the result by much less. This chapter trains ResNet-50
# with six ways of combining its layer3 and layer4 maps — none, sum, concatenation and the three
# readings of ASFF from chapter 03 — each with several seeds under one protocol; reports every
# run, the mean ± sd, and paired tests on the same test images seed by seed; gives a verdict on
# "gain or noise?"; and looks inside the fused models at the weights they learned.
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/asff-skinlesion-book/asff-skinlesion-book/blob/main/chapters/06_ablation.ipynb)
# · **time:** printed by the header cell below: the `ci` time measured at the chapter's last
# execution and an estimate for a Colab T4 (`full`) from the chapter's GPU work
#
# ```{note}
# The outputs stored on this page come from the `ci` profile executed on a 2-core CPU; the
# last line of the page gives the date and run time. The `full` profile runs the same code at
# 224 px.
# ```

# %% tags=["hide-cell"]
# Setup: install the course package only when it is missing (e.g. on Colab). Colab's own torch
# and torchvision stay in place: the package asks for loose lower bounds only.
import importlib.util
import subprocess
import sys

if importlib.util.find_spec("skinlesion_utils") is None:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "git+https://github.com/asff-skinlesion-book/asff-skinlesion-book"], check=True)

# %%
import time

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from IPython.display import Markdown, display

from skinlesion_utils import fusion, metrics, paper, plots, results, runs, verdicts
from skinlesion_utils.chapter import start_chapter
from skinlesion_utils.data import ImageTensorStore
from skinlesion_utils.studies import ch06_ablation

ch = start_chapter("06_ablation")
P = ch.profile
CHAPTER = "06_ablation"

# %% [markdown]
# ## Six ways to combine two levels
#
# Every variant is the same ResNet-50 body and the same head (GAP → FC(2048) + ReLU → FC(2), as
# in the released code); only the module that merges layer3 ($F_1$, 1024 channels) and layer4
# (2048 channels, resized to layer3's grid and projected to 1024 channels: $F_2$) changes
# (chapter 03 derives them):
#
# | fusion | fused map | learned weights |
# |---|---|---|
# | `none` | layer4 as it is (plain ResNet-50) | — |
# | `sum` | $F_1 + F_2$ | — |
# | `concat` | $[F_1, F_2]$ (2048 channels) | — |
# | `asff_text` | $\omega F_1 + (1-\omega) F_2$ | one $\omega$ per image (the paper's text, eq. 7) |
# | `asff_code` | $w_c F_1 + (1-w_c) F_2$ per channel $c$ | $w \in \mathbb{R}^{1024}$, $\sum_c w_c = 1$ (the released code) |
# | `asff_spatial` | $\alpha_{ij} F_1 + \beta_{ij} F_2$ | one $(\alpha, \beta)$ per position, $\alpha + \beta = 1$ {cite}`liu2019asff` |
#
# `sum` and `concat` are the controls that matter: if `asff_*` beats `none` but not `sum`, the
# gain comes from *using layer3 at all*, not from the adaptive weights.
#
# ## One protocol, several seeds
#
# `runs.ablation_config(fusion, seed, P)` fixes everything except the fusion and the seed — the
# same configs chapters 07–09 load, so nothing is trained twice. The seed sets the
# initialisation, the order of the training images and the augmentation draws; the training
# images (column `train_images` below), the validation split and the 660 test images are the
# same for every run.

# %%
configs = {f"{f} (seed {s})": runs.ablation_config(f, s, profile=P) for s in P.seeds for f in fusion.FUSIONS}
settings = runs.settings_table(configs)
print(f"{len(configs)} runs = {len(fusion.FUSIONS)} fusions × {len(P.seeds)} seeds {tuple(P.seeds)}")
settings.drop(columns=["model"]).head(len(fusion.FUSIONS))

# %% [markdown]
# The `ci` budget is the same as chapter 02's: 64-px images, from random initialisation, a few
# epochs and the same fixed class-stratified subset of the training split (`full` trains on all
# 2,637 images), so that all runs fit in a few minutes on two CPU cores. At 64 px, layer3 is a 4×4 map
# and layer4 2×2, so there is little *spatial* structure for `asff_spatial` to weigh. The `full`
# profile (224 px: 14×14 and 7×7, ImageNet weights, five seeds) is what the question deserves;
# the header's time line estimates what all its runs cost on a Colab T4.
#
# ## Train every fusion with every seed
#
# The runs are trained first, one seed per cell (`runs.train_all`, one line per run: trained, or
# loaded from the run cache), so that no single cell of the page runs for long;
# `ch06_ablation.ablation` then finds every run in the cache.

# %%
t0 = time.perf_counter()
runs.train_all({label: c for label, c in configs.items() if c.seed == P.seeds[0]});

# %%
runs.train_all({label: c for label, c in configs.items() if c.seed != P.seeds[0]});

# %%
runs_table, predictions, trained = ch06_ablation.ablation(fusion.FUSIONS, P.seeds, profile=P, n_boot=1000, verbose=False)
ablation_seconds = time.perf_counter() - t0
tests = ch06_ablation.paired_tests(predictions, reference="none", n_boot=2000)
verdict = ch06_ablation.gain_vs_noise(runs_table, tests, reference="none")

test_store = ImageTensorStore.from_dataset("isic_balanced", split="test", resolution=runs_table["image_size"].iloc[0],
                                           progress=False)
weights = fusion.fusion_weight_table(trained, test_store)
weight_summary = (weights.groupby(["fusion", "seed", "y_true"])
                  [["layer3_share", "layer3_max", "layer3_sd", "effective_n"]].mean().reset_index())
weight_summary["class"] = weight_summary["y_true"].map(dict(enumerate(("benign", "malignant"))))
first = weights[weights["seed"] == P.seeds[0]].round(6)
readings = fusion.fusion_weight_readings(weights)
written = results.save(CHAPTER, {
    "runs": runs_table.set_index(["fusion", "seed"]), "predictions": predictions.set_index(["fusion", "seed"]),
    "paired_tests": tests.set_index(["kind", "fusion", "seed"]), "verdict": verdict,
    "fusion_weights_seed0": first.set_index(["fusion", "seed"]),
    "fusion_weight_summary": weight_summary.set_index(["fusion", "seed"]),
    "fusion_weight_readings": readings.set_index(["fusion", "seed"]),
}, {"settings": settings.reset_index().to_dict(orient="records"), "ablation_seconds": ablation_seconds})
print(f"ablation: {ablation_seconds / 60:.1f} min; written:", ", ".join(p.name for p in written.values()))

# %% [markdown]
# ## Every run, and mean ± sd
#
# The tables and figures below are read back from `results/<profile>/06_ablation/`.

# %%
table = results.read_results(CHAPTER, "runs", profile=P).reset_index()
meta = results.read_results(CHAPTER, "meta", profile=P)
print("results from:", results.provenance_line(meta))
per_run = metrics.ci_strings(table.set_index(["fusion", "seed"]), ["accuracy", "roc_auc"])
per_run

# %%
summary = metrics.mean_sd_table(table, "fusion", ["accuracy", "roc_auc", "recall", "specificity"])
summary[["accuracy", "roc_auc", "recall", "specificity"]]

# %%
fig, axes = plt.subplots(1, 2, figsize=(12, 3.8))
for ax, m in zip(axes, ("accuracy", "roc_auc")):
    plots.plot_points_mean_sd(table, "fusion", m, ax=ax, order=list(fusion.FUSIONS))
fig.tight_layout()
plt.show()

# %% [markdown]
# ## Paired tests, seed by seed
#
# Two runs evaluated on the same 660 images are *paired*: most images are easy or hard for both,
# so comparing their marginal intervals wastes information. Per seed $s$, each fusion is compared
# with `none` trained with the same seed:
#
# - **Exact McNemar test** {cite}`mcnemar1947`, the test recommended for comparing two
#   classifiers on one test set {cite}`dietterich1998tests`, on the hard predictions. Only the discordant
#   images count: $b$ = images the fusion gets right and `none` wrong, $c$ = the reverse. If both
#   models had the same error rate, $b \sim \text{Binomial}(b + c, \tfrac12)$, and
#   $p = \min\bigl(1,\ 2\,P(X \le \min(b, c))\bigr)$.
# - **Paired bootstrap of the ROC AUC difference**: resample the 660 images (stratified by
#   class) 2,000 times, recompute both AUCs on the *same* resample, and take the 2.5 and 97.5 %
#   quantiles of the difference {cite}`efron1993bootstrap`.
#
# The `seed noise` rows apply the same tests to `none` against `none` with another seed: the
# model does not change at all, only its seed. Whatever they show is the size of a "difference"
# that means nothing.

# %%
paired = results.read_results(CHAPTER, "paired_tests", profile=P).reset_index()
paired.round(4)

# %% [markdown]
# ## Gain or noise?
#
# `ch06_ablation.gain_vs_noise` calls a difference *larger than noise* — a gain, or a loss when
# the fusion is worse than `none` — only if it has the same sign for every seed, every seed's
# paired test rejects "no difference" at the 5 % level, and the mean difference is more than
# twice the seed-to-seed standard deviation of the metric (of `none` and of the fusion itself).
# With two seeds a standard deviation has one degree of freedom, so this is a screen, not a
# proof — which is why `full` uses five.

# %%
v = results.read_results(CHAPTER, "verdict", profile=P, index=["fusion", "metric"])
v.round(4)

# %%
gain = paper.claim("gain.accuracy_over_resnet50")
acc_gain = v.xs("accuracy", level="metric")["mean_gain"]
print(f"paper: {gain.label} — on 660 test images that is {gain.number / 100 * 660:.1f} images")
for f, g in acc_gain.items():
    print(f"  {f:13s} mean accuracy gain over none here: {100 * g:+.2f} points ({g * 660:+.1f} images), "
          f"verdict: {v.loc[(f, 'accuracy'), 'verdict']}")
noise = paired[paired["kind"] == "seed noise"]
for r, rejects in zip(noise.itertuples(), ch06_ablation.rejects_no_difference(noise).any(axis=1)):
    print(f"seed noise: none (seed {r.seed}) against {r.versus}: {100 * r.accuracy_delta:+.2f} points, "
          f"McNemar p = {r.mcnemar_p:.3f}, AUC difference [{r.auc_delta_low:+.3f}, {r.auc_delta_high:+.3f}] — "
          f"{'a paired test alone would call this significant' if rejects else 'not significant'}")

# %% [markdown]
# ## What the three ASFF variants learn
#
# After a forward pass over the test images, `model.last_fusion_weights` holds each variant's
# weights for every image. To compare them, each is reduced to the weight of layer3 ($F_1$) in
# the mix: $\omega$ for `asff_text`; the channel weights $w_c$ for `asff_code`, summarised by
# their *effective number* $1/\sum_c w_c^2$ (1024 when uniform, 1 when one channel takes
# everything) because their mean is $1/1024$ by construction; the mean of $\alpha_{ij}$ over
# positions for `asff_spatial`. Per fusion, seed and class (0 = benign, 1 = malignant):

# %%
ws = results.read_results(CHAPTER, "fusion_weight_summary", profile=P).reset_index()
ws.round(4)

# %%
w0 = results.read_results(CHAPTER, "fusion_weights_seed0", profile=P).reset_index()
fig = plots.plot_fusion_weights_by_class(w0)
fig.suptitle(f"Fusion weights over the 660 test images (seed {P.seeds[0]})", y=1.03, fontsize=10)
plt.show()

# %% [markdown]
# The histograms show where the weights sit; `fusion.fusion_weight_readings` turns them
# into one sentence per trained model (an image counts as "layer3 switched off" when its
# layer-3 weight is below 0.01, i.e. layer3 contributes under 1 % of the fused map):

# %%
readings = results.read_results(CHAPTER, "fusion_weight_readings", profile=P).reset_index()
display(readings.drop(columns=["reading"]).round(4))
display(Markdown("\n".join(f"- **{r.fusion}**, seed {r.seed}: {r.reading}." for r in readings.itertuples())))

# %% [markdown]
# Read these lines before reading any accuracy difference above. An adaptive weight is only a
# "fusion" if it mixes; when ω sits at 0 for every image, `asff_text` *is* ResNet-50 with an
# extra upsample-and-project on layer4, and any gain it shows cannot come from layer3 — which is
# what the `asff_text` runs above learned. Two
# mechanisms push the weights of these variants to the edge of the simplex. First, the softmax
# that produces them saturates: once one logit leads by ten or more, the weight of the other
# level is below $5\times10^{-5}$ and its gradient is as small. Second, AdamW normalises each
# parameter's step by the running size of its gradient, so a tiny but consistent gradient
# still moves the logits by roughly the learning rate every step, in the same direction, and
# through a 1,024-wide hidden layer each step moves the logit gap by the summed steps of a
# thousand weights — which is how even the few dozen steps of a `ci` run (epochs × batches per
# epoch, from the settings above) can drive the gap far beyond ten. SGD, whose
# steps shrink with the gradient, would stall near the edge instead of racing past it; a
# temperature on the softmax, weight decay on the weight branch, or a lower learning rate for
# it would all keep the weights in play. Whether the paper's models mixed their levels cannot
# be checked: it reports no learned weights. The `asff_code` reading shows the same pull in
# the released code's form — its 1,024 channel weights share one softmax, so at most a few
# channels can take layer3 at all — and `asff_spatial`, whose weights compete per position
# between two logits only, is the variant that kept both levels in the mix here.
#
# ## Beside the paper
#
# The paper's Table 3 (no fusion / direct sum / concatenation / ASFF) next to our first seed's
# runs, each metric with its 95 % interval (`paper.beside_ours`; the paper's two-level ASFF is
# this book's `asff_text`). The paper prints one number per cell and does not say how many runs
# it rests on:

# %%
first_seed = table[table["seed"] == P.seeds[0]].set_index("fusion")
paper.beside_ours(3, first_seed, ids={"asff_text": "asff"})

# %%
gains = pd.DataFrame([paper.claim(c).__dict__ for c in ("gain.accuracy_over_resnet50",
                                                        "gain.accuracy_over_resnet50_v1_summary")])
gains.set_index("id")[["value", "unit", "status", "what"]]

# %% [markdown]
# The v2 gain is the difference of Table 3's ASFF and baseline accuracies as printed; the v1
# figure comes from a machine-written summary. Neither says how many seeds it rests on, and in
# the paper the two rows were trained with different optimizers and learning rates (Table 1,
# chapter 04) — here every variant shares one recipe. Chapter 09 checks whether each row of
# Table 3 can come from one confusion matrix on 660 images. A GPU reference run (`python -m
# skinlesion_utils gpu-bench`: ResNet-50 against ASFF-ResNet50 at 224 px, one seed) and `full`
# results of this chapter appear below when they exist, with their device, date and commit.

# %%
ref = results.gpu_reference()
if ref is None:
    print("No GPU reference yet (results/full/gpu-bench/reference.json is written by `make gpu-bench` on a GPU).")
else:
    print("GPU reference:", results.provenance_line({"profile": "full", **ref}))
    print("setup:", {k: ref["setup"].get(k) for k in ("image_size", "epochs", "batch_size", "recipe", "pretrained")})
    display(metrics.ci_strings(ref["table"], ["accuracy", "roc_auc"]))  # noqa: F821
    mc, ad = ref["paired"].get("mcnemar", {}), ref["paired"].get("auc_difference", {})
    print(f"McNemar b = {mc.get('b')}, c = {mc.get('c')}, p = {mc.get('p_value', float('nan')):.3g}; "
          f"AUC difference {ad.get('delta', float('nan')):+.4f} [{ad.get('low', float('nan')):+.4f}, "
          f"{ad.get('high', float('nan')):+.4f}]")
for line, summary in results.other_profiles(CHAPTER, "runs", P.name, ch06_ablation.ablation_summary):
    print(line)
    display(summary)  # noqa: F821

# %% [markdown]
# ## Exercises
#
# Each exercise asks for one function. Write it in the cell under the task, then run the check cell below it.
# The check calls your function on made-up cases and on real ones and prints ✅, or ❌ with the
# case that failed and a hint; it never prints the answer. The solutions are collapsed under
# each task: try first.
#
# The same exercises, graded, are this chapter's lab notebook (built with otter-grader: public
# tests that give these hints, hidden tests that give the points); the teacher's guide,
# {doc}`/book/lab/grading`, says how to hand it out, collect and grade it.

# %%
from skinlesion_utils import lab

# %% [markdown]
# ### Exercise 1 (★☆☆): Gains paired by seed
#
# Write `gain_per_seed(table, metric, reference="none")`: given a long table with one row per
# run (columns `fusion`, `seed` and the metric, like `table` above), return a DataFrame with
# columns `fusion`, `seed`, `gain` — one row per run of every fusion except the reference, with
# `gain` = its metric minus the metric of the **reference run with the same seed**.

# %% tags=["solution", "hide-input"]
import pandas as pd


def gain_per_seed(table: pd.DataFrame, metric: str, reference: str = "none") -> pd.DataFrame:
    """table: one row per run (fusion, seed, metric) -> DataFrame (fusion, seed, gain)."""
    ### BEGIN SOLUTION
    ref = table.loc[table["fusion"] == reference, ["seed", metric]].rename(columns={metric: "reference"})
    out = table.loc[table["fusion"] != reference, ["fusion", "seed", metric]].merge(ref, on="seed")
    out["gain"] = out[metric] - out["reference"]
    return out[["fusion", "seed", "gain"]]
    ### END SOLUTION

# %%
lab.ch06.check_gain_per_seed(gain_per_seed);

# %% [markdown]
# ### Exercise 2 (★★☆): How many channels does `asff_code` really use?
#
# `asff_code`'s weights $w \in \mathbb{R}^{C}$ are a softmax over channels: non-negative,
# summing to 1. Their *effective number* $1/\sum_c w_c^2$ is $C$ when all are equal and 1 when
# a single channel takes everything. Write `effective_channels(w)`: for a float tensor
# `[N, C]` whose rows sum to 1, return a float tensor `[N]` with the effective number of each
# row.

# %% tags=["solution", "hide-input"]
import torch


def effective_channels(w: torch.Tensor) -> torch.Tensor:
    """w: float [N, C], rows sum to 1 -> float [N], 1 / sum_c w_c^2 per row."""
    ### BEGIN SOLUTION
    return 1.0 / (w.double() ** 2).sum(dim=1)
    ### END SOLUTION

# %%
lab.ch06.check_effective_channels(effective_channels);

# %% [markdown]
# ### Exercise 3 (★★★): The exact McNemar test by hand
#
# Write `mcnemar_p(y_true, pred_a, pred_b)`: for 0/1 integer arrays `[N]` (the truth and two
# classifiers' predictions on the same images), return the exact two-sided McNemar p-value as a
# float: count $b$ (A right, B wrong) and $c$ (A wrong, B right), then
# $p = \min\bigl(1,\ 2\,P(X \le \min(b, c))\bigr)$ with $X \sim \text{Binomial}(b + c, \tfrac12)$.
# (`scipy.stats.binom.cdf(k, n, 0.5)` is $P(X \le k)$; with no discordant image $p = 1$.)

# %% tags=["solution", "hide-input"]
import numpy as np
from scipy.stats import binom


def mcnemar_p(y_true: np.ndarray, pred_a: np.ndarray, pred_b: np.ndarray) -> float:
    """y_true, pred_a, pred_b: int [N] of 0/1 -> float, the exact two-sided McNemar p-value."""
    ### BEGIN SOLUTION
    right_a, right_b = pred_a == y_true, pred_b == y_true
    b = int(np.sum(right_a & ~right_b))
    c = int(np.sum(~right_a & right_b))
    return float(min(1.0, 2 * binom.cdf(min(b, c), b + c, 0.5)))
    ### END SOLUTION

# %%
lab.ch06.check_mcnemar_p(mcnemar_p);

# %% [markdown]
# ## Checks
#
# CI fails this chapter if the ablation silently degrades. On the stored results: every fusion
# was trained with every seed of the profile and evaluated on the same 660 test images; the
# paired tests cover every fusion and seed; the learned weights are valid (ω and α in [0, 1],
# the effective number of `asff_code` channels between 1 and 1024); the statements of the prose
# about the learned weights still hold (`asff_text` switched layer3 off on at least 90 % of
# the images for every seed, `asff_spatial` on at most 10 %). The performance floors were set
# from a measured `ci` run with a margin for CPUs without native bf16; the table prints each
# beside what this execution measured.

# %%
floors = verdicts.floors_table([
    ("lowest test ROC AUC of any run", 0.78, table["roc_auc"].min()),
    ("lowest test accuracy of any run", 0.70, table["accuracy"].min()),
    ("mean ROC AUC of `none` (the baseline)", 0.85, table.loc[table["fusion"] == "none", "roc_auc"].mean()),
])
floors.round(3)

# %%
assert sorted(zip(table["fusion"], table["seed"])) == sorted((f, s) for f in fusion.FUSIONS for s in P.seeds)
assert len(P.seeds) >= 2, "the ablation needs at least two seeds to measure seed noise"
preds_back = results.read_results(CHAPTER, "predictions", profile=P).reset_index()
assert (preds_back.groupby(["fusion", "seed"]).size() == 660).all()
assert len(paired[paired["kind"] == "fusion"]) == (len(fusion.FUSIONS) - 1) * len(P.seeds)
assert paired["mcnemar_p"].between(0, 1).all() and (paired["auc_delta_low"] <= paired["auc_delta_high"]).all()
assert set(v["verdict"]) <= {"gain larger than noise", "loss larger than noise", "within noise"}
assert w0["layer3_share"].between(0, 1).all()
assert w0.loc[w0["fusion"] == "asff_code", "effective_n"].between(1, 1024 + 1e-6).all()
assert floors["passes"].all(), floors[~floors["passes"]]
by_fusion = readings.groupby("fusion")["share_layer3_ignored"]
assert by_fusion.min()["asff_text"] >= 0.9 and by_fusion.max()["asff_spatial"] <= 0.1, readings
print("✅ ablation checks passed")

# %% [markdown]
# ## Takeaways
#
# - A single-seed gain is a claim about one draw. Retraining the same model with another seed
#   moves accuracy and AUC by amounts that must be measured before any gain is believed
#   {cite}`bouthillier2021variance`;
#   paired tests on the same test images (McNemar {cite}`mcnemar1947`, the paired bootstrap
#   {cite}`efron1993bootstrap`) are the sharp tool, seed repeats the honest one.
# - `sum` and `concat` are the controls an ASFF claim needs: they separate "using layer3 helps"
#   from "the adaptive weights help" {cite}`liu2019asff`.
# - The three readings of ASFF learn different things: one weight per image, per channel (the
#   released code, whose weights sum to 1 over 1,024 channels and so give layer3 a tiny share),
#   or per position {cite}`asff2025`.
#
# References: full list on the [bibliography page](../book/bibliography.md).

# %%
ch.footer();
