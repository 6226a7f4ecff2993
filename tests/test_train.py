"""Tests of the training engine (skinlesion_utils.train / .augment), chapter 04.

Tiny CNNs on small stores keep the file fast; the data is real (16 px ISIC images) where the
test is about learning, random where only the mechanics matter. The SIGKILL/resume and the
DDP tests run real subprocesses.
"""
from __future__ import annotations

import copy
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from skinlesion_utils import augment, checkpoints, splits, train as T
from skinlesion_utils.augment import AugmentConfig, augment_batch, as_augment
from skinlesion_utils.data import ImageTensorStore

ROOT = Path(__file__).resolve().parents[1]

from runs_support import TINY_CNN_SRC  # noqa: E402
_ns: dict = {}
exec(TINY_CNN_SRC, _ns)
TinyCNN = _ns["TinyCNN"]


def _tiny(seed=0, width=8):
    T.seed_everything(seed)
    return TinyCNN(width)


def _random_store(n=96, res=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 2
    images = torch.randint(0, 256, (n, 3, res, res), generator=g, dtype=torch.uint8)
    images[labels == 1, 0] = images[labels == 1, 0] // 2 + 128  # class 1 is redder: learnable
    return ImageTensorStore(images, labels, [f"img{i}.png" for i in range(n)], res, source="random")


@pytest.fixture(scope="session")
def real16():
    """480 real training images at 16 px (240 per class), and 200 test images."""
    tr = ImageTensorStore.from_dataset("isic_balanced", split="train", resolution=16, progress=False)
    te = ImageTensorStore.from_dataset("isic_balanced", split="test", resolution=16, progress=False)
    def pick(store, k):
        idx = [i for c in (0, 1) for i in torch.nonzero(store.labels == c).flatten()[:k].tolist()]
        return store.subset(idx)
    return pick(tr, 240), pick(te, 100)


def _state_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# ----------------------------------------------------------------------------- augment


def test_augment_hflip_only_mirrors_exactly_the_drawn_images():
    x = torch.arange(2 * 3 * 4 * 5, dtype=torch.uint8).reshape(2, 3, 4, 5).repeat(8, 1, 1, 1)
    cfg = AugmentConfig(hflip=0.5, vflip=0.0, shift=0.0)
    out = augment_batch(x, cfg, torch.Generator().manual_seed(3))
    assert out.dtype == torch.float32 and out.shape == x.shape
    flipped = [torch.equal(o, xi.float().flip(2)) for o, xi in zip(out, x)]
    kept = [torch.equal(o, xi.float()) for o, xi in zip(out, x)]
    assert all(f or k for f, k in zip(flipped, kept))
    assert 0 < sum(flipped) < len(x)  # some of each with p = 0.5 over 16 images


def test_augment_shift_is_seeded_bounded_and_keeps_range():
    x = torch.randint(0, 256, (6, 3, 20, 20), dtype=torch.uint8)
    cfg = AugmentConfig(hflip=0.0, shift=0.1, rotation=15, brightness=0.2, contrast=0.2, saturation=0.2)
    a = augment_batch(x, cfg, torch.Generator().manual_seed(1))
    b = augment_batch(x, cfg, torch.Generator().manual_seed(1))
    c = augment_batch(x, cfg, torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.min() >= 0 and a.max() <= 255
    # a pure shift of a horizontal ramp by ≤ 10 % of 20 px changes each value by ≤ 2 steps
    ramp = torch.arange(20, dtype=torch.uint8).repeat(4, 3, 20, 1)
    pure = augment_batch(ramp, AugmentConfig(hflip=0, shift=0.1), torch.Generator().manual_seed(5))
    diff = (pure - ramp.float()).abs()
    assert diff.max() <= 2.0 + 1e-4 and diff.max() > 0.1


def test_augment_identity_and_errors():
    x = torch.randint(0, 256, (4, 3, 8, 8), dtype=torch.uint8)
    none = as_augment(False)
    assert none.is_identity
    assert torch.equal(augment_batch(x, none, torch.Generator()), x.float())
    with pytest.raises(ValueError, match="probability"):
        AugmentConfig(hflip=1.5)
    with pytest.raises(ValueError, match="Valid fields"):
        as_augment({"zoom": 0.2})


# ------------------------------------------------------------------------ recipes, split


def test_recipes_paper_released_code_and_fast():
    from skinlesion_utils import paper as paper_module

    paper = T.RECIPES["paper"]
    assert paper.per_model and (paper.epochs, paper.schedule) == (500, "constant")
    # the fallback for a model Table 1 does not list is ASFF ResNet-50's row
    asff = paper_module.paper_recipe("asff_resnet50")
    assert (paper.optimizer, paper.lr) == (asff["optimizer"], asff["lr"])
    released = T.RECIPES["released_code"]
    code = paper_module.released_code_recipe("asff_resnet50")
    assert not released.per_model
    assert (released.optimizer, released.lr, released.batch_size, released.epochs, released.schedule) == \
        (code["optimizer"], code["lr"], code["batch_size"], code["epochs"], code["schedule"]) == ("adam", 1e-5, 32, 500, "constant")
    assert released.augment == paper.augment == AugmentConfig(**code["augmentation"])
    fast = T.RECIPES["fast"]
    assert fast.schedule == "onecycle" and fast.label_smoothing > 0
    m = _tiny()
    opt = T.make_optimizer(m, released)
    assert isinstance(opt, torch.optim.Adam) and opt.param_groups[0]["lr"] == 1e-5
    sched = T.make_scheduler(opt, paper, 10)
    for _ in range(5):
        opt.step(); sched.step()
    assert opt.param_groups[0]["lr"] == 1e-5  # constant
    with pytest.raises(ValueError, match="Valid recipes"):
        T.get_recipe("slow")


def test_paper_recipe_takes_each_models_optimizer_and_lr_from_the_paper_recipes(monkeypatch):
    from skinlesion_utils import paper as paper_module
    from skinlesion_utils import runs

    paper = T.RECIPES["paper"]
    table = paper_module.recipe_table()

    def resolved(name):  # what a run of that model trains with
        return runs.resolved_recipe(runs.RunConfig(model=name, recipe="paper"))

    t1 = {r["model_id"]: r for r in paper_module.load_claims()["tables"]["1"]["rows"]}
    for name in ("alexnet", "resnet50", "asff_resnet50", "lenet5"):
        r = resolved(name)
        assert (r.optimizer, r.lr) == (table[name]["optimizer"], table[name]["lr"])
        assert (r.optimizer, r.lr) == (t1[name]["optimizer"].lower(), float(t1[name]["learning_rate"]))
        code = runs.resolved_recipe(runs.RunConfig(model=name, recipe="released_code"))
        assert (code.optimizer, code.lr) == ("adam", 1e-5)
    # a per-model entry (e.g. once Table 1 is transcribed) changes that model only
    edited = {k: dict(v) for k, v in table.items()}
    edited["alexnet"].update(optimizer="SGD", lr=0.01)
    monkeypatch.setattr(paper_module, "recipe_table", lambda claims=None: edited)
    assert (resolved("alexnet").optimizer, resolved("alexnet").lr) == ("sgd", 0.01)
    assert resolved("resnet50").lr == table["resnet50"]["lr"]
    assert paper.for_model("no_such_model", edited) is paper
    assert T.RECIPES["fast"].for_model("alexnet", edited) is T.RECIPES["fast"]


def test_make_optimizer_fuses_adam_on_cpu_with_the_same_update():
    """The fused kernel is the speed-up chapter 02 relies on; it must compute Adam(W)'s update.

    A linear model: every parameter gets a real gradient (a bias in front of BatchNorm gets only
    rounding noise, which Adam's normalised step amplifies differently in any two kernels)."""
    for recipe in (T.RECIPES["fast"], T.RECIPES["paper"]):
        torch.manual_seed(0)
        fused_model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, 2))
        loop_model = copy.deepcopy(fused_model)
        start = [p.detach().clone() for p in fused_model.parameters()]
        fused = T.make_optimizer(fused_model, recipe)
        assert all(g["fused"] is True for g in fused.param_groups)
        loop = type(fused)([{"params": g["params"], "weight_decay": g["weight_decay"]}
                            for g in T.make_optimizer(loop_model, recipe).param_groups],
                           lr=fused.param_groups[0]["lr"], fused=False)
        x, y = torch.randn(8, 3, 16, 16), torch.arange(8) % 2
        for model, opt in ((fused_model, fused), (loop_model, loop)):
            for _ in range(3):
                opt.zero_grad()
                F.cross_entropy(model(x), y).backward()
                opt.step()
        for a, b, s in zip(fused_model.parameters(), loop_model.parameters(), start):
            assert not torch.equal(a, s)  # the optimizer moved it
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)


