"""The command line: ``skinlesion <command>`` or ``python -m skinlesion_utils <command>``.

Every sub-command is defined here and calls the package's API (``--help`` on any lists its
options):

* ``data``       list, locate, fetch or verify the datasets (chapter 00)
* ``audit``      near-duplicate pairs within or across image folders (chapter 01)
* ``train``      train a model, writing ``results.json`` and ``last.pt`` (chapter 04)
* ``evaluate``   metrics of a checkpoint on any ``{benign,malignant}/*`` folder (chapters 05, 08)
* ``bench``      training throughput and the input pipeline against a naive decode (chapter 04)
* ``gpu-bench``  the GPU benchmark and reference pair (``make gpu-data`` / ``make gpu-bench``)
* ``cam-score``  Grad-CAM localisation score against lesion masks (chapter 07)
* ``lab``        the course lab: check the exercise format, build the otter-grader
                 assignments (``make lab``), grade a class's notebooks
* ``book``       the book's pairs of chapter sources and notebooks: check, badges, execute;
                 ``book times`` rewrites the lab guide's table of T4 time estimates

Errors for people: every argument is checked before any work (ranges, choices, paths: an
output must not be a folder, must be writable and must not lie in the data folder), and every
anticipated error (:class:`skinlesion_utils.errors.SkinlesionError`: data, checkpoints, run
folders, settings) prints one line ``error: what is wrong. Fix: …`` on stderr and exits with
status 2; ``--debug`` shows its traceback. Any other exception is a bug: its traceback is
printed (please report it).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import warnings
from pathlib import Path

from PIL import Image

from . import __version__, audit, bench, book_tools, cam, data, evaluate, localisation, results
from .chapter import display_path
from .errors import ConfigError, SkinlesionError, first_line
from .fusion import FUSIONS
from .lab import assignments, check_exercises
from .models import list_models
from .profiles import profile, resolve_device
from .runs import RunConfig, train_into
from .train import RECIPES, get_recipe

PROG = "skinlesion"


# ------------------------------------------------------------------ argument checks (types)
# Each raises argparse.ArgumentTypeError, which the parser prints as one line (exit 2).


def _number(text: str, convert, ok, wrong: str):
    """``convert(text)`` if ``ok`` of it, else one ``ArgumentTypeError``: ``'<text>' <wrong>``."""
    try:
        value = convert(text)
    except ValueError:
        value = None
    if value is None or not ok(value):
        raise argparse.ArgumentTypeError(f"{text!r} {wrong}")
    return value


def positive_int(text: str) -> int:
    """A whole number >= 1 (epochs, batch sizes, image sizes, steps, limits)."""
    return _number(text, int, lambda v: v >= 1, "is not a whole number >= 1. Fix: pass 1 or more")


def non_negative_int(text: str) -> int:
    """A whole number >= 0 (thresholds in bits, fixed epochs where 0 means "derive")."""
    return _number(text, int, lambda v: v >= 0, "is not a whole number >= 0. Fix: pass 0 or more")


def positive_float(text: str) -> float:
    """A number > 0 (minutes, seconds)."""
    return _number(text, float, lambda v: 0 < v < float("inf"), "is not a number > 0. Fix: pass a positive number")


def probability(text: str) -> float:
    """A number in [0, 1] (a decision threshold on P(malignant))."""
    return _number(text, float, lambda v: 0.0 <= v <= 1.0, "is not a probability in [0, 1]. Fix: e.g. 0.5")


def model_name(text: str) -> str:
    """A name of ``models.list_models()``."""
    if text not in list_models():
        raise argparse.ArgumentTypeError(f"unknown model {text!r}; valid: {', '.join(list_models())}")
    return text


def fusion_name(text: str) -> str:
    """A name of ``fusion.FUSIONS``."""
    if text not in FUSIONS:
        raise argparse.ArgumentTypeError(f"unknown fusion {text!r}; valid: {', '.join(FUSIONS)}")
    return text


def existing_dir(text: str) -> Path:
    """A folder that exists."""
    path = Path(text)
    if not path.is_dir():
        what = "is a file, not a folder" if path.exists() else "does not exist"
        raise argparse.ArgumentTypeError(f"{path} {what}. Fix: pass an existing folder")
    return path


def existing_file(text: str) -> Path:
    """A file that exists."""
    path = Path(text)
    if not path.is_file():
        what = "is a folder, not a file" if path.is_dir() else "does not exist"
        raise argparse.ArgumentTypeError(f"{path} {what}. Fix: pass the path of an existing file")
    return path


def _check_writable(path: Path) -> None:
    """``path`` can be created: its nearest existing ancestor is a writable folder, and it is not
    inside the data folder ($SKINLESION_DATA is only ever read)."""
    ancestor = path.absolute() if path.is_dir() else path.absolute().parent  # a file is rewritten in place
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise argparse.ArgumentTypeError(f"{path}: {ancestor} is a file, so nothing can be written below it. "
                                         "Fix: choose another path")
    try:  # a real probe (os.access says yes to root even on a read-only mount); gone on close
        with tempfile.TemporaryFile(dir=ancestor):
            writable = True
    except OSError:
        writable = False
    if not writable:
        raise argparse.ArgumentTypeError(f"{path}: the folder {ancestor} is not writable. Fix: choose a path you can "
                                         "write (e.g. under your home folder)")
    data_root = os.environ.get(data.ENV_DATA)
    if data.inside_data_folder(path):
        raise argparse.ArgumentTypeError(f"{path} is inside the data folder {data_root} (${data.ENV_DATA}), which is "
                                         "never written. Fix: write results elsewhere")


def output_file(text: str) -> Path:
    """A file to (re)write: not a folder, in a writable place outside the data folder."""
    path = Path(text)
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{path} is a folder. Fix: pass a file name (e.g. {path / 'out.json'})")
    _check_writable(path)
    return path


def output_dir(text: str) -> Path:
    """A folder to create or fill: not a file, in a writable place outside the data folder."""
    path = Path(text)
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{path} is a file. Fix: pass a folder path (new, or a run folder)")
    _check_writable(path)
    return path


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: ``error: skinlesion train: argument --epochs: … Fix: …``."""

    def error(self, message: str):
        fix = "" if "Fix:" in message else f". Fix: see `{self.prog} --help`"
        self.exit(2, f"error: {self.prog}: {message}{fix}\n")


