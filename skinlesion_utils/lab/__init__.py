"""The course lab: exercise checks that print ✅ or ❌ with a hint, and the graded lab notebooks.

Owns the machinery behind every chapter's *Exercises* section (the format is described in the
teacher's guide, ``book/lab/authoring.md``):

* :class:`Check` — runs a learner's function on test cases (made-up ones and cases built from
  the real data), compares each result with a reference implementation, and prints one line:
  ``✅`` when every case passes, else ``❌`` with the failing case and a hint. It never prints
  the expected value, catches ``NotImplementedError`` (``❌ not implemented yet: …``) and any
  other exception, and returns ``True`` / ``False``.
* one module per chapter, ``lab.ch00``, ``lab.ch01``, … with that chapter's ``check_*``
  functions, written by the chapter's author. They load lazily: ``from skinlesion_utils import
  lab`` then ``lab.ch00.check_malignant_share(malignant_share)``.
* :mod:`.notebooks` — parsing and validating the exercise format in a chapter.
* :mod:`.assignments` — one otter-grader assignment per chapter built from its exercises
  (``make lab``), and grading a class's notebooks with ``otter run``
  (``python -m skinlesion_utils lab grade``).
* :mod:`.grading` — what the assignments' tests call: a check run on a fresh copy of its
  module, so a submission cannot change its own grade by rebinding a check.

Taught in every chapter's *Exercises* section; the teacher's guide is ``book/lab``.
"""
from __future__ import annotations

import copy
import importlib
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

from ..data import DataError
from .notebooks import BEGIN_MARKER, END_MARKER, Exercise, LabFormatError, check_exercises, find_exercises

__all__ = [
    "Case",
    "Check",
    "describe",
    "as_float_pair",
    "same_value",
    "BEGIN_MARKER",
    "END_MARKER",
    "Exercise",
    "LabFormatError",
    "check_exercises",
    "find_exercises",
]

PASS, FAIL, NOTE = "✅", "❌", "ℹ"


@dataclass
class Case:
    """One input of a check.

    Attributes:
        name: what the input is, in words the learner understands (printed when the case fails,
            so it must not contain the expected result), e.g. ``"a 2×2 batch of one colour"``.
        args, kwargs: passed to both the learner's function and the reference (each gets its
            own deep copy, so an in-place change by the learner is detected, not propagated).
        real: True when the case is built from the real data (reported in the ✅ line).
    """

    name: str
    args: tuple = ()
    kwargs: dict = field(default_factory=dict)
    real: bool = False


Compare = Callable[[Any, Any, Case], "str | None"]


class Check:
    """A check of one exercise: learner's function vs. a reference on a list of cases.

    Args:
        reference: the reference implementation (same signature as the learner's function);
            never shown to the learner. Prefer computing it differently from the solution in
            the chapter (a library call, the package's own tested function).
        cases: made-up cases (a list, or a zero-argument callable returning one).
        real_cases: zero-argument callable returning the cases built from the real data. When
            the data is not on disk it may raise ``data.DataError``; the check then says that
            the real-data cases were skipped and runs the others.
        compare: ``compare(got, expected, case) -> None`` when ``got`` is right, else a hint
            (str). Hints describe *what is wrong* (type, shape, range, a recognised mistake),
            never the expected value. Default: :func:`same_value`.
        hint: general advice added to every failure (e.g. "a batch is [N, 3, H, W]").

    Calling the check with the learner's function prints one line and returns True / False::

        check_channel_mean = Check(reference=_mean, cases=[...], hint="...")
        check_channel_mean(channel_mean)   # ✅ channel_mean: all 6 cases pass (2 on the real data)
    """

    def __init__(
        self,
        reference: Callable,
        cases: Sequence[Case] | Callable[[], Sequence[Case]] = (),
        real_cases: Callable[[], Sequence[Case]] | None = None,
        compare: Compare | None = None,
        hint: str = "",
    ):
        self.reference = reference
        self._cases = cases
        self._real_cases = real_cases
        self.compare = compare or same_value
        self.hint = hint

    def cases(self) -> tuple[list[Case], str | None]:
        """(all cases, a note when the real-data cases had to be skipped)."""
        made_up = list(self._cases() if callable(self._cases) else self._cases)
        if self._real_cases is None:
            return made_up, None

        try:
            real = [c if c.real else Case(c.name, c.args, c.kwargs, real=True) for c in self._real_cases()]
        except DataError as exc:
            first_line = str(exc).splitlines()[0]
            return made_up, f"{NOTE} real-data cases skipped ({first_line}); run the chapter's data cells first."
        return made_up + real, None

    def __call__(self, func: Callable) -> bool:
        """Run ``func`` on every case; print ✅ or ❌ (with a hint); return whether all passed."""
        name = getattr(func, "__name__", type(func).__name__)
        if not callable(func):
            return _fail(
                f"{name}: expected your function itself, got {describe(func)}. "
                "Pass the function without calling it: check(my_function), not check(my_function())."
            )
        cases, note = self.cases()
        if note:
            print(note)
        for case in cases:
            expected = self.reference(*copy.deepcopy(case.args), **copy.deepcopy(case.kwargs))
            args, kwargs = copy.deepcopy(case.args), copy.deepcopy(case.kwargs)
            try:
                got = func(*args, **kwargs)
            except NotImplementedError as exc:
                message = str(exc) or f"{name} still raises NotImplementedError"
                return _fail(f"not implemented yet: {message}")
            except Exception as exc:  # the learner's bug, reported as a hint, not a traceback
                return _fail(
                    f"{name} — case “{case.name}”: your function raised {type(exc).__name__}: "
                    f"{_shorten(str(exc))}" + (f"\n   Hint: {self.hint}" if self.hint else "")
                )
            if not (_same_args(args, case.args) and _same_args(list(kwargs.values()), list(case.kwargs.values()))):
                return _fail(
                    f"{name} — case “{case.name}”: your function changed its input in place "
                    "(e.g. x /= 255, x[...] = …, .div_()). Work on a copy and return a new object."
                )
            try:
                problem = self.compare(got, expected, case)
            except Exception as exc:  # a result so odd that comparing it fails
                problem = f"could not compare your result ({describe(got)}): {type(exc).__name__}: {_shorten(str(exc))}"
            if problem:
                return _fail(f"{name} — case “{case.name}”: {problem}" + (f"\n   Hint: {self.hint}" if self.hint else ""))
        n_real = sum(c.real for c in cases)
        real = f" ({n_real} on the real data)" if n_real else ""
        print(f"{PASS} {name}: all {len(cases)} cases pass{real}")
        return True


