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
# # 07 · Grad-CAM: where do the models look, and can we trust the maps?
#
# The paper backs its model with Grad-CAM heat maps: ASFF "emphasizes lesion-relevant regions",
# and — as this project's issue summarises the figure — ASFF focuses on the lesion while
# ResNet-50 looks at artifacts. A handful of hand-picked heat maps cannot carry that claim. This
# chapter explains what Grad-CAM computes, puts the like-for-like pair (a ResNet-50 and an ASFF
# model trained identically) side by side, and then tests the claim on all 660 test images: how
# much of each map lies on the lesion, against chance and against maps that ignore the image;
# whether the maps change when the model's weights are destroyed (the sanity check); whether
# deleting the pixels a map highlights changes the prediction (faithfulness); and where the maps
# go on images with hair and rulers.
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/asff-skinlesion-book/asff-skinlesion-book/blob/main/chapters/07_gradcam.ipynb)
# · **time:** printed by the header cell below: the `ci` time measured at the chapter's last
# execution and an estimate for a Colab T4 (`full`) from the chapter's GPU work, both with
# chapter 06's runs cached (ROAD's imputation runs on the CPU and is not in the estimate)
#
# ```{note}
# The outputs stored on this page come from the `ci` profile executed on a 2-core CPU; the
# last line of the page gives the date and run time. The `full` profile runs the same code on
# the 224-px, ImageNet-initialised pair, where the maps are 14×14 and 7×7 instead of 4×4 and
# 2×2.
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
import torch
from IPython.display import display
from matplotlib_inline.backend_inline import set_matplotlib_formats

from skinlesion_utils import cam, data, fusion, localisation, metrics, models, paper, plots, results, runs, splits
from skinlesion_utils.chapter import start_chapter
from skinlesion_utils.studies import ch07_gradcam

set_matplotlib_formats("jpeg")  # this page is mostly photographs: JPEG keeps it a few MB, PNG would not

ch = start_chapter("07_gradcam")
P = ch.profile
CHAPTER = "07_gradcam"

# %% [markdown]
# ## What the paper claims
#
# The paper's Grad-CAM section (3.5) shows example maps (its Fig. 7, a figure: no number in it is
# in the claims file). The abstract's sentence about the fusion, next to what the released code
# computes:

# %%
q = paper.text_vs_code().loc["fusion_weights_are_not_spatial"]
print(f"paper ({q.text_source}): “{q.text}”\n")
print(f"released code ({q.code_source}): {q.code}\n")
print(q.consequence)

# %% [markdown]
# Two things follow before any heat map is drawn. First, the fusion weights of the paper's
# model are one number per image (eq. 7, chapter 03): they cannot *emphasise a region*, they
# only mix two whole feature maps. Whatever a heat map shows, it is the backbone's doing.
# Second, "focuses on the lesion" is a statement about *all* images, so it needs a score per
# image and a test over the whole test set, with chance levels and controls, not a figure of
# examples. That is what this chapter builds.
#
# ## 1 · Grad-CAM in brief
#
# Grad-CAM {cite}`selvaraju2017gradcam` explains a class score $y^c$ (the logit of class $c$)
# at a convolutional layer with $K$ feature maps $A^k \in \mathbb{R}^{h \times w}$. Each map's
# weight is the spatial mean of the gradient of the score with respect to it, and the
# explanation is the ReLU of the weighted sum of the maps:
#
# $$
# \alpha^c_k = \frac{1}{hw} \sum_{i=1}^{h}\sum_{j=1}^{w} \frac{\partial y^c}{\partial A^k_{ij}},
# \qquad
# L^c = \operatorname{ReLU}\Big(\sum_{k=1}^{K} \alpha^c_k A^k\Big) \in \mathbb{R}^{h \times w}.
# $$
#
# $L^c$ has the layer's resolution $h \times w$; it is min-max scaled to [0, 1] and resized
# bilinearly to the image — so a 2×2 map becomes a smooth blob whatever the image holds. The
# ReLU keeps the positions that raise the score. The choice of layer is a trade-off: deep layers
# are class-specific but coarse, shallow ones fine but generic.
#
# The book computes every map with the maintained library **pytorch-grad-cam**. Its
# context-manager form registers the hooks on entry and removes them on exit:
#
# ```python
# from pytorch_grad_cam import GradCAM
# from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
#
# with GradCAM(model=model, target_layers=[layer]) as gc:
#     maps = gc(input_tensor=x, targets=[ClassifierOutputTarget(1)] * len(x))  # [N, S, S] in [0, 1]
# ```
#
# `cam.compute_cams(model, images, layer, targets)` wraps exactly this (batches, ImageNet
# normalisation, no gradient left in the weights, the model's mode restored), and
# `cam.compute_cams_layers` gets the maps of several layers from one pass. Below, the
# hand-written call and the package agree.
#
# ## 2 · The models, the layer and the image size
#
# **The pair.** The claim compares ASFF with ResNet-50, so the models must differ in the fusion
# only. Chapter 06 trains exactly that pair: ASFF-ResNet50 with `fusion="none"` (a ResNet-50
# with the paper's head) and with the paper's fusion, `asff_text`, same recipe, epochs, seed and
# image size (`runs.ablation_config`). `get_or_train` loads them from the run cache.

# %%
PAIR = {"ResNet-50": "none", "ASFF": "asff_text"}
run_of = {name: runs.get_or_train(runs.ablation_config(fusion, P.seeds[0], profile=P), progress=False)
          for name, fusion in PAIR.items()}
model_of = {name: run.load_model() for name, run in run_of.items()}
R = run_of["ASFF"].config.image_size  # the models' input size: maps are computed at the size they were trained on
assert {run.config.image_size for run in run_of.values()} == {R}
pd.DataFrame({name: {"fusion": PAIR[name], "image size (px)": run.config.image_size, "epochs": run.config.epochs,
                     "pretrained": run.config.pretrained, "test accuracy": run.metrics["accuracy"],
                     "test ROC AUC": run.metrics["roc_auc"], "training time (s)": run.results["timing"]["train_seconds"]}
              for name, run in run_of.items()}).T

# %% [markdown]
# **The size of the map.** Grad-CAM's resolution is the target layer's grid. ResNet-50's last
# stage (`layer4`) has stride 32; the ASFF model's fused map lives on `layer3`'s grid, stride 16
# (the fusion upsamples `layer4` onto it). `cam.cam_map_size` runs one input through the model
# and reads the layer's output:

# %%
# NBVAL_CHECK_OUTPUT
LAYERS = {"last": None, "layer3": "layer3"}  # None: the model's default, cam.cam_target_layer
sizes, grid_of = {}, {}
for name, model in model_of.items():
    for layer, spec in LAYERS.items():
        target = cam.cam_target_layer(model, spec)
        module = next(n for n, m in model.named_modules() if m is target)
        sizes[(name, layer, module)] = {f"{s} px": "{}×{}".format(*cam.cam_map_size(model, s, target))
                                        for s in (64, 128, 224)}
        grid_of[(name, layer)] = cam.cam_map_size(model, R, target)  # (h, w) of the maps on this page
