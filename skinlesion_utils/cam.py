"""Grad-CAM and its checks: target layers, batched CAMs, the randomisation sanity check,
faithfulness (ROAD, confidence change) and localisation against lesion masks.

Taught in chapter 07 (``chapters/07_gradcam``); the ``cam-score`` command wraps it.

Everything that computes a class-activation map goes through **pytorch-grad-cam**
(``pip install grad-cam``); this module only chooses the layer, batches the images, releases
the hooks, and scores the maps.

* :func:`cam_target_layer` – the layer each architecture of :func:`~skinlesion_utils.models.
  build_model` is explained at (ResNets: ``layer4[-1]``; ASFF-ResNet50: ``cam_layer``, the
  fused map; …), or any sub-module by its dotted name. :func:`cam_map_size` – that layer's
  spatial size at a given input size (ResNet-50's ``layer4`` is 2 × 2 at 64 px).
* :func:`compute_cams` – ``uint8 [N, 3, R, R]`` images → ``float32 [N, R, R]`` maps in
  [0, 1], in batches, with the ``with GradCAM(...) as cam:`` form so that no hook stays on the
  model, and without touching the model's parameter gradients. :func:`compute_cams_layers` –
  the maps of several target layers from one pass per batch (the same batching loop).
* :func:`randomisation_check` – the model-parameter randomisation test of Adebayo et al.
  (2018, "Sanity checks for saliency maps"): re-initialise the model's blocks from the top down
  (cascading) or one at a time (independent), on a deep copy, and measure how much the maps
  change (Spearman rank correlation and SSIM against the original maps). A map that does not
  change when the weights it should explain are destroyed explains nothing about the model.
  :func:`randomisation_maps` – the maps of the cascading steps (same seed, same weights), for
  figures; :func:`default_blocks` / :func:`stage_blocks` – the blocks it re-initialises.
* :func:`faithfulness` – per image: ROAD (Rong et al. 2022; most/least relevant first and the
  combined score) and the confidence change when the image is multiplied by its map, both from
  ``pytorch_grad_cam.metrics``.
* :func:`localisation_score` – per image: the share of the map's mass inside the lesion mask
  ("energy inside", Wang et al. 2020) and the pointing game (Zhang et al. 2018: is the map's
  maximum inside the mask?), next to the chance level (the mask's area fraction).
  :func:`summarise_localisation` – their means with bootstrap intervals; :func:`centre_prior` –
  the image-independent baseline map (a central Gaussian).
* :func:`load_masks` – expert masks from a folder, matched to images by file stem.
  :func:`approximate_lesion_mask` – a classical segmentation (Otsu on CIE L*, morphology,
  largest central component) for images without expert masks. Such masks are **approximate**
  and every table and file that uses them says so (``mask_kind="approximate"``).
* :func:`cam_score` – the ``cam-score`` command (:func:`add_cam_score_parser`,
  :func:`run_cam_score`): ``python -m skinlesion_utils cam-score --checkpoint FILE
  --images FOLDER [--masks FOLDER] --out FILE.json``.

What only chapter 07's analysis needs (tables of several models, paired comparisons, the
image-independence controls, artifact marks, example selection) is in
:mod:`skinlesion_utils.studies.ch07_gradcam`.
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import math
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd
import torch
from PIL import Image
from scipy import ndimage as ndi
from scipy.stats import spearmanr
from torch import nn

from .data import CLASSES, IMAGE_EXTENSIONS, DataError, ImageTensorStore, decode_image
from .metrics import mean_ci
from .models import LeNet5
from .profiles import resolve_device
from .results import write_json
from .train import load_checkpoint, normalise

__all__ = [
    "METHODS",
    "MASK_KINDS",
    "cam_target_layer",
    "cam_map_size",
    "as_images",
    "compute_cams",
    "compute_cams_layers",
    "default_blocks",
    "stage_blocks",
    "randomisation_check",
    "randomisation_maps",
    "ssim",
    "spearman",
    "faithfulness",
    "as_numpy",
    "localisation_score",
    "summarise_localisation",
    "centre_prior",
    "load_masks",
    "approximate_lesion_mask",
    "approximate_lesion_masks",
    "cam_score",
    "add_cam_score_parser",
    "run_cam_score",
]


def _methods() -> dict[str, type]:
    import pytorch_grad_cam as pgc

    return {
        "gradcam": pgc.GradCAM,
        "gradcam++": pgc.GradCAMPlusPlus,
        "hirescam": pgc.HiResCAM,
        "xgradcam": pgc.XGradCAM,
        "layercam": pgc.LayerCAM,
        "gradcamelementwise": pgc.GradCAMElementWise,
        "eigencam": pgc.EigenCAM,
        "scorecam": pgc.ScoreCAM,
    }


#: Names accepted by ``method=`` (pytorch-grad-cam classes): gradcam, gradcam++, hirescam,
#: xgradcam, layercam, gradcamelementwise, eigencam, scorecam.
METHODS: tuple[str, ...] = (
    "gradcam", "gradcam++", "hirescam", "xgradcam", "layercam", "gradcamelementwise", "eigencam", "scorecam",
)

#: Kinds of lesion mask a localisation table can be built on (copied into every row).
MASK_KINDS = ("expert", "approximate")


def _method_class(method: str) -> type:
    """The pytorch-grad-cam class of ``method`` (one of :data:`METHODS`, any case)."""
    methods = _methods()
    key = method.lower()
    if key not in methods:
        raise ValueError(f"Unknown method {method!r}; valid: {', '.join(METHODS)}.")
    return methods[key]


# --------------------------------------------------------------------------- target layers
def _unwrap(model: nn.Module) -> nn.Module:
    model = getattr(model, "_orig_mod", model)  # torch.compile
    if isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
        model = model.module
    return model


def _last_of(module: nn.Module, kind: type | tuple[type, ...]) -> nn.Module:
    found = [m for m in module.modules() if isinstance(m, kind)]
    if not found:
        raise ValueError(f"{type(module).__name__} has no {kind} sub-module.")
    return found[-1]


def _rule_for(model: nn.Module) -> tuple[str, Callable[[nn.Module], nn.Module]] | None:
    """(description, getter) of the target layer for the architectures this book uses."""
    import torchvision.models as tvm

    if isinstance(getattr(model, "cam_layer", None), nn.Module):
        return "cam_layer (the final spatial map, e.g. ASFF-ResNet50's fused map)", lambda m: m.cam_layer
    if isinstance(model, tvm.ResNet):
        return "layer4[-1] (last bottleneck/basic block)", lambda m: m.layer4[-1]
    if isinstance(model, (tvm.VGG, tvm.AlexNet)):
        return "last ReLU of features (the last conv block, before the final max-pool)", \
            lambda m: _last_of(m.features, nn.ReLU)
    if isinstance(model, tvm.DenseNet):
        return "features (dense block 4 + norm5)", lambda m: m.features
    if isinstance(model, tvm.MobileNetV2):
        return "features[-1] (last 1 × 1 conv + BN + ReLU6)", lambda m: m.features[-1]
    if isinstance(model, tvm.SqueezeNet):
        return "features[-1] (last Fire module)", lambda m: m.features[-1]
    if isinstance(model, tvm.GoogLeNet):
        return "inception5b", lambda m: m.inception5b
    if type(model).__name__ == "Xception" and type(model).__module__.startswith("timm"):
        return "act4 (ReLU after conv4/bn4, the last spatial map)", lambda m: m.act4
    if isinstance(model, LeNet5):
        return "last Conv2d of features", lambda m: _last_of(m.features, nn.Conv2d)
    return None


_KNOWN = ("ASFFResNet50 (or any model with a `cam_layer` module), torchvision ResNet, VGG, AlexNet, "
          "DenseNet, MobileNetV2, SqueezeNet, GoogLeNet, timm Xception, LeNet5")


def cam_target_layer(model: nn.Module, name: str | None = None) -> nn.Module:
    """The layer whose activations and gradients Grad-CAM combines, per architecture.

    ============================ =====================================================
    model                        target layer
    ============================ =====================================================
    ASFF-ResNet50                ``model.cam_layer`` (identity on the fused map; ``none``:
                                 layer4)
    ResNet-34/50/101             ``model.layer4[-1]``
    VGG-16, AlexNet              last ``ReLU`` in ``model.features`` (before the last pool)
    DenseNet-121                 ``model.features``
    MobileNetV2, SqueezeNet      ``model.features[-1]``
    GoogLeNet                    ``model.inception5b``
    Xception (timm)              ``model.act4``
    LeNet-5                      last ``Conv2d`` in ``model.features``
    ============================ =====================================================

    Args:
        model: a classifier (``torch.compile`` / DDP wrappers are looked through).
        name: ``None`` (pick by the model's type), or a dotted sub-module path such as
            ``"layer3"`` or ``"features.28"`` to explain another layer.

    Returns:
        The ``nn.Module`` to pass to pytorch-grad-cam as ``target_layers=[layer]``.

    Raises:
        ValueError: unknown architecture (and no ``cam_layer``), or no sub-module ``name``.
    """
    inner = _unwrap(model)
    if name is not None:
        try:
            return inner.get_submodule(name)
        except AttributeError:
            tops = ", ".join(n for n, _ in inner.named_children())
            raise ValueError(
                f"{type(inner).__name__} has no sub-module {name!r}. Expected a dotted path such as "
                f"'layer4.2' or 'features.28'; its top-level modules are: {tops}. Fix: pick one of "
                "them (print(model) shows the full tree), or name=None for the default layer."
            ) from None
    rule = _rule_for(inner)
    if rule is None:
        raise ValueError(
            f"cam_target_layer does not know the architecture {type(inner).__module__}."
            f"{type(inner).__name__}. Known: {_KNOWN}. Fix: pass the layer yourself "
            "(compute_cams(..., target_layer=model.<last conv block>)) or its dotted name "
            "(cam_target_layer(model, name='...')), or give the model a `cam_layer` attribute."
        )
    return rule[1](inner)


def _module_name(model: nn.Module, layer: nn.Module) -> str:
    for n, m in _unwrap(model).named_modules():
        if m is layer:
            return n
    raise ValueError(
        f"target_layer ({type(layer).__name__}) is not a sub-module of the model "
        f"({type(_unwrap(model)).__name__}). Fix: take it from this model, e.g. "
        "cam_target_layer(model)."
    )


def _model_device(model: nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def _model_dtype(model: nn.Module) -> torch.dtype:
    p = next(model.parameters(), None)
    return p.dtype if p is not None and p.is_floating_point() else torch.float32


@torch.no_grad()
def cam_map_size(model: nn.Module, image_size: int, target_layer: nn.Module | None = None) -> tuple[int, int]:
    """Spatial size ``(h, w)`` of the target layer's output for a ``[1, 3, S, S]`` input.

    Grad-CAM's map has this resolution before it is upsampled to the image: at 64 px
    ResNet-50's ``layer4`` is 2 × 2, at 224 px 7 × 7.
    """
    layer = target_layer if target_layer is not None else cam_target_layer(model)
    shapes: list[tuple[int, ...]] = []
    was_training = model.training
    with layer.register_forward_hook(lambda m, i, o: shapes.append(tuple(o.shape))):  # removed on leaving
        try:
            model.eval()
            model(torch.zeros(1, 3, image_size, image_size, device=_model_device(model)))
        finally:
            model.train(was_training)
    if not shapes or len(shapes[0]) != 4:
        raise ValueError(f"The target layer's output is not a [B, C, h, w] map: {shapes[:1]}.")
    return int(shapes[0][2]), int(shapes[0][3])


# --------------------------------------------------------------------------- CAMs
def as_images(images) -> torch.Tensor:
    """Check ``images`` and return them as a tensor: ``uint8 [N, 3, H, W]`` as they are
    (normalised batch by batch on the way into the model), ``float [N, 3, H, W]`` taken as
    already ImageNet-normalised; one ``[3, H, W]`` image becomes ``[1, 3, H, W]``.

    Raises:
        ValueError: another shape or dtype, or float values that look like raw pixels.
    """
    x = images if isinstance(images, torch.Tensor) else torch.as_tensor(np.asarray(images))
    if x.ndim == 3:
        x = x.unsqueeze(0)
    if x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(
            f"images must be [N, 3, H, W] (uint8 RGB, like ImageTensorStore.images); found shape "
            f"{tuple(x.shape)}. Fix: for H×W×3 arrays use np.transpose(a, (0, 3, 1, 2))."
        )
    if x.dtype == torch.uint8:
        return x
    if not x.is_floating_point():
        raise ValueError(f"images must be uint8 or float; found {x.dtype}.")
    lo, hi = float(x.min()), float(x.max())
    if hi > 8.0 or (lo >= 0.0 and hi <= 1.0):
        raise ValueError(
            f"Float images are taken as the model's input, already ImageNet-normalised (values "
            f"roughly -2.1..2.6); these range {lo:.3g}..{hi:.3g}, which looks like raw pixel values. "
            "Fix: pass the uint8 images (ImageTensorStore.images) or "
            "skinlesion_utils.train.normalise(x) of 0..255 floats."
        )
    return x


def _model_input(batch: torch.Tensor, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """One batch of :func:`as_images` → the model's input on ``device`` (uint8 → normalised
    with :func:`skinlesion_utils.train.normalise`)."""
    batch = batch.to(device)
    return (normalise(batch) if batch.dtype == torch.uint8 else batch).to(dtype)


def _targets_for(targets, n: int, softmax: bool = False) -> list | None:
    """None | int | sequence of ints | sequence of pytorch-grad-cam targets → list of n targets."""
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget, ClassifierOutputTarget

    make = ClassifierOutputSoftmaxTarget if softmax else ClassifierOutputTarget
    if targets is None:
        return None
    if isinstance(targets, (int, np.integer)):
        return [make(int(targets)) for _ in range(n)]
    targets = list(targets.tolist() if hasattr(targets, "tolist") else targets)
    if len(targets) != n:
        raise ValueError(f"Got {len(targets)} targets for {n} images; pass one per image, one int, or None.")
    return [make(int(t)) if isinstance(t, (int, np.integer)) else t for t in targets]


@contextlib.contextmanager
def _explaining(model: nn.Module):
    """Eval mode, parameters frozen (no parameter gradients are computed or left behind);
    the caller's mode and requires_grad flags are restored afterwards."""
    was_training = model.training
    flags = [(p, p.requires_grad) for p in model.parameters()]
    try:
        for p, _ in flags:
            p.requires_grad_(False)
        model.eval()
        yield
    finally:
        for p, f in flags:
            p.requires_grad_(f)
        model.train(was_training)


