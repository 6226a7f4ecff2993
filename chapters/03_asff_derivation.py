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
# # 03 · Deriving ASFF: from multi-scale features to the paper's fusion
#
# The paper's model is a ResNet-50 whose two deepest stages are merged by "adaptive spatial
# feature fusion" (ASFF). This chapter derives ASFF from its source, Liu et al.'s detector
# {cite}`liu2019asff`: the fusion equations, the gradient argument that motivates them (checked
# here with autograd, including where it stops being true), and the two-level form the paper
# uses — and what of that argument survives in a classifier with one fused output. It then
# follows every tensor of the model at 224 px, and puts side by side the three things "ASFF" can
# mean for this paper — its text, its released code, and the original — which turn out to be
# different computations with different behaviour at initialisation and different costs. It
# ends with the backbone itself: the released code's Keras ResNet-50 is not torchvision's. No
# training happens here.
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/asff-skinlesion-book/asff-skinlesion-book/blob/main/chapters/03_asff_derivation.ipynb)
# · **time:** printed by the header cell below: the `ci` time measured at the chapter's last
# execution and an estimate for a Colab T4 (`full`) from the chapter's GPU work (what it leaves
# out, here the one-time download of the ImageNet weights, is named there)
#
# ```{note}
# The outputs stored on this page come from the `ci` profile executed on a 2-core CPU; the
# last line of the page gives the date and run time. The walk-through and the cost table use
# 224 px under both profiles; the weights at initialisation use the profile's image size and,
# under `full`, an ImageNet-pretrained body.
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
import inspect
import textwrap
import time

import matplotlib.pyplot as plt
import pandas as pd
import torch
import torchvision

from skinlesion_utils import data, fusion, models, paper, plots
from skinlesion_utils.chapter import start_chapter
from skinlesion_utils.augment import normalise
from skinlesion_utils.studies import ch03_asff

ch = start_chapter("03_asff_derivation")
P = ch.profile
ASFF = ("asff_text", "asff_code", "asff_spatial")

# %% [markdown]
# ## 1 · Multi-scale features and ASFF (eq. 1–2)
#
# A CNN computes a pyramid of feature maps: each stage halves the grid and adds channels. In
# ResNet-50 {cite}`he2016resnet` at 224 px, `layer3` gives $F_1$: 1024 channels on a 14×14 grid
# (stride 16), and `layer4` gives 2048 channels on 7×7 (stride 32). Deeper maps are more
# semantic and coarser; shallower ones keep more detail. A plain ResNet classifies from `layer4`
# alone. Fixed fusions add or concatenate the levels after bringing them to one grid — every
# level then counts the same everywhere.
#
# ASFF {cite}`liu2019asff` learns *how much* each level counts, at every position. For a target
# level $l$ and levels $n = 1, 2, 3$ resized to its grid, $x^{n \to l}$,
#
# $$
# y^l_{ij} = \alpha^l_{ij}\, x^{1\to l}_{ij} + \beta^l_{ij}\, x^{2\to l}_{ij} + \gamma^l_{ij}\, x^{3\to l}_{ij},
# \qquad \text{(1)}
# $$
#
# $$
# \alpha^l_{ij} = \frac{e^{\lambda^l_{\alpha,ij}}}{e^{\lambda^l_{\alpha,ij}} + e^{\lambda^l_{\beta,ij}} + e^{\lambda^l_{\gamma,ij}}}
# \quad (\beta, \gamma \text{ alike}), \qquad \alpha + \beta + \gamma = 1 . \qquad \text{(2)}
# $$
#
# The resizing $x^{n\to l}$ is a 1×1 convolution (to match channels) plus interpolation when
# going up, a strided convolution when going down. The logits $\lambda$ come from 1×1
# convolutions of the resized maps, so there is **one weight per level and per pixel** $(i, j)$,
# shared by all channels: the "spatial" of the name.
#
# In the paper's model there are two levels and one target, `layer3`'s grid: $x^1 = F_1$
# (layer3) and $x^{2\to 1} = F_2 = A(\text{layer4})$, where $A$ is a bilinear resize to 14×14
# followed by a 1×1 convolution to 1024 channels (`fusion.LevelAlign`, copied from the
# released code).
#
# A word on numbering: the paper's section 2.1 (its equations 1–6) restates Liu et al.'s ASFF for
# YOLOv3's three levels, and its equation 7 (section 2.2) is the two-level form with one weight
# ω. The numbers here follow the paper's. The claims file says what of the paper was read:

# %%
print(paper.load_claims()["coverage"]["read"][0])

# %% [markdown]
# ## 2 · Why weights: the gradient-consistency argument (eq. 3–6)
#
# Liu et al. motivate ASFF by back-propagation. Take an element of level 1 and follow it into
# every output level $l$ through the resize and the fusion:
#
# $$
# \frac{\partial L}{\partial x^1_{ij}} = \sum_{l}
# \frac{\partial L}{\partial y^l_{ij}} \cdot \frac{\partial y^l_{ij}}{\partial x^{1\to l}_{ij}} \cdot
# \frac{\partial x^{1\to l}_{ij}}{\partial x^1_{ij}} . \qquad \text{(3)}
# $$
#
# They treat the resize's derivative as 1 (eq. 4). With a plain sum or concatenation,
# $\partial y^l / \partial x^{1\to l} = 1$ as well, so every level receives the sum of all
# outputs' gradients (eq. 5): a position that is "object" for one level and "background" for
# another receives both signals, which conflict. With ASFF the middle factor is the weight:
#
# $$
# \frac{\partial L}{\partial x^1_{ij}} = \alpha^1_{ij}\frac{\partial L}{\partial y^1_{ij}}
# + \alpha^2_{ij}\frac{\partial L}{\partial y^2_{ij}} + \alpha^3_{ij}\frac{\partial L}{\partial y^3_{ij}} ,
# \qquad \text{(6)}
# $$
#
# so a level can be shielded from an inconsistent gradient by setting its weight to 0.
#
# Two things in this argument are approximations, and the autograd check below makes them
# concrete for our single output $y$ = the fused map, with weights $(a, b)$ on $(F_1, F_2)$:
#
# * the resize is not the identity: the exact rule for layer4 is
#   $\partial L / \partial x_4 = A^\top (b \odot \partial L / \partial y)$, with $A^\top$ the
#   adjoint of resize + 1×1 conv;
# * the weights are **functions of the features** (they are computed from $F_1, F_2$). Eq. 6
#   holds only if they are held fixed; otherwise the chain rule adds
#   $J^\top \, \partial L/\partial w$, the path through the weights.
#
# `ch03_asff.eq6_gradient_check` takes the loss $L = \sum y \odot G$ (so $\partial L/\partial y = G$
# exactly, $G$ random), computes autograd's gradients of layer3 and layer4 in float64, and
# compares them with eq. 6 — with `detach_weights=True` (weights treated as constants in the
# backward pass) and without. The features are real: layer3/layer4 maps of 4 test images
# at the profile's image size, through the profile's ResNet-50 body (random weights in `ci`,
# ImageNet weights in `full`).

