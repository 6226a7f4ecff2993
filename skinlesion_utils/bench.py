"""Benchmarks: training throughput, the input pipeline, and the compact GPU data file (chapter 04).

* :func:`training_throughput` — images/s of full training steps (forward, backward, optimizer)
  with the data already resident on the device, in fp32, bf16 or fp16 autocast (fp16 with a
  ``GradScaler``), + channels_last and optionally ``torch.compile``. :func:`modes_for` picks
  the modes worth measuring on a device by the one precision rule, ``train.amp_for_device``.
* :func:`pipeline_comparison` — the decode-once tensor store against a naive per-epoch
  PIL/ImageFolder decode at the same resolution: the ratio is why chapter 00 decodes once.
* :func:`pack_gpu_data` / :func:`load_gpu_data` — one compact file (JPEG bytes re-encoded at
  quality 90, ~33 MB for the paper's 3,297 images) that travels with the repository to a GPU
  machine with no internet; decoded there in seconds. Re-encoding changes pixels slightly
  (mean absolute difference is reported by :func:`pack_gpu_data`); it is used for the GPU
  benchmark only, never for the chapters' results.
* :func:`run_gpu_benchmark` — the GPU benchmark and reference runs (``skinlesion gpu-bench``),
  described below.

The GPU benchmark and reference runs: one command that fits a 15-minute GPU lease.

``make gpu-data`` packs the paper's images into one compact file (``.gpu/isic_balanced_224.pt``,
~33 MB, see :func:`skinlesion_utils.bench.pack_gpu_data`) that travels with the repository to a
GPU machine with PyTorch but no internet and no ImageNet weights. ``make gpu-bench`` then runs::

    python -m skinlesion_utils gpu-bench --data .gpu/isic_balanced_224.pt   # → <results root>/full/gpu-bench

1. training throughput (img/s) at 224 px of ResNet-50 and ASFF-ResNet50 in fp32 and in the
   precision ``train.amp_for_device`` picks for the GPU (bf16 from compute capability 8.0, fp16
   + GradScaler on 7.x such as a T4): autocast, + channels_last, and + ``torch.compile`` when it
   builds within ``--compile-timeout`` seconds, with the data resident on the GPU;
2. a reference comparison from scratch at 224 px, ResNet-50 (``fusion="none"``) against
   ASFF-ResNet50 (``asff_text``), the epoch budget chosen from the throughput measured in the
   mode the training uses (:func:`best_mode`, the same rule) so that
   both fit ``--budget-minutes``; each trained with :func:`skinlesion_utils.train.fit`, then
   evaluated on the 660 test images with confidence intervals and the paired tests;
3. writes ``bench.json``, ``reference.json`` (with device name, date, commit) and
   ``summary.txt`` under ``--out`` and prints a short table last.

Chapters 04 and 06 show these files beside their ``ci`` results (``results/full``). Taught in
chapter 04. ``--tiny`` runs the same code on the CPU in seconds (``make test`` does).
"""
from __future__ import annotations

import io
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .errors import ConfigError
from .data import CLASSES, DataError, ImageTensorStore, decode_image, get_spec, locate
from .metrics import auc_difference, classification_report, mcnemar, report_with_ci
from .models import build_model
from .profiles import resolve_device
from .results import GPU_BENCH_CHAPTER, provenance, results_dir, write_bytes, write_json, write_text
from .splits import train_val_split
from .augment import normalise
from .train import amp_for_device, fit, precision_name, predict, seed_everything

GPU_DATA_FORMAT = "skinlesion-gpu-data/1"


@dataclass
class Throughput:
    """One throughput measurement."""

    model: str
    image_size: int
    mode: str
    batch_size: int
    images_per_second: float
    seconds_per_step: float
    device: str

    def as_row(self) -> dict:
        return dict(self.__dict__)


MODES = ("fp32", "bf16", "bf16_channels_last", "bf16_channels_last_compile",
         "fp16", "fp16_channels_last", "fp16_channels_last_compile")
