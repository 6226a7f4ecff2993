"""Tests of skinlesion_utils.plots on real images and real-looking model outputs."""
from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.collections import PathCollection  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from PIL import Image  # noqa: E402
from sklearn import metrics as skm  # noqa: E402

from skinlesion_utils import plots as P  # noqa: E402
from skinlesion_utils.metrics import reliability_curve  # noqa: E402


def _data_root() -> Path:
    env = os.environ.get("SKINLESION_DATA")
    root = Path(env) if env else Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
    if not (root / "isic_balanced").is_dir():
        pytest.skip(f"real images not found under {root}/isic_balanced; "
                    "set SKINLESION_DATA to the course data folder")
    return root


@pytest.fixture(scope="module")
def real_images():
    """12 test-split images (6 benign, 6 malignant) as uint8 HxWx3 arrays, plus class names."""
    root = _data_root() / "isic_balanced" / "test"
    imgs, names = [], []
    for cls in ("benign", "malignant"):
        for p in sorted((root / cls).glob("*.jpg"))[:6]:
            with Image.open(p) as im:
                imgs.append(np.asarray(im.convert("RGB")))
            names.append(cls)
    return imgs, names


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def scores():
    """Two models' P(malignant) on a 300/360 split: A better than B."""
    rng = np.random.default_rng(0)
    y = np.r_[np.ones(300, int), np.zeros(360, int)]
    a = np.clip(rng.normal(0.3 + 0.4 * y, 0.2), 0, 1)
    b = np.clip(a + rng.normal(0, 0.25, a.size), 0, 1)
    return y, a, b


# --------------------------------------------------------------------------- image_grid
def test_image_grid_real_images_list(real_images):
    imgs, names = real_images
    fig = P.image_grid(imgs, titles=names, ncols=8)
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 12                     # 2 rows x 8, the 4 unused cells removed
    for ax, img, name in zip(fig.axes, imgs, names):
        shown = ax.get_images()
        assert len(shown) == 1
        np.testing.assert_array_equal(np.asarray(shown[0].get_array()), img)
        assert ax.get_title() == name
    assert fig.get_size_inches()[0] == pytest.approx(8 * 1.6)


def test_image_grid_chw_tensor_and_given_ax(real_images):
    imgs, _ = real_images
    batch = torch.from_numpy(np.stack([im.transpose(2, 0, 1) for im in imgs[:5]]))  # [5,3,H,W]
    assert batch.dtype == torch.uint8 and batch.shape[1] == 3
    fig = P.image_grid(batch, ncols=3)
    assert len(fig.axes) == 5
    np.testing.assert_array_equal(np.asarray(fig.axes[4].get_images()[0].get_array()), imgs[4])

    fig2, (left, right) = plt.subplots(1, 2)
    out = P.image_grid(batch, ncols=3, ax=right, title="five")
    assert out is fig2
    assert len(right.child_axes) == 5 and len(left.child_axes) == 0
    assert right.get_title() == "five"


def test_image_grid_mixed_sizes_external_sample():
    root = _data_root() / "isic2019_external_sample" / "malignant"
    paths = sorted(root.glob("*.jpg"))[:4]
    assert len(paths) == 4
    imgs = [Image.open(p).convert("RGB") for p in paths]        # PIL images, varied sizes
    fig = P.image_grid(imgs, titles=[p.stem for p in paths], ncols=2)
    assert len(fig.axes) == 4
    for ax, im in zip(fig.axes, imgs):
        assert np.asarray(ax.get_images()[0].get_array()).shape == (im.height, im.width, 3)


def test_image_grid_errors(real_images):
    imgs, names = real_images
    with pytest.raises(ValueError, match="titles"):
        P.image_grid(imgs, titles=names[:3])
    with pytest.raises(ValueError, match="no images"):
        P.image_grid([])
    with pytest.raises(ValueError, match=r"\[3, H, W\]"):
        P.image_grid([np.zeros((8, 8, 5), np.uint8)])


# --------------------------------------------------------------------------- chapter 05
def _texts(ax):
    return [t.get_text() for t in ax.texts]