# %%
test = data.ImageTensorStore.from_dataset("isic_balanced", "test", resolution=P.image_size)
picked = torch.randperm(len(test), generator=torch.Generator().manual_seed(0))[:32]
x = normalise(test.images[picked])  # 32 real test images, ImageNet-normalised
print(test)
print("batch:", tuple(x.shape), "labels:", test.labels[picked].bincount(minlength=2).tolist())

asff = {v: models.build_model("asff_resnet50", fusion=v, pretrained=P.pretrained, seed=0).train() for v in ASFF}
body = asff["asff_text"]
low, high = ch03_asff.fusion_inputs(body, x[:4], mode="train")  # no side effect on BatchNorm's statistics
print("layer3:", tuple(low.shape), " layer4:", tuple(high.shape))

eq6 = ch03_asff.eq6_gradient_table({v: m.fusion for v, m in asff.items()}, low, high, seed=0)
eq6.columns = ["|autograd − eq.6| layer3", "|autograd − eq.6| layer4",
               "|autograd − eq.6 − weight path| layer3", "|autograd − eq.6 − weight path| layer4",
               "max |grad| layer3", "max |grad| layer4"]
eq6.style.format("{:.2e}")

# %% [markdown]
# Read the table row by row (largest absolute errors over all elements):
#
# * **weights detached**: autograd and eq. 6 agree to rounding error for all three variants —
#   the rule is exactly "the fused gradient, weighted", and for layer4 "pulled back through
#   resize and projection".
# * **weights not detached** (how the model trains): eq. 6 is off by an amount comparable to
#   the gradient itself; adding the path through the weights closes the gap to rounding error
#   again. So in training, the gradient a level receives is *not* just $\alpha \cdot$ the output
#   gradient: the weights are trained by the same loss and push their own signal into both
#   levels. Eq. 6 describes the gradient that flows *through the weighted sum*, not the whole
#   gradient — a caveat Liu et al.'s argument shares.
#
# Compare also the `max |grad| layer3` column: through `asff_code`'s fusion, layer3 receives a
# gradient orders of magnitude smaller than through the other two. Eq. 6 says why — each
# channel's gradient is scaled by its weight $w_c$, and those start near 1/1024 (section 5).
# (Layer3 still learns through layer4, which it feeds; it is the direct, fused path that is
# almost closed.) Its eq. 6 error is small in absolute terms for the same reason, but not
# relative to that small gradient.
#
# ### What of eq. 3–6 carries over to a two-level classifier
#
# The paper's section 2.1.1 ("Consistency Property") is Liu et al.'s argument written for
# YOLOv3, and its levels are the detector's, not the paper's model's (from the claims file):

# %%
for key in ("method.asff_levels_yolov3", "method.levels_fused"):
    c = paper.claim(key)
    print(f"{c.printed or c.value} levels — {c.where.location}: “{c.where.quote}”")

# %% [markdown]
# In the detector every level $l$ has **its own output** $y^l$ and its own loss. A
# scale-matching rule assigns each object to one level, so a position $(i, j)$ is a positive
# sample (an object centre) at one level and a negative (background) at the others. Eq. 3 sums
# the gradients of those outputs, and eq. 5's "inconsistency" is that they pull $x^1_{ij}$ in
# opposite directions. `ch03_asff.eq5_eq6_toy` computes exactly that case with autograd: one
# feature value read by three outputs, each with its own binary target (object at level 1,
# background at levels 2 and 3), every output at logit 0; $\alpha^l$ is the weight of level 1
# in output $l$ (all 1: a plain sum). The last row is the classifier: one output, one label.

# %%
toy = pd.concat([
    ch03_asff.eq5_eq6_toy({"sum or concatenation (eq. 5)": (1, 1, 1), "ASFF, even weights": (1, 0.5, 0.5),
                           "ASFF, α² and α³ → 0 (eq. 6)": (1, 0.01, 0.01)}),
    ch03_asff.eq5_eq6_toy({"classifier: one output, label 1, ω = 0.5": (0.5,)}, targets=(1.0,)),
])
print(toy.to_string(float_format="{:+.3f}".format, na_rep="—"))

