"""Datasets: registry, download + verification, locating, and the decode-once tensor store.

Taught in chapter 00 (``chapters/00_setup_and_data``); the external set is used in chapter 08.

The flow::

    locate(name) ──► folder of images ──► ImageTensorStore (uint8 N×3×R×R + labels + ids)

* :data:`DATASETS` — every dataset the book uses, each with a sha256 manifest shipped in
  ``skinlesion_utils/manifests`` (copied from the course's data folder, never hand-typed).
* :func:`locate` — ``$SKINLESION_DATA/<name>`` if it is there, else the user cache, else
  :func:`fetch`.
* :func:`fetch` — downloads from the paper's public repository (sparse git checkout, or the
  archive) and the ISIC challenge's file host; writes atomically, verifies every sha256,
  refuses archive members that would land outside the target folder, and offline fails with
  one message that says how to get the data.
* :class:`ImageTensorStore` — every image decoded once into a uint8 tensor cached under the
  cache folder (keyed by manifest hash, resolution, resize and decode method); never in the data
  folder. Decoding applies EXIF orientation and refuses images over :data:`MAX_IMAGE_PIXELS`.

Labels: benign = 0, malignant = 1. Every sample keeps its file id (path relative to the
dataset folder, e.g. ``train/benign/12.jpg``).
"""
from __future__ import annotations

import hashlib
import io
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Iterable, Sequence

import numpy as np
import torch

from .errors import ChecksumError, DataError, DataNotAvailableError  # noqa: F401 (re-exported)
from .profiles import default_cache_dir
from .results import atomic_open, write_bytes

ENV_DATA = "SKINLESION_DATA"
CLASSES: tuple[str, str] = ("benign", "malignant")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
MANIFEST_DIR = Path(__file__).with_name("manifests")

PAPER_REPO = "https://github.com/Grapesea/ASFF-ResNet50-enhanced"
ISIC_2020_HOST = "https://isic-challenge-data.s3.amazonaws.com/2020"


@dataclass(frozen=True)
class DatasetSpec:
    """One entry of :data:`DATASETS`.

    Attributes:
        name: registry key, also the folder name under ``$SKINLESION_DATA``.
        manifest: file name in ``skinlesion_utils/manifests`` (``sha256sum`` format).
        kind: ``"images"`` (class folders of images) or ``"tables"`` (CSV files).
        splits: split sub-folders (``("train", "test")``) or ``()`` for a flat
            ``{benign,malignant}/*`` layout.
        repo_path: folder inside the paper's repository holding this dataset, if any.
        urls: direct download URLs (file name → URL), for datasets hosted as single files.
        description: one line for tables and error messages.
    """

    name: str
    manifest: str
    kind: str
    splits: tuple[str, ...] = ()
    repo_path: str | None = None
    urls: dict = field(default_factory=dict)
    description: str = ""

    @property
    def manifest_path(self) -> Path:
        """The manifest file (a bare name is looked up in the shipped ``manifests`` folder)."""
        return MANIFEST_DIR / self.manifest

    def manifest_entries(self) -> dict[str, str]:
        """Relative path → sha256, read from the manifest."""
        return read_manifest(self.manifest_path)

    def manifest_hash(self) -> str:
        """sha256 of the manifest itself: identifies this exact version of the dataset."""
        return hashlib.sha256(self.manifest_path.read_bytes()).hexdigest()


DATASETS: dict[str, DatasetSpec] = {
    spec.name: spec
    for spec in (
        DatasetSpec(
            "isic_balanced",
            "isic_balanced.sha256",
            "images",
            splits=("train", "test"),
            repo_path="data/data_ISIC2020_part",
            description="The paper's 3,297 ISIC-archive images, 224×224, train/test × benign/malignant",
        ),
        DatasetSpec(
            "isic2019_external",
            "isic2019_external_full.sha256",
            "images",
            splits=("train", "test"),
            repo_path="data/data-ISIC2019_part/data3",
            description="The paper's external set: 3,297 ISIC 2019 images at original size",
        ),
        DatasetSpec(
            "isic2019_external_sample",
            "isic2019_external_sample.sha256",
            "images",
            description="1,000-image stratified sample of the external set, longer side ≤ 512 px "
            "(exists only in the course's data folder)",
        ),
        DatasetSpec(
            "isic2020_metadata",
            "isic2020_metadata.sha256",
            "tables",
            urls={
                "ISIC_2020_Training_GroundTruth_v2.csv": f"{ISIC_2020_HOST}/ISIC_2020_Training_GroundTruth_v2.csv",
                "ISIC_2020_Training_Duplicates.csv": f"{ISIC_2020_HOST}/ISIC_2020_Training_Duplicates.csv",
            },
            description="Official ISIC 2020 ground truth v2 (33,126 rows) and duplicates list",
        ),
    )
}


