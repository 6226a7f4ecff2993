"""Checks of chapter 08's exercises (external validation).

* :func:`check_drop_contaminated` — Exercise 1 (★☆☆): remove the contaminated external images
  from a prediction table.
* :func:`check_squash_and_crop` — Exercise 2 (★★☆): squash and centre-crop a non-square
  image to a square input, the two rules of :func:`skinlesion_utils.data.decode_image`.
* :func:`check_accuracy_drop` — Exercise 3 (★★★): how much the contaminated images raise the
  external accuracy, with a paired bootstrap CI.

Each check compares the learner's function with a reference computed another way (pandas
``isin``, the package's own ``data.decode_image`` rules with PIL, the package's vectorised
``metrics.metric_difference``) on made-up cases and on cases built from the real external
images, and prints ✅ or ❌ with a hint — never the expected values.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .. import data
from ..metrics import metric_difference
from . import Case, Check, describe

# ----------------------------------------------------------------- shared cases


def _prediction_table(ids, y, seed: int, signal: float = 0.35) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    y = np.asarray(y, dtype=np.int64)
    s = np.clip(signal * y + (1 - signal) * rng.random(y.size), 0, 1)
    return pd.DataFrame({"id": list(ids), "y_true": y, "y_score": s})


def _made_up_table(n: int = 400, seed: int = 0, contaminated_share: float = 0.1):
    """n images; the first ``contaminated_share`` of them are 'copies' the model gets right."""
    rng = np.random.default_rng(seed)
    ids = [f"{'benign' if i % 2 == 0 else 'malignant'}/IMG_{i:04d}.jpg" for i in range(n)]
    y = np.arange(n) % 2
    table = _prediction_table(ids, y, seed)
    k = int(n * contaminated_share)
    copies = rng.choice(n, k, replace=False)
    table.loc[copies, "y_score"] = np.where(y[copies] == 1, 0.97, 0.03)
    return table, [ids[i] for i in copies]


def _real_table(seed: int = 7):
    """The real external sample's ids and labels with a seeded score; a seeded 8 % 'contaminated'."""
    name = data.external_dataset_name()
    data.locate(name, download=False)  # DataError when the data is not on disk: real cases skipped
    ids = sorted(data.get_spec(name).manifest_entries())
    y = [data.CLASSES.index(i.split("/")[-2]) for i in ids]
    table = _prediction_table(ids, y, seed)
    rng = np.random.default_rng(seed)
    copies = sorted(rng.choice(len(ids), int(0.084 * len(ids)), replace=False).tolist())
    table.loc[copies, "y_score"] = np.where(table.y_true.to_numpy()[copies] == 1, 0.9, 0.1)
    return table, name, [ids[i] for i in copies]


# ----------------------------------------------------------------- Exercise 1: drop contaminated


def _drop_reference(predictions: pd.DataFrame, contaminated_ids) -> pd.DataFrame:
    ids = set(map(str, contaminated_ids))
    return predictions[~predictions["id"].astype(str).isin(ids)]


def _drop_compare(got, expected: pd.DataFrame, case: Case) -> str | None:
    table, contaminated = case.args
    if not isinstance(got, pd.DataFrame):
        return f"return a pandas DataFrame (the kept rows); got {describe(got)}."
    if list(got.columns) != list(expected.columns):
        return f"keep every column of the table, in order: expected {list(expected.columns)}, got {list(got.columns)}."
    if "id" in got and got["id"].astype(str).isin(set(map(str, contaminated))).any():
        return "some contaminated images are still in your table."
    if len(got) < len(expected):
        if len(got) == len(table) - len(expected) or (len(expected) < len(table) and len(got) == 0):
            return "you kept the contaminated images and dropped the others: invert the selection."
        return f"you dropped {len(expected) - len(got)} image(s) too many: only the listed ids go."
    if len(got) > len(expected):
        return f"{len(got) - len(expected)} contaminated row(s) were kept."
    if got.reset_index(drop=True).equals(expected.reset_index(drop=True)):
        return None
    if sorted(got["id"]) == sorted(expected["id"]):
        return "the right rows, but not in the table's original order (do not sort)."
    return "the rows differ from the reference (compare ids, not positions)."


def _drop_cases() -> list[Case]:
    table, copies = _made_up_table(40, seed=1)
    return [
        Case("a 40-image table, 4 contaminated ids given as a list", (table, copies)),
        Case("the same table, contaminated ids as a set", (table, set(copies))),
        Case("no contaminated image at all", (table, [])),
        Case("contaminated ids that are not in the table (other images of the training set)", (table, copies[:2] + ["benign/NOT_HERE.jpg"])),
        Case("a contaminated id listed twice", (table, copies[:1] * 2)),
        Case("a table whose index is not 0..N-1", (table.set_index(pd.Index(range(100, 140))), pd.Series(copies))),
    ]


def _drop_real_cases() -> list[Case]:
    table, name, copies = _real_table()
    return [Case(f"the {len(table)} real ids of {name} with {len(copies)} contaminated", (table, copies))]


