"""Tests of skinlesion_utils.paper: the claims file parses, carries provenance, its numbers are
the strings it prints, its counts match the released data, and the arithmetic checks and the
paper recipe work on every entry. No verdict about the paper is typed here: every expected
outcome is computed independently (brute force over integer counts, the data manifests)."""
from __future__ import annotations

import copy
import csv
import json
import math
from decimal import ROUND_HALF_EVEN, ROUND_HALF_UP, Decimal
from importlib import resources
from pathlib import Path

import pandas as pd
import pytest

from skinlesion_utils import paper as P, verdicts

RAW = json.loads(P.CLAIMS_FILE.read_text(encoding="utf-8"))


def _claims():
    return P.load_claims()


def _rounds_to(exact: Decimal, printed: str) -> bool:
    """Independent reference: does exact round (half up or half even) to the printed string?"""
    q = Decimal(printed)
    step = Decimal(1).scaleb(q.as_tuple().exponent)
    return any(exact.quantize(step, rounding=m) == q for m in (ROUND_HALF_UP, ROUND_HALF_EVEN))


def _brute_force_k(printed: str, n: int) -> list[int]:
    return [k for k in range(n + 1) if _rounds_to(Decimal(100 * k) / Decimal(n), printed)]


# ----------------------------------------------------------------------------- the file
def test_file_is_packaged_and_parses():
    assert (resources.files("skinlesion_utils") / "paper_claims.json").is_file()
    data = _claims()
    assert P.validate_claims(RAW) == []
    assert data["claims"] == RAW["claims"]
    assert len({c["id"] for c in data["claims"]}) == len(data["claims"])


def test_load_returns_an_independent_copy():
    a = _claims()
    a["claims"][0]["value"] = "0"
    assert _claims()["claims"][0]["value"] == RAW["claims"][0]["value"]


@pytest.mark.parametrize("entry", RAW["claims"], ids=[c["id"] for c in RAW["claims"]])
def test_every_claim_has_provenance_and_its_float_is_its_string(entry):
    c = P.claim(entry["id"])
    assert c.value == entry["value"] and isinstance(c.value, str)
    assert c.number == P.parse_number(entry["value"]) == entry["float"]
    assert c.where.source in RAW["sources"] and c.where.location.strip()
    assert c.status in RAW["statuses"]
    assert c.where.version in ("v1", "v2", "release")
    if c.status != "project":
        assert c.where.quote.strip(), f"{c.id}: a claim we read must quote its passage"
    if c.status == "paper":
        assert c.where.url.startswith("https://arxiv.org/html/2510.03876")
        # the printed value occurs in the quoted sentence (3,297 / 93.182 / 0.9670 / "eleven" ...)
        assert (c.printed or c.value) in c.where.quote
        assert all((c.printed or c.value) in w.quote and w.location.strip() for w in c.also_in)
    for printed in c.versions.values():
        P.parse_number(printed)
    if c.where.version in c.versions:
        assert c.versions[c.where.version] == c.value
    for ref in c.denominators:
        assert P.claim(ref).unit == "images"
    assert c.label.startswith(c.value) and c.where.location in c.label


def test_validator_names_each_broken_entry():
    bad = copy.deepcopy(RAW)
    bad["claims"][0]["float"] = bad["claims"][0]["float"] + 1
    bad["claims"][1]["where"]["source"] = "nowhere"
    bad["claims"][2]["status"] = "rumour"
    bad["claims"][3]["where"]["quote"] = ""
    bad["tables"]["2"]["rows"] = [{"model": "ResNet-50", "model_id": "resnet50", "accuracy": "9x.1",
                                   "precision": "1", "recall": "1", "specificity": "1", "f1": "1"}]
    bad["tables"]["2"]["status"] = "not_transcribed"
    bad["tables"]["4"]["unit"] = "per mille"
    bad["claims"][4]["where"]["quote"] = "a sentence without the number"
    bad["settings"][0]["value"] = "9.99.9"
    problems = P.validate_claims(bad)
    text = "\n".join(problems)
    for c in bad["claims"][:5]:
        assert c["id"] in text
    assert "tables['2']" in text and "9x.1" in text and "not_transcribed" in text
    assert "per mille" in text and bad["settings"][0]["id"] in text and "does not occur in its quote" in text