# ------------------------------------------------------------------------------------ data


def _add_data(sub) -> None:
    p = sub.add_parser("data", help="list, locate, fetch or verify the datasets")
    p.add_argument("action", choices=["list", "locate", "fetch", "verify"])
    p.add_argument("name", nargs="?", help="dataset name (see `data list`)")
    p.set_defaults(func=_run_data)


def _run_data(args) -> int:
    if args.action == "list":
        for spec in data.DATASETS.values():
            print(f"{spec.name:26s} {len(spec.manifest_entries()):5d} files  {spec.description}")
        print(f"\nLayout under ${data.ENV_DATA}: <name>/{{train,test}}/{{benign,malignant}}/*.jpg "
              "(isic_balanced, isic2019_external), <name>/{benign,malignant}/*.jpg (sample), "
              "isic2020_metadata/*.csv")
        return 0
    if not args.name:
        print(f"error: `data {args.action}` needs a dataset name. Fix: add one of {', '.join(data.DATASETS)}",
              file=sys.stderr)
        return 2
    if args.action == "locate":
        print(data.locate(args.name, download=False))
    elif args.action == "fetch":
        print(data.fetch(args.name))
    elif args.action == "verify":
        root = data.locate(args.name, download=False)
        print(f"{data.verify(args.name, root, progress=True)} files verified in {root}")
    return 0


# ----------------------------------------------------------------------------------- audit