def test_train_val_split_is_stratified_disjoint_and_complete(real16):
    store, _ = real16
    tr, va = splits.train_val_split(store, 0.25, seed=0)
    assert len(tr) + len(va) == len(store)
    assert not set(tr.ids) & set(va.ids)
    assert abs(va.class_counts()["malignant"] - 60) <= 1 and abs(va.class_counts()["benign"] - 60) <= 1
    tr2, va2 = splits.train_val_split(store, 0.25, seed=1)
    assert va.ids != va2.ids
    with pytest.raises(ValueError):
        splits.train_val_split(store, 1.5)


def test_resolve_amp():
    cpu = torch.device("cpu")
    assert T.resolve_amp("off", cpu) is None
    assert T.resolve_amp("bf16", cpu) is torch.bfloat16
    assert T.resolve_amp("auto", cpu) is (torch.bfloat16 if T.cpu_has_native_bf16() else None)
    with pytest.raises(ValueError):
        T.resolve_amp("fp8", cpu)


def _fake_gpus(monkeypatch, capabilities: dict[int, tuple[int, int]]):
    """Pretend CUDA GPUs with these compute capabilities exist (by index); bf16 "supported"
    everywhere, as torch answers on a T4, where it is only emulated."""
    def capability(device=None):
        index = torch.device(device).index if device is not None else 0
        return capabilities[0 if index is None else index]

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", capability)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)