def test_load_refuses_a_broken_file(tmp_path):
    bad = copy.deepcopy(RAW)
    bad["claims"][0]["float"] = 1.0
    path = tmp_path / "claims.json"
    path.write_text(json.dumps(bad))
    with pytest.raises(P.ClaimsError, match=RAW["claims"][0]["id"]):
        P.load_claims(path)
    path.write_text("{not json")
    with pytest.raises(P.ClaimsError, match="not valid JSON"):
        P.load_claims(path)


@pytest.mark.parametrize("text,expected", [("3,297", 3297.0), ("+2.224", 2.224), ("93.18%", 93.18),
                                           ("1e-5", 1e-5), ("0.9670", 0.967)])
def test_parse_number(text, expected):
    assert P.parse_number(text) == expected


def test_parse_number_rejects_non_numbers():
    with pytest.raises(ValueError, match="not a number"):
        P.parse_number("about 93")
    with pytest.raises(ValueError, match="as a string"):
        P.parse_number(93.18)
    assert P.decimals_of("0.9670") == 4 and P.decimals_of("3,297") == 0


def test_claim_unknown_id_suggests():
    with pytest.raises(KeyError, match="headline.accuracy"):
        P.claim("headline.acuracy")


def test_claims_table_rows_and_version_differences():
    df = P.claims_table()
    assert list(df.index) == [c["id"] for c in RAW["claims"]]
    for c in RAW["claims"]:
        v = c.get("versions") or {}
        expected = (v["v1"] != v["v2"]) if {"v1", "v2"} <= set(v) else None
        assert df.loc[c["id"], "differs"] == expected
        assert df.loc[c["id"], "value"] == c["value"]


# ----------------------------------------------------------------------------- data counts
@pytest.mark.parametrize("dataset,prefix", [("isic_balanced", "data."), ("isic2019_external", "data.external_")])
def test_count_claims_match_the_released_data(dataset, prefix):
    from skinlesion_utils import data as D

    counts = D.dataset_table(dataset)  # from the packaged sha256 manifests
    if prefix == "data.":
        pairs = {"train_benign": counts.loc["train", "benign"], "train_malignant": counts.loc["train", "malignant"],
                 "test_benign": counts.loc["test", "benign"], "test_malignant": counts.loc["test", "malignant"],
                 "test_total": counts.loc["test", "total"], "train_total": counts.loc["train", "total"],
                 "total_benign": counts.loc["total", "benign"], "total_malignant": counts.loc["total", "malignant"]}
        assert P.claim("data.total_images").number == counts.loc["total", "total"]
    else:
        pairs = {"total": counts.loc["total", "total"], "test_total": counts.loc["test", "total"],
                 "test_benign": counts.loc["test", "benign"], "test_malignant": counts.loc["test", "malignant"]}
    for name, n in pairs.items():
        assert P.claim(prefix + name).number == n, name


# ----------------------------------------------------------------------------- tables
def test_table_model_ids_are_build_model_names():
    from skinlesion_utils.models import list_models

    assert RAW["tables"]["1"]["expected_models"] == list_models()
    # Table 2 prints the eleven baselines only: ASFF-ResNet50's numbers are in Table 3
    assert RAW["tables"]["2"]["expected_models"] == [m for m in list_models() if m != "asff_resnet50"]
    assert set(RAW["tables"]["4"]["expected_models"]) <= set(list_models())
    assert set(RAW["code_settings"]["scripts"]) - {"efficientnet", "vit"} <= set(list_models())
    assert set(RAW["code_settings"]["no_script"]) <= set(list_models())
    assert set(RAW["code_settings"]["scripts"]) | set(RAW["code_settings"]["no_script"]) >= set(list_models())


@pytest.mark.parametrize("n", ["2", "3", "4"])
def test_transcribed_tables_cover_their_models(n):
    t = RAW["tables"][n]
    assert t["status"] == "transcribed" and t["rows"], f"Table {n} must be transcribed"
    df = P.table(n)
    assert list(df.columns) == ["model_id", *t["columns"]]
    assert set(t["expected_models"]) == set(df["model_id"].dropna()), "rows missing for some models"


