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
* :func:`single_output_gradients` / :func:`eq5_eq6_toy` – what eq. 3–6 (written for a
  detector's per-level outputs) mean for a classifier with one fused output (section 2).
* :func:`eq7_text_and_code` / :func:`released_fusion_transcript` / :func:`fusion_reading_table`
  – the paper's description of eq. 7 beside the released code, the released layer transcribed
  in channels-last layout, and what each of the three variants computes (sections 3 and 5).
* :func:`backbone_design_table` / :func:`backbone_comparison` / :func:`backbone_flops_difference`
  / :func:`keras_parameter_counts` / :data:`KERAS_RESNET50_PUBLISHED` – Keras's ResNet-50 (v1,
  the released code's body; :func:`~skinlesion_utils.models.resnet50_keras_v1`) against
  torchvision's (v1.5): strides, biases, BatchNorm, parameters as each framework counts them,
  multiply-adds and map shapes (section 7); :func:`asff_on_keras_v1` / :func:`released_model_table`
  – the released model's structure (the fusion on the v1 body), counted the same ways.

The fusion modules and their weight read-outs (``level_weights``, ``layer3_share``,
``uniform_weight``) live in :mod:`skinlesion_utils.fusion`; the models in
:mod:`skinlesion_utils.models`.
"""
from __future__ import annotations

import contextlib
import copy
import re

import pandas as pd
import torch
from torch import Tensor, nn

from .. import paper
from ..errors import ConfigError
from ..models import (ASFFResNet50, build_model, build_on_meta, count_flops, count_parameters, eval_no_grad,
                      flops_by_module, layer_shapes)

__all__ = [
    "eq6_gradient_check",
    "eq6_gradient_table",
    "fusion_walkthrough",
    "fusion_inputs",
    "fusion_init_state",
    "OVERHEAD_VARIANTS",
    "fusion_overhead_table",
    "single_output_gradients",
    "eq5_eq6_toy",
    "eq7_text_and_code",
    "released_fusion_transcript",
    "fusion_reading_table",
    "KERAS_RESNET50_PUBLISHED",
    "BACKBONES",
    "keras_parameter_counts",
    "backbone_design_table",
    "backbone_comparison",
    "backbone_flops_difference",
    "asff_on_keras_v1",
    "released_model_table",
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
        raise ConfigError(
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
        raise ConfigError(f"mode must be 'train' or 'eval', got {mode!r}.")
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
            raise ConfigError(f"mode must be 'train' or 'eval', got {mode!r}.")
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


# --------------------------------------------------------------------------------------------
# Section 2: what eq. 3–6 mean for a classifier with one fused output
# --------------------------------------------------------------------------------------------
def single_output_gradients(fusion: nn.Module, head: nn.Module, low: Tensor, high: Tensor,
                            labels: Tensor) -> dict[str, float]:
    """Eq. 3–6 for the book's classifier: one fused map ``y``, one head, one cross-entropy loss.

    Copies ``fusion`` and ``head`` to float64, detaches the fusion weights (eq. 6's assumption:
    weights held fixed) and lets autograd compute, for ``L = CE(head(y), labels)``, the gradients
    of layer3's map ``F1 = low``, of the aligned layer4 map ``F2 = A(high)`` (the output of
    ``fusion.align``, taken as a leaf) and of ``y`` itself. With one output the sum over levels
    of eq. 3 has a single term, so eq. 6 reads ``∂L/∂F1 = a ⊙ ∂L/∂y`` and ``∂L/∂F2 = b ⊙ ∂L/∂y``
    with ``(a, b) = fusion.level_weights(w)``.

    Args:
        fusion: an adaptive fusion module (``asff_text``, ``asff_code``, ``asff_spatial``).
        head: the classifier head that reads the fused map (``ASFFResNet50.head``).
        low: layer3 [B, 1024, H, W]; high: layer4 [B, 2048, h, w].
        labels: int64 [B], the images' classes.

    Returns:
        ``eq6_layer3`` / ``eq6_layer4``: max |autograd − eq. 6| over the elements of F1 / F2,
        relative to max |autograd|; ``same_sign``: share of the elements where ∂L/∂F1 and
        ∂L/∂F2 have the same sign (1.0: both levels receive the same signal, scaled by a and b);
        ``grad_layer3`` / ``grad_layer4``: max |∂L/∂F1|, max |∂L/∂F2|.
    """
    fusion, head = copy.deepcopy(fusion).double(), copy.deepcopy(head).double()
    fusion.detach_weights = True
    low = low.detach().double().requires_grad_(True)
    kept: dict[str, Tensor] = {}

    def leaf(module, inputs, out):  # make F2 a leaf of the graph so autograd returns ∂L/∂F2
        kept["f2"] = out.detach().requires_grad_(True)
        return kept["f2"]

    handle = fusion.align.register_forward_hook(leaf)
    try:
        fused, w = fusion(low, high.detach().double())
    finally:
        handle.remove()
    loss = nn.functional.cross_entropy(head(fused), labels)
    g1, g2, gy = torch.autograd.grad(loss, (low, kept["f2"], fused))
    a, b = fusion.level_weights(w)

    def rel(x: Tensor, y: Tensor) -> float:
        return float((x - y).abs().max() / x.abs().max())

    both = (g1 != 0) & (g2 != 0)
    return {
        "eq6_layer3": rel(g1, a * gy),
        "eq6_layer4": rel(g2, b * gy),
        "same_sign": float((torch.sign(g1) == torch.sign(g2))[both].double().mean()),
        "grad_layer3": float(g1.abs().max()),
        "grad_layer4": float(g2.abs().max()),
    }


def eq5_eq6_toy(weights: dict[str, tuple[float, ...]], targets: tuple[float, ...] = (1.0, 0.0, 0.0),
                logit: float = 0.0) -> pd.DataFrame:
    """The detector's case of eq. 5–6 in numbers: one feature value ``x`` at position (i, j) of
    level 1, read by one output per level, each output with its own objectness target.

    Output l is ``y^l = α^l·x + (1 − α^l)·c`` (``c`` stands for the other levels' resized
    features, a constant here, so every output starts at ``logit``), with a binary cross-entropy
    against ``targets[l]`` – YOLOv3's scale matching makes (i, j) an object centre (1) at level 1
    and background (0) at the others. Autograd gives ``∂L/∂y^l`` and ``∂L/∂x = Σ_l α^l ∂L/∂y^l``.
    A target list of length 1 is the classifier: one output, one label.

    Args:
        weights: label → (α^1, …, α^L), the weight of level 1's feature in each output (all 1:
            sum fusion, eq. 5; 0 for an output: that output ignores level 1).
        targets: the target of each output (length L).
        logit: the value of every output at the evaluation point.

    Returns:
        DataFrame indexed by label with ``∂L/∂y^l`` per output and ``∂L/∂x`` (eq. 6).
    """
    rows = {}
    for label, alpha in weights.items():
        if len(alpha) != len(targets):
            raise ConfigError(f"eq5_eq6_toy: {label!r} has {len(alpha)} weights for {len(targets)} outputs. "
                              "Fix: give one weight per target.")
        x = torch.tensor(logit, dtype=torch.float64, requires_grad=True)
        ys = [a * x + (1 - a) * logit for a in alpha]
        loss = sum(nn.functional.binary_cross_entropy_with_logits(y, torch.tensor(t, dtype=torch.float64))
                   for y, t in zip(ys, targets))
        grads = torch.autograd.grad(loss, [x, *ys], allow_unused=True)
        row = {f"∂L/∂y{i + 1}": float(g) if g is not None else 0.0 for i, g in enumerate(grads[1:])}
        row["∂L/∂x (eq. 6)"] = float(grads[0])
        rows[label] = row
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("fusion")


# --------------------------------------------------------------------------------------------
# Section 3/5: eq. 7 and the paper's description against the released code and the variants
# --------------------------------------------------------------------------------------------
def _clean_quote(text: str) -> str:
    """Readable quotes: drop the arXiv HTML's doubled TeX (``14×1414\\times 14`` → ``14×14``) and
    spell eq. 7's TeX in plain symbols (``F_{1}\\times\\omega`` → ``F1×ω``)."""
    text = re.sub(r"(\d+)×(\d+)\1\\times ?\2", r"\1×\2", text)
    if "\\times" in text or "\\text" in text:  # a TeX formula (eq. 7)
        text = re.sub(r"\\text\{([^}]*)\}", r"\1", text)
        for tex, plain in (("\\times", " × "), ("\\omega", "ω"), ("_{", ""), ("{", ""), ("}", "")):
            text = text.replace(tex, plain)
        text = re.sub(r"\s*([=+])\s*", r" \1 ", text)
    return text


