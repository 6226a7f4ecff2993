"""Command-line sub-commands ``train``, ``evaluate`` and ``bench`` (chapter 04).

* ``train --model NAME [--fusion F] [--profile ci|full] [--recipe paper|fast] [--seed S]
  [--epochs N] [--image-size R] --out DIR [--resume]`` trains with
  :func:`skinlesion_utils.runs.train_into` and writes ``DIR/results.json`` and ``DIR/last.pt``.
* ``evaluate --checkpoint FILE --data FOLDER --out FILE.json`` — metrics with CIs of a
  checkpoint on any ``{benign,malignant}/*`` folder (:func:`skinlesion_utils.evaluate.evaluate_folder`).
* ``bench [--models ...] [--image-size R] [--pipeline]`` — training throughput (img/s) and the
  input pipeline against a naive per-epoch decode (:mod:`skinlesion_utils.bench`).
"""
from __future__ import annotations

import json
from pathlib import Path


def add_train_parser(sub) -> None:
    p = sub.add_parser("train", help="train a model; writes DIR/results.json and DIR/last.pt")
    p.add_argument("--model", required=True, help="a name of models.list_models()")
    p.add_argument("--fusion", default=None, help="asff_resnet50 only: none, sum, concat, asff_text, asff_code, asff_spatial")
    p.add_argument("--profile", default=None, choices=["ci", "full"], help="default: $SKINLESION_PROFILE or ci")
    p.add_argument("--recipe", default=None, choices=["paper", "fast"], help="default: the profile's")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--epochs", type=int, default=None, help="default: the profile's (the paper recipe: 500)")
    p.add_argument("--image-size", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--pretrained", action=argparse_bool(), default=None, help="ImageNet weights (needs the internet once)")
    p.add_argument("--out", required=True, type=Path, help="run folder")
    p.add_argument("--resume", action="store_true", help="continue from DIR/last.pt")
    p.set_defaults(func=run_train)


def argparse_bool():
    import argparse

    return argparse.BooleanOptionalAction


def run_train(args) -> int:
    from .models import list_models
    from .profiles import profile
    from .runs import RunConfig, train_into

    if args.model not in list_models():
        raise SystemExit(f"error: unknown model {args.model!r}; valid: {', '.join(list_models())}")
    prof = profile(args.profile)
    overrides = {k: v for k, v in dict(recipe=args.recipe, seed=args.seed, epochs=args.epochs, image_size=args.image_size,
                                       batch_size=args.batch_size, pretrained=args.pretrained).items() if v is not None}
    if args.recipe == "paper" and args.epochs is None:
        from .train import get_recipe

        overrides["epochs"] = get_recipe("paper").epochs
    kwargs = {"fusion": args.fusion} if args.fusion else {}
    config = RunConfig.from_profile(args.model, kwargs, profile=prof, **overrides)
    run = train_into(config, args.out, resume=args.resume)
    m = run.metrics
    print(f"{config.model} {kwargs or ''} → {args.out}: test accuracy {m['accuracy']:.4f}, ROC AUC {m['roc_auc']:.4f}")
    return 0


def add_evaluate_parser(sub) -> None:
    p = sub.add_parser("evaluate", help="metrics of a checkpoint on any {benign,malignant}/* folder")
    p.add_argument("--checkpoint", required=True, type=Path)
    p.add_argument("--data", required=True, type=Path, help="folder with benign/ and malignant/ sub-folders")
    p.add_argument("--out", required=True, type=Path, help="JSON file to write")
    p.add_argument("--image-size", type=int, default=None, help="default: the checkpoint's training size")
    p.add_argument("--resize", default="squash", choices=["squash", "center_crop"])
    p.add_argument("--threshold", type=float, default=0.5)
    p.set_defaults(func=run_evaluate)


def run_evaluate(args) -> int:
    from .evaluate import evaluate_folder, write_json

    ev = evaluate_folder(args.checkpoint, args.data, image_size=args.image_size, resize=args.resize, threshold=args.threshold)
    write_json(ev.to_json(), args.out)
    r = ev.report
    print(f"{args.data}: n={r['n']} accuracy {r['accuracy']:.4f} sensitivity {r['recall']:.4f} "
          f"specificity {r['specificity']:.4f} ROC AUC {r['roc_auc']:.4f} → {args.out}")
    return 0


def add_bench_parser(sub) -> None:
    p = sub.add_parser("bench", help="training throughput and the input pipeline against a naive decode")
    p.add_argument("--models", nargs="+", default=["resnet50", "asff_resnet50"])
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--modes", nargs="+", default=["fp32", "bf16_channels_last"])
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--pipeline", action="store_true", help="also compare the input pipeline (one epoch each way)")
    p.add_argument("--pipeline-images", type=int, default=None, help="limit the pipeline comparison to N images")
    p.add_argument("--out", type=Path, default=None, help="JSON file to write")
    p.set_defaults(func=run_bench)


def run_bench(args) -> int:
    from .bench import format_table, pipeline_comparison, training_throughput
    from .evaluate import write_json

    rows = []
    for name in args.models:
        for mode in args.modes:
            rows.append(training_throughput(name, args.image_size, args.batch_size, mode, steps=args.steps).as_row())
    print(format_table(rows, ["model", "image_size", "mode", "batch_size", "images_per_second", "device"]))
    if len(args.models) >= 2:
        by = {(r["model"], r["mode"]): r["images_per_second"] for r in rows}
        for mode in args.modes:
            a, b = by.get((args.models[1], mode)), by.get((args.models[0], mode))
            if a and b:
                print(f"throughput ratio {args.models[1]} / {args.models[0]} ({mode}): {a / b:.3f}")
    result = {"throughput": rows}
    if args.pipeline:
        pc = pipeline_comparison(resolution=args.image_size, max_images=args.pipeline_images)
        print(f"input pipeline at {pc['resolution']} px, {pc['images']} images: naive per-epoch decode "
              f"{pc['naive_seconds']:.2f} s/epoch, tensor store {pc['store_seconds']:.3f} s/epoch "
              f"(one-time decode {pc['decode_once_seconds']:.2f} s) → ratio {pc['ratio']:.0f}×")
        result["pipeline"] = pc
    if args.out:
        write_json(result, args.out)
    return 0
