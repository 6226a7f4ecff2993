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
# # 09 · The reproduction audit
#
# This last chapter puts every numeric claim of the paper next to what this book measured. It
# reads the results files the other chapters wrote, the paper's numbers from the claims file
# (each with where it is printed), and gives each claim one verdict: reproduced, not
# reproduced, not measurable here, not measured, or inconsistent with the paper's own
# arithmetic. Then it collects the paper's arithmetic, every place where its text and its code
# disagree, and what the data audit found, and ends with what a reader can and cannot trust.
# No number on this page is typed: each comes from a file.
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/asff-skinlesion-book/asff-skinlesion-book/blob/main/chapters/09_reproduction_audit.ipynb)
# · **time:** printed by the header cell below: the `ci` time measured at the chapter's last
# execution and an estimate for a Colab T4 (`full`) from the chapter's GPU work (nothing is
# trained, only files are read)
#
# ```{note}
# The outputs stored on this page come from the `ci` profile executed on a 2-core CPU; the
# last line of the page gives the date and run time. The `full` profile runs the same code; a
# `full` column fills in wherever a real GPU run has written its results under `results/full/`.
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
import textwrap

import pandas as pd
from IPython.display import Markdown, display

from skinlesion_utils import metrics, paper, results
from skinlesion_utils.chapter import start_chapter
from skinlesion_utils.studies import ch09_audit, ch09_coverage

ch = start_chapter("09_reproduction_audit")
P = ch.profile
CHAPTER = ch09_audit.CHAPTER

# %% [markdown]
# ## 1 · What "reproduced" means
#
# A claim here is a number printed by the paper: its text, Tables 1–4 and the conclusion, each
# with the section, table, row and column it is printed in (the claims file keeps that
# provenance, and the register its `status`). A printed value $p$ with $d$ decimals stands for every number
# that rounds to it,
#
# $$ \left[\,p - \tfrac12 10^{-d},\; p + \tfrac12 10^{-d}\,\right], $$
#
# so a value printed as `0.97` means "somewhere in $[0.965, 0.975]$". Our measurement is a point
# and a 95 % interval $[L, U]$ (a stratified bootstrap over the test images, chapter 05). The
# verdicts:
#
# | verdict | when |
# |---|---|
# | **reproduced** | the two intervals meet, and our setting is the paper's (or a count equals ours) |
# | **not reproduced** | our setting is the paper's, and the intervals do not meet |
# | **not measurable here** | we measured, but not at the paper's setting; or nothing can measure it (a qualitative claim, a number drawn only in a figure) |
# | **not measured** | the results file that would measure it does not exist yet: the reason names the chapter to run |
# | **inconsistent** | the printed number fails the paper's own arithmetic, so no experiment can give it |
#
# An interval that contains the paper's value does not prove the paper right: it says that
# our experiment cannot tell the two apart. With a test set of a few hundred images the accuracy
# interval is several points wide, so "reproduced" is a weak statement, and "not reproduced" a
# strong one.
#
# *Comparable setting* means the paper's input size and initialisation, read from its released
# code; the epoch budget is reported but not required. Where the profiles of this book stand:

# %%
target = ch09_audit.paper_setting()
budgets = {
    "main model (chapters 04, 05, 08)": {"image_size": P.image_size, "pretrained": P.pretrained, "epochs": P.epochs},
    "many-model chapters (02, 06)": {"image_size": P.bench_image_size, "pretrained": P.pretrained, "epochs": P.bench_epochs},
}
for name, setting in budgets.items():
    ok, why = ch09_audit.comparable(setting)
    print(f"profile '{P.name}', {name}: {'comparable' if ok else 'NOT comparable'} — {why}")

