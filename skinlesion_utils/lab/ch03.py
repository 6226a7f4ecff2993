"""Checks of chapter 03's exercises (deriving ASFF and its three readings).

* :func:`check_fuse_two_levels` — Exercise 1 (★☆☆): the two-level fusion of eq. 7,
  ``fused = F1·ω + F2·(1 − ω)`` with one ω per image.
* :func:`check_channel_weights` — Exercise 2 (★★☆): the released code's weight branch,
  ``w = softmax over channels(W2·ReLU(W1·GAP([F1, F2]) + b1) + b2)``.
* :func:`check_asff_three_levels` — Exercise 3 (★★★): ASFF with three levels (Liu et al.'s
  eq. 1–2): resize two coarser maps onto the finest grid, a 1 × 1 convolution gives three
  logits per pixel, a softmax over the levels gives (α, β, γ), and the fused map is their
  weighted sum.

Each check compares the learner's function with a reference computed another way
(``torch.lerp``, the package's own ``fusion.GlobalWeights``, an ``einsum`` over stacked levels)
on made-up cases and on cases built from real feature maps: layer2/layer3/layer4 of a
from-scratch ASFF-ResNet50 (seed 0) on four real test images at 64 px. It prints ✅ or ❌ with a
hint — never the expected values.
"""
from __future__ import annotations

from functools import lru_cache

import torch
import torch.nn.functional as F

from .. import fusion, models
from ..fusion import GlobalWeights
from ..augment import normalise
from . import Case, Check, describe
from .ch00 import real_batch

# ----------------------------------------------------------------- real feature maps


@lru_cache(maxsize=1)
def _real_features() -> dict[str, torch.Tensor]:
    """Feature maps of 4 real test images (2 benign, 2 malignant) at 64 px through a from-scratch
    ASFF-ResNet50 (asff_code, seed 0) in training mode (BatchNorm on batch statistics):
    ``layer2`` [4, 512, 8, 8], ``low`` (layer3) [4, 1024, 4, 4], ``high`` (layer4)
    [4, 2048, 2, 2], ``f2`` (layer4 resized + projected) [4, 1024, 4, 4], ``omega`` [4] (the weight
    of an asff_text fusion module, seed 0) and the asff_code weight branch's FC parameters
    ``w1`` [1024, 2048], ``b1`` [1024], ``w2`` [1024, 1024], ``b2`` [1024]."""
    batch = real_batch()  # 16 real test images, uint8 [16, 3, 64, 64]: 8 benign then 8 malignant
    x = normalise(batch[[0, 1, 8, 9]])
    model = models.build_model("asff_resnet50", fusion="asff_code", seed=0).train()
    with torch.no_grad():
        h = model.maxpool(model.relu(model.bn1(model.conv1(x))))
        layer2 = model.layer2(model.layer1(h))
        low = model.layer3(layer2)
        high = model.layer4(low)
        f2 = model.fusion.align(high, low.shape[-2:])
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            text = fusion.ASFFText(1024, 2048)
        _, w_text = text(low, high)
    fc1, fc2 = model.fusion.weights.fc1, model.fusion.weights.fc2
    return {
        "layer2": layer2, "low": low, "high": high, "f2": f2, "omega": w_text[:, 0].contiguous(),
        "w1": fc1.weight.detach().clone(), "b1": fc1.bias.detach().clone(),
        "w2": fc2.weight.detach().clone(), "b2": fc2.bias.detach().clone(),
    }


def _tensor_problem(got, expected: torch.Tensor, what: str) -> str | None:
    """Type / shape / dtype problems of one returned tensor, or None."""
    if not isinstance(got, torch.Tensor):
        return f"{what}: return a torch.Tensor; got {describe(got)}."
    if tuple(got.shape) != tuple(expected.shape):
        return f"{what}: wrong shape: expected {tuple(expected.shape)}, got {tuple(got.shape)}."
    if not got.is_floating_point():
        return f"{what}: return floating-point values, got dtype {str(got.dtype).replace('torch.', '')}."
    return None


def _close(a: torch.Tensor, b: torch.Tensor, rtol: float = 1e-4, atol: float = 1e-5) -> bool:
    a, b = a.detach().double(), b.detach().double()
    return torch.allclose(a, b, rtol=rtol, atol=atol * max(1.0, float(b.abs().max())))


