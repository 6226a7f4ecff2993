"""The paper's claims as data: one JSON file with provenance, and the functions that read it.

Taught in chapter 09 (``chapters/09_reproduction_audit``); chapters 02 (baselines), 05
(evaluation), 06 (ablation) and 08 (external validation) read the paper's numbers from here
and never type them.

What this module owns
---------------------
* ``paper_claims.json`` (next to this file, shipped with the package): every numeric claim of
  arXiv 2510.03876 that could be read, each with its provenance (source, paper version v1/v2,
  location, a verbatim quote) and a status saying *how* we know it (``paper``, ``code``,
  ``data``, ``third_party``, ``project``); the paper's Tables 1-4; the settings of the released
  Keras scripts; and every documented difference between the paper's text and its code or data.
  Values are kept as **strings exactly as printed** (``"0.9670"`` keeps its trailing zero, which
  says how precisely it was rounded) next to the parsed float.
* Reading it: :func:`load_claims`, :func:`claim`, :func:`claims_table`, :func:`table`,
  :func:`text_vs_code`.
* The ``paper`` training recipe per model: :func:`paper_recipe`, :func:`recipe_table`.
* Arithmetic checks of the printed numbers (is an accuracy ``k / 660`` for an integer ``k``? do
  the printed recall and specificity imply the printed accuracy? is a printed gain the
  difference of two achievable accuracies?): :func:`check_accuracy`,
  :func:`check_recall_specificity`, :func:`check_gain` and :func:`arithmetic_checks`, built on
  :func:`skinlesion_utils.verdicts.nearest_fraction` and
  :func:`skinlesion_utils.verdicts.accuracy_from_recall_specificity`; their verdicts are
  :data:`ARITHMETIC_VERDICTS`.
* The paper's Table 2/3 on a chapter's page, or a note that it could not be transcribed:
  :func:`paper_table_or_note` (chapters 02 and 06).

Every function takes an optional ``claims`` argument (a dict as returned by :func:`load_claims`)
so that a chapter or a test can work on an edited copy; by default the packaged file is used.

Filling in a table: copy each row from the paper's PDF into ``tables.<n>.rows`` of the JSON as
``{"model": "<name as printed>", "model_id": "<build_model name or null>", "<column>":
"<string as printed>", ...}``, set the table's ``status`` to ``"transcribed"`` (or
``"partial"``), then run ``pytest tests/test_paper.py``: the loader refuses a file whose numbers
do not parse or whose provenance is missing.
"""
from __future__ import annotations

import copy
import difflib
import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from . import verdicts

__all__ = [
    "CLAIMS_FILE",
    "ARITHMETIC_VERDICTS",
    "TABLE_STATUSES",
    "ClaimsError",
    "ClaimsNotTranscribed",
    "Where",
    "Claim",
    "parse_number",
    "decimals_of",
    "load_claims",
    "validate_claims",
    "claim",
    "claims_table",
    "table",
    "text_vs_code",
    "paper_recipe",
    "recipe_table",
    "check_accuracy",
    "check_recall_specificity",
    "check_gain",
    "arithmetic_checks",
    "paper_table_or_note",
]

#: The packaged claims file.
CLAIMS_FILE = Path(__file__).with_name("paper_claims.json")
#: Verdicts of the arithmetic checks (:func:`arithmetic_checks`).
ARITHMETIC_VERDICTS = ("consistent", "inconsistent", "not checkable")
#: Allowed ``status`` of a table.
TABLE_STATUSES = ("not_transcribed", "partial", "transcribed")
#: Strings that stand for "not reported" in a table cell.
_MISSING_CELLS = ("", "-", "–", "—", "n/a", "N/A")
_PAPER_VERSIONS = ("v1", "v2")


class ClaimsError(ValueError):
    """The claims file (or an edited copy) is malformed, or a claim/table does not exist."""


class ClaimsNotTranscribed(ClaimsError):
    """A table of the paper has no rows in the claims file yet."""


# =========================================================================== numbers
_THOUSANDS = re.compile(r"^[+-]?\d{1,3}(,\d{3})+(\.\d+)?$")


def parse_number(text: str) -> float:
    """A number as printed -> float: ``"3,297"`` -> 3297.0, ``"+2.224"`` -> 2.224, ``"93.18%"``
    -> 93.18, ``"1e-5"`` -> 1e-05.

    Raises:
        ValueError: the text is not a number, with the text in the message.
    """
    if not isinstance(text, str):
        raise ValueError(f"expected the number as a string (as printed), found {type(text).__name__} {text!r}; "
                         "write it in quotes in paper_claims.json.")
    s = text.strip().rstrip("%").strip()
    if _THOUSANDS.match(s):
        s = s.replace(",", "")
    try:
        return float(s)
    except ValueError:
        raise ValueError(f"{text!r} is not a number; expected digits as printed, e.g. '93.182', '0.9670', "
                         "'3,297' or '1e-5'.") from None


