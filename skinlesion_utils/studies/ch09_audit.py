"""The reproduction audit of chapter 09: every numeric claim of the paper against what this book measured.

Taught in chapter 09 (``chapters/09_reproduction_audit``), the last chapter: it reads the results
files the other chapters write under ``results/<profile>/<chapter>/`` and the paper's claims from
:mod:`skinlesion_utils.paper`, and types no number itself.

What this module owns
---------------------
* :data:`REGISTER` — a small declarative table: one :class:`Entry` per numeric claim (the paper
  value comes from ``paper_claims.json``, or is derived from two claims, or is a cell of the
  paper's Tables 2–4 when they are transcribed), each with the results file(s) and key that
  measure it (:class:`Source`: a chapter's JSON/CSV file; :class:`ManifestCount`: a count in a
  packaged sha256 manifest). Change a file name or key here, never in the notebook.
* :func:`claims_register` — the register evaluated against the files: per claim the paper value
  as printed, where it is printed, our measured value and 95 % interval under the ``ci`` profile
  and, when a ``results/full`` file from a real GPU run exists, under ``full`` (with its
  provenance), and a verdict (:data:`REPRODUCTION_VERDICTS`) with the reason. A missing file or key never
  raises: the verdict says ``not measured`` and names the file and the chapter to run.
* The rules behind a verdict: :func:`paper_setting` (224 px, ImageNet weights, as in the released
  code), :func:`comparable` (is a measurement's setting the paper's?), :func:`interval_verdict`
  (is a printed value, ± half its last digit, inside our interval?).
* The other tables of the audit: :func:`arithmetic_table` (the paper's numbers against their own
  arithmetic, from :func:`skinlesion_utils.paper.arithmetic_checks`), :func:`text_vs_code_table`
  (every documented difference between the paper's text and its code or data),
  :func:`data_findings` (provenance and leakage, read from chapter 01's ``summary.json``, the
  ISIC 2020 ground truth and, when present, chapter 08's ``summary.json``) and
  :func:`verdict_counts` / :func:`trust_summary` (what a reader can trust, counted).
* What the chapter shows: :func:`sources_table` (the mapping, one row per claim and file),
  :func:`coverage_table` (which of those files exist now), :func:`group_lines` and
  :func:`trust_markdown` (the register as sentences, every number from it), :func:`plot_register`
  (the paper's values against our intervals; a figure only this chapter draws, so it lives here
  and not in :mod:`skinlesion_utils.plots`).
* :func:`save_audit` — writes ``claims.csv``, ``arithmetic.csv`` and ``findings.csv`` under
  ``results/<profile>/09_reproduction_audit/``; :func:`read_register` reads ``claims.csv`` back
  with the printed values kept as strings.

Verdicts (:data:`REPRODUCTION_VERDICTS`)
----------------------------------------
``reproduced``
    The printed value (read as the interval it was rounded from) lies inside our 95 % interval,
    measured at a comparable setting (:func:`comparable`), or a count equals ours exactly.
``not reproduced``
    Measured at a comparable setting, and the printed value lies outside our interval.
``not measurable here``
    We measured something, but not at the paper's setting (``ci`` trains at 64 px from scratch),
    or the claim cannot be measured with what is available (a table not transcribed, a
    qualitative claim, a file without an interval). The reason says which.
``not measured``
    The results file (or its key) that would measure it does not exist yet: run the chapter named
    in the reason.
``inconsistent``
    The printed number fails the paper's own arithmetic (no ``k/660`` rounds to it, or a gain
    that no achievable baseline gives), so no measurement can reproduce it as printed.
"""
from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import ConfigError
from .. import data, metrics, paper, verdicts
from ..profiles import profile as get_profile
from ..results import read_results, results_dir, results_root, write_results

__all__ = [
    "CHAPTER",
    "REPRODUCTION_VERDICTS",
    "GROUPS",
    "PROFILES_READ",
    "Source",
    "ManifestCount",
    "PairedGain",
    "Entry",
    "Reading",
    "REGISTER",
    "TABLE_SOURCES",
    "paper_setting",
    "comparable",
    "interval_verdict",
    "read_source",
    "claims_register",
    "arithmetic_table",
    "text_vs_code_table",
    "data_findings",
    "sources_table",
    "coverage_table",
    "group_lines",
    "plot_register",
    "verdict_counts",
    "trust_summary",
    "trust_markdown",
    "save_audit",
    "read_register",
]

#: This chapter's stem (its results folder).
CHAPTER = "09_reproduction_audit"
#: Every verdict of :func:`claims_register`, best to worst news for the paper (see the module docstring).
REPRODUCTION_VERDICTS = ("reproduced", "not reproduced", "not measurable here", "not measured", "inconsistent")
#: Groups of claims, in the order the chapter discusses them.
GROUPS = ("headline", "baselines", "ablation", "gradcam", "external", "data")
#: The profiles whose results files are read: ``ci`` (committed CPU runs) and ``full`` (real GPU runs).
PROFILES_READ = ("ci", "full")


# =========================================================================== the declarative part
def _relpath(profile: str, chapter: str, file: str) -> str:
    """Where a results file lies, as the register names it: ``results/<profile>/<chapter>/<file>``."""
    return f"results/{profile}/{chapter}/{file}"


@dataclass(frozen=True)
class Source:
    """Where one measurement lives: a chapter's results file and a key in it.

    Attributes:
        chapter: chapter stem (``"05_evaluation"``) or ``"gpu-bench"`` (``results/full/gpu-bench``,
            written by :func:`skinlesion_utils.bench.run_gpu_benchmark`).
        file: file name in ``results/<profile>/<chapter>/`` (``.json`` or ``.csv``).
        value: JSON: dotted key (``"results.ASFF-ResNet50.metrics.accuracy"``; list items by
            number, ``"ci95.accuracy.0"``); CSV: a column name.
        row: CSV only: an index label (``"accuracy"``) or ``{column: value}`` (the first matching
            row is used; the index counts as a column under its name); ``None`` for JSON.
        low, high: keys of the 95 % interval (like ``value``); ``None`` when the file has none.
        unit: unit of the stored number: ``"fraction"`` (the book's metrics), ``"count"``.
        budget: which profile budget trained it, for :func:`comparable` when the file does not
            record its own settings: ``"main"`` (``image_size``, ``epochs``), ``"bench"``
            (``bench_image_size``, ``bench_epochs``), ``"cam"``, or ``"data"`` (a count: no
            training, always comparable).
        profiles: the profiles it is read under (``"gpu-bench"`` exists only under ``full``).
        what: what is measured, in words (shown in the register).
    """

    chapter: str
    file: str
    value: str
    row: str | Mapping[str, Any] | None = None
    low: str | None = None
    high: str | None = None
    unit: str = "fraction"
    budget: str = "main"
    profiles: tuple[str, ...] = PROFILES_READ
    what: str = ""

    def relpath(self, profile: str) -> str:
        """``results/<profile>/<chapter>/<file>``."""
        return _relpath(profile, self.chapter, self.file)

    @property
    def key(self) -> str:
        """``row → value`` in words, e.g. ``"row accuracy, column point"``."""
        if self.file.endswith(".csv"):
            row = self.row if isinstance(self.row, str) or self.row is None else \
                ", ".join(f"{k}={v}" for k, v in dict(self.row).items())
            return f"row {row}, column {self.value}"
        return f"key {self.value}"


@dataclass(frozen=True)
class ManifestCount:
    """A count of images in a packaged sha256 manifest (:func:`skinlesion_utils.data.dataset_table`):
    no images needed, exact.

    Attributes:
        dataset: registry name (``"isic_balanced"``, ``"isic2019_external"``).
        split: ``"train"``, ``"test"`` or ``"total"``.
        label: ``"benign"``, ``"malignant"`` or ``"total"``.
    """

    dataset: str
    split: str
    label: str
    profiles: tuple[str, ...] = ("ci",)
    unit: str = "count"
    budget: str = "data"
    what: str = "counted in the sha256 manifest shipped with the package"

    def relpath(self, profile: str) -> str:
        return f"skinlesion_utils/manifests/{self.dataset}.sha256"

    @property
    def key(self) -> str:
        return f"{self.split}/{self.label}"