def _call_cam(cam, xb: torch.Tensor, tb) -> np.ndarray:
    """One ``cam(input_tensor=xb, targets=tb)`` call → ``float32`` maps, with the IndexError that
    the library's ``__exit__`` would swallow turned into a RuntimeError."""
    try:
        out = cam(input_tensor=xb, targets=tb)
    except IndexError as exc:  # the library's __exit__ swallows IndexError: re-raise
        raise RuntimeError(
            f"pytorch-grad-cam failed: IndexError: {exc}. Is a target class outside the "
            "model's outputs (0 = benign, 1 = malignant)?"
        ) from exc
    return np.asarray(out, dtype=np.float32)


def _cam_batches(model: nn.Module, x_all: torch.Tensor, layers: list[nn.Module], cam_class: type, targets,
                 batch_size: int, *, input_grad: bool, before: Callable[[], None] | None = None,
                 after: Callable[[np.ndarray], object] | None = None) -> tuple[list, np.ndarray]:
    """The one batching loop of :func:`compute_cams` and :func:`compute_cams_layers`.

    ``cam_class(model=model, target_layers=layers)`` runs inside ``with ... as cam:`` (its hooks
    are released on leaving, also on an error) and :func:`_explaining` (eval mode, parameters
    frozen), over ``x_all`` (checked by :func:`as_images`) in batches of ``batch_size``.
    ``input_grad`` makes each batch's input require a gradient; ``before()`` is called before each
    batch, ``after(maps)`` turns each batch's ``float32`` output into what is kept (default: the
    output itself).

    Returns:
        ``(kept, logits)``: one kept item per batch and the logits ``float32 [N, C]`` of the
        forward passes (``[0, 0]`` for no images).
    """
    n = x_all.shape[0]
    tgts = _targets_for(targets, n)
    dev, dtype = _model_device(model), _model_dtype(model)
    kept, logits = [], []
    with _explaining(model):
        with cam_class(model=model, target_layers=layers) as cam:
            for start in range(0, n, batch_size):
                if before is not None:
                    before()
                xb = _model_input(x_all[start:start + batch_size], dev, dtype)
                if input_grad:
                    xb = xb.requires_grad_(True)
                tb = None if tgts is None else tgts[start:start + batch_size]
                out = _call_cam(cam, xb, tb)
                kept.append(out if after is None else after(out))
                logits.append(cam.outputs.detach().float().cpu().numpy())
                cam.outputs = None  # frees the batch's graph (the library keeps it otherwise)
    return kept, (np.concatenate(logits) if logits else np.zeros((0, 0), np.float32))


