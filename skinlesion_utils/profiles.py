"""The one switch between a quick CPU run and the real GPU run (taught in chapter 00).

``SKINLESION_PROFILE`` selects a :class:`Profile`:

* ``ci``   – CPU, small images, few epochs: every chapter runs in minutes on 2 cores.
  This is what CI executes and what the stored notebook outputs come from.
* ``full`` – GPU, 224 px, ImageNet weights, an epoch budget that fits one free Colab T4
  session per chapter. The paper's exact 500-epoch protocol is the ``paper`` recipe.

Every chapter calls :func:`profile` once and reads its settings from the returned object,
so the same code runs under both profiles.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

ENV_PROFILE = "SKINLESION_PROFILE"
ENV_CACHE = "SKINLESION_CACHE"


@dataclass(frozen=True)
class Profile:
    """Frozen settings shared by every chapter.

    Attributes:
        name: ``"ci"`` or ``"full"``.
        image_size: side of the square input in pixels (images are resized once, on load).
        epochs: epoch budget of the main model (chapter 04).
        batch_size: training batch size.
        bench_epochs: epoch budget per model in the many-model chapters (02, 06).
        bench_image_size: image size in the many-model chapters (02, 06).
        bench_train_images: how many training images the many-model chapters (02, 06) train on
            (a fixed class-stratified subset of the training split, ``data.stratified_subset``);
            ``None`` = all 2,637.
        seeds: seeds of the seed-repeated experiments (chapter 06).
        recipe: default training recipe (``"fast"`` or ``"paper"``).
        pretrained: start from ImageNet weights (needs the internet once).
        device: ``"auto"`` (cuda > mps > cpu) or an explicit torch device string.
        num_workers: DataLoader workers for the on-disk paths (the tensor path needs none).
        cam_image_size: image size of the Grad-CAM chapter (07).
        cache_dir: where tensor stores, runs and downloads are cached (never the data folder).
    """

    name: str
    image_size: int
    epochs: int
    batch_size: int
    bench_epochs: int
    bench_image_size: int
    bench_train_images: int | None
    seeds: tuple[int, ...]
    recipe: str
    pretrained: bool
    device: str
    num_workers: int
    cam_image_size: int
    cache_dir: Path

    def with_(self, **changes) -> "Profile":
        """A copy with some fields changed, e.g. ``profile().with_(epochs=3)``."""
        return replace(self, **changes)


def default_cache_dir() -> Path:
    """``$SKINLESION_CACHE`` if set, else ``.cache`` in the project root when run from a
    checkout, else the user cache directory (``~/.cache/skinlesion`` on Linux)."""
    env = os.environ.get(ENV_CACHE)
    if env:
        return Path(env).expanduser().resolve()
    root = Path(__file__).resolve().parent.parent
    if (root / "pyproject.toml").exists() and (root / "chapters").is_dir():
        return root / ".cache"
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("skinlesion"))


PROFILES: dict[str, dict] = {
    "ci": dict(
        image_size=64,
        epochs=12,
        batch_size=64,
        bench_epochs=2,
        bench_image_size=64,
        bench_train_images=2000,
        seeds=(0, 1),
        recipe="fast",
        pretrained=False,
        device="cpu",
        num_workers=0,
        cam_image_size=128,
    ),
    "full": dict(
        image_size=224,
        epochs=30,
        batch_size=32,
        bench_epochs=10,
        bench_image_size=224,
        bench_train_images=None,
        seeds=(0, 1, 2, 3, 4),
        recipe="fast",
        pretrained=True,
        device="auto",
        num_workers=2,
        cam_image_size=224,
    ),
}


def profile(name: str | None = None) -> Profile:
    """Return the active :class:`Profile`.

    Args:
        name: ``"ci"`` or ``"full"``; default ``$SKINLESION_PROFILE``, else ``"ci"``.

    Raises:
        ValueError: for any other name, saying which names are valid and how to set them.
    """
    chosen = name if name is not None else os.environ.get(ENV_PROFILE, "ci")
    chosen = chosen.strip().lower()
    if chosen not in PROFILES:
        raise ValueError(
            f"Unknown profile {chosen!r} (from {'argument' if name is not None else ENV_PROFILE}). "
            f"Valid profiles: {', '.join(sorted(PROFILES))}. "
            f"Fix: export {ENV_PROFILE}=ci (CPU, minutes) or {ENV_PROFILE}=full (GPU, 224 px)."
        )
    return Profile(name=chosen, cache_dir=default_cache_dir(), **PROFILES[chosen])


def resolve_device(device: str = "auto") -> "torch.device":  # noqa: F821
    """``"auto"`` → cuda if available, else mps, else cpu; anything else is passed to torch."""
    import torch

    if device != "auto":
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")
