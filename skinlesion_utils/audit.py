"""Dataset audit: perceptual hashes, near-duplicate pairs and what they say about the data.

Taught in chapter 01 (``chapters/01_dataset``).

What this module owns:

* :func:`compute_hashes` — one perceptual hash per image (``imagehash`` pHash + dHash by
  default), stored as a packed bit matrix ``uint8 [N, V, n_bytes]`` (``V`` views: the whole
  image and, optionally, centre crops). Computed once per file and kept in memory only
  (:func:`clear_hash_cache`); nothing is ever written next to the images.
* :func:`find_near_duplicates` — every pair within one set, or across two sets, whose
  Hamming distance is at most a threshold, as a DataFrame ``file_a, file_b, distance,
  method``. The pair search is vectorised (XOR + popcount on 64-bit words, in row blocks):
  10,000 images take about a second. ``method="embedding"`` does the same with the cosine
  distance of any ``torch.nn.Module`` feature extractor (:func:`compute_embeddings`).
* :func:`nearest_neighbour_distances` and :func:`hamming_distance_histogram` — the distance
  distributions that justify the threshold.
* :func:`duplicate_clusters` — connected components of the pair graph (a group id where
  patient or lesion ids are missing).
* :func:`hash_dataset` (a registry data set's hashes, named by the same ids as
  ``ImageTensorStore.ids``), :func:`paired_distances`, :func:`annotate_pairs` (data set, split
  and class of each side) and :func:`jpeg_fingerprints` (how each file was encoded: a
  class-dependent encoder is a shortcut a network can learn).
* :func:`read_audit_pairs` — the pair tables chapter 01 saves, which later chapters (05, 08)
  use to set contaminated test and external images apart.

Splits that respect the pairs live in :mod:`skinlesion_utils.splits`; chapter 01's own
analysis (copies of an image, pair summaries, the pair gallery) in
:mod:`skinlesion_utils.studies.ch01_dataset`; the ``audit`` command in :mod:`skinlesion_utils.cli`.

Why the default threshold is :data:`DEFAULT_THRESHOLD` = 8 bits (of 128, ``"phash+dhash"``
with the whole image and 95 % / 90 % centre crops), from measurements on the real data:

* **Copies of one image** (332 real images, each re-saved transformed): JPEG quality 30–60,
  resizing to half or squashing to 224×224, and 5 % or 10 % centre crops stay at 0–8 bits
  (99th percentile 3–7); +15 % brightness: 3 of 332 above 8; a 5 % crop + half size + JPEG 50
  combined: 1 of 332 above 8.
* **Different images**: in ``isic2019_external_sample`` no image has another within 7 bits
  (nearest: 8 bits for 10 of 1,000 images, 5 % below 14, median 29). Pairs at 8–12 bits,
  looked at side by side, are mostly different lesions that share a look — the black circular
  frame of one dermatoscope dominates such hashes.
* **Same lesion**: every ``isic_balanced`` train↔test and ``isic_balanced``↔external pair
  we looked at with distance ≤ 7 shows the same lesion (the same photo re-processed, or serial
  photos of it); at exactly 8 about half are; at 9–10 most are different lesions.
* ``isic_balanced`` ↔ external: 81 of the 1,000 external images lie at 0–3 bits from an
  ``isic_balanced`` image (the same ISIC image squashed to 224 px); the next 3 lie at 5–6.

So ``<= 8`` keeps the copies and costs about 1 % false alarms among look-alike images; the
chapter shows the borderline pairs. Not caught: copies shifted by a one-sided crop (even 2 %
moves the hash by ~7 bits), flips and rotations, and different photographs of one lesion taken
from another angle — for those use patient/lesion ids (:func:`grouped_split`) or a trained
embedding (``method="embedding"``).
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence, Union

import numpy as np
import pandas as pd

from . import data
from .data import CLASSES, DataError, IMAGE_EXTENSIONS, to_rgb
from .errors import ConfigError
from .results import results_dir
from .splits import require_columns

HASH_METHODS: tuple[str, ...] = ("phash", "dhash", "phash+dhash")
DEFAULT_METHOD = "phash+dhash"
#: Default centre-crop views (fraction of width and height kept); 1.0 is the whole image.
DEFAULT_CROPS: tuple[float, ...] = (1.0, 0.95, 0.9)
#: Default Hamming threshold in bits for ``"phash+dhash"`` (128 bits); see the module docstring.
DEFAULT_THRESHOLD = 8
#: Bits per hash of each method (8×8 hashes).
HASH_BITS = {"phash": 64, "dhash": 64, "phash+dhash": 128}
#: Images are decoded with JPEG draft mode to at least this side before hashing (the hashes
#: look at 32×32 pixels at most), so 4000-px originals cost no more than small ones.
_DRAFT_SIDE = 256

PathsLike = Union[str, os.PathLike, Sequence[Union[str, os.PathLike]], "HashTable"]


# ----------------------------------------------------------------------------- hashing


@dataclass(frozen=True)
class HashTable:
    """Perceptual hashes of a list of images.

    Attributes:
        files: the image paths, as given (``str``), one per row.
        bits: ``uint8 [N, V, n_bytes]`` — the hash bits packed with ``np.packbits`` (big-endian
            within a byte); ``V`` views = ``len(crops)``; ``n_bytes`` = ``n_bits / 8``.
        method: the hash method (one of :data:`HASH_METHODS`).
        crops: fraction of width/height kept by each view's centre crop (1.0 = whole image).
    """

    files: tuple[str, ...]
    bits: np.ndarray
    method: str
    crops: tuple[float, ...]

    @property
    def n_bits(self) -> int:
        """Bits per hash (64 or 128)."""
        return HASH_BITS[self.method]

    def __len__(self) -> int:
        return len(self.files)

    def unpacked(self) -> np.ndarray:
        """``bool [N, V, n_bits]`` — the hash bits, one per column."""
        return np.unpackbits(self.bits, axis=-1, count=self.n_bits).astype(bool)


# (resolved path, size, mtime_ns, method, crops) -> uint8 [V, n_bytes]; memory only.
_HASH_CACHE: dict[tuple, np.ndarray] = {}


def clear_hash_cache() -> None:
    """Forget every hash computed so far (they are kept in memory only)."""
    _HASH_CACHE.clear()


def forget_hashes(folder: str | os.PathLike) -> int:
    """Drop the cached hashes of every file under ``folder`` (e.g. temporary copies that are
    deleted next); returns how many were dropped."""
    prefix = str(Path(folder).resolve()) + os.sep
    stale = [key for key in _HASH_CACHE if key[0].startswith(prefix)]
    for key in stale:
        del _HASH_CACHE[key]
    return len(stale)


def list_images(folder: str | os.PathLike) -> list[Path]:
    """All image files under ``folder`` (recursive, sorted, hidden files skipped).

    The returned paths start with ``folder`` as given (relative stays relative).

    Raises:
        DataError: the folder does not exist or holds no image file.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"Image folder {folder} does not exist. Fix: check the path (a folder of images, searched recursively).")
    files = sorted(
        p
        for p in folder.rglob("*")
        if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )
    if not files:
        raise DataError(
            f"No image files ({', '.join(IMAGE_EXTENSIONS)}) under {folder}. Fix: point at the folder "
            "that holds the images (sub-folders are searched)."
        )
    return files


