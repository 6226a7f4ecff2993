"""Batch augmentation on the device, seeded by a ``torch.Generator`` (taught in chapter 04).

The paper's Keras code trains with ``ImageDataGenerator(width_shift_range=0.1,
height_shift_range=0.1, horizontal_flip=True)``: every image is shifted by up to ±10 % of
its width and height (real-valued, bilinear, border pixels repeated — Keras' ``fill_mode=
"nearest"``) and mirrored left–right with probability ½. :class:`AugmentConfig` describes
that policy and a few optional extras (vertical flip, rotation, colour jitter), and
:func:`augment_batch` applies it to a whole batch at once, on whatever device the batch is on.

All random numbers are drawn on the CPU from the generator you pass (a handful of numbers
per image), then moved to the batch's device: the same seed gives the same augmentation on
CPU, CUDA and MPS, and the generator's state is a small CPU tensor that a checkpoint can save.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from .errors import ConfigError

#: ImageNet channel statistics (RGB, for images scaled to [0, 1]).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class AugmentConfig:
    """One augmentation policy (all probabilities in [0, 1], fractions of the image side).

    Attributes:
        hflip: probability of a left–right mirror.
        vflip: probability of an up–down mirror (dermoscopy has no "up"; the paper does not use it).
        shift: maximum translation as a fraction of the side (Keras ``width/height_shift_range``).
        rotation: maximum rotation in degrees (uniform in ±rotation).
        brightness: maximum relative brightness change (factor uniform in 1 ± brightness).
        contrast: maximum relative contrast change.
        saturation: maximum relative saturation change.
    """

    hflip: float = 0.5
    vflip: float = 0.0
    shift: float = 0.1
    rotation: float = 0.0
    brightness: float = 0.0
    contrast: float = 0.0
    saturation: float = 0.0

    def __post_init__(self):
        for name in ("hflip", "vflip"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ConfigError(f"AugmentConfig.{name} is a probability: expected 0..1, found {v}.")
        for name in ("shift", "rotation", "brightness", "contrast", "saturation"):
            v = getattr(self, name)
            if v < 0:
                raise ConfigError(f"AugmentConfig.{name} is a maximum: expected ≥ 0, found {v}.")
        if self.shift >= 1:
            raise ConfigError(f"AugmentConfig.shift is a fraction of the side: expected < 1, found {self.shift}.")

    @property
    def is_identity(self) -> bool:
        """True when the policy never changes an image."""
        return all(v == 0 for v in asdict(self).values())

    def to_dict(self) -> dict:
        """Plain dict (for checkpoints and results files)."""
        return asdict(self)


#: The paper's policy (its Keras ``ImageDataGenerator`` settings).
PAPER_AUGMENT = AugmentConfig(hflip=0.5, vflip=0.0, shift=0.1)
#: No augmentation.
NO_AUGMENT = AugmentConfig(hflip=0.0, vflip=0.0, shift=0.0)


def as_augment(augment) -> AugmentConfig:
    """Accept an :class:`AugmentConfig`, a dict of its fields, ``"paper"``, or ``False``/``"none"``."""
    if isinstance(augment, AugmentConfig):
        return augment
    if augment is False or augment == "none":
        return NO_AUGMENT
    if augment == "paper":
        return PAPER_AUGMENT
    if isinstance(augment, dict):
        try:
            return AugmentConfig(**augment)
        except TypeError as exc:
            raise ConfigError(
                f"Unknown augmentation field in {augment}: {exc}. "
                f"Valid fields: {', '.join(AugmentConfig.__dataclass_fields__)}."
            ) from None
    raise ConfigError(
        f"augment must be an AugmentConfig, a dict of its fields, 'paper', 'none' or False; found {augment!r}."
    )


def _uniform(n: int, half_width: float, generator: torch.Generator) -> torch.Tensor:
    """n numbers uniform in [-half_width, half_width] (float32, CPU)."""
    return (torch.rand(n, generator=generator) * 2 - 1) * half_width


def augment_batch(x: torch.Tensor, cfg: AugmentConfig, generator: torch.Generator) -> torch.Tensor:
    """Apply ``cfg`` to a batch, each image with its own random draw.

    Args:
        x: uint8 or float [B, 3, H, W] in 0..255, on any device.
        cfg: the policy.
        generator: a CPU ``torch.Generator``; advanced by a fixed number of draws per call
            for a given ``cfg`` and B (so runs are reproducible and resumable).

    Returns:
        float32 [B, 3, H, W] in 0..255 on ``x``'s device (a new tensor).
    """
    B, _, H, W = x.shape
    dev = x.device
    x = x.float()
    if cfg.hflip > 0:
        m = (torch.rand(B, generator=generator) < cfg.hflip).to(dev)
        x = torch.where(m[:, None, None, None], x.flip(3), x)
    if cfg.vflip > 0:
        m = (torch.rand(B, generator=generator) < cfg.vflip).to(dev)
        x = torch.where(m[:, None, None, None], x.flip(2), x)
    if cfg.shift > 0 or cfg.rotation > 0:
        # affine_grid works in normalised coordinates [-1, 1]: a shift of s·W pixels is 2·s.
        tx = _uniform(B, 2 * cfg.shift, generator) if cfg.shift > 0 else torch.zeros(B)
        ty = _uniform(B, 2 * cfg.shift, generator) if cfg.shift > 0 else torch.zeros(B)
        ang = _uniform(B, math.radians(cfg.rotation), generator) if cfg.rotation > 0 else torch.zeros(B)
        cos, sin = torch.cos(ang), torch.sin(ang)
        theta = torch.stack([torch.stack([cos, -sin, tx], 1), torch.stack([sin, cos, ty], 1)], 1)
        grid = F.affine_grid(theta.to(dev), [B, 3, H, W], align_corners=False)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    if cfg.brightness > 0:
        f = (1 + _uniform(B, cfg.brightness, generator)).to(dev)
        x = x * f[:, None, None, None]
    if cfg.contrast > 0:
        f = (1 + _uniform(B, cfg.contrast, generator)).to(dev)[:, None, None, None]
        mean = _grey(x).mean(dim=(1, 2, 3), keepdim=True)
        x = (x - mean) * f + mean
    if cfg.saturation > 0:
        f = (1 + _uniform(B, cfg.saturation, generator)).to(dev)[:, None, None, None]
        g = _grey(x)
        x = (x - g) * f + g
    if cfg.brightness > 0 or cfg.contrast > 0 or cfg.saturation > 0:
        x = x.clamp(0, 255)
    return x


def _grey(x: torch.Tensor) -> torch.Tensor:
    """ITU-R 601 luma of float [B,3,H,W] → [B,1,H,W]."""
    return (0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3])


def normalise(x: torch.Tensor) -> torch.Tensor:
    """float [B,3,H,W] in 0..255 → ImageNet-normalised float32 [B,3,H,W]."""
    mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(1, 3, 1, 1) * 255
    std = torch.tensor(IMAGENET_STD, device=x.device).view(1, 3, 1, 1) * 255
    return (x.float() - mean) / std
