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
# # 01 · The data set and its leaks
#
# Before training anything we ask what the paper's 3,297 images are and whether its test and
# external numbers can be trusted at all. We start from the official ISIC 2020 ground truth —
# the data set the paper names — to see its real prevalence, its patients and its duplicates,
# and what a correct balanced subset with a patient-grouped split looks like. Then we compare
# that with the files the paper actually released, and audit them with perceptual hashes for
# near-copies between train and test and between the training data and the "external" ISIC 2019
# set. The pairs found are saved for the evaluation chapters.
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/asff-skinlesion-book/asff-skinlesion-book/blob/main/chapters/01_dataset.ipynb)
# · **time:** printed by the header cell below: the `ci` time measured at the chapter's last
# execution and an estimate for a Colab T4 (`full`) from the chapter's GPU work (what it leaves
# out, here hashing the images on the CPU, is named there)
#
# ```{note}
# The outputs stored on this page come from the `ci` profile executed on a 2-core CPU; the
# last line of the page gives the date and run time. Nothing in this chapter depends on the
# profile except which external set is audited (the course's 1,000-image sample when it is on
# disk, else the paper's full 3,297-image set) and where the results files go.
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
import json
import time

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from skinlesion_utils import audit, data, image_stats, paper, plots, results, splits
from skinlesion_utils.chapter import start_chapter
from skinlesion_utils.studies import ch01_dataset

ch = start_chapter("01_dataset")
P = ch.profile
OUT = results.results_dir("01_dataset", P.name)  # results/<profile>/01_dataset

# %% [markdown]
# ## 1 · The official ISIC 2020 ground truth
#
# The SIIM-ISIC 2020 challenge {cite}`rotemberg2021isic` released 33,126 labelled dermoscopy
# images. Unlike older ISIC collections it is *patient-centric*: every image carries a
# `patient_id` and a `lesion_id`, and the organisers published a list of duplicate images.
# These two CSV files (no images) are all we need to see what a subset of ISIC 2020 should look
# like.

# %%
meta_root = data.locate("isic2020_metadata")
meta = pd.read_csv(meta_root / "ISIC_2020_Training_GroundTruth_v2.csv")
dups = pd.read_csv(meta_root / "ISIC_2020_Training_Duplicates.csv")
meta.head(3)

# %%
# NBVAL_CHECK_OUTPUT
per_patient = meta.groupby("patient_id").size()
facts = pd.Series({
    "images": len(meta),
    "patients": meta["patient_id"].nunique(),
    "lesions (lesion_id)": meta["lesion_id"].nunique(),
    "malignant images": int(meta["target"].sum()),
    "patients with a malignant image": int(meta.groupby("patient_id")["target"].max().sum()),
    "images per patient: median": int(per_patient.median()),
    "images per patient: max": int(per_patient.max()),
})
print(facts.to_string())
print(f"prevalence of malignant images: {meta['target'].mean():.2%}")
print(meta["diagnosis"].value_counts().to_string())

# %% [markdown]
# Fewer than 2 % of the images are malignant (all of them melanoma), and most benign images
# have no histopathological diagnosis at all (`unknown`). Images come in bunches: a typical
# patient contributes a dozen photographs, some more than a hundred. Those images share skin
# type, camera, lighting and often the lesion itself — a model that has seen a patient in
# training has an easier time with that patient's other images.

# %%
fig, axes = plt.subplots(1, 2, figsize=(10, 3.2))
axes[0].hist(per_patient, bins=np.arange(0, per_patient.max() + 5, 5), color="tab:blue")
axes[0].set(xlabel="images per patient", ylabel="patients", title="ISIC 2020: images per patient")
malignant_per_patient = meta.groupby("patient_id")["target"].sum()
counts_mal = malignant_per_patient[malignant_per_patient > 0].value_counts().sort_index()
axes[1].bar(counts_mal.index, counts_mal.values, color="tab:red")
axes[1].set(xlabel="malignant images of the patient", ylabel="patients",
            title="Patients with melanoma", xticks=counts_mal.index)
plt.tight_layout()
plt.show()

# %% [markdown]
# The official duplicates list names pairs of images that are the same photograph (or nearly so).
# Do the two images of a pair share a patient, a lesion id, a label?

# %%
# NBVAL_CHECK_OUTPUT
by_image = meta.set_index("image_name")
first, second = by_image.loc[dups["image_name_1"]], by_image.loc[dups["image_name_2"]]
print(f"{len(dups)} official duplicate pairs ({pd.unique(dups.values.ravel()).size} distinct images)")
print("same patient:  ", int((first["patient_id"].values == second["patient_id"].values).sum()))
print("same lesion_id:", int((first["lesion_id"].values == second["lesion_id"].values).sum()))
print("same label:    ", int((first["target"].values == second["target"].values).sum()))
print("malignant:     ", int((first["target"].values == 1).sum()))