# ----------------------------------------------------------------- Exercise 1: eq. 7


def _fuse_reference(f1: torch.Tensor, f2: torch.Tensor, omega: torch.Tensor) -> torch.Tensor:
    return torch.lerp(f2, f1, omega.reshape(-1, 1, 1, 1).to(f1.dtype))  # f2 + ω (f1 − f2)


def _fuse_compare(got, expected: torch.Tensor, case: Case) -> str | None:
    problem = _tensor_problem(got, expected, "the fused map")
    if problem:
        if isinstance(got, torch.Tensor) and got.ndim == 1:
            problem += " You returned one number per image — multiply the maps, do not pool them."
        return problem
    if _close(got, expected):
        return None
    f1, f2, omega = case.args
    w = omega.reshape(-1, 1, 1, 1)
    if _close(got, f1 * (1 - w) + f2 * w):
        return "the weights are swapped: ω multiplies F1 (layer3) and 1 − ω multiplies F2."
    if _close(got, f1 + f2):
        return "that is the plain sum F1 + F2; weigh the two maps with ω and 1 − ω."
    if _close(got, f1 * w + f2 * w):
        return "both maps got the weight ω; F2's weight is 1 − ω (the two weights sum to one)."
    return "the values differ from eq. 7 (fused = F1·ω + F2·(1 − ω), with ω broadcast over C, H, W)."


def _fuse_cases() -> list[Case]:
    g = torch.Generator().manual_seed(0)
    r = lambda *s: torch.randn(*s, generator=g)  # noqa: E731
    return [
        Case("one image, ω = 0.3, 4 channels of 3×3", (r(1, 4, 3, 3), r(1, 4, 3, 3), torch.tensor([0.3]))),
        Case("three images with different ω, 5 channels of 2×4 (batch ≠ channels)",
             (r(3, 5, 2, 4), r(3, 5, 2, 4), torch.tensor([0.1, 0.5, 0.95]))),
        Case("ω = 1 and ω = 0 (each image takes one level only)", (r(2, 3, 2, 2), r(2, 3, 2, 2), torch.tensor([1.0, 0.0]))),
        Case("ω exactly one half, 4 images of 2 channels", (r(4, 2, 5, 5), r(4, 2, 5, 5), torch.full((4,), 0.5))),
    ]


def _fuse_real_cases() -> list[Case]:
    f = _real_features()
    return [Case("real layer3 (F1) and projected layer4 (F2) maps of 4 test images, ω from an untrained "
                 "asff_text module", (f["low"].clone(), f["f2"].clone(), f["omega"].clone()))]


check_fuse_two_levels = Check(
    reference=_fuse_reference,
    cases=_fuse_cases,
    real_cases=_fuse_real_cases,
    compare=_fuse_compare,
    hint="ω has shape [B] (one number per image); view it as [B, 1, 1, 1] so it broadcasts over C, H, W.",
)
check_fuse_two_levels.__doc__ = """Check Exercise 1: ``fuse_two_levels(f1, f2, omega) -> torch.Tensor``.

``f1``, ``f2``: float32 [B, C, H, W] (layer3 and the aligned layer4); ``omega``: float32 [B] in
[0, 1]. Expected: float32 [B, C, H, W], ``f1·ω + f2·(1 − ω)`` per image (eq. 7).
Prints ✅/❌; returns True/False."""

# ----------------------------------------------------------------- Exercise 2: channel weights


def _channel_reference(f1, f2, w1, b1, w2, b2) -> torch.Tensor:
    branch = GlobalWeights(f1.shape[1], w1.shape[0], w2.shape[0]).to(f1.dtype)
    branch.load_state_dict({"fc1.weight": w1, "fc1.bias": b1, "fc2.weight": w2, "fc2.bias": b2})
    with torch.no_grad():
        return branch(f1, f2)


def _channel_variant(f1, f2, w1, b1, w2, b2, *, pool="mean", relu=True, dim=1, order=(0, 1)):
    maps = (f1, f2)
    z = torch.cat([maps[order[0]], maps[order[1]]], dim=1)
    z = z.mean(dim=(2, 3)) if pool == "mean" else z.amax(dim=(2, 3))
    h = z @ w1.T + b1
    h = F.relu(h) if relu else h
    return torch.softmax(h @ w2.T + b2, dim=dim)