@pytest.mark.parametrize("n", sorted(RAW["tables"]))
def test_table_numeric_and_the_not_transcribed_path(n):
    t = RAW["tables"][n]
    df = P.table(n, numeric=True)
    assert len(df) == len(t["rows"]) > 0
    empty = copy.deepcopy(RAW)
    empty["tables"][n].update(rows=[], status="not_transcribed")
    with pytest.raises(P.ClaimsNotTranscribed, match=rf"Table {n} .*strict=False"):
        P.table(n, claims=empty)
    e = P.table(n, strict=False, claims=empty)
    assert e.empty and list(e.columns) == ["model_id", *t["columns"]]


def _row_from_counts(model, model_id, tp, tn, n_pos, n_neg, decimals=2):
    """A Table-2 row printed from a real confusion matrix."""
    fp, fn = n_neg - tn, n_pos - tp
    f = lambda x: f"{100 * x:.{decimals}f}"  # noqa: E731
    return {"model": model, "model_id": model_id, "accuracy": f((tp + tn) / (n_pos + n_neg)),
            "precision": f(tp / (tp + fp)), "recall": f(tp / n_pos), "specificity": f(tn / n_neg),
            "f1": f(2 * tp / (2 * tp + fp + fn))}


def _with_table2(rows):
    d = _claims()
    d["tables"]["2"]["rows"] = rows
    d["tables"]["2"]["status"] = "partial"
    assert P.validate_claims(d) == []
    return d


def test_table_frame_from_rows_keeps_strings_and_parses_numbers():
    n_pos, n_neg = int(P.claim("data.test_malignant").number), int(P.claim("data.test_benign").number)
    rows = [_row_from_counts("ResNet-50", "resnet50", 270, 330, n_pos, n_neg, decimals=3),
            _row_from_counts("Odd model", None, 200, 300, n_pos, n_neg)]
    rows[1]["f1"] = "-"
    d = _with_table2(rows)
    s = P.table(2, claims=d)
    assert s.loc["ResNet-50", "accuracy"] == rows[0]["accuracy"] and isinstance(s.loc["ResNet-50", "recall"], str)
    x = P.table(2, numeric=True, claims=d)
    assert x.loc["ResNet-50", "recall"] == pytest.approx(100 * 270 / n_pos, abs=5e-4)
    assert math.isnan(x.loc["Odd model", "f1"]) and pd.isna(x.loc["Odd model", "model_id"])


# ----------------------------------------------------------------------------- arithmetic
def test_arithmetic_checks_cover_every_claim_and_row_with_wellformed_verdicts():
    df = P.arithmetic_checks()
    assert list(df.columns) == ["subject", "check", "printed", "n", "verdict", "detail"]
    assert df["verdict"].isin(P.ARITHMETIC_VERDICTS).all()
    assert df["detail"].map(lambda s: isinstance(s, str) and len(s) > 10).all()
    expected_subjects = {c["id"] for c in RAW["claims"] if c["unit"] == "%" and c.get("denominators")}
    assert expected_subjects <= set(df["subject"])
    for key in ("2", "3", "4"):
        for row in RAW["tables"][key]["rows"]:
            assert f"Table {key}: {row['model']}" in set(df["subject"])
    # every accuracy verdict agrees with an independent brute force over integer counts
    for _, r in df[df["check"].str.startswith("accuracy = k/")].iterrows():
        assert (r["verdict"] == "consistent") == bool(_brute_force_k(r["printed"], int(r["n"])))


def test_check_accuracy_matches_brute_force():
    n = int(P.claim("data.test_total").number)
    for k in (0, 1, 329, 602, 615, n):
        printed = f"{100 * k / n:.3f}"
        r = verdicts.check_accuracy(printed, n)
        assert r["verdict"] == "consistent" and r["candidates"] == _brute_force_k(printed, n)
        assert k in r["candidates"]
    off = f"{100 * 615 / n + 0.05:.2f}"  # half a twentieth of a point away from 615/660
    r = verdicts.check_accuracy(off, n)
    assert r["verdict"] == ("consistent" if _brute_force_k(off, n) else "inconsistent")


