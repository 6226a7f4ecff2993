"""Checks of chapter 04's exercises (the training and evaluation engine).

* :func:`check_steps_per_epoch` — Exercise 1 (★☆☆): optimizer steps in one epoch of
  :func:`skinlesion_utils.train.fit` for ``n_images``, a global ``batch_size`` and
  ``world_size`` processes (the last partial batch is kept unless it holds one image).
* :func:`check_onecycle_lr` — Exercise 2 (★★☆): the learning rate of the ``fast`` recipe's
  one-cycle schedule at optimizer step ``t`` (cosine warm-up from peak/25, cosine decay to
  peak·10⁻⁴).
* :func:`check_flip_and_shift` — Exercise 3 (★★★): the paper's augmentation (horizontal flip
  with probability ½, shift up to ±10 % of the side, bilinear, border pixels repeated) on a
  batch, with the random numbers drawn from a seeded generator in a fixed order.

Each check compares the learner's function with a reference computed another way (a
simulation of the epoch's batches, the engine's own ``train.make_scheduler`` and
``augment.augment_batch``) on made-up cases and on cases built from the real data (the size of
the real training split, real test images), and prints ✅ or ❌ with a hint — never the
expected values.
"""
from __future__ import annotations

import math
import numbers

import numpy as np
import torch
import torch.nn.functional as F

from .. import data
from ..augment import AugmentConfig, augment_batch
from ..profiles import profile
from ..train import Recipe, get_recipe, make_scheduler
from . import Case, Check, describe
from .ch00 import real_batch

# ----------------------------------------------------------------- the real training split


def _real_train_size(val_fraction: float = 0.15, seed: int = 0) -> int:
    """Images left for training after ``train.train_val_split`` of the real training split
    (computed from the manifest's class counts, without decoding any image)."""
    from sklearn.model_selection import train_test_split


    counts = data.dataset_table("isic_balanced")
    labels = np.repeat([0, 1], [int(counts.loc["train", "benign"]), int(counts.loc["train", "malignant"])])
    tr, _ = train_test_split(np.arange(len(labels)), test_size=val_fraction, stratify=labels, random_state=seed)
    return len(tr)


# ----------------------------------------------------------------- Exercise 1: steps per epoch


def _steps_reference(n_images: int, batch_size: int, world_size: int = 1) -> int:
    """Simulate one epoch: pad the permutation to a multiple of world_size, take this rank's
    share, cut it into batches of batch_size // world_size, count the batches fit runs."""
    order = list(range(n_images))
    padded = order + order[: (-n_images) % world_size]
    mine = padded[0::world_size]
    per = batch_size // world_size
    batches = [mine[i : i + per] for i in range(0, len(mine), per)]
    kept = [b for b in batches if len(b) == per or len(b) >= 2]  # a lone image would break BatchNorm
    return max(len(kept), 1)


def _steps_compare(got, expected: int, case: Case) -> str | None:
    if isinstance(got, bool) or not isinstance(got, numbers.Integral):
        if isinstance(got, numbers.Real) and float(got).is_integer():
            return f"return a whole number (int), got {describe(got)}: math.ceil and // give ints, np.ceil gives floats."
        return f"return the number of steps as an int; got {describe(got)}."
    if int(got) == expected:
        return None
    n, bs, world = case.args[0], case.args[1], (case.args[2] if len(case.args) > 2 else 1)
    per, rank_bs = math.ceil(n / world), bs // world
    if world > 1 and int(got) == _steps_reference(n, bs, 1):
        return (f"that is the count without DDP (world_size = 1). With {world} processes each one sees ceil(n / {world}) "
                f"images (the shuffled order is padded by repetition) in batches of batch_size // {world}.")
    if int(got) == math.ceil(per / rank_bs):
        return ("you kept a last batch of a single image; fit drops it (BatchNorm cannot compute a "
                "variance from one image).")
    if int(got) == per // rank_bs:
        return "you dropped the last, partial batch; fit keeps it whenever it holds at least 2 images."
    return "the count differs from the number of batches fit runs."