def _add_audit(sub) -> None:
    p = sub.add_parser(
        "audit",
        help="find near-duplicate images (perceptual hashes) within a folder or across two",
        description=(
            "Write one CSV row per near-duplicate pair (file_a, file_b, distance, method). "
            "With --b, pairs across the two folders; without, pairs within --a. "
            "Folders are searched recursively; nothing is written next to the images."
        ),
    )
    p.add_argument("--a", required=True, type=existing_dir, metavar="FOLDER", help="folder of images")
    p.add_argument("--b", type=existing_dir, metavar="FOLDER", help="second folder: report only pairs across --a and --b")
    p.add_argument(
        "--threshold", type=non_negative_int, default=None,
        help=f"largest Hamming distance in bits (default {audit.DEFAULT_THRESHOLD} of 128 for phash+dhash)",
    )
    p.add_argument("--method", choices=audit.HASH_METHODS, default=audit.DEFAULT_METHOD, help="perceptual hash")
    p.add_argument("--out", required=True, type=output_file, metavar="CSV", help="output CSV file (written atomically)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_run_audit)


def _run_audit(args) -> int:
    pairs = audit.find_near_duplicates(args.a, args.b, threshold=args.threshold, method=args.method,
                                       progress=not args.quiet)
    out = results.write_csv(args.out, pairs)
    where = f"{args.a} ↔ {args.b}" if args.b else f"within {args.a}"
    exact = int((pairs["distance"] == 0).sum())
    print(f"{len(pairs)} near-duplicate pair(s) {where} ({exact} at distance 0) -> {out}")
    return 0


# ------------------------------------------------------------------------- train, evaluate


def _add_train(sub) -> None:
    p = sub.add_parser("train", help="train a model; writes DIR/results.json and DIR/last.pt")
    p.add_argument("--model", required=True, type=model_name, help="a name of models.list_models()")
    p.add_argument("--fusion", default=None, type=fusion_name, help=f"asff_resnet50 only: {', '.join(FUSIONS)}")
    p.add_argument("--profile", default=None, choices=["ci", "full"], help="default: $SKINLESION_PROFILE or ci")
    p.add_argument("--recipe", default=None, choices=list(RECIPES), help="default: the profile's")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--epochs", type=positive_int, default=None, help="default: the profile's (the paper recipe: 500)")
    p.add_argument("--image-size", type=positive_int, default=None)
    p.add_argument("--batch-size", type=positive_int, default=None)
    p.add_argument("--pretrained", action=argparse.BooleanOptionalAction, default=None,
                   help="ImageNet weights (needs the internet once)")
    p.add_argument("--out", required=True, type=output_dir, help="run folder (one writer at a time)")
    p.add_argument("--resume", action="store_true", help="continue from DIR/last.pt")
    p.set_defaults(func=_run_train)


def _run_train(args) -> int:
    if args.fusion and args.model != "asff_resnet50":
        print(f"error: --fusion {args.fusion}: {args.model} has no fusion. Fix: drop --fusion, or use "
              "--model asff_resnet50", file=sys.stderr)
        return 2
    prof = profile(args.profile)
    overrides = {k: v for k, v in dict(recipe=args.recipe, seed=args.seed, epochs=args.epochs, image_size=args.image_size,
                                       batch_size=args.batch_size, pretrained=args.pretrained).items() if v is not None}
    if args.recipe == "paper" and args.epochs is None:
        overrides["epochs"] = get_recipe("paper").epochs
    kwargs = {"fusion": args.fusion} if args.fusion else {}
    config = RunConfig.from_profile(args.model, kwargs, profile=prof, **overrides)
    run = train_into(config, args.out, resume=args.resume)
    m = run.metrics
    print(f"{config.model} {kwargs or ''} → {args.out}: test accuracy {m['accuracy']:.4f}, ROC AUC {m['roc_auc']:.4f}")
    return 0


def _add_evaluate(sub) -> None:
    p = sub.add_parser("evaluate", help="metrics of a checkpoint on any {benign,malignant}/* folder")
    p.add_argument("--checkpoint", required=True, type=existing_file)
    p.add_argument("--data", required=True, type=existing_dir, help="folder with benign/ and malignant/ sub-folders")
    p.add_argument("--out", required=True, type=output_file, help="JSON file to write")
    p.add_argument("--image-size", type=positive_int, default=None, help="default: the checkpoint's training size")
    p.add_argument("--resize", default="squash", choices=list(data.RESIZE_METHODS))
    p.add_argument("--threshold", type=probability, default=0.5, help="P(malignant) at or above which: malignant")
    p.set_defaults(func=_run_evaluate)


def _run_evaluate(args) -> int:
    ev = evaluate.evaluate_folder(args.checkpoint, args.data, image_size=args.image_size, resize=args.resize,
                                  threshold=args.threshold)
    results.write_json(args.out, ev.to_json(), default=str)
    r = ev.report
    print(f"{args.data}: n={r['n']} accuracy {r['accuracy']:.4f} sensitivity {r['recall']:.4f} "
          f"specificity {r['specificity']:.4f} ROC AUC {r['roc_auc']:.4f} → {args.out}")
    return 0


# ---------------------------------------------------------------------------- benchmarks


def _add_bench(sub) -> None:
    p = sub.add_parser("bench", help="training throughput and the input pipeline against a naive decode")
    p.add_argument("--models", nargs="+", type=model_name, default=["resnet50", "asff_resnet50"])
    p.add_argument("--image-size", type=positive_int, default=224)
    p.add_argument("--batch-size", type=positive_int, default=32)
    p.add_argument("--modes", nargs="+", choices=bench.MODES, default=None,
                   help="default: fp32 and the precision this device trains in (bench.modes_for)")
    p.add_argument("--steps", type=positive_int, default=5)
    p.add_argument("--pipeline", action="store_true", help="also compare the input pipeline (one epoch each way)")
    p.add_argument("--pipeline-images", type=positive_int, default=None, help="limit the pipeline comparison to N images")
    p.add_argument("--out", type=output_file, default=None, help="JSON file to write")
    p.set_defaults(func=_run_bench)


def _run_bench(args) -> int:
    if args.modes is None:
        args.modes = bench.modes_for(resolve_device("auto"), compile=False)
    rows = []
    for name in args.models:
        for mode in args.modes:
            rows.append(bench.training_throughput(name, args.image_size, args.batch_size, mode, steps=args.steps).as_row())
    print(bench.format_table(rows, ["model", "image_size", "mode", "batch_size", "images_per_second", "device"]))
    if len(args.models) >= 2:
        by = {(r["model"], r["mode"]): r["images_per_second"] for r in rows}
        for mode in args.modes:
            a, b = by.get((args.models[1], mode)), by.get((args.models[0], mode))
            if a and b:
                print(f"throughput ratio {args.models[1]} / {args.models[0]} ({mode}): {a / b:.3f}")
    result = {"throughput": rows}
    if args.pipeline:
        pc = bench.pipeline_comparison(resolution=args.image_size, max_images=args.pipeline_images)
        print(f"input pipeline at {pc['resolution']} px, {pc['images']} images: naive per-epoch decode "
              f"{pc['naive_seconds']:.2f} s/epoch, tensor store {pc['store_seconds']:.3f} s/epoch "
              f"(one-time decode {pc['decode_once_seconds']:.2f} s) → ratio {pc['ratio']:.0f}×")
        result["pipeline"] = pc
    if args.out:
        results.write_json(args.out, result, default=str)
    return 0


def _add_gpu_bench(sub) -> None:
    p = sub.add_parser("gpu-bench", help="GPU throughput by precision and the reference pair (ResNet-50, ASFF)",
                       description=bench.GPU_BENCH_DESCRIPTION)
    p.add_argument("--data", type=Path, default=Path(".gpu/isic_balanced_224.pt"), help="file from `make gpu-data`")
    p.add_argument("--out", type=output_dir, default=None,
                   help="results folder (default: <results root>/full/gpu-bench; honours $SKINLESION_RESULTS)")
    p.add_argument("--work", type=output_dir, default=Path(".cache/gpu-bench-runs"), help="checkpoints (large; not results)")
    p.add_argument("--pack", action="store_true", help="build --data from the local datasets and exit")
    p.add_argument("--batch-size", type=positive_int, default=64)
    p.add_argument("--steps", type=positive_int, default=20, help="timed steps per throughput measurement")
    p.add_argument("--warmup", type=non_negative_int, default=3)
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--compile-timeout", type=positive_float, default=120)
    p.add_argument("--budget-minutes", type=positive_float, default=7.0, help="time for the two reference trainings together")
    p.add_argument("--max-epochs", type=positive_int, default=40)
    p.add_argument("--epochs", type=non_negative_int, default=0, help="fix the epochs instead of deriving them (0: derive)")
    p.add_argument("--tiny", action="store_true", help="CPU self-test: 48 train / 16 test images at --image-size")
    p.add_argument("--image-size", type=positive_int, default=32, help="with --tiny only")
    p.set_defaults(func=_run_gpu_bench)


def _run_gpu_bench(args) -> int:
    if args.pack:
        print(json.dumps(bench.pack_gpu_data(args.data), indent=2))
        return 0
    if not args.data.exists():
        print(f"error: {args.data} not found. Fix: run `make gpu-data` first (needs SKINLESION_DATA).", file=sys.stderr)
        return 2
    bench.run_gpu_benchmark(args)
    return 0


# ------------------------------------------------------------------------------ Grad-CAM


def _add_cam_score(sub) -> None:
    p = sub.add_parser(
        "cam-score",
        help="Grad-CAM localisation score of a checkpoint against lesion masks",
        description="Grad-CAM maps of a checkpoint on a folder of images, scored against lesion "
        "masks: energy inside the mask and pointing game, per image and on average. Without "
        "--masks, APPROXIMATE masks from classical segmentation are used (labelled so).",
    )
    p.add_argument("--checkpoint", required=True, type=existing_file, help="last.pt / best.pt written by fit")
    p.add_argument("--images", required=True, type=existing_dir, help="{benign,malignant}/* folder or a flat folder of images")
    p.add_argument("--masks", type=existing_dir, default=None, help="folder of binary masks matched by file stem")
    p.add_argument("--out", required=True, type=output_file, help="JSON file to write (atomically)")
    p.add_argument("--image-size", type=positive_int, default=None, help="default: the checkpoint's training size")
    p.add_argument("--method", default="gradcam", choices=cam.METHODS)
    p.add_argument("--layer", default=None, help="dotted target layer name (default: per architecture)")
    p.add_argument("--batch-size", type=positive_int, default=32)
    p.add_argument("--limit", type=positive_int, default=None, help="score only the first N images")
    p.add_argument("--faithfulness", action="store_true", help="add ROAD and confidence change (slow: seconds per image at 128 px)")
    p.add_argument("--device", default="auto")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_run_cam_score)


