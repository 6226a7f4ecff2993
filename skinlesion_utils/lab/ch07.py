"""Checks of chapter 07's exercises (Grad-CAM, its sanity checks and its localisation).

* :func:`check_energy_inside` — Exercise 1 (★☆☆): the share of a map's mass that lies inside a
  lesion mask, ``Σ cam·mask / Σ cam`` (NaN for an all-zero map).
* :func:`check_pointing_game` — Exercise 2 (★★☆): the pointing game over a batch: the share of
  maps whose maximum (first one in row-major order) lies inside the mask, constant maps left
  out.
* :func:`check_deepest_block` — Exercise 3 (★★★): choose a Grad-CAM target layer for an
  architecture and an input size: the deepest convolutional block whose map is still at least
  ``min_side × min_side`` (``deepest_block(name, image_size, min_side)``, ``name`` a model of
  :func:`skinlesion_utils.models.list_models`).

Each check compares the learner's function with a reference computed another way (the
package's :func:`skinlesion_utils.localisation.localisation_score`; forward hooks on every block) on
made-up cases (for the layer choice: the book's own architectures) and on cases built from the
real data (approximate lesion masks of real test images; the real images' own size), and prints ✅ or ❌ with a hint — never the expected
values.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
from torch import nn

from .. import data
from ..localisation import approximate_lesion_masks, centre_prior, localisation_score
from ..models import build_model
from . import Case, Check, describe
from .ch00 import real_batch

# ----------------------------------------------------------------- real data: masks of test images


@lru_cache(maxsize=1)
def _real_masks() -> np.ndarray:
    """Approximate lesion masks (classical segmentation) of 16 real test images at 64 px,
    ``bool [16, 64, 64]``; the images whose mask is empty are dropped."""
    masks = approximate_lesion_masks(real_batch().numpy())
    return masks[masks.any(axis=(1, 2))]


def _smooth_maps(n: int, size: int, seed: int) -> np.ndarray:
    """n random smooth maps in [0, 1] (a few Gaussian bumps each), float32 [n, size, size]."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    out = np.zeros((n, size, size), np.float32)
    for i in range(n):
        for _ in range(3):
            cy, cx = rng.uniform(0, size, 2)
            s = rng.uniform(0.08, 0.25) * size
            out[i] += rng.uniform(0.3, 1.0) * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * s * s))
        out[i] /= out[i].max()
    return out


# ----------------------------------------------------------------- Exercise 1: energy inside


def _energy_reference(cam: np.ndarray, mask: np.ndarray) -> float:
    return float(localisation_score(np.asarray(cam)[None], np.asarray(mask)[None]).energy_inside[0])


def _energy_compare(got, expected: float, case: Case) -> str | None:
    if isinstance(got, (np.ndarray, torch.Tensor)) and np.size(got) == 1:
        got = float(np.asarray(got).reshape(-1)[0])
    if not isinstance(got, (float, int, np.floating, np.integer)) or isinstance(got, bool):
        return f"return one number (a float); got {describe(got)}."
    got = float(got)
    if np.isnan(expected):
        return None if np.isnan(got) else "an all-zero map has no mass to share out: return float('nan')."
    if np.isnan(got):
        return "you returned NaN for a map that is not all zero."
    if abs(got - expected) <= 1e-6:
        return None
    cam, mask = (np.asarray(a, dtype=np.float64) for a in case.args)
    inside = (cam * mask).sum()
    if mask.sum() and abs(got - inside / mask.sum()) <= 1e-6:
        return "you divided by the mask's area; divide by the map's total mass Σ cam."
    if abs(got - inside) <= 1e-6:
        return "that is the mass inside the mask, not yet a share: divide by the map's total mass."
    if mask.sum() and abs(got - cam[mask > 0].mean()) <= 1e-6:
        return "that is the map's mean value inside the mask; the exercise asks for the share of its mass."
    if abs(got - (cam * (1 - mask)).sum() / cam.sum()) <= 1e-6:
        return "that is the share *outside* the mask."
    if not 0 <= got <= 1:
        return "a share must lie in [0, 1]; yours does not."
    return "the share differs from Σ cam·mask / Σ cam."


