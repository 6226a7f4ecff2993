"""Models: the fusion modules, ASFF-ResNet50, the baseline zoo and model summaries
(taught in chapter 03, ``chapters/03_asff_derivation``).

What this module owns
---------------------
* :class:`ASFFResNet50` – a torchvision ResNet-50 whose ``layer3`` map (1024 × 14 × 14 at
  224 px) and ``layer4`` map (2048 × 7 × 7) are merged by one of six fusion modules
  (``fusion=``), followed by the head of the paper's released code (GAP → FC + ReLU → FC).
* The fusion modules, one class each, all with the signature
  ``fusion(low, high) -> (fused, weights)``:

  * ``none`` (:class:`NoFusion`): layer4 as it is, [B, 2048, h, w]; weights ``None``.
  * ``sum`` (:class:`SumFusion`): F1 + F2, [B, 1024, H, W]; weights ``None``.
  * ``concat`` (:class:`ConcatFusion`): [F1, F2] along channels, [B, 2048, H, W]; ``None``.
  * ``asff_text`` (:class:`ASFFText`): F1·ω + F2·(1 − ω), [B, 1024, H, W];
    weights [B, 2] = (ω, 1 − ω), one pair per image.
  * ``asff_code`` (:class:`ASFFCode`): F1·w_c + F2·(1 − w_c), [B, 1024, H, W];
    weights [B, 1024] = w_c, one per channel, summing to 1 over the channels.
  * ``asff_spatial`` (:class:`ASFFSpatial`): F1·α_ij + F2·β_ij, [B, 1024, H, W];
    weights [B, 2, H, W] = (α, β), one pair per pixel.

  ``F1`` is layer3 ([B, 1024, H, W]); ``F2`` is layer4 resized to H × W and projected to 1024
  channels by a 1 × 1 convolution (:class:`LevelAlign`). The weights of the last forward pass
  are kept, detached, in ``model.last_fusion_weights``; ``model(x, return_weights=True)`` returns
  them with their graph.
* :func:`build_model` / :func:`list_models` – the baseline zoo of the paper (LeNet-5 … Xception)
  from torchvision / timm with a new classifier for ``num_classes``; ImageNet weights on request,
  with one clear error when they cannot be downloaded.
* :func:`model_summary` / :func:`min_input_size` – parameters, FLOPs (via
  :class:`torch.utils.flop_counter.FlopCounterMode`) and the smallest square input a model accepts.
* Chapter 03's tools: :func:`level_weights` / :func:`layer3_share` / :func:`uniform_weight`
  (what multiplies each level), :func:`eq6_gradient_check` / :func:`eq6_gradient_table` (the
  gradient rule of eq. 6 against autograd), :func:`fusion_walkthrough` (shapes of every step,
  from hooks), :func:`fusion_inputs` (layer3 and layer4 without side effects),
  :func:`fusion_init_state` (weights at initialisation, train vs eval mode) and
  :func:`fusion_overhead_table` (parameters and multiply-adds of each variant).

Three readings of "ASFF" (chapter 03 derives them)
--------------------------------------------------
* ``asff_text`` follows the paper's text and its eq. 7: the concatenated maps are pooled (GAP),
  passed through FC + ReLU and FC(2), and a softmax over the *two levels* gives one scalar ω per
  image: ``fused = F1·ω + F2·(1 − ω)``.
* ``asff_code`` follows the paper's released Keras code (``AdaptiveFeatureFusion`` in
  ``code/train_asff_resnet50.py`` of github.com/Grapesea/ASFF-ResNet50-enhanced): the second FC
  has 1,024 outputs and the softmax runs over the *1,024 channels*, so the weights w_c sum to 1
  over channels, not over levels. At initialisation the logits are small and every
  w_c ≈ 1/1024 (from-scratch model, training mode, 5 seeds: largest w_c ≤ 3.4/1024), hence
  ``fused ≈ F2`` (the projected layer4) – the layer3 branch starts almost switched off, and a
  single channel can only take a large share by starving all others. (An untrained model in
  eval mode, whose BatchNorm still has its initial running statistics, produces huge
  activations and a saturated softmax instead; that state is not meaningful.)
* ``asff_spatial`` is the original ASFF of Liu et al. (2019): per-level 1 × 1 convolutions
  compress each map, a 1 × 1 convolution gives two logits per pixel and a softmax over the levels
  gives a weight map per level, α_ij + β_ij = 1 at every position.

Details taken from the released code (and switchable here): layer4 is resized with
``tf.image.resize(..., method='bilinear')`` – *bilinear*, not ``UpSampling2D`` nearest – then
projected by a 1 × 1 ``Conv2D`` with bias, without batch norm (``upsample="bilinear"``,
``align_bn=False``); the head is GAP → Dense(2048, ReLU) → Dense(num_classes, softmax). The model
here returns logits (the softmax lives in the loss).
"""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "FUSIONS",
    "LevelAlign",
    "NoFusion",
    "SumFusion",
    "ConcatFusion",
    "ASFFText",
    "ASFFCode",
    "ASFFSpatial",
    "ClassifierHead",
    "LeNet5",
    "ASFFResNet50",
    "build_model",
    "list_models",
    "model_summary",
    "min_input_size",
    "count_parameters",
    "count_flops",
    "level_weights",
    "layer3_share",
    "uniform_weight",
    "eq6_gradient_check",
    "eq6_gradient_table",
    "fusion_walkthrough",
    "fusion_inputs",
    "fusion_init_state",
    "OVERHEAD_VARIANTS",
    "fusion_overhead_table",
]

