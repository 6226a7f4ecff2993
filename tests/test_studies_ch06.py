"""Tests of chapter 06's fusion ablation (skinlesion_utils.studies.ch06_ablation): the paired
tests per seed, the noise verdict, and the runs themselves (tiny CNNs on real images, see
runs_support.py).
"""
from __future__ import annotations

import json
import numpy as np
import pandas as pd
import pytest
import torch

from runs_support import needs_data, subset, tiny_config, tiny_fn  # noqa: F401 (subset: a fixture)
from skinlesion_utils import fusion
from skinlesion_utils.data import ImageTensorStore
from skinlesion_utils.studies import ch06_ablation as A


# ------------------------------------------------------------------------------ the ablation


def _synthetic_predictions(seeds=(0, 1), n=400, seed=0):
    """'none' is a weak scorer, 'better' a much stronger one, 'same' = 'none' plus tiny noise."""
    rng = np.random.default_rng(seed)
    y = np.r_[np.zeros(n // 2, int), np.ones(n // 2, int)]
    rows = []
    for s in seeds:
        r = np.random.default_rng(100 + s)
        weak = 1 / (1 + np.exp(-(0.6 * (2 * y - 1) + r.normal(0, 1.5, n))))
        strong = 1 / (1 + np.exp(-(2.5 * (2 * y - 1) + r.normal(0, 1.0, n))))
        same = np.clip(weak + r.normal(0, 1e-3, n), 0, 1)
        for f, score in (("none", weak), ("better", strong), ("same", same)):
            rows.append(pd.DataFrame({"fusion": f, "seed": s, "id": [f"test/{i:04d}.jpg" for i in range(n)],
                                      "y_true": y, "y_score": score}))
    del rng
    return pd.concat(rows, ignore_index=True)


def _runs_table(preds):
    from skinlesion_utils.metrics import classification_report

    rows = []
    for (f, s), g in preds.groupby(["fusion", "seed"], sort=False):
        rep = classification_report(g["y_true"], g["y_score"])
        rows.append({"fusion": f, "seed": s, "accuracy": rep["accuracy"], "roc_auc": rep["roc_auc"]})
    return pd.DataFrame(rows)


def test_paired_tests_and_the_noise_verdict():
    preds = _synthetic_predictions()
    tests = A.paired_tests(preds, n_boot=400)
    fus = tests[tests["kind"] == "fusion"].set_index(["fusion", "seed"])
    assert set(fus.index) == {("better", 0), ("better", 1), ("same", 0), ("same", 1)}
    assert (fus.loc["better", "auc_delta_low"] > 0).all() and (fus.loc["better", "mcnemar_p"] < 1e-3).all()
    assert (fus.loc["better", "c"] < fus.loc["better", "b"]).all()  # b: only 'better' is right
    assert (fus.loc["same", "auc_delta_low"] <= 0).all() and (fus.loc["same", "auc_delta_high"] >= 0).all()
    noise = tests[tests["kind"] == "seed noise"]
    assert len(noise) == 1 and noise.iloc[0]["versus"] == "none (seed 0)" and noise.iloc[0]["seed"] == 1
    verdict = A.gain_vs_noise(_runs_table(preds), tests)
    assert verdict.loc[("better", "roc_auc"), "verdict"] == "gain larger than noise"
    assert verdict.loc[("better", "accuracy"), "seeds_significant"] == 2
    assert verdict.loc[("same", "roc_auc"), "verdict"] == "within noise"
    assert verdict.loc[("same", "accuracy"), "verdict"] == "within noise"
    # the other direction: measured against 'better', plain 'none' loses by more than noise
    flipped = A.gain_vs_noise(_runs_table(preds), A.paired_tests(preds, reference="better", n_boot=400),
                              reference="better")
    assert flipped.loc[("none", "roc_auc"), "verdict"] == "loss larger than noise"
    assert flipped.loc[("none", "roc_auc"), "mean_gain"] < 0


def test_rejects_no_difference_reads_each_paired_test():
    tests = pd.DataFrame({"mcnemar_p": [0.01, 0.2, 0.04], "auc_delta_low": [0.01, -0.02, -0.05],
                          "auc_delta_high": [0.03, 0.01, -0.01]})
    got = A.rejects_no_difference(tests)
    assert got["accuracy"].tolist() == [True, False, True] and got["roc_auc"].tolist() == [True, False, True]
    assert A.rejects_no_difference(tests, alpha=0.03)["accuracy"].tolist() == [True, False, False]


def test_paired_tests_refuse_unpaired_predictions():
    preds = _synthetic_predictions()
    bad = preds.copy()
    bad.loc[(bad["fusion"] == "better") & (bad["seed"] == 0), "id"] = "other.jpg"
    with pytest.raises(ValueError, match="same test images"):
        A.paired_tests(bad, n_boot=50)
    with pytest.raises(ValueError, match="reference fusion"):
        A.paired_tests(preds[preds["fusion"] != "none"], n_boot=50)


def test_a_single_seed_is_never_called_larger_than_noise():
    preds = _synthetic_predictions(seeds=(0,))
    tests = A.paired_tests(preds, n_boot=200)
    verdict = A.gain_vs_noise(_runs_table(preds), tests)
    assert (verdict["verdict"] == "within noise").all() and verdict["reference_sd"].isna().all()


@needs_data
def test_ablation_runs_tables_and_weights(subset, tmp_path):
    def config_fn(fusion, seed):
        return tiny_config(subset, seed=seed, fusion=fusion)

    table, preds, runs = A.ablation(("none", "mix"), seeds=(0, 1), config_fn=config_fn,
                                    cache_dir=tmp_path, verbose=False, model_fn=tiny_fn, n_boot=100)
    assert list(zip(table["fusion"], table["seed"])) == [("none", 0), ("none", 1), ("mix", 0), ("mix", 1)]
    assert len(preds) == 4 * 660 and set(runs) == {("none", 0), ("none", 1), ("mix", 0), ("mix", 1)}
    # seeds differ only by the seed: different weights, same test images
    assert not np.allclose(preds.query("fusion == 'none' and seed == 0")["y_score"],
                           preds.query("fusion == 'none' and seed == 1")["y_score"])
    tests = A.paired_tests(preds, n_boot=100)
    assert len(tests) == 3
    test_store = ImageTensorStore.from_dataset("isic_balanced", split="test", resolution=16, progress=False)
    w = fusion.fusion_weights(runs[("mix", 0)].load_model(model_fn=tiny_fn), test_store, batch_size=100)
    assert w.shape == (660, 2) and torch.allclose(w.sum(1), torch.ones(660), atol=1e-5)
    with pytest.raises(ValueError, match="keeps no fusion weights"):
        fusion.fusion_weights(runs[("none", 0)].load_model(model_fn=tiny_fn), test_store)


def test_the_stored_larger_scale_pair_has_its_provenance(tmp_path):
    """results/scale128: the main pair at 128 px, 20 epochs, seeds 0 and 1, with command and device
    (chapters 04 and 06 show it beside ci); nothing stored → None, not an error."""
    from pathlib import Path

    from skinlesion_utils import results

    root = Path(__file__).resolve().parents[1]
    larger = results.larger_scale(root=root)
    runs = larger["runs"]
    assert sorted(zip(runs["fusion"], runs["seed"])) == [("asff_text", 0), ("asff_text", 1), ("none", 0), ("none", 1)]
    assert set(runs["image_size"]) == {128} and set(runs["epochs"]) == {20} and set(runs["recipe"]) == {"fast"}
    assert runs["git_commit"].str.fullmatch(r"[0-9a-f]{40}").all() and runs["created"].str.startswith("2026-").all()
    assert "--image-size 128 --epochs 20" in larger["provenance"]["command"] and "CPU" in larger["provenance"]["device"]
    for run in runs["run"]:  # every summarised number is the stored run's own
        stored = json.loads((root / "results" / "scale128" / "04_06_main_pair" / run / "results.json").read_text())
        row = runs[runs["run"] == run].iloc[0]
        assert abs(row["roc_auc"] - stored["metrics"]["test"]["roc_auc"]) < 1e-4
    assert list(larger["means"].index) == ["asff_text", "none"]
    assert set(larger["readings"]["fusion"]) == {"asff_text"} and len(larger["readings"]) == 2
    assert results.larger_scale(root=tmp_path) is None