def _run_cam_score(args) -> int:
    result = localisation.cam_score(
        args.checkpoint, args.images, args.masks, image_size=args.image_size, method=args.method,
        layer=args.layer, batch_size=args.batch_size, limit=args.limit,
        with_faithfulness=args.faithfulness, device=args.device, seed=args.seed,
    )
    localisation.write_score(result, args.out)
    s = result["summary"]
    e, pg = s["energy_inside"], s["pointing_game"]
    print(f"{s['n_images']} images, {result['mask_kind']} masks, {result['method']} at "
          f"{result['target_layer']} ({result['cam_map_size'][0]}×{result['cam_map_size'][1]} map at "
          f"{result['image_size']} px)")
    print(f"energy inside mask {e['mean']:.3f} [{e['ci_low']:.3f}, {e['ci_high']:.3f}]  "
          f"pointing game {pg['mean']:.3f} [{pg['ci_low']:.3f}, {pg['ci_high']:.3f}]  "
          f"chance {s['chance']:.3f}")
    print(f"wrote {args.out}")
    return 0


# ------------------------------------------------------------------------------- the lab


def _add_lab(sub) -> None:
    p = sub.add_parser("lab", help="course lab: check the exercise format, build the otter-grader assignments, grade")
    lab_sub = p.add_subparsers(dest="lab_command", required=True)
    ck = lab_sub.add_parser("check", help="check the exercise format of every chapter")
    ck.add_argument("chapters", nargs="*", type=existing_file)
    ck.set_defaults(func=_run_lab_check)
    asg = lab_sub.add_parser("assign", help="build one otter-grader assignment per chapter (student, autograder, solutions)")
    asg.add_argument("--out", type=output_dir, default=book_tools.ROOT / "dist" / "lab",
                     help="folder of the built assignments (default dist/lab)")
    asg.add_argument("--publish", type=output_dir, default=None,
                     help="also copy the student notebooks here (the book build uses _build/html/lab)")
    asg.set_defaults(func=_run_lab_assign)
    gr = lab_sub.add_parser("grade", help="grade submitted notebooks with otter run (fresh kernel each) and write CSV scores")
    gr.add_argument("chapter", help="the assignment: a chapter number (05) or name (05_evaluation)")
    gr.add_argument("submissions", nargs="+", type=Path, help="the students' .ipynb files, or folders of them")
    gr.add_argument("--out", type=output_dir, required=True, help="folder for scores.csv and scores_by_question.csv")
    gr.add_argument("--built", type=Path, default=book_tools.ROOT / "dist" / "lab",
                    help="folder of the built assignments (default dist/lab)")
    gr.add_argument("--timeout", type=positive_int, default=600, help="seconds per submission (default 600)")
    gr.set_defaults(func=_run_lab_grade)


