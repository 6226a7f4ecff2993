"""Maintenance of the book's chapters: pair check, Colab links, execution, student copies.

Used by the Makefile (``make test``, ``make notebooks``, ``make student``); the lab guide
(``book/lab``) explains the student copies. Run ``skinlesion book --help``.

* ``check``   — every ``chapters/NN_*.py`` ⇄ ``.ipynb`` pair has the same cells (type, source,
  tags), every code cell of the ``.ipynb`` has stored outputs from an execution, and every
  Colab badge / install line uses the repository URL set once in ``_config.yml``.
* ``execute`` — executes chapters in the ``ci`` profile from their ``.py`` source and writes the
  paired ``.ipynb`` with outputs (what the book renders).
* ``badges``  — rewrites Colab badges and install lines from ``_config.yml``.
"""
from __future__ import annotations

import os
import re
import time
from pathlib import Path

from .lab import check_exercises
from .results import write_text

ROOT = Path(__file__).resolve().parent.parent
CHAPTERS = ROOT / "chapters"

BADGE_RE = re.compile(r"https://colab\.research\.google\.com/github/[^)\s\"']+")
INSTALL_RE = re.compile(r"git\+https://github\.com/[^\s\"'@]+")


def book_config(root: Path = ROOT) -> dict:
    """The parsed ``_config.yml``."""
    import yaml

    return yaml.safe_load((root / "_config.yml").read_text())


def repository(root: Path = ROOT) -> tuple[str, str]:
    """(repository URL, branch) as set once in ``_config.yml``."""
    repo = book_config(root)["repository"]
    return repo["url"].rstrip("/"), repo.get("branch", "main")


def colab_url(chapter: str, root: Path = ROOT) -> str:
    """Colab link that opens ``chapters/<chapter>.ipynb`` from the public repository."""
    url, branch = repository(root)
    slug = url.split("github.com/", 1)[1]
    return f"https://colab.research.google.com/github/{slug}/blob/{branch}/chapters/{chapter}.ipynb"


def install_spec(root: Path = ROOT) -> str:
    """``pip install`` target of the package on a machine that lacks it (e.g. Colab)."""
    url, _ = repository(root)
    return f"git+{url}"


def chapter_sources(root: Path = ROOT) -> list[Path]:
    """The chapters' ``.py`` sources in book order."""
    return sorted((root / "chapters").glob("[0-9][0-9]_*.py"))


def _cells(nb) -> list[tuple[str, str, tuple[str, ...]]]:
    return [
        (c.cell_type, c.source.strip(), tuple(sorted(c.get("metadata", {}).get("tags", []))))
        for c in nb.cells
        if not (c.cell_type == "raw" and not c.source.strip())
    ]


#: Stored notebooks above this size bloat the repository (images belong in the data folder).
MAX_NOTEBOOK_BYTES = 5_000_000