@dataclass(frozen=True)
class PairedGain:
    """A difference of one metric between two runs on the same test images, with a paired
    bootstrap 95 % interval, computed from a long predictions file (``<key columns>, id, y_true,
    y_score``), e.g. chapter 06's ``predictions.csv``.

    The interval resamples the test images once per bootstrap round and scores both runs on the
    same resample (:func:`skinlesion_utils.metrics.bootstrap_samples` with one seed draws the same
    stratified resamples for the same labels), so it is the interval of the *paired* difference.

    Attributes:
        chapter, file: the predictions file ``results/<profile>/<chapter>/<file>``.
        a, b: ``{column: value}`` selecting the two runs (the index counts as a column); the
            difference is ``a − b``.
        seed_column: runs are paired on this column; the difference is the mean over every value
            both runs have (the seeds chapter 06 ran), never one seed alone.
        metric: a name of :data:`skinlesion_utils.metrics.METRICS` (``"accuracy"``).
        n_boot, seed: bootstrap resamples and their seed.
    """

    chapter: str
    file: str
    a: Mapping[str, Any]
    b: Mapping[str, Any]
    seed_column: str = "seed"
    metric: str = "accuracy"
    n_boot: int = 2000
    seed: int = 0
    unit: str = "fraction"
    budget: str = "bench"
    profiles: tuple[str, ...] = PROFILES_READ
    what: str = ""

    def relpath(self, profile: str) -> str:
        """``results/<profile>/<chapter>/<file>``."""
        return _relpath(profile, self.chapter, self.file)

    @property
    def key(self) -> str:
        def sel(d):
            return ", ".join(f"{k}={v}" for k, v in dict(d).items())
        return f"{self.metric}({sel(self.a)}) − {self.metric}({sel(self.b)}), paired per {self.seed_column}"


@dataclass(frozen=True)
class Entry:
    """One row of the register: a claim and the sources that measure it.

    Attributes:
        id: the row's id (the claim id, or a new id for a derived claim).
        group: one of :data:`GROUPS`.
        claim: id of the claim in ``paper_claims.json`` (``None`` for a derived or qualitative row).
        derived: ``(a, b)``: the paper value is claim ``a`` minus claim ``b`` as printed in the
            same paper version as ``b`` (the ResNet-50 accuracy a printed gain implies).
        quote: ``(section, id)`` of a verbatim quote in the claims file for a qualitative claim
            (``("text_vs_code", "<id>")``): its text is the "paper value".
        sources: :class:`Source` / :class:`ManifestCount`, tried in order per profile.
        not_measurable: a reason that holds whatever the files say (empty: decided from them).
        note: what is compared, in words.
    """

    id: str
    group: str
    claim: str | None = None
    derived: tuple[str, str] | None = None
    quote: tuple[str, str] | None = None
    sources: tuple[Any, ...] = ()
    not_measurable: str = ""
    note: str = ""


# The files below are what chapters 01, 02, 05, 06, 07 and 08 write (via results.write_results /
# results.save) and what the GPU benchmark (bench.run_gpu_benchmark) writes on a GPU machine.
_EVAL = dict(chapter="05_evaluation", file="metrics_ci.csv", value="point", low="low", high="high",
             what="main model (ASFF-ResNet50, asff_text), the test images, threshold 0.5")


def _gpu(model: str, metric: str) -> Source:
    return Source("gpu-bench", "reference.json", f"results.{model}.metrics.{metric}",
                  low=f"results.{model}.ci95.{metric}.0", high=f"results.{model}.ci95.{metric}.1",
                  budget="gpu-bench", profiles=("full",),
                  what=f"gpu_bench reference run of {model}, the test images")


def _baseline(model: str, metric: str) -> Source:
    return Source("02_baselines", "baselines.csv", metric, row=model, low=f"{metric}_low", high=f"{metric}_high",
                  budget="bench", what=f"{model} of the baseline benchmark, the test images")


def _ablation(fusion: str, metric: str) -> Source:
    return Source("06_ablation", "runs.csv", metric, row={"fusion": fusion}, low=f"{metric}_low",
                  high=f"{metric}_high", budget="bench",
                  what=f"fusion '{fusion}' of the ablation (first seed), the test images")


def _external(model: str, metric: str) -> Source:
    return Source("08_external_validation", "subset_metrics.csv", metric,
                  row={"model": model, "subset": "data3/test part"}, low=f"{metric}_low", high=f"{metric}_high",
                  budget="bench" if model != "main" else "main",
                  what=f"'{model}' on the part of the external sample that lies in data3/test")


def _summary(key: str, what: str) -> Source:
    return Source("01_dataset", "summary.json", key, unit="count", budget="data", profiles=("ci",), what=what)


_GAIN = PairedGain("06_ablation", "predictions.csv", a={"fusion": "asff_text"}, b={"fusion": "none"},
                   what="accuracy of asff_text − none on the same test images, mean over the seeds, paired bootstrap")

#: The claims register: which results file and key measures each claim (see :class:`Entry`).
REGISTER: tuple[Entry, ...] = (
    Entry("headline.accuracy", "headline", claim="headline.accuracy",
          sources=(Source(row="accuracy", **_EVAL), _gpu("ASFF-ResNet50", "accuracy"))),
    Entry("headline.roc_auc", "headline", claim="headline.roc_auc",
          sources=(Source(row="roc_auc", **_EVAL), _gpu("ASFF-ResNet50", "roc_auc"))),
    Entry("headline.pr_auc", "headline", claim="headline.pr_auc",
          sources=(Source(row="pr_auc", **_EVAL), _gpu("ASFF-ResNet50", "pr_auc"))),
    Entry("baselines.count_v1", "baselines", claim="baselines.count_v1",
          not_measurable="a description of the paper's comparison (v1 only), not a measurement"),
    Entry("baselines.resnet50_accuracy", "baselines", derived=("headline.accuracy", "gain.accuracy_over_resnet50"),
          sources=(_baseline("resnet50", "accuracy"), _gpu("ResNet-50", "accuracy")),
          note="ResNet-50 accuracy implied by the headline and the printed gain (Table 2 itself not read)"),
    Entry("baselines.resnet50_accuracy_v1", "baselines",
          derived=("headline.accuracy", "gain.accuracy_over_resnet50_v1_summary"),
          sources=(_baseline("resnet50", "accuracy"), _gpu("ResNet-50", "accuracy")),
          note="ResNet-50 accuracy implied by v1's headline and the gain of a third-party summary of v1"),
    Entry("gain.accuracy_over_resnet50", "ablation", claim="gain.accuracy_over_resnet50", sources=(_GAIN,),
          note="read as percentage points"),
    Entry("gain.accuracy_over_resnet50_v1_summary", "ablation", claim="gain.accuracy_over_resnet50_v1_summary",
          sources=(_GAIN,), note="read as percentage points"),
    Entry("gradcam.lesion_regions", "gradcam", quote=("text_vs_code", "fusion_weights_are_not_spatial"),
          sources=(Source("07_gradcam", "localisation.json", "energy_inside_minus_chance.mean",
                          low="energy_inside_minus_chance.ci_low", high="energy_inside_minus_chance.ci_high",
                          budget="cam", what="Grad-CAM energy inside the lesion mask minus chance, test images"),),
          not_measurable="the paper's Grad-CAM claim is qualitative: there is no number to compare with",
          note="our measurement: share of the map's energy inside the lesion mask, above chance"),
    Entry("external.accuracy", "external", claim="external.accuracy",
          sources=(_external("main", "accuracy"),)),
    Entry("data.total_images", "data", claim="data.total_images",
          sources=(_summary("isic_balanced.images", "images of isic_balanced hashed by chapter 01"),)),
    Entry("data.train_total", "data", claim="data.train_total",
          sources=(_summary("train_test.a_images", "train images compared by chapter 01"),)),
    Entry("data.test_total", "data", claim="data.test_total",
          sources=(_summary("train_test.b_images", "test images compared by chapter 01"),)),
    *(Entry(f"data.{split}_{label}", "data", claim=f"data.{split}_{label}",
            sources=(ManifestCount("isic_balanced", split, label),))
      for split in ("train", "test") for label in ("benign", "malignant")),
    Entry("data.total_benign", "data", claim="data.total_benign", sources=(ManifestCount("isic_balanced", "total", "benign"),)),
    Entry("data.total_malignant", "data", claim="data.total_malignant",
          sources=(ManifestCount("isic_balanced", "total", "malignant"),)),
    Entry("data.external_total", "data", claim="data.external_total",
          sources=(ManifestCount("isic2019_external", "total", "total"),)),
    Entry("data.external_test_total", "data", claim="data.external_test_total",
          sources=(ManifestCount("isic2019_external", "test", "total"),)),
    Entry("data.external_test_benign", "data", claim="data.external_test_benign",
          sources=(ManifestCount("isic2019_external", "test", "benign"),)),
    Entry("data.external_test_malignant", "data", claim="data.external_test_malignant",
          sources=(ManifestCount("isic2019_external", "test", "malignant"),)),
)

#: How a cell of the paper's Tables 2–4 is measured once the table is transcribed:
#: ``{table: (group, function(model_id, column) -> Source)}``. Table 2's ASFF-ResNet50 row is
#: chapter 05's main model (the baselines of chapter 02 do not include it); Table 3's ``asff`` row is the
#: paper's two-level fusion, this book's ``asff_text`` (the main model); Table 4's rows are the
#: like-for-like pair of chapter 08.
TABLE_SOURCES = {
    "2": ("baselines", lambda model, col: Source(row=col, **_EVAL) if model == "asff_resnet50" else _baseline(model, col)),
    "3": ("ablation", lambda model, col: _ablation({"asff": "asff_text"}.get(model, model), col)),
    "4": ("external", lambda model, col: _external({"resnet50": "ResNet-50", "asff_resnet50": "ASFF"}.get(model, model),
                                                   col)),
}