map_sizes = pd.DataFrame(sizes).T.rename_axis(["model", "layer", "module"])
map_sizes

# %% [markdown]
# The column of the models' own input size is what this page computes (printed below). In the
# `ci` profile the models are trained at 64 px, where the default maps are a handful of cells;
# the profile's `cam_image_size` is the size this chapter would like to explain at. Three ways
# out were weighed, with measured costs:
#
# 1. **Train the pair at `cam_image_size`.** The cost of a training step grows with the pixel
#    count; the FLOP count of one forward pass and the pair's recorded training time give the
#    estimate below. It would add that time to every CI run and leave this chapter explaining
#    models other than the pair chapters 06, 08 and 09 evaluate, so it is not done (the `full`
#    profile trains the pair at 224 px in chapter 06 anyway, and there both sizes agree).
# 2. **Feed the models larger inputs than they were trained on** (e.g. 128 px to a 64-px model).
#    The maps would have twice the cells per side, but the models would see every structure
#    twice as large as in training: a different input distribution, so the maps would explain a
#    model on data it was never trained on. Not done.
# 3. **Explain a shallower layer of both models.** `layer3` has stride 16 in both models, so it
#    gives the *same* grid for both — a like-for-like comparison of resolution, which the default
#    layers are not (the ASFF map is finer by construction, at every input size). This is what
#    the chapter adds: every result is reported at the default layers ("last": `layer4` for
#    ResNet-50, the fused map for ASFF — what the paper's figure shows) *and* at `layer3`.
#
# Images and lesion masks are handled at `profile.cam_image_size` (more pixels make the
# approximate masks below better); the maps, computed at the models' own size, are resized
# bilinearly onto them.

# %%
S = P.cam_image_size
print("maps on this page: " + ", ".join(f"{n} {l} {h}×{w}" for (n, l), (h, w) in grid_of.items()) + f" at {R} px")
flops = {s: models.count_flops(model_of["ASFF"], s) for s in (R, S)}
train_s = sum(run.results["timing"]["train_seconds"] for run in run_of.values())
print(f"maps computed at {R} px (the models' training size), shown and scored at {S} px")
print(f"ASFF forward pass: {flops[R] / 1e9:.2f} GFLOPs at {R} px, {flops[S] / 1e9:.2f} GFLOPs at {S} px "
      f"(×{flops[S] / flops[R]:.1f})")
print(f"the pair's recorded training time at {R} px: {train_s / 60:.0f} min → at {S} px ≈ "
      f"{train_s * flops[S] / flops[R] / 60:.0f} min (same epochs, measured on this machine)")

# %%
test = data.ImageTensorStore.from_dataset("isic_balanced", split="test", resolution=R, progress=False)
show = data.ImageTensorStore.from_dataset("isic_balanced", split="test", resolution=S, progress=False)
assert list(test.ids) == list(show.ids) and torch.equal(test.labels, show.labels)
y = test.labels.numpy()

# the hand-written pytorch-grad-cam call of section 1 and the package give the same maps
from pytorch_grad_cam import GradCAM  # noqa: E402
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget  # noqa: E402

from skinlesion_utils.train import normalise  # noqa: E402

model = model_of["ASFF"]
x = normalise(test.images[:4])
with GradCAM(model=model, target_layers=[model.cam_layer]) as gc:
    by_hand = gc(input_tensor=x, targets=[ClassifierOutputTarget(1)] * 4)
model.zero_grad(set_to_none=True)  # the bare library leaves gradients in the weights
by_package = cam.compute_cams(model, test.images[:4], model.cam_layer, targets=1)
print(f"maps {by_hand.shape}, largest difference {np.abs(by_hand - by_package).max():.1e}")

# %% [markdown]
# ## 3 · Both models on the same images
#
# First the maps of all 660 test images, for both models and both layers, explaining each
# model's *predicted* class (one pass per model through `cam.compute_cams_layers`).

# %%
t0 = time.perf_counter()
native, maps, p_mal = {}, {}, {}
for name, model in model_of.items():
    out, logits = cam.compute_cams_layers(model, test.images, LAYERS, return_logits=True)
    p_mal[name] = torch.softmax(torch.from_numpy(logits), dim=1)[:, 1].numpy()
    for layer, m in out.items():
        native[(name, layer)] = m  # float32 [660, R, R]
        maps[(name, layer)] = ch07_gradcam.resize_maps(m, S)  # float32 [660, S, S]
    stored = run_of[name].predictions.set_index("id").loc[list(test.ids), "y_score"].to_numpy()
    # the same model as the run's own test predictions (those were computed under bf16 autocast, these
    # in fp32): bf16 rounding moves a few scores (up to 0.075 when ASFF's weights saturate), not the model
    gap = np.abs(p_mal[name] - stored)
    assert np.quantile(gap, 0.99) < 0.02 and ((p_mal[name] >= 0.5) == (stored >= 0.5)).mean() > 0.99, gap.max()
pred = {name: (p >= 0.5).astype(int) for name, p in p_mal.items()}
print(f"{len(maps)} sets of {len(test)} maps in {time.perf_counter() - t0:.0f} s")

# %% [markdown]
# Six test images, chosen by a seeded rule (`ch07_gradcam.select_examples`): per class, one image both
# models get right, one both get wrong, and one they disagree on. Each row: the image with its
# approximate lesion outline (yellow, section 4), then the two models' maps at the last layer
# and at `layer3`. Titles give $P(\text{malignant})$.

# %%
masks = localisation.approximate_lesion_masks(show.images)  # bool [660, S, S], APPROXIMATE (section 4)
chosen = ch07_gradcam.select_examples(y, pred["ResNet-50"], pred["ASFF"], per_group=1, seed=0)
chosen["group"] = chosen["group"].str.replace("A ", "ResNet-50 ").str.replace("B ", "ASFF ")
chosen.assign(id=[test.ids[i] for i in chosen["index"]], label=[data.CLASSES[c] for c in chosen.label])

# %%
COLS = [("ResNet-50", "last"), ("ASFF", "last"), ("ResNet-50", "layer3"), ("ASFF", "layer3")]