# %% [markdown]
# Under `ci` the answer is no by design: small images from scratch in a few minutes of CPU are a
# test of the pipeline, not of the paper's claim. Every training claim therefore ends as "not
# measurable here" under `ci`, however close or far our number is. The `full` profile (the paper's
# input size, ImageNet weights, on a GPU) is comparable; its results, once a GPU run writes them under
# `results/full/`, decide the verdict in the same code.
#
# ## 2 · Which file measures which claim
#
# The mapping from claims to results files is a small declarative table in
# `skinlesion_utils/studies/ch09_audit.py` (`ch09_audit.REGISTER`), not in this notebook: one
# entry per claim, with the chapter, the file and the key that measure it. `<profile>` is read
# as `ci` and as `full`. (Exact by construction, so CI checks this table's text.)

# %%
# NBVAL_CHECK_OUTPUT
mapping = ch09_audit.sources_table()
with pd.option_context("display.max_colwidth", 60, "display.width", 200):
    print(mapping[["claim", "profiles", "file", "key"]].to_string(index=False))

# %% [markdown]
# Which of these files exist right now (this changes as the other chapters run, so it is not
# checked):

# %%
coverage = ch09_audit.coverage_table()
coverage

# %% [markdown]
# ## 3 · The claims register
#
# `ch09_audit.claims_register()` reads every file above (a missing file or key never stops
# it: the verdict says so), adds the paper's arithmetic, and decides. The chapter saves the
# register, the arithmetic table and the data findings under
# `results/<profile>/09_reproduction_audit/` and renders everything below from those files.

# %%
register = ch09_audit.claims_register()
arithmetic = ch09_audit.arithmetic_table()
findings = ch09_audit.data_findings(profile=P.name)
written = ch09_audit.save_audit(register, arithmetic, findings, profile=P)
print("\n".join(f"{name}: results/{P.name}/{CHAPTER}/{path.name}" for name, path in written.items()))

# %%
claims = ch09_audit.read_register(profile=P)  # claims.csv, with the printed values kept as strings
with pd.option_context("display.max_colwidth", 80):
    display(claims[["group", "paper", "where", "ci", "full", "verdict"]])

# %% [markdown]
# The `ci` and `full` columns are our value and its 95 % interval, in the paper's unit (percent
# for accuracies, fractions for AUCs, images for counts); "—" means not measured. The figure puts
# the paper's values on the same axis as our intervals, with each claim's verdict:

# %%
fig = ch09_audit.plot_register(claims)

# %% [markdown]
# The reasons, group by group. Each list below is generated from `claims.csv`.
#
# ### Headline metrics
#
# The headline accuracy and the two AUCs are single numbers from single runs, reported without
# an interval. Two facts from the released code weigh on all three (section 5): the scripts
# pass the test images as `validation_data` and save the test accuracy after every epoch, so
# any choice made while looking at those curves is model selection on the test set; and they
# compute no ROC or PR curve at all, so the two AUCs come from code that was not released.

# %%
display(Markdown(ch09_audit.group_lines(claims, "headline")))
acc = claims.loc["headline.accuracy"]
if pd.notna(acc["ci_low"]):
    gain = paper.claim("gain.accuracy_over_resnet50")
    width = acc["ci_high"] - acc["ci_low"]
    display(Markdown(f"Our 95 % interval for the accuracy is **{width:.1f} points** wide on the "
                     f"{paper.claim('data.test_total').value} test images — {width / gain.number:.1f} times the "
                     f"gain over ResNet-50 that the paper reports ({gain.value} %)."))

# %% [markdown]
# ### Baselines
#
# Every cell of the paper's Table 2 is a row of the register, read from the claims file. The
# ResNet-50 accuracy is also the one the printed numbers imply: headline minus gain. For v2 that
# difference is no possible accuracy on the test set, so the register marks it inconsistent
# before any measurement; the v1 figure, from a third-party summary, is possible. Two
# differences between text and code make Table 2 harder to read: the "GoogLeNet" row is
# Inception v3, and some baselines start from ImageNet weights while others start from random
# weights (section 5).

