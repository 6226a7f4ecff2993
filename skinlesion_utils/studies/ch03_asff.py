"""Chapter 03's study of ASFF (``chapters/03_asff_derivation``): the gradient rule of eq. 6,
the shapes of every step, the weights at initialisation and what the fusion costs.

What this module owns (only chapter 03 uses it)
-----------------------------------------------
* :func:`eq6_gradient_check` / :func:`eq6_gradient_table` – the gradient rule of eq. 6
  (``∂L/∂F1 = a ⊙ G``, ``∂L/∂x4 = Aᵀ(b ⊙ G)``) against autograd, with and without detached
  weights, and the path through the weights that eq. 6 leaves out.
* :func:`fusion_walkthrough` – the shape of every step of an ASFF-ResNet50 forward pass,
  recorded by forward hooks (drawn by :func:`skinlesion_utils.plots.plot_fusion_walkthrough`).
* :func:`fusion_inputs` – layer3 [B, 1024, H, W] and layer4 [B, 2048, h, w] (1024 × 14 × 14 and
  2048 × 7 × 7 at 224 px) as the fusion receives them, without side effects.
* :func:`fusion_init_state` – the weights on layer3 and the feature scales at initialisation, in
  training and eval mode (drawn by :func:`skinlesion_utils.plots.plot_fusion_weight_histogram`).
* :func:`fusion_overhead_table` / :data:`OVERHEAD_VARIANTS` – parameters and multiply-adds of
  ResNet-50 and of ASFF-ResNet50 with each fusion.

The fusion modules and their weight read-outs (``level_weights``, ``layer3_share``,
``uniform_weight``) live in :mod:`skinlesion_utils.fusion`; the models in
:mod:`skinlesion_utils.models`.
"""
from __future__ import annotations

import contextlib
import copy

import pandas as pd
import torch
from torch import Tensor, nn

from ..models import ASFFResNet50, build_model, count_flops, count_parameters, eval_no_grad

__all__ = [
    "eq6_gradient_check",
    "eq6_gradient_table",
    "fusion_walkthrough",
    "fusion_inputs",
    "fusion_init_state",
    "OVERHEAD_VARIANTS",
    "fusion_overhead_table",
]


def eq6_gradient_check(fusion: nn.Module, low: Tensor, high: Tensor, grad_fused: Tensor) -> dict[str, float]:
    """Compare autograd's gradients of the fusion's inputs with the weighted-sum rule (eq. 6).

    The loss ``L = Σ fused ⊙ G`` has ``∂L/∂fused = G`` exactly. If the weights (a, b) of
    ``fusion.level_weights`` (:meth:`~skinlesion_utils.fusion.FusionModule.level_weights`) were constants, the chain rule through ``fused = F1·a + A(x4)·b``
    would give

    * ``∂L/∂F1 = a ⊙ G`` (layer3), and
    * ``∂L/∂x4 = Aᵀ(b ⊙ G)`` (layer4), where ``A = fusion.align`` (resize + 1 × 1 conv) and
      ``Aᵀ`` its adjoint, computed here by autograd through ``A`` alone.

    With ``fusion.detach_weights = True`` autograd agrees to rounding error. Otherwise it adds
    the path through the weights, ``Jᵀ ∂L/∂w`` (J: the Jacobian of the weights with respect to
    the inputs); the check computes that term too and verifies ``∂L/∂input = eq. 6 + path``.

    Args:
        fusion: an adaptive fusion module (use float64 for a tight comparison).
        low: layer3 map [B, C, H, W]; high: layer4 map [B, C_high, h, w] (same dtype).
        grad_fused: G, [B, C, H, W].

    Returns:
        ``eq6_low`` / ``eq6_high``: max |autograd − eq. 6| for layer3 / layer4;
        ``path_low`` / ``path_high``: max |autograd − eq. 6 − weight path|;
        ``scale_low`` / ``scale_high``: max |autograd gradient| (to judge the errors).
    """
    low = low.detach().clone().requires_grad_(True)
    high = high.detach().clone().requires_grad_(True)
    fused, w = fusion(low, high)
    loss = (fused * grad_fused).sum()
    g_low, g_high = torch.autograd.grad(loss, (low, high), retain_graph=True)

    a, b = fusion.level_weights(w.detach())
    pred_low = a * grad_fused
    high2 = high.detach().clone().requires_grad_(True)
    (pred_high,) = torch.autograd.grad(fusion.align(high2, low.shape[-2:]), high2, grad_outputs=b * grad_fused)

    path_low, path_high = torch.zeros_like(g_low), torch.zeros_like(g_high)
    if w.requires_grad:
        (g_w,) = torch.autograd.grad(loss, w, retain_graph=True)
        pl, ph = torch.autograd.grad(w, (low, high), grad_outputs=g_w, allow_unused=True)
        path_low = pl if pl is not None else path_low
        path_high = ph if ph is not None else path_high

    def amax(t: Tensor) -> float:
        return float(t.abs().max())

    return {
        "eq6_low": amax(g_low - pred_low),
        "eq6_high": amax(g_high - pred_high),
        "path_low": amax(g_low - pred_low - path_low),
        "path_high": amax(g_high - pred_high - path_high),
        "scale_low": amax(g_low),
        "scale_high": amax(g_high),
    }