def test_recall_specificity_check_on_rows_printed_from_real_counts():
    n_pos, n_neg = int(P.claim("data.test_malignant").number), int(P.claim("data.test_benign").number)
    good = _row_from_counts("A", "alexnet", 281, 334, n_pos, n_neg)
    r = verdicts.check_recall_specificity(good["recall"], good["specificity"], n_pos, n_neg, accuracy=good["accuracy"])
    assert r["verdict"] == "consistent" and "tp=281 tn=334" in r["detail"]
    bad_acc = f"{float(good['accuracy']) + 0.5:.2f}"
    r = verdicts.check_recall_specificity(good["recall"], good["specificity"], n_pos, n_neg, accuracy=bad_acc)
    assert r["verdict"] == "inconsistent" and r["accuracy_min"] <= float(good["accuracy"]) + 0.01
    r = verdicts.check_recall_specificity("33.34", good["specificity"], n_pos, n_neg)  # no k/300 rounds to 33.34
    assert r["verdict"] == "inconsistent" and not _brute_force_k("33.34", n_pos)

    d = _with_table2([good, {**good, "model": "B", "model_id": "vgg16", "accuracy": bad_acc}])
    df = P.arithmetic_checks(claims=d)
    rs = df[df["check"].str.startswith("recall")].set_index("subject")["verdict"]
    assert rs["Table 2: A"] == "consistent" and rs["Table 2: B"] == "inconsistent"


def test_check_gain_finds_both_readings():
    n = 660
    top = f"{100 * 615 / n:.3f}"
    points = f"{100 * (615 - 600) / n:.3f}"
    r = verdicts.check_gain(points, top, n)
    assert r["verdict"] == "consistent" and any(abs(p - 100 * 600 / n) < 1e-9 for p in r["points"])
    relative = f"{100 * (615 - 590) / 590:.3f}"
    r = verdicts.check_gain(relative, top, n)
    assert r["verdict"] == "consistent" and any(abs(p - 100 * 590 / n) < 1e-9 for p in r["relative"])
    # a gain no integer baseline produces, found by brute force
    cand = next(f"{g / 1000:.3f}" for g in range(1000, 3000)
                if not any(_rounds_to(Decimal(100 * (615 - b)) / Decimal(n), f"{g / 1000:.3f}") or
                           (b and _rounds_to(Decimal(100 * (615 - b)) / Decimal(b), f"{g / 1000:.3f}"))
                           for b in range(n + 1)))
    assert verdicts.check_gain(cand, top, n)["verdict"] == "inconsistent"
    assert verdicts.check_gain("1.00", "33.34", 300)["verdict"] == "not checkable"


# ----------------------------------------------------------------------------- recipe
def test_both_recipes_for_every_model_are_usable_by_the_training_engine():
    from skinlesion_utils.augment import as_augment
    from skinlesion_utils.models import list_models

    shared = RAW["code_settings"]["shared"]
    t1 = {r["model_id"]: r for r in RAW["tables"]["1"]["rows"]}
    for recipe in ("paper", "released_code"):
        table = P.recipe_table(recipe=recipe)
        assert list(table) == list_models()
        for name in list_models():
            r = table[name]
            assert r["optimizer"] in ("adam", "adamw", "sgd") and r["lr"] > 0
            assert isinstance(r["batch_size"], int) and isinstance(r["epochs"], int)
            as_augment(r["augmentation"])  # a valid AugmentConfig
            assert set(r["sources"]) >= {"optimizer", "lr", "batch_size", "epochs", "augmentation"}
            if recipe == "paper":  # Table 1 per model, as printed
                assert r == P.paper_recipe(name)
                assert r["optimizer"] == t1[name]["optimizer"].lower()
                assert r["lr"] == P.parse_number(t1[name]["learning_rate"])
                assert "Table 1" in r["sources"]["lr"] and "not printed in the paper" in r["sources"]["batch_size"]
                assert r["epochs"] == P.claim("paper.epochs").number and "3.1" in r["sources"]["epochs"]
            else:  # the released scripts: one shared setting unless the script overrides it
                assert r == P.released_code_recipe(name)
                script = RAW["code_settings"]["scripts"].get(name)
                assert r["lr"] == P.parse_number((script or {}).get("lr", shared["lr"]))
                assert r["optimizer"] == (script or {}).get("optimizer", shared["optimizer"])
                assert r["validation"] == shared["validation_data"]
                if script is None:
                    assert r["script"] is None and "no released script" in r["sources"]["script"]
                else:
                    assert r["script"] == script["file"]
    with pytest.raises(ValueError, match="released_code"):
        P.recipe_table(recipe="keras")


