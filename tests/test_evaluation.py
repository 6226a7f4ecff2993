"""Tests of chapter 05's evaluation tools: ``metrics.operating_point_table``,
``runs.validation_split`` / ``runs.validation_predictions`` and ``runs.write_results`` / ``runs.read_results``.

The run tests train a tiny CNN (through ``model_fn``) on 160 real training images at 16 px for
two epochs, so the validation split and the run's history are produced for real in seconds.
"""
from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn as nn
from sklearn import metrics as skm

from skinlesion_utils import metrics as M, results
from skinlesion_utils import runs as R
from skinlesion_utils.data import ImageTensorStore


# --------------------------------------------------------------------------- operating point
def _scores(n_pos, n_neg, seed, sep=0.35):
    rng = np.random.default_rng(seed)
    y = np.r_[np.ones(n_pos, dtype=np.int64), np.zeros(n_neg, dtype=np.int64)]
    return y, np.clip(rng.normal(0.3 + sep * y, 0.2), 0, 1)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_operating_point_table_honest_versus_leaky(seed):
    yv, sv = _scores(60, 70, seed=100 + seed)
    yt, st = _scores(300, 360, seed=200 + seed)
    t = M.operating_point_table(yv, sv, yt, st, target=0.95, n_boot=300, seed=0)
    assert list(t.index) == ["validation", "test (leaky)"]
    val, leak = t.loc["validation"], t.loc["test (leaky)"]
    assert val["threshold"] == M.threshold_at_sensitivity(yv, sv, 0.95)
    assert leak["threshold"] == M.threshold_at_sensitivity(yt, st, 0.95)
    assert val["choice_sensitivity"] >= 0.95 and leak["choice_sensitivity"] >= 0.95
    # leaky: the test set meets the target by construction, at the largest such threshold
    assert leak["meets_target"] and leak["sensitivity"] == leak["choice_sensitivity"]
    # so the honest threshold either misses the target on test, or pays with specificity
    assert (not val["meets_target"]) or val["specificity"] <= leak["specificity"]
    for _, row in t.iterrows():
        rep = M.classification_report(yt, st, row["threshold"])
        assert row["sensitivity"] == pytest.approx(rep["recall"])
        assert row["specificity"] == pytest.approx(np.mean(st[yt == 0] < row["threshold"]))
        assert (row["tp"], row["fn"], row["tn"], row["fp"]) == (rep["tp"], rep["fn"], rep["tn"], rep["fp"])
        for m in ("sensitivity", "specificity"):
            assert row[f"{m}_low"] <= row[m] <= row[f"{m}_high"]
        assert row["meets_target"] == (rep["recall"] >= 0.95)


def test_operating_point_table_validation_can_miss_target():
    # validation scores of malignant images are higher than on test: its threshold is too high
    yv, sv = _scores(60, 70, seed=5, sep=0.6)
    yt, st = _scores(300, 360, seed=6, sep=0.2)
    t = M.operating_point_table(yv, sv, yt, st, target=0.95, n_boot=200)
    assert not t.loc["validation", "meets_target"]
    assert t.loc["validation", "sensitivity"] < 0.95 <= t.loc["test (leaky)", "sensitivity"]


def test_operating_point_table_errors():
    yv, sv = _scores(10, 10, seed=1)
    with pytest.raises(ValueError, match="both classes"):
        M.operating_point_table(np.zeros(5, dtype=int), np.full(5, 0.3), yv, sv)
    with pytest.raises(ValueError, match="s_test"):
        M.operating_point_table(yv, sv, yv, sv[:-1])


# --------------------------------------------------------------------------- validation predictions
class TinyCNN(nn.Module):
    """3×16×16 → 2 logits."""

    def __init__(self, width=8):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(3, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.BatchNorm2d(2 * width), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2 * width, 2))

    def forward(self, x):
        return self.net(x)