def test_plot_confusion_from_labels_and_dict(scores):
    y, a, _ = scores
    pred = (a >= 0.5).astype(int)
    tn, fp, fn, tp = skm.confusion_matrix(y, pred).ravel()
    fig = P.plot_confusion(y, pred)
    assert isinstance(fig, Figure) and len(fig.axes) == 1
    ax = fig.axes[0]
    texts = _texts(ax)
    assert len(texts) == 4
    # rows = true, columns = predicted: the cell texts in row-major order
    for txt, count in zip(texts, (tn, fp, fn, tp)):
        assert txt.startswith(f"{count}\n")
    assert [t.get_text() for t in ax.get_xticklabels()] == ["benign", "malignant"]
    assert f"({100 * tp / (tp + fn):.1f} %)" in texts[3]

    fig2 = P.plot_confusion({"tp": tp, "fp": fp, "tn": tn, "fn": fn}, normalize="true",
                            colorbar=True)
    assert len(fig2.axes) == 2                     # matrix + colorbar
    assert _texts(fig2.axes[0])[3].startswith(f"{tp / (tp + fn):.2f}")
    with pytest.raises(ValueError, match="2x2"):
        P.plot_confusion(np.ones((3, 3)))


def test_plot_roc_overlays_with_auc(scores):
    y, a, b = scores
    fig = P.plot_roc({"A": (y, a), "B": (y, b)})
    ax = fig.axes[0]
    assert len(ax.get_lines()) == 3                # two curves + chance line
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels[0] == f"A (AUC = {skm.roc_auc_score(y, a):.3f})"
    assert labels[1] == f"B (AUC = {skm.roc_auc_score(y, b):.3f})"
    fpr, tpr, _ = skm.roc_curve(y, a)
    np.testing.assert_allclose(ax.get_lines()[0].get_xdata(), fpr)
    np.testing.assert_allclose(ax.get_lines()[0].get_ydata(), tpr)


def test_plot_pr_with_baseline_and_given_ax(scores):
    y, a, b = scores
    fig, axes = plt.subplots(1, 2)
    out = P.plot_pr({"A": (y, a), "B": (y, b)}, ax=axes[1])
    assert out is fig and len(axes[0].get_lines()) == 0
    lines = axes[1].get_lines()
    assert len(lines) == 3
    assert lines[2].get_ydata()[0] == pytest.approx(300 / 660)
    labels = [t.get_text() for t in axes[1].get_legend().get_texts()]
    assert labels[0] == f"A (AP = {skm.average_precision_score(y, a):.3f})"


def test_plot_reliability(scores):
    y, a, b = scores
    fig = P.plot_reliability({"A": (y, a), "B": (y, b)}, n_bins=10)
    assert len(fig.axes) == 2                      # diagram + twin axis with counts
    ax, tw = fig.axes
    assert len(ax.get_lines()) == 3
    rc = reliability_curve(y, a, 10)
    ok = rc["count"] > 0
    np.testing.assert_allclose(ax.get_lines()[0].get_ydata(), rc.loc[ok, "accuracy"])
    heights = [p.get_height() for p in tw.patches]
    assert len(heights) == 10 and sum(heights) == pytest.approx(1.0)
    fig2 = P.plot_reliability((y, a), show_counts=False)
    assert len(fig2.axes) == 1


# --------------------------------------------------------------------------- training curves
def _history(epochs=6):
    e = np.arange(1, epochs + 1)
    return pd.DataFrame({"epoch": e, "train_loss": 0.7 / e, "val_loss": 0.7 / e + 0.05,
                         "val_accuracy": 0.6 + 0.05 * np.log(e), "val_auc": 0.7 + 0.03 * e,
                         "lr": 1e-3 * np.ones(epochs)})


def test_plot_training_curves_dataframe_and_records():
    h = _history()
    fig = P.plot_training_curves(h, title="run")
    assert len(fig.axes) == 2
    loss_ax, met_ax = fig.axes
    assert [l.get_label() for l in loss_ax.get_lines()] == ["train_loss", "val_loss"]
    assert [l.get_label() for l in met_ax.get_lines()] == ["val_accuracy", "val_auc"]  # no lr
    np.testing.assert_allclose(met_ax.get_lines()[0].get_ydata(), h["val_accuracy"])
    np.testing.assert_allclose(loss_ax.get_lines()[0].get_xdata(), h["epoch"])

    fig2 = P.plot_training_curves(h.to_dict("records"), metrics=["val_auc"])
    assert len(fig2.axes[1].get_lines()) == 1

    fig3, one = plt.subplots()
    P.plot_training_curves(h, ax=one)
    assert len(fig3.axes) == 2 and len(one.get_lines()) == 2     # metrics on a twin axis
    with pytest.raises(ValueError, match="no loss column"):
        P.plot_training_curves([{"epoch": 1, "lr": 0.1}])