def test_recipe_comparison_names_what_differs():
    df = P.recipe_comparison()
    t1 = {r["model_id"]: r for r in RAW["tables"]["1"]["rows"]}
    for name, row in df.iterrows():
        expect = [k for k, a, b in (("optimizer", t1[name]["optimizer"].lower(), row["code_optimizer"]),
                                    ("lr", P.parse_number(t1[name]["learning_rate"]), row["code_lr"])) if a != b]
        assert row["differs"].split(", ")[:len(expect)] == expect or row["differs"] == ", ".join(expect)
    # the headline comparison: ResNet-50 and ASFF-ResNet50 train differently in the paper
    assert (df.loc["resnet50", "paper_optimizer"], df.loc["resnet50", "paper_lr"]) != \
        (df.loc["asff_resnet50", "paper_optimizer"], df.loc["asff_resnet50", "paper_lr"])


def test_paper_recipe_prefers_table1_and_rejects_unknown_models():
    d = _claims()
    d["tables"]["1"]["rows"] = [{"model": "AlexNet", "model_id": "alexnet", "optimizer": "SGD",
                                 "learning_rate": "0.01", "batch_size": "64"}]
    d["tables"]["1"]["status"] = "partial"
    assert P.validate_claims(d) == []
    r = P.paper_recipe("alexnet", claims=d)
    assert (r["optimizer"], r["lr"], r["batch_size"]) == ("sgd", 0.01, 64)
    assert "Table 1" in r["sources"]["lr"] and "Table 1" not in r["sources"]["epochs"]
    # a model without a Table 1 row keeps the released code's optimizer and learning rate, and says so
    v = P.paper_recipe("vgg16", claims=d)
    assert v["lr"] == P.released_code_recipe("vgg16")["lr"] and "no Table 1 row" in v["sources"]["lr"]
    with pytest.raises(ValueError, match="asff_resnet50"):
        P.paper_recipe("resnet-50")


# ----------------------------------------------------------------------------- text vs code
def test_text_vs_code_entries_have_both_sides():
    df = P.text_vs_code()
    assert len(df) == len(RAW["text_vs_code"]) and df.index.is_unique
    assert set(df["kind"]) <= {"code", "data"}
    assert (df["code"].str.len() > 10).all() and (df["consequence"].str.len() > 20).all()
    assert df["text"].map(lambda s: bool(s.strip())).all()
    for e in RAW["text_vs_code"]:
        if not e["text"].get("quote"):
            assert df.loc[e["id"], "text"].startswith("(not found)")
    assert len(P.text_vs_code(kind="data")) + len(P.text_vs_code(kind="code")) == len(df)
    assert isinstance(P.text_vs_code(kind="data"), pd.DataFrame)


# ----------------------------------------------------------------------------- against the paper itself
SHARED_PAPER = Path(__file__).parents[2] / "shared" / "paper"
needs_paper = pytest.mark.skipif(not SHARED_PAPER.is_dir(),
                                 reason=f"the paper's transcription folder {SHARED_PAPER} is absent (it ships beside "
                                        "the repository in CI)")


@needs_paper
def test_tables_2_to_4_equal_the_transcribed_csv_cell_by_cell():
    with open(SHARED_PAPER / "tables.csv", newline="", encoding="utf-8") as fh:
        csv_rows = list(csv.DictReader(fh))
    for n in ("2", "3", "4"):
        want = [r for r in csv_rows if r["table"] == n]
        got = RAW["tables"][n]["rows"]
        assert [r["row"] for r in want] == [r["model"] for r in got], f"Table {n}: rows or their order differ"
        for w, g in zip(want, got):
            for col in RAW["tables"][n]["columns"]:
                assert g[col] == w[col], f"Table {n}, row {w['row']!r}, {col}: JSON {g[col]!r} vs CSV {w[col]!r}"