FUSIONS = ("none", "sum", "concat", "asff_text", "asff_code", "asff_spatial")
UPSAMPLE_MODES = ("nearest", "nearest-exact", "bilinear", "bicubic")


# --------------------------------------------------------------------------------------------
# Fusion building blocks
# --------------------------------------------------------------------------------------------
class LevelAlign(nn.Module):
    """Bring the deep map onto the shallow map's grid: resize + 1 × 1 conv (+ optional BN).

    ``high: float32 [B, C_high, h, w]`` → ``float32 [B, C_out, H, W]`` where ``(H, W)`` is the
    ``size`` argument (layer3's grid). With ``project_first=False`` (the released code) the map is
    resized first and then projected; ``project_first=True`` projects at h × w and resizes after,
    which gives the same result (both steps are linear; a bilinear/nearest resize preserves
    constants, so the bias commutes too) at a quarter of the multiply-adds. With ``bn=True`` the
    two orders differ in training mode (batch statistics over different grids).

    Args:
        in_channels: C_high (2048 for ResNet-50's layer4).
        out_channels: C_out (1024, layer3's width).
        upsample: ``"nearest"``, ``"nearest-exact"``, ``"bilinear"`` (released code) or ``"bicubic"``.
        bn: add a BatchNorm2d after the projection (the released code has none).
        project_first: project before resizing (cheaper, same output without BN).
    """

    def __init__(
        self,
        in_channels: int = 2048,
        out_channels: int = 1024,
        upsample: str = "bilinear",
        bn: bool = False,
        project_first: bool = False,
    ) -> None:
        super().__init__()
        if upsample not in UPSAMPLE_MODES:
            raise ValueError(
                f"upsample={upsample!r} is not supported; expected one of {UPSAMPLE_MODES} "
                "(the paper's released code uses 'bilinear')."
            )
        self.upsample = upsample
        self.project_first = project_first
        self.proj = nn.Conv2d(in_channels, out_channels, kernel_size=1, bias=not bn)
        self.bn = nn.BatchNorm2d(out_channels) if bn else nn.Identity()

    def resize(self, x: Tensor, size: tuple[int, int]) -> Tensor:
        """``x: [B, C, h, w]`` → ``[B, C, *size]`` with the configured interpolation."""
        if tuple(x.shape[-2:]) == tuple(size):
            return x
        corners = {"align_corners": False} if self.upsample in ("bilinear", "bicubic") else {}
        return F.interpolate(x, size=size, mode=self.upsample, **corners)

    def forward(self, high: Tensor, size: tuple[int, int]) -> Tensor:
        if self.project_first:
            return self.resize(self.bn(self.proj(high)), size)
        return self.bn(self.proj(self.resize(high, size)))