def _steps_cases() -> list[Case]:
    return [
        Case("100 images in batches of 10 (it divides)", (100, 10)),
        Case("66 images, batch 64", (66, 64)),
        Case("65 images, batch 64", (65, 64)),
        Case("10 images, batch 64 (fewer images than one batch)", (10, 64)),
        Case("75 images, global batch 16 on 2 processes", (75, 16, 2)),
        Case("66 images, global batch 64 on 2 processes", (66, 64, 2)),
        Case("130 images, global batch 64 on 4 processes", (130, 64, 4)),
        Case("101 images, global batch 32 on 4 processes", (101, 32, 4)),
        Case("97 images, global batch 32 on 4 processes", (97, 32, 4)),
    ]


def _steps_real_cases() -> list[Case]:
    n = _real_train_size()
    cases = []
    for name in ("ci", "full"):
        bs = profile(name).batch_size
        cases.append(Case(f"the real training split after validation, batch {bs} (the '{name}' profile)", (n, bs)))
    cases.append(Case("the real training split on 2 GPUs (torchrun), global batch 64", (n, 64, 2)))
    return cases


check_steps_per_epoch = Check(
    reference=_steps_reference,
    cases=_steps_cases,
    real_cases=_steps_real_cases,
    compare=_steps_compare,
    hint="each process takes ceil(n / world_size) images in batches of batch_size // world_size; "
    "a last batch of ≥ 2 images counts, a last batch of 1 image is dropped.",
)
check_steps_per_epoch.__doc__ = """Check Exercise 1: ``steps_per_epoch(n_images, batch_size, world_size=1) -> int``.

Expected: the optimizer steps of one epoch of ``train.fit`` — each of the ``world_size``
processes takes ``ceil(n_images / world_size)`` images in batches of ``batch_size //
world_size``; the last partial batch counts when it holds at least 2 images.
Prints ✅/❌; returns True/False."""

# ----------------------------------------------------------------- Exercise 2: one-cycle lr


def _lr_reference(step: int, total_steps: int, peak_lr: float, warmup_fraction: float = 0.25) -> float:
    """The engine's own schedule: train.make_scheduler's multiplier at ``step`` × the peak."""
    recipe = Recipe(name="exercise", description="", optimizer="sgd", lr=peak_lr, schedule="onecycle",
                    warmup_fraction=warmup_fraction)
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=peak_lr)
    return float(peak_lr * make_scheduler(opt, recipe, total_steps).lr_lambdas[0](step))


def _cos(a: float, b: float, frac: float) -> float:
    return b + (a - b) * (1 + math.cos(math.pi * min(max(frac, 0.0), 1.0))) / 2


def _lr_compare(got, expected: float, case: Case) -> str | None:
    if isinstance(got, bool) or not isinstance(got, numbers.Real):
        if isinstance(got, torch.Tensor) and got.numel() == 1:
            got = float(got)
        else:
            return f"return the learning rate as a float; got {describe(got)}."
    got = float(got)
    if math.isclose(got, expected, rel_tol=1e-9, abs_tol=1e-15):
        return None
    step, total, peak = case.args[:3]
    warm_frac = case.args[3] if len(case.args) > 3 else case.kwargs.get("warmup_fraction", 0.25)
    warm = round(warm_frac * total)
    if got > peak * (1 + 1e-9) or got < 0:
        return "a one-cycle learning rate stays between 0 and the peak."
    if step < warm:
        if math.isclose(got, peak, rel_tol=1e-9):
            return "during the warm-up the rate is below the peak: it starts at peak / 25."
        linear = peak * (1 / 25 + (1 - 1 / 25) * step / warm)
        if math.isclose(got, linear, rel_tol=1e-9):
            return "the warm-up follows half a cosine, not a straight line."
        return f"wrong during the warm-up (the first round({warm_frac} × total_steps) steps)."
    if math.isclose(got, _cos(1.0, 0.0, (step - warm) / max(total - warm - 1, 1)) * peak, rel_tol=1e-9, abs_tol=1e-15):
        return "the decay ends at peak × 1e-4, not at 0."
    if math.isclose(got, peak * _cos(1.0, 1e-4, (step - warm) / max(total - warm, 1)), rel_tol=1e-9):
        return "the decay reaches its floor at the last step, t = total_steps − 1: divide by (total_steps − W − 1)."
    return "wrong during the decay (after the warm-up)."