def tiny_fn(cfg):
    return TinyCNN(**cfg.kwargs)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A finished 2-epoch run of TinyCNN on 160 real training images (80 per class), 16 px."""
    store = ImageTensorStore.from_dataset("isic_balanced", split="train", resolution=16, progress=False)
    subset = tuple(i for c in (0, 1) for i in torch.nonzero(store.labels == c).flatten()[:80].tolist())
    cfg = R.RunConfig(model="tiny_cnn_eval_test", model_kwargs={"width": 8}, profile="ci", recipe="fast",
                      epochs=2, image_size=16, batch_size=32, seed=0, lr=5e-3, val_fraction=0.25, split_seed=3,
                      train_subset=subset)
    return R.get_or_train(cfg, cache_dir=tmp_path_factory.mktemp("cache"), progress=False, model_fn=tiny_fn)


def test_validation_split_reproduces_the_runs_split(tiny_run):
    train_store, val_store = R.validation_split(tiny_run)
    res = tiny_run.results["resolved"]
    assert (len(train_store), len(val_store)) == (res["n_train"], res["n_val"]) == (120, 40)
    assert not set(train_store.ids) & set(val_store.ids)             # never trained on
    assert not set(val_store.ids) & set(tiny_run.predictions["id"])  # not test images either
    assert val_store.class_counts() == {"benign": 20, "malignant": 20}
    # the config alone gives the same split; another split_seed gives another one
    assert R.validation_split(tiny_run.config)[1].ids == val_store.ids
    other = R.RunConfig.from_dict({**tiny_run.config.to_dict(), "split_seed": 4})
    assert R.validation_split(other)[1].ids != val_store.ids


def test_validation_predictions_match_the_runs_own_validation(tiny_run):
    pred = R.validation_predictions(tiny_run, model_fn=tiny_fn)
    assert list(pred.columns) == ["id", "y_true", "y_score"] and len(pred) == 40
    assert pred["y_score"].between(0, 1).all()
    assert list(pred["id"]) == list(R.validation_split(tiny_run)[1].ids)
    # train.fit evaluated the last epoch's weights on the same images: same accuracy and AUC
    last = tiny_run.history.iloc[-1]
    acc = np.mean((pred["y_score"] >= 0.5) == pred["y_true"])
    assert acc == pytest.approx(last["val_acc"], abs=1e-6)
    assert skm.roc_auc_score(pred["y_true"], pred["y_score"]) == pytest.approx(last["val_auc"], abs=1e-6)


def test_validation_split_refuses_a_run_whose_split_changed(tiny_run, tmp_path):
    copy = tmp_path / tiny_run.dir.name
    shutil.copytree(tiny_run.dir, copy)
    results = json.loads((copy / R.RESULTS_FILE).read_text())
    results["resolved"]["n_val"] += 1
    (copy / R.RESULTS_FILE).write_text(json.dumps(results))
    with pytest.raises(RuntimeError, match="retrain"):
        R.validation_split(R.Run(copy))


# --------------------------------------------------------------------------- results files
def test_write_and_read_results_round_trip(tmp_path):
    (tmp_path / "_toc.yml").write_text("format: jb-book\n")
    (tmp_path / "chapters").mkdir()
    assert results.project_root(tmp_path / "chapters") == tmp_path
    table = pd.DataFrame({"point": [0.9, 1 / 3], "low": [0.85, 0.2]}, index=pd.Index(["accuracy", "f1"], name="metric"))
    summary = {"accuracy": np.float64(0.9), "n": np.int64(660), "verdict": "consistent"}
    paths = results.write_results("05_evaluation", {"metrics_ci": table, "summary": summary}, profile="ci", root=tmp_path)
    assert paths["metrics_ci"] == tmp_path / "results" / "ci" / "05_evaluation" / "metrics_ci.csv"
    assert paths["summary"].name == "summary.json"
    back = results.read_results("05_evaluation", "metrics_ci", profile="ci", root=tmp_path)
    pd.testing.assert_frame_equal(back, table)
    assert results.read_results("05_evaluation", "summary", profile="ci", root=tmp_path) == {
        "accuracy": 0.9, "n": 660, "verdict": "consistent"}
    texts = pd.DataFrame({"printed": ["93.10", "90.958"]}, index=["a", "b"])
    results.write_results("05_evaluation", {"texts": texts}, profile="ci", root=tmp_path)
    assert list(results.read_results("05_evaluation", "texts", profile="ci", root=tmp_path,
                               dtype={"printed": str})["printed"]) == ["93.10", "90.958"]
    with pytest.raises(FileNotFoundError, match="execute chapters/05_evaluation"):
        results.read_results("05_evaluation", "missing", profile="ci", root=tmp_path)
    assert results.results_dir("05_evaluation", "full", root=tmp_path) == tmp_path / "results" / "full" / "05_evaluation"