def _energy_cases() -> list[Case]:
    mask = np.zeros((16, 16), bool)
    mask[4:12, 4:12] = True
    inside = np.zeros((16, 16), np.float32)
    inside[6:10, 6:10] = 1.0
    half = np.zeros((16, 16), np.float32)
    half[4:12, 0:8] = 0.8  # half in, half out
    smooth = _smooth_maps(1, 20, seed=0)[0]
    ring = np.zeros((20, 20), bool)
    ring[3:17, 3:17] = True
    ring[7:13, 7:13] = False
    return [
        Case("a map entirely inside a square mask", (inside, mask)),
        Case("a map half inside the mask, with values below 1", (half, mask)),
        Case("a uniform map", (np.full((16, 16), 0.3, np.float32), mask)),
        Case("an all-zero map", (np.zeros((16, 16), np.float32), mask)),
        Case("a smooth map and a ring-shaped mask (20×20)", (smooth, ring)),
    ]


def _energy_real_cases() -> list[Case]:
    masks = _real_masks()
    maps = _smooth_maps(3, masks.shape[-1], seed=1)
    return [
        Case("a centred Gaussian map and the approximate lesion mask of a real test image",
             (centre_prior(masks.shape[-1]), masks[0].copy())),
        *(Case(f"a smooth random map and the approximate mask of real test image {i + 1}", (maps[i], masks[i + 1].copy()))
          for i in range(3)),
    ]


check_energy_inside = Check(
    reference=_energy_reference,
    cases=_energy_cases,
    real_cases=_energy_real_cases,
    compare=_energy_compare,
    hint="cam is float [H, W] ≥ 0 and mask bool [H, W]; (cam * mask).sum() is the mass inside.",
)
check_energy_inside.__doc__ = """Check Exercise 1: ``energy_inside(cam, mask) -> float``.

``cam``: float [H, W], non-negative; ``mask``: bool [H, W]. Expected: ``Σ cam·mask / Σ cam`` in
[0, 1], ``nan`` for an all-zero map. Prints ✅/❌; returns True/False."""

# ----------------------------------------------------------------- Exercise 2: pointing game


def _pointing_reference(cams: np.ndarray, masks: np.ndarray) -> float:
    hits = localisation_score(np.asarray(cams), np.asarray(masks)).pointing_hit.to_numpy(float)
    hits = hits[np.isfinite(hits)]
    return float(hits.mean()) if hits.size else float("nan")


def _pointing_variant(cams, masks, *, transpose=False, flat_as_miss=False, last_max=False):
    hits = []
    for c, m in zip(np.asarray(cams), np.asarray(masks)):
        if c.max() == c.min():
            if flat_as_miss:
                hits.append(0.0)
            continue
        flat = c.ravel()
        k = len(flat) - 1 - int(np.argmax(flat[::-1])) if last_max else int(np.argmax(flat))
        r, col = np.unravel_index(k, c.shape)
        if transpose:
            r, col = col, r
        hits.append(float(m[r, col]) if r < m.shape[0] and col < m.shape[1] else 0.0)
    return float(np.mean(hits)) if hits else float("nan")


def _pointing_compare(got, expected: float, case: Case) -> str | None:
    if isinstance(got, (np.ndarray, torch.Tensor)) and np.size(got) == 1:
        got = float(np.asarray(got).reshape(-1)[0])
    if not isinstance(got, (float, int, np.floating, np.integer)) or isinstance(got, bool):
        return f"return one number, the share of hits; got {describe(got)}."
    got = float(got)
    if np.isnan(expected):
        return None if np.isnan(got) else "when every map is constant no map points anywhere: return float('nan')."
    if np.isnan(got):
        return "you returned NaN although some maps have a maximum."
    if abs(got - expected) <= 1e-9:
        return None
    cams, masks = case.args
    n_hits = expected * np.sum([c.max() > c.min() for c in np.asarray(cams)])
    if abs(got - n_hits) <= 1e-9 and n_hits != expected:
        return "that is the number of hits; return their share (hits / images that have a maximum)."
    for kw, hint in (({"transpose": True}, "rows and columns are swapped: np.unravel_index(k, shape) gives (row, column)."),
                     ({"flat_as_miss": True}, "a constant map points nowhere: leave it out instead of counting it as a miss."),
                     ({"last_max": True}, "with ties, use the *first* maximum in row-major order (np.argmax does that).")):
        v = _pointing_variant(cams, masks, **kw)
        if np.isfinite(v) and abs(got - v) <= 1e-9:
            return hint
    if not 0 <= got <= 1:
        return "a share must lie in [0, 1]; yours does not."
    return "the share of hits differs: for each map take the position of its maximum and look it up in that image's mask."


