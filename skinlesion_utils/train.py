"""The one training loop every chapter uses: recipes, precision, exact resume, DDP (chapter 04).

Taught in chapter 04 (``chapters/04_training``); chapters 02, 05, 06 and 08 call it through
:func:`skinlesion_utils.runs.get_or_train`.

* :data:`RECIPES` — ``"paper"`` (the paper's Table 1: optimizer and constant learning rate per
  model, 500 epochs), ``"released_code"`` (the released scripts: Adam 1e-5 for every model,
  batch 32, 500 epochs, Keras shift + horizontal-flip augmentation) and ``"fast"`` (AdamW + one-cycle
  schedule + label smoothing: what the ``ci`` profile uses to train in minutes on a CPU).
* :func:`fit` — trains a model on an :class:`~skinlesion_utils.data.ImageTensorStore`.
  The uint8 images move to the device once; each batch is indexed from them, augmented on
  the device (:mod:`skinlesion_utils.augment`), normalised with the ImageNet mean/std and fed
  to the model under autocast in the precision :func:`amp_for_device` picks for the hardware
  (bf16 from compute capability 8.0 and on CPUs with native bf16, fp16 + GradScaler on a T4/V100).
  Every epoch writes a self-describing checkpoint (``last.pt``; ``best.pt`` holds the weights
  of the epoch with the best validation ROC AUC) and the history (CSV + JSON).
* Resume is exact: the checkpoint holds the model, optimizer, scheduler, scaler, every random
  number generator and the history, so a run killed at any moment and resumed ends with the
  same weights as an uninterrupted run (on CPU, bit for bit — the tests check it).
* Multi-GPU: launch the same script with ``torchrun --nproc_per_node N``; :func:`fit` joins the
  process group (NCCL on GPU, gloo on CPU), shards every epoch's permutation across ranks
  (like ``DistributedSampler``, padding by repetition) and wraps the model in DDP.
  ``batch_size`` is the *global* batch: each of the N processes takes ``batch_size // N``.
* :func:`predict` — P(malignant) for every image of a store.

The checkpoint format lives in :mod:`skinlesion_utils.checkpoints`, the validation split
(``splits.train_val_split``) in :mod:`skinlesion_utils.splits`, the recipe's per-model table
of the paper in ``runs.resolved_recipe`` (the loop never reads the paper's claims).
:func:`fit` reads as its steps: place the process (:func:`_place`), plan the run
(:func:`_plan`), move the data once (:func:`_to_device`), restore a checkpoint
(:func:`_resume`), then per epoch :func:`train_epoch`, validation and :func:`_save_epoch`.

CPU mixed precision, decided by measurement (AMD EPYC Zen 4 with ``avx512_bf16``, 2 threads,
ResNet-50 at 64 px, training images/s): fp32 92, bf16 autocast 152, bf16 + channels_last 176.
``amp="auto"`` therefore uses bf16 on CPUs with native bf16 (``avx512_bf16``/``amx_bf16`` on
x86, ``bf16`` on Arm) and fp32 elsewhere (emulated bf16 is slower than fp32). Either way a CPU
run is deterministic: same config and thread count → identical weights.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import random
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import pandas as pd
import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F
from sklearn.metrics import roc_auc_score
from tqdm.auto import tqdm

from .augment import PAPER_AUGMENT, AugmentConfig, as_augment, augment_batch, normalise
from .checkpoints import (
    CHECKPOINT_FORMAT,
    CheckpointError,
    load_weights,
    make_model_spec,
    check_best,
    read_checkpoint,
    released_optimizer_state,
    save_checkpoint,
)
from .errors import ConfigError
from .models import unwrap_model
from .profiles import PROFILES, resolve_device
from .results import sweep_temporaries, write_text



# ------------------------------------------------------------------------------- recipes


@dataclass(frozen=True)
class Recipe:
    """A training recipe: optimizer, schedule, loss and augmentation defaults.

    Attributes:
        name: registry key.
        description: one line for tables.
        optimizer: ``"adam"``, ``"adamw"`` or ``"sgd"`` (SGD uses Nesterov momentum).
        lr: peak learning rate (``schedule="onecycle"``) or the constant one.
        weight_decay: decoupled (AdamW) or L2 (Adam/SGD) weight decay; never on biases and
            normalisation weights.
        momentum: SGD momentum.
        schedule: ``"constant"``, ``"onecycle"`` (warm up for ``warmup_fraction`` of the steps,
            then cosine down to ``lr / 1e4``) or ``"cosine"`` (cosine to 0, no warm-up).
        warmup_fraction: share of the steps spent warming up (onecycle only).
        label_smoothing: cross-entropy label smoothing (0 = none).
        epochs: default epoch budget.
        batch_size: default global batch size.
        augment: default augmentation policy.
        grad_clip: max global gradient norm, or ``None``.
        per_model: take optimizer and learning rate per model from the paper's Table 1
            (``skinlesion_utils.paper.recipe_table()``, passed in by ``runs``) when it lists
            the model (the ``paper`` recipe; ``released_code`` uses one setting for all).
    """

    name: str
    description: str
    optimizer: str
    lr: float
    weight_decay: float = 0.0
    momentum: float = 0.9
    schedule: str = "constant"
    warmup_fraction: float = 0.25
    label_smoothing: float = 0.0
    epochs: int = 30
    batch_size: int = 64
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    grad_clip: float | None = None
    per_model: bool = False

    def for_model(self, model_name: str | None, table: Mapping[str, Mapping] | None) -> "Recipe":
        """This recipe with a per-model optimizer and learning rate, when it takes them
        (``per_model``) and ``table`` (model name → ``{"optimizer", "lr"}``; the ``paper``
        recipe's is ``paper.recipe_table()``, passed in by ``runs``) lists the model."""
        if not self.per_model or not model_name or not table:
            return self
        row = table.get(model_name)
        if not row:
            return self
        opt = str(row.get("optimizer", self.optimizer)).lower()
        lr = float(row.get("lr", self.lr))
        return replace(self, optimizer=opt, lr=lr)

    def to_dict(self) -> dict:
        """Plain dict (for checkpoints and results files)."""
        d = asdict(self)
        d["augment"] = self.augment.to_dict()
        return d


#: The training recipes.
#:
#: ``paper`` — what the paper prints (arXiv 2510.03876v2, section 3.1 and Table 1): per model
#: the optimizer and constant learning rate of Table 1 (e.g. ResNet-50 SGD 5e-4, ASFF ResNet-50
#: Adam 1e-4, LeNet-5 and VGG-16 SGD 1e-4), 500 epochs. ``runs.resolved_recipe`` passes
#: ``paper.recipe_table()`` (Table 1 per model id), so every model of ``models.list_models()``
#: trains with its own row; the defaults below (Adam 1e-4, ASFF ResNet-50's row) apply only to a
#: model name Table 1 does not list. The ablation variants of chapter 06 are built as
#: ``asff_resnet50`` with another fusion, so they all take ASFF ResNet-50's row — including the
#: no-fusion baseline, which Table 1's ResNet-50 row would train with SGD 5e-4. What the paper
#: does not print (batch size, augmentation, schedule, SGD momentum) is filled in from the
#: released code (batch 32, shift + horizontal flip, constant) or this class's defaults
#: (Nesterov momentum 0.9 for SGD). Validation is a split of the training images.
#:
#: ``released_code`` — what the released scripts do (``code/train_asff_resnet50.py`` and every
#: baseline script of github.com/Grapesea/ASFF-ResNet50-enhanced @eb7b54c): Keras
#: ``Adam(learning_rate=1e-5)`` for every model (no row of Table 1), no schedule, batch 32, 500
#: epochs, categorical cross-entropy, ``ImageDataGenerator(width_shift_range=0.1,
#: height_shift_range=0.1, horizontal_flip=True)``. The scripts also validate on the test split
#: every epoch and keep the last epoch's weights; this engine never validates on the test split
#: (it validates on a split of the training images) and the run cache evaluates ``last.pt``, so
#: a run with this recipe copies the optimizer, schedule and augmentation, not the test-set
#: validation.
#:
#: ``fast`` — the ``ci`` profile's recipe: AdamW (weight decay 0.05 on weights, none on biases
#: and norms), one-cycle lr peaking at 2e-3 after 25 % of the steps, label smoothing 0.1,
#: shift 0.1 + horizontal and vertical flips. Chosen on a validation split carved from the
#: training images (15 %, stratified) for ASFF-ResNet50 (``asff_text``) from scratch at 64 px,
#: batch 64, 12 epochs, bf16 autocast on CPU. Validation accuracy / ROC AUC at the last epoch:
#: peak lr 2e-3 → 0.841 / 0.933 (seed 0) and 0.838 / 0.922 (seed 1); 1e-3 → 0.838 / 0.919;
#: batch 32 at 2e-3 was unstable (loss spikes) and worse. Test results of the chosen setting
#: (reported, not used to choose): accuracy 0.871 / ROC AUC 0.940 (seed 0), 0.871 / 0.943 (seed 1).
RECIPES: dict[str, Recipe] = {
    "paper": Recipe(
        name="paper",
        description="The paper's Table 1: per-model optimizer and constant lr (paper.recipe_table(); "
        "Adam 1e-4 for a model Table 1 does not list), 500 epochs; batch 32 and shift 0.1 + "
        "horizontal flip from the released code (the paper prints neither).",
        optimizer="adam",
        lr=1e-4,
        schedule="constant",
        epochs=500,
        batch_size=32,
        augment=PAPER_AUGMENT,
        per_model=True,
    ),
    "released_code": Recipe(
        name="released_code",
        description="The released scripts: Adam lr 1e-5 (constant) for every model, batch 32, 500 "
        "epochs, shift 0.1 + horizontal flip, plain cross-entropy (they validate on the test "
        "split and keep the last epoch; this engine validates on a training split).",
        optimizer="adam",
        lr=1e-5,
        schedule="constant",
        epochs=500,
        batch_size=32,
        augment=PAPER_AUGMENT,
    ),
    "fast": Recipe(
        name="fast",
        description="AdamW (wd 0.05) + one-cycle lr 2e-3, label smoothing 0.1, shift 0.1 + "
        "horizontal and vertical flips: trains from scratch in minutes on a CPU.",
        optimizer="adamw",
        lr=2e-3,
        weight_decay=0.05,
        schedule="onecycle",
        warmup_fraction=0.25,
        label_smoothing=0.1,
        epochs=PROFILES["ci"]["epochs"],  # made for the ci budget: its defaults are the ci profile's
        batch_size=PROFILES["ci"]["batch_size"],
        augment=AugmentConfig(hflip=0.5, vflip=0.5, shift=0.1),
        grad_clip=None,
    ),
}


def get_recipe(recipe: str | Recipe) -> Recipe:
    """A :class:`Recipe` from its name (or the recipe itself)."""
    if isinstance(recipe, Recipe):
        return recipe
    try:
        return RECIPES[recipe]
    except KeyError:
        raise ConfigError(
            f"Unknown recipe {recipe!r}. Valid recipes: {', '.join(RECIPES)}. "
            "Fix: pass one of these names, or a Recipe object."
        ) from None


#: Devices on which ``torch.optim.Adam``/``AdamW`` have a fused kernel (one pass over every
#: parameter instead of a loop of small ops). Measured on 2 CPU cores, ASFF-ResNet50 at 64 px,
#: batch 64, bf16: 172 → 182 training images/s.
FUSED_ADAM_DEVICES = ("cpu", "cuda")


def make_optimizer(model: nn.Module, recipe: Recipe, lr: float | None = None) -> torch.optim.Optimizer:
    """The recipe's optimizer; weight decay only on weights with ≥ 2 dimensions.

    Adam and AdamW use PyTorch's fused implementation when every parameter is a floating-point
    tensor on a device of :data:`FUSED_ADAM_DEVICES` (the same update rule, computed in one
    kernel), else the default one. Call it after moving the model to its device.
    """
    lr = recipe.lr if lr is None else lr
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.ndim >= 2 else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": recipe.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    params = decay + no_decay
    fused = bool(params) and all(p.device.type in FUSED_ADAM_DEVICES and p.is_floating_point() for p in params)
    name = recipe.optimizer.lower()
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr, fused=fused or None)
    if name == "adam":
        return torch.optim.Adam(groups, lr=lr, fused=fused or None)
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=recipe.momentum, nesterov=recipe.momentum > 0)
    raise ConfigError(f"Unknown optimizer {recipe.optimizer!r} in recipe {recipe.name!r}; use adam, adamw or sgd.")