def decimals_of(text: str) -> int:
    """Decimal places as printed: ``"93.10"`` -> 2, ``"0.9670"`` -> 4, ``"3,297"`` -> 0."""
    s = text.strip().rstrip("%").strip().lstrip("+")
    if _THOUSANDS.match(s):
        s = s.replace(",", "")
    try:
        return max(0, -Decimal(s).as_tuple().exponent)
    except InvalidOperation:
        raise ValueError(f"{text!r} is not a number; cannot count its decimals.") from None


def _cell_number(cell) -> float:
    if cell is None or (isinstance(cell, str) and cell.strip() in _MISSING_CELLS):
        return math.nan
    return parse_number(cell)


# =========================================================================== loading
_cache: dict[tuple[str, int], dict] = {}


def load_claims(path: str | Path | None = None) -> dict:
    """Read and validate the claims file.

    Args:
        path: a JSON file laid out like the packaged one (default :data:`CLAIMS_FILE`).

    Returns:
        The whole file as a dict (a fresh copy: edit it freely and pass it as ``claims=`` to the
        other functions).

    Raises:
        ClaimsError: the file is malformed; the message lists every problem found.
    """
    p = Path(path) if path is not None else CLAIMS_FILE
    if not p.is_file():
        raise ClaimsError(f"claims file not found: {p}. It ships inside the package; reinstall with "
                          "`pip install -e .` (package-data must list 'paper_claims.json').")
    key = (str(p.resolve()), p.stat().st_mtime_ns)
    if key not in _cache:
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ClaimsError(f"{p} is not valid JSON: {exc}. Fix the file (a missing comma or quote).") from None
        problems = validate_claims(data)
        if problems:
            listed = "\n  - ".join(problems)
            raise ClaimsError(f"{p} has {len(problems)} problem(s):\n  - {listed}")
        _cache[key] = data
    return copy.deepcopy(_cache[key])


def _data(claims: dict | None) -> dict:
    return load_claims() if claims is None else claims


def validate_claims(data: Mapping) -> list[str]:
    """Every problem of a claims dict, as sentences (empty list: the dict is well formed).

    Checks: required sections; unique ids; each claim's ``float`` equals its parsed ``value``;
    provenance (a known source, a location, a verbatim quote unless the status is ``project``,
    a known status); per-version values parse and agree with ``value``; references between
    claims resolve; table cells parse; each text-vs-code entry has both sides.
    """
    out: list[str] = []
    for key in ("claims", "tables", "sources", "statuses", "text_vs_code", "code_settings"):
        if key not in data:
            out.append(f"missing top-level section {key!r}")
    if out:
        return out
    ids = _claim_problems(data, out)
    _table_problems(data, ids, out)
    _text_vs_code_problems(data, out)
    return out


def _claim_problems(data: Mapping, out: list[str]) -> set[str]:
    """Append the problems of ``data["claims"]`` to ``out``; returns the claim ids."""
    sources, statuses = data["sources"], data["statuses"]
    ids: set[str] = set()
    for i, c in enumerate(data["claims"]):
        cid = c.get("id") or f"claims[{i}]"
        if cid in ids:
            out.append(f"{cid}: duplicate id")
        ids.add(cid)
        for f in ("value", "float", "unit", "what", "where", "status"):
            if f not in c:
                out.append(f"{cid}: missing field {f!r}")
        if "value" in c and "float" in c:
            try:
                parsed = parse_number(c["value"])
                if not isinstance(c["float"], (int, float)) or not math.isclose(parsed, c["float"], rel_tol=1e-12):
                    out.append(f"{cid}: float {c['float']!r} differs from the printed value {c['value']!r} "
                               f"(parses to {parsed!r})")
            except ValueError as exc:
                out.append(f"{cid}: {exc}")
        if c.get("status") not in statuses:
            out.append(f"{cid}: status {c.get('status')!r} is not one of {sorted(statuses)}")
        w = c.get("where", {})
        if w.get("source") not in sources:
            out.append(f"{cid}: where.source {w.get('source')!r} is not a key of 'sources'")
        if not str(w.get("location", "")).strip():
            out.append(f"{cid}: where.location is empty; say where the number is printed")
        if not str(w.get("quote", "")).strip() and c.get("status") != "project":
            out.append(f"{cid}: where.quote is empty; quote the passage (only status 'project' may lack one)")
        if w.get("version") not in _PAPER_VERSIONS + ("release",):
            out.append(f"{cid}: where.version {w.get('version')!r} is not v1, v2 or release")
        for ver, printed in (c.get("versions") or {}).items():
            if ver not in _PAPER_VERSIONS:
                out.append(f"{cid}: versions key {ver!r} is not v1 or v2")
            try:
                parse_number(printed)
            except ValueError as exc:
                out.append(f"{cid}: versions[{ver!r}]: {exc}")
        if w.get("version") in (c.get("versions") or {}) and c["versions"][w["version"]] != c.get("value"):
            out.append(f"{cid}: value {c.get('value')!r} differs from versions[{w['version']!r}] "
                       f"{c['versions'][w['version']]!r}")
    for c in data["claims"]:
        for ref in list(c.get("denominators", [])) + ([c["gain_of"]] if c.get("gain_of") else []):
            if ref not in ids:
                out.append(f"{c.get('id')}: refers to unknown claim {ref!r}")
    return ids