def _pointing_cases() -> list[Case]:
    masks = np.zeros((4, 12, 12), bool)
    masks[:, 2:6, 7:11] = True  # top right: a point (row 3, col 8) is inside, (8, 3) is not
    cams = np.zeros((4, 12, 12), np.float32)
    cams[0, 3, 8] = 1.0  # inside
    cams[1, 8, 3] = 1.0  # outside (its transpose would be inside)
    cams[2, 4, 9] = 0.7  # inside
    cams[3, 10, 10] = 0.9  # outside
    ties = np.zeros((2, 12, 12), np.float32)
    ties[0, 3, 8] = ties[0, 11, 0] = 1.0  # two equal maxima: the first (row-major) is inside
    ties[1, 11, 11] = ties[1, 2, 10] = 1.0  # two equal maxima: the first is inside
    constant = np.zeros((3, 12, 12), np.float32)
    constant[0, 3, 8] = 1.0
    constant[1] = 0.5  # constant: left out
    constant[2] = 0.0  # all zero: left out
    return [
        Case("4 maps with one peak each, a mask in the top-right corner", (cams, masks)),
        Case("2 maps with two equal maxima each", (ties, masks[:2])),
        Case("3 maps of which 2 are constant", (constant, masks[:3])),
        Case("2 maps that are both constant", (np.stack([np.zeros((12, 12)), np.ones((12, 12))]).astype(np.float32), masks[:2])),
    ]