# =========================================================================== settings and verdicts
def paper_setting(claims: dict | None = None) -> dict:
    """The setting the paper's numbers were measured at, from the released code's settings.

    Returns:
        ``{"image_size": 224, "pretrained": True, "epochs": 500}`` as read from
        ``paper_claims.json`` (claims ``code.image_size``, ``code.epochs``; the ASFF script's
        ``pretrained`` entry).
    """
    d = claims if claims is not None else paper.load_claims()
    script = d["code_settings"]["scripts"].get("asff_resnet50", {})
    return {"image_size": int(paper.claim("code.image_size", claims=d).number),
            "pretrained": str(script.get("pretrained", "")).lower().startswith("imagenet"),
            "epochs": int(paper.claim("code.epochs", claims=d).number)}


def _describe_setting(s: Mapping) -> str:
    init = "ImageNet weights" if s.get("pretrained") else "from scratch"
    parts = [f"{s['image_size']} px" if s.get("image_size") is not None else "size unknown", init]
    if s.get("epochs") is not None:
        parts.append(f"{s['epochs']} epoch{'' if int(s['epochs']) == 1 else 's'}")
    return ", ".join(parts)


def comparable(settings: Mapping, claims: dict | None = None, target: Mapping | None = None) -> tuple[bool, str]:
    """Was a measurement made at the paper's setting?

    A count (``settings["kind"] == "count"``) always is. A trained model is when its input size
    and its initialisation (ImageNet weights or not) are the paper's; the epoch budget is reported
    but not required (fine-tuning converges long before the code's 500 epochs).

    Args:
        settings: ``{"image_size": int, "pretrained": bool, "epochs": int}`` of the measurement.
        claims: edited claims dict (default: the packaged file).
        target: the paper's setting (default :func:`paper_setting`).

    Returns:
        ``(ok, reason)``; the reason names both settings, e.g. ``"64 px, from scratch, 12 epochs
        (the paper: 224 px, ImageNet weights, 500 epochs)"``.
    """
    if settings.get("kind") == "count":
        return True, "a count of files"
    want = dict(target) if target is not None else paper_setting(claims)
    ok = settings.get("image_size") == want["image_size"] and bool(settings.get("pretrained")) == want["pretrained"]
    return ok, f"{_describe_setting(settings)} (the paper: {_describe_setting(want)})"


def _half_unit(printed: str) -> float:
    return 0.5 * 10.0 ** (-paper.decimals_of(printed))


def interval_verdict(printed: str, low: float, high: float) -> str:
    """``"reproduced"`` when the printed value lies inside ``[low, high]``, else ``"not reproduced"``.

    A printed value stands for every number that rounds to it: ``"93.18"`` for [93.175, 93.185].
    The claim is reproduced when that rounding interval overlaps ``[low, high]``; an exact count
    (``low == high``) must equal the printed integer.

    Args:
        printed: the paper's value as printed (``"93.182"``, ``"0.9670"``, ``"3,297"``).
        low, high: our 95 % interval, in the printed value's unit (percent, fraction, images).
    """
    if any(v is None or (isinstance(v, float) and math.isnan(v)) for v in (low, high)):
        raise ConfigError(f"interval_verdict({printed!r}, {low!r}, {high!r}): both bounds are needed; "
                         "a measurement without an interval gets no verdict.")
    if low > high:
        raise ConfigError(f"interval_verdict: low {low!r} > high {high!r}; pass (lower bound, upper bound).")
    p, h = paper.parse_number(printed), _half_unit(printed)
    return "reproduced" if (p - h <= high + 1e-12 and p + h >= low - 1e-12) else "not reproduced"


# =========================================================================== reading files
@dataclass
class Reading:
    """What one source gave under one profile.

    Attributes:
        profile: ``"ci"`` or ``"full"``.
        path: the file, relative to the book's root.
        key: the key read in it.
        value, low, high: the measurement and its 95 % interval in the claim's unit (``None``
            when missing).
        settings: ``image_size``, ``pretrained``, ``epochs`` (or ``kind="count"``) and
            ``settings_from`` (``"file"`` or ``"profile"``).
        provenance: device · date · commit when the file records them, else the profile.
        missing: why there is no value (file or key missing, unreadable); ``None`` when read.
        what: what the source measures, in words.
        broken: the file exists but the value could not be read from it (a missing key or column,
            an unreadable file): the register or the chapter that writes the file must be fixed.
    """

    profile: str
    path: str
    key: str
    value: float | None = None
    low: float | None = None
    high: float | None = None
    settings: dict = field(default_factory=dict)
    provenance: str = ""
    missing: str | None = None
    what: str = ""
    broken: bool = False

    @property
    def ok(self) -> bool:
        """A value was read."""
        return self.missing is None and self.value is not None


@lru_cache(maxsize=None)
def _manifest_table(dataset: str) -> pd.DataFrame:
    """Class counts per split from a packaged manifest (immutable package data: cached)."""
    return data.dataset_table(dataset)


def _file(source, profile: str, root) -> Path:
    """The results file of a :class:`Source` / :class:`PairedGain` under ``profile``:
    ``<results_root>/<profile>/<chapter>/<file>`` (:func:`skinlesion_utils.results.results_dir`)."""
    return results_dir(source.chapter, profile, root) / source.file


def _load(path: Path):
    if path.suffix == ".json":
        return json.loads(path.read_text(encoding="utf-8"))
    if path.suffix == ".csv":
        return pd.read_csv(path, index_col=0)
    raise ConfigError(f"{path.name}: expected a .json or .csv results file")


def _dig(obj, dotted: str):
    cur = obj
    for part in dotted.split("."):
        if isinstance(cur, Mapping) and part in cur:
            cur = cur[part]
        elif isinstance(cur, (list, tuple)) and part.lstrip("-").isdigit() and -len(cur) <= int(part) < len(cur):
            cur = cur[int(part)]
        else:
            raise KeyError(part)
    return cur


def _select_row(df: pd.DataFrame, row) -> pd.Series:
    if row is None:
        if len(df) != 1:
            raise KeyError(f"no row given and the table has {len(df)} rows")
        return df.iloc[0]
    if isinstance(row, str):
        hits = [i for i, label in enumerate(df.index) if str(label) == row]
        if not hits:
            raise KeyError(f"row {row!r}")
        return df.iloc[hits[0]]
    mask = np.ones(len(df), dtype=bool)
    for col, want in dict(row).items():
        if col in df.columns:
            vals = df[col]
        elif col == df.index.name:
            vals = pd.Series(df.index, index=df.index)
        else:
            raise KeyError(f"column {col!r}")
        mask &= (vals.astype(str) == str(want)).to_numpy()
    if not mask.any():
        raise KeyError("row " + ", ".join(f"{k}={v}" for k, v in dict(row).items()))
    return df[mask].iloc[0]


def _number(x) -> float | None:
    if x is None:
        return None
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(v) else v


def _as_bool(x) -> bool | None:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return None
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, (int, np.integer)):
        return bool(x)
    s = str(x).strip().lower()
    if s in ("true", "1", "yes", "imagenet"):
        return True
    if s in ("false", "0", "no", "none", ""):
        return False
    return None


_SETTING_KEYS = ("image_size", "pretrained", "epochs")
#: Files next to a results table that may record its settings and provenance.
_SIDECARS = ("meta.json", "summary.json")


def _settings_in(d) -> dict:
    out = {}
    if isinstance(d, Mapping):
        for k in _SETTING_KEYS:
            if k in d and d[k] is not None:
                out[k] = d[k]
    elif isinstance(d, pd.Series):
        for k in _SETTING_KEYS:
            if k in d.index and not pd.isna(d[k]):
                out[k] = d[k]
    return out


def _settings_from_sidecars(sidecars: list) -> dict:
    """Settings recorded next to a table: ``config``/``setup``/``settings`` of a ``summary.json`` or
    ``meta.json`` (``results.save`` stores ``settings`` as one record per run, all trained under
    one protocol: the first is used), or top-level keys."""
    for side in sidecars:
        if not isinstance(side, Mapping):
            continue
        for k in ("config", "setup", "settings", None):
            part = side if k is None else side.get(k)
            if isinstance(part, list):
                part = next((p for p in part if isinstance(p, Mapping)), None)
            found = _settings_in(part)
            if found:
                return found
    return {}


def _profile_settings(profile: str, budget: str) -> dict:
    p = get_profile(profile)
    size, epochs = {"main": (p.image_size, p.epochs), "bench": (p.bench_image_size, p.bench_epochs),
                    "cam": (p.cam_image_size, p.epochs)}.get(budget, (p.image_size, p.epochs))
    return {"image_size": size, "pretrained": p.pretrained, "epochs": epochs}


def _provenance_of(*dicts) -> str | None:
    for d in dicts:
        if isinstance(d, Mapping) and isinstance(d.get("provenance"), Mapping):
            p = d["provenance"]
            commit = (p.get("commit") or "unknown commit")[:10]
            return f"{p.get('device', 'unknown device')} · {p.get('date', 'unknown date')} · commit {commit}"
    return None