def as_paths(paths: str | os.PathLike | Sequence[str | os.PathLike]) -> list[Path]:
    if isinstance(paths, (str, os.PathLike)):
        p = Path(paths)
        if p.is_dir() or not p.exists():
            return list_images(p)  # names a missing folder
        raise DataError(
            f"{p} is a file, not a folder. Fix: pass a folder of images, or a list of files "
            f"(e.g. [{str(p)!r}])."
        )
    out = [Path(p) for p in paths]
    if not out:
        raise DataError("Empty list of images. Fix: pass at least one image file (or a folder).")
    return out


def _hash_image(path: Path, method: str, crops: tuple[float, ...]) -> np.ndarray:
    """``uint8 [V, n_bytes]`` packed hash bits of one image file."""
    import imagehash
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img.draft("RGB", (_DRAFT_SIDE, _DRAFT_SIDE))  # JPEG only: decode at reduced scale
            img.load()
            img = to_rgb(img, path)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        if isinstance(exc, DataError):
            raise
        raise DataError(
            f"Cannot decode image {path}: {exc}. Fix: remove or replace the corrupt file, "
            "then audit again."
        ) from exc
    grey = img.convert("L")
    w, h = grey.size
    views = []
    for frac in crops:
        if frac >= 1.0:
            view = grey
        else:
            cw, ch = max(1, round(w * frac)), max(1, round(h * frac))
            left, top = (w - cw) // 2, (h - ch) // 2
            view = grey.crop((left, top, left + cw, top + ch))
        parts = []
        if method in ("phash", "phash+dhash"):
            parts.append(np.asarray(imagehash.phash(view).hash, dtype=bool).ravel())
        if method in ("dhash", "phash+dhash"):
            parts.append(np.asarray(imagehash.dhash(view).hash, dtype=bool).ravel())
        views.append(np.packbits(np.concatenate(parts)))
    return np.stack(views)


def _check_method(method: str) -> None:
    if method not in HASH_METHODS:
        raise ConfigError(
            f"Unknown hash method {method!r}. Fix: use one of {HASH_METHODS} "
            "(or method='embedding' with a model in find_near_duplicates)."
        )


