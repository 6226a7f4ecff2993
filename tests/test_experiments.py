"""Tests of the many-run experiments (skinlesion_utils.experiments), chapters 02 and 06.

Tiny CNNs (through ``model_fn``) train on 120 real training images at 16 px and are evaluated on
the 660 real test images, so every table, file and test statistic is produced for real in
seconds. The fusion-weight code is also run on real ASFF-ResNet50 models (untrained, 32 px).
"""
from __future__ import annotations

import copy
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn as nn

from skinlesion_utils import experiments as E, splits
from skinlesion_utils import data, paper
from skinlesion_utils import runs as R
from skinlesion_utils.data import ImageTensorStore
from skinlesion_utils.models import build_model, count_flops, count_parameters
from skinlesion_utils.profiles import profile

ROOT = Path(__file__).resolve().parents[1]

DATA = Path(os.environ.get("SKINLESION_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
needs_data = pytest.mark.skipif(not (DATA / "isic_balanced").is_dir(), reason="needs SKINLESION_DATA")


class TinyFusionCNN(nn.Module):
    """3×S×S → 2 logits; ``fusion="mix"`` mimics an adaptive fusion: it keeps per-image weights
    [B, 2] (softmax) in ``last_fusion_weights`` like ASFFResNet50 does."""

    def __init__(self, width=8, fusion="none"):
        super().__init__()
        self.fusion_name = fusion
        self.features = nn.Sequential(
            nn.Conv2d(3, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(width, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.gate = nn.Linear(width, 2) if fusion == "mix" else None
        self.head = nn.Linear(width, 2)
        self.last_fusion_weights = None

    def forward(self, x):
        z = self.features(x)
        if self.gate is not None:
            w = torch.softmax(self.gate(z), 1)
            self.last_fusion_weights = w.detach()
            z = z * w[:, :1]
        return self.head(z)


def tiny_fn(cfg):
    return TinyFusionCNN(**cfg.kwargs)


@pytest.fixture(scope="module")
def subset():
    store = ImageTensorStore.from_dataset("isic_balanced", split="train", resolution=16, progress=False)
    return tuple(i for c in (0, 1) for i in torch.nonzero(store.labels == c).flatten()[:60].tolist())


def _cfg(subset, model="tiny_fusion_test", seed=0, **kwargs):
    return R.RunConfig(model=model, model_kwargs=kwargs, profile="ci", recipe="fast", epochs=1, image_size=16,
                       batch_size=32, seed=seed, lr=5e-3, train_subset=subset)


# ------------------------------------------------------------------------------ configs and cost


def test_baseline_config_uses_the_bench_budget_of_the_profile():
    P = profile("ci")
    cfg = E.baseline_config("vgg16", profile=P)
    assert (cfg.image_size, cfg.epochs, cfg.batch_size) == (P.bench_image_size, P.bench_epochs, P.batch_size)
    assert cfg.seed == P.seeds[0] and cfg.recipe == P.recipe and cfg.pretrained == P.pretrained
    # the same protocol as the ablation's configs (one budget for chapters 02 and 06)
    abl = R.ablation_config("none", P.seeds[0], profile=P)
    assert (abl.image_size, abl.epochs, abl.batch_size, abl.recipe, abl.train_subset) == \
        (cfg.image_size, cfg.epochs, cfg.batch_size, cfg.recipe, cfg.train_subset)
    paper_cfg = E.baseline_config("vgg16", profile=P, recipe="paper")
    assert paper_cfg.recipe == "paper" and paper_cfg.key() != cfg.key()
    full = E.baseline_config("resnet50", profile="full")
    assert full.image_size == profile("full").bench_image_size and full.pretrained is True
    table = E.settings_table({"vgg16": cfg, "vgg16 (paper)": paper_cfg})
    assert table.loc["vgg16", "optimizer"] == "adamw" and table.loc["vgg16 (paper)", "optimizer"] == "adam"
    assert table.loc["vgg16", "train_images"] == P.bench_train_images == len(cfg.train_subset)
    assert cfg.train_subset == tuple(splits.stratified_subset("isic_balanced", "train", P.bench_train_images))
    assert full.train_subset is None and profile("full").bench_train_images is None
    assert E.settings_table({"full": full}).loc["full", "train_images"] == "all"


@pytest.mark.parametrize("name", ["lenet5", "squeezenet1_1", "alexnet"])
def test_model_cost_on_meta_device_equals_a_real_count(name):
    cfg = E.baseline_config(name, profile="ci")
    cost = E.model_cost(cfg)
    real = build_model(name)
    assert cost["params"] == count_parameters(real)[0]
    assert cost["gflops"] == pytest.approx(count_flops(real, cfg.image_size) / 1e9, rel=1e-12)
    assert cost["gflops_224"] > cost["gflops"] > 0


def test_cpu_latency_is_positive_and_restores_state():
    model = build_model("lenet5").train()
    threads = torch.get_num_threads()
    out = E.cpu_latency(model, 32, repeats=5, warmup=1, threads=1)
    assert out["latency_ms"] > 0 and out["latency_p90_ms"] >= out["latency_ms"] and out["threads"] == 1
    assert model.training and torch.get_num_threads() == threads


# ------------------------------------------------------------------------------ the benchmark


@needs_data
def test_benchmark_tables_files_and_stored_copies(subset, tmp_path, capsys):
    configs = {"narrow": _cfg(subset, width=4), "wide": _cfg(subset, width=8)}
    table, preds = E.benchmark(configs, cache_dir=tmp_path / "cache", model_fn=tiny_fn, n_boot=200)
    assert capsys.readouterr().out.count("trained in") == 2
    again, _ = E.benchmark(configs, cache_dir=tmp_path / "cache", model_fn=tiny_fn, n_boot=200, latency=False)
    assert capsys.readouterr().out.count("loaded from the run cache") == 2  # trained once, then loaded
    pd.testing.assert_frame_equal(again[["accuracy", "roc_auc_low"]], table[["accuracy", "roc_auc_low"]])
    assert list(table.index) == ["narrow", "wide"]
    for m in E.CI_METRICS:
        assert ((table[f"{m}_low"] <= table[m] + 1e-12) & (table[m] <= table[f"{m}_high"] + 1e-12)).all(), m
        assert table[m].between(0, 1).all()
    assert (table["params"] > 0).all() and table.loc["wide", "params"] > table.loc["narrow", "params"]
    assert (table["gflops_224"] > table["gflops"]).all() and (table["latency_ms"] > 0).all()
    assert (table["n_train"] == 102).all() and (table["train_seconds"] > 0).all()
    # the table's metrics are the run's own test metrics; predictions are the 660 test images
    run = R.get_or_train(configs["wide"], cache_dir=tmp_path / "cache", model_fn=tiny_fn)
    assert table.loc["wide", "roc_auc"] == pytest.approx(run.metrics["roc_auc"], abs=1e-12)
    assert preds.groupby("model").size().to_dict() == {"narrow": 660, "wide": 660}
    assert set(preds.columns) == {"model", "id", "y_true", "y_score"}
    s = E.ci_strings(table, ["accuracy"], decimals=2, percent=True)
    lo, hi = 100 * table.loc["wide", "accuracy_low"], 100 * table.loc["wide", "accuracy_high"]
    assert s.loc["wide", "accuracy"] == f"{100 * table.loc['wide', 'accuracy']:.2f} [{lo:.2f}, {hi:.2f}]"
    with pytest.raises(KeyError, match="not in the table"):
        E.ci_strings(table, ["brier"])

    # save → load round trip with provenance; a stored copy of another profile appears only when written
    root = tmp_path / "book"
    written = E.save("02_baselines", {"baselines": table}, {"note": "tiny"}, profile="ci", root=root)
    assert written["baselines"] == root / "results" / "ci" / "02_baselines" / "baselines.csv"
    back = E.load("02_baselines", "baselines", profile="ci", root=root)
    pd.testing.assert_frame_equal(back, table, check_dtype=False)
    meta = E.load("02_baselines", "meta", profile="ci", root=root)
    assert meta["note"] == "tiny" and {"device", "date", "commit"} <= set(meta["provenance"])
    assert "profile 'ci'" in E.provenance_line(meta)
    assert E.stored("02_baselines", "baselines", exclude="ci", root=root) == {}
    E.save("02_baselines", {"baselines": table.head(1)}, profile="full", root=root)
    other = E.stored("02_baselines", "baselines", exclude="ci", root=root)
    assert list(other) == ["full"] and list(other["full"][0].index) == ["narrow"]
    assert other["full"][1]["profile"] == "full"


@pytest.mark.parametrize("chapter, name, summarise, rows", [
    ("02_baselines", "baselines", E.baseline_summary, len(E.BASELINES)),
    ("06_ablation", "runs", E.ablation_summary, len(E.FUSIONS)),
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
    assert E.other_profiles(chapter, name, "full", summarise, root=tmp_path) == []
    [(line, summary)] = E.other_profiles(chapter, name, "ci", summarise, root=tmp_path)
    prov = meta["provenance"]
    assert line.startswith("full: profile 'full'") and prov["device"] in line and prov["commit"][:10] in line
    assert len(summary) == rows and {"accuracy", "roc_auc"} <= set(summary.columns)
    assert summary["accuracy"].astype(str).str.contains(r"0\.\d{3}").all()


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
    tests = E.paired_tests(preds, n_boot=400)
    fus = tests[tests["kind"] == "fusion"].set_index(["fusion", "seed"])
    assert set(fus.index) == {("better", 0), ("better", 1), ("same", 0), ("same", 1)}
    assert (fus.loc["better", "auc_delta_low"] > 0).all() and (fus.loc["better", "mcnemar_p"] < 1e-3).all()
    assert (fus.loc["better", "c"] < fus.loc["better", "b"]).all()  # b: only 'better' is right
    assert (fus.loc["same", "auc_delta_low"] <= 0).all() and (fus.loc["same", "auc_delta_high"] >= 0).all()
    noise = tests[tests["kind"] == "seed noise"]
    assert len(noise) == 1 and noise.iloc[0]["versus"] == "none (seed 0)" and noise.iloc[0]["seed"] == 1
    verdict = E.gain_vs_noise(_runs_table(preds), tests)
    assert verdict.loc[("better", "roc_auc"), "verdict"] == "gain larger than noise"
    assert verdict.loc[("better", "accuracy"), "seeds_significant"] == 2
    assert verdict.loc[("same", "roc_auc"), "verdict"] == "within noise"
    assert verdict.loc[("same", "accuracy"), "verdict"] == "within noise"
    # the other direction: measured against 'better', plain 'none' loses by more than noise
    flipped = E.gain_vs_noise(_runs_table(preds), E.paired_tests(preds, reference="better", n_boot=400),
                              reference="better")
    assert flipped.loc[("none", "roc_auc"), "verdict"] == "loss larger than noise"
    assert flipped.loc[("none", "roc_auc"), "mean_gain"] < 0


def test_rejects_no_difference_reads_each_paired_test():
    tests = pd.DataFrame({"mcnemar_p": [0.01, 0.2, 0.04], "auc_delta_low": [0.01, -0.02, -0.05],
                          "auc_delta_high": [0.03, 0.01, -0.01]})
    got = E.rejects_no_difference(tests)
    assert got["accuracy"].tolist() == [True, False, True] and got["roc_auc"].tolist() == [True, False, True]
    assert E.rejects_no_difference(tests, alpha=0.03)["accuracy"].tolist() == [True, False, False]


def test_floors_table_marks_each_check():
    t = E.floors_table([("auc", 0.8, 0.85), ("count", 7, 6), ("equal", 0.5, 0.5)])
    assert t["passes"].tolist() == [True, False, True] and list(t.index) == ["auc", "count", "equal"]
    assert list(t.columns) == ["floor", "measured", "passes"]


def test_paired_tests_refuse_unpaired_predictions():
    preds = _synthetic_predictions()
    bad = preds.copy()
    bad.loc[(bad["fusion"] == "better") & (bad["seed"] == 0), "id"] = "other.jpg"
    with pytest.raises(ValueError, match="same test images"):
        E.paired_tests(bad, n_boot=50)
    with pytest.raises(ValueError, match="reference fusion"):
        E.paired_tests(preds[preds["fusion"] != "none"], n_boot=50)


def test_a_single_seed_is_never_called_larger_than_noise():
    preds = _synthetic_predictions(seeds=(0,))
    tests = E.paired_tests(preds, n_boot=200)
    verdict = E.gain_vs_noise(_runs_table(preds), tests)
    assert (verdict["verdict"] == "within noise").all() and verdict["reference_sd"].isna().all()


@needs_data
def test_ablation_runs_tables_and_weights(subset, tmp_path):
    def config_fn(fusion, seed):
        return _cfg(subset, seed=seed, fusion=fusion)

    table, preds, runs = E.ablation(("none", "mix"), seeds=(0, 1), config_fn=config_fn,
                                    cache_dir=tmp_path, verbose=False, model_fn=tiny_fn, n_boot=100)
    assert list(zip(table["fusion"], table["seed"])) == [("none", 0), ("none", 1), ("mix", 0), ("mix", 1)]
    assert len(preds) == 4 * 660 and set(runs) == {("none", 0), ("none", 1), ("mix", 0), ("mix", 1)}
    # seeds differ only by the seed: different weights, same test images
    assert not np.allclose(preds.query("fusion == 'none' and seed == 0")["y_score"],
                           preds.query("fusion == 'none' and seed == 1")["y_score"])
    tests = E.paired_tests(preds, n_boot=100)
    assert len(tests) == 3
    test_store = ImageTensorStore.from_dataset("isic_balanced", split="test", resolution=16, progress=False)
    w = E.fusion_weights(runs[("mix", 0)].load_model(model_fn=tiny_fn), test_store, batch_size=100)
    assert w.shape == (660, 2) and torch.allclose(w.sum(1), torch.ones(660), atol=1e-5)
    with pytest.raises(ValueError, match="keeps no fusion weights"):
        E.fusion_weights(runs[("none", 0)].load_model(model_fn=tiny_fn), test_store)


# ------------------------------------------------------------------------------ fusion weights


@pytest.mark.parametrize("fusion,shape", [("asff_text", (6, 2)), ("asff_code", (6, 1024)),
                                          ("asff_spatial", (6, 2, 2, 2))])
def test_fusion_weights_of_real_asff_models(fusion, shape):
    torch.manual_seed(0)
    model = build_model("asff_resnet50", fusion=fusion)
    store = ImageTensorStore(torch.randint(0, 256, (6, 3, 32, 32), dtype=torch.uint8),
                             torch.tensor([0, 1, 0, 1, 0, 1]), [f"x/{i}.jpg" for i in range(6)], 32)
    w = E.fusion_weights(model, store, batch_size=4)  # two batches
    assert w.shape == shape and model.training  # mode restored
    total = w.sum(1)
    assert torch.allclose(total, torch.ones_like(total), atol=1e-4)
    summary = E.fusion_weight_summary(w, fusion)
    assert len(summary) == 6 and summary["layer3_share"].between(0, 1).all()
    assert (summary["layer3_max"] >= summary["layer3_share"] - 1e-12).all()


def test_fusion_weight_summary_on_known_weights():
    text = torch.tensor([[0.2, 0.8], [0.9, 0.1]])
    s = E.fusion_weight_summary(text, "asff_text")
    assert s["layer3_share"].tolist() == pytest.approx([0.2, 0.9]) and (s["layer3_sd"] == 0).all()
    uniform = torch.full((3, 1024), 1 / 1024)
    peaked = torch.zeros(1, 1024)
    peaked[0, 7] = 1.0
    code = E.fusion_weight_summary(torch.cat([uniform, peaked]), "asff_code")
    assert code["effective_n"].tolist() == pytest.approx([1024, 1024, 1024, 1])
    assert code["layer3_share"].tolist() == pytest.approx([1 / 1024] * 4)  # sums to 1 over channels
    assert code["layer3_max"].iloc[3] == 1.0
    alpha = torch.tensor([[[0.0, 1.0], [0.5, 0.5]]])
    spatial = E.fusion_weight_summary(torch.stack([alpha, 1 - alpha], 1), "asff_spatial")
    assert spatial["layer3_share"].iloc[0] == pytest.approx(0.5)
    assert spatial["layer3_max"].iloc[0] == 1.0 and spatial["layer3_sd"].iloc[0] > 0.3
    with pytest.raises(ValueError, match="learns no weights"):
        E.fusion_weight_summary(text, "sum")
    with pytest.raises(ValueError, match=r"\[N, 2\]"):
        E.fusion_weight_summary(torch.ones(2, 3), "asff_text")


def test_fusion_weight_readings_tell_switched_off_from_mixed():
    y = np.r_[np.zeros(6, int), np.ones(4, int)]
    text_off = torch.stack([torch.full((10,), 1e-9), 1 - torch.full((10,), 1e-9)], 1)
    text_mixed = torch.stack([torch.linspace(0.3, 0.7, 10), 1 - torch.linspace(0.3, 0.7, 10)], 1)
    peaked = torch.zeros(10, 1024)
    peaked[:, 3] = 1.0
    alpha = torch.full((10, 1, 2, 2), 0.5)
    alpha[y == 1] = 0.8  # malignant images lean on layer3
    parts = []
    for f, s, w in (("asff_text", 0, text_off), ("asff_text", 1, text_mixed), ("asff_code", 0, peaked),
                    ("asff_spatial", 0, torch.cat([alpha, 1 - alpha], 1))):
        df = E.fusion_weight_summary(w, f)
        df.insert(0, "y_true", y)
        df.insert(0, "seed", s)
        df.insert(0, "fusion", f)
        parts.append(df)
    r = E.fusion_weight_readings(pd.concat(parts, ignore_index=True)).set_index(["fusion", "seed"])
    assert r.loc[("asff_text", 0), "share_layer3_ignored"] == 1.0
    assert "switched off" in r.loc[("asff_text", 0), "reading"]
    assert r.loc[("asff_text", 1), "share_layer3_ignored"] == 0.0
    assert "mixed" in r.loc[("asff_text", 1), "reading"]
    assert r.loc[("asff_code", 0), "median_effective_channels"] == pytest.approx(1.0)
    assert np.isnan(r.loc[("asff_code", 0), "share_layer3_ignored"])
    assert r.loc[("asff_spatial", 0), ["benign_mean", "malignant_mean"]].tolist() == pytest.approx([0.5, 0.8])
    assert (r["images"] == 10).all()
    with pytest.raises(ValueError, match="no adaptive fusion"):
        E.fusion_weight_readings(pd.DataFrame({"fusion": ["none"], "seed": [0], "y_true": [0],
                                               "layer3_share": [0.5], "effective_n": [np.nan]}))
    with pytest.raises(ValueError, match="lacks"):
        E.fusion_weight_readings(pd.DataFrame({"fusion": ["asff_text"]}))


def test_plot_fusion_weights_draws_one_panel_per_variant():
    import matplotlib

    matplotlib.use("Agg")
    rng = np.random.default_rng(0)
    rows = []
    for f in E.ADAPTIVE_FUSIONS:
        y = np.r_[np.zeros(30, int), np.ones(20, int)]
        rows.append(pd.DataFrame({"fusion": f, "seed": 0, "id": range(50), "y_true": y,
                                  "layer3_share": rng.uniform(0.3, 0.7, 50),
                                  "effective_n": rng.uniform(500, 1024, 50)}))
    fig = E.plot_fusion_weights(pd.concat(rows))
    assert [ax.get_title() for ax in fig.axes] == list(E.ADAPTIVE_FUSIONS)
    counts = [sum(p.get_height() for p in ax.patches) for ax in fig.axes]
    assert counts == [50, 50, 50]  # every image in one bin of its class histogram
    with pytest.raises(ValueError, match="no adaptive fusion"):
        E.plot_fusion_weights(pd.DataFrame({"fusion": ["none"], "y_true": [0], "layer3_share": [0.5]}))


# ------------------------------------------------------------------------------ the paper and the GPU file


def test_paper_table_or_note_never_invents_a_table():
    table, note, claims = E.paper_table_or_note(2, ["headline.accuracy", "no.such.claim"])
    status = paper.load_claims()["tables"]["2"]["status"]
    if status == "not_transcribed":
        assert table is None and "could not be transcribed" in note
    assert list(claims.index) == ["headline.accuracy"]
    assert claims.loc["headline.accuracy", "value"] == paper.claim("headline.accuracy").value
    # an edited copy with one transcribed row is shown as printed
    d = copy.deepcopy(paper.load_claims())
    t = d["tables"]["3"]
    t["status"] = "partial"
    t["rows"] = [{"model": "ResNet-50 (no fusion)", "model_id": "none",
                  **{c: "90.00" for c in t["columns"]}}]
    table, note, _ = E.paper_table_or_note(3, claims=d)
    assert table is not None and table.loc["ResNet-50 (no fusion)", "accuracy"] == "90.00"
    assert "status 'partial'" in note


def test_gpu_reference_is_none_without_a_gpu_run(tmp_path):
    assert E.gpu_reference(root=tmp_path) is None


def test_gpu_reference_reads_the_gpu_bench_file(tmp_path):
    # The layout gpu_bench.run_benchmark writes (tests/test_gpu_bench.py runs it end to end),
    # filled with metrics computed here on made-up scores.
    from skinlesion_utils.metrics import auc_difference, classification_report, mcnemar, report_with_ci

    rng = np.random.default_rng(0)
    y = np.r_[np.zeros(40, int), np.ones(30, int)]
    scores = {"ResNet-50": np.clip(0.5 + 0.2 * (2 * y - 1) + rng.normal(0, 0.25, 70), 0, 1),
              "ASFF-ResNet50": np.clip(0.5 + 0.3 * (2 * y - 1) + rng.normal(0, 0.25, 70), 0, 1)}
    results = {}
    for model, s in scores.items():
        ci = report_with_ci(y, s, n_boot=200)
        results[model] = {"metrics": {k: v for k, v in classification_report(y, s).items() if isinstance(v, float)},
                          "ci95": {m: [ci.loc[m, "low"], ci.loc[m, "high"]] for m in ci.index},
                          "train_seconds": 12.5, "epochs": 3, "history": []}
    paired = {"mcnemar": {k: v for k, v in mcnemar(y, scores["ResNet-50"] >= 0.5, scores["ASFF-ResNet50"] >= 0.5).items()
                          if k != "table"},
              "auc_difference": auc_difference(y, scores["ResNet-50"], scores["ASFF-ResNet50"], n_boot=200)}
    ref = {"provenance": {"device": "NVIDIA H100", "date": "2026-01-01T00:00:00+00:00", "commit": "a" * 40},
           "setup": {"image_size": 224, "epochs": 3}, "results": results, "paired": paired}
    out = tmp_path / "results" / "full" / "gpu-bench"
    out.mkdir(parents=True)
    (out / "reference.json").write_text(json.dumps(ref, default=float))
    got = E.gpu_reference(root=tmp_path)
    assert list(got["table"].index) == ["ResNet-50", "ASFF-ResNet50"]
    for model in scores:
        assert got["table"].loc[model, "accuracy"] == pytest.approx(results[model]["metrics"]["accuracy"])
        assert got["table"].loc[model, "roc_auc_low"] == pytest.approx(results[model]["ci95"]["roc_auc"][0])
    assert got["provenance"]["device"] == "NVIDIA H100" and got["setup"]["image_size"] == 224
    assert got["paired"]["mcnemar"]["p_value"] == pytest.approx(paired["mcnemar"]["p_value"])
    assert "profile 'full'" in E.provenance_line({"profile": "full", **got})
