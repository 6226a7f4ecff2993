"""Tests of chapter 08's external validation (skinlesion_utils.studies.ch08_external) and of the
core tools it uses on real data: splits.external_split, metrics.metric_difference,
metrics.paired_comparison and metrics.ci_strings.

Real data throughout: the external sample's ids and images, the paper's isic_balanced images.
The "compute the pairs" path of ``external_pairs`` hashes small real subsets (the registry-wide
hashing is restricted by patching ``audit.hash_dataset``) and is compared with a direct
``audit.find_near_duplicates`` on the same files; the "load chapter 01's file" path reads a
file written into a temporary results folder (``SKINLESION_RESULTS``).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from skinlesion_utils import audit, data, image_stats, results, splits
from skinlesion_utils import metrics as M
from skinlesion_utils.studies import ch08_external as X

DATA = Path(os.environ.get("SKINLESION_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
pytestmark = pytest.mark.skipif(not (DATA / "isic2019_external_sample").is_dir(), reason="needs the course data folder")
EXT = "isic2019_external_sample"


@pytest.fixture(autouse=True)
def _data_env(monkeypatch):
    monkeypatch.setenv("SKINLESION_DATA", str(DATA))


@pytest.fixture(scope="module")
def ext_ids():
    return sorted(data.get_spec(EXT).manifest_entries())


@pytest.fixture(scope="module")
def small_sets():
    """A few real ids of each set: 12 isic_balanced (train and test, both classes), 10 external."""
    bal = sorted(data.get_spec("isic_balanced").manifest_entries())
    pick = [r for split in ("train", "test") for cls in data.CLASSES
            for r in [x for x in bal if x.startswith(f"{split}/{cls}/")][:3]]
    ext = sorted(data.get_spec(EXT).manifest_entries())
    return pick, ext[:5] + ext[-5:]


def _restricted_hash_dataset(small_sets):
    """audit.hash_dataset limited to the small real subsets (same ids, same hashing)."""
    bal, ext = small_sets

    def fake(name, split=None, **kw):
        rels = bal if name == "isic_balanced" else ext
        root = data.locate(name)
        table = audit.compute_hashes([root / r for r in rels], progress=False)
        return audit.HashTable(tuple(rels), table.bits, table.method, table.crops)

    return fake


# ----------------------------------------------------------------------------- external_pairs


def test_external_pairs_computes_when_chapter01_file_missing(monkeypatch, tmp_path, small_sets):
    monkeypatch.setenv(results.ENV_RESULTS, str(tmp_path))  # empty results folder: no chapter 01 file
    monkeypatch.setattr(audit, "hash_dataset", _restricted_hash_dataset(small_sets))
    threshold = 40  # loose enough that unrelated real images pair up, so the table is not empty
    pairs = X.external_pairs("ci", EXT, threshold=threshold)
    assert pairs.attrs["source"] == "computed" and pairs.attrs["threshold"] == threshold
    bal, ext = small_sets
    broot, eroot = data.locate("isic_balanced"), data.locate(EXT)
    direct = audit.find_near_duplicates([broot / r for r in bal], [eroot / r for r in ext], threshold=threshold, progress=False)
    direct = direct.assign(file_a=[str(Path(f).relative_to(broot).as_posix()) for f in direct.file_a],
                           file_b=[str(Path(f).relative_to(eroot).as_posix()) for f in direct.file_b])
    assert len(pairs) == len(direct) > 0
    got = set(zip(pairs.file_a, pairs.file_b, pairs.distance))
    assert got == set(zip(direct.file_a, direct.file_b, direct.distance))
    assert (pairs.distance.diff().dropna() >= 0).all()
    assert set(pairs.split_a) <= {"train", "test"} and (pairs.dataset_b == EXT).all()
    assert pairs.split_a.tolist() == [f.split("/")[0] for f in pairs.file_a]


def test_external_pairs_loads_chapter01_file_and_rejects_foreign_ones(monkeypatch, tmp_path, small_sets):
    monkeypatch.setenv(results.ENV_RESULTS, str(tmp_path))
    monkeypatch.setattr(audit, "hash_dataset", _restricted_hash_dataset(small_sets))
    computed = X.external_pairs("ci", EXT, threshold=60, recompute=True)
    assert len(computed) >= 10
    # pretend some pairs are close copies, so that filtering by the threshold has work to do
    computed["distance"] = np.arange(len(computed)) % (2 * audit.DEFAULT_THRESHOLD)
    saved = computed.copy()
    path = results.results_dir(audit.AUDIT_CHAPTER, "ci") / audit.PAIRS_FILES["external"]
    results.write_csv(path, saved)

    # read back, filtered to the default threshold
    loaded = X.external_pairs("ci", EXT)
    assert loaded.attrs["source"].startswith("chapter 01 file") and str(path) in loaded.attrs["source"]
    keep = computed[computed.distance <= audit.DEFAULT_THRESHOLD]
    assert 0 < len(keep) < len(computed)
    assert set(zip(loaded.file_a, loaded.file_b, loaded.distance)) == set(zip(keep.file_a, keep.file_b, keep.distance))
    # a threshold at or below the default is served from the file, filtered
    tight = X.external_pairs("ci", EXT, threshold=2)
    assert tight.attrs["source"].startswith("chapter 01 file") and (tight.distance <= 2).all()

    calls = []
    real_fake = _restricted_hash_dataset(small_sets)
    monkeypatch.setattr(audit, "hash_dataset", lambda *a, **k: calls.append(a[0]) or real_fake(*a, **k))
    # made for another external set: recomputed
    results.write_csv(path, saved.assign(dataset_b="isic2019_external"))
    assert X.external_pairs("ci", EXT).attrs["source"] == "computed"
    # ids that are not in this external set (e.g. the full set's train/... ids): recomputed
    foreign = saved[["file_a", "file_b", "distance", "method"]].assign(file_b="train/benign/ISIC_0000000.jpg")
    results.write_csv(path, foreign)
    assert X.external_pairs("ci", EXT).attrs["source"] == "computed"
    assert calls == ["isic_balanced", EXT] * 2


def test_external_pairs_rejects_bad_threshold():
    with pytest.raises(ValueError, match="threshold"):
        X.external_pairs("ci", EXT, threshold=500)


# ----------------------------------------------------------------------------- contamination_flags


def _pairs(rows):
    return pd.DataFrame(rows, columns=["file_a", "file_b", "distance", "method"]).assign(method="phash+dhash")


def test_contamination_flags_on_real_ids(ext_ids):
    a, b, c = ext_ids[0], ext_ids[500], ext_ids[-1]
    pairs = _pairs([("train/benign/10.jpg", a, 3, ""), ("test/benign/7.jpg", a, 1, ""),
                    ("test/malignant/3.jpg", b, 6, ""), ("train/malignant/5.jpg", c, 0, ""),
                    ("train/malignant/9.jpg", c, 4, "")])
    flags = X.contamination_flags(ext_ids, pairs, trained_ids=["train/malignant/9.jpg"])
    assert list(flags.index) == ext_ids
    assert flags.loc[a, ["copy_in_train", "copy_in_test", "contaminated", "copy_seen"]].tolist() == [True, True, True, False]
    assert flags.loc[b, ["copy_in_train", "copy_in_test", "contaminated", "copy_seen"]].tolist() == [False, True, True, False]
    assert flags.loc[c, ["copy_in_train", "copy_in_test", "contaminated", "copy_seen"]].tolist() == [True, False, True, True]
    assert flags.loc[a, "distance"] == 1 and flags.loc[a, "copy_of"] == "test/benign/7.jpg"
    assert flags.loc[c, "copy_of"] == "train/malignant/5.jpg"
    assert int(flags.contaminated.sum()) == 3 and flags.distance.isna().sum() == len(ext_ids) - 3
    assert flags.loc[ext_ids[1], "copy_of"] == ""
    assert "copy_seen" not in X.contamination_flags(ext_ids, pairs).columns


def test_contamination_flags_rejects_pairs_of_another_set(ext_ids):
    pairs = _pairs([("train/benign/1.jpg", "train/benign/ISIC_0000000.jpg", 0, "")])
    with pytest.raises(ValueError, match="not in ids"):
        X.contamination_flags(ext_ids, pairs)
    with pytest.raises(ValueError, match="train/"):
        X.contamination_flags(ext_ids, _pairs([("benign/1.jpg", ext_ids[0], 0, "")]))
    with pytest.raises(ValueError, match="repeated"):
        X.contamination_flags(ext_ids + ext_ids[:1], _pairs([]))


def test_external_split_matches_full_manifest(ext_ids):
    full = set(data.get_spec("isic2019_external").manifest_entries())
    split = splits.external_split(ext_ids)
    assert list(split.index) == ext_ids and set(split) == {"train", "test"}
    assert all(f"{s}/{i}" in full for i, s in split.items())  # same class folder, same file name
    some_full = sorted(full)[:3] + sorted(full)[-3:]
    assert splits.external_split(some_full).tolist() == [r.split("/")[0] for r in some_full]
    assert splits.external_split(["benign/not_an_isic_file.jpg"]).tolist() == [""]


# ----------------------------------------------------------------------------- subsets


@pytest.fixture(scope="module")
def preds(ext_ids):
    """Labels of the real external sample with a seeded, informative fake score."""
    y = np.array([data.CLASSES.index(i.split("/")[0]) for i in ext_ids])
    rng = np.random.default_rng(3)
    s = np.clip(0.35 * y + 0.65 * rng.random(y.size), 0, 1)
    return pd.DataFrame({"id": ext_ids, "y_true": y, "y_score": s})


def test_subset_report_agrees_with_metrics(preds):
    y = preds.y_true.to_numpy()
    clean = np.arange(len(preds)) % 7 != 0
    only_benign = y == 0
    rep = X.subset_report(preds, {"all": np.ones(len(preds), bool), "clean": clean, "benign only": only_benign}, n_boot=500)
    ref = M.report_with_ci(y[clean], preds.y_score.to_numpy()[clean], n_boot=500, metrics=("accuracy", "roc_auc"))
    assert rep.loc["clean", "n"] == clean.sum() and rep.loc["clean", "n_pos"] == y[clean].sum()
    for metric in ("accuracy", "roc_auc"):
        assert rep.loc["clean", metric] == pytest.approx(ref.loc[metric, "point"])
        assert rep.loc["clean", f"{metric}_low"] == pytest.approx(ref.loc[metric, "low"])
        assert rep.loc["clean", f"{metric}_low"] <= rep.loc["clean", metric] <= rep.loc["clean", f"{metric}_high"]
    assert rep.loc["benign only", "n_pos"] == 0 and np.isnan(rep.loc["benign only", "roc_auc"])
    shown = M.ci_strings(rep, ["accuracy"], decimals=2, keep=("n",))
    assert list(shown.columns) == ["n", "accuracy"] and shown.loc["benign only", "accuracy"] == "–"
    p, lo, hi = rep.loc["clean", ["accuracy", "accuracy_low", "accuracy_high"]]
    assert shown.loc["clean", "accuracy"] == f"{p:.2f} [{lo:.2f}, {hi:.2f}]"
    with pytest.raises(KeyError, match="not in the table"):
        M.ci_strings(rep, ["f1"])
    with pytest.raises(ValueError, match="bool mask"):
        X.subset_report(preds, {"bad": [0, 1]})


def test_metric_difference_nested_disjoint_and_identical(preds):
    y, s = preds.y_true.to_numpy(), preds.y_score.to_numpy()
    everything = np.ones(len(preds), bool)
    clean = np.arange(len(preds)) % 9 != 0
    same = M.metric_difference(preds, clean, clean, "auc", n_boot=300)
    assert same["delta"] == 0 and same["low"] == 0 and same["high"] == 0 and same["metric"] == "roc_auc"
    nested = M.metric_difference(preds, everything, clean, n_boot=1000)
    acc = lambda m: float(((s[m] >= 0.5) == y[m]).mean())  # noqa: E731
    assert nested["delta"] == pytest.approx(acc(everything) - acc(clean))
    assert nested["low"] <= nested["delta"] <= nested["high"]
    # make the small subset perfect: the difference is large and its CI excludes 0
    perfect = preds.copy()
    perfect.loc[~clean, "y_score"] = perfect.loc[~clean, "y_true"].astype(float)
    disjoint = M.metric_difference(perfect, ~clean, clean, n_boot=1000)
    assert disjoint["a"] == 1.0 and disjoint["n_a"] == (~clean).sum()
    assert disjoint["low"] > 0 and disjoint["delta"] == pytest.approx(1.0 - acc(clean))
    with pytest.raises(ValueError, match="both classes"):
        M.metric_difference(preds, y == 1, clean, "auc")


def test_paired_comparison(preds):
    y, s = preds.y_true.to_numpy(), preds.y_score.to_numpy()
    tie = M.paired_comparison(y, s, s, n_boot=200)
    assert tie["mcnemar_b"] == tie["mcnemar_c"] == 0 and tie["mcnemar_p"] == 1.0 and tie["auc_delta"] == 0
    worse = np.clip(s + np.random.default_rng(1).normal(0, 0.2, s.size), 0, 1)
    r = M.paired_comparison(y, s, worse, n_boot=500)
    mc = M.mcnemar(y, (s >= 0.5).astype(int), (worse >= 0.5).astype(int))
    assert (r["mcnemar_b"], r["mcnemar_c"], r["mcnemar_p"]) == (mc["b"], mc["c"], mc["p_value"])
    assert r["auc_delta"] > 0 and r["auc_delta"] == pytest.approx(r["auc_a"] - r["auc_b"])
    assert r["delong_p"] == pytest.approx(M.delong_test(y, s, worse)["p_value"])


# ----------------------------------------------------------------------------- shift


def test_distribution_shift_on_real_colour_statistics():
    store = data.ImageTensorStore.from_dataset("isic_balanced", "test", resolution=16, progress=False)
    stats = image_stats.colour_statistics(store)
    same = X.distribution_shift(stats, stats)
    assert np.allclose(same.smd, 0) and np.allclose(same.ks, 0)
    brighter = data.ImageTensorStore(torch.clamp(store.images.int() + 40, 0, 255).to(torch.uint8), store.labels, store.ids, 16)
    shift = X.distribution_shift(stats, image_stats.colour_statistics(brighter))
    assert (shift.loc[["mean_r", "mean_g", "mean_b", "brightness"], "smd"] > 0.2).all()
    assert shift.loc["brightness", "ks"] > 0.2 and shift.loc["brightness", "ks_p"] < 1e-6
    assert shift.loc["brightness", "external_mean"] > shift.loc["brightness", "internal_mean"]
    with pytest.raises(KeyError, match="missing"):
        X.distribution_shift(stats, stats, columns=("hue",))


# ----------------------------------------------------------------------------- demo folder


def test_write_demo_folder_real_images_every_variant(tmp_path, ext_ids):
    root = data.locate(EXT)
    picks = ext_ids[:4] + ext_ids[-4:]
    sources = [(root / i, data.CLASSES.index(i.split("/")[0])) for i in picks]
    table = X.write_demo_folder(sources, tmp_path / "mine")
    assert len(table) == len(X.DEMO_VARIANTS) == 8
    assert [t.lower() for t in table.format] == ["png", "bmp", "tiff", "webp", "jpeg", "jpeg", "png", "jpeg"]
    assert table["mode"].tolist() == ["RGBA", "RGB", "RGB", "RGB", "L", "CMYK", "P", "RGB"]
    with __import__("PIL.Image").Image.open(root / picks[7]) as src:
        assert (table.width[7], table.height[7]) == (src.width * 3, src.height * 3)
    store = data.ImageTensorStore.from_folder(tmp_path / "mine", resolution=32, progress=False)
    assert len(store) == 8 and store.class_counts() == {"benign": 4, "malignant": 4}
    # the lossless RGBA PNG decodes to exactly the source's pixels
    png = store.ids.index(table.file[0])
    assert torch.equal(store.images[png], torch.from_numpy(data.decode_image(root / picks[0], 32)))


def test_write_demo_folder_refuses_data_folder_and_non_empty(tmp_path, ext_ids):
    root = data.locate(EXT)
    src = [(root / ext_ids[0], 0)]
    with pytest.raises(data.DataError, match="data folder"):
        X.write_demo_folder(src, DATA / "demo_should_not_exist")
    assert not (DATA / "demo_should_not_exist").exists()
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "file.txt").write_text("taken")
    with pytest.raises(data.DataError, match="not empty"):
        X.write_demo_folder(src, tmp_path / "x")
    with pytest.raises(ValueError, match="label"):
        X.write_demo_folder([(root / ext_ids[0], 2)], tmp_path / "y")