def map_rows(indices, captions, outline=None, outline_colour="c"):
    """Panels image | 4 overlays per index, with titles; optional second outline (e.g. artifacts)."""
    panels, titles = [], []
    for i, caption in zip(indices, captions):
        panels.append(show.images[i])
        titles.append(f"{test.ids[i].split('/')[1]} #{i} · {caption}")
        for name, layer in COLS:
            panels.append(plots.overlay_cam(show.images[i], maps[(name, layer)][i], alpha=0.45))
            titles.append(f"{name} {layer} · p={p_mal[name][i]:.2f}")
    fig = plots.image_grid(panels, titles=titles, ncols=5, figsize=(11, 2.35 * len(indices)))
    for r, i in enumerate(indices):
        fig.axes[5 * r].contour(masks[i], levels=[0.5], colors="yellow", linewidths=0.8)
        if outline is not None:
            fig.axes[5 * r].contour(outline[i], levels=[0.5], colors=outline_colour, linewidths=0.5)
    for ax in fig.axes:
        ax.title.set_fontsize(7)
    return fig


fig = map_rows(chosen["index"].tolist(), chosen["group"].tolist())
plt.show()

# %% [markdown]
# Read the rows before the numbers: ResNet-50's last map has half as many cells per side as
# ASFF's (at 64 px a 2×2 grid: its "focus" can only be a quadrant), so the ASFF map *looks* more
# precise at every input size — a resolution effect of where the fusion sits, not evidence of
# attention. Compare
# the columns at `layer3`, where both have the same grid.
#
# There is a second reason not to read precision into the ASFF map. Chapter 06 found that the
# paper's fusion, `asff_text`, can learn to switch layer3 off: ω → 0 for every image. The fused
# map is then the projected `layer4`, upsampled bilinearly onto `layer3`'s grid. Upsampling
# mixes positions linearly and the 1×1 projection (with its batch norm) mixes channels linearly,
# so the two commute with Grad-CAM's weighted channel sum: the "fine" ASFF map is the bilinear
# upsampling of a map on `layer4`'s grid — more pixels, no more information. What ω this
# page's ASFF model puts on layer3:

# %%
omega = fusion.fusion_weights(model_of["ASFF"], test)[:, 0].double()
print(f"ω over the {len(test)} test images: median {omega.median():.2g}, largest {omega.max():.2g}; "
      f"layer3 contributes under 1 % of the fused map on {(omega < fusion.IGNORED_BELOW).double().mean():.0%} of them")

# %% [markdown]
# Whether maps that look plausible here are plausible on average is the next question.
#
# ## 4 · All 660 test images: is the map on the lesion?
#
# **Masks.** The test images come without lesion segmentations, so the masks are **approximate**
# (`localisation.approximate_lesion_mask`: Otsu's threshold {cite}`otsu1979` on CIE L* lightness, then
# morphology and the most central component). They outline typical dermoscopy lesions well and
# fail on lesions barely darker than the skin; every table below says `approximate`. Judge them
# yourself on twelve seeded random test images:

# %%
look = splits.per_class_subset(y, 6, seed=3)
fig = plots.image_grid(show.images[look], titles=[f"{test.ids[i].split('/')[1]} · {masks[i].mean():.0%} of image" for i in look],
                       ncols=6, figsize=(11, 4.2))
for ax, i in zip(fig.axes, look):
    ax.contour(masks[i], levels=[0.5], colors="yellow", linewidths=0.8)
    ax.title.set_fontsize(8)
plt.show()
area = masks.mean(axis=(1, 2))
print(f"mask area: median {np.median(area):.0%} of the image; empty masks: {(area == 0).sum()} of {len(area)}; "
      f"masks under 2 % of the image (most likely failures on faint lesions): {(area < 0.02).sum()}")

# %% [markdown]
# **Scores.** For a map $L \ge 0$ and a mask $M$ (1 on the lesion), two standard scores:
#
# * the **energy inside** the mask {cite}`wang2020scorecam`,
#   $E = \sum_{ij} L_{ij} M_{ij} \,/\, \sum_{ij} L_{ij}$ — the share of the map's mass on the lesion;
# * the **pointing game** {cite}`zhang2018pointing`: a hit when the map's maximum lies in the mask.
#
# A map that ignores the image scores, on average, the mask's area share $|M| / hw$ on both —
# the **chance level**. But dermoscopy images are framed on the lesion, so a map that always
# points at the centre beats chance without looking at anything. Two controls therefore join the
# table: the **centre prior** (a fixed Gaussian, `localisation.centre_prior`) and each model's map of a
# **blank image** (one uniform image of the test set's mean colour, `ch07_gradcam.blank_image`), scored
# against every test mask. A model's maps support "it looks at the lesion" only if they beat
# both.

# %%
blank = ch07_gradcam.blank_image(test.images)  # uint8 [1, 3, R, R]
blank_maps = {}
for name, model in model_of.items():
    for layer, m in cam.compute_cams_layers(model, blank, LAYERS).items():
        blank_maps[(name, layer)] = ch07_gradcam.resize_maps(m, S)[0]  # float32 [S, S]
extra = {k: {"pred": pred[k[0]], "p_malignant": p_mal[k[0]]} for k in maps}
loc = ch07_gradcam.localisation_table(maps, masks, ids=test.ids, labels=y, mask_kind="approximate", extra=extra)
controls = ch07_gradcam.localisation_table(
    {**{(f"{name} · blank image", layer): m for (name, layer), m in blank_maps.items()},
     ("centre prior (no model)", "-"): localisation.centre_prior(S)},
    masks, ids=test.ids, labels=y, mask_kind="approximate")
summary = pd.concat([ch07_gradcam.summary_table(loc, seed=0), ch07_gradcam.summary_table(controls, seed=0)], ignore_index=True)
for (name, layer), m in blank_maps.items():
    if m.max() <= 0:  # Grad-CAM's ReLU removed every position: no evidence for the class anywhere
        print(f"{name} ({layer}): the blank image's map is all zero — it has no energy to place, so "
              "comparisons with it are not measurable and read so below")
summary.set_index(["model", "layer"])[["n", "energy_inside", "energy_low", "energy_high", "pointing_game",
                                       "pointing_low", "pointing_high", "pointing_n", "chance"]].round(3)

# %%
def group(model, layer, table=loc):
    """The rows of one (model, layer) of a localisation table, in test-image order."""
    return table[(table.model == model) & (table.layer == layer)].reset_index(drop=True)


groups = [(name, layer) for layer in LAYERS for name in PAIR]
fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 3.8))
diffs = [(g.energy_inside - g.mask_fraction).dropna() for g in (group(n, l) for n, l in groups)]
a1.boxplot(diffs, showfliers=False)
a1.set_xticks(range(1, len(groups) + 1), [f"{n}\n{l}" for n, l in groups])
a1.axhline(0, color="k", lw=0.8, ls="--", label="chance (mask area share)")
for j, (n, l) in enumerate(groups, start=1):
    g = group(f"{n} · blank image", l, controls)
    a1.plot(j, (g.energy_inside - g.mask_fraction).mean(), "rx", ms=8, label="blank image (mean)" if j == 1 else None)