def make_scheduler(optimizer, recipe: Recipe, total_steps: int, lr: float | None = None):
    """The recipe's per-step learning-rate schedule over ``total_steps`` optimizer steps.

    ``onecycle`` (Smith & Topin's one-cycle policy, as ``torch.optim.lr_scheduler.OneCycleLR``
    with cosine phases, written as a ``LambdaLR`` so that it also works for runs of very few
    steps): the lr rises from ``lr/25`` to ``lr`` during the first ``warmup_fraction`` of the
    steps, then falls along a cosine to ``lr/1e4``. ``cosine``: from ``lr`` to 0.
    ``constant``: ``lr`` throughout.
    """
    if recipe.schedule not in ("onecycle", "cosine", "constant"):
        raise ConfigError(f"Unknown schedule {recipe.schedule!r} in recipe {recipe.name!r}; use constant, onecycle or cosine.")
    warmup = recipe.warmup_fraction if recipe.schedule == "onecycle" else 0.0
    start, end = (1 / 25, 1e-4) if recipe.schedule == "onecycle" else (1.0, 0.0)
    if recipe.schedule == "constant":
        start = end = 1.0
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda=_Cycle(int(total_steps), warmup, start, end))


class _Cycle:
    """lr multiplier at step t: cosine warm-up start→1 over the first ``warmup`` share of
    ``total`` steps, then cosine 1→end (a plain object, so LambdaLR checkpoints its fields)."""

    def __init__(self, total: int, warmup: float, start: float, end: float):
        self.total, self.warm_steps = max(int(total), 1), int(round(warmup * max(int(total), 1)))
        self.start, self.end = float(start), float(end)

    def __call__(self, step: int) -> float:
        def cos(a: float, b: float, frac: float) -> float:
            return b + (a - b) * (1 + math.cos(math.pi * min(max(frac, 0.0), 1.0))) / 2

        if step < self.warm_steps:
            return cos(self.start, 1.0, step / self.warm_steps)
        rest = self.total - self.warm_steps
        return cos(1.0, self.end, (step - self.warm_steps) / max(rest - 1, 1))


