"""The GPU benchmark and reference runs: one command that fits a 15-minute GPU lease.

``make gpu-data`` packs the paper's images into one compact file (``.gpu/isic_balanced_224.pt``,
~33 MB, see :func:`skinlesion_utils.bench.pack_gpu_data`) that travels with the repository to a
GPU machine with PyTorch but no internet and no ImageNet weights. ``make gpu-bench`` then runs::

    python -m skinlesion_utils.gpu_bench --data .gpu/isic_balanced_224.pt --out results/full/gpu-bench

1. training throughput (img/s) at 224 px of ResNet-50 and ASFF-ResNet50 in fp32, bf16
   autocast, bf16 + channels_last, and bf16 + channels_last + ``torch.compile`` when it builds
   within ``--compile-timeout`` seconds, with the data resident on the GPU;
2. a reference comparison from scratch at 224 px, ResNet-50 (``fusion="none"``) against
   ASFF-ResNet50 (``asff_text``), the epoch budget chosen from the measured throughput so that
   both fit ``--budget-minutes``; each trained with :func:`skinlesion_utils.train.fit`, then
   evaluated on the 660 test images with confidence intervals and the paired tests;
3. writes ``bench.json``, ``reference.json`` (with device name, date, commit) and
   ``summary.txt`` under ``--out`` and prints a short table last.

Chapters 04 and 06 show these files beside their ``ci`` results (``results/full``). Taught in
chapter 04. ``--tiny`` runs the same code on the CPU in seconds (``make test`` does).
"""
from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import torch

from . import __version__
from .bench import MODES, format_table, load_gpu_data, pack_gpu_data, training_throughput

REFERENCE_MODELS = (("asff_resnet50", {"fusion": "none"}, "ResNet-50"), ("asff_resnet50", {"fusion": "asff_text"}, "ASFF-ResNet50"))


def provenance() -> dict:
    """Device name, date, commit, versions: attached to every results file."""
    from .runs import git_commit

    dev = "cuda" if torch.cuda.is_available() else "cpu"
    return {
        "device": torch.cuda.get_device_name(0) if dev == "cuda" else f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)",
        "device_type": dev,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "commit": git_commit(),
        "torch": torch.__version__,
        "package_version": __version__,
    }


def _atomic_json(path: Path, obj) -> None:
    from .data import _atomic_write_bytes

    _atomic_write_bytes(path, json.dumps(obj, indent=2, default=str).encode())


def run_benchmark(args) -> dict:
    """Measure throughput, train the reference pair, write the results; returns the summary."""
    from .metrics import auc_difference, classification_report, mcnemar, report_with_ci
    from .models import build_model
    from .splits import train_val_split
    from .train import fit, predict, seed_everything

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    prov = provenance()
    started = time.time()
    stores = load_gpu_data(args.data, device=prov["device_type"])
    train_all, test = stores["train"], stores["test"]
    if args.tiny:
        # CPU self-test: a few images per class at a small size, same code path.
        import torch.nn.functional as F

        def shrink(store, n):
            idx = torch.cat([torch.nonzero(store.labels == c).flatten()[:n] for c in (0, 1)])
            sub = store.subset(idx)
            sub.images = F.interpolate(sub.images.float(), size=args.image_size, mode="bilinear", antialias=True).round().clamp(0, 255).to(torch.uint8)
            sub.resolution = args.image_size
            return sub

        train_all, test = shrink(train_all, 24), shrink(test, 8)
    size = train_all.resolution

    rows = []
    modes = [m for m in MODES if args.compile or not m.endswith("compile")]
    for name, kwargs, label in REFERENCE_MODELS:
        for mode in modes:
            if mode.startswith("bf16") and prov["device_type"] == "cuda" and not torch.cuda.is_bf16_supported():
                continue
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
    _atomic_json(out / "bench.json", {"provenance": prov, "image_size": size, "throughput": rows})

    # Reference comparison: epochs from the measured bf16+channels_last throughput.
    train_store, val_store = train_val_split(train_all, 0.15, seed=0)
    best_mode = "bf16_channels_last" if prov["device_type"] == "cuda" else "fp32"
    ips = {r["model"]: r["images_per_second"] for r in rows if r["mode"] == best_mode and r.get("status") == "ok"}
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
    (ya, sa), (yb, sb) = preds["ResNet-50"], preds["ASFF-ResNet50"]
    paired = {
        "mcnemar": {k: v for k, v in mcnemar(ya, sa >= 0.5, sb >= 0.5).items() if k != "table"},
        "auc_difference": auc_difference(ya, sa, sb, n_boot=1000, seed=0),
    }
    reference = {
        "provenance": prov,
        "setup": {"image_size": size, "epochs": epochs, "batch_size": args.batch_size, "recipe": "fast",
                  "pretrained": False, "data": str(args.data), "tiny": bool(args.tiny),
                  "train_images": len(train_store), "val_images": len(val_store), "test_images": len(test)},
        "results": results,
        "paired": paired,
        "total_seconds": time.time() - started,
    }
    _atomic_json(out / "reference.json", reference)
    table_tp = format_table(rows, ["model", "mode", "images_per_second", "status"])
    table_ref = format_table(
        [{"model": m, "epochs": r["epochs"], "accuracy": r["metrics"]["accuracy"], "roc_auc": r["metrics"]["roc_auc"],
          "train_s": r["train_seconds"]} for m, r in results.items()],
        ["model", "epochs", "accuracy", "roc_auc", "train_s"],
    )
    summary = f"{prov['device']} · {prov['date']} · commit {prov['commit']}\n\n{table_tp}\n\n{table_ref}\n"
    (out / "summary.txt").write_text(summary)
    print("\n" + summary)
    return reference


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m skinlesion_utils.gpu_bench", description=__doc__.split("\n")[0])
    p.add_argument("--data", type=Path, default=Path(".gpu/isic_balanced_224.pt"), help="file from `make gpu-data`")
    p.add_argument("--out", type=Path, default=Path("results/full/gpu-bench"))
    p.add_argument("--work", type=Path, default=Path(".cache/gpu-bench-runs"), help="checkpoints (large; not results)")
    p.add_argument("--pack", action="store_true", help="build --data from the local datasets and exit")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--steps", type=int, default=20, help="timed steps per throughput measurement")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--compile-timeout", type=float, default=120)
    p.add_argument("--budget-minutes", type=float, default=7.0, help="time for the two reference trainings together")
    p.add_argument("--max-epochs", type=int, default=40)
    p.add_argument("--epochs", type=int, default=0, help="fix the epochs instead of deriving them")
    p.add_argument("--tiny", action="store_true", help="CPU self-test: 48 train / 16 test images at --image-size")
    p.add_argument("--image-size", type=int, default=32, help="with --tiny only")
    args = p.parse_args(argv)
    if args.pack:
        info = pack_gpu_data(args.data)
        print(json.dumps(info, indent=2))
        return 0
    if not args.data.exists():
        print(f"error: {args.data} not found. Fix: run `make gpu-data` first (needs SKINLESION_DATA).", file=sys.stderr)
        return 2
    run_benchmark(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
