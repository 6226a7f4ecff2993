"""The fixed chapter header and footer every chapter shares (defined in chapter 00).

``start_chapter("04_training")`` seeds everything and prints what the page runs under: the
profile and why it was chosen, the device (the GPU's name), the precision the training will use
(``train.resolve_amp``), where the data, the results and the caches are, and the chapter's time
— the ``ci`` time measured at its last execution and the ``full`` time on a Colab T4 estimated
from its GPU work. It says how to switch Colab to a GPU runtime when the ``full`` profile finds
none, and how to get the quick ``ci`` profile when a GPU chose ``full``.

On Colab with Google Drive mounted (``/content/drive/MyDrive``) the caches (downloads, decoded
images, trained runs) and the results go to Drive, so a disconnect loses at most one epoch and
nothing written is lost with the VM; ``SKINLESION_DRIVE=0`` keeps both on the VM
(:func:`use_drive`). An explicit ``SKINLESION_CACHE`` / ``SKINLESION_RESULTS`` always wins.

Time estimates: :func:`chapter_workload` lists each chapter's GPU work under the ``full``
profile — its training runs (the configs the chapter trains: ``runs.main_config``,
``runs.baseline_config``, ``runs.ablation_config``, so epochs and images come from the profile)
and its evaluation passes — and :func:`estimated_minutes` turns it into minutes with the one
formula, :func:`skinlesion_utils.profiles.t4_minutes`. The lab guide's table of estimates
(:func:`time_table`, written into ``book/lab/objectives.md`` by ``skinlesion book times``) comes
from the same function. ``ChapterContext.footer()`` prints how long the page took and writes it
to ``<results>/<profile>/<chapter>/timing.json``, which the next header reads.
"""
from __future__ import annotations

import functools
import math
import os
import platform
import time
import warnings
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import torch

from . import runs
from .data import get_spec, split_files
from .fusion import FUSIONS
from .models import BASELINES
from .profiles import ENV_CACHE, ENV_PROFILE, Profile, profile, profile_choice, resolve_device, t4_minutes
from .results import ENV_RESULTS, book_root, read_results, results_dir, write_results
from .train import precision_name, resolve_amp, seed_everything

COLAB_DRIVE = Path("/content/drive/MyDrive")
#: ``SKINLESION_DRIVE=0`` keeps caches and results on the Colab VM even when Drive is mounted.
ENV_DRIVE = "SKINLESION_DRIVE"
DRIVE_FOLDERS = {ENV_CACHE: "skinlesion-cache", ENV_RESULTS: "skinlesion-results"}
TIMING = "timing"  # <results>/<profile>/<chapter>/timing.json, written by the footer


def in_colab() -> bool:
    """True inside a Google Colab runtime."""
    return "COLAB_RELEASE_TAG" in os.environ or "COLAB_GPU" in os.environ


def use_drive(drive: Path | None = None) -> bool:
    """On Colab with Drive mounted, point ``SKINLESION_CACHE`` and ``SKINLESION_RESULTS`` at
    folders on Drive (``skinlesion-cache``, ``skinlesion-results``) unless they are set already.

    ``SKINLESION_DRIVE=0`` turns this off (and undoes what an earlier header of the same session
    set). Returns whether caches and results are on Drive.
    """
    drive = Path(drive or COLAB_DRIVE)
    targets = {env: str(drive / folder) for env, folder in DRIVE_FOLDERS.items()}
    if os.environ.get(ENV_DRIVE, "").strip() == "0":
        for env, target in targets.items():
            if os.environ.get(env) == target:
                del os.environ[env]
        return False
    if not (in_colab() and drive.is_dir()):
        return False
    for env, target in targets.items():
        os.environ.setdefault(env, target)
    return all(os.environ[env] == target for env, target in targets.items())