# ------------------------------------------------------------------------- small helpers


def seed_everything(seed: int, deterministic: bool = False) -> None:
    """Seed python, numpy and torch (CPU and all GPUs) — call it before building a model.

    Args:
        seed: the one seed (numpy takes it modulo 2**32).
        deterministic: also ask torch for deterministic kernels (warning where one has none)
            and switch off cuDNN's autotuner: what every chapter header does on a CPU.
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        if torch.backends.cudnn.is_available():
            torch.backends.cudnn.benchmark = False


def cpu_has_native_bf16() -> bool:
    """True when the CPU computes bf16 in hardware (x86 ``avx512_bf16``/``amx_bf16``, Arm ``bf16``)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    for line in text.splitlines():
        key = line.split(":", 1)[0].strip().lower()
        if key in ("flags", "features"):
            flags = set(line.split(":", 1)[1].split())
            return bool(flags & {"avx512_bf16", "amx_bf16", "bf16"})
    return False


#: CUDA compute capability from which bf16 runs on tensor cores (Ampere, sm_80: A100, L4, RTX 30xx,
#: H100). Below it ``torch.cuda.is_bf16_supported()`` may still answer True — bf16 is *emulated*
#: there (a T4, sm_75, runs it slower than fp16 and without tensor cores).
BF16_MIN_CAPABILITY = (8, 0)
#: From Volta (sm_70: V100; Turing sm_75: T4) fp16 runs on tensor cores; needs a GradScaler.
FP16_MIN_CAPABILITY = (7, 0)


