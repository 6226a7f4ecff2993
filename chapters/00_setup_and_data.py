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
# # 00 · Setup and the data
#
# This chapter gets you running and shows you the data before any model sees it: where the
# paper's 3,297 dermoscopy images come from, how the book finds and verifies them, how many
# there are per class and split, what they look like, and what their sizes and colours are.
# Every later chapter starts with the same header as this one.
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/asff-skinlesion-book/asff-skinlesion-book/blob/main/chapters/00_setup_and_data.ipynb)
# · **time:** printed by the header cell below: the `ci` time measured at the chapter's last
# execution and an estimate for a Colab T4 (`full`) from the chapter's GPU work (what it leaves
# out, here the one-time download, is named there)
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
import matplotlib.pyplot as plt
import pandas as pd

from skinlesion_utils import data, image_stats, plots
from skinlesion_utils.chapter import start_chapter

ch = start_chapter("00_setup_and_data")
P = ch.profile

# %% [markdown]
# ## One switch: the profile
#
# `SKINLESION_PROFILE` selects everything that differs between a quick CPU run and the real GPU
# run: `ci` (CPU, small images, few epochs — what CI runs and what this page shows) and `full`
# (GPU, 224 px, ImageNet weights). Chapters never test the profile's name; they read its
# settings:

# %%
pd.Series({k: v for k, v in vars(P).items() if k != "cache_dir"}, name=P.name).to_frame()

# %% [markdown]
# ## Finding and verifying the data
#
# `data.locate(name)` looks in `$SKINLESION_DATA/<name>` first, then in the user cache, and
# otherwise downloads the dataset from the paper's public repository. Whatever the route, every
# file is checked against a sha256 manifest shipped with the package (the first check hashes all
# 171 MB; later calls only compare sizes and modification times). The data folder is only read,
# never written. The registry:

# %%
pd.DataFrame(
    [(s.name, s.kind, len(s.manifest_entries()), s.repo_path or ", ".join(s.urls) or "course folder only", s.description)
     for s in data.DATASETS.values()],
    columns=["name", "kind", "files", "source", "description"],
).set_index("name")

# %%
root = data.locate("isic_balanced")
print("isic_balanced verified:", data.verify("isic_balanced", root, full=False), "files present")

# %% [markdown]
# ## Class counts per split
#
# The paper's set is already split 4:1 into train and test. Benign is label 0, malignant 1.
# This table is checked exactly by CI.

# %%
# NBVAL_CHECK_OUTPUT
counts = data.dataset_table("isic_balanced")
print(counts.to_string())
print(f"malignant share: train {counts.loc['train', 'malignant'] / counts.loc['train', 'total']:.3f}, "
      f"test {counts.loc['test', 'malignant'] / counts.loc['test', 'total']:.3f}")

# %% [markdown]
# Note what "balanced" means here: 45 % malignant, whereas malignant lesions are under 2 % of
# the ISIC 2020 challenge images {cite}`rotemberg2021isic`. Chapter 01 shows what that does to
# the meaning of accuracy.
#
# ## Decode once
#
# Training reads every image many times. Decoding 3,297 JPEGs takes seconds; doing it every
# epoch would dominate a CPU run. `ImageTensorStore` decodes each image once into a uint8 tensor
# `N×3×R×R` (R = the profile's image size), caches it under the project's cache folder, and
# keeps each file's id so every prediction can be traced back to its image.
#
# Decoding applies each file's EXIF orientation tag (`data.DECODE_METHOD`, part of the cache
# key), so the pixels are the picture every image viewer shows; the table of file headers below
# counts the images that carry a rotation. An image of more than `data.MAX_IMAGE_PIXELS` pixels
# (Pillow's limit, printed below) is refused with one line naming it: a "decompression bomb"
# claims gigapixels in a few bytes.

# %%
train = data.ImageTensorStore.from_dataset("isic_balanced", "train", resolution=P.image_size)
test = data.ImageTensorStore.from_dataset("isic_balanced", "test", resolution=P.image_size)
print(train)
print(test)

