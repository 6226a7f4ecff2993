"""Every package name a chapter uses exists (a moved or renamed function fails here, in seconds,
instead of twenty minutes into nbval).

Each chapter source is parsed, not executed: ``from skinlesion_utils.x import y`` must resolve,
and every ``alias.attr`` where ``alias`` is a ``skinlesion_utils`` module bound in the chapter
must be an attribute of that module.
"""
from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CHAPTERS = sorted((ROOT / "chapters").glob("[0-9][0-9]_*.py"))


def package_references(source: str) -> tuple[list[tuple[str, str]], list[str]]:
    """``(module, name)`` pairs a source file reads from the package, and modules it imports.

    Bindings: ``from skinlesion_utils import m [as a]``, ``import skinlesion_utils.m as a``,
    ``from skinlesion_utils.m import n [as a]`` (``n`` may itself be a module).
    """
    tree = ast.parse(source)
    aliases: dict[str, str] = {}
    pairs: list[tuple[str, str]] = []
    modules: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "skinlesion_utils":
            modules.append(node.module)
            for a in node.names:
                pairs.append((node.module, a.name))
                aliases[a.asname or a.name] = f"{node.module}.{a.name}"
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] == "skinlesion_utils":
                    modules.append(a.name)
                    if a.asname:
                        aliases[a.asname] = a.name
    shadowed = set()  # attributes of a function's own variable that shares a module's name
    for fn in ast.walk(tree):
        if isinstance(fn, (ast.FunctionDef, ast.Lambda)):
            local = {a.arg for a in fn.args.args + fn.args.kwonlyargs}
            local |= {n.id for n in ast.walk(fn) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
            shadowed |= {id(n) for n in ast.walk(fn) if isinstance(n, ast.Attribute)
                         and isinstance(n.value, ast.Name) and n.value.id in local}
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases
                and id(node) not in shadowed):
            pairs.append((aliases[node.value.id], node.attr))
    return pairs, modules


def _resolve(dotted: str):
    """The module, or the attribute chain below the longest importable module, of ``dotted``."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for name in parts[cut:]:
            obj = getattr(obj, name)
        return obj
    raise ImportError(dotted)


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.stem)
def test_every_package_name_a_chapter_uses_exists(chapter):
    pairs, modules = package_references(chapter.read_text())
    assert modules, f"{chapter.name} imports nothing from skinlesion_utils"
    missing = []
    for module, name in sorted(set(pairs)):
        try:
            _resolve(f"{module}.{name}")
        except (ImportError, AttributeError):
            missing.append(f"{module}.{name}")
    assert not missing, f"{chapter.name} uses names the package does not have: {missing}"


def test_the_reference_scan_finds_a_missing_name():
    source = "from skinlesion_utils import metrics as M\nM.no_such_function()\nM.confusion\n"
    pairs, _ = package_references(source)
    assert ("skinlesion_utils.metrics", "no_such_function") in pairs
    missing = []
    for m, n in pairs:
        try:
            _resolve(f"{m}.{n}")
        except (ImportError, AttributeError):
            missing.append(n)
    assert missing == ["no_such_function"]