def _table_problems(data: Mapping, ids: set[str], out: list[str]) -> None:
    """Append the problems of ``data["tables"]`` to ``out`` (``ids``: the known claim ids)."""
    sources = data["sources"]
    for n, t in data["tables"].items():
        where = f"tables[{n!r}]"
        if t.get("status") not in TABLE_STATUSES:
            out.append(f"{where}: status {t.get('status')!r} is not one of {TABLE_STATUSES}")
        if t.get("where", {}).get("source") not in sources:
            out.append(f"{where}: where.source is not a key of 'sources'")
        rows = t.get("rows", [])
        if t.get("status") == "transcribed" and not rows:
            out.append(f"{where}: status 'transcribed' but no rows")
        if t.get("status") == "not_transcribed" and rows:
            out.append(f"{where}: has rows but status 'not_transcribed'; set it to 'partial' or 'transcribed'")
        for ref in (t.get("n_pos"), t.get("n_neg")):
            if ref is not None and ref not in ids:
                out.append(f"{where}: refers to unknown claim {ref!r}")
        for j, row in enumerate(rows):
            if not str(row.get("model", "")).strip():
                out.append(f"{where}.rows[{j}]: missing 'model' (the name as printed)")
            mid = row.get("model_id")
            if mid is not None and t.get("expected_models") and mid not in t["expected_models"]:
                out.append(f"{where}.rows[{j}]: model_id {mid!r} is not one of {t['expected_models']} (use null "
                           "for a model this project does not build)")
            for col in t.get("columns", []):
                if col not in row:
                    out.append(f"{where}.rows[{j}] ({row.get('model')}): missing column {col!r} (use '-' if the "
                               "paper leaves it empty)")
                    continue
                cell = row[col]
                if not isinstance(cell, str):
                    out.append(f"{where}.rows[{j}].{col}: {cell!r} must be a string as printed")
                    continue
                if col not in t.get("text_columns", []) and cell.strip() not in _MISSING_CELLS:
                    try:
                        parse_number(cell)
                    except ValueError as exc:
                        out.append(f"{where}.rows[{j}].{col}: {exc}")


def _text_vs_code_problems(data: Mapping, out: list[str]) -> None:
    """Append the problems of ``data["text_vs_code"]`` to ``out``."""
    sources = data["sources"]
    seen: set[str] = set()
    for k, e in enumerate(data["text_vs_code"]):
        eid = e.get("id") or f"text_vs_code[{k}]"
        if eid in seen:
            out.append(f"{eid}: duplicate text_vs_code id")
        seen.add(eid)
        for side in ("text", "code"):
            s = e.get(side)
            if not isinstance(s, Mapping):
                out.append(f"{eid}: missing side {side!r}")
                continue
            if not str(s.get("quote", "")).strip() and not str(s.get("note", "")).strip():
                out.append(f"{eid}.{side}: give a verbatim quote, or a note saying it was not found")
            if s.get("source") and s["source"] not in sources:
                out.append(f"{eid}.{side}: source {s['source']!r} is not a key of 'sources'")
        if e.get("code", {}).get("source") not in sources:
            out.append(f"{eid}.code: needs a source from 'sources'")
        if not str(e.get("consequence", "")).strip():
            out.append(f"{eid}: say what the difference changes ('consequence')")


# =========================================================================== claims
@dataclass(frozen=True)
class Where:
    """Where a claim is printed: ``source`` (key of the file's ``sources``), paper ``version``
    (``v1``/``v2``, or ``release`` for the released code and data), ``location`` (table, section),
    a verbatim ``quote`` and the source's ``url``."""

    source: str
    version: str
    location: str
    quote: str
    url: str