def _run_lab_check(args) -> int:
    chapters = args.chapters or book_tools.chapter_sources()
    problems = check_exercises(chapters)
    for p in problems:
        print(f"❌ {p}")
    if not problems:
        print(f"✅ exercises of {len(chapters)} chapter(s) follow the lab format")
    return 1 if problems else 0


def _run_lab_assign(args) -> int:
    built = assignments.build_assignments(book_tools.chapter_sources(), args.out)
    for b in built:
        print(f"{b.chapter}: {len(b.points)} questions, {sum(b.points.values())} points · {b.autograder.name}")
    if args.publish:
        for path in assignments.publish_student_notebooks(built, args.publish):
            print(f"published {display_path(path)}")
    print(f"wrote {len(built)} assignments to {display_path(args.out)}")
    return 0


def _run_lab_grade(args) -> int:
    notebooks = []
    for item in args.submissions:
        if item.is_dir():
            notebooks += sorted(p for p in item.glob("*.ipynb") if not p.name.startswith("."))
        elif item.is_file():
            notebooks.append(item)
        else:
            raise ConfigError(f"{item}: no such file or folder. Fix: pass the collected .ipynb files or their folder.")
    assignment = assignments.assignment_dir(args.built, args.chapter)
    table = assignments.grade_submissions(assignment, notebooks, args.out, timeout=args.timeout)
    totals = table.groupby("student")[["points", "possible"]].sum()
    for student, row in totals.iterrows():
        print(f"{student}: {row['points']:g} of {row['possible']:g} points")
    print(f"wrote {display_path(args.out / 'scores.csv')} and scores_by_question.csv")
    return 0


