"""Where results go and how every file is written (defined in chapter 00, used by every chapter).

* :func:`atomic_open` — the package's one way to write a file: a temporary file in the target's
  folder, flushed and fsynced, then ``os.replace``-d over the target. A reader (or a resumed run)
  sees the old file or the new one, never half of one; a killed writer leaves only a
  ``.<name>.*.tmp`` file, which :func:`sweep_temporaries` removes. :func:`write_bytes`,
  :func:`write_text`, :func:`write_json` and :func:`write_csv` are the usual shapes of it.
* :func:`results_root` / :func:`results_dir` — the one results root: ``$SKINLESION_RESULTS`` if
  set, else ``results/`` of the book found upwards from the working directory (``_toc.yml``),
  else ``./results``. A chapter's numbers live in ``<root>/<profile>/<chapter>/``.
* :func:`write_results` / :func:`read_results` — a chapter's tables (CSV) and numbers (JSON).
* :func:`git_commit`, :func:`device_name` — provenance written beside results.
"""
from __future__ import annotations

import contextlib
import json
import os
import platform
import subprocess
import tempfile
from pathlib import Path
from typing import IO, Iterator

import numpy as np

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
        raise ValueError(f"atomic_open mode must be 'w' or 'wb'; found {mode!r}.")
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
    """``json.dumps`` fallback: numpy scalars → Python numbers, arrays/sets/tuples → lists,
    paths → strings; anything else is a ``TypeError`` (never a silent ``str``)."""
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, (np.ndarray,)):
        return obj.tolist()
    if isinstance(obj, (set, tuple)):
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


def results_root(root: str | os.PathLike | None = None) -> Path:
    """The one results root.

    Args:
        root: a book root to use instead of the search (its ``results/``).

    Order: ``root/results`` when ``root`` is given; else ``$SKINLESION_RESULTS``; else
    ``results/`` of the book found upwards from the working directory; else ``./results``.
    """
    if root is not None:
        return Path(root) / "results"
    env = os.environ.get(ENV_RESULTS)
    if env:
        return Path(env).expanduser().resolve()
    book = project_root()
    return (book if book is not None else Path.cwd()) / "results"


def _profile_name(profile) -> str:
    if profile is None:
        from .profiles import profile as active

        return active().name
    return profile if isinstance(profile, str) else profile.name


def results_dir(chapter: str, profile=None, root: str | os.PathLike | None = None) -> Path:
    """``<results_root()>/<profile name>/<chapter>`` — where a chapter's numbers go (not created).

    Args:
        chapter: chapter stem, e.g. ``"05_evaluation"``.
        profile: a profile name or ``Profile`` (default: the active one).
        root: as :func:`results_root`.
    """
    name = _profile_name(profile)
    if not chapter or "/" in chapter or not name or "/" in name:
        raise ValueError(
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


def read_results(chapter: str, name: str, profile=None, root: str | os.PathLike | None = None, **read_csv):
    """Read back what :func:`write_results` wrote: a DataFrame (``.csv``, first column as index)
    or a dict (``.json``). ``read_csv`` goes to ``pandas.read_csv`` (e.g. ``dtype={"printed": str}``).

    Raises:
        FileNotFoundError: neither file exists; the message names the chapter to run first.
    """
    import pandas as pd

    folder = results_dir(chapter, profile, root)
    if (folder / f"{name}.csv").is_file():
        return pd.read_csv(folder / f"{name}.csv", index_col=0, **read_csv)
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
