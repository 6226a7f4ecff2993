"""The command line: ``python -m skinlesion_utils <command>`` (also installed as ``skinlesion``).

Commands (each calls the package's API; ``--help`` on any of them lists its options):

* ``data``      list, locate, fetch or verify the datasets (chapter 00)
* ``audit``     near-duplicate pairs within or across image folders (chapter 01)
* ``train``     train a model, writing ``results.json`` and ``last.pt`` (chapter 04)
* ``evaluate``  metrics of a checkpoint on any ``{benign,malignant}/*`` folder (chapters 05, 08)
* ``bench``     training throughput and the input pipeline against a naive decode (chapter 04)
* ``cam-score`` Grad-CAM localisation score against lesion masks (chapter 07)
"""
from __future__ import annotations

import argparse
import importlib
import sys


def _add_data_parser(sub) -> None:
    p = sub.add_parser("data", help="list, locate, fetch or verify the datasets")
    p.add_argument("action", choices=["list", "locate", "fetch", "verify"])
    p.add_argument("name", nargs="?", help="dataset name (see `data list`)")
    p.set_defaults(func=_run_data)


def _run_data(args) -> int:
    from . import data

    if args.action == "list":
        for spec in data.DATASETS.values():
            print(f"{spec.name:26s} {len(spec.manifest_entries()):5d} files  {spec.description}")
        print(f"\nLayout under ${data.ENV_DATA}: <name>/{{train,test}}/{{benign,malignant}}/*.jpg "
              "(isic_balanced, isic2019_external), <name>/{benign,malignant}/*.jpg (sample), "
              "isic2020_metadata/*.csv")
        return 0
    if not args.name:
        print(f"error: `data {args.action}` needs a dataset name: {', '.join(data.DATASETS)}", file=sys.stderr)
        return 2
    if args.action == "locate":
        print(data.locate(args.name, download=False))
    elif args.action == "fetch":
        print(data.fetch(args.name))
    elif args.action == "verify":
        root = data.locate(args.name, download=False)
        print(f"{data.verify(args.name, root, progress=True)} files verified in {root}")
    return 0


# Sub-commands implemented by other modules: (module, parser-adder name). Each module exports
# ``add_<name>_parser(subparsers)`` which sets ``func`` on its parser.
PLUGGED = [
    ("audit", "add_audit_parser"),
    ("cli_train", "add_train_parser"),
    ("cli_train", "add_evaluate_parser"),
    ("cli_train", "add_bench_parser"),
    ("cam", "add_cam_score_parser"),
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m skinlesion_utils", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    _add_data_parser(sub)
    for module, adder in PLUGGED:
        mod = importlib.import_module(f".{module}", __package__)
        getattr(mod, adder)(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from .data import DataError

    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except DataError as exc:  # errors for people: one message, no traceback
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