def _fail(message: str) -> bool:
    print(f"{FAIL} {message}")
    return False


def _shorten(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def as_float_pair(got: Any) -> tuple[float, float] | None:
    """``got`` as two floats when it is a tuple or list of two numbers, else ``None`` (the checks
    then say what kind of value came back, :func:`describe`)."""
    if isinstance(got, (tuple, list)) and len(got) == 2:
        try:
            return float(got[0]), float(got[1])
        except (TypeError, ValueError):
            return None
    return None


def describe(value: Any) -> str:
    """A short description of a value's *kind* (type, dtype, shape) — never of its contents."""
    try:
        import torch

        if isinstance(value, torch.Tensor):
            return f"torch.Tensor {str(value.dtype).replace('torch.', '')} of shape {tuple(value.shape)}"
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
    import numpy as np
    import pandas as pd

    if isinstance(value, np.ndarray):
        return f"numpy array {value.dtype} of shape {value.shape}"
    if isinstance(value, pd.Series):
        return f"pandas Series of length {len(value)}"
    if isinstance(value, pd.DataFrame):
        return f"pandas DataFrame of shape {value.shape}"
    if value is None:
        return "None (did you forget `return`?)"
    return type(value).__name__


def _as_numpy(value: Any):
    import numpy as np

    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.asarray(value)


def _same_args(a: Iterable, b: Iterable) -> bool:
    """Whether two argument lists hold equal values (used to detect in-place changes)."""
    import numpy as np
    import pandas as pd

    a, b = list(a), list(b)
    if len(a) != len(b):
        return False
    for x, y in zip(a, b):
        if isinstance(x, (pd.DataFrame, pd.Series)):
            if not (type(x) is type(y) and x.equals(y)):
                return False
        elif hasattr(x, "shape") and hasattr(y, "shape"):
            if tuple(x.shape) != tuple(y.shape) or not np.array_equal(_as_numpy(x), _as_numpy(y)):
                return False
        else:
            try:
                if x != y:
                    return False
            except Exception:
                pass
    return True


def same_value(got: Any, expected: Any, case: Case | None = None, *, atol: float = 1e-6) -> str | None:
    """Default comparison: same kind and shape, values equal within ``atol``.

    Returns None when equal, else a hint that says what differs (kind, shape, how many values)
    without printing any expected value.
    """
    import numpy as np

    if type(got) is not type(expected) and not (_is_number(got) and _is_number(expected)):
        return f"expected {describe(expected).split(' of ')[0]}, got {describe(got)}."
    if hasattr(expected, "shape"):
        if tuple(got.shape) != tuple(expected.shape):
            return f"wrong shape: expected {tuple(expected.shape)}, got {tuple(got.shape)}."
        g, e = _as_numpy(got), _as_numpy(expected)
        if np.issubdtype(e.dtype, np.number) and np.issubdtype(g.dtype, np.number):
            wrong = int(np.sum(~np.isclose(g.astype(np.float64), e.astype(np.float64), atol=atol, rtol=0, equal_nan=True)))
        else:
            wrong = int(np.sum(g != e))
        return None if wrong == 0 else f"{wrong} of {e.size} values differ from the reference."
    if _is_number(expected):
        return None if abs(float(got) - float(expected)) <= atol else "the value differs from the reference."
    return None if got == expected else "the result differs from the reference."


def _is_number(x: Any) -> bool:
    import numbers

    return isinstance(x, numbers.Number) and not isinstance(x, bool)


_CHAPTER_MODULE = re.compile(r"ch\d\d")


def __getattr__(name: str):
    """Lazy access to the chapter modules: ``lab.ch00`` imports ``skinlesion_utils.lab.ch00``."""
    if _CHAPTER_MODULE.fullmatch(name):
        try:
            return importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"{__name__}.{name}":
                raise AttributeError(
                    f"skinlesion_utils.lab has no checks for chapter {name[2:]} yet "
                    f"(expected the module skinlesion_utils/lab/{name}.py)."
                ) from None
            raise
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