# %%
display(Markdown(ch09_audit.group_lines(claims, "baselines")))

# %% [markdown]
# ### Ablation
#
# The gain of ASFF over plain ResNet-50 is the paper's central claim. The register compares it
# with chapter 06's paired difference on the same test images (same seed, only the fusion
# differs). As printed in v2 it fails the arithmetic: no pair of achievable accuracies on the
# test set is that far apart, neither in points nor relative. Chapter 06 adds what a single
# number cannot show: whether any gain exceeds the seed-to-seed noise.

# %%
display(Markdown(ch09_audit.group_lines(claims, "ablation")))
noise_file = results.results_dir("06_ablation", P) / "verdict.csv"  # chapter 06: gain against seed noise
if noise_file.is_file():
    display(pd.read_csv(noise_file, index_col=[0, 1])[["n_seeds", "mean_gain", "reference_sd", "fusion_sd", "verdict"]])
else:
    print(f"results/{P.name}/06_ablation/verdict.csv missing — run chapter 06_ablation")

# %% [markdown]
# ### Grad-CAM
#
# The paper says the fusion "emphasizes lesion-relevant regions" and shows Grad-CAM pictures;
# there is no number to compare. Two things can still be checked. First, the released fusion
# cannot emphasise *regions*: its weights come after global average pooling, one weight per
# channel and image, the same at every pixel (section 5). Second, whether a Grad-CAM map lies
# on the lesion can be measured: chapter 07 scores the share of each map's energy inside a
# lesion mask against chance, with sanity checks for the maps themselves.

# %%
display(Markdown(ch09_audit.group_lines(claims, "gradcam")))
g = claims.loc["gradcam.lesion_regions"]
for prof in ch09_audit.PROFILES_READ:
    if pd.notna(g[f"{prof}_low"]):
        side = metrics.interval_word(g[f"{prof}_low"], g[f"{prof}_high"])
        display(Markdown(f"Under `{prof}` ({g[f'{prof}_setting']}), the maps' share of energy inside the lesion mask "
                         f"is **{side} chance**: energy − chance = {g[prof]} (mean [95 % CI])."))

# %% [markdown]
# ### External validation
#
# The external accuracy is printed only on a third-party page (v2's abstract gives no number).
# It is an integer count of the images of the external set's test split and no count of all
# its images (section 4), so it was most likely measured on the test split alone. That split
# repeats the internal set's exact class counts, and part of it is made of copies of the paper's
# own training images (section 6): an "external" number measured partly on seen images.

# %%
display(Markdown(ch09_audit.group_lines(claims, "external")))

# %% [markdown]
# ### Data
#
# Counts are the one kind of claim this book can reproduce exactly, without a GPU: the released
# files have the printed number of images, per split and class. That the *numbers* hold says
# nothing about what the images *are*; section 6 does.

# %%
display(Markdown(ch09_audit.group_lines(claims, "data")))

# %% [markdown]
# ### Every other number of the paper
#
# The register measures results. The paper prints other numbers too — its settings (Table 1,
# section 3.1, the released scripts' defaults), its data counts, the sizes of its method, and
# figures it quotes from elsewhere. `ch09_coverage.other_numbers` answers each claim of
# `paper_claims.json` the register does not hold: checked against the course data or the code
# where they can check it (`holds` / `does not hold`, with what was counted), or the precise
# reason it is not a result to reproduce; `ch09_coverage.table1_settings` does the same for every
# cell of Table 1.

# %%
other = ch09_coverage.other_numbers(register=claims)
table1 = ch09_coverage.table1_settings()
coverage_by_source = ch09_coverage.paper_coverage(claims, other, table1)
results.write_results(CHAPTER, {"other_numbers": other, "table1_settings": table1, "paper_coverage": coverage_by_source},
                      profile=P)
with pd.option_context("display.max_colwidth", 110):
    display(other[["paper", "unit", "verdict", "ours", "evidence"]])

