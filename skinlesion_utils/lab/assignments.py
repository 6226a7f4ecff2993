"""Assessed labs: otter-grader assignments built from the chapters' exercises (``make lab``).

One assignment per chapter. A chapter's three exercises are one lab session (the teacher's
guide, ``book/lab/``, schedules one chapter a session), they share the chapter's data and
checks, and a per-chapter assignment keeps each graded notebook small: it holds the exercises
only, not the chapter's training, so grading one submission takes seconds.

For each chapter ``NN_name`` :func:`master_notebook` writes an otter-assign *master* notebook
(otter's v1 format: raw ``# BEGIN QUESTION`` / ``# BEGIN TESTS`` cells) with

* the chapter's title, a link to its page in the book, and a Colab badge that opens the
  *student* notebook (published on the ``lab-notebooks`` branch by the Pages workflow);
* a setup cell that installs the course package pinned to the commit the assignment was built
  from (and otter-grader), skipping itself when that version is installed;
* one question per exercise: its task, its solution (the chapter's ``### BEGIN SOLUTION``
  markers become otter's), a public test (the check's made-up cases; a failure shows the hint
  the ✅/❌ line gives) and a hidden test (every case, real data included, on a fresh copy of the
  check: :mod:`.grading`). Points by difficulty: ★☆☆ 1, ★★☆ 2, ★★★ 3, half on each test.

:func:`build_assignments` runs ``otter assign`` on each master; the output, in ``dist/lab/``,
is never committed. :func:`grade_submissions` grades collected notebooks with ``otter run`` (no
Docker needed) and writes the class's scores as CSV. Defined for the course lab
(``book/lab/grading.md``).
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from ..errors import ConfigError
from ..results import write_bytes, write_text
from .notebooks import BEGIN_MARKER, END_MARKER, Exercise, LabFormatError, _read, check_exercises, find_exercises

POINTS = {"★☆☆": 1, "★★☆": 2, "★★★": 3}
STUDENT_BRANCH = "lab-notebooks"
PACKAGE = "skinlesion_utils"


@dataclass(frozen=True)
class Built:
    """One built assignment: ``dist/lab/<stem>/``.

    Attributes:
        chapter: the chapter's stem, e.g. ``"05_evaluation"``.
        student: the student notebook (solutions stubbed, public tests in its metadata).
        solution: the solutions notebook (otter's ``autograder/`` copy).
        autograder: the autograder zip (hidden tests; what ``otter run`` and Gradescope take).
        points: points per question, ``{"q1": 1, ...}``.
    """

    chapter: str
    student: Path
    solution: Path
    autograder: Path
    points: dict


def _repository(root: Path) -> str:
    from ..book_tools import repository

    return repository(root)[0]


def _commit(root: Path) -> str:
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        raise ConfigError(
            f"cannot read the git commit of {root}: the assignments pin the package to it. "
            "Fix: build them from a git checkout of the book."
        ) from None
    return out.stdout.strip()


def student_badge(repo_url: str, chapter: str) -> str:
    """The Colab badge of a student notebook: it opens the student notebook, never the chapter or the solutions."""
    owner_repo = repo_url.removeprefix("https://github.com/").rstrip("/")
    link = f"https://colab.research.google.com/github/{owner_repo}/blob/{STUDENT_BRANCH}/{chapter}.ipynb"
    return f"[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]({link})"


def setup_source(repo_url: str, commit: str, version: str) -> str:
    """The student notebook's setup cell: the package pinned to the commit the lab was built from."""
    return (
        "# Setup: installs the course package at the version this lab was built with (and otter-grader,\n"
        "# which runs the tests); skipped when that version is already installed.\n"
        "import importlib.metadata\n"
        "import subprocess\n"
        "import sys\n\n"
        "try:\n"
        f"    installed = importlib.metadata.version({PACKAGE!r})\n"
        "except importlib.metadata.PackageNotFoundError:\n"
        "    installed = None\n"
        f"if installed != {version!r} or importlib.util.find_spec('otter') is None:\n"
        "    subprocess.run([sys.executable, '-m', 'pip', 'install', '-q', 'otter-grader',\n"
        f"                    {f'{PACKAGE} @ git+{repo_url}@{commit}'!r}], check=True)"
    ).replace("import importlib.metadata\n", "import importlib.metadata\nimport importlib.util\n")


def _otter_markers(source: str) -> str:
    """The chapter's ``### BEGIN SOLUTION`` lines as otter's ``# BEGIN SOLUTION``."""
    lines = []
    for line in source.splitlines():
        stripped = line.strip()
        indent = line[: len(line) - len(line.lstrip())]
        if stripped == BEGIN_MARKER:
            line = f"{indent}# BEGIN SOLUTION"
        elif stripped == END_MARKER:
            line = f"{indent}# END SOLUTION"
        lines.append(line)
    return "\n".join(lines)


def _test_source(ex: Exercise, *, hidden: bool, points: float) -> str:
    """One test cell: the public test runs the check's made-up cases (its failure message is the
    hint), the hidden one every case, the real-data ones included."""
    module, check = ex.check_call.split(".")[1:]
    kind, what = (("hidden", "Every case, the real-data ones included") if hidden
                  else ("public", "The check's made-up cases; a failure shows its hint"))
    # The submission ran in this kernel and may have patched any module it imported: find the
    # package through the finders (not sys.modules) and run a fresh copy of the grading code.
    return (
        '""" # BEGIN TEST CONFIG\n'
        f"points: {points}\n"
        f"hidden: {'true' if hidden else 'false'}\n"
        '""" # END TEST CONFIG\n'
        f"def test_{ex.function}_{kind}({ex.function}):\n"
        f'    """{what}, on a fresh copy of the check."""\n'
        "    import runpy\n"
        "    import sys\n"
        "    from pathlib import Path\n\n"
        "    specs = (f.find_spec('skinlesion_utils', None) for f in sys.meta_path if hasattr(f, 'find_spec'))\n"
        "    package = Path(next(s for s in specs if s is not None).origin).parent\n"
        "    grading = runpy.run_path(str(package / 'lab' / 'grading.py'))\n"
        f"    grading['assert_passes']({module!r}, {check!r}, {ex.function}, hidden={hidden})"
    )


def assignment_config(stem: str, requirements: Path) -> str:
    """The raw ``# ASSIGNMENT CONFIG`` cell (otter assign's settings)."""
    return "\n".join([
        "# ASSIGNMENT CONFIG",
        f"name: {stem}",
        f"requirements: {requirements.name}",
        "overwrite_requirements: true",
        "init_cell: false",
        "check_all_cell: true",
        "run_tests: false",
        "solutions_pdf: false",
        "export_cell:",
        "  pdf: false",
        "  run_tests: false",
        '  instructions: "Save the notebook, then run this cell: it writes the zip file to hand in."',
        "tests:",
        "  files: false",
        "  ok_format: false",
        "generate:",
        "  pdf: false",
        "  show_stdout: true",
        "  show_hidden: true",
    ])


def master_notebook(chapter: Path, *, repo_url: str, commit: str, version: str, requirements: Path):
    """The otter-assign master notebook of one chapter's exercises (see the module's docstring)."""
    import nbformat
    from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_raw_cell

    chapter = Path(chapter)
    nb = _read(chapter)
    exercises = find_exercises(nb, chapter.stem)
    title = nb.cells[0].source.strip().splitlines()[0].lstrip("# ").strip()
    pages = _pages_url(repo_url)
    total = sum(POINTS[e.stars] for e in exercises)
    cells = [
        new_raw_cell(assignment_config(chapter.stem, requirements)),
        new_markdown_cell(
            f"# Lab {title}\n\n"
            f"{student_badge(repo_url, chapter.stem)}\n\n"
            f"The exercises of the book's chapter [{title}]({pages}/chapters/{chapter.stem}.html), graded: "
            f"{len(exercises)} questions, {total} points (★☆☆ 1, ★★☆ 2, ★★★ 3). Read the chapter first; each "
            "exercise asks for one function. Write it where the cell says `...`, then run the "
            "`grader.check` cell under it: it runs the public tests and shows a hint when one fails. "
            "The grade comes from hidden tests run on your submitted notebook, on more cases (some "
            "built from the real images), so a public test that passes is a good sign, not a grade.\n\n"
            "Keep the function names. Set `SKINLESION_DATA` to the course's data folder before you "
            "start, or let the package download it (chapter 00)."
        ),
        new_code_cell(setup_source(repo_url, commit, version)),
        # otter's own init cell would come first, before the setup cell has installed otter
        new_code_cell(f"import otter\n\ngrader = otter.Notebook({chapter.stem + '.ipynb'!r})\n"
                      "from skinlesion_utils import lab"),
    ]
    for ex in exercises:
        heading, solution = nb.cells[ex.heading], nb.cells[ex.solution]
        points = POINTS[ex.stars]
        cells += [
            new_raw_cell(f"# BEGIN QUESTION\nname: q{ex.number}\npoints: {points}"),
            new_markdown_cell(heading.source.replace("### Exercise", "## Exercise", 1)),
            new_raw_cell("# BEGIN SOLUTION"),
            new_code_cell(_otter_markers(solution.source)),
            new_raw_cell("# END SOLUTION"),
            new_raw_cell("# BEGIN TESTS"),
            new_code_cell(_test_source(ex, hidden=False, points=points / 2)),
            new_code_cell(_test_source(ex, hidden=True, points=points / 2)),
            new_raw_cell("# END TESTS"),
            new_raw_cell("# END QUESTION"),
        ]
    master = new_notebook(cells=cells, metadata={
        "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
        "language_info": {"name": "python"},
    })
    nbformat.validate(master)
    return master


def _pages_url(repo_url: str) -> str:
    owner, name = repo_url.removeprefix("https://github.com/").rstrip("/").split("/")[:2]
    return f"https://{owner}.github.io/{name}"


def _version() -> str:
    from .. import __version__

    return __version__


def _otter_assign(master: Path, result: Path) -> None:
    """``otter assign`` in this process (a second Python per chapter would double the build time)."""
    import contextlib
    import io

    from otter.assign import main as otter_assign

    log = io.StringIO()
    try:
        with contextlib.chdir(master.parent), contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
            otter_assign(str(master), str(result), no_pdfs=True, no_run_tests=True)
    except Exception as exc:
        tail = "\n".join(log.getvalue().strip().splitlines()[-6:])
        raise ConfigError(f"otter assign failed for {master.stem}: {type(exc).__name__}: {exc}\n{tail}") from None


def build_assignments(chapters: Sequence[Path], out_dir: Path, *, root: Path | None = None) -> list[Built]:
    """Write every chapter's assignment into ``out_dir/<stem>/`` with ``otter assign``.

    Each assignment is built in a temporary folder and moved into place whole, so an interrupted
    build leaves the previous one (or none), never half of one.

    Returns:
        one :class:`Built` per chapter, in the order given.

    Raises:
        LabFormatError: a chapter's exercises do not follow the format (nothing is written).
        ConfigError: otter assign failed (its last lines are in the message).
    """
    from ..book_tools import ROOT

    root = Path(root or ROOT)
    chapters = [Path(c) for c in chapters]
    problems = check_exercises(chapters)  # every format problem of every chapter, before anything is written
    if problems:
        raise LabFormatError("Cannot build the lab assignments:\n" + "\n".join(problems))
    repo_url, commit, version = _repository(root), _commit(root), _version()
    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    built = []
    for chapter in chapters:
        stem = chapter.stem
        with tempfile.TemporaryDirectory(dir=out_dir, prefix=f".{stem}-") as tmp:
            tmp = Path(tmp)
            source = tmp / "source"
            source.mkdir()
            requirements = source / "requirements.txt"
            requirements.write_text(f"{PACKAGE} @ git+{repo_url}@{commit}\n")
            master = master_notebook(chapter, repo_url=repo_url, commit=commit, version=version,
                                     requirements=requirements)
            import nbformat

            nbformat.write(master, source / f"{stem}.ipynb")
            _otter_assign(source / f"{stem}.ipynb", tmp / "built")
            final = out_dir / stem
            old = out_dir / f".{stem}.old"
            if final.exists():
                final.rename(old)
            (tmp / "built").rename(final)
            shutil.rmtree(old, ignore_errors=True)
        zips = sorted((final / "autograder").glob("*.zip"))
        built.append(Built(
            chapter=stem,
            student=final / "student" / f"{stem}.ipynb",
            solution=final / "autograder" / f"{stem}.ipynb",
            autograder=zips[-1],
            points={f"q{e.number}": POINTS[e.stars] for e in find_exercises(chapter)},
        ))
    return built


def assignment_dir(built_root: Path, chapter: str) -> Path:
    """``dist/lab/<stem>/`` for a chapter given as ``05``, ``ch05`` or ``05_evaluation``."""
    built_root = Path(built_root)
    key = re.sub(r"^ch", "", str(chapter))[:2]
    found = sorted(p for p in built_root.glob(f"{key}_*") if (p / "autograder").is_dir()) if key.isdigit() else []
    if not found:
        raise ConfigError(
            f"no built assignment for chapter {chapter!r} in {built_root}. Fix: run `make lab` "
            "(or `python -m skinlesion_utils lab assign`) first, then name the chapter as 05 or 05_evaluation."
        )
    return found[0]


def autograder_zip(assignment: Path) -> Path:
    """The autograder zip of a built assignment folder (the newest, should there be several)."""
    zips = sorted((Path(assignment) / "autograder").glob("*-autograder_*.zip"))
    if not zips:
        raise ConfigError(f"{assignment} has no autograder zip. Fix: rebuild it with `make lab`.")
    return zips[-1]


def grade_submission(autograder: Path, submission: Path, *, timeout: int = 600) -> dict:
    """Grade one notebook with ``otter run`` in a fresh kernel: ``{question: (points, possible)}``.

    The notebook is copied into a temporary folder first (otter writes beside it); the original
    is never changed. A notebook that does not run still gets a grade: every question it did
    not answer scores 0.

    Raises:
        ConfigError: the file is not a notebook, or otter could not grade it at all.
    """
    import nbformat

    submission = Path(submission)
    try:
        nbformat.read(submission, as_version=4)
    except Exception as exc:  # not JSON, not a notebook, unreadable
        raise ConfigError(f"{submission.name} is not a Jupyter notebook ({type(exc).__name__}). "
                          "Fix: collect the .ipynb files the students handed in.") from None
    with tempfile.TemporaryDirectory(prefix="skinlesion-grade-") as tmp:
        tmp = Path(tmp)
        local = tmp / submission.name
        shutil.copyfile(submission, local)
        (tmp / "out").mkdir()
        try:
            result = subprocess.run(
                [sys.executable, "-m", "otter", "run", "--no-logo", "-a", str(Path(autograder).resolve()),
                 "-o", str(tmp / "out"), local.name],
                cwd=tmp, capture_output=True, text=True, timeout=timeout,
            )
        except subprocess.TimeoutExpired:
            raise ConfigError(f"grading {submission.name} took over {timeout} s. Fix: check the notebook "
                              "for a loop that never ends, or pass a larger --timeout.") from None
        results = tmp / "out" / "results.json"
        if not results.is_file():
            tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-6:])
            raise ConfigError(f"otter could not grade {submission.name}:\n{tail}")
        tests = json.loads(results.read_text())["tests"]
    return {t["name"]: (float(t.get("score") or 0.0), float(t["max_score"]))
            for t in tests if t.get("max_score") is not None}


