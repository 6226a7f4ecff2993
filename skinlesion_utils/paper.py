"""The paper's claims as data: one JSON file with provenance, and the functions that read it.

Taught in chapter 09 (``chapters/09_reproduction_audit``); chapters 02 (baselines), 05
(evaluation), 06 (ablation) and 08 (external validation) read the paper's numbers from here
and never type them.

What this module owns
---------------------
* ``paper_claims.json`` (next to this file, shipped with the package): every number printed in
  arXiv 2510.03876v2 (and the v1 abstract), each with its provenance (source, paper version v1/v2,
  location, a verbatim quote) and a status saying *how* we know it (``paper``, ``code``,
  ``data``, ``third_party``, ``project``); the paper's Tables 1-4; the settings of the released
  Keras scripts; and every documented difference between the paper's text and its code or data.
  Values are kept as **strings exactly as printed** (``"0.9670"`` keeps its trailing zero, which
  says how precisely it was rounded) next to the parsed float.
* Reading it: :func:`load_claims`, :func:`claim`, :func:`claims_table`, :func:`table`,
  :func:`text_vs_code`.
* The training recipes per model: ``paper`` = the paper's Table 1 (:func:`paper_recipe`),
  ``released_code`` = the released scripts (:func:`released_code_recipe`); both through
  :func:`recipe_table`, side by side in :func:`recipe_comparison`.
* Arithmetic checks of the printed numbers (is an accuracy ``k / 660`` for an integer ``k``? do
  the printed recall and specificity imply the printed accuracy? is a printed gain the
  difference of two achievable accuracies?): :func:`check_accuracy`,
  :func:`check_recall_specificity`, :func:`check_gain` (in :mod:`skinlesion_utils.verdicts`) and
  :func:`arithmetic_checks`, which runs them over every claim and table row; their verdicts are
  :data:`ARITHMETIC_VERDICTS`. One verdict per table row (k/n, implied accuracy, F1 from
  precision and recall, one confusion matrix for all five cells, Table 4's averaging):
  :func:`table_consistency`, built on :func:`skinlesion_utils.verdicts.row_consistency`.
* Printed facts that are not numbers (software versions, hardware, the baselines' names):
  the ``settings`` section, read with :func:`setting` and :func:`settings_table`.
* The paper's Tables 2-4 next to a chapter's own measured rows, with our intervals:
  :func:`beside_ours` (chapters 02, 06 and 08).

Every function takes an optional ``claims`` argument (a dict as returned by :func:`load_claims`)
so that a chapter or a test can work on an edited copy; by default the packaged file is used.

The tables were transcribed from ``shared/paper/tables.csv`` and
``shared/paper/table1_hyperparameters.csv`` (the paper's v2 text read whole); each row is
``{"model": "<name as printed>", "model_id": "<build_model name or fusion mode>", "<column>":
"<string as printed>", ...}`` and a table's ``unit`` is ``"%"`` or ``"fraction"`` (Table 4).
``tests/test_paper.py`` compares every cell with the CSVs and with the text; the loader refuses
a file whose numbers do not parse or whose provenance is missing.
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

import pandas as pd

from .errors import ConfigError
from .verdicts import check_accuracy, check_gain, check_recall_specificity, row_consistency, to_percent
from .errors import ClaimsError, ClaimsNotTranscribed  # noqa: F401 (re-exported)

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
    "setting",
    "settings_table",
    "table",
    "text_vs_code",
    "paper_recipe",
    "released_code_recipe",
    "RECIPE_SOURCES",
    "recipe_table",
    "recipe_comparison",
    "arithmetic_checks",
    "arithmetic_subject_id",
    "table_consistency",
    "beside_ours",
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


# =========================================================================== numbers
_THOUSANDS = re.compile(r"^[+-]?\d{1,3}(,\d{3})+(\.\d+)?$")


def parse_number(text: str) -> float:
    """A number as printed -> float: ``"3,297"`` -> 3297.0, ``"+2.224"`` -> 2.224, ``"93.18%"``
    -> 93.18, ``"1e-5"`` -> 1e-05.

    Raises:
        ValueError: the text is not a number, with the text in the message.
    """
    if not isinstance(text, str):
        raise ConfigError(f"expected the number as a string (as printed), found {type(text).__name__} {text!r}; "
                         "write it in quotes in paper_claims.json.")
    s = text.strip().rstrip("%").strip()
    if _THOUSANDS.match(s):
        s = s.replace(",", "")
    try:
        return float(s)
    except ValueError:
        raise ConfigError(f"{text!r} is not a number; expected digits as printed, e.g. '93.182', '0.9670', "
                         "'3,297' or '1e-5'.") from None


def decimals_of(text: str) -> int:
    """Decimal places as printed: ``"93.10"`` -> 2, ``"0.9670"`` -> 4, ``"3,297"`` -> 0."""
    s = text.strip().rstrip("%").strip().lstrip("+")
    if _THOUSANDS.match(s):
        s = s.replace(",", "")
    try:
        return max(0, -Decimal(s).as_tuple().exponent)
    except InvalidOperation:
        raise ConfigError(f"{text!r} is not a number; cannot count its decimals.") from None


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
    a known status); a ``paper`` claim's printed string (``printed`` when the paper writes it
    in words, "eleven", "4:1"; else ``value``) occurs in its quote and in each ``also_in``
    quote (every other place the paper prints it); per-version values parse and agree with
    ``value``; references between claims resolve; table cells parse and a table's ``unit`` is
    ``%`` or ``fraction``; each text-vs-code entry has both sides; each entry of the optional
    ``settings`` (printed facts that are not numbers) has a known source and status and a
    value that occurs in its quote.
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
    _settings_problems(data, out)
    return out


def _quote_problems(cid: str, printed: str, w: Mapping, out: list[str]) -> None:
    """A paper claim's printed string must occur in its quote (and in every ``also_in`` quote)."""
    for k, place in enumerate([w, *w.get("also_in", [])]):
        label = cid if k == 0 else f"{cid}.also_in[{k - 1}]"
        if not str(place.get("location", "")).strip():
            out.append(f"{label}: empty location")
        if printed not in str(place.get("quote", "")):
            out.append(f"{label}: the printed {printed!r} does not occur in its quote {place.get('quote', '')!r}")