@needs_paper
def test_table_1_equals_the_transcribed_csv_cell_by_cell():
    with open(SHARED_PAPER / "table1_hyperparameters.csv", newline="", encoding="utf-8") as fh:
        want = list(csv.DictReader(fh))
    got = RAW["tables"]["1"]["rows"]
    assert [w["model"] for w in want] == [g["model"] for g in got]
    for w, g in zip(want, got):
        assert (g["learning_rate"], g["optimizer"]) == (w["learning_rate"], w["optimizer"]), w["model"]


@needs_paper
def test_every_table_row_and_quote_occurs_in_the_paper_text():
    text = (SHARED_PAPER / "arxiv-2510.03876v2.txt").read_text(encoding="utf-8")
    lines = set(text.splitlines())
    for n in ("2", "3", "4"):
        t = RAW["tables"][n]
        for r in t["rows"]:
            assert " ".join([r["model"], *(r[c] for c in t["columns"])]) in lines, (n, r["model"])
    # Table 1 is printed as two blocks of three lines: Model / LR / Optimizer
    rows = RAW["tables"]["1"]["rows"]
    for block in (rows[:6], rows[6:]):
        assert "Model " + " ".join(r["model"] for r in block) in lines
        assert "LR " + " ".join(r["learning_rate"] for r in block) in lines
        assert "Optimizer " + " ".join(r["optimizer"] for r in block) in lines
    for c in RAW["claims"] + RAW["settings"]:
        if c["status"] == "paper" and c["where"]["source"] == "paper_v2":
            for place in [c["where"], *c.get("also_in", [])]:
                assert place["quote"] in text, (c["id"], place["quote"])
    for e in RAW["text_vs_code"]:
        if e["text"].get("source") == "paper_v2" and e["text"].get("quote"):
            assert e["text"]["quote"] in text, e["id"]


def test_nothing_is_left_not_transcribed_and_coverage_says_what_was_read():
    assert all(t["status"] == "transcribed" for t in RAW["tables"].values())
    assert all(c["status"] != "project" for c in RAW["claims"]), "every claim the project cited is now read"
    read = " ".join(RAW["coverage"]["read"])
    assert "sections 1-4" in read and "Tables 1-4" in read
    assert not any("Tables 1-4" in s and "not readable" in s for s in RAW["coverage"]["not_read"])
    # the numbers of the conclusion, the data description and the abstract are all claims
    values = {(c.get("printed") or c["value"]) for c in RAW["claims"]}
    assert {"93.182", "2.224", "0.9670", "0.9717", "80.15", "3.63", "3,297", "1,800", "1,497", "4:1", "500",
            "1800", "1497", "eleven", "98.37", "0.80", "19", "11"} <= values
    assert {s["value"] for s in RAW["settings"]} >= {"3.10.13", "2.9.0", "Intel Core i9-9900K"}
    assert P.setting("software.tensorflow")["value"] == "2.9.0"
    st = P.settings_table()
    assert list(st.index) == [s["id"] for s in RAW["settings"]]
    with pytest.raises(KeyError, match="software.python"):
        P.setting("software.pyton")


def test_gains_are_differences_of_the_printed_table_cells():
    t3, t4 = P.table(3, numeric=True), P.table(4, numeric=True)
    base, asff = (t3.set_index("model_id").loc[k, "accuracy"] for k in ("none", "asff"))
    assert round(asff - base, 3) == P.claim("gain.accuracy_over_resnet50").number
    e = t4.set_index("model_id")["accuracy"]
    assert round(100 * (e["asff_resnet50"] - e["resnet50"]), 2) == P.claim("gain.external_over_resnet50").number
    assert round(100 * e["asff_resnet50"], 2) == P.claim("external.accuracy").number