# %%
# NBVAL_CHECK_OUTPUT
print("train images:", train.images.dtype, tuple(train.images.shape[:2]), "labels:", train.labels.dtype, tuple(train.labels.shape))
print("test class counts:", test.class_counts())
print("first ids:", train.ids[:2])

# %% [markdown]
# ## What the images look like
#
# Eight random training images of each class, at full 224-px resolution (decoded for display
# only). Look for what a model could latch on to besides the lesion: hair, rulers, gel bubbles,
# dark vignetting from the dermatoscope's round field of view.

# %%
import numpy as np

rng = np.random.default_rng(0)
shown = [i for label in (0, 1) for i in rng.choice(np.flatnonzero(train.labels.numpy() == label), 8, replace=False)]
pictures = [data.decode_image(root / train.ids[i], 224) for i in shown]
fig = plots.image_grid(np.stack(pictures), titles=[f"{data.CLASSES[train.labels[i]]}\n{train.ids[i].split('/')[-1]}" for i in shown], ncols=8)
plt.show()

# %% [markdown]
# ## Sizes and colours
#
# The file headers give each image's size and mode without decoding it. Every image of the
# paper's set is 224×224 RGB: whatever resizing the authors did happened before release, so the
# original resolutions (and any ISIC ids) are lost — chapter 01 comes back to this.

# %%
# NBVAL_CHECK_OUTPUT
files = image_stats.image_file_table(root, train.ids + test.ids)
print(files.groupby(["width", "height", "mode", "format"]).size().rename("images").to_string())
rotated = files[files["orientation"] != 1]
print(f"EXIF-rotated images (decoded upright, {data.DECODE_METHOD!r}): {len(rotated)}:", ", ".join(rotated["id"]))
print(f"largest image decoded: {data.MAX_IMAGE_PIXELS:,} pixels")

# %% [markdown]
# The external set of chapter 08 is different: ISIC 2019 images of many sizes (the course copy
# is shrunk to at most 512 px on the longer side), which the store resizes to R×R.

# %%
ext_root = data.locate(data.external_dataset_name())
ext_files = image_stats.image_file_table(ext_root)
print(f"{len(ext_files)} external images; sizes (w×h), most common:")
print((ext_files.width.astype(str) + "×" + ext_files.height.astype(str)).value_counts().head(5).to_string())

# %% [markdown]
# Colour: per-image mean of each channel and overall brightness, by class. If the classes
# differ strongly in plain colour statistics, a classifier can score well without learning
# anything about lesion structure — a baseline worth keeping in mind.

# %%
stats = image_stats.colour_statistics(train)
summary = stats.groupby("class")[["mean_r", "mean_g", "mean_b", "brightness", "contrast"]].agg(["mean", "std"]).round(1)
summary

# %%
fig, axes = plt.subplots(1, 2, figsize=(10, 3.2))
for cls, colour in zip(data.CLASSES, ("tab:blue", "tab:red")):
    part = stats[stats["class"] == cls]
    axes[0].hist(part.brightness, bins=40, alpha=0.6, color=colour, label=cls)
    axes[1].scatter(part.mean_r - part.mean_b, part.brightness, s=4, alpha=0.4, color=colour, label=cls)
axes[0].set(xlabel="mean brightness (0–255)", ylabel="images", title="Brightness by class")
axes[1].set(xlabel="red − blue (mean, 0–255)", ylabel="brightness", title="Colour by class")
axes[0].legend()
plt.tight_layout()
plt.show()

# %% [markdown]
# ## Exercises
#
# Each exercise asks for one function. Write it in the cell under the task, then run the check cell below it.
# The check calls your function on made-up cases and on the real data and prints ✅, or ❌ with
# the case that failed and a hint; it never prints the answer. The solutions are in the book,
# collapsed behind "Show code cell source" under each task: try first.
#
# The same exercises, graded, are this chapter's lab notebook (built with otter-grader: public
# tests that give these hints, hidden tests that give the points); the teacher's guide,
# {doc}`/book/lab/grading`, says how to hand it out, collect and grade it.

# %%
from skinlesion_utils import lab

