"""Tests of skinlesion_utils.audit on real images of $SKINLESION_DATA and the real ISIC 2020
metadata: planted copies (exact, re-encoded, resized, centre-cropped) of real lesions must be
found, distinct real lesions must not; the pair search must agree with brute force and be fast;
splits must be grouped, stratified and seeded; the CLI must write the CSV."""
from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from skinlesion_utils import audit, cli, results, splits
from skinlesion_utils.studies import ch01_dataset

DATA = Path(os.environ.get("SKINLESION_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
BAL = DATA / "isic_balanced"
META = DATA / "isic2020_metadata" / "ISIC_2020_Training_GroundTruth_v2.csv"
needs_images = pytest.mark.skipif(not BAL.is_dir(), reason="needs the course data folder: set SKINLESION_DATA")
needs_meta = pytest.mark.skipif(not META.is_file(), reason="needs the course data folder: set SKINLESION_DATA")

TRANSFORMS = ("exact", "jpeg50", "resized", "crop5")


def _distinct_real_images() -> list[Path]:
    """30 real lesions spread over isic_balanced/test (15 benign, 15 malignant)."""
    benign = sorted((BAL / "test" / "benign").glob("*.jpg"))[::12][:15]
    malignant = sorted((BAL / "test" / "malignant").glob("*.jpg"))[::10][:15]
    return benign + malignant


def _plant(src: Path, kind: str, dest: Path) -> Path:
    """Write a transformed copy of ``src``."""
    if kind == "exact":
        out = dest.with_suffix(".jpg")
        shutil.copyfile(src, out)
        return out
    img = Image.open(src).convert("RGB")
    w, h = img.size
    if kind == "jpeg50":  # re-encoded at another quality
        out = dest.with_suffix(".jpg")
        img.save(out, quality=50)
    elif kind == "resized":  # smaller, lossless
        out = dest.with_suffix(".png")
        img.resize((round(w * 0.6), round(h * 0.6)), Image.BICUBIC).save(out)
    elif kind == "crop5":  # 5 % of width and height cropped away (centred), re-encoded
        out = dest.with_suffix(".jpg")
        dx, dy = round(w * 0.025), round(h * 0.025)
        img.crop((dx, dy, w - dx, h - dy)).save(out, quality=90)
    else:  # pragma: no cover
        raise ValueError(kind)
    return out


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """tmp/originals: 30 distinct real lesions; tmp/copies: 4 transformed copies of 6 of them."""
    root = tmp_path_factory.mktemp("audit")
    originals, copies = root / "originals", root / "copies"
    originals.mkdir()
    copies.mkdir()
    sources = _distinct_real_images()
    assert len(sources) == 30
    orig_paths = []
    for k, src in enumerate(sources):
        orig_paths.append(Path(shutil.copyfile(src, originals / f"o{k:02d}.jpg")))
    truth = {}  # copy path -> original path
    for k in (0, 1, 2, 15, 16, 17):
        for kind in TRANSFORMS:
            out = _plant(sources[k], kind, copies / f"o{k:02d}_{kind}")
            truth[str(out)] = str(orig_paths[k])
    return originals, copies, truth


@needs_images
def test_distinct_real_lesions_are_not_flagged_and_data_folder_untouched():
    folder = BAL / "test" / "benign"
    before = sorted(os.listdir(folder)), folder.stat().st_mtime_ns
    audit.clear_hash_cache()
    pairs = audit.find_near_duplicates(_distinct_real_images(), progress=False)
    assert list(pairs.columns) == ["file_a", "file_b", "distance", "method"]
    assert pairs.empty, f"distinct lesions flagged as duplicates:\n{pairs}"
    assert (sorted(os.listdir(folder)), folder.stat().st_mtime_ns) == before


@needs_images
def test_planted_copies_found_across_two_sets(planted):
    originals, copies, truth = planted
    pairs = audit.find_near_duplicates(originals, copies, progress=False)
    found = {(b, a) for a, b in zip(pairs.file_a, pairs.file_b)}
    assert found == {(c, o) for c, o in truth.items()}, pairs
    assert (pairs.distance <= audit.DEFAULT_THRESHOLD).all()
    assert set(pairs.method) == {audit.DEFAULT_METHOD}
    exact = pairs[pairs.file_b.str.endswith("_exact.jpg")]
    assert len(exact) == 6 and (exact.distance == 0).all()
    # every kind of copy is found, for all six sources
    for kind in TRANSFORMS:
        assert pairs.file_b.str.contains(f"_{kind}.").sum() == 6, kind


@needs_images
def test_planted_copies_found_within_one_set_and_clustered(planted):
    originals, copies, truth = planted
    files = audit.list_images(originals) + audit.list_images(copies)
    pairs = audit.find_near_duplicates(files, progress=False)
    clusters = audit.duplicate_clusters(pairs, files)
    assert len(clusters) == len(files) == 54
    # 6 clusters of an original + its 4 copies; the other 24 originals stay alone
    expected = {}
    for f in map(str, files):
        expected.setdefault(truth.get(f, f), set()).add(f)
    got = {}
    for f, c in clusters.items():
        got.setdefault(c, set()).add(f)
    assert sorted(map(sorted, got.values())) == sorted(map(sorted, expected.values()))
    assert clusters.nunique() == 30
    # each unordered pair once, file_a listed before file_b
    order = {str(f): i for i, f in enumerate(files)}
    assert all(order[a] < order[b] for a, b in zip(pairs.file_a, pairs.file_b))
    assert not pairs.duplicated(["file_a", "file_b"]).any()


def _brute_force(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Min over view pairs (0,0), (i,0), (0,j) of the Hamming distance; a, b bool [N, V, bits]."""
    full = (a[:, None, 0] != b[None, :, 0]).sum(-1)
    for i in range(1, a.shape[1]):
        full = np.minimum(full, (a[:, None, i] != b[None, :, 0]).sum(-1))
        full = np.minimum(full, (a[:, None, 0] != b[None, :, i]).sum(-1))
    return full


def _random_table(n: int, seed: int, prefix: str, near_of: np.ndarray | None = None) -> audit.HashTable:
    rng = np.random.default_rng(seed)
    bits = rng.integers(0, 2, size=(n, 3, 128)).astype(bool)
    if near_of is not None:  # plant close relatives so that small thresholds have hits
        m = min(n, len(near_of)) // 2
        bits[:m] = near_of[:m]
        flips = rng.random((m, 3, 128)) < 0.05
        bits[:m] ^= flips
    packed = np.packbits(bits, axis=-1)
    return audit.HashTable(tuple(f"{prefix}{i}" for i in range(n)), packed, "phash+dhash", audit.DEFAULT_CROPS)


def test_vectorised_search_matches_brute_force():
    a = _random_table(300, 1, "a")
    b = _random_table(170, 2, "b", near_of=a.unpacked())
    ua, ub = a.unpacked(), b.unpacked()
    d_ab, d_aa = _brute_force(ua, ub), _brute_force(ua, ua)
    for threshold in (10, 50):
        got = audit.hash_pairs(a, b, threshold, block=64)  # several blocks
        i, j = np.nonzero(d_ab <= threshold)
        want = {(f"a{x}", f"b{y}", int(d_ab[x, y])) for x, y in zip(i, j)}
        assert set(zip(got.file_a, got.file_b, got.distance)) == want and len(got) == len(want)
        got = audit.hash_pairs(a, None, threshold, block=64)
        i, j = np.nonzero(np.triu(d_aa <= threshold, k=1))
        want = {(f"a{x}", f"a{y}", int(d_aa[x, y])) for x, y in zip(i, j)}
        assert set(zip(got.file_a, got.file_b, got.distance)) == want and len(got) == len(want)
    assert len(audit.hash_pairs(a, b, 10)) > 0  # the planted relatives
    nn = audit.nearest_neighbour_distances(a, b, block=64)
    assert np.array_equal(nn.distance.to_numpy(), d_ab.min(1))
    assert all(d_ab[k, int(n[1:])] == d for k, (n, d) in enumerate(zip(nn.nearest, nn.distance)))
    self_d = d_aa + np.diag(np.full(len(ua), 10**6))
    nn_self = audit.nearest_neighbour_distances(a, block=64)
    assert np.array_equal(nn_self.distance.to_numpy(), self_d.min(1))
    hist = audit.hamming_distance_histogram(a, block=64)
    assert hist.shape == (129,)
    assert np.array_equal(hist, np.bincount(d_aa[np.triu_indices(len(ua), k=1)], minlength=129))
    assert np.array_equal(audit.hamming_distance_histogram(a, b, block=64), np.bincount(d_ab.ravel(), minlength=129))


def test_pair_search_of_10000_hashes():
    table = _random_table(10_000, 3, "f")
    start = time.perf_counter()
    pairs = audit.hash_pairs(table, None, 20)
    # measured and printed, not asserted: a slow or busy machine is not a wrong result
    print(f"pair search of 10,000 hashes: {time.perf_counter() - start:.1f} s")
    # random 128-bit hashes: P(distance <= 20) = 4e-16 per comparison, 2.5e8 comparisons:
    # no hits unless the search is wrong; planting one exact copy must give exactly one pair
    assert pairs.empty
    bits = table.bits.copy()
    bits[9_999] = bits[17]
    table2 = audit.HashTable(table.files, bits, table.method, table.crops)
    pairs = audit.hash_pairs(table2, None, 20)
    assert list(zip(pairs.file_a, pairs.file_b, pairs.distance)) == [("f17", "f9999", 0)]


class _Thumbnail(torch.nn.Module):
    """A fixed (not random) feature extractor: the mean-centred 8×8 thumbnail."""

    def __init__(self):
        super().__init__()
        self.pool = torch.nn.AdaptiveAvgPool2d(8)

    def forward(self, x):
        t = self.pool(x).flatten(1)
        return t - t.mean(1, keepdim=True)


@needs_images
def test_embedding_method_accepts_any_module(planted):
    originals, copies, truth = planted
    model = _Thumbnail().train()  # copies: cosine distance <= 0.03; distinct lesions: >= 0.07
    kw = dict(method="embedding", model=model, threshold=0.04, image_size=64, progress=False)
    pairs = audit.find_near_duplicates(originals, copies, **kw)
    assert {(b, a) for a, b in zip(pairs.file_a, pairs.file_b)} == set(truth.items())
    assert set(pairs.method) == {"embedding"} and (pairs.distance.between(-1e-6, 0.04)).all()
    assert audit.find_near_duplicates(originals, **kw).empty  # 30 distinct lesions
    assert model.training  # mode restored
    with pytest.raises(ValueError, match="explicit threshold"):
        audit.find_near_duplicates(originals, method="embedding", model=model)


@needs_meta
def test_grouped_split_is_grouped_stratified_and_seeded():
    meta = pd.read_csv(META)
    train, test = splits.grouped_split(meta, "patient_id", "target", test_size=0.2, seed=0)
    assert len(train) + len(test) == len(meta)
    assert not set(train.patient_id) & set(test.patient_id)
    assert abs(len(test) / len(meta) - 0.2) < 0.03
    # stratified: the malignant rate (1.8 %) is kept on both sides
    rate = meta.target.mean()
    assert abs(test.target.mean() - rate) < 0.002 and abs(train.target.mean() - rate) < 0.002
    again = splits.grouped_split(meta, "patient_id", "target", test_size=0.2, seed=0)[1]
    other = splits.grouped_split(meta, "patient_id", "target", test_size=0.2, seed=1)[1]
    assert test.index.equals(again.index) and not test.index.equals(other.index)
    # the leakage a naive row-level split makes, and the grouped split does not
    from sklearn.model_selection import train_test_split

    naive_train, naive_test = train_test_split(meta, test_size=0.2, random_state=0, stratify=meta.target)
    naive = splits.patient_overlap(naive_train, naive_test, "patient_id")
    clean = splits.patient_overlap(train, test, "patient_id")
    assert naive.leaked_fraction > 0.5 and naive.n_shared > 100
    assert clean.n_shared == 0 and clean.leaked_fraction == 0.0
    assert clean.test_groups == test.patient_id.nunique()
    missing = meta.head(50).copy()
    missing.loc[missing.index[3], "patient_id"] = None
    with pytest.raises(ValueError, match="duplicate_clusters"):
        splits.grouped_split(missing, "patient_id", "target")


@needs_meta
def test_balanced_sample_is_seeded_and_reports_drops():
    meta = pd.read_csv(META)
    sample, report = splits.balanced_sample(meta, "benign_malignant", seed=0)
    n_mal = int((meta.benign_malignant == "malignant").sum())
    assert sample.benign_malignant.value_counts().to_dict() == {"benign": n_mal, "malignant": n_mal}
    assert report.loc["benign", "dropped"] == (meta.benign_malignant == "benign").sum() - n_mal
    assert report.loc["malignant", "dropped"] == 0
    assert (report.available == report.kept + report.dropped).all()
    same, _ = splits.balanced_sample(meta, "benign_malignant", seed=0)
    other, _ = splits.balanced_sample(meta, "benign_malignant", seed=1)
    assert sample.index.equals(same.index) and not sample.index.equals(other.index)
    assert sample.index.is_monotonic_increasing  # original order kept
    small, rep = splits.balanced_sample(meta, "target", n_per_class=100, seed=3)
    assert small.target.value_counts().to_dict() == {0: 100, 1: 100} and rep.kept.tolist() == [100, 100]
    ratio, rep = splits.balanced_sample(meta, "benign_malignant", ratio={"benign": 1800, "malignant": 1497}, seed=0)
    assert rep.loc["malignant", "kept"] == n_mal
    assert rep.loc["benign", "kept"] == int(np.floor(1800 / 1497 * n_mal))
    with pytest.raises(ValueError, match="has 584"):
        splits.balanced_sample(meta, "benign_malignant", n_per_class=600)


def test_duplicate_clusters_follow_chains():
    files = ["a", "b", "c", "d", "e", "f"]
    pairs = pd.DataFrame({"file_a": ["c", "a", "e"], "file_b": ["b", "b", "d"]})
    clusters = audit.duplicate_clusters(pairs, files)
    assert clusters.to_dict() == {"a": 0, "b": 0, "c": 0, "d": 1, "e": 1, "f": 2}
    with pytest.raises(ValueError, match="not in files"):
        audit.duplicate_clusters(pairs, ["a", "b"])


@needs_images
def test_cli_writes_pairs_csv(planted, tmp_path, capsys):
    originals, copies, truth = planted
    out = tmp_path / "sub" / "pairs.csv"
    assert cli.main(["audit", "--a", str(originals), "--b", str(copies), "--out", str(out), "--quiet"]) == 0
    written = pd.read_csv(out)
    assert list(written.columns) == ["file_a", "file_b", "distance", "method"]
    assert {(b, a) for a, b in zip(written.file_a, written.file_b)} == set(truth.items())
    assert f"{len(truth)} near-duplicate pair(s)" in capsys.readouterr().out
    assert sorted(p.name for p in out.parent.iterdir()) == ["pairs.csv"]  # no temporary left
    # within one folder, stricter threshold: only the exact copies (distance 0) remain
    both = tmp_path / "both"
    shutil.copytree(originals, both / "o")
    shutil.copytree(copies, both / "c")
    assert cli.main(["audit", "--a", str(both), "--threshold", "0", "--out", str(out), "--quiet"]) == 0
    written = pd.read_csv(out)
    assert len(written) >= 6 and (written.distance == 0).all()
    assert written.file_b.str.endswith("_exact.jpg").sum() + written.file_a.str.endswith("_exact.jpg").sum() >= 6
    # a missing folder is an error for people, not a traceback
    assert cli.main(["audit", "--a", str(tmp_path / "nope"), "--out", str(out)]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_errors_say_what_to_do(tmp_path):
    with pytest.raises(ValueError, match="Unknown hash method"):
        audit.find_near_duplicates(tmp_path, method="ahash")
    with pytest.raises(audit.DataError, match="No image files"):
        audit.find_near_duplicates(tmp_path)
    table = _random_table(5, 0, "x")
    with pytest.raises(ValueError, match="outside 0..128"):
        audit.hash_pairs(table, None, 200)


# ----------------------------------------------------------------- chapter 01 helpers


@needs_images
def test_hash_dataset_names_images_by_id_like_the_tensor_store():
    from skinlesion_utils import data

    spec = data.get_spec("isic_balanced")
    want = sorted(r for r in spec.manifest_entries() if r.startswith("test/"))
    table = audit.hash_dataset("isic_balanced", "test", progress=False)
    assert list(table.files) == want and table.bits.shape == (660, 3, 16)
    # same bits as hashing the files by path
    picks = [0, 17, 359, 659]
    by_path = audit.compute_hashes([BAL / want[i] for i in picks], progress=False)
    assert np.array_equal(by_path.bits, table.bits[picks])
    # pairs come out as ids, ready to be saved without absolute paths (the test split holds
    # several photographs of one lesion, so there are pairs within it)
    pairs = audit.hash_pairs(table)
    assert len(pairs) > 0
    assert pairs.file_a.isin(want).all() and pairs.file_b.isin(want).all()
    with pytest.raises(audit.DataError, match="no split 'val'"):
        audit.hash_dataset("isic_balanced", "val")
    with pytest.raises(audit.DataError, match="tables, not images"):
        audit.hash_dataset("isic2020_metadata")


def test_paired_distances_match_brute_force():
    a = _random_table(40, 5, "a")
    b = _random_table(40, 6, "b", near_of=a.unpacked())
    want = np.diag(_brute_force(a.unpacked(), b.unpacked()))
    got = audit.paired_distances(a, b)
    assert got.dtype == np.int64 and np.array_equal(got, want)
    assert (got[:20] < 40).all() and (got[20:] > 30).all()  # planted relatives vs random rows
    with pytest.raises(ValueError, match="equal length"):
        audit.paired_distances(a, _random_table(3, 0, "c"))


@needs_images
def test_copy_distances_of_real_images_stay_under_the_threshold():
    files = _distinct_real_images()[::5]  # 6 real lesions, both classes
    cache_before = len(audit._HASH_CACHE)
    tmp_before = set(Path(tempfile.gettempdir()).glob("skinlesion-copies-*"))
    d = ch01_dataset.copy_distances(files)
    assert list(d.columns) == ["file", "edit", "distance"]
    assert len(d) == len(files) * len(ch01_dataset.COPY_TRANSFORMS)
    assert list(d.edit[: len(ch01_dataset.COPY_TRANSFORMS)]) == list(ch01_dataset.COPY_TRANSFORMS)
    assert (d.distance <= audit.DEFAULT_THRESHOLD).all(), d
    # the originals' hashes stay cached, the temporary copies' do not; no folder is left
    assert len(audit._HASH_CACHE) - cache_before <= len(files)
    assert set(Path(tempfile.gettempdir()).glob("skinlesion-copies-*")) == tmp_before
    # an edited copy compared with a *different* lesion is far away
    only = ch01_dataset.copy_distances(files, ["half size"])
    assert len(only) == len(files)
    originals = audit.compute_hashes(files, progress=False)
    shifted = audit.HashTable(originals.files[1:] + originals.files[:1], np.roll(originals.bits, -1, axis=0), originals.method, originals.crops)
    assert (audit.paired_distances(originals, shifted) > 2 * audit.DEFAULT_THRESHOLD).all()
    with pytest.raises(ValueError, match="Unknown transform"):
        ch01_dataset.copy_distances(files, ["rotate"])


def test_annotate_pairs_and_summary_count_what_leaks():
    pairs = pd.DataFrame({
        "file_a": ["train/malignant/1.jpg", "train/malignant/2.jpg", "test/benign/3.jpg", "train/benign/4.jpg"],
        "file_b": ["malignant/ISIC_1.jpg", "malignant/ISIC_1.jpg", "benign/ISIC_2.jpg", "malignant/ISIC_3.jpg"],
        "distance": [0, 3, 0, 8],
        "method": "phash+dhash",
    })
    ann = audit.annotate_pairs(pairs, "isic_balanced", "ext")
    assert list(ann.columns) == ["dataset_a", "file_a", "split_a", "label_a", "dataset_b", "file_b", "split_b", "label_b", "distance", "method"]
    assert ann.split_a.tolist() == ["train", "train", "test", "train"] and set(ann.split_b) == {""}
    assert ann.label_b.tolist() == ["malignant", "malignant", "benign", "malignant"]
    assert set(ann.dataset_a) == {"isic_balanced"} and set(ann.dataset_b) == {"ext"}
    s = ch01_dataset.pair_summary(ann, n_a=10, n_b=4)
    assert s == {
        "pairs": 4, "exact_pairs": 2, "a_images": 10, "b_images": 4, "a_with_copy": 4, "b_with_copy": 3,
        "b_fraction_with_copy": 0.75, "label_disagreements": 1, "b_with_copy_by_split_a": {"test": 1, "train": 2},
    }
    within = audit.annotate_pairs(pairs.assign(file_b=["test/malignant/9.jpg"] * 4), "isic_balanced")
    assert set(within.dataset_b) == {"isic_balanced"} and set(within.split_b) == {"test"}
    empty = audit.annotate_pairs(pairs.iloc[:0], "a", "b")
    assert ch01_dataset.pair_summary(empty, 5, 0)["pairs"] == 0


def test_results_files_round_trip(tmp_path, monkeypatch):
    monkeypatch.setenv(results.ENV_RESULTS, str(tmp_path / "res"))
    out = results.results_dir("01_dataset", "ci")
    assert out == tmp_path / "res" / "ci" / "01_dataset" and not out.exists()
    with pytest.raises(FileNotFoundError, match="SKINLESION_PROFILE=ci"):
        audit.read_audit_pairs("external", "ci")
    pairs = audit.annotate_pairs(
        pd.DataFrame({"file_a": ["train/benign/1.jpg"], "file_b": ["benign/ISIC_1.jpg"], "distance": [2], "method": ["phash+dhash"]}),
        "isic_balanced", "isic2019_external_sample",
    )
    results.write_csv(out / audit.PAIRS_FILES["external"], pairs)
    back = audit.read_audit_pairs("external", "ci")
    assert back.equals(pairs)  # split_b "" survives the round trip (not NaN)
    path = results.write_json(out / "summary.json", {"n": np.int64(3), "f": np.float32(0.5), "s": (1, 2)})
    import json

    assert json.loads(path.read_text()) == {"n": 3, "f": 0.5, "s": [1, 2]}
    assert sorted(p.name for p in out.iterdir()) == ["pairs_external.csv", "summary.json"]
    with pytest.raises(ValueError, match="expected one of"):
        audit.read_audit_pairs("within", "ci")
    with pytest.raises(ValueError, match="chapter stem"):
        results.results_dir("01_dataset/x", "ci")
    monkeypatch.delenv(results.ENV_RESULTS)
    repo = Path(audit.__file__).resolve().parents[1]
    assert results.results_dir("01_dataset", "ci") == repo / "results" / "ci" / "01_dataset"  # a checkout


@needs_images
def test_pair_gallery_shows_each_pair_side_by_side():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pairs = pd.DataFrame({
        "file_a": ["train/benign/3.jpg", "train/malignant/2.jpg"],
        "file_b": ["test/benign/1.jpg", "test/malignant/1.jpg"],
        "distance": [3, 7],
    })
    fig = ch01_dataset.pair_gallery(pairs, BAL, size=32, ncols=4, title="two pairs")
    titles = [ax.get_title() for ax in fig.axes]
    assert len(fig.axes) == 4
    assert titles[0].startswith("train/benign/3") and titles[1] == "test/benign/1\nd = 3"
    assert titles[3] == "test/malignant/1\nd = 7"
    assert fig.axes[0].images[0].get_array().shape == (32, 32, 3)
    plt.close(fig)
    with pytest.raises(ValueError, match="must be even"):
        ch01_dataset.pair_gallery(pairs, BAL, ncols=3)
    with pytest.raises(ValueError, match="no pairs"):
        ch01_dataset.pair_gallery(pairs.iloc[:0], BAL)


def test_jpeg_fingerprints_tell_encoders_apart(tmp_path):
    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 256, (32, 48, 3), dtype=np.uint8))
    for cls in ("benign", "malignant"):
        (tmp_path / cls).mkdir()
    img.save(tmp_path / "benign" / "a.jpg", quality=90, subsampling=0, dpi=(72, 72))
    img.save(tmp_path / "benign" / "b.jpg", quality=90, subsampling=0, dpi=(72, 72))
    exif = Image.Exif()
    exif[0x010F] = "NIKON CORPORATION"
    img.save(tmp_path / "malignant" / "c.jpg", quality=75, subsampling=2, dpi=(300, 300), exif=exif)
    img.save(tmp_path / "malignant" / "d.png")
    fp = audit.jpeg_fingerprints(tmp_path).set_index("id")
    assert list(fp.index) == ["benign/a.jpg", "benign/b.jpg", "malignant/c.jpg", "malignant/d.png"]
    assert fp.label.tolist() == ["benign", "benign", "malignant", "malignant"]
    assert fp.loc["benign/a.jpg", "quant_table"] == fp.loc["benign/b.jpg", "quant_table"] != fp.loc["malignant/c.jpg", "quant_table"]
    assert fp.subsampling.tolist() == ["4:4:4", "4:4:4", "4:2:0", ""]
    assert fp.loc["benign/a.jpg", "density"] == "72x72" and fp.loc["malignant/c.jpg", "density"] == "300x300"
    assert fp.exif.tolist() == [False, False, True, False]
    assert fp.loc["malignant/c.jpg", "exif_make"] == "NIKON CORPORATION"
    assert fp.loc["malignant/d.png", "quant_table"] == ""
    assert (fp.bytes > 0).all()
    only = audit.jpeg_fingerprints(tmp_path, ["malignant/c.jpg"])
    assert only.id.tolist() == ["malignant/c.jpg"]