def _joined(parts: list[np.ndarray], size: tuple[int, ...]) -> np.ndarray:
    """Per-batch maps → ``float32 [N, *size]`` clipped to [0, 1] (``[0, *size]`` for no batch)."""
    return np.clip(np.concatenate(parts), 0.0, 1.0) if parts else np.zeros((0,) + size, np.float32)


def compute_cams(
    model: nn.Module,
    images,
    target_layer: nn.Module | None = None,
    targets=None,
    method: str = "gradcam",
    batch_size: int = 32,
    *,
    return_logits: bool = False,
):
    """Class-activation maps of ``model`` for a batch of images (pytorch-grad-cam).

    Args:
        model: classifier, ImageNet-normalised ``[B, 3, R, R]`` → logits ``[B, C]``. Evaluated in
            eval mode on its own device; its training mode and ``requires_grad`` flags are
            restored afterwards and no gradient is left in its parameters.
        images: ``uint8 [N, 3, R, R]`` (tensor or array; normalised here with
            :func:`skinlesion_utils.train.normalise`), or ``float32 [N, 3, R, R]`` that is
            already the model's (normalised) input.
        target_layer: default :func:`cam_target_layer` of the model.
        targets: ``None`` – the predicted class of each image; an ``int`` – that class for all
            images (0 benign, 1 malignant); a sequence of N ints; or N pytorch-grad-cam target
            objects.
        method: one of :data:`METHODS` (``"gradcam"``, ``"gradcam++"``, ``"hirescam"``, …).
        batch_size: images per forward/backward pass.
        return_logits: also return the logits of the forward passes.

    Returns:
        ``cams: float32 [N, R, R]`` in [0, 1] (each map min-max scaled by pytorch-grad-cam and
        resized bilinearly to the image), or ``(cams, logits float32 [N, C])``.

    All hooks are registered and removed inside a ``with <CAM>(...) as cam:`` block, so the model
    carries no hook afterwards (the tests check ``_forward_hooks`` of every module).
    """
    cam_class = _method_class(method)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
    x_all = as_images(images)
    layer = target_layer if target_layer is not None else cam_target_layer(model)
    _module_name(model, layer)  # fails early, with a clear message, for a foreign layer
    cams, logits = _cam_batches(model, x_all, [layer], cam_class, targets, batch_size, input_grad=True)
    result = _joined(cams, tuple(x_all.shape[2:]))
    return (result, logits) if return_logits else result


def _per_layer_class(method: str) -> type:
    """The pytorch-grad-cam class of ``method`` with its layer average switched off: each target
    layer's map (already ReLU'd, min-max scaled and resized by the library) is kept apart."""
    base = _method_class(method)

    def aggregate_multi_layers(self, cam_per_target_layer):  # [B, 1, H, W] per layer → [B, L, H, W]
        from pytorch_grad_cam.utils.image import scale_cam_image

        # what the library does with a single layer (ReLU, mean over one layer, min-max scale),
        # layer by layer: the maps equal those of one call per layer
        return np.stack([scale_cam_image(np.maximum(c[:, 0], 0)) for c in cam_per_target_layer], axis=1)

    return type(f"PerLayer{base.__name__}", (base,), {"aggregate_multi_layers": aggregate_multi_layers})


def _resolve_layers(model: nn.Module, layers) -> dict[str, nn.Module]:
    """``layers`` of :func:`compute_cams_layers` → ``{name: sub-module of model}``, in order."""
    if not isinstance(layers, dict):
        layers = {("default" if spec is None else str(spec)): spec for spec in layers}
    if not layers:
        raise ValueError("layers is empty; pass e.g. {'default': None, 'layer3': 'layer3'}.")
    resolved: dict[str, nn.Module] = {}
    for name, spec in layers.items():
        layer = spec if isinstance(spec, nn.Module) else cam_target_layer(model, spec)
        _module_name(model, layer)
        resolved[name] = layer
    return resolved


