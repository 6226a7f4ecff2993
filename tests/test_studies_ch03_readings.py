"""Tests of chapter 03's readings of the paper's section 2 (``studies.ch03_asff``): eq. 3–6 for a
classifier with one fused output, the detector's eq. 5–6 in a toy, the released fusion layer
transcribed, the three variants side by side and the paper's description beside the code.
Small float64 fusion modules (8 / 16 channels) keep the file fast."""
from __future__ import annotations

import math

import pytest
import torch

from fusion_support import ADAPTIVE, fusion_module as _fusion
from skinlesion_utils import fusion as FU
from skinlesion_utils import models as M
from skinlesion_utils.errors import ConfigError
from skinlesion_utils.studies import ch03_asff as S


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)


def _maps(b: int = 3):
    g = torch.Generator().manual_seed(1)
    return torch.randn(b, 8, 6, 6, generator=g, dtype=torch.float64), torch.randn(b, 16, 3, 3, generator=g, dtype=torch.float64)


@pytest.mark.parametrize("kind", ADAPTIVE)
def test_one_output_gives_eq6_with_one_term_and_the_same_signal_to_both_levels(kind):
    fusion = _fusion(kind, False, "bilinear")
    head = M.ClassifierHead(8, 2, hidden=4).double()
    low, high = _maps()
    r = S.single_output_gradients(fusion, head, low, high, torch.tensor([0, 1, 1]))
    assert r["eq6_layer3"] < 1e-12 and r["eq6_layer4"] < 1e-12
    assert r["same_sign"] == 1.0
    assert r["grad_layer3"] > 0 and r["grad_layer4"] > 0
    assert fusion.detach_weights is False  # worked on a copy


def test_toy_sum_fusion_lets_the_negatives_outvote_the_positive():
    """At logit 0 every output has σ = 1/2: ∂L/∂y = −1/2 for the positive, +1/2 for each negative."""
    t = S.eq5_eq6_toy({"sum": (1, 1, 1), "shielded": (1, 0, 0), "even": (1, 0.5, 0.5)})
    assert list(t.columns) == ["∂L/∂y1", "∂L/∂y2", "∂L/∂y3", "∂L/∂x (eq. 6)"]
    assert t.loc["sum", "∂L/∂y1"] == pytest.approx(-0.5) and t.loc["sum", "∂L/∂y2"] == pytest.approx(0.5)
    assert t.loc["sum", "∂L/∂x (eq. 6)"] == pytest.approx(0.5)  # eq. 5: pushes the object centre down
    assert t.loc["shielded", "∂L/∂x (eq. 6)"] == pytest.approx(-0.5)  # α², α³ = 0: the positive alone
    assert t.loc["even", "∂L/∂x (eq. 6)"] == pytest.approx(0.0)


def test_toy_with_one_output_is_the_classifier():
    t = S.eq5_eq6_toy({"one": (0.3,)}, targets=(1.0,), logit=0.4)
    sig = 1 / (1 + math.exp(-0.4))
    assert t.loc["one", "∂L/∂x (eq. 6)"] == pytest.approx(0.3 * (sig - 1))
    with pytest.raises(ConfigError, match="one weight per target"):
        S.eq5_eq6_toy({"bad": (1, 1)})


def test_transcript_of_the_released_layer_equals_asff_code_and_nothing_else():
    code = FU.ASFFCode(8, 16, hidden=16)
    low, high = torch.randn(2, 8, 6, 6), torch.randn(2, 16, 3, 3)
    ref = S.released_fusion_transcript(low.permute(0, 2, 3, 1), high.permute(0, 2, 3, 1), code)
    fused, _ = code(low, high)
    assert ref.shape == (2, 6, 6, 8)
    torch.testing.assert_close(ref.permute(0, 3, 1, 2), fused)
    nearest = FU.ASFFCode(8, 16, hidden=16, upsample="nearest")
    nearest.load_state_dict(code.state_dict())
    assert (ref.permute(0, 3, 1, 2) - nearest(low, high)[0]).abs().max() > 1e-3  # the resize matters


def test_reading_table_measures_what_each_variant_weights():
    low, high = _maps(2)
    table = S.fusion_reading_table({k: _fusion(k, False, "bilinear") for k in ADAPTIVE}, low, high)
    assert list(table.index) == list(ADAPTIVE)
    assert table.loc["asff_text", "softmax over"] == "2 levels"
    assert table.loc["asff_code", "softmax over"] == "8 channels"
    assert table.loc["asff_spatial", "softmax over"] == "2 levels, at each pixel"
    assert table.loc["asff_text", "layer3 weight per image"] == "1×1×1"
    assert table.loc["asff_code", "layer3 weight per image"] == "8×1×1"
    assert table.loc["asff_spatial", "layer3 weight per image"] == "1×6×6"
    assert table.loc["asff_text", "spread over pixels"] == 0 and table.loc["asff_code", "spread over pixels"] == 0
    assert table.loc["asff_spatial", "spread over pixels"] > 0 and table.loc["asff_code", "spread over channels"] > 0
    assert table["a + b = 1"].all()
    assert table.loc["asff_code", "max |code − variant|"] < 1e-12
    assert table.loc[["asff_text", "asff_spatial"], "max |code − variant|"].isna().all()


def test_text_and_code_table_quotes_the_claims_file():
    t = S.eq7_text_and_code()
    assert list(t.index) == ["inputs", "align layer4", "weights", "normalised over", "fuse", "pseudocode"]
    assert t.map(lambda s: isinstance(s, str) and len(s) > 0).all().all()
    assert not t["paper (v2 text)"].str.contains(r"\\times", regex=False).any()  # TeX spelled out
    assert "14×14" in t.loc["align layer4", "paper (v2 text)"]
    assert "softmax" in t.loc["normalised over", "released code"]
    assert "ω" in t.loc["fuse", "paper (v2 text)"] and "1.0 - weights" in t.loc["fuse", "released code"]
    assert "image" in t.loc["pseudocode", "paper (v2 text)"]