# %% [markdown]
# Every duplicate pair belongs to one patient, but a handful carry two different lesion ids: a
# split grouped by lesion would leave those copies on both sides, a split grouped by patient
# cannot. **Group by patient.**
#
# ### Why accuracy means little at 1.8 % prevalence
#
# With prevalence $\pi$ (the fraction of malignant images), the classifier that answers
# "benign" for every image has accuracy $1 - \pi$. A real classifier with sensitivity $s$
# (recall on malignant) and specificity $c$ (recall on benign) has accuracy
# $s\pi + c(1-\pi)$ and positive predictive value — the chance that a lesion it calls
# malignant is malignant —
#
# $$ \mathrm{PPV} = \frac{s\,\pi}{s\,\pi + (1 - c)(1 - \pi)} . $$
#
# The paper reports 93.182 % accuracy but no sensitivity/specificity pair we could read, so
# as an illustration we give a classifier $s = c = $ that accuracy (read from the claims file)
# and evaluate it at three prevalences.

# %%
headline = paper.claim("headline.accuracy")
s = c = headline.number / 100
prevalence_2020 = meta["target"].mean()


def ppv(sensitivity, specificity, prevalence):
    """Positive predictive value (Bayes' rule), all arguments fractions in [0, 1]."""
    return sensitivity * prevalence / (sensitivity * prevalence + (1 - specificity) * (1 - prevalence))


# %%
# NBVAL_CHECK_OUTPUT
test_counts = data.dataset_table("isic_balanced").loc["test"]
settings = {
    "ISIC 2020 (all labelled images)": prevalence_2020,
    "the paper's test split": test_counts["malignant"] / test_counts["total"],
    "exactly balanced": 0.5,
}
print(f"classifier: sensitivity = specificity = {headline.label}")
print(pd.DataFrame({
    "prevalence": {k: f"{v:.1%}" for k, v in settings.items()},
    "all-benign accuracy": {k: f"{1 - v:.1%}" for k, v in settings.items()},
    "classifier accuracy": {k: f"{s * v + c * (1 - v):.1%}" for k, v in settings.items()},
    "classifier PPV": {k: f"{ppv(s, c, v):.1%}" for k, v in settings.items()},
}).to_string())

# %%
grid = np.logspace(-3, np.log10(0.6), 200)
fig, ax = plt.subplots(figsize=(6.5, 3.4))
ax.plot(grid, ppv(s, c, grid), label=f"PPV (s = c = {headline.value} %)")
ax.plot(grid, 1 - grid, "--", color="grey", label="accuracy of 'always benign'")
for (name, v), colour in zip(list(settings.items())[:2], ("tab:red", "tab:green")):
    ax.plot([v], [ppv(s, c, v)], "o", color=colour)
    ax.annotate(f"{name}\nPPV {ppv(s, c, v):.0%}", (v, ppv(s, c, v)), xytext=(6, -22),
                textcoords="offset points", fontsize=8, color=colour, ha="left" if v < 0.1 else "right")
ax.set(xscale="log", xlabel="prevalence of malignant lesions", ylabel="fraction", ylim=(0, 1.05),
       title="The same classifier at different prevalences")
ax.legend(loc="center left", fontsize=8)
plt.tight_layout()
plt.show()

# %% [markdown]
# At ISIC 2020's prevalence the do-nothing classifier beats the paper's headline accuracy, and
# even a 93 %-sensitive, 93 %-specific model is wrong about four times in five when it says
# "malignant". On a (nearly) balanced test set the same model looks excellent. Accuracy on a
# rebalanced subset says nothing about clinical use; sensitivity, specificity, PPV at a stated
# prevalence and ROC/PR curves do (chapter 05).
#
# ### A balanced subset, done properly
#
# A balanced subset of ISIC 2020 keeps every malignant image and draws as many benign images at
# random, with a seed (`splits.balanced_sample`). Then the split: **by patient**, stratified by
# label (`splits.grouped_split`, scikit-learn's `StratifiedGroupKFold`), so that no patient is
# on both sides.

# %%
# NBVAL_CHECK_OUTPUT
sample, report = splits.balanced_sample(meta, "benign_malignant", seed=0)
print(report.round(4).to_string())
print(f"{len(sample)} images of {sample['patient_id'].nunique()} patients; "
      f"up to {sample.groupby('patient_id').size().max()} images of one patient")

# %% [markdown]
# Compare the grouped split with the naive one, an image-level stratified
# `train_test_split`, and count (`splits.patient_overlap`) how many test images have their
# patient — or their very lesion — in the training set:

# %%
# NBVAL_CHECK_OUTPUT
grouped_train, grouped_test = splits.grouped_split(sample, "patient_id", "target", test_size=0.2, seed=0)
naive_train, naive_test = train_test_split(sample, test_size=0.2, random_state=0, stratify=sample["target"])
rows = {}
for name, (tr, te) in {"naive (image-level)": (naive_train, naive_test),
                       "grouped by patient": (grouped_train, grouped_test)}.items():
    by_patient = splits.patient_overlap(tr, te, "patient_id")
    by_lesion = splits.patient_overlap(tr, te, "lesion_id")
    rows[name] = {
        "train images": len(tr), "test images": len(te), "test malignant": f"{te['target'].mean():.1%}",
        "test patients": by_patient.test_groups, "of them also in train": by_patient.n_shared,
        "test images whose patient is in train": f"{by_patient.test_rows_leaked} ({by_patient.leaked_fraction:.1%})",
        "test images whose lesion is in train": f"{by_lesion.test_rows_leaked} ({by_lesion.leaked_fraction:.1%})",
    }
leak_table = pd.DataFrame(rows)
print(leak_table.to_string())

# %%
fig, ax = plt.subplots(figsize=(6.5, 2.2))
naive_leak = splits.patient_overlap(naive_train, naive_test, "patient_id").leaked_fraction
grouped_leak = splits.patient_overlap(grouped_train, grouped_test, "patient_id").leaked_fraction
ax.barh(["grouped by patient", "naive (image-level)"], [100 * grouped_leak, 100 * naive_leak], color=["tab:green", "tab:red"])
ax.set(xlabel="% of test images whose patient is also in train", xlim=(0, 100),
       title="Balanced ISIC 2020 subset, 4:1 split")
plt.tight_layout()
plt.show()

# %% [markdown]
# Even in this small subset — one image in 28 of ISIC 2020 — a naive split puts a large share of
# the test images next to another image of the same patient in training. The lesion ids hide this:
# only the official duplicates share a lesion id, so "no lesion on both sides" is a far weaker
# guarantee than "no patient on both sides".
#
# ## 2 · The paper's data: what "a balanced subset of ISIC 2020" really is
#
# The released set (chapter 00) has these counts:

# %%
# NBVAL_CHECK_OUTPUT
counts = data.dataset_table("isic_balanced")
print(counts.to_string())

# %% [markdown]
# The paper's own words, from the claims file, against what the files and the ISIC 2020 ground
# truth say:

# %%
# NBVAL_CHECK_OUTPUT
described = paper.claim("data.total_images")
n_benign = paper.claim("data.total_benign").number
n_malignant = paper.claim("data.total_malignant").number
print(f"paper: “{described.where.quote}” ({described.where.source}, {described.where.location})")
print(f"released files: {n_benign:.0f} benign : {n_malignant:.0f} malignant = "
      f"{n_malignant / (n_benign + n_malignant):.1%} malignant")
print(f"malignant images in ISIC 2020's whole labelled training set: {int(meta['target'].sum())}")
print(f"the 'subset' has {n_malignant / meta['target'].sum():.2f}× as many malignant images as ISIC 2020 has")

# %% [markdown]
# Two statements of the paper do not hold:
#
# - **"Balanced"**: 1,800 : 1,497 is 54.6 % : 45.4 %, close to but not 1:1 — a detail, but the
#   paper states it as if it were exact.
# - **"Subset of ISIC 2020"**: a subset cannot have more malignant images than its superset.
#   ISIC 2020's labelled images hold 584 malignant images in total (the challenge's test labels
#   were never released), the paper's set holds 1,497. At most 584 of them can come from ISIC
#   2020; section 3 shows that many of them come from older ISIC collections instead. The same
#   3,297 files, with the same 1,800 : 1,497 counts and the same 4:1 split, are the public
#   Kaggle data set "Skin Cancer: Malignant vs. Benign" {cite}`fanconi2019kaggle`, described
#   there as drawn from the ISIC Archive.
#
# The claims file records these differences between text and data:

# %%
from IPython.display import display

with pd.option_context("display.max_colwidth", None):  # show the full sentences
    display(paper.text_vs_code("data")[["topic", "consequence"]])

# %% [markdown]
# What can and cannot be checked from the files themselves:

# %%
bal_root = data.locate("isic_balanced")
ids = pd.Series(sorted(data.get_spec("isic_balanced").manifest_entries()))
parts = ids.str.extract(r"^(?P<split>\w+)/(?P<label>\w+)/(?P<number>\d+)\.jpg$")
headers = image_stats.image_file_table(bal_root, list(ids))
fingerprints = audit.jpeg_fingerprints(bal_root, list(ids))  # how each file was encoded
sha = pd.Series(data.get_spec("isic_balanced").manifest_entries())
identical = [sorted(g.index) for _, g in sha.groupby(sha) if len(g) > 1]