def _read_manifest_count(source: "ManifestCount", r: Reading) -> Reading:
    """:func:`read_source` for a count in a packaged manifest (exact, always comparable)."""
    try:
        table = _manifest_table(source.dataset)
        r.value = r.low = r.high = float(table.loc[source.split, source.label])
    except Exception as exc:  # an unknown dataset or a manifest that cannot be read
        r.missing = f"{r.path}: could not count {source.key} ({type(exc).__name__}: {exc})"
        r.broken = True
        return r
    r.settings, r.provenance = {"kind": "count", "settings_from": "file"}, "packaged manifest"
    return r


def _sidecars(path: Path) -> list:
    """The readable ``meta.json`` (results.save) and ``summary.json`` (results.write_results) next
    to a results table, parsed."""
    out = []
    for name in _SIDECARS:
        if name != path.name and (path.parent / name).is_file():
            try:
                out.append(json.loads((path.parent / name).read_text(encoding="utf-8")))
            except (OSError, ValueError):
                pass
    return out


def _raw_values(obj, source: "Source") -> tuple[list, dict, Any]:
    """``([value, low, high], settings found beside them, the JSON container or None)`` of a
    :class:`Source` in a loaded CSV (DataFrame) or JSON file.

    Raises:
        KeyError: the row, column or key is missing. TypeError, AttributeError: the file's shape
        is not the one the register expects (e.g. a JSON list where a dict was expected).
    """
    if isinstance(obj, pd.DataFrame):
        row = _select_row(obj, source.row)
        if source.value not in row.index:
            raise KeyError(f"column {source.value!r}")
        raw = [row[source.value]] + [row[c] if c is not None and c in row.index else None
                                     for c in (source.low, source.high)]
        return raw, _settings_in(row), None
    raw = [_dig(obj, source.value)] + [_dig_or_none(obj, k) for k in (source.low, source.high)]
    found = {}
    for k in ("config", "setup", "settings"):
        found = found or _settings_in(obj.get(k) if isinstance(obj, Mapping) else None)
    return raw, found, obj


def read_source(source, profile: str, root=None, claim_unit: str = "%") -> Reading:
    """Read one :class:`Source` (or :class:`ManifestCount`) under one profile; never raises for a
    missing or malformed file.

    Args:
        source: where the measurement lives.
        profile: ``"ci"`` or ``"full"``.
        root: the book's root (the folder holding ``results/``; default: found from the working
            directory).
        claim_unit: the claim's unit (``"%"`` turns a stored fraction into percent).

    Returns:
        :class:`Reading`; ``missing`` says what is missing and how to get it, e.g. ``"results/ci/
        05_evaluation/metrics_ci.csv missing — run chapter 05_evaluation"``.
    """
    rel = source.relpath(profile)
    r = Reading(profile=profile, path=rel, key=source.key, what=source.what)
    if isinstance(source, ManifestCount):
        return _read_manifest_count(source, r)
    if isinstance(source, PairedGain):
        return _read_paired_gain(source, profile, root, claim_unit, r)
    path = _file(source, profile, root)
    if not path.is_file():
        if source.chapter == "gpu-bench":
            r.missing = f"{rel} missing — no GPU run yet (`make gpu-bench` on a GPU machine)"
        elif profile == "full":
            r.missing = f"{rel} missing — no GPU (full) run of chapter {source.chapter} yet"
        else:
            r.missing = f"{rel} missing — run chapter {source.chapter}"
        return r
    try:
        obj = _load(path)
    except Exception as exc:  # a half-written or hand-edited file: say so, do not crash the audit
        r.missing = f"{rel} could not be read ({type(exc).__name__}: {exc}) — re-run chapter {source.chapter}"
        r.broken = True
        return r
    sidecars = _sidecars(path)
    try:
        raw, found, container = _raw_values(obj, source)
    except KeyError as exc:
        what = exc.args[0] if exc.args else "such key"
        what = what if isinstance(what, str) and " " in what else f"key {what!r}"
        r.missing = (f"{rel} has no {what} (looked for {source.key}) — re-run chapter {source.chapter}, "
                     "or fix the register in skinlesion_utils/studies/ch09_audit.py")
        r.broken = True
        return r
    except (TypeError, AttributeError) as exc:  # e.g. a JSON list where a dict was expected
        r.missing = f"{rel}: {source.key} not found ({type(exc).__name__}: {exc}) — fix the register or the file"
        r.broken = True
        return r
    value, low, high = (_number(v) for v in raw)
    if value is None:
        r.missing = f"{rel}: {source.key} is empty or not a number"
        r.broken = True
        return r
    if source.unit == "count" and low is None and high is None:
        low = high = value  # a count is exact
    scale = 100.0 if (source.unit == "fraction" and claim_unit == "%") else 1.0
    r.value = value * scale
    r.low = None if low is None else low * scale
    r.high = None if high is None else high * scale
    if source.budget == "data":
        r.settings = {"kind": "count", "settings_from": "file"}
    else:
        found = found or _settings_from_sidecars(sidecars)
        base = _profile_settings(profile, source.budget) if profile in ("ci", "full") else {}
        settings = {**base, **found}
        settings["pretrained"] = _as_bool(settings.get("pretrained"))
        for k in ("image_size", "epochs"):
            if settings.get(k) is not None:
                settings[k] = int(settings[k])
        settings["settings_from"] = "file" if found else "profile"
        r.settings = settings
    r.provenance = _provenance_of(container, *sidecars) or f"profile '{profile}', {rel}"
    return r


def _rows_where(df: pd.DataFrame, sel: Mapping[str, Any]) -> pd.DataFrame:
    mask = np.ones(len(df), dtype=bool)
    for col, want in dict(sel).items():
        if col in df.columns:
            vals = df[col]
        elif col == df.index.name:
            vals = pd.Series(df.index, index=df.index)
        else:
            raise KeyError(f"column {col!r}")
        mask &= (vals.astype(str) == str(want)).to_numpy()
    return df[mask]


def _read_paired_gain(source: "PairedGain", profile: str, root, claim_unit: str, r: Reading) -> Reading:
    rel = r.path
    path = _file(source, profile, root)
    if not path.is_file():
        r.missing = (f"{rel} missing — no GPU (full) run of chapter {source.chapter} yet" if profile == "full"
                     else f"{rel} missing — run chapter {source.chapter}")
        return r
    try:
        df = pd.read_csv(path, index_col=0)
        need = {"id", "y_true", "y_score", source.seed_column}
        lacking = need - set(df.columns) - {df.index.name}
        if lacking:
            raise KeyError(f"columns {sorted(lacking)}")
        ra, rb = _rows_where(df, source.a), _rows_where(df, source.b)
        common = sorted(set(ra[source.seed_column]) & set(rb[source.seed_column]))
        if ra.empty or rb.empty or not common:
            raise KeyError(f"runs {dict(source.a)} and {dict(source.b)} with a common {source.seed_column}")
        pairs = []
        for s in common:
            pa = ra[ra[source.seed_column] == s].sort_values("id")
            pb = rb[rb[source.seed_column] == s].sort_values("id")
            if list(pa["id"]) != list(pb["id"]) or not np.array_equal(pa["y_true"].to_numpy(), pb["y_true"].to_numpy()):
                raise KeyError("the same test images with the same labels in both runs")
            pairs.append((pa, pb))
        if any(list(pa["id"]) != list(pairs[0][0]["id"]) for pa, _ in pairs):
            raise KeyError(f"the same test images for every {source.seed_column}")
    except KeyError as exc:
        what = exc.args[0] if exc.args else "such key"
        r.missing = (f"{rel} has no {what} (looked for {source.key}) — re-run chapter {source.chapter}, "
                     "or fix the register in skinlesion_utils/studies/ch09_audit.py")
        r.broken = True
        return r
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        r.missing = f"{rel} could not be read ({type(exc).__name__}: {exc}) — re-run chapter {source.chapter}"
        r.broken = True
        return r
    # the gain is the mean over every seed both runs have (never one seed alone); one bootstrap seed
    # draws the same resamples of the same labels for every run, so the interval is of the paired,
    # seed-averaged difference (test-image noise; chapter 06's gain_vs_noise weighs seed noise)
    y = pairs[0][0]["y_true"].to_numpy().astype(int)
    points, diffs = [], []
    for pa, pb in pairs:
        sa, sb = pa["y_score"].to_numpy(dtype=float), pb["y_score"].to_numpy(dtype=float)
        points.append(metrics.classification_report(y, sa)[source.metric]
                      - metrics.classification_report(y, sb)[source.metric])
        diffs.append(metrics.bootstrap_samples(y, sa, source.metric, source.n_boot, source.seed)
                     - metrics.bootstrap_samples(y, sb, source.metric, source.n_boot, source.seed))
    point, diff = float(np.mean(points)), np.mean(diffs, axis=0)
    low, high = np.nanpercentile(diff, [2.5, 97.5])
    scale = 100.0 if (source.unit == "fraction" and claim_unit == "%") else 1.0
    r.value, r.low, r.high = float(point) * scale, float(low) * scale, float(high) * scale
    r.key = f"{source.key} (mean over {source.seed_column}s {', '.join(str(s) for s in common)})"
    sidecars = []
    if (path.parent / "meta.json").is_file():
        try:
            sidecars.append(json.loads((path.parent / "meta.json").read_text(encoding="utf-8")))
        except (OSError, ValueError):
            pass
    found = _settings_from_sidecars(sidecars)
    base = _profile_settings(profile, source.budget) if profile in ("ci", "full") else {}
    settings = {**base, **found}
    settings["pretrained"] = _as_bool(settings.get("pretrained"))
    settings["settings_from"] = "file" if found else "profile"
    r.settings = settings
    r.provenance = _provenance_of(*sidecars) or f"profile '{profile}', {rel}"
    return r


