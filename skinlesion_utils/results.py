"""Where results go and how every file is written (defined in chapter 00, used by every chapter).

* :func:`atomic_open` — the package's one way to write a file: a temporary file in the target's
  folder, flushed and fsynced, then ``os.replace``-d over the target. A reader (or a resumed run)
  sees the old file or the new one, never half of one; a killed writer leaves only a
  ``.<name>.*.tmp`` file, which :func:`sweep_temporaries` removes. :func:`write_bytes`,
  :func:`write_text`, :func:`write_json` and :func:`write_csv` are the usual shapes of it.
* :func:`exclusive_lock` — one writer per run folder: a ``flock`` that dies with its process.
* :func:`results_root` / :func:`results_dir` — the one results root: ``$SKINLESION_RESULTS`` if
  set, else ``results/`` of the book found upwards from the working directory (``_toc.yml``),
  else ``./results``. A chapter's numbers live in ``<root>/<profile>/<chapter>/``.
* :func:`write_results` / :func:`read_results` — a chapter's tables (CSV) and numbers (JSON).
* :func:`git_commit`, :func:`device_name` — provenance written beside results.
* Chapter results with provenance (chapters 02 and 06; read by 09): :func:`save` writes a
  chapter's tables with a ``meta.json`` holding its settings and :func:`provenance` (device,
  date, commit); :func:`read_results` reads them back; :func:`stored` / :func:`other_profiles` list what
  other profiles wrote (a ``full`` file appears only when a real GPU run produced it), named by
  :func:`provenance_line`; :func:`gpu_reference` reads ``full/gpu-bench/reference.json``.
"""
from __future__ import annotations

import contextlib
import json
import os
import platform
import subprocess
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Iterator

import numpy as np

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

from . import __version__
from .errors import ConfigError, FolderInUse
from .profiles import PROFILES, as_profile, profile_name

ENV_RESULTS = "SKINLESION_RESULTS"
TEMP_SUFFIX = ".tmp"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", *, newline: str | None = None) -> Iterator[IO]:
    """Open a temporary file beside ``path`` for writing; on a clean exit it replaces ``path``.

    Args:
        path: the file to (re)write; its parent folder is created.
        mode: ``"w"`` (text, UTF-8) or ``"wb"`` (bytes).
        newline: as :func:`open` (``""`` for the csv module).

    The file gets the usual permissions (``0o666`` less the umask), not ``mkstemp``'s ``0o600``.
    On an exception the temporary file is removed and ``path`` is left as it was.
    """
    if mode not in ("w", "wb"):
        raise ConfigError(f"atomic_open mode must be 'w' or 'wb'; found {mode!r}.")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)
    try:
        text = {} if mode == "wb" else {"encoding": "utf-8", "newline": newline}
        with os.fdopen(fd, mode, **text) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically; returns the path."""
    with atomic_open(path, "wb") as fh:
        fh.write(data)
    return Path(path)


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically; returns the path."""
    with atomic_open(path, "w") as fh:
        fh.write(text)
    return Path(path)


def json_default(obj):
    """``json.dumps`` fallback: numpy arrays → lists, numpy/torch scalars → Python numbers,
    sets → lists, paths → strings; anything else is a ``TypeError`` (never a silent ``str``)."""
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if hasattr(obj, "item"):
        return obj.item()
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def write_json(path: str | os.PathLike, obj, *, indent: int = 1, default=json_default,
               allow_nan: bool = True) -> Path:
    """Write ``obj`` as indented JSON (newline-terminated) atomically; returns the path."""
    return write_text(path, json.dumps(obj, indent=indent, default=default, allow_nan=allow_nan) + "\n")


def write_csv(path: str | os.PathLike, frame, *, index: bool = False) -> Path:
    """Write a ``pandas.DataFrame`` as CSV atomically; returns the path."""
    with atomic_open(path, "w", newline="") as fh:
        frame.to_csv(fh, index=index)
    return Path(path)