def _brute_force_matrix(row: dict, n_pos: int, n_neg: int, scale: float) -> bool:
    """Independent reference: some integer (tp, tn) whose five metrics round to the printed cells."""
    fits = lambda exact, s: _rounds_to(Decimal(repr(exact * scale)), s)  # noqa: E731
    for tp in range(n_pos + 1):
        if not fits(tp / n_pos, row["recall"]):
            continue
        for tn in range(n_neg + 1):
            fp = n_neg - tn
            if (fits(tn / n_neg, row["specificity"]) and fits((tp + tn) / (n_pos + n_neg), row["accuracy"])
                    and tp + fp > 0 and fits(tp / (tp + fp), row["precision"])
                    and fits(2 * tp / (2 * tp + fp + n_pos - tp), row["f1"])):
                return True
    return False


@pytest.mark.parametrize("n", ["2", "3", "4"])
def test_table_consistency_agrees_with_a_brute_force_over_confusion_matrices(n):
    t = RAW["tables"][n]
    df = P.table_consistency(n)
    assert set(df["verdict"]) <= set(P.ARITHMETIC_VERDICTS)
    sizes = t.get("set_sizes") or {"test set": [t["n_pos"], t["n_neg"]]}
    assert len(df) == len(t["rows"]) * len(sizes)
    scale = 100.0 if t.get("unit", "%") == "%" else 1.0
    for label, (pos, neg) in sizes.items():
        n_pos, n_neg = int(P.claim(pos).number), int(P.claim(neg).number)
        part = df[df["set"].str.startswith(label)]
        for r in t["rows"]:
            expect = _brute_force_matrix(r, n_pos, n_neg, scale)
            got = part.loc[r["model"], "verdict"]
            # "consistent" needs one matrix for all five cells and every derived check
            assert (got == "consistent") <= expect, (label, r["model"])
            assert (part.loc[r["model"], "one_matrix"] != "none") == expect, (label, r["model"])
            equal = len({r["recall"], r["specificity"], r["accuracy"]}) == 1
            assert bool(part.loc[r["model"], "r_eq_s_eq_acc"]) == equal


def test_beside_ours_puts_our_intervals_next_to_the_printed_cells():
    t3 = P.table(3)
    cols = RAW["tables"]["3"]["columns"]
    printed = P.parse_number(t3.iloc[0]["accuracy"]) / 100
    ours = pd.DataFrame({**{c: [printed] for c in cols}, **{f"{c}_low": [printed - 0.01] for c in cols},
                         **{f"{c}_high": [printed + 0.01] for c in cols}}, index=["none"])
    ours.loc["asff_text"] = [0.5] * len(ours.columns)
    side = P.beside_ours(3, ours, ids={"asff_text": "asff"})
    assert list(side.index) == list(t3.index)
    first = side.iloc[0]
    assert first["ours"] == "none" and first["accuracy paper"] == t3.iloc[0]["accuracy"]
    assert first["accuracy ours"] == f"{100 * printed:.1f} [{100 * printed - 1:.1f}, {100 * printed + 1:.1f}]"
    inside = sum(abs(P.parse_number(t3.iloc[0][c]) - 100 * printed) <= 1 + 5e-4 for c in cols)
    assert first["paper in our CI"] == f"{inside} of {len(cols)}"
    asff_row = side[side["ours"] == "asff_text"].iloc[0]
    assert asff_row["paper in our CI"] == f"0 of {len(cols)}"
    assert (side[~side["ours"].isin(["none", "asff_text"])]["accuracy ours"] == "—").all()
    # Table 4 prints fractions: shown in percent at the printed precision
    side4 = P.beside_ours(4, pd.DataFrame(index=["x"]))
    assert side4.loc["ResNet-50", "accuracy paper"] == "76.52" and side4["paper in our CI"].eq("—").all()


def test_arithmetic_subjects_name_the_register_ids_they_check():
    assert P.arithmetic_subject_id("Table 2: LeNet-5") == "table2.lenet5"
    assert P.arithmetic_subject_id("headline.accuracy (v1)") == "headline.accuracy"
    with pytest.raises(KeyError):
        P.arithmetic_subject_id("Table 2: No Such Net")