def amp_for_device(device: torch.device | str) -> torch.dtype | None:
    """The precision the hardware of ``device`` runs fastest (``None`` = fp32): the one rule.

    * CUDA, compute capability >= 8.0 (A100, L4, H100, RTX 30xx/40xx) → bf16;
    * CUDA, 7.0 <= capability < 8.0 (V100, T4, RTX 20xx) → fp16, with a ``GradScaler``
      (:func:`fit` turns it on for fp16);
    * CUDA below 7.0 (no tensor cores: P100, K80), MPS → fp32;
    * CPU → bf16 when the CPU has native bf16 (:func:`cpu_has_native_bf16`), else fp32.

    The capability asked is that of ``device`` itself (``cuda:1`` is asked about GPU 1).
    :func:`resolve_amp` (``amp="auto"``), the header of every chapter and the GPU benchmark's
    throughput modes all use this function.
    """
    device = torch.device(device)
    if device.type == "cuda":
        capability = tuple(torch.cuda.get_device_capability(device))
        if capability >= BF16_MIN_CAPABILITY:
            return torch.bfloat16
        return torch.float16 if capability >= FP16_MIN_CAPABILITY else None
    if device.type == "cpu":
        return torch.bfloat16 if cpu_has_native_bf16() else None
    return None


def resolve_amp(amp: str | bool | None, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``amp`` on ``device`` (``None`` = full fp32).

    ``"auto"``/``True``: :func:`amp_for_device` (bf16 on compute capability >= 8.0, fp16 +
    GradScaler on 7.x, fp32 below; on a CPU bf16 only where it is native). ``"bf16"``/``"fp16"``
    force a dtype; ``False``/``None``/``"off"``/``"fp32"`` → fp32.
    """
    if amp in (None, False, "off", "none", "fp32"):
        return None
    if amp == "bf16":
        return torch.bfloat16
    if amp == "fp16":
        return torch.float16
    if amp not in ("auto", True):
        raise ConfigError(f"amp must be 'auto', 'bf16', 'fp16' or 'off'; found {amp!r}.")
    return amp_for_device(device)


def precision_name(dtype: torch.dtype | None) -> str:
    """``"fp32"``, ``"bf16"`` or ``"fp16"`` for an autocast dtype of :func:`resolve_amp`."""
    return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[dtype]


def _autocast(device: torch.device, dtype: torch.dtype | None):
    """Autocast context for ``dtype`` on ``device``; a no-op for fp32 (``dtype=None``)."""
    return contextlib.nullcontext() if dtype is None else torch.autocast(device.type, dtype=dtype)


_dtype_name = precision_name


# ------------------------------------------------------------------ random-number states


def _rng_state(data_gen: torch.Generator, aug_gen: torch.Generator) -> dict:
    np_state = np.random.get_state()
    py_state = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "cached_gaussian": float(np_state[4])},
        "python": {"version": py_state[0], "state": torch.tensor(py_state[1], dtype=torch.int64),
                   "gauss": py_state[2]},
        "data": data_gen.get_state(),
        "augment": aug_gen.get_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict, data_gen: torch.Generator, aug_gen: torch.Generator) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"]))
    p = state["python"]
    random.setstate((p["version"], tuple(int(v) for v in p["state"].tolist()), p["gauss"]))
    data_gen.set_state(state["data"])
    aug_gen.set_state(state["augment"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# ------------------------------------------------------------------------------ the loop


@dataclass
class FitResult:
    """What :func:`fit` returns.

    Attributes:
        history: one row per epoch: epoch, train_loss, train_acc, val_loss, val_acc, val_auc,
            lr (at the epoch's end), seconds (wall time of the epoch incl. validation).
        last_path: checkpoint of the final epoch. best_path: weights of the epoch with the best
            validation ROC AUC (= last_path's epoch when there is no validation store).
        train_seconds: sum of the epochs' seconds (also those before a resume).
        device, amp: what was used. epochs_run: epochs trained by this call (0: already done).
    """

    history: "pd.DataFrame"  # noqa: F821
    last_path: Path
    best_path: Path
    train_seconds: float
    device: str
    amp: str
    epochs_run: int
    out_dir: Path


def _dist_info() -> tuple[int, int, int]:
    """(rank, world_size, local_rank) from torchrun's environment (1 process: 0, 1, 0)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, 0
    return int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0"))


def _ensure_process_group(device: torch.device) -> None:
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")


@torch.no_grad()
def _evaluate(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch_size: int,
              amp_dtype, channels_last: bool) -> tuple[torch.Tensor, float, float, float]:
    """Logits float32 [N,2] on CPU, plus loss, accuracy and ROC AUC."""
    was_training = model.training
    model.eval()
    dev = images.device
    out = []
    for i in range(0, len(images), batch_size):
        x = normalise(images[i : i + batch_size])
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with _autocast(dev, amp_dtype):
            out.append(model(x).float().cpu())
    model.train(was_training)
    logits = torch.cat(out) if out else torch.zeros(0, 2)
    y = labels.cpu()
    if len(y) == 0:
        return logits, float("nan"), float("nan"), float("nan")
    loss = F.cross_entropy(logits, y).item()
    acc = (logits.argmax(1) == y).float().mean().item()
    score = logits.softmax(1)[:, 1].numpy()
    auc = roc_auc_score(y.numpy(), score) if len(np.unique(y.numpy())) == 2 else float("nan")
    return logits, loss, acc, float(auc)


@dataclass
class _Placement:
    """Where this process trains: torchrun's rank and world size, and its device."""

    rank: int
    world: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _place(device: str) -> _Placement:
    """Resolve the device and join the process group under torchrun (one process: no group)."""
    rank, world, local_rank = _dist_info()
    dev = resolve_device(device)
    if world > 1 and dev.type == "cuda":
        dev = torch.device("cuda", local_rank)
        torch.cuda.set_device(dev)
    if world > 1:
        _ensure_process_group(dev)
    return _Placement(rank, world, local_rank, dev)


@dataclass
class _Plan:
    """What one :func:`fit` call does, resolved once: recipe, budget, batching, precision."""

    recipe: Recipe
    spec: dict
    epochs: int
    batch_size: int
    augment: AugmentConfig
    lr: float
    amp_dtype: torch.dtype | None
    channels_last: bool
    n: int
    per_rank: int
    rank_batch: int
    steps_per_epoch: int
    seed: int

    def settings(self, world: int) -> dict:
        """The run settings a checkpoint records; a resume must find the same."""
        return {
            "recipe": self.recipe.to_dict(), "epochs": self.epochs, "batch_size": self.batch_size,
            "seed": self.seed, "lr": self.lr, "augment": self.augment.to_dict(), "world_size": world,
            "n_train": self.n, "amp": _dtype_name(self.amp_dtype), "channels_last": bool(self.channels_last),
        }


def _plan(model, train_store, place: _Placement, *, recipe, epochs, batch_size, seed, amp, channels_last,
          augment, lr, model_spec) -> _Plan:
    """Resolve the recipe's defaults and the batching; check what can be checked before training."""
    rec = get_recipe(recipe)
    spec = dict(model_spec) if model_spec else make_model_spec(type(model).__name__)
    if spec.get("image_size") is None:
        spec["image_size"] = int(getattr(train_store, "resolution", train_store.images.shape[-1]))
    epochs = int(epochs if epochs is not None else rec.epochs)
    batch_size = int(batch_size if batch_size is not None else rec.batch_size)
    for name, value in (("epochs", epochs), ("batch_size", batch_size)):
        if value < 1:
            raise ConfigError(f"{name} must be >= 1; found {value}. Fix: pass {name}=1 or more.")
    if batch_size % place.world:
        raise ConfigError(f"batch_size {batch_size} is not divisible by the {place.world} processes. "
                         f"Fix: use a multiple of {place.world}.")
    n = len(train_store.labels)
    if n < 2:
        raise ConfigError(f"The training store holds {n} image(s); at least 2 are needed.")
    # Sharding: pad the permutation to a multiple of the world size (DistributedSampler style).
    per_rank = math.ceil(n / place.world)
    rank_batch = batch_size // place.world
    steps = per_rank // rank_batch + (1 if per_rank % rank_batch >= 2 else 0)  # a lone sample would break BN
    return _Plan(
        recipe=rec, spec=spec, epochs=epochs, batch_size=batch_size,
        augment=as_augment(augment) if augment is not None else rec.augment,
        lr=float(lr if lr is not None else rec.lr), amp_dtype=resolve_amp(amp, place.device),
        channels_last=channels_last, n=n, per_rank=per_rank, rank_batch=rank_batch,
        steps_per_epoch=max(steps, 1), seed=seed,
    )


@dataclass
class _LoopState:
    """Everything a resume restores: optimizer, schedule, scaler, generators, history."""

    optimizer: torch.optim.Optimizer
    scheduler: Any
    scaler: Any
    data_gen: torch.Generator
    aug_gen: torch.Generator
    history: list = field(default_factory=list)
    start_epoch: int = 0
    best_auc: float = -math.inf
    best_epoch: int = 0


def _fresh_state(model: nn.Module, plan: _Plan, place: _Placement) -> _LoopState:
    optimizer = make_optimizer(model, plan.recipe, plan.lr)
    return _LoopState(
        optimizer=optimizer,
        scheduler=make_scheduler(optimizer, plan.recipe, plan.steps_per_epoch * plan.epochs, plan.lr),
        scaler=torch.amp.GradScaler(place.device.type, enabled=plan.amp_dtype is torch.float16),
        data_gen=torch.Generator().manual_seed(plan.seed),
        aug_gen=torch.Generator().manual_seed(plan.seed + 1_000_003 * (place.rank + 1)),
    )


def _resume(state: _LoopState, model: nn.Module, plan: _Plan, place: _Placement, out_dir: Path) -> None:
    """Restore ``state`` and the weights from ``out_dir/last.pt``; its settings must match."""
    last_path, best_path = out_dir / "last.pt", out_dir / "best.pt"
    ckpt = read_checkpoint(last_path)
    load_weights(model, ckpt["model"], ckpt.get("spec"), plan.spec, last_path)
    now = plan.settings(place.world)
    diff = {k: (ckpt["settings"].get(k), v) for k, v in now.items() if ckpt["settings"].get(k) != v}
    if diff:
        raise CheckpointError(
            f"Cannot resume from {last_path}: it was trained with other settings "
            + "; ".join(f"{k}: checkpoint {a!r} vs now {b!r}" for k, (a, b) in diff.items())
            + ". Fix: call fit with the checkpoint's settings, or resume=False / a new out_dir."
        )
    state.optimizer.load_state_dict(ckpt["optimizer"])
    state.scheduler.load_state_dict(ckpt["scheduler"])
    state.scaler.load_state_dict(ckpt["scaler"])
    _set_rng_state(ckpt["rng"][place.rank], state.data_gen, state.aug_gen)
    state.history = list(ckpt["history"])
    state.start_epoch = int(ckpt["epoch"])
    state.best_auc = float(ckpt.get("best_val_auc", -math.inf))
    state.best_epoch = int(ckpt.get("best_epoch", 0))
    if place.is_main:
        check_best(ckpt, best_path)


def _training_module(model: nn.Module, place: _Placement, compile: bool) -> nn.Module:
    """The module the steps call: ``model``, wrapped in DDP under torchrun, compiled on request."""
    train_model: nn.Module = model
    if place.world > 1:
        train_model = nn.parallel.DistributedDataParallel(
            model, device_ids=[place.local_rank] if place.device.type == "cuda" else None)
    return torch.compile(train_model) if compile else train_model


def train_epoch(model: nn.Module, train_model: nn.Module, images: torch.Tensor, labels: torch.Tensor,
                plan: _Plan, state: _LoopState, place: _Placement, *, show: bool, epoch: int) -> tuple[float, float]:
    """One epoch of optimizer steps over a seeded permutation; returns (train loss, train accuracy).

    Args:
        model: the bare module (gradient clipping, BN buffers); ``train_model`` the one to call.
        images: uint8 [N, 3, R, R] on the device; labels: int64 [N] on the device.
    """
    dev = place.device
    rec, aug, rank_bs = plan.recipe, plan.augment, plan.rank_batch
    optimizer, scheduler, scaler = state.optimizer, state.scheduler, state.scaler
    model.train()
    perm = torch.randperm(plan.n, generator=state.data_gen)
    if place.world > 1:
        perm = torch.cat([perm, perm[: plan.per_rank * place.world - plan.n]])[place.rank::place.world]
    loss_sum = torch.zeros((), device=dev)
    correct = torch.zeros((), device=dev, dtype=torch.long)
    seen = 0
    for step in tqdm(range(plan.steps_per_epoch), desc=f"epoch {epoch + 1}", leave=False, disable=not show):
        idx = perm[step * rank_bs : (step + 1) * rank_bs].to(dev)
        y = labels[idx]
        x = normalise(augment_batch(images[idx], aug, state.aug_gen))
        if plan.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with _autocast(dev, plan.amp_dtype):
            logits = train_model(x)
        loss = F.cross_entropy(logits.float(), y, label_smoothing=rec.label_smoothing)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        if rec.grad_clip:
            scaler.unscale_(optimizer)
            nn.utils.clip_grad_norm_(model.parameters(), rec.grad_clip)
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        loss_sum += loss.detach() * len(y)
        correct += (logits.detach().argmax(1) == y).sum()
        seen += len(y)
    stats = torch.stack([loss_sum.double(), correct.double(), torch.tensor(float(seen), device=dev, dtype=torch.float64)])
    if place.world > 1:
        dist.all_reduce(stats)
        for buf in model.buffers():  # BN statistics: rank 0's, so every rank holds the same model
            dist.broadcast(buf, src=0)
    return (stats[0] / stats[2]).item(), (stats[1] / stats[2]).item()


def _gathered_rng(state: _LoopState, place: _Placement) -> list:
    """Every rank's generator states (a resume restores each rank's own)."""
    rng = _rng_state(state.data_gen, state.aug_gen)
    if place.world == 1:
        return [rng]
    gathered: list = [None] * place.world
    dist.all_gather_object(gathered, rng)
    return gathered


def _save_epoch(model: nn.Module, plan: _Plan, state: _LoopState, place: _Placement, out_dir: Path,
                epoch: int, improved: bool, rng_all: list) -> None:
    """Write ``last.pt`` (everything a resume needs), ``best.pt`` when improved, and the history."""
    weights = {k: v.detach().cpu() for k, v in unwrap_model(model).state_dict().items()}
    settings = plan.settings(place.world)
    # After the final epoch nothing steps again (a resume only evaluates), so Adam's two
    # moment buffers per weight are not written: two thirds of the checkpoint's bytes.
    opt_state = state.optimizer.state_dict()
    if epoch + 1 == plan.epochs:
        opt_state = released_optimizer_state(opt_state)
    ckpt = {
        "format": CHECKPOINT_FORMAT, "spec": plan.spec, "settings": settings, "model": weights,
        "optimizer": opt_state, "scheduler": state.scheduler.state_dict(),
        "scaler": state.scaler.state_dict(), "rng": rng_all, "epoch": epoch + 1, "history": state.history,
        "best_val_auc": state.best_auc, "best_epoch": state.best_epoch,
    }
    save_checkpoint(ckpt, out_dir / "last.pt")  # the commit point of the epoch (see checkpoints.check_best)
    if improved:
        save_checkpoint({"format": CHECKPOINT_FORMAT, "spec": plan.spec, "model": weights, "epoch": epoch + 1,
                      "settings": settings}, out_dir / "best.pt")
    _write_history(state.history, out_dir)


def _to_device(model: nn.Module, train_store, val_store, place: _Placement, channels_last: bool) -> tuple:
    """Move the model and the stores' tensors to the device once: (images, labels, val images,
    val labels); the validation labels stay on the CPU (metrics are computed there)."""
    dev = place.device
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True
    model.to(dev)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    images, labels = train_store.images.to(dev), train_store.labels.to(dev)
    if val_store is None:
        return images, labels, None, None
    return images, labels, val_store.images.to(dev), val_store.labels


def _run_epoch(model, train_model, data: tuple, plan: _Plan, state: _LoopState, place: _Placement,
               out_dir: Path, epoch: int, show: bool) -> dict:
    """Train one epoch, validate, checkpoint; returns the epoch's history row."""
    images, labels, v_images, v_labels = data
    t0 = time.perf_counter()
    train_loss, train_acc = train_epoch(model, train_model, images, labels, plan, state, place, show=show, epoch=epoch)
    val_loss = val_acc = val_auc = float("nan")
    if v_images is not None:
        _, val_loss, val_acc, val_auc = _evaluate(model, v_images, v_labels, max(plan.rank_batch, 256),
                                                  plan.amp_dtype, plan.channels_last)
    row = {
        "epoch": epoch + 1, "train_loss": train_loss, "train_acc": train_acc, "val_loss": val_loss,
        "val_acc": val_acc, "val_auc": val_auc, "lr": state.optimizer.param_groups[0]["lr"],
        "seconds": time.perf_counter() - t0,
    }
    state.history.append(row)
    improved = v_images is None or (not math.isnan(val_auc) and val_auc > state.best_auc)
    if improved and not math.isnan(val_auc):
        state.best_auc = val_auc
    if improved:
        state.best_epoch = epoch + 1
    rng_all = _gathered_rng(state, place)
    if place.is_main:
        _save_epoch(model, plan, state, place, out_dir, epoch, improved, rng_all)
    _barrier(place)
    return row


def _barrier(place: _Placement) -> None:
    if place.world > 1:
        dist.barrier()


def fit(
    model: nn.Module,
    train_store,
    val_store=None,
    *,
    recipe: str | Recipe = "fast",
    epochs: int | None = None,
    batch_size: int | None = None,
    seed: int = 0,
    out_dir: str | Path,
    resume: bool = False,
    device: str = "auto",
    amp: str | bool | None = "auto",
    channels_last: bool = True,
    compile: bool = False,
    augment: AugmentConfig | dict | str | bool | None = None,
    lr: float | None = None,
    progress: bool = True,
    model_spec: dict | None = None,
    on_epoch_end: Callable[[dict], None] | None = None,
) -> FitResult:
    """Train ``model`` on ``train_store`` with a recipe; checkpoint every epoch; resume exactly.

    Args:
        model: a classifier mapping float32 [B,3,R,R] (ImageNet-normalised) → logits [B,2].
            Build it after :func:`seed_everything` so that its initialisation is seeded too.
        train_store: ``ImageTensorStore`` (uint8 [N,3,R,R], labels int64 [N]).
        val_store: validation store carved from the training data (``splits.train_val_split``),
            evaluated after every epoch; never the test set.
        recipe: ``"fast"``, ``"paper"`` or a :class:`Recipe` (already resolved for the model:
            ``Recipe.for_model``; ``runs`` does that from the paper's per-model table).
        epochs, batch_size: default: the recipe's. ``batch_size`` is global (split over DDP ranks).
        seed: seeds data order and augmentation (model initialisation is the caller's).
        out_dir: where ``last.pt``, ``best.pt``, ``history.csv`` and ``history.json`` go.
        resume: continue from ``out_dir/last.pt`` if present (its settings must match).
        device: ``"auto"`` (cuda > mps > cpu) or a torch device string.
        amp: ``"auto"``, ``"bf16"``, ``"fp16"`` or ``"off"`` (see :func:`resolve_amp`).
        channels_last: NHWC memory format (faster convolutions on CPU and tensor cores).
        compile: wrap the training forward in ``torch.compile``.
        augment: override the recipe's augmentation (:class:`AugmentConfig`, dict, ``"paper"``,
            ``False``).
        lr: override the recipe's (peak) learning rate.
        progress: tqdm bars.
        model_spec: ``{"name", "kwargs", ...}`` stored in checkpoints (see :func:`make_model_spec`).
        on_epoch_end: called with each epoch's history row after its checkpoint is written.

    Returns:
        :class:`FitResult`.
    """
    out_dir = Path(out_dir)
    place = _place(device)
    plan = _plan(model, train_store, place, recipe=recipe, epochs=epochs, batch_size=batch_size, seed=seed,
                 amp=amp, channels_last=channels_last, augment=augment, lr=lr, model_spec=model_spec)
    data = _to_device(model, train_store, val_store, place, channels_last)
    state = _fresh_state(model, plan, place)
    if place.is_main:
        sweep_temporaries(out_dir)  # what killed writers left (atomic_open's .<name>.*.tmp)
    if resume and (out_dir / "last.pt").is_file():
        _resume(state, model, plan, place, out_dir)
    train_model = _training_module(model, place, compile)

    show = progress and place.is_main
    ebar = tqdm(range(state.start_epoch, plan.epochs), initial=state.start_epoch, total=plan.epochs,
                desc="epochs", unit="ep", disable=not show)
    epochs_run = 0
    for epoch in ebar:
        row = _run_epoch(model, train_model, data, plan, state, place, out_dir, epoch, show)
        epochs_run += 1
        ebar.set_postfix(loss=f"{row['train_loss']:.3f}", val_acc=f"{row['val_acc']:.3f}", val_auc=f"{row['val_auc']:.3f}")
        if on_epoch_end is not None:
            on_epoch_end(row)
    ebar.close()
    if place.is_main and state.start_epoch >= plan.epochs and state.history:
        _write_history(state.history, out_dir)
    frame = pd.DataFrame(state.history, columns=HISTORY_COLUMNS)
    return FitResult(
        history=frame, last_path=out_dir / "last.pt", best_path=out_dir / "best.pt",
        train_seconds=float(frame["seconds"].sum()) if len(frame) else 0.0,
        device=str(place.device), amp=_dtype_name(plan.amp_dtype), epochs_run=epochs_run, out_dir=out_dir,
    )


HISTORY_COLUMNS = ["epoch", "train_loss", "train_acc", "val_loss", "val_acc", "val_auc", "lr", "seconds"]


def _write_history(history: list[dict], out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    frame = pd.DataFrame(history, columns=HISTORY_COLUMNS)
    write_text(out_dir / "history.csv", frame.to_csv(index=False))
    write_text(out_dir / "history.json", json.dumps(history, indent=1))


def read_history(out_dir: str | Path) -> "pd.DataFrame":  # noqa: F821
    """The history a :func:`fit` run wrote to ``out_dir`` (one row per epoch)."""
    return pd.read_csv(Path(out_dir) / "history.csv")


# ----------------------------------------------------------------------------- inference


@torch.no_grad()
def predict(model: nn.Module, store, batch_size: int = 256, *, device: str = "auto",
            amp: str | bool | None = "auto", channels_last: bool = True) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """P(malignant) for every image of ``store`` (the model is put in eval mode and moved).

    Args:
        model: classifier trained by :func:`fit` (ImageNet-normalised inputs → logits [B,2]).
        store: ``ImageTensorStore`` (uint8 [N,3,R,R]).
        batch_size: images per forward pass.

    Returns:
        ``(y_true int64 [N], y_score float64 [N] in [0,1], ids list[str] of N)``.
    """
    dev = resolve_device(device)
    amp_dtype = resolve_amp(amp, dev)
    model.to(dev)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    logits, *_ = _evaluate(model, store.images.to(dev), store.labels,
                           batch_size, amp_dtype, channels_last)
    score = logits.softmax(1)[:, 1].double().numpy()
    return store.labels.numpy().astype(np.int64), score, list(store.ids)