def _check_crops(crops: Sequence[float]) -> tuple[float, ...]:
    crops = tuple(float(c) for c in crops)
    if not crops or crops[0] != 1.0 or not all(0.5 <= c <= 1.0 for c in crops):
        raise ConfigError(
            f"crops={crops!r}: expected the whole image first (1.0) followed by centre-crop "
            "fractions in [0.5, 1.0], e.g. (1.0, 0.95, 0.9)."
        )
    return crops


def compute_hashes(
    paths: str | os.PathLike | Sequence[str | os.PathLike],
    method: str = DEFAULT_METHOD,
    *,
    crops: Sequence[float] = DEFAULT_CROPS,
    progress: bool = True,
    workers: int | None = None,
) -> HashTable:
    """Perceptual hashes of images, each file hashed once (in-memory cache).

    Every image is converted to grey and hashed as a whole and as centre crops (``crops``),
    so a slightly cropped copy still matches one view of the original.

    Args:
        paths: a folder (searched recursively, see :func:`list_images`) or a list of image files.
        method: ``"phash"`` (64 bits), ``"dhash"`` (64 bits) or ``"phash+dhash"`` (128 bits,
            both concatenated; default).
        crops: fraction of width and height kept by each view, whole image (1.0) first.
        progress: show a tqdm progress bar.
        workers: decoding threads (default: up to 4, one per CPU core); results do not
            depend on it.

    Returns:
        :class:`HashTable` with ``bits: uint8 [N, len(crops), n_bits/8]``.

    Raises:
        DataError: a file cannot be decoded (names it), an empty folder or list.
    """
    _check_method(method)
    crops = _check_crops(crops)
    files = as_paths(paths)
    n_bytes = HASH_BITS[method] // 8
    bits = np.empty((len(files), len(crops), n_bytes), dtype=np.uint8)

    def work(i: int) -> None:
        path = files[i]
        try:
            st = path.stat()
        except FileNotFoundError:
            raise DataError(f"Image {path} does not exist. Fix: check the list of files.") from None
        key = (str(path.resolve()), st.st_size, st.st_mtime_ns, method, crops)
        row = _HASH_CACHE.get(key)
        if row is None:
            row = _HASH_CACHE[key] = _hash_image(path, method, crops)
        bits[i] = row

    workers = workers or min(4, os.cpu_count() or 1)
    with ThreadPoolExecutor(workers) as pool:  # PIL decodes and resizes without the GIL
        done = pool.map(work, range(len(files)))
        if progress:  # tqdm.auto is imported only when asked for (it warns in bare notebooks)
            from tqdm.auto import tqdm

            done = tqdm(done, total=len(files), desc=f"hashing ({method})", unit="img")
        for _ in done:
            pass
    return HashTable(tuple(str(p) for p in files), bits, method, crops)


def _as_table(paths: PathsLike, method: str, crops: Sequence[float], progress: bool) -> HashTable:
    if isinstance(paths, HashTable):
        return paths
    return compute_hashes(paths, method, crops=crops, progress=progress)


# ----------------------------------------------------------------------------- pair search


def _words(bits: np.ndarray) -> np.ndarray:
    """``uint8 [N, V, n_bytes]`` -> ``uint64 [W, V, N]`` (zero-padded to whole words)."""
    n, v, nb = bits.shape
    pad = (-nb) % 8
    if pad:
        bits = np.concatenate([bits, np.zeros((n, v, pad), np.uint8)], axis=-1)
    words = np.ascontiguousarray(bits).view(np.uint64)  # [N, V, W]
    return np.ascontiguousarray(words.transpose(2, 1, 0))


if hasattr(np, "bitwise_count"):  # numpy >= 2.0

    def _popcount(x: np.ndarray) -> np.ndarray:
        return np.bitwise_count(x)

else:  # pragma: no cover - numpy 1.x
    _POP8 = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)

    def _popcount(x: np.ndarray) -> np.ndarray:
        return _POP8[x.view(np.uint8)].reshape(*x.shape, 8).sum(-1, dtype=np.uint8)


def _view_pairs(n_views: int) -> list[tuple[int, int]]:
    """Views compared: whole vs whole, and each crop of one image vs the whole other image."""
    return [(0, 0)] + [(i, 0) for i in range(1, n_views)] + [(0, j) for j in range(1, n_views)]