# %%
# NBVAL_CHECK_OUTPUT
numbering = parts.assign(number=parts["number"].astype(int)).groupby("label")["number"].agg(["min", "max", "count"])
numbering["missing numbers"] = [
    sorted(set(range(1, r["max"] + 1)) - set(parts.loc[parts["label"] == lab, "number"].astype(int)))
    for lab, r in numbering.iterrows()
]
verifiable = pd.Series({
    "file names matching <split>/<class>/<number>.jpg": f"{parts['number'].notna().sum()} of {len(ids)}",
    "file names carrying an ISIC id": int(ids.str.contains("ISIC_").sum()),
    "image sizes (w×h)": ", ".join(sorted(set(headers["width"].astype(str) + "×" + headers["height"].astype(str)))),
    "images with EXIF metadata (camera, date)": int(fingerprints["exif"].sum()),
    "byte-identical files (sha256)": "; ".join(" = ".join(g) for g in identical) or "none",
    "patient or lesion ids": "none: patient grouping cannot be checked",
})
print(verifiable.to_string())
print()
print("file numbers per class (train and test numbered together):")
print(numbering.to_string())

# %% [markdown]
# So the release strips most of what a reader would need to check the split: no ISIC ids, no
# patient ids, every image already squashed to 224×224 (ISIC originals come in many sizes: the
# external set's range from 600×450 to 4288×2848). What the file names do reveal: each class
# was numbered once, 1…1,800 and 1…1,500, and the train/test split was drawn from that single
# list — train and test numbers interleave. Whether one patient ended up on both sides cannot
# be checked from ids; section 3 checks it from the pixels.
#
# The files' headers tell one more story. Some images still carry EXIF tags (camera maker,
# date), and the JPEG encoder settings — quantization tables, chroma subsampling, stored
# resolution — can be compared between the classes (`audit.jpeg_fingerprints`):

# %%
# NBVAL_CHECK_OUTPUT
print("distinct JPEG quantization tables:", fingerprints.groupby("label")["quant_table"].nunique().to_dict())
print(pd.crosstab(fingerprints["subsampling"], fingerprints["label"]).to_string())
print(pd.crosstab(fingerprints["exif"], fingerprints["label"]).rename(index={False: "no EXIF", True: "EXIF"}).to_string())
encoding = fingerprints["quant_table"] + " " + fingerprints["subsampling"] + " " + fingerprints["density"]
benign_encodings = set(encoding[fingerprints["label"] == "benign"])
is_malignant = fingerprints["label"] == "malignant"
tell_tale = is_malignant & ~encoding.isin(benign_encodings)
print(f"malignant images encoded in a way no benign image is: {int(tell_tale.sum())} of {int(is_malignant.sum())} "
      f"({tell_tale.sum() / is_malignant.sum():.1%})")

# %% [markdown]
# All benign images went through one encoder with one setting; the malignant images come from
# several sources, and a sizeable share of them were saved in a way no benign image was. The two
# classes were therefore assembled from different pipelines, and the file format itself carries
# label information — for example chroma subsampling, which blurs colour in 2×2 blocks and
# survives decoding. A network trained on these pixels may partly learn the encoder instead of
# the lesion, and an accuracy measured on a test set drawn from the same pipelines would not
# notice. The paper does not mention this.
#
# ## 3 · Leakage audit: near-duplicate images
#
# ### Perceptual hashes
#
# A perceptual hash summarises an image in a few bits that survive re-encoding and resizing
# {cite}`zauner2010phash`. `audit` uses two 64-bit hashes of the grey image from the
# `imagehash` package: **pHash** (the signs of the lowest 8×8 DCT frequencies of a 32×32
# thumbnail, relative to their median) and **dHash** (whether each pixel of a 9×8 thumbnail is
# brighter than its right neighbour). Concatenated they give 128 bits; two images are compared
# by the **Hamming distance** — the number of bits that differ — and each image is also hashed
# as a 95 % and a 90 % centre crop, so that a slightly cropped copy still matches. Two images
# are called near-duplicates when the distance is at most $T$ bits.
#
# Every image is hashed once (in memory; nothing is written next to the images). The hash
# tables name images by the same ids as the tensor store (`train/benign/12.jpg`):

# %%
start = time.perf_counter()
train_h = audit.hash_dataset("isic_balanced", "train", progress=False)
test_h = audit.hash_dataset("isic_balanced", "test", progress=False)
all_h = audit.hash_dataset("isic_balanced", progress=False)  # same files: from the in-memory cache
ext_name = data.external_dataset_name()
ext_root = data.locate(ext_name)
ext_h = audit.hash_dataset(ext_name, progress=False)
print(f"hashed {len(all_h)} + {len(ext_h)} images ({ext_name}) in {time.perf_counter() - start:.0f} s")