def check_pair(py: Path, root: Path = ROOT) -> list[str]:
    """Problems of one chapter pair (empty list when in sync, executed, and linked right)."""
    import jupytext
    import nbformat

    problems: list[str] = []
    nb_path = py.with_suffix(".ipynb")
    if not nb_path.exists():
        return [f"{py.name}: no paired {nb_path.name}. Fix: make notebooks (or jupytext --sync {py})."]
    src = jupytext.read(py, fmt="py:percent")
    nb = nbformat.read(nb_path, as_version=4)
    a, b = _cells(src), _cells(nb)
    if a != b:
        first = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
        problems.append(
            f"{py.name} and {nb_path.name} differ (first at cell {first}; {len(a)} vs {len(b)} cells). "
            f"Fix: edit the .py, then `make notebooks` to re-execute and store outputs."
        )
    unexecuted = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and c.source.strip() and c.get("execution_count") is None]
    if unexecuted:
        problems.append(f"{nb_path.name}: code cells {unexecuted[:5]} have no stored outputs. Fix: make notebooks.")
    if nb_path.stat().st_size > MAX_NOTEBOOK_BYTES:
        problems.append(
            f"{nb_path.name}: {nb_path.stat().st_size / 1e6:.1f} MB of stored outputs (limit "
            f"{MAX_NOTEBOOK_BYTES / 1e6:.0f} MB). Fix: fewer or smaller figures, or set_matplotlib_formats('jpeg') "
            "for photographs (chapter 07), then `make notebooks`.")
    noisy = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and "NBVAL_CHECK_OUTPUT" in c.source
             and any(o.get("output_type") == "stream" and o.get("name") == "stderr" for o in c.get("outputs", []))]
    if noisy:
        problems.append(
            f"{nb_path.name}: cells {noisy[:5]} are checked exactly by nbval but store stderr (warnings carry "
            "machine-specific paths and break the check on another machine). Fix: silence the warning in the "
            "package or move the statement that emits it out of the checked cell, then `make notebooks`.")
    draws = any(c.cell_type == "code" and "plt.show()" in c.source for c in nb.cells)
    images = sum(any(k in o.get("data", {}) for k in ("image/png", "image/jpeg", "image/svg+xml"))
                 for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    if draws and not images:
        problems.append(f"{nb_path.name}: draws figures but stores none (executed with a non-inline matplotlib backend?). Fix: make notebooks.")
    text = py.read_text()
    want_badge = colab_url(py.stem, root)
    for found in BADGE_RE.findall(text):
        if found != want_badge:
            problems.append(f"{py.name}: Colab badge points to {found}, expected {want_badge}. Fix: python -m skinlesion_utils book badges")
    if not BADGE_RE.findall(text):
        problems.append(f"{py.name}: no Colab badge. Every chapter starts with one (see chapter 00).")
    for found in INSTALL_RE.findall(text):
        if found != install_spec(root):
            problems.append(f"{py.name}: install line uses {found}, expected {install_spec(root)}. Fix: python -m skinlesion_utils book badges")
    return problems


def check(root: Path = ROOT) -> int:
    """Check every chapter pair; print problems; return the number found."""
    problems = []
    sources = chapter_sources(root)
    for py in sources:
        problems += check_pair(py, root)
    for nb in sorted((root / "chapters").glob("[0-9][0-9]_*.ipynb")):
        if not nb.with_suffix(".py").exists():
            problems.append(f"{nb.name}: no paired .py source. Fix: jupytext --to py:percent {nb}")

    problems += check_exercises(sources)
    for p in problems:
        print(f"❌ {p}")
    if not problems:
        print(f"✅ {len(sources)} chapter pairs in sync, executed, with the repository's Colab links")
    return len(problems)


def fix_badges(root: Path = ROOT) -> None:
    """Rewrite every chapter's Colab badge and install line from ``_config.yml``."""
    for py in chapter_sources(root):
        text = py.read_text()
        new = BADGE_RE.sub(colab_url(py.stem, root), text)
        new = INSTALL_RE.sub(install_spec(root), new)
        if new != text:
            write_text(py, new)
            print(f"updated {py.name}")


def execute(paths: list[Path], profile: str = "ci", timeout: int = 3600) -> None:
    """Execute chapters from their ``.py`` source and store the outputs in the paired ``.ipynb``.

    Runs each notebook in a fresh kernel of the current environment, with
    ``SKINLESION_PROFILE=profile``, in order (later chapters load the runs of earlier ones).
    """
    import jupytext
    from nbclient import NotebookClient

    os.environ["SKINLESION_PROFILE"] = profile
    # The kernel must use Jupyter's inline backend so that figures are stored in the notebook
    # (a non-interactive MPLBACKEND such as Agg, e.g. inherited from a test run, would drop them).
    os.environ["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
    for py in paths:
        py = Path(py)
        nb = jupytext.read(py, fmt="py:percent")
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        start = time.time()
        print(f"executing {py.name} ({profile}) …", flush=True)
        NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(py.parent)}}).execute()
        jupytext.write(nb, py.with_suffix(".ipynb"), fmt="ipynb")
        print(f"  {py.name}: {time.time() - start:.0f} s", flush=True)