# %% [markdown]
# With a plain sum the two background outputs outvote the object: the gradient on the feature
# that should signal an object is positive, so gradient descent lowers it. Even weights cancel
# the two; only when the other levels' weights on $x^1$ go to 0 does the positive signal reach
# it intact — while those levels keep their own background supervision. That is the
# consistency property, and it needs several outputs with different targets.
#
# The book's classifier, like the paper's ASFF-ResNet50, has one fused map $y$ on layer3's grid,
# one head and one label per image. Item by item:
#
# * **Eq. 1–2 carry over**, with two inputs and one target grid: a softmax-weighted convex
#   combination, $a + b = 1$ (how each variant gets its weights: sections 3 and 5).
# * **Eq. 3 carries over, with a single term.** There is one output, so the sum over $l$ has
#   one summand: with the weights held fixed, $\partial L/\partial F_1 = a \odot \partial L/\partial y$
#   and $\partial L/\partial F_2 = b \odot \partial L/\partial y$.
# * **Eq. 4 is not needed for layer3, and wrong for layer4**: layer3 is the target grid and is
#   not resized, so its factor is exactly 1; layer4's factor is the adjoint $A^\top$ of resize
#   and projection (above), not 1.
# * **Eq. 5's inconsistency has nothing to act on.** No position is assigned to a level as
#   object or background; the one gradient, from the image's label, reaches both levels
#   through the same $\partial L/\partial y$, so both receive *the same signal, scaled* by $a$
#   and $b$ — with the same sign at every element. (This is the gradient through the weighted
#   sum; the path through the weights, measured in the table above, adds its own term. Layer3
#   also reaches $y$ through layer4 and $F_2$; that path carries the same $\partial L/\partial y$.) The ignore regions that section
#   2.1.1 discusses as the alternative have no counterpart either: there is no per-level loss to
#   ignore.
# * **What is left of eq. 6 is a gain, not a filter.** The weight ($\omega$, $w_c$ or
#   $\alpha_{ij}$) scales both a level's contribution to the output and the gradient it gets
#   back. Sending it to 0 does not remove a conflicting signal; it switches the level off,
#   forwards and backwards — the state in which the released code's fusion starts (section 5).
#
# So the consistency property is no argument for ASFF in this model. What eq. 7 can still offer
# is an adaptive, per-image (for `asff_spatial` per-pixel) choice of how much of each level to
# use; chapter 06 reads what the trained weights chose. `ch03_asff.single_output_gradients`
# checks the two claims above on the real maps of this section, through each model's real head
# and a cross-entropy loss on the four images' labels, in float64, with the weights held fixed:

# %%
labels4 = test.labels[picked][:4]
one_output = pd.DataFrame.from_dict(
    {v: ch03_asff.single_output_gradients(m.fusion, m.head, low, high, labels4) for v, m in asff.items()}, orient="index")
one_output.columns = ["|autograd − a·∂L/∂y| layer3 (rel.)", "|autograd − b·∂L/∂y| F2 (rel.)",
                      "same sign, layer3 vs F2", "max |∂L/∂F1|", "max |∂L/∂F2|"]
one_output.style.format("{:.3g}")

# %% [markdown]
# Eq. 6 with its one term holds to rounding error for all three variants, and the gradients of
# layer3 and of the aligned layer4 agree in sign at every element: one signal, two gains. The
# last two columns show the gains at work — through `asff_code`'s fusion layer3's share of it
# is small, for the reason section 5 gives.
#
# ## 3 · Two levels: eq. 7 and its code
#
# With two levels the softmax of eq. 2 has two logits and one free number: $\beta = 1 - \alpha$.
# The paper's text, as this project reads it, computes that number **once per image** from
# globally pooled features:
#
# $$
# \omega = \operatorname{softmax}\bigl(\mathrm{FC}_2(\operatorname{ReLU}(\mathrm{FC}_1(\operatorname{GAP}[F_1, F_2])))\bigr)_1,
# \qquad y = F_1 \cdot \omega + F_2 \cdot (1 - \omega). \qquad \text{(7)}
# $$
#
# Global average pooling removes every position, so $\omega$ is one scalar per image: eq. 7 is
# eq. 1 with $\alpha_{ij} = \omega$ for all $(i, j)$ — adaptive, but no longer spatial. The
# package's `ASFFText` implements exactly this; its forward pass and its weight branch:

# %%
print(inspect.getsource(fusion.ASFFText.forward))
print(inspect.getsource(fusion.GlobalWeights.forward))

# %% [markdown]
# The paper describes the fusion in words (section 2.2's "three stages"), in eq. 7 and in a
# pseudocode figure. Step by step beside the released layer, every cell quoted from the claims
# file (`ch03_asff.eq7_text_and_code`):

# %%
steps = ch03_asff.eq7_text_and_code()
steps.style.set_properties(**{"text-align": "left", "white-space": "pre-wrap"})

# %% [markdown]
# Up to the softmax the code does what the words say: the same two maps, layer4 resized (the
# text does not name the interpolation; the code's is bilinear) and projected, the
# concatenation pooled and passed through two dense layers (the paragraph before says "a fully
# connected layer"; the claims file notes the slip). Three things the text leaves open the code
# decides: the width of the first dense layer (the text says only that it "reduces
# dimensionality"), what the softmax normalises, and so how many weights there are. Eq. 7's
# single ω with its complement 1 − ω is a softmax over the two levels; the code's second dense
# layer has one output per channel of layer3, so its softmax runs over the channels, and each
# channel gets its own "ω", $w_c$. The pseudocode, which might settle the question, is printed
# as an image and could not be read. Section 5 builds all three readings and measures what each
# computes.

# %% [markdown]
# ## 4 · Every shape at 224 px
#
# The figure below is drawn from one real forward pass of `asff_text` on a test image at
# 224 px (the paper's size, whatever the profile): forward hooks on the modules record each
# output, `ch03_asff.fusion_walkthrough` collects them, and `plots.plot_fusion_walkthrough` draws
# them. No shape on it is typed by hand. The table is checked exactly by CI.

# %%
# NBVAL_CHECK_OUTPUT
root = data.locate("isic_balanced")
image = torch.from_numpy(data.decode_image(root / test.ids[0], 224))[None]  # uint8 [1, 3, 224, 224]
walk = ch03_asff.fusion_walkthrough(body, normalise(image))
print(walk[["step", "operation", "shape_text"]].to_string(index=False))