@pytest.mark.parametrize("capability, expected", [
    ((7, 5), torch.float16),   # T4: bf16 would be emulated → fp16 + GradScaler
    ((7, 0), torch.float16),   # V100
    ((8, 0), torch.bfloat16),  # A100
    ((8, 9), torch.bfloat16),  # L4
    ((9, 0), torch.bfloat16),  # H100 / H200
    ((6, 0), None),            # P100: no tensor cores → fp32
])
def test_auto_precision_follows_the_gpus_compute_capability(monkeypatch, capability, expected):
    _fake_gpus(monkeypatch, {0: capability})
    assert T.amp_for_device("cuda") is expected
    assert T.resolve_amp("auto", torch.device("cuda")) is expected
    assert T.resolve_amp("off", torch.device("cuda")) is None


def test_auto_precision_asks_the_capability_of_that_device(monkeypatch):
    _fake_gpus(monkeypatch, {0: (9, 0), 1: (7, 5)})
    assert T.resolve_amp("auto", torch.device("cuda:0")) is torch.bfloat16
    assert T.resolve_amp("auto", torch.device("cuda:1")) is torch.float16
    assert T.precision_name(T.amp_for_device("cuda:1")) == "fp16"


def test_fp16_training_uses_the_gradient_scaler_and_learns_on_cpu(tmp_path):
    """The T4's path (fp16 autocast + GradScaler), run on the CPU: torch's CPU autocast supports
    float16 and ``GradScaler("cpu")``, so the same code path trains here."""
    store = _random_store(128)
    tr, va = splits.train_val_split(store, 0.25)
    kw = dict(recipe="fast", epochs=4, batch_size=16, lr=5e-3, progress=False, device="cpu",
              model_spec=checkpoints.make_model_spec("tiny_cnn"))
    res = T.fit(_tiny(0), tr, va, amp="fp16", out_dir=tmp_path / "fp16", **kw)
    assert res.amp == "fp16"
    h = res.history
    assert np.isfinite(h[["train_loss", "val_loss"]].to_numpy()).all()
    assert h["train_loss"].iloc[-1] < h["train_loss"].iloc[0]
    scaler = checkpoints.read_checkpoint(tmp_path / "fp16" / "last.pt")["scaler"]
    assert 0 < scaler["scale"] < float("inf")  # an enabled scaler saves its scale
    for p in torch.load(tmp_path / "fp16" / "last.pt", weights_only=True)["model"].values():
        assert torch.isfinite(p.float()).all()
    res32 = T.fit(_tiny(0), tr, va, amp="off", out_dir=tmp_path / "fp32", **kw)
    assert res32.amp == "fp32"
    assert checkpoints.read_checkpoint(tmp_path / "fp32" / "last.pt")["scaler"] == {}  # disabled: nothing