# %% [markdown]
# ### Choosing the threshold
#
# The threshold must be large enough to catch copies and small enough to leave different
# lesions apart. Both distributions can be measured. **Copies**: `ch01_dataset.copy_distances`
# re-saves real images with edits a copy typically went through (JPEG re-encoding, resizing, a
# slight crop, a brightness change, all three combined) and measures how far each copy lands
# from its original. **Different images**: the distance of every train image to every test
# image (almost all of these pairs are different lesions), and each test (external) image's
# *nearest* training (isic_balanced) image — the tail of that distribution is where leaks show.

# %%
rng = np.random.default_rng(0)
originals = [bal_root / i for i in rng.choice(test_h.files, 40, replace=False)] + \
            [ext_root / i for i in rng.choice(ext_h.files, 40, replace=False)]
copies = ch01_dataset.copy_distances(originals)
all_pairs_hist = audit.hamming_distance_histogram(train_h, test_h)
nn_test = audit.nearest_neighbour_distances(test_h, train_h)
nn_ext = audit.nearest_neighbour_distances(ext_h, all_h)

# %%
# NBVAL_CHECK_OUTPUT
T = audit.DEFAULT_THRESHOLD
print(f"threshold T = {T} of {train_h.n_bits} bits ({train_h.method}, crops {train_h.crops})")
print(f"edited copies of {len(originals)} real images at distance <= T, by edit:")
print(copies.groupby("edit", sort=False)["distance"].agg(
    within_T=lambda d: f"{(d <= T).sum()} of {len(d)}", median="median", max="max").to_string())
n_all = int(all_pairs_hist.sum())
print(f"train × test pairs at distance <= T: {int(all_pairs_hist[:T + 1].sum())} of {n_all:,} "
      f"({all_pairs_hist[:T + 1].sum() / n_all:.1e}); median distance "
      f"{int(np.searchsorted(np.cumsum(all_pairs_hist), n_all / 2))} bits")
for name, nn in (("test → nearest train", nn_test), ("external → nearest isic_balanced", nn_ext)):
    q = nn["distance"].quantile([0.1, 0.5, 0.9]).astype(int).tolist()
    print(f"{name}: {int((nn['distance'] <= T).sum())} of {len(nn)} at <= T; 10/50/90 % quantiles {q} bits")

# %%
fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
bins = np.arange(0, train_h.n_bits + 2)
axes[0].hist(copies["distance"], bins=bins, density=True, alpha=0.7, color="tab:orange", label="edited copies (same image)")
axes[0].stairs(all_pairs_hist / n_all, bins, fill=True, alpha=0.6, color="tab:blue", label="all train × test pairs")
axes[0].set(yscale="log", ylabel="fraction of pairs (log scale)", title="Copies vs. different images", xlim=(0, 100))
for nn, colour, label in ((nn_test, "tab:purple", "test → nearest train image"),
                          (nn_ext, "tab:green", "external → nearest isic_balanced image")):
    axes[1].hist(nn["distance"], bins=bins, histtype="step", lw=1.5, color=colour, label=label)
axes[1].set(yscale="log", ylabel="images (log scale)", title="Nearest neighbour of each image", xlim=(0, 60))
for ax in axes:
    ax.axvline(T + 1, color="k", lw=1, ls="--", label=f"threshold: ≤ {T} bits")
    ax.set(xlabel="Hamming distance (bits of 128)")
    ax.legend(fontsize=8, loc="upper right")
plt.tight_layout()
plt.show()

# %% [markdown]
# The two populations barely touch: edited copies land within a few bits (a crop combined with
# other edits occasionally a little above $T$), while different images sit around half of the
# 128 bits apart and almost never within $T$. The nearest-neighbour histograms (right) show the
# leaks as a separate bump at the far left, below the threshold, well apart from the bulk of
# nearest neighbours (the quantiles printed above). $T = 8$ catches the copies; what it cannot catch
# are copies flipped, rotated or cropped off-centre, and *different photographs* of one lesion —
# those need patient ids, which the release does not have.
#
# ### Train vs. test

# %%
# NBVAL_CHECK_OUTPUT
pairs_tt = audit.annotate_pairs(audit.hash_pairs(train_h, test_h, T), "isic_balanced")
summary_tt = ch01_dataset.pair_summary(pairs_tt, len(train_h), len(test_h))
print(f"{summary_tt['pairs']} train–test pairs at <= {T} bits; pairs by distance:", pairs_tt["distance"].value_counts().sort_index().to_dict())
print(f"test images with a near-copy in train: {summary_tt['b_with_copy']} of {summary_tt['b_images']} "
      f"({summary_tt['b_fraction_with_copy']:.1%}); train images involved: {summary_tt['a_with_copy']}")
print("test images with a copy, by class:", pairs_tt.drop_duplicates("file_b")["label_b"].value_counts().sort_index().to_dict())
print("pairs whose labels differ:")
print(pairs_tt.loc[pairs_tt["label_a"] != pairs_tt["label_b"], ["file_a", "file_b", "distance"]].to_string(index=False))
number_gap = (pairs_tt["file_a"].str.extract(r"(\d+)\.jpg")[0].astype(int)
              - pairs_tt["file_b"].str.extract(r"(\d+)\.jpg")[0].astype(int)).abs()
