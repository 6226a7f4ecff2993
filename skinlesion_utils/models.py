"""Models: ASFF-ResNet50, the baseline zoo of the paper and model summaries (taught in
chapter 03, ``chapters/03_asff_derivation``; the zoo is compared in chapter 02,
``chapters/02_baselines``).

What this module owns
---------------------
* :class:`ASFFResNet50` – a torchvision ResNet-50 whose ``layer3`` map (1024 × 14 × 14 at
  224 px) and ``layer4`` map (2048 × 7 × 7) are merged by one of the six fusion modules of
  :mod:`skinlesion_utils.fusion` (``fusion=``, one of :data:`~skinlesion_utils.fusion.FUSIONS`),
  followed by the head of the paper's released code (:class:`ClassifierHead`: GAP → FC + ReLU →
  FC). The weights of the last forward pass are kept, detached, in
  ``model.last_fusion_weights``; ``model(x, return_weights=True)`` returns them with their graph.
* The baseline zoo of the paper (LeNet-5 … Xception) from torchvision / timm with a new
  classifier for ``num_classes``: every name is a builder registered with
  :func:`register_model` (as torchvision registers its builders); :func:`build_model` builds one
  by name and :func:`list_models` lists them. ImageNet weights on request, with one clear error
  when they cannot be downloaded (the offline message says how to fix it).
* :func:`resnet50_keras_v1` – ResNet-50 as ``keras.applications.ResNet50`` builds it (the v1
  design the paper's released code trains: stride in the first 1 × 1 convolution, convolutions
  with biases, Keras's BatchNorm settings), registered as ``resnet50_keras_v1``: a *reference*
  model, built by :func:`build_model` but outside the paper's comparison, so
  :func:`list_models` leaves it out (chapter 03 measures it against torchvision's v1.5).
* :func:`model_summary` / :func:`count_parameters` / :func:`count_flops` /
  :func:`min_input_size` – parameters, FLOPs (via :class:`torch.utils.flop_counter.FlopCounterMode`)
  and the smallest square input a model accepts; :func:`eval_no_grad` runs a block in eval mode
  without gradients.

Details taken from the released code (and switchable here): layer4 is resized bilinearly and
projected by a 1 × 1 convolution with bias, without batch norm (``upsample="bilinear"``,
``align_bn=False``; see :class:`~skinlesion_utils.fusion.LevelAlign`); the head is
GAP → Dense(2048, ReLU) → Dense(num_classes, softmax). The models here return logits (the
softmax lives in the loss).
"""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor, nn

from .errors import ConfigError
from .fusion import FUSION_CLASSES, FUSIONS

__all__ = [
    "BASELINES",
    "unwrap_model",
    "ClassifierHead",
    "ASFFResNet50",
    "LeNet5",
    "KERAS_BN_EPS",
    "KERAS_BN_MOMENTUM",
    "resnet50_keras_v1",
    "ModelEntry",
    "register_model",
    "build_model",
    "list_models",
    "model_summary",
    "min_input_size",
    "count_parameters",
    "count_flops",
    "flops_by_module",
    "layer_shapes",
    "build_on_meta",
    "eval_no_grad",
]


class ClassifierHead(nn.Module):
    """The head of the paper's code: GAP → FC(hidden) + ReLU → Dropout → FC(num_classes).

    ``x: float32 [B, C, H, W]`` → logits ``float32 [B, num_classes]``. With ``hidden=0`` (or
    ``None``) the head is GAP → Dropout → FC(num_classes), as in torchvision's ResNet.
    """

    def __init__(
        self, in_channels: int, num_classes: int, hidden: int | None = 2048, dropout: float = 0.0
    ) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        layers: list[nn.Module] = [nn.Flatten(1)]
        if hidden:
            layers += [nn.Linear(in_channels, hidden), nn.ReLU(inplace=True)]
            in_channels = hidden
        layers += [nn.Dropout(dropout), nn.Linear(in_channels, num_classes)]
        self.mlp = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.mlp(self.pool(x))