def _dig_or_none(obj, dotted: str | None):
    if dotted is None:
        return None
    try:
        return _dig(obj, dotted)
    except KeyError:
        return None


# =========================================================================== the register
def _claim_where(c: paper.Claim) -> str:
    origin = {"paper": "paper", "code": "released code", "data": "released data", "third_party": "third-party page",
              "project": "this project's issues"}.get(c.status, c.status)
    version = "" if c.where.version == "release" else f" {c.where.version}"
    return f"{origin}{version}, {c.where.location}"


def _paper_value(entry: Entry, d: dict) -> dict:
    """``value`` (string as printed), ``unit``, ``where``, ``status``, ``what`` of an entry."""
    if entry.claim is not None:
        c = paper.claim(entry.claim, claims=d)
        return {"value": c.value, "unit": c.unit, "where": _claim_where(c), "status": c.status, "what": c.what}
    if entry.derived is not None:
        a_id, b_id = entry.derived
        a, b = paper.claim(a_id, claims=d), paper.claim(b_id, claims=d)
        a_printed = a.versions.get(b.where.version, a.value)
        value = str(Decimal(a_printed) - Decimal(b.value))
        return {"value": value, "unit": a.unit,
                "where": f"implied: {a_id} ({b.where.version}: {a_printed}) − {b_id} ({b.value})",
                "status": b.status, "what": entry.note}
    if entry.quote is not None:
        section, qid = entry.quote
        item = next((e for e in d.get(section, []) if e.get("id") == qid), None)
        if item is None:
            raise paper.ClaimsError(f"register entry {entry.id!r}: no {section} item {qid!r} in the claims file.")
        text = item["text"]
        src = d["sources"].get(text.get("source", ""), {})
        return {"value": "(qualitative)", "unit": "", "where": f"paper {text.get('version', '')}, "
                f"{src.get('location', text.get('source', ''))}".strip(), "status": "paper",
                "what": text.get("quote", "")}
    raise ConfigError(f"register entry {entry.id!r} names no claim, derivation or quote.")


def _arithmetic_verdict(subjects: list[str], checks: pd.DataFrame, every: bool = False,
                        check_names: tuple[str, ...] = ()) -> tuple[bool, str]:
    """Does a claim fail the paper's own arithmetic?

    A claim checked against several denominators (``external.accuracy``: 660 or 3,297 images) is
    inconsistent only when *no* reading fits (``every=False``). A table cell is inconsistent when
    *any* check of its row that involves it fails (``every=True``): the printed accuracy, recall and
    specificity must hold together.
    """
    rows = checks[checks["subject"].isin(subjects)]
    if check_names:
        rows = rows[[any(c.startswith(n) for n in check_names) for c in rows["check"]]]
    if rows.empty:
        return False, ""
    bad = rows[rows["verdict"] == "inconsistent"]
    if (every and len(bad)) or (not every and len(bad) == len(rows)):
        return True, "; ".join(f"{c}: {t}" for c, t in zip(bad["check"], bad["detail"]))
    return False, ""


def _table_entries(d: dict) -> tuple[list[tuple[Entry, dict]], list[dict]]:
    """Entries for the transcribed cells of Tables 2–4, and one placeholder row per table that
    is not transcribed."""
    entries, placeholders = [], []
    for n, (group, make) in TABLE_SOURCES.items():
        t = d["tables"][n]
        if not t.get("rows"):
            placeholders.append({
                "id": f"table{n}", "group": group, "paper": "not transcribed", "unit": "%",
                "where": f"paper {t['where'].get('version', '')}, {t['where'].get('location', '')}",
                "status": "paper", "what": t.get("what", t.get("title", "")),
                "verdict": "not measurable here",
                "reason": (f"Table {n} ({t.get('title', '')}) is not transcribed in paper_claims.json "
                           f"(status '{t.get('status')}'): the paper's tables could not be read, so none of "
                           "its cells can be compared"),
            })
            continue
        for row in t["rows"]:
            mid = row.get("model_id")
            for col in t["columns"]:
                cell = row.get(col)
                if cell is None or str(cell).strip() in ("", "-", "–", "—", "n/a", "N/A"):
                    continue
                e = Entry(f"table{n}.{mid or row['model']}.{col}", group,
                          sources=(make(mid, col),) if mid else (),
                          not_measurable="" if mid else f"the book builds no model for the row '{row['model']}'")
                pv = {"value": str(cell), "unit": t.get("unit", "%"),
                      "where": f"paper {t['where'].get('version', '')}, {t['where'].get('location', '')}, "
                               f"row {row['model']}, {col}",
                      "status": "paper", "what": f"{col} of {row['model']} ({t.get('title', '')})",
                      "subjects": [f"Table {n}: {row['model']}"] if col in ("accuracy", "recall", "specificity") else [],
                      "every": True,
                      "check_names": ("accuracy", "recall") if col == "accuracy" else ("recall",)}
                entries.append((e, pv))
    return entries, placeholders


def _fmt(v: float | None, unit: str) -> str:
    if v is None:
        return ""
    if unit == "images" or unit == "count":
        return f"{v:,.0f}"
    if unit == "%":
        return f"{v:.1f}"
    return f"{v:.3f}"


def _with_ci(r: Reading | None, unit: str) -> str:
    if r is None or not r.ok:
        return "—"
    s = _fmt(r.value, unit)
    if r.low is not None and r.high is not None and not (unit in ("images", "count") and r.low == r.high == r.value):
        s += f" [{_fmt(r.low, unit)}, {_fmt(r.high, unit)}]"
    return s


def _decide(entry: Entry, pv: dict, readings: dict[str, Reading | None], inconsistent: tuple[bool, str],
            claims: dict) -> tuple[str, str, str]:
    """(verdict, reason, basis profile)."""
    if inconsistent[0]:
        return "inconsistent", f"fails the paper's own arithmetic: {inconsistent[1]}", ""
    if entry.not_measurable:
        return "not measurable here", entry.not_measurable, ""
    reasons, any_read = {}, False
    for prof in ("full", "ci"):  # a comparable GPU run outranks the CPU run
        r = readings.get(prof)
        if r is None:
            continue
        if not r.ok:
            reasons[prof] = f"{prof}: {r.missing}"
            continue
        any_read = True
        ok, why = comparable(r.settings, claims)
        if not ok:
            reasons[prof] = f"{prof} is {why}"
            continue
        if r.low is None or r.high is None:
            reasons[prof] = f"{prof}: {r.path} gives no 95 % interval for {r.key}"
            continue
        v = interval_verdict(pv["value"], r.low, r.high)
        inside = "inside" if v == "reproduced" else "outside"
        how = "equals" if r.low == r.high else f"is {inside} our 95 % interval [{_fmt(r.low, pv['unit'])}, " \
                                                f"{_fmt(r.high, pv['unit'])}] from"
        if r.low == r.high and v != "reproduced":
            how = "differs from"
        return v, f"{pv['value']} {how} {prof} ({why}; {r.path})", prof
    if not entry.sources:
        return "not measurable here", "no results file measures it", ""
    ordered = [reasons[p] for p in sorted(reasons, key=lambda p: p != "ci")]  # ci first: it is what CI can fix
    return ("not measurable here" if any_read else "not measured"), "; ".join(ordered), ""


def _entry_readings(entry: Entry, unit: str, profiles: tuple[str, ...], root) -> tuple[dict, list[str]]:
    """Per profile, the first source of ``entry`` that gives a value (or, when none does, one
    reading holding every message), and the messages of files that exist but could not be read
    (a bug to fix, not a missing run)."""
    readings: dict[str, Reading | None] = {}
    broken: list[str] = []
    for prof in profiles:
        readings[prof] = None
        tried = []
        for src in entry.sources:
            if prof not in src.profiles:
                continue
            rd = read_source(src, prof, root, claim_unit=unit)
            tried.append(rd)
            if rd.broken:
                broken.append(rd.missing)
            if rd.ok:
                break
        if tried:
            best = next((t for t in tried if t.ok), None)
            if best is None:  # all missing: keep every message in one reading
                best = tried[0]
                absent = [t.path for t in tried if t.missing.startswith(f"{t.path} missing")]
                if prof == "full" and len(absent) == len(tried):
                    best.missing = f"no GPU run yet ({', '.join(absent)} missing)"
                else:
                    best.missing = "; ".join(t.missing for t in tried)
            readings[prof] = best
    return readings, broken