def grade_submissions(assignment: Path, submissions: Sequence[Path], out_dir: Path, *,
                      timeout: int = 600) -> "pandas.DataFrame":  # noqa: F821
    """Grade a class's notebooks for one built assignment and write the scores as CSV.

    Args:
        assignment: the built folder, ``dist/lab/05_evaluation``.
        submissions: the students' notebooks; each student is named by the file's stem (name
            the files by student id, e.g. ``s1234567.ipynb``).
        out_dir: gets ``scores_by_question.csv`` (student, question, points, possible: one row per
            student and question) and ``scores.csv`` (one row per student, a column per question,
            ``total`` and ``possible``: the shape Gradescope and Canvas import as a score column).

    Returns:
        the long table (student, question, points, possible).
    """
    import pandas as pd

    submissions = [Path(s) for s in submissions]
    if not submissions:
        raise ConfigError("no submissions given. Fix: pass the .ipynb files (or a folder of them) to grade.")
    names = [s.stem for s in submissions]
    doubles = sorted({n for n in names if names.count(n) > 1})
    if doubles:
        raise ConfigError(f"two submissions share the student name {doubles[0]!r} (names come from the file "
                          "names). Fix: name each file by its student's id.")
    zip_path = autograder_zip(assignment)
    rows = []
    for path in _progress(submissions, "grading"):
        for question, (points, possible) in grade_submission(zip_path, path, timeout=timeout).items():
            rows.append({"student": path.stem, "question": question, "points": points, "possible": possible})
    long = pd.DataFrame(rows, columns=["student", "question", "points", "possible"])
    wide = long.pivot(index="student", columns="question", values="points")
    wide["total"] = wide.sum(axis=1)
    wide["possible"] = long.groupby("student")["possible"].sum()
    out_dir = Path(out_dir)
    write_text(out_dir / "scores_by_question.csv", long.to_csv(index=False))
    write_text(out_dir / "scores.csv", wide.reset_index().to_csv(index=False))
    return long


def _progress(items, what: str):
    from tqdm.auto import tqdm

    return tqdm(items, desc=what, unit="notebook", disable=len(items) < 2)


def publish_student_notebooks(built: Sequence[Built], folder: Path) -> list[Path]:
    """Copy the student notebooks into ``folder`` (the book build's ``_build/html/lab/``) and
    write the ``index.json`` the Pages workflow reads to publish them on the student branch."""
    folder = Path(folder)
    written = []
    for b in built:
        written.append(write_bytes(folder / f"{b.chapter}.ipynb", b.student.read_bytes()))
    index = [{"chapter": b.chapter, "notebook": f"{b.chapter}.ipynb", "points": b.points} for b in built]
    write_text(folder / "index.json", json.dumps(index, indent=1) + "\n")
    return written
