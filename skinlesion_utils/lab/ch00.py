"""Checks of chapter 00's exercises (setup and the data).

* :func:`check_malignant_share` — Exercise 1 (★☆☆): malignant fraction per row of a
  class-count table (``data.dataset_table``).
* :func:`check_channel_mean` — Exercise 2 (★★☆): per-channel mean of a uint8 batch
  ``[N, 3, H, W]`` as floats in [0, 1].
* :func:`check_composite_on_white` — Exercise 3 (★★★): composite an RGBA image on white, the
  rule :func:`skinlesion_utils.data.to_rgb` applies to images with an alpha channel.

Each check compares the learner's function with a reference computed another way (pandas
column sums, float64 numpy, the package's own ``data.to_rgb``) on made-up cases and on cases
built from the real images, and prints ✅ or ❌ with a hint — never the expected values.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
import pandas as pd
import torch

from .. import data
from ..data import to_rgb
from . import Case, Check, describe

# ----------------------------------------------------------------- Exercise 1: malignant share


def _share_reference(counts: pd.DataFrame) -> pd.Series:
    return counts["malignant"] / counts[["benign", "malignant"]].sum(axis=1)


def _counts(rows: dict[str, tuple[int, int]]) -> pd.DataFrame:
    df = pd.DataFrame(rows, index=["benign", "malignant"]).T.rename_axis("split")
    df["total"] = df.sum(axis=1)
    return df


def _share_compare(got, expected: pd.Series, case: Case) -> str | None:
    if not isinstance(got, pd.Series):
        return f"return a pandas Series with one value per row of the table; got {describe(got)}."
    if list(got.index) != list(expected.index):
        return (
            f"the Series must be indexed like the table's rows, in the same order: expected index "
            f"{list(expected.index)}, got {list(got.index)}."
        )
    values = pd.to_numeric(got, errors="coerce").to_numpy(dtype=float)
    want = expected.to_numpy(dtype=float)
    if np.allclose(values, want, atol=1e-9, equal_nan=True):
        return None
    counts = case.args[0]
    with np.errstate(divide="ignore", invalid="ignore"):
        if np.allclose(values, 100 * want, atol=1e-6, equal_nan=True):
            return "return a fraction between 0 and 1, not a percentage."
        if np.allclose(values, (counts["malignant"] / counts["benign"]).to_numpy(dtype=float), equal_nan=True):
            return "you divided by the benign count; the share is malignant over all images of the row."
        if np.allclose(values, (counts["benign"] / counts["total"]).to_numpy(dtype=float), equal_nan=True):
            return "that is the benign share; the exercise asks for the malignant one."
    if np.nanmax(np.abs(values)) > 1:
        return "a share must lie between 0 and 1; some of your values are outside."
    return f"{int((~np.isclose(values, want, atol=1e-9, equal_nan=True)).sum())} of {len(want)} shares differ from the reference."


def _share_real_cases() -> list[Case]:
    return [Case("the real isic_balanced table, data.dataset_table('isic_balanced')", (data.dataset_table("isic_balanced"),))]


check_malignant_share = Check(
    reference=_share_reference,
    cases=lambda: [
        Case("a table with one split", (_counts({"train": (3, 1)}),)),
        Case("a table whose rows are in another order", (_counts({"test": (10, 30), "train": (5, 5), "total": (15, 35)}),)),
        Case("a split with no malignant images", (_counts({"train": (7, 0), "test": (2, 2)}),)),
        Case("a split with only malignant images", (_counts({"train": (0, 9), "val": (4, 1)}),)),
    ],
    real_cases=_share_real_cases,
    compare=_share_compare,
    hint="use the table's columns (counts['malignant'], counts['total']); pandas divides row by row.",
)
check_malignant_share.__doc__ = """Check Exercise 1: ``malignant_share(counts) -> pd.Series``.