print(f"pairs whose file numbers differ by at most 12: {(number_gap <= 12).sum()} of {len(pairs_tt)}")

# %% [markdown]
# The closest pairs across the split (one row per test image, left the training image):

# %%
closest = pairs_tt.drop_duplicates("file_b").head(8)
fig = ch01_dataset.pair_gallery(closest, bal_root, title="Closest train (left) ↔ test (right) pairs")
plt.show()

# %% [markdown]
# …and the borderline ones, at the threshold, where a human has to look: some are the same
# lesion, some are different lesions that share a look (a small central lesion on plain skin
# gives similar hashes) — including the one pair whose labels differ:

# %%
borderline = pairs_tt[pairs_tt["distance"] >= T - 1].sort_values("distance", ascending=False, kind="stable").head(4)
fig = ch01_dataset.pair_gallery(borderline, bal_root, title=f"Borderline pairs ({T - 1}–{T} bits)")
plt.show()

# %% [markdown]
# The pairs are mostly the same lesion photographed again, and their file numbers are close:
# the source list was ordered so that photographs of one lesion were neighbours, and the
# image-level random split scattered them over train and test. Connected components of the
# pair graph inside the whole set (`audit.duplicate_clusters`) group such series:

# %%
# NBVAL_CHECK_OUTPUT
pairs_all = audit.hash_pairs(all_h, None, T)
clusters = audit.duplicate_clusters(pairs_all, all_h.files)
sizes = clusters.value_counts()
multi = sizes[sizes > 1]
members = clusters[clusters.isin(multi.index)]
spans = members.groupby(members).apply(lambda m: m.index.str.split("/").str[0].nunique() > 1)
print(f"{len(pairs_all)} near-duplicate pairs inside isic_balanced; {len(multi)} clusters of 2+ images "
      f"({len(members)} images); {int(spans.sum())} clusters span train and test")
print("cluster sizes:", multi.value_counts().sort_index().to_dict())
largest = sorted(members[members == multi.index[0]].index, key=lambda f: (f.split("/")[0], int(f.split("/")[-1][:-4])))
largest_labels = sorted({f.split("/")[1] for f in largest})
print(f"largest cluster ({len(largest)} images, {'/'.join(largest_labels)}):", ", ".join(largest))

# %%
fig = plots.image_grid(np.stack([data.decode_image(bal_root / f, 160) for f in largest]),
                       titles=[f.rsplit(".", 1)[0] for f in largest], ncols=6,
                       title=f"The largest cluster: one lesion ({'/'.join(largest_labels)}), photographed again and again")
plt.show()

# %% [markdown]
# ### isic_balanced vs. the external set
#
# The paper also reports an "external validation" on ISIC 2019 images. An external set is only
# external if none of its images were used for training. Its file names are ISIC ids, which
# makes a second check possible: the official ISIC 2020 ids.

# %%
# NBVAL_CHECK_OUTPUT
pairs_ext = audit.annotate_pairs(audit.hash_pairs(all_h, ext_h, T), "isic_balanced", ext_name)
summary_ext = ch01_dataset.pair_summary(pairs_ext, len(all_h), len(ext_h))
print(f"external set: {ext_name}, {len(ext_h)} images")
print(f"{summary_ext['pairs']} pairs at <= {T} bits; pairs by distance:", pairs_ext["distance"].value_counts().sort_index().to_dict())
print(f"external images with a near-copy in isic_balanced: {summary_ext['b_with_copy']} of {summary_ext['b_images']} "
      f"({summary_ext['b_fraction_with_copy']:.1%}); isic_balanced images involved: {summary_ext['a_with_copy']}")
print("… with a copy in isic_balanced's train / test split:", summary_ext["b_with_copy_by_split_a"])
print("pairs whose labels differ:", summary_ext["label_disagreements"])
isic_ids = pairs_ext["file_b"].str.extract(r"(ISIC_\d+)")[0].drop_duplicates()
ext_isic_ids = pd.Series(ext_h.files).str.extract(r"(ISIC_\d+)")[0]
print(f"external ids that are ISIC 2020 training images: {int(ext_isic_ids.isin(meta['image_name']).sum())}")
ham = isic_ids.str[5:].astype(int).between(24306, 34320)
print(f"matched external ids in the HAM10000 range ISIC_0024306–ISIC_0034320: {int(ham.sum())} of {len(isic_ids)}")

# %%
shown = pairs_ext.drop_duplicates("file_b")
fig = ch01_dataset.pair_gallery(pd.concat([shown.head(2), shown.tail(2)]), bal_root, ext_root,
                         title="isic_balanced (left) ↔ external set (right): closest and farthest pairs")
plt.show()

