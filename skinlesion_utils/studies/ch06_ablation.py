"""The fusion ablation of chapter 06 (``chapters/06_ablation``): every fusion × seed of
ASFF-ResNet50 under one protocol, paired against plain ResNet-50, and the verdict "is the gain
larger than seed-to-seed noise?".

What this module owns
---------------------
* :func:`ablation` — train (or load) :data:`skinlesion_utils.fusion.FUSIONS` × seeds with
  :func:`skinlesion_utils.runs.ablation_config` (the configs chapters 07–09 load, so nothing is
  trained twice): one row per run with its test metrics and 95 % intervals, plus every
  prediction.
* :func:`paired_tests` — per seed, each fusion against ``none`` on the same 660 test images
  (exact McNemar and the paired-bootstrap CI of the AUC difference, from
  :func:`skinlesion_utils.metrics.paired_comparison`); and ``none`` against itself across seeds,
  which is what seed-to-seed noise looks like under the same tests.
* :func:`rejects_no_difference` and :func:`gain_vs_noise` — the verdicts drawn from those tests.
* :func:`ablation_summary` — the page's view of a stored ``runs`` table (another profile's, via
  :func:`skinlesion_utils.results.other_profiles`).

What the adaptive fusions learn is read by :mod:`skinlesion_utils.fusion`
(``fusion_weight_table``, ``fusion_weight_readings``). The tables are written with
:func:`skinlesion_utils.results.save` under ``results/<profile>/06_ablation/``; chapter 09 reads
``runs.csv`` and ``predictions.csv``.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

from ..errors import ConfigError
from ..fusion import FUSIONS
from ..metrics import CI_METRICS, ci_row, mean_sd_table, paired_comparison
from ..profiles import as_profile
from ..runs import ablation_config, long_predictions, train_all

__all__ = [
    "ablation",
    "paired_tests",
    "rejects_no_difference",
    "gain_vs_noise",
    "ablation_summary",
]


# =========================================================================== the runs
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
        cache_dir, progress, verbose, model_fn: as :func:`skinlesion_utils.runs.train_all`.
        n_boot: bootstrap resamples of the per-run intervals.

    Returns:
        ``(runs_table, predictions, runs)``. ``runs_table``: one row per run with ``fusion, seed``,
        the metrics of chapter 02's benchmark with intervals (``accuracy`` … ``roc_auc`` with
        ``_low``/``_high``, ``pr_auc``), ``train_seconds``, ``epochs``, ``image_size`` and ``key``.
        ``predictions``: long table ``fusion, seed, id, y_true, y_score``. ``runs``:
        ``{(fusion, seed): Run}``.
    """
    prof = as_profile(profile)
    seeds = tuple(prof.seeds if seeds is None else seeds)
    if config_fn is None:
        def config_fn(fusion, seed):
            return ablation_config(fusion, seed, profile=prof)
    configs = {(f, s): config_fn(f, s) for s in seeds for f in fusions}
    labelled = {f"{f} (seed {s})": c for (f, s), c in configs.items()}
    trained = train_all(labelled, cache_dir, progress, model_fn, verbose)
    runs = {fs: trained[f"{fs[0]} (seed {fs[1]})"] for fs in configs}
    rows = []
    for (f, s), run in runs.items():
        p = run.predictions
        row = {"fusion": f, "seed": s, **ci_row(p["y_true"].to_numpy(), p["y_score"].to_numpy(), CI_METRICS,
                                                point_only=("pr_auc",), n_boot=n_boot, seed=0)}
        row.update(train_seconds=run.results["timing"]["train_seconds"], epochs=run.config.epochs,
                   image_size=run.config.image_size, key=run.dir.name)
        rows.append(row)
    table = pd.DataFrame(rows)
    table["fusion"] = pd.Categorical(table["fusion"], categories=list(fusions), ordered=True)
    table = table.sort_values(["fusion", "seed"]).reset_index(drop=True)
    table["fusion"] = table["fusion"].astype(str)
    preds = long_predictions(runs, lambda fs: {"seed": fs[1], "fusion": fs[0]})
    return table, preds, runs


# =========================================================================== paired tests
def _pred_table(predictions: pd.DataFrame) -> dict:
    """``{(fusion, seed): (ids, y_true, y_score)}`` sorted by id (so pairs line up)."""
    out = {}
    for (f, s), g in predictions.groupby(["fusion", "seed"], sort=False):
        g = g.sort_values("id")
        out[(f, int(s))] = (g["id"].to_numpy(), g["y_true"].to_numpy(), g["y_score"].to_numpy())
    return out


def _paired(a, b, threshold: float, n_boot: int, seed: int) -> dict:
    """One row of :func:`paired_tests`: run ``a`` against run ``b`` on the same images."""
    ids_a, y, sa = a
    ids_b, yb, sb = b
    if not (np.array_equal(ids_a, ids_b) and np.array_equal(y, yb)):
        raise ConfigError("paired tests need predictions on the same test images with the same labels; "
                         "the two runs' ids or labels differ. Fix: evaluate both on the same test split.")
    r = paired_comparison(y, sa, sb, threshold=threshold, n_boot=n_boot, seed=seed)
    return {"accuracy_delta": r["acc_a"] - r["acc_b"],
            "b": r["mcnemar_b"], "c": r["mcnemar_c"], "mcnemar_p": r["mcnemar_p"],
            "auc_delta": r["auc_delta"], "auc_delta_low": r["auc_low"], "auc_delta_high": r["auc_high"],
            "auc_p": r["auc_p"]}


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
    difference (first − second), via :func:`skinlesion_utils.metrics.paired_comparison`.

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
        raise ConfigError(f"paired_tests: no runs of the reference fusion {reference!r}; found "
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


# =========================================================================== verdicts
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
        raise ConfigError(f"gain_vs_noise: no runs of the reference {reference!r} in the table.")
    fus = [f for f in dict.fromkeys(runs_table["fusion"]) if f != reference]
    ftests = tests[tests["kind"] == "fusion"]
    for f in fus:
        mine = runs_table[runs_table["fusion"] == f].set_index("seed")
        seeds = sorted(set(mine.index) & set(ref.index))
        for m in metrics:
            if m not in ("accuracy", "roc_auc"):
                raise ConfigError(f"gain_vs_noise: metric {m!r} has no paired test here; use 'accuracy' or 'roc_auc'.")
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


def ablation_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Chapter 06's view of a stored ``runs`` table: mean ± sd over seeds of accuracy and ROC
    AUC, one row per fusion."""
    frame = table.reset_index() if "fusion" not in table.columns else table
    return mean_sd_table(frame, "fusion", ["accuracy", "roc_auc"])[["accuracy", "roc_auc"]]