``counts``: DataFrame indexed by split with columns benign, malignant, total (as
``data.dataset_table``). Expected: a Series with the same index, fraction malignant in [0, 1].
Prints ✅/❌; returns True/False."""

# ----------------------------------------------------------------- Exercise 2: channel mean


def _mean_reference(images: torch.Tensor) -> torch.Tensor:
    means = np.asarray(images.numpy(), dtype=np.float64).mean(axis=(0, 2, 3)) / 255.0
    return torch.from_numpy(means).float()


def _mean_compare(got, expected: torch.Tensor, case: Case) -> str | None:
    if not isinstance(got, torch.Tensor):
        return f"return a torch.Tensor; got {describe(got)}."
    if tuple(got.shape) != (3,):
        return (
            f"expected shape (3,) — one mean per colour channel — got {tuple(got.shape)}. The batch is "
            "[N, 3, H, W]: average over images and pixels, keep the channel dimension."
        )
    if not got.is_floating_point():
        return f"return floating-point means (float32), got dtype {str(got.dtype).replace('torch.', '')}."
    g = got.detach().double().cpu()
    if torch.allclose(g, expected.double(), atol=1e-4, rtol=0):
        return None
    if torch.allclose(g, 255 * expected.double(), atol=2e-2, rtol=0):
        return "your means are on the 0–255 scale; the exercise asks for fractions in [0, 1] (divide by 255)."
    if g.min() < 0 or g.max() > 1:
        return "means of pixel fractions must lie in [0, 1]; some of yours do not."
    return "the means differ from the reference. Did you average over the right dimensions (all but dim 1)?"


@lru_cache(maxsize=1)
def real_batch(n: int = 16, resolution: int = 64) -> torch.Tensor:
    """n test-split images of isic_balanced (half of each class), uint8 [n, 3, R, R]."""
    root = data.locate("isic_balanced", download=False)
    picks = []
    for cls in data.CLASSES:
        files = sorted((root / "test" / cls).glob("*.jpg"))
        picks += files[:: max(1, len(files) // (n // 2))][: n // 2]
    return torch.from_numpy(np.stack([data.decode_image(p, resolution) for p in picks]))


def _mean_real_cases() -> list[Case]:
    batch = real_batch()
    return [
        Case(f"{len(batch)} real test images at 64 px", (batch.clone(),)),
        Case("one real image, cropped to 40×64 px", (batch[3:4, :, 12:52, :].clone(),)),
    ]


def _mean_cases() -> list[Case]:
    g = torch.Generator().manual_seed(0)
    return [
        Case("a batch of one image with a different constant per channel", (torch.tensor([10, 128, 250], dtype=torch.uint8).view(1, 3, 1, 1).expand(1, 3, 4, 4).clone(),)),
        Case("a white 8-image batch (every value 255, large sums)", (torch.full((8, 3, 32, 32), 255, dtype=torch.uint8),)),
        Case("a random 5-image batch, 7×9 px", (torch.randint(0, 256, (5, 3, 7, 9), dtype=torch.uint8, generator=g),)),
        Case("a random 2-image batch whose channels differ", (torch.randint(0, 256, (2, 3, 6, 6), dtype=torch.uint8, generator=g) // torch.tensor([1, 2, 4], dtype=torch.uint8).view(1, 3, 1, 1),)),
    ]


check_channel_mean = Check(
    reference=_mean_reference,
    cases=_mean_cases,
    real_cases=_mean_real_cases,
    compare=_mean_compare,
    hint="a batch is uint8 [N, 3, H, W]; convert to float before averaging (uint8 has no mean), then scale to [0, 1].",
)
check_channel_mean.__doc__ = """Check Exercise 2: ``channel_mean(images) -> torch.Tensor``.