def _profile_columns(prof: str, r: Reading | None, unit: str, claims: dict) -> dict:
    """The register's columns of one profile: ``p`` (``"value [low, high]"`` or ``"—"``),
    ``p_value``, ``p_low``, ``p_high``, ``p_file``, ``p_setting``, ``p_provenance``."""
    ok = r is not None and r.ok
    return {
        prof: _with_ci(r, unit),
        f"{prof}_value": r.value if ok else np.nan,
        f"{prof}_low": r.low if ok and r.low is not None else np.nan,
        f"{prof}_high": r.high if ok and r.high is not None else np.nan,
        f"{prof}_file": f"{r.path} ({r.key})" if r is not None else "",
        f"{prof}_setting": comparable(r.settings, claims)[1].split(" (the paper")[0] if ok else "",
        f"{prof}_provenance": r.provenance if ok else "",
    }


def claims_register(root=None, claims: dict | None = None, register: tuple[Entry, ...] = REGISTER,
                    profiles: tuple[str, ...] = PROFILES_READ) -> pd.DataFrame:
    """Every claim of the register (and every cell of a transcribed Table 2–4) against the files.

    Args:
        root: the book's root, the folder holding ``results/`` (default: found from the working
            directory, as :func:`skinlesion_utils.results.results_dir`).
        claims: an edited claims dict (:func:`skinlesion_utils.paper.load_claims`).
        register: the entries to evaluate (default :data:`REGISTER`).
        profiles: whose results files to read (default ``ci`` and ``full``).

    Returns:
        DataFrame indexed by ``id``, one row per claim, with ``group``, ``paper`` (string as
        printed), ``unit``, ``where``, ``status`` (how we know the claim: paper, project,
        third_party, data), ``what``; per profile ``p``: ``p`` (``"value [low, high]"`` string or
        ``"—"``), ``p_value``, ``p_low``, ``p_high`` (numbers in the claim's unit, NaN when not
        measured), ``p_file``, ``p_setting`` and ``p_provenance``; then ``verdict`` (one of
        :data:`REPRODUCTION_VERDICTS`), ``reason``, ``basis`` (the profile the verdict rests on) and ``broken``
        (messages for files that exist but could not be read — a renamed key or column; empty
        when none). Never raises for a missing or malformed results file.
    """
    d = claims if claims is not None else paper.load_claims()
    checks = paper.arithmetic_checks(claims=d)
    n_test = int(paper.claim("data.test_total", claims=d).number)
    rows = []
    items: list[tuple[Entry, dict]] = [(e, _paper_value(e, d)) for e in register]
    table_items, placeholders = _table_entries(d)
    items += table_items
    for entry, pv in items:
        readings, broken = _entry_readings(entry, pv["unit"], profiles, root)
        if entry.derived is not None:
            res = verdicts.check_accuracy(pv["value"], n_test)
            inconsistent = (res["verdict"] == "inconsistent", res["detail"])
        else:
            subjects = pv.get("subjects", [entry.claim] if entry.claim else [])
            inconsistent = _arithmetic_verdict(subjects, checks, every=pv.get("every", False),
                                               check_names=pv.get("check_names", ()))
        verdict, reason, basis = _decide(entry, pv, readings, inconsistent, d)
        row = {"id": entry.id, "group": entry.group, "paper": pv["value"], "unit": pv["unit"], "where": pv["where"],
               "status": pv["status"], "what": pv["what"]}
        for prof in profiles:
            row.update(_profile_columns(prof, readings[prof], pv["unit"], d))
        row.update(verdict=verdict, reason=reason, basis=basis, broken="; ".join(broken))
        rows.append(row)
    for ph in placeholders:
        row = {**{k: ph[k] for k in ("id", "group", "where", "status", "what")}, "paper": ph["paper"], "unit": ph["unit"]}
        for prof in profiles:
            row.update({prof: "—", f"{prof}_value": np.nan, f"{prof}_low": np.nan, f"{prof}_high": np.nan,
                        f"{prof}_file": "", f"{prof}_setting": "", f"{prof}_provenance": ""})
        row.update(verdict=ph["verdict"], reason=ph["reason"], basis="", broken="")
        rows.append(row)
    df = pd.DataFrame(rows).set_index("id")
    order = {g: i for i, g in enumerate(GROUPS)}
    df["_g"] = df["group"].map(order)
    df = df.sort_values("_g", kind="stable").drop(columns="_g")
    return df


# =========================================================================== the other tables
def arithmetic_table(claims: dict | None = None) -> pd.DataFrame:
    """The paper's printed numbers against their own arithmetic, plus the ResNet-50 accuracies
    that the printed gains imply.

    Returns:
        :func:`skinlesion_utils.paper.arithmetic_checks` (``subject, check, printed, n, verdict,
        detail``) followed by one :func:`skinlesion_utils.verdicts.check_accuracy` row per derived
        entry of :data:`REGISTER` (headline minus gain, on the test set's size).
    """
    d = claims if claims is not None else paper.load_claims()
    out = paper.arithmetic_checks(claims=d)
    n_test = int(paper.claim("data.test_total", claims=d).number)
    extra = []
    for e in REGISTER:
        if e.derived is None:
            continue
        pv = _paper_value(e, d)
        r = verdicts.check_accuracy(pv["value"], n_test)
        extra.append({"subject": f"{e.id} (= {pv['where'].removeprefix('implied: ')})", "check": r["check"],
                      "printed": pv["value"], "n": n_test, "verdict": r["verdict"], "detail": r["detail"]})
    return pd.concat([out, pd.DataFrame(extra, columns=out.columns)], ignore_index=True)


def text_vs_code_table(claims: dict | None = None) -> pd.DataFrame:
    """Every documented difference between the paper's text and its released code or data.

    Returns:
        DataFrame indexed by id with ``kind`` (code/data), ``topic`` and ``consequence``
        (:func:`skinlesion_utils.paper.text_vs_code` has the verbatim quotes as well).
    """
    t = paper.text_vs_code(claims=claims)
    return t[["kind", "topic", "consequence"]]


def _read_json(path: Path) -> tuple[dict | None, str | None]:
    if not path.is_file():
        return None, "missing"
    try:
        return json.loads(path.read_text(encoding="utf-8")), None
    except (OSError, ValueError) as exc:
        return None, f"unreadable ({type(exc).__name__})"


def _isic2020_malignant(summary: Mapping | None) -> tuple[int | None, str]:
    """Malignant images in ISIC 2020's labelled training set: from chapter 01's summary when it
    records it, else from the ground-truth CSV."""
    for key in ("isic2020.malignant", "isic2020_ground_truth.malignant"):
        try:
            return int(_dig(summary or {}, key)), f"results/ci/01_dataset/summary.json ({key})"
        except (KeyError, TypeError, ValueError):
            pass
    try:
        folder = data.locate("isic2020_metadata", download=False)
        meta = pd.read_csv(folder / "ISIC_2020_Training_GroundTruth_v2.csv", usecols=["target"])
    except Exception as exc:  # not on disk: say so instead of guessing
        return None, f"ISIC 2020 ground truth not available ({type(exc).__name__}); set SKINLESION_DATA"
    return int(meta["target"].sum()), "ISIC_2020_Training_GroundTruth_v2.csv (column target)"