def _distance_blocks(
    wa: np.ndarray, wb: np.ndarray, *, triangle: bool, block: int
) -> Iterator[tuple[int, int, np.ndarray]]:
    """Yield ``(row0, col0, dist)`` with ``dist: uint16 [b, M - col0]`` Hamming distances.

    ``wa: uint64 [W, V, N]``, ``wb: uint64 [W, V, M]``. The distance of two images is the
    minimum over :func:`_view_pairs`. With ``triangle`` (``wa is wb``), block rows start at
    their own first column (``col0 = row0``), so only pairs ``i <= j`` are computed.
    """
    n_words, n_views, n = wa.shape
    pairs = _view_pairs(n_views)
    for r0 in range(0, n, block):
        r1 = min(n, r0 + block)
        c0 = r0 if triangle else 0
        best = None
        for va, vb in pairs:
            d = None
            for w in range(n_words):
                pc = _popcount(wa[w, va, r0:r1, None] ^ wb[w, vb, None, c0:])
                d = pc.astype(np.uint16) if d is None else d + pc
            best = d if best is None else np.minimum(best, d, out=best)
        yield r0, c0, best


def _pair_frame(fa, fb, ia, ib, dist, method) -> pd.DataFrame:
    df = pd.DataFrame(
        {
            "file_a": np.asarray(fa, dtype=object)[ia],
            "file_b": np.asarray(fb, dtype=object)[ib],
            "distance": dist,
            "method": method,
        }
    )
    return df.sort_values(["distance", "file_a", "file_b"], kind="stable").reset_index(drop=True)


def hash_pairs(a: HashTable, b: HashTable | None = None, threshold: int = DEFAULT_THRESHOLD, *, block: int = 512) -> pd.DataFrame:
    """Pairs of hashed images at Hamming distance ``<= threshold`` (the vectorised search).

    Args:
        a, b: hash tables of the same method and crops; ``b=None`` searches pairs within ``a``
            (each unordered pair once, ``file_a`` before ``file_b`` in ``a``'s order).
        threshold: largest distance reported, in bits (0..n_bits).
        block: rows per block; memory ~ ``block × len(b) × 2`` bytes.

    Returns:
        DataFrame ``file_a, file_b, distance (int, bits), method`` sorted by distance.
    """
    if b is not None and (b.method != a.method or b.crops != a.crops):
        raise ConfigError(
            f"Hash tables differ: a is {a.method!r} crops {a.crops}, b is {b.method!r} crops "
            f"{b.crops}. Fix: hash both sets with the same method and crops."
        )
    if not 0 <= threshold <= a.n_bits:
        raise ConfigError(f"threshold={threshold} bits is outside 0..{a.n_bits} for method {a.method!r}. "
                          f"Fix: pass a threshold from 0 to {a.n_bits}.")
    wa = _words(a.bits)
    wb = wa if b is None else _words(b.bits)
    rows, cols, dists = [], [], []
    for r0, c0, d in _distance_blocks(wa, wb, triangle=b is None, block=block):
        i, j = np.nonzero(d <= threshold)
        i, j = i + r0, j + c0
        if b is None:
            keep = j > i
            i, j = i[keep], j[keep]
        rows.append(i)
        cols.append(j)
        dists.append(d[i - r0, j - c0])
    ia, ib = np.concatenate(rows), np.concatenate(cols)
    dist = np.concatenate(dists).astype(np.int64)
    return _pair_frame(a.files, (a if b is None else b).files, ia, ib, dist, a.method)