class NoFusion(nn.Module):
    """Plain ResNet-50: ignore layer3 and pass layer4 through.

    ``(low [B, 1024, H, W], high [B, 2048, h, w])`` → ``(high, None)``; ``out_channels = 2048``.
    """

    adaptive = False

    def __init__(self, low_channels: int = 1024, high_channels: int = 2048, **_: object) -> None:
        super().__init__()
        self.out_channels = high_channels

    def forward(self, low: Tensor, high: Tensor) -> tuple[Tensor, None]:
        return high, None


class SumFusion(nn.Module):
    """Fixed, equal-weight fusion: ``F1 + F2``.

    ``(low [B, 1024, H, W], high [B, 2048, h, w])`` → ``([B, 1024, H, W], None)``.
    """

    adaptive = False

    def __init__(self, low_channels: int = 1024, high_channels: int = 2048, **align_kw) -> None:
        super().__init__()
        self.align = LevelAlign(high_channels, low_channels, **align_kw)
        self.out_channels = low_channels

    def forward(self, low: Tensor, high: Tensor) -> tuple[Tensor, None]:
        return low + self.align(high, low.shape[-2:]), None


class ConcatFusion(nn.Module):
    """Keep both levels side by side: ``[F1, F2]`` along channels.

    ``(low [B, 1024, H, W], high [B, 2048, h, w])`` → ``([B, 2048, H, W], None)``.
    """

    adaptive = False

    def __init__(self, low_channels: int = 1024, high_channels: int = 2048, **align_kw) -> None:
        super().__init__()
        self.align = LevelAlign(high_channels, low_channels, **align_kw)
        self.out_channels = 2 * low_channels

    def forward(self, low: Tensor, high: Tensor) -> tuple[Tensor, None]:
        return torch.cat([low, self.align(high, low.shape[-2:])], dim=1), None