# %% [markdown]
# ### Exercise 1 (★☆☆): Malignant share per split
#
# Write `malignant_share(counts)`: given a class-count table shaped like `counts` above (one
# row per split plus `total`; columns `benign`, `malignant`, `total`), return a
# `pandas.Series` with the fraction of malignant images (between 0 and 1) of every row,
# indexed like the table. This is the number that tells you what "balanced" means here.

# %% tags=["solution", "hide-input"]
def malignant_share(counts):
    """counts: DataFrame [splits × (benign, malignant, total)] -> Series [splits], fraction in [0, 1]."""
    ### BEGIN SOLUTION
    return counts["malignant"] / counts["total"]
    ### END SOLUTION

# %%
lab.ch00.check_malignant_share(malignant_share);

# %% [markdown]
# ### Exercise 2 (★★☆): Mean colour per channel
#
# Write `channel_mean(images)`: given a uint8 batch `[N, 3, H, W]` like `train.images`, return a
# float32 tensor of shape `[3]` holding the mean red, green and blue over all images and all
# pixels, as a fraction of full intensity (between 0 and 1). These are the numbers
# `torchvision.transforms.Normalize(mean, std)` expects. Watch out: `uint8` has no mean in torch,
# and it wraps around at 256. Do not change the batch in place.

# %% tags=["solution", "hide-input"]
import torch


def channel_mean(images: torch.Tensor) -> torch.Tensor:
    """images: uint8 [N, 3, H, W] -> float32 [3] in [0, 1], the mean of R, G, B over images and pixels."""
    ### BEGIN SOLUTION
    return images.float().mean(dim=(0, 2, 3)) / 255
    ### END SOLUTION

# %%
lab.ch00.check_channel_mean(channel_mean);

# %% [markdown]
# ### Exercise 3 (★★★): Composite a transparent image on white
#
# Some dermoscopy exports are PNGs with an alpha channel `A` (0 = transparent, 255 = opaque).
# A model wants three channels, so `data.to_rgb` lays such an image over a white background:
# with opacity $a = A/255$, each colour channel becomes
#
# $$ \text{out} = a \cdot \text{colour} + (1 - a) \cdot 255, $$
#
# rounded to the nearest integer. Write `composite_on_white(rgba)` that does this for a uint8
# array `[H, W, 4]` and returns a uint8 array `[H, W, 3]` — with numpy, no loops over pixels
# (results within one grey level of the package's pass).

# %% tags=["solution", "hide-input"]
import numpy as np


def composite_on_white(rgba: np.ndarray) -> np.ndarray:
    """rgba: uint8 [H, W, 4] -> uint8 [H, W, 3], the image laid over a white background."""
    ### BEGIN SOLUTION
    colour = rgba[..., :3].astype(np.float64)
    a = rgba[..., 3:4].astype(np.float64) / 255  # [H, W, 1]: broadcasts over the 3 channels
    return np.round(a * colour + (1 - a) * 255).astype(np.uint8)
    ### END SOLUTION

# %%
lab.ch00.check_composite_on_white(composite_on_white);

# %% [markdown]
# ## Checks
#
# CI fails this chapter if the data is not exactly the paper's: 2,637 training and 660 test
# images with the published class counts, every image decoded to `uint8 [3, R, R]`.

# %%
assert counts.loc["train", "benign"] == 1440 and counts.loc["train", "malignant"] == 1197
assert counts.loc["test", "benign"] == 360 and counts.loc["test", "malignant"] == 300
assert train.images.shape == (2637, 3, P.image_size, P.image_size) and test.images.shape[0] == 660
assert set(files.width) == {224} and set(files.height) == {224}
print("✅ data checks passed")

# %% [markdown]
# ## Takeaways
#
# - The paper's data is 3,297 dermoscopy images from the ISIC archive {cite}`rotemberg2021isic`,
#   224×224, 45 % malignant, split 4:1 by the authors {cite}`asff2025`.
# - The book finds data through `SKINLESION_DATA`, the cache or a verified download, and never
#   writes into the data folder.
# - Images are decoded once into a uint8 tensor store; every sample keeps its file id.
#
# References: {cite}`asff2025`, {cite}`rotemberg2021isic` (full list on the
# [bibliography page](../book/bibliography.md)).

# %%
ch.footer();
