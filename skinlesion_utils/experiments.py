"""Experiments over many runs: the baseline benchmark (chapter 02) and the fusion ablation (chapter 06).

Taught in chapters 02 (``chapters/02_baselines``) and 06 (``chapters/06_ablation``); chapter 09
reads the files they write.

What this module owns
---------------------
* The two run grids and their configs: :data:`BASELINES` (the paper's eleven comparison models)
  trained by :func:`baseline_config` under one protocol (same data, split, augmentation, image
  size and epoch budget: the profile's ``bench_*`` settings), and :data:`FUSIONS` × seeds of
  ASFF-ResNet50 trained by :func:`skinlesion_utils.runs.ablation_config` (the configs chapters
  07–09 load, so nothing is trained twice).
* Cost of a model: :func:`model_cost` (parameters; FLOPs at the trained size and at the paper's
  224 px, counted on the ``meta`` device so that no arithmetic is done) and
  :func:`cpu_latency` (batch-1 inference time per image on the CPU).
* :func:`benchmark` — train (or load) every config with :func:`skinlesion_utils.runs.get_or_train`
  and collect one row per model: accuracy, precision, recall, specificity, F1 and ROC AUC with
  stratified-bootstrap 95 % intervals (:func:`skinlesion_utils.metrics.report_with_ci`), PR AUC,
  parameters, FLOPs, CPU latency, training time; plus every test prediction (long table).
* The ablation: :func:`ablation` (one row per fusion × seed, plus predictions),
  :func:`paired_tests` (per seed, each fusion against ``none`` on the same 660 test images: exact
  McNemar and the paired-bootstrap CI of the AUC difference; and ``none`` against itself across
  seeds, which is what seed-to-seed noise looks like under the same tests), :func:`gain_vs_noise`
  (the verdict "is the gain larger than seed-to-seed noise?"). What the three ASFF variants
  learn is read by :mod:`skinlesion_utils.fusion` (:func:`~skinlesion_utils.fusion.fusion_weight_table`).
* Results files: :func:`save` writes a chapter's tables under ``results/<profile>/<chapter>/``
  (via :func:`skinlesion_utils.runs.write_results`) together with a ``meta.json`` holding the
  settings and the provenance (device, date, commit); :func:`load` reads them back;
  :func:`stored` lists what other profiles wrote (a ``results/full/...`` file appears only when a
  real GPU run produced it); :func:`gpu_reference` reads ``results/full/gpu-bench/reference.json``
  (written by :mod:`skinlesion_utils.gpu_bench`); :func:`paper_table_or_note` shows the paper's
  Table 2/3 when transcribed, else says so and lists the claims that exist.
"""
from __future__ import annotations

import json
import platform
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from .fusion import FUSIONS

__all__ = [
    "BASELINES",
    "CI_METRICS",
    "baseline_config",
    "settings_table",
    "model_cost",
    "cpu_latency",
    "benchmark",
    "ci_strings",
    "ablation",
    "paired_tests",
    "rejects_no_difference",
    "gain_vs_noise",
    "provenance",
    "save",
    "load",
    "stored",
    "other_profiles",
    "baseline_summary",
    "ablation_summary",
    "provenance_line",
    "gpu_reference",
    "paper_table_or_note",
    "floors_table",
]

#: The paper's comparison models, in the order of its Table 2 (``models.build_model`` names).
BASELINES: tuple[str, ...] = (
    "lenet5", "alexnet", "vgg16", "resnet34", "resnet50", "resnet101", "mobilenet_v2",
    "squeezenet1_1", "densenet121", "xception", "googlenet",
)
#: Metrics reported with a bootstrap interval, in table order.
CI_METRICS: tuple[str, ...] = ("accuracy", "precision", "recall", "specificity", "f1", "roc_auc")
#: The paper's input size (px), at which FLOPs are also reported.
PAPER_IMAGE_SIZE = 224


def _profile(profile):
    from .profiles import profile as get_profile

    return profile if profile is not None and not isinstance(profile, str) else get_profile(profile)