check_drop_contaminated = Check(
    reference=_drop_reference,
    cases=_drop_cases,
    real_cases=_drop_real_cases,
    compare=_drop_compare,
    hint="select rows by their 'id' column: pandas' Series.isin(...) and ~ (not) do it in one line.",
)
check_drop_contaminated.__doc__ = """Check Exercise 1: ``drop_contaminated(predictions, contaminated_ids) -> DataFrame``.

``predictions``: DataFrame with columns id, y_true, y_score; ``contaminated_ids``: any iterable
of ids (may hold ids not in the table). Expected: the rows whose id is not contaminated, all
columns, original order. Prints ✅/❌; returns True/False."""

# ----------------------------------------------------------------- Exercise 2: squash and crop


def _resize(img, size: int):
    from PIL import Image

    return np.asarray(img.resize((size, size), Image.BILINEAR, reducing_gap=None), dtype=np.uint8)


def _squash_reference(image: np.ndarray, size: int):
    """The rules of data.decode_image: squash = resize to size×size; crop = centred square, then resize."""
    from PIL import Image

    img = Image.fromarray(np.ascontiguousarray(image), mode="RGB")
    w, h = img.size
    s = min(w, h)
    box = ((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s)
    return _resize(img, size), _resize(img.crop(box), size)


def _mad(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.float64) - b.astype(np.float64)).mean())


_TOLERANCE = 4.0  # mean absolute difference in grey levels (another interpolation is fine)


def _squash_compare(got, expected, case: Case) -> str | None:
    image, size = case.args
    if not isinstance(got, (tuple, list)) or len(got) != 2:
        return f"return a pair (squashed, cropped); got {describe(got)}."
    names = ("squashed", "cropped")
    arrays = []
    for name, g in zip(names, got):
        if hasattr(g, "size") and not isinstance(g, np.ndarray) and hasattr(g, "mode"):
            g = np.asarray(g)  # a PIL image is accepted
        if not isinstance(g, np.ndarray):
            return f"the {name} image should be a numpy array; got {describe(g)}."
        if g.shape != (size, size, 3):
            return f"the {name} image should have shape {(size, size, 3)}, got {g.shape}."
        if g.dtype != np.uint8:
            return f"the {name} image should be uint8, got {g.dtype}."
        arrays.append(g)
    sq, cr = arrays
    ref_sq, ref_cr = expected
    ok_sq, ok_cr = _mad(sq, ref_sq) <= _TOLERANCE, _mad(cr, ref_cr) <= _TOLERANCE
    if ok_sq and ok_cr:
        return None
    h, w = image.shape[:2]
    if h != w and _mad(sq, ref_cr) <= _TOLERANCE and _mad(cr, ref_sq) <= _TOLERANCE:
        return "the two results are swapped: return (squashed, cropped)."
    if not ok_sq:
        if h != w and _mad(sq, ref_cr) <= _TOLERANCE:
            return "your 'squashed' image keeps the aspect ratio; squashing resizes the whole image to size×size."
        return "the squashed image differs from the reference: resize the whole image to size×size, ignoring the aspect ratio."
    from PIL import Image

    s = min(w, h)
    corner = _resize(Image.fromarray(np.ascontiguousarray(image)).crop((0, 0, s, s)), size)
    if h != w and _mad(cr, corner) <= _TOLERANCE:
        return "your crop starts at the top-left corner; centre it: left = (width − side) // 2, top = (height − side) // 2."
    return ("the cropped image differs from the reference: take the largest centred square (side = the shorter "
            "side), then resize it to size×size.")


def _ramp(h: int, w: int) -> np.ndarray:
    """A colour ramp: red grows left→right, green top→bottom, blue constant — any misplaced crop shows."""
    yy, xx = np.mgrid[:h, :w]
    img = np.empty((h, w, 3), dtype=np.uint8)
    img[..., 0] = np.round(255 * xx / max(w - 1, 1))
    img[..., 1] = np.round(255 * yy / max(h - 1, 1))
    img[..., 2] = 90
    return img


def _squash_cases() -> list[Case]:
    return [
        Case("a 300×200 (width×height) landscape colour ramp, size 64", (_ramp(200, 300), 64)),
        Case("a 120×400 portrait colour ramp, size 32", (_ramp(400, 120), 32)),
        Case("a square 90×90 ramp, size 48 (both results agree)", (_ramp(90, 90), 48)),
        Case("a small 40×30 ramp enlarged to size 96", (_ramp(30, 40), 96)),
        Case("a 4288×2848-shaped ramp scaled down to 536×356, size 64", (_ramp(356, 536), 64)),
    ]