# %% [markdown]
# Where each number of the paper is answered on this page — every claim of the text and every
# cell of Tables 1–4, counted by verdict:

# %%
print(ch09_coverage.coverage_line(coverage_by_source))
coverage_by_source

# %% [markdown]
# ## 4 · The paper against its own arithmetic
#
# An accuracy on $n$ images is $k/n$ for an integer $k$; printed with $d$ decimals, some $k$ must
# round to it. This is the GRIM test {cite}`brown2017grim` applied to a classifier: it needs no
# data and no model, only the printed number and the size of the test set. A recall $r$ and a
# specificity $s$ on $n_+$ malignant and $n_-$ benign images imply the accuracy
#
# $$ \text{acc} = \frac{r\,n_+ + s\,n_-}{n_+ + n_-}, $$
#
# and a gain must be the difference of two achievable accuracies. `paper.arithmetic_checks()`
# runs every such check the claims file allows; the register adds the ResNet-50 accuracies the
# gains imply. (Exact by construction, so CI checks this table's text.)

# %%
# NBVAL_CHECK_OUTPUT
arith = results.read_results(CHAPTER, "arithmetic", profile=P, dtype={"printed": str})
for _, r in arith.iterrows():
    print(f"{r.verdict.upper():13s} {r.subject} — printed {r.printed}, n = {r.n}")
    print(textwrap.indent(textwrap.fill(f"{r.check}: {r.detail}", 100), " " * 14))

# %% [markdown]
# ### Every row of Tables 2–4
#
# Chapter 05 teaches the row checks (`verdicts.row_consistency`): accuracy $= k/660$, recall
# $= k/300$, specificity $= k/360$, accuracy between recall and specificity and equal to the one
# they imply, $F_1$ from precision and recall, one confusion matrix for all five cells, and for
# rows with recall = specificity = accuracy the class-weighted reading. `paper.table_consistency`
# runs them on each table, Table 4 once on each set it could have been measured on (the
# external test split, and the 1,800 + 1,497 images the paper describes). One verdict per row:

# %%
# NBVAL_CHECK_OUTPUT
rows_checked = pd.concat([paper.table_consistency(n) for n in (2, 3, 4)])
print(rows_checked.groupby(["table", "set"])["verdict"].value_counts().unstack(fill_value=0).to_string())
rows_checked[["table", "set", "accuracy_k", "recall_k", "specificity_k", "acc_between", "f1_from_pr",
              "one_matrix", "r_eq_s_eq_acc", "weighted_fit", "verdict"]]

# %% [markdown]
# Read the failures by column. A recall or specificity that is no count of 300 or 360 images
# cannot be a per-class rate on the test set as described; an accuracy outside the interval
# between recall and specificity cannot be their weighted mean, whatever the counts; and
# Table 4's rows, whose recall, specificity and accuracy are printed equal, fit neither
# per-class rates nor class-weighted averages, on either set size (`weighted_fit`). The detail
# per row:

# %%
for name, r in rows_checked.iterrows():
    print(f"Table {r.table} · {name} · {r.set}: {r.verdict} — {r.detail}")

# %% [markdown]
# Two of the paper's figures cannot be what they claim to be: the v2 gain (and so the ResNet-50
# accuracy it implies) is no difference of two accuracies on the test set, and the external
# accuracy is a count of the external test split's images, not of the whole external set the
# repository ships.
# The headline itself passes: exactly one count of correct test images gives it.
#
# ## 5 · What the paper says against what its code does
#
# Every documented difference between the paper's text and its released code or data, from the
# claims file (`paper.text_vs_code()` also has the verbatim quotes of both sides). Exact by
# construction, so CI checks this list's text.

# %%
# NBVAL_CHECK_OUTPUT
tvc = ch09_audit.text_vs_code_table()
for i, (key, r) in enumerate(tvc.iterrows(), 1):
    print(f"{i:2d}. [{r.kind}] {r.topic}  ({key})")
    print(textwrap.indent(textwrap.fill(r.consequence, 96), "      "))