def eq7_text_and_code(claims: dict | None = None) -> pd.DataFrame:
    """The paper's description of its fusion (section 2.2, eq. 7) beside the released code, step
    by step, every cell a verbatim quote from the claims file (``paper_claims.json``).

    Returns:
        DataFrame indexed by ``step`` (inputs, align layer4, weights, normalised over, fuse,
        pseudocode) with columns ``paper (v2 text)`` and ``released code``.
    """
    raw = paper.load_claims() if claims is None else claims
    tvc = {e["id"]: e for e in raw["text_vs_code"]}
    quote_of = {c["id"]: c["where"]["quote"] for c in raw["claims"]}
    quote_of.update({s["id"]: s["where"]["quote"] for s in raw.get("settings", [])})
    not_spatial = tvc["fusion_weights_are_not_spatial"]["code"]["quote"].split(" | ")
    read = [t for t in raw["coverage"]["not_read"] if "pseudocode" in t]
    rows = [
        ("inputs", f"{quote_of['method.fused_layers']}: {quote_of['method.layer3_size']}, {quote_of['method.layer4_size']}",
         quote_of["code.fusion_channels"].split(" | ")[0]),
        ("align layer4", tvc["fusion_alignment_details"]["text"]["quote"], tvc["fusion_alignment_details"]["code"]["quote"]),
        ("weights", f"{quote_of['method.fc_layers']}; {tvc['softmax_over_channels']['text']['quote']}",
         " | ".join(not_spatial[:3])),
        ("normalised over", f"not stated ({tvc['softmax_over_channels']['text']['note']})",
         tvc["softmax_over_channels"]["code"]["quote"].split(" | ")[1]),
        ("fuse", quote_of["method.fusion_equation"], " | ".join(not_spatial[3:])),
        ("pseudocode", "not read: the pseudocode, " + (read[0].split(" and the pseudocode, ")[1].split(":")[0] if read else "?"), "—"),
    ]
    df = pd.DataFrame(rows, columns=["step", "paper (v2 text)", "released code"]).set_index("step")
    df["paper (v2 text)"] = df["paper (v2 text)"].map(_clean_quote)  # the code quotes are verbatim already
    return df