def _pointing_real_cases() -> list[Case]:
    masks = _real_masks()
    n = len(masks)
    maps = _smooth_maps(n, masks.shape[-1], seed=2)
    prior = np.broadcast_to(centre_prior(masks.shape[-1]), masks.shape).copy()
    shifted = np.roll(prior, shift=(masks.shape[-1] // 3, -masks.shape[-1] // 4), axis=(1, 2))
    return [
        Case(f"smooth random maps and the approximate masks of {n} real test images", (maps, masks.copy())),
        Case(f"a map peaking at the centre for each of {n} real test images", (prior, masks.copy())),
        Case(f"a map peaking off-centre (down and left) for {n} real test images", (shifted, masks.copy())),
    ]


check_pointing_game = Check(
    reference=_pointing_reference,
    cases=_pointing_cases,
    real_cases=_pointing_real_cases,
    compare=_pointing_compare,
    hint="np.argmax(cam) is an index into the flattened map; np.unravel_index turns it into (row, column).",
)
check_pointing_game.__doc__ = """Check Exercise 2: ``pointing_game(cams, masks) -> float``.

``cams``: float [N, H, W]; ``masks``: bool [N, H, W]. Expected: the share of the non-constant
maps whose first maximum (row-major) lies inside their mask; ``nan`` if every map is constant.
Prints ✅/❌; returns True/False."""

# ----------------------------------------------------------------- Exercise 3: choose a layer


def _blocks(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Top-level modules (each top-level nn.Sequential opened into its children) that contain a
    convolution, as ``(dotted name, module)``."""
    out = []
    for name, child in model.named_children():
        subs = [(f"{name}.{n}", c) for n, c in child.named_children()] if isinstance(child, nn.Sequential) else [(name, child)]
        out += [(n, m) for n, m in subs if any(isinstance(x, nn.Conv2d) for x in m.modules())]
    return out


def _block_sides(model: nn.Module, image_size: int) -> list[tuple[str, tuple[int, int] | None]]:
    """Each block of :func:`_blocks` with the (h, w) of its output (None: not a 4-D map), in the
    order their forward passes finish, for one [1, 3, S, S] input."""
    names = {m: n for n, m in _blocks(model)}
    seen: list[tuple[str, tuple[int, int] | None]] = []

    def hook(module, args, output):
        ok = isinstance(output, torch.Tensor) and output.ndim == 4
        seen.append((names[module], (int(output.shape[2]), int(output.shape[3])) if ok else None))

    handles = [m.register_forward_hook(hook) for m in names]
    was = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, 3, image_size, image_size))
    finally:
        for h in handles:
            h.remove()
        model.train(was)
    return seen


@lru_cache(maxsize=8)
def _model(name: str) -> nn.Module:
    return build_model(name, seed=0)


def _deepest_reference(name: str, image_size: int, min_side: int) -> str:
    found = [n for n, hw in _block_sides(_model(name), image_size) if hw is not None and min(hw) >= min_side]
    return found[-1] if found else ""


def _deepest_compare(got, expected: str, case: Case) -> str | None:
    if not isinstance(got, str):
        return f"return the block's dotted name as a str (e.g. 'layer2.1'); got {describe(got)}."
    if got == expected:
        return None
    name, image_size, min_side = case.args
    model = _model(name)
    sides = dict(_block_sides(model, image_size))
    if got not in sides:
        names = [n for n, _ in _blocks(model)]
        if any(got.startswith(n + ".") for n in names):
            return f"{got!r} is inside a block; return the block itself (a top-level module or a child of a top-level nn.Sequential)."
        return (f"{got!r} is not one of the candidate blocks: top-level modules, with each top-level nn.Sequential "
                "opened into its children, that contain an nn.Conv2d.")
    hw = sides[got]
    if hw is None:
        return f"{got!r} does not output a [B, C, h, w] map."
    if min(hw) < min_side:
        return f"the map of {got!r} is {hw[0]}×{hw[1]} at {image_size} px, smaller than {min_side}×{min_side}."
    return f"{got!r} has a large enough map, but a later block still has one of at least {min_side}×{min_side}: go deeper."


def _deepest_cases() -> list[Case]:
    return [
        Case("LeNet-5 at 64 px, maps of at least 20×20", ("lenet5", 64, 20)),
        Case("ResNet-34 at 64 px, maps of at least 4×4", ("resnet34", 64, 4)),
        Case("ResNet-34 at 64 px, maps of at least 2×2", ("resnet34", 64, 2)),
        Case("MobileNetV2 at 96 px, maps of at least 6×6", ("mobilenet_v2", 96, 6)),
        Case("the book's ASFF-ResNet50 at 64 px, maps of at least 4×4", ("asff_resnet50", 64, 4)),
    ]


def _deepest_real_cases() -> list[Case]:
    """The input size read from a real test image (the paper's images are stored at 224 px)."""
    from PIL import Image


    first = sorted((data.locate("isic_balanced", download=False) / "test" / "benign").glob("*.jpg"))[0]
    with Image.open(first) as im:
        side = min(im.size)
    return [
        Case(f"the book's ASFF-ResNet50 at the real test images' own size ({side} px), maps of at least 7×7",
             ("asff_resnet50", side, 7)),
        Case(f"ResNet-34 at the real test images' own size ({side} px), maps of at least 14×14", ("resnet34", side, 14)),
    ]


check_deepest_block = Check(
    reference=_deepest_reference,
    cases=_deepest_cases,
    real_cases=_deepest_real_cases,
    compare=_deepest_compare,
    hint="build the model with models.build_model(name), register a forward hook on each candidate block, "
         "run one torch.zeros(1, 3, S, S) through it in eval mode, and keep the last block whose output has "
         "h and w ≥ min_side.",
)
check_deepest_block.__doc__ = """Check Exercise 3: ``deepest_block(name, image_size, min_side) -> str``.

``name``: a model of :func:`skinlesion_utils.models.list_models` (built with ``build_model(name)``);
blocks are the model's top-level modules, each top-level ``nn.Sequential`` opened into
its children, that contain an ``nn.Conv2d``. Expected: the dotted name of the last block (in
forward order) whose output is a ``[B, C, h, w]`` map with ``h, w ≥ min_side`` for a
``[1, 3, image_size, image_size]`` input. Prints ✅/❌; returns True/False."""

__all__ = ["check_energy_inside", "check_pointing_game", "check_deepest_block"]