def _settings_problems(data: Mapping, out: list[str]) -> None:
    """Append the problems of the optional ``data["settings"]`` (printed facts that are not numbers)."""
    seen: set[str] = set()
    for k, e in enumerate(data.get("settings", [])):
        sid = e.get("id") or f"settings[{k}]"
        if sid in seen:
            out.append(f"{sid}: duplicate setting id")
        seen.add(sid)
        w = e.get("where", {})
        if w.get("source") not in data["sources"]:
            out.append(f"{sid}: where.source {w.get('source')!r} is not a key of 'sources'")
        if e.get("status") not in data["statuses"]:
            out.append(f"{sid}: status {e.get('status')!r} is not one of {sorted(data['statuses'])}")
        if not str(e.get("value", "")).strip() or str(e.get("value")) not in str(w.get("quote", "")):
            out.append(f"{sid}: value {e.get('value')!r} must be a non-empty string that occurs in its quote")


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
        if c.get("status") == "paper":
            _quote_problems(cid, str(c.get("printed") or c.get("value", "")),
                            {**w, "also_in": c.get("also_in", [])}, out)
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
        if t.get("unit", "%") not in ("%", "fraction"):
            out.append(f"{where}: unit {t.get('unit')!r} is not '%' or 'fraction'")
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
        printed: the exact printed string when the paper writes the number in words or as a
            ratio (``"eleven"``, ``"4:1"``); empty when ``value`` is what is printed.
        also_in: every other place the paper prints the same number, as ``Where`` objects.
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
    printed: str = ""
    also_in: tuple[Where, ...] = ()

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
        denominators=tuple(c.get("denominators", [])), gain_of=c.get("gain_of"), printed=c.get("printed", ""),
        also_in=tuple(Where(w["source"], w["version"], a["location"], a["quote"], sources[w["source"]].get("url", ""))
                      for a in c.get("also_in", [])),
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


def setting(setting_id: str, claims: dict | None = None) -> dict:
    """A printed fact that is not a number (``"software.python"`` -> ``{"value": "3.10.13", ...}``).

    Raises:
        KeyError: unknown id, listing the known ones.
    """
    d = _data(claims)
    for e in d.get("settings", []):
        if e["id"] == setting_id:
            return copy.deepcopy(e)
    raise KeyError(f"no setting {setting_id!r}; known: {[e['id'] for e in d.get('settings', [])]}")