# --------------------------------------------------------------------------------------------
# ASFF-ResNet50
# --------------------------------------------------------------------------------------------
class ASFFResNet50(nn.Module):
    """ResNet-50 with layer3/layer4 fusion and the paper's head.

    ``x: float32 [B, 3, S, S]`` (ImageNet-normalised) → logits ``float32 [B, num_classes]``.
    At S = 224: layer3 → [B, 1024, 14, 14], layer4 → [B, 2048, 7, 7], fused map →
    [B, C_f, 14, 14] (``none``: [B, 2048, 7, 7]; ``concat``: C_f = 2048; else C_f = 1024).

    The body's modules keep torchvision's names (``conv1``, ``bn1``, ``layer1`` … ``layer4``),
    so ``torchvision.models.resnet50`` state dicts load into it.

    Args:
        num_classes: classifier outputs.
        fusion: one of :data:`~skinlesion_utils.fusion.FUSIONS`.
        pretrained: ``False``, ``True`` (torchvision's default ImageNet weights for the body) or
            the name of a ``ResNet50_Weights`` member, e.g. ``"IMAGENET1K_V1"``.
        head_hidden: width of the head's hidden FC (2048 in the released code; 0 = none).
        dropout: dropout before the last FC.
        upsample: interpolation of layer4 onto layer3's grid (released code: ``"bilinear"``).
        align_bn: BatchNorm after the 1 × 1 projection of layer4 (released code: none).
        project_first: project layer4 before resizing it (cheaper, same output without BN).
        fusion_hidden: width of FC1 in ``asff_text`` / ``asff_code`` (released code: 1024).
        spatial_compress: compressed channels in ``asff_spatial`` (original ASFF: 16).
        detach_weights: treat the fusion weights as constants in the backward pass.

    Attributes:
        fusion: the fusion module (``fusion(low, high) -> (fused, weights)``).
        cam_layer: an ``nn.Identity`` whose output is the final spatial map (the fused map, or
            layer4 for ``none``) – hook it for Grad-CAM.
        last_fusion_weights: the detached weights of the last forward pass, ``None`` for
            ``none``/``sum``/``concat``; shapes: ``asff_text`` [B, 2], ``asff_code`` [B, 1024],
            ``asff_spatial`` [B, 2, H, W].
    """

    def __init__(
        self,
        num_classes: int = 2,
        fusion: str = "asff_text",
        pretrained: bool | str = False,
        head_hidden: int | None = 2048,
        dropout: float = 0.0,
        *,
        upsample: str = "bilinear",
        align_bn: bool = False,
        project_first: bool = False,
        fusion_hidden: int = 1024,
        spatial_compress: int = 16,
        detach_weights: bool = False,
    ) -> None:
        super().__init__()
        if fusion not in FUSION_CLASSES:
            raise ConfigError(
                f"Unknown fusion {fusion!r}. Fix: use one of {', '.join(FUSIONS)} "
                "(asff_text = paper text/eq. 7, asff_code = released code, "
                "asff_spatial = original ASFF)."
            )
        body = _torchvision_pretrained("resnet50", pretrained, "asff_resnet50")
        for name in ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4"):
            setattr(self, name, getattr(body, name))
        self.fusion_name = fusion
        kw: dict = {}
        if fusion != "none":
            kw = dict(upsample=upsample, bn=align_bn, project_first=project_first)
        if fusion in ("asff_text", "asff_code", "asff_spatial"):
            kw["detach_weights"] = detach_weights
        if fusion in ("asff_text", "asff_code"):
            kw["hidden"] = fusion_hidden
        if fusion == "asff_spatial":
            kw["compress"] = spatial_compress
        self.fusion = FUSION_CLASSES[fusion](1024, 2048, **kw)
        self.cam_layer = nn.Identity()
        self.head = ClassifierHead(self.fusion.out_channels, num_classes, head_hidden, dropout)
        self.last_fusion_weights: Tensor | None = None

    def forward_features(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        """``x [B, 3, S, S]`` → ``(fused map [B, C_f, H, W], weights or None)`` (see class doc)."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        low = self.layer3(self.layer2(self.layer1(x)))
        high = self.layer4(low)
        fused, weights = self.fusion(low, high)
        return self.cam_layer(fused), weights

    def forward(self, x: Tensor, return_weights: bool = False):
        """``x [B, 3, S, S]`` → logits ``[B, num_classes]``, or ``(logits, weights)`` when
        ``return_weights`` (weights keep their graph; ``None`` for non-adaptive fusions)."""
        fused, weights = self.forward_features(x)
        self.last_fusion_weights = None if weights is None else weights.detach()
        logits = self.head(fused)
        return (logits, weights) if return_weights else logits


# --------------------------------------------------------------------------------------------
# LeNet-5 (the only baseline built here)
# --------------------------------------------------------------------------------------------
class LeNet5(nn.Module):
    """LeNet-5 (LeCun et al. 1998) for RGB input of any size ≥ 16 px.

    conv 5 × 5 (6) → tanh → avg-pool 2 → conv 5 × 5 (16) → tanh → avg-pool 2 → adaptive avg-pool
    to 5 × 5 → FC 120 → tanh → FC 84 → tanh → FC num_classes. The adaptive pool replaces the
    fixed 32 × 32 input of the original, so 64 px and 224 px inputs both work.

    ``x: float32 [B, in_channels, S, S]`` → logits ``float32 [B, num_classes]``.
    """

    def __init__(self, num_classes: int = 2, in_channels: int = 3) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 6, 5), nn.Tanh(), nn.AvgPool2d(2),
            nn.Conv2d(6, 16, 5), nn.Tanh(), nn.AvgPool2d(2),
            nn.AdaptiveAvgPool2d(5),
        )  # fmt: skip
        self.classifier = nn.Sequential(
            nn.Flatten(1),
            nn.Linear(16 * 5 * 5, 120), nn.Tanh(),
            nn.Linear(120, 84), nn.Tanh(),
            nn.Linear(84, num_classes),
        )  # fmt: skip

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x))


# --------------------------------------------------------------------------------------------
# The model registry: every name of the paper's comparison is a registered builder
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ModelEntry:
    """One registered model.

    Attributes:
        builder: ``builder(num_classes, pretrained, head_hidden, **kw) -> nn.Module``, called by
            :func:`build_model` after its checks, inside its seeded RNG context.
        note: what the model is and where it comes from.
        gap_linear_head: the classifier is GAP → one Linear, so ``head_hidden`` may swap in the
            paper's GAP → FC(hidden) + ReLU → FC head.
        takes_head_hidden: ``head_hidden`` is accepted (every GAP → Linear model, and
            ``asff_resnet50``, for which it is the head's width).
        imagenet_weights: ImageNet weights exist (``pretrained=True`` is allowed).
        reference: a reference architecture outside the paper's comparison (e.g.
            ``resnet50_keras_v1``): :func:`build_model` builds it, :func:`list_models` lists it
            only with ``references=True``.
    """

    builder: Callable[..., nn.Module]
    note: str
    gap_linear_head: bool = False
    takes_head_hidden: bool = False
    imagenet_weights: bool = True
    reference: bool = False


_MODELS: dict[str, ModelEntry] = {}


def register_model(
    name: str,
    note: str,
    *,
    gap_linear_head: bool = False,
    takes_head_hidden: bool | None = None,
    imagenet_weights: bool = True,
    reference: bool = False,
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator registering a builder under ``name`` for :func:`build_model` (the torchvision way).

    The builder is called as ``builder(num_classes, pretrained, head_hidden, **kw)`` and returns
    an ``nn.Module`` mapping ``float32 [B, 3, S, S]`` to logits ``[B, num_classes]``. Names are
    listed by :func:`list_models` in registration order. ``takes_head_hidden`` defaults to
    ``gap_linear_head``; see :class:`ModelEntry` for the flags.

    Raises:
        ValueError: ``name`` is already registered.
    """

    def register(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _MODELS:
            raise ConfigError(f"A model named {name!r} is already registered.")
        takes = gap_linear_head if takes_head_hidden is None else takes_head_hidden
        _MODELS[name] = ModelEntry(builder, note, gap_linear_head, takes, imagenet_weights, reference)
        return builder

    return register


def unwrap_model(model: nn.Module) -> nn.Module:
    """The model inside a ``torch.compile`` / ``DataParallel`` / DDP wrapper (or the model itself)."""
    model = getattr(model, "_orig_mod", model)  # torch.compile
    if isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
        model = model.module
    return model


#: The paper's comparison models, in the order of its Table 2 (registered names; chapter 02 trains them).
BASELINES: tuple[str, ...] = (
    "lenet5", "alexnet", "vgg16", "resnet34", "resnet50", "resnet101", "mobilenet_v2",
    "squeezenet1_1", "densenet121", "xception", "googlenet",
)


def list_models(references: bool = False) -> list[str]:
    """The models of the paper's comparison, in its order (every name :func:`build_model` accepts
    when ``references=True``: the reference architectures such as ``resnet50_keras_v1`` last)."""
    return [n for n, e in _MODELS.items() if references or not e.reference]


def _get_submodule_parent(model: nn.Module, dotted: str) -> tuple[nn.Module, str]:
    *parents, last = dotted.split(".")
    parent = model
    for p in parents:
        parent = getattr(parent, p) if not p.isdigit() else parent[int(p)]
    return parent, last


def _set_child(parent: nn.Module, name: str, module: nn.Module) -> None:
    if name.isdigit():
        parent[int(name)] = module
    else:
        setattr(parent, name, module)


def _get_child(parent: nn.Module, name: str) -> nn.Module:
    return parent[int(name)] if name.isdigit() else getattr(parent, name)


def _replace_head(model: nn.Module, dotted: str, num_classes: int, head_hidden: int | None) -> None:
    """Swap the final classifier layer for a fresh one with ``num_classes`` outputs."""
    parent, name = _get_submodule_parent(model, dotted)
    old = _get_child(parent, name)
    if isinstance(old, nn.Conv2d):  # SqueezeNet: 1 × 1 conv classifier
        new: nn.Module = nn.Conv2d(old.in_channels, num_classes, kernel_size=1)
    elif head_hidden:
        new = nn.Sequential(
            nn.Linear(old.in_features, head_hidden), nn.ReLU(inplace=True),
            nn.Linear(head_hidden, num_classes),
        )  # fmt: skip
    else:
        new = nn.Linear(old.in_features, num_classes)
    _set_child(parent, name, new)
    if hasattr(model, "num_classes"):
        model.num_classes = num_classes


#: What a failed download/load of weights raises: URLError/HTTPError/socket errors and the
#: Hugging Face hub errors are OSErrors; a truncated or corrupt file gives RuntimeError/EOFError.
_DOWNLOAD_ERRORS = (OSError, RuntimeError, EOFError)


def _offline_error(model_name: str, weights_desc: str, url: str | None, exc: BaseException) -> RuntimeError:
    import torch.hub

    ckpt_dir = os.path.join(torch.hub.get_dir(), "checkpoints")
    fname = os.path.basename(url) if url else "<the weights file>"
    src = f" from {url}" if url else ""
    return RuntimeError(
        f"Could not load the ImageNet weights for {model_name!r} ({weights_desc}).\n"
        f"Cause: {type(exc).__name__}: {exc}\n"
        "Fix, one of:\n"
        "  1. connect to the internet once: the file is then cached and reused offline;\n"
        f"  2. download {fname}{src} on another machine and put it in "
        f"$TORCH_HOME/hub/checkpoints (here: {ckpt_dir});\n"
        f"  3. train from scratch: build_model({model_name!r}, pretrained=False), "
        "or export SKINLESION_PROFILE=ci (its profile has pretrained=False)."
    )


def _torchvision_pretrained(arch: str, pretrained: bool | str, model_name: str, **kw) -> nn.Module:
    """Build ``torchvision.models.<arch>`` with ImageNet weights (1000 classes), or without
    weights when ``pretrained`` is falsy. Any download/load failure → one clear RuntimeError."""
    import torchvision

    if not pretrained:
        return torchvision.models.get_model(arch, weights=None, **kw)
    enum = torchvision.models.get_model_weights(arch)
    tag = "DEFAULT" if pretrained is True else str(pretrained)
    try:
        weights = enum[tag]
    except KeyError:
        valid = ", ".join(["DEFAULT", *enum.__members__])
        raise ConfigError(
            f"{arch} has no weights named {tag!r}; valid: {valid} (or pretrained=True)."
        ) from None
    try:
        return torchvision.models.get_model(arch, weights=weights, **kw)
    except _DOWNLOAD_ERRORS as exc:
        raise _offline_error(model_name, f"torchvision {weights}", weights.url, exc) from exc


def _build_torchvision(arch: str, head: str, num_classes: int, pretrained, head_hidden, **kw) -> nn.Module:
    """``torchvision.models.<arch>`` with a ``num_classes`` classifier at ``head`` (dotted path)."""
    if pretrained:
        model = _torchvision_pretrained(arch, pretrained, arch, **kw)
        _replace_head(model, head, num_classes, head_hidden)
    else:
        model = _torchvision_pretrained(arch, False, arch, num_classes=num_classes, **kw)
        if head_hidden:
            _replace_head(model, head, num_classes, head_hidden)
    return model


def _build_timm(name: str, arch: str, head: str, num_classes: int, pretrained, head_hidden, **kw) -> nn.Module:
    """``timm.create_model(arch)`` with ``num_classes`` outputs; ``head`` as :func:`_build_torchvision`."""
    import timm

    if pretrained and not isinstance(pretrained, bool):
        arch = f"{arch}.{pretrained}"
    try:
        model = timm.create_model(arch, pretrained=bool(pretrained), num_classes=num_classes, **kw)
    except _DOWNLOAD_ERRORS as exc:
        if not pretrained:
            raise
        try:
            cfg = timm.models.get_pretrained_cfg(arch)
        except Exception:  # unknown tag: report without a URL
            cfg = None
        url = getattr(cfg, "url", None)
        hub = getattr(cfg, "hf_hub_id", None)
        desc = f"timm {arch}" + (f", Hugging Face {hub} (cache: $HF_HOME/hub)" if hub else "")
        raise _offline_error(name, desc, url, exc) from exc
    if head_hidden:
        _replace_head(model, head, num_classes, head_hidden)
    return model


# The paper's comparison, in the order of its Table 2 (and asff_resnet50 last).
@register_model("lenet5", "LeNet-5, RGB, adaptive pooling (no ImageNet weights)", imagenet_weights=False)
def _lenet5(num_classes: int, pretrained, head_hidden, **kw) -> nn.Module:
    return LeNet5(num_classes=num_classes, **kw)


@register_model("alexnet", "AlexNet (torchvision)")
def _alexnet(num_classes: int, pretrained, head_hidden, **kw) -> nn.Module:
    return _build_torchvision("alexnet", "classifier.6", num_classes, pretrained, head_hidden, **kw)


@register_model("vgg16", "VGG-16 without BN (torchvision)")
def _vgg16(num_classes: int, pretrained, head_hidden, **kw) -> nn.Module:
    return _build_torchvision("vgg16", "classifier.6", num_classes, pretrained, head_hidden, **kw)


@register_model("resnet34", "ResNet-34 (torchvision)", gap_linear_head=True)
def _resnet34(num_classes: int, pretrained, head_hidden, **kw) -> nn.Module:
    return _build_torchvision("resnet34", "fc", num_classes, pretrained, head_hidden, **kw)


@register_model("resnet50", "ResNet-50 (torchvision)", gap_linear_head=True)
def _resnet50(num_classes: int, pretrained, head_hidden, **kw) -> nn.Module:
    return _build_torchvision("resnet50", "fc", num_classes, pretrained, head_hidden, **kw)


@register_model("resnet101", "ResNet-101 (torchvision)", gap_linear_head=True)
def _resnet101(num_classes: int, pretrained, head_hidden, **kw) -> nn.Module:
    return _build_torchvision("resnet101", "fc", num_classes, pretrained, head_hidden, **kw)


@register_model("mobilenet_v2", "MobileNetV2 (torchvision)", gap_linear_head=True)
def _mobilenet_v2(num_classes: int, pretrained, head_hidden, **kw) -> nn.Module:
    return _build_torchvision("mobilenet_v2", "classifier.1", num_classes, pretrained, head_hidden, **kw)


@register_model("squeezenet1_1", "SqueezeNet 1.1 (torchvision)")
def _squeezenet1_1(num_classes: int, pretrained, head_hidden, **kw) -> nn.Module:
    return _build_torchvision("squeezenet1_1", "classifier.1", num_classes, pretrained, head_hidden, **kw)


@register_model("densenet121", "DenseNet-121 (torchvision)", gap_linear_head=True)
def _densenet121(num_classes: int, pretrained, head_hidden, **kw) -> nn.Module:
    return _build_torchvision("densenet121", "classifier", num_classes, pretrained, head_hidden, **kw)


@register_model("xception", "Xception, Chollet 2017 (timm legacy_xception)", gap_linear_head=True)
def _xception(num_classes: int, pretrained, head_hidden, **kw) -> nn.Module:
    return _build_timm("xception", "legacy_xception", "fc", num_classes, pretrained, head_hidden, **kw)


@register_model("googlenet", "GoogLeNet / Inception v1, no aux logits (torchvision)", gap_linear_head=True)
def _googlenet(num_classes: int, pretrained, head_hidden, **kw) -> nn.Module:
    kw.setdefault("aux_logits", False)
    if not pretrained:
        kw.setdefault("init_weights", True)
    return _build_torchvision("googlenet", "fc", num_classes, pretrained, head_hidden, **kw)


@register_model("asff_resnet50", "ResNet-50 + layer3/layer4 fusion (this module)", takes_head_hidden=True)
def _asff_resnet50(num_classes: int, pretrained, head_hidden, **kw) -> nn.Module:
    if head_hidden is not None:
        kw["head_hidden"] = head_hidden
    return ASFFResNet50(num_classes=num_classes, pretrained=pretrained, **kw)


# --------------------------------------------------------------------------------------------
# Keras's ResNet-50 (v1): the released code's backbone, rebuilt in PyTorch (chapter 03)
# --------------------------------------------------------------------------------------------
#: BatchNorm epsilon of ``keras.applications.ResNet50`` (keras/applications/resnet.py:
#: ``layers.BatchNormalization(axis=bn_axis, epsilon=1.001e-5, ...)``; PyTorch's default is 1e-5).
KERAS_BN_EPS = 1.001e-5
#: Keras's BatchNormalization momentum 0.99 (its default) in PyTorch's convention. Keras keeps
#: ``moving = 0.99·moving + 0.01·batch``; PyTorch's ``momentum`` weighs the *new* batch
#: statistic, ``running = (1 − m)·running + m·batch``, so the same update is m = 0.01.
KERAS_BN_MOMENTUM = 0.01


def resnet50_keras_v1(num_classes: int = 1000, **kw) -> nn.Module:
    """ResNet-50 as ``keras.applications.ResNet50`` builds it – He et al.'s v1 design, the body
    of the paper's released code – made from torchvision's ResNet-50 (v1.5) by three changes
    read in keras/applications/resnet.py (``block1`` / ``stack1``):

    * the stride 2 of the first bottleneck of ``layer2`` … ``layer4`` sits in its first 1 × 1
      convolution (``conv1``, Keras's ``_1_conv``), not in the 3 × 3 one (``conv2``), which
      then has stride 1; the shortcut's 1 × 1 convolution keeps its stride 2 (as in both);
    * every convolution has a bias (Keras's ``Conv2D`` default ``use_bias=True``; the biases
      start at zero, Keras's default), although the BatchNorm after each removes it again;
    * every BatchNorm has eps :data:`KERAS_BN_EPS` and momentum :data:`KERAS_BN_MOMENTUM`.

    Keras's explicit zero padding (3 before the 7 × 7 convolution, 1 before the max-pool) equals
    torchvision's ``padding`` there (the max-pool follows a ReLU, so padding with 0 or −∞ gives
    the same maximum). Module names and weight shapes stay torchvision's, so a torchvision
    state dict loads with ``strict=False`` (only the conv biases are missing), and so do the
    map shapes: layer3 [B, 1024, S/16, S/16], layer4 [B, 2048, S/32, S/32] (1024 × 14 × 14
    and 2048 × 7 × 7 at S = 224; 1024 × 4 × 4 and 2048 × 2 × 2 at 64 px).

    ``x: float32 [B, 3, S, S]`` → logits ``float32 [B, num_classes]``. The initialisation is
    torchvision's; no ImageNet weights exist for it here (Keras's are TensorFlow files), so it
    is built to be counted and compared. Build it on ``torch.device("meta")`` to count
    parameters and FLOPs without allocating memory.
    """
    import torchvision

    model = torchvision.models.resnet50(weights=None, num_classes=num_classes, **kw)
    for stage in (model.layer2, model.layer3, model.layer4):
        first = stage[0]
        first.conv1.stride, first.conv2.stride = first.conv2.stride, (1, 1)  # v1.5 → v1
    for m in model.modules():
        if isinstance(m, nn.Conv2d) and m.bias is None:
            w = m.weight
            m.bias = nn.Parameter(torch.zeros(m.out_channels, device=w.device, dtype=w.dtype))
        elif isinstance(m, nn.BatchNorm2d):
            m.eps, m.momentum = KERAS_BN_EPS, KERAS_BN_MOMENTUM
    return model


@register_model("resnet50_keras_v1", "ResNet-50 v1 as Keras builds it (reference for chapter 03; no ImageNet weights)",
                gap_linear_head=True, imagenet_weights=False, reference=True)
def _resnet50_keras_v1(num_classes: int, pretrained, head_hidden, **kw) -> nn.Module:
    model = resnet50_keras_v1(num_classes=num_classes, **kw)
    if head_hidden:
        _replace_head(model, "fc", num_classes, head_hidden)
    return model


def build_model(
    name: str,
    num_classes: int = 2,
    pretrained: bool | str = False,
    *,
    seed: int | None = None,
    head_hidden: int | None = None,
    **kw,
) -> nn.Module:
    """Build a model of the paper's comparison by name.

    Args:
        name: one of ``list_models(references=True)`` (``lenet5``, ``alexnet``, ``vgg16``,
            ``resnet34``, ``resnet50``, ``resnet101``, ``mobilenet_v2``, ``squeezenet1_1``,
            ``densenet121``, ``xception``, ``googlenet``, ``asff_resnet50`` and the reference
            ``resnet50_keras_v1``).
        num_classes: outputs of the new classifier (2: benign, malignant).
        pretrained: ``True`` loads ImageNet weights (torchvision weights enum / timm; needs the
            internet once, then the file is cached under ``$TORCH_HOME``); a string picks a
            torchvision weights member (e.g. ``"IMAGENET1K_V1"``) or a timm tag.
        seed: if given, the random initialisation is drawn from ``torch.manual_seed(seed)``
            without disturbing the global RNG, so the same seed gives the same weights.
        head_hidden: for models whose classifier is GAP → Linear (ResNets, DenseNet,
            MobileNetV2, GoogLeNet, Xception): replace it by FC(head_hidden) + ReLU →
            FC(num_classes), like every script of the released code. For ``asff_resnet50`` it is
            the head width (default 2048).
        **kw: passed on – to :class:`ASFFResNet50` (``fusion=``, ``upsample=`` …) or to the
            torchvision/timm constructor (e.g. ``dropout=``).

    Returns:
        ``nn.Module`` mapping ``float32 [B, 3, S, S]`` to logits ``[B, num_classes]``.

    Raises:
        ValueError: unknown name (lists the valid ones), or an option the model lacks.
        RuntimeError: ``pretrained=True`` but the weights cannot be downloaded (says how to fix).
    """
    key = name.strip().lower()
    if key not in _MODELS:
        raise ConfigError(f"Unknown model {name!r}. Fix: use one of {', '.join(list_models(references=True))}.")
    entry = _MODELS[key]
    if pretrained and not entry.imagenet_weights:
        raise ConfigError(f"{key} has no ImageNet weights. Fix: use pretrained=False.")
    if "fusion" in kw and key != "asff_resnet50":
        raise ConfigError(f"{key} has no fusion (fusion={kw['fusion']!r} given); only asff_resnet50 fuses "
                          "layer3 and layer4. Fix: drop the fusion, or use the model asff_resnet50.")
    if head_hidden and not entry.takes_head_hidden:
        gap_linear = sorted(n for n, e in _MODELS.items() if e.gap_linear_head)
        raise ConfigError(
            f"head_hidden is only supported for models with a GAP → Linear classifier "
            f"({', '.join(gap_linear)}) and asff_resnet50; {key} keeps its own "
            "classifier (use head_hidden=None)."
        )

    rng = torch.random.fork_rng(devices=[]) if seed is not None else contextlib.nullcontext()
    with rng:
        if seed is not None:
            torch.manual_seed(seed)
        return entry.builder(num_classes, pretrained, head_hidden, **kw)


# --------------------------------------------------------------------------------------------
# Summaries
# --------------------------------------------------------------------------------------------
def count_parameters(model: nn.Module) -> tuple[int, int]:
    """``(total, trainable)`` parameter counts (number of scalars)."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return total, trainable


@contextlib.contextmanager
def eval_no_grad(model: nn.Module):
    """Run a block with ``model`` in eval mode and without gradients; its mode is restored after."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        model.train(was_training)


def _device_of(model: nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def _flop_counter(model: nn.Module, image_size: int, in_channels: int = 3):
    """A :class:`torch.utils.flop_counter.FlopCounterMode` that has seen one batch-1 forward pass."""
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.zeros(1, in_channels, image_size, image_size, device=_device_of(model))
    counter = FlopCounterMode(display=False)
    with eval_no_grad(model), counter:
        model(x)
    return counter


def count_flops(model: nn.Module, image_size: int, in_channels: int = 3) -> int:
    """FLOPs of one forward pass at batch 1 on a ``[1, in_channels, S, S]`` input, counted by
    :class:`torch.utils.flop_counter.FlopCounterMode` (convolutions and matrix products only;
    **2 FLOPs per multiply-add**, so MACs = FLOPs / 2)."""
    return int(_flop_counter(model, image_size, in_channels).get_total_flops())


def flops_by_module(model: nn.Module, image_size: int) -> dict[str, int]:
    """:func:`count_flops` per leaf module that does any (keys like ``"layer2.0.conv1"``; chapter 03
    finds where two backbones differ)."""
    leaves = {n for n, m in model.named_modules() if n and not any(True for _ in m.children())}
    prefix = type(model).__name__ + "."
    out = {}
    for key, ops in _flop_counter(model, image_size).get_flop_counts().items():
        name = key[len(prefix):] if key.startswith(prefix) else key
        if name in leaves:
            out[name] = int(sum(ops.values()))
    return out


def layer_shapes(model: nn.Module, image_size: int, layers: tuple[str, ...] = ("layer3", "layer4")) -> dict[str, tuple[int, ...]]:
    """Output shapes (batch dropped) of the named submodules for one ``[1, 3, S, S]`` input, e.g.
    ``{"layer3": (1024, 14, 14), "layer4": (2048, 7, 7)}`` for a ResNet-50 at 224 px (chapters 03, 09)."""
    seen: dict[str, tuple[int, ...]] = {}
    handles = [getattr(model, k).register_forward_hook(
        lambda m, i, o, k=k: seen.__setitem__(k, tuple(int(d) for d in o.shape[1:]))) for k in layers]
    try:
        with eval_no_grad(model):
            model(torch.zeros(1, 3, image_size, image_size, device=_device_of(model)))
    finally:
        for h in handles:
            h.remove()
    return seen


def build_on_meta(name: str, **kwargs) -> nn.Module:
    """:func:`build_model` on the ``meta`` device, in eval mode: shapes without memory, for
    counting parameters, FLOPs and map shapes (chapters 03, 09)."""
    with torch.device("meta"):
        return build_model(name, **kwargs).eval()


def _accepts(model: nn.Module, size: int, in_channels: int) -> bool:
    x = torch.zeros(1, in_channels, size, size, device=_device_of(model))
    try:
        out = model(x)
    except (RuntimeError, ValueError, IndexError):
        return False
    out = out[0] if isinstance(out, tuple) else out
    return bool(torch.isfinite(out).all())


def min_input_size(model: nn.Module, max_size: int = 512, in_channels: int = 3) -> int:
    """The smallest square side S (pixels) for which ``model(zeros[1, C, S, S])`` runs.

    Exponential search (1, 2, 4, … px) for the first accepted size, then bisection below it, in
    eval mode and without gradients. This assumes acceptance is monotone in S, which holds for
    these CNNs: a size that survives every conv/pool stage keeps surviving when enlarged.

    Raises:
        ValueError: if no size up to ``max_size`` is accepted.
    """
    with eval_no_grad(model):
        lo, hi = 1, 1  # invariant after the loop: hi accepted, every size < lo rejected
        while not _accepts(model, hi, in_channels):
            if hi >= max_size:
                raise ConfigError(
                    f"{type(model).__name__} rejects every square input up to {max_size}×{max_size}; "
                    "raise max_size or check the model."
                )
            lo, hi = hi + 1, min(2 * hi, max_size)
        while lo < hi:
            mid = (lo + hi) // 2
            if _accepts(model, mid, in_channels):
                hi = mid
            else:
                lo = mid + 1
    return hi


def model_summary(model: nn.Module, image_size: int = 224, in_channels: int = 3) -> dict:
    """Size and cost of ``model`` at a square input of ``image_size`` pixels.

    Returns a dict with:
        ``params_total``, ``params_trainable`` (scalars); ``params_m`` (millions);
        ``image_size`` (px); ``flops`` (FlopCounterMode, batch 1, 2 FLOPs per multiply-add);
        ``macs`` (= flops / 2); ``gflops`` and ``gmacs`` (billions); ``min_input_size`` (px,
        see :func:`min_input_size`).
    """
    total, trainable = count_parameters(model)
    flops = count_flops(model, image_size, in_channels)
    return {
        "params_total": total,
        "params_trainable": trainable,
        "params_m": total / 1e6,
        "image_size": image_size,
        "flops": flops,
        "macs": flops // 2,
        "gflops": flops / 1e9,
        "gmacs": flops / 2e9,
        "min_input_size": min_input_size(model, max_size=max(image_size, 32), in_channels=in_channels),
    }