def _squash_real_cases() -> list[Case]:
    from PIL import Image


    name = data.external_dataset_name()
    root = data.locate(name, download=False)
    ids = sorted(data.get_spec(name).manifest_entries())
    for i in ids:  # the first landscape (non-square) image
        with Image.open(root / i) as img:
            if img.width <= img.height:
                continue
            img = data.to_rgb(img, root / i)
            if img.width > 700:  # the full set: scale large originals down for a fast check
                img = img.resize((img.width // 4, img.height // 4), Image.BILINEAR)
            arr = np.asarray(img, dtype=np.uint8)
        return [Case(f"the real external image {i} ({arr.shape[1]}×{arr.shape[0]}), size 64", (arr, 64))]
    return []


check_squash_and_crop = Check(
    reference=_squash_reference,
    cases=_squash_cases,
    real_cases=_squash_real_cases,
    compare=_squash_compare,
    hint="PIL: Image.fromarray(image), .resize((size, size)) and .crop((left, top, right, bottom)); np.asarray(...) back.",
)
check_squash_and_crop.__doc__ = """Check Exercise 2: ``squash_and_crop(image, size) -> (squashed, cropped)``.

``image``: uint8 [H, W, 3]; ``size``: output side. Expected: two uint8 [size, size, 3] arrays —
the whole image resized to size×size, and its largest centred square resized to size×size
(mean difference up to 4 grey levels accepted, so any reasonable interpolation passes).
Prints ✅/❌; returns True/False."""

# ----------------------------------------------------------------- Exercise 3: accuracy drop with CI

_N_BOOT_REFERENCE = 4000


def _drop_ci_reference(predictions: pd.DataFrame, contaminated_ids, n_boot: int = 2000, seed: int = 0):
    clean = ~predictions["id"].astype(str).isin(set(map(str, contaminated_ids))).to_numpy()
    everything = np.ones(len(predictions), dtype=bool)
    r = metric_difference(predictions, everything, clean, "accuracy", n_boot=_N_BOOT_REFERENCE, seed=12345)
    return r["delta"], r["low"], r["high"]


def _drop_ci_compare(got, expected, case: Case) -> str | None:
    if not isinstance(got, (tuple, list)) or len(got) != 3:
        return f"return a triple (drop, low, high) of floats; got {describe(got)}."
    try:
        point, low, high = (float(v) for v in got)
    except (TypeError, ValueError):
        return "return three numbers (drop, low, high)."
    ref_point, ref_low, ref_high = expected
    if not np.isfinite([point, low, high]).all():
        return "your result holds NaN or infinity."
    if abs(point - ref_point) > 1e-9:
        if abs(point + ref_point) <= 1e-9 and ref_point != 0:
            return "the sign is reversed: the drop is accuracy(all images) − accuracy(clean images)."
        if abs(point * 100 - ref_point) <= 1e-7 or abs(point - 100 * ref_point) <= 1e-7:
            return "give fractions (accuracy between 0 and 1), not percent."
        return ("the drop differs from the reference: accuracy on all images minus accuracy on the images left "
                "after removing the contaminated ids, both at threshold 0.5 (score >= 0.5 means malignant).")
    if not low <= point <= high:
        return "your interval (low, high) does not contain your drop; return (drop, low, high) in that order."
    width = ref_high - ref_low
    tol = 0.25 * width + 0.002
    if abs(low - ref_low) <= tol and abs(high - ref_high) <= tol:
        return None
    if (high - low) > 2 * width:
        return ("your interval is far too wide: resample the SAME images for both accuracies in each bootstrap "
                "round (the clean set is part of the full set, so the two accuracies move together).")
    if (high - low) < 0.5 * width:
        return "your interval is too narrow: resample N images with replacement (N = all images) in each round."
    return "your interval is off: take the 2.5th and 97.5th percentiles of the bootstrap drops."


def _drop_ci_cases() -> list[Case]:
    table, copies = _made_up_table(600, seed=2, contaminated_share=0.1)
    table2, copies2 = _made_up_table(500, seed=3, contaminated_share=0.2)
    return [
        Case("600 images, 10 % contaminated copies that the model gets right", (table, copies), {"seed": 0}),
        Case("500 images, 20 % contaminated, ids given as a set", (table2, set(copies2)), {"seed": 1}),
    ]


def _drop_ci_real_cases() -> list[Case]:
    table, name, copies = _real_table(seed=11)
    return [Case(f"the {len(table)} real ids and labels of {name}, {len(copies)} contaminated", (table, copies), {"seed": 0})]


check_accuracy_drop = Check(
    reference=_drop_ci_reference,
    cases=_drop_ci_cases,
    real_cases=_drop_ci_real_cases,
    compare=_drop_ci_compare,
    hint=("in each of n_boot rounds draw N row positions with replacement (numpy's default_rng(seed).integers), "
          "compute both accuracies on the drawn rows and keep their difference; then take percentiles."),
)
check_accuracy_drop.__doc__ = """Check Exercise 3: ``accuracy_drop(predictions, contaminated_ids, n_boot=2000, seed=0)
-> (drop, low, high)``.

``drop`` = accuracy on all rows − accuracy on the rows whose id is not contaminated (threshold
0.5), exactly; ``(low, high)`` a 95 % paired percentile-bootstrap interval, accepted within a
quarter of the reference interval's width. Prints ✅/❌; returns True/False."""

__all__ = ["check_drop_contaminated", "check_squash_and_crop", "check_accuracy_drop"]