# --------------------------------------------------------------------------- manifests


def read_manifest(path: Path) -> dict[str, str]:
    """Parse a ``sha256sum`` file into {relative posix path: sha256} (leading ``./`` dropped)."""
    entries: dict[str, str] = {}
    for line in Path(path).read_text().splitlines():
        if not line.strip():
            continue
        digest, rel = line.split(maxsplit=1)
        rel = rel.lstrip("*")
        entries[str(PurePosixPath(rel))] = digest
    return entries


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def get_spec(name: str) -> DatasetSpec:
    """The registry entry for ``name``; an unknown name lists the valid ones."""
    try:
        return DATASETS[name]
    except KeyError:
        raise DataError(
            f"Unknown dataset {name!r}. Valid names: {', '.join(DATASETS)}. "
            "Fix: pass one of these to locate()/fetch()/ImageTensorStore.from_dataset()."
        ) from None


def verify(name: str, root: Path, *, full: bool = True, progress: bool = False) -> int:
    """Check that ``root`` holds every file of dataset ``name`` with the manifest's sha256.

    Args:
        name: registry name.
        root: the dataset's folder.
        full: hash every file (``False``: only check that every file exists).

    Returns:
        the number of files checked.

    Raises:
        DataError: a file is missing. ChecksumError: a file's bytes differ.
    """
    spec = get_spec(name)
    entries = spec.manifest_entries()
    root = Path(root)
    missing = [rel for rel in entries if not (root / rel).is_file()]
    if missing:
        raise DataError(
            f"Dataset {name!r} at {root} is incomplete: {len(missing)} of {len(entries)} files "
            f"are missing (first: {missing[0]}). Fix: point {ENV_DATA} at a complete copy, or "
            f"delete {root} and run skinlesion_utils.data.fetch({name!r})."
        )
    if not full:
        return len(entries)
    items = list(entries.items())
    it = items
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(items, desc=f"verify {name}", unit="file")
    for rel, digest in it:
        found = sha256_file(root / rel)
        if found != digest:
            raise ChecksumError(
                f"Checksum mismatch for {root / rel}: expected sha256 {digest[:16]}…, found "
                f"{found[:16]}…. The file was modified or damaged. Fix: delete it and run "
                f"skinlesion_utils.data.fetch({name!r}) (already verified files are kept), "
                f"or restore it from the original source."
            )
    return len(items)


# ---------------------------------------------------------------------------- locating


def data_roots() -> list[Path]:
    """Folders searched for datasets, in order: ``$SKINLESION_DATA``, then the user cache."""
    roots = []
    env = os.environ.get(ENV_DATA)
    if env:
        roots.append(Path(env).expanduser())
    roots.append(default_cache_dir() / "data")
    return roots


def inside_data_folder(path: str | os.PathLike) -> Path | None:
    """``$SKINLESION_DATA`` when ``path`` is that folder or lies below it (it is only ever read:
    the CLI and every writer refuse such a path), else ``None``."""
    env = os.environ.get(ENV_DATA)
    if not env:
        return None
    root = Path(env).expanduser().resolve()
    return root if Path(path).resolve().is_relative_to(root) else None


def _stamp_path(name: str, root: Path) -> Path:
    key = hashlib.sha256(f"{name}|{root.resolve()}".encode()).hexdigest()[:16]
    return default_cache_dir() / "verified" / f"{name}-{key}.ok"


def _quick_signature(name: str, root: Path) -> str:
    """Cheap fingerprint (sizes and mtimes of the manifest's files) to skip re-hashing."""
    h = hashlib.sha256(get_spec(name).manifest_hash().encode())
    for rel in sorted(get_spec(name).manifest_entries()):
        st = (root / rel).stat()
        # ctime too: an edit that keeps a file's size and restores its mtime (os.utime, cp -p)
        # still changes its ctime, which no user call can set back.
        h.update(f"{rel}|{st.st_size}|{st.st_mtime_ns}|{st.st_ctime_ns}".encode())
    return h.hexdigest()