# ------------------------------------------------------------------------------ the book


def _add_book(sub) -> None:
    p = sub.add_parser("book", help="chapter pairs (.py + .ipynb): check, badges, execute")
    book_sub = p.add_subparsers(dest="book_command", required=True)
    book_sub.add_parser("check", help="check chapter pairs, stored outputs and Colab links").set_defaults(
        func=lambda args: 1 if book_tools.check() else 0)
    book_sub.add_parser("badges", help="rewrite Colab badges and install lines from _config.yml").set_defaults(
        func=lambda args: book_tools.fix_badges() or 0)
    book_sub.add_parser("times", help="rewrite the lab guide's table of T4 time estimates").set_defaults(
        func=lambda args: book_tools.write_time_table() or 0)
    ex = book_sub.add_parser("execute", help="execute chapters (ci profile) and store their outputs")
    ex.add_argument("chapters", nargs="*", type=existing_file)
    ex.add_argument("--profile", default="ci", choices=["ci", "full"])
    ex.set_defaults(func=lambda args: book_tools.execute(args.chapters or book_tools.chapter_sources(),
                                                         profile=args.profile) or 0)


# ---------------------------------------------------------------------------- the parser

COMMANDS = (_add_data, _add_audit, _add_train, _add_evaluate, _add_bench, _add_gpu_bench, _add_cam_score,
            _add_lab, _add_book)


def build_parser() -> argparse.ArgumentParser:
    """The ``skinlesion`` parser with every sub-command."""
    parser = _Parser(prog=PROG, description=__doc__.split("\n")[0])
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--debug", action="store_true", help="show the traceback of any error")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in COMMANDS:
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one sub-command; returns the exit status (2 for an error a person can fix)."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # a refused argument (one line printed, 2), --help or --version (0)
        return exc.code if isinstance(exc.code, int) else 2
    # An image over the pixel limit is refused with one line (data.MAX_IMAGE_PIXELS); Pillow's
    # warning about it would be a second one.
    warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
    try:
        return int(args.func(args) or 0)
    except SkinlesionError as exc:  # errors for people: one line, no traceback (any other: a bug)
        if args.debug:
            raise
        print(f"error: {first_line(exc)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