def released_fusion_transcript(feature1: Tensor, feature2: Tensor, module: nn.Module) -> Tensor:
    """``AdaptiveFeatureFusion.call`` of the released code, line by line in Keras's channels-last
    layout, with the weights of an ``asff_code`` module (:class:`~skinlesion_utils.fusion.ASFFCode`).

    Args:
        feature1: conv4_block6_out, [B, H, W, C] (channels last; C = 1024).
        feature2: conv5_block3_out, [B, h, w, C_high] (C_high = 2048).
        module: the ASFFCode whose ``align.proj`` (Conv2D 1 × 1), ``weights.fc1`` (Dense(1024,
            relu)) and ``weights.fc2`` (Dense(C, softmax)) are used.

    Returns:
        the fused map [B, H, W, C], channels last.
    """
    conv, fc1, fc2 = module.align.proj, module.weights.fc1, module.weights.fc2
    target_size = tuple(feature1.shape[1:3])  # target_size = tf.shape(feature1)[1:3]
    # tf.image.resize(feature2, target_size, method='bilinear'): TF 2 uses half-pixel centres
    # without antialiasing when enlarging, which is PyTorch's align_corners=False
    f2 = nn.functional.interpolate(feature2.permute(0, 3, 1, 2), size=target_size, mode="bilinear",
                                   align_corners=False).permute(0, 2, 3, 1)
    f2 = f2 @ conv.weight[:, :, 0, 0].T + conv.bias  # self.conv: Conv2D(C, kernel_size=1) = matmul on channels
    x = torch.cat([feature1, f2], dim=-1)  # self.concat: Concatenate() joins the last axis
    x = x.mean(dim=(1, 2))  # self.gap: GlobalAveragePooling2D
    x = torch.relu(x @ fc1.weight.T + fc1.bias)  # self.dense1: Dense(1024, activation='relu')
    weights = torch.softmax(x @ fc2.weight.T + fc2.bias, dim=-1)  # self.dense2: softmax on the last axis (C)
    weights = weights.reshape(-1, 1, 1, feature1.shape[-1])  # self.reshape: Reshape((1, 1, C))
    return feature1 * weights + f2 * (1.0 - weights)