def compute_cams_layers(
    model: nn.Module,
    images,
    layers,
    targets=None,
    method: str = "gradcam",
    batch_size: int = 32,
    *,
    return_logits: bool = False,
):
    """Class-activation maps at several target layers from one forward/backward pass per batch.

    The same maps as :func:`compute_cams` called once per layer (the tests check it), at a
    fraction of the cost: pytorch-grad-cam hooks all layers at once and keeps each layer's map
    apart instead of averaging them, and the backward pass stops at the lowest target layer
    (its input is detached there: the gradient of the score with respect to a layer's
    activations does not involve the layers below it).

    Args:
        model: classifier, as in :func:`compute_cams` (its mode, ``requires_grad`` flags and
            hooks are left as they were; no parameter gradient is computed).
        images: ``uint8 [N, 3, R, R]`` or normalised ``float32 [N, 3, R, R]``.
        layers: ``{name: layer}`` where ``layer`` is a sub-module, a dotted module name, or
            ``None`` (the model's :func:`cam_target_layer`); or a list of dotted names / ``None``
            (named by themselves, ``None`` → ``"default"``).
        targets: as in :func:`compute_cams` (``None``: each image's predicted class).
        method: one of :data:`METHODS`.
        batch_size: images per pass.
        return_logits: also return the logits ``float32 [N, C]``.

    Returns:
        ``{name: float32 [N, R, R] in [0, 1]}`` (or ``(maps, logits)``), in the order of ``layers``.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
    resolved = _resolve_layers(model, layers)
    cls = _per_layer_class(method)
    x_all = as_images(images)
    unique = list(dict.fromkeys(resolved.values()))  # a layer named twice is hooked once
    state: dict = {"cut": False, "order": []}

    def cut(module, args):
        # records the forward order of the target layers (pytorch-grad-cam returns the layers'
        # maps in that order); the first one reached gets a fresh leaf as its input
        state["order"].append(module)
        if state["cut"] or not args or not isinstance(args[0], torch.Tensor):
            return None
        state["cut"] = True
        # a new leaf (clone: an in-place first op, e.g. ReLU(inplace=True), may modify it)
        return (args[0].detach().requires_grad_(True).clone(),) + tuple(args[1:])

    def split(out: np.ndarray) -> dict[str, np.ndarray]:
        order = list(dict.fromkeys(state["order"]))
        if len(state["order"]) != len(unique) or len(order) != len(unique):
            raise RuntimeError(
                f"Each target layer must run exactly once per forward pass; {len(state['order'])} "
                f"calls of {len(unique)} layers were seen. Fix: pick modules that are not reused "
                "(e.g. a block such as 'layer4.2', not a ReLU shared inside it)."
            )
        return {k: out[:, order.index(layer)] for k, layer in resolved.items()}

    with contextlib.ExitStack() as hooks:  # each RemovableHandle removes its hook on leaving
        for layer in unique:
            hooks.enter_context(layer.register_forward_pre_hook(cut))
        parts, logits = _cam_batches(model, x_all, unique, cls, targets, batch_size, input_grad=False,
                                     before=lambda: state.update(cut=False, order=[]), after=split)
    size = tuple(x_all.shape[2:])
    result = {k: _joined([p[k] for p in parts], size) for k in resolved}
    return (result, logits) if return_logits else result


# --------------------------------------------------------------------------- sanity check
def ssim(a: np.ndarray, b: np.ndarray, data_range: float = 1.0) -> float:
    """Structural similarity of two maps (Wang et al. 2004), mean over the valid area.

    ``a, b: float [H, W]``. Gaussian window σ = 1.5 (truncated at 3.5 σ, 11 × 11), K1 = 0.01,
    K2 = 0.03, population covariances, borders of 5 px left out of the mean: the settings of
    ``skimage.metrics.structural_similarity(a, b, gaussian_weights=True, sigma=1.5,
    use_sample_covariance=False, data_range=...)`` (the values agree to 1e-6; checked while
    writing this), computed with ``scipy.ndimage`` so that scikit-image is not needed. Adebayo
    et al. (2018) report SSIM next to rank correlations. 1 = identical maps.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(f"ssim needs two maps of the same [H, W] shape; got {a.shape} and {b.shape}.")
    sigma, truncate = 1.5, 3.5
    pad = int(truncate * sigma + 0.5)
    if min(a.shape) <= 2 * pad:
        raise ValueError(f"ssim needs maps larger than {2 * pad + 1} px per side; got {a.shape}.")

    def filt(x):
        return ndi.gaussian_filter(x, sigma=sigma, truncate=truncate, mode="reflect")

    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    ua, ub = filt(a), filt(b)
    vaa, vbb, vab = filt(a * a) - ua * ua, filt(b * b) - ub * ub, filt(a * b) - ua * ub
    s = ((2 * ua * ub + c1) * (2 * vab + c2)) / ((ua * ua + ub * ub + c1) * (vaa + vbb + c2))
    return float(s[pad:-pad, pad:-pad].mean())


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation of the pixels of two maps (any equal shapes; ``scipy.stats.
    spearmanr`` of the flattened maps); NaN if either map is constant (it ranks no pixel)."""
    a, b = np.ravel(a), np.ravel(b)
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")  # a constant map has no ranking
    return float(spearmanr(a, b).statistic)


def default_blocks(model: nn.Module) -> list[str]:
    """Dotted names of the blocks that :func:`randomisation_check` re-initialises, top first.

    The model's top-level children that hold parameters, in reverse order of registration (the
    order of the forward pass for the book's models), with each ``nn.Sequential`` child opened
    one level (ResNet-50: ``fc, layer4.2, layer4.1, layer4.0, layer3.5, …, bn1, conv1``).
    """
    inner = _unwrap(model)
    names: list[str] = []
    for name, child in inner.named_children():
        if not any(True for _ in child.parameters()):
            continue
        subs = [(f"{name}.{n}", c) for n, c in child.named_children() if any(True for _ in c.parameters())]
        if isinstance(child, nn.Sequential) and len(subs) >= 2:
            names += [n for n, _ in subs]
        else:
            names.append(name)
    return names[::-1]


def stage_blocks(model: nn.Module) -> list[str]:
    """The model's top-level children that hold parameters, last first: the stages a coarse
    cascading randomisation re-initialises (ASFF-ResNet50: ``head, fusion, layer4, layer3,
    layer2, layer1, bn1, conv1``; :func:`default_blocks` opens each stage into its blocks)."""
    inner = _unwrap(model)
    return [n for n, c in inner.named_children() if any(True for _ in c.parameters())][::-1]


@torch.no_grad()
def _reinitialise(block: nn.Module) -> None:
    """Re-draw every parameter of ``block`` from its layer type's default initialisation
    (``reset_parameters()``: Kaiming-uniform for conv/linear; BatchNorm → weight 1, bias 0,
    running statistics reset); a parameter of a module without ``reset_parameters`` is drawn
    from N(0, 0.02²)."""
    for m in block.modules():
        own = list(m.parameters(recurse=False))
        if hasattr(m, "reset_parameters") and (own or list(m.buffers(recurse=False))):
            m.reset_parameters()
        elif own:
            for p in own:
                p.normal_(0.0, 0.02)


def _checked_blocks(model: nn.Module, blocks: Sequence[str] | None) -> list[str]:
    """``blocks`` (default: :func:`default_blocks`) after checking each names a submodule."""
    inner = _unwrap(model)
    blocks = list(blocks) if blocks is not None else default_blocks(model)
    for b in blocks:
        try:
            inner.get_submodule(b)
        except AttributeError:
            raise ValueError(
                f"No block {b!r} in {type(inner).__name__}; default_blocks(model) lists valid names."
            ) from None
    return blocks


def _randomisation_setup(model, images, target_layer, targets, blocks, method, batch_size):
    """``(layer name, checked blocks, original maps, fixed targets)`` of a randomisation: the
    targets are ``targets`` or, for ``None``, the original model's predicted classes."""
    layer = target_layer if target_layer is not None else cam_target_layer(model)
    layer_name = _module_name(model, layer)
    blocks = _checked_blocks(model, blocks)
    original, logits = compute_cams(model, images, layer, targets, method, batch_size, return_logits=True)
    fixed = list(np.argmax(logits, axis=1)) if targets is None else targets
    return layer_name, blocks, original, fixed


def _randomise_steps(model: nn.Module, blocks: list[str], mode: str, seed: int,
                     visit: Callable[[int, str, nn.Module], None]) -> None:
    """The one home of the randomisation steps, on a deep copy of ``model``.

    ``visit(0, "none", copy)`` sees the unchanged copy; then, under ``torch.manual_seed(seed)``
    (the caller's random state is restored afterwards), each block of ``blocks`` is
    re-initialised in turn – ``"cascading"``: on top of the earlier steps, ``"independent"``:
    on the original weights – and ``visit(step, block, copy)`` is called after it.
    """
    inner = _unwrap(model)
    work = copy.deepcopy(inner)
    visit(0, "none", work)
    pristine = copy.deepcopy(inner.state_dict()) if mode == "independent" else None
    dev = _model_device(work)
    with torch.random.fork_rng(devices=[dev.index or 0] if dev.type == "cuda" else []):
        torch.manual_seed(seed)
        for step, b in enumerate(blocks, start=1):
            if pristine is not None:
                work.load_state_dict(pristine)
            _reinitialise(work.get_submodule(b))
            visit(step, b, work)