# %% [markdown]
# Most external images with a copy in isic_balanced are at 0–3 bits: the *same* ISIC image,
# squashed to 224×224 in the paper's set; the few farther pairs are the same lesion in another
# photograph or a look-alike (right in the gallery). Their labels agree. None of the external set's ids is an ISIC 2020
# image, and most matched ids lie in the id range of HAM10000 {cite}`tschandl2018ham10000`,
# part of the ISIC 2019 training data. This confirms from the pixels what the counts of
# section 2 imply: the paper's "subset of ISIC 2020" contains older ISIC images — the same ones
# its external ISIC 2019 set contains.
#
# ### What this means for the paper's numbers
#
# - **Test accuracy.** A few percent of the 660 test images have a near-copy — mostly the same
#   lesion — in training. A network can score those from memory, so the reported test accuracy
#   is partly a memorisation score; and since photographs of one lesion from other angles and
#   other lesions of the same patient are not caught by hashes, the true overlap is larger.
#   Chapter 05 reports accuracy on the test images without a copy next to the full test set.
# - **External validation.** Several percent of the external images were in the paper's own
#   training or test data. Chapter 08 leaves them out before calling anything "external".
# - **The file format.** Benign and malignant images were encoded by different pipelines; part
#   of any accuracy on this set may come from the encoder, not the lesion — on the test set and,
#   where the external images were re-encoded differently, as a loss on the external set.
# - **Selection on the test set** (the paper's scripts validate on the test split every epoch,
#   see `paper.text_vs_code()`) makes both effects worse, not better.
#
# ### Saving the pairs
#
# The evaluation chapters read the pairs from files (`audit.read_audit_pairs`), written
# atomically — a reader never sees half a file. Ids are relative to each data set's folder,
# so the files do not depend on where the data lives.

# %%
results.write_csv(OUT / audit.PAIRS_FILES["train_test"], pairs_tt)
results.write_csv(OUT / audit.PAIRS_FILES["external"], pairs_ext)
summary = {
    "method": train_h.method, "threshold_bits": T, "n_bits": train_h.n_bits, "crops": list(train_h.crops),
    "isic_balanced": {
        "images": len(all_h), "pairs_within": len(pairs_all), "clusters": len(multi),
        "images_in_clusters": len(members), "clusters_across_splits": int(spans.sum()),
        "byte_identical_groups": identical,
        "images_with_exif": {k: int(v) for k, v in fingerprints.groupby("label")["exif"].sum().items()},
        "malignant_encoded_unlike_any_benign": int(tell_tale.sum()),
    },
    "train_test": {"dataset_a": "isic_balanced/train", "dataset_b": "isic_balanced/test", **summary_tt},
    "external": {"dataset_a": "isic_balanced", "dataset_b": ext_name, **summary_ext},
}
results.write_json(OUT / "summary.json", summary)
print("written:", sorted(p.relative_to(results.results_root().parent).as_posix() for p in OUT.iterdir()))

# %%
# NBVAL_CHECK_OUTPUT
saved = json.loads((OUT / "summary.json").read_text())
print(json.dumps({k: saved[k] for k in ("train_test", "external")}, indent=1))

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
# ### Exercise 1 (★☆☆): The do-nothing classifier
#
# Write `majority_class_accuracy(labels)`: given an array or Series of 0/1 labels (benign = 0,
# malignant = 1), return the accuracy — a float between 0 and 1 — of the classifier that always
# predicts the label that is most frequent in `labels`. On the ISIC 2020 ground truth
# (`meta["target"]`) that is the "all benign" model of section 1. Careful: the most frequent
# label is not always 0.

# %% tags=["solution", "hide-input"]
import numpy as np


def majority_class_accuracy(labels) -> float:
    """labels: int [N] of 0/1 -> accuracy in [0, 1] of always predicting the most frequent label."""
    ### BEGIN SOLUTION
    y = np.asarray(labels)
    return float(np.bincount(y).max() / len(y))
    ### END SOLUTION

# %%
lab.ch01.check_majority_class_accuracy(majority_class_accuracy);

# %% [markdown]
# ### Exercise 2 (★★☆): Hamming distance of two packed hashes
#
# `audit` stores hashes packed eight bits to a byte (`np.packbits`): a 128-bit pHash+dHash is a
# uint8 array of 16 bytes (`train_h.bits[i, 0]`). Write `hamming_distance(h1, h2)` that returns
# the number of bits in which two such arrays differ, as an `int`. Counting differing *bytes*
# is wrong, and so is summing in uint8 (it wraps around at 256).

# %% tags=["solution", "hide-input"]
import numpy as np


def hamming_distance(h1: np.ndarray, h2: np.ndarray) -> int:
    """h1, h2: uint8 [n_bytes], packed bits -> number of differing bits (0 .. 8·n_bytes)."""
    ### BEGIN SOLUTION
    return int(np.unpackbits(np.bitwise_xor(h1, h2)).sum(dtype=np.int64))
    ### END SOLUTION