class _GlobalWeights(nn.Module):
    """Shared body of :class:`ASFFText` and :class:`ASFFCode`:
    ``cat(F1, F2) → GAP → FC(hidden) + ReLU → FC(n_out) → softmax``.

    ``(f1 [B, C, H, W], f2 [B, C, H, W])`` → ``[B, n_out]``, non-negative, rows sum to 1.
    """

    def __init__(self, channels: int, hidden: int, n_out: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(2 * channels, hidden)
        self.fc2 = nn.Linear(hidden, n_out)

    def forward(self, f1: Tensor, f2: Tensor) -> Tensor:
        z = torch.cat([f1, f2], dim=1).mean(dim=(2, 3))  # GAP: [B, 2C]
        return torch.softmax(self.fc2(F.relu(self.fc1(z))), dim=1)


class _AdaptiveFusion(nn.Module):
    """Common plumbing of the ASFF variants: alignment, optional detaching of the weights."""

    adaptive = True

    def __init__(
        self, low_channels: int, high_channels: int, detach_weights: bool = False, **align_kw
    ) -> None:
        super().__init__()
        self.align = LevelAlign(high_channels, low_channels, **align_kw)
        self.out_channels = low_channels
        #: Treat the weights as constants in the backward pass (the assumption behind eq. 6).
        self.detach_weights = detach_weights

    def _maybe_detach(self, w: Tensor) -> Tensor:
        return w.detach() if self.detach_weights else w


class ASFFText(_AdaptiveFusion):
    """ASFF as the paper's text and eq. 7 describe it: one scalar ω per image.

    ``ω = softmax(FC2(ReLU(FC1(GAP([F1, F2])))))[:, 0]`` with FC2 → 2 logits (one per level);
    ``fused = F1·ω + F2·(1 − ω)``.

    ``(low [B, 1024, H, W], high [B, 2048, h, w])`` → ``(fused [B, 1024, H, W], weights [B, 2])``
    where ``weights[:, 0] = ω`` (layer3) and ``weights[:, 1] = 1 − ω`` (layer4).

    Args:
        hidden: width of FC1 (1024 in the released code).
        detach_weights: stop gradients through ω (ω acts as a constant; see chapter 03, eq. 6).
        **align_kw: passed to :class:`LevelAlign` (``upsample``, ``bn``, ``project_first``).
    """

    def __init__(
        self, low_channels: int = 1024, high_channels: int = 2048, hidden: int = 1024, **kw
    ) -> None:
        super().__init__(low_channels, high_channels, **kw)
        self.weights = _GlobalWeights(low_channels, hidden, n_out=2)

    def forward(self, low: Tensor, high: Tensor) -> tuple[Tensor, Tensor]:
        f2 = self.align(high, low.shape[-2:])
        w = self._maybe_detach(self.weights(low, f2))  # [B, 2]
        fused = low * w[:, 0, None, None, None] + f2 * w[:, 1, None, None, None]
        return fused, w


class ASFFCode(_AdaptiveFusion):
    """ASFF as the paper's released Keras code computes it: one weight per channel.

    ``w = softmax over channels(FC2(ReLU(FC1(GAP([F1, F2])))))`` with FC2 → 1024 outputs;
    ``fused = F1·w + F2·(1 − w)`` (w broadcast over H, W).

    ``(low [B, 1024, H, W], high [B, 2048, h, w])`` → ``(fused [B, 1024, H, W], w [B, 1024])``;
    ``w.sum(1) == 1``. At initialisation w_c ≈ 1/1024 for every channel, so ``fused ≈ F2``:
    the layer3 branch enters with weight ≈ 0.001.

    Args:
        hidden: width of FC1 (``Dense(1024, relu)`` in the released code).
        detach_weights: stop gradients through w.
        **align_kw: passed to :class:`LevelAlign`.
    """

    def __init__(
        self, low_channels: int = 1024, high_channels: int = 2048, hidden: int = 1024, **kw
    ) -> None:
        super().__init__(low_channels, high_channels, **kw)
        self.weights = _GlobalWeights(low_channels, hidden, n_out=low_channels)

    def forward(self, low: Tensor, high: Tensor) -> tuple[Tensor, Tensor]:
        f2 = self.align(high, low.shape[-2:])
        w = self._maybe_detach(self.weights(low, f2))  # [B, C]
        wb = w[:, :, None, None]
        return low * wb + f2 * (1.0 - wb), w


class ASFFSpatial(_AdaptiveFusion):
    """The original ASFF (Liu, Huang & Wang 2019): a softmax over levels at every pixel.

    Each level is compressed by a 1 × 1 conv + BN + LeakyReLU(0.1) to ``compress`` channels;
    the compressed maps are concatenated and a 1 × 1 conv gives 2 logits per pixel;
    ``(α, β) = softmax over levels``; ``fused = F1·α + F2·β``.

    ``(low [B, 1024, H, W], high [B, 2048, h, w])`` → ``(fused [B, 1024, H, W], w [B, 2, H, W])``
    with ``w[:, 0] = α`` (layer3), ``w[:, 1] = β`` (layer4), ``w.sum(1) == 1``.

    Args:
        compress: channels of the per-level compressed maps (16 in the original ASFF).
        detach_weights: stop gradients through (α, β).
        **align_kw: passed to :class:`LevelAlign`.
    """

    def __init__(
        self, low_channels: int = 1024, high_channels: int = 2048, compress: int = 16, **kw
    ) -> None:
        super().__init__(low_channels, high_channels, **kw)

        def squeeze() -> nn.Sequential:
            return nn.Sequential(
                nn.Conv2d(low_channels, compress, 1, bias=False),
                nn.BatchNorm2d(compress),
                nn.LeakyReLU(0.1),
            )

        self.compress_low = squeeze()
        self.compress_high = squeeze()
        self.level_logits = nn.Conv2d(2 * compress, 2, kernel_size=1)

    def forward(self, low: Tensor, high: Tensor) -> tuple[Tensor, Tensor]:
        f2 = self.align(high, low.shape[-2:])
        z = torch.cat([self.compress_low(low), self.compress_high(f2)], dim=1)
        w = self._maybe_detach(torch.softmax(self.level_logits(z), dim=1))  # [B, 2, H, W]
        return low * w[:, 0:1] + f2 * w[:, 1:2], w


_FUSION_CLASSES: dict[str, type[nn.Module]] = {
    "none": NoFusion,
    "sum": SumFusion,
    "concat": ConcatFusion,
    "asff_text": ASFFText,
    "asff_code": ASFFCode,
    "asff_spatial": ASFFSpatial,
}


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
        fusion: one of :data:`FUSIONS`.
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
        if fusion not in _FUSION_CLASSES:
            raise ValueError(
                f"Unknown fusion {fusion!r}. Valid: {', '.join(FUSIONS)} "
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
        self.fusion = _FUSION_CLASSES[fusion](1024, 2048, **kw)
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
# LeNet-5 (the only model built here)
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
# Registry
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Spec:
    source: str  # "torchvision" | "timm" | "local"
    arch: str  # constructor name in that source
    head: str | None  # dotted path of the final classifier layer (None: built with num_classes)
    note: str


_REGISTRY: dict[str, _Spec] = {
    "lenet5": _Spec("local", "lenet5", None, "LeNet-5, RGB, adaptive pooling (no ImageNet weights)"),
    "alexnet": _Spec("torchvision", "alexnet", "classifier.6", "AlexNet (torchvision)"),
    "vgg16": _Spec("torchvision", "vgg16", "classifier.6", "VGG-16 without BN (torchvision)"),
    "resnet34": _Spec("torchvision", "resnet34", "fc", "ResNet-34 (torchvision)"),
    "resnet50": _Spec("torchvision", "resnet50", "fc", "ResNet-50 (torchvision)"),
    "resnet101": _Spec("torchvision", "resnet101", "fc", "ResNet-101 (torchvision)"),
    "mobilenet_v2": _Spec("torchvision", "mobilenet_v2", "classifier.1", "MobileNetV2 (torchvision)"),
    "squeezenet1_1": _Spec("torchvision", "squeezenet1_1", "classifier.1", "SqueezeNet 1.1 (torchvision)"),
    "densenet121": _Spec("torchvision", "densenet121", "classifier", "DenseNet-121 (torchvision)"),
    "xception": _Spec("timm", "legacy_xception", "fc", "Xception, Chollet 2017 (timm legacy_xception)"),
    "googlenet": _Spec("torchvision", "googlenet", "fc", "GoogLeNet / Inception v1, no aux logits (torchvision)"),
    "asff_resnet50": _Spec("local", "asff_resnet50", None, "ResNet-50 + layer3/layer4 fusion (this module)"),
}

#: Models whose classifier is GAP → one Linear, where ``head_hidden`` may swap in the paper's
#: GAP → FC(hidden) + ReLU → FC head.
_GAP_LINEAR_HEADS = {"resnet34", "resnet50", "resnet101", "mobilenet_v2", "densenet121", "xception", "googlenet"}


def list_models() -> list[str]:
    """Names accepted by :func:`build_model`, in the order of the paper's comparison."""
    return list(_REGISTRY)


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
        raise ValueError(
            f"{arch} has no weights named {tag!r}; valid: {valid} (or pretrained=True)."
        ) from None
    try:
        return torchvision.models.get_model(arch, weights=weights, **kw)
    except _DOWNLOAD_ERRORS as exc:
        raise _offline_error(model_name, f"torchvision {weights}", weights.url, exc) from exc


def _build_torchvision(name: str, spec: _Spec, num_classes: int, pretrained, head_hidden, **kw) -> nn.Module:
    if spec.arch == "googlenet":
        kw.setdefault("aux_logits", False)
        if not pretrained:
            kw.setdefault("init_weights", True)
    if pretrained:
        model = _torchvision_pretrained(spec.arch, pretrained, name, **kw)
        _replace_head(model, spec.head, num_classes, head_hidden)
    else:
        model = _torchvision_pretrained(spec.arch, False, name, num_classes=num_classes, **kw)
        if head_hidden:
            _replace_head(model, spec.head, num_classes, head_hidden)
    return model


def _build_timm(name: str, spec: _Spec, num_classes: int, pretrained, head_hidden, **kw) -> nn.Module:
    import timm

    if pretrained and not isinstance(pretrained, bool):
        arch = f"{spec.arch}.{pretrained}"
    else:
        arch = spec.arch
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
        _replace_head(model, spec.head, num_classes, head_hidden)
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
        name: one of :func:`list_models` (``lenet5``, ``alexnet``, ``vgg16``, ``resnet34``,
            ``resnet50``, ``resnet101``, ``mobilenet_v2``, ``squeezenet1_1``, ``densenet121``,
            ``xception``, ``googlenet``, ``asff_resnet50``).
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
    if key not in _REGISTRY:
        raise ValueError(f"Unknown model {name!r}. Valid names: {', '.join(list_models())}.")
    spec = _REGISTRY[key]
    if pretrained and key == "lenet5":
        raise ValueError("lenet5 has no ImageNet weights; use pretrained=False.")
    if head_hidden and key not in _GAP_LINEAR_HEADS | {"asff_resnet50"}:
        raise ValueError(
            f"head_hidden is only supported for models with a GAP → Linear classifier "
            f"({', '.join(sorted(_GAP_LINEAR_HEADS))}) and asff_resnet50; {key} keeps its own "
            "classifier (use head_hidden=None)."
        )

    rng = torch.random.fork_rng(devices=[]) if seed is not None else contextlib.nullcontext()
    with rng:
        if seed is not None:
            torch.manual_seed(seed)
        if key == "lenet5":
            return LeNet5(num_classes=num_classes, **kw)
        if key == "asff_resnet50":
            if head_hidden is not None:
                kw["head_hidden"] = head_hidden
            return ASFFResNet50(num_classes=num_classes, pretrained=pretrained, **kw)
        builder: Callable[..., nn.Module] = _build_timm if spec.source == "timm" else _build_torchvision
        return builder(key, spec, num_classes, pretrained, head_hidden, **kw)


# --------------------------------------------------------------------------------------------
# Summaries
# --------------------------------------------------------------------------------------------
def count_parameters(model: nn.Module) -> tuple[int, int]:
    """``(total, trainable)`` parameter counts (number of scalars)."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return total, trainable


@contextlib.contextmanager
def _eval_no_grad(model: nn.Module):
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


def count_flops(model: nn.Module, image_size: int, in_channels: int = 3) -> int:
    """FLOPs of one forward pass at batch 1 on a ``[1, in_channels, S, S]`` input, counted by
    :class:`torch.utils.flop_counter.FlopCounterMode` (convolutions and matrix products only;
    **2 FLOPs per multiply-add**, so MACs = FLOPs / 2)."""
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.zeros(1, in_channels, image_size, image_size, device=_device_of(model))
    with _eval_no_grad(model):
        counter = FlopCounterMode(display=False)
        with counter:
            model(x)
    return int(counter.get_total_flops())


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
    with _eval_no_grad(model):
        lo, hi = 1, 1  # invariant after the loop: hi accepted, every size < lo rejected
        while not _accepts(model, hi, in_channels):
            if hi >= max_size:
                raise ValueError(
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


# --------------------------------------------------------------------------------------------
# Chapter 03 helpers: level weights, the gradient check of eq. 6, a shape walk-through,
# the weights at initialisation and the cost table
# --------------------------------------------------------------------------------------------
def level_weights(fusion: nn.Module, weights: Tensor) -> tuple[Tensor, Tensor]:
    """The two factors of an ASFF module's weighted sum, ``fused = F1·a + F2·b``.

    Args:
        fusion: an :class:`ASFFText`, :class:`ASFFCode` or :class:`ASFFSpatial` module.
        weights: the weights it returned: [B, 2] (text), [B, C] (code), [B, 2, H, W] (spatial).

    Returns:
        ``(a, b)``, each broadcastable to [B, C, H, W]: ``a`` multiplies layer3 (F1), ``b`` the
        aligned layer4 (F2). asff_text: (ω, 1 − ω) as [B, 1, 1, 1]; asff_code: (w, 1 − w) as
        [B, C, 1, 1]; asff_spatial: (α, β) as [B, 1, H, W].

    Raises:
        TypeError: ``fusion`` is not one of the three adaptive modules.
    """
    if isinstance(fusion, ASFFText):
        return weights[:, 0, None, None, None], weights[:, 1, None, None, None]
    if isinstance(fusion, ASFFCode):
        wc = weights[:, :, None, None]
        return wc, 1.0 - wc
    if isinstance(fusion, ASFFSpatial):
        return weights[:, 0:1], weights[:, 1:2]
    raise TypeError(
        f"level_weights needs an adaptive fusion module (ASFFText, ASFFCode, ASFFSpatial); got "
        f"{type(fusion).__name__}. The fusions 'none', 'sum' and 'concat' have no weights."
    )


def layer3_share(fusion: nn.Module, weights: Tensor) -> Tensor:
    """The weight given to layer3 (F1), one value per place where it can differ.

    ``asff_text``: ω, [B] (one per image); ``asff_code``: w_c, [B, C] (one per image and
    channel); ``asff_spatial``: α, [B, H, W] (one per image and pixel). Values in [0, 1].
    """
    a, _ = level_weights(fusion, weights)
    if isinstance(fusion, ASFFText):
        return a.reshape(-1)
    if isinstance(fusion, ASFFCode):
        return a[:, :, 0, 0]
    return a[:, 0]


def uniform_weight(fusion: nn.Module) -> float:
    """The weight every entry gets when all softmax logits are equal: 1 / (length of the
    softmax axis) – 1/2 for the two-level softmaxes (text, spatial), 1/C for the channel
    softmax of the released code (1/1024 for ResNet-50)."""
    if isinstance(fusion, ASFFCode):
        return 1.0 / fusion.weights.fc2.out_features
    if isinstance(fusion, (ASFFText, ASFFSpatial)):
        return 0.5
    raise TypeError(f"uniform_weight needs an adaptive fusion module; got {type(fusion).__name__}.")


def eq6_gradient_check(fusion: nn.Module, low: Tensor, high: Tensor, grad_fused: Tensor) -> dict[str, float]:
    """Compare autograd's gradients of the fusion's inputs with the weighted-sum rule (eq. 6).

    The loss ``L = Σ fused ⊙ G`` has ``∂L/∂fused = G`` exactly. If the weights (a, b) of
    :func:`level_weights` were constants, the chain rule through ``fused = F1·a + A(x4)·b``
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

    a, b = level_weights(fusion, w.detach())
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
    import copy

    import pandas as pd

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


def fusion_walkthrough(model: "ASFFResNet50", x: Tensor):
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
    import pandas as pd

    fusion = model.fusion
    if not isinstance(fusion, (ASFFText, ASFFCode, ASFFSpatial)):
        raise ValueError(
            f"fusion_walkthrough follows the ASFF weight branch; this model has fusion="
            f"{model.fusion_name!r}. Build one with fusion='asff_text', 'asff_code' or 'asff_spatial'."
        )
    seen: dict[str, tuple[int, ...]] = {}

    def out(key: str, pick=lambda o: o):
        return lambda mod, inp, o: seen.__setitem__(key, _shape(pick(o)))

    def inp(key: str, pick=lambda i: i[0]):
        return lambda mod, i: seen.__setitem__(key, _shape(pick(i)))

    align = fusion.align
    hooks = [
        (model.maxpool, "fwd", out("stem")),
        (model.layer2, "fwd", out("layer2")),
        (model.layer3, "fwd", out("layer3")),
        (model.layer4, "fwd", out("layer4")),
        (align.proj, "pre", inp("proj_in")),
        (align.proj, "fwd", out("proj_out")),
        (align, "fwd", out("aligned")),
        (fusion, "fwd", out("softmax", lambda o: o[1])),
        (model.cam_layer, "fwd", out("fused")),
        (model.head.mlp[0], "fwd", out("head_gap")),
        (model.head.mlp[-1], "fwd", out("logits")),
    ]
    if isinstance(fusion, ASFFSpatial):
        hooks += [
            (fusion.compress_low, "fwd", out("compress_low")),
            (fusion.compress_high, "fwd", out("compress_high")),
            (fusion.level_logits, "pre", inp("concat")),
            (fusion.level_logits, "fwd", out("logits_conv")),
        ]
    else:
        hooks += [
            (fusion.weights, "pre", inp("concat", lambda i: torch.cat(i, dim=1))),
            (fusion.weights.fc1, "pre", inp("gap")),
            (fusion.weights.fc1, "fwd", out("fc1")),
            (fusion.weights.fc2, "fwd", out("fc2")),
        ]
    if model.head.mlp[1].__class__ is nn.Linear:
        hooks.append((model.head.mlp[1], "fwd", out("head_fc1")))
    handles = [
        (m.register_forward_pre_hook(h) if kind == "pre" else m.register_forward_hook(h)) for m, kind, h in hooks
    ]
    try:
        with _eval_no_grad(model):
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
    ]
    if isinstance(fusion, ASFFSpatial):
        steps += [
            ("compress_low", "1×1 conv + BN + LeakyReLU (F1)"),
            ("compress_high", "1×1 conv + BN + LeakyReLU (F2)"),
            ("concat", "concat"),
            ("logits_conv", "1×1 conv → level logits"),
            ("softmax", "softmax over levels → (α, β)"),
        ]
    else:
        over = "levels → (ω, 1 − ω)" if isinstance(fusion, ASFFText) else "channels → w"
        steps += [
            ("concat", "concat [F1, F2]"),
            ("gap", "global average pool"),
            ("fc1", "FC + ReLU"),
            ("fc2", "FC"),
            ("softmax", f"softmax over {over}"),
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


def fusion_inputs(model: "ASFFResNet50", x: Tensor, mode: str = "train") -> tuple[Tensor, Tensor]:
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


def fusion_init_state(model: "ASFFResNet50", x: Tensor, modes: tuple[str, ...] = ("train", "eval")):
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
        (every entry of :func:`layer3_share`: B, B·C or B·H·W values per mode) and ``uniform``
        (:func:`uniform_weight`); ``scales`` is indexed by mode with the standard deviation of
        the layer3 map, the layer4 map and the fusion's pre-softmax logits (``logit_std``,
        taken over all entries).
    """
    import pandas as pd

    fusion = model.fusion
    uni = uniform_weight(fusion)
    softmax_input = fusion.weights.fc2 if isinstance(fusion, (ASFFText, ASFFCode)) else fusion.level_logits
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
        share = layer3_share(fusion, w).reshape(-1).cpu().numpy()
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
    import pandas as pd

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
