"""The exercise format in a chapter, its validation, and the student copies (``make student``).

An exercise in ``chapters/NN_name.py`` (jupytext py:percent) is three consecutive cells:

1. a markdown cell whose first line is ``### Exercise N (★☆☆): Title`` (difficulty ★☆☆, ★★☆
   or ★★★; N counts 1, 2, … within the chapter), followed by the task;
2. a code cell tagged ``["solution", "hide-input"]`` that defines exactly ONE function (plus
   imports, nothing else), whose body holds the solution between the lines
   ``### BEGIN SOLUTION`` and ``### END SOLUTION``;
3. a code cell calling the chapter's check, e.g. ``lab.ch00.check_malignant_share(malignant_share);``.

The student copy replaces the marked region by ``raise NotImplementedError("Exercise N: Title —
write your solution here")`` at the marker's indentation, drops the ``solution`` and
``hide-input`` tags, and clears every output; nothing else changes. The teacher's guide
(``book/lab``) documents all of this for chapter authors and teachers.
"""
from __future__ import annotations

import ast
import io
import json
import os
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from ..results import write_bytes

BEGIN_MARKER = "### BEGIN SOLUTION"
END_MARKER = "### END SOLUTION"
SOLUTION_TAG = "solution"
HIDE_TAG = "hide-input"
DIFFICULTIES = ("★☆☆", "★★☆", "★★★")
HEADING_RE = re.compile(r"^###\s+Exercise\s+(?P<number>\d+)\s*\((?P<stars>[★☆]+)\)\s*:\s*(?P<title>\S.*?)\s*$")
LOOSE_HEADING_RE = re.compile(r"^#+\s*Exercise\b", re.IGNORECASE)
CHECK_CALL_RE = re.compile(r"\blab\.(?P<module>ch\d\d)\.(?P<check>check_\w+)\s*\(")


class LabFormatError(ValueError):
    """A chapter's exercises do not follow the format (the message lists every problem)."""


@dataclass(frozen=True)
class Exercise:
    """One exercise of a chapter notebook.

    Attributes:
        number, stars, title: from the heading ``### Exercise N (★★☆): Title``.
        heading, solution, check: indices of its three cells in ``nb.cells``.
        function: name of the function the solution cell defines.
        check_call: ``"lab.ch00.check_x"`` as called in the check cell.
    """

    number: int
    stars: str
    title: str
    heading: int
    solution: int
    check: int
    function: str
    check_call: str

    @property
    def stub_message(self) -> str:
        """The message of the stub's ``NotImplementedError``."""
        return f"Exercise {self.number}: {self.title} — write your solution here"


def _tags(cell) -> list[str]:
    return list(cell.get("metadata", {}).get("tags", []))


def _read(chapter) -> "nbformat.NotebookNode":  # noqa: F821
    import jupytext

    return jupytext.read(chapter, fmt="py:percent") if Path(chapter).suffix == ".py" else jupytext.read(chapter)


def _marker_lines(source: str) -> tuple[list[int], list[int]]:
    lines = source.splitlines()
    begins = [i for i, line in enumerate(lines) if line.strip() == BEGIN_MARKER]
    ends = [i for i, line in enumerate(lines) if line.strip() == END_MARKER]
    return begins, ends


def stub_solution(source: str, message: str) -> str:
    """Replace the ``### BEGIN SOLUTION`` … ``### END SOLUTION`` region of a solution cell.

    The region (markers included) becomes one line ``raise NotImplementedError("<message>")``
    at the BEGIN marker's indentation; every other line is kept as it is.

    Raises:
        LabFormatError: when the cell does not have exactly one BEGIN and one END marker, in
            that order, at the same indentation.
    """
    lines = source.splitlines()
    begins, ends = _marker_lines(source)
    if len(begins) != 1 or len(ends) != 1 or begins[0] > ends[0]:
        raise LabFormatError(
            f"a solution cell needs exactly one '{BEGIN_MARKER}' line followed by one '{END_MARKER}' "
            f"line; found {len(begins)} BEGIN and {len(ends)} END. Fix: put both markers, each on its "
            "own line, around the solution inside the function body."
        )
    b, e = begins[0], ends[0]
    indent = lines[b][: len(lines[b]) - len(lines[b].lstrip())]
    if lines[e][: len(lines[e]) - len(lines[e].lstrip())] != indent:
        raise LabFormatError(f"'{BEGIN_MARKER}' and '{END_MARKER}' must have the same indentation.")
    stub = f"{indent}raise NotImplementedError({json.dumps(message, ensure_ascii=False)})"
    new = lines[:b] + [stub] + lines[e + 1:]
    return "\n".join(new) + ("\n" if source.endswith("\n") else "")