_MODE_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def modes_for(device, compile: bool = True) -> list[str]:
    """The throughput modes worth measuring on ``device``: fp32, and the precision that
    ``train.amp_for_device`` picks there (autocast, + channels_last, + compile), e.g. fp16 on a
    T4, bf16 on an A100/H100 or a CPU with native bf16, fp32 alone where neither helps."""
    dtype = amp_for_device(device)
    if dtype is None:
        return ["fp32"]
    name = precision_name(dtype)
    return ["fp32", name, f"{name}_channels_last"] + ([f"{name}_channels_last_compile"] if compile else [])


def best_mode(device) -> str:
    """The mode :func:`skinlesion_utils.train.fit` trains in on ``device`` (``amp="auto"``,
    channels_last): what the reference pair's epoch budget is computed from."""
    dtype = amp_for_device(device)
    return "fp32" if dtype is None else f"{precision_name(dtype)}_channels_last"


def training_throughput(
    model_name: str,
    image_size: int = 224,
    batch_size: int = 32,
    mode: str = "bf16_channels_last",
    steps: int = 10,
    warmup: int = 2,
    device: str = "auto",
    model_kwargs: dict | None = None,
) -> Throughput:
    """Images/s of training steps of ``model_name`` at ``image_size`` on synthetic resident data.

    Args:
        model_name: a name of :func:`skinlesion_utils.models.build_model`.
        mode: one of :data:`MODES`.
        steps: timed steps after ``warmup`` untimed ones (compile happens during warm-up).

    Returns:
        a :class:`Throughput`. Each step = augment-free forward + backward + AdamW step.
    """

    if mode not in MODES:
        raise ConfigError(f"Unknown mode {mode!r}; use one of {MODES}.")
    dev = resolve_device(device)
    torch.manual_seed(0)
    model = build_model(model_name, num_classes=2, **(model_kwargs or {})).to(dev).train()
    x = torch.randint(0, 256, (batch_size, 3, image_size, image_size), dtype=torch.uint8, device=dev)
    y = torch.randint(0, 2, (batch_size,), device=dev)
    channels_last = "channels_last" in mode
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    amp_dtype = _MODE_DTYPES.get(mode.split("_")[0])
    forward = torch.compile(model) if mode.endswith("compile") else model
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    scaler = torch.amp.GradScaler(dev.type, enabled=amp_dtype is torch.float16)  # as train.fit does

    def step():
        inp = normalise(x)
        if channels_last:
            inp = inp.contiguous(memory_format=torch.channels_last)
        with torch.autocast(dev.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
            loss = F.cross_entropy(forward(inp), y)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize()

    for _ in range(warmup):
        step()
    sync()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    sync()
    dt = (time.perf_counter() - start) / steps
    return Throughput(model_name if not model_kwargs else f"{model_name}({','.join(f'{k}={v}' for k, v in model_kwargs.items())})",
                      image_size, mode, batch_size, batch_size / dt, dt, str(dev))


def pipeline_comparison(
    name: str = "isic_balanced",
    split: str = "train",
    resolution: int = 224,
    batch_size: int = 64,
    max_images: int | None = None,
    num_workers: int = 0,
) -> dict:
    """Time one epoch of batches from the tensor store against a naive per-epoch decode.

    The naive path is torchvision's ``ImageFolder`` + ``Resize`` + ``ToTensor`` in a
    ``DataLoader``: every epoch opens and decodes every JPEG again. The store path indexes
    batches from the uint8 tensor decoded once (its one-time decode is reported separately).

    Returns:
        dict with naive_seconds, store_seconds (per epoch), decode_once_seconds, ratio
        (naive / store), images, resolution.
    """
    import torchvision
    from torchvision import transforms


    root = locate(name) / split
    tf = transforms.Compose([transforms.Resize((resolution, resolution)), transforms.PILToTensor()])
    folder = torchvision.datasets.ImageFolder(root, transform=tf)
    if max_images is not None:
        idx = np.random.default_rng(0).permutation(len(folder))[:max_images]
        folder = torch.utils.data.Subset(folder, idx.tolist())
    n = len(folder)
    loader = torch.utils.data.DataLoader(folder, batch_size=batch_size, shuffle=True, num_workers=num_workers,
                                         generator=torch.Generator().manual_seed(0))
    start = time.perf_counter()
    for xb, _ in loader:
        xb.float()
    naive = time.perf_counter() - start

    start = time.perf_counter()
    store = ImageTensorStore.from_dataset(name, split, resolution=resolution, cache=False, progress=False)
    decode_once = time.perf_counter() - start
    images = store.images if max_images is None else store.images[:n]
    perm = torch.randperm(len(images), generator=torch.Generator().manual_seed(0))
    start = time.perf_counter()
    for i in range(0, len(images), batch_size):
        images[perm[i : i + batch_size]].float()
    stored = time.perf_counter() - start
    return dict(images=n, resolution=resolution, naive_seconds=naive, store_seconds=stored,
                decode_once_seconds=decode_once, ratio=naive / max(stored, 1e-9))


# ------------------------------------------------------------------------ compact GPU data


def pack_gpu_data(out: Path, name: str = "isic_balanced", resolution: int = 224, quality: int = 90,
                  max_per_class: int | None = None) -> dict:
    """Write one compact file with every image of ``name`` as re-encoded JPEG bytes.

    The file (``torch.save``, loadable with ``weights_only=True``) holds ``jpeg`` (list of
    uint8 tensors), ``labels`` int64 [N], ``ids``, ``splits`` and provenance. It is written
    atomically; nothing is written to the data folder.

    Args:
        max_per_class: keep only the first N files of each split/class folder (tests).

    Returns:
        dict with path, images, megabytes, quality, mean_abs_pixel_change (0–255 scale, on a
        sample of 200 images).
    """

    spec = get_spec(name)
    root = locate(name)
    rels = sorted(spec.manifest_entries())
    if max_per_class is not None:
        seen: dict[str, int] = {}
        keep = []
        for rel in rels:
            folder = rel.rsplit("/", 1)[0]
            seen[folder] = seen.get(folder, 0) + 1
            if seen[folder] <= max_per_class:
                keep.append(rel)
        rels = keep
    blobs, labels, changes = [], [], []
    for k, rel in enumerate(rels):
        pixels = decode_image(root / rel, resolution)
        buf = io.BytesIO()
        Image.fromarray(pixels.transpose(1, 2, 0)).save(buf, format="JPEG", quality=quality)
        blob = np.frombuffer(buf.getvalue(), dtype=np.uint8).copy()
        blobs.append(torch.from_numpy(blob))
        labels.append(CLASSES.index(rel.split("/")[-2]))
        if k % max(1, len(rels) // 200) == 0:
            back = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB")).transpose(2, 0, 1)
            changes.append(np.abs(back.astype(np.int16) - pixels.astype(np.int16)).mean())
    payload = {
        "format": GPU_DATA_FORMAT,
        "dataset": name,
        "manifest_sha256": spec.manifest_hash(),
        "resolution": resolution,
        "quality": quality,
        "jpeg": blobs,
        "labels": torch.tensor(labels),
        "ids": rels,
        "splits": [r.split("/")[0] for r in rels],
    }
    buf = io.BytesIO()
    torch.save(payload, buf)
    out = Path(out)
    write_bytes(out, buf.getvalue())
    return dict(path=str(out), images=len(rels), megabytes=out.stat().st_size / 1e6, quality=quality,
                mean_abs_pixel_change=float(np.mean(changes)))


def load_gpu_data(path: Path, device: str = "cpu") -> dict:
    """Decode a :func:`pack_gpu_data` file into ``ImageTensorStore`` objects per split.

    JPEGs are decoded with ``torchvision.io.decode_jpeg`` (batched on the GPU when ``device``
    is CUDA). Returns ``{"train": store, "test": store, "meta": {...}}``.
    """
    import warnings


    with warnings.catch_warnings():  # torchvision 0.29 deprecates its codecs in favour of torchcodec
        warnings.simplefilter("ignore", DeprecationWarning)
        from torchvision.io import decode_jpeg

    blob = torch.load(path, weights_only=True)
    if blob.get("format") != GPU_DATA_FORMAT:
        raise DataError(f"{path} is not a GPU data file ({GPU_DATA_FORMAT}). Fix: rebuild it with `make gpu-data`.")
    dev = torch.device(device)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        decoded = decode_jpeg(blob["jpeg"], device=dev) if dev.type == "cuda" else [decode_jpeg(b) for b in blob["jpeg"]]
    images = torch.stack([d.cpu() for d in decoded])
    out = {"meta": {k: blob[k] for k in ("dataset", "manifest_sha256", "resolution", "quality")}}
    for split in sorted(set(blob["splits"])):
        idx = [i for i, s in enumerate(blob["splits"]) if s == split]
        out[split] = ImageTensorStore(images[idx], blob["labels"][idx], [blob["ids"][i] for i in idx],
                                      blob["resolution"], source=f"{path}:{split}")
    return out


def format_table(rows: Sequence[dict], columns: Sequence[str]) -> str:
    """A plain-text table (for terminals and logs)."""
    widths = [max(len(c), *(len(_fmt(r.get(c))) for r in rows)) for c in columns]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths))]
    lines.append("  ".join("-" * w for w in widths))
    for r in rows:
        lines.append("  ".join(_fmt(r.get(c)).ljust(w) for c, w in zip(columns, widths)))
    return "\n".join(lines)


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}" if abs(v) < 1000 else f"{v:.0f}"
    return "" if v is None else str(v)