@contextlib.contextmanager
def exclusive_lock(path: str | os.PathLike, *, wait: bool = False) -> Iterator[Path]:
    """Hold an exclusive lock on the file ``path`` (``fcntl.flock``) while the block runs.

    With ``wait``, a lock another process holds is waited for (one line on stderr names it)
    instead of refused.

    The lock belongs to this process: it is released when the block ends or the process dies
    (even by SIGKILL), so a stale lock file never blocks anyone. The file holds the holder's
    pid, host and start time, which the refusal names. The file itself stays (deleting a lock
    file races with a process opening it); it is never the thing written, only locked.

    Raises:
        errors.FolderInUse: another live process holds the lock (its pid is in the message).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if fcntl is None:  # not POSIX: no lock (the package's runs are written by one process there)
        yield path
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666 & ~_umask())
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "pid unknown (starting)"
            if not wait:
                raise FolderInUse(
                    f"{path.parent} is being written by another process ({holder}). Fix: wait for it to "
                    f"finish or stop it, or use another folder."
                ) from None
            print(f"waiting for the process writing {path.parent} ({holder})", file=sys.stderr, flush=True)
            fcntl.flock(fd, fcntl.LOCK_EX)
        os.ftruncate(fd, 0)
        stamp = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        os.pwrite(fd, f"pid {os.getpid()} on {platform.node()} since {stamp}\n".encode(), 0)
        yield path
    finally:
        os.close(fd)


def sweep_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Remove the temporary files that killed writers left in ``folder`` (not recursive).

    Only names :func:`atomic_open` makes (``.<name>.<random>.tmp``) whose writer is gone are
    removed: a temporary file younger than a minute may still be written and is kept.
    """
    import time

    folder = Path(folder)
    removed = []
    if not folder.is_dir():
        return removed
    now = time.time()
    for p in folder.glob(f".*{TEMP_SUFFIX}"):
        try:
            if now - p.stat().st_mtime > 60:
                p.unlink()
                removed.append(p)
        except FileNotFoundError:
            pass
    return removed


# ------------------------------------------------------------------------ the results root


def project_root(start: str | os.PathLike | None = None) -> Path | None:
    """The book's root: the nearest folder up from ``start`` (default: the working directory)
    that holds ``_toc.yml``; ``None`` outside a checkout."""
    here = Path(start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "_toc.yml").is_file():
            return folder
    return None


def book_root() -> Path | None:
    """The book the package works in: the one found upwards from the working directory, else
    the checkout the package runs from; ``None`` for a pip-installed package outside a book."""
    return project_root() or project_root(Path(__file__).resolve().parent)


def results_root(root: str | os.PathLike | None = None) -> Path:
    """The one results root.

    Args:
        root: a book root to use instead of the search (its ``results/``).

    Order: ``root/results`` when ``root`` is given; else ``$SKINLESION_RESULTS``; else
    ``results/`` of the book found upwards from the working directory; else that of the
    checkout the package runs from; else ``./results`` (a pip-installed package on Colab).
    """
    if root is not None:
        return Path(root) / "results"
    env = os.environ.get(ENV_RESULTS)
    if env:
        return Path(env).expanduser().resolve()
    book = book_root()
    return (book if book is not None else Path.cwd()) / "results"


def results_dir(chapter: str, profile=None, root: str | os.PathLike | None = None) -> Path:
    """``<results_root()>/<profile name>/<chapter>`` — where a chapter's numbers go (not created).

    Args:
        chapter: chapter stem, e.g. ``"05_evaluation"``.
        profile: a profile name or ``Profile`` (default: the active one).
        root: as :func:`results_root`.
    """
    name = profile_name(profile)
    if not chapter or "/" in chapter or not name or "/" in name:
        raise ConfigError(
            f"results_dir({chapter!r}, {name!r}): expected a chapter stem like '01_dataset' and a "
            "profile name like 'ci'."
        )
    return results_root(root) / name / chapter


def write_results(chapter: str, files: dict, profile=None, root: str | os.PathLike | None = None) -> dict[str, Path]:
    """Write a chapter's numbers for later chapters (e.g. chapter 09's audit) and its tables.

    Args:
        chapter: chapter stem, e.g. ``"05_evaluation"``.
        files: ``{name: content}``; a ``pandas.DataFrame`` is written as ``<name>.csv`` (with its
            index), anything else (a dict of numbers and strings) as ``<name>.json``.
        profile, root: as :func:`results_dir`.

    Returns:
        ``{name: path written}``. Floats keep full precision; numpy scalars become plain numbers.
    """
    import pandas as pd

    folder = results_dir(chapter, profile, root)
    written = {}
    for name, content in files.items():
        if isinstance(content, pd.DataFrame):
            written[name] = write_csv(folder / f"{name}.csv", content, index=True)
        else:
            written[name] = write_json(folder / f"{name}.json", content)
    return written


