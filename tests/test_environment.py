"""environment.yml (conda) and pyproject.toml (pip) must ask for the same packages."""
from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
# conda-forge names that differ from PyPI's
CONDA_TO_PYPI = {"pytorch": "torch"}


def _name_and_bound(spec: str) -> tuple[str, str]:
    m = re.match(r"\s*([A-Za-z0-9_.\-]+)\s*(.*)", spec)
    return m.group(1).lower().replace("_", "-"), m.group(2).replace(" ", "")


def test_environment_matches_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = dict(_name_and_bound(s) for s in project["dependencies"])
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    conda, pip = {}, []
    for dep in env["dependencies"]:
        if isinstance(dep, dict):
            pip += dep["pip"]
            continue
        name, bound = _name_and_bound(dep)
        conda[CONDA_TO_PYPI.get(name, name)] = bound
    for spec in pip:
        if not spec.startswith("-e"):
            name, bound = _name_and_bound(spec)
            conda[name] = bound
    conda.pop("python"), conda.pop("pip")
    assert conda == wanted
    assert any(s.startswith("-e") and "test" in s and "book" in s for s in pip), "the package itself with its extras"
    assert env["dependencies"][0].startswith("python>=") and project["requires-python"] == ">=3.10"