a1.set_ylabel("energy inside mask − area share")
a1.set_title("Energy inside the lesion mask, per image")
a1.legend(fontsize=8)
idx = summary.set_index(["model", "layer"])
for j, (n, l) in enumerate(groups):
    r = idx.loc[(n, l)]
    a2.errorbar(j, r.pointing_game, yerr=[[r.pointing_game - r.pointing_low], [r.pointing_high - r.pointing_game]],
                fmt="o", color="C0", capsize=4, label="model, 95 % CI" if j == 0 else None)
    a2.plot(j, idx.loc[(f"{n} · blank image", l)].pointing_game, "rx", ms=8, label="blank image" if j == 0 else None)
a2.axhline(idx.loc[groups[0]].chance, color="k", lw=0.8, ls="--", label="chance (mean area share)")
a2.axhline(idx.loc[("centre prior (no model)", "-")].pointing_game, color="g", lw=0.8, ls=":", label="centre prior")
a2.set_xticks(range(len(groups)), [f"{n}\n{l}" for n, l in groups])
a2.set_ylim(0, 1)
a2.set_ylabel("pointing game (share of hits)")
a2.set_title(f"Pointing game, {len(test)} test images")
a2.legend(fontsize=8, loc="lower right")
fig.tight_layout()
plt.show()

# %% [markdown]
# **Paired comparisons.** Both models are scored on the same images, so the comparison is
# paired (`ch07_gradcam.paired_localisation`): the mean per-image difference of the energy with a bootstrap
# interval and the Wilcoxon signed-rank test {cite}`wilcoxon1945`, and for the pointing game the
# difference of hit rates with the exact McNemar test {cite}`mcnemar1947` on the images where
# one model hits and the other misses.

# %%
comparisons = {
    ("ASFF − ResNet-50", "last"): (group("ASFF", "last"), group("ResNet-50", "last")),
    ("ASFF − ResNet-50", "layer3"): (group("ASFF", "layer3"), group("ResNet-50", "layer3")),
    **{(f"{n} − its blank-image map", l): (group(n, l), group(f"{n} · blank image", l, controls)) for n, l in groups},
    **{(f"{n} − centre prior", "last"): (group(n, "last"), group("centre prior (no model)", "-", controls)) for n in PAIR},
}
rows = {}
for key, (a, b) in comparisons.items():
    r = ch07_gradcam.paired_localisation(a, b, seed=0)
    e, p = r["energy_inside"], r["pointing_game"]
    rows[key] = {"energy_diff": e["mean_diff"], "energy_low": e["ci_low"], "energy_high": e["ci_high"],
                 "wilcoxon_p": e["wilcoxon_p"], "pointing_diff": p["diff"], "pointing_low": p["ci_low"],
                 "pointing_high": p["ci_high"], "a_only": p["a_only"], "b_only": p["b_only"], "mcnemar_p": p["mcnemar_p"],
                 "n": e["n"]}
paired = pd.DataFrame(rows).T.rename_axis(["comparison", "layer"]).astype(float)
paired[["a_only", "b_only", "n"]] = paired[["a_only", "b_only", "n"]].astype(int)
paired.round(3)

# %% [markdown]
# The same tables in words (`metrics.interval_word` reads each 95 % interval against its reference;
# no number on this page is typed by hand):

# %%
verdicts = {}
for (n, l), r in summary.set_index(["model", "layer"]).loc[groups].iterrows():
    verdicts[f"{n} {l} vs chance"] = (f"energy inside {metrics.interval_word(r.energy_minus_chance_low, r.energy_minus_chance_high)} "
                                      f"chance, pointing game {metrics.interval_word(r.pointing_low, r.pointing_high, r.chance)} chance")
for (comp, l), r in paired.iterrows():
    verdicts[f"{comp} ({l})"] = (f"energy difference {metrics.interval_word(r.energy_low, r.energy_high)} 0 "
                                 f"({r.energy_diff:+.3f} [{r.energy_low:+.3f}, {r.energy_high:+.3f}]); pointing difference "
                                 f"{metrics.interval_word(r.pointing_low, r.pointing_high)} 0 ({r.pointing_diff:+.3f} "
                                 f"[{r.pointing_low:+.3f}, {r.pointing_high:+.3f}])")
print("\n".join(f"{k}: {v}" for k, v in verdicts.items()))

# %% [markdown]
# The table answers the claim directly. A positive `energy_diff` for "ASFF − ResNet-50" with an
# interval above zero would mean ASFF's maps put more of their mass on the lesion; the rows
# against the blank image and the centre prior say whether either model's maps beat a map that
# never looked at the image. The numbers on this page are from the `ci` models (64 px, trained
# from scratch for a few epochs): they test the method and this pair, not the paper's 224-px
# models — the `full` profile reruns the same cells on those.
#
# ## 5 · Does the map depend on the image?
#
# A map can score well and still say nothing about the image in front of it. Three views: the
# map of the blank image, the mean of all 660 maps, and where the maxima of the 660 maps fall on
# the layer's own grid (`ch07_gradcam.peak_grid`). If the three look alike, the maps mostly show a fixed
# spatial pattern of the network (for instance from zero padding at the borders), not the image.

# %%
fig, axes = plt.subplots(3, len(groups), figsize=(11, 8))
for j, (n, l) in enumerate(groups):
    hw = grid_of[(n, l)]
    axes[0, j].imshow(blank_maps[(n, l)], cmap="jet", vmin=0, vmax=1)
    axes[0, j].set_title(f"{n} {l}\nblank image", fontsize=9)
    axes[1, j].imshow(maps[(n, l)].mean(axis=0), cmap="jet")
    axes[1, j].set_title("mean of the 660 maps", fontsize=9)
    counts = ch07_gradcam.peak_grid(maps[(n, l)], hw)
    axes[2, j].imshow(counts, cmap="Greys")
    for (r_, c_), v in np.ndenumerate(counts):
        axes[2, j].text(c_, r_, str(v), ha="center", va="center", color="tab:red", fontsize=8)
    axes[2, j].set_title(f"maxima on the {hw[0]}×{hw[1]} grid", fontsize=9)
for ax in axes.ravel():
    ax.set_xticks([])
    ax.set_yticks([])
fig.tight_layout()
plt.show()

# %%
similarity = pd.DataFrame({f"{n} {l}": ch07_gradcam.map_similarity(maps[(n, l)], blank_maps[(n, l)]) for n, l in groups})
image_dependence = similarity.describe(percentiles=[0.25, 0.5, 0.75]).T[["count", "mean", "25%", "50%", "75%"]]
image_dependence["share ρ > 0.9"] = (similarity > 0.9).mean()
image_dependence["largest peak-cell share"] = [ch07_gradcam.peak_grid(maps[k], grid_of[k]).max() / len(test) for k in groups]
image_dependence.round(3)

