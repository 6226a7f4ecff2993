"""Tests of Keras's ResNet-50 (v1) rebuilt in PyTorch (``models.resnet50_keras_v1``, registered as
``resnet50_keras_v1``) and of chapter 03's backbone comparison (``studies.ch03_asff``, section 7).

Most models are built on the meta device (shapes without memory), so counting parameters and
FLOPs at 224 px takes well under a second; the forward passes run at 64 px on the CPU.
"""
from __future__ import annotations

import pytest
import torch
from torch import nn

from skinlesion_utils import models as M
from skinlesion_utils.errors import ConfigError
from skinlesion_utils.studies import ch03_asff as S

STAGES = ("layer1", "layer2", "layer3", "layer4")


def meta(name: str, num_classes: int = 1000, **kw) -> nn.Module:
    with torch.device("meta"):
        return M.build_model(name, num_classes=num_classes, **kw)


@pytest.fixture(scope="module")
def v1() -> nn.Module:
    return meta("resnet50_keras_v1")


@pytest.fixture(scope="module")
def v15() -> nn.Module:
    return meta("resnet50")


# --------------------------------------------------------------------------------------------
# the v1 design, module by module
# --------------------------------------------------------------------------------------------
def test_v1_puts_the_stride_in_the_first_1x1_conv_and_v15_in_the_3x3(v1, v15):
    for stage in STAGES:
        for i, (b1, b15) in enumerate(zip(getattr(v1, stage), getattr(v15, stage))):
            down = 2 if (i == 0 and stage != "layer1") else 1  # layer1 keeps the grid (Keras: stride1=1)
            assert b1.conv1.stride == (down, down) and b1.conv2.stride == (1, 1), (stage, i)
            assert b15.conv1.stride == (1, 1) and b15.conv2.stride == (down, down), (stage, i)
            assert b1.conv1.kernel_size == (1, 1) and b1.conv2.kernel_size == (3, 3)
            if b1.downsample is not None:  # the shortcut's 1×1 conv is strided in both designs
                assert b1.downsample[0].stride == b15.downsample[0].stride == (down, down)


