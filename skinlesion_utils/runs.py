"""The run cache: a model is trained once per configuration, later chapters load it (chapter 04).

Taught in chapter 04 (``chapters/04_training``); every chapter that needs a trained model
(02, 05, 06, 07, 08, 09) calls :func:`get_or_train`.

* :class:`RunConfig` — everything that determines a trained model (model + kwargs, profile,
  recipe, epochs, image size, batch size, seed, learning rate, data manifest hash, package
  version, training subset). Frozen; :meth:`RunConfig.key` is a stable hash of it.
* :func:`get_or_train` — returns the finished run in ``<cache>/runs/<key>`` or trains it with
  :func:`skinlesion_utils.train.fit` (resuming a half-finished one), then evaluates the final
  epoch's weights on the test split and writes ``results.json`` and ``predictions.csv``.
  Validation (for the history and ``best.pt``) is a stratified split carved from the training
  images; the test images are used once, after training, for the report.
* :class:`Run` — a finished run on disk: ``.config``, ``.results``, ``.history``,
  ``.predictions``, ``.load_model()``, ``.dir``.

A run folder::

    <cache>/runs/<model>-<hash>/
        .lock              held (flock) by the one process writing the folder; dies with it
        config.json        the RunConfig (written first)
        last.pt, best.pt   checkpoints (train.fit; last.pt is each epoch's commit point)
        history.csv/.json  one row per epoch
        predictions.csv    id, y_true, y_score (P(malignant)) on the test split
        results.json       metrics.test.{accuracy, precision, recall, specificity, f1, roc_auc,
                           pr_auc, ...}, timing, resolved config, device, versions, git commit;
                           written last: with last.pt it marks the run finished.
"""
from __future__ import annotations

import gc
import hashlib
import json
import time
from dataclasses import dataclass, fields, replace
from functools import cached_property
from pathlib import Path
from typing import Any, Callable

import pandas as pd
import torch

from . import __version__, paper
from .data import ImageTensorStore, get_spec
from .errors import ConfigError, RunError, RunNotFound
from .fusion import FUSIONS
from .metrics import classification_report
from .models import build_model, list_models
from .profiles import PROFILES, as_profile
from .profiles import profile as get_profile
from .results import (device_name, exclusive_lock, git_commit, json_default, sweep_temporaries, write_csv,
                      write_text)
from .splits import stratified_subset, train_val_split
from .checkpoints import (load_checkpoint, make_model_spec, read_checkpoint, released_optimizer_state,
                          save_checkpoint)
from .train import RECIPES, Recipe, fit, get_recipe, predict, seed_everything

RESULTS_FILE = "results.json"


