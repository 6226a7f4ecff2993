"""What an assignment's tests call: one exercise's check, as a test that passes or fails.

The otter-grader tests that :mod:`.assignments` writes into every assignment call
:func:`assert_passes`. A public test (the student sees it and runs it with
``grader.check("q1")``) runs the check's made-up cases and fails with the same hint the ✅/❌
line of the chapter gives; a hidden test (only in the autograder) runs every case, the real-data
ones included. Both run a copy of the chapter's check module loaded afresh from the installed
file.

Why afresh: otter runs the tests in the kernel that just executed the submission, so a
submission can rebind ``lab.ch05.check_x`` or patch ``Check.__call__`` in ``sys.modules``. The
hidden test never goes through ``sys.modules`` for the check or its machinery: it finds the
installed package through the import system's finders (not ``sys.modules``), runs this file with
``runpy`` and executes the package's ``lab/__init__.py`` and ``lab/chNN.py`` into new module
objects, so what the submission changed in the modules it imported does not reach the grade. What it cannot guard
against is a submission that rewrites the package's files on disk; otter's Docker grading
(``otter grade``) does, since every submission gets a fresh container.

Defined for chapter "the course lab" (``book/lab/grading.md``).
"""
from __future__ import annotations

import contextlib
import importlib.util
import io
import re
import sys
from pathlib import Path
from types import ModuleType
from typing import Callable

from skinlesion_utils.errors import ConfigError  # absolute: the hidden tests run this file with runpy

_LAB_DIR = Path(__file__).resolve().parent


def _fresh_module(name: str, path: Path, *, package: bool) -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        name, path, submodule_search_locations=[str(path.parent)] if package else None)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # for the relative imports of the module being executed
    spec.loader.exec_module(module)
    return module


def fresh_check(chapter: str, check: str):
    """The check ``check`` of ``lab.<chapter>``, from a copy of the module executed afresh.

    Args:
        chapter: ``"ch05"``.
        check: ``"check_sensitivity_specificity"``.

    The copy's ``Check`` class is fresh too: ``lab/__init__.py`` is executed into a new package
    ``skinlesion_utils._fresh_lab_<chapter>`` and the chapter module into a module inside it, so
    the chapter's ``from . import Check`` finds the fresh one. Both are dropped from
    ``sys.modules`` afterwards.
    """
    path = _LAB_DIR / f"{chapter}.py"
    if not re.fullmatch(r"ch\d\d", chapter) or not path.is_file():
        raise ConfigError(f"no lab module {chapter!r}: expected a name like 'ch05' with a file {chapter}.py in {_LAB_DIR.name}/.")
    private = f"skinlesion_utils._fresh_lab_{chapter}"
    try:
        _fresh_module(private, _LAB_DIR / "__init__.py", package=True)
        module = _fresh_module(f"{private}.{chapter}", path, package=False)
    finally:
        for name in [n for n in sys.modules if n == private or n.startswith(private + ".")]:
            del sys.modules[name]
    found = getattr(module, check, None)
    if found is None:
        raise ConfigError(f"lab.{chapter} has no check {check!r}.")
    return found


def run_check(chapter: str, check: str, func: Callable, *, hidden: bool) -> tuple[bool, str]:
    """Run one exercise's check on ``func``, from a fresh copy: (passed, the ✅/❌ line and any note).

    Args:
        hidden: False: the check's made-up cases only (the public test: quick, needs no data,
            its failure message is the hint). True: every case, the real-data ones included.
    """
    if not callable(func):
        return False, f"{FAIL} the function is not defined: run the cell that defines it and keep its name."
    checker = fresh_check(chapter, check)
    if not hidden:
        checker._real_cases = None
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        passed = bool(checker(func))
    return passed, out.getvalue().strip()


FAIL = "❌"


def assert_passes(chapter: str, check: str, func: Callable, *, hidden: bool = False) -> None:
    """The body of every assignment test: raise ``AssertionError`` with the hint when ``func`` fails."""
    passed, message = run_check(chapter, check, func, hidden=hidden)
    if not passed:
        raise AssertionError(message)