# =========================================================================== configs
def baseline_config(model: str, profile=None, seed: int | None = None, **overrides):
    """The benchmark config of one baseline (chapter 02): the ablation's protocol, another model.

    Built from :func:`skinlesion_utils.runs.ablation_config` with only the model swapped, so every
    baseline and every fusion variant of chapter 06 is trained under one protocol by
    construction: the profile's ``bench_image_size`` and ``bench_epochs``, its batch size, recipe
    (``"fast"``), ``pretrained`` flag, training data and validation split.

    Args:
        model: a name of :data:`BASELINES` (any ``build_model`` name works).
        profile: a ``Profile`` or profile name (default: the active one).
        seed: training seed (default: the profile's first seed).
        **overrides: any :class:`~skinlesion_utils.runs.RunConfig` field, e.g.
            ``recipe="paper"`` for the paper's optimizer and learning rate.

    Returns:
        :class:`skinlesion_utils.runs.RunConfig`.
    """
    from dataclasses import replace

    from .runs import ablation_config

    prof = _profile(profile)
    protocol = ablation_config("none", prof.seeds[0] if seed is None else seed, profile=prof)
    return replace(protocol, model=model, model_kwargs={}, **overrides)


def settings_table(configs: Mapping[str, object]) -> pd.DataFrame:
    """What was trained, one row per config: exactly the settings a page must state.

    Args:
        configs: ``{label: RunConfig}``.

    Returns:
        DataFrame indexed by label with ``model``, ``kwargs``, ``recipe``, ``optimizer``, ``lr``
        (peak), ``epochs``, ``image_size`` (px), ``batch_size``, ``train_images`` (the subset, or
        all), ``pretrained``, ``seed``.
    """
    from .train import get_recipe

    rows = []
    for label, cfg in configs.items():
        rec = get_recipe(cfg.recipe).for_model(cfg.model)
        rows.append({
            "label": label, "model": cfg.model, "kwargs": json.dumps(cfg.kwargs) if cfg.kwargs else "",
            "recipe": cfg.recipe, "optimizer": rec.optimizer, "lr": cfg.lr if cfg.lr is not None else rec.lr,
            "epochs": cfg.epochs, "image_size": cfg.image_size, "batch_size": cfg.batch_size,
            "train_images": "all" if cfg.train_subset is None else len(cfg.train_subset),
            "pretrained": cfg.pretrained, "seed": cfg.seed,
        })
    return pd.DataFrame(rows).set_index("label")


# =========================================================================== cost
def _build_for(cfg, model_fn=None) -> torch.nn.Module:
    from .models import build_model

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
    from .models import count_flops, count_parameters

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


# =========================================================================== evaluation
def _ci_row(y_true, y_score, n_boot: int, seed: int) -> dict:
    from .metrics import report_with_ci

    ci = report_with_ci(y_true, y_score, n_boot=n_boot, seed=seed, metrics=CI_METRICS + ("pr_auc",))
    row = {}
    for m in ci.index:
        row[m] = float(ci.loc[m, "point"])
        if m in CI_METRICS:
            row[f"{m}_low"], row[f"{m}_high"] = float(ci.loc[m, "low"]), float(ci.loc[m, "high"])
    return row


def _train_all(configs: Mapping, cache_dir, progress: bool, model_fn, verbose: bool = True) -> dict:
    import gc

    from .runs import get_or_train, run_dir

    out = {}
    for label, cfg in configs.items():
        cached = (run_dir(cfg, cache_dir) / "results.json").is_file()
        out[label] = get_or_train(cfg, cache_dir=cache_dir, progress=progress, model_fn=model_fn)
        gc.collect()  # free the previous model's weights and optimizer state before the next one
        if verbose:
            m, t = out[label].metrics, out[label].results["timing"]
            how = "loaded from the run cache" if cached else f"trained in {t['train_seconds']:.0f} s"
            print(f"{label:>24s}: accuracy {m['accuracy']:.3f}, ROC AUC {m['roc_auc']:.3f} ({how})", flush=True)
    return out


def _predictions_long(runs: Mapping, key_cols: Callable[[object], dict]) -> pd.DataFrame:
    parts = []
    for label, run in runs.items():
        p = run.predictions
        for k, v in key_cols(label).items():
            p.insert(0, k, v)
        parts.append(p)
    out = pd.concat(parts, ignore_index=True)
    out["y_score"] = out["y_score"].round(6)
    return out