def _solution_problems(source: str, where: str) -> tuple[list[str], str | None]:
    """Problems of one solution cell, and the name of the function it defines."""
    problems: list[str] = []
    begins, ends = _marker_lines(source)
    if len(begins) != 1 or len(ends) != 1:
        problems.append(
            f"{where}: the solution cell needs exactly one '{BEGIN_MARKER}' and one '{END_MARKER}' line "
            f"(found {len(begins)} and {len(ends)}). Fix: wrap the solution body in both markers."
        )
    elif begins[0] > ends[0]:
        problems.append(f"{where}: '{END_MARKER}' comes before '{BEGIN_MARKER}'. Fix: swap them.")
    try:
        tree = ast.parse(source)
    except SyntaxError as exc:
        return problems + [f"{where}: the solution cell is not valid Python ({exc.msg}, line {exc.lineno})."], None
    functions = [n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    others = [
        n for n in tree.body
        if not isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Import, ast.ImportFrom))
        and not (isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant))
    ]
    if len(functions) != 1 or others:
        problems.append(
            f"{where}: a solution cell defines exactly one function (imports allowed, nothing else); "
            f"found {len(functions)} function(s) and {len(others)} other statement(s). Fix: move other "
            "code into the function or into a cell outside the exercise."
        )
        return problems, None
    func = functions[0]
    if problems:
        return problems, func.name
    b, e = begins[0] + 1, ends[0] + 1  # ast line numbers are 1-based
    line = source.splitlines()[begins[0]]
    indent = len(line) - len(line.lstrip())
    after = [n.lineno for n in tree.body if n.lineno > func.lineno]
    if not (func.lineno < b and indent > func.col_offset and all(e < n for n in after)):
        problems.append(f"{where}: the markers must be inside the body of `{func.name}`, after its `def` line.")
        return problems, func.name
    try:
        stub = ast.parse(stub_solution(source, "stub"))
    except (LabFormatError, SyntaxError) as exc:
        problems.append(f"{where}: the stubbed cell is not valid Python ({exc}). Fix: keep the markers at the body's indentation.")
        return problems, func.name
    stub_funcs = [n for n in stub.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    if len(stub_funcs) != 1 or stub_funcs[0].name != func.name or ast.dump(stub_funcs[0].args) != ast.dump(func.args):
        problems.append(f"{where}: stubbing changed the signature of `{func.name}`. Fix: keep the markers inside the body only.")
    return problems, func.name


def _scan(nb, chapter: str) -> tuple[list[Exercise], list[str]]:
    exercises: list[Exercise] = []
    problems: list[str] = []
    cells = nb.cells
    module = f"ch{chapter[:2]}"
    claimed: set[int] = set()
    for i, cell in enumerate(cells):
        if cell.cell_type != "markdown" or not cell.source.strip():
            continue
        first = cell.source.strip().splitlines()[0]
        match = HEADING_RE.match(first)
        if not match:
            if LOOSE_HEADING_RE.match(first) and first.startswith("###"):
                problems.append(
                    f"{chapter}: cell {i}: heading {first!r} is not in the form '### Exercise N (★☆☆): Title'."
                )
            continue
        number, stars, title = int(match["number"]), match["stars"], match["title"]
        where = f"{chapter}: Exercise {number} (cell {i})"
        if stars not in DIFFICULTIES:
            problems.append(f"{where}: difficulty {stars!r} must be one of {', '.join(DIFFICULTIES)}.")
        if i + 2 >= len(cells) or cells[i + 1].cell_type != "code" or cells[i + 2].cell_type != "code":
            problems.append(f"{where}: an exercise heading must be followed by a solution code cell and a check code cell.")
            continue
        sol, chk = cells[i + 1], cells[i + 2]
        missing = [t for t in (SOLUTION_TAG, HIDE_TAG) if t not in _tags(sol)]
        if missing:
            problems.append(
                f"{where}: the cell after the heading must be tagged {[SOLUTION_TAG, HIDE_TAG]} "
                f"(missing {missing}). Fix: start it with  # %% tags=[\"solution\", \"hide-input\"]"
            )
        sol_problems, function = _solution_problems(sol.source, where)
        problems += sol_problems
        call = CHECK_CALL_RE.search(chk.source)
        if SOLUTION_TAG in _tags(chk) or not call:
            problems.append(
                f"{where}: the cell after the solution must call the chapter's check, e.g. "
                f"lab.{module}.check_something({function or 'my_function'});"
            )
            continue
        if call["module"] != module:
            problems.append(f"{where}: the check cell calls lab.{call['module']}, but this chapter's checks live in lab.{module}.")
        if function and not re.search(rf"\b{re.escape(function)}\b", chk.source[call.end():]):
            problems.append(f"{where}: the check cell must pass the function `{function}` to {call['check']}.")
        claimed.update((i + 1, i + 2))
        if function:
            exercises.append(Exercise(number, stars, title, i, i + 1, i + 2, function, f"lab.{call['module']}.{call['check']}"))
    numbers = [e.number for e in exercises]
    if numbers != list(range(1, len(numbers) + 1)):
        problems.append(f"{chapter}: exercises must be numbered 1, 2, 3, … in order; found {numbers}.")
    for i, cell in enumerate(cells):
        if cell.cell_type == "code" and i not in claimed:
            begins, ends = _marker_lines(cell.source)
            if SOLUTION_TAG in _tags(cell):
                problems.append(f"{chapter}: cell {i} is tagged 'solution' but is not part of an exercise (heading, solution, check).")
            elif begins or ends:
                problems.append(
                    f"{chapter}: cell {i} has solution markers but is not an exercise's solution cell; "
                    "its solution would leak into the student copy."
                )
    return exercises, problems


def find_exercises(nb, chapter: str = "00_chapter") -> list[Exercise]:
    """The exercises of a chapter notebook, in order.

    Args:
        nb: the notebook (``jupytext.read(path)``) or a path to ``chapters/NN_name.py``/``.ipynb``.
        chapter: the chapter's file stem (its first two characters give the check module).

    Raises:
        LabFormatError: listing every departure from the exercise format.
    """
    if isinstance(nb, (str, Path)):
        chapter = Path(nb).stem
        nb = _read(nb)
    exercises, problems = _scan(nb, chapter)
    if problems:
        raise LabFormatError("\n".join(problems))
    return exercises


def check_exercises(chapters: Iterable[Path]) -> list[str]:
    """Problems of the exercise format in chapter sources (empty list when all are right).

    Every chapter needs at least one exercise; every solution cell both markers, both tags, one
    function; every exercise a check cell calling ``lab.chNN.check_*`` with that function.
    """
    problems: list[str] = []
    for path in chapters:
        path = Path(path)
        exercises, found = _scan(_read(path), path.stem)
        problems += found
        if not exercises and not found:
            problems.append(
                f"{path.stem}: no exercises. Every chapter ends with 2–3 exercises before its Checks "
                "section (format: book/lab/authoring.md)."
            )
    return problems


def student_notebook(chapter: Path) -> "nbformat.NotebookNode":  # noqa: F821
    """The student copy of one chapter source: solutions stubbed, tags dropped, outputs cleared.

    Raises:
        LabFormatError: when the chapter's exercises do not follow the format.
    """
    chapter = Path(chapter)
    nb = _read(chapter)
    exercises = find_exercises(nb, chapter.stem)
    for ex in exercises:
        cell = nb.cells[ex.solution]
        cell.source = stub_solution(cell.source, ex.stub_message)
        tags = [t for t in _tags(cell) if t not in (SOLUTION_TAG, HIDE_TAG)]
        if tags:
            cell.metadata["tags"] = tags
        else:
            cell.metadata.pop("tags", None)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
    return nb


def make_student_copies(chapters: Sequence[Path], out_dir: Path) -> list[Path]:
    """Write the student copy of every chapter to ``out_dir`` and ``<out_dir>.zip`` beside it.

    Args:
        chapters: chapter sources ``chapters/NN_name.py`` (book order).
        out_dir: folder for ``NN_name.ipynb`` student notebooks (``student/`` in the repository,
            ignored by git). The zip holds the same notebooks under ``<out_dir name>/``.

    Every chapter is validated first, so a format error writes nothing. Each file is written
    atomically (temporary file, then rename); earlier copies of chapters that no longer exist
    are removed from ``out_dir``, other files there are left alone.

    Returns:
        the written notebook paths.

    Raises:
        LabFormatError: listing every format problem of every chapter.
    """
    import nbformat

    chapters = [Path(c) for c in chapters]
    if not chapters:
        raise LabFormatError("make_student_copies: no chapter sources given (expected chapters/NN_name.py files).")
    problems = check_exercises(chapters)
    if problems:
        raise LabFormatError("Cannot write student copies:\n" + "\n".join(problems))
    notebooks = {c.stem + ".ipynb": nbformat.writes(student_notebook(c)).encode() + b"\n" for c in chapters}
    out_dir = Path(out_dir)
    written = []
    for name, data in notebooks.items():
        write_bytes(out_dir / name, data)
        written.append(out_dir / name)
    for stale in out_dir.glob("[0-9][0-9]_*.ipynb"):
        if stale.name not in notebooks:
            stale.unlink()
    zip_path = out_dir.parent / f"{out_dir.name}.zip"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in notebooks.items():
            zf.writestr(f"{out_dir.name}/{name}", data)
    write_bytes(zip_path, buffer.getvalue())
    print(f"wrote {len(written)} student notebooks to {out_dir} and {zip_path}")
    return written


def _check_cells(nb) -> list[tuple[int, str, int, str, str]]:
    """(heading cell, title, check cell, check name, function) of every exercise of a notebook.

    Works on student copies and submissions too: it needs only the heading and the check call,
    not the solution tags.
    """
    found = []
    heading: tuple[int, int, str] | None = None
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "markdown" and cell.source.strip():
            match = HEADING_RE.match(cell.source.strip().splitlines()[0])
            if match:
                heading = (i, int(match["number"]), match["title"])
        elif cell.cell_type == "code" and heading is not None:
            call = CHECK_CALL_RE.search(cell.source)
            if call:
                args = cell.source[call.end():].split(")")[0].strip()
                found.append((heading[1], heading[2], i, f"lab.{call['module']}.{call['check']}", args))
                heading = None
    return found


def grade_notebooks(paths: Sequence[Path], *, timeout: int = 600, profile: str = "ci") -> "pandas.DataFrame":  # noqa: F821
    """Execute submitted notebooks and collect the verdict of every exercise check.

    Each notebook runs in a fresh kernel of the current environment (``SKINLESION_PROFILE=
    profile``), in its own folder, with errors allowed so one broken cell does not hide the
    other exercises. Only run submissions you are willing to execute on your machine.

    Returns:
        DataFrame, one row per (notebook, exercise): notebook, exercise, title, passed
        (True / False; False also when the check cell did not run or raised), verdict (the
        check's first output line, or the error).
    """
    import nbformat
    import pandas as pd
    from nbclient import NotebookClient

    rows = []
    old = os.environ.get("SKINLESION_PROFILE")
    os.environ["SKINLESION_PROFILE"] = profile
    try:
        for path in map(Path, paths):
            nb = nbformat.read(path, as_version=4)
            checks = _check_cells(nb)
            error = None
            try:
                NotebookClient(nb, timeout=timeout, kernel_name="python3", allow_errors=True,
                               resources={"metadata": {"path": str(path.parent)}}).execute()
            except Exception as exc:  # a timeout or a dead kernel: grade what ran
                error = f"execution stopped: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            for number, title, index, _, _ in checks:
                outputs = nb.cells[index].get("outputs", [])
                text = "".join(o.get("text", "") for o in outputs if o.get("output_type") == "stream")
                failed = [o for o in outputs if o.get("output_type") == "error"]
                lines = [line for line in text.splitlines() if line.startswith(("✅", "❌"))]
                if failed:
                    verdict = f"❌ the check cell raised {failed[0].get('ename')}: {failed[0].get('evalue')}"
                elif lines:
                    verdict = lines[0]
                else:
                    verdict = f"❌ the check did not run ({error or 'no output'})"
                rows.append(dict(notebook=path.name, exercise=number, title=title,
                                 passed=verdict.startswith("✅"), verdict=verdict))
    finally:
        if old is None:
            os.environ.pop("SKINLESION_PROFILE", None)
        else:
            os.environ["SKINLESION_PROFILE"] = old
    return pd.DataFrame(rows, columns=["notebook", "exercise", "title", "passed", "verdict"])