def read_results(chapter: str, name: str, profile=None, root: str | os.PathLike | None = None, *,
                 index: Sequence[str] | None = None, **read_csv):
    """Read back what :func:`write_results` (or :func:`save`) wrote: a DataFrame (``.csv``, first
    column as index) or a dict (``.json``). ``read_csv`` goes to ``pandas.read_csv`` (e.g.
    ``dtype={"printed": str}``).

    Args:
        index: columns to make the index again (a CSV keeps only the first index column as the
            index; pass e.g. ``["fusion", "metric"]`` to restore a two-level index).

    Raises:
        FileNotFoundError: neither file exists; the message names the chapter to run first.
    """
    import pandas as pd

    folder = results_dir(chapter, profile, root)
    if (folder / f"{name}.csv").is_file():
        frame = pd.read_csv(folder / f"{name}.csv", index_col=0, **read_csv)
        return frame if index is None else frame.reset_index().set_index(list(index))
    if (folder / f"{name}.json").is_file():
        return json.loads((folder / f"{name}.json").read_text())
    raise FileNotFoundError(
        f"no results {name!r} of chapter {chapter} in {folder} (looked for {name}.csv and {name}.json). "
        f"Fix: execute chapters/{chapter}.ipynb under this profile first."
    )


# ------------------------------------------------------------------------------ provenance