def _lr_cases() -> list[Case]:
    cases = [Case(f"step {t} of 100, peak 0.01", (t, 100, 0.01)) for t in (0, 10, 24, 25, 60, 99)]
    cases += [Case(f"step {t} of 7, peak 1.0 (a very short run)", (t, 7, 1.0)) for t in (1, 3, 6)]
    cases += [Case(f"step {t} of 40, peak 3e-4, warm-up fraction 0.3", (t, 40, 3e-4, 0.3)) for t in (5, 12, 39)]
    return cases


def _lr_real_cases() -> list[Case]:
    prof = profile("ci")
    rec = get_recipe("fast")
    total = _steps_reference(_real_train_size(), prof.batch_size) * prof.epochs
    warm = round(rec.warmup_fraction * total)
    return [Case(f"the ci main run's schedule (real training split, {prof.epochs} epochs of batch "
                 f"{prof.batch_size}): step {name}", (t, total, rec.lr, rec.warmup_fraction))
            for name, t in (("0", 0), ("W − 1", warm - 1), ("W", warm), ("halfway", total // 2), ("last", total - 1))]


check_onecycle_lr = Check(
    reference=_lr_reference,
    cases=_lr_cases,
    real_cases=_lr_real_cases,
    compare=_lr_compare,
    hint="W = round(warmup_fraction · total_steps); before W a cosine from peak/25 up to the peak "
    "(f = t / W), then a cosine from the peak down to peak × 1e-4 (f = (t − W) / (total_steps − W − 1), at most 1).",
)
check_onecycle_lr.__doc__ = """Check Exercise 2: ``onecycle_lr(step, total_steps, peak_lr, warmup_fraction=0.25) -> float``.

Expected: the learning rate that ``train.fit`` uses at optimizer step ``step`` (0-based) of a
``fast``-recipe run of ``total_steps`` steps: the one-cycle schedule of ``train.make_scheduler``.
Prints ✅/❌; returns True/False."""

# ----------------------------------------------------------------- Exercise 3: flip and shift


def _flip_shift_reference(x: torch.Tensor, seed: int, shift: float = 0.1) -> torch.Tensor:
    return augment_batch(x, AugmentConfig(hflip=0.5, vflip=0.0, shift=shift), torch.Generator().manual_seed(seed))


def _draws(seed: int, b: int, shift: float, order=("flip", "dx", "dy")) -> dict:
    g = torch.Generator().manual_seed(seed)
    out = {}
    for name in order:
        r = torch.rand(b, generator=g)
        out[name] = r < 0.5 if name == "flip" else (r * 2 - 1) * shift
    return out


def _apply(x: torch.Tensor, flip, dx, dy, padding: str = "border", flip_after: bool = False) -> torch.Tensor:
    """out[:, y, x] = in[:, y + dy·H, x + dx·W] (bilinear), images mirrored where ``flip``."""
    b = x.shape[0]
    x = x.float()
    mirror = lambda t: torch.where(flip.view(b, 1, 1, 1), t.flip(3), t)  # noqa: E731
    if not flip_after:
        x = mirror(x)
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0] = theta[:, 1, 1] = 1
    theta[:, 0, 2], theta[:, 1, 2] = 2 * dx, 2 * dy
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode=padding, align_corners=False)
    return mirror(x) if flip_after else x


def _flip_shift_compare(got, expected: torch.Tensor, case: Case) -> str | None:
    if not isinstance(got, torch.Tensor):
        return f"return a torch.Tensor; got {describe(got)}."
    if tuple(got.shape) != tuple(expected.shape):
        return f"wrong shape: expected {tuple(expected.shape)} (the batch's own shape), got {tuple(got.shape)}."
    if not got.is_floating_point():
        return f"return floating-point pixels (float32 in 0..255), got dtype {str(got.dtype).replace('torch.', '')}."
    g = got.detach().float().cpu()
    close = lambda a: bool(torch.allclose(g, a, atol=1e-2, rtol=0))  # noqa: E731
    if close(expected):
        return None
    x, seed = case.args[0], case.args[1]
    shift = case.args[2] if len(case.args) > 2 else case.kwargs.get("shift", 0.1)
    b = x.shape[0]
    d = _draws(seed, b, shift)
    if g.max() <= 1.0 + 1e-6 and x.max() > 1:
        return "your pixels are in [0, 1]; keep the 0..255 scale of the input (the engine normalises later)."
    if close(x.float()):
        return "the batch came back unchanged."
    if close(_apply(x, d["flip"], -d["dx"], -d["dy"])):
        return "the shift goes the wrong way: out[:, y, x] takes the input at (y + dy·H, x + dx·W)."
    if close(_apply(x, d["flip"], d["dy"], d["dx"])):
        return "dx and dy are swapped: dx moves along the width (the last axis), dy along the height."
    if close(_apply(x, d["flip"], d["dx"], d["dy"], padding="zeros")):
        return "outside the image the border pixel is repeated (padding_mode='border'), not black."
    if close(_apply(x, ~d["flip"], d["dx"], d["dy"])):
        return "the flip is inverted: mirror the images whose draw is below 0.5."
    if close(_apply(x, d["flip"], torch.zeros(b), torch.zeros(b))):
        return "the flips are right but the shift is missing."
    if close(_apply(x, d["flip"], d["dx"], d["dy"], flip_after=True)):
        return "mirror first, then shift (the shift is drawn for the mirrored image)."
    for order in (("dx", "dy", "flip"), ("flip", "dy", "dx"), ("dx", "flip", "dy")):
        alt = _draws(seed, b, shift, order)
        if close(_apply(x, alt["flip"], alt["dx"], alt["dy"])):
            return "the random numbers are drawn in another order: flips first, then dx, then dy (B numbers each)."
    wrong = int((~torch.isclose(g, expected, atol=1e-2, rtol=0)).sum())
    return f"{wrong} of {expected.numel()} values differ from the reference."


def _flip_shift_cases() -> list[Case]:
    g = torch.Generator().manual_seed(4)
    ramp = (torch.arange(8 * 8, dtype=torch.float32).view(1, 1, 8, 8) * 4).expand(1, 3, 8, 8)
    ramp = torch.cat([ramp, ramp.flip(2)], 0).round().to(torch.uint8).contiguous()
    return [
        Case("two 8×8 ramps, seed 0", (ramp, 0)),
        Case("a random 6-image batch of 10×12 px (not square), seed 3, shift 0.2",
             (torch.randint(0, 256, (6, 3, 10, 12), dtype=torch.uint8, generator=g), 3, 0.2)),
        Case("a random 5-image batch, seed 11, shift 0 (flips only)",
             (torch.randint(0, 256, (5, 3, 6, 6), dtype=torch.uint8, generator=g), 11, 0.0)),
    ]


def _flip_shift_real_cases() -> list[Case]:
    batch = real_batch()  # 16 real test images, uint8 [16, 3, 64, 64]
    return [
        Case("16 real test images at 64 px, seed 0, the paper's shift 0.1", (batch.clone(), 0, 0.1)),
        Case("4 real test images cropped to 40×64 px, seed 7, shift 0.25", (batch[4:8, :, 12:52, :].clone(), 7, 0.25)),
    ]


check_flip_and_shift = Check(
    reference=_flip_shift_reference,
    cases=_flip_shift_cases,
    real_cases=_flip_shift_real_cases,
    compare=_flip_shift_compare,
    hint="F.affine_grid measures positions from −1 to 1 across the image (align_corners=False), so a shift "
    "of dx·W pixels is 2·dx there; then F.grid_sample(..., mode='bilinear', padding_mode='border', align_corners=False).",
)
check_flip_and_shift.__doc__ = """Check Exercise 3: ``flip_and_shift(x, seed, shift=0.1) -> torch.Tensor``.

``x``: uint8 [B, 3, H, W]. Expected: float32 [B, 3, H, W] in 0..255, the paper's augmentation
drawn from ``torch.Generator().manual_seed(seed)`` (flips, then dx, then dy), identical to
``augment.augment_batch(x, AugmentConfig(hflip=0.5, shift=shift), generator)``.
Prints ✅/❌; returns True/False."""

__all__ = ["check_steps_per_epoch", "check_onecycle_lr", "check_flip_and_shift"]
