"""Tests of chapter 09's reproduction audit (skinlesion_utils.studies.ch09_audit): the claims register read against small synthetic
results folders (tmp_path), one per verdict path, plus the missing-file, missing-key and
unreadable-file paths; the interval rule, the setting rule, the data findings and the saved files.

Expected verdicts are not typed: each test builds a file whose interval does or does not contain
the paper's printed value (read from the claims file), so the expectation follows from the
construction."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from skinlesion_utils import data, paper, results, verdicts
from skinlesion_utils.studies import ch09_audit as R

CLAIMS = paper.load_claims()


def _write_csv(root: Path, profile: str, chapter: str, name: str, df: pd.DataFrame) -> Path:
    path = root / "results" / profile / chapter / name
    path.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(path)
    return path


def _write_json(root: Path, profile: str, chapter: str, name: str, obj) -> Path:
    path = root / "results" / profile / chapter / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))
    return path


def _metrics_ci(accuracy: tuple[float, float, float], roc=(0.8, 0.75, 0.85), pr=(0.8, 0.75, 0.85)) -> pd.DataFrame:
    """A chapter-05-like metrics_ci table (fractions; index 'metric')."""
    df = pd.DataFrame({"point": [accuracy[0], roc[0], pr[0]], "low": [accuracy[1], roc[1], pr[1]],
                       "high": [accuracy[2], roc[2], pr[2]]}, index=pd.Index(["accuracy", "roc_auc", "pr_auc"], name="metric"))
    return df


def _paper_fraction(claim_id: str) -> float:
    c = paper.claim(claim_id)
    return c.number / 100 if c.unit == "%" else c.number


# ----------------------------------------------------------------------------- the rules
def test_interval_verdict_reads_the_printed_value_as_its_rounding_interval():
    # "93.18" stands for [93.175, 93.185]: it overlaps an interval starting at 93.184, not one at 93.186
    assert R.interval_verdict("93.18", 93.184, 95.0) == "reproduced"
    assert R.interval_verdict("93.18", 93.186, 95.0) == "not reproduced"
    assert R.interval_verdict("93.180", 93.1806, 95.0) == "not reproduced"  # three decimals: [93.1795, 93.1805]
    assert R.interval_verdict("0.9670", 0.90, 0.96696) == "reproduced"
    assert R.interval_verdict("0.9670", 0.90, 0.9669) == "not reproduced"
    assert R.interval_verdict("3,297", 3297, 3297) == "reproduced"
    assert R.interval_verdict("3,297", 3296, 3296) == "not reproduced"
    with pytest.raises(ValueError, match="both bounds"):
        R.interval_verdict("93.18", float("nan"), 95.0)
    with pytest.raises(ValueError, match="low"):
        R.interval_verdict("93.18", 95.0, 90.0)


def test_paper_setting_and_comparable():
    want = R.paper_setting()
    assert want["image_size"] == int(paper.claim("code.image_size").number)
    assert want["pretrained"] is True
    ok, why = R.comparable({"image_size": 64, "pretrained": False, "epochs": 12})
    assert not ok and "64 px" in why and "from scratch" in why and f"{want['image_size']} px" in why
    assert R.comparable({"image_size": want["image_size"], "pretrained": True, "epochs": 3})[0]
    assert not R.comparable({"image_size": want["image_size"], "pretrained": False})[0]  # gpu_bench: from scratch
    assert R.comparable({"kind": "count"}) == (True, "a count of files")


# ----------------------------------------------------------------------------- the verdict paths
def test_missing_files_give_not_measured_naming_the_chapter(tmp_path):
    reg = R.claims_register(root=tmp_path)
    row = reg.loc["headline.accuracy"]
    assert row["verdict"] == "not measured"
    assert "results/ci/05_evaluation/metrics_ci.csv missing — run chapter 05_evaluation" in row["reason"]
    assert "no GPU" in row["reason"]
    assert np.isnan(row["ci_value"]) and row["ci"] == "—"
    assert reg.loc["external.accuracy", "verdict"] == "not measured"
    assert "run chapter 08_external_validation" in reg.loc["external.accuracy", "reason"]
    # every register entry and every table placeholder has a row and a known verdict
    assert set(reg["verdict"]) <= set(R.REPRODUCTION_VERDICTS)
    assert {e.id for e in R.REGISTER} <= set(reg.index)
    assert list(dict.fromkeys(reg["group"])) == [g for g in R.GROUPS if g in set(reg["group"])]


def test_ci_measurement_at_64px_is_not_measurable_here(tmp_path):
    acc = _paper_fraction("headline.accuracy")
    _write_csv(tmp_path, "ci", "05_evaluation", "metrics_ci.csv", _metrics_ci((acc, acc - 0.02, acc + 0.02)))
    reg = R.claims_register(root=tmp_path)
    row = reg.loc["headline.accuracy"]
    assert row["verdict"] == "not measurable here"  # the paper value is inside, but the setting is not the paper's
    assert "ci is 64 px, from scratch" in row["reason"]
    assert row["ci_value"] == pytest.approx(100 * acc) and row["ci_low"] == pytest.approx(100 * (acc - 0.02))
    assert row["ci"].startswith(f"{100 * acc:.1f} [")
    assert row["ci_setting"].startswith("64 px")


def test_settings_recorded_in_a_sidecar_file_are_used(tmp_path):
    acc = _paper_fraction("headline.accuracy")
    _write_csv(tmp_path, "ci", "05_evaluation", "metrics_ci.csv", _metrics_ci((acc, acc - 0.02, acc + 0.02)))
    want = R.paper_setting()
    _write_json(tmp_path, "ci", "05_evaluation", "summary.json",
                {"config": {"image_size": want["image_size"], "pretrained": True, "epochs": 7}})
    row = R.claims_register(root=tmp_path).loc["headline.accuracy"]
    assert row["verdict"] == "reproduced" and row["basis"] == "ci"
    assert row["ci_setting"] == f"{want['image_size']} px, ImageNet weights, 7 epochs"


@pytest.mark.parametrize("inside", [True, False])
def test_full_run_at_the_papers_setting_gives_reproduced_or_not(tmp_path, inside):
    acc = _paper_fraction("headline.accuracy")
    roc = _paper_fraction("headline.roc_auc")
    centre = acc if inside else acc - 0.10
    _write_csv(tmp_path, "full", "05_evaluation", "metrics_ci.csv",
               _metrics_ci((centre, centre - 0.015, centre + 0.015), roc=(roc, roc - 0.01, roc + 0.01)))
    _write_json(tmp_path, "full", "05_evaluation", "meta.json",
                {"provenance": {"device": "NVIDIA H100", "date": "2025-01-02T03:04:05", "commit": "abcdef1234567890"}})
    reg = R.claims_register(root=tmp_path)
    row = reg.loc["headline.accuracy"]
    assert row["verdict"] == ("reproduced" if inside else "not reproduced")
    assert row["basis"] == "full"
    assert row["full_provenance"] == "NVIDIA H100 · 2025-01-02T03:04:05 · commit abcdef1234"
    assert row["full_setting"].startswith("224 px, ImageNet weights")  # the full profile's settings
    assert ("inside" if inside else "outside") in row["reason"]
    assert reg.loc["headline.roc_auc", "verdict"] == "reproduced"
    assert reg.loc["headline.accuracy", "ci"] == "—"  # no ci file: the full run decides alone


def test_gpu_bench_reference_is_read_but_from_scratch_is_not_comparable(tmp_path):
    acc = _paper_fraction("headline.accuracy")
    ref = {"provenance": {"device": "NVIDIA H100 80GB HBM3", "date": "2025-01-02", "commit": "0123456789abcdef"},
           "setup": {"image_size": 224, "epochs": 14, "pretrained": False},
           "results": {"ASFF-ResNet50": {"metrics": {"accuracy": acc, "roc_auc": 0.9},
                                         "ci95": {"accuracy": [acc - 0.02, acc + 0.02], "roc_auc": [0.88, 0.92]}},
                       "ResNet-50": {"metrics": {"accuracy": 0.8}, "ci95": {"accuracy": [0.77, 0.83]}}}}
    _write_json(tmp_path, "full", "gpu-bench", "reference.json", ref)
    reg = R.claims_register(root=tmp_path)
    row = reg.loc["headline.accuracy"]
    assert row["full_value"] == pytest.approx(100 * acc)
    assert row["full_low"] == pytest.approx(100 * (acc - 0.02))
    assert row["full_provenance"].startswith("NVIDIA H100 80GB HBM3")
    assert row["verdict"] == "not measurable here"
    assert "full is 224 px, from scratch, 14 epochs" in row["reason"]
    assert reg.loc["headline.pr_auc", "verdict"] == "not measured"  # the reference has no PR AUC
    assert "has no key 'pr_auc'" in reg.loc["headline.pr_auc", "reason"]


def test_inconsistent_claims_come_from_the_papers_own_arithmetic(tmp_path):
    reg = R.claims_register(root=tmp_path)
    checks = paper.arithmetic_checks()
    for cid in ("headline.accuracy", "external.accuracy", "gain.accuracy_over_resnet50",
                "gain.accuracy_over_resnet50_v1_summary"):
        seen = set(checks.loc[checks.subject == cid, "verdict"])
        assert (reg.loc[cid, "verdict"] == "inconsistent") == (seen == {"inconsistent"}), cid
    # the derived ResNet-50 accuracy = headline - gain, as printed in the gain's paper version
    gain = paper.claim("gain.accuracy_over_resnet50")
    head = paper.claim("headline.accuracy")
    derived = reg.loc["baselines.resnet50_accuracy"]
    assert paper.parse_number(derived["paper"]) == pytest.approx(
        paper.parse_number(head.versions.get(gain.where.version, head.value)) - gain.number)
    n = int(paper.claim("data.test_total").number)
    expect = verdicts.check_accuracy(derived["paper"], n)["verdict"] == "inconsistent"
    assert (derived["verdict"] == "inconsistent") == expect


def test_inconsistent_outranks_a_measurement(tmp_path):
    # a file that "measures" the derived ResNet-50 accuracy exactly still cannot reproduce a printed
    # number that no k/660 gives
    d = paper.load_claims()
    row = R.claims_register(root=tmp_path, claims=d).loc["baselines.resnet50_accuracy"]
    if row["verdict"] != "inconsistent":
        pytest.skip("the packaged claims give a consistent ResNet-50 accuracy")
    p = paper.parse_number(row["paper"]) / 100
    bench = pd.DataFrame({"accuracy": [p], "accuracy_low": [p - 0.01], "accuracy_high": [p + 0.01],
                          "image_size": [224], "epochs": [10]}, index=pd.Index(["resnet50"], name="model"))
    _write_csv(tmp_path, "full", "02_baselines", "baselines.csv", bench)
    again = R.claims_register(root=tmp_path, claims=d).loc["baselines.resnet50_accuracy"]
    assert again["verdict"] == "inconsistent" and again["full_value"] == pytest.approx(100 * p)


def test_missing_key_and_unreadable_file_never_crash(tmp_path):
    _write_csv(tmp_path, "ci", "05_evaluation", "metrics_ci.csv",
               _metrics_ci((0.8, 0.75, 0.85)).drop(index="pr_auc"))
    bad = tmp_path / "results" / "ci" / "08_external_validation" / "subset_metrics.csv"
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"\x00\x01 not a csv \xff")
    reg = R.claims_register(root=tmp_path)
    pr = reg.loc["headline.pr_auc"]
    assert pr["verdict"] == "not measured"
    assert "results/ci/05_evaluation/metrics_ci.csv has no row 'pr_auc'" in pr["reason"]
    assert reg.loc["headline.accuracy", "verdict"] == "not measurable here"
    ext = reg.loc["external.accuracy"]
    assert ext["verdict"] == "not measured" and "subset_metrics.csv" in ext["reason"]
    # files that exist but cannot be read are flagged apart from files that do not exist yet
    assert "has no row 'pr_auc'" in pr["broken"] and "could not be read" in ext["broken"]
    assert reg.loc["headline.accuracy", "broken"] == "" and reg.loc["headline.roc_auc", "broken"] == ""
    assert (reg.loc["data.train_benign", "broken"] == "") and "gain.accuracy_over_resnet50_v1_summary" in reg.index
    assert reg.loc["gain.accuracy_over_resnet50_v1_summary", "broken"] == ""  # absent, not broken


def test_a_file_without_interval_gets_no_verdict(tmp_path):
    src = R.Source("05_evaluation", "plain.json", "acc", unit="fraction")
    _write_json(tmp_path, "full", "05_evaluation", "plain.json", {"acc": 0.93})
    entry = R.Entry("headline.accuracy", "headline", claim="headline.accuracy", sources=(src,))
    row = R.claims_register(root=tmp_path, register=(entry,)).loc["headline.accuracy"]
    assert row["full_value"] == pytest.approx(93.0) and np.isnan(row["full_low"])
    assert row["verdict"] == "not measurable here" and "no 95 % interval" in row["reason"]


def test_counts_are_exact_and_read_from_chapter_01_and_the_manifests(tmp_path):
    counts = data.dataset_table("isic_balanced")
    total = int(counts.loc["total", "total"])
    _write_json(tmp_path, "ci", "01_dataset", "summary.json",
                {"isic_balanced": {"images": total}, "train_test": {"a_images": 1, "b_images": int(counts.loc["test", "total"])}})
    reg = R.claims_register(root=tmp_path)
    assert reg.loc["data.total_images", "verdict"] == "reproduced"
    assert reg.loc["data.total_images", "ci"] == f"{total:,}"
    assert reg.loc["data.test_total", "verdict"] == "reproduced"
    assert reg.loc["data.train_total", "verdict"] == "not reproduced"  # the file says 1 image
    assert "differs from" in reg.loc["data.train_total", "reason"]
    for split in ("train", "test"):
        for label in ("benign", "malignant"):
            row = reg.loc[f"data.{split}_{label}"]
            assert row["ci_value"] == counts.loc[split, label]
            expect = "reproduced" if paper.claim(f"data.{split}_{label}").number == counts.loc[split, label] else "not reproduced"
            assert row["verdict"] == expect


def test_transcribed_tables_become_one_row_per_cell(tmp_path):
    d = copy.deepcopy(CLAIMS)
    d["tables"]["3"].update(rows=[], status="not_transcribed")  # the placeholder path of a table not read
    t2 = d["tables"]["2"]
    t2["status"] = "partial"
    # ResNet-50: 240/300 recall, 324/360 specificity -> 564/660 accuracy, printed consistently;
    # VGG-16: the same recall and specificity with an accuracy they cannot give
    t2["rows"] = [{"model": "ResNet-50", "model_id": "resnet50", "accuracy": "85.45", "precision": "-",
                   "recall": "80.00", "specificity": "90.00", "f1": "83.00"},
                  {"model": "VGG-16", "model_id": "vgg16", "accuracy": "85.00", "precision": "-",
                   "recall": "80.00", "specificity": "90.00", "f1": "-"},
                  {"model": "Odd net", "model_id": None, "accuracy": "70.00", "precision": "-", "recall": "-",
                   "specificity": "-", "f1": "-"}]
    assert paper.validate_claims(d) == []
    checks = paper.arithmetic_checks(claims=d)
    assert set(checks.loc[checks.subject == "Table 2: ResNet-50", "verdict"]) == {"consistent"}
    assert "inconsistent" in set(checks.loc[checks.subject == "Table 2: VGG-16", "verdict"])
    bench = pd.DataFrame({"accuracy": [0.85, 0.85], "accuracy_low": [0.82, 0.82], "accuracy_high": [0.88, 0.88],
                          "recall": [0.5, 0.8], "recall_low": [0.45, 0.75], "recall_high": [0.55, 0.85],
                          "image_size": [224, 224], "epochs": [10, 10]},
                         index=pd.Index(["resnet50", "vgg16"], name="model"))
    _write_csv(tmp_path, "full", "02_baselines", "baselines.csv", bench)
    reg = R.claims_register(root=tmp_path, claims=d)
    assert "table2" not in reg.index and "table3" in reg.index  # Table 3 of this copy says "not transcribed"
    assert reg.loc["table3", "verdict"] == "not measurable here" and "not transcribed" in reg.loc["table3", "reason"]
    assert reg.loc["table2.resnet50.accuracy", "paper"] == "85.45"
    assert reg.loc["table2.resnet50.accuracy", "verdict"] == "reproduced"  # 85.45 inside [82, 88]
    assert reg.loc["table2.resnet50.recall", "verdict"] == "not reproduced"  # 80.00 outside [45, 55]
    assert reg.loc["table2.resnet50.specificity", "verdict"] == "not measured"  # no such column in the file
    f1 = reg.loc["table2.resnet50.f1"]
    assert f1["verdict"] == "not measured" and "has no column 'f1'" in f1["reason"]
    # a row whose printed numbers contradict each other: every cell in the failing check is inconsistent,
    # even the recall that the measurement would reproduce
    for col in ("accuracy", "recall", "specificity"):
        assert reg.loc[f"table2.vgg16.{col}", "verdict"] == "inconsistent", col
    assert "table2.resnet50.precision" not in reg.index  # '-' cells are not claims
    assert reg.loc["table2.Odd net.accuracy", "verdict"] == "not measurable here"


def _ablation_predictions(n_pos: int = 30, n_neg: int = 36, flips: int = 6, seeds=(0, 1)) -> pd.DataFrame:
    """Chapter-06-like long predictions: 'none' right on all but `flips` images, 'asff_text' right on
    all; both seeds; index 'fusion'."""
    y = np.r_[np.ones(n_pos, int), np.zeros(n_neg, int)]
    ids = [f"test/{'malignant' if t else 'benign'}/{i}.jpg" for i, t in enumerate(y)]
    right = np.where(y == 1, 0.9, 0.1)
    wrong = right.copy()
    wrong[:flips] = 1 - wrong[:flips]
    parts = []
    for seed in seeds:
        for fusion, score in (("none", wrong), ("asff_text", right), ("sum", right)):
            parts.append(pd.DataFrame({"fusion": fusion, "seed": seed, "id": ids, "y_true": y, "y_score": score}))
    return pd.concat(parts).set_index("fusion")


def test_paired_gain_is_read_from_the_predictions_with_a_paired_interval(tmp_path):
    preds = _ablation_predictions()
    n = 66
    _write_csv(tmp_path, "ci", "06_ablation", "predictions.csv", preds)
    reg = R.claims_register(root=tmp_path)
    row = reg.loc["gain.accuracy_over_resnet50_v1_summary"]
    assert row["ci_value"] == pytest.approx(100 * 6 / n)  # asff_text is right on the 6 images none gets wrong
    assert row["ci_low"] <= row["ci_value"] <= row["ci_high"] and row["ci_low"] > 0
    assert row["verdict"] == "not measurable here" and "ci is 64 px, from scratch" in row["reason"]
    assert "(mean over seeds 0, 1)" in row["ci_file"]
    # the gain is the mean over the seeds, never seed 0 alone: with no gain in seed 1 it halves
    uneven = preds.copy()
    seed1_asff = (uneven.index == "asff_text") & (uneven["seed"] == 1)
    uneven.loc[seed1_asff, "y_score"] = preds.loc[(preds.index == "none") & (preds["seed"] == 1), "y_score"].to_numpy()
    _write_csv(tmp_path, "ci", "06_ablation", "predictions.csv", uneven)
    half = R.claims_register(root=tmp_path).loc["gain.accuracy_over_resnet50_v1_summary"]
    assert half["ci_value"] == pytest.approx(100 * 3 / n) and half["ci_low"] <= half["ci_value"] <= half["ci_high"]
    _write_csv(tmp_path, "ci", "06_ablation", "predictions.csv", preds)
    # a paired interval of identical runs is exactly zero; an unpaired one would not be
    same = R.PairedGain("06_ablation", "predictions.csv", a={"fusion": "sum"}, b={"fusion": "asff_text"})
    rd = R.read_source(same, "ci", tmp_path)
    assert rd.ok and rd.value == 0 and rd.low == 0 and rd.high == 0
    # the interval matches an independent paired bootstrap of the per-image differences
    from skinlesion_utils import metrics
    none = preds.loc["none"].query("seed == 0").sort_values("id")  # runs are paired by image id
    asff = preds.loc["asff_text"].query("seed == 0").sort_values("id")
    y = none["y_true"].to_numpy()
    d = ((asff["y_score"].to_numpy() >= 0.5) == y).astype(float) - ((none["y_score"].to_numpy() >= 0.5) == y)
    assert d.sum() == 6
    idx = metrics._draw_indices(y, 2000, 0, True)  # the stratified resamples bootstrap_samples draws
    boot = d[idx].mean(axis=1)
    assert row["ci_low"] == pytest.approx(100 * np.percentile(boot, 2.5))
    assert row["ci_high"] == pytest.approx(100 * np.percentile(boot, 97.5))


def test_paired_gain_with_missing_runs_is_flagged_broken(tmp_path):
    preds = _ablation_predictions().drop(index="asff_text")
    _write_csv(tmp_path, "ci", "06_ablation", "predictions.csv", preds)
    row = R.claims_register(root=tmp_path).loc["gain.accuracy_over_resnet50_v1_summary"]
    assert row["verdict"] == "not measured" and "has no runs" in row["broken"]


def test_files_written_by_the_chapters_own_writers_are_read(tmp_path):
    """The formats chapters 05, 06 and 08 write (results.write_results, results.save,
    ch08_external.subset_report) are the ones the register reads: no key is reported missing."""
    from skinlesion_utils import metrics
    from skinlesion_utils.studies import ch08_external

    rng = np.random.default_rng(0)
    y = np.r_[np.ones(40, int), np.zeros(50, int)]
    score = np.clip(0.6 * y + 0.4 * rng.random(y.size), 0, 1)
    table = metrics.report_with_ci(y, score, n_boot=200, seed=0)
    results.write_results("05_evaluation", {"metrics_ci": table,
                                         "summary": {"config": {"image_size": 64, "pretrained": False, "epochs": 12}}},
                       profile="ci", root=tmp_path)
    preds = _ablation_predictions()
    results.save("06_ablation", {"predictions": preds.reset_index().set_index(["fusion", "seed"])},
                     {"settings": [{"label": "none (seed 0)", "image_size": 64, "pretrained": False, "epochs": 3}]},
                     profile="ci", root=tmp_path)
    pred_df = pd.DataFrame({"id": [f"i{k}" for k in range(y.size)], "y_true": y, "y_score": score})
    sub = ch08_external.subset_report(pred_df, {"data3/test part": np.ones(y.size, bool)}, n_boot=200)
    results.write_results("08_external_validation", {"subset_metrics": sub.assign(model="main").reset_index()},
                       profile="ci", root=tmp_path)
    from skinlesion_utils import localisation

    loc = pd.DataFrame({"energy_inside": rng.random(30), "pointing_hit": rng.random(30) > 0.5,
                        "mask_fraction": 0.3 * rng.random(30), "mask_kind": "approximate"})
    results.write_results("07_gradcam", {"localisation": {**localisation.summarise_localisation(loc, seed=0),
                                                       "settings": {"image_size": 128, "pretrained": False, "epochs": 12}}},
                       profile="ci", root=tmp_path)
    reg = R.claims_register(root=tmp_path)
    g = reg.loc["gradcam.lesion_regions"]
    assert g["broken"] == "" and g["ci_value"] == pytest.approx((loc.energy_inside - loc.mask_fraction).mean())
    assert g["verdict"] == "not measurable here" and g["ci_setting"].startswith("128 px")
    for cid in ("headline.accuracy", "headline.roc_auc", "headline.pr_auc", "gain.accuracy_over_resnet50_v1_summary",
                "external.accuracy"):
        row = reg.loc[cid]
        assert row["broken"] == "" and pd.notna(row["ci_value"]) and pd.notna(row["ci_low"]), (cid, row["reason"])
        assert row["ci_setting"].startswith("64 px, from scratch"), row["ci_setting"]
    assert reg.loc["headline.accuracy", "ci_value"] == pytest.approx(100 * table.loc["accuracy", "point"])
    assert reg.loc["external.accuracy", "ci_high"] == pytest.approx(100 * sub.loc["data3/test part", "accuracy_high"])
    assert reg.loc["headline.accuracy", "ci_setting"] == "64 px, from scratch, 12 epochs"  # from summary.json


# ----------------------------------------------------------------------------- other tables
def test_arithmetic_table_adds_the_derived_accuracies():
    t = R.arithmetic_table()
    base = paper.arithmetic_checks()
    assert len(t) == len(base) + sum(e.derived is not None for e in R.REGISTER)
    assert set(t["verdict"]) <= set(paper.ARITHMETIC_VERDICTS)
    derived = t.iloc[len(base):]
    assert all(s.startswith("baselines.resnet50_accuracy") for s in derived["subject"])


def test_text_vs_code_table_lists_every_difference():
    t = R.text_vs_code_table()
    assert list(t.index) == [e["id"] for e in CLAIMS["text_vs_code"]]
    assert set(t["kind"]) <= {"code", "data"} and t["consequence"].str.len().min() > 20


def test_data_findings_read_the_numbers_from_the_files(tmp_path):
    summary = {"threshold_bits": 8,
               "isic2020": {"malignant": 100},
               "isic_balanced": {"images": 3297, "pairs_within": 7, "clusters": 3, "images_in_clusters": 9,
                                 "clusters_across_splits": 2, "byte_identical_groups": [["a", "b"]],
                                 "images_with_exif": {"benign": 0, "malignant": 11},
                                 "malignant_encoded_unlike_any_benign": 321},
               "train_test": {"pairs": 12, "exact_pairs": 1, "a_images": 2637, "b_images": 660, "b_with_copy": 33,
                              "b_fraction_with_copy": 33 / 660, "label_disagreements": 0},
               "external": {"dataset_b": "isic2019_external_sample", "pairs": 5, "b_images": 1000, "b_with_copy": 50,
                            "b_fraction_with_copy": 0.05, "b_with_copy_by_split_a": {"train": 40, "test": 10}}}
    _write_json(tmp_path, "ci", "01_dataset", "summary.json", summary)
    f = R.data_findings(root=tmp_path)
    n_mal = int(data.dataset_table("isic_balanced").loc["total", "malignant"])
    assert f.loc["a subset of ISIC 2020", "value"] == 100
    assert f.loc["a subset of ISIC 2020", "verdict"] == ("does not hold" if n_mal > 100 else "holds")
    assert f.loc["train–test near-duplicates", "value"] == pytest.approx(round(33 / 660, 4))
    assert "33 of 660 test images (5.0%)" in f.loc["train–test near-duplicates", "the files say"]
    assert f.loc["external set overlaps isic_balanced", "value"] == pytest.approx(0.05)
    assert "in train: 40, in test: 10" in f.loc["external set overlaps isic_balanced", "the files say"]
    assert f.loc["JPEG encoding by class", "value"] == pytest.approx(round(321 / n_mal, 4))
    assert f.loc["near-duplicate clusters", "value"] == 2
    assert f.loc["external accuracy without the copies", "verdict"] == "not measured"
    _write_json(tmp_path, "ci", "08_external_validation", "summary.json",
                {"contaminated_fraction_data3_test": 0.1, "paper_clean_accuracy_if_copies_all_right": 0.75,
                 "paper_external_accuracy": paper.claim("external.accuracy").value})
    f = R.data_findings(root=tmp_path)
    assert f.loc["external accuracy without the copies", "value"] == pytest.approx(75.0)


def test_data_findings_without_chapter_01_say_which_chapter_to_run(tmp_path):
    f = R.data_findings(root=tmp_path)
    missing = f[f["verdict"] == "not measured"]
    assert {"JPEG encoding by class", "train–test near-duplicates"} <= set(missing.index)
    assert all("run chapter" in s for s in missing["the files say"] if "summary.json" in s)
    assert f.loc["balanced classes", "verdict"] in ("holds", "does not hold")  # from the packaged manifest


def test_verdict_counts_trust_summary_and_save(tmp_path):
    reg = R.claims_register(root=tmp_path)
    counts = R.verdict_counts(reg)
    assert list(counts.columns) == list(R.REPRODUCTION_VERDICTS) and list(counts.index) == [*R.GROUPS, "total"]
    assert counts.loc["total"].sum() == len(reg)
    s = R.trust_summary(reg)
    assert s["n_claims"] == len(reg) and sum(s[v] for v in R.REPRODUCTION_VERDICTS) == len(reg)
    assert set(s["inconsistent_ids"]) == set(reg.index[reg.verdict == "inconsistent"])
    assert set(s["reproduced_paper_ids"]) <= set(s["reproduced_ids"])
    assert all(reg.loc[c, "status"] == "paper" for c in s["reproduced_paper_ids"])
    md = R.trust_markdown(reg)
    assert f"**{s['reproduced']} of {len(reg)}**" in md and f"**{s['inconsistent']}** fail" in md
    assert all(f"`{c}`" in md for c in s["inconsistent_ids"])
    written = R.save_audit(reg, R.arithmetic_table(), R.data_findings(root=tmp_path), profile="ci", root=tmp_path)
    assert written["claims"] == tmp_path / "results" / "ci" / R.CHAPTER / "claims.csv"
    back = R.read_register(profile="ci", root=tmp_path)
    assert list(back.index) == list(reg.index) and list(back["paper"]) == list(reg["paper"])
    assert list(back["verdict"]) == list(reg["verdict"]) and list(back["broken"]) == list(reg["broken"])
    pd.testing.assert_series_equal(back["ci_value"], reg["ci_value"], check_names=False)
    assert back.loc["headline.pr_auc", "paper"] == paper.claim("headline.pr_auc").value  # trailing zero kept


def test_plot_register_draws_levels_and_gains(tmp_path):
    """plot_register draws the register of chapter 09: levels on top, gains below."""
    import matplotlib

    matplotlib.use("Agg")
    fig = R.plot_register(R.claims_register(root=tmp_path))
    assert len(fig.axes) == 2 and fig.axes[1].get_title() == "gains over ResNet-50"


# ------------------------------------------------------------------ every number of the paper answered
from skinlesion_utils.errors import ConfigError  # noqa: E402
from skinlesion_utils.studies import ch09_coverage as C  # noqa: E402


def test_other_numbers_answers_every_claim_the_register_does_not_hold_and_checks_what_it_can():
    d = paper.load_claims()
    register = R.claims_register(root=Path("/nonexistent"))  # no results: still every register row
    other = C.other_numbers(register=register)
    assert set(other.index) | set(register.index) >= {c["id"] for c in d["claims"]}
    assert not set(other.index) & set(register.index)
    assert set(other["verdict"]) <= set(C.OTHER_VERDICTS)
    # checked against the manifest and the code, not typed: 2,637 : 660 rounds to the printed 4 : 1
    assert other.loc["data.split_ratio", "verdict"] == "holds" and other.loc["data.split_ratio", "ours"] == "3.995"
    assert other.loc["method.layer3_size", "ours"] == "14" and other.loc["method.layer4_size", "ours"] == "7"
    assert other.loc["baselines.count", "verdict"] == "holds"
    assert other.loc["prior.sayed_accuracy", "verdict"] == "not a result"
    # an edited claim that the data contradicts is reported, not hidden
    edited = copy.deepcopy(d)
    for c in edited["claims"]:
        if c["id"] == "data.paper_benign":
            c["value"], c["float"] = "1,900", 1900.0
    assert C.other_numbers(claims=edited, register=register).loc["data.paper_benign", "verdict"] == "does not hold"
    # a claim of a group nobody answers is an error naming the fix
    unknown = copy.deepcopy(d)
    unknown["claims"].append({**d["claims"][0], "id": "novel.number"})
    with pytest.raises(ConfigError, match="novel.number.*Fix: add it to ch09_audit.REGISTER"):
        C.other_numbers(claims=unknown, register=register)


def test_paper_coverage_counts_every_claim_and_every_cell_of_tables_1_to_4():
    d = paper.load_claims()
    register = R.claims_register(root=Path("/nonexistent"))
    other, table1 = C.other_numbers(register=register), C.table1_settings()
    cov = C.paper_coverage(register, other, table1)
    n_cells = {k: (len(paper.table(k).columns) - 1) * len(paper.table(k)) for k in (2, 3, 4)}  # less model_id
    assert cov.loc["text (claims)", "numbers"] == len(d["claims"])
    assert cov.loc["Table 1", "numbers"] == 2 * len(d["tables"]["1"]["rows"])
    assert all(cov.loc[f"Table {k}", "numbers"] == n for k, n in n_cells.items())
    assert (cov["addressed"] == cov["numbers"]).all()
    line = C.coverage_line(cov)
    assert line.startswith(f"{cov['numbers'].sum()} of {cov['numbers'].sum()} numbers of the paper addressed: ")
    # without the other numbers, the register alone leaves claims unanswered
    partial = C.paper_coverage(register, other.iloc[:0], table1.iloc[:0])
    assert partial.loc["text (claims)", "addressed"] == len(d["claims"]) - len(other)
    assert partial.loc["Table 1", "addressed"] == 0