def find_near_duplicates(
    paths_a: PathsLike,
    paths_b: PathsLike | None = None,
    *,
    threshold: float | None = None,
    method: str = DEFAULT_METHOD,
    crops: Sequence[float] = DEFAULT_CROPS,
    model=None,
    image_size: int = 224,
    batch_size: int = 64,
    device: str = "cpu",
    progress: bool = True,
) -> pd.DataFrame:
    """Near-duplicate image pairs within one set, or across two sets.

    Args:
        paths_a: a folder (recursive), a list of image files, or a :class:`HashTable`.
        paths_b: same; ``None`` compares ``paths_a`` with itself (each pair once).
        threshold: largest distance that counts as a duplicate. Hash methods: bits, default
            :data:`DEFAULT_THRESHOLD` for ``"phash+dhash"`` (scaled ×0.5 for the 64-bit
            methods). ``"embedding"``: cosine distance ``1 - cos`` in [0, 2]; required,
            because it depends on the model.
        method: one of :data:`HASH_METHODS`, or ``"embedding"`` (needs ``model``).
        crops: centre-crop views for the hash methods (see :func:`compute_hashes`).
        model: ``torch.nn.Module`` feature extractor for ``method="embedding"`` (its output
            ``[B, D]`` or ``[B, C, H, W]``, pooled). Random-init weights are not meaningful for
            similarity: pass a trained network.
        image_size, batch_size, device: embedding only (see :func:`compute_embeddings`).
        progress: tqdm progress bars.

    Returns:
        DataFrame with one row per pair: ``file_a`` (from ``paths_a``), ``file_b`` (from
        ``paths_b``, or a later file of ``paths_a``), ``distance``, ``method``; sorted by
        distance. Empty (same columns) when nothing is that close.
    """
    if method == "embedding":
        if model is None:
            raise ConfigError("method='embedding' needs model=<a torch.nn.Module feature extractor>.")
        if threshold is None:
            raise ConfigError(
                "method='embedding' needs an explicit threshold (cosine distance 1 - cos, e.g. 0.02): "
                "the scale depends on the model. Fix: look at nearest_neighbour_distances(..., "
                "method='embedding', model=...) first and choose it from that distribution."
            )
        fa = [str(p) for p in as_paths(paths_a)]
        ea = compute_embeddings(fa, model, image_size=image_size, batch_size=batch_size, device=device, progress=progress)
        if paths_b is None:
            fb, eb = fa, ea
        else:
            fb = [str(p) for p in as_paths(paths_b)]
            eb = compute_embeddings(fb, model, image_size=image_size, batch_size=batch_size, device=device, progress=progress)
        return _embedding_pairs(fa, ea, fb, eb, float(threshold), same=paths_b is None)
    _check_method(method)
    if threshold is None:
        threshold = DEFAULT_THRESHOLD * HASH_BITS[method] // HASH_BITS[DEFAULT_METHOD]
    if float(threshold) != int(threshold):
        raise ConfigError(f"threshold={threshold}: hash distances are whole bits; pass an integer.")
    if not 0 <= threshold <= HASH_BITS[method]:  # checked before any image is hashed
        raise ConfigError(f"threshold={threshold} bits is outside 0..{HASH_BITS[method]} for method {method!r}. "
                          f"Fix: pass a threshold from 0 to {HASH_BITS[method]}.")
    ta = _as_table(paths_a, method, crops, progress)
    tb = None if paths_b is None else _as_table(paths_b, method, crops, progress)
    return hash_pairs(ta, tb, int(threshold))


def nearest_neighbour_distances(
    paths_a: PathsLike,
    paths_b: PathsLike | None = None,
    *,
    method: str = DEFAULT_METHOD,
    crops: Sequence[float] = DEFAULT_CROPS,
    block: int = 512,
    progress: bool = True,
) -> pd.DataFrame:
    """For each image of ``paths_a``, its nearest image in ``paths_b`` (or in ``paths_a`` itself,
    excluding the image) and their Hamming distance.

    The lower tail of this distribution is where duplicates live; its bulk shows how far
    distinct images of the data set usually are (chapter 01 plots it to choose the threshold).

    Returns:
        DataFrame ``file, nearest, distance (int, bits)``, one row per image of ``paths_a``.
    """
    ta = _as_table(paths_a, method, crops, progress)
    tb = ta if paths_b is None else _as_table(paths_b, method, crops, progress)
    if paths_b is None and len(ta) < 2:
        raise ConfigError("Need at least 2 images to find nearest neighbours within one set.")
    wa, wb = _words(ta.bits), _words(tb.bits)
    best = np.empty(len(ta), dtype=np.int64)
    arg = np.empty(len(ta), dtype=np.int64)
    for r0, _, d in _distance_blocks(wa, wb, triangle=False, block=block):
        if paths_b is None:
            d = d.copy()
            idx = np.arange(d.shape[0])
            d[idx, r0 + idx] = np.iinfo(d.dtype).max  # not its own neighbour
        j = d.argmin(axis=1)
        arg[r0 : r0 + len(j)] = j
        best[r0 : r0 + len(j)] = d[np.arange(len(j)), j]
    return pd.DataFrame({"file": list(ta.files), "nearest": [tb.files[j] for j in arg], "distance": best})


def hamming_distance_histogram(
    paths_a: PathsLike,
    paths_b: PathsLike | None = None,
    *,
    method: str = DEFAULT_METHOD,
    crops: Sequence[float] = DEFAULT_CROPS,
    block: int = 512,
    progress: bool = True,
) -> np.ndarray:
    """Histogram of the Hamming distance over all pairs (within ``paths_a``, or a × b).

    Returns:
        ``int64 [n_bits + 1]``: ``hist[d]`` = number of pairs at distance ``d`` bits.
    """
    ta = _as_table(paths_a, method, crops, progress)
    tb = None if paths_b is None else _as_table(paths_b, method, crops, progress)
    wa = _words(ta.bits)
    wb = wa if tb is None else _words(tb.bits)
    hist = np.zeros(ta.n_bits + 1, dtype=np.int64)
    for r0, c0, d in _distance_blocks(wa, wb, triangle=tb is None, block=block):
        if tb is None:  # strictly upper triangle: drop i >= j
            i = np.arange(d.shape[0])[:, None]
            d = d[(np.arange(d.shape[1])[None, :]) > i]
        hist += np.bincount(d.ravel(), minlength=ta.n_bits + 1)[: ta.n_bits + 1]
    return hist


