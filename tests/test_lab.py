"""Tests of the course lab (skinlesion_utils.lab): exercise format and checks.

For EVERY chapter in chapters/ (discovered, so new chapters are picked up automatically):
  * the exercises follow the format (book/lab/authoring.md);
  * each solution cell, executed in a fresh namespace, passes the check cell that follows it,
    and the same cell stubbed the way otter-grader stubs it for the lab notebook fails it
    (returns False, prints ❌);
  * the book renders every solution collapsed (inside a closed <details>), never inline.
The graded lab notebooks built from these exercises are tested in test_lab_assignments.py.
"""
from __future__ import annotations

import ast
import contextlib
import io
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import numpy as np
import pytest
import torch

from skinlesion_utils import book_tools, lab
from skinlesion_utils.lab import notebooks as labnb

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = book_tools.chapter_sources(ROOT)
DATA = Path(os.environ.get("SKINLESION_DATA", ROOT.parent / "shared" / "data"))
HAVE_DATA = (DATA / "isic_balanced").is_dir()



def _exercises():
    """(chapter, exercise) pairs of every chapter, found by the lab's own parser."""
    pairs = []
    for py in CHAPTERS:
        exercises, _ = labnb._scan(labnb._read(py), py.stem)
        pairs += [pytest.param(py, ex, id=f"{py.stem}-ex{ex.number}") for ex in exercises]
    return pairs


def run_cell(source: str, namespace: dict):
    """Execute a cell like Jupyter: the value of a final bare expression is returned."""
    tree = ast.parse(source)
    last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
    exec(compile(tree, "<cell>", "exec"), namespace)
    if last is not None:
        return eval(compile(ast.Expression(last.value), "<cell>", "eval"), namespace)
    return None


def run_check(solution_source: str, check_source: str) -> tuple[object, str]:
    """Exec a solution (or stub) cell in a fresh namespace, then its check cell: (result, stdout)."""
    namespace = {"lab": lab}
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(solution_source, "<solution>", "exec"), namespace)
        result = run_cell(check_source, namespace)
    return result, out.getvalue()


# ---------------------------------------------------------------- format of the real chapters


def test_every_chapter_has_well_formed_exercises():
    assert CHAPTERS, "no chapters found in chapters/"
    assert lab.check_exercises(CHAPTERS) == []


def test_cli_check_reports_the_real_chapters(capsys):
    from skinlesion_utils.cli import main

    assert main(["lab", "check"]) == 0
    assert "✅" in capsys.readouterr().out


# ---------------------------------------------------------------- (a) solution passes, stub fails


@pytest.mark.parametrize("py, ex", _exercises())
def test_check_passes_on_solution_and_fails_on_stub(py, ex):
    nb = labnb._read(py)
    solution, check = nb.cells[ex.solution].source, nb.cells[ex.check].source
    ok, out = run_check(solution, check)
    assert ok is True, f"{py.stem} exercise {ex.number}: the check fails on the solution:\n{out}"
    assert "✅" in out and "❌" not in out
    if HAVE_DATA:  # every check includes cases built from the real data
        assert "on the real data)" in out, out

    stub = otter_stub(solution)
    assert "BEGIN SOLUTION" not in stub and "..." in stub
    ok, out = run_check(stub, check)
    assert ok is False, f"{py.stem} exercise {ex.number}: the check passes on the stub:\n{out}"
    assert out.startswith("❌") and "✅" not in out


def otter_stub(solution: str) -> str:
    """The solution cell as the lab notebook shows it: otter-grader's own stubbing of the region."""
    from otter.assign.solutions import replace_solutions

    from skinlesion_utils.lab.assignments import _otter_markers

    return "\n".join(replace_solutions(_otter_markers(solution).splitlines(), "python"))


# ---------------------------------------------------------------- the framework on wrong answers


def _quiet(check, func):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        ok = check(func)
    return ok, out.getvalue()