def _chapter01_findings(add: Callable, s01: Mapping, src01: str, n_mal: int, d: dict) -> None:
    """:func:`data_findings` from chapter 01's ``summary.json``: JPEG encoding by class,
    train–test near-duplicates, near-duplicate clusters, the external set's overlap."""
    try:
        ib, tt, ex = s01["isic_balanced"], s01["train_test"], s01["external"]
        exif = ib.get("images_with_exif", {})
        add("JPEG encoding by class", "(not addressed)",
            f"{ib['malignant_encoded_unlike_any_benign']:,} of {n_mal:,} malignant images are encoded in a way "
            f"no benign image is; EXIF metadata in {exif.get('malignant', 0):,} malignant and "
            f"{exif.get('benign', 0):,} benign images",
            round(ib["malignant_encoded_unlike_any_benign"] / n_mal, 4), "leak",
            f"{src01} (isic_balanced.malignant_encoded_unlike_any_benign, images_with_exif)")
        add("train–test near-duplicates", "(a random 4:1 split; not addressed)",
            f"{tt['b_with_copy']:,} of {tt['b_images']:,} test images ({tt['b_fraction_with_copy']:.1%}) have a "
            f"near-copy among the training images ({tt['pairs']:,} pairs at ≤ {s01.get('threshold_bits')} bits, "
            f"{tt['exact_pairs']:,} exact; {tt['label_disagreements']:,} with different labels)",
            round(tt["b_fraction_with_copy"], 4), "leak" if tt["b_with_copy"] else "holds",
            f"{src01} (train_test.b_with_copy, b_images)")
        add("near-duplicate clusters", "(not addressed)",
            f"{ib['pairs_within']:,} near-duplicate pairs in {ib['clusters']:,} clusters "
            f"({ib['images_in_clusters']:,} images), {ib['clusters_across_splits']:,} clusters span train and "
            f"test; {len(ib.get('byte_identical_groups', [])):,} group(s) of byte-identical files",
            ib["clusters_across_splits"], "leak" if ib["clusters_across_splits"] else "holds",
            f"{src01} (isic_balanced.pairs_within, clusters, clusters_across_splits)")
        ext_claim = paper.claim("external.accuracy", claims=d)
        by_split = ex.get("b_with_copy_by_split_a", {})
        add("external set overlaps isic_balanced", ext_claim.where.quote + " (an 'external' set)",
            f"{ex['b_with_copy']:,} of {ex['b_images']:,} images of {ex['dataset_b']} "
            f"({ex['b_fraction_with_copy']:.1%}) are near-copies of isic_balanced images "
            f"(copies in train: {by_split.get('train', 0):,}, in test: {by_split.get('test', 0):,})",
            round(ex["b_fraction_with_copy"], 4), "leak" if ex["b_with_copy"] else "holds",
            f"{src01} (external.b_with_copy, b_images)")
    except (KeyError, TypeError, ZeroDivisionError) as exc:
        add("chapter 01 summary", "", f"{src01} lacks {exc} — re-run chapter 01_dataset", np.nan,
            "not measured", src01)


def _chapter08_findings(add: Callable, base: Path, profile: str) -> None:
    """:func:`data_findings` from chapter 08's ``summary.json``: the external accuracy without the copies."""
    s08, err08 = _read_json(base / "08_external_validation" / "summary.json")
    src08 = f"results/{profile}/08_external_validation/summary.json"
    if s08 is None:
        add("external accuracy without the copies", "", f"{src08} {err08} — run chapter 08_external_validation",
            np.nan, "not measured", src08)
    else:
        try:
            f = float(s08["contaminated_fraction_data3_test"])
            clean = float(s08["paper_clean_accuracy_if_copies_all_right"])
            add("external accuracy without the copies", f"{s08['paper_external_accuracy']} % on ISIC 2019",
                f"{f:.1%} of the data3/test images in the sample are copies of isic_balanced images; if the "
                f"paper's model was right on all of them, its accuracy on the rest is {100 * clean:.2f} %",
                round(100 * clean, 2), "leak" if f > 0 else "holds",
                f"{src08} (contaminated_fraction_data3_test, paper_clean_accuracy_if_copies_all_right)")
        except (KeyError, TypeError, ValueError) as exc:
            add("external accuracy without the copies", "", f"{src08} lacks {exc} — re-run chapter 08", np.nan,
                "not measured", src08)


def data_findings(root=None, profile: str = "ci", claims: dict | None = None) -> pd.DataFrame:
    """Provenance and leakage of the paper's data, read from the chapters' files.

    Reads ``results/<profile>/01_dataset/summary.json`` (near-duplicates, JPEG encoders),
    the packaged manifests (class counts), the ISIC 2020 ground truth (how many malignant images
    ISIC 2020 has) and, when present, ``results/<profile>/08_external_validation/summary.json``.

    Returns:
        DataFrame indexed by ``finding`` with ``paper says`` (the claim or quote), ``the files
        say`` (a sentence with the numbers), ``value`` (the key number: a share or a count),
        ``verdict`` (``holds``/``does not hold``/``leak``/``not measured``) and ``source``
        (file and key). Findings whose file is missing have verdict ``not measured`` and name the
        chapter to run.
    """
    d = claims if claims is not None else paper.load_claims()
    base = results_root(root) / profile
    s01, err01 = _read_json(base / "01_dataset" / "summary.json")
    src01 = f"results/{profile}/01_dataset/summary.json"
    counts = data.dataset_table("isic_balanced")
    n_ben, n_mal = int(counts.loc["total", "benign"]), int(counts.loc["total", "malignant"])
    total = paper.claim("data.total_images", claims=d)
    rows = []

    def add(finding, says, found, value, verdict, source):
        rows.append({"finding": finding, "paper says": says, "the files say": found, "value": value,
                     "verdict": verdict, "source": source})

    add("balanced classes", total.where.quote,
        f"{n_ben:,} benign : {n_mal:,} malignant = {n_mal / (n_ben + n_mal):.1%} malignant",
        round(n_mal / (n_ben + n_mal), 4), "does not hold" if n_ben != n_mal else "holds",
        "skinlesion_utils/manifests/isic_balanced.sha256")
    m2020, src2020 = _isic2020_malignant(s01)
    if m2020 is None:
        add("a subset of ISIC 2020", total.where.quote, src2020, np.nan, "not measured", src2020)
    else:
        add("a subset of ISIC 2020", total.where.quote,
            f"{n_mal:,} malignant images, but ISIC 2020's labelled images hold {m2020:,} malignant in total: "
            f"at most {m2020 / n_mal:.0%} of them can come from ISIC 2020",
            m2020, "does not hold" if n_mal > m2020 else "holds", src2020)
    if s01 is None:
        for f in ("JPEG encoding by class", "train–test near-duplicates", "near-duplicate clusters",
                  "external set overlaps isic_balanced"):
            add(f, "", f"{src01} {err01} — run chapter 01_dataset", np.nan, "not measured", src01)
    else:
        _chapter01_findings(add, s01, src01, n_mal, d)
    _chapter08_findings(add, base, profile)
    return pd.DataFrame(rows).set_index("finding")


def verdict_counts(register: pd.DataFrame) -> pd.DataFrame:
    """How many claims got each verdict, per group: rows :data:`GROUPS` (plus ``total``),
    columns :data:`REPRODUCTION_VERDICTS` (int counts; every verdict and group present, zeros included)."""
    t = pd.crosstab(register["group"], register["verdict"])
    t = t.reindex(index=[g for g in GROUPS], columns=list(REPRODUCTION_VERDICTS), fill_value=0).fillna(0).astype(int)
    t.loc["total"] = t.sum()
    return t


def trust_summary(register: pd.DataFrame) -> dict:
    """Counts behind the chapter's "what a reader can trust".

    Returns:
        dict with ``n_claims``, one count per verdict (keys of :data:`REPRODUCTION_VERDICTS`),
        ``measured_ci`` (claims with a ``ci`` value), ``measured_full`` (with a ``full`` value),
        ``reproduced_ids``, ``not_reproduced_ids``, ``inconsistent_ids``, ``not_measured_ids`` and
        ``reproduced_paper_ids`` (reproduced claims the paper prints itself, status ``paper``; the
        others were counted in the released data or cited by third parties).
    """
    out: dict[str, Any] = {"n_claims": int(len(register))}
    for v in REPRODUCTION_VERDICTS:
        out[v] = int((register["verdict"] == v).sum())
    for prof in PROFILES_READ:
        col = f"{prof}_value"
        out[f"measured_{prof}"] = int(register[col].notna().sum()) if col in register else 0
    for v, key in (("reproduced", "reproduced_ids"), ("not reproduced", "not_reproduced_ids"),
                   ("inconsistent", "inconsistent_ids"), ("not measured", "not_measured_ids")):
        out[key] = list(register.index[register["verdict"] == v])
    out["reproduced_paper_ids"] = list(register.index[(register["verdict"] == "reproduced")
                                                      & (register["status"] == "paper")])
    return out


def _all_sources(register: tuple[Entry, ...], claims: dict | None) -> list[tuple[str, Any]]:
    d = claims if claims is not None else paper.load_claims()
    out = [(e.id, src) for e in register for src in e.sources]
    for entry, _ in _table_entries(d)[0]:
        out += [(entry.id, src) for src in entry.sources]
    return out


def sources_table(register: tuple[Entry, ...] = REGISTER, claims: dict | None = None) -> pd.DataFrame:
    """The declarative mapping in one table: which file and key measures each claim.

    Returns:
        DataFrame with one row per (claim, source): ``claim``, ``group``, ``profiles`` (which
        profiles' files are read), ``file`` (``results/<profile>/<chapter>/<name>`` with the profile
        as ``<profile>``, or a packaged manifest), ``key`` and ``measures`` (in words). Entries without
        a source appear once with an empty file and the reason.
    """
    groups = {e.id: e.group for e in register}
    rows = []
    for e in register:
        if not e.sources:
            rows.append({"claim": e.id, "group": e.group, "profiles": "", "file": "", "key": "",
                         "measures": e.not_measurable})
    for cid, src in _all_sources(register, claims):
        rows.append({"claim": cid, "group": groups.get(cid, ""), "profiles": ", ".join(src.profiles),
                     "file": src.relpath("<profile>") if not isinstance(src, ManifestCount) else src.relpath(""),
                     "key": src.key, "measures": src.what})
    df = pd.DataFrame(rows, columns=["claim", "group", "profiles", "file", "key", "measures"])
    order = {e.id: i for i, e in enumerate(register)}
    return df.sort_values("claim", key=lambda c: c.map(lambda x: order.get(x, len(order))), kind="stable") \
        .reset_index(drop=True)