# ------------------------------------------------------------------ the GPU benchmark

GPU_BENCH_DESCRIPTION = "The GPU benchmark and reference runs: one command that fits a 15-minute GPU lease."

REFERENCE_MODELS = (("asff_resnet50", {"fusion": "none"}, "ResNet-50"), ("asff_resnet50", {"fusion": "asff_text"}, "ASFF-ResNet50"))


def _write_json(path: Path, obj) -> None:
    write_json(path, obj, indent=2, default=str)


def _shrunk(store, n: int, image_size: int):
    """``n`` images per class of ``store`` resized to ``image_size`` (the ``--tiny`` CPU self-test)."""
    idx = torch.cat([torch.nonzero(store.labels == c).flatten()[:n] for c in (0, 1)])
    sub = store.subset(idx)
    sub.images = F.interpolate(sub.images.float(), size=image_size, mode="bilinear", antialias=True).round().clamp(0, 255).to(torch.uint8)
    sub.resolution = image_size
    return sub


def run_gpu_benchmark(args) -> dict:
    """Measure throughput, train the reference pair, write the results; returns the summary.

    ``args.out`` ``None`` → ``<results root>/full/gpu-bench`` (``$SKINLESION_RESULTS`` honoured)."""
    out = Path(args.out) if args.out is not None else results_dir(GPU_BENCH_CHAPTER, "full")
    out.mkdir(parents=True, exist_ok=True)
    prov = provenance()
    started = time.time()
    stores = load_gpu_data(args.data, device=prov["device_type"])
    train_all, test = stores["train"], stores["test"]
    if args.tiny:  # CPU self-test: a few images per class at a small size, same code path
        train_all, test = _shrunk(train_all, 24, args.image_size), _shrunk(test, 8, args.image_size)
    size = train_all.resolution
    rows = _throughput_rows(args, size, prov)
    _write_json(out / "bench.json", {"provenance": prov, "image_size": size, "training_mode": best_mode(resolve_device("auto")),
                                     "throughput": rows})
    reference = _reference_pair(args, rows, train_all, test, prov)
    reference["total_seconds"] = time.time() - started
    _write_json(out / "reference.json", reference)
    table_tp = format_table(rows, ["model", "mode", "images_per_second", "status"])
    table_ref = format_table(
        [{"model": m, "epochs": r["epochs"], "accuracy": r["metrics"]["accuracy"], "roc_auc": r["metrics"]["roc_auc"],
          "train_s": r["train_seconds"]} for m, r in reference["results"].items()],
        ["model", "epochs", "accuracy", "roc_auc", "train_s"],
    )
    summary = f"{prov['device']} · {prov['date']} · commit {prov['commit']}\n\n{table_tp}\n\n{table_ref}\n"
    write_text(out / "summary.txt", summary)
    print("\n" + summary)
    return reference