# --------------------------------------------------------------------------------- fit


def test_fit_learns_real_images_and_writes_history(real16, tmp_path):
    train_store, test_store = real16
    tr, va = splits.train_val_split(train_store, 0.2, seed=0)
    model = _tiny(0, width=16)
    res = T.fit(model, tr, va, recipe="fast", epochs=8, batch_size=32, lr=5e-3, out_dir=tmp_path,
                progress=False, model_spec=checkpoints.make_model_spec("tiny_cnn", {"width": 16}))
    h = res.history
    assert list(h.columns) == T.HISTORY_COLUMNS and len(h) == 8 and res.epochs_run == 8
    assert h["train_loss"].iloc[-1] < h["train_loss"].iloc[0]
    assert res.train_seconds == pytest.approx(h["seconds"].sum())
    csv = T.read_history(tmp_path)
    assert np.allclose(csv["val_auc"], h["val_auc"])
    assert json.loads((tmp_path / "history.json").read_text())[-1]["epoch"] == 8
    y, s, ids = T.predict(model, test_store, batch_size=64)
    assert y.shape == s.shape == (200,) and ids == test_store.ids
    assert ((s >= 0) & (s <= 1)).all()
    from sklearn.metrics import roc_auc_score
    assert roc_auc_score(y, s) > 0.75  # a 16 px tiny CNN still separates the classes
    # best.pt holds the weights of the best validation epoch, self-described
    best = checkpoints.read_checkpoint(res.best_path)
    assert best["epoch"] == int(h.loc[h["val_auc"].idxmax(), "epoch"])
    assert best["spec"]["name"] == "tiny_cnn" and best["spec"]["image_size"] == 16


def test_fit_is_deterministic_on_cpu_and_seed_matters(tmp_path):
    store = _random_store()
    tr, va = splits.train_val_split(store, 0.25)
    kw = dict(recipe="fast", epochs=3, batch_size=16, progress=False, device="cpu")
    a, b, c = _tiny(0), _tiny(0), _tiny(0)
    T.fit(a, tr, va, seed=0, out_dir=tmp_path / "a", **kw)
    T.fit(b, tr, va, seed=0, out_dir=tmp_path / "b", **kw)
    T.fit(c, tr, va, seed=1, out_dir=tmp_path / "c", **kw)  # other data order and augmentation
    assert _state_equal(a.state_dict(), b.state_dict())
    assert not _state_equal(a.state_dict(), c.state_dict())