# %%
fig = plots.plot_fusion_walkthrough(walk, title="asff_text at 224 px: shapes from one real forward pass")
plt.show()

# %% [markdown]
# Read it top to bottom: layer3 **is** $F_1$ and enters unchanged; layer4 is resized from 7×7
# to 14×14 *before* the 1×1 projection halves its channels (so the projection runs on 196
# positions instead of 49 — section 6 prices that); the weight branch sees both maps but
# collapses them to a 2048-vector, and its output — two numbers — is all the "spatial
# weighting" there is; the fused map keeps layer3's grid, and the head pools it away again.
#
# ## 5 · Three readings of "ASFF"
#
# The released Keras code (`AdaptiveFeatureFusion` in `train_asff_resnet50.py`) does not compute
# eq. 7. Its second dense layer has as many outputs as layer3 has channels, with a softmax
# activation — the softmax runs over **the channels**, not over the two levels. The package
# builds all three readings with the same alignment and head. `ch03_asff.fusion_reading_table`
# runs each on the layer3/layer4 maps of section 2 and reads off what it computes: its weight
# branch, the length and axis of its softmax, the shape of the weight $a$ on layer3 in
# $y = F_1 a + F_2 b$, how much $a$ varies over the pixels and over the channels of one image,
# whether $a + b = 1$, and how far its output is from a line-by-line transcription of the
# released layer run with the variant's own weights (`ch03_asff.released_fusion_transcript`,
# channels-last as in Keras; its body is printed below the table).

# %%
follows = {"asff_text": "paper text, eq. 7", "asff_code": "released code", "asff_spatial": "Liu et al., eq. 1–2"}
readings = ch03_asff.fusion_reading_table({v: m.fusion for v, m in asff.items()}, low, high)
readings.insert(0, "follows", pd.Series(follows))
readings.style.format({"spread over pixels": "{:.2g}", "spread over channels": "{:.2g}",
                       "max |code − variant|": "{:.1e}"}, na_rep="— (FC2 does not fit)")

# %%
print(textwrap.dedent(inspect.getsource(ch03_asff.released_fusion_transcript).split('"""')[2]).strip("\n"))

# %% [markdown]
# Only `asff_code` reproduces the released layer, to rounding error; the other two cannot even
# be run through it, because their second dense layer has two outputs, not one per channel.
# Only `asff_spatial`'s weight varies over the pixels, only `asff_code`'s over the channels, and
# `asff_text` has one number per image. The documented differences between the paper's words
# and its code, from the claims file:

# %%
for key in ("fusion_weights_are_not_spatial", "softmax_over_channels"):
    row = paper.text_vs_code("code").loc[key]
    print(f"■ {row.topic}\n  paper ({row.text_source}): {row.text}\n  code ({row.code_source}): {row.code}\n"
          f"  consequence: {row.consequence}\n")

# %% [markdown]
# What each variant returns on the batch of 32 real test images, and what its weight branch
# costs in parameters (the alignment's 1×1 convolution included), measured at the profile's
# image size. Checked exactly by CI:

# %%
# NBVAL_CHECK_OUTPUT
rows = []
for v, m in asff.items():
    with torch.no_grad():  # eval mode: BatchNorm's running statistics stay untouched
        _, w = m.eval()(x, return_weights=True)
    m.train()
    rows.append({"fusion": v, "weights shape": tuple(w.shape), "sum over dim 1": "1" if torch.allclose(w.sum(1), torch.ones(())) else "≠ 1",
                 "equal-logit weight": f"1/{round(1 / m.fusion.uniform_weight())}",
                 "fusion parameters": models.count_parameters(m.fusion)[0]})
print(pd.DataFrame(rows).set_index("fusion").to_string())

# %% [markdown]
# ### The weights at initialisation
#
# What does each variant do before any training? `ch03_asff.fusion_init_state` runs the batch of
# 32 test images through each model in **training mode** — BatchNorm normalises with the
# batch's own statistics, which is what the first optimisation step sees — and in **eval
# mode**, where BatchNorm uses its running statistics; it records the weight each variant
# gives to layer3 (ω per image, $w_c$ per image and channel, α per image and pixel) and the
# spread of the features and of the logits that enter the softmax.

# %%
samples, scales = [], []
for v, m in asff.items():
    w, s = ch03_asff.fusion_init_state(m, x)
    samples.append(w.assign(variant=v))
    scales.append(s.assign(variant=v).reset_index())
samples = pd.concat(samples, ignore_index=True)
scales = pd.concat(scales, ignore_index=True).set_index(["variant", "mode"])
summary = samples.groupby(["variant", "mode"], sort=False).agg(
    values=("value", "size"), mean=("value", "mean"), min=("value", "min"), max=("value", "max"), uniform=("uniform", "first"))
summary["max / uniform"] = summary["max"] / summary["uniform"]
summary.join(scales).style.format({c: "{:.3g}" for c in summary.columns.drop("values").tolist() + scales.columns.tolist()})

# %%
fig = plots.plot_fusion_weight_histogram(samples, title=f"Weight on layer3 at initialisation, 32 test images at {P.image_size} px")
plt.show()

code_train = samples[(samples.variant == "asff_code") & (samples["mode"] == "train")]["value"]
print(f"asff_code, training mode: every w_c between {code_train.min() * 1024:.2f}/1024 and {code_train.max() * 1024:.2f}/1024; "
      f"so layer3 enters each channel of the fused map with at most {100 * code_train.max():.2f} % "
      f"and the fused map is at least {100 * (1 - code_train.max()):.2f} % the projected layer4.")

