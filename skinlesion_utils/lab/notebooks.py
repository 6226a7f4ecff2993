"""The exercise format in a chapter and its validation (``python -m skinlesion_utils lab check``).

An exercise in ``chapters/NN_name.py`` (jupytext py:percent) is three consecutive cells:

1. a markdown cell whose first line is ``### Exercise N (★☆☆): Title`` (difficulty ★☆☆, ★★☆
   or ★★★; N counts 1, 2, … within the chapter), followed by the task;
2. a code cell tagged ``["solution", "hide-input"]`` that defines exactly ONE function (plus
   imports, nothing else), whose body holds the solution between the lines
   ``### BEGIN SOLUTION`` and ``### END SOLUTION``;
3. a code cell calling the chapter's check, e.g. ``lab.ch00.check_malignant_share(malignant_share);``.

The book shows the solution collapsed under the task. The graded lab notebooks are built from
these cells by :mod:`.assignments` (``make lab``): otter-grader replaces the marked region by
``...`` in the student notebook. The teacher's guide (``book/lab``) documents all of this for
chapter authors and teachers.
"""
from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

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
                    "its solution would leak into the lab notebook."
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