# --------------------------------------------------------------------------- chapters 02 / 06
def test_plot_scatter_accuracy_flops():
    df = pd.DataFrame({"model": ["resnet18", "resnet50", "asff_resnet50", "mobilenet"],
                       "gflops": [1.8, 4.1, 4.6, 0.3], "accuracy": [0.86, 0.88, 0.90, 0.84],
                       "accuracy_sd": [0.01, 0.012, 0.015, 0.02], "params_m": [11, 25, 27, 3.5]})
    fig = P.plot_scatter_accuracy_flops(df, yerr="accuracy_sd", size="params_m",
                                        highlight=["asff_resnet50"])
    ax = fig.axes[0]
    cols = [c for c in ax.collections if isinstance(c, PathCollection)]
    assert len(cols) == 1
    np.testing.assert_allclose(cols[0].get_offsets(), df[["gflops", "accuracy"]].to_numpy())
    assert sorted(_texts(ax)) == sorted(df["model"])
    assert ax.get_xscale() == "log"
    faces = cols[0].get_facecolors()
    assert not np.allclose(faces[2], faces[0])        # the highlighted model stands out
    with pytest.raises(KeyError, match="x=, y=, label="):
        P.plot_scatter_accuracy_flops(df.rename(columns={"gflops": "flops"}))


def test_plot_points_mean_sd():
    rng = np.random.default_rng(0)
    rows = [{"variant": v, "seed": s, "accuracy": mu + rng.normal(0, 0.01)}
            for v, mu in (("baseline", 0.85), ("+asff", 0.86), ("+asff+aug", 0.87))
            for s in range(5)]
    df = pd.DataFrame(rows)
    fig = P.plot_points_mean_sd(df, "variant", "accuracy")
    ax = fig.axes[0]
    scat = [c for c in ax.collections if isinstance(c, PathCollection)]
    assert len(scat) == 3 and all(len(c.get_offsets()) == 5 for c in scat)
    for i, (v, g) in enumerate(df.groupby("variant", sort=False)):
        np.testing.assert_allclose(np.sort(scat[i].get_offsets()[:, 1]), np.sort(g["accuracy"]))
    # the mean markers (one Line2D per group) sit at the group means
    means = [l.get_ydata()[0] for l in ax.get_lines() if l.get_marker() == "D"]
    np.testing.assert_allclose(means, df.groupby("variant", sort=False)["accuracy"].mean())
    assert [t.get_text() for t in ax.get_xticklabels()][0] == "baseline\n(n=5)"