def _throughput_rows(args, size: int, prov: dict) -> list[dict]:
    """Throughput of the reference pair in every precision mode (a compile that fails is a row)."""
    rows = []
    modes = modes_for(resolve_device("auto"), compile=args.compile)
    for name, kwargs, label in REFERENCE_MODELS:
        for mode in modes:
            t0 = time.time()
            try:
                tp = training_throughput(name, size, args.batch_size, mode, steps=args.steps, warmup=args.warmup,
                                         model_kwargs=kwargs)
                row = tp.as_row() | {"model": label, "status": "ok"}
            except Exception as exc:  # a compile that fails to build is a result, not a crash
                if not mode.endswith("compile"):
                    raise
                row = dict(model=label, image_size=size, mode=mode, batch_size=args.batch_size, status=f"failed: {type(exc).__name__}: {exc}"[:300])
            row["seconds_incl_warmup"] = time.time() - t0
            if mode.endswith("compile") and row["seconds_incl_warmup"] > args.compile_timeout:
                row["status"] = f"ok but slow to build ({row['seconds_incl_warmup']:.0f} s > {args.compile_timeout} s)"
            rows.append(row)
            print(f"throughput {label:14s} {mode:28s} {row.get('images_per_second', float('nan')):8.1f} img/s  [{row['status']}]", flush=True)
    return rows