# %% [markdown]
# **Training mode** is the meaningful state at initialisation. The logits are small, so each
# softmax starts near "equal logits" (dashed lines):
#
# * `asff_text`: ω is near one half — the paper's eq. 7 starts as a roughly even mix of the two
#   levels, with a small per-image variation.
# * `asff_code`: every $w_c$ sits near 1/1024, so $y_c = F_{1,c} w_c + F_{2,c}(1 - w_c)$ is
#   almost exactly $F_2$: **the released code starts as the projected layer4 alone**, with
#   layer3 nearly switched off. Because the 1,024 weights must sum to one, a channel can only
#   give layer3 a large share by starving all others; an even 50/50 mix in every channel is
#   impossible. That is a different model from eq. 7, not an implementation detail.
# * `asff_spatial`: α varies from pixel to pixel around one half (it is the only variant whose
#   weights can do so).
#
# **Eval mode** of a *from-scratch* body (the `ci` profile) is not meaningful: the running
# statistics still have their initial values (mean 0, variance 1), so BatchNorm does not
# normalise, activations grow through the residual stages (compare `layer4_std` of the two
# modes), the logits grow with them (`logit_std`), and the weights drift far from equal
# logits — for `asff_code` a few channels grab a large share while most get almost nothing
# (see the `max / uniform` column and the log-scaled middle panel). Inspecting the weights of
# an untrained model after `model.eval()` therefore shows an artefact of BatchNorm, not a
# property of the fusion. With ImageNet weights (`full`), the running statistics are real
# ones and both modes are meaningful.
#
# ## 6 · What the fusion costs
#
# Parameters and multiply-adds (MACs, batch 1, counted by
# `torch.utils.flop_counter.FlopCounterMode`) at 224 px for torchvision's ResNet-50 and for the
# ASFF-ResNet50 with every fusion. The released code's head, GAP → FC 2048 + ReLU → FC 2, is
# not torchvision's single FC, so two references are given: "vs resnet50" (the plain
# torchvision model) and "vs none" (ResNet-50 with the released head, which isolates the
# fusion). `asff_text, project_first` swaps resize and projection: the same output (both are
# linear and the resize preserves constants; tested in `tests/test_fusion.py`) at a quarter of
# the projection's cost.

# %%
start = time.time()
cost = ch03_asff.fusion_overhead_table(image_size=224)
print(f"8 models built and counted at 224 px in {time.time() - start:.0f} s")

# %%
# NBVAL_CHECK_OUTPUT
print(cost[["params", "Δparams vs resnet50", "Δparams vs none"]].to_string())

# %%
cost[["params_m", "gmacs", "ΔGMACs vs resnet50", "ΔGMACs vs none"]].style.format("{:+.3f}", subset=["ΔGMACs vs resnet50", "ΔGMACs vs none"]).format("{:.3f}", subset=["params_m", "gmacs"])

# %%
t, n, r, pf = (cost.loc[k] for k in ("asff_text", "none", "resnet50 (torchvision)", "asff_text, project_first"))
print(f"asff_text: {t['Δparams vs resnet50'] / 1e6:+.2f} M parameters over torchvision's ResNet-50 "
      f"({100 * t['Δparams vs resnet50'] / r['params']:+.1f} %), of which {n['Δparams vs resnet50'] / 1e6:+.2f} M is the released head "
      f"and {t['Δparams vs none'] / 1e6:+.2f} M the fusion;")
print(f"compute: {t['ΔGMACs vs resnet50']:+.3f} GMACs ({100 * t['ΔGMACs vs resnet50'] / r['gmacs']:+.1f} %); "
      f"projecting before resizing: {pf['ΔGMACs vs resnet50']:+.3f} GMACs.")

# %% [markdown]
# Two things to take from the table. First, the parameter overhead is large for a "light"
# module: most of it is two 2048 → 1024 matrices (the 1×1 projection and the first FC of the
# weight branch), partly offset because the head now starts from 1,024 instead of 2,048
# channels; `asff_code` adds another 1024 × 1024 for its 1,024-way second FC. Any comparison
# with a plain ResNet-50 compares models of different sizes. Second, almost all of the extra
# compute is the 1×1 projection run after upsampling; the released order costs four times what
# projecting first costs, for the same output.
#
# ## 7 · The backbone: Keras's ResNet-50 (v1) against torchvision's (v1.5)
#
# The released script builds its model on Keras's ResNet-50 (the claims file's summary of the
# script, first line); every ResNet-50 in this book is torchvision's, whose source says how the
# two differ (its comment, second part):

# %%
print(paper.load_claims()["code_settings"]["scripts"]["asff_resnet50"]["builds"], end="\n\n")
print(textwrap.dedent("".join(line for line in inspect.getsource(torchvision.models.resnet.Bottleneck).splitlines(True)
                              if line.startswith("    # "))))  # the class-level comment only

# %% [markdown]
# Keras keeps the design of He et al. {cite}`he2016resnet` — "v1": the first bottleneck of
# layer2, layer3 and layer4 halves the grid in its first 1 × 1 convolution; torchvision's "v1.5"
# halves it in the 3 × 3 convolution that follows. Keras also gives every convolution a bias
# (redundant before a batch norm, but trained and counted) and sets BatchNorm's epsilon and
# momentum to its own values. `models.resnet50_keras_v1` rebuilds the Keras network in PyTorch
# from torchvision's by exactly these changes, as read in Keras's `keras/applications/resnet.py`.
# It is registered (`build_model("resnet50_keras_v1")`) but stays out of the paper's comparison
# (`list_models()`), and it has no ImageNet weights here: it exists to be counted and compared.
# Its changes:

# %%
print(textwrap.dedent(inspect.getsource(models.resnet50_keras_v1).split('"""')[2]).strip("\n"))

# %% [markdown]
# What the built modules say, for block 0 of each downsampling stage (both models built on
# PyTorch's meta device, which gives shapes without allocating memory). Keras's momentum is the
# weight of the old moving average and PyTorch's the weight of the new batch statistic, so
# Keras's default is PyTorch's 1 − that (`models.KERAS_BN_MOMENTUM`; one update is checked in
# `tests/test_backbone_v1.py`). Checked exactly by CI:

# %%
# NBVAL_CHECK_OUTPUT
design = ch03_asff.backbone_design_table()
print(design.to_string())

# %% [markdown]
# ### Parameters as each framework counts them, multiply-adds, map shapes
#
# PyTorch's count is the parameters alone. Keras's `model.summary()` also counts every
# BatchNorm's moving mean and variance, as non-trainable weights (PyTorch keeps them as
# buffers); `ch03_asff.keras_parameter_counts` counts a PyTorch model the Keras way. Both
# backbones with Keras's ImageNet top (1,000 classes), multiply-adds at the paper's 224 px and
# the `ci` profile's 64 px (`FlopCounterMode`, batch 1), and the shapes of layer3 and layer4.
# Checked exactly by CI:

# %%
# NBVAL_CHECK_OUTPUT
backbones = ch03_asff.backbone_comparison(image_sizes=(224, 64), num_classes=1000)


def readable(df: pd.DataFrame) -> pd.DataFrame:
    """Counts with thousands separators, GMACs to three decimals, for printing."""
    out = df.copy()
    for col in out:
        if col.startswith(("PyTorch", "Keras")):
            out[col] = out[col].map("{:,}".format)
        elif col.startswith("GMACs"):
            out[col] = out[col].map("{:.3f}".format)
    return out


print(readable(backbones).T.to_string())
v1_row, v15_row = backbones.loc["Keras ResNet50 (v1)"], backbones.loc["torchvision ResNet-50 (v1.5)"]
ours = {k: int(v1_row[f"Keras {k.replace('_', '-')}"]) for k in ("total", "trainable", "non_trainable")}
print("\nKeras-style counts of the PyTorch v1:", ours)
print("Keras's published counts (ResNet50, include_top=True):", ch03_asff.KERAS_RESNET50_PUBLISHED,
      "→ equal:", ours == ch03_asff.KERAS_RESNET50_PUBLISHED)

# %% [markdown]
# The PyTorch v1 reproduces Keras's published counts exactly, which checks the rebuild down to
# the last bias. The parameters differ between the designs only by the biases, and the Keras
# way of counting adds the same BatchNorm statistics to both. The map shapes the fusion
# receives are identical. The multiply-adds are not; the modules where they differ:

# %%
diff224 = ch03_asff.backbone_flops_difference(image_size=224)
print(diff224.to_string(float_format="{:.2f}".format))
for size in (224, 64):
    a, b = v15_row[f"GMACs @{size}"], v1_row[f"GMACs @{size}"]
    print(f"{size} px: v1 {b:.3f} GMACs, v1.5 {a:.3f} GMACs — v1 needs {100 * (a - b) / a:.1f} % fewer")
print(f"at 224 px the difference, {diff224['Δ MMACs'].sum():+.1f} M multiply-adds, comes from {len(diff224)} "
      f"convolutions: {', '.join(diff224.index)}")

# %% [markdown]
# Only those three 1 × 1 convolutions differ. With the stride in front of it, v1 computes each
# on a quarter of the positions — and so reads only every other pixel of every other row of its
# input, throwing three quarters of it away before any 3 × 3 filter has seen it; v1.5 spends the
# extra multiply-adds to look at every position, which is the change torchvision credits with
# better accuracy. The 3 × 3 convolutions produce the same grid in both designs and cost the
# same.
#
# The released *model* is the fusion on the v1 body. `ch03_asff.asff_on_keras_v1` builds it by
# swapping the v1 modules into the book's `asff_code` (two classes, 224 px), and counts both the
# same ways. Checked exactly by CI:

# %%
# NBVAL_CHECK_OUTPUT
released = ch03_asff.released_model_table(image_size=224)
print(readable(released).T.to_string())
book_label, rel_label = released.index
keras_total, keras_fixed = int(released.loc[rel_label, "Keras total"]), int(released.loc[rel_label, "Keras non-trainable"])
torch_book = int(released.loc[book_label, "PyTorch params"])
print(f"\na Keras summary of the released model: {keras_total:,} parameters ({keras_fixed:,} non-trainable); "
      f"PyTorch's count of the book's asff_code: {torch_book:,} (a difference of {keras_total - torch_book:+,}, "
      f"all in the backbone); multiply-adds "
      f"{released.loc[rel_label, 'GMACs @224'] - released.loc[book_label, 'GMACs @224']:+.3f} GMACs")
print("this chapter's ASFF model: stride of layer2's first 3×3 convolution", body.layer2[0].conv2.stride,
      "→ the v1.5 body")

# %% [markdown]
# ### Does the difference matter for the comparison?
#
# * **Within the book, no.** Every model the book trains and compares — chapter 02's `resnet50`
#   and every fusion of `asff_resnet50` in chapter 06's ablation — is built on the same
#   torchvision body (the last line above checks this chapter's). Whatever v1.5 changes, it
#   changes for all of them alike, and the fusion costs of section 6 are differences between
#   models on the same body.
# * **Against the paper, in cost: by the measured amounts above.** Counted in the paper's
#   framework, its ResNet-50 and its ASFF model have fewer multiply-adds than the book reports
#   for the "same" models, and a Keras summary shows more parameters. The paper prints neither a
#   parameter nor a FLOP count (its section 2.2 calls the model "lightweight"), so no printed
#   number is contradicted; a reader who compares section 6 with a Keras `model.summary()`
#   should expect exactly these differences.
# * **Against the paper, in accuracy: not measurable here.** The design torchvision credits with
#   better ImageNet accuracy (its comment above) is the book's, and under `full` the book starts from torchvision's ImageNet
#   weights, not from the Keras ones (which Keras ported from He et al.'s release). The v1 model
#   here has no ImageNet weights, so how much of a gap between the book's and the paper's
#   accuracies the backbone (design and weights together) explains stays open.
#
# ## Exercises
#
# Each exercise asks for one function. Write it in the cell under the task, then run the check cell below it.
# The check calls your function on made-up cases and on real feature maps and prints ✅, or ❌
# with the case that failed and a hint; it never prints the answer. The solutions are in the
# book, collapsed behind "Show code cell source" under each task: try first.
#
# The same exercises, graded, are this chapter's lab notebook (built with otter-grader: public
# tests that give these hints, hidden tests that give the points); the teacher's guide,
# {doc}`/book/lab/grading`, says how to hand it out, collect and grade it.