# %% [markdown]
# The columns are Spearman's $\rho$ between each image's map and the blank image's map. A
# median near 1 means that, for most images, the map ranks the pixels as it does for an empty
# skin-coloured square; the last column is the share of all maps whose maximum falls into the
# single most popular cell.
#
# ## 6 · Faithfulness: does deleting what the map highlights change the prediction?
#
# Localisation asks whether the map agrees with *us*; faithfulness asks whether it agrees with
# the *model*. ROAD {cite}`rong2022road` removes the $r$ % most relevant pixels of the map
# (MoRF) or the $r$ % least relevant (LeRF), fills them by noisy linear imputation (so the
# removal itself leaves no tell-tale shape), and records the change of the predicted class's
# probability, for $r \in \{20, 40, 60, 80\}$. The combined score
# $\tfrac12(\overline{\Delta p}_{\text{LeRF}} - \overline{\Delta p}_{\text{MoRF}})$ is positive
# for a faithful map and about 0 for one that carries no information. The imputation solves a
# sparse linear system per image and level on the CPU, whose cost grows with the pixel count, so
# ROAD runs on a seeded stratified subset of the test images — the same images for both models,
# at the maps' own resolution — sized by a pixel budget: 32 images at 64 px, fewer (at least 16)
# at larger sizes.

# %%
N_ROAD = max(16, 2 * round(16 * (64 / R) ** 2))  # even: half per class
road_idx = splits.per_class_subset(y, N_ROAD // 2, seed=0)
t0 = time.perf_counter()
road = []
for name, model in model_of.items():
    f = cam.faithfulness(model, test.images[road_idx], native[(name, "last")][road_idx], targets=pred[name][road_idx], seed=0)
    road.append(f.assign(model=name, id=[test.ids[i] for i in road_idx], label=y[road_idx]))
road = pd.concat(road, ignore_index=True)
road_summary = pd.DataFrame({name: {f"{col} {k}": v for col, d in ch07_gradcam.summarise_faithfulness(g, seed=0).items()
                                    for k, v in d.items() if k != "n"}
                             for name, g in road.groupby("model", sort=False)}).T
print(f"ROAD on {N_ROAD} test images ({N_ROAD // 2} per class) per model, last layer, in {time.perf_counter() - t0:.0f} s")
road_summary.round(3)

# %% [markdown]
# ## 7 · The sanity check: do the maps depend on the model?
#
# Adebayo et al. {cite}`adebayo2018sanity` showed that some popular saliency maps barely change
# when a network's weights are replaced by random ones — they behave like edge detectors of the
# image, not explanations of the model. Their **cascading model-parameter randomisation**
# re-initialises the layers from the top down, one more at each step, and compares each new map
# with the original: Spearman's rank correlation and SSIM should fall towards 0 quickly. Here
# the steps are the models' stages (`cam.stage_blocks`: head, fusion, `layer4` … `conv1`), on 16
# seeded test images (8 per class); the classes explained are fixed to the original predictions. A step whose
# map is constant (all zero after Grad-CAM's ReLU) counts as $\rho = 0$.

# %%
sanity_idx = splits.per_class_subset(y, 8, seed=1)
t0 = time.perf_counter()
sanity = {}
for name, model in model_of.items():
    df = cam.randomisation_check(model, test.images[sanity_idx], blocks=cam.stage_blocks(model), seed=0)
    sanity[name] = ch07_gradcam.summarise_randomisation(df)
print(f"cascading randomisation of {len(sanity_idx)} images per model in {time.perf_counter() - t0:.0f} s")
sanity_table = pd.concat(sanity, names=["model", "step"])
sanity_table.round(3)

# %%
order = max((list(s.block) for s in sanity.values()), key=len)  # ASFF's steps include the fusion
fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 3.6))
for name, s in sanity.items():
    x = [order.index(b) for b in s.block]
    a1.plot(x, s.spearman, "o-", label=name)
    a2.plot(x, s.ssim, "o-", label=name)
for ax, what in ((a1, "Spearman ρ with the original map"), (a2, "SSIM with the original map")):
    ax.set_xticks(range(len(order)), ["original" if b == "none" else f"+{b}" for b in order],
                  rotation=45, ha="right", fontsize=8)
    ax.axhline(0, color="k", lw=0.6)
    ax.set_ylabel(what)
    ax.legend(fontsize=8)
a1.set_title("Cascading randomisation (top stage first)")
fig.tight_layout()
plt.show()

# %% [markdown]
# One image through the cascade, each model's last-layer map after each step (same seed and
# hence the same random weights as the curves, `cam.randomisation_maps`):

# %%
one = sanity_idx[-1:]
panels, titles = [], []
for name, model in model_of.items():
    steps, cascade = cam.randomisation_maps(model, test.images[one], blocks=cam.stage_blocks(model), seed=0)
    for b in order:
        if b in steps:
            m = cascade[steps.index(b), 0]
            panels.append(plots.overlay_cam(show.images[one[0]], ch07_gradcam.resize_maps(m, S)[0], alpha=0.5))
            titles.append(f"{name}: original" if b == "none" else f"+ {b}")
        else:  # ResNet-50 has no fusion module
            panels.append(np.full((S, S, 3), 255, np.uint8))
            titles.append(f"(no {b})")
fig = plots.image_grid(panels, titles=titles, ncols=len(order), figsize=(12, 3.4))
for ax in fig.axes:
    ax.title.set_fontsize(7)
plt.show()

# %% [markdown]
# The verdict per model, with the threshold stated: the map *depends on the weights* when the
# mean Spearman correlation with the original map has fallen below 0.5 once every stage is
# random. A coarse grid makes the check hard to pass: a map of a few cells, upsampled
# bilinearly, is a smooth ramp between a handful of values, and two such ramps are often
# correlated by chance.

# %%
for name, s in sanity.items():
    final = s.spearman.iloc[-1]
    h, w = grid_of[(name, "last")]
    verdict = "passes: the map depends on the weights" if final < 0.5 else (
        "fails: after every stage is randomised the map still correlates with the original")
    print(f"{name} ({h}×{w} grid): final Spearman ρ = {final:.2f} → {verdict}")

# %% [markdown]
# Passing this check is necessary, not sufficient: it shows that the map depends on the
# weights; failing it means the map cannot be read as an explanation of this model at all.
# Section 5 asks the other question — whether it depends on the image — and the two answers
# can differ: a map can change completely with the weights and still be almost the same for
# every image.
#
# ## 8 · Hair and rulers
#
# The second half of the claim is that ResNet-50 looks at artifacts. Dermoscopy artifacts are
# known shortcuts for classifiers: surgical pen markings raised a commercial network's melanoma
# scores {cite}`winkler2019markings`, and models trained on ISIC data still score above chance
# when the lesion is cut out of the image {cite}`bissoto2019debias`. Without an artifact
# annotation, the rule here is simple and stated: `ch07_gradcam.thin_dark_structures` marks pixels that
# are more than 20 L* levels darker than a morphological closing of the image with a disk of 3 %
# of its side (a **black-hat** transform: thin dark things such as hairs, ruler ticks and ink),
# outside the dilated lesion mask and outside the dermatoscope's black field of view. The six
# test images with the largest marked share (cyan), and where the maps go:

# %%
art_score, art_masks = ch07_gradcam.thin_dark_structures(show.images, masks)
top = np.argsort(-art_score, kind="stable")[:6]
fig = map_rows(top.tolist(), [f"{art_score[i]:.0%} marked" for i in top], outline=art_masks, outline_colour="cyan")
plt.show()

# %% [markdown]
# Over all test images with at least 1 % of their area marked, the same energy score measures
# how much of each map lies *on the marked structures*; its chance level is the marked share.
# A model that looks at hair more than chance has positive "energy − share".

# %%
MIN_ART = 0.01
hairy = np.flatnonzero(art_score >= MIN_ART)
art_loc = ch07_gradcam.localisation_table({k: v[hairy] for k, v in maps.items()}, art_masks[hairy],
                                 ids=[test.ids[i] for i in hairy], labels=y[hairy], mask_kind="approximate")
artifacts = ch07_gradcam.summary_table(art_loc, seed=0).rename(columns={
    "energy_inside": "energy_on_marks", "energy_low": "energy_on_marks_low", "energy_high": "energy_on_marks_high",
    "chance": "marked_share", "energy_minus_chance": "energy_on_marks_minus_marked_share",
    "energy_minus_chance_low": "energy_on_marks_minus_marked_share_low",
    "energy_minus_chance_high": "energy_on_marks_minus_marked_share_high"})
art_paired = {layer: ch07_gradcam.paired_localisation(group("ResNet-50", layer, art_loc), group("ASFF", layer, art_loc), seed=0)
              for layer in LAYERS}
for key, col in (("mean_diff", "ResNet-50 − ASFF"), ("ci_low", "ResNet-50 − ASFF low"),
                 ("ci_high", "ResNet-50 − ASFF high"), ("wilcoxon_p", "wilcoxon_p")):
    artifacts[col] = artifacts.layer.map(lambda l, key=key: art_paired[l]["energy_inside"][key])
print(f"{len(hairy)} of {len(test)} test images have ≥ {MIN_ART:.0%} of their area marked")
for _, r in artifacts.iterrows():
    verdicts[f"{r.model} {r.layer} on marked structures"] = (
        f"energy on the marks {metrics.interval_word(r.energy_on_marks_minus_marked_share_low, r.energy_on_marks_minus_marked_share_high)} "
        f"their area share ({r.energy_on_marks_minus_marked_share:+.3f} [{r.energy_on_marks_minus_marked_share_low:+.3f}, "
        f"{r.energy_on_marks_minus_marked_share_high:+.3f}])")
    print(f"{r.model} {r.layer}: {verdicts[f'{r.model} {r.layer} on marked structures']}")
artifacts.set_index(["model", "layer"])[["n", "energy_on_marks", "energy_on_marks_low", "energy_on_marks_high",
                                         "marked_share", "energy_on_marks_minus_marked_share",
                                         "ResNet-50 − ASFF", "ResNet-50 − ASFF low", "ResNet-50 − ASFF high",
                                         "wilcoxon_p"]].round(3)

# %% [markdown]
# ## 9 · The claim, item by item
#
# "ASFF focuses on the lesion, ResNet-50 on artifacts" breaks into statements that the sections
# above measured. Each holds only when its whole 95 % interval lies above the reference
# (`ch07_gradcam.claim_row`); the energy inside the mask is the primary score, the pointing game is in the
# tables above.

# %%
S_ = summary.set_index(["model", "layer"])
P_ = paired
A_ = artifacts.set_index(["model", "layer"])
F_ = {n: ch07_gradcam.summarise_faithfulness(g, seed=0)["road_combined"] for n, g in road.groupby("model", sort=False)}
claims = pd.DataFrame([
    ch07_gradcam.claim_row("ASFF's maps put more of their energy on the lesion than chance (last layer)",
                           *S_.loc[("ASFF", "last"), ["energy_minus_chance", "energy_minus_chance_low", "energy_minus_chance_high"]],
                           what="energy − area share"),
    ch07_gradcam.claim_row("… more than ASFF's map of a blank image (the map depends on the image)",
                           *P_.loc[("ASFF − its blank-image map", "last"), ["energy_diff", "energy_low", "energy_high"]],
                           what="paired difference"),
    ch07_gradcam.claim_row("… more than a fixed centre prior",
                           *P_.loc[("ASFF − centre prior", "last"), ["energy_diff", "energy_low", "energy_high"]],
                           what="paired difference"),
    ch07_gradcam.claim_row("ASFF's maps are on the lesion more than ResNet-50's (default layers, as in the paper's figure)",
                           *P_.loc[("ASFF − ResNet-50", "last"), ["energy_diff", "energy_low", "energy_high"]],
                           what="paired difference"),
    ch07_gradcam.claim_row("… and at a common layer (layer3, the same grid for both)",
                           *P_.loc[("ASFF − ResNet-50", "layer3"), ["energy_diff", "energy_low", "energy_high"]],
                           what="paired difference"),
    ch07_gradcam.claim_row("ResNet-50's maps go to hair and ruler marks more than their area share (last layer)",
                           *A_.loc[("ResNet-50", "last"), ["energy_on_marks_minus_marked_share", "energy_on_marks_minus_marked_share_low",
                                                           "energy_on_marks_minus_marked_share_high"]],
                           what="energy on marks − marked share"),
    ch07_gradcam.claim_row("… and more than ASFF's maps do",
                           *A_.loc[("ResNet-50", "last"), ["ResNet-50 − ASFF", "ResNet-50 − ASFF low", "ResNet-50 − ASFF high"]],
                           what="paired difference"),
    ch07_gradcam.claim_row("ASFF's maps are faithful to the model (ROAD combined > 0)",
                           F_["ASFF"]["mean"], F_["ASFF"]["ci_low"], F_["ASFF"]["ci_high"], what=f"ROAD, {N_ROAD} images"),
])
with pd.option_context("display.max_colwidth", 200):
    display(claims[["statement", "holds", "measured", "reading"]])

