"""Tests of the graded labs (skinlesion_utils.lab.assignments and .grading), on the real chapters.

Built for every chapter: the student notebook holds no solution and only public tests, opens
in Colab as itself and pins the package to the commit it was built from; the autograder holds
the hidden tests and the points.

Graded with `otter run` (marked ``lab_grading``; `make lab-check` runs them two at a time):
  * every chapter's solutions score full marks and its untouched student notebook 0;
  * a class of four chapter-05 notebooks graded through the command line: the solutions, the
    untouched notebook, one that rebinds the checks, patches the check machinery and prints ✅
    (0: what its real answers earn), and one that solves exercise 2 only (exactly its points);
    the CSV files hold those numbers;
  * each grading takes at most two minutes (the teacher's guide states the measured times).
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import re
import subprocess
import time
import zipfile
from pathlib import Path

import nbformat
import pandas as pd
import pytest

from skinlesion_utils import __version__, book_tools, lab
from skinlesion_utils.errors import ConfigError
from skinlesion_utils.lab import assignments, grading
from skinlesion_utils.lab import notebooks as labnb

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = book_tools.chapter_sources(ROOT)
DATA = Path(os.environ.get("SKINLESION_DATA", ROOT.parent / "shared" / "data"))
HAVE_DATA = (DATA / "isic_balanced").is_dir()
MAX_GRADING_S = 120  # the budget per submission on 2 cores, `ci` profile


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("lab")
    return {b.chapter: b for b in assignments.build_assignments(CHAPTERS, out, root=ROOT)}


def _head() -> str:
    return subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True,
                          check=True).stdout.strip()


def _solution_bodies(py: Path) -> list[list[str]]:
    """The lines between each exercise's markers (what the student notebook must not contain)."""
    nb = labnb._read(py)
    bodies = []
    for ex in lab.find_exercises(nb, py.stem):
        lines = nb.cells[ex.solution].source.splitlines()
        b = next(i for i, line in enumerate(lines) if line.strip() == lab.BEGIN_MARKER)
        e = next(i for i, line in enumerate(lines) if line.strip() == lab.END_MARKER)
        bodies.append([line for line in lines[b + 1:e] if line.strip() and not line.strip().startswith(("#", "import", "from"))])
    return bodies


# ---------------------------------------------------------------- what is built


def test_every_chapter_builds_an_assignment(built):
    assert sorted(built) == sorted(py.stem for py in CHAPTERS)
    commit = _head()
    for py in CHAPTERS:
        b = built[py.stem]
        exercises = lab.find_exercises(py)
        assert b.points == {f"q{e.number}": assignments.POINTS[e.stars] for e in exercises}

        student = nbformat.read(b.student, as_version=4)
        text = "\n".join(c.source for c in student.cells if c.cell_type == "code")  # a task may quote a line
        assert "BEGIN SOLUTION" not in b.student.read_text()
        assert "BEGIN SOLUTION" not in text and "END SOLUTION" not in text
        for body in _solution_bodies(py):
            leaked = [line for line in body if line.strip() in text and len(line.strip()) > 12]
            assert not leaked, f"{py.stem}: solution lines in the student notebook: {leaked}"
        answers = [c for c in student.cells if "otter_answer_cell" in c.metadata.get("tags", [])]
        assert len(answers) == len(exercises) and all("..." in c.source for c in answers)
        assert [c.source for c in student.cells if c.source.startswith("grader.check(")] == \
            [f'grader.check("q{e.number}")' for e in exercises]

        # opens in Colab as the student notebook (never the chapter, never the solutions)
        badge = f"colab.research.google.com/github/asff-skinlesion-book/asff-skinlesion-book/blob/{assignments.STUDENT_BRANCH}/{py.stem}.ipynb"
        assert badge in student.cells[0].source and "/chapters/" not in student.cells[0].source.split("Open In Colab")[1].split(")")[1]
        setup = student.cells[1].source
        assert f"@{commit}" in setup and repr(__version__) in setup and "otter-grader" in setup

        # public tests only in the student notebook; the hidden ones only in the autograder
        tests = student.metadata["otter"]["tests"]
        assert sorted(tests) == sorted(b.points)
        assert all(re.findall(r"hidden=(True|False)\)", t) == ["False", "False"] for t in tests.values())
        with zipfile.ZipFile(b.autograder) as zf:
            for q, points in b.points.items():
                source = zf.read(f"tests/{q}.py").decode()
                assert f"points = {points}\n" in source
                assert re.findall(r"@test_case\(points=([\d.]+), hidden=(True|False)\)", source) == \
                    [(str(points / 2), "False"), (str(points / 2), "True")]
        solution = "\n".join(c.source for c in nbformat.read(b.solution, as_version=4).cells)
        assert all(any(line.strip() in solution for line in body) for body in _solution_bodies(py) if body)


