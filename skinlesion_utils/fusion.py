"""Fusion of layer3 and layer4: the six fusion modules of ASFF-ResNet50 and the read-outs of
their weights (derived in chapter 03, ``chapters/03_asff_derivation``; the trained weights are
read in chapter 06, ``chapters/06_ablation``, and chapter 07).

What this module owns
---------------------
* The fusion modules, one class each, all with the signature
  ``fusion(low, high) -> (fused, weights)``; :data:`FUSION_CLASSES` maps each name of
  :data:`FUSIONS` to its class:

  * ``none`` (:class:`NoFusion`): layer4 as it is, [B, 2048, h, w]; weights ``None``.
  * ``sum`` (:class:`SumFusion`): F1 + F2, [B, 1024, H, W]; weights ``None``.
  * ``concat`` (:class:`ConcatFusion`): [F1, F2] along channels, [B, 2048, H, W]; ``None``.
  * ``asff_text`` (:class:`ASFFText`): F1·ω + F2·(1 − ω), [B, 1024, H, W];
    weights [B, 2] = (ω, 1 − ω), one pair per image.
  * ``asff_code`` (:class:`ASFFCode`): F1·w_c + F2·(1 − w_c), [B, 1024, H, W];
    weights [B, 1024] = w_c, one per channel, summing to 1 over the channels.
  * ``asff_spatial`` (:class:`ASFFSpatial`): F1·α_ij + F2·β_ij, [B, 1024, H, W];
    weights [B, 2, H, W] = (α, β), one pair per pixel.

  ``F1`` is layer3 ([B, 1024, H, W]; 1024 × 14 × 14 at 224 px); ``F2`` is layer4 ([B, 2048,
  h, w]; 2048 × 7 × 7 at 224 px) resized to H × W and projected to 1024 channels by a 1 × 1
  convolution (:class:`LevelAlign`).
* Each module's reading of its own weights (methods, so no caller dispatches on the class):
  :meth:`FusionModule.level_weights` (the two factors of ``fused = F1·a + F2·b``),
  :meth:`FusionModule.layer3_share` (the weight on layer3, one value per place where it can
  differ), :meth:`FusionModule.uniform_weight` (the weight of equal logits),
  :meth:`AdaptiveFusion.weight_summary` (per-image statistics of stored weights),
  :attr:`AdaptiveFusion.logits_layer` and :meth:`AdaptiveFusion.weight_branch` (the layers of
  the weight branch, for hooks).
* Read-outs of trained models over a store (chapters 06 and 07): :func:`fusion_weights`
  (``model.last_fusion_weights`` over every image), :func:`fusion_weight_summary`,
  :func:`fusion_weight_table` (several runs, one long table) and
  :func:`fusion_weight_readings` (one sentence per fusion and seed: mixed or switched off).

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
``bn=False``).
"""
from __future__ import annotations

from typing import Callable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .errors import ConfigError
from .augment import normalise

__all__ = [
    "FUSIONS",
    "FUSION_CLASSES",
    "ADAPTIVE_FUSIONS",
    "UPSAMPLE_MODES",
    "LevelAlign",
    "FusionModule",
    "NoFusion",
    "SumFusion",
    "ConcatFusion",
    "GlobalWeights",
    "AdaptiveFusion",
    "ASFFText",
    "ASFFCode",
    "ASFFSpatial",
    "fusion_weights",
    "fusion_weight_summary",
    "fusion_weight_table",
    "IGNORED_BELOW",
    "fusion_weight_readings",
]