def _channel_compare(got, expected: torch.Tensor, case: Case) -> str | None:
    problem = _tensor_problem(got, expected, "the weights")
    if problem:
        return problem
    if _close(got, expected, rtol=1e-4, atol=1e-6):
        return None
    args = case.args
    sums = got.detach().double().sum(dim=1)
    if got.shape[0] > 1 and _close(got, _channel_variant(*args, dim=0), atol=1e-6):
        return "your weights sum to one over the batch (dim 0); the released code's softmax runs over the channels (dim 1)."
    if _close(got, _channel_variant(*args, relu=False), atol=1e-6):
        return "the ReLU after the first FC layer is missing."
    if _close(got, _channel_variant(*args, pool="max"), atol=1e-6):
        return "that is global *max* pooling; the code uses global average pooling (the mean over H and W)."
    if _close(got, _channel_variant(*args, order=(1, 0)), atol=1e-6):
        return "concatenate in the order [F1, F2] (F1 first): the first FC layer's columns depend on it."
    if not torch.allclose(sums, torch.ones_like(sums), atol=1e-4):
        return "each image's weights must sum to one over the channels (a softmax over dim 1)."
    return "the weights differ from the reference: concat [F1, F2] → mean over H, W → W1·z + b1 → ReLU → W2·h + b2 → softmax."


def _channel_cases() -> list[Case]:
    g = torch.Generator().manual_seed(1)
    r = lambda *s: torch.randn(*s, generator=g)  # noqa: E731

    def case(name, b, c, hidden, h, w, scale=1.0):
        return Case(name, (r(b, c, h, w), r(b, c, h, w), scale * r(hidden, 2 * c), scale * r(hidden),
                           scale * r(c, hidden), scale * r(c)))

    return [
        case("2 images, 3 channels of 4×4, hidden width 5", 2, 3, 5, 4, 4),
        case("one image, 6 channels of 2×3, hidden width 4", 1, 6, 4, 2, 3),
        case("4 images, 8 channels of 1×1, hidden width 8 (large weights)", 4, 8, 8, 1, 1, scale=3.0),
    ]


def _channel_real_cases() -> list[Case]:
    f = _real_features()
    return [Case("real layer3 and projected layer4 maps of 4 test images with the untrained asff_code "
                 "weight branch (1024 channels)", tuple(f[k].clone() for k in ("low", "f2", "w1", "b1", "w2", "b2")))]


check_channel_weights = Check(
    reference=_channel_reference,
    cases=_channel_cases,
    real_cases=_channel_real_cases,
    compare=_channel_compare,
    hint="shapes: concat [B, 2C, H, W] → pooled [B, 2C] → hidden [B, hidden] → logits [B, C]; "
         "a Linear layer computes x @ W.T + b.",
)
check_channel_weights.__doc__ = """Check Exercise 2: ``channel_weights(f1, f2, w1, b1, w2, b2) -> torch.Tensor``.

``f1``, ``f2``: float32 [B, C, H, W]; ``w1``: [hidden, 2C], ``b1``: [hidden], ``w2``:
[C, hidden], ``b2``: [C]. Expected: float32 [B, C], the softmax over channels of
``W2·ReLU(W1·GAP([F1, F2]) + b1) + b2`` (the released code's weight branch).
Prints ✅/❌; returns True/False."""

# ----------------------------------------------------------------- Exercise 3: three levels


def _three_reference(x1, x2, x3, weight, bias):
    size = x1.shape[-2:]
    up = [x1] + [F.interpolate(x, size=size, mode="bilinear", align_corners=False) for x in (x2, x3)]
    levels = torch.stack(up, dim=1)  # [B, 3, C, H, W]
    c = x1.shape[1]
    logits = torch.einsum("blchw,klc->bkhw", levels, weight.reshape(3, 3, c)) + bias.reshape(1, 3, 1, 1)
    w = torch.softmax(logits, dim=1)
    return (levels * w[:, :, None]).sum(dim=1), w