def eq6_gradient_table(fusions: dict[str, nn.Module], low: Tensor, high: Tensor, seed: int = 0):
    """:func:`eq6_gradient_check` for several fusion modules, with and without detached weights.

    Each module is copied and cast to float64 (the originals are untouched); ``low``/``high``
    are cast too and G is drawn from ``torch.Generator().manual_seed(seed)``.

    Returns:
        pandas DataFrame, one row per (variant, weights detached?) with the check's six numbers
        (columns ``eq6_low`` … ``scale_high``).
    """
    low64, high64 = low.detach().double(), high.detach().double()
    grad = torch.randn(low64.shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    rows = []
    for name, module in fusions.items():
        for detach in (True, False):
            m = copy.deepcopy(module).double()
            m.detach_weights = detach
            rows.append({"variant": name, "weights detached": detach, **eq6_gradient_check(m, low64, high64, grad)})
    return pd.DataFrame(rows).set_index(["variant", "weights detached"])


def _shape(t: Tensor) -> tuple[int, ...]:
    return tuple(int(s) for s in t.shape[1:])


def fusion_walkthrough(model: ASFFResNet50, x: Tensor) -> pd.DataFrame:
    """Shapes of every step of an ASFF-ResNet50, recorded by forward hooks on one real pass.

    Args:
        model: an :class:`ASFFResNet50` with fusion ``asff_text``, ``asff_code`` or
            ``asff_spatial`` (any mode; it is run in eval mode without gradients and restored).
        x: input batch, float32 [B, 3, S, S] (ImageNet-normalised).

    Returns:
        pandas DataFrame in data-flow order, one row per step, with columns ``step`` (a key such
        as ``"layer3"``, ``"upsample"``, ``"project"``, ``"concat"``, ``"gap"``, ``"fc1"``,
        ``"fc2"``, ``"softmax"``, ``"fused"``, ``"head"``), ``operation`` (words), ``dims``
        (the shape as a tuple, batch dimension dropped) and ``shape_text`` (e.g. ``"1024×14×14"``). The
        ``"concat"`` shape is that of ``torch.cat`` applied to the two recorded inputs.

    Raises:
        ValueError: the model's fusion is not adaptive.
    """
    fusion = model.fusion
    if not fusion.adaptive:
        raise ValueError(
            f"fusion_walkthrough follows the ASFF weight branch; this model has fusion="
            f"{model.fusion_name!r}. Build one with fusion='asff_text', 'asff_code' or 'asff_spatial'."
        )
    seen: dict[str, tuple[int, ...]] = {}

    def out(key: str, pick=lambda o: o):
        return lambda mod, inp, o: seen.__setitem__(key, _shape(pick(o)))

    def inp(key: str, pick=lambda i: i[0]):
        return lambda mod, i: seen.__setitem__(key, _shape(pick(i)))

    record = {  # what a hook keeps, per kind of weight-branch step (AdaptiveFusion.weight_branch)
        "output": lambda key: ("fwd", out(key)),
        "weights": lambda key: ("fwd", out(key, lambda o: o[1])),
        "input": lambda key: ("pre", inp(key)),
        "inputs_cat": lambda key: ("pre", inp(key, lambda i: torch.cat(i, dim=1))),
    }
    branch = fusion.weight_branch()
    align = fusion.align
    hooks = [
        (model.maxpool, "fwd", out("stem")),
        (model.layer2, "fwd", out("layer2")),
        (model.layer3, "fwd", out("layer3")),
        (model.layer4, "fwd", out("layer4")),
        (align.proj, "pre", inp("proj_in")),
        (align.proj, "fwd", out("proj_out")),
        (align, "fwd", out("aligned")),
        (model.cam_layer, "fwd", out("fused")),
        (model.head.mlp[0], "fwd", out("head_gap")),
        (model.head.mlp[-1], "fwd", out("logits")),
    ]
    hooks += [(module, *record[kind](key)) for key, _, module, kind in branch]
    if model.head.mlp[1].__class__ is nn.Linear:
        hooks.append((model.head.mlp[1], "fwd", out("head_fc1")))
    handles = [
        (m.register_forward_pre_hook(h) if kind == "pre" else m.register_forward_hook(h)) for m, kind, h in hooks
    ]
    try:
        with eval_no_grad(model):
            model(x)
    finally:
        for h in handles:
            h.remove()

    up = align.upsample
    if align.project_first:
        seen["project"], seen["upsample"] = seen["proj_out"], seen["aligned"]
        align_steps = [("project", "1×1 conv (at layer4's grid)"), ("upsample", f"{up} resize → F2")]
    else:
        seen["upsample"], seen["project"] = seen["proj_in"], seen["proj_out"]
        align_steps = [("upsample", f"{up} resize to layer3's grid"), ("project", "1×1 conv → F2")]
    seen["input"] = _shape(x)
    steps = [
        ("input", "input image"),
        ("stem", "conv1 7×7/2 + max-pool"),
        ("layer2", "layer1 + layer2"),
        ("layer3", "layer3 = F1"),
        ("layer4", "layer4"),
        *align_steps,
        *[(key, operation) for key, operation, _, _ in branch],
    ]
    steps += [("fused", "fused map"), ("head_gap", "head: global average pool")]
    if "head_fc1" in seen:
        steps.append(("head_fc1", "head: FC + ReLU"))
    steps.append(("logits", "head: FC → logits"))
    rows = [
        {"step": k, "operation": op, "dims": seen[k], "shape_text": "×".join(map(str, seen[k]))}
        for k, op in steps
    ]
    return pd.DataFrame(rows)


@contextlib.contextmanager
def _buffers_restored(model: nn.Module):
    """Run a block and put every buffer (BatchNorm running statistics, counters) back after it."""
    saved = {k: v.detach().clone() for k, v in model.named_buffers()}
    try:
        yield
    finally:
        with torch.no_grad():
            for k, v in model.named_buffers():
                v.copy_(saved[k])


def fusion_inputs(model: ASFFResNet50, x: Tensor, mode: str = "train") -> tuple[Tensor, Tensor]:
    """The two maps the fusion receives: ``(layer3 [B, 1024, H, W], layer4 [B, 2048, h, w])``.

    Runs the body up to layer4 without gradients in ``mode`` (``"train"``: BatchNorm on the
    batch's statistics, as in the first training step; ``"eval"``: on the running statistics),
    then restores the model's mode and every buffer, so calling it has no side effect.
    """
    if mode not in ("train", "eval"):
        raise ValueError(f"mode must be 'train' or 'eval', got {mode!r}.")
    was_training = model.training
    try:
        with _buffers_restored(model), torch.no_grad():
            model.train(mode == "train")
            h = model.maxpool(model.relu(model.bn1(model.conv1(x))))
            low = model.layer3(model.layer2(model.layer1(h)))
            return low, model.layer4(low)
    finally:
        model.train(was_training)


def fusion_init_state(model: ASFFResNet50, x: Tensor, modes: tuple[str, ...] = ("train", "eval")):
    """The fusion weights and feature scales of ``model`` on ``x`` in training and eval mode.

    Training mode is what the first optimisation step sees (BatchNorm normalises with the
    batch's statistics); eval mode uses the running statistics – for an untrained body those
    are the initial mean 0 / variance 1, so nothing is normalised. Each mode runs without
    gradients; BatchNorm's running statistics and the model's mode are restored afterwards.

    Args:
        model: an :class:`ASFFResNet50` with an adaptive fusion.
        x: float32 [B, 3, S, S], ImageNet-normalised.
        modes: any of ``"train"``, ``"eval"``.

    Returns:
        ``(weights, scales)``: ``weights`` is a long DataFrame with columns ``mode``, ``value``
        (every entry of ``fusion.layer3_share``: B, B·C or B·H·W values per mode) and ``uniform``
        (``fusion.uniform_weight()``); ``scales`` is indexed by mode with the standard deviation of
        the layer3 map, the layer4 map and the fusion's pre-softmax logits (``logit_std``,
        taken over all entries).
    """
    fusion = model.fusion
    uni = fusion.uniform_weight()
    softmax_input = fusion.logits_layer
    rows, scales = [], {}
    was_training = model.training
    for mode in modes:
        if mode not in ("train", "eval"):
            raise ValueError(f"mode must be 'train' or 'eval', got {mode!r}.")
        seen: dict[str, Tensor] = {}
        hooks = [
            mod.register_forward_hook(lambda m, i, o, k=key: seen.__setitem__(k, o))
            for key, mod in (("layer3", model.layer3), ("layer4", model.layer4), ("logits", softmax_input))
        ]
        try:
            with _buffers_restored(model), torch.no_grad():
                model.train(mode == "train")
                _, w = model(x, return_weights=True)
        finally:
            for h in hooks:
                h.remove()
            model.train(was_training)
        share = fusion.layer3_share(w).reshape(-1).cpu().numpy()
        rows.append(pd.DataFrame({"mode": mode, "value": share, "uniform": uni}))
        scales[mode] = {k: float(v.float().std()) for k, v in seen.items()}
    weights = pd.concat(rows, ignore_index=True)
    scales_df = pd.DataFrame(scales).T.rename(columns={"layer3": "layer3_std", "layer4": "layer4_std", "logits": "logit_std"})
    return weights, scales_df.rename_axis("mode")


#: The rows of :func:`fusion_overhead_table`: label → ASFFResNet50 keyword arguments
#: (``None``: torchvision's ResNet-50 with its own one-layer classifier).
OVERHEAD_VARIANTS: dict[str, dict | None] = {
    "resnet50 (torchvision)": None,
    "none": {"fusion": "none"},
    "sum": {"fusion": "sum"},
    "concat": {"fusion": "concat"},
    "asff_text": {"fusion": "asff_text"},
    "asff_text, project_first": {"fusion": "asff_text", "project_first": True},
    "asff_code": {"fusion": "asff_code"},
    "asff_spatial": {"fusion": "asff_spatial"},
}


def fusion_overhead_table(image_size: int = 224, variants: dict[str, dict | None] | None = None,
                          num_classes: int = 2, seed: int = 0):
    """Parameters and multiply-adds of ResNet-50 and of ASFF-ResNet50 with each fusion.

    Args:
        image_size: square input side in pixels (the paper: 224).
        variants: label → :class:`ASFFResNet50` kwargs, ``None`` for torchvision's ResNet-50
            (default :data:`OVERHEAD_VARIANTS`). Labels ``"resnet50 (torchvision)"`` and
            ``"none"`` are the two references of the Δ columns when present.
        num_classes: classifier outputs.
        seed: initialisation seed (the counts do not depend on it).

    Returns:
        pandas DataFrame indexed by label with ``params`` (scalars), ``params_m`` (millions),
        ``gmacs`` (10⁹ multiply-adds at batch 1, :func:`count_flops` / 2), and, per reference,
        ``Δparams vs resnet50``, ``Δparams vs none`` (scalars), ``ΔGMACs vs resnet50``,
        ``ΔGMACs vs none``. "none" is ResNet-50 with the released code's head
        (GAP → FC 2048 + ReLU → FC), so "vs none" isolates the fusion.
    """
    variants = OVERHEAD_VARIANTS if variants is None else variants
    rows = {}
    for label, kw in variants.items():
        if kw is None:
            model = build_model("resnet50", num_classes=num_classes, seed=seed)
        else:
            model = build_model("asff_resnet50", num_classes=num_classes, seed=seed, **kw)
        total, _ = count_parameters(model)
        flops = count_flops(model, image_size)
        rows[label] = {"params": total, "params_m": total / 1e6, "gmacs": flops / 2e9}
        del model
    df = pd.DataFrame(rows).T
    df["params"] = df["params"].astype("int64")
    for ref, short in (("resnet50 (torchvision)", "resnet50"), ("none", "none")):
        if ref in df.index:
            df[f"Δparams vs {short}"] = df["params"] - df.loc[ref, "params"]
            df[f"ΔGMACs vs {short}"] = df["gmacs"] - df.loc[ref, "gmacs"]
    return df.rename_axis("model")