@pytest.mark.skipif(not HAVE_DATA, reason="needs the course data folder: set SKINLESION_DATA")
def test_common_mistakes_get_specific_hints_and_never_the_answer():
    from skinlesion_utils import data

    counts = data.dataset_table("isic_balanced")
    true_share = counts["malignant"] / counts["total"]
    mistakes = {
        "not a percentage": lambda c: 100 * c["malignant"] / c["total"],
        "divided by the benign count": lambda c: c["malignant"] / c["benign"],
        "benign share": lambda c: c["benign"] / c["total"],
        "return a pandas Series": lambda c: (c["malignant"] / c["total"]).to_dict(),
        "indexed like the table": lambda c: (c["malignant"] / c["total"]).sort_index(),
    }
    for hint, func in mistakes.items():
        ok, out = _quiet(lab.ch00.check_malignant_share, func)
        assert ok is False and out.startswith("❌") and hint in out, (hint, out)
        for value in true_share:  # no expected share, at any usual precision
            for text in (f"{value:.2f}", f"{value:.3f}", f"{100 * value:.1f}"):
                assert text not in out, (hint, out)

    real = torch.from_numpy(np.stack([data.decode_image(p, 64) for p in sorted((DATA / "isic_balanced/test/benign").glob("*.jpg"))[:4]]))
    true_mean = real.double().mean(dim=(0, 2, 3)) / 255

    def halve_in_place(x):
        x //= 2
        return x.float().mean(dim=(0, 2, 3)) / 255

    mean_mistakes = {
        "0–255 scale": lambda x: x.float().mean(dim=(0, 2, 3)),
        "expected shape (3,)": lambda x: x.float().mean(dim=(2, 3)) / 255,
        "RuntimeError": lambda x: x.mean(dim=(0, 2, 3)) / 255,  # uint8 has no mean
        "floating-point": lambda x: (x.sum(dim=(0, 2, 3)) // (x.numel() // 3)),
        "return a torch.Tensor": lambda x: x.numpy().mean(axis=(0, 2, 3)) / 255,
        "changed its input in place": halve_in_place,
        "right dimensions": lambda x: x.float().mean(dim=(0, 1, 2))[:3] / 255,
    }
    for hint, func in mean_mistakes.items():
        ok, out = _quiet(lab.ch00.check_channel_mean, func)
        assert ok is False and hint in out, (hint, out)
        assert not any(f"{v:.3f}" in out for v in true_mean.tolist())

    def on_black(rgba):
        a = rgba[..., 3:4] / 255
        return np.round(a * rgba[..., :3]).astype(np.uint8)

    def uint8_maths(rgba):  # wraps around at 256
        a = rgba[..., 3:4]
        return (rgba[..., :3] * a // 255 + (255 - a)).astype(np.uint8)

    composite_mistakes = {
        "alpha channel was ignored": lambda rgba: rgba[..., :3].copy(),
        "composited on black": on_black,
        "wraps around": uint8_maths,
        "dtype uint8": lambda rgba: rgba[..., :3] * (rgba[..., 3:4] / 255) + (1 - rgba[..., 3:4] / 255) * 255,
        "Drop the alpha channel": lambda rgba: rgba.copy(),
    }
    for hint, func in composite_mistakes.items():
        ok, out = _quiet(lab.ch00.check_composite_on_white, func)
        assert ok is False and hint in out, (hint, out)


def test_framework_reports_errors_without_raising():
    check = lab.Check(reference=lambda x: x * 2, cases=[lab.Case("two", (2,)), lab.Case("minus three", (-3,))])

    def doubles(x):
        return 2 * x

    def crashes(x):
        return {}[x]

    def wrong_on_negatives(x):
        return abs(x) * 2

    assert _quiet(check, doubles) == (True, "✅ doubles: all 2 cases pass\n")
    ok, out = _quiet(check, crashes)
    assert ok is False and "❌ crashes — case “two”: your function raised KeyError" in out
    ok, out = _quiet(check, wrong_on_negatives)
    assert ok is False and "case “minus three”" in out and "-6" not in out
    ok, out = _quiet(check, doubles(3))
    assert ok is False and "Pass the function without calling it" in out
    ok, out = _quiet(check, lambda x: None)
    assert ok is False and "forget `return`" in out


def test_missing_data_skips_real_cases_with_a_note():
    from skinlesion_utils import data

    def no_data():
        raise data.DataNotAvailableError("Dataset 'x' is not available (not found on disk).\nHow to get it: …")

    check = lab.Check(reference=lambda x: x + 1, cases=[lab.Case("one", (1,))], real_cases=no_data)
    ok, out = _quiet(check, lambda x: x + 1)
    assert ok is True
    assert "ℹ real-data cases skipped (Dataset 'x' is not available (not found on disk).)" in out
    assert "all 1 cases pass\n" in out


def test_chapter_modules_load_lazily_and_unknown_ones_say_so():
    assert lab.ch00.check_malignant_share is not None
    with pytest.raises(AttributeError, match="no checks for chapter 98 yet"):
        lab.ch98


# ---------------------------------------------------------------- format errors, on crafted chapters

GOOD_SOLUTION = '''# %% tags=["solution", "hide-input"]
import math


def area(r):
    """r: float radius -> float area."""
    ### BEGIN SOLUTION
    return math.pi * r ** 2
    ### END SOLUTION
'''
GOOD = f'''# %% [markdown]
# # 42 · A chapter

# %% [markdown]
# ### Exercise 1 (★☆☆): Area of a disc
#
# Write `area(r)`.

{GOOD_SOLUTION}
# %%
lab.ch42.check_area(area);
'''


def _chapter(tmp_path, text, name="42_crafted.py") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_crafted_good_chapter_is_accepted_and_stubbed(tmp_path):
    py = _chapter(tmp_path, GOOD)
    assert lab.check_exercises([py]) == []
    (ex,) = lab.find_exercises(py)
    assert (ex.number, ex.stars, ex.title, ex.function, ex.check_call) == (1, "★☆☆", "Area of a disc", "area", "lab.ch42.check_area")
    stub = otter_stub(labnb._read(py).cells[ex.solution].source)
    assert stub.splitlines()[-1] == "    ..." and "math.pi" not in stub


@pytest.mark.parametrize(
    "edit, problem",
    [
        (lambda t: t.replace("    ### END SOLUTION\n", ""), "exactly one '### BEGIN SOLUTION' and one '### END SOLUTION'"),
        (lambda t: t.replace('tags=["solution", "hide-input"]', 'tags=["solution"]'), "missing ['hide-input']"),
        (lambda t: t.replace("import math\n", "import math\nRADIUS = 2\n"), "defines exactly one function"),
        (lambda t: t.replace("lab.ch42.check_area(area);", "print(area(2))"), "must call the chapter's check"),
        (lambda t: t.replace("lab.ch42.check_area(area);", "lab.ch41.check_area(area);"), "checks live in lab.ch42"),
        (lambda t: t.replace("Exercise 1 (", "Exercise 2 ("), "numbered 1, 2, 3"),
        (lambda t: t.replace("(★☆☆)", "(★★★★)"), "difficulty"),
        (lambda t: t.replace("### Exercise 1 (★☆☆): Area", "### Exercise 1: Area"), "not in the form"),
        (lambda t: t.replace("    ### BEGIN SOLUTION\n", "").replace('def area(r):', "### BEGIN SOLUTION\ndef area(r):"), "inside the body"),
        (lambda t: t + '\n# %%\ndef leak():\n    ### BEGIN SOLUTION\n    return 1\n    ### END SOLUTION\n', "would leak into the lab notebook"),
        (lambda t: t.split("# %% [markdown]\n# ### Exercise")[0], "no exercises"),
    ],
)
def test_crafted_format_errors_are_reported(tmp_path, edit, problem):
    py = _chapter(tmp_path, edit(GOOD))
    problems = lab.check_exercises([py])
    assert any(problem in p for p in problems), problems
    from skinlesion_utils.lab.assignments import build_assignments

    out = tmp_path / "lab"
    with pytest.raises(lab.LabFormatError, match=re.escape(problem)):
        build_assignments([py], out)
    assert not out.exists()  # nothing written


# ---------------------------------------------------------------- the book hides every solution


def test_book_shows_solutions_collapsed(tmp_path):
    """Build the book; every solution's code sits inside a closed <details> toggle."""
    jb = Path(sys.executable).with_name("jupyter-book")
    if not jb.exists():
        jb = Path(shutil.which("jupyter-book") or "jupyter-book")
    subprocess.run([str(jb), "build", str(ROOT), "--path-output", str(tmp_path), "--quiet"],
                   check=True, capture_output=True, timeout=600)
    for py in CHAPTERS:
        exercises = lab.find_exercises(labnb._read(py), py.stem)
        html = (tmp_path / "_build" / "html" / "chapters" / f"{py.stem}.html").read_text()
        cells = re.findall(r'<div class="cell tag_solution[^"]*">\s*(<details[^>]*>)(.*?)</details>', html, re.S)
        assert len(cells) == len(exercises), f"{py.stem}: {len(cells)} collapsed solution cells for {len(exercises)} exercises"
        for opening, body in cells:
            assert "hide" in opening and " open" not in opening
            assert "Show code cell source" in body
        assert html.count("BEGIN SOLUTION") == len(exercises)  # only inside the collapsed cells
        for ex in exercises:
            assert sum(f'<span class="nf">{ex.function}</span>' in body for _, body in cells) == 1