@dataclass(frozen=True)
class Claim:
    """One numeric claim.

    Attributes:
        id: stable key, e.g. ``"headline.accuracy"``.
        value: the number exactly as printed (string, trailing zeros kept).
        number: ``value`` parsed to float.
        unit: ``"%"``, ``"fraction"``, ``"images"``, ...
        what: what it measures, in words.
        where: :class:`Where` it is printed.
        status: how we know it: ``paper``, ``code``, ``data``, ``third_party`` or ``project``.
        versions: the value as printed in each paper version where it was read (``{"v1": "93.18",
            "v2": "93.182"}``).
        version_note: how v1 and v2 differ, in words.
        denominators: ids of the count claims an accuracy must be a fraction of.
        gain_of: for a gain, the id of the claim it is a gain of.
    """

    id: str
    value: str
    number: float
    unit: str
    what: str
    where: Where
    status: str
    versions: Mapping[str, str] = field(default_factory=dict)
    version_note: str = ""
    denominators: tuple[str, ...] = ()
    gain_of: str | None = None

    @property
    def label(self) -> str:
        """One line for a table or a figure: ``"93.182 % (paper v2, Abstract)"``."""
        unit = "" if self.unit in ("", "fraction") else (" %" if self.unit == "%" else f" {self.unit}")
        origin = {"paper": "paper", "code": "released code", "data": "released data",
                  "third_party": "third-party summary",
                  "project": "as cited by this project"}.get(self.status, self.status)
        where = self.where.version if self.where.version != "release" else ""
        return f"{self.value}{unit} ({origin}{' ' + where if where else ''}, {self.where.location})"

    @property
    def differs_between_versions(self) -> bool | None:
        """True when v1 and v2 print it differently; None unless both versions were read."""
        if not all(v in self.versions for v in _PAPER_VERSIONS):
            return None
        return self.versions["v1"] != self.versions["v2"]


def _claim_from(c: Mapping, sources: Mapping) -> Claim:
    w = c["where"]
    return Claim(
        id=c["id"], value=c["value"], number=float(c["float"]), unit=c["unit"], what=c["what"],
        where=Where(w["source"], w["version"], w["location"], w.get("quote", ""),
                    sources[w["source"]].get("url", "")),
        status=c["status"], versions=dict(c.get("versions") or {}), version_note=c.get("version_note", ""),
        denominators=tuple(c.get("denominators", [])), gain_of=c.get("gain_of"),
    )


def claim(claim_id: str, claims: dict | None = None) -> Claim:
    """The claim ``claim_id`` as a :class:`Claim` (value string, parsed number, provenance).

    Raises:
        KeyError: unknown id, with the closest known ids.
    """
    d = _data(claims)
    for c in d["claims"]:
        if c["id"] == claim_id:
            return _claim_from(c, d["sources"])
    known = [c["id"] for c in d["claims"]]
    close = difflib.get_close_matches(claim_id, known, n=3, cutoff=0.4)
    raise KeyError(f"no claim {claim_id!r} in the claims file. Closest: {close or 'none'}; all ids: "
                   "skinlesion_utils.paper.claims_table().index.")


def claims_table(claims: dict | None = None) -> pd.DataFrame:
    """All claims, one row each, indexed by id.

    Returns:
        DataFrame with columns ``value`` (string as printed), ``number`` (float), ``unit``,
        ``status``, ``source``, ``version``, ``location``, ``v1``, ``v2`` (as printed in each
        version, empty when not read), ``differs`` (v1 and v2 print it differently; None unless
        both read), ``what``, ``url``.
    """
    d = _data(claims)
    rows = []
    for c in d["claims"]:
        cl = _claim_from(c, d["sources"])
        rows.append({
            "id": cl.id, "value": cl.value, "number": cl.number, "unit": cl.unit, "status": cl.status,
            "source": cl.where.source, "version": cl.where.version, "location": cl.where.location,
            "v1": cl.versions.get("v1", ""), "v2": cl.versions.get("v2", ""),
            "differs": cl.differs_between_versions, "what": cl.what, "url": cl.where.url,
        })
    return pd.DataFrame(rows).set_index("id")


# =========================================================================== tables
def _table_entry(n: int | str, d: dict) -> dict:
    key = str(n)
    if key not in d["tables"]:
        raise KeyError(f"the claims file has no Table {n}; it has Tables {sorted(d['tables'])}.")
    return d["tables"][key]


