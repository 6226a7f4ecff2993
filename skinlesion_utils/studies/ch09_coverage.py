"""Chapter 09's coverage of the paper (``chapters/09_reproduction_audit``): every number the paper
prints, answered — by the claims register (:func:`skinlesion_utils.studies.ch09_audit.claims_register`:
results, Tables 2–4 cell by cell), or here.

What this module owns
---------------------
* :func:`other_numbers` — one row per number the register does not measure: the paper's settings
  (Table 1, section 3.1, the released code's defaults), its data counts, its method's sizes, and
  the numbers it quotes from elsewhere (prior work, epidemiology, its own figure). Each gets a
  verdict computed here where the data or the code can check it (``holds`` / ``does not hold``),
  or the precise reason it is not a result to reproduce.
* :func:`paper_coverage` — for every number of ``paper_claims.json`` (claims and every cell of
  Tables 1–4) where the page answers it, and the line "N of M numbers of the paper addressed".
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from .. import data, fusion, models, paper
from ..errors import ConfigError

__all__ = ["OTHER_VERDICTS", "other_numbers", "table1_settings", "paper_coverage", "coverage_line"]

#: The verdicts of :func:`other_numbers` and :func:`table1_settings`: checked against the course
#: data or the code, or why a number is not a result this book could reproduce.
OTHER_VERDICTS = ("holds", "does not hold", "a setting", "not a result", "not measurable here")

#: Why a quoted number is not a result of the paper, by the first part of its claim id.
_QUOTED = {
    "prior": ("not a result", "a figure of prior work, quoted by the paper for comparison; it is that work's "
                              "result, not this paper's"),
    "intro": ("not a result", "an epidemiological statistic the introduction cites; not a result of the study"),
    "fig6": ("not measurable here", "read off the paper's Figure 6 curves, whose data are not published; the "
                                    "book's curves (chapters 02, 05) are its own runs"),
    "hardware": ("not a result", "a description of the authors' machine"),
}


def _fc_layers(fusion_name: str = "asff_text") -> int:
    """Fully connected layers of the book's weight branch of ``fusion_name`` (eq. 7's ω)."""
    with torch.device("meta"):
        module = fusion.FUSION_CLASSES[fusion_name](1024, 2048)
    return sum(isinstance(m, torch.nn.Linear) for m in module.modules())


def _compare(value: float, paper_value: float) -> str:
    return "holds" if np.isclose(value, paper_value) else "does not hold"


def _register_value(register: pd.DataFrame | None, cid: str, profile: str = "ci") -> float | None:
    if register is None or cid not in register.index:
        return None
    v = register.loc[cid, f"{profile}_value"]
    return None if pd.isna(v) else float(v)


def _checked_rows(d: dict, register: pd.DataFrame | None) -> dict[str, tuple[str, str, str]]:
    """``{claim id: (verdict, ours, evidence)}`` for the numbers the data or the code can check."""
    counts = data.dataset_table("isic_balanced")
    sides = {k: v[-1] for k, v in models.layer_shapes(models.build_on_meta("resnet50"), 224).items()}
    n_train, n_test = int(counts.loc["train", "total"]), int(counts.loc["test", "total"])
    ext = data.dataset_table(data.external_dataset_name()).iloc[-1]  # the last row is the whole set
    ext_note = (f"the course data holds {int(ext['total']):,} images of it ({int(ext['benign']):,} benign, "
                f"{int(ext['malignant']):,} malignant), a sample, so the whole set's counts cannot be counted here")
    c = {cid: paper.claim(cid, claims=d).number for cid in (
        "baselines.count", "ablation.variants", "data.paper_benign", "data.paper_malignant", "data.split_ratio",
        "method.layer3_size", "method.layer4_size", "method.fc_layers", "method.levels_fused")}
    t3_rows = len(paper.table(3, claims=d))
    out = {
        "baselines.count": (_compare(len(models.BASELINES), c["baselines.count"]), str(len(models.BASELINES)),
                            "models.BASELINES: the eleven models chapter 02 trains"),
        "ablation.variants": (_compare(t3_rows, c["ablation.variants"]), str(t3_rows),
                              f"Table 3 prints {t3_rows} rows; the book's ablation (chapter 06) trains "
                              f"{len(fusion.FUSIONS)} variants, these four among them"),
        "data.paper_benign": (_compare(int(counts.loc["total", "benign"]), c["data.paper_benign"]),
                              f"{int(counts.loc['total', 'benign']):,}", "benign images in the released data's manifest"),
        "data.paper_malignant": (_compare(int(counts.loc["total", "malignant"]), c["data.paper_malignant"]),
                                 f"{int(counts.loc['total', 'malignant']):,}",
                                 "malignant images in the released data's manifest"),
        "data.split_ratio": ("holds" if round(n_train / n_test) == round(c["data.split_ratio"]) else "does not hold",
                             f"{n_train / n_test:.3f}", f"{n_train:,} training : {n_test:,} test images in the manifest"),
        "method.layer3_size": (_compare(sides["layer3"], c["method.layer3_size"]), str(sides["layer3"]),
                               "torchvision ResNet-50's layer3 at 224 px (conv4_block6_out), computed on the meta device"),
        "method.layer4_size": (_compare(sides["layer4"], c["method.layer4_size"]), str(sides["layer4"]),
                               "torchvision ResNet-50's layer4 at 224 px (conv5_block3_out)"),
        "method.fc_layers": (_compare(_fc_layers("asff_text"), c["method.fc_layers"]), str(_fc_layers("asff_text")),
                             "Linear layers of the book's asff_text weight branch (chapter 03)"),
        "method.levels_fused": (_compare(2, c["method.levels_fused"]), "2",
                                "every fusion of the book takes layer3 and layer4 (fusion.FUSION_CLASSES)"),
        "data.external_paper_benign": ("not measurable here", "—", ext_note),
        "data.external_paper_malignant": ("not measurable here", "—", ext_note),
        "method.asff_levels_yolov3": ("not a result", "—", "describes YOLOv3's ASFF (Liu et al.), not the paper's "
                                                           "two-level model; chapter 03 says what carries over"),
    }
    a, b = _register_value(register, "table4.asff_resnet50.accuracy"), _register_value(register, "table4.resnet50.accuracy")
    gain = "—" if a is None or b is None else f"{100 * (a - b):+.2f} points"
    out["gain.external_over_resnet50"] = (
        "not measurable here", gain,
        "ASFF − ResNet-50 accuracy on the external set from the register's Table 4 rows (ci: 64 px, from scratch), "
        "not the paper's setting, so it decides nothing (section 1)")
    return out


def other_numbers(claims: dict | None = None, register: pd.DataFrame | None = None) -> pd.DataFrame:
    """Every claim of ``paper_claims.json`` that the claims register does not measure, answered.

    Args:
        claims: an edited claims dict (default :func:`skinlesion_utils.paper.load_claims`).
        register: :func:`~skinlesion_utils.studies.ch09_audit.claims_register`'s table (indexed by
            ``id``): its claims are left out here, and its Table 4 rows give the external gain.

    Returns:
        DataFrame indexed by ``id`` with ``paper`` (as printed), ``unit``, ``where``, ``verdict``
        (one of :data:`OTHER_VERDICTS`), ``ours`` (our value where one exists, else ``"—"``) and
        ``evidence`` (what was checked, or why the number is not a result to reproduce).
    """
    d = claims if claims is not None else paper.load_claims()
    measured = set() if register is None else set(register.index)
    checked = _checked_rows(d, register)
    rows = []
    for raw in d["claims"]:
        cid = raw["id"]
        if cid in measured:
            continue
        head = cid.split(".")[0]
        if cid in checked:
            verdict, ours, evidence = checked[cid]
        elif head in _QUOTED:
            (verdict, evidence), ours = _QUOTED[head], "—"
        elif head in ("code", "paper"):
            verdict, ours = "a setting", "—"
            evidence = ("a training setting, not a result: the `released_code` recipe takes it (chapters 02 and 04 "
                        "print the recipes beside the budgets this book trains with)" if head == "code" else
                        "a training setting, not a result: the `paper` recipe takes it (chapters 02 and 04)")
        else:
            raise ConfigError(f"claim {cid!r} is neither in the register nor answered by ch09_coverage. "
                              "Fix: add it to ch09_audit.REGISTER or give its group a rule in ch09_coverage.")
        rows.append({"id": cid, "paper": raw["value"], "unit": raw.get("unit", ""),
                     "where": raw["where"]["location"], "verdict": verdict, "ours": ours, "evidence": evidence})
    return pd.DataFrame(rows, columns=["id", "paper", "unit", "where", "verdict", "ours", "evidence"]).set_index("id")


def table1_settings(claims: dict | None = None) -> pd.DataFrame:
    """Every cell of the paper's Table 1 (optimizer and learning rate per model): a setting, with
    what the book does with it and what the released code uses instead.

    Returns:
        DataFrame indexed by ``id`` (``table1.<model>.<column>``) with ``paper``, ``verdict``
        (``"a setting"``), ``released_code`` (what the released scripts use instead) and ``evidence``.
    """
    d = claims if claims is not None else paper.load_claims()
    t1 = d["tables"]["1"]
    both = paper.recipe_comparison(claims=d)
    code_col = {"optimizer": "code_optimizer", "learning_rate": "code_lr"}
    rows = []
    for r in t1["rows"]:
        mid = r["model_id"]
        for col in t1["columns"]:
            code = both.loc[mid, code_col[col]] if mid in both.index else None
            rows.append({"id": f"table1.{mid}.{col}", "paper": r[col], "verdict": "a setting",
                         "released_code": "—" if code is None or pd.isna(code) else str(code),
                         "evidence": f"the `paper` recipe trains {mid} with it; chapter 02 prints it beside the "
                                     "released code's"})
    return pd.DataFrame(rows).set_index("id")


def paper_coverage(register: pd.DataFrame, other: pd.DataFrame, table1: pd.DataFrame,
                   claims: dict | None = None) -> pd.DataFrame:
    """Where the page answers each number of ``paper_claims.json``: every claim and every cell of
    Tables 1–4, one row per source (claims, Table 1 … Table 4).

    Returns:
        DataFrame indexed by ``source`` with ``numbers`` (how many the paper prints there),
        ``addressed`` (how many have a verdict in the register, :func:`other_numbers` or
        :func:`table1_settings`) and one column per verdict with its count.
    """
    d = claims if claims is not None else paper.load_claims()
    verdict_of: dict[str, str] = {}
    for frame in (register, other, table1):
        verdict_of.update(frame["verdict"].astype(str).to_dict())
    groups: dict[str, list[str]] = {"text (claims)": [c["id"] for c in d["claims"]]}
    groups["Table 1"] = list(table1_settings(claims=d).index)
    for k in ("2", "3", "4"):
        t = paper.table(int(k), claims=d)
        groups[f"Table {k}"] = [f"table{k}.{m}.{col}" for m in t["model_id"] for col in t.columns if col != "model_id"]
    rows = []
    for source, ids in groups.items():
        got = [verdict_of[i] for i in ids if i in verdict_of and verdict_of[i]]
        rows.append({"source": source, "numbers": len(ids), "addressed": len(got),
                     **pd.Series(got, dtype=str).value_counts().to_dict()})
    return pd.DataFrame(rows).set_index("source").fillna(0).astype(int)


def coverage_line(coverage: pd.DataFrame) -> str:
    """``"N of M numbers of the paper addressed"`` with the verdicts behind N."""
    n, m = int(coverage["addressed"].sum()), int(coverage["numbers"].sum())
    counts = coverage.drop(columns=["numbers", "addressed"]).sum().sort_values(ascending=False)
    return f"{n} of {m} numbers of the paper addressed: " + ", ".join(f"{int(v)} {k}" for k, v in counts.items() if v)