def _reference_pair(args, rows: list[dict], train_all, test, prov: dict) -> dict:
    """Train ResNet-50 and ASFF-ResNet50 on an epoch budget from the measured throughput;
    test metrics with intervals and the paired tests."""
    size = train_all.resolution
    train_store, val_store = train_val_split(train_all, 0.15, seed=0)
    trained_in = best_mode(resolve_device("auto"))  # the precision fit's amp="auto" uses there
    ips = {r["model"]: r["images_per_second"] for r in rows if r["mode"] == trained_in and r.get("status") == "ok"}
    budget = args.budget_minutes * 60
    per_epoch = {m: len(train_store) / ips[m] * 1.25 + len(val_store) / (3 * ips[m]) for m in ips}  # 25 % overhead
    epochs = max(1, min(args.max_epochs, math.floor(budget / sum(per_epoch.values()))))
    if args.epochs:
        epochs = args.epochs
    print(f"reference comparison: {epochs} epochs each (budget {args.budget_minutes} min)", flush=True)
    results, preds = {}, {}
    for name, kwargs, label in REFERENCE_MODELS:
        seed_everything(0)
        model = build_model(name, num_classes=2, **kwargs)
        t0 = time.time()
        fr = fit(model, train_store, val_store, recipe="fast", epochs=epochs, batch_size=args.batch_size, seed=0,
                 out_dir=args.work / label, progress=False)
        y, s, ids = predict(model, test)
        preds[label] = (y, s)
        rep = classification_report(y, s)
        ci = report_with_ci(y, s, n_boot=1000, seed=0)
        results[label] = {
            "metrics": {k: float(v) for k, v in rep.items() if isinstance(v, (int, float))},
            "ci95": {m: [float(ci.loc[m, "low"]), float(ci.loc[m, "high"])] for m in ci.index},
            "train_seconds": time.time() - t0,
            "epochs": epochs,
            "history": fr.history.to_dict(orient="records"),
        }
        print(f"{label}: test accuracy {rep['accuracy']:.4f}, ROC AUC {rep['roc_auc']:.4f} ({time.time() - t0:.0f} s)", flush=True)
    (ya, sa), (_, sb) = preds["ResNet-50"], preds["ASFF-ResNet50"]  # same test labels
    paired = {
        "mcnemar": {k: v for k, v in mcnemar(ya, sa >= 0.5, sb >= 0.5).items() if k != "table"},
        "auc_difference": auc_difference(ya, sa, sb, n_boot=1000, seed=0),
    }
    reference = {
        "provenance": prov,
        "setup": {"image_size": size, "epochs": epochs, "batch_size": args.batch_size, "recipe": "fast", "mode": trained_in,
                  "pretrained": False, "data": str(args.data), "tiny": bool(args.tiny),
                  "train_images": len(train_store), "val_images": len(val_store), "test_images": len(test)},
        "results": results,
        "paired": paired,
    }
    return reference