def table(n: int | str, numeric: bool = False, strict: bool = True, claims: dict | None = None) -> pd.DataFrame:
    """Table ``n`` of the paper as a DataFrame, models as rows.

    Args:
        n: table number (1-4).
        numeric: parse every cell to float (``'-'`` and empty cells become NaN); default keeps the
            strings as printed. The table's ``text_columns`` (Table 1's optimizer) stay strings.
        strict: raise when the table has no rows yet; ``False`` returns an empty frame with the
            declared columns.

    Returns:
        DataFrame indexed by the model name as printed, with ``model_id`` (the
        :func:`skinlesion_utils.models.build_model` name, or None) and the table's columns.
        ``df.attrs`` holds ``title``, ``status``, ``where`` and ``what``.

    Raises:
        ClaimsNotTranscribed: the table has no rows and ``strict`` is true.
    """
    d = _data(claims)
    t = _table_entry(n, d)
    cols = list(t["columns"])
    if not t["rows"] and strict:
        raise ClaimsNotTranscribed(
            f"Table {n} of the paper ({t['title']}) is not transcribed in {CLAIMS_FILE.name} "
            f"(status {t['status']!r}, no rows): the paper's tables could not be read by the project's tools. "
            f"Fix: copy its rows from the PDF into tables.{n}.rows as strings exactly as printed, with columns "
            f"{cols} and 'model'/'model_id', set its status, and run `pytest tests/test_paper.py`; or call "
            f"table({n}, strict=False) for the empty frame."
        )
    rows = [{"model": r["model"], "model_id": r.get("model_id"), **{c: r.get(c) for c in cols}} for r in t["rows"]]
    df = pd.DataFrame(rows, columns=["model", "model_id", *cols]).set_index("model")
    if numeric:
        for c in cols:
            if c in t.get("text_columns", []):
                continue
            df[c] = [_cell_number(v) for v in df[c]]
            df[c] = df[c].astype(float)
    df.attrs.update(title=t["title"], status=t["status"], where=dict(t["where"]), what=t.get("what", ""))
    return df


# =========================================================================== text vs code
def text_vs_code(kind: str | None = None, claims: dict | None = None) -> pd.DataFrame:
    """Every documented difference between the paper's text and its released code (``kind="code"``)
    or data (``kind="data"``); both by default.

    Returns:
        DataFrame indexed by id with ``topic``, ``kind``, ``text`` (the paper's words, or a note
        saying the passage was not found), ``text_source``, ``code`` (the code's words),
        ``code_source``, ``consequence``.
    """
    d = _data(claims)
    rows = []
    for e in d["text_vs_code"]:
        if kind is not None and e.get("kind") != kind:
            continue
        t, c = e["text"], e["code"]
        text = t.get("quote") or f"(not found) {t.get('note', '')}".strip()
        if t.get("quote") and t.get("note"):
            text = f"{t['quote']} [{t['note']}]"
        rows.append({
            "id": e["id"], "topic": e["topic"], "kind": e.get("kind", "code"), "text": text,
            "text_source": t.get("source", ""), "code": c.get("quote", ""),
            "code_source": c.get("file") or c.get("source", ""), "consequence": e["consequence"],
        })
    cols = ["id", "topic", "kind", "text", "text_source", "code", "code_source", "consequence"]
    return pd.DataFrame(rows, columns=cols).set_index("id")


# =========================================================================== recipe
def _model_names(d: dict) -> list[str]:
    return list(d["tables"]["2"]["expected_models"])