# %% [markdown]
# What the `ci` pair can and cannot say: the models are trained from scratch at a small size for
# a few epochs, the masks are approximate, and the maps are a few cells wide, so a failed
# statement here does not prove the paper's 224-px models behave the same way — but it shows
# that the paper's kind of evidence (a few heat maps that *look* focused) is not enough, and the
# `full` profile runs this exact table on the 224-px, ImageNet-initialised pair. The sanity check
# (section 7) is a precondition, not part of the claim.
#
# ## 10 · Results for chapter 09
#
# The numbers chapter 09 audits are written under `results/<profile>/07_gradcam/`, and the
# tables below are read back from those files. `localisation.json` leads with the ASFF model at
# its default layer — the paper's model and the map its figure shows — and records the settings
# the models were trained at.

# %%
asff_last = localisation.summarise_localisation(group("ASFF", "last"), seed=0)
cfg = run_of["ASFF"].config
per_image = pd.DataFrame({"id": list(test.ids), "label": y, "mask_fraction": area, "marked_share": art_score})
for name in PAIR:
    per_image[f"{name} p_malignant"] = p_mal[name]
    for layer in LAYERS:
        g = group(name, layer)
        per_image[f"{name} {layer} energy_inside"] = g.energy_inside.to_numpy()
        per_image[f"{name} {layer} pointing_hit"] = g.pointing_hit.to_numpy()
written = results.write_results(CHAPTER, {
    "localisation": {
        **asff_last, "model": "ASFF (asff_text)", "target_layer": "cam_layer (the fused map)",
        "question": "share of the Grad-CAM map's energy inside the approximate lesion mask, minus chance, test images",
        "settings": {"image_size": cfg.image_size, "pretrained": cfg.pretrained, "epochs": cfg.epochs,
                     "display_size": S, "method": "gradcam", "explained_class": "predicted"},
        "runs": {name: run.dir.name for name, run in run_of.items()},
        "verdicts": verdicts,
        "claim_checks": claims.to_dict(orient="records"),
        "by_model": summary.to_dict(orient="records"),
        "paired": paired.reset_index().to_dict(orient="records"),
        "faithfulness": {"n_images": int(N_ROAD), "by_model": {n: ch07_gradcam.summarise_faithfulness(g, seed=0)
                                                               for n, g in road.groupby("model", sort=False)}},
        "sanity_final_spearman": {n: float(s.spearman.iloc[-1]) for n, s in sanity.items()},
        "image_dependence_median_rho": {k: float(v) for k, v in image_dependence["50%"].items()},
        "artifacts": {"min_marked_share": MIN_ART, "n_images": int(len(hairy)),
                      "by_model": artifacts.to_dict(orient="records")},
    },
    "localisation_summary": summary.set_index(["model", "layer"]),
    "paired": paired,
    "per_image": per_image.set_index("id"),
    "faithfulness": road.set_index(["model", "id"]),
    "sanity": sanity_table,
    "artifacts": artifacts.set_index(["model", "layer"]),
    "map_sizes": map_sizes,
    "claim_checks": claims.set_index("statement"),
}, profile=P)
print("\n".join(f"{k}: results/{P.name}/{CHAPTER}/{p.name}" for k, p in written.items()))

# %%
# NBVAL_CHECK_OUTPUT
back = results.read_results(CHAPTER, "per_image", profile=P)
print(f"per_image: {len(back)} test images ({back.index.is_unique and 'unique ids'}), "
      f"{int((back.label == 1).sum())} malignant, {back.shape[1]} columns")

# %%
shown = results.read_results(CHAPTER, "localisation_summary", profile=P).set_index("layer", append=True)
shown[["n", "energy_inside", "energy_low", "energy_high", "energy_minus_chance", "pointing_game", "chance"]].round(3)

# %%
loc_json = results.read_results(CHAPTER, "localisation", profile=P)
d = loc_json["energy_inside_minus_chance"]
print(f"{loc_json['model']}, {loc_json['target_layer']}, {loc_json['mask_kind']} masks, {loc_json['n_images']} test images: "
      f"energy inside − chance = {d['mean']:+.3f} [{d['ci_low']:+.3f}, {d['ci_high']:+.3f}]")

# %% [markdown]
# ## Exercises
#
# Each exercise asks for one function. Write it in the cell under the task, then run the check cell below it.
# The check calls your function on made-up cases and on real data (approximate masks of real
# test images; the book's architectures) and prints ✅, or ❌ with the case that failed and a
# hint; it never prints the answer. The solutions are in the book, collapsed behind "Show code
# cell source" under each task: try first.
#
# The same exercises, graded, are this chapter's lab notebook (built with otter-grader: public
# tests that give these hints, hidden tests that give the points); the teacher's guide,
# {doc}`/book/lab/grading`, says how to hand it out, collect and grade it.

# %%
from skinlesion_utils import lab

# %% [markdown]
# ### Exercise 1 (★☆☆): Energy inside the mask, by hand
#
# Write `energy_inside(cam, mask)`: given one map `cam` (float `[H, W]`, values ≥ 0) and one
# lesion mask `mask` (bool `[H, W]`), return the share of the map's mass inside the mask,
# $\sum L M / \sum L$, as a Python float in [0, 1]. An all-zero map has no mass: return
# `float("nan")`. Then ask yourself what a uniform map scores.

# %% tags=["solution", "hide-input"]
import numpy as np


def energy_inside(cam: np.ndarray, mask: np.ndarray) -> float:
    """cam: float [H, W] >= 0; mask: bool [H, W] -> share of the map's mass inside the mask (nan if all zero)."""
    ### BEGIN SOLUTION
    cam = np.asarray(cam, dtype=np.float64)
    total = cam.sum()
    return float((cam * mask).sum() / total) if total > 0 else float("nan")
    ### END SOLUTION

# %%
lab.ch07.check_energy_inside(energy_inside);

# %% [markdown]
# ### Exercise 2 (★★☆): The pointing game
#
# Write `pointing_game(cams, masks)`: given maps `cams` (float `[N, H, W]`) and masks `masks`
# (bool `[N, H, W]`), return the share of maps whose maximum lies inside their own mask. Take the
# *first* maximum in row-major order (what `np.argmax` returns) and convert it to (row, column)
# with `np.unravel_index`. A constant map points nowhere: leave it out of both the hits and the
# count. If every map is constant, return `float("nan")`.

# %% tags=["solution", "hide-input"]
import numpy as np


def pointing_game(cams: np.ndarray, masks: np.ndarray) -> float:
    """cams: float [N, H, W]; masks: bool [N, H, W] -> share of non-constant maps whose maximum is in the mask."""
    ### BEGIN SOLUTION
    hits = []
    for c, m in zip(np.asarray(cams), np.asarray(masks)):
        if c.max() == c.min():
            continue  # a constant map has no maximum to point with
        row, col = np.unravel_index(int(np.argmax(c)), c.shape)
        hits.append(bool(m[row, col]))
    return float(np.mean(hits)) if hits else float("nan")
    ### END SOLUTION

# %%
lab.ch07.check_pointing_game(pointing_game);