def test_publish_copies_the_student_notebooks_with_an_index(built, tmp_path):
    written = assignments.publish_student_notebooks(list(built.values()), tmp_path / "html" / "lab")
    assert sorted(p.name for p in written) == sorted(f"{py.stem}.ipynb" for py in CHAPTERS)
    for b in built.values():
        assert (tmp_path / "html" / "lab" / f"{b.chapter}.ipynb").read_bytes() == b.student.read_bytes()
    index = json.loads((tmp_path / "html" / "lab" / "index.json").read_text())
    assert [i["chapter"] for i in index] == [py.stem for py in CHAPTERS]
    assert sum(sum(i["points"].values()) for i in index) == sum(sum(b.points.values()) for b in built.values())


def test_cli_assign_builds_and_publishes(tmp_path, capsys):
    from skinlesion_utils.cli import main

    assert main(["lab", "assign", "--out", str(tmp_path / "lab"), "--publish", str(tmp_path / "pub")]) == 0
    out = capsys.readouterr().out
    assert f"wrote {len(CHAPTERS)} assignments" in out and "05_evaluation: 3 questions, 5 points" in out
    assert len(list((tmp_path / "pub").glob("*.ipynb"))) == len(CHAPTERS)
    assert not list((tmp_path / "lab").glob(".*"))  # no half-built assignment left behind


def test_rebuilding_replaces_an_assignment_whole(tmp_path):
    (b,) = assignments.build_assignments([CHAPTERS[0]], tmp_path, root=ROOT)
    (b.student.parent / "stale.txt").write_text("from an older build")
    (again,) = assignments.build_assignments([CHAPTERS[0]], tmp_path, root=ROOT)
    assert again.student.is_file() and not (again.student.parent / "stale.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [CHAPTERS[0].stem]


# ---------------------------------------------------------------- the tests cannot be fooled in-process


def _right_sensitivity_specificity(cm):
    (tn, fp), (fn, tp) = cm
    return float(tp / (tp + fn)), float(tn / (tn + fp))


def test_a_patched_check_does_not_change_the_grade(monkeypatch):
    """Rebinding the check, patching Check.__call__ and grading's own functions: the fresh copy
    still fails a wrong answer and passes a right one."""
    monkeypatch.setattr(lab.ch05, "check_sensitivity_specificity", lambda f: print("✅") or True)
    monkeypatch.setattr(lab.Check, "__call__", lambda self, f: print("✅") or True)
    monkeypatch.setattr(grading, "run_check", lambda *a, **k: (True, "✅"))
    import runpy

    fresh = runpy.run_path(grading.__file__)
    for hidden in (False, True):
        passed, message = fresh["run_check"]("ch05", "check_sensitivity_specificity", lambda cm: (0.5, 0.5), hidden=hidden)
        assert passed is False and message.startswith("❌") and "differs from the reference" in message
        passed, message = fresh["run_check"]("ch05", "check_sensitivity_specificity", _right_sensitivity_specificity, hidden=hidden)
        assert passed is True and message.startswith("✅")
        assert ("on the real data" in message) is (hidden and HAVE_DATA)
    with pytest.raises(AssertionError, match="differs from the reference"):
        fresh["assert_passes"]("ch05", "check_sensitivity_specificity", lambda cm: (0.5, 0.5), hidden=True)
    passed, message = fresh["run_check"]("ch05", "check_sensitivity_specificity", None, hidden=True)
    assert passed is False and "not defined" in message
    import sys

    assert not [m for m in sys.modules if "_fresh_lab_" in m]  # the fresh copies are not left behind


def test_fresh_check_refuses_unknown_names():
    with pytest.raises(ConfigError, match="no lab module 'ch99'"):
        grading.fresh_check("ch99", "check_x")
    with pytest.raises(ConfigError, match="no lab module '../x'"):
        grading.fresh_check("../x", "check_x")
    with pytest.raises(ConfigError, match="has no check 'check_nothing'"):
        grading.fresh_check("ch05", "check_nothing")


# ---------------------------------------------------------------- hostile input to grading


def test_grading_refuses_what_is_not_a_notebook(built, tmp_path):
    bad = tmp_path / "alice.ipynb"
    bad.write_text("this is not a notebook")
    with pytest.raises(ConfigError, match=r"^alice.ipynb is not a Jupyter notebook \(.*\)\. Fix: collect"):
        assignments.grade_submission(built["05_evaluation"].autograder, bad)


def test_grading_names_students_by_file_and_refuses_doubles(built, tmp_path):
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "s1.ipynb").write_bytes(built["05_evaluation"].student.read_bytes())
    with pytest.raises(ConfigError, match="two submissions share the student name 's1'"):
        assignments.grade_submissions(built["05_evaluation"].student.parents[1], [tmp_path / "a" / "s1.ipynb",
                                      tmp_path / "b" / "s1.ipynb"], tmp_path / "scores")
    assert not (tmp_path / "scores").exists()