``images``: uint8 [N, 3, H, W]. Expected: float32 [3], the mean of each channel over all images
and pixels, as a fraction of 255. Prints ✅/❌; returns True/False."""

# ----------------------------------------------------------------- Exercise 3: composite on white


def _composite_reference(rgba: np.ndarray) -> np.ndarray:
    from PIL import Image


    return np.asarray(to_rgb(Image.fromarray(np.ascontiguousarray(rgba), mode="RGBA")), dtype=np.uint8)


def _composite_compare(got, expected: np.ndarray, case: Case) -> str | None:
    if not isinstance(got, np.ndarray):
        return f"return a numpy array; got {describe(got)}."
    if got.shape != expected.shape:
        extra = " Drop the alpha channel from the result." if got.shape[:-1] == expected.shape[:-1] and got.shape[-1] == 4 else ""
        return f"expected shape {expected.shape} ([H, W, 3]), got {got.shape}.{extra}"
    if got.dtype != np.uint8:
        return f"return dtype uint8 (an image), got {got.dtype}: round, then convert with .astype(np.uint8)."
    diff = np.abs(got.astype(np.int16) - expected.astype(np.int16))
    if diff.max() <= 1:  # rounding may differ by one grey level
        return None
    rgba = case.args[0]
    rgb, alpha = rgba[..., :3].astype(np.float64), rgba[..., 3:4].astype(np.float64) / 255
    if (rgba[..., 3] < 255).any() and np.array_equal(got, rgba[..., :3]):
        return "the alpha channel was ignored: a transparent pixel (alpha 0) must become white."
    if np.abs(got.astype(np.float64) - alpha * rgb).max() <= 1:
        return "you composited on black; the background is white (255, 255, 255)."
    wrong = int((diff > 1).any(axis=-1).sum())
    return (
        f"{wrong} of {diff.shape[0] * diff.shape[1]} pixels are off by more than one grey level. "
        "Compute in floating point — uint8 arithmetic wraps around at 256 — then round."
    )


def _composite_cases() -> list[Case]:
    rng = np.random.default_rng(0)
    opaque = rng.integers(0, 256, (4, 5, 4), dtype=np.uint8)
    opaque[..., 3] = 255
    clear = rng.integers(0, 256, (3, 3, 4), dtype=np.uint8)
    clear[..., 3] = 0
    ramp = np.zeros((2, 256, 4), dtype=np.uint8)
    ramp[..., :3] = (30, 200, 90)
    ramp[..., 3] = np.arange(256, dtype=np.uint8)
    return [
        Case("a fully opaque 4×5 image", (opaque,)),
        Case("a fully transparent 3×3 image", (clear,)),
        Case("one colour under every alpha value 0…255", (ramp,)),
        Case("random colours and alphas, 6×9 px", (rng.integers(0, 256, (6, 9, 4), dtype=np.uint8),)),
    ]


def _composite_real_cases() -> list[Case]:
    image = real_batch()[9].numpy().transpose(1, 2, 0)  # uint8 [64, 64, 3]
    h, w = image.shape[:2]
    yy, xx = np.mgrid[:h, :w]
    r = np.hypot(yy - (h - 1) / 2, xx - (w - 1) / 2) / (min(h, w) / 2)
    alpha = np.clip((1.1 - r) / 0.3, 0, 1)  # opaque disc with a soft edge, like a dermatoscope's field
    rgba = np.dstack([image, np.round(alpha * 255).astype(np.uint8)])
    return [Case("a real dermoscopy image with a round, soft-edged alpha mask", (rgba,))]


check_composite_on_white = Check(
    reference=_composite_reference,
    cases=_composite_cases,
    real_cases=_composite_real_cases,
    compare=_composite_compare,
    hint="alpha = A / 255 weighs the pixel's colour against white; broadcast it over the 3 colour channels.",
)
check_composite_on_white.__doc__ = """Check Exercise 3: ``composite_on_white(rgba) -> np.ndarray``.

``rgba``: uint8 [H, W, 4]. Expected: uint8 [H, W, 3], each pixel a·RGB + (1 − a)·255 with
a = A / 255, rounded (±1 grey level accepted), as :func:`skinlesion_utils.data.to_rgb`.
Prints ✅/❌; returns True/False."""

__all__ = ["check_malignant_share", "check_channel_mean", "check_composite_on_white"]