def test_v1_convs_have_biases_and_batchnorm_is_keras(v1, v15):
    convs = [m for m in v1.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 53 and all(c.bias is not None and c.bias.shape == (c.out_channels,) for c in convs)
    assert all(m.bias is None for m in v15.modules() if isinstance(m, nn.Conv2d))
    bns = [m for m in v1.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(bns) == 53
    assert all(m.eps == M.KERAS_BN_EPS == 1.001e-5 and m.momentum == M.KERAS_BN_MOMENTUM == 0.01 for m in bns)


def test_keras_momentum_gives_keras_moving_average_update():
    """Keras (momentum 0.99): moving = 0.99·moving + 0.01·batch. One training step from the
    initial running mean 0 must therefore leave 0.01 × the batch mean."""
    bn = M.build_model("resnet50_keras_v1", seed=0).bn1.train()
    x = torch.randn(4, 64, 5, 5) + 3.0
    bn(x)
    torch.testing.assert_close(bn.running_mean, 0.01 * x.mean(dim=(0, 2, 3)))


def test_v1_biases_start_at_zero_like_keras():
    model = M.build_model("resnet50_keras_v1", num_classes=2, seed=0)
    assert all(torch.count_nonzero(m.bias) == 0 for m in model.modules() if isinstance(m, nn.Conv2d))


def test_torchvision_weights_load_into_v1_except_the_conv_biases(v15):
    model = M.build_model("resnet50_keras_v1", num_classes=1000, seed=0)
    ref = M.build_model("resnet50", num_classes=1000, seed=0)
    result = model.load_state_dict(ref.state_dict(), strict=False)
    biases = {f"{n}.bias" for n, m in model.named_modules() if isinstance(m, nn.Conv2d)}
    assert set(result.missing_keys) == biases and not result.unexpected_keys


# --------------------------------------------------------------------------------------------
# counts as each framework reports them
# --------------------------------------------------------------------------------------------
def test_keras_style_counts_equal_the_published_keras_numbers(v1):
    """keras.applications.ResNet50(include_top=True).summary() prints Total 25,636,712, Trainable
    25,583,592, Non-trainable 53,120. Sources: the 'Parameters' column of Keras's applications
    table (keras-team/keras, docs/templates/applications.md, commit 034466bbe50b…) for the total;
    the split follows keras/applications/resnet.py (every BatchNormalization keeps moving_mean and
    moving_variance as non-trainable weights; every Conv2D has a bias)."""
    published = {"total": 25_636_712, "trainable": 25_583_592, "non_trainable": 53_120}
    assert S.keras_parameter_counts(v1) == published
    assert S.KERAS_RESNET50_PUBLISHED == published
    # PyTorch's own count leaves the BN statistics (buffers) out: it is Keras's trainable count
    assert M.count_parameters(v1) == (published["trainable"], published["trainable"])
    # ResNet50(include_top=False), the released code's body: the same minus Dense(1000)
    v1.fc = nn.Identity()
    try:
        body = S.keras_parameter_counts(v1)
    finally:
        v1.fc = nn.Linear(2048, 1000, device="meta")
    assert body["total"] == published["total"] - (2048 * 1000 + 1000)
    assert body["non_trainable"] == published["non_trainable"]


def test_v1_differs_from_torchvision_by_the_conv_biases_only(v1, v15):
    out_channels = sum(m.out_channels for m in v15.modules() if isinstance(m, nn.Conv2d))
    assert M.count_parameters(v15)[0] == 25_557_032  # torchvision's documented ResNet-50 size
    assert M.count_parameters(v1)[0] - M.count_parameters(v15)[0] == out_channels
    assert S.keras_parameter_counts(v1)["non_trainable"] == S.keras_parameter_counts(v15)["non_trainable"]


def test_keras_counts_treat_frozen_parameters_as_non_trainable():
    model = meta("resnet50_keras_v1", num_classes=2)
    before = S.keras_parameter_counts(model)
    model.layer1.requires_grad_(False)
    frozen = sum(p.numel() for p in model.layer1.parameters())
    after = S.keras_parameter_counts(model)
    assert after["total"] == before["total"]
    assert after["trainable"] == before["trainable"] - frozen
    assert after["non_trainable"] == before["non_trainable"] + frozen


# --------------------------------------------------------------------------------------------
# shapes, forward pass, FLOPs
# --------------------------------------------------------------------------------------------
def test_stage_shapes_are_torchvisions_at_224_and_64():
    table = S.backbone_comparison(image_sizes=(224, 64))
    v1, v15 = table.loc["Keras ResNet50 (v1)"], table.loc["torchvision ResNet-50 (v1.5)"]
    for col, shape in (("layer3 @224", "1024×14×14"), ("layer4 @224", "2048×7×7"),
                       ("layer3 @64", "1024×4×4"), ("layer4 @64", "2048×2×2")):
        assert v1[col] == v15[col] == shape, col
    assert v1["Keras total"] == S.KERAS_RESNET50_PUBLISHED["total"]
    assert v1["GMACs @224"] < v15["GMACs @224"] and v1["GMACs @64"] < v15["GMACs @64"]


def test_forward_gives_two_logits_at_64_px():
    model = M.build_model("resnet50_keras_v1", num_classes=2, seed=0)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        out = model.eval()(x)
    assert out.shape == (2, 2) and torch.isfinite(out).all()
    out = model.train()(x)  # training mode: BatchNorm on the batch's statistics, gradients flow
    out.sum().backward()
    assert model.layer2[0].conv1.bias.grad is not None
    hidden = M.build_model("resnet50_keras_v1", num_classes=2, head_hidden=64, seed=0)
    assert isinstance(hidden.fc, nn.Sequential) and hidden.fc[0].out_features == 64


def test_flops_differ_only_in_the_first_1x1_convs_of_layer2_to_layer4(v1, v15):
    for size in (224, 64):
        diff = S.backbone_flops_difference(image_size=size)
        assert list(diff.index) == ["layer2.0.conv1", "layer3.0.conv1", "layer4.0.conv1"]
        v15_col, v1_col = diff.columns[:2]
        # stride 2 before the 1×1 conv: it runs on a quarter of the positions
        torch.testing.assert_close(torch.tensor(diff[v1_col].values), torch.tensor(diff[v15_col].values) / 4)
        total = (M.count_flops(v1, size) - M.count_flops(v15, size)) / 2e6
        assert diff["Δ MMACs"].sum() == pytest.approx(total)


def test_design_table_reads_the_modules():
    table = S.backbone_design_table()
    v1, v15 = table.loc["Keras ResNet50 (v1)"], table.loc["torchvision ResNet-50 (v1.5)"]
    assert (v1["1×1 conv1 stride"] == 2).all() and (v1["3×3 conv2 stride"] == 1).all()
    assert (v15["1×1 conv1 stride"] == 1).all() and (v15["3×3 conv2 stride"] == 2).all()
    assert (v1["conv biases"] == "53/53").all() and (v15["conv biases"] == "0/53").all()
    assert (v1["BN momentum"] == "0.01").all() and (v15["BN momentum"] == "0.1").all()


# --------------------------------------------------------------------------------------------
# registry
# --------------------------------------------------------------------------------------------
def test_v1_is_a_reference_model_outside_the_paper_comparison():
    assert "resnet50_keras_v1" not in M.list_models()
    assert M.list_models(references=True) == [*M.list_models(), "resnet50_keras_v1"]
    with pytest.raises(ConfigError, match="pretrained=False"):
        M.build_model("resnet50_keras_v1", pretrained=True)
    with pytest.raises(ConfigError, match="resnet50_keras_v1"):  # the error lists every buildable name
        M.build_model("resnet50_keras_v2")