def randomisation_check(
    model: nn.Module,
    images,
    *,
    target_layer: nn.Module | None = None,
    targets=None,
    mode: str = "cascading",
    blocks: Sequence[str] | None = None,
    method: str = "gradcam",
    batch_size: int = 32,
    seed: int = 0,
) -> pd.DataFrame:
    """Model-parameter randomisation test (Adebayo et al. 2018) on a deep copy of ``model``.

    Step 0 recomputes the maps of the unchanged copy (a control: Spearman = SSIM = 1 on a
    deterministic device). Then, for each block of ``blocks`` (default :func:`default_blocks`,
    top first), ``mode="cascading"`` re-initialises that block *and keeps* the blocks above it
    re-initialised, ``mode="independent"`` re-initialises only that block (all others
    original). After each step the maps are recomputed for the *same* target classes (the
    original model's predictions, or ``targets``) and compared with the original maps.

    Args:
        model: the classifier (never modified: the test runs on ``copy.deepcopy(model)``).
        images: ``uint8 [N, 3, R, R]`` (see :func:`compute_cams`).
        target_layer: a layer of ``model`` (default :func:`cam_target_layer`); the copy's layer
            of the same name is used.
        targets: as in :func:`compute_cams`; ``None`` fixes each image's class to the
            original model's prediction.
        mode: ``"cascading"`` or ``"independent"``.
        blocks: dotted module names to re-initialise, in order.
        method, batch_size: as in :func:`compute_cams`.
        seed: seeds the re-initialisation (the same seed gives the same randomised weights).

    Returns:
        DataFrame, one row per (step, image): ``step`` (0 = control), ``block`` (re-initialised at
        this step; ``"none"`` at step 0), ``mode``, ``image`` (index), ``spearman`` (rank
        correlation of the pixels of the original and randomised maps; NaN if either is
        constant), ``ssim`` (:func:`ssim`; NaN for maps of 11 px or less), ``flat`` (the
        randomised map is constant – typically all zero after the ReLU of Grad-CAM – so it no
        longer ranks any pixel). Maps that explain the model must lose their similarity
        (Spearman → ~0, SSIM falls) as the weights are destroyed.
    """
    if mode not in ("cascading", "independent"):
        raise ValueError(f"mode must be 'cascading' or 'independent', got {mode!r}.")
    layer_name, blocks, original, fixed = _randomisation_setup(model, images, target_layer, targets, blocks,
                                                               method, batch_size)
    rows: list[dict] = []

    def record(step: int, block: str, work: nn.Module) -> None:
        maps = compute_cams(work, images, work.get_submodule(layer_name), fixed, method, batch_size)
        for i, (o, r) in enumerate(zip(original, maps)):
            rows.append({"step": step, "block": block, "mode": mode, "image": i,
                         "spearman": spearman(o, r), "ssim": ssim(o, r) if min(o.shape) > 11 else float("nan"),
                         "flat": bool(np.ptp(r) == 0)})

    _randomise_steps(model, blocks, mode, seed, record)
    return pd.DataFrame(rows)


def randomisation_maps(
    model: nn.Module,
    images,
    *,
    blocks: Sequence[str] | None = None,
    target_layer: nn.Module | None = None,
    targets=None,
    method: str = "gradcam",
    batch_size: int = 32,
    seed: int = 0,
) -> tuple[list[str], np.ndarray]:
    """The maps behind a cascading :func:`randomisation_check`, for figures.

    Same steps, same seed and therefore the same randomised weights as
    ``randomisation_check(model, images, mode="cascading", blocks=blocks, seed=seed)``: step 0
    is the original model, step k has ``blocks[:k]`` re-initialised (on a deep copy).

    Returns:
        ``(steps, maps)``: ``steps = ["none", *blocks]`` and ``maps: float32 [len(steps), N, R, R]``.
    """
    layer_name, blocks, original, fixed = _randomisation_setup(model, images, target_layer, targets, blocks,
                                                               method, batch_size)
    out = [original]

    def keep(step: int, block: str, work: nn.Module) -> None:
        if step > 0:  # step 0 is the original model's maps, already computed
            out.append(compute_cams(work, images, work.get_submodule(layer_name), fixed, method, batch_size))

    _randomise_steps(model, blocks, "cascading", seed, keep)
    return ["none", *blocks], np.stack(out)