def display_path(path: str | os.PathLike) -> str:
    """``path`` as the header prints it, without this machine's layout: ``(book)/results/ci``
    inside the book, ``(Drive)/…`` on Google Drive, ``~/…`` under the home folder."""
    path = Path(path).expanduser().absolute()
    book = book_root()
    bases = [("(book)", book), ("(book)/..", book.parent if book else None), ("(Drive)", COLAB_DRIVE),
             ("~", Path.home())]
    for label, base in bases:
        if base is not None and path.is_relative_to(base):
            rel = path.relative_to(base).as_posix()
            return label if rel == "." else f"{label}/{rel}"
    return str(path)


# ------------------------------------------------------------------------ time estimates

#: What a chapter's T4 estimate leaves out (work that is not a pass of images through a model).
NOT_COUNTED = {
    "00_setup_and_data": "the one-time data download and decoding the images",
    "01_dataset": "hashing the images on the CPU (the full external set at its original size)",
    "03_asff_derivation": "the one-time download of the ImageNet weights",
    "04_training": "installing, decoding the images once and downloading the ImageNet weights",
    "07_gradcam": "ROAD's imputation, which runs on the CPU",
    "08_external_validation": "the one-time download of the full external set and decoding it",
}


@functools.lru_cache(maxsize=None)
def _images(dataset: str, split: str | None = None) -> int:
    """Images of a dataset (split), counted from its shipped manifest (no data needed)."""
    return len(split_files(get_spec(dataset), split))


def _run_work(cfg: "runs.RunConfig") -> list[tuple[str, int, str]]:
    """A training run's passes: its epochs over the training part, a validation pass per epoch
    and the test set once (the validation part is carved as ``splits.train_val_split`` does)."""
    n = len(cfg.train_subset) if cfg.train_subset is not None else _images(cfg.dataset, "train")
    n_val = math.ceil(n * cfg.val_fraction)
    return [(cfg.model, (n - n_val) * cfg.epochs, "train"),
            (cfg.model, n_val * cfg.epochs + _images(cfg.dataset, "test"), "eval")]


def _evaluation(cfg: "runs.RunConfig") -> list[tuple[str, int, str]]:
    """Predictions of a trained run on its validation and test images."""
    n = len(cfg.train_subset) if cfg.train_subset is not None else _images(cfg.dataset, "train")
    return [(cfg.model, math.ceil(n * cfg.val_fraction) + _images(cfg.dataset, "test"), "eval")]


def _pair(P: Profile) -> list["runs.RunConfig"]:
    """The like-for-like ResNet-50 / ASFF pair of chapters 07 and 08 (chapter 06's first seed)."""
    return [runs.ablation_config(f, P.seeds[0], profile=P) for f in ("none", "asff_text")]


#: Each chapter's GPU work as ``(model, images, "train"|"eval")`` passes, from its profile.
WORKLOADS = {
    "00_setup_and_data": lambda P: [],
    "01_dataset": lambda P: [],
    "02_baselines": lambda P: [w for m in BASELINES for w in _run_work(runs.baseline_config(m, P))],
    "03_asff_derivation": lambda P: [],
    "04_training": lambda P: _run_work(runs.main_config(P)),
    "05_evaluation": lambda P: _evaluation(runs.main_config(P)),
    "06_ablation": lambda P: [w for s in P.seeds for f in FUSIONS for w in _run_work(runs.ablation_config(f, s, profile=P))],
    # Grad-CAM maps of every test image, with the trained and with randomised weights
    "07_gradcam": lambda P: [(c.model, 2 * _images(c.dataset, "test"), "gradcam") for c in _pair(P)]
                            + [w for c in _pair(P) for w in _evaluation(c)],
    "08_external_validation": lambda P: [(c.model, _images("isic2019_external"), "eval")
                                         for c in [runs.main_config(P), *_pair(P)]],
    "09_reproduction_audit": lambda P: [],
}


def chapter_workload(chapter: str, prof: Profile | None = None) -> list[tuple[str, int, str]]:
    """The GPU work of ``chapter`` under ``prof`` (default: the ``full`` profile)."""
    if chapter not in WORKLOADS:
        raise KeyError(f"no workload for chapter {chapter!r}. Fix: add it to chapter.WORKLOADS.")
    return WORKLOADS[chapter](prof or profile("full"))