#: Interpolations :class:`LevelAlign` accepts for resizing layer4 onto layer3's grid.
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
            raise ConfigError(
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


def _not_adaptive(module: nn.Module) -> TypeError:
    """The error of a weight read-out asked of a fusion module that learns no weights."""
    return TypeError(
        f"level_weights needs an adaptive fusion module (ASFFText, ASFFCode, ASFFSpatial); got "
        f"{type(module).__name__}. The fusions 'none', 'sum' and 'concat' have no weights."
    )


class FusionModule(nn.Module):
    """Base of the six fusion modules: ``fusion(low, high) -> (fused, weights)``.

    ``adaptive`` says whether the module learns weights; ``out_channels`` is the width of the
    fused map. The weight read-outs below raise :class:`TypeError` here and are implemented by
    the three adaptive modules (:class:`ASFFText`, :class:`ASFFCode`, :class:`ASFFSpatial`).
    """

    adaptive = False

    def level_weights(self, weights: Tensor) -> tuple[Tensor, Tensor]:
        """The two factors of an ASFF module's weighted sum, ``fused = F1·a + F2·b``.

        Args:
            weights: the weights the module returned: [B, 2] (text), [B, C] (code),
                [B, 2, H, W] (spatial).

        Returns:
            ``(a, b)``, each broadcastable to [B, C, H, W]: ``a`` multiplies layer3 (F1), ``b``
            the aligned layer4 (F2). asff_text: (ω, 1 − ω) as [B, 1, 1, 1]; asff_code:
            (w, 1 − w) as [B, C, 1, 1]; asff_spatial: (α, β) as [B, 1, H, W].

        Raises:
            TypeError: the module is not one of the three adaptive modules.
        """
        raise _not_adaptive(self)

    def layer3_share(self, weights: Tensor) -> Tensor:
        """The weight given to layer3 (F1), one value per place where it can differ.

        ``asff_text``: ω, [B] (one per image); ``asff_code``: w_c, [B, C] (one per image and
        channel); ``asff_spatial``: α, [B, H, W] (one per image and pixel). Values in [0, 1].

        Raises:
            TypeError: the module is not adaptive.
        """
        raise _not_adaptive(self)

    def uniform_weight(self) -> float:
        """The weight every entry gets when all softmax logits are equal: 1 / (length of the
        softmax axis) – 1/2 for the two-level softmaxes (text, spatial), 1/C for the channel
        softmax of the released code (1/1024 for ResNet-50).

        Raises:
            TypeError: the module is not adaptive.
        """
        raise TypeError(f"uniform_weight needs an adaptive fusion module; got {type(self).__name__}.")


class NoFusion(FusionModule):
    """Plain ResNet-50: ignore layer3 and pass layer4 through.

    ``(low [B, 1024, H, W], high [B, 2048, h, w])`` → ``(high, None)``; ``out_channels = 2048``.
    """

    adaptive = False

    def __init__(self, low_channels: int = 1024, high_channels: int = 2048, **_: object) -> None:
        super().__init__()
        self.out_channels = high_channels

    def forward(self, low: Tensor, high: Tensor) -> tuple[Tensor, None]:
        return high, None


class SumFusion(FusionModule):
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


class ConcatFusion(FusionModule):
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


class GlobalWeights(nn.Module):
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

    def steps(self) -> list[tuple[str, str, nn.Module, str]]:
        """The steps before the softmax, in data-flow order, as :meth:`AdaptiveFusion.weight_branch`
        describes them: concat [F1, F2] → GAP → FC + ReLU → FC."""
        return [
            ("concat", "concat [F1, F2]", self, "inputs_cat"),
            ("gap", "global average pool", self.fc1, "input"),
            ("fc1", "FC + ReLU", self.fc1, "output"),
            ("fc2", "FC", self.fc2, "output"),
        ]


class AdaptiveFusion(FusionModule):
    """Common plumbing of the ASFF variants: alignment, optional detaching of the weights, and
    the read-outs of the weights (:meth:`level_weights`, :meth:`layer3_share`,
    :meth:`uniform_weight`, :meth:`weight_summary`, :attr:`logits_layer`, :meth:`weight_branch`)."""

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

    @property
    def logits_layer(self) -> nn.Module:
        """The layer whose output is the weight branch's pre-softmax logits."""
        raise NotImplementedError

    def weight_branch(self) -> list[tuple[str, str, nn.Module, str]]:
        """The weight branch step by step, in data-flow order, ending with the softmax.

        Returns:
            ``(key, operation, module, record)`` per step: ``key`` names the step (e.g.
            ``"concat"``, ``"fc1"``, ``"softmax"``), ``operation`` describes it in words, and a hook on
            ``module`` records its shape: ``record`` is ``"output"`` (the module's output),
            ``"input"`` (its first input), ``"inputs_cat"`` (its inputs concatenated along
            channels) or ``"weights"`` (the weights this fusion module returns).
        """
        raise NotImplementedError

    @staticmethod
    def weight_summary(w: Tensor) -> pd.DataFrame:
        """Per-image statistics of stored weights ``w`` (float64, the shape the module returns
        with N images); see :func:`fusion_weight_summary` for the columns."""
        raise NotImplementedError


class ASFFText(AdaptiveFusion):
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
        self.weights = GlobalWeights(low_channels, hidden, n_out=2)

    def forward(self, low: Tensor, high: Tensor) -> tuple[Tensor, Tensor]:
        f2 = self.align(high, low.shape[-2:])
        w = self._maybe_detach(self.weights(low, f2))  # [B, 2]
        fused = low * w[:, 0, None, None, None] + f2 * w[:, 1, None, None, None]
        return fused, w

    def level_weights(self, weights: Tensor) -> tuple[Tensor, Tensor]:
        """(ω, 1 − ω) as [B, 1, 1, 1] each (see :meth:`FusionModule.level_weights`)."""
        return weights[:, 0, None, None, None], weights[:, 1, None, None, None]

    def layer3_share(self, weights: Tensor) -> Tensor:
        """ω, [B] (see :meth:`FusionModule.layer3_share`)."""
        return self.level_weights(weights)[0].reshape(-1)

    def uniform_weight(self) -> float:
        """1/2: the softmax runs over the two levels."""
        return 0.5

    @property
    def logits_layer(self) -> nn.Module:
        """FC2 of the weight branch (2 logits per image)."""
        return self.weights.fc2

    def weight_branch(self) -> list[tuple[str, str, nn.Module, str]]:
        """concat → GAP → FC + ReLU → FC → softmax over the levels (see
        :meth:`AdaptiveFusion.weight_branch`)."""
        return [*self.weights.steps(), ("softmax", "softmax over levels → (ω, 1 − ω)", self, "weights")]

    @staticmethod
    def weight_summary(w: Tensor) -> pd.DataFrame:
        """Per-image ω of ``w`` [N, 2] (see :func:`fusion_weight_summary`)."""
        n = w.shape[0]
        if w.ndim != 2 or w.shape[1] != 2:
            raise ConfigError(f"asff_text weights must be [N, 2]; found {tuple(w.shape)}.")
        share = w[:, 0]
        return pd.DataFrame({"layer3_share": share.numpy(), "layer3_max": share.numpy(),
                             "layer3_sd": np.zeros(n), "effective_n": np.full(n, np.nan)})


class ASFFCode(AdaptiveFusion):
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
        self.weights = GlobalWeights(low_channels, hidden, n_out=low_channels)

    def forward(self, low: Tensor, high: Tensor) -> tuple[Tensor, Tensor]:
        f2 = self.align(high, low.shape[-2:])
        w = self._maybe_detach(self.weights(low, f2))  # [B, C]
        wb = w[:, :, None, None]
        return low * wb + f2 * (1.0 - wb), w

    def level_weights(self, weights: Tensor) -> tuple[Tensor, Tensor]:
        """(w, 1 − w) as [B, C, 1, 1] each (see :meth:`FusionModule.level_weights`)."""
        wc = weights[:, :, None, None]
        return wc, 1.0 - wc

    def layer3_share(self, weights: Tensor) -> Tensor:
        """w_c, [B, C] (see :meth:`FusionModule.layer3_share`)."""
        return self.level_weights(weights)[0][:, :, 0, 0]

    def uniform_weight(self) -> float:
        """1/C: the softmax runs over the C channels (1/1024 for ResNet-50)."""
        return 1.0 / self.weights.fc2.out_features

    @property
    def logits_layer(self) -> nn.Module:
        """FC2 of the weight branch (C logits per image)."""
        return self.weights.fc2

    def weight_branch(self) -> list[tuple[str, str, nn.Module, str]]:
        """concat → GAP → FC + ReLU → FC → softmax over the channels (see
        :meth:`AdaptiveFusion.weight_branch`)."""
        return [*self.weights.steps(), ("softmax", "softmax over channels → w", self, "weights")]

    @staticmethod
    def weight_summary(w: Tensor) -> pd.DataFrame:
        """Per-image statistics of the channel weights ``w`` [N, C], with the effective number
        of channels ``1 / Σ w²`` (see :func:`fusion_weight_summary`)."""
        if w.ndim != 2:
            raise ConfigError(f"asff_code weights must be [N, C]; found {tuple(w.shape)}.")
        return pd.DataFrame({"layer3_share": w.mean(1).numpy(), "layer3_max": w.max(1).values.numpy(),
                             "layer3_sd": w.std(1).numpy(), "effective_n": (1.0 / (w ** 2).sum(1)).numpy()})


class ASFFSpatial(AdaptiveFusion):
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

    def level_weights(self, weights: Tensor) -> tuple[Tensor, Tensor]:
        """(α, β) as [B, 1, H, W] each (see :meth:`FusionModule.level_weights`)."""
        return weights[:, 0:1], weights[:, 1:2]

    def layer3_share(self, weights: Tensor) -> Tensor:
        """α, [B, H, W] (see :meth:`FusionModule.layer3_share`)."""
        return self.level_weights(weights)[0][:, 0]

    def uniform_weight(self) -> float:
        """1/2: the softmax runs over the two levels at each pixel."""
        return 0.5

    @property
    def logits_layer(self) -> nn.Module:
        """The 1 × 1 convolution giving 2 logits per pixel."""
        return self.level_logits

    def weight_branch(self) -> list[tuple[str, str, nn.Module, str]]:
        """compress each level → concat → 1 × 1 conv → softmax over the levels (see
        :meth:`AdaptiveFusion.weight_branch`)."""
        return [
            ("compress_low", "1×1 conv + BN + LeakyReLU (F1)", self.compress_low, "output"),
            ("compress_high", "1×1 conv + BN + LeakyReLU (F2)", self.compress_high, "output"),
            ("concat", "concat", self.level_logits, "input"),
            ("logits_conv", "1×1 conv → level logits", self.level_logits, "output"),
            ("softmax", "softmax over levels → (α, β)", self, "weights"),
        ]

    @staticmethod
    def weight_summary(w: Tensor) -> pd.DataFrame:
        """Per-image statistics of α over the positions of ``w`` [N, 2, H, W] (see
        :func:`fusion_weight_summary`)."""
        n = w.shape[0]
        if w.ndim != 4 or w.shape[1] != 2:
            raise ConfigError(f"asff_spatial weights must be [N, 2, H, W]; found {tuple(w.shape)}.")
        a = w[:, 0].reshape(n, -1)
        sd = a.std(1) if a.shape[1] > 1 else torch.zeros(n, dtype=a.dtype)
        return pd.DataFrame({"layer3_share": a.mean(1).numpy(), "layer3_max": a.max(1).values.numpy(),
                             "layer3_sd": sd.numpy(), "effective_n": np.full(n, np.nan)})


#: The fusion registry: name → class, in the order of the ablation (``none`` is its reference).
FUSION_CLASSES: dict[str, type[FusionModule]] = {
    "none": NoFusion,
    "sum": SumFusion,
    "concat": ConcatFusion,
    "asff_text": ASFFText,
    "asff_code": ASFFCode,
    "asff_spatial": ASFFSpatial,
}
#: The six fusion names, ``ASFFResNet50(fusion=...)``.
FUSIONS: tuple[str, ...] = tuple(FUSION_CLASSES)
#: The fusions that learn weights (``model.last_fusion_weights`` is not ``None``).
ADAPTIVE_FUSIONS: tuple[str, ...] = tuple(name for name, cls in FUSION_CLASSES.items() if cls.adaptive)


# --------------------------------------------------------------------------------------------
# Reading the learned weights of trained models (chapters 06 and 07)
# --------------------------------------------------------------------------------------------
@torch.no_grad()
def fusion_weights(model: torch.nn.Module, store, batch_size: int = 128) -> torch.Tensor:
    """The learned fusion weights of every image of a store: ``model.last_fusion_weights``
    collected over forward passes (eval mode, fp32, CPU).

    Args:
        model: an :class:`~skinlesion_utils.models.ASFFResNet50` with an adaptive fusion.
        store: ``ImageTensorStore`` (uint8 [N, 3, R, R]), e.g. the test split at the run's size.
        batch_size: images per forward pass.

    Returns:
        float32 tensor: ``asff_text`` [N, 2] (ω, 1 − ω); ``asff_code`` [N, 1024] (w_c);
        ``asff_spatial`` [N, 2, H, W] (α, β).

    Raises:
        ValueError: the model keeps no fusion weights (``none``, ``sum``, ``concat``).
    """

    was_training = model.training
    model = model.cpu().eval()
    out = []
    try:
        for i in range(0, len(store), batch_size):
            model(normalise(store.images[i: i + batch_size]))
            w = getattr(model, "last_fusion_weights", None)
            if w is None:
                name = getattr(model, "fusion_name", type(model).__name__)
                raise ConfigError(f"the model ({name}) keeps no fusion weights: only {ADAPTIVE_FUSIONS} learn "
                                 "weights. Fix: pass a run of an adaptive fusion.")
            out.append(w.float().cpu())
    finally:
        model.train(was_training)
    return torch.cat(out)


def fusion_weight_summary(weights: torch.Tensor, fusion: str) -> pd.DataFrame:
    """Per-image statistics of the layer-3 weight, comparable across the three ASFF variants.

    In every variant the fused map is ``F1·w + F2·(1 − w)`` with ``F1`` = layer3 and ``w`` the
    layer-3 weight — one scalar per image (``asff_text``), one per channel (``asff_code``) or
    one per position (``asff_spatial``). Each variant's class computes its own statistics
    (:meth:`AdaptiveFusion.weight_summary`).

    Args:
        weights: output of :func:`fusion_weights` for that fusion.
        fusion: ``"asff_text"``, ``"asff_code"`` or ``"asff_spatial"``.

    Returns:
        DataFrame, one row per image: ``layer3_share`` (mean layer-3 weight over channels or
        positions: ω for ``asff_text``; exactly 1/1024 for ``asff_code``, whose channel weights
        sum to 1 by construction), ``layer3_max`` (largest layer-3 weight of the image),
        ``layer3_sd`` (spread over channels/positions; 0 for ``asff_text``), ``effective_n``
        (``1 / Σ w²`` over the ``asff_code`` channels: 1024 = uniform, 1 = one channel takes all;
        NaN for the others).
    """
    w = weights.double()
    cls = FUSION_CLASSES.get(fusion)
    if cls is None or not cls.adaptive:
        raise ConfigError(f"fusion {fusion!r} learns no weights; expected one of {ADAPTIVE_FUSIONS}.")
    return cls.weight_summary(w)


def fusion_weight_table(runs: Mapping, store, fusions: Sequence[str] = ADAPTIVE_FUSIONS,
                        seeds: Sequence[int] | None = None, model_fn: Callable | None = None) -> pd.DataFrame:
    """:func:`fusion_weight_summary` for several ablation runs, one long table.

    Args:
        runs: ``{(fusion, seed): Run}`` (from the ablation of chapter 06).
        store: the test ``ImageTensorStore`` at the runs' image size.
        fusions: which adaptive fusions to include.
        seeds: which seeds (default: all in ``runs``).
        model_fn: build the model from the run's config instead of ``models.build_model``
            (passed to ``Run.load_model``).

    Returns:
        DataFrame with ``fusion, seed, id, y_true`` and the columns of :func:`fusion_weight_summary`.
    """
    parts = []
    for (f, s), run in runs.items():
        if f not in fusions or (seeds is not None and s not in seeds):
            continue
        w = fusion_weights(run.load_model(model_fn=model_fn), store)
        df = fusion_weight_summary(w, f)
        df.insert(0, "y_true", store.labels.numpy())
        df.insert(0, "id", list(store.ids))
        df.insert(0, "seed", s)
        df.insert(0, "fusion", f)
        parts.append(df)
    if not parts:
        raise ConfigError(f"fusion_weight_table: no runs of {tuple(fusions)} among {sorted(runs)}.")
    return pd.concat(parts, ignore_index=True)


#: Below this layer-3 weight an image's fused map is, to 1 %, the projected layer4 alone.
IGNORED_BELOW = 0.01


def fusion_weight_readings(table: pd.DataFrame, ignored_below: float = IGNORED_BELOW) -> pd.DataFrame:
    """What each trained ASFF variant does with layer3, one row per fusion and seed (chapter 06).

    Reads the per-image table of :func:`fusion_weight_table` and reduces it to the numbers a
    reader needs to tell "the fusion mixes both levels" from "the fusion switched one off":

    * ``asff_text`` / ``asff_spatial``: the median layer-3 share (ω, or the mean α over
      positions) and the share of images where it is below ``ignored_below`` — layer3 then
      contributes less than 1 % and the fused map is the projected layer4;
    * ``asff_code``: the median effective number of channels ``1 / Σ w²`` through which
      layer3 enters (its channel weights sum to 1, so the other channels carry layer4).

    Args:
        table: output of :func:`fusion_weight_table` (columns ``fusion, seed, y_true,
            layer3_share, effective_n``).
        ignored_below: the layer-3 weight under which an image counts as "layer3 ignored".

    Returns:
        DataFrame with ``fusion, seed, images, median_layer3_share, share_layer3_ignored``
        (fraction of images; NaN for ``asff_code``), ``median_effective_channels`` (NaN except
        ``asff_code``), ``benign_mean``/``malignant_mean`` (mean layer-3 share per class) and
        ``reading``, one sentence generated from those numbers.

    Raises:
        ValueError: the table has no adaptive fusion or lacks a needed column.
    """
    need = {"fusion", "seed", "y_true", "layer3_share", "effective_n"}
    if missing := need - set(table.columns):
        raise ConfigError(f"fusion_weight_readings: the table lacks {sorted(missing)}; pass the output of "
                         "fusion.fusion_weight_table.")
    rows = []
    for (f, seed), part in table.groupby(["fusion", "seed"], sort=False):
        if f not in ADAPTIVE_FUSIONS:
            continue
        share = part["layer3_share"].to_numpy(float)
        by_class = part.groupby("y_true")["layer3_share"].mean()
        row = {"fusion": f, "seed": seed, "images": len(part), "median_layer3_share": float(np.median(share)),
               "share_layer3_ignored": float("nan"), "median_effective_channels": float("nan"),
               "benign_mean": float(by_class.get(0, np.nan)), "malignant_mean": float(by_class.get(1, np.nan))}
        if f == "asff_code":
            n_eff = float(np.median(part["effective_n"].to_numpy(float)))
            row["median_effective_channels"] = n_eff
            row["reading"] = (f"layer3 enters through about {n_eff:.3g} of 1,024 channels (median effective "
                              "number); every other channel of the fused map is projected layer4")
        else:
            ignored = float(np.mean(share < ignored_below))
            row["share_layer3_ignored"] = ignored
            what = "ω" if f == "asff_text" else "mean α"
            if ignored >= 0.9:
                row["reading"] = (f"{what} < {ignored_below:g} on {ignored:.0%} of the images: the fused map is "
                                  "the projected layer4 alone, layer3 is switched off")
            elif ignored > 0.1:
                row["reading"] = (f"{what} < {ignored_below:g} on {ignored:.0%} of the images: layer3 is switched "
                                  "off for some images and mixed in for others")
            else:
                row["reading"] = (f"both levels are mixed: median {what} {np.median(share):.2f} (benign "
                                  f"{row['benign_mean']:.2f}, malignant {row['malignant_mean']:.2f})")
        rows.append(row)
    if not rows:
        raise ConfigError(f"fusion_weight_readings: no adaptive fusion in the table; found "
                         f"{sorted(set(table['fusion']))}, expected some of {ADAPTIVE_FUSIONS}.")
    return pd.DataFrame(rows)