# %% [markdown]
# ### Exercise 3 (★★★): Choose a target layer
#
# Section 2 chose `layer3` because its map is large enough at the chapter's input size. Turn that
# choice into a rule: write `deepest_block(name, image_size, min_side)` that builds the book's
# model `name` (`models.build_model(name)`), and returns the dotted name of the **deepest block
# whose output map is at least `min_side × min_side`** for a `[1, 3, image_size, image_size]`
# input. The candidate blocks are the model's top-level modules — with every top-level
# `nn.Sequential` opened into its children (`"layer3.5"`, `"features.12"`) — that contain an
# `nn.Conv2d`; "deepest" means the last one to run in the forward pass, and a block whose output
# is not a `[B, C, h, w]` tensor does not count. Hint: forward hooks, one `torch.zeros` input, in
# `eval()` mode under `torch.no_grad()`. Then justify the trade-off in a sentence: why not
# always the deepest block, and why not a very shallow one?

# %% tags=["solution", "hide-input"]
import torch
from torch import nn

from skinlesion_utils import models


def deepest_block(name: str, image_size: int, min_side: int) -> str:
    """The dotted name of the last block (top-level module or child of a top-level Sequential,
    containing a Conv2d) whose output map is at least min_side × min_side at image_size px."""
    ### BEGIN SOLUTION
    model = models.build_model(name).eval()
    blocks = []
    for top, child in model.named_children():
        subs = ([(f"{top}.{n}", c) for n, c in child.named_children()] if isinstance(child, nn.Sequential)
                else [(top, child)])
        blocks += [(n, m) for n, m in subs if any(isinstance(x, nn.Conv2d) for x in m.modules())]
    seen = []
    hooks = [m.register_forward_hook(lambda mod, inp, out, n=n: seen.append((n, out)))
             for n, m in blocks]
    try:
        with torch.no_grad():
            model(torch.zeros(1, 3, image_size, image_size))
    finally:
        for h in hooks:
            h.remove()
    ok = [n for n, out in seen
          if isinstance(out, torch.Tensor) and out.ndim == 4 and min(out.shape[-2:]) >= min_side]
    return ok[-1]
    ### END SOLUTION

# %%
lab.ch07.check_deepest_block(deepest_block);

# %% [markdown]
# ## Checks
#
# CI fails this chapter if any of these stops holding:
#
# * both models of the pair work (test ROC AUC ≥ 0.80: explaining a model that has not learned
#   is pointless) and share one input size;
# * every map is in [0, 1] with the display size, 660 per model and layer, and the localisation
#   table covers all 660 test images once per model and layer, each with an approximate mask;
# * the sanity check ran correctly: the unchanged copy reproduces the original maps (ρ = 1 at
#   step 0) and every correlation lies in [−1, 1] (whether the maps *pass* it is a finding,
#   printed in section 7, not a condition of CI);
# * the controls are what they claim: the blank-image map of each model is one fixed map, the
#   centre prior scores the same on both models' rows, and every score lies in [0, 1];
# * ROAD ran on the stated number of images per model, with every change of probability in
#   [−1, 1];
# * the claim table has one yes/no answer per statement, each backed by an interval, or read
#   "not measurable" (and counted as not holding) where no interval exists;
# * the results files for chapter 09 exist and read back the numbers computed above.

# %%
for name, run in run_of.items():
    assert run.metrics["roc_auc"] >= 0.80, (name, run.metrics["roc_auc"])
for key, m in maps.items():
    assert m.shape == (len(test), S, S) and m.dtype == np.float32, key
    assert 0.0 <= m.min() and m.max() <= 1.0, key
assert len(test) == 660 and len(loc) == 660 * len(maps)
assert (loc.groupby(["model", "layer"]).id.nunique() == 660).all() and set(loc.id) == set(test.ids)
assert (loc.mask_kind == "approximate").all() and masks.shape == (660, S, S)
for name, s in sanity.items():
    assert abs(s.spearman.iloc[0] - 1.0) < 1e-6 and s.block.iloc[0] == "none", name
    assert s.spearman.between(-1 - 1e-9, 1 + 1e-9).all(), name
assert len(road) == 2 * N_ROAD and road.model.value_counts().eq(N_ROAD).all()
assert road.filter(regex="^(morf|lerf)_|confidence_change").abs().le(1.0).all().all()
score_cols = ["energy_inside", "pointing_game", "chance"]
assert summary[score_cols].apply(lambda c: c.dropna().between(0, 1).all()).all()
assert all(m.shape == (S, S) for m in blank_maps.values())
assert len(claims) == 8 and claims.holds.map(type).eq(bool).all()
finite = claims[["mean", "ci_low", "ci_high"]].notna().all(axis=1)
assert (claims[finite].ci_low <= claims[finite]["mean"] + 1e-12).all() and (claims[finite]["mean"] <= claims[finite].ci_high + 1e-12).all()
assert claims[~finite].reading.str.startswith("not measurable").all() and not claims[~finite].holds.any()
assert all(p.is_file() for p in written.values())
assert loc_json["n_images"] == 660 and loc_json["mask_kind"] == "approximate"
assert abs(loc_json["energy_inside"]["mean"] - group("ASFF", "last").energy_inside.mean()) < 1e-9
print("all checks passed")

# %% [markdown]
# ## Takeaways
#
# * Grad-CAM {cite}`selvaraju2017gradcam` weights a layer's feature maps by the spatial mean of
#   the score's gradient; its resolution is the layer's grid. The ASFF map is on `layer3`'s grid
#   and ResNet-50's on `layer4`'s, so the ASFF map looks sharper at every size: compare at a
#   common layer before reading attention into it. When the fusion has switched layer3 off
#   (ω ≈ 0, chapter 06), the finer map is only an upsampled `layer4` map.
# * "Focuses on the lesion" is testable: score every test image (energy inside the mask,
#   pointing game), compare with chance *and* with maps that never saw the image (a blank image,
#   a centre prior), pair the two models on the same images. The tables above are this page's
#   answer for the `ci` pair; chapter 09 reads them from `results/`.
# * Two different sanity questions: does the map depend on the model (cascading randomisation
#   {cite}`adebayo2018sanity`), and does it depend on the image (the blank-image control)? A map
#   can pass the first and fail the second.
# * Faithfulness is a third question, about the model rather than about us: ROAD
#   {cite}`rong2022road` deletes what the map highlights and watches the prediction.
# * Artifacts such as hair, rulers and ink are real shortcuts in dermoscopy
#   {cite}`winkler2019markings,bissoto2019debias`; a stated rule (a black-hat transform) finds
#   images to inspect and gives a score, but it is not an artifact detector.
# * The masks are approximate (Otsu {cite}`otsu1979` and morphology); expert segmentations
#   (e.g. ISIC's) can be passed to `python -m skinlesion_utils cam-score --masks`.

# %%
ch.footer();