def fusion_reading_table(fusions: dict[str, nn.Module], low: Tensor, high: Tensor) -> pd.DataFrame:
    """What each ASFF variant computes, measured on real layer3/layer4 maps (no training mode
    side effects: each module runs once without gradients on a float64 copy).

    Args:
        fusions: variant name → adaptive fusion module (``model.fusion``).
        low: layer3 [B, C, H, W]; high: layer4 [B, C_high, h, w].

    Returns:
        DataFrame indexed by variant with ``weight branch`` (the steps of
        :meth:`~skinlesion_utils.fusion.AdaptiveFusion.weight_branch`), ``softmax over`` (its
        length and axis), ``layer3 weight per image`` (the shape of ``a`` in
        ``fused = F1·a + F2·b``, batch dropped), ``spread over pixels`` / ``spread over
        channels`` (largest standard deviation of ``a`` within one image), ``a + b = 1``
        and ``max |code − variant|`` (against :func:`released_fusion_transcript`; only for a
        variant whose parameters fit the released layer, else NaN).
    """
    rows = {}
    low64, high64 = low.detach().double(), high.detach().double()
    for name, module in fusions.items():
        m = copy.deepcopy(module).double().eval()
        with torch.no_grad():
            fused, w = m(low64, high64)
            a, b = m.level_weights(w)
            a = a.expand(-1, -1, *fused.shape[-2:]) if a.shape[-1] == 1 else a
            n_softmax = round(1 / m.uniform_weight())
            axis = "levels" if n_softmax == 2 else ("channels" if n_softmax == low.shape[1] else "?")
            if axis == "levels" and w.ndim == 4:
                axis = "levels, at each pixel"
            flat = a.flatten(2)  # [B, C_a, H·W]
            diff = float("nan")
            fc2 = getattr(getattr(m, "weights", None), "fc2", None)
            if fc2 is not None and fc2.out_features == low.shape[1]:  # only the released layer's shapes fit
                ref = released_fusion_transcript(low64.permute(0, 2, 3, 1), high64.permute(0, 2, 3, 1), m)
                diff = float((ref.permute(0, 3, 1, 2) - fused).abs().max())
        rows[name] = {
            "weight branch": " → ".join(op for _, op, _, _ in m.weight_branch()),
            "softmax over": f"{n_softmax} {axis}",
            "layer3 weight per image": "×".join(map(str, m.level_weights(w)[0].shape[1:])),
            "spread over pixels": float(flat.std(2).max()) if flat.shape[2] > 1 else 0.0,
            "spread over channels": float(flat.std(1).max()) if flat.shape[1] > 1 else 0.0,
            "a + b = 1": bool(torch.allclose(a + b.expand_as(a), torch.ones((), dtype=a.dtype))),
            "max |code − variant|": diff,
        }
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("variant")


