"""Grad-CAM and its checks: target layers, batched CAMs, the randomisation sanity check and
faithfulness (ROAD, confidence change).

Taught in chapter 07 (``chapters/07_gradcam``); whether the maps lie on the lesion (lesion
masks, energy inside the mask, the pointing game, the ``cam-score`` command) is
:mod:`skinlesion_utils.localisation`.

Everything that computes a class-activation map goes through **pytorch-grad-cam**
(``pip install grad-cam``); this module only chooses the layer, batches the images, releases
the hooks, and checks the maps.

* :func:`cam_target_layer` – the layer each architecture of :func:`~skinlesion_utils.models.
  build_model` is explained at (ResNets: ``layer4[-1]``; ASFF-ResNet50: ``cam_layer``, the
  fused map; …), or any sub-module by its dotted name (:func:`target_layer_name` the reverse).
  :func:`cam_map_size` – that layer's spatial size at a given input size (ResNet-50's
  ``layer4`` is 2 × 2 at 64 px).
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

What only chapter 07's analysis needs (tables of several models, paired comparisons, the
image-independence controls, artifact marks, example selection) is in
:mod:`skinlesion_utils.studies.ch07_gradcam`.
"""
from __future__ import annotations

import contextlib
import copy
from typing import Callable, Sequence

import numpy as np
import pandas as pd
import torch
from scipy import ndimage as ndi
from scipy.stats import spearmanr
from torch import nn

from .errors import ConfigError
from .augment import normalise
from .models import LeNet5, unwrap_model

__all__ = [
    "METHODS",
    "cam_target_layer",
    "target_layer_name",
    "cam_map_size",
    "as_images",
    "as_numpy",
    "compute_cams",
    "compute_cams_layers",
    "default_blocks",
    "stage_blocks",
    "randomisation_check",
    "randomisation_maps",
    "ssim",
    "spearman",
    "faithfulness",
]


def _methods() -> dict[str, type]:
    """``{method name: pytorch-grad-cam class}`` (the library is imported on first use)."""
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


def _method_class(method: str) -> type:
    """The pytorch-grad-cam class of ``method`` (one of :data:`METHODS`, any case)."""
    methods = _methods()
    key = method.lower()
    if key not in methods:
        raise ConfigError(f"Unknown method {method!r}; valid: {', '.join(METHODS)}.")
    return methods[key]


# --------------------------------------------------------------------------- target layers
def _last_of(module: nn.Module, kind: type | tuple[type, ...]) -> nn.Module:
    found = [m for m in module.modules() if isinstance(m, kind)]
    if not found:
        raise ConfigError(f"{type(module).__name__} has no {kind} sub-module.")
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
    inner = unwrap_model(model)
    if name is not None:
        try:
            return inner.get_submodule(name)
        except AttributeError:
            tops = ", ".join(n for n, _ in inner.named_children())
            raise ConfigError(
                f"{type(inner).__name__} has no sub-module {name!r}. Expected a dotted path such as "
                f"'layer4.2' or 'features.28'; its top-level modules are: {tops}. Fix: pick one of "
                "them (print(model) shows the full tree), or name=None for the default layer."
            ) from None
    rule = _rule_for(inner)
    if rule is None:
        raise ConfigError(
            f"cam_target_layer does not know the architecture {type(inner).__module__}."
            f"{type(inner).__name__}. Known: {_KNOWN}. Fix: pass the layer yourself "
            "(compute_cams(..., target_layer=model.<last conv block>)) or its dotted name "
            "(cam_target_layer(model, name='...')), or give the model a `cam_layer` attribute."
        )
    return rule[1](inner)