# %%
lab.ch01.check_hamming_distance(hamming_distance);

# %% [markdown]
# ### Exercise 3 (★★★): How much of a test set leaks?
#
# Write `leaked_test_fraction(train, test, group_col)`: given two DataFrames with a column of
# group ids (`"patient_id"`, `"lesion_id"`), return the fraction of **test rows** whose id also
# occurs in `train`, as a float between 0 and 1. A missing id (`None`/`NaN`) never matches
# anything — beware, `Series.isin` does match missing values with each other. An empty test
# table leaks nothing (0.0). Try it on the naive split of section 1.

# %% tags=["solution", "hide-input"]
import pandas as pd


def leaked_test_fraction(train: pd.DataFrame, test: pd.DataFrame, group_col: str) -> float:
    """train, test: tables with a group_col column -> fraction of test rows whose id is also in train."""
    ### BEGIN SOLUTION
    if len(test) == 0:
        return 0.0
    seen = set(train[group_col].dropna())
    return float(test[group_col].map(lambda g: g in seen if pd.notna(g) else False).mean())
    ### END SOLUTION

# %%
lab.ch01.check_leaked_test_fraction(leaked_test_fraction);

# %% [markdown]
# ## Checks
#
# CI fails this chapter if the ISIC 2020 ground truth is not the official one (33,126 images,
# 584 malignant, 425 duplicate pairs all within one patient); if the balanced subset is not
# balanced or the patient-grouped split shares a patient while the naive split shares none; if
# the edits a copy typically goes through (re-encoding, resizing, a centre crop) are not
# caught at the threshold for at least 95 % of the images, or more than one train × test pair
# in 10,000 falls under it; if any cross-set pair found is not within the threshold; or if the
# saved files do not hold exactly the pairs found.

# %%
assert len(meta) == 33126 and int(meta["target"].sum()) == 584 and len(dups) == 425
assert (first["patient_id"].values == second["patient_id"].values).all()
assert len(fingerprints) == len(ids) == 3297 and (fingerprints["quant_table"] != "").all()
assert report["kept"].nunique() == 1 and report.loc["malignant", "dropped"] == 0
assert splits.patient_overlap(grouped_train, grouped_test, "patient_id").n_shared == 0
assert naive_leak > 0.2, "the naive split should leak patients"
basic = copies[copies["edit"].isin(["JPEG quality 50", "half size", "centre crop 95 %"])]
assert (basic["distance"] <= T).mean() >= 0.95
assert all_pairs_hist[: T + 1].sum() / n_all < 1e-4
assert (pairs_tt["distance"] <= T).all() and (pairs_ext["distance"] <= T).all()
assert audit.read_audit_pairs("train_test", P.name).equals(pairs_tt.reset_index(drop=True))
assert audit.read_audit_pairs("external", P.name).equals(pairs_ext.reset_index(drop=True))
assert saved["external"]["pairs"] == len(pairs_ext) and saved["train_test"]["pairs"] == len(pairs_tt)
print("✅ data audit checks passed")

# %% [markdown]
# ## Takeaways
#
# - ISIC 2020 {cite}`rotemberg2021isic` has 1.8 % malignant images, about 16 images per
#   patient and an official duplicates list. At that prevalence "always benign" is 98 % accurate,
#   and a 93 %-accurate classifier's positive calls are mostly wrong: accuracy on a rebalanced
#   set says little about clinical use.
# - A subset must be sampled with a seed and split **by patient** (`splits.balanced_sample`,
#   `splits.grouped_split`); an image-level split puts about half of the test images next to
#   their patient's other images in training. Lesion ids are not enough.
# - The paper's set {cite}`asff2025` is not a subset of ISIC 2020 (1,497 malignant images against
#   584 in all of ISIC 2020), not exactly balanced, and ships without ids; it is the public Kaggle
#   set {cite}`fanconi2019kaggle`, with images from older ISIC collections.
# - Its benign and malignant images were encoded by different pipelines (quantization tables,
#   chroma subsampling, EXIF): the file format carries the label, a shortcut to keep in mind.
# - Perceptual hashes {cite}`zauner2010phash` find near-copies between its train and test split
#   and between it and the "external" ISIC 2019 set, the kind of overlap
#   {cite}`cassidy2022isic` warns about for ISIC data. The pairs are in
#   `results/ci/01_dataset/` for chapters 05 and 08.
#
# References: {cite}`asff2025`, {cite}`rotemberg2021isic`, {cite}`tschandl2018ham10000`,
# {cite}`cassidy2022isic`, {cite}`fanconi2019kaggle`, {cite}`zauner2010phash` (full list on the
# [bibliography page](../book/bibliography.md)).

# %%
ch.footer();