# %%
from skinlesion_utils import lab

# %% [markdown]
# ### Exercise 1 (★☆☆): Eq. 7, the two-level fusion
#
# Write `fuse_two_levels(f1, f2, omega)`: given two maps `f1`, `f2` of shape `[B, C, H, W]`
# (layer3 and the aligned layer4) and one weight per image `omega` of shape `[B]` with values in
# [0, 1], return the fused map `f1·ω + f2·(1 − ω)`, shape `[B, C, H, W]`. Mind the broadcasting:
# a `[B]` tensor does not multiply a `[B, C, H, W]` tensor the way you want.

# %% tags=["solution", "hide-input"]
import torch


def fuse_two_levels(f1: torch.Tensor, f2: torch.Tensor, omega: torch.Tensor) -> torch.Tensor:
    """f1, f2: float [B, C, H, W]; omega: float [B] in [0, 1] -> fused float [B, C, H, W]."""
    ### BEGIN SOLUTION
    w = omega.view(-1, 1, 1, 1)  # one weight per image, broadcast over C, H, W
    return f1 * w + f2 * (1 - w)
    ### END SOLUTION

# %%
lab.ch03.check_fuse_two_levels(fuse_two_levels);

# %% [markdown]
# ### Exercise 2 (★★☆): The released code's channel weights
#
# Write `channel_weights(f1, f2, w1, b1, w2, b2)`, the weight branch of the released code:
# concatenate `f1` and `f2` (each `[B, C, H, W]`) along the channels, in that order; average
# over the grid (global average pooling) to get `[B, 2C]`; apply the first dense layer
# `z @ w1.T + b1` (`w1`: `[hidden, 2C]`) and a ReLU; apply the second dense layer with `w2`:
# `[C, hidden]`, `b2`: `[C]`; and return the softmax **over the channels**, shape `[B, C]`.
# Then try it on equal logits in your head: what is each weight when all C logits are equal, and
# what does that mean for $y_c = F_{1,c} w_c + F_{2,c}(1 - w_c)$ with C = 1,024?

# %% tags=["solution", "hide-input"]
import torch
import torch.nn.functional as F


def channel_weights(f1, f2, w1, b1, w2, b2) -> torch.Tensor:
    """f1, f2: [B, C, H, W]; w1 [hidden, 2C], b1 [hidden], w2 [C, hidden], b2 [C] -> w [B, C], rows sum to 1."""
    ### BEGIN SOLUTION
    z = torch.cat([f1, f2], dim=1).mean(dim=(2, 3))  # GAP: [B, 2C]
    hidden = F.relu(z @ w1.T + b1)  # [B, hidden]
    return torch.softmax(hidden @ w2.T + b2, dim=1)  # over the C channels
    ### END SOLUTION

# %%
lab.ch03.check_channel_weights(channel_weights);

# %% [markdown]
# ### Exercise 3 (★★★): ASFF with three levels
#
# Extend the fusion to three levels, as in Liu et al.'s eq. 1–2. Write
# `asff_three_levels(x1, x2, x3, weight, bias)`: `x1` is the finest map `[B, C, H, W]`, `x2` and
# `x3` are coarser maps with the same C (e.g. half and a quarter of the grid). Resize `x2` and
# `x3` to `x1`'s H × W with bilinear interpolation (`align_corners=False`); compute three logits
# per pixel with a 1 × 1 convolution of the concatenation `[x1, up(x2), up(x3)]` whose weight is
# `weight` (`[3, 3C]`) and bias `bias` (`[3]`); turn them into weights (α, β, γ) with a softmax
# over the three levels; return `(fused, weights)` with `fused = α·x1 + β·up(x2) + γ·up(x3)`
# (`[B, C, H, W]`) and `weights` of shape `[B, 3, H, W]`.

# %% tags=["solution", "hide-input"]
import torch
import torch.nn.functional as F


def asff_three_levels(x1, x2, x3, weight, bias):
    """x1 [B, C, H, W], x2/x3 [B, C, coarser]; weight [3, 3C], bias [3] -> (fused [B, C, H, W], weights [B, 3, H, W])."""
    ### BEGIN SOLUTION
    size = x1.shape[-2:]
    up2 = F.interpolate(x2, size=size, mode="bilinear", align_corners=False)
    up3 = F.interpolate(x3, size=size, mode="bilinear", align_corners=False)
    logits = F.conv2d(torch.cat([x1, up2, up3], dim=1), weight[:, :, None, None], bias)  # [B, 3, H, W]
    w = torch.softmax(logits, dim=1)  # over the levels, at every pixel
    return x1 * w[:, 0:1] + up2 * w[:, 1:2] + up3 * w[:, 2:3], w
    ### END SOLUTION

# %%
lab.ch03.check_asff_three_levels(asff_three_levels);