# ----------------------------------------------------------------------------- embeddings


def compute_embeddings(
    paths: str | os.PathLike | Sequence[str | os.PathLike],
    model,
    *,
    image_size: int = 224,
    batch_size: int = 64,
    device: str = "cpu",
    progress: bool = True,
) -> np.ndarray:
    """L2-normalised features of images from any ``torch.nn.Module`` feature extractor.

    Each image is squashed to ``image_size``², scaled to [0, 1] and normalised with the
    ImageNet mean/std, then passed through ``model`` in eval mode without gradients. A
    ``[B, C, H, W]`` output is global-average-pooled; any other output is flattened.

    Returns:
        ``float32 [N, D]`` with unit rows (cosine similarity = dot product).
    """
    import torch
    from PIL import Image
    from tqdm.auto import tqdm

    files = as_paths(paths)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    was_training = model.training
    model.eval()
    out = []
    try:
        with torch.no_grad():
            for s in tqdm(range(0, len(files), batch_size), desc="embedding", disable=not progress):
                batch = []
                for p in files[s : s + batch_size]:
                    with Image.open(p) as img:
                        img = to_rgb(img, p).resize((image_size, image_size), Image.BILINEAR)
                        batch.append(np.asarray(img, dtype=np.uint8))
                x = torch.from_numpy(np.stack(batch)).permute(0, 3, 1, 2).float().div(255)
                x = ((x - mean) / std).to(device)
                f = model(x)
                if f.ndim == 4:
                    f = f.mean(dim=(2, 3))
                f = f.reshape(f.shape[0], -1).float()
                out.append(torch.nn.functional.normalize(f, dim=1).cpu().numpy())
    finally:
        model.train(was_training)
    return np.concatenate(out).astype(np.float32)


def _embedding_pairs(fa, ea, fb, eb, threshold: float, *, same: bool, block: int = 1024) -> pd.DataFrame:
    rows, cols, dists = [], [], []
    for r0 in range(0, len(ea), block):
        d = 1.0 - ea[r0 : r0 + block] @ eb.T  # cosine distance [b, M]
        i, j = np.nonzero(d <= threshold)
        if same:
            keep = j > i + r0
            i, j = i[keep], j[keep]
        rows.append(i + r0)
        cols.append(j)
        dists.append(d[i, j])
    ia, ib = np.concatenate(rows), np.concatenate(cols)
    return _pair_frame(fa, fb, ia, ib, np.concatenate(dists).astype(np.float64), "embedding")


# ----------------------------------------------------------------------------- groups, splits