def settings_table(claims: dict | None = None) -> pd.DataFrame:
    """Every setting, indexed by id: ``value``, ``what``, ``location``, ``quote``, ``status``."""
    d = _data(claims)
    rows = [{"id": e["id"], "value": e["value"], "what": e["what"], "location": e["where"]["location"],
             "quote": e["where"]["quote"], "status": e["status"]} for e in d.get("settings", [])]
    return pd.DataFrame(rows, columns=["id", "value", "what", "location", "quote", "status"]).set_index("id")


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
    """Every model of the paper: Table 1's rows (the eleven baselines and ASFF ResNet-50)."""
    return list(d["tables"]["1"]["expected_models"])


def _check_model(model_name: str, d: dict) -> None:
    names = _model_names(d)
    if model_name not in names:
        raise ConfigError(f"unknown model {model_name!r} for the paper's recipes; expected one of {names}.")


def released_code_recipe(model_name: str, claims: dict | None = None) -> dict:
    """What the released scripts do for one model (the training engine's ``released_code`` recipe).

    Precedence, field by field: the model's released script > the setting shared by every released
    script. Models without a script get the shared setting (their ``sources`` say so).

    Args:
        model_name: a :func:`skinlesion_utils.models.build_model` name (``lenet5`` ... ``asff_resnet50``).

    Returns:
        dict with ``optimizer`` (``"adam"``/``"adamw"``/``"sgd"``), ``lr`` (float), ``weight_decay``
        (float), ``schedule`` (``"constant"``), ``batch_size`` (int), ``epochs`` (int), ``augmentation``
        (dict of :class:`skinlesion_utils.augment.AugmentConfig` fields), ``pretrained`` (what the
        released script loads, or None), ``script`` (its file, or None), ``validation`` (what the
        script validates on) and ``sources`` (``{field: where the value comes from}``).

    Raises:
        ValueError: unknown model name, listing the valid ones.
    """
    d = _data(claims)
    _check_model(model_name, d)
    cs = d["code_settings"]
    shared = cs["shared"]
    commit = cs.get("commit", "")[:7]
    src_shared = f"released code @{commit}: setting shared by every script"
    recipe: dict[str, Any] = {
        "optimizer": shared["optimizer"].lower(), "lr": parse_number(shared["lr"]),
        "weight_decay": parse_number(shared["weight_decay"]), "schedule": shared["schedule"],
        "batch_size": int(parse_number(shared["batch_size"])), "epochs": int(parse_number(shared["epochs"])),
        "augmentation": dict(shared["augmentation"]), "pretrained": None, "script": None,
        "validation": shared.get("validation_data", ""),
    }
    sources = {k: src_shared for k in ("optimizer", "lr", "weight_decay", "schedule", "batch_size", "epochs",
                                        "augmentation", "validation")}
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
        for k in sources:
            if sources[k] == src_shared:
                sources[k] = f"{src} (shared setting)"
    else:
        sources.update(pretrained=f"no released script: {cs['no_script'].get(model_name, 'not found')}",
                       script="no released script")
    recipe["sources"] = sources
    return recipe


def paper_recipe(model_name: str, claims: dict | None = None) -> dict:
    """The paper's training protocol for one model (the training engine's ``paper`` recipe).

    The optimizer and learning rate are the model's row of the paper's Table 1, the epochs the
    claim ``paper.epochs`` (section 3.1: "All models were trained for 500 epochs"). Everything the
    paper does not print (batch size, schedule, weight decay, augmentation, pretraining) is taken
    from :func:`released_code_recipe`, and its ``sources`` entry says "not printed in the paper".
    A model without a Table 1 row (only possible in an edited claims dict) keeps the released
    code's optimizer and learning rate, with sources saying so.

    Returns:
        the same fields as :func:`released_code_recipe` (``validation`` too: the paper names none,
        so it is the released code's); ``sources`` per field.

    Raises:
        ValueError: unknown model name, listing the valid ones.
    """
    d = _data(claims)
    recipe = released_code_recipe(model_name, claims=d)
    sources = {k: f"not printed in the paper; {v}" for k, v in recipe.pop("sources").items()}
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
    else:
        for key in ("optimizer", "lr"):
            sources[key] = f"no Table 1 row for {model_name!r}; {sources[key]}"
    if "Table 1" not in sources["epochs"] and any(c["id"] == "paper.epochs" for c in d["claims"]):
        ep = claim("paper.epochs", claims=d)
        recipe["epochs"] = int(ep.number)
        sources["epochs"] = f"paper {ep.where.version} {ep.where.location} ('{ep.where.quote}')"
    recipe["sources"] = sources
    return recipe