def paper_recipe(model_name: str, claims: dict | None = None) -> dict:
    """The paper's training protocol for one model, for the training engine's ``paper`` recipe.

    Precedence, field by field: the model's row of the paper's Table 1 (when transcribed) >
    the model's released script > the setting shared by every released script.

    Args:
        model_name: a :func:`skinlesion_utils.models.build_model` name (``lenet5`` ...
            ``asff_resnet50``).

    Returns:
        dict with ``optimizer`` (``"adam"``/``"adamw"``/``"sgd"``), ``lr`` (float),
        ``weight_decay`` (float), ``schedule`` (``"constant"``), ``batch_size`` (int),
        ``epochs`` (int), ``augmentation`` (dict of :class:`skinlesion_utils.augment.AugmentConfig`
        fields), ``pretrained`` (what the released script loads, or None), ``script`` (its file,
        or None) and ``sources`` (``{field: where the value comes from}``).

    Raises:
        ValueError: unknown model name, listing the valid ones.
    """
    d = _data(claims)
    names = _model_names(d)
    if model_name not in names:
        raise ValueError(f"unknown model {model_name!r} for the paper recipe; expected one of {names}.")
    cs = d["code_settings"]
    shared = cs["shared"]
    commit = cs.get("commit", "")[:7]
    src_shared = f"released code @{commit}: setting shared by every script"
    recipe: dict[str, Any] = {
        "optimizer": shared["optimizer"].lower(), "lr": parse_number(shared["lr"]),
        "weight_decay": parse_number(shared["weight_decay"]), "schedule": shared["schedule"],
        "batch_size": int(parse_number(shared["batch_size"])), "epochs": int(parse_number(shared["epochs"])),
        "augmentation": dict(shared["augmentation"]), "pretrained": None, "script": None,
    }
    sources = {k: src_shared for k in ("optimizer", "lr", "weight_decay", "schedule", "batch_size", "epochs",
                                        "augmentation")}
    script = cs["scripts"].get(model_name)
    if script is not None:
        recipe["script"] = script["file"]
        recipe["pretrained"] = script.get("pretrained")
        src = f"released code @{commit}: {script['file']}"
        sources.update(pretrained=src, script=src)
        for k in ("optimizer", "lr", "weight_decay"):
            if k in script:
                recipe[k] = script[k].lower() if k == "optimizer" else parse_number(script[k])
                sources[k] = src
        for k in ("optimizer", "lr", "weight_decay", "schedule", "batch_size", "epochs", "augmentation"):
            if sources[k] == src_shared:
                sources[k] = f"{src} (shared setting)"
    else:
        sources.update(pretrained=f"no released script: {cs['no_script'].get(model_name, 'not found')}",
                       script="no released script")
    t1 = d["tables"]["1"]
    row = next((r for r in t1["rows"] if r.get("model_id") == model_name), None)
    if row is not None:
        src = f"paper {t1['where']['version']} Table 1 (row {row['model']!r})"
        mapping = {"optimizer": "optimizer", "learning_rate": "lr", "batch_size": "batch_size", "epochs": "epochs"}
        for col, key in mapping.items():
            cell = row.get(col)
            if cell is None or str(cell).strip() in _MISSING_CELLS:
                continue
            if key == "optimizer":
                recipe[key] = str(cell).strip().lower()
            elif key in ("batch_size", "epochs"):
                recipe[key] = int(parse_number(cell))
            else:
                recipe[key] = parse_number(cell)
            sources[key] = src
    recipe["sources"] = sources
    return recipe


def recipe_table(claims: dict | None = None) -> dict[str, dict]:
    """:func:`paper_recipe` for every model: ``{model_name: recipe}`` (what
    ``train.Recipe.for_model`` needs: each recipe has ``optimizer`` and ``lr``)."""
    d = _data(claims)
    return {name: paper_recipe(name, claims=d) for name in _model_names(d)}


# =========================================================================== arithmetic
def _within(exact, printed: float, decimals: int) -> np.ndarray:
    return np.abs(np.asarray(exact, dtype=float) - printed) <= 0.5 * 10.0 ** (-decimals) + 1e-9


def check_accuracy(printed: str, n: int) -> dict:
    """Is a printed accuracy (percent) ``100 k / n`` for some integer ``k``, at its printed precision?

    Args:
        printed: the accuracy as printed, in percent (``"93.182"``).
        n: number of images it was measured on.

    Returns:
        dict with ``check``, ``printed``, ``n``, ``verdict`` (``"consistent"`` /
        ``"inconsistent"``), ``k`` (nearest integer), ``exact`` (``100 k / n``), ``gap``
        (printed - exact, points), ``candidates`` (every k that rounds to it) and ``detail``
        (one sentence).
    """
    r = verdicts.nearest_fraction(printed, int(n))
    verdict = "consistent" if r["consistent"] else "inconsistent"
    if r["consistent"]:
        detail = (f"{printed} % = {', '.join(f'{k}/{n}' for k in r['candidates'])} "
                  f"({r['exact']:.4f} %) at {r['decimals']} decimals")
    else:
        detail = (f"no k/{n} rounds to {printed} at {r['decimals']} decimals; nearest {r['k']}/{n} = "
                  f"{r['exact']:.4f} % (gap {r['gap']:+.4f} points)")
    return {"check": f"accuracy = k/{n}", "printed": printed, "n": int(n), "verdict": verdict, "k": r["k"],
            "exact": r["exact"], "gap": r["gap"], "candidates": r["candidates"], "detail": detail}