def git_commit(path: str | os.PathLike | None = None) -> str | None:
    """The checkout's HEAD commit (40 hex), or ``None`` outside a git checkout."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=path or Path(__file__).resolve().parent,
                             capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    commit = out.stdout.strip()
    return commit if out.returncode == 0 and len(commit) == 40 else None


def device_name(device) -> str:
    """A readable name of a torch device: the GPU's model, else the CPU's model name."""
    import torch

    device = str(device)
    if device.startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.get_device_name(torch.device(device))
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


# ------------------------------------------------------------ chapter results with provenance


def provenance() -> dict:
    """Where and when numbers were produced: device name, date (UTC), commit, versions, threads."""
    import torch

    if torch.cuda.is_available():
        device = torch.cuda.get_device_name(0)
        dtype = "cuda"
    else:
        device = f"{device_name('cpu')} ({torch.get_num_threads()} threads)"
        dtype = "cpu"
    return {"device": device, "device_type": dtype,
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "commit": git_commit(), "torch": torch.__version__, "python": platform.python_version(),
            "package_version": __version__}


def save(chapter: str, tables: Mapping, meta: Mapping | None = None, profile=None,
         root: str | os.PathLike | None = None) -> dict[str, Path]:
    """Write a chapter's tables as CSV and one ``meta.json`` with settings + provenance (read them
    back with :func:`read_results`).

    Args:
        chapter: chapter stem (``"02_baselines"``).
        tables: ``{name: DataFrame}`` → ``<results_dir>/<name>.csv`` (with the index).
        meta: extra JSON-ready facts (settings, timings); :func:`provenance` is added as
            ``meta["provenance"]``, the profile name as ``meta["profile"]`` and the table names as
            ``meta["tables"]``.
        profile, root: as :func:`results_dir` (``profile``: a ``Profile`` or a profile name).

    Returns:
        ``{name: path}`` of every file written (``"meta"`` included).
    """
    prof = as_profile(profile)
    m = dict(meta or {})
    m.update(profile=prof.name, provenance=provenance(), tables=sorted(tables))
    files = dict(tables)
    files["meta"] = m
    return write_results(chapter, files, profile=prof, root=root)


def stored(chapter: str, name: str, exclude: str | None = None, root: str | os.PathLike | None = None) -> dict:
    """Every profile's stored copy of a chapter's table, with its meta (provenance).

    Args:
        chapter, name: as :func:`save`.
        exclude: a profile name to leave out (the one the page is running under).
        root: as :func:`results_dir`.

    Returns:
        ``{profile name: (table, meta)}`` (a DataFrame and a dict) for each
        ``<results_root>/<profile>/<chapter>/<name>.csv`` that exists next to a ``meta.json``.
        Nothing is returned for a profile that has no file — a ``full`` table appears only when
        a real GPU run wrote it.
    """
    import pandas as pd

    out = {}
    for pname in PROFILES:
        if pname == exclude:
            continue
        folder = results_dir(chapter, pname, root)
        if (folder / f"{name}.csv").is_file() and (folder / "meta.json").is_file():
            table = pd.read_csv(folder / f"{name}.csv", index_col=0)
            out[pname] = (table, json.loads((folder / "meta.json").read_text()))
    return out


def other_profiles(chapter: str, name: str, exclude: str, summarise: Callable,
                   root: str | os.PathLike | None = None) -> list[tuple]:
    """What chapters 02 and 06 show beside their own results: every *other* profile's stored
    copy of a table (a ``full`` one only when a GPU run wrote it), as ``(provenance line,
    summarise(table))`` — the line names the profile, device, date and commit.

    Args:
        chapter, name, exclude, root: as :func:`stored`.
        summarise: turns the stored table (a DataFrame) into what the page displays (chapter 02's
            ``baseline_summary``, chapter 06's ``ablation_summary``).
    """
    return [(f"{pname}: {provenance_line(meta)}", summarise(table))
            for pname, (table, meta) in stored(chapter, name, exclude=exclude, root=root).items()]


def provenance_line(meta: Mapping) -> str:
    """One line naming where stored numbers come from: ``profile · device · date · commit``."""
    p = meta.get("provenance", meta)
    commit = (p.get("commit") or "unknown commit")[:10]
    return (f"profile '{meta.get('profile', '?')}' · {p.get('device', 'unknown device')} · "
            f"{p.get('date', 'unknown date')} · commit {commit}")


#: Where ``python -m skinlesion_utils gpu-bench`` writes its reference run (under the ``full`` profile).
GPU_BENCH_CHAPTER = "gpu-bench"


def gpu_reference(root: str | os.PathLike | None = None) -> dict | None:
    """``<results_root>/full/gpu-bench/reference.json`` (from the GPU benchmark), or ``None``
    when no GPU run has written it (chapters 02 and 06 show it beside their own numbers).

    Returns:
        dict with ``provenance`` (device, date, commit), ``setup`` (image size, epochs, ...),
        ``table`` (DataFrame: one row per model with accuracy and ROC AUC, their 95 % intervals and
        the training seconds), ``paired`` (McNemar and AUC difference, ASFF vs ResNet-50) and
        ``path`` (the file).
    """
    import pandas as pd

    path = results_dir(GPU_BENCH_CHAPTER, "full", root) / "reference.json"
    if not path.is_file():
        return None
    ref = json.loads(path.read_text())
    rows = []
    for model, r in ref.get("results", {}).items():
        row = {"model": model, "epochs": r.get("epochs"), "train_seconds": r.get("train_seconds")}
        for m in ("accuracy", "roc_auc"):
            row[m] = r["metrics"][m]
            lo, hi = r.get("ci95", {}).get(m, [np.nan, np.nan])
            row[f"{m}_low"], row[f"{m}_high"] = lo, hi
        rows.append(row)
    return {"provenance": ref.get("provenance", {}), "setup": ref.get("setup", {}),
            "table": pd.DataFrame(rows).set_index("model") if rows else pd.DataFrame(),
            "paired": ref.get("paired", {}), "path": path}


#: Runs at a scale between ``ci`` and ``full``, from this book's CPU machine (``results/<scale>/<name>/``).
LARGER_SCALE = ("scale128", "04_06_main_pair")


def larger_scale(scale: str = LARGER_SCALE[0], name: str = LARGER_SCALE[1],
                 root: str | os.PathLike | None = None) -> dict | None:
    """The stored main pair at a larger scale (chapters 04 and 06 show it beside ``ci``).

    Returns:
        ``None`` when nothing is stored, else a dict with ``provenance`` (what, command, device),
        ``runs`` (DataFrame: one row per run — fusion, seed, image size, epochs, test accuracy and
        ROC AUC, device, date, commit), ``means`` (mean accuracy and ROC AUC per fusion) and
        ``readings`` (the ``asff_text`` runs' fusion-weight readings, as chapter 06 computes
        them, when stored).
    """
    import pandas as pd

    folder = results_root(root) / scale / name
    if not (folder / "provenance.json").is_file():
        return None
    prov = json.loads((folder / "provenance.json").read_text())
    runs = pd.DataFrame(prov["runs"])
    means = runs.groupby("fusion")[["accuracy", "roc_auc"]].mean()
    readings = folder / "fusion_weight_readings.csv"
    return {"provenance": {k: v for k, v in prov.items() if k != "runs"}, "runs": runs, "means": means,
            "readings": pd.read_csv(readings) if readings.is_file() else None}