# --------------------------------------------------------------------------- chapter 07
def test_overlay_cam_on_real_image(real_images):
    img = real_images[0][6]                          # a malignant lesion, 224x224x3 uint8
    h, w = img.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w]
    cam = np.exp(-(((yy - h / 2) ** 2 + (xx - w / 2) ** 2) / (2 * (h / 8) ** 2)))
    cam = (cam / cam.max()).astype(np.float32)
    out = P.overlay_cam(img, cam, alpha=0.5)
    assert out.shape == img.shape and out.dtype == np.uint8
    assert out.min() >= 0 and out.max() == 255       # the library rescales to full range
    assert not np.array_equal(out, img)

    heat = P.overlay_cam(img, cam, alpha=1.0).astype(int)      # the jet map alone
    centre, corner = heat[h // 2, w // 2], heat[0, 0]
    assert centre[0] > centre[2]                     # hot: red
    assert corner[2] > corner[0]                     # cold: blue

    small = P.overlay_cam(torch.from_numpy(img.transpose(2, 0, 1).copy()), cam[::32, ::32])  # 7x7 cam
    assert small.shape == img.shape
    with pytest.raises(ValueError, match="normalise"):
        P.overlay_cam(img, cam * 3)


# --------------------------------------------------------------------------- chapter 03
def test_plot_block_diagram_boxes_arrows_and_errors():
    from matplotlib.patches import FancyBboxPatch

    boxes = [{"key": "a", "text": "A\n1×2", "col": 0, "row": 0}, {"key": "b", "text": "B", "col": 0, "row": 1},
             {"key": "c", "text": "C", "col": 1, "row": 2, "colour": "#ff0000"}]
    fig = P.plot_block_diagram(boxes, [("a", "b"), ("b", "c", "× ω"), ("a", "c")], title="t")
    ax = fig.axes[0]
    assert sum(isinstance(p, FancyBboxPatch) for p in ax.patches) == 3
    texts = [t.get_text() for t in ax.texts]
    assert {"A\n1×2", "B", "C", "× ω"} <= set(texts)
    assert len([t for t in ax.texts if getattr(t, "arrow_patch", None) is not None]) == 3  # one arrow per edge
    with pytest.raises(KeyError, match="'z'"):
        P.plot_block_diagram(boxes, [("a", "z")])


@pytest.mark.parametrize("fusion", ["asff_text", "asff_code", "asff_spatial"])
def test_plot_fusion_walkthrough_shows_every_recorded_shape(fusion):
    from skinlesion_utils import models as M
    from skinlesion_utils.studies.ch03_asff import fusion_walkthrough

    model = M.build_model("asff_resnet50", fusion=fusion, seed=0)
    walk = fusion_walkthrough(model, torch.randn(1, 3, 64, 64))
    fig = P.plot_fusion_walkthrough(walk)
    text = "\n".join(t.get_text() for t in fig.axes[0].texts)
    shown = [s for s in walk.step if s not in ("stem", "head_gap", "head_fc1", "logits")]
    for step in shown:
        assert walk.loc[walk.step == step, "shape_text"].item() in text, step
    assert "head: GAP → FC+ReLU → FC\n1024 → 2048 → 2" in text
    symbol = {"asff_text": "× ω", "asff_code": "× w", "asff_spatial": "× α"}[fusion]
    assert symbol in text
    with pytest.raises(KeyError, match="fusion_walkthrough"):
        P.plot_fusion_walkthrough(walk.drop(columns="dims"))


def test_plot_fusion_weight_histogram_panels_and_log_axis():
    rng = np.random.default_rng(0)
    code = rng.dirichlet(np.ones(64), size=4).ravel()  # rows sum to 1 over 64 "channels"
    df = pd.concat([
        pd.DataFrame({"variant": "text", "mode": "train", "value": rng.uniform(0.4, 0.6, 16), "uniform": 0.5}),
        pd.DataFrame({"variant": "code", "mode": "train", "value": code, "uniform": 1 / 64}),
        pd.DataFrame({"variant": "code", "mode": "eval", "value": rng.dirichlet(np.full(64, 0.05), 4).ravel(), "uniform": 1 / 64}),
    ])
    fig = P.plot_fusion_weight_histogram(df)
    assert [a.get_title() for a in fig.axes] == ["text", "code"]
    assert fig.axes[0].get_xscale() == "linear" and fig.axes[1].get_xscale() == "log"
    labels = fig.axes[1].get_legend_handles_labels()[1]
    assert "train (n=256)" in labels and "eval (n=256)" in labels and "equal logits: 0.0156" in labels
    with pytest.raises(ValueError, match="2 axes"):
        P.plot_fusion_weight_histogram(df, ax=[fig.axes[0]])
    with pytest.raises(KeyError, match="uniform"):
        P.plot_fusion_weight_histogram(df.drop(columns="uniform"))


def test_plot_fusion_weights_by_class_draws_one_panel_per_variant():
    from skinlesion_utils.fusion import ADAPTIVE_FUSIONS

    rng = np.random.default_rng(0)
    rows = []
    for f in ADAPTIVE_FUSIONS:
        y = np.r_[np.zeros(30, int), np.ones(20, int)]
        rows.append(pd.DataFrame({"fusion": f, "seed": 0, "id": range(50), "y_true": y,
                                  "layer3_share": rng.uniform(0.3, 0.7, 50),
                                  "effective_n": rng.uniform(500, 1024, 50)}))
    fig = P.plot_fusion_weights_by_class(pd.concat(rows))
    assert [ax.get_title() for ax in fig.axes] == list(ADAPTIVE_FUSIONS)
    counts = [sum(p.get_height() for p in ax.patches) for ax in fig.axes]
    assert counts == [50, 50, 50]  # every image in one bin of its class histogram
    with pytest.raises(ValueError, match="no adaptive fusion"):
        P.plot_fusion_weights_by_class(pd.DataFrame({"fusion": ["none"], "y_true": [0], "layer3_share": [0.5]}))


def test_asff_code_panel_shows_weights_on_a_few_channels_beside_the_uniform_reference():
    # every image puts its weight on about one channel (effective n ~ 1): on a linear axis that
    # also reaches 1024 the bars would be a sliver at the edge; the log axis keeps them visible
    y = np.r_[np.zeros(6, int), np.ones(4, int)]
    table = pd.DataFrame({"fusion": "asff_code", "seed": 0, "id": range(10), "y_true": y,
                          "layer3_share": 0.001, "effective_n": np.r_[np.full(9, 1.0), 1.4]})
    ax = P.plot_fusion_weights_by_class(table).axes[0]
    assert ax.get_xscale() == "log" and ax.get_xlim()[0] < 1 < 1024 < ax.get_xlim()[1]
    drawn = [p for p in ax.patches if p.get_height() > 0]
    assert sum(p.get_height() for p in drawn) == 10
    assert all(p.get_x() < 2 for p in drawn)  # the bars sit at 1–2 channels, inside the axis