def check_recall_specificity(recall: str, specificity: str, n_pos: int, n_neg: int,
                             accuracy: str | None = None) -> dict:
    """Do a printed recall and specificity (percent) come from integer counts, and do they imply
    the printed accuracy?

    Args:
        recall, specificity: as printed, percent.
        n_pos, n_neg: malignant and benign images (300 and 360 on the paper's test set).
        accuracy: the printed accuracy, percent, or None.

    Returns:
        dict with ``check``, ``verdict`` (``"consistent"``: some integer ``tp``, ``tn`` round to
        the printed recall and specificity and, when given, to the printed accuracy;
        ``"inconsistent"`` otherwise), ``implied_accuracy`` (percent, from the printed values),
        ``accuracy_min``/``accuracy_max`` over the fitting counts, ``n_candidates`` and ``detail``.
    """
    r = verdicts.accuracy_from_recall_specificity(recall, specificity, int(n_pos), int(n_neg), accuracy=accuracy)
    cands = r["candidates"]
    if not r["consistent"]:
        verdict = "inconsistent"
        detail = (f"no integer tp/{n_pos} rounds to recall {recall} or no tn/{n_neg} to specificity {specificity}")
    elif accuracy is not None and not r["accuracy_consistent"]:
        verdict = "inconsistent"
        detail = (f"recall {recall} and specificity {specificity} give accuracies "
                  f"{r['accuracy_min']:.4f}-{r['accuracy_max']:.4f} %, none rounds to the printed {accuracy}")
    else:
        verdict = "consistent"
        fits = cands[cands["matches_accuracy"]] if accuracy is not None else cands
        pairs = ", ".join(f"tp={a} tn={b}" for a, b in zip(fits["tp"].head(3), fits["tn"].head(3)))
        detail = f"fits {pairs}" + (" ..." if len(fits) > 3 else "")
    return {"check": f"recall & specificity -> accuracy (n_pos={n_pos}, n_neg={n_neg})", "verdict": verdict,
            "implied_accuracy": r["implied_accuracy"], "accuracy_min": r["accuracy_min"],
            "accuracy_max": r["accuracy_max"], "n_candidates": int(len(cands)), "detail": detail}


def check_gain(gain: str, value: str, n: int) -> dict:
    """Is a printed gain the difference between the printed accuracy and some achievable baseline?

    Both readings are tried: percentage points, ``100 (k - k0) / n``, and relative percent,
    ``100 (k - k0) / k0``, where ``k`` is any count that rounds to ``value`` and ``k0`` any
    baseline count in ``0..n``.

    Args:
        gain: the gain as printed, percent (``"2.224"``).
        value: the improved model's accuracy as printed, percent.
        n: images both accuracies were measured on.

    Returns:
        dict with ``check``, ``verdict`` (``"consistent"`` when either reading fits; ``"not
        checkable"`` when ``value`` itself is no k/n), ``points`` and ``relative`` (lists of
        fitting baseline accuracies, percent) and ``detail``.
    """
    g = parse_number(gain)
    dg = decimals_of(gain)
    acc = verdicts.nearest_fraction(value, int(n))
    base = {"check": f"gain over some k0/{n}", "printed": gain, "n": int(n)}
    if not acc["consistent"]:
        return {**base, "verdict": "not checkable", "points": [], "relative": [],
                "detail": f"{value} is itself no k/{n}, so no baseline count can be tested"}
    k0 = np.arange(int(n) + 1)
    points, relative = [], []
    for k in acc["candidates"]:
        pp = 100.0 * (k - k0) / n
        points += [100.0 * b / n for b in k0[_within(pp, g, dg)]]
        with np.errstate(divide="ignore", invalid="ignore"):
            rel = np.where(k0 > 0, 100.0 * (k - k0) / np.maximum(k0, 1), np.nan)
        relative += [100.0 * b / n for b in k0[_within(rel, g, dg)]]
    if points or relative:
        parts = []
        if points:
            parts.append("as points from baseline " + ", ".join(f"{p:.3f} %" for p in points))
        if relative:
            parts.append("as relative gain from baseline " + ", ".join(f"{p:.3f} %" for p in relative))
        verdict, detail = "consistent", "; ".join(parts)
    else:
        verdict = "inconsistent"
        detail = (f"no baseline k0/{n} gives a gain of {gain} over {value} %, neither in percentage points "
                  "nor relative (so it refers to another metric or other data, is a mean over runs, "
                  "or is mis-printed)")
    return {**base, "verdict": verdict, "points": points, "relative": relative, "detail": detail}


def _count(d: dict, ref: str) -> int:
    return int(_claim_from(next(c for c in d["claims"] if c["id"] == ref), d["sources"]).number)