def estimated_minutes(chapter: str) -> float:
    """Estimated minutes of ``chapter``'s GPU work on a Colab T4 under the ``full`` profile:
    images × epochs ÷ ``profiles.T4_THROUGHPUT`` (:func:`skinlesion_utils.profiles.t4_minutes`)."""
    return t4_minutes(chapter_workload(chapter))


def format_minutes(minutes: float | None) -> str:
    """``"< 1 min"``, ``"~4 min"``, ``"~35 min"`` (≥ 10 min: to the nearest 5), ``"not measured yet"``."""
    if minutes is None:
        return "not measured yet"
    if minutes < 1:
        return "< 1 min"
    return f"~{minutes:.0f} min" if minutes < 10 else f"~{5 * round(minutes / 5)} min"


def describe_workload(work) -> str:
    """One line: the passes and images the estimate counts, e.g. ``"11 trainings (246,510
    images in training steps) + 50,820 images evaluated"``."""
    if not work:
        return "no GPU work"
    n_train = sum(1 for _, _, kind in work if kind == "train")
    trained = sum(n for _, n, kind in work if kind == "train")
    maps = sum(n for _, n, kind in work if kind == "gradcam")
    evaluated = sum(n for _, n, kind in work if kind == "eval")
    parts = [f"{n_train} training{'s' if n_train != 1 else ''} ({trained:,} images in training steps)" if n_train else "",
             f"{maps:,} Grad-CAM maps" if maps else "", f"{evaluated:,} images evaluated" if evaluated else ""]
    return " + ".join(p for p in parts if p)


def read_timing(chapter: str, profile_name: str) -> dict | None:
    """The ``timing.json`` the footer wrote for ``chapter`` under ``profile_name``, or ``None``."""
    try:
        return read_results(chapter, TIMING, profile=profile_name)
    except FileNotFoundError:
        return None


def time_line(chapter: str) -> str:
    """The header's time line: the measured ``ci`` time, the T4 estimate (and a measured
    ``full`` time, when a GPU run of the chapter wrote one)."""
    ci = read_timing(chapter, "ci")
    ci_part = (f"{format_minutes(ci['minutes'])} CPU (ci, measured at the last execution, {ci['date'][:10]})"
               if ci else "CPU (ci): not measured yet")
    if chapter in WORKLOADS:
        work = chapter_workload(chapter)
        skipped = f"; not counted: {NOT_COUNTED[chapter]}" if chapter in NOT_COUNTED else ""
        t4 = (f"{format_minutes(t4_minutes(work))} on a Colab T4 (full, estimate: {describe_workload(work)} "
              f"÷ profiles.T4_THROUGHPUT{skipped})")
    else:
        t4 = "Colab T4 (full): no estimate (not a chapter of the book)"
    full = read_timing(chapter, "full")
    measured = f" · measured full: {format_minutes(full['minutes'])} on {full['device']} ({full['date'][:10]})" if full else ""
    return f"time: {ci_part} · {t4}{measured}"


def time_table(chapters) -> str:
    """The lab guide's Markdown table of T4 estimates, one row per chapter stem (book/lab/objectives.md)."""
    lines = ["| chapter | `full` on a Colab T4 (estimate) | GPU work counted | not counted |", "|---|---|---|---|"]
    for stem in chapters:
        work = chapter_workload(stem)
        lines.append(f"| {stem[:2]} | {format_minutes(estimated_minutes(stem))} | {describe_workload(work)} | "
                     f"{NOT_COUNTED.get(stem, '—')} |")
    return "\n".join(lines)


# ------------------------------------------------------------------------------ the header