def test_checkpoint_is_complete_and_loads_with_weights_only(tmp_path):
    store = _random_store(48)
    m = _tiny()
    spec = checkpoints.make_model_spec("tiny_cnn", {"width": 8}, image_size=16)
    T.fit(m, store, None, epochs=2, batch_size=16, out_dir=tmp_path, progress=False, model_spec=spec)
    ck = torch.load(tmp_path / "last.pt", weights_only=True)
    assert ck["format"] == checkpoints.CHECKPOINT_FORMAT and ck["epoch"] == 2 and len(ck["history"]) == 2
    assert {"model", "optimizer", "scheduler", "scaler", "rng", "spec", "settings"} <= ck.keys()
    assert {"torch", "numpy", "python", "data", "augment"} <= ck["rng"][0].keys()
    assert ck["spec"]["normalisation"]["mean"] == list(augment.IMAGENET_MEAN)
    assert not list(tmp_path.glob(".*.tmp"))  # atomic writes leave no temporaries
    fresh = _tiny(5)
    loaded, _ = checkpoints.load_checkpoint(tmp_path / "last.pt", fresh, model_spec=spec)
    assert _state_equal(loaded.state_dict(), m.state_dict())


def test_loading_into_another_architecture_names_both(tmp_path):
    store = _random_store(32)
    T.fit(_tiny(), store, None, epochs=1, batch_size=16, out_dir=tmp_path, progress=False,
          model_spec=checkpoints.make_model_spec("tiny_cnn", {"width": 8}))
    other = nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, 2))
    with pytest.raises(checkpoints.CheckpointError, match=r"tiny_cnn.*Sequential"):
        checkpoints.load_checkpoint(tmp_path / "last.pt", other)
    with pytest.raises(checkpoints.CheckpointError, match=r"'tiny_cnn'.*resnet50"):
        checkpoints.load_checkpoint(tmp_path / "last.pt", _tiny(), model_spec=checkpoints.make_model_spec("resnet50"))
    # resuming into another architecture fails the same way, before any training
    with pytest.raises(checkpoints.CheckpointError, match="Sequential"):
        T.fit(other, store, None, epochs=2, batch_size=16, out_dir=tmp_path, resume=True, progress=False)


def test_resume_refuses_other_settings_and_finished_run_is_a_no_op(tmp_path):
    store = _random_store(32)
    spec = checkpoints.make_model_spec("tiny_cnn")
    T.fit(_tiny(), store, None, epochs=2, batch_size=16, out_dir=tmp_path, progress=False, model_spec=spec)
    with pytest.raises(checkpoints.CheckpointError, match=r"batch_size: checkpoint 16 vs now 8"):
        T.fit(_tiny(), store, None, epochs=2, batch_size=8, out_dir=tmp_path, resume=True, progress=False, model_spec=spec)
    final = torch.load(tmp_path / "last.pt", weights_only=True)
    assert final["epoch"] == 2 and final["optimizer"]["state"] == {} and final["optimizer"]["released"] is True
    m = _tiny(9)
    res = T.fit(m, store, None, epochs=2, batch_size=16, out_dir=tmp_path, resume=True, progress=False, model_spec=spec)
    assert res.epochs_run == 0 and len(res.history) == 2
    assert _state_equal(m.state_dict(), torch.load(tmp_path / "last.pt", weights_only=True)["model"])


# ------------------------------------------------------- SIGKILL + resume, in subprocesses

RUN_SCRIPT = TINY_CNN_SRC + '''
import sys, torch
torch.set_num_threads(1)
from skinlesion_utils import checkpoints, splits, train as T
from skinlesion_utils.data import ImageTensorStore
store_file, out_dir, resume = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
blob = torch.load(store_file, weights_only=True)
store = ImageTensorStore(blob["images"], blob["labels"], blob["ids"], 16)
tr, va = splits.train_val_split(store, 0.25, seed=0)
T.seed_everything(0)
model = TinyCNN(8)
T.fit(model, tr, va, recipe="fast", epochs=int(sys.argv[4]), batch_size=16, seed=3, out_dir=out_dir,
      resume=resume, device="cpu", progress=False, model_spec=checkpoints.make_model_spec("tiny_cnn"))
'''


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env["OMP_NUM_THREADS"] = "1"
    return env