#: The recipes :func:`recipe_table` knows, by the training engine's names.
RECIPE_SOURCES = {"paper": paper_recipe, "released_code": released_code_recipe}


def recipe_table(claims: dict | None = None, recipe: str = "paper") -> dict[str, dict]:
    """One recipe for every model of Table 1: ``{model_name: recipe}`` (what
    ``train.Recipe.for_model`` needs: each has ``optimizer`` and ``lr``).

    Args:
        recipe: ``"paper"`` (:func:`paper_recipe`, Table 1 per model) or ``"released_code"``
            (:func:`released_code_recipe`, the released scripts).
    """
    if recipe not in RECIPE_SOURCES:
        raise ConfigError(f"unknown recipe {recipe!r}; expected one of {sorted(RECIPE_SOURCES)}.")
    d = _data(claims)
    return {name: RECIPE_SOURCES[recipe](name, claims=d) for name in _model_names(d)}


def recipe_comparison(models: Iterable[str] | None = None, claims: dict | None = None) -> pd.DataFrame:
    """The ``paper`` and ``released_code`` recipes side by side, per model (chapters 02 and 04).

    Returns:
        DataFrame indexed by model with ``paper_optimizer``, ``paper_lr``, ``code_optimizer``,
        ``code_lr``, ``epochs`` (paper / code, e.g. ``"500 / 500"``), ``script`` and ``differs``
        (a short list of what differs: ``"optimizer, lr"``; empty when nothing does).
    """
    d = _data(claims)
    names = list(models) if models is not None else _model_names(d)
    rows = []
    for name in names:
        p, c = paper_recipe(name, claims=d), released_code_recipe(name, claims=d)
        diff = [k for k in ("optimizer", "lr", "epochs") if p[k] != c[k]]
        rows.append({"model": name, "paper_optimizer": p["optimizer"], "paper_lr": p["lr"],
                     "code_optimizer": c["optimizer"], "code_lr": c["lr"], "epochs": f"{p['epochs']} / {c['epochs']}",
                     "script": c["script"] or "— (no script)", "differs": ", ".join(diff)})
    return pd.DataFrame(rows).set_index("model")


# =========================================================================== arithmetic
def _count(d: dict, ref: str) -> int:
    return int(_claim_from(next(c for c in d["claims"] if c["id"] == ref), d["sources"]).number)