def test_cli_grade_without_a_built_assignment_says_what_to_do(tmp_path, capsys):
    from skinlesion_utils.cli import main

    nb = tmp_path / "s1.ipynb"
    nb.write_text("{}")
    assert main(["lab", "grade", "05", str(nb), "--out", str(tmp_path / "scores"), "--built", str(tmp_path / "none")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: no built assignment for chapter '05'") and "make lab" in err[0]
    assert main(["lab", "grade", "05", str(tmp_path / "missing"), "--out", str(tmp_path / "scores")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no such file or folder" in err[0]


# ---------------------------------------------------------------- grading with otter run


def _timed_grade(autograder: Path, notebook: Path) -> dict:
    start = time.perf_counter()
    grade = assignments.grade_submission(autograder, notebook)
    seconds = time.perf_counter() - start
    print(f"{notebook.name}: {seconds:.1f} s")
    assert seconds <= MAX_GRADING_S, f"grading {notebook.name} took {seconds:.0f} s (budget {MAX_GRADING_S} s)"
    return grade


@pytest.mark.lab_grading
@pytest.mark.parametrize("py", [pytest.param(p, id=p.stem) for p in CHAPTERS])
def test_solutions_score_full_marks_and_the_untouched_notebook_zero(built, py, tmp_path):
    b = built[py.stem]
    full = _timed_grade(b.autograder, b.solution)
    assert full == {q: (float(p), float(p)) for q, p in b.points.items()}
    untouched = _timed_grade(b.autograder, b.student)
    assert untouched == {q: (0.0, float(p)) for q, p in b.points.items()}


FAKER = '''# everything a submission might try instead of answering
import skinlesion_utils.lab as L
from skinlesion_utils.lab import Check, grading
for name in dir(L.ch05):
    if name.startswith("check_"):
        setattr(L.ch05, name, lambda f: print("✅ all cases pass") or True)
Check.__call__ = lambda self, f: print("✅") or True
grading.run_check = lambda *a, **k: (True, "✅")
grading.assert_passes = lambda *a, **k: None
grading.fresh_check = lambda *a, **k: (lambda f: True)

def check_sensitivity_specificity(f):
    print("✅ sensitivity_specificity: all cases pass")
    return True

print("✅ all exercises pass")
'''


def _class_of_four(b, folder: Path) -> None:
    """solution · untouched · faker (the stubs, plus the patches) · partial (exercise 2 only)."""
    folder.mkdir()
    (folder / "s_solution.ipynb").write_bytes(b.solution.read_bytes())
    (folder / "s_untouched.ipynb").write_bytes(b.student.read_bytes())
    faker = nbformat.read(b.student, as_version=4)
    first_answer = next(i for i, c in enumerate(faker.cells) if "otter_answer_cell" in c.metadata.get("tags", []))
    faker.cells.insert(first_answer, nbformat.v4.new_code_cell(FAKER))
    nbformat.write(faker, folder / "s_faker.ipynb")
    partial = nbformat.read(b.student, as_version=4)
    solution = nbformat.read(b.solution, as_version=4)
    solved = [c for c in solution.cells if "otter_assign_solution_cell" in c.metadata.get("tags", [])]
    answers = [c for c in partial.cells if "otter_answer_cell" in c.metadata.get("tags", [])]
    answers[1].source = solved[1].source
    nbformat.write(partial, folder / "s_partial.ipynb")


@pytest.mark.lab_grading
def test_a_class_graded_from_the_command_line(built, tmp_path, capsys):
    from skinlesion_utils.cli import main

    b = built["05_evaluation"]
    _class_of_four(b, tmp_path / "handed_in")
    before = {p.name: p.read_bytes() for p in (tmp_path / "handed_in").iterdir()}
    start = time.perf_counter()
    assert main(["lab", "grade", "05", str(tmp_path / "handed_in"), "--out", str(tmp_path / "scores"),
                 "--built", str(b.student.parents[2])]) == 0
    per_submission = (time.perf_counter() - start) / 4
    print(f"{per_submission:.1f} s per submission")
    assert per_submission <= MAX_GRADING_S
    out = capsys.readouterr().out
    assert "s_solution: 5 of 5 points" in out and "s_faker: 0 of 5 points" in out

    wide = pd.read_csv(tmp_path / "scores" / "scores.csv").set_index("student")
    assert list(wide.columns) == ["q1", "q2", "q3", "total", "possible"]
    assert wide["total"].to_dict() == {"s_faker": 0.0, "s_partial": 2.0, "s_solution": 5.0, "s_untouched": 0.0}
    assert wide.loc["s_partial", ["q1", "q2", "q3"]].tolist() == [0.0, 2.0, 0.0]  # exactly exercise 2's points
    assert set(wide["possible"]) == {5.0}
    long = pd.read_csv(tmp_path / "scores" / "scores_by_question.csv")
    assert list(long.columns) == ["student", "question", "points", "possible"] and len(long) == 12
    assert long.groupby("student")["points"].sum().to_dict() == wide["total"].to_dict()
    assert {p.name: p.read_bytes() for p in (tmp_path / "handed_in").iterdir()} == before  # submissions untouched