def _three_with(x1, x2, x3, weight, bias, *, mode="bilinear", align_corners=False, dim=1):
    size = x1.shape[-2:]
    kw = {"align_corners": align_corners} if mode == "bilinear" else {}
    up = [x1] + [F.interpolate(x, size=size, mode=mode, **kw) for x in (x2, x3)]
    logits = F.conv2d(torch.cat(up, dim=1), weight[:, :, None, None], bias)
    w = torch.softmax(logits, dim=dim)
    return up[0] * w[:, 0:1] + up[1] * w[:, 1:2] + up[2] * w[:, 2:3], w


def _three_compare(got, expected, case: Case) -> str | None:
    if not isinstance(got, tuple) or len(got) != 2:
        return f"return a tuple (fused, weights); got {describe(got)}."
    fused, weights = got
    exp_fused, exp_w = expected
    problem = _tensor_problem(weights, exp_w, "weights") or _tensor_problem(fused, exp_fused, "fused")
    if problem:
        return problem
    args = case.args
    sums = weights.detach().double().sum(dim=1)
    if not torch.allclose(sums, torch.ones_like(sums), atol=1e-4):
        return "the three weights of a pixel must sum to one: softmax over the level axis (dim 1 of [B, 3, H, W])."
    if not _close(weights, exp_w, atol=1e-5):
        for kw, hint in (({"mode": "nearest"}, "x2 and x3 were resized with 'nearest'; use bilinear interpolation."),
                         ({"align_corners": True}, "use align_corners=False: it samples pixel centres, like the "
                                                   "released code's tf.image.resize."),
                         ):
            if _close(weights, _three_with(*args, **kw)[1], atol=1e-5):
                return hint
        return ("the weights differ from the reference: logits = 1×1 conv of cat([x1, up(x2), up(x3)]) "
                "with `weight` [3, 3C] and `bias` [3], then softmax over the 3 levels.")
    if not _close(fused, exp_fused, atol=1e-5):
        return "the weights are right but the fused map is not α·x1 + β·up(x2) + γ·up(x3) (each weight broadcast over the channels)."
    return None


def _three_cases() -> list[Case]:
    g = torch.Generator().manual_seed(2)
    r = lambda *s: torch.randn(*s, generator=g)  # noqa: E731

    def case(name, b, c, h, w):
        return Case(name, (r(b, c, h, w), r(b, c, (h + 1) // 2, (w + 1) // 2), r(b, c, (h + 3) // 4, (w + 3) // 4),
                           r(3, 3 * c), r(3)))

    return [
        case("one image, 2 channels, levels 8×8, 4×4 and 2×2", 1, 2, 8, 8),
        case("2 images, 4 channels, levels 4×4, 2×2 and 1×1", 2, 4, 4, 4),
        case("3 images, 3 channels, a non-square 6×10 finest level", 3, 3, 6, 10),
    ]


def _three_real_cases() -> list[Case]:
    f = _real_features()
    g = torch.Generator().manual_seed(3)
    c = 256
    levels = tuple(f[k][:, :c].clone() for k in ("layer2", "low", "high"))  # 8×8, 4×4, 2×2
    weight = torch.randn(3, 3 * c, generator=g) / (3 * c) ** 0.5
    return [Case("the first 256 channels of real layer2 (8×8), layer3 (4×4) and layer4 (2×2) maps of 4 "
                 "test images", (*levels, weight, torch.zeros(3)))]


check_asff_three_levels = Check(
    reference=_three_reference,
    cases=_three_cases,
    real_cases=_three_real_cases,
    compare=_three_compare,
    hint="resize x2 and x3 to x1's H×W (F.interpolate(..., mode='bilinear', align_corners=False)); "
         "F.conv2d needs the weight as [3, 3C, 1, 1].",
)
check_asff_three_levels.__doc__ = """Check Exercise 3: ``asff_three_levels(x1, x2, x3, weight, bias) -> (fused, weights)``.

``x1``: float32 [B, C, H, W]; ``x2``, ``x3``: [B, C, h2, w2], [B, C, h3, w3] (coarser grids);
``weight``: [3, 3C]; ``bias``: [3]. Expected: ``weights`` [B, 3, H, W] = softmax over levels of the
1 × 1 convolution of cat([x1, up(x2), up(x3)]) (bilinear, align_corners=False), and ``fused``
[B, C, H, W] = α·x1 + β·up(x2) + γ·up(x3). Prints ✅/❌; returns True/False."""

__all__ = ["check_fuse_two_levels", "check_channel_weights", "check_asff_three_levels"]