def arithmetic_checks(claims: dict | None = None) -> pd.DataFrame:
    """Every arithmetic check that can be computed from the claims file.

    * each percentage claim with ``denominators``: :func:`check_accuracy` against each count, for
      the value and for every other version's printing of it;
    * each gain claim (``gain_of``): :func:`check_gain` against each count;
    * each row of Tables 2-4: :func:`check_accuracy` of its accuracy (n = n_pos + n_neg) and
      :func:`check_recall_specificity` of its recall, specificity and accuracy (Table 4's
      fractions are read as percent at their printed precision, ``"0.8015"`` -> ``"80.15"``).

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
        for raw in t["rows"]:
            row = {k: (to_percent(v, t.get("unit", "%")) if k in t["columns"] and isinstance(v, str)
                       and v.strip() not in _MISSING_CELLS else v) for k, v in raw.items()}
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


def arithmetic_subject_id(subject: str) -> str:
    """The claim id an :func:`arithmetic_checks` ``subject`` speaks of (the inverse of how it names
    them): ``"Table 2: LeNet-5"`` → ``"table2.lenet5"`` (the row's ``model_id``, else its printed
    name, as chapter 09's register names a cell ``table<N>.<row>.<column>``),
    ``"headline.accuracy (v1)"`` → ``"headline.accuracy"``."""
    if not subject.startswith("Table "):
        return subject.split(" ")[0]
    n, model = subject[len("Table "):].split(": ", 1)
    rows = load_claims()["tables"][n]["rows"]
    ids = {r["model"]: r.get("model_id") or r["model"] for r in rows}
    return f"table{n}.{ids[model]}"


def table_consistency(n: int | str, claims: dict | None = None) -> pd.DataFrame:
    """One verdict per row of the paper's Table ``n`` (2, 3 or 4):
    :func:`skinlesion_utils.verdicts.row_consistency` on the set the table says it was measured
    on (``n_pos``/``n_neg``) or, for a table with ``set_sizes`` (Table 4), on each set it could
    have been measured on instead.

    Returns:
        the DataFrame of ``row_consistency`` with ``table`` and ``set`` (which set size the row
        was tested against, e.g. ``"300 + 360"``) in front, indexed by row name.
    """
    d = _data(claims)
    t = _table_entry(n, d)
    rows = table(n, claims=d)
    sizes = t.get("set_sizes") or {"test set": [t["n_pos"], t["n_neg"]]}
    parts = []
    for label, (pos, neg) in sizes.items():
        n_pos, n_neg = _count(d, pos), _count(d, neg)
        r = row_consistency(rows, n_pos, n_neg, unit=t.get("unit", "%"))
        r.insert(0, "set", f"{label}: {n_pos} + {n_neg}")
        r.insert(0, "table", str(n))
        parts.append(r)
    return pd.concat(parts)


# =========================================================================== the paper's tables on a page
def beside_ours(n: int | str, ours: pd.DataFrame, ids: Mapping[str, str] | None = None,
                claims: dict | None = None) -> pd.DataFrame:
    """The paper's Table ``n`` next to our measured rows, metric by metric (chapters 02, 06, 08).

    Args:
        n: table number (2, 3 or 4).
        ours: our results, indexed by our label, with ``<metric>`` and ``<metric>_low`` /
            ``<metric>_high`` (95 % interval) as fractions for any of the table's columns (a
            metric we did not measure is shown as ``"—"``).
        ids: ``{our label: the table's model_id}`` where they differ (e.g. ``{"asff_text": "asff"}``).
        claims: an edited claims dict (:func:`load_claims`); default the packaged file.

    Returns:
        DataFrame indexed by the paper's row name (every row of the table, in its order):
        ``ours`` (our label, ``"—"`` when we have no such row), then per metric ``<metric> paper``
        (percent, as printed; Table 4's fractions converted with their precision) and
        ``<metric> ours`` (percent, ``"86.9 [84.4, 89.5]"``), and ``paper in our CI`` (how many
        of the metrics we measured have the paper's value, as a rounding interval, inside our
        interval: ``"1 of 5"``). ``attrs``: ``title``, ``where``, ``unit`` of the paper's table.
    """
    d = _data(claims)
    t = _table_entry(n, d)
    paper_rows = table(n, claims=d)
    unit = t.get("unit", "%")
    by_id = {(ids or {}).get(label, label): label for label in ours.index}
    out = []
    for name, row in paper_rows.iterrows():
        label = by_id.get(row["model_id"])
        rec: dict[str, Any] = {"model": name, "ours": label if label is not None else "—"}
        inside = measured = 0
        for col in t["columns"]:
            printed = to_percent(row[col], unit)
            rec[f"{col} paper"] = printed
            have = label is not None and all(c in ours.columns for c in (col, f"{col}_low", f"{col}_high"))
            if not have or pd.isna(ours.loc[label, col]):
                rec[f"{col} ours"] = "—"
                continue
            v, lo, hi = (100 * float(ours.loc[label, c]) for c in (col, f"{col}_low", f"{col}_high"))
            rec[f"{col} ours"] = f"{v:.1f} [{lo:.1f}, {hi:.1f}]"
            h = 0.5 * 10.0 ** (-decimals_of(printed))
            measured += 1
            inside += int(parse_number(printed) + h >= lo and parse_number(printed) - h <= hi)
        rec["paper in our CI"] = f"{inside} of {measured}" if measured else "—"
        out.append(rec)
    df = pd.DataFrame(out).set_index("model")
    df.attrs.update(title=t["title"], where=dict(t["where"]), unit=unit)
    return df