def coverage_table(root=None, register: tuple[Entry, ...] = REGISTER, claims: dict | None = None) -> pd.DataFrame:
    """Which of the results files the register reads exist right now.

    Returns:
        DataFrame indexed by file (``results/<profile>/<chapter>/<name>``, one row per profile the
        source is read under) with ``exists`` (bool), ``chapter`` and ``claims`` (how many claims it
        measures). Manifests are left out (they ship with the package).
    """
    rows: dict[str, dict] = {}
    for cid, src in _all_sources(register, claims):
        if isinstance(src, ManifestCount):
            continue
        for prof in src.profiles:
            rel = src.relpath(prof)
            r = rows.setdefault(rel, {"file": rel, "chapter": src.chapter, "exists": _file(src, prof, root).is_file(),
                                      "claims": set()})
            r["claims"].add(cid)
    df = pd.DataFrame([{**r, "claims": len(r["claims"])} for r in rows.values()],
                      columns=["file", "chapter", "exists", "claims"])
    return df.set_index("file")


def group_lines(register: pd.DataFrame, group: str) -> str:
    """The register's rows of one group as Markdown bullets (for the chapter's per-group
    discussion): claim, paper value and where, our ``ci`` (and ``full``) value, verdict, reason.
    Every number comes from the register; none is typed."""
    rows = register[register["group"] == group]
    if rows.empty:
        return f"(no claims in group {group!r})"
    lines = []
    for cid, r in rows.iterrows():
        unit = {"%": " %", "fraction": "", "images": " images"}.get(r["unit"], f" {r['unit']}" if r["unit"] else "")
        paper_part = r["paper"] if r["paper"] in ("not transcribed", "(qualitative)") else f"{r['paper']}{unit}"
        ours = "; ".join(f"{p}: {r[p]}" for p in PROFILES_READ if p in r and r[p] != "—") or "not measured"
        lines.append(f"- **{cid}** — paper {paper_part} ({r['where']}); ours {ours}. "
                     f"**{r['verdict']}**: {r['reason']}.")
    return "\n".join(lines)


def plot_register(register: pd.DataFrame, axes=None):
    """The paper's values against our intervals, one line per claim that has a number on both sides.

    Top: levels (accuracies, AUCs, table cells; percent, AUCs × 100); bottom: gains (percentage
    points; the dotted line is no gain). The paper's value is a diamond; each profile's measurement a dot with its 95 %
    interval (``ci`` blue, ``full`` orange); the verdict is written at the right. Claims without any
    measurement are listed with "not measured".

    Args:
        register: :func:`claims_register` output (or ``claims.csv`` read back with :func:`read_register`).
        axes: two matplotlib axes, levels then gains (default: a new figure).

    Returns:
        the matplotlib Figure.
    """
    import matplotlib.pyplot as plt

    numeric = register[register["unit"].isin(["%", "fraction"]) & (register["paper"].map(_is_number))]
    gains = numeric[numeric.index.str.startswith("gain.")]
    levels = numeric.drop(index=gains.index)
    if axes is None:
        fig, axes = plt.subplots(2, 1, figsize=(9, 0.42 * (len(levels) + len(gains)) + 2.6),
                                 gridspec_kw={"height_ratios": [max(len(levels), 1), max(len(gains), 1)]})
    else:
        fig = axes[0].figure
    colours = {"ci": "tab:blue", "full": "tab:orange"}
    for ax, part, xlabel in ((axes[0], levels, "percent (AUC × 100)"), (axes[1], gains, "percentage points")):
        ys = np.arange(len(part))[::-1]
        for y, (cid, r) in zip(ys, part.iterrows()):
            scale = 100.0 if r["unit"] == "fraction" else 1.0
            ax.plot(paper.parse_number(r["paper"]) * scale, y, "D", color="tab:red", ms=6,
                    label="paper" if y == ys[0] else None)
            for k, prof in enumerate(PROFILES_READ):
                v = r.get(f"{prof}_value")
                if v is None or pd.isna(v):
                    continue
                off = 0.15 * (k - 0.5)
                lo, hi = r.get(f"{prof}_low"), r.get(f"{prof}_high")
                if lo is not None and hi is not None and not (pd.isna(lo) or pd.isna(hi)):
                    ax.plot([lo * scale, hi * scale], [y + off, y + off], "-", color=colours[prof], lw=2)
                ax.plot(v * scale, y + off, "o", color=colours[prof], ms=4, label=f"ours ({prof}), 95 % CI")
            ax.annotate(r["verdict"], xy=(1.01, y), xycoords=("axes fraction", "data"), va="center", fontsize=8)
        ax.set_yticks(ys, list(part.index) if len(part) else [])
        ax.set_xlabel(xlabel)
        ax.margins(x=0.08)
        if ax is axes[1]:
            ax.axvline(0, color="grey", lw=1, ls=":")  # no gain
        ax.grid(axis="x", alpha=0.3)
        if len(part):
            ax.set_ylim(-0.7, len(part) - 0.3)
    handles, labels = [], []
    for ax in axes:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    axes[0].set_title("levels: the paper's value and our 95 % intervals")
    axes[1].set_title("gains over ResNet-50")
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    fig.legend(handles, labels, loc="upper center", ncol=3, fontsize=8, frameon=False)
    return fig


def _is_number(text) -> bool:
    try:
        paper.parse_number(str(text))
        return True
    except ValueError:
        return False


def trust_markdown(register: pd.DataFrame, findings: pd.DataFrame | None = None) -> str:
    """The chapter's "what a reader can trust" as Markdown bullets, every number counted from the
    register (:func:`trust_summary`) and, when given, the leakage findings (:func:`data_findings`)."""
    t = trust_summary(register)

    def ids(key):
        return ", ".join(f"`{c}`" for c in t[key]) if t[key] else "none"

    counts_only = bool(t["reproduced_ids"]) and all(c.startswith("data.") for c in t["reproduced_ids"])
    lines = [
        f"- **{t['reproduced']} of {t['n_claims']}** claims are reproduced — {ids('reproduced_ids')}. "
        + ("All of them are counts of files; " if counts_only else "")
        + f"{len(t['reproduced_paper_ids'])} of them the paper prints itself"
        + (f" ({ids('reproduced_paper_ids')})" if t["reproduced_paper_ids"] else "")
        + "; the rest come from the released data or from third parties (column `status`).",
        f"- **{t['inconsistent']}** fail the paper's own arithmetic — {ids('inconsistent_ids')}.",
        f"- **{t['not reproduced']}** are measured at the paper's setting and contradicted"
        + (f" — {ids('not_reproduced_ids')}." if t["not_reproduced_ids"] else "."),
        f"- **{t['not measurable here']}** cannot be decided here (not the paper's setting, a table that could "
        f"not be read, or a qualitative claim), and **{t['not measured']}** wait for a chapter's results file"
        + (f": {ids('not_measured_ids')}." if t["not_measured_ids"] else "."),
    ]
    if findings is not None:
        leaks = findings[findings["verdict"] == "leak"]
        wrong = findings[findings["verdict"] == "does not hold"]
        if len(wrong):
            lines.append("- The data's description does not hold: " + "; ".join(
                f"*{name}* — {r['the files say']}" for name, r in wrong.iterrows()) + ".")
        if len(leaks):
            lines.append("- Leaks: " + "; ".join(f"*{name}* — {r['the files say']}" for name, r in leaks.iterrows()) + ".")
    return "\n".join(lines)


def read_register(profile=None, root=None) -> pd.DataFrame:
    """``claims.csv`` as :func:`save_audit` wrote it, with its types back: the paper's values stay
    strings as printed (``"0.9670"``), empty text stays empty, and the ``*_value/_low/_high``
    columns are floats (NaN where not measured).

    Raises:
        FileNotFoundError: the chapter has not been run under this profile (names the chapter).
    """
    numeric = [f"{p}_{k}" for p in PROFILES_READ for k in ("value", "low", "high")]
    df = read_results(CHAPTER, "claims", profile=profile, root=root, dtype={"paper": str}, keep_default_na=False,
                      na_values={c: [""] for c in numeric})
    for c in numeric:
        if c in df:
            df[c] = pd.to_numeric(df[c], errors="coerce")
    return df


def save_audit(register: pd.DataFrame, arithmetic: pd.DataFrame, findings: pd.DataFrame, profile=None,
               root=None) -> dict[str, Path]:
    """Write ``claims.csv``, ``arithmetic.csv`` and ``findings.csv`` to
    ``results/<profile>/09_reproduction_audit/`` (via :func:`skinlesion_utils.results.write_results`).

    Returns:
        ``{name: path written}``.
    """
    return write_results(CHAPTER, {"claims": register, "arithmetic": arithmetic, "findings": findings},
                         profile=profile, root=root)