@dataclass
class ChapterContext:
    """What a chapter needs from its header: ``profile``, ``device``, timing."""

    name: str
    profile: Profile
    device: "torch.device"  # noqa: F821
    started: float = field(default_factory=time.time)

    def elapsed_minutes(self) -> float:
        return (time.time() - self.started) / 60

    def footer(self) -> str:
        """One line for the end of the page (profile, device, date, run time); the run time is
        written to ``<results>/<profile>/<chapter>/timing.json`` for the next header."""
        now = datetime.now(timezone.utc)
        minutes = self.elapsed_minutes()
        where = device_label(self.device)
        line = (f"Outputs on this page: profile '{self.profile.name}', device {self.device.type} "
                f"({where}), run {now.strftime('%Y-%m-%d %H:%M UTC')}, took {minutes:.1f} min.")
        write_results(self.name, {TIMING: {"chapter": self.name, "profile": self.profile.name, "minutes": minutes,
                                           "device": where, "date": now.isoformat(timespec="seconds")}},
                      profile=self.profile)
        print(line)
        return line


def device_label(device: "torch.device") -> str:  # noqa: F821
    """The GPU's name and compute capability, or the CPU thread count."""
    if device.type == "cuda":
        major, minor = torch.cuda.get_device_capability(device)
        return f"{torch.cuda.get_device_name(device)}, compute capability {major}.{minor}"
    return f"{torch.get_num_threads()} CPU threads" if device.type == "cpu" else device.type


def _advice(prof: Profile, why: str, device, drive: bool) -> list[str]:
    """The header's warnings and hints: profile against hardware, and where Colab keeps files."""
    out = []
    if prof.name == "full" and device.type == "cpu":
        out.append("⚠ No GPU found, but the 'full' profile expects one. On Colab: Runtime → Change runtime "
                   "type → T4 GPU, then Runtime → Restart. Or run the quick CPU profile: "
                   f"os.environ['{ENV_PROFILE}'] = 'ci' before this cell.")
    elif prof.name == "full" and "not set" in why:
        out.append(f"▶ A GPU is present and {ENV_PROFILE} is not set, so this page runs the 'full' profile "
                   f"(224 px, ImageNet weights; see the time line). For the quick CPU profile instead: "
                   f"os.environ['{ENV_PROFILE}'] = 'ci' in a cell above, then run this cell again.")
    elif prof.name == "ci" and torch.cuda.is_available():
        out.append(f"A GPU is available: set {ENV_PROFILE}=full for the 224-px, ImageNet-weights runs.")
    if in_colab() and drive:
        out.append(f"Caches and results are kept on Google Drive ({ENV_DRIVE}=0 keeps them on this VM).")
    elif in_colab() and os.environ.get(ENV_DRIVE, "").strip() != "0" and not COLAB_DRIVE.is_dir():
        out.append("⚠ Google Drive is not mounted: caches and results are on this VM's disk and are lost with "
                   "the session. To keep them: from google.colab import drive; drive.mount('/content/drive'), "
                   "then run this cell again.")
    return out


def start_chapter(name: str, seed: int = 0) -> ChapterContext:
    """Header of every chapter: seed, place caches and results, report what the page runs under.

    Args:
        name: chapter file stem, e.g. ``"00_setup_and_data"``.
        seed: global seed (each experiment also passes its own seed explicitly).
    """
    # Without ipywidgets, tqdm.auto warns once (with this machine's site-packages path) and falls
    # back to text bars: the warning is noise on every page and breaks outputs that nbval checks.
    warnings.filterwarnings("ignore", message="IProgress not found")
    drive = use_drive()
    prof = profile()
    why = profile_choice()[1]
    device = resolve_device(prof.device)
    seed_everything(seed, deterministic=device.type == "cpu")
    precision = precision_name(resolve_amp("auto", device))
    data_env = os.environ.get("SKINLESION_DATA")
    data = display_path(data_env) if data_env else f"(not set: datasets are downloaded to {display_path(prof.cache_dir / 'data')})"
    print(f"chapter {name} · profile '{prof.name}' ({why}) · device {device} ({device_label(device)}) · "
          f"precision {precision} · torch {torch.__version__} · python {platform.python_version()}")
    print(f"data: {data}")
    print(f"results: {display_path(results_dir(name, prof))} · cache: {display_path(prof.cache_dir)}")
    print(time_line(name))
    for line in _advice(prof, why, device, drive):
        print(line)
    return ChapterContext(name=name, profile=prof, device=device)
