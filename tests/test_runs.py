"""Tests of the run cache (skinlesion_utils.runs), chapter 04.

A tiny CNN (through ``model_fn``) trains on 160 real training images at 16 px and is evaluated
on the 660 real test images, so every file of a run folder is produced for real in seconds.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn as nn

from skinlesion_utils import checkpoints, runs as R, splits
from skinlesion_utils import train as T
from skinlesion_utils.data import ImageTensorStore


class TinyCNN(nn.Module):
    """3×16×16 → 2 logits. ``crash_after`` simulates a crash after that many training batches."""

    def __init__(self, width=8, crash_after=None):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.BatchNorm2d(2 * width), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(2 * width, 2)
        self.crash_after, self.calls = crash_after, 0

    def forward(self, x):
        if self.training:
            self.calls += 1
            if self.crash_after is not None and self.calls > self.crash_after:
                raise RuntimeError("simulated crash")
        return self.head(self.features(x))


def tiny_fn(cfg):
    return TinyCNN(**cfg.kwargs)


@pytest.fixture(scope="module")
def subset():
    """160 training indices, 80 per class (real images)."""
    store = ImageTensorStore.from_dataset("isic_balanced", split="train", resolution=16, progress=False)
    idx = [i for c in (0, 1) for i in torch.nonzero(store.labels == c).flatten()[:80].tolist()]
    return tuple(idx)


def _config(subset, **kw):
    base = dict(model="tiny_cnn_test", model_kwargs={"width": 8}, profile="ci", recipe="fast", epochs=2,
                image_size=16, batch_size=32, seed=0, lr=5e-3, train_subset=subset)
    base.update(kw)
    return R.RunConfig(**base)


def test_key_is_stable_and_sensitive(subset):
    a, b = _config(subset), _config(subset)
    assert a == b and a.key() == b.key() and hash(a) == hash(b)
    assert a.key().startswith("tiny_cnn_test-") and len(a.key().split("-")[-1]) == 16
    assert _config(subset, epochs=3).key() != a.key()
    assert _config(subset, model_kwargs={"width": 4}).key() != a.key()
    assert _config(subset, seed=1).key() != a.key()
    assert a.data_hash and a.package_version
    assert R.RunConfig.from_dict(json.loads(json.dumps(a.to_dict()))) == a
    p = R.RunConfig.from_profile("asff_resnet50", {"fusion": "asff_text"}, profile="ci", epochs=3)
    assert p.epochs == 3 and p.profile == "ci" and p.kwargs == {"fusion": "asff_text"}


def test_get_or_train_trains_once_then_loads(subset, tmp_path, monkeypatch):
    cfg = _config(subset)
    run = R.get_or_train(cfg, cache_dir=tmp_path, progress=False, model_fn=tiny_fn)
    assert run.dir == tmp_path / "runs" / cfg.key()
    res = run.results
    test = res["metrics"]["test"]
    for k in ("accuracy", "precision", "recall", "specificity", "f1", "roc_auc", "pr_auc"):
        assert 0.0 <= test[k] <= 1.0
    assert test["n"] == 660 and res["resolved"]["n_train"] + res["resolved"]["n_val"] == 160
    assert res["timing"]["train_seconds"] > 0 and res["device"] == "cpu" and res["config"] == cfg.to_dict()
    assert res["package_version"] and "git_commit" in res
    pred = run.predictions
    assert list(pred.columns) == ["id", "y_true", "y_score"] and len(pred) == 660
    from sklearn.metrics import accuracy_score, roc_auc_score
    assert test["roc_auc"] == pytest.approx(roc_auc_score(pred["y_true"], pred["y_score"]))
    assert test["accuracy"] == pytest.approx(accuracy_score(pred["y_true"], pred["y_score"] >= 0.5))
    assert list(run.history["epoch"]) == [1, 2] and run.config == cfg
    # the reloaded model reproduces the stored predictions
    model = run.load_model(model_fn=tiny_fn)
    te = ImageTensorStore.from_dataset("isic_balanced", split="test", resolution=16, progress=False)
    _, score, ids = T.predict(model, te)
    assert ids == list(pred["id"]) and np.allclose(score, pred["y_score"], atol=1e-6)
    # the finished run's last.pt keeps weights, schedule and history but no Adam moments
    ckpt = checkpoints.read_checkpoint(run.checkpoint("last"))
    assert ckpt["optimizer"]["state"] == {} and ckpt["optimizer"]["released"] is True
    assert ckpt["optimizer"]["param_groups"] and ckpt["scheduler"]["last_epoch"] > 0 and len(ckpt["history"]) == 2
    assert R.release_optimizer_state(run.checkpoint("last")) == 0  # nothing left to release

    # second call: nothing is trained (fit would raise), the same run comes back
    def no_fit(*a, **k):
        raise AssertionError("fit must not run for a cached config")
    monkeypatch.setattr(R, "fit", no_fit)
    again = R.get_or_train(cfg, cache_dir=tmp_path, progress=False, model_fn=tiny_fn)
    assert again.dir == run.dir and again.results == res
    # a changed config trains a new run
    with pytest.raises(AssertionError, match="must not run"):
        R.get_or_train(_config(subset, epochs=3), cache_dir=tmp_path, progress=False, model_fn=tiny_fn)


def test_half_finished_run_resumes_and_equals_uninterrupted(subset, tmp_path):
    cfg = _config(subset, epochs=3)
    steps_per_epoch = 136 // 32 + 1  # 136 training images (160 minus 15 % validation), batch 32
    crashing = lambda c: TinyCNN(**c.kwargs, crash_after=steps_per_epoch + 2)  # dies in epoch 2
    with pytest.raises(RuntimeError, match="simulated crash"):
        R.get_or_train(cfg, cache_dir=tmp_path / "a", progress=False, model_fn=crashing)
    folder = R.run_dir(cfg, tmp_path / "a")
    assert not (folder / R.RESULTS_FILE).exists()
    assert torch.load(folder / "last.pt", weights_only=True)["epoch"] == 1
    resumed = R.get_or_train(cfg, cache_dir=tmp_path / "a", progress=False, model_fn=tiny_fn)
    assert resumed.results["timing"]["resumed_from_epoch"] == 1
    straight = R.get_or_train(cfg, cache_dir=tmp_path / "b", progress=False, model_fn=tiny_fn)
    assert straight.results["timing"]["resumed_from_epoch"] == 0
    a = torch.load(resumed.checkpoint("last"), weights_only=True)["model"]
    b = torch.load(straight.checkpoint("last"), weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert resumed.predictions.equals(straight.predictions)


def test_run_errors_are_explicit(tmp_path):
    with pytest.raises(FileNotFoundError, match="get_or_train"):
        R.Run(tmp_path)


def test_release_optimizer_state_shrinks_a_checkpoint_and_keeps_the_weights(subset, tmp_path):
    cfg = _config(subset)
    store = ImageTensorStore.from_dataset("isic_balanced", split="train", resolution=16, progress=False).subset(list(cfg.train_subset))
    tr, va = splits.train_val_split(store, 0.25, seed=0)
    model = tiny_fn(cfg)

    class Interrupted(Exception):
        pass

    def stop(row):
        raise Interrupted

    with pytest.raises(Interrupted):  # a run stopped after epoch 1 of 2: its last.pt can resume
        T.fit(model, tr, va, recipe="fast", epochs=2, batch_size=32, seed=0, out_dir=tmp_path, device="cpu",
              progress=False, on_epoch_end=stop)
    path = tmp_path / "last.pt"
    before = checkpoints.read_checkpoint(path)
    assert before["epoch"] == 1 and before["optimizer"]["state"]  # AdamW moments kept mid-run
    saved = R.release_optimizer_state(path)
    after = checkpoints.read_checkpoint(path)
    assert saved > 0 and after["optimizer"]["state"] == {}
    assert all(torch.equal(before["model"][k], after["model"][k]) for k in before["model"])
    assert R.release_optimizer_state(tmp_path / "missing.pt") == 0
