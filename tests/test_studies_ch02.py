"""Tests of chapter 02's baseline benchmark (skinlesion_utils.studies.ch02_baselines) and of what
it shares with chapter 06: the one protocol (runs.baseline_config, runs.settings_table), the
results files with provenance (results.save/load/stored/other_profiles) and the GPU reference file.

Tiny CNNs (through ``model_fn``) train on 120 real training images at 16 px and are evaluated on
the 660 real test images, so every table, file and test statistic is produced for real in
seconds.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from runs_support import needs_data, subset, tiny_config, tiny_fn  # noqa: F401 (subset: a fixture)
from skinlesion_utils import fusion, metrics, models, results, runs, splits
from skinlesion_utils.models import build_model, count_flops, count_parameters
from skinlesion_utils.profiles import profile
from skinlesion_utils.studies import ch02_baselines as B
from skinlesion_utils.studies import ch06_ablation as A

ROOT = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------------ configs and cost


def test_baseline_config_uses_the_bench_budget_of_the_profile():
    P = profile("ci")
    cfg = runs.baseline_config("vgg16", profile=P)
    assert (cfg.image_size, cfg.epochs, cfg.batch_size) == (P.bench_image_size, P.bench_epochs, P.batch_size)
    assert cfg.seed == P.seeds[0] and cfg.recipe == P.recipe and cfg.pretrained == P.pretrained
    # the same protocol as the ablation's configs (one budget for chapters 02 and 06)
    abl = runs.ablation_config("none", P.seeds[0], profile=P)
    assert (abl.image_size, abl.epochs, abl.batch_size, abl.recipe, abl.train_subset) == \
        (cfg.image_size, cfg.epochs, cfg.batch_size, cfg.recipe, cfg.train_subset)
    paper_cfg = runs.baseline_config("vgg16", profile=P, recipe="paper")
    assert paper_cfg.recipe == "paper" and paper_cfg.key() != cfg.key()
    full = runs.baseline_config("resnet50", profile="full")
    assert full.image_size == profile("full").bench_image_size and full.pretrained is True
    table = runs.settings_table({"vgg16": cfg, "vgg16 (paper)": paper_cfg})
    assert table.loc["vgg16", "optimizer"] == "adamw" and table.loc["vgg16 (paper)", "optimizer"] == "sgd"  # Table 1: VGG-16, SGD 1e-4
    assert table.loc["vgg16", "train_images"] == P.bench_train_images == len(cfg.train_subset)
    assert cfg.train_subset == tuple(splits.stratified_subset("isic_balanced", "train", P.bench_train_images))
    assert full.train_subset is None and profile("full").bench_train_images is None
    assert runs.settings_table({"full": full}).loc["full", "train_images"] == "all"


def test_vgg16_takes_the_learning_rate_chosen_on_validation_only_under_the_fast_recipe():
    assert runs.BASELINE_LR == {"vgg16": 1e-4}
    assert runs.baseline_config("vgg16", profile="ci").lr == 1e-4
    assert runs.baseline_config("vgg16", profile="full").lr == 1e-4
    assert runs.baseline_config("vgg16", profile="ci", lr=3e-4).lr == 3e-4  # an explicit lr wins
    assert runs.baseline_config("vgg16", profile="ci", recipe="paper").lr is None  # Table 1's row decides
    assert runs.resolved_recipe(runs.baseline_config("vgg16", profile="ci", recipe="paper")).lr == 1e-4  # SGD 1e-4
    assert all(runs.baseline_config(m, profile="ci").lr is None for m in models.BASELINES if m != "vgg16")
    # the stored search chose the lr that BASELINE_LR holds, and its chosen run is the one chapter 02 trains
    stored = results.read_results(B.LR_SEARCH_CHAPTER, "lr_search_vgg16", profile="ci", root=ROOT)
    assert stored["chosen"].sum() == 1 and stored["val_auc"].idxmax() == 1e-4
    assert stored.loc[1e-4, "key"] == runs.baseline_config("vgg16", profile="ci").key()
    assert 2e-3 in stored.index  # the recipe's own lr is the reference row


@needs_data
def test_lr_search_ranks_on_validation_and_save_refuses_a_choice_runs_does_not_hold(tmp_path, monkeypatch):
    monkeypatch.setenv("SKINLESION_RESULTS", str(tmp_path / "results"))
    small = profile("ci").with_(bench_image_size=16, bench_epochs=1, bench_train_images=120)
    table = B.lr_search("lenet5", (1e-2, 1e-3, 1e-2), profile=small, cache_dir=tmp_path / "cache")
    assert list(table.index) == [1e-2, 1e-3]  # duplicates dropped, largest first
    assert table["chosen"].sum() == 1 and table.loc[table["chosen"]].index[0] == table["val_auc"].idxmax()
    assert table["key"].nunique() == 2 and (table["epochs"] == 1).all()
    run = runs.Run(tmp_path / "cache" / "runs" / table.loc[1e-3, "key"])
    assert run.history.iloc[-1]["val_auc"] == table.loc[1e-3, "val_auc"]  # read from the run's own history
    with pytest.raises(ValueError, match=r"runs.BASELINE_LR says None\. Fix: set runs.BASELINE_LR\['lenet5'\]"):
        B.save_lr_search("lenet5", (1e-2, 1e-3), profile=small, cache_dir=tmp_path / "cache")
    assert not (tmp_path / "results").exists()  # nothing stored when the choice is not the one in runs
    with pytest.raises(ValueError, match="at least one learning rate"):
        B.lr_search("lenet5", (), profile=small, cache_dir=tmp_path / "cache")


@pytest.mark.parametrize("name", ["lenet5", "squeezenet1_1", "alexnet"])
def test_model_cost_on_meta_device_equals_a_real_count(name):
    cfg = runs.baseline_config(name, profile="ci")
    cost = B.model_cost(cfg)
    real = build_model(name)
    assert cost["params"] == count_parameters(real)[0]
    assert cost["gflops"] == pytest.approx(count_flops(real, cfg.image_size) / 1e9, rel=1e-12)
    assert cost["gflops_224"] > cost["gflops"] > 0


def test_cpu_latency_is_positive_and_restores_state():
    model = build_model("lenet5").train()
    threads = torch.get_num_threads()
    out = B.cpu_latency(model, 32, repeats=5, warmup=1, threads=1)
    assert out["latency_ms"] > 0 and out["latency_p90_ms"] >= out["latency_ms"] and out["threads"] == 1
    assert model.training and torch.get_num_threads() == threads


@needs_data
def test_benchmark_tables_files_and_stored_copies(subset, tmp_path, capsys):
    configs = {"narrow": tiny_config(subset, width=4), "wide": tiny_config(subset, width=8)}
    table, preds = B.benchmark(configs, cache_dir=tmp_path / "cache", model_fn=tiny_fn, n_boot=200)
    assert capsys.readouterr().out.count("trained in") == 2
    again, _ = B.benchmark(configs, cache_dir=tmp_path / "cache", model_fn=tiny_fn, n_boot=200, latency=False)
    assert capsys.readouterr().out.count("loaded from the run cache") == 2  # trained once, then loaded
    pd.testing.assert_frame_equal(again[["accuracy", "roc_auc_low"]], table[["accuracy", "roc_auc_low"]])
    assert list(table.index) == ["narrow", "wide"]
    for m in metrics.CI_METRICS:
        assert ((table[f"{m}_low"] <= table[m] + 1e-12) & (table[m] <= table[f"{m}_high"] + 1e-12)).all(), m
        assert table[m].between(0, 1).all()
    assert (table["params"] > 0).all() and table.loc["wide", "params"] > table.loc["narrow", "params"]
    assert (table["gflops_224"] > table["gflops"]).all() and (table["latency_ms"] > 0).all()
    assert (table["n_train"] == 102).all() and (table["train_seconds"] > 0).all()
    # the table's metrics are the run's own test metrics; predictions are the 660 test images
    run = runs.get_or_train(configs["wide"], cache_dir=tmp_path / "cache", model_fn=tiny_fn)
    assert table.loc["wide", "roc_auc"] == pytest.approx(run.metrics["roc_auc"], abs=1e-12)
    assert preds.groupby("model").size().to_dict() == {"narrow": 660, "wide": 660}
    assert set(preds.columns) == {"model", "id", "y_true", "y_score"}
    s = metrics.ci_strings(table, ["accuracy"], decimals=2, percent=True)
    lo, hi = 100 * table.loc["wide", "accuracy_low"], 100 * table.loc["wide", "accuracy_high"]
    assert s.loc["wide", "accuracy"] == f"{100 * table.loc['wide', 'accuracy']:.2f} [{lo:.2f}, {hi:.2f}]"
    with pytest.raises(KeyError, match="not in the table"):
        metrics.ci_strings(table, ["brier"])

    # save → load round trip with provenance; a stored copy of another profile appears only when written
    root = tmp_path / "book"
    written = results.save("02_baselines", {"baselines": table}, {"note": "tiny"}, profile="ci", root=root)
    assert written["baselines"] == root / "results" / "ci" / "02_baselines" / "baselines.csv"
    back = results.read_results("02_baselines", "baselines", profile="ci", root=root)
    pd.testing.assert_frame_equal(back, table, check_dtype=False)
    meta = results.read_results("02_baselines", "meta", profile="ci", root=root)
    assert meta["note"] == "tiny" and {"device", "date", "commit"} <= set(meta["provenance"])
    assert "profile 'ci'" in results.provenance_line(meta)
    assert results.stored("02_baselines", "baselines", exclude="ci", root=root) == {}
    results.save("02_baselines", {"baselines": table.head(1)}, profile="full", root=root)
    other = results.stored("02_baselines", "baselines", exclude="ci", root=root)
    assert list(other) == ["full"] and list(other["full"][0].index) == ["narrow"]
    assert other["full"][1]["profile"] == "full"


@pytest.mark.parametrize("chapter, name, summarise, rows", [
    ("02_baselines", "baselines", B.baseline_summary, len(models.BASELINES)),
    ("06_ablation", "runs", A.ablation_summary, len(fusion.FUSIONS)),
])
def test_other_profiles_shows_a_full_copy_of_the_real_results_with_provenance(tmp_path, chapter, name, summarise, rows):
    """The pages show a `full` results file beside their own when one exists: stand the
    repository's stored `ci` results in for it and render them as the chapters do."""
    source = ROOT / "results" / "ci" / chapter  # committed with the executed chapters
    target = tmp_path / "results" / "full" / chapter
    target.mkdir(parents=True)
    shutil.copy(source / f"{name}.csv", target / f"{name}.csv")
    meta = json.loads((source / "meta.json").read_text())
    (target / "meta.json").write_text(json.dumps({**meta, "profile": "full"}))
    assert results.other_profiles(chapter, name, "full", summarise, root=tmp_path) == []
    [(line, summary)] = results.other_profiles(chapter, name, "ci", summarise, root=tmp_path)
    prov = meta["provenance"]
    assert line.startswith("full: profile 'full'") and prov["device"] in line and prov["commit"][:10] in line
    assert len(summary) == rows and {"accuracy", "roc_auc"} <= set(summary.columns)
    assert summary["accuracy"].astype(str).str.contains(r"0\.\d{3}").all()