# %% [markdown]
# The first two change what "ASFF" means: the released fusion learns one weight per channel,
# normalised over the channels, not a spatial weight map per level (chapter 03 derives
# all three readings; the book's main model uses the paper's two-level reading). The third
# changes what the reported test numbers mean. The rest decide how a reproduction must be set
# up, and why some rows of the paper's tables cannot be regenerated from its repository.
#
# ## 6 · Provenance and leakage
#
# What chapter 01's audit (and chapter 08's, when it has run) found about the data, read from
# their `summary.json` files, the packaged manifests and the ISIC 2020 ground truth:

# %%
shown = results.read_results(CHAPTER, "findings", profile=P, keep_default_na=False)
with pd.option_context("display.max_colwidth", 200):
    display(shown[["paper says", "the files say", "verdict", "source"]])

# %% [markdown]
# Read from the top. The set is neither balanced nor a subset of ISIC 2020 — it has more
# malignant images than all of ISIC 2020 — and its benign and malignant images were encoded by
# different JPEG pipelines, a shortcut a network can learn instead of the lesion. Its random
# split puts near-copies of training images into the test set, and the "external" set contains
# copies of both. Each of these moves a reported accuracy up, by an amount no single number
# can reveal.
#
# ## 7 · What a reader can trust
#
# The verdicts, counted per group:

# %%
counts = ch09_audit.verdict_counts(claims)
counts

# %%
display(Markdown(ch09_audit.trust_markdown(claims, shown)))

# %% [markdown]
# What this adds up to, for a reader of the paper:
#
# - **Trust the data's size, not its description.** The files have the printed counts; they are
#   not a balanced subset of ISIC 2020, and they carry a class-dependent encoding and
#   near-duplicates across the split.
# - **Treat the headline accuracy as possible but unconfirmed.** It is an achievable count on
#   the test set, from one run whose test set also served as validation data; an interval several
#   points wide surrounds any such number, and the test set contains copies of training images.
# - **Do not use the gain over ResNet-50 as printed.** In v2 it is no difference of two accuracies
#   on the test set; whatever it measures, the paper does not say, and an improvement of that
#   size lies within one test set's uncertainty (chapters 05 and 06).
# - **Read the external accuracy as an upper bound.** It was measured on the external test split,
#   part of which are copies of the paper's own images.
# - **Read "spatial" as "per channel".** The released fusion has no spatial weights, so its
#   Grad-CAM pictures cannot show the fusion choosing regions.
# - **Check that the fusion fuses.** An adaptive weight can learn to switch one level off;
#   then the "fused" model is ResNet-50 with a projected `layer4`. What chapter 06's trained
#   models did with `layer3`, read from its results:

# %%
for prof in ch09_audit.PROFILES_READ:
    try:
        rd = results.read_results("06_ablation", "fusion_weight_readings", profile=prof)
    except FileNotFoundError:
        print(f"{prof}: chapter 06 has not written fusion_weight_readings yet")
        continue
    for fusion, part in rd.groupby("fusion", sort=False):
        print(f"{prof} · {fusion}: " + "; ".join(f"seed {r.seed}: {r.reading}" for r in part.itertuples()))

# %% [markdown]
# The `ci` numbers in the register come from chapters 02–08 at the `ci` setting printed in each
# row; when a GPU run at the paper's setting writes `results/full/`, the same code turns "not
# measurable here" into "reproduced" or "not reproduced".

# %% [markdown]
# ## Exercises
#
# Each exercise asks for one function. Write it in the cell under the task, then run the check cell below it.
# The check prints ✅, or ❌ with the case that failed and a hint; it never prints the answer.
# The solutions are in the book, collapsed under each task: try first.
#
# The same exercises, graded, are this chapter's lab notebook (built with otter-grader: public
# tests that give these hints, hidden tests that give the points); the teacher's guide,
# {doc}`/book/lab/grading`, says how to hand it out, collect and grade it.