# %% [markdown]
# ## Checks
#
# CI fails this chapter if the derivation stops holding in the package: with detached weights
# autograd must equal eq. 6 to within 10⁻¹² of the gradient's size for all three variants, and
# without detaching eq. 6 must miss (by more than 10⁻⁶ relative) while eq. 6 plus the weight
# path must match; the 224-px shapes must be layer3 1024×14×14, layer4 2048×7×7 and fused
# 1024×14×14; in training mode every `asff_code` weight must stay below 5 % (mean exactly
# 1/1024) while `asff_text`'s ω lies strictly between 0.05 and 0.95; every fusion must add
# parameters and compute over `none`, and projecting first must save compute without changing
# the parameter count. For a classifier's one output, eq. 6 must hold with its single term to
# within 10⁻¹² and the two levels' gradients must agree in sign everywhere, while the
# detector toy's plain sum must push the object's feature the wrong way and the shielded ASFF
# the right one. Only `asff_code` may match the released layer's transcription (to 10⁻¹⁰), and
# only `asff_spatial`'s weights may vary over pixels. The Keras v1 rebuild must put its strides
# in the 1 × 1 convolutions, reproduce Keras's published parameter counts exactly, give the same
# layer3/layer4 shapes as torchvision's at 224 and 64 px with fewer multiply-adds, differing only
# in the three strided 1 × 1 convolutions, and this chapter's ASFF model must be on the v1.5 body.

# %%
for v in ASFF:
    d, a = eq6.loc[(v, True)], eq6.loc[(v, False)]
    for level in ("layer3", "layer4"):
        scale = a[f"max |grad| {level}"]
        assert d[f"|autograd − eq.6| {level}"] <= 1e-12 * scale, (v, level)
        assert a[f"|autograd − eq.6 − weight path| {level}"] <= 1e-12 * scale, (v, level)
    assert a["|autograd − eq.6| layer3"] > 1e-6 * a["max |grad| layer3"], v
shapes = dict(zip(walk.step, walk.dims))
assert shapes["layer3"] == (1024, 14, 14) and shapes["layer4"] == (2048, 7, 7) and shapes["fused"] == (1024, 14, 14)
assert abs(code_train.mean() - 1 / 1024) < 1e-6 and code_train.max() < 0.05
omega_train = samples[(samples.variant == "asff_text") & (samples["mode"] == "train")]["value"]
assert omega_train.between(0.05, 0.95).all()
for v in ("sum", "concat", *ASFF):
    assert cost.loc[v, "Δparams vs none"] > 0 and cost.loc[v, "ΔGMACs vs none"] > 0, v
assert pf["params"] == t["params"] and pf["gmacs"] < t["gmacs"]
for v in ASFF:
    row = one_output.loc[v]
    assert row.iloc[0] <= 1e-12 and row.iloc[1] <= 1e-12 and row["same sign, layer3 vs F2"] == 1.0, v
assert toy.loc["sum or concatenation (eq. 5)", "∂L/∂x (eq. 6)"] > 0 > toy.loc["ASFF, α² and α³ → 0 (eq. 6)", "∂L/∂x (eq. 6)"]
assert readings.loc["asff_code", "max |code − variant|"] < 1e-10
assert readings.loc[["asff_text", "asff_spatial"], "max |code − variant|"].isna().all()
assert readings.loc["asff_spatial", "spread over pixels"] > 0 and (readings.loc[["asff_text", "asff_code"], "spread over pixels"] == 0).all()
assert (design.loc["Keras ResNet50 (v1)", "1×1 conv1 stride"] == 2).all() and (design.loc["Keras ResNet50 (v1)", "3×3 conv2 stride"] == 1).all()
assert (design.loc["torchvision ResNet-50 (v1.5)", "3×3 conv2 stride"] == 2).all()
assert ours == ch03_asff.KERAS_RESNET50_PUBLISHED
for size in (224, 64):
    assert v1_row[f"layer3 @{size}"] == v15_row[f"layer3 @{size}"] and v1_row[f"layer4 @{size}"] == v15_row[f"layer4 @{size}"]
    assert v1_row[f"GMACs @{size}"] < v15_row[f"GMACs @{size}"]
assert v1_row["layer3 @224"] == "1024×14×14" and v1_row["layer4 @224"] == "2048×7×7"
assert list(diff224.index) == ["layer2.0.conv1", "layer3.0.conv1", "layer4.0.conv1"]
assert body.layer2[0].conv2.stride == (2, 2) and body.layer2[0].conv1.stride == (1, 1)
print("✅ derivation checks passed")

# %% [markdown]
# ## Takeaways
#
# - ASFF {cite}`liu2019asff` fuses pyramid levels with softmax weights per level and per pixel
#   (eq. 1–2); its gradient argument (eq. 6) is exact only for the part of the gradient that
#   flows through the weighted sum — the weights' own path adds a term, measured above.
# - The consistency property answers a detector's problem — one position, several outputs with
#   conflicting targets. A classifier with one fused output has no such conflict: eq. 6 keeps a
#   single term, both levels get the same signal scaled by their weights, and a weight near 0
#   switches a level off rather than shielding it.
# - The paper's model {cite}`asff2025` fuses two levels. Its text (eq. 7) gives one weight per
#   image; its released code gives one weight per channel with a softmax over 1,024 channels.
#   Neither is spatial after global average pooling, despite the name.
# - At initialisation the code's fusion is almost exactly the projected layer4 (every weight
#   near 1/1024), the text's is a roughly even mix, the original's varies per pixel: three
#   different models, which a reproduction has to tell apart.
# - The fusion is not free: millions of parameters and extra multiply-adds over ResNet-50
#   {cite}`he2016resnet` at 224 px; most of the extra compute is avoidable by projecting
#   before resizing.
# - The released code's backbone is Keras's ResNet-50 v1 (stride in the 1 × 1 convolution, conv
#   biases, Keras's BatchNorm); the book's is torchvision's v1.5. Rebuilt in PyTorch, v1
#   reproduces Keras's published parameter counts and has the same map shapes but fewer
#   multiply-adds. The book's comparisons share one body and are unaffected; its cost numbers
#   differ from what the paper's framework would report by the amounts measured in section 7.
#
# References: {cite}`liu2019asff`, {cite}`asff2025`, {cite}`he2016resnet` (full list on the
# [bibliography page](../book/bibliography.md)).

# %%
ch.footer();