def benchmark(configs: Mapping[str, object], *, cache_dir=None, progress: bool = False, verbose: bool = True,
              model_fn: Callable | None = None, latency: bool = True, n_boot: int = 1000,
              seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Train (or load from the run cache) every config and tabulate results, cost and time.

    Args:
        configs: ``{model label: RunConfig}``, e.g. ``{m: baseline_config(m) for m in BASELINES}``.
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
    runs = _train_all(configs, cache_dir, progress, model_fn, verbose)
    rows = []
    for label, run in runs.items():
        cfg = run.config
        p = run.predictions
        row = {"model": label, **_ci_row(p["y_true"].to_numpy(), p["y_score"].to_numpy(), n_boot, seed)}
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
    preds = _predictions_long(runs, lambda label: {"model": label})
    return table, preds


def ci_strings(table: pd.DataFrame, metrics: Sequence[str] = CI_METRICS, decimals: int = 3,
               percent: bool = False) -> pd.DataFrame:
    """``"0.812 [0.781, 0.843]"`` strings from the ``m, m_low, m_high`` columns of a table.

    Args:
        table: a :func:`benchmark` table (or any frame with those columns).
        metrics: metric names whose three columns exist.
        decimals: rounding.
        percent: print as percentages (the paper's unit).

    Returns:
        DataFrame with the same index and one string column per metric.
    """
    scale = 100.0 if percent else 1.0
    out = pd.DataFrame(index=table.index)
    for m in metrics:
        missing = [c for c in (m, f"{m}_low", f"{m}_high") if c not in table.columns]
        if missing:
            raise KeyError(f"ci_strings: columns {missing} not in the table; found {list(table.columns)}.")
        out[m] = [f"{scale * p:.{decimals}f} [{scale * lo:.{decimals}f}, {scale * hi:.{decimals}f}]"
                  for p, lo, hi in zip(table[m], table[f"{m}_low"], table[f"{m}_high"])]
    return out


# =========================================================================== the ablation
def ablation(fusions: Sequence[str] = FUSIONS, seeds: Sequence[int] | None = None, profile=None, *,
             config_fn: Callable | None = None, cache_dir=None, progress: bool = False,
             verbose: bool = True, model_fn: Callable | None = None, n_boot: int = 1000) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """Train (or load) every fusion × seed and tabulate the test metrics of each run.

    Args:
        fusions: fusion names (``fusion.FUSIONS``); the first is the reference of
            :func:`paired_tests` (``"none"``: plain ResNet-50 with the paper's head).
        seeds: training seeds (default: the profile's ``seeds``).
        profile: ``Profile`` or name (default: the active one).
        config_fn: ``config_fn(fusion, seed) -> RunConfig`` (default:
            :func:`skinlesion_utils.runs.ablation_config` at the profile's bench budget).
        cache_dir, progress, verbose, model_fn: as :func:`benchmark`.
        n_boot: bootstrap resamples of the per-run intervals.

    Returns:
        ``(runs_table, predictions, runs)``. ``runs_table``: one row per run with ``fusion, seed``,
        the metrics of :func:`benchmark` with intervals, ``train_seconds`` and ``key``.
        ``predictions``: long table ``fusion, seed, id, y_true, y_score``. ``runs``:
        ``{(fusion, seed): Run}``.
    """
    from .runs import ablation_config

    prof = _profile(profile)
    seeds = tuple(prof.seeds if seeds is None else seeds)
    if config_fn is None:
        def config_fn(fusion, seed):
            return ablation_config(fusion, seed, profile=prof)
    configs = {(f, s): config_fn(f, s) for s in seeds for f in fusions}
    labelled = {f"{f} (seed {s})": c for (f, s), c in configs.items()}
    trained = _train_all(labelled, cache_dir, progress, model_fn, verbose)
    runs = {fs: trained[f"{fs[0]} (seed {fs[1]})"] for fs in configs}
    rows = []
    for (f, s), run in runs.items():
        p = run.predictions
        row = {"fusion": f, "seed": s, **_ci_row(p["y_true"].to_numpy(), p["y_score"].to_numpy(), n_boot, 0)}
        row.update(train_seconds=run.results["timing"]["train_seconds"], epochs=run.config.epochs,
                   image_size=run.config.image_size, key=run.dir.name)
        rows.append(row)
    table = pd.DataFrame(rows)
    table["fusion"] = pd.Categorical(table["fusion"], categories=list(fusions), ordered=True)
    table = table.sort_values(["fusion", "seed"]).reset_index(drop=True)
    table["fusion"] = table["fusion"].astype(str)
    preds = _predictions_long(runs, lambda fs: {"seed": fs[1], "fusion": fs[0]})
    return table, preds, runs


def _pred_table(predictions: pd.DataFrame) -> dict:
    """``{(fusion, seed): (ids, y_true, y_score)}`` sorted by id (so pairs line up)."""
    out = {}
    for (f, s), g in predictions.groupby(["fusion", "seed"], sort=False):
        g = g.sort_values("id")
        out[(f, int(s))] = (g["id"].to_numpy(), g["y_true"].to_numpy(), g["y_score"].to_numpy())
    return out


def _paired(a, b, threshold: float, n_boot: int, seed: int) -> dict:
    from .metrics import auc_difference, mcnemar

    ids_a, y, sa = a
    ids_b, yb, sb = b
    if not (np.array_equal(ids_a, ids_b) and np.array_equal(y, yb)):
        raise ValueError("paired tests need predictions on the same test images with the same labels; "
                         "the two runs' ids or labels differ. Fix: evaluate both on the same test split.")
    pa, pb = (sa >= threshold).astype(int), (sb >= threshold).astype(int)
    mc = mcnemar(y, pa, pb)
    ad = auc_difference(y, sa, sb, n_boot=n_boot, seed=seed)
    return {"accuracy_delta": float(np.mean(pa == y) - np.mean(pb == y)),
            "b": mc["b"], "c": mc["c"], "mcnemar_p": mc["p_value"],
            "auc_delta": ad["delta"], "auc_delta_low": ad["low"], "auc_delta_high": ad["high"],
            "auc_p": ad["p_value"]}


def paired_tests(predictions: pd.DataFrame, reference: str = "none", threshold: float = 0.5,
                 n_boot: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Each fusion against the reference, seed by seed, on the same test images.

    Two kinds of rows:

    * ``kind="fusion"``: fusion ``f`` with seed ``s`` against ``reference`` with the same seed ``s``
      (same initialisation seed, data order and augmentation draws: the pairing that isolates
      the fusion);
    * ``kind="seed noise"``: ``reference`` with seed ``s`` against ``reference`` with the first
      seed — the same architecture, only the seed differs. Whatever these rows show is what the
      tests call a "difference" when nothing but the seed changed.

    Per row: exact McNemar on the hard predictions (``b`` = images only the first model gets
    right, ``c`` = only the second), and the paired stratified-bootstrap interval of the ROC AUC
    difference (first − second), via :mod:`skinlesion_utils.metrics`.

    Args:
        predictions: long table ``fusion, seed, id, y_true, y_score`` (from :func:`ablation`).
        reference: the fusion everything is compared with.
        threshold: P(malignant) at which a prediction is malignant.
        n_boot, seed: bootstrap of the AUC difference.

    Returns:
        DataFrame with ``kind, fusion, seed, versus, accuracy_delta, b, c, mcnemar_p, auc_delta,
        auc_delta_low, auc_delta_high, auc_p``.
    """
    need = {"fusion", "seed", "id", "y_true", "y_score"}
    if not need <= set(predictions.columns):
        raise KeyError(f"paired_tests: columns {sorted(need - set(predictions.columns))} missing; "
                       f"found {list(predictions.columns)}. Pass the predictions table of ablation().")
    preds = _pred_table(predictions)
    seeds = sorted({s for _, s in preds})
    if not any(f == reference for f, _ in preds):
        raise ValueError(f"paired_tests: no runs of the reference fusion {reference!r}; found "
                         f"{sorted({f for f, _ in preds})}.")
    rows = []
    for (f, s), pr in preds.items():
        if f == reference or (reference, s) not in preds:
            continue
        rows.append({"kind": "fusion", "fusion": f, "seed": s, "versus": f"{reference} (seed {s})",
                     **_paired(pr, preds[(reference, s)], threshold, n_boot, seed)})
    for s in seeds[1:]:
        if (reference, s) in preds:
            rows.append({"kind": "seed noise", "fusion": reference, "seed": s,
                         "versus": f"{reference} (seed {seeds[0]})",
                         **_paired(preds[(reference, s)], preds[(reference, seeds[0])], threshold, n_boot, seed)})
    return pd.DataFrame(rows)


def rejects_no_difference(tests: pd.DataFrame, alpha: float = 0.05) -> pd.DataFrame:
    """Per row of :func:`paired_tests`: does the paired test reject "no difference" at ``alpha``?

    ``accuracy``: exact McNemar ``p < alpha``; ``roc_auc``: the bootstrap interval of the AUC
    difference excludes 0. Used by :func:`gain_vs_noise` and by chapter 06 for its seed-noise row.

    Returns:
        Boolean DataFrame with columns ``accuracy`` and ``roc_auc``, on ``tests``' index.
    """
    return pd.DataFrame({"accuracy": tests["mcnemar_p"] < alpha,
                         "roc_auc": (tests["auc_delta_low"] > 0) | (tests["auc_delta_high"] < 0)})


def gain_vs_noise(runs_table: pd.DataFrame, tests: pd.DataFrame, reference: str = "none",
                  metrics: Sequence[str] = ("accuracy", "roc_auc"), alpha: float = 0.05) -> pd.DataFrame:
    """Is a fusion's gain over the reference larger than seed-to-seed noise?

    For each fusion and metric: the per-seed gains ``metric(f, s) − metric(reference, s)``, their
    mean and sd, and the *seed noise* — the sd over seeds of the reference itself and of the
    fusion itself (how much the metric moves when only the seed changes). The verdict is
    ``"gain larger than noise"`` (or ``"loss larger than noise"`` for a negative gain) only when
    all three hold:

    1. the gain has the same sign for every seed;
    2. every seed's paired test rejects "no difference" at ``alpha`` (McNemar for accuracy, the
       bootstrap AUC interval excluding 0 for ROC AUC);
    3. ``|mean gain|`` exceeds twice the larger of the two seed sds.

    Otherwise ``"within noise"``. With two seeds an sd is a rough estimate (one degree of freedom):
    the verdict is a screen, not a proof.

    Args:
        runs_table: one row per run (``fusion, seed`` and the metric columns), from :func:`ablation`.
        tests: :func:`paired_tests` output.
        reference: the reference fusion.
        metrics: ``"accuracy"`` and/or ``"roc_auc"``.
        alpha: level of the per-seed tests.

    Returns:
        DataFrame indexed by ``(fusion, metric)`` with ``n_seeds, mean_gain, sd_gain, min_gain,
        max_gain, reference_sd, fusion_sd, seeds_significant`` (how many seeds' tests reject),
        ``verdict``.
    """
    rows = []
    ref = runs_table[runs_table["fusion"] == reference].set_index("seed")
    if ref.empty:
        raise ValueError(f"gain_vs_noise: no runs of the reference {reference!r} in the table.")
    fus = [f for f in dict.fromkeys(runs_table["fusion"]) if f != reference]
    ftests = tests[tests["kind"] == "fusion"]
    for f in fus:
        mine = runs_table[runs_table["fusion"] == f].set_index("seed")
        seeds = sorted(set(mine.index) & set(ref.index))
        for m in metrics:
            if m not in ("accuracy", "roc_auc"):
                raise ValueError(f"gain_vs_noise: metric {m!r} has no paired test here; use 'accuracy' or 'roc_auc'.")
            gains = np.array([mine.loc[s, m] - ref.loc[s, m] for s in seeds], dtype=float)
            t = ftests[(ftests["fusion"] == f) & ftests["seed"].isin(seeds)]
            sig = int(rejects_no_difference(t, alpha)[m].sum())
            ref_sd = float(ref.loc[seeds, m].std(ddof=1)) if len(seeds) > 1 else float("nan")
            f_sd = float(mine.loc[seeds, m].std(ddof=1)) if len(seeds) > 1 else float("nan")
            noise = np.nanmax([ref_sd, f_sd]) if len(seeds) > 1 else float("nan")
            same_sign = bool(np.all(gains > 0) or np.all(gains < 0))
            larger = (same_sign and sig == len(seeds) and len(seeds) > 1
                      and abs(gains.mean()) > 2 * noise)
            rows.append({"fusion": f, "metric": m, "n_seeds": len(seeds), "mean_gain": float(gains.mean()),
                         "sd_gain": float(gains.std(ddof=1)) if len(seeds) > 1 else float("nan"),
                         "min_gain": float(gains.min()), "max_gain": float(gains.max()),
                         "reference_sd": ref_sd, "fusion_sd": f_sd, "seeds_significant": sig,
                         "verdict": (("gain" if gains.mean() > 0 else "loss") + " larger than noise"
                                     if larger else "within noise")})
    return pd.DataFrame(rows).set_index(["fusion", "metric"])


# =========================================================================== results files
def provenance() -> dict:
    """Where and when numbers were produced: device name, date (UTC), commit, versions, threads."""
    from . import __version__
    from .runs import git_commit

    if torch.cuda.is_available():
        device = torch.cuda.get_device_name(0)
        dtype = "cuda"
    else:
        from .runs import _device_name

        device = f"{_device_name('cpu')} ({torch.get_num_threads()} threads)"
        dtype = "cpu"
    return {"device": device, "device_type": dtype,
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "commit": git_commit(), "torch": torch.__version__, "python": platform.python_version(),
            "package_version": __version__}


def save(chapter: str, tables: Mapping[str, pd.DataFrame], meta: Mapping | None = None, profile=None,
         root=None) -> dict[str, Path]:
    """Write a chapter's tables as CSV and one ``meta.json`` with settings + provenance.

    Args:
        chapter: chapter stem (``"02_baselines"``).
        tables: ``{name: DataFrame}`` → ``results/<profile>/<chapter>/<name>.csv``.
        meta: extra JSON-ready facts (settings, timings); :func:`provenance` is added as
            ``meta["provenance"]`` and the profile name as ``meta["profile"]``.
        profile, root: as :func:`skinlesion_utils.runs.results_dir`.

    Returns:
        ``{name: path}`` of every file written (``"meta"`` included).
    """
    from .runs import write_results

    prof = _profile(profile)
    m = dict(meta or {})
    m.update(profile=prof.name, provenance=provenance(), tables=sorted(tables))
    files = dict(tables)
    files["meta"] = m
    return write_results(chapter, files, profile=prof, root=root)


def load(chapter: str, name: str, profile=None, root=None, index: Sequence[str] | None = None
         ) -> pd.DataFrame | dict:
    """Read back a table (``name``) or the meta dict (``"meta"``) that :func:`save` wrote.

    Args:
        chapter, name, profile, root: as :func:`save`.
        index: columns to make the index again (a CSV keeps only the first index column as the
            index; pass e.g. ``["fusion", "metric"]`` to restore a two-level index).
    """
    from .runs import read_results

    out = read_results(chapter, name, profile=_profile(profile), root=root)
    if index is not None and isinstance(out, pd.DataFrame):
        out = out.reset_index().set_index(list(index))
    return out


def stored(chapter: str, name: str, exclude: str | None = None, root=None) -> dict[str, tuple[pd.DataFrame, dict]]:
    """Every profile's stored copy of a chapter's table, with its meta (provenance).

    Args:
        chapter, name: as :func:`save`.
        exclude: a profile name to leave out (the one the page is running under).
        root: the book's root (default: found from the working directory).

    Returns:
        ``{profile name: (table, meta)}`` for each ``results/<profile>/<chapter>/<name>.csv`` that
        exists next to a ``meta.json``. Nothing is returned for a profile that has no file —
        a ``full`` table appears only when a real GPU run wrote it.
    """
    from .profiles import PROFILES
    from .runs import results_dir

    out = {}
    for pname in PROFILES:
        if pname == exclude:
            continue
        folder = results_dir(chapter, pname, root)
        if (folder / f"{name}.csv").is_file() and (folder / "meta.json").is_file():
            table = pd.read_csv(folder / f"{name}.csv", index_col=0)
            out[pname] = (table, json.loads((folder / "meta.json").read_text()))
    return out


def other_profiles(chapter: str, name: str, exclude: str, summarise: Callable[[pd.DataFrame], pd.DataFrame],
                   root=None) -> list[tuple[str, pd.DataFrame]]:
    """What chapters 02 and 06 show beside their own results: every *other* profile's stored
    copy of a table (a ``full`` one only when a GPU run wrote it), as ``(provenance line,
    summarise(table))`` — the line names the profile, device, date and commit.

    Args:
        chapter, name, exclude, root: as :func:`stored`.
        summarise: turns the stored table into what the page displays
            (:func:`baseline_summary`, :func:`ablation_summary`).
    """
    return [(f"{pname}: {provenance_line(meta)}", summarise(table))
            for pname, (table, meta) in stored(chapter, name, exclude=exclude, root=root).items()]


def baseline_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Chapter 02's view of a stored ``baselines`` table: accuracy and ROC AUC with their
    intervals, GFLOPs and training seconds, one row per model."""
    return ci_strings(table, ["accuracy", "roc_auc"]).join(table[["gflops", "train_seconds"]])


def ablation_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Chapter 06's view of a stored ``runs`` table: mean ± sd over seeds of accuracy and ROC
    AUC, one row per fusion."""
    from .metrics import mean_sd_table

    frame = table.reset_index() if "fusion" not in table.columns else table
    return mean_sd_table(frame, "fusion", ["accuracy", "roc_auc"])[["accuracy", "roc_auc"]]


def provenance_line(meta: Mapping) -> str:
    """One line naming where stored numbers come from: ``profile · device · date · commit``."""
    p = meta.get("provenance", meta)
    commit = (p.get("commit") or "unknown commit")[:10]
    return (f"profile '{meta.get('profile', '?')}' · {p.get('device', 'unknown device')} · "
            f"{p.get('date', 'unknown date')} · commit {commit}")


def gpu_reference(root=None) -> dict | None:
    """``results/full/gpu-bench/reference.json`` (from ``python -m skinlesion_utils.gpu_bench``),
    or ``None`` when no GPU run has written it.

    Returns:
        dict with ``provenance`` (device, date, commit), ``setup`` (image size, epochs, ...),
        ``table`` (DataFrame: one row per model with accuracy and ROC AUC, their 95 % intervals and
        the training seconds) and ``paired`` (McNemar and AUC difference, ASFF vs ResNet-50).
    """
    from .runs import _project_root

    base = Path(root) if root is not None else _project_root()
    path = base / "results" / "full" / "gpu-bench" / "reference.json"
    if not path.is_file():
        return None
    ref = json.loads(path.read_text())
    rows = []
    for model, r in ref.get("results", {}).items():
        row = {"model": model, "epochs": r.get("epochs"), "train_seconds": r.get("train_seconds")}
        for m in ("accuracy", "roc_auc"):
            row[m] = r["metrics"][m]
            lo, hi = r.get("ci95", {}).get(m, [np.nan, np.nan])
            row[f"{m}_low"], row[f"{m}_high"] = lo, hi
        rows.append(row)
    return {"provenance": ref.get("provenance", {}), "setup": ref.get("setup", {}),
            "table": pd.DataFrame(rows).set_index("model") if rows else pd.DataFrame(),
            "paired": ref.get("paired", {}), "path": path}


def paper_table_or_note(n: int, claim_ids: Iterable[str] = (), claims: dict | None = None
                        ) -> tuple[pd.DataFrame | None, str, pd.DataFrame]:
    """The paper's Table ``n`` if it was transcribed, else a note saying it could not be.

    Args:
        n: table number (2: baselines, 3: fusion ablation).
        claim_ids: ids of related claims to list in any case (e.g. ``"headline.accuracy"``).
        claims: an edited claims dict (:func:`skinlesion_utils.paper.load_claims`); default the
            packaged file.

    Returns:
        ``(table or None, note, claims)``: the table as printed (strings, percent) when its status
        is ``transcribed``/``partial``; a one-paragraph note on its status; and the claims that do
        exist (``value`` as printed, ``what``, ``status``, ``location``), from
        :mod:`skinlesion_utils.paper`.
    """
    from . import paper

    t = paper.table(n, strict=False, claims=claims)
    status = t.attrs.get("status", "unknown")
    where = t.attrs.get("where", {})
    if len(t):
        note = (f"Table {n} of the paper ({t.attrs.get('title', '')}), status '{status}', as printed in "
                f"{where.get('version', '')} {where.get('location', '')}.")
        table = t
    else:
        note = (f"Table {n} of the paper ({t.attrs.get('title', '')}) could not be transcribed: the paper's "
                f"sections with its tables were not readable with the project's tools (status '{status}' in "
                "skinlesion_utils/paper_claims.json). No number of it is shown or invented here; the claims "
                "below are the ones the project could read, each with its source.")
        table = None
    ct = paper.claims_table(claims=claims)
    ids = [c for c in claim_ids if c in ct.index]
    claims = ct.loc[ids, ["value", "unit", "what", "status", "version", "location"]]
    return table, note, claims


# =========================================================================== checks
def floors_table(checks: Sequence[tuple[str, float, float]]) -> pd.DataFrame:
    """The performance floors a chapter asserts, beside what its execution measured (chapters 02, 06).

    Args:
        checks: ``(check, floor, measured)`` triples; a check passes when ``measured >= floor``.

    Returns:
        DataFrame indexed by ``check`` with ``floor``, ``measured`` and ``passes``.
    """
    floors = pd.DataFrame(list(checks), columns=["check", "floor", "measured"]).set_index("check")
    floors["passes"] = floors["measured"] >= floors["floor"]
    return floors