def ensure_verified(name: str, root: Path) -> Path:
    """Verify ``root`` once (full sha256) and remember it in the cache until a file changes: its
    size, mtime or ctime (which any write updates and no user call sets back), so an in-place
    edit is re-hashed. ``data verify`` always re-hashes every file."""
    root = Path(root)
    verify(name, root, full=False)
    stamp = _stamp_path(name, root)
    sig = _quick_signature(name, root)
    if stamp.exists() and stamp.read_text() == sig:
        return root
    verify(name, root, full=True)
    stamp.parent.mkdir(parents=True, exist_ok=True)
    write_bytes(stamp, sig.encode())
    return root


def locate(name: str, *, download: bool = True) -> Path:
    """Return the folder of dataset ``name``, verified against its sha256 manifest.

    Order: ``$SKINLESION_DATA/<name>`` → ``<cache>/data/<name>`` → :func:`fetch` (when
    ``download``). The data folder is only read, never written.

    Raises:
        DataError: unknown name, or a folder that exists but fails verification.
        DataNotAvailableError: not on disk and cannot be downloaded.
    """
    spec = get_spec(name)
    cache_root = default_cache_dir() / "data"
    for root in data_roots():
        candidate = root / spec.name
        if candidate.is_dir():
            try:
                return ensure_verified(name, candidate)
            except DataError:
                # A partial or damaged download in the cache is completed by fetch (which keeps
                # the files already verified); a folder the reader pointed us to is theirs.
                if root != cache_root or not download:
                    raise
                return fetch(name)
    if not download:
        raise DataNotAvailableError(_how_to_get(spec, reason="not found on disk"))
    return fetch(name)


def _how_to_get(spec: DatasetSpec, reason: str) -> str:
    where = ", ".join(str(r / spec.name) for r in data_roots())
    lines = [f"Dataset {spec.name!r} is not available ({reason}). Looked in: {where}.", "How to get it:"]
    if spec.repo_path:
        lines.append(
            f"  1. Online: skinlesion_utils.data.fetch({spec.name!r}) downloads it from "
            f"{PAPER_REPO} (folder {spec.repo_path}) and verifies every file."
        )
    elif spec.urls:
        lines.append(
            f"  1. Online: skinlesion_utils.data.fetch({spec.name!r}) downloads "
            f"{', '.join(spec.urls)} from the ISIC challenge's file host and verifies them."
        )
    else:
        lines.append(
            "  1. This dataset exists only in the course's shared data folder; use "
            "'isic2019_external' (the full external set) to download instead."
        )
    lines.append(
        f"  2. Offline: copy the data to a folder laid out as <folder>/{spec.name}/... and "
        f"export {ENV_DATA}=<folder>  (python -m skinlesion_utils data --help lists the layout)."
    )
    return "\n".join(lines)


# ---------------------------------------------------------------------------- fetching