def test_sigkill_then_resume_equals_uninterrupted_run(tmp_path):
    store = _random_store(128)
    store.save(tmp_path / "store.pt")
    script = tmp_path / "run.py"
    script.write_text(RUN_SCRIPT)
    epochs, kill_after = 40, 3
    args = lambda out, resume: [sys.executable, str(script), str(tmp_path / "store.pt"), str(tmp_path / out), resume, str(epochs)]
    ref = subprocess.Popen(args("ref", "0"), env=_env())
    victim = subprocess.Popen(args("killed", "0"), env=_env())
    last = tmp_path / "killed" / "last.pt"
    deadline = time.time() + 60
    epoch_at_kill = 0
    while time.time() < deadline and victim.poll() is None:
        if last.exists():
            epoch_at_kill = torch.load(last, weights_only=True)["epoch"]
            if epoch_at_kill >= kill_after:
                os.kill(victim.pid, signal.SIGKILL)
                break
        time.sleep(0.01)
    victim.wait()
    assert victim.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    killed_epoch = torch.load(last, weights_only=True)["epoch"]
    assert kill_after <= killed_epoch < epochs
    subprocess.run(args("killed", "1"), env=_env(), check=True, timeout=120)
    assert ref.wait(timeout=120) == 0
    a = torch.load(tmp_path / "ref" / "last.pt", weights_only=True)
    b = torch.load(last, weights_only=True)
    assert b["epoch"] == epochs
    assert _state_equal(a["model"], b["model"])
    assert a["history"][-1]["val_loss"] == b["history"][-1]["val_loss"]
    assert [r["train_loss"] for r in a["history"]] == [r["train_loss"] for r in b["history"]]


# ------------------------------------------------------------------- DDP: 2 ranks, gloo

DDP_SCRIPT = TINY_CNN_SRC + '''
import os, sys, torch, torch.distributed as dist
torch.set_num_threads(1)
from skinlesion_utils import checkpoints, splits, train as T
from skinlesion_utils.data import ImageTensorStore
blob = torch.load(sys.argv[1], weights_only=True)
store = ImageTensorStore(blob["images"], blob["labels"], blob["ids"], 16)
tr, va = splits.train_val_split(store, 0.25, seed=0)
T.seed_everything(0)
model = TinyCNN(8)
res = T.fit(model, tr, va, epochs=3, batch_size=16, seed=0, out_dir=sys.argv[2], device="cpu",
            progress=False, model_spec=checkpoints.make_model_spec("tiny_cnn"))
rank = dist.get_rank()
torch.save({k: v.clone() for k, v in model.state_dict().items()}, os.path.join(sys.argv[2], f"rank{rank}.pt"))
with open(os.path.join(sys.argv[2], f"rank{rank}.json"), "w") as f:
    f.write(str(dist.get_world_size()) + " " + str(len(res.history)))
dist.destroy_process_group()
'''


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ddp_two_processes_gloo_end_with_identical_weights(tmp_path):
    store = _random_store(100)  # 75 train images: an odd count exercises the padding
    store.save(tmp_path / "store.pt")
    script = tmp_path / "ddp.py"
    script.write_text(DDP_SCRIPT)
    out = tmp_path / "out"
    out.mkdir()
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", "2",
           "--master_addr", "127.0.0.1", "--master_port", str(_free_port()), str(script), str(tmp_path / "store.pt"), str(out)]
    proc = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (out / "rank0.json").read_text() == "2 3" and (out / "rank1.json").read_text() == "2 3"
    w0 = torch.load(out / "rank0.pt", weights_only=True)
    w1 = torch.load(out / "rank1.pt", weights_only=True)
    assert _state_equal(w0, w1)
    init = _tiny(0).state_dict()
    assert not torch.equal(init["head.weight"], w0["head.weight"])  # it did train
    ck = torch.load(out / "last.pt", weights_only=True)
    assert ck["settings"]["world_size"] == 2 and len(ck["rng"]) == 2 and ck["epoch"] == 3
    assert _state_equal(ck["model"], w0)