# %%
from skinlesion_utils import lab

# %% [markdown]
# ### Exercise 1 (★☆☆): A verdict from an interval
#
# Write `verdict(paper_value, low, high, comparable)`: `paper_value` is the paper's number,
# `[low, high]` our 95 % interval in the same unit, `comparable` whether our setting is the
# paper's. Return `"not measurable here"` when it is not; otherwise `"reproduced"` when
# `low <= paper_value <= high` (bounds included) and `"not reproduced"` when not.

# %% tags=["solution", "hide-input"]
def verdict(paper_value: float, low: float, high: float, comparable: bool) -> str:
    """paper_value, low, high: one unit (e.g. percent); comparable: bool -> the verdict (str)."""
    ### BEGIN SOLUTION
    if not comparable:
        return "not measurable here"
    return "reproduced" if low <= paper_value <= high else "not reproduced"
    ### END SOLUTION

# %%
lab.ch09.check_verdict(verdict);

# %% [markdown]
# ### Exercise 2 (★★☆): The accuracy that recall and specificity imply
#
# Write `implied_accuracy(recall, specificity, n_pos, n_neg)`: `recall` and `specificity` in
# percent, `n_pos` malignant and `n_neg` benign test images. Return the accuracy in percent that
# these rates imply (the formula of section 4). A paper that prints all three numbers for one
# model must satisfy it, up to rounding.

# %% tags=["solution", "hide-input"]
def implied_accuracy(recall: float, specificity: float, n_pos: int, n_neg: int) -> float:
    """recall, specificity: percent; n_pos, n_neg: images -> accuracy, percent."""
    ### BEGIN SOLUTION
    return (recall * n_pos + specificity * n_neg) / (n_pos + n_neg)
    ### END SOLUTION

# %%
lab.ch09.check_implied_accuracy(implied_accuracy);

# %% [markdown]
# ### Exercise 3 (★★★): Every accuracy the printed rates allow
#
# Printed rates are rounded, so several confusion matrices can hide behind one recall and one
# specificity. Write `accuracy_range(recall, specificity, n_pos, n_neg)`: `recall` and
# `specificity` are **strings as printed** (`"80.00"` has two decimals, `"80"` none). Find every
# integer $tp \in \{0..n_+\}$ whose exact recall $100\,tp/n_+$ lies within half a unit of the last
# printed digit of `recall`, every $tn \in \{0..n_-\}$ likewise for `specificity`, and return
# `(lowest, highest)` of the accuracies $100\,(tp + tn)/(n_+ + n_-)$ over all such pairs, in
# percent; `(nan, nan)` when no count fits. If a paper's printed accuracy lies outside this
# range, its row is inconsistent. Do not call the package's `metrics` functions.

# %% tags=["solution", "hide-input"]
def accuracy_range(recall: str, specificity: str, n_pos: int, n_neg: int) -> tuple[float, float]:
    """recall, specificity: percent as printed (str); n_pos, n_neg: images -> (lowest, highest) accuracy, percent."""
    ### BEGIN SOLUTION
    from decimal import Decimal

    import numpy as np

    def fitting(printed: str, n: int) -> np.ndarray:
        decimals = max(0, -Decimal(printed).as_tuple().exponent)
        half = 0.5 * 10.0 ** -decimals + 1e-9  # half a unit of the last printed digit (+ float slack)
        k = np.arange(n + 1)
        return k[np.abs(100 * k / n - float(printed)) <= half]

    tps, tns = fitting(recall, n_pos), fitting(specificity, n_neg)
    if tps.size == 0 or tns.size == 0:
        return float("nan"), float("nan")
    # accuracy grows with tp and with tn, so the extremes are the extreme counts
    total = n_pos + n_neg
    return 100 * (tps.min() + tns.min()) / total, 100 * (tps.max() + tns.max()) / total
    ### END SOLUTION