# --------------------------------------------------------------------------------------------
# Section 7: the backbone – Keras's ResNet-50 (v1) against torchvision's (v1.5)
# --------------------------------------------------------------------------------------------
#: ``keras.applications.ResNet50(include_top=True)``'s parameter counts as ``model.summary()``
#: prints them: the total is the "Parameters" column of Keras's applications table
#: (keras-team/keras, docs/templates/applications.md, commit 034466bbe50bf68b64d4883b62deec0372869f87);
#: the split is the summary's "Trainable params" / "Non-trainable params" lines (the
#: non-trainable ones are every BatchNormalization's moving_mean and moving_variance, see
#: keras/applications/resnet.py).
KERAS_RESNET50_PUBLISHED = {"total": 25_636_712, "trainable": 25_583_592, "non_trainable": 53_120}

#: The two backbones of section 7: label → registered model name.
BACKBONES = {"torchvision ResNet-50 (v1.5)": "resnet50", "Keras ResNet50 (v1)": "resnet50_keras_v1"}


def keras_parameter_counts(model: nn.Module) -> dict[str, int]:
    """Parameters as Keras's ``model.summary()`` would count them for this PyTorch model.

    Keras stores BatchNorm's moving mean and variance as (non-trainable) weights; PyTorch keeps
    them as buffers, which :func:`~skinlesion_utils.models.count_parameters` does not count.
    Frozen parameters (``requires_grad=False``) are non-trainable in both. PyTorch's
    ``num_batches_tracked`` counter has no Keras counterpart and is left out.

    Returns:
        ``{"total", "trainable", "non_trainable"}`` (scalars), ``total = trainable + non_trainable``.
    """
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad)
    stats = sum(b.numel() for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
                for b in (m.running_mean, m.running_var) if b is not None)
    return {"total": trainable + frozen + stats, "trainable": trainable, "non_trainable": frozen + stats}


def backbone_design_table(backbones: dict[str, str] | None = None) -> pd.DataFrame:
    """Where each backbone puts the stride of a stage's first bottleneck, and its conv biases and
    BatchNorm settings, read from the built modules (layer2–layer4, each stage's block 0).

    Returns:
        DataFrame indexed by (backbone, stage) with the strides of ``conv1`` (1 × 1),
        ``conv2`` (3 × 3) and the shortcut (``downsample.0``), ``conv biases`` (share of the
        model's convolutions with a bias), ``BN eps`` and ``BN momentum`` (PyTorch's convention).
    """
    rows = []
    for label, name in (BACKBONES if backbones is None else backbones).items():
        model = build_on_meta(name, num_classes=1000)
        convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
        bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
        eps = ", ".join(sorted({f"{m.eps:g}" for m in bns}))  # one value per model, as text
        mom = ", ".join(sorted({f"{m.momentum:g}" for m in bns}))
        for stage in ("layer2", "layer3", "layer4"):
            block = getattr(model, stage)[0]
            rows.append({"backbone": label, "stage": stage, "1×1 conv1 stride": block.conv1.stride[0],
                         "3×3 conv2 stride": block.conv2.stride[0], "shortcut stride": block.downsample[0].stride[0],
                         "conv biases": f"{sum(c.bias is not None for c in convs)}/{len(convs)}",
                         "BN eps": eps, "BN momentum": mom})
    return pd.DataFrame(rows).set_index(["backbone", "stage"])


def backbone_comparison(image_sizes: tuple[int, ...] = (224, 64), num_classes: int = 1000,
                        backbones: dict[str, str] | None = None) -> pd.DataFrame:
    """Size and cost of each backbone as each framework reports them (built on the meta device).

    Args:
        image_sizes: square input sides in pixels (the paper's 224, the ``ci`` profile's 64).
        num_classes: classifier outputs (1000: Keras's ``include_top=True``, whose counts are
            published in :data:`KERAS_RESNET50_PUBLISHED`).
        backbones: label → registered model name (default :data:`BACKBONES`).

    Returns:
        DataFrame indexed by backbone with ``PyTorch params`` (``count_parameters``, buffers
        not counted), ``Keras total`` / ``Keras trainable`` / ``Keras non-trainable``
        (:func:`keras_parameter_counts`) and, per image size S, ``GMACs @S`` (FlopCounterMode /
        2, batch 1), ``layer3 @S`` and ``layer4 @S`` (map shapes as text, e.g. ``1024×14×14``).
    """
    rows = {}
    for label, name in (BACKBONES if backbones is None else backbones).items():
        model = build_on_meta(name, num_classes=num_classes)
        keras = keras_parameter_counts(model)
        row = {"PyTorch params": count_parameters(model)[0], "Keras total": keras["total"],
               "Keras trainable": keras["trainable"], "Keras non-trainable": keras["non_trainable"]}
        for s in image_sizes:
            shapes = layer_shapes(model, s)
            row[f"GMACs @{s}"] = count_flops(model, s) / 2e9
            row[f"layer3 @{s}"] = "×".join(map(str, shapes["layer3"]))
            row[f"layer4 @{s}"] = "×".join(map(str, shapes["layer4"]))
        rows[label] = row
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("backbone")