def download_file(url: str, dest: Path, sha256: str | None = None, timeout: float = 60) -> Path:
    """Download ``url`` to ``dest`` atomically (``.part`` file, then rename), checking sha256.

    Raises:
        DataNotAvailableError: on any network failure. ChecksumError: bytes differ.
    """
    dest = Path(dest)
    try:
        # atomic_open keeps the old file (or none) unless the whole download checks out
        with atomic_open(dest, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as resp:
            h = hashlib.sha256()
            while block := resp.read(1 << 20):
                h.update(block)
                out.write(block)
            if sha256 is not None and h.hexdigest() != sha256:
                raise ChecksumError(
                    f"Checksum mismatch for {url}: expected sha256 {sha256[:16]}…, got "
                    f"{h.hexdigest()[:16]}…. Nothing was saved. Fix: retry later; if it persists the "
                    f"source changed — report it to the course maintainers."
                )
        return dest
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        raise DataNotAvailableError(f"Could not download {url}: {exc}") from exc


def _safe_member_path(target: Path, member_name: str) -> Path:
    """Where an archive member would land; refuse anything outside ``target``."""
    target = target.resolve()
    dest = (target / member_name).resolve()
    if dest != target and target not in dest.parents:
        raise DataError(
            f"Refusing archive member {member_name!r}: it would be written outside {target}. "
            "The archive is malformed or malicious; nothing outside the target was written."
        )
    return dest


def extract_subfolder(archive: Path, subfolder: str, target: Path, wanted: Iterable[str]) -> int:
    """Extract the members of ``archive`` under ``<top>/<subfolder>/`` into ``target``.

    GitHub archives have one top folder (``repo-branch/``); it is stripped. Only files listed
    in ``wanted`` (paths relative to ``subfolder``) are written; each is written atomically.
    Members that would escape ``target`` (``..``, absolute paths, links) raise DataError.

    Returns:
        number of files written.
    """
    wanted = set(wanted)
    prefix = PurePosixPath(subfolder)
    written = 0

    def relative(name: str) -> str | None:
        parts = PurePosixPath(name).parts
        if len(parts) < 2:
            return None
        inner = PurePosixPath(*parts[1:])
        try:
            return str(inner.relative_to(prefix))
        except ValueError:
            return None

    if tarfile.is_tarfile(archive):
        with tarfile.open(archive) as tf:
            for m in tf:
                _safe_member_path(target, m.name)
                if m.issym() or m.islnk():
                    if relative(m.name) in wanted:
                        raise DataError(f"Refusing link member {m.name!r} in {archive}.")
                    continue
                rel = relative(m.name)
                if not m.isfile() or rel not in wanted:
                    continue
                dest = _safe_member_path(target, rel)
                write_bytes(dest, tf.extractfile(m).read())
                written += 1
    elif zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            for info in zf.infolist():
                _safe_member_path(target, info.filename)
                rel = relative(info.filename)
                if info.is_dir() or rel not in wanted:
                    continue
                dest = _safe_member_path(target, rel)
                write_bytes(dest, zf.read(info))
                written += 1
    else:
        raise DataError(f"{archive} is neither a tar nor a zip archive. Fix: delete it and fetch again.")
    return written


def _git_sparse_checkout(repo_url: str, subfolder: str, workdir: Path) -> Path:
    """Shallow, blob-filtered, sparse clone of ``repo_url`` keeping only ``subfolder``."""
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0"}
    clone = workdir / "repo"

    def git(*args, cwd=None):
        return subprocess.run(
            ["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True, timeout=3600
        )

    git("clone", "--depth", "1", "--filter=blob:none", "--sparse", "--no-tags", repo_url, str(clone))
    git("sparse-checkout", "set", "--no-cone", f"/{subfolder}/", cwd=clone)
    return clone / subfolder


def _download_missing(spec: DatasetSpec, target: Path, todo: dict[str, str], *, method: str, repo_url: str,
                      archive_url: str | None, urls: dict[str, str] | None) -> None:
    """Bring the ``todo`` files (relative path → sha256) of ``spec`` into ``target``: table
    datasets by URL, image datasets by a sparse git checkout or the repository archive."""
    if spec.kind == "tables":
        sources = urls or spec.urls
        for rel, digest in todo.items():
            download_file(sources[rel], target / rel, sha256=digest)
        return
    if spec.repo_path is None:
        raise DataNotAvailableError(_how_to_get(spec, reason="it has no download source"))
    use_git = method == "git" or (method == "auto" and shutil.which("git"))
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=f".{spec.name}-") as tmp:
        tmp = Path(tmp)
        if not use_git:
            url = archive_url or f"{repo_url.rstrip('/')}/archive/HEAD.tar.gz"
            archive = download_file(url, tmp / "repo-archive")
            extract_subfolder(archive, spec.repo_path, target, todo)
            return
        try:
            src = _git_sparse_checkout(repo_url, spec.repo_path, tmp)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as exc:
            detail = getattr(exc, "stderr", "") or str(exc)
            raise DataNotAvailableError(f"git could not clone {repo_url}: {detail.strip()}") from exc
        for rel in todo:
            srcfile = src / rel
            if srcfile.is_file():
                write_bytes(_safe_member_path(target, rel), srcfile.read_bytes())


def _check_downloaded(spec: DatasetSpec, target: Path, todo: dict[str, str]) -> None:
    """Every fetched file exists and has its manifest's sha256 (a wrong one is removed)."""
    for rel, digest in todo.items():
        path = target / rel
        if not path.is_file():
            raise DataError(
                f"The source has no file {rel!r} for dataset {spec.name!r} (looked in {spec.repo_path or 'the URLs'}). "
                "Fix: the upstream layout changed; report it, or set SKINLESION_DATA to a copy."
            )
        found = sha256_file(path)
        if found != digest:
            path.unlink()
            raise ChecksumError(
                f"Checksum mismatch for downloaded {path}: expected {digest[:16]}…, found "
                f"{found[:16]}…; the file was removed. Fix: run fetch({spec.name!r}) again; if it "
                "persists the upstream copy changed."
            )


def fetch(
    name: str,
    dest_root: Path | None = None,
    *,
    method: str = "auto",
    repo_url: str = PAPER_REPO,
    archive_url: str | None = None,
    urls: dict[str, str] | None = None,
    progress: bool = True,
) -> Path:
    """Download dataset ``name`` into ``dest_root/<name>`` (default: the user cache) and verify it.

    Already verified files are kept (a re-run only fetches what is missing or damaged). Each
    file is written atomically; the dataset folder is checked against its sha256 manifest.

    Args:
        name: registry name.
        dest_root: parent folder (default ``<cache>/data``).
        method: image datasets: ``"git"`` (sparse checkout), ``"archive"`` (``.tar.gz``/``.zip``
            of the repository), or ``"auto"`` (git if installed, else archive).
        repo_url: git remote of the paper's repository (a local path works, for tests).
        archive_url: archive of the repository (default ``<repo_url>/archive/HEAD.tar.gz``).
        urls: file name → URL for table datasets (default: the registry's).

    Returns:
        the verified dataset folder.

    Raises:
        DataNotAvailableError: offline or the source is unreachable (the message says how to
        get the data by hand). ChecksumError: a downloaded file differs from the manifest.
    """
    spec = get_spec(name)
    target = Path(dest_root or default_cache_dir() / "data") / spec.name
    entries = spec.manifest_entries()
    todo = {
        rel: digest
        for rel, digest in entries.items()
        if not ((target / rel).is_file() and sha256_file(target / rel) == digest)
    }
    if not todo:
        return ensure_verified(name, target)
    target.mkdir(parents=True, exist_ok=True)
    try:
        _download_missing(spec, target, todo, method=method, repo_url=repo_url, archive_url=archive_url, urls=urls)
    except DataNotAvailableError as exc:
        if target.is_dir() and not any(target.iterdir()):
            target.rmdir()  # leave no empty dataset folder behind: it would look like a download
        raise DataNotAvailableError(_how_to_get(spec, reason=str(exc).splitlines()[0])) from exc
    _check_downloaded(spec, target, todo)
    return ensure_verified(name, target)


# ---------------------------------------------------------------------------- decoding


def to_rgb(img: "Image.Image", path: Path | str = "<image>") -> "Image.Image":  # noqa: F821
    """Convert any PIL mode to RGB with documented rules.

    * ``RGB`` — unchanged.  ``L`` / ``1`` — grey copied to 3 channels.
    * ``LA`` / ``RGBA`` / ``PA`` / ``P`` with transparency — composited on white (dermoscopy
      images with an alpha channel are usually exported crops; white is neutral for the model).
    * ``P`` — palette expanded.  ``CMYK`` / ``YCbCr`` / ``LAB`` / ``HSV`` — PIL's conversion.
    * ``I;16*`` / ``I`` / ``F`` — rescaled linearly from the image's own min..max to 0..255.

    Raises:
        DataError: for any other mode.
    """
    from PIL import Image

    mode = img.mode
    if mode == "RGB":
        return img
    if mode in ("1", "L"):
        return img.convert("RGB")
    if mode == "P":
        img = img.convert("RGBA") if "transparency" in img.info else img.convert("RGB")
        mode = img.mode
        if mode == "RGB":
            return img
    if mode in ("LA", "PA"):
        img = img.convert("RGBA")
        mode = "RGBA"
    if mode in ("RGBA", "RGBa"):
        background = Image.new("RGB", img.size, (255, 255, 255))
        background.paste(img.convert("RGBA"), mask=img.convert("RGBA").getchannel("A"))
        return background
    if mode in ("CMYK", "YCbCr", "LAB", "HSV"):
        return img.convert("RGB")
    if mode.startswith("I") or mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        scaled = np.zeros_like(arr) if hi <= lo else (arr - lo) / (hi - lo) * 255.0
        grey = Image.fromarray(np.round(scaled).astype(np.uint8), mode="L")
        return grey.convert("RGB")
    raise DataError(
        f"Unsupported image mode {mode!r} in {path}. Fix: convert it to RGB (e.g. "
        f"PIL.Image.open(p).convert('RGB').save(p2)) and retry."
    )


RESIZE_METHODS = ("squash", "center_crop")

#: How a file becomes pixels, part of every tensor-store cache key. ``exif1``: EXIF orientation
#: applied (``ImageOps.exif_transpose``), the picture a viewer shows (0.2.0 ignored it; in
#: isic_balanced train/malignant/740, 748 and test/malignant/744 carry a 90° rotation tag).
DECODE_METHOD = "exif1"
#: The largest image decoded (width × height), Pillow's default limit (about 9,459²); a file
#: that claims more is refused before decoding (a "decompression bomb" claims gigapixels).
MAX_IMAGE_PIXELS = 89_478_485


def decode_image(path: Path, resolution: int, resize: str = "squash") -> np.ndarray:
    """Decode one image file to ``uint8 [3, R, R]`` RGB.

    Args:
        path: image file (JPEG, PNG, BMP, TIFF, WebP), any size and mode (see :func:`to_rgb`).
        resolution: output side R in pixels.
        resize: ``"squash"`` (resize to R×R ignoring aspect ratio, as the paper's Keras
            ``load_img(target_size=...)``) or ``"center_crop"`` (shorter side to R, then crop).

    EXIF orientation is applied (:data:`DECODE_METHOD`), so the pixels are the picture a viewer
    shows. Images over :data:`MAX_IMAGE_PIXELS` are refused.

    Raises:
        DataError: unreadable, corrupt, truncated or oversized file, naming it and the fix.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    if resize not in RESIZE_METHODS:
        raise DataError(f"Unknown resize method {resize!r}; use one of {RESIZE_METHODS}.")
    try:
        with Image.open(path) as img:  # (Pillow warns over MAX_IMAGE_PIXELS; the CLI hides the warning)
            _check_pixels(img, path)
            img.load()  # forces the full decode: truncated files fail here, not later
            img = to_rgb(ImageOps.exif_transpose(img), path)
    except Image.DecompressionBombError as exc:  # Pillow's own refusal (over 2 × its limit)
        found = re.search(r"\((\d+) pixels\)", str(exc))
        raise DataError(_bomb_message(path, f"{int(found.group(1)):,} pixels" if found else "too many pixels")) from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        if isinstance(exc, DataError):
            raise
        raise DataError(
            f"Cannot decode image {path}: {exc}. The file is corrupt, truncated or not an image. "
            "Fix: re-download it (fetch() re-fetches files that fail their checksum) or remove "
            "it from the folder."
        ) from exc
    if resize == "center_crop":
        w, h = img.size
        s = min(w, h)
        img = img.crop(((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s))
    if img.size != (resolution, resolution):
        img = img.resize((resolution, resolution), Image.BILINEAR, reducing_gap=None)
    return np.asarray(img, dtype=np.uint8).transpose(2, 0, 1).copy()


def _bomb_message(path, size: str) -> str:
    return (f"Image {path} is too large to decode ({size}; the limit is {MAX_IMAGE_PIXELS:,} pixels, "
            "data.MAX_IMAGE_PIXELS): a decompression bomb or a scan far beyond any model's input. "
            "Fix: downscale it (e.g. to 1024 px) or remove it from the folder.")


def _check_pixels(img, path) -> None:
    w, h = img.size
    if w * h > MAX_IMAGE_PIXELS:
        raise DataError(_bomb_message(path, f"{w} × {h} = {w * h:,} pixels"))


def _dangling_links(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_symlink() and not p.exists())


def list_class_folder(folder: Path) -> list[tuple[str, int]]:
    """List ``folder/{benign,malignant}/*`` as (relative path, label), checking the layout.

    Raises:
        DataError: missing folder, no class folders (wrong layout), unknown class folder,
        empty class folder, or a non-image file.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(
            f"Image folder {folder} does not exist. Fix: check the path, or set {ENV_DATA} "
            "to the folder that holds the datasets."
        )
    subdirs = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    unknown = [d for d in subdirs if d not in CLASSES]
    present = [d for d in subdirs if d in CLASSES]
    if not present:
        loose = [p.name for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS]
        hint = f" It holds {len(loose)} loose image files." if loose else ""
        raise DataError(
            f"Wrong layout in {folder}: expected sub-folders {CLASSES[0]}/ and {CLASSES[1]}/ "
            f"holding the images, found {subdirs or 'no sub-folders'}.{hint} Fix: sort the images "
            f"into {folder}/benign/ and {folder}/malignant/."
        )
    if unknown:
        raise DataError(
            f"Unknown class folder(s) {unknown} in {folder}: only {list(CLASSES)} are allowed "
            "(benign = 0, malignant = 1). Fix: rename or remove them."
        )
    items: list[tuple[str, int]] = []
    for label, cls in enumerate(CLASSES):
        cdir = folder / cls
        if not cdir.is_dir():
            raise DataError(
                f"Class folder {cdir} is missing: both {list(CLASSES)} are needed. "
                "Fix: create it and put that class's images in it."
            )
        dangling = _dangling_links(cdir)
        if dangling:
            raise DataError(
                f"Broken link: {dangling[0]} points to {os.readlink(dangling[0])}, which does not exist"
                f"{f' ({len(dangling)} broken links in {cdir})' if len(dangling) > 1 else ''}. "
                "Fix: restore the target, or remove the link."
            )
        files = sorted(p for p in cdir.rglob("*") if p.is_file() and not p.name.startswith("."))
        bad = [p for p in files if p.suffix.lower() not in IMAGE_EXTENSIONS]
        if bad:
            raise DataError(
                f"Not an image file: {bad[0]} (allowed endings: {', '.join(IMAGE_EXTENSIONS)}). "
                "Fix: move non-image files out of the class folders."
            )
        if not files:
            raise DataError(f"Class folder {cdir} is empty. Fix: add that class's images to it.")
        items += [(p.relative_to(folder).as_posix(), label) for p in files]
    return items


def _decode_all(root: Path, rels: Sequence[str], resolution: int, resize: str, progress: bool) -> torch.Tensor:
    out = np.empty((len(rels), 3, resolution, resolution), dtype=np.uint8)

    def work(i):
        out[i] = decode_image(root / rels[i], resolution, resize)

    workers = min(8, (os.cpu_count() or 2))
    with ThreadPoolExecutor(workers) as pool:
        it = pool.map(work, range(len(rels)))
        if progress:
            from tqdm.auto import tqdm

            it = tqdm(it, total=len(rels), desc=f"decode {root.name} @{resolution}px", unit="img")
        for _ in it:
            pass
    return torch.from_numpy(out)


def split_files(spec: DatasetSpec, split: str | None) -> list[str]:
    """The manifest's relative paths of one split (all when ``None``), sorted: the store's order.

    Raises:
        DataError: an unknown split (naming the valid ones).
    """
    if split is not None and split not in spec.splits:
        raise DataError(
            f"Dataset {spec.name!r} has no split {split!r}; its splits are {list(spec.splits) or 'none (flat)'}."
            " Fix: pass one of them, or split=None for all images."
        )
    return [r for r in sorted(spec.manifest_entries()) if split is None or r.split("/")[0] == split]


def labels_of(rels: Sequence[str]) -> list[int]:
    """Labels from the class folder of each relative path (benign = 0, malignant = 1)."""
    return [CLASSES.index(PurePosixPath(r).parts[-2]) for r in rels]


class ImageTensorStore:
    """Images decoded once into memory: ``images`` uint8 [N,3,R,R], ``labels`` int64 [N], ``ids``.

    Build with :meth:`from_dataset` (a registry dataset, cached on disk) or :meth:`from_folder`
    (any folder laid out ``{benign,malignant}/*``, any image size, format and mode).
    Decoding 3,297 JPEGs takes seconds once; later calls load the cached tensor file.

    Attributes:
        images: uint8 tensor [N, 3, R, R], RGB.
        labels: int64 tensor [N]; benign = 0, malignant = 1.
        ids: list of N file ids (paths relative to the dataset folder).
        resolution: R.
        source: a short description of where the images came from.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, ids: Sequence[str], resolution: int, source: str = ""):
        if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
            raise DataError(f"images must be uint8 [N,3,R,R], got {images.dtype} {tuple(images.shape)}.")
        if len(images) != len(labels) or len(images) != len(ids):
            raise DataError(f"images ({len(images)}), labels ({len(labels)}) and ids ({len(ids)}) differ in length.")
        self.images = images
        self.labels = labels.to(torch.int64)
        self.ids = list(ids)
        self.resolution = int(resolution)
        self.source = source

    # ---- construction
    @classmethod
    def from_dataset(
        cls,
        name: str,
        split: str | None = None,
        resolution: int = 224,
        resize: str = "squash",
        *,
        cache: bool = True,
        progress: bool = True,
    ) -> "ImageTensorStore":
        """Decode (or load from cache) a registry dataset.

        Args:
            name: e.g. ``"isic_balanced"``.
            split: ``"train"`` / ``"test"`` for datasets with splits; ``None`` → all images.
            resolution: side R in pixels.
            resize: see :func:`decode_image`.

        The cache file lives in ``<cache>/tensors`` and is keyed by the manifest hash, the split,
        R, the resize method and :data:`DECODE_METHOD`.
        """
        spec = get_spec(name)
        if spec.kind != "images":
            raise DataError(f"Dataset {name!r} holds tables, not images. Fix: read it with pandas from locate({name!r}).")
        rels = split_files(spec, split)
        root = locate(name)
        key = f"{name}-{split or 'all'}-{spec.manifest_hash()[:12]}-{resolution}-{resize}-{DECODE_METHOD}"
        cache_file = default_cache_dir() / "tensors" / f"{key}.pt"
        if cache and cache_file.exists():
            blob = torch.load(cache_file, weights_only=True)
            return cls(blob["images"], blob["labels"], blob["ids"], resolution, source=f"{name}/{split or 'all'}")
        labels = torch.tensor(labels_of(rels))
        images = _decode_all(root, rels, resolution, resize, progress)
        store = cls(images, labels, rels, resolution, source=f"{name}/{split or 'all'}")
        if cache:
            store.save(cache_file)
        return store

    @classmethod
    def from_folder(
        cls, folder: Path | str, resolution: int = 224, resize: str = "squash", *, progress: bool = True
    ) -> "ImageTensorStore":
        """Decode any folder laid out ``{benign,malignant}/*`` (sub-folders inside a class are
        allowed). Nothing is cached and nothing is written."""
        folder = Path(folder)
        items = list_class_folder(folder)
        rels = [r for r, _ in items]
        labels = torch.tensor([lab for _, lab in items])
        images = _decode_all(folder, rels, resolution, resize, progress)
        return cls(images, labels, rels, resolution, source=str(folder))

    def save(self, path: Path) -> None:
        """Write the store atomically as a ``torch.save`` file (loadable with weights_only)."""
        path = Path(path)
        buf = io.BytesIO()
        torch.save({"images": self.images, "labels": self.labels, "ids": self.ids}, buf)
        write_bytes(path, buf.getvalue())

    # ---- views
    def __len__(self) -> int:
        return len(self.labels)

    def __repr__(self) -> str:
        counts = self.class_counts()
        return (
            f"ImageTensorStore({self.source or 'memory'}: {len(self)} images, {self.resolution}px, "
            + ", ".join(f"{k}={v}" for k, v in counts.items())
            + ")"
        )

    def subset(self, indices: Sequence[int] | torch.Tensor) -> "ImageTensorStore":
        """A new store holding the given rows (shares no memory with ``self``)."""
        idx = torch.as_tensor(indices, dtype=torch.long)
        return ImageTensorStore(
            self.images[idx].clone(), self.labels[idx].clone(), [self.ids[i] for i in idx.tolist()],
            self.resolution, source=f"{self.source}[subset {len(idx)}]",
        )

    def class_counts(self) -> dict[str, int]:
        """{"benign": n0, "malignant": n1}."""
        counts = torch.bincount(self.labels, minlength=len(CLASSES)).tolist()
        return {c: int(n) for c, n in zip(CLASSES, counts)}

    def dataset(self) -> "torch.utils.data.Dataset":
        """A map-style Dataset yielding ``(image float32 [3,R,R] in [0,1], label, id)``."""
        return _StoreDataset(self)

    def loader(self, batch_size: int = 64, shuffle: bool = False, seed: int = 0, **kw) -> "torch.utils.data.DataLoader":
        """A seeded DataLoader over :meth:`dataset`."""
        g = torch.Generator().manual_seed(seed)
        return torch.utils.data.DataLoader(self.dataset(), batch_size=batch_size, shuffle=shuffle, generator=g, **kw)


class _StoreDataset(torch.utils.data.Dataset):
    def __init__(self, store: ImageTensorStore):
        self.store = store

    def __len__(self) -> int:
        return len(self.store)

    def __getitem__(self, i: int):
        return self.store.images[i].float().div_(255), int(self.store.labels[i]), self.store.ids[i]


def dataset_table(name: str) -> "pandas.DataFrame":  # noqa: F821
    """Class counts per split of an image dataset, read from its manifest (no decoding).

    Returns:
        DataFrame indexed by split (plus ``total``) with columns benign, malignant, total.
    """
    import pandas as pd

    spec = get_spec(name)
    rows: dict[str, dict[str, int]] = {}
    for rel in spec.manifest_entries():
        parts = PurePosixPath(rel).parts
        split = parts[0] if spec.splits else "all"
        rows.setdefault(split, {c: 0 for c in CLASSES})[parts[-2]] += 1
    order = list(spec.splits) or ["all"]
    df = pd.DataFrame([rows[s] for s in order], index=pd.Index(order, name="split"))
    if len(df) > 1:
        df.loc["total"] = df.sum()
    df["total"] = df.sum(axis=1)
    return df


def external_dataset_name() -> str:
    """Name of the external set the chapters evaluate on (chapters 00 and 08).

    The course's 1,000-image sample when it is on disk (CI, the course folder), else the
    paper's full external set, which :func:`locate` downloads.
    """
    try:
        locate("isic2019_external_sample", download=False)
        return "isic2019_external_sample"
    except DataNotAvailableError:
        return "isic2019_external"
