"""The baseline benchmark of chapter 02 (``chapters/02_baselines``): the paper's comparison models
under one protocol, their cost and their test metrics.

What this module owns
---------------------
* The paper's eleven comparison models (``models.BASELINES``) are each trained by
  :func:`skinlesion_utils.runs.baseline_config` under the ablation's protocol (same data, split,
  augmentation, image size and epoch budget: the profile's ``bench_*`` settings).
* Cost of a model: :func:`model_cost` (parameters; FLOPs at the trained size and at the paper's
  224 px, counted on the ``meta`` device so that no arithmetic is done) and
  :func:`cpu_latency` (batch-1 inference time per image on the CPU).
* :func:`benchmark` — train (or load) every config with :func:`skinlesion_utils.runs.train_all`
  and collect one row per model: accuracy, precision, recall, specificity, F1 and ROC AUC with
  stratified-bootstrap 95 % intervals (:func:`skinlesion_utils.metrics.ci_row`), PR AUC,
  parameters, FLOPs, CPU latency, training time; plus every test prediction (long table).
* :func:`lr_search` — the learning rates a baseline was tried with under the ``fast`` recipe and
  the one chosen on the validation split (``runs.BASELINE_LR`` holds the choices; the table is
  stored under ``results/<profile>/02_baselines_lr_search/`` by :func:`save_lr_search`).
* :func:`baseline_summary` — the page's view of a stored ``baselines`` table (another profile's,
  via :func:`skinlesion_utils.results.other_profiles`).

The tables are written with :func:`skinlesion_utils.results.save` under
``results/<profile>/02_baselines/`` (``baselines.csv``, ``predictions.csv``, ``meta.json``);
chapter 09 reads ``baselines.csv``.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Mapping

import numpy as np
import pandas as pd
import torch

from ..errors import ConfigError
from ..metrics import CI_METRICS, ci_row, ci_strings
from ..models import build_model, count_flops, count_parameters
from ..results import save
from ..runs import BASELINE_LR, baseline_config, long_predictions, train_all

__all__ = [
    "PAPER_IMAGE_SIZE",
    "model_cost",
    "cpu_latency",
    "benchmark",
    "baseline_summary",
    "LR_SEARCH_CHAPTER",
    "lr_search",
    "save_lr_search",
]

#: The paper's input size (px), at which FLOPs are also reported.
PAPER_IMAGE_SIZE = 224


# =========================================================================== cost
def _build_for(cfg, model_fn=None) -> torch.nn.Module:
    if model_fn is not None:
        return model_fn(cfg)
    return build_model(cfg.model, num_classes=2, pretrained=False, **cfg.kwargs)


def model_cost(cfg, model_fn: Callable | None = None, paper_size: int = PAPER_IMAGE_SIZE) -> dict:
    """Parameters and FLOPs of a config's architecture, without computing anything.

    The model is built on PyTorch's ``meta`` device (shapes only, no memory, no arithmetic) and
    run once under :class:`torch.utils.flop_counter.FlopCounterMode` via
    :func:`skinlesion_utils.models.count_flops` (2 FLOPs per multiply-add; convolutions and
    matrix products only).

    Args:
        cfg: a :class:`~skinlesion_utils.runs.RunConfig` (model name, kwargs, ``image_size``).
        model_fn: builds the model from the config instead of ``build_model`` (tests).
        paper_size: second input size to report (the paper's 224 px).

    Returns:
        ``dict(params, params_m, gflops, gflops_224)``: parameters (scalars, millions) and GFLOPs
        per image at ``cfg.image_size`` and at ``paper_size`` (batch 1, forward pass).
    """
    with torch.device("meta"):
        model = _build_for(cfg, model_fn)
    total, _ = count_parameters(model)
    return {
        "params": int(total), "params_m": total / 1e6,
        "gflops": count_flops(model, cfg.image_size) / 1e9,
        "gflops_224": count_flops(model, paper_size) / 1e9,
    }


@torch.no_grad()
def cpu_latency(model: torch.nn.Module, image_size: int, repeats: int = 15, warmup: int = 3,
                threads: int | None = None) -> dict:
    """Inference time of one image on the CPU (batch 1, fp32, eval mode, no gradients).

    The weights do not change the time of these dense networks, so an untrained model of the
    same architecture gives the same number. Denormal floats are flushed to zero during the
    measurement (an untrained network can produce them, and they are slow on x86).

    Args:
        model: maps float32 [1, 3, S, S] → logits; moved to the CPU and put in eval mode (its
            training flag is restored afterwards).
        image_size: S, pixels.
        repeats: timed forward passes (the median is reported).
        warmup: untimed passes first (allocator, oneDNN kernel selection).
        threads: torch intra-op threads during the measurement (default: the current setting).

    Returns:
        ``dict(latency_ms, latency_p90_ms, threads)``: median and 90th percentile, milliseconds
        per image. On a shared machine both include the time other processes took.
    """
    was_training = model.training
    model = model.cpu().eval()
    old_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(int(threads))
    old_denormal = torch.set_flush_denormal(True)
    x = torch.zeros(1, 3, image_size, image_size)
    try:
        for _ in range(warmup):
            model(x)
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - t0)
    finally:
        torch.set_num_threads(old_threads)
        torch.set_flush_denormal(False if not old_denormal else True)
        model.train(was_training)
    ms = 1000 * np.asarray(times)
    return {"latency_ms": float(np.median(ms)), "latency_p90_ms": float(np.percentile(ms, 90)),
            "threads": int(threads or old_threads)}


# =========================================================================== the benchmark
def benchmark(configs: Mapping[str, object], *, cache_dir=None, progress: bool = False, verbose: bool = True,
              model_fn: Callable | None = None, latency: bool = True, n_boot: int = 1000,
              seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Train (or load from the run cache) every config and tabulate results, cost and time.

    Args:
        configs: ``{model label: RunConfig}``, e.g. ``{m: runs.baseline_config(m) for m in models.BASELINES}``.
        cache_dir: run cache folder (default: the profile's).
        progress: tqdm bars while decoding and training.
        verbose: print one line per model (its test accuracy and AUC, trained or loaded).
        model_fn: custom builder (tests); the config's ``model`` name must identify it.
        latency: measure :func:`cpu_latency` at the config's image size (on a freshly built
            model of the architecture, so no checkpoint has to be read).
        n_boot, seed: stratified bootstrap of the intervals.

    Returns:
        ``(table, predictions)``. ``table``: one row per label (index ``model``) with
        ``accuracy, precision, recall, specificity, f1, roc_auc`` (fractions) each with
        ``_low``/``_high`` (95 % interval), ``pr_auc``, ``params``, ``params_m``, ``gflops``
        (per image at the trained size), ``gflops_224``, ``latency_ms`` (CPU, batch 1),
        ``train_seconds`` (wall), ``train_images_per_second``, ``epochs``, ``image_size``,
        ``n_train``, ``recipe``, ``device`` and the run ``key``. ``predictions``: long table
        ``model, id, y_true, y_score`` (P(malignant) on the test images).
    """
    runs = train_all(configs, cache_dir, progress, model_fn, verbose)
    rows = []
    for label, run in runs.items():
        cfg = run.config
        p = run.predictions
        row = {"model": label, **ci_row(p["y_true"].to_numpy(), p["y_score"].to_numpy(), CI_METRICS,
                                        point_only=("pr_auc",), n_boot=n_boot, seed=seed)}
        row.update(model_cost(cfg, model_fn))
        if latency:
            row["latency_ms"] = cpu_latency(_build_for(cfg, model_fn), cfg.image_size)["latency_ms"]
        t = run.results["timing"]
        row.update(train_seconds=t["train_seconds"], train_images_per_second=t["train_images_per_second"],
                   epochs=cfg.epochs, image_size=cfg.image_size, n_train=run.results["resolved"]["n_train"],
                   recipe=cfg.recipe, device=run.results.get("device_name", run.results.get("device")),
                   key=run.dir.name)
        rows.append(row)
    table = pd.DataFrame(rows).set_index("model")
    preds = long_predictions(runs, lambda label: {"model": label})
    return table, preds


#: The results folder of :func:`save_lr_search` (beside chapter 02's own).
LR_SEARCH_CHAPTER = "02_baselines_lr_search"


def lr_search(model: str, lrs, *, profile=None, cache_dir=None, progress: bool = False) -> pd.DataFrame:
    """Train ``model`` under chapter 02's protocol once per peak learning rate of the ``fast``
    recipe and rank the runs on the validation split (the test images are never looked at).

    Args:
        model: a baseline name (``models.BASELINES``).
        lrs: the learning rates to try (include the recipe's own, 2e-3, as the reference).
        profile, cache_dir, progress: as :func:`benchmark`; the runs land in the ordinary run
            cache, so the chosen one is the very run chapter 02 trains. Every run is evaluated on
            the test images once, as every run is, but nothing here reads or prints those numbers.

    Returns:
        One row per learning rate (index ``lr``): the last epoch's ``train_loss``, ``val_acc`` and
        ``val_auc``, ``val_acc_sd`` of the validation accuracy, the run ``key``, and ``chosen``
        (True for the best validation ROC AUC).
    """
    lrs = sorted({float(lr) for lr in lrs}, reverse=True)
    if not lrs:
        raise ConfigError("lr_search needs at least one learning rate, e.g. lrs=(2e-3, 3e-4, 1e-4).")
    configs = {f"{model} lr={lr:g}": baseline_config(model, profile, lr=lr) for lr in lrs}
    trained = train_all(configs, cache_dir, progress, None, verbose=False)
    rows = []
    for lr, run in zip(lrs, trained.values()):
        last = run.history.iloc[-1]
        rows.append({"lr": lr, "epochs": int(last["epoch"]), "train_loss": float(last["train_loss"]),
                     "val_acc": float(last["val_acc"]), "val_auc": float(last["val_auc"]), "key": run.dir.name})
    table = pd.DataFrame(rows).set_index("lr")
    table["chosen"] = table.index == table["val_auc"].idxmax()
    return table


def save_lr_search(model: str, lrs, *, profile=None, cache_dir=None) -> pd.DataFrame:
    """Run :func:`lr_search` and store its table (``lr_search_<model>.csv``) with provenance under
    :data:`LR_SEARCH_CHAPTER`; refuses when its choice disagrees with ``runs.BASELINE_LR`` (the
    one home of the choices), so the stored table and the trained model cannot drift apart."""
    table = lr_search(model, lrs, profile=profile, cache_dir=cache_dir)
    chosen = float(table.index[table["chosen"]][0])
    if BASELINE_LR.get(model) != chosen:
        raise ConfigError(f"the validation split picks lr={chosen:g} for {model}, but runs.BASELINE_LR says "
                         f"{BASELINE_LR.get(model)!r}. Fix: set runs.BASELINE_LR[{model!r}] = {chosen:g}.")
    command = f"save_lr_search({model!r}, {tuple(float(x) for x in table.index)!r})"
    save(LR_SEARCH_CHAPTER, {f"lr_search_{model}": table}, meta={"command": command, "model": model},
         profile=profile)
    return table


def baseline_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Chapter 02's view of a stored ``baselines`` table: accuracy and ROC AUC with their
    intervals, GFLOPs and training seconds, one row per model."""
    return ci_strings(table, ["accuracy", "roc_auc"]).join(table[["gflops", "train_seconds"]])