def _freeze(value):
    """dict/list → sorted tuples, so the config stays hashable and its key stable."""
    if isinstance(value, dict):
        return tuple(sorted((str(k), _freeze(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v) for v in value)
    return value


def _manifest_hash(dataset: str) -> str:
    return get_spec(dataset).manifest_hash()[:16]


def _check_settings(cfg) -> None:
    """Refuse a :class:`RunConfig` that would train nothing or something else than asked.

    The model name is checked where the model is built (``_build``, and ``from_profile``): a
    custom architecture passed as ``model_fn`` has a name the registry does not know.
    """
    for name in ("epochs", "batch_size", "image_size"):
        value = getattr(cfg, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{name} must be a whole number >= 1; found {value!r}. "
                              f"Fix: pass {name}=1 or more.")
    if not 0 < cfg.val_fraction < 1:
        raise ConfigError(f"val_fraction must be in (0, 1); found {cfg.val_fraction!r}. Fix: e.g. 0.15.")
    if cfg.profile not in PROFILES:
        raise ConfigError(f"Unknown profile {cfg.profile!r}. Fix: use one of {', '.join(sorted(PROFILES))}.")
    if cfg.recipe not in RECIPES:
        raise ConfigError(f"Unknown recipe {cfg.recipe!r}. Fix: use one of {', '.join(RECIPES)}.")
    if cfg.lr is not None and not cfg.lr > 0:
        raise ConfigError(f"lr must be > 0; found {cfg.lr!r}. Fix: pass a positive learning rate, or None.")
    fusion = dict(cfg.model_kwargs or {}).get("fusion")
    if fusion is not None and cfg.model == "asff_resnet50" and fusion not in FUSIONS:
        raise ConfigError(f"Unknown fusion {fusion!r}. Fix: use one of {', '.join(FUSIONS)}.")
    if fusion is not None and cfg.model in list_models() and cfg.model != "asff_resnet50":
        raise ConfigError(f"{cfg.model} has no fusion (fusion={fusion!r} given). "
                          "Fix: drop the fusion, or use the model asff_resnet50.")


@dataclass(frozen=True)
class RunConfig:
    """Everything that determines a trained model; :meth:`key` hashes it.

    Attributes:
        model: a name of :func:`skinlesion_utils.models.list_models`.
        model_kwargs: extra arguments of ``build_model`` (e.g. ``{"fusion": "asff_text"}``);
            a dict is accepted and stored as sorted pairs.
        profile: profile name (``"ci"``/``"full"``): device and cache come from it.
        recipe: training recipe (``"fast"``/``"paper"``).
        epochs, image_size (px), batch_size (global), seed: training settings.
        lr: peak learning rate, ``None`` = the recipe's.
        augment: augmentation override (dict of :class:`~skinlesion_utils.augment.AugmentConfig`
            fields), ``None`` = the recipe's.
        pretrained: start from ImageNet weights.
        val_fraction: share of the training images held out for validation.
        split_seed: seed of that validation split (fixed across training seeds, so seed
            repeats differ only in initialisation, order and augmentation).
        dataset: training/test dataset (with ``train``/``test`` splits).
        data_hash: sha256 (16 hex) of the dataset's manifest; filled in when empty.
        package_version: ``skinlesion_utils.__version__``; filled in when empty.
        train_subset: indices into the training split to train on (``None`` = all).
    """

    model: str
    model_kwargs: Any = ()
    profile: str = "ci"
    recipe: str = "fast"
    epochs: int = PROFILES["ci"]["epochs"]  # the defaults are the ci profile's (from_profile sets them)
    image_size: int = PROFILES["ci"]["image_size"]
    batch_size: int = PROFILES["ci"]["batch_size"]
    seed: int = 0
    lr: float | None = None
    augment: Any = None
    pretrained: bool = False
    val_fraction: float = 0.15
    split_seed: int = 0
    dataset: str = "isic_balanced"
    data_hash: str = ""
    package_version: str = ""
    train_subset: tuple[int, ...] | None = None

    def __post_init__(self):
        _check_settings(self)
        object.__setattr__(self, "model_kwargs", _freeze(dict(self.model_kwargs or {})))
        if self.augment is not None:
            object.__setattr__(self, "augment", _freeze(dict(self.augment)))
        if self.train_subset is not None:
            object.__setattr__(self, "train_subset", tuple(int(i) for i in self.train_subset))
        if not self.data_hash:
            object.__setattr__(self, "data_hash", _manifest_hash(self.dataset))
        if not self.package_version:
            object.__setattr__(self, "package_version", __version__)

    @classmethod
    def from_profile(cls, model: str, model_kwargs: dict | None = None, *, profile=None, **overrides) -> "RunConfig":
        """A config with the profile's image_size, epochs, batch_size, recipe, pretrained and
        first seed; ``overrides`` change any field (e.g. ``epochs=3``)."""
        if model not in list_models():
            raise ConfigError(f"Unknown model {model!r}. Fix: use one of {', '.join(list_models())}.")
        prof = as_profile(profile)
        base = dict(profile=prof.name, recipe=prof.recipe, epochs=prof.epochs, image_size=prof.image_size,
                    batch_size=prof.batch_size, seed=prof.seeds[0], pretrained=prof.pretrained)
        base.update(overrides)
        return cls(model=model, model_kwargs=model_kwargs or {}, **base)

    @property
    def kwargs(self) -> dict:
        """``model_kwargs`` as a dict."""
        return dict(self.model_kwargs)

    def to_dict(self) -> dict:
        """JSON-ready dict (kwargs and augment as dicts, train_subset as a list)."""
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["model_kwargs"] = dict(self.model_kwargs)
        d["augment"] = None if self.augment is None else dict(self.augment)
        d["train_subset"] = None if self.train_subset is None else list(self.train_subset)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "RunConfig":
        """Inverse of :meth:`to_dict`."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})

    def key(self) -> str:
        """Stable folder name ``<model>-<16 hex>``: sha256 of the sorted-JSON config."""
        blob = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return f"{self.model}-{hashlib.sha256(blob.encode()).hexdigest()[:16]}"


class Run:
    """A finished run on disk (see the module docstring for the folder layout)."""

    def __init__(self, run_dir: str | Path):
        self.dir = Path(run_dir)
        missing = [n for n in (RESULTS_FILE, "last.pt") if not (self.dir / n).is_file()]
        if missing:
            raise RunNotFound(
                f"{self.dir} holds no finished run (no {' and no '.join(missing)}). "
                "Fix: train it with get_or_train(config) (or `skinlesion train --out` this folder)."
            )

    def __repr__(self) -> str:
        t = self.metrics
        return (f"Run({self.dir.name}: {self.config.model} {self.config.kwargs or ''} "
                f"acc={t['accuracy']:.3f} auc={t['roc_auc']:.3f})")

    @cached_property
    def results(self) -> dict:
        """The parsed ``results.json``."""
        return json.loads((self.dir / RESULTS_FILE).read_text())

    @property
    def config(self) -> RunConfig:
        """The :class:`RunConfig` that produced this run."""
        return RunConfig.from_dict(self.results["config"])

    @property
    def metrics(self) -> dict:
        """Test-set metrics (``results["metrics"]["test"]``)."""
        return self.results["metrics"]["test"]

    @property
    def history(self) -> "pd.DataFrame":  # noqa: F821
        """One row per epoch: epoch, train_loss, train_acc, val_loss, val_acc, val_auc, lr, seconds."""
        return pd.read_csv(self.dir / "history.csv")

    @property
    def predictions(self) -> "pd.DataFrame":  # noqa: F821
        """Test-set predictions: columns ``id``, ``y_true`` (0/1), ``y_score`` (P(malignant))."""
        return pd.read_csv(self.dir / "predictions.csv")

    def checkpoint(self, which: str = "last") -> Path:
        """Path of ``last.pt`` (the evaluated weights) or ``best.pt`` (best validation AUC)."""
        if which not in ("last", "best"):
            raise ConfigError(f"which must be 'last' or 'best'; found {which!r}.")
        return self.dir / f"{which}.pt"

    def load_model(self, which: str = "last", model_fn: Callable[[RunConfig], torch.nn.Module] | None = None,
                   device: str = "cpu") -> torch.nn.Module:
        """The trained model in eval mode (built from the config, weights from the checkpoint)."""
        cfg = self.config
        model = model_fn(cfg) if model_fn is not None else _build(cfg)
        spec = make_model_spec(cfg.model, cfg.kwargs, image_size=cfg.image_size)
        model, _ = load_checkpoint(self.checkpoint(which), model, model_spec=spec, map_location=device)
        return model.to(device).eval()


def _build(cfg: RunConfig) -> torch.nn.Module:
    return build_model(cfg.model, num_classes=2, pretrained=cfg.pretrained, **cfg.kwargs)


def run_dir(config: RunConfig, cache_dir: str | Path | None = None) -> Path:
    """``<cache>/runs/<config.key()>`` (cache: the config's profile's ``cache_dir``)."""
    root = Path(cache_dir) if cache_dir is not None else get_profile(config.profile).cache_dir
    return root / "runs" / config.key()


def get_or_train(
    config: RunConfig,
    *,
    cache_dir: str | Path | None = None,
    progress: bool = True,
    retrain: bool = False,
    model_fn: Callable[[RunConfig], torch.nn.Module] | None = None,
) -> Run:
    """Load the finished run of ``config``, or train (resuming a half-finished one) and evaluate it.

    Args:
        config: the :class:`RunConfig`.
        cache_dir: folder holding ``runs/`` (default: the profile's ``cache_dir``).
        progress: tqdm bars while decoding and training.
        retrain: ignore a finished run and train again from scratch.
        model_fn: build the model from the config instead of ``models.build_model`` (custom
            architectures, tests). The config's ``model`` name must identify it: it is the cache key.

    Returns:
        :class:`Run`. Training uses ``train.fit`` with the profile's device; the final epoch's
        weights (``last.pt``) are evaluated once on the test split.
    """
    return train_into(config, run_dir(config, cache_dir), resume=not retrain, progress=progress, model_fn=model_fn,
                      wait=True)


def resolved_recipe(config: RunConfig) -> Recipe:
    """The recipe ``config`` trains with, resolved for its model: the ``paper`` recipe takes the
    model's optimizer and learning rate from ``paper.recipe_table()``; others are as named."""
    return get_recipe(config.recipe).for_model(config.model, paper.recipe_table())


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _finished_run(config: RunConfig, folder: Path) -> Run:
    run = Run(folder)
    if run.config != config:
        mine, theirs = config.to_dict(), run.config.to_dict()
        diff = ", ".join(f"{k}: {_short(theirs.get(k))} there vs {_short(mine[k])} now"
                         for k in mine if mine[k] != theirs.get(k))
        raise RunError(
            f"{folder} holds a finished run of another config ({diff}). "
            f"Fix: use another folder, or delete {folder} and train again."
        )
    return run


def _training_stores(config: RunConfig, progress: bool):
    """The (train, validation) stores of ``config``: its training split (or subset), with the
    stratified validation part carved off by ``split_seed``."""
    full = ImageTensorStore.from_dataset(config.dataset, split="train", resolution=config.image_size, progress=progress)
    if config.train_subset is not None:
        full = full.subset(list(config.train_subset))
    return train_val_split(full, config.val_fraction, seed=config.split_seed)


def _results_record(config, spec, stores, report, last_val, result, timing) -> dict:
    """The ``results.json`` of a finished run (see the module docstring)."""
    train_store, val_store, test = stores
    return {
        "key": config.key(),
        "config": config.to_dict(),
        "resolved": {
            "recipe": resolved_recipe(config).to_dict(),
            "model_spec": spec,
            "n_train": len(train_store), "n_val": len(val_store), "n_test": len(test),
            "evaluated_checkpoint": "last",
        },
        "metrics": {
            "test": report,
            "val": {k: last_val.get(k) for k in ("val_loss", "val_acc", "val_auc")},
        },
        "timing": timing,
        "device": result.device,
        "device_name": device_name(result.device),
        "amp": result.amp,
        "torch_threads": torch.get_num_threads(),
        "package_version": __version__,
        "torch_version": torch.__version__,
        "git_commit": git_commit(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


LOCK_FILE = ".lock"


def _is_finished(folder: Path) -> bool:
    """A run is finished when ``results.json`` (written last) AND its weights ``last.pt`` exist."""
    return (folder / RESULTS_FILE).is_file() and (folder / "last.pt").is_file()


def train_into(
    config: RunConfig,
    folder: str | Path,
    *,
    resume: bool = True,
    progress: bool = True,
    model_fn: Callable[[RunConfig], torch.nn.Module] | None = None,
    wait: bool = False,
) -> Run:
    """Train ``config`` into ``folder`` (the command line's ``train --out``; :func:`get_or_train`
    uses the cache folder). A finished run there is returned as is; with ``resume`` a
    half-finished one continues from ``last.pt``, without it the folder's run starts over.

    One writer per folder: the process holds ``folder/.lock`` (``results.exclusive_lock``, gone
    with the process) while it trains; a second writer is refused, naming the first, or with
    ``wait`` (:func:`get_or_train`: two chapters asking for one run) waits for it and then
    loads the run it finished. Steps:
    lock; sweep the temporaries of killed writers; write ``config.json``; build the stores; seed
    and build the model; ``train.fit`` (resuming; it checks the checkpoint set); predict the
    test split with the final weights; write ``predictions.csv``, then ``results.json`` (last:
    with ``last.pt`` it marks the run finished). A run that fails before its first checkpoint
    leaves no folder behind (or only what was there).

    Raises:
        RunError: ``folder`` is a file, holds a finished run of another config, or another
            process is writing it (``FolderInUse``).
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise RunError(f"The run folder {folder} is a file. Fix: pass a folder path (new or a run's) to --out / folder.")
    if resume and _is_finished(folder):
        return _finished_run(config, folder)
    created = not folder.exists()
    with exclusive_lock(folder / LOCK_FILE, wait=wait):
        if resume and _is_finished(folder):  # finished by the writer we waited for
            return _finished_run(config, folder)
        sweep_temporaries(folder)
        try:
            return _train_locked(config, folder, resume=resume, progress=progress, model_fn=model_fn)
        except BaseException:
            if created and not (folder / "last.pt").exists():  # nothing worth keeping was written
                for name in ("config.json", "history.csv", "history.json", LOCK_FILE):
                    (folder / name).unlink(missing_ok=True)
            raise
        finally:
            if created and not any(folder.iterdir()):
                folder.rmdir()


def _train_locked(config: RunConfig, folder: Path, *, resume: bool, progress: bool, model_fn) -> Run:
    """The body of :func:`train_into`, run while this process holds the folder's lock."""
    if not resume or not (folder / "last.pt").is_file():  # a results.json without weights is stale
        for name in (RESULTS_FILE, "predictions.csv") + (() if resume else ("last.pt", "best.pt")):
            (folder / name).unlink(missing_ok=True)
    write_text(folder / "config.json", json.dumps(config.to_dict(), indent=1))

    prof = get_profile(config.profile)
    t_start = time.perf_counter()
    train_store, val_store = _training_stores(config, progress)
    seed_everything(config.seed)
    model = model_fn(config) if model_fn is not None else _build(config)
    spec = make_model_spec(config.model, config.kwargs, image_size=config.image_size)
    already = 0
    if (folder / "last.pt").is_file():
        already = int(read_checkpoint(folder / "last.pt")["epoch"])
    result = fit(
        model, train_store, val_store, recipe=resolved_recipe(config), epochs=config.epochs,
        batch_size=config.batch_size, seed=config.seed, out_dir=folder, resume=True, device=prof.device,
        lr=config.lr, augment=None if config.augment is None else dict(config.augment), progress=progress,
        model_spec=spec,
    )
    test = ImageTensorStore.from_dataset(config.dataset, split="test", resolution=config.image_size, progress=progress)
    t_eval = time.perf_counter()
    y_true, y_score, ids = predict(model, test, batch_size=256, device=prof.device)
    eval_seconds = time.perf_counter() - t_eval
    write_csv(folder / "predictions.csv", pd.DataFrame({"id": ids, "y_true": y_true, "y_score": y_score}))
    timing = {
        "train_seconds": result.train_seconds,
        "eval_seconds": eval_seconds,
        "session_seconds": time.perf_counter() - t_start,
        "epochs": config.epochs,
        "resumed_from_epoch": already,
        "train_images_per_second": (len(train_store) * config.epochs / result.train_seconds
                                    if result.train_seconds else None),
    }
    last_val = result.history.iloc[-1].to_dict() if len(result.history) else {}
    record = _results_record(config, spec, (train_store, val_store, test), classification_report(y_true, y_score),
                             last_val, result, timing)
    write_text(folder / RESULTS_FILE, json.dumps(record, indent=1, default=json_default))
    return Run(folder)


def release_optimizer_state(checkpoint: Path) -> int:
    """Drop the optimizer's per-parameter state from a *finished* run's ``last.pt``.

    A finished run is never resumed (``get_or_train`` returns it from ``results.json``), but
    Adam's two moment buffers per weight triple the checkpoint: 1.6 GB instead of 0.5 GB for
    VGG-16. A CI run trains two dozen models, so the run cache would otherwise hold over 10 GB.
    ``train.fit`` writes the final epoch's ``last.pt`` this way itself; this function is for a
    checkpoint written otherwise (a run stopped mid-way and abandoned, or a checkpoint from an
    older version of the package) and is a no-op on the others.
    The weights, scheduler position, RNG states, history and settings stay; the optimizer keeps
    its ``param_groups`` and an empty ``state`` (a valid state: Adam would restart its moments),
    marked ``"released": True``. Written atomically; a checkpoint without optimizer state is
    left untouched.

    Returns:
        The bytes saved (0 when there was nothing to release).
    """
    checkpoint = Path(checkpoint)
    if not checkpoint.is_file():
        return 0
    ckpt = torch.load(checkpoint, weights_only=True, map_location="cpu")
    opt = ckpt.get("optimizer")
    if not isinstance(opt, dict) or not opt.get("state"):
        return 0
    before = checkpoint.stat().st_size
    ckpt["optimizer"] = released_optimizer_state(opt)
    save_checkpoint(ckpt, checkpoint)
    return before - checkpoint.stat().st_size


# ------------------------------------------------------------------ the book's shared configs
# One place for the runs several chapters share, so that each is trained once per CI run.


def main_config(profile=None, **overrides) -> RunConfig:
    """The book's main model (chapter 04; loaded by 05, 07, 08, 09): ASFF-ResNet50 with the
    paper's two-level fusion (eq. 7, ``fusion="asff_text"``) at the profile's main budget
    (``image_size``, ``epochs``, ``batch_size``, ``recipe``, ``pretrained``, first seed)."""
    return RunConfig.from_profile("asff_resnet50", {"fusion": "asff_text"}, profile=profile, **overrides)


def ablation_config(fusion: str, seed: int, profile=None, **overrides) -> RunConfig:
    """One cell of the fusion ablation (chapter 06; chapters 07–09 load the ``none`` and
    ``asff_text`` runs as the like-for-like baseline/ASFF pair): ASFF-ResNet50 with ``fusion``
    at the profile's many-model budget (``bench_image_size``, ``bench_epochs``, and
    ``bench_train_images``: a fixed class-stratified subset of the training split, seed 0, the
    same for every model and seed)."""
    prof = as_profile(profile)
    base = dict(image_size=prof.bench_image_size, epochs=prof.bench_epochs, seed=seed)
    dataset = overrides.get("dataset", RunConfig.dataset)
    if prof.bench_train_images is not None and "train_subset" not in overrides:
        base["train_subset"] = stratified_subset(dataset, "train", prof.bench_train_images, seed=0)
    base.update(overrides)
    return RunConfig.from_profile("asff_resnet50", {"fusion": fusion}, profile=prof, **base)


#: Peak learning rates of the ``fast`` recipe that a baseline of chapter 02 overrides, each chosen
#: on the validation split (never the test images) by
#: :func:`skinlesion_utils.studies.ch02_baselines.lr_search`, whose table is stored under
#: ``results/ci/02_baselines_lr_search/``. VGG-16 has no batch normalisation: at the recipe's 2e-3
#: it stalls at a constant output within chapter 02's budget.
BASELINE_LR: dict[str, float] = {"vgg16": 1e-4}


def baseline_config(model: str, profile=None, seed: int | None = None, **overrides) -> RunConfig:
    """The benchmark config of one baseline (chapter 02): the ablation's protocol, another model.

    Built from :func:`ablation_config` with only the model swapped, so every baseline and every
    fusion variant of chapter 06 is trained under one protocol by construction: the profile's
    ``bench_image_size`` and ``bench_epochs``, its batch size, recipe (``"fast"``),
    ``pretrained`` flag, training data and validation split.

    Args:
        model: a name of chapter 02's ``BASELINES`` (any ``build_model`` name works).
        profile: a ``Profile`` or profile name (default: the active one).
        seed: training seed (default: the profile's first seed).
        **overrides: any :class:`RunConfig` field, e.g. ``recipe="paper"`` for the paper's
            optimizer and learning rate. Under the ``fast`` recipe a model of
            :data:`BASELINE_LR` takes that learning rate unless ``lr`` is given.
    """
    prof = as_profile(profile)
    protocol = ablation_config("none", prof.seeds[0] if seed is None else seed, profile=prof)
    if overrides.get("recipe", protocol.recipe) == "fast" and "lr" not in overrides and model in BASELINE_LR:
        overrides["lr"] = BASELINE_LR[model]
    return replace(protocol, model=model, model_kwargs={}, **overrides)


def settings_table(configs: dict[str, RunConfig]) -> pd.DataFrame:
    """What was trained, one row per config: exactly the settings a page must state (chapters 02, 06).

    Args:
        configs: ``{label: RunConfig}``.

    Returns:
        DataFrame indexed by label with ``model``, ``kwargs``, ``recipe``, ``optimizer``, ``lr``
        (peak), ``epochs``, ``image_size`` (px), ``batch_size``, ``train_images`` (the subset, or
        all), ``pretrained``, ``seed``.
    """
    rows = []
    for label, cfg in configs.items():
        rec = resolved_recipe(cfg)
        rows.append({
            "label": label, "model": cfg.model, "kwargs": json.dumps(cfg.kwargs) if cfg.kwargs else "",
            "recipe": cfg.recipe, "optimizer": rec.optimizer, "lr": cfg.lr if cfg.lr is not None else rec.lr,
            "epochs": cfg.epochs, "image_size": cfg.image_size, "batch_size": cfg.batch_size,
            "train_images": "all" if cfg.train_subset is None else len(cfg.train_subset),
            "pretrained": cfg.pretrained, "seed": cfg.seed,
        })
    return pd.DataFrame(rows).set_index("label")


def train_all(configs: dict, cache_dir=None, progress: bool = False, model_fn: Callable | None = None,
              verbose: bool = True) -> dict:
    """:func:`get_or_train` every config of a grid (chapters 02 and 06), one after the other.

    Args:
        configs: ``{label: RunConfig}``.
        cache_dir, progress, model_fn: as :func:`get_or_train`.
        verbose: print one line per run: its test accuracy and AUC, and whether it was trained
            (in how many seconds) or loaded from the run cache.

    Returns:
        ``{label: Run}`` in the order of ``configs``.
    """
    out = {}
    for label, cfg in configs.items():
        cached = _is_finished(run_dir(cfg, cache_dir))
        out[label] = get_or_train(cfg, cache_dir=cache_dir, progress=progress, model_fn=model_fn)
        gc.collect()  # free the previous model's weights and optimizer state before the next one
        if verbose:
            m, t = out[label].metrics, out[label].results["timing"]
            how = "loaded from the run cache" if cached else f"trained in {t['train_seconds']:.0f} s"
            print(f"{label:>24s}: accuracy {m['accuracy']:.3f}, ROC AUC {m['roc_auc']:.3f} ({how})", flush=True)
    return out


def long_predictions(runs: dict, key_cols: Callable[[Any], dict]) -> pd.DataFrame:
    """Every run's test predictions in one long table (the ``predictions.csv`` of chapters 02, 06).

    Args:
        runs: ``{label: Run}``.
        key_cols: ``label -> {column: value}``, the key columns put first (in reverse order of
            the dict: each is inserted at position 0), e.g. ``lambda label: {"model": label}``.

    Returns:
        DataFrame with the key columns, ``id``, ``y_true``, ``y_score`` (rounded to 6 decimals).
    """
    parts = []
    for label, run in runs.items():
        p = run.predictions
        for k, v in key_cols(label).items():
            p.insert(0, k, v)
        parts.append(p)
    out = pd.concat(parts, ignore_index=True)
    out["y_score"] = out["y_score"].round(6)
    return out


# ------------------------------------------------------------------ chapter 05 additions
# Appended for chapter 05 (evaluation): the run's own validation images and the chapters'
# results files under results/<profile>/<chapter>/.


def validation_split(run: "Run | RunConfig"):
    """The ``(train_store, val_store)`` split a run trained with, reproduced exactly.

    Rebuilds the training store of ``run.config`` (dataset, ``image_size``, ``train_subset``)
    and carves the same stratified validation part with ``train.train_val_split(store,
    val_fraction, seed=split_seed)`` that :func:`get_or_train` used, so ``val_store`` holds
    images the model never trained on.

    Args:
        run: a finished :class:`Run` (its split size is checked against ``results.json``) or a
            :class:`RunConfig`.

    Returns:
        ``(train_store, val_store)``, two ``ImageTensorStore`` (uint8 [N, 3, R, R]).

    Raises:
        RuntimeError: the rebuilt split does not have the run's recorded sizes.
    """
    cfg = run.config if isinstance(run, Run) else run
    full = ImageTensorStore.from_dataset(cfg.dataset, split="train", resolution=cfg.image_size, progress=False)
    if cfg.train_subset is not None:
        full = full.subset(list(cfg.train_subset))
    train_store, val_store = train_val_split(full, cfg.val_fraction, seed=cfg.split_seed)
    if isinstance(run, Run):
        resolved = run.results.get("resolved", {})
        want = (resolved.get("n_train"), resolved.get("n_val"))
        if want != (len(train_store), len(val_store)):
            raise RuntimeError(
                f"{run.dir.name}: the rebuilt split has {len(train_store)} train / {len(val_store)} validation "
                f"images but the run recorded {want[0]} / {want[1]}: the data or train_val_split changed since "
                "it was trained. Fix: retrain it with get_or_train(config, retrain=True)."
            )
    return train_store, val_store


def validation_predictions(run: Run, which: str = "last", *, batch_size: int = 256, device: str = "cpu",
                           model_fn: Callable[[RunConfig], torch.nn.Module] | None = None) -> "pd.DataFrame":  # noqa: F821
    """The run's model on its own validation images (never trained on), like ``Run.predictions``.

    Use it to choose anything that must not see the test images — a decision threshold, a
    temperature for calibration — then apply the choice to ``run.predictions`` (chapter 05).

    Args:
        run: a finished :class:`Run`.
        which: ``"last"`` (the weights evaluated on the test split) or ``"best"``.
        batch_size: images per forward pass.
        device: where to run the model (``"cpu"``, ``"cuda"``, ``"auto"``).
        model_fn: as in :func:`get_or_train`, for custom architectures.

    Returns:
        DataFrame with ``id`` (e.g. ``train/benign/12.jpg``), ``y_true`` (0/1) and ``y_score``
        (P(malignant), float in [0, 1]), one row per validation image.
    """
    _, val_store = validation_split(run)
    model = run.load_model(which, model_fn=model_fn, device="cpu" if device == "auto" else device)
    y_true, y_score, ids = predict(model, val_store, batch_size=batch_size, device=device)
    return pd.DataFrame({"id": ids, "y_true": y_true, "y_score": y_score})
