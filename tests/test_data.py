"""Tests of skinlesion_utils.data on the real images of $SKINLESION_DATA.

The download path is exercised for real against a local git remote and a local HTTP server
built here from real files (there is no internet on CI).
"""
from __future__ import annotations

import functools
import hashlib
import http.server
import io
import os
import shutil
import subprocess
import tarfile
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from skinlesion_utils import data, profiles, splits

DATA = Path(os.environ.get("SKINLESION_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
BAL = DATA / "isic_balanced"
pytestmark = pytest.mark.skipif(not BAL.is_dir(), reason="needs the course data folder: set SKINLESION_DATA")

TINY_FILES = ["train/benign/3.jpg", "train/malignant/2.jpg", "test/benign/1.jpg", "test/malignant/1.jpg"]


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    """Every test gets its own cache folder, so nothing leaks between tests or into .cache."""
    monkeypatch.setenv(profiles.ENV_CACHE, str(tmp_path / "cache"))
    return tmp_path / "cache"


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def tiny_spec(tmp_path, monkeypatch):
    """A 4-file dataset laid out like isic_balanced, with a manifest made from the real files."""
    manifest = tmp_path / "tiny.sha256"
    manifest.write_text("".join(f"{_sha(BAL / rel)}  ./{rel}\n" for rel in TINY_FILES))
    spec = data.DatasetSpec("tiny_balanced", str(manifest), "images", splits=("train", "test"), repo_path="data/data_ISIC2020_part")
    monkeypatch.setitem(data.DATASETS, spec.name, spec)
    return spec


def _make_remote(tmp_path: Path) -> Path:
    """A local git repository shaped like the paper's (data/data_ISIC2020_part/...)."""
    repo = tmp_path / "remote"
    for rel in TINY_FILES:
        dest = repo / "data" / "data_ISIC2020_part" / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(BAL / rel, dest)
    (repo / "README.md").write_text("paper repo stand-in\n")
    git = functools.partial(subprocess.run, check=True, cwd=repo, capture_output=True)
    git(["git", "init", "-q", "-b", "main"])
    git(["git", "-c", "user.email=t@t", "-c", "user.name=t", "add", "-A"])
    git(["git", "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "data"])
    git(["git", "config", "uploadpack.allowFilter", "true"])
    git(["git", "config", "uploadpack.allowAnySHA1InWant", "true"])
    return repo


@pytest.fixture
def http_root(tmp_path):
    """A local HTTP server serving tmp_path/www; yields (folder, base URL)."""
    www = tmp_path / "www"
    www.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(www))
    handler.log_message = lambda *a, **k: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield www, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


# --------------------------------------------------------------------------- registry


def test_registry_manifests_come_from_the_course_data():
    for name, manifest in [("isic_balanced", "isic_balanced.sha256"), ("isic2019_external_sample", "isic2019_external_sample.sha256"),
                           ("isic2019_external", "isic2019_external_full.sha256"), ("isic2020_metadata", "isic2020_metadata.sha256")]:
        shipped = data.DATASETS[name].manifest_path.read_bytes()
        assert shipped == (DATA / "manifests" / manifest).read_bytes(), name
    assert len(data.DATASETS["isic_balanced"].manifest_entries()) == 3297
    assert len(data.DATASETS["isic2019_external"].manifest_entries()) == 3297


def test_unknown_dataset_name_lists_valid_names():
    with pytest.raises(data.DataError, match=r"Unknown dataset 'isic2018'.*isic_balanced.*isic2020_metadata"):
        data.locate("isic2018")


def test_unknown_profile_is_a_clear_error(monkeypatch):
    monkeypatch.setenv(profiles.ENV_PROFILE, "gpu")
    with pytest.raises(ValueError, match=r"Unknown profile 'gpu'.*ci, full.*SKINLESION_PROFILE=ci"):
        profiles.profile()
    assert profiles.profile("FULL").image_size == 224


def test_split_labels_follow_the_store_order_without_decoding():
    store = data.ImageTensorStore.from_dataset("isic_balanced", split="train", resolution=16, progress=False)
    labels = splits.split_labels("isic_balanced", "train")
    assert np.array_equal(labels, store.labels.numpy())
    assert np.bincount(labels).tolist() == [1440, 1197]
    assert len(splits.split_labels("isic_balanced")) == 3297
    with pytest.raises(data.DataError, match="no split 'val'"):
        splits.split_labels("isic_balanced", "val")


def test_stratified_subset_is_fixed_stratified_and_checked():
    labels = splits.split_labels("isic_balanced", "train")
    sub = splits.stratified_subset("isic_balanced", "train", 2000)
    assert len(sub) == len(set(sub)) == 2000 and sub == sorted(sub) and 0 <= sub[0] and sub[-1] < 2637
    counts = np.bincount(labels[sub])
    assert abs(counts[1] - 2000 * 1197 / 2637) <= 1 and counts.sum() == 2000
    assert sub == splits.stratified_subset("isic_balanced", "train", 2000)  # the same every call
    assert sub != splits.stratified_subset("isic_balanced", "train", 2000, seed=1)
    assert splits.stratified_subset("isic_balanced", "train", 2637) == list(range(2637))
    for bad in (1, 2638):
        with pytest.raises(ValueError, match="the split holds 2637"):
            splits.stratified_subset("isic_balanced", "train", bad)


def test_dataset_table_counts():
    table = data.dataset_table("isic_balanced")
    assert table.loc["train"].tolist() == [1440, 1197, 2637]
    assert table.loc["test"].tolist() == [360, 300, 660]
    assert table.loc["total", "total"] == 3297


# --------------------------------------------------------------------------- locate / verify


def test_locate_uses_env_folder_and_never_writes_there(isolated_cache):
    before = {p: p.stat().st_mtime_ns for p in BAL.rglob("*")}
    root = data.locate("isic_balanced")
    assert root == BAL
    assert {p: p.stat().st_mtime_ns for p in BAL.rglob("*")} == before
    assert list((isolated_cache / "verified").glob("isic_balanced-*.ok")), "verification stamp goes to the cache"


def test_locate_offline_without_data_explains_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setenv(data.ENV_DATA, str(tmp_path / "empty"))
    with pytest.raises(data.DataNotAvailableError, match=r"(?s)isic_balanced.*not found on disk.*SKINLESION_DATA"):
        data.locate("isic_balanced", download=False)


def test_checksum_mismatch_names_the_file(tmp_path, tiny_spec):
    root = tmp_path / "copy"
    for rel in TINY_FILES:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(BAL / rel, root / rel)
    assert data.verify("tiny_balanced", root) == 4
    with open(root / TINY_FILES[1], "ab") as f:
        f.write(b"\0")
    with pytest.raises(data.ChecksumError, match=r"Checksum mismatch for .*train/malignant/2\.jpg.*Fix: delete it"):
        data.verify("tiny_balanced", root)


def test_missing_file_in_dataset_folder(tmp_path, tiny_spec):
    root = tmp_path / "copy"
    (root / "train/benign").mkdir(parents=True)
    shutil.copy(BAL / TINY_FILES[0], root / TINY_FILES[0])
    with pytest.raises(data.DataError, match=r"incomplete: 3 of 4 files are missing"):
        data.verify("tiny_balanced", root)


# --------------------------------------------------------------------------- fetch


def test_fetch_by_sparse_git_checkout(tmp_path, tiny_spec):
    remote = _make_remote(tmp_path)
    out = data.fetch("tiny_balanced", tmp_path / "dl", method="git", repo_url=f"file://{remote}")
    assert out == tmp_path / "dl" / "tiny_balanced"
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.jpg")) == sorted(TINY_FILES)
    assert not (out / "README.md").exists()
    assert not list((tmp_path / "dl").glob(".tiny_balanced-*")), "temporary checkout is removed"
    # Already verified: a second fetch needs no source at all.
    assert data.fetch("tiny_balanced", tmp_path / "dl", method="git", repo_url="file:///nonexistent") == out


def test_fetch_refetches_only_damaged_files(tmp_path, tiny_spec):
    remote = _make_remote(tmp_path)
    out = data.fetch("tiny_balanced", tmp_path / "dl", method="git", repo_url=f"file://{remote}")
    (out / TINY_FILES[2]).write_bytes(b"damaged")
    data.fetch("tiny_balanced", tmp_path / "dl", method="git", repo_url=f"file://{remote}")
    assert _sha(out / TINY_FILES[2]) == _sha(BAL / TINY_FILES[2])


def _github_like_archive(path: Path, extra: dict[str, bytes] | None = None) -> None:
    with tarfile.open(path, "w:gz") as tf:
        for rel in TINY_FILES:
            tf.add(BAL / rel, arcname=f"ASFF-ResNet50-enhanced-main/data/data_ISIC2020_part/{rel}")
        for name, blob in (extra or {}).items():
            info = tarfile.TarInfo(name)
            info.size = len(blob)
            tf.addfile(info, io.BytesIO(blob))


def test_fetch_from_archive_over_http(tmp_path, tiny_spec, http_root):
    www, base = http_root
    _github_like_archive(www / "repo.tar.gz")
    out = data.fetch("tiny_balanced", tmp_path / "dl", method="archive", archive_url=f"{base}/repo.tar.gz")
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.jpg")) == sorted(TINY_FILES)
    assert not list(out.rglob("*.part"))


def test_fetch_refuses_archive_members_outside_target(tmp_path, tiny_spec, http_root):
    www, base = http_root
    _github_like_archive(www / "evil.tar.gz", extra={"ASFF-ResNet50-enhanced-main/../../evil.txt": b"pwned"})
    with pytest.raises(data.DataError, match=r"Refusing archive member .*evil\.txt.*outside"):
        data.fetch("tiny_balanced", tmp_path / "dl", method="archive", archive_url=f"{base}/evil.tar.gz")
    assert not list(tmp_path.rglob("evil.txt"))


def test_fetch_tables_over_http_and_checksum(tmp_path, http_root):
    www, base = http_root
    meta = DATA / "isic2020_metadata"
    for f in meta.iterdir():
        shutil.copy(f, www / f.name)
    urls = {f.name: f"{base}/{f.name}" for f in meta.iterdir()}
    out = data.fetch("isic2020_metadata", tmp_path / "dl", urls=urls)
    assert _sha(out / "ISIC_2020_Training_GroundTruth_v2.csv") == _sha(meta / "ISIC_2020_Training_GroundTruth_v2.csv")
    # A server that serves other bytes: nothing is kept.
    (www / "ISIC_2020_Training_Duplicates.csv").write_text("image_name_1,image_name_2\n")
    with pytest.raises(data.ChecksumError, match=r"Checksum mismatch for http://.*Duplicates\.csv.*Nothing was saved"):
        data.fetch("isic2020_metadata", tmp_path / "dl2", urls=urls)
    assert not (tmp_path / "dl2" / "isic2020_metadata" / "ISIC_2020_Training_Duplicates.csv").exists()
    assert not list((tmp_path / "dl2").rglob("*.part"))


def test_fetch_offline_gives_one_clear_message(tmp_path, tiny_spec):
    # Port 9 (discard) on loopback refuses connections: the same failure as being offline.
    with pytest.raises(data.DataNotAvailableError, match=r"(?s)not available.*How to get it.*export SKINLESION_DATA="):
        data.fetch("tiny_balanced", tmp_path / "dl", method="archive", archive_url="http://127.0.0.1:9/repo.tar.gz")
    with pytest.raises(data.DataNotAvailableError, match=r"(?s)git could not clone.*SKINLESION_DATA"):
        data.fetch("tiny_balanced", tmp_path / "dl", method="git", repo_url="http://127.0.0.1:9/repo.git")


def test_sample_has_no_download_source(tmp_path, monkeypatch):
    monkeypatch.setenv(data.ENV_DATA, str(tmp_path / "nothing"))
    with pytest.raises(data.DataNotAvailableError, match=r"only in the course's shared data folder.*isic2019_external"):
        data.locate("isic2019_external_sample")


# --------------------------------------------------------------------------- tensor store


def test_store_from_dataset_decodes_once_and_caches(isolated_cache):
    store = data.ImageTensorStore.from_dataset("isic_balanced", "test", resolution=32, progress=False)
    assert store.images.shape == (660, 3, 32, 32) and store.images.dtype == torch.uint8
    assert store.class_counts() == {"benign": 360, "malignant": 300}
    assert store.ids[0].startswith("test/") and all(i.endswith(".jpg") for i in store.ids)
    assert all(int(lab) == ("malignant" in i) for i, lab in zip(store.ids, store.labels))
    cached = list((isolated_cache / "tensors").glob(f"isic_balanced-test-*-32-squash-{data.DECODE_METHOD}.pt"))
    assert len(cached) == 1
    again = data.ImageTensorStore.from_dataset("isic_balanced", "test", resolution=32, progress=False)
    assert torch.equal(again.images, store.images) and again.ids == store.ids
    # the pixels are the real file's, resized
    ref = np.asarray(Image.open(BAL / store.ids[5]).convert("RGB").resize((32, 32), Image.BILINEAR, reducing_gap=None))
    assert np.array_equal(store.images[5].permute(1, 2, 0).numpy(), ref)


def test_store_subset_and_dataset():
    store = data.ImageTensorStore.from_dataset("isic_balanced", "test", resolution=16, progress=False)
    sub = store.subset([0, 659])
    assert len(sub) == 2 and sub.ids == [store.ids[0], store.ids[659]]
    x, y, i = store.dataset()[659]
    assert x.dtype == torch.float32 and 0 <= x.min() and x.max() <= 1 and y == 1 and i == store.ids[659]


def test_unknown_split_is_an_error():
    with pytest.raises(data.DataError, match=r"no split 'val'.*\['train', 'test'\]"):
        data.ImageTensorStore.from_dataset("isic_balanced", "val", resolution=16)


# --------------------------------------------------------------------------- bad input folders


def _folder(tmp_path: Path, layout: dict[str, list[str]]) -> Path:
    root = tmp_path / "imgs"
    for cls, rels in layout.items():
        (root / cls).mkdir(parents=True, exist_ok=True)
        for k, rel in enumerate(rels):
            shutil.copy(BAL / rel, root / cls / f"{k}.jpg")
    return root


def test_from_folder_reads_any_size_and_format(tmp_path):
    root = _folder(tmp_path, {"benign": [TINY_FILES[0]], "malignant": [TINY_FILES[1]]})
    Image.open(BAL / TINY_FILES[2]).resize((300, 200)).save(root / "benign" / "wide.png")
    Image.open(BAL / TINY_FILES[3]).save(root / "malignant" / "m.bmp")
    store = data.ImageTensorStore.from_folder(root, resolution=24, progress=False)
    assert store.images.shape == (4, 3, 24, 24)
    assert store.labels.tolist() == [0, 0, 1, 1]
    assert store.ids == ["benign/0.jpg", "benign/wide.png", "malignant/0.jpg", "malignant/m.bmp"]


def test_missing_folder(tmp_path):
    with pytest.raises(data.DataError, match=r"Image folder .*nowhere does not exist"):
        data.ImageTensorStore.from_folder(tmp_path / "nowhere")


def test_wrong_layout(tmp_path):
    root = tmp_path / "flat"
    root.mkdir()
    shutil.copy(BAL / TINY_FILES[0], root / "a.jpg")
    with pytest.raises(data.DataError, match=r"Wrong layout in .*flat: expected sub-folders benign/ and malignant/.*1 loose image"):
        data.ImageTensorStore.from_folder(root)


def test_unknown_class_folder(tmp_path):
    root = _folder(tmp_path, {"benign": [TINY_FILES[0]], "malignant": [TINY_FILES[1]], "nevus": [TINY_FILES[2]]})
    with pytest.raises(data.DataError, match=r"Unknown class folder\(s\) \['nevus'\]"):
        data.ImageTensorStore.from_folder(root)


def test_empty_class_folder(tmp_path):
    root = _folder(tmp_path, {"benign": [TINY_FILES[0]], "malignant": []})
    with pytest.raises(data.DataError, match=r"Class folder .*malignant is empty"):
        data.ImageTensorStore.from_folder(root)


def test_missing_class_folder(tmp_path):
    root = _folder(tmp_path, {"benign": [TINY_FILES[0]]})
    with pytest.raises(data.DataError, match=r"Class folder .*malignant is missing"):
        data.ImageTensorStore.from_folder(root)


def test_non_image_file(tmp_path):
    root = _folder(tmp_path, {"benign": [TINY_FILES[0]], "malignant": [TINY_FILES[1]]})
    (root / "malignant" / "notes.txt").write_text("x")
    with pytest.raises(data.DataError, match=r"Not an image file: .*notes\.txt"):
        data.ImageTensorStore.from_folder(root)


def test_corrupt_jpeg(tmp_path):
    root = _folder(tmp_path, {"benign": [TINY_FILES[0]], "malignant": [TINY_FILES[1]]})
    (root / "benign" / "bad.jpg").write_bytes(b"not a jpeg at all")
    with pytest.raises(data.DataError, match=r"Cannot decode image .*bad\.jpg.*corrupt, truncated"):
        data.ImageTensorStore.from_folder(root, progress=False)


def test_truncated_jpeg(tmp_path):
    root = _folder(tmp_path, {"benign": [TINY_FILES[0]], "malignant": [TINY_FILES[1]]})
    blob = (BAL / TINY_FILES[2]).read_bytes()
    (root / "malignant" / "cut.jpg").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(data.DataError, match=r"Cannot decode image .*cut\.jpg"):
        data.ImageTensorStore.from_folder(root, progress=False)


@pytest.mark.parametrize("mode", ["L", "LA", "RGBA", "P", "CMYK", "I;16"])
def test_non_rgb_modes_are_converted(tmp_path, mode):
    rgb = Image.open(BAL / TINY_FILES[0]).convert("RGB")
    if mode == "I;16":
        img = Image.fromarray((np.asarray(rgb.convert("L"), dtype=np.uint16) * 257).astype("<u2"))
        assert img.mode == "I;16"
    else:
        img = rgb.convert(mode)
    path = tmp_path / f"x.{'jpg' if mode in ('L', 'CMYK') else 'png'}"
    img.save(path)
    out = data.decode_image(path, 224)  # native size: no resampling blurs the check below
    assert out.shape == (3, 224, 224) and out.dtype == np.uint8
    if mode in ("L", "LA", "I;16"):
        assert np.array_equal(out[0], out[1]) and np.array_equal(out[1], out[2]), "grey copied to 3 channels"
    if mode == "I;16":
        assert out.min() == 0 and out.max() == 255, "16-bit rescaled to the full 8-bit range"


def test_transparent_pixels_become_white(tmp_path):
    img = Image.new("RGBA", (8, 8), (10, 20, 30, 0))
    img.save(tmp_path / "t.png")
    assert (data.decode_image(tmp_path / "t.png", 8) == 255).all()


def test_unsupported_mode_is_named():
    with pytest.raises(data.DataError, match=r"Unsupported image mode 'XYZ'"):
        class Fake:
            mode = "XYZ"
        data.to_rgb(Fake(), "f.png")


def test_failed_fetch_leaves_no_empty_folder_and_cache_partial_is_completed(tmp_path, tiny_spec, isolated_cache, monkeypatch):
    monkeypatch.setenv(data.ENV_DATA, str(tmp_path / "nothing-here"))
    with pytest.raises(data.DataNotAvailableError):
        data.fetch("tiny_balanced", method="archive", archive_url="http://127.0.0.1:9/repo.tar.gz")
    assert not (isolated_cache / "data" / "tiny_balanced").exists()
    # A partial download in the cache: locate completes it through fetch (here: from a local remote).
    remote = _make_remote(tmp_path)
    partial = isolated_cache / "data" / "tiny_balanced" / TINY_FILES[0]
    partial.parent.mkdir(parents=True)
    shutil.copy(BAL / TINY_FILES[0], partial)
    monkeypatch.setattr(data, "fetch", functools.partial(data.fetch, method="git", repo_url=f"file://{remote}"))
    root = data.locate("tiny_balanced")
    assert sorted(p.relative_to(root).as_posix() for p in root.rglob("*.jpg")) == sorted(TINY_FILES)