# --------------------------------------------------------------------------- faithfulness
def faithfulness(
    model: nn.Module,
    images,
    cams,
    targets=None,
    *,
    removal: Sequence[int] = (20, 40, 60, 80),
    batch_size: int = 32,
    seed: int = 0,
) -> pd.DataFrame:
    """Does the map point at what the model uses? Perturbation metrics of pytorch-grad-cam.

    All scores are changes of the target class's softmax probability, ``p(perturbed) − p(image)``,
    in [-1, 1]:

    * ``morf_<r>``: ROAD, most relevant first (``pytorch_grad_cam.metrics.road.
      ROADMostRelevantFirst(percentile=100 − r)``): the ``r`` % of pixels where the map is
      highest are replaced by noisy linear imputation (Rong et al. 2022). Faithful maps give a
      large drop (very negative). ``road_morf`` is the mean over ``removal``.
    * ``lerf_<r>``: ROAD, least relevant first (``ROADLeastRelevantFirst(percentile=100 − r)``):
      the ``r`` % of pixels where the map is *lowest* are replaced; faithful maps give a small
      drop. ``road_lerf`` is the mean over ``removal``.
    * ``road_combined`` = (road_lerf − road_morf) / 2: the formula of ``ROADCombined`` (higher =
      more faithful; ≈ 0 for a map that carries no information about the model).
    * ``confidence_change``: ``CamMultImageConfidenceChange`` – the change when the (normalised)
      image is multiplied by its map; near 0 = the map alone keeps the evidence.

    The original probability is computed once and each perturbed batch once (the library's
    averaging classes would recompute the original for every threshold). Cost: ROAD solves a
    sparse linear system per image and level on the CPU, ≈ 0.1 s per image and level at 64 px
    and ≈ 0.8 s at 128 px (measured on one busy core) – score tens of images, not thousands.

    Args:
        model: classifier (ImageNet-normalised input → logits).
        images: ``uint8 [N, 3, R, R]`` (or normalised float, see :func:`compute_cams`).
        cams: ``float [N, R, R]`` in [0, 1] (from :func:`compute_cams`).
        targets: classes to score (``None``: the model's predictions; an int; N ints).
        removal: percentages of pixels removed (pytorch-grad-cam's percentile = 100 − r).
        seed: seeds the imputation noise.

    Returns:
        DataFrame, one row per image: ``image``, ``target``, ``p_target`` (probability of the
        target on the original image), ``morf_<r>``/``lerf_<r>`` per removal level,
        ``road_morf``, ``road_lerf``, ``road_combined``, ``confidence_change``.
    """
    x_all, cams, targets, removal = _faithfulness_inputs(images, cams, targets, removal)
    metrics = _perturbation_metrics(removal)
    dev, dtype = _model_device(model), _model_dtype(model)
    rows: list[dict] = []
    with _explaining(model), torch.no_grad(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for start in range(0, x_all.shape[0], batch_size):
            xb = _model_input(x_all[start:start + batch_size], dev, dtype)
            rows += _faithfulness_rows(model, xb, cams[start:start + batch_size], targets, start, metrics, removal)
    return pd.DataFrame(rows)


def _faithfulness_inputs(images, cams, targets, removal):
    """Checked inputs of :func:`faithfulness`: ``(images tensor, cams float32 [N, H, W],
    targets None | int | list of N ints, removal list of ints)``."""
    x_all = as_images(images)
    cams = np.asarray(as_numpy(cams), dtype=np.float32)
    n = x_all.shape[0]
    if cams.shape != (n,) + tuple(x_all.shape[2:]):
        raise ValueError(
            f"cams must be [N, H, W] = {(n,) + tuple(x_all.shape[2:])} to match the images; found "
            f"{cams.shape}. Fix: compute them with compute_cams(model, images)."
        )
    removal = [int(r) for r in removal]
    if not removal or any(not 0 < r < 100 for r in removal):
        raise ValueError(f"removal must be percentages strictly between 0 and 100; got {removal}.")
    if targets is not None and not isinstance(targets, (int, np.integer)):
        targets = [int(t) for t in (targets.tolist() if hasattr(targets, "tolist") else targets)]
        if len(targets) != n:
            raise ValueError(f"Got {len(targets)} targets for {n} images; pass one per image, one int, or None.")
    return x_all, cams, targets, removal


def _perturbation_metrics(removal: list[int]) -> dict:
    """``{column: pytorch_grad_cam.metrics object}``: ROAD MoRF/LeRF per removal level and the
    confidence change of the image multiplied by its map."""
    from pytorch_grad_cam.metrics.cam_mult_image import CamMultImageConfidenceChange
    from pytorch_grad_cam.metrics.road import ROADLeastRelevantFirst, ROADMostRelevantFirst

    metrics = {f"morf_{r}": ROADMostRelevantFirst(percentile=100 - r) for r in removal}
    metrics |= {f"lerf_{r}": ROADLeastRelevantFirst(percentile=100 - r) for r in removal}
    metrics["confidence_change"] = CamMultImageConfidenceChange()
    return metrics


def _faithfulness_rows(model, xb, cb, targets, start, metrics, removal) -> list[dict]:
    """The :func:`faithfulness` rows of one batch: images ``xb`` (model input), maps ``cb``,
    images ``start, start + 1, …`` of the whole set."""
    probs = torch.softmax(model(xb).float(), dim=1).cpu().numpy()
    if targets is None:
        tb = probs.argmax(1)
    elif isinstance(targets, (int, np.integer)):
        tb = np.full(len(xb), int(targets))
    else:
        tb = np.asarray(targets[start:start + len(xb)])
    p0 = probs[np.arange(len(xb)), tb]
    tg = _targets_for([int(t) for t in tb], len(xb), softmax=True)
    after = {k: np.asarray(m(xb, cb, tg, model, return_diff=False), dtype=np.float64).reshape(-1)
             for k, m in metrics.items()}
    rows = []
    for j in range(len(xb)):
        row = {"image": start + j, "target": int(tb[j]), "p_target": float(p0[j])}
        row |= {k: float(v[j] - p0[j]) for k, v in after.items() if k != "confidence_change"}
        row["road_morf"] = float(np.mean([row[f"morf_{r}"] for r in removal]))
        row["road_lerf"] = float(np.mean([row[f"lerf_{r}"] for r in removal]))
        row["road_combined"] = (row["road_lerf"] - row["road_morf"]) / 2
        row["confidence_change"] = float(after["confidence_change"][j] - p0[j])
        rows.append(row)
    return rows


# --------------------------------------------------------------------------- localisation
def as_numpy(x) -> np.ndarray:
    """A numpy array of ``x``: a torch tensor is detached and moved to the CPU; anything else
    goes through ``np.asarray``."""
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def localisation_score(
    cams, masks, *, mask_kind: str = "expert", tolerance_px: int = 0
) -> pd.DataFrame:
    """How much of each map lies on the lesion.

    Args:
        cams: ``float [N, H, W]``, non-negative (from :func:`compute_cams`).
        masks: ``bool [N, H, W]``, True on the lesion (same H, W as the maps).
        mask_kind: ``"expert"`` (annotated masks, :func:`load_masks`) or ``"approximate"``
            (:func:`approximate_lesion_mask`); copied into every row and ``df.attrs`` so that a
            table built on approximate masks says so.
        tolerance_px: pointing game tolerance: a hit counts if the maximum lies within this many
            pixels of the mask (Zhang et al. use 15 px at 224 px; default 0 = strictly inside).

    Returns:
        DataFrame, one row per image: ``image``, ``energy_inside`` (Σ cam·mask / Σ cam, in
        [0, 1]; NaN for an all-zero map), ``pointing_hit`` (1.0 if the map's maximum – the first
        pixel attaining it in row-major order – lies in the mask, else 0.0; NaN for a
        constant map, which points nowhere), ``mask_fraction`` (the mask's area share: the
        expected value of both scores for a map that ignores the image, i.e. chance level),
        ``mask_kind``.
    """
    if mask_kind not in MASK_KINDS:
        raise ValueError(f"mask_kind must be one of {MASK_KINDS}, got {mask_kind!r}.")
    c = as_numpy(cams).astype(np.float64)
    m = as_numpy(masks)
    if c.ndim == 2:
        c, m = c[None], m[None]
    if c.shape != m.shape or c.ndim != 3:
        raise ValueError(
            f"cams and masks must both be [N, H, W] with the same shape; found {c.shape} and {m.shape}. "
            "Fix: load the masks at the images' resolution (load_masks(..., resolution=R))."
        )
    if m.dtype != np.bool_:
        if not np.isin(np.unique(m), (0, 1)).all():
            raise ValueError("masks must be boolean (or 0/1); threshold them first, e.g. masks > 127.")
        m = m.astype(bool)
    if np.any(c < 0) or not np.all(np.isfinite(c)):
        raise ValueError("cams must be finite and non-negative (Grad-CAM maps after ReLU, in [0, 1]).")
    hit_zone = m
    if tolerance_px > 0:
        yy, xx = np.mgrid[-tolerance_px:tolerance_px + 1, -tolerance_px:tolerance_px + 1]
        disk = (yy**2 + xx**2) <= tolerance_px**2
        hit_zone = np.stack([ndi.binary_dilation(mi, structure=disk) for mi in m])
    rows = []
    for i in range(c.shape[0]):
        ci, mi = c[i], m[i]
        total = ci.sum()
        energy = float((ci * mi).sum() / total) if total > 0 else float("nan")
        if ci.max() > ci.min():
            r, col = np.unravel_index(int(np.argmax(ci)), ci.shape)
            hit = float(hit_zone[i][r, col])
        else:
            hit = float("nan")
        rows.append({"image": i, "energy_inside": energy, "pointing_hit": hit,
                     "mask_fraction": float(mi.mean()), "mask_kind": mask_kind})
    df = pd.DataFrame(rows)
    df.attrs["mask_kind"] = mask_kind
    return df


def summarise_localisation(df: pd.DataFrame, seed: int = 0) -> dict:
    """Means of a :func:`localisation_score` table with 95 % bootstrap intervals.

    Returns a dict: ``n_images``, ``mask_kind``; ``energy_inside`` and ``pointing_game``
    (accuracy) as ``{"mean", "ci_low", "ci_high", "n"}``; ``chance`` (mean mask fraction, the
    level an image-independent map reaches on both); ``energy_inside_minus_chance`` (mean of
    the per-image differences, with its interval). Intervals: :func:`skinlesion_utils.metrics.
    mean_ci` (95 % percentile bootstrap, ``seed``).
    """
    kind = df.attrs.get("mask_kind") or (str(df["mask_kind"].iloc[0]) if "mask_kind" in df and len(df) else "unknown")
    out: dict = {"n_images": int(len(df)), "mask_kind": kind}
    for col, key in (("energy_inside", "energy_inside"), ("pointing_hit", "pointing_game")):
        v = df[col].to_numpy(dtype=np.float64)
        mean, lo, hi = mean_ci(v, seed)
        out[key] = {"mean": mean, "ci_low": lo, "ci_high": hi, "n": int(np.isfinite(v).sum())}
    out["chance"] = float(df["mask_fraction"].mean()) if len(df) else float("nan")
    d = (df["energy_inside"] - df["mask_fraction"]).to_numpy(dtype=np.float64)
    mean, lo, hi = mean_ci(d, seed)
    out["energy_inside_minus_chance"] = {"mean": mean, "ci_low": lo, "ci_high": hi, "n": int(np.isfinite(d).sum())}
    return out


def centre_prior(size: int, sigma: float = 0.25) -> np.ndarray:
    """A map that ignores the image and always favours the centre: a Gaussian of standard
    deviation ``sigma`` × side, ``float32 [size, size]`` in [0, 1] (peak 1 at the centre).
    Dermoscopy images are framed on the lesion, so this is the baseline a lesion-localising map
    must beat, not the area share alone."""
    c = (size - 1) / 2
    yy, xx = np.mgrid[:size, :size]
    g = np.exp(-((yy - c) ** 2 + (xx - c) ** 2) / (2 * (sigma * size) ** 2))
    return (g / g.max()).astype(np.float32)


# --------------------------------------------------------------------------- masks
_MASK_SUFFIXES = ("", "_segmentation", "_Segmentation", "_mask", "_Mask", "-mask", "_seg", "_lesion")


def _image_files(folder: Path, recursive: bool = True) -> list[Path]:
    """Image files (by ending, hidden files left out) in ``folder``, sorted."""
    it = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(p for p in it if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith("."))


def _decode_mask(path: Path, resolution: int) -> np.ndarray:
    """One mask file → ``bool [R, R]`` (grey, nearest-neighbour resize, > 127)."""
    try:
        with Image.open(path) as im:
            im.load()
            a = np.asarray(im.convert("L").resize((resolution, resolution), Image.NEAREST))
    except OSError as exc:
        raise DataError(f"Cannot read mask {path}: {exc}. Fix: re-export it as a PNG.") from exc
    return a > 127


def load_masks(folder: str | Path, ids: Sequence[str], resolution: int) -> np.ndarray:
    """Binary lesion masks for the images ``ids``, matched by file stem.

    For each id (``"test/benign/12.jpg"``, ``"ISIC_0000000.jpg"`` or a bare stem) the mask is
    ``<folder>/<same relative path>.<any image ending>`` if that exists, else the one file in
    ``folder`` (searched recursively) whose stem is the id's stem, optionally followed by
    ``_segmentation`` (the ISIC challenges' naming), ``_mask``, ``-mask``, ``_seg`` or ``_lesion``.
    Masks are read as grey, resized to ``resolution × resolution`` with nearest-neighbour
    interpolation (squash, like :func:`skinlesion_utils.data.decode_image`) and thresholded at 128.

    Returns:
        ``bool [N, resolution, resolution]``, True on the lesion.

    Raises:
        DataError: a missing folder, images without a mask (lists them), or a stem that matches
            several mask files.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"Mask folder {folder} does not exist. Fix: check the path (--masks).")
    files = _image_files(folder)
    by_rel = {p.relative_to(folder).with_suffix("").as_posix(): p for p in files}
    by_stem: dict[str, list[Path]] = {}
    for p in files:
        by_stem.setdefault(p.stem, []).append(p)
    found: list[Path] = []
    missing: list[str] = []
    for ident in ids:
        rel = Path(str(ident)).with_suffix("").as_posix() if Path(str(ident)).suffix else str(ident)
        if rel in by_rel:
            found.append(by_rel[rel])
            continue
        stem = Path(rel).name
        cands = [p for s in _MASK_SUFFIXES for p in by_stem.get(stem + s, [])]
        if len(cands) == 1:
            found.append(cands[0])
        elif not cands:
            missing.append(str(ident))
        else:
            raise DataError(
                f"Image {ident!r} matches {len(cands)} mask files: {', '.join(str(c) for c in cands[:4])}. "
                "Fix: keep one mask per image stem, or lay the mask folder out like the image folder "
                "(same relative paths)."
            )
    if missing:
        raise DataError(
            f"{len(missing)} of {len(ids)} images have no mask in {folder}: {', '.join(missing[:5])}"
            f"{' …' if len(missing) > 5 else ''}. A mask is matched by file stem (12.jpg ↔ 12.png or "
            "12_segmentation.png) or by the same relative path. Fix: add the masks, score only the "
            "images that have one, or leave out the masks to use approximate masks "
            "(approximate_lesion_mask; labelled 'approximate')."
        )
    if not found:
        return np.zeros((0, resolution, resolution), dtype=bool)
    return np.stack([_decode_mask(p, resolution) for p in found])


def approximate_lesion_mask(image) -> np.ndarray:
    """An **approximate** lesion mask by classical segmentation, for images without expert masks.

    ``image: uint8 [3, H, W]`` (or ``[H, W, 3]``) RGB → ``bool [H, W]``.

    1. The dark field of view of a dermatoscope (near-black pixels, < 25 % of the 95th
       percentile of brightness, connected to the image border) is set aside.
    2. Darkness = 255 − CIE L* (lightness), smoothed by a Gaussian of ~3 % of the image side.
    3. Otsu's threshold on the darkness inside the field of view: darker pixels are lesion
       candidates.
    4. Opening then closing with a disk of ~2 % of the side removes hairs and specks and
       bridges small gaps.
    5. Of the connected components the one with the largest centre-weighted area (Gaussian
       weight, σ = 20 % of the side, around the image centre), discounted by
       ``exp(−8 · share of the image frame it touches)``, is kept (a lesion that fills the frame
       is still kept when it is the only candidate; skin shading along an edge loses to a
       central lesion); its holes are filled.

    Checked by eye on 40 images of ``isic_balanced`` (at 64, 128 and 224 px) and 24 of the
    external sample: it outlines typical dermoscopy lesions (one lesion, darker than the skin,
    roughly central, with or without the dark ring of the dermatoscope) well; it fails on
    lesions barely darker than the skin (it then follows skin shading), cuts off blue-grey or
    pale parts of a lesion, merges satellite spots, and is meaningless on clinical
    (non-dermoscopic) photos. An empty mask is returned if nothing is darker than the skin.
    """
    import cv2

    a = as_numpy(image)
    if a.ndim == 3 and a.shape[0] == 3 and a.shape[-1] != 3:
        a = a.transpose(1, 2, 0)
    if a.ndim != 3 or a.shape[-1] != 3 or a.dtype != np.uint8:
        raise ValueError(
            f"approximate_lesion_mask expects one uint8 RGB image [3, H, W] or [H, W, 3]; found "
            f"{a.dtype} {a.shape}. Fix: pass store.images[i]."
        )
    a = np.ascontiguousarray(a)
    h, w = a.shape[:2]
    side = min(h, w)
    lum = a.astype(np.float32).mean(axis=2)
    dark = lum < 0.25 * np.percentile(lum, 95)
    lab, _ = ndi.label(dark)
    border = np.unique(np.concatenate([lab[0], lab[-1], lab[:, 0], lab[:, -1]]))
    outside = np.isin(lab, border[border > 0])
    darkness = 255.0 - cv2.cvtColor(a, cv2.COLOR_RGB2LAB)[..., 0].astype(np.float32)
    k = max(3, int(round(side * 0.03)) | 1)
    darkness = cv2.GaussianBlur(darkness, (k, k), 0)
    inside = darkness[~outside]
    if inside.size == 0 or np.ptp(inside) < 1:
        return np.zeros((h, w), dtype=bool)
    t, _ = cv2.threshold(np.clip(inside, 0, 255).astype(np.uint8).reshape(-1, 1), 0, 255,
                         cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    mask = (darkness > t) & ~outside
    r = max(1, int(round(side * 0.02)))
    disk = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
    mask = cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_OPEN, disk)
    mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, disk).astype(bool)
    lab, n = ndi.label(mask)
    if n == 0:
        return mask
    yy, xx = np.mgrid[:h, :w]
    weight = np.exp(-(((yy - (h - 1) / 2) / h) ** 2 + ((xx - (w - 1) / 2) / w) ** 2) / (2 * 0.2**2))
    index = np.arange(1, n + 1)
    frame = np.zeros((h, w), dtype=bool)
    frame[0] = frame[-1] = frame[:, 0] = frame[:, -1] = True
    touch = ndi.sum(frame, lab, index=index) / frame.sum()  # share of the image frame it covers
    scores = ndi.sum(weight, lab, index=index) * np.exp(-8.0 * touch)
    return ndi.binary_fill_holes(lab == 1 + int(np.argmax(scores)))


def approximate_lesion_masks(images) -> np.ndarray:
    """:func:`approximate_lesion_mask` of every image: ``uint8 [N, 3, H, W]`` → ``bool [N, H, W]``
    (**approximate** masks: pass ``mask_kind="approximate"`` to :func:`localisation_score`)."""
    a = as_numpy(images)
    return np.stack([approximate_lesion_mask(im) for im in a]) if len(a) else np.zeros((0,) + a.shape[2:], bool)


# --------------------------------------------------------------------------- command line
def _load_images(folder: Path, resolution: int) -> tuple[torch.Tensor, list[str], list[int]]:
    """uint8 [N,3,R,R], ids, labels (-1 when the folder is flat) from a class or flat folder."""
    if not folder.is_dir():
        raise DataError(f"Image folder {folder} does not exist. Fix: check the path (--images).")
    if any((folder / c).is_dir() for c in CLASSES):
        store = ImageTensorStore.from_folder(folder, resolution=resolution, progress=False)
        return store.images, list(store.ids), store.labels.tolist()
    files = _image_files(folder, recursive=False)
    if not files:
        raise DataError(
            f"No images in {folder}: expected image files directly in it (flat) or sub-folders "
            "benign/ and malignant/. Fix: point --images at such a folder."
        )
    imgs = torch.from_numpy(np.stack([decode_image(p, resolution) for p in files]))
    return imgs, [p.name for p in files], [-1] * len(files)


def _json_clean(x):
    """``x`` with numpy scalars as Python numbers, paths as strings and non-finite floats as
    ``None`` (JSON has no NaN), recursively through dicts, lists and tuples."""
    if isinstance(x, dict):
        return {str(k): _json_clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_json_clean(v) for v in x]
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        return None if not math.isfinite(float(x)) else float(x)
    if isinstance(x, Path):
        return str(x)
    return x


def cam_score(
    checkpoint: str | Path,
    images: str | Path,
    masks: str | Path | None = None,
    *,
    image_size: int | None = None,
    method: str = "gradcam",
    layer: str | None = None,
    batch_size: int = 32,
    limit: int | None = None,
    with_faithfulness: bool = False,
    device: str = "auto",
    seed: int = 0,
) -> dict:
    """Localisation score of a checkpoint's Grad-CAMs on a folder of images (``cam-score``).

    Args:
        checkpoint: a ``last.pt`` / ``best.pt`` of :func:`skinlesion_utils.train.fit`.
        images: a ``{benign,malignant}/*`` folder or a flat folder of images.
        masks: folder of expert masks (:func:`load_masks`); ``None`` → **approximate** masks
            (:func:`approximate_lesion_mask`), labelled so in the result.
        image_size: side R the images are decoded at; default the checkpoint's training size.
        method, layer: CAM method and target layer name (default :func:`cam_target_layer`).
        limit: score only the first N images (sorted by id).
        with_faithfulness: add ROAD and the confidence change per image (slower).

    Returns:
        ``{"checkpoint", "model", "images", "masks", "mask_kind", "image_size", "method",
        "target_layer", "cam_map_size", "summary", "per_image": [...]}``; per image: ``id``,
        ``label`` (-1 for a flat folder), ``target`` (predicted class explained),
        ``p_malignant``, ``energy_inside``, ``pointing_hit``, ``mask_fraction``, ``mask_kind``
        (+ the :func:`faithfulness` columns).
    """
    model, ckpt = load_checkpoint(checkpoint)
    spec = ckpt.get("spec") or {}
    size = int(image_size or spec.get("image_size") or 224)
    model.to(resolve_device(device))
    imgs, ids, labels = _load_images(Path(images), size)
    if limit is not None:
        imgs, ids, labels = imgs[:limit], ids[:limit], labels[:limit]
    target_layer = cam_target_layer(model, layer)
    cams, logits = compute_cams(model, imgs, target_layer, None, method, batch_size, return_logits=True)
    loc, kind, probs = _score_table(cams, logits, imgs, ids, labels, masks, size)
    summary = summarise_localisation(loc, seed=seed)
    if with_faithfulness:
        _add_faithfulness(loc, summary, model, imgs, cams, probs.argmax(1), batch_size, seed)
    per_image = loc.drop(columns=["image"]).to_dict(orient="records")
    return {
        "command": "cam-score",
        "checkpoint": str(checkpoint),
        "model": {"name": spec.get("name"), "kwargs": spec.get("kwargs"), "trained_image_size": spec.get("image_size")},
        "images": str(images),
        "masks": str(masks) if masks is not None else None,
        "mask_kind": kind,
        "mask_note": ("expert masks matched by file stem" if kind == "expert" else
                      "APPROXIMATE masks from classical segmentation (Otsu on CIE L*), not expert "
                      "annotations: treat the scores as rough"),
        "image_size": size,
        "method": method,
        "target_layer": _module_name(model, target_layer),
        "cam_map_size": list(cam_map_size(model, size, target_layer)),
        "summary": summary,
        "per_image": per_image,
    }


def _score_table(cams, logits, imgs, ids, labels, masks, size: int) -> tuple[pd.DataFrame, str, np.ndarray]:
    """The per-image table of :func:`cam_score`: :func:`localisation_score` against the expert
    masks in ``masks`` (or approximate masks for ``None``), with ``id``, ``label``, ``target``
    (the predicted class) and ``p_malignant`` first. Returns ``(table, mask kind, softmax
    probabilities [N, C])``."""
    if masks is not None:
        mask_arr, kind = load_masks(masks, ids, size), "expert"
    else:
        mask_arr, kind = approximate_lesion_masks(imgs), "approximate"
    loc = localisation_score(cams, mask_arr, mask_kind=kind)
    probs = torch.softmax(torch.from_numpy(logits), dim=1).numpy()
    loc.insert(0, "id", ids)
    loc.insert(1, "label", labels)
    loc.insert(2, "target", probs.argmax(1))
    loc.insert(3, "p_malignant", probs[:, 1] if probs.shape[1] > 1 else probs[:, 0])
    return loc, kind, probs


def _add_faithfulness(loc: pd.DataFrame, summary: dict, model, imgs, cams, targets, batch_size: int,
                      seed: int) -> None:
    """Add the :func:`faithfulness` summary columns to ``cam_score``'s table and summary (in place)."""
    fa = faithfulness(model, imgs, cams, targets, batch_size=batch_size, seed=seed)
    for col in ("road_morf", "road_lerf", "road_combined", "confidence_change"):
        loc[col] = fa[col].to_numpy()
        summary[col] = dict(zip(("mean", "ci_low", "ci_high"), mean_ci(fa[col].to_numpy(), seed)))


def add_cam_score_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``cam-score`` on an ``argparse`` sub-parsers object; sets ``func``."""
    p = subparsers.add_parser(
        "cam-score",
        help="Grad-CAM localisation score of a checkpoint against lesion masks",
        description="Grad-CAM maps of a checkpoint on a folder of images, scored against lesion "
        "masks: energy inside the mask and pointing game, per image and on average. Without "
        "--masks, APPROXIMATE masks from classical segmentation are used (labelled so).",
    )
    p.add_argument("--checkpoint", required=True, type=Path, help="last.pt / best.pt written by fit")
    p.add_argument("--images", required=True, type=Path, help="{benign,malignant}/* folder or a flat folder of images")
    p.add_argument("--masks", type=Path, default=None, help="folder of binary masks matched by file stem")
    p.add_argument("--out", required=True, type=Path, help="JSON file to write (atomically)")
    p.add_argument("--image-size", type=int, default=None, help="default: the checkpoint's training size")
    p.add_argument("--method", default="gradcam", choices=METHODS)
    p.add_argument("--layer", default=None, help="dotted target layer name (default: per architecture)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--limit", type=int, default=None, help="score only the first N images")
    p.add_argument("--faithfulness", action="store_true", help="add ROAD and confidence change (slow: seconds per image at 128 px)")
    p.add_argument("--device", default="auto")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run_cam_score)
    return p


def run_cam_score(args) -> int:
    """Run ``cam-score`` for parsed ``args``: score, write ``args.out`` (JSON, indent 2, NaN as
    ``null``) and print the summary; returns the exit status 0."""
    result = cam_score(
        args.checkpoint, args.images, args.masks, image_size=args.image_size, method=args.method,
        layer=args.layer, batch_size=args.batch_size, limit=args.limit,
        with_faithfulness=args.faithfulness, device=args.device, seed=args.seed,
    )
    write_json(Path(args.out), _json_clean(result), indent=2, allow_nan=False)
    s = result["summary"]
    e, pg = s["energy_inside"], s["pointing_game"]
    print(f"{s['n_images']} images, {result['mask_kind']} masks, {result['method']} at "
          f"{result['target_layer']} ({result['cam_map_size'][0]}×{result['cam_map_size'][1]} map at "
          f"{result['image_size']} px)")
    print(f"energy inside mask {e['mean']:.3f} [{e['ci_low']:.3f}, {e['ci_high']:.3f}]  "
          f"pointing game {pg['mean']:.3f} [{pg['ci_low']:.3f}, {pg['ci_high']:.3f}]  "
          f"chance {s['chance']:.3f}")
    print(f"wrote {args.out}")
    return 0