# %%
lab.ch09.check_accuracy_range(accuracy_range);

# %% [markdown]
# ## Checks
#
# CI fails this chapter if the register loses a claim or invents a verdict; if a results file
# exists but the register cannot find its key (a renamed file or column in another chapter must
# be renamed in `ch09_audit.REGISTER` too); if the released files stop having the counts the
# paper prints; or if a verdict "inconsistent" does not come from the paper's own arithmetic.

# %%
assert set(claims["verdict"]) <= set(ch09_audit.REPRODUCTION_VERDICTS)
assert {e.id for e in ch09_audit.REGISTER} <= set(claims.index)
broken = claims.loc[claims["broken"] != "", "broken"]
assert broken.empty, f"results files exist but the register cannot read them: {broken.to_dict()}"
counts_rows = claims[claims.index.str.startswith("data.") & claims["ci_value"].notna()]
assert len(counts_rows) >= 10 and (counts_rows["verdict"] == "reproduced").all(), counts_rows["reason"].to_dict()
assert claims.loc["data.total_images", "verdict"] == "reproduced"
bad_arith = {paper.arithmetic_subject_id(s) for s in arith.loc[arith.verdict == "inconsistent", "subject"]}
inconsistent = {c.rsplit(".", 1)[0] if c.startswith("table") else c for c in claims.index[claims.verdict == "inconsistent"]}
assert inconsistent <= bad_arith, sorted(inconsistent - bad_arith)
assert (shown.loc[["balanced classes", "a subset of ISIC 2020"], "verdict"] == "does not hold").all()
# the gain the register computes from chapter 06's predictions is the mean over chapter 06's seeds
# of its own paired differences (never seed 0 alone)
paired_file = results.results_dir("06_ablation", P) / "paired_tests.csv"
gain_ci = claims.loc["gain.accuracy_over_resnet50", "ci_value"]
if paired_file.is_file() and pd.notna(gain_ci):
    pt = pd.read_csv(paired_file)
    per_seed = pt[(pt["kind"] == "fusion") & (pt["fusion"] == "asff_text")]["accuracy_delta"]
    assert len(per_seed) == len(P.seeds) and abs(100 * per_seed.mean() - gain_ci) < 1e-9, (per_seed.tolist(), gain_ci)
assert (coverage_by_source["addressed"] == coverage_by_source["numbers"]).all(), coverage_by_source
assert set(other["verdict"]) <= set(ch09_coverage.OTHER_VERDICTS) and not (other["verdict"] == "does not hold").any()
print(f"✅ {len(claims)} claims, {len(arith)} arithmetic checks, {len(tvc)} text-vs-code differences, "
      f"{len(shown)} data findings")

# %% [markdown]
# ## Takeaways
#
# - A reproduction audit is a table: each claim, where it is printed, what measures it, our
#   interval, and a verdict with its reason. Keep the mapping declarative and the numbers in
#   files, so the verdicts update themselves as results arrive {cite}`asff2025`.
# - "Reproduced" needs the paper's setting and an interval; a point estimate at another
#   setting decides nothing. With a few hundred test images, intervals are several points wide
#   {cite}`efron1993bootstrap`.
# - Arithmetic is the cheapest check: an accuracy on $n$ images must be $k/n$, and recall,
#   specificity and accuracy must agree {cite}`brown2017grim`.
# - Data provenance decides what a number means: duplicates across the split and an "external"
#   set that overlaps the training data inflate accuracy {cite}`zech2018generalization`
#   {cite}`rotemberg2021isic`.
#
# References: {cite}`asff2025`, {cite}`brown2017grim`, {cite}`efron1993bootstrap`,
# {cite}`zech2018generalization`, {cite}`rotemberg2021isic` (full list on the
# [bibliography page](../book/bibliography.md)).

# %%
ch.footer();