def arithmetic_checks(claims: dict | None = None) -> pd.DataFrame:
    """Every arithmetic check that can be computed from the claims file.

    * each percentage claim with ``denominators``: :func:`check_accuracy` against each count, for
      the value and for every other version's printing of it;
    * each gain claim (``gain_of``): :func:`check_gain` against each count;
    * each row of Tables 2-4: :func:`check_accuracy` of its accuracy (n = n_pos + n_neg) and
      :func:`check_recall_specificity` of its recall, specificity and accuracy.

    Returns:
        DataFrame with one row per check: ``subject`` (claim id, or ``"Table 2: <model>"``),
        ``check``, ``printed``, ``n``, ``verdict`` (one of :data:`ARITHMETIC_VERDICTS`), ``detail``.
    """
    d = _data(claims)
    by_id = {c["id"]: c for c in d["claims"]}
    rows = []
    for c in d["claims"]:
        if c.get("unit") != "%" or not c.get("denominators"):
            continue
        # the value as printed, plus every other version's printing of it (v1 "93.18" vs v2 "93.182")
        base0 = None
        if c.get("gain_of"):  # the improved value as printed in the same paper version as the gain
            g = by_id[c["gain_of"]]
            base0 = (g.get("versions") or {}).get(c["where"]["version"], g["value"])
        printings = [(c["id"], c["value"], base0)]
        for ver, printed in (c.get("versions") or {}).items():
            if printed != c["value"]:
                base = c.get("gain_of") and by_id[c["gain_of"]].get("versions", {}).get(ver)
                printings.append((f"{c['id']} ({ver})", printed, base or None))
        for ref in c["denominators"]:
            n = _count(d, ref)
            for subject, printed, base in printings:
                if c.get("gain_of"):
                    if base is None:
                        continue
                    r = check_gain(printed, base, n)
                else:
                    r = check_accuracy(printed, n)
                rows.append({"subject": subject, "check": f"{r['check']} ({ref})", "printed": printed, "n": n,
                             "verdict": r["verdict"], "detail": r["detail"]})
    for key, t in d["tables"].items():
        if "accuracy" not in t.get("columns", []) or not t.get("n_pos"):
            continue
        n_pos, n_neg = _count(d, t["n_pos"]), _count(d, t["n_neg"])
        for row in t["rows"]:
            subj = f"Table {key}: {row['model']}"
            acc = row.get("accuracy")
            if acc is None or str(acc).strip() in _MISSING_CELLS:
                rows.append({"subject": subj, "check": "accuracy", "printed": acc, "n": n_pos + n_neg,
                             "verdict": "not checkable", "detail": "no accuracy printed"})
                continue
            r = check_accuracy(acc, n_pos + n_neg)
            rows.append({"subject": subj, "check": r["check"], "printed": acc, "n": n_pos + n_neg,
                         "verdict": r["verdict"], "detail": r["detail"]})
            rec, spe = row.get("recall"), row.get("specificity")
            if any(v is None or str(v).strip() in _MISSING_CELLS for v in (rec, spe)):
                rows.append({"subject": subj, "check": "recall & specificity -> accuracy", "printed": acc,
                             "n": n_pos + n_neg, "verdict": "not checkable",
                             "detail": "recall or specificity not printed"})
                continue
            r = check_recall_specificity(rec, spe, n_pos, n_neg, accuracy=acc)
            rows.append({"subject": subj, "check": r["check"], "printed": f"{rec} / {spe} / {acc}",
                         "n": n_pos + n_neg, "verdict": r["verdict"], "detail": r["detail"]})
    return pd.DataFrame(rows, columns=["subject", "check", "printed", "n", "verdict", "detail"])


# =========================================================================== the paper's tables on a page
def paper_table_or_note(n: int, claim_ids: Iterable[str] = (), claims: dict | None = None
                        ) -> tuple[pd.DataFrame | None, str, pd.DataFrame]:
    """The paper's Table ``n`` if it was transcribed, else a note saying it could not be
    (chapters 02 and 06 show it beside their own results).

    Args:
        n: table number (2: baselines, 3: fusion ablation).
        claim_ids: ids of related claims to list in any case (e.g. ``"headline.accuracy"``).
        claims: an edited claims dict (:func:`load_claims`); default the packaged file.

    Returns:
        ``(table or None, note, claims)``: the table as printed (strings, percent) when its status
        is ``transcribed``/``partial``; a one-paragraph note on its status; and the claims that do
        exist (``value`` as printed, ``unit``, ``what``, ``status``, ``version``, ``location``).
    """
    t = table(n, strict=False, claims=claims)
    status = t.attrs.get("status", "unknown")
    where = t.attrs.get("where", {})
    if len(t):
        note = (f"Table {n} of the paper ({t.attrs.get('title', '')}), status '{status}', as printed in "
                f"{where.get('version', '')} {where.get('location', '')}.")
        shown = t
    else:
        note = (f"Table {n} of the paper ({t.attrs.get('title', '')}) could not be transcribed: the paper's "
                f"sections with its tables were not readable with the project's tools (status '{status}' in "
                "skinlesion_utils/paper_claims.json). No number of it is shown or invented here; the claims "
                "below are the ones the project could read, each with its source.")
        shown = None
    ct = claims_table(claims=claims)
    ids = [c for c in claim_ids if c in ct.index]
    return shown, note, ct.loc[ids, ["value", "unit", "what", "status", "version", "location"]]