# ------------------------------------------------------------------------------ the GPU file


def test_gpu_reference_is_none_without_a_gpu_run(tmp_path):
    assert results.gpu_reference(root=tmp_path) is None


def test_gpu_reference_reads_the_gpu_bench_file(tmp_path):
    # The layout bench.run_gpu_benchmark writes (tests/test_gpu_bench.py runs it end to end),
    # filled with metrics computed here on made-up scores.
    from skinlesion_utils.metrics import auc_difference, classification_report, mcnemar, report_with_ci

    rng = np.random.default_rng(0)
    y = np.r_[np.zeros(40, int), np.ones(30, int)]
    scores = {"ResNet-50": np.clip(0.5 + 0.2 * (2 * y - 1) + rng.normal(0, 0.25, 70), 0, 1),
              "ASFF-ResNet50": np.clip(0.5 + 0.3 * (2 * y - 1) + rng.normal(0, 0.25, 70), 0, 1)}
    per_model = {}
    for model, s in scores.items():
        ci = report_with_ci(y, s, n_boot=200)
        per_model[model] = {"metrics": {k: v for k, v in classification_report(y, s).items() if isinstance(v, float)},
                            "ci95": {m: [ci.loc[m, "low"], ci.loc[m, "high"]] for m in ci.index},
                            "train_seconds": 12.5, "epochs": 3, "history": []}
    paired = {"mcnemar": {k: v for k, v in mcnemar(y, scores["ResNet-50"] >= 0.5, scores["ASFF-ResNet50"] >= 0.5).items()
                          if k != "table"},
              "auc_difference": auc_difference(y, scores["ResNet-50"], scores["ASFF-ResNet50"], n_boot=200)}
    ref = {"provenance": {"device": "NVIDIA H100", "date": "2026-01-01T00:00:00+00:00", "commit": "a" * 40},
           "setup": {"image_size": 224, "epochs": 3}, "results": per_model, "paired": paired}
    out = tmp_path / "results" / "full" / "gpu-bench"
    out.mkdir(parents=True)
    (out / "reference.json").write_text(json.dumps(ref, default=float))
    got = results.gpu_reference(root=tmp_path)
    assert list(got["table"].index) == ["ResNet-50", "ASFF-ResNet50"]
    for model in scores:
        assert got["table"].loc[model, "accuracy"] == pytest.approx(per_model[model]["metrics"]["accuracy"])
        assert got["table"].loc[model, "roc_auc_low"] == pytest.approx(per_model[model]["ci95"]["roc_auc"][0])
    assert got["provenance"]["device"] == "NVIDIA H100" and got["setup"]["image_size"] == 224
    assert got["paired"]["mcnemar"]["p_value"] == pytest.approx(paired["mcnemar"]["p_value"])
    assert "profile 'full'" in results.provenance_line({"profile": "full", **got})
