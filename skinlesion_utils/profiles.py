"""The one switch between a quick CPU run and the real GPU run (taught in chapter 00).

``SKINLESION_PROFILE`` selects a :class:`Profile`:

* ``ci``   – CPU, small images, few epochs: every chapter runs in minutes on 2 cores.
  This is what CI executes and what the stored notebook outputs come from.
* ``full`` – GPU, 224 px, ImageNet weights, an epoch budget that fits one free Colab T4
  session per chapter. The paper's exact 500-epoch protocol is the ``paper`` recipe.

With ``SKINLESION_PROFILE`` unset, a machine with a CUDA GPU runs ``full`` and any other ``ci``
(:func:`profile_choice`). :data:`T4_THROUGHPUT` and :func:`t4_minutes` are the one formula
behind every "~N min on a Colab T4" the book prints (images × epochs ÷ throughput).

Every chapter calls :func:`profile` once and reads its settings from the returned object,
so the same code runs under both profiles.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

from .errors import ConfigError

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


def profile_choice() -> tuple[str, str]:
    """The profile used when none is named, and why — the one rule:

    1. ``$SKINLESION_PROFILE`` when it is set (CI and nbval always set it);
    2. else ``"full"`` when a CUDA GPU is visible: a Colab GPU runtime opened with nothing set
       runs the real settings, and the chapter header says so loudly, with how to choose ``ci``;
    3. else ``"ci"``.

    Returns:
        ``(name, reason)``, e.g. ``("full", "SKINLESION_PROFILE not set and a CUDA GPU is present")``.
    """
    env = os.environ.get(ENV_PROFILE, "").strip()
    if env:
        return env.lower(), f"{ENV_PROFILE}={env}"
    import torch

    if torch.cuda.is_available():
        return "full", f"{ENV_PROFILE} not set and a CUDA GPU is present"
    return "ci", f"{ENV_PROFILE} not set and no CUDA GPU"


def profile(name: str | None = None) -> Profile:
    """Return the active :class:`Profile`.

    Args:
        name: ``"ci"`` or ``"full"``; default :func:`profile_choice` (``$SKINLESION_PROFILE``,
            else ``"full"`` when a CUDA GPU is visible, else ``"ci"``).

    Raises:
        ConfigError: for any other name, saying which names are valid and how to set them.
    """
    chosen = name if name is not None else profile_choice()[0]
    chosen = chosen.strip().lower()
    if chosen not in PROFILES:
        raise ConfigError(
            f"Unknown profile {chosen!r} (from {'argument' if name is not None else ENV_PROFILE}). "
            f"Valid profiles: {', '.join(sorted(PROFILES))}. "
            f"Fix: export {ENV_PROFILE}=ci (CPU, minutes) or {ENV_PROFILE}=full (GPU, 224 px)."
        )
    return Profile(name=chosen, cache_dir=default_cache_dir(), **PROFILES[chosen])


def as_profile(prof: "Profile | str | None" = None) -> Profile:
    """A :class:`Profile` from a profile, a profile name or ``None`` (the active one)."""
    return prof if isinstance(prof, Profile) else profile(prof)


def profile_name(prof: "Profile | str | None" = None) -> str:
    """The name of a profile, of a profile name (any results profile, e.g. ``"scale128"``,
    is taken as it is) or of the active profile (``None``)."""
    if prof is None:
        return profile().name
    return prof if isinstance(prof, str) else prof.name


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


# ------------------------------------------------------------------ time estimates on a T4
# ESTIMATES, not measurements: no T4 run of the chapters exists yet. The anchor is NVIDIA's
# published ResNet-50 figure; the other models are scaled by their training speed relative to
# ResNet-50 in timm's published training benchmark. A chapter that ran under `full` writes its
# measured time (results/full/<chapter>/timing.json), which its header then prints beside this.

#: NVIDIA DeepLearningExamples, "ResNet50 v1.5 For PyTorch" README, "Inference performance:
#: NVIDIA T4", mixed precision, batch 32: 1,128 img/s (FP32: 420 img/s).
NVIDIA_T4_RESNET50_AMP_INFERENCE = 1128.0
#: A training step costs about three forward passes (forward + a backward of twice its cost), so
#: training images/s ≈ inference images/s ÷ 3, and an evaluation pass is 3× a training pass.
FORWARDS_PER_TRAINING_STEP = 3
_T4_RESNET50 = NVIDIA_T4_RESNET50_AMP_INFERENCE / FORWARDS_PER_TRAINING_STEP  # 376 img/s
#: timm (huggingface/pytorch-image-models) results/benchmark-train-amp-nchw-pt112-cu113-rtx3090.csv:
#: training samples/s, AMP, RTX 3090, 224 px (xception: 299 px there, scaled by (299/224)² to 224).
_TIMM_RTX3090_TRAIN = {"resnet50": 826.06, "resnet34": 1622.41, "resnet101": 568.98, "vgg16": 465.36,
                       "densenet121": 730.11, "mobilenet_v2": 1832.14, "xception": 385.56 * (299 / 224) ** 2}
_TIMM_SOURCE = "NVIDIA's T4 ResNet-50 figure × this model's speed relative to ResNet-50 in timm's RTX 3090 AMP training benchmark"
_AS_RESNET50 = ("no published T4 or timm figure: taken as slow as ResNet-50 (it needs fewer FLOPs, so its "
                "time is over- rather than under-estimated)")

#: Training images/s on a Colab T4 at 224 px, fp16 autocast + GradScaler (what
#: ``train.amp_for_device`` picks on a T4), batch 32, per ``models.build_model`` name, with the
#: source of each number: ``{model: (images_per_second, source)}``.
T4_THROUGHPUT: dict[str, tuple[float, str]] = {
    "resnet50": (_T4_RESNET50, "NVIDIA DeepLearningExamples ResNet-50 v1.5 (PyTorch), T4 mixed-precision inference "
                               "at batch 32, 1,128 img/s, ÷ 3 forward passes per training step"),
    **{name: (_T4_RESNET50 * speed / _TIMM_RTX3090_TRAIN["resnet50"], _TIMM_SOURCE)
       for name, speed in _TIMM_RTX3090_TRAIN.items() if name != "resnet50"},
    "asff_resnet50": (_T4_RESNET50 * 0.90, "ResNet-50's figure × 0.90: ASFF-ResNet50 / ResNet-50 training throughput "
                                           "as chapter 04 measures it on the CPU (0.90–0.93)"),
    **{name: (_T4_RESNET50, _AS_RESNET50) for name in ("lenet5", "alexnet", "squeezenet1_1", "googlenet")},
}


def t4_minutes(work) -> float:
    """Minutes of GPU work on a Colab T4: Σ images ÷ :data:`T4_THROUGHPUT` of each pass.

    Args:
        work: ``(model, images, kind)`` triples — ``images`` already multiplied by the epochs,
            ``kind`` ``"train"`` (training steps), ``"gradcam"`` (a forward and a backward pass
            per image: costed as a training step) or ``"eval"`` (forward passes only, 3× faster).

    Raises:
        KeyError: a model without an entry in :data:`T4_THROUGHPUT` (add one, with its source).
    """
    seconds = 0.0
    for model, images, kind in work:
        if kind not in ("train", "gradcam", "eval"):
            raise ConfigError(f"kind must be 'train', 'gradcam' or 'eval'; found {kind!r}.")
        if model not in T4_THROUGHPUT:
            raise KeyError(f"no T4 throughput for model {model!r}. Fix: add it to profiles.T4_THROUGHPUT with its source.")
        rate = T4_THROUGHPUT[model][0] * (FORWARDS_PER_TRAINING_STEP if kind == "eval" else 1)
        seconds += images / rate
    return seconds / 60