def backbone_flops_difference(image_size: int = 224, num_classes: int = 1000,
                              backbones: dict[str, str] | None = None) -> pd.DataFrame:
    """The modules whose multiply-adds differ between the two backbones of :data:`BACKBONES`.

    Returns:
        DataFrame indexed by module name (only those that differ) with one ``MMACs`` column per
        backbone (millions of multiply-adds, batch 1) and ``Δ MMACs`` (second − first); its
        ``Δ MMACs`` column sums to the difference of the whole models.
    """
    labels = list(BACKBONES if backbones is None else backbones)
    names = list((BACKBONES if backbones is None else backbones).values())
    counts = [flops_by_module(build_on_meta(n, num_classes=num_classes), image_size) for n in names]
    keys = sorted(set(counts[0]) | set(counts[1]), key=lambda k: (k.count("."), k))
    rows = {k: {labels[0]: counts[0].get(k, 0) / 2e6, labels[1]: counts[1].get(k, 0) / 2e6} for k in keys
            if counts[0].get(k, 0) != counts[1].get(k, 0)}
    df = pd.DataFrame.from_dict(rows, orient="index").rename_axis("module")
    df["Δ MMACs"] = df[labels[1]] - df[labels[0]]
    return df


def asff_on_keras_v1(fusion: str = "asff_code", num_classes: int = 2) -> ASFFResNet50:
    """The book's ASFF-ResNet50 with its torchvision body swapped for
    :func:`~skinlesion_utils.models.resnet50_keras_v1`'s modules, on the meta device: the
    structure of the released Keras model (``fusion="asff_code"``), built to be counted.

    ``x: [B, 3, S, S]`` → logits ``[B, num_classes]`` (meta tensors); layer3/layer4 shapes as
    :class:`ASFFResNet50`'s.
    """
    with torch.device("meta"):
        model = build_model("asff_resnet50", fusion=fusion, num_classes=num_classes).eval()
        body = build_model("resnet50_keras_v1")
    for name in ("conv1", "bn1", "layer1", "layer2", "layer3", "layer4"):
        setattr(model, name, getattr(body, name))
    return model


def released_model_table(image_size: int = 224, fusion: str = "asff_code", num_classes: int = 2) -> pd.DataFrame:
    """The book's ASFF-ResNet50 (torchvision v1.5 body) beside the same model on the Keras v1 body
    (:func:`asff_on_keras_v1`), counted as each framework counts (meta device).

    Returns:
        DataFrame indexed by model with ``PyTorch params``, ``Keras total``, ``Keras trainable``,
        ``Keras non-trainable`` (:func:`keras_parameter_counts`) and ``GMACs @S``.
    """
    with torch.device("meta"):
        book = build_model("asff_resnet50", fusion=fusion, num_classes=num_classes).eval()
    rows = {}
    for label, model in ((f"{fusion}, v1.5 body (this book)", book), (f"{fusion}, v1 body (the released model)",
                                                                       asff_on_keras_v1(fusion, num_classes))):
        keras = keras_parameter_counts(model)
        rows[label] = {"PyTorch params": count_parameters(model)[0], "Keras total": keras["total"],
                       "Keras trainable": keras["trainable"], "Keras non-trainable": keras["non_trainable"],
                       f"GMACs @{image_size}": count_flops(model, image_size) / 2e9}
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("model")