def duplicate_clusters(pairs: pd.DataFrame, files: Sequence[str | os.PathLike]) -> pd.Series:
    """Connected components of the duplicate graph: a group id per file.

    Two files are in one cluster when a chain of pairs links them (A~B and B~C puts A, B, C
    together). Use the ids as ``group_col`` of :func:`grouped_split` where patient or lesion
    ids are missing.

    Args:
        pairs: DataFrame with columns ``file_a, file_b`` (e.g. from :func:`find_near_duplicates`).
        files: every file that needs an id (files in no pair get a cluster of their own).

    Returns:
        ``pd.Series`` of int cluster ids (0..K-1, numbered in order of first appearance in
        ``files``), indexed by file (``str``), named ``"cluster"``.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    names = [str(f) for f in files]
    index = {f: i for i, f in enumerate(names)}
    if len(index) != len(names):
        raise ConfigError("files contains repeated entries. Fix: pass each file once (e.g. list(dict.fromkeys(files))).")
    missing = sorted({str(f) for f in pd.concat([pairs["file_a"], pairs["file_b"]])} - set(index))
    if missing:
        raise ConfigError(
            f"{len(missing)} file(s) of the pairs are not in files, e.g. {missing[:3]}. Fix: pass the "
            "same list of files the pairs were computed from."
        )
    i = np.array([index[str(f)] for f in pairs["file_a"]], dtype=np.int64)
    j = np.array([index[str(f)] for f in pairs["file_b"]], dtype=np.int64)
    graph = coo_matrix((np.ones(len(i)), (i, j)), shape=(len(names), len(names)))
    _, labels = connected_components(graph, directed=False)
    # renumber by first appearance so ids do not depend on scipy's internal order
    _, first = np.unique(labels, return_index=True)
    order = np.argsort(np.argsort(first))
    return pd.Series(order[labels], index=pd.Index(names, name="file"), name="cluster")


def hash_dataset(
    name: str,
    split: str | None = None,
    *,
    method: str = DEFAULT_METHOD,
    crops: Sequence[float] = DEFAULT_CROPS,
    progress: bool = True,
) -> HashTable:
    """Hashes of the images of a registry data set (``data.DATASETS``), named by their ids.

    The files are listed from the data set's manifest (sorted, as :class:`data.ImageTensorStore`
    lists them) and found with :func:`data.locate`. The returned table's ``files`` are the ids
    relative to the data set's folder (``"train/benign/12.jpg"``, ``"malignant/ISIC_0024459.jpg"``),
    the same strings as ``ImageTensorStore.ids``, so pairs found with it can be saved, committed
    and matched against a store without absolute paths.

    Args:
        name: an image data set, e.g. ``"isic_balanced"`` or ``data.external_dataset_name()``.
        split: ``"train"`` / ``"test"`` for data sets with splits; ``None`` = every image.
        method, crops, progress: see :func:`compute_hashes`.

    Returns:
        :class:`HashTable` with ``files`` = ids and ``bits: uint8 [N, len(crops), n_bits/8]``.

    Raises:
        DataError: a table data set, an unknown split, or the data is not available.
    """
    spec = data.get_spec(name)
    if spec.kind != "images":
        raise DataError(f"Data set {name!r} holds tables, not images. Fix: hash an image data set, e.g. 'isic_balanced'.")
    if split is not None and split not in spec.splits:
        raise DataError(
            f"Data set {name!r} has no split {split!r}; its splits are {list(spec.splits) or 'none (flat)'}. "
            "Fix: pass one of them, or split=None for every image."
        )
    root = data.locate(name)
    rels = sorted(spec.manifest_entries())
    if split is not None:
        rels = [r for r in rels if r.split("/")[0] == split]
    table = compute_hashes([root / r for r in rels], method, crops=crops, progress=progress)
    return HashTable(tuple(rels), table.bits, table.method, table.crops)


def paired_distances(a: HashTable, b: HashTable) -> np.ndarray:
    """Hamming distance of row ``i`` of ``a`` to row ``i`` of ``b`` (aligned, not all pairs).

    Same rule as the pair search: the minimum over whole↔whole and crop↔whole views.

    Returns:
        ``int64 [N]`` distances in bits.
    """
    if len(a) != len(b):
        raise ConfigError(f"paired_distances needs tables of equal length, got {len(a)} and {len(b)}.")
    if b.method != a.method or b.crops != a.crops:
        raise ConfigError(
            f"Hash tables differ: a is {a.method!r} crops {a.crops}, b is {b.method!r} crops "
            f"{b.crops}. Fix: hash both sets with the same method and crops."
        )
    wa, wb = _words(a.bits), _words(b.bits)  # [W, V, N]
    best = None
    for va, vb in _view_pairs(wa.shape[1]):
        d = sum(_popcount(wa[w, va] ^ wb[w, vb]).astype(np.int64) for w in range(wa.shape[0]))
        best = d if best is None else np.minimum(best, d)
    return best


def annotate_pairs(pairs: pd.DataFrame, dataset_a: str, dataset_b: str | None = None) -> pd.DataFrame:
    """Add where each image of a pair comes from: data set, split and class.

    The split is the first folder of an id when it is ``train`` or ``test`` (else ``""``), the
    class is the folder holding the file (``benign`` / ``malignant``, else ``""``).

    Args:
        pairs: DataFrame ``file_a, file_b, distance, method`` (from :func:`hash_pairs`), with
            ids as files (:func:`hash_dataset`).
        dataset_a, dataset_b: names of the data sets the two columns come from
            (``dataset_b=None``: the same as ``dataset_a``).

    Returns:
        A new DataFrame ``dataset_a, file_a, split_a, label_a, dataset_b, file_b, split_b,
        label_b, distance, method`` (row order kept).
    """
    def split_of(f: str) -> str:
        parts = Path(f).parts
        return parts[0] if len(parts) > 2 and parts[0] in ("train", "test") else ""

    def label_of(f: str) -> str:
        parts = Path(f).parts
        return parts[-2] if len(parts) > 1 and parts[-2] in CLASSES else ""

    require_columns(pairs, "file_a", "file_b", "distance", "method")
    out = pd.DataFrame(index=pairs.index)
    for side, name in (("a", dataset_a), ("b", dataset_b or dataset_a)):
        files = pairs[f"file_{side}"].astype(str)
        out[f"dataset_{side}"] = name
        out[f"file_{side}"] = files
        out[f"split_{side}"] = [split_of(f) for f in files]
        out[f"label_{side}"] = [label_of(f) for f in files]
    out["distance"] = pairs["distance"]
    out["method"] = pairs["method"]
    return out


_SUBSAMPLING = {(1, 1): "4:4:4", (2, 1): "4:2:2", (1, 2): "4:4:0", (2, 2): "4:2:0"}


def jpeg_fingerprints(root: str | os.PathLike, ids: Sequence[str] | None = None) -> pd.DataFrame:
    """How each JPEG file was encoded, read from its header (no pixel decoding).

    Files of one source usually share an encoder, so these columns tell sources apart; when
    they differ between the classes, a network can separate the classes by the file format
    alone (a shortcut). Chapter 01 cross-tabulates them by class.

    Args:
        root: data set folder. ids: relative paths (default: every image under ``root``).

    Returns:
        DataFrame, one row per file: ``id``, ``label`` (the class folder), ``quant_table``
        (8-hex-digit digest of the quantization tables: equal digests = same encoder settings),
        ``subsampling`` (chroma subsampling ``"4:4:4"``, ``"4:2:0"``, ...; ``""`` for grey or
        non-JPEG files), ``density`` (JFIF dots per unit, e.g. ``"72x72"``), ``exif`` (bool:
        the file carries EXIF tags), ``exif_make`` (camera maker or ``""``), ``bytes``.
    """
    import hashlib

    from PIL import Image

    root = Path(root)
    rels = [p.relative_to(root).as_posix() for p in list_images(root)] if ids is None else [str(i) for i in ids]
    rows = []
    for rel in rels:
        path = root / rel
        with Image.open(path) as img:
            q = getattr(img, "quantization", None) or {}
            digest = hashlib.sha256(repr(sorted((k, list(v)) for k, v in q.items())).encode()).hexdigest()[:8] if q else ""
            layer = getattr(img, "layer", None)
            sub = _SUBSAMPLING.get(tuple(layer[0][1:3]), "other") if layer and len(layer) == 3 else ""
            dens = img.info.get("jfif_density")
            exif = img.getexif()
            rows.append({
                "id": rel,
                "label": Path(rel).parts[-2] if len(Path(rel).parts) > 1 else "",
                "quant_table": digest,
                "subsampling": sub,
                "density": f"{dens[0]}x{dens[1]}" if dens else "",
                "exif": len(exif) > 0,
                "exif_make": str(exif.get(0x010F, "")).strip("\x00 "),
                "bytes": path.stat().st_size,
            })
    return pd.DataFrame(rows, columns=["id", "label", "quant_table", "subsampling", "density", "exif", "exif_make", "bytes"])


# ----------------------------------------------------------------------------- results files

#: The chapter that writes the audit's results files.
AUDIT_CHAPTER = "01_dataset"
#: The pair tables chapter 01 saves (``which`` -> file name in its results folder).
PAIRS_FILES = {"train_test": "pairs_train_test.csv", "external": "pairs_external.csv"}


def read_audit_pairs(which: str, profile: str) -> pd.DataFrame:
    """The near-duplicate pairs chapter 01 saved: ``which="train_test"`` (``file_a`` in
    isic_balanced/train, ``file_b`` in its test split) or ``"external"`` (``file_a`` in
    isic_balanced, ``file_b`` in the external set named in ``dataset_b``).

    Chapter 08 uses ``set(read_audit_pairs("external", P.name).file_b)`` to leave out the
    external images that are copies of the paper's own images.

    Raises:
        FileNotFoundError: chapter 01 has not been run under this profile (says how to run it).
    """
    if which not in PAIRS_FILES:
        raise ConfigError(f"which={which!r}: expected one of {list(PAIRS_FILES)}.")
    path = results_dir(AUDIT_CHAPTER, profile) / PAIRS_FILES[which]
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} does not exist: chapter {AUDIT_CHAPTER} writes it. Fix: run chapters/{AUDIT_CHAPTER} "
            f"under the same profile (SKINLESION_PROFILE={profile}) first."
        )
    return pd.read_csv(path, keep_default_na=False)


__all__ = [
    "DEFAULT_CROPS",
    "DEFAULT_METHOD",
    "DEFAULT_THRESHOLD",
    "HASH_METHODS",
    "AUDIT_CHAPTER",
    "HashTable",
    "PAIRS_FILES",
    "annotate_pairs",
    "clear_hash_cache",
    "compute_embeddings",
    "compute_hashes",
    "duplicate_clusters",
    "find_near_duplicates",
    "forget_hashes",
    "hamming_distance_histogram",
    "hash_dataset",
    "hash_pairs",
    "jpeg_fingerprints",
    "list_images",
    "nearest_neighbour_distances",
    "as_paths",
    "paired_distances",
    "read_audit_pairs",
]