def target_layer_name(model: nn.Module, layer: nn.Module) -> str:
    """The dotted name of ``layer`` in ``model`` (``"layer4.2"``; wrappers looked through).

    Raises:
        ValueError: ``layer`` is not a sub-module of ``model``.
    """
    for n, m in unwrap_model(model).named_modules():
        if m is layer:
            return n
    raise ConfigError(
        f"target_layer ({type(layer).__name__}) is not a sub-module of the model "
        f"({type(unwrap_model(model)).__name__}). Fix: take it from this model, e.g. "
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
        raise ConfigError(f"The target layer's output is not a [B, C, h, w] map: {shapes[:1]}.")
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
        raise ConfigError(
            f"images must be [N, 3, H, W] (uint8 RGB, like ImageTensorStore.images); found shape "
            f"{tuple(x.shape)}. Fix: for H×W×3 arrays use np.transpose(a, (0, 3, 1, 2))."
        )
    if x.dtype == torch.uint8:
        return x
    if not x.is_floating_point():
        raise ConfigError(f"images must be uint8 or float; found {x.dtype}.")
    lo, hi = float(x.min()), float(x.max())
    if hi > 8.0 or (lo >= 0.0 and hi <= 1.0):
        raise ConfigError(
            f"Float images are taken as the model's input, already ImageNet-normalised (values "
            f"roughly -2.1..2.6); these range {lo:.3g}..{hi:.3g}, which looks like raw pixel values. "
            "Fix: pass the uint8 images (ImageTensorStore.images) or "
            "skinlesion_utils.augment.normalise(x) of 0..255 floats."
        )
    return x


def as_numpy(x) -> np.ndarray:
    """A numpy array of ``x``: a torch tensor is detached and moved to the CPU; anything else
    goes through ``np.asarray``."""
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def _model_input(batch: torch.Tensor, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """One batch of :func:`as_images` → the model's input on ``device`` (uint8 → normalised
    with :func:`skinlesion_utils.augment.normalise`)."""
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
        raise ConfigError(f"Got {len(targets)} targets for {n} images; pass one per image, one int, or None.")
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
            :func:`skinlesion_utils.augment.normalise`), or ``float32 [N, 3, R, R]`` that is
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
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}.")
    x_all = as_images(images)
    layer = target_layer if target_layer is not None else cam_target_layer(model)
    target_layer_name(model, layer)  # fails early, with a clear message, for a foreign layer
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
        raise ConfigError("layers is empty; pass e.g. {'default': None, 'layer3': 'layer3'}.")
    resolved: dict[str, nn.Module] = {}
    for name, spec in layers.items():
        layer = spec if isinstance(spec, nn.Module) else cam_target_layer(model, spec)
        target_layer_name(model, layer)
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
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}.")
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
        raise ConfigError(f"ssim needs two maps of the same [H, W] shape; got {a.shape} and {b.shape}.")
    sigma, truncate = 1.5, 3.5
    pad = int(truncate * sigma + 0.5)
    if min(a.shape) <= 2 * pad:
        raise ConfigError(f"ssim needs maps larger than {2 * pad + 1} px per side; got {a.shape}.")

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
    inner = unwrap_model(model)
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
    inner = unwrap_model(model)
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
    inner = unwrap_model(model)
    blocks = list(blocks) if blocks is not None else default_blocks(model)
    for b in blocks:
        try:
            inner.get_submodule(b)
        except AttributeError:
            raise ConfigError(
                f"No block {b!r} in {type(inner).__name__}; default_blocks(model) lists valid names."
            ) from None
    return blocks


def _randomisation_setup(model, images, target_layer, targets, blocks, method, batch_size):
    """``(layer name, checked blocks, original maps, fixed targets)`` of a randomisation: the
    targets are ``targets`` or, for ``None``, the original model's predicted classes."""
    layer = target_layer if target_layer is not None else cam_target_layer(model)
    layer_name = target_layer_name(model, layer)
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
    inner = unwrap_model(model)
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
        raise ConfigError(f"mode must be 'cascading' or 'independent', got {mode!r}.")
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
        raise ConfigError(
            f"cams must be [N, H, W] = {(n,) + tuple(x_all.shape[2:])} to match the images; found "
            f"{cams.shape}. Fix: compute them with compute_cams(model, images)."
        )
    removal = [int(r) for r in removal]
    if not removal or any(not 0 < r < 100 for r in removal):
        raise ConfigError(f"removal must be percentages strictly between 0 and 100; got {removal}.")
    if targets is not None and not isinstance(targets, (int, np.integer)):
        targets = [int(t) for t in (targets.tolist() if hasattr(targets, "tolist") else targets)]
        if len(targets) != n:
            raise ConfigError(f"Got {len(targets)} targets for {n} images; pass one per image, one int, or None.")
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
