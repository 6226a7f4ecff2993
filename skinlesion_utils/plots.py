"""Every figure the chapters show (matplotlib only).

Owns the book's figures: image grids (chapter 00), confusion matrices, ROC / PR curves and
reliability diagrams (chapter 05), block diagrams of the fusion and histograms of its weights
(chapter 03), training curves (chapter 04), accuracy-versus-FLOPs scatter
(chapter 02/06), per-seed points with mean ± sd (chapter 06's ablation) and the Grad-CAM
overlay (chapter 07).

Conventions, the same for every function:

* it returns the :class:`matplotlib.figure.Figure` it drew on;
* it accepts an optional ``ax`` (an existing :class:`~matplotlib.axes.Axes`) and then draws
  there instead of opening a new figure, so chapters can compose panels;
* it never calls ``plt.show()`` (Jupyter shows the returned figure; scripts save it).

:func:`overlay_cam` is the one exception to "returns a Figure": it returns the blended
``uint8 [H, W, 3]`` image so it can be shown in any grid.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np

from .errors import ConfigError
from .metrics import expected_calibration_error, reliability_curve

__all__ = [
    "image_grid",
    "plot_confusion",
    "plot_roc",
    "plot_pr",
    "plot_reliability",
    "plot_training_curves",
    "plot_scatter_accuracy_flops",
    "plot_points_mean_sd",
    "overlay_cam",
    "plot_block_diagram",
    "plot_fusion_walkthrough",
    "plot_fusion_weight_histogram",
    "plot_fusion_weights_by_class",
]


# --------------------------------------------------------------------------- helpers
def _to_numpy(x) -> np.ndarray:
    """A numpy view of a numpy array, torch tensor, PIL image or nested list."""
    if hasattr(x, "detach"):  # torch.Tensor without importing torch
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def _as_hwc_uint8(img, index: int) -> np.ndarray:
    """One image -> ``uint8 [H, W, 3]`` (or ``[H, W]`` grey). Accepts CHW or HWC."""
    a = _to_numpy(img)
    if a.ndim == 3 and a.shape[0] in (1, 3) and a.shape[-1] not in (1, 3):
        a = np.transpose(a, (1, 2, 0))  # CHW -> HWC
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[-1] != 3):
        raise ConfigError(
            f"image {index}: expected an RGB image shaped [3, H, W] or [H, W, 3] (or grey [H, W]), "
            f"found shape {tuple(a.shape)}. Pass uint8 tensors from ImageTensorStore.images or "
            "HxWx3 arrays from PIL (np.asarray(Image.open(path).convert('RGB')))."
        )
    if a.dtype != np.uint8:
        if np.issubdtype(a.dtype, np.floating) and a.size and float(np.nanmax(a)) <= 1.0 + 1e-6:
            a = np.clip(a, 0.0, 1.0) * 255.0
        a = np.clip(np.rint(a), 0, 255).astype(np.uint8)
    return a


def _new_or_given(ax, figsize=None):
    """``(fig, ax)``: a fresh single-panel figure, or the figure that owns ``ax``."""
    if ax is None:
        fig, ax = plt.subplots(figsize=figsize)
        return fig, ax
    return ax.figure, ax


# --------------------------------------------------------------------------- image grid
def image_grid(images, titles: Sequence[str] | None = None, ncols: int = 8,
               figsize: tuple[float, float] | None = None, ax=None, title: str | None = None):
    """Show images in a grid, one panel per image, with optional per-image titles.

    Args:
        images: ``uint8 [N, 3, H, W]`` (tensor or array, e.g. ``ImageTensorStore.images[:16]``),
            ``uint8 [N, H, W, 3]``, or a list of ``H x W x 3`` arrays / PIL images (sizes may
            differ). Float images in ``[0, 1]`` are accepted and scaled to ``0..255``.
        titles: ``N`` strings shown above the panels (e.g. the class names), or ``None``.
        ncols: panels per row (fewer if there are fewer images).
        figsize: inches ``(width, height)``; default 1.6 inch per panel.
        ax: an existing Axes to fill with the grid (its frame is hidden and the panels are
            inset axes inside it); default a new figure.
        title: an optional overall title.

    Returns:
        The :class:`~matplotlib.figure.Figure`. With a new figure the ``N`` panels are
        ``fig.axes`` (unused cells are removed); with ``ax`` given they are ``ax.child_axes``.
    """
    if hasattr(images, "shape") and len(getattr(images, "shape")) == 4:
        arr = _to_numpy(images)
        seq = [arr[i] for i in range(arr.shape[0])]
    elif hasattr(images, "shape") and len(getattr(images, "shape")) in (2, 3):
        seq = [images]  # one single image
    else:
        seq = list(images)
    n = len(seq)
    if n == 0:
        raise ConfigError("image_grid: got no images; pass at least one image.")
    if titles is not None:
        titles = list(titles)
        if len(titles) != n:
            raise ConfigError(
                f"image_grid: got {n} images but {len(titles)} titles; pass one title per image "
                "or titles=None."
            )
    if ncols < 1:
        raise ConfigError(f"image_grid: ncols must be >= 1, got {ncols}.")
    ncols = min(ncols, n)
    nrows = math.ceil(n / ncols)
    pics = [_as_hwc_uint8(img, i) for i, img in enumerate(seq)]

    if ax is None:
        if figsize is None:
            figsize = (1.6 * ncols, 1.6 * nrows + (0.25 * nrows if titles else 0.0)
                       + (0.4 if title else 0.0))
        fig, axes = plt.subplots(nrows, ncols, figsize=figsize, squeeze=False)
        panels = list(axes.ravel())
        for extra in panels[n:]:
            extra.remove()
        panels = panels[:n]
        if title:
            fig.suptitle(title)
    else:
        fig = ax.figure
        ax.set_axis_off()
        if title:
            ax.set_title(title)
        panels = []
        gap = 0.02
        w = (1.0 - gap * (ncols - 1)) / ncols
        h = (1.0 - gap * (nrows - 1)) / nrows
        for i in range(n):
            r, c = divmod(i, ncols)
            panels.append(ax.inset_axes([c * (w + gap), 1.0 - (r + 1) * h - r * gap, w, h]))

    for i, (pax, pic) in enumerate(zip(panels, pics)):
        pax.imshow(pic, cmap="gray" if pic.ndim == 2 else None, vmin=0, vmax=255,
                   interpolation="nearest" if max(pic.shape[:2]) <= 64 else "antialiased")
        pax.set_xticks([])
        pax.set_yticks([])
        for spine in pax.spines.values():
            spine.set_visible(False)
        if titles is not None:
            pax.set_title(str(titles[i]), fontsize=8)
    if ax is None:
        fig.tight_layout()
    return fig


# --------------------------------------------------------------------------- chapter 05
def _curves_dict(curves) -> dict:
    """Accept ``{name: (y_true, y_score)}`` or one ``(y_true, y_score)`` pair."""
    if isinstance(curves, Mapping):
        if not curves:
            raise ConfigError("got an empty dict of curves; pass {name: (y_true, y_score)}.")
        return dict(curves)
    if isinstance(curves, (tuple, list)) and len(curves) == 2:
        return {"model": tuple(curves)}
    raise TypeError(
        "expected a dict {name: (y_true, y_score)} or one (y_true, y_score) pair, "
        f"found {type(curves).__name__}."
    )


def plot_confusion(cm_or_y_true, y_pred=None, labels: Sequence[str] = ("benign", "malignant"),
                   normalize: str | None = None, ax=None, title: str | None = None,
                   cmap: str = "Blues", colorbar: bool = False):
    """Confusion matrix, rows = true class, columns = predicted class.

    Args:
        cm_or_y_true: a 2x2 count matrix ``[[tn, fp], [fn, tp]]`` (scikit-learn's layout),
            a dict ``tp, fp, tn, fn`` from :func:`skinlesion_utils.metrics.confusion`, or the
            labels ``int [N]`` (then ``y_pred`` is required).
        y_pred: ``int [N]`` predicted labels when the first argument is labels.
        labels: class names in label order (0, 1).
        normalize: ``None`` (counts), ``"true"`` (each row sums to 1: recall / specificity on
            the diagonal), ``"pred"`` or ``"all"``.
        ax, title, cmap, colorbar: drawing options.

    Returns:
        The Figure. Each cell shows the count, and the row percentage under it.
    """
    from sklearn.metrics import ConfusionMatrixDisplay, confusion_matrix

    if y_pred is not None:
        y_true = _to_numpy(cm_or_y_true).ravel()
        cm = confusion_matrix(y_true, _to_numpy(y_pred).ravel(), labels=list(range(len(labels))))
    elif isinstance(cm_or_y_true, Mapping):
        c = cm_or_y_true
        try:
            cm = np.array([[c["tn"], c["fp"]], [c["fn"], c["tp"]]])
        except KeyError as e:
            raise KeyError(f"plot_confusion: a dict needs keys tp, fp, tn, fn; missing {e}.") from None
    else:
        cm = _to_numpy(cm_or_y_true)
        if cm.ndim == 1:
            raise ConfigError("plot_confusion: got a 1-D array; pass a 2x2 matrix, or y_true "
                             "together with y_pred.")
    cm = np.asarray(cm)
    k = len(labels)
    if cm.shape != (k, k):
        raise ConfigError(f"plot_confusion: expected a {k}x{k} matrix for labels {tuple(labels)}, "
                         f"found shape {cm.shape}.")
    counts = cm.astype(np.int64)
    with np.errstate(invalid="ignore", divide="ignore"):
        if normalize is None:
            shown = counts
        elif normalize == "true":
            shown = counts / counts.sum(1, keepdims=True)
        elif normalize == "pred":
            shown = counts / counts.sum(0, keepdims=True)
        elif normalize == "all":
            shown = counts / counts.sum()
        else:
            raise ConfigError(f"normalize must be None, 'true', 'pred' or 'all'; got {normalize!r}.")
        row_pct = 100.0 * counts / counts.sum(1, keepdims=True)

    fig, ax = _new_or_given(ax, figsize=(3.8, 3.4))
    disp = ConfusionMatrixDisplay(shown, display_labels=list(labels))
    disp.plot(ax=ax, cmap=cmap, colorbar=colorbar, include_values=False)
    vmax = np.nanmax(shown) if np.size(shown) else 1
    for i in range(k):
        for j in range(k):
            main = f"{counts[i, j]}" if normalize is None else f"{shown[i, j]:.2f}"
            sub = f"\n({row_pct[i, j]:.1f} %)" if normalize is None else f"\n(n={counts[i, j]})"
            colour = "white" if shown[i, j] > 0.5 * vmax else "black"
            ax.text(j, i, main + sub, ha="center", va="center", color=colour, fontsize=10)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if title:
        ax.set_title(title)
    return fig


def plot_roc(curves, ax=None, title: str | None = "ROC curve", chance: bool = True):
    """Overlaid ROC curves with the AUC of each in the legend.

    Args:
        curves: ``{name: (y_true int [N], y_score float [N])}`` (or one pair); label 1 =
            malignant is the positive class.
        ax, title: drawing options; ``chance`` draws the diagonal.

    Returns:
        The Figure (one line per curve, plus the chance diagonal).
    """
    from sklearn.metrics import roc_auc_score, roc_curve

    fig, ax = _new_or_given(ax, figsize=(4.2, 4.0))
    for name, (y_true, y_score) in _curves_dict(curves).items():
        y, s = _to_numpy(y_true).ravel(), _to_numpy(y_score).ravel()
        fpr, tpr, _ = roc_curve(y, s)
        ax.plot(fpr, tpr, lw=1.6, label=f"{name} (AUC = {roc_auc_score(y, s):.3f})")
    if chance:
        ax.plot([0, 1], [0, 1], ls="--", lw=1, color="grey", label="chance")
    ax.set_xlabel("1 − specificity (false-positive rate)")
    ax.set_ylabel("sensitivity (true-positive rate)")
    ax.set_xlim(-0.01, 1.01)
    ax.set_ylim(-0.01, 1.01)
    ax.set_aspect("equal")
    ax.legend(loc="lower right", fontsize=8)
    if title:
        ax.set_title(title)
    return fig


def plot_pr(curves, ax=None, title: str | None = "Precision–recall curve", baseline: bool = True):
    """Overlaid precision–recall curves with average precision (AP) in the legend.

    Args:
        curves: ``{name: (y_true int [N], y_score float [N])}`` (or one pair).
        ax, title: drawing options; ``baseline`` draws the prevalence of the first curve's
            labels (the precision of a random classifier).

    Returns:
        The Figure (one step line per curve, plus the baseline).
    """
    from sklearn.metrics import average_precision_score, precision_recall_curve

    fig, ax = _new_or_given(ax, figsize=(4.2, 4.0))
    prevalence = None
    for name, (y_true, y_score) in _curves_dict(curves).items():
        y, s = _to_numpy(y_true).ravel(), _to_numpy(y_score).ravel()
        prec, rec, _ = precision_recall_curve(y, s)
        ax.step(rec, prec, where="post", lw=1.6,
                label=f"{name} (AP = {average_precision_score(y, s):.3f})")
        if prevalence is None:
            prevalence = float(np.mean(y))
    if baseline and prevalence is not None:
        ax.axhline(prevalence, ls="--", lw=1, color="grey",
                   label=f"prevalence = {prevalence:.3f}")
    ax.set_xlabel("recall (sensitivity)")
    ax.set_ylabel("precision (PPV)")
    ax.set_xlim(-0.01, 1.01)
    ax.set_ylim(0.0, 1.02)
    ax.legend(loc="lower left", fontsize=8)
    if title:
        ax.set_title(title)
    return fig


def plot_reliability(curves, n_bins: int = 10, ax=None, title: str | None = "Reliability diagram",
                     show_counts: bool = True):
    """Reliability diagram: observed malignant rate against mean P(malignant) per bin.

    Args:
        curves: ``{name: (y_true int [N], y_score float [N] in [0, 1])}`` (or one pair).
        n_bins: equal-width bins of [0, 1] (see
            :func:`skinlesion_utils.metrics.reliability_curve`).
        ax, title: drawing options.
        show_counts: add a twin y-axis (right) with the fraction of images per bin for the
            first curve, as light bars.

    Returns:
        The Figure: one marker line per curve (ECE in the legend), the diagonal of perfect
        calibration, and (``show_counts``) a second Axes with the bars.
    """
    fig, ax = _new_or_given(ax, figsize=(4.2, 4.0))
    first = None
    for name, (y_true, y_score) in _curves_dict(curves).items():
        rc = reliability_curve(y_true, y_score, n_bins)
        ece = expected_calibration_error(y_true, y_score, n_bins)
        ok = rc["count"] > 0
        ax.plot(rc.loc[ok, "confidence"], rc.loc[ok, "accuracy"], marker="o", lw=1.4,
                label=f"{name} (ECE = {ece:.3f})")
        if first is None:
            first = rc
    ax.plot([0, 1], [0, 1], ls="--", lw=1, color="grey", label="perfect calibration")
    ax.set_xlabel("mean predicted P(malignant)")
    ax.set_ylabel("observed fraction malignant")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.legend(loc="upper left", fontsize=8)
    if show_counts and first is not None:
        tw = ax.twinx()
        frac = first["count"] / max(int(first["count"].sum()), 1)
        tw.bar(first["bin_centre"], frac, width=(first["bin_hi"] - first["bin_lo"]) * 0.9,
               alpha=0.15, color="C0")
        tw.set_ylim(0, 1)
        tw.set_ylabel("fraction of images in bin", fontsize=8)
        ax.set_zorder(tw.get_zorder() + 1)
        ax.patch.set_visible(False)
    if title:
        ax.set_title(title)
    return fig


# --------------------------------------------------------------------------- chapter 04
def plot_training_curves(history, ax=None, title: str | None = None,
                         metrics: Sequence[str] | None = None):
    """Loss curves (left) and validation metrics (right) per epoch.

    Args:
        history: DataFrame or list of dicts with an ``epoch`` column, loss columns (any name
            ending in ``loss``, e.g. ``train_loss, val_loss``) and metric columns (by default
            every other numeric column whose name contains ``acc``, ``auc``, ``f1``,
            ``recall``, ``precision``, ``specificity``, e.g. ``val_accuracy``).
        ax: ``None`` (new figure with two panels), a pair of Axes (loss, metrics), or one
            Axes (losses on it, metrics on a twin right-hand axis).
        title: overall title.
        metrics: explicit metric columns to draw instead of the automatic choice.

    Returns:
        The Figure; one line per loss column and per metric column.
    """
    import pandas as pd

    df = history if isinstance(history, pd.DataFrame) else pd.DataFrame(list(history))
    if len(df) == 0:
        raise ConfigError("plot_training_curves: the history is empty; train for at least one "
                         "epoch first.")
    if "epoch" in df.columns:
        x = df["epoch"].to_numpy()
    else:
        x = np.arange(1, len(df) + 1)
    loss_cols = [c for c in df.columns if str(c).endswith("loss")]
    if metrics is None:
        keys = ("acc", "auc", "f1", "recall", "precision", "specificity", "sensitivity")
        metrics = [c for c in df.columns if c not in loss_cols and c != "epoch"
                   and any(k in str(c).lower() for k in keys)
                   and pd.api.types.is_numeric_dtype(df[c])]
    else:
        metrics = list(metrics)
        missing = [m for m in metrics if m not in df.columns]
        if missing:
            raise KeyError(f"plot_training_curves: metric columns {missing} not in the history; "
                           f"found {list(df.columns)}.")
    if not loss_cols and not metrics:
        raise ConfigError(
            "plot_training_curves: found no loss column (name ending in 'loss') and no metric "
            f"column in {list(df.columns)}; expected e.g. train_loss, val_loss, val_accuracy."
        )

    if ax is None:
        fig, (ax_l, ax_m) = plt.subplots(1, 2, figsize=(9, 3.4))
    elif isinstance(ax, (list, tuple, np.ndarray)):
        ax_l, ax_m = ax[0], ax[1]
        fig = ax_l.figure
    else:
        ax_l = ax
        ax_m = ax.twinx()
        fig = ax.figure
    for c in loss_cols:
        ax_l.plot(x, df[c], marker="." if len(df) < 30 else None, label=c)
    ax_l.set_xlabel("epoch")
    ax_l.set_ylabel("loss")
    if loss_cols:
        ax_l.legend(fontsize=8, loc="upper right")
    for i, c in enumerate(metrics):
        ax_m.plot(x, df[c], marker="." if len(df) < 30 else None, label=c,
                  color=f"C{(len(loss_cols) + i) % 10}")
    ax_m.set_xlabel("epoch")
    ax_m.set_ylabel("metric")
    if metrics:
        ax_m.legend(fontsize=8, loc="lower right")
    if title:
        fig.suptitle(title)
    if ax is None:
        fig.tight_layout()
    return fig


# --------------------------------------------------------------------------- chapters 02 / 06
def plot_scatter_accuracy_flops(df, x: str = "gflops", y: str = "accuracy", label: str = "model",
                                yerr: str | None = None, size: str | None = None,
                                logx: bool = True, ax=None, title: str | None = None,
                                highlight: Sequence[str] = ()):
    """Accuracy against compute, one annotated point per model.

    Args:
        df: DataFrame, one row per model, with columns ``x`` (e.g. GFLOPs per image), ``y``
            (e.g. test accuracy in [0, 1]) and ``label`` (the model name).
        yerr: optional column with an error bar on ``y`` (e.g. sd over seeds).
        size: optional column scaling the marker area (e.g. parameters in millions).
        logx: log-scale x axis (compute spans orders of magnitude).
        highlight: model names drawn in red (e.g. the paper's ASFF-ResNet50).
        ax, title: drawing options.

    Returns:
        The Figure (one scatter collection; one text label per row).
    """
    import pandas as pd

    df = pd.DataFrame(df)
    needed = [c for c in (x, y, label, yerr, size) if c is not None]
    missing = [c for c in needed if c not in df.columns]
    if missing:
        raise KeyError(f"plot_scatter_accuracy_flops: columns {missing} not in the table; "
                       f"found {list(df.columns)}. Pass x=, y=, label= to name yours.")
    fig, ax = _new_or_given(ax, figsize=(5.5, 4.0))
    xs, ys = df[x].to_numpy(float), df[y].to_numpy(float)
    if size is not None:
        sz = df[size].to_numpy(float)
        areas = 30 + 300 * (sz / max(np.nanmax(sz), 1e-12))
    else:
        areas = np.full(len(df), 40.0)
    names = df[label].astype(str).tolist()
    colours = ["C3" if n in set(highlight) else "C0" for n in names]
    if yerr is not None:
        ax.errorbar(xs, ys, yerr=df[yerr].to_numpy(float), fmt="none", ecolor="grey",
                    elinewidth=1, capsize=2, zorder=1)
    ax.scatter(xs, ys, s=areas, c=colours, alpha=0.8, edgecolors="k", linewidths=0.5, zorder=2)
    for xi, yi, n in zip(xs, ys, names):
        ax.annotate(n, (xi, yi), textcoords="offset points", xytext=(4, 4), fontsize=8)
    if logx and np.all(xs > 0):
        from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

        ax.set_xscale("log")
        ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
    ax.margins(x=0.15, y=0.1)  # room for the name labels
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    ax.grid(alpha=0.3)
    if title:
        ax.set_title(title)
    return fig


def plot_points_mean_sd(df, group: str, value: str, ax=None, order: Sequence[str] | None = None,
                        jitter: float = 0.08, seed: int = 0, title: str | None = None,
                        ddof: int = 1, horizontal: bool = False):
    """Every run as a point, plus mean ± sd per group (the honest ablation plot).

    Args:
        df: long DataFrame, one row per run (e.g. columns ``variant, seed, accuracy``).
        group: column naming the group (x axis).
        value: numeric column plotted (y axis).
        order: group order; default order of first appearance.
        jitter: horizontal jitter of the points (in group units), reproducible via ``seed``.
        ddof: 1 = sample standard deviation.
        horizontal: groups on the y axis instead (long names).
        ax, title: drawing options.

    Returns:
        The Figure: one scatter collection per group (the runs) and one error bar per group
        (mean ± sd, with ``n`` in the tick label).
    """
    import pandas as pd

    df = pd.DataFrame(df)
    missing = [c for c in (group, value) if c not in df.columns]
    if missing:
        raise KeyError(f"plot_points_mean_sd: columns {missing} not in the table; "
                       f"found {list(df.columns)}.")
    groups = list(order) if order is not None else list(dict.fromkeys(df[group].tolist()))
    fig, ax = _new_or_given(ax, figsize=(max(3.5, 1.2 * len(groups) + 1.5), 3.6))
    rng = np.random.default_rng(seed)
    ticks = []
    for i, g in enumerate(groups):
        v = df.loc[df[group] == g, value].to_numpy(float)
        if v.size == 0:
            raise ConfigError(f"plot_points_mean_sd: group {g!r} has no rows in column {group!r}.")
        pos = i + rng.uniform(-jitter, jitter, size=v.size)
        mean = float(np.mean(v))
        sd = float(np.std(v, ddof=ddof)) if v.size > ddof else 0.0
        if horizontal:
            ax.scatter(v, pos, s=18, alpha=0.6, color=f"C{i % 10}", zorder=2)
            ax.errorbar(mean, i + 0.3, xerr=sd, fmt="D", color="k", capsize=4, zorder=3)
        else:
            ax.scatter(pos, v, s=18, alpha=0.6, color=f"C{i % 10}", zorder=2)
            ax.errorbar(i + 0.3, mean, yerr=sd, fmt="D", color="k", capsize=4, zorder=3)
        ticks.append(f"{g}\n(n={v.size})")
    if horizontal:
        ax.set_yticks(range(len(groups)), ticks)
        ax.set_xlabel(value)
        ax.grid(axis="x", alpha=0.3)
    else:
        ax.set_xticks(range(len(groups)), ticks)
        ax.set_ylabel(value)
        ax.grid(axis="y", alpha=0.3)
    ax.set_title(title if title else f"{value}: runs (dots) and mean ± sd (◆)", fontsize=10)
    return fig


# --------------------------------------------------------------------------- chapter 07
def overlay_cam(image, cam, alpha: float = 0.5) -> np.ndarray:
    """Blend a class-activation map over an image with the jet colour map.

    Uses ``pytorch_grad_cam.utils.image.show_cam_on_image`` (the library's own overlay).

    Args:
        image: ``uint8 [H, W, 3]`` RGB (a ``[3, H, W]`` tensor is transposed for you).
        cam: ``float [h, w]`` in [0, 1]; resized bilinearly to ``H x W`` if it differs.
        alpha: weight of the heat map, in [0, 1] (0 = image only, 1 = heat map only).

    Returns:
        ``uint8 [H, W, 3]`` RGB.
    """
    from PIL import Image
    from pytorch_grad_cam.utils.image import show_cam_on_image

    img = _as_hwc_uint8(image, 0)
    if img.ndim != 3:
        raise ConfigError(f"overlay_cam: expected an RGB image [H, W, 3], found shape {img.shape}.")
    m = _to_numpy(cam).astype(np.float32)
    m = np.squeeze(m)
    if m.ndim != 2:
        raise ConfigError(f"overlay_cam: expected a 2-D cam [H, W], found shape {m.shape}.")
    if not np.all(np.isfinite(m)) or m.min() < -1e-6 or m.max() > 1 + 1e-6:
        raise ConfigError(
            f"overlay_cam: cam must be finite and in [0, 1], found range "
            f"[{np.nanmin(m):.3g}, {np.nanmax(m):.3g}]; normalise it first, "
            "e.g. (cam - cam.min()) / (cam.max() - cam.min() + 1e-8)."
        )
    if not 0.0 <= alpha <= 1.0:
        raise ConfigError(f"overlay_cam: alpha must be in [0, 1], got {alpha}.")
    m = np.clip(m, 0.0, 1.0)
    h, w = img.shape[:2]
    if m.shape != (h, w):
        m = np.asarray(Image.fromarray(m).resize((w, h), Image.BILINEAR),
                       dtype=np.float32)
        m = np.clip(m, 0.0, 1.0)
    out = show_cam_on_image(img.astype(np.float32) / 255.0, m, use_rgb=True,
                            image_weight=1.0 - alpha)
    return np.ascontiguousarray(out, dtype=np.uint8)


# --------------------------------------------------------------------------- chapter 03
def plot_block_diagram(boxes, edges, ax=None, title: str | None = None, dx: float = 3.2,
                       dy: float = 1.0, box_width: float = 2.6, box_height: float = 0.72,
                       fontsize: float = 8):
    """A block diagram on a grid: boxes with text, arrows between them.

    Args:
        boxes: sequence of mappings with ``key``, ``text`` (may hold ``\\n``), ``col`` and
            ``row`` (grid position; fractions allowed; rows grow downwards) and optionally
            ``colour``.
        edges: sequence of ``(src_key, dst_key)`` or ``(src_key, dst_key, label)``. Boxes in
            the same column or row are joined by a straight arrow; otherwise the arrow leaves
            the source downwards and turns once, entering the target from the side.
        dx, dy: grid spacing in data units; box_width, box_height: box size in data units.
        ax, title, fontsize: drawing options.

    Returns:
        The Figure (one patch per box, one arrow annotation per edge).

    Raises:
        KeyError: an edge names a box that does not exist.
    """
    from matplotlib.patches import FancyBboxPatch

    boxes = [dict(b) for b in boxes]
    pos = {b["key"]: (b["col"] * dx, -b["row"] * dy) for b in boxes}
    if ax is None:
        cols = [b["col"] for b in boxes]
        rows = [b["row"] for b in boxes]
        w = (max(cols) - min(cols)) * dx + box_width + 0.6
        h = (max(rows) - min(rows)) * dy + box_height + 0.6
        fig, ax = plt.subplots(figsize=(max(4.0, 0.75 * w), max(2.0, 0.62 * h)))
        ax.set_position([0.01, 0.01, 0.98, 0.93 if title else 0.98])
    else:
        fig = ax.figure
    hw, hh = box_width / 2, box_height / 2
    for b in boxes:
        x, y = pos[b["key"]]
        ax.add_patch(FancyBboxPatch((x - hw, y - hh), box_width, box_height,
                                    boxstyle="round,pad=0.02,rounding_size=0.12",
                                    facecolor=b.get("colour", "#eeeeee"), edgecolor="0.3", lw=0.8, zorder=2))
        ax.text(x, y, b["text"], ha="center", va="center", fontsize=fontsize, zorder=3)
    arrow = dict(arrowstyle="-|>", color="0.25", lw=0.9, shrinkA=0, shrinkB=0)
    for edge in edges:
        src, dst, label = (*edge, None)[:3]
        for k in (src, dst):
            if k not in pos:
                raise KeyError(f"plot_block_diagram: edge {src!r} → {dst!r} names box {k!r}, which is not "
                               f"among the boxes {sorted(pos)}.")
        (x0, y0), (x1, y1) = pos[src], pos[dst]
        if abs(x0 - x1) < 1e-9:  # same column: straight down (or up)
            start = (x0, y0 - hh if y1 < y0 else y0 + hh)
            corner, end = start, (x1, y1 + hh if y1 < y0 else y1 - hh)
        elif abs(y0 - y1) < 1e-9:  # same row: straight across
            start = (x0 + hw if x1 > x0 else x0 - hw, y0)
            corner, end = start, (x1 - hw if x1 > x0 else x1 + hw, y1)
        else:  # leave downwards, turn once, enter from the side
            start, corner = (x0, y0 - hh), (x0, y1)
            end = (x1 - hw if x1 > x0 else x1 + hw, y1)
        if corner != start:
            ax.plot([start[0], corner[0]], [start[1], corner[1]], color="0.25", lw=0.9, zorder=1)
        ax.annotate("", xy=end, xytext=corner, arrowprops=arrow, zorder=1)
        if label:
            mx, my = (corner[0] + end[0]) / 2, (corner[1] + end[1]) / 2
            ax.text(mx, my + 0.08 * dy, label, ha="center", va="bottom", fontsize=fontsize, color="0.15",
                    bbox=dict(facecolor="white", edgecolor="none", pad=0.5), zorder=3)
    xs = [p[0] for p in pos.values()]
    ys = [p[1] for p in pos.values()]
    ax.set_xlim(min(xs) - hw - 0.3, max(xs) + hw + 0.3)
    ax.set_ylim(min(ys) - hh - 0.3, max(ys) + hh + 0.3)
    ax.set_aspect("auto")
    ax.axis("off")
    if title:
        ax.set_title(title, fontsize=10)
    return fig


_WALK_COLOURS = {"backbone": "#eeeeee", "F1": "#dbe9f6", "F2": "#fde3c8", "weights": "#d9f0d3", "fused": "#e8daef"}


def plot_fusion_walkthrough(walk, ax=None, title: str | None = None):
    """Chapter 03's figure: the shapes of an ASFF-ResNet50 forward pass as a block diagram.

    Args:
        walk: the DataFrame of :func:`skinlesion_utils.studies.ch03_asff.fusion_walkthrough` (columns
            ``step``, ``dims``, ``shape_text``), for ``asff_text``, ``asff_code`` or
            ``asff_spatial``. Every number on the figure comes from it.
        ax, title: drawing options.

    Layout: the backbone on top, layer3 (F1, blue) on the left, layer4 and its alignment
    (F2, orange) on the right, the weight branch (green) in the middle, then the fused map
    (purple) and the head. The arrows into the fused map carry the weight symbols (ω / w / α).

    Returns:
        The Figure.
    """
    import pandas as pd

    walk = pd.DataFrame(walk)
    missing = [c for c in ("step", "dims", "shape_text") if c not in walk.columns]
    if missing:
        raise KeyError(f"plot_fusion_walkthrough: columns {missing} missing; pass the DataFrame of "
                       "studies.ch03_asff.fusion_walkthrough(model, x).")
    rows = {r.step: r for r in walk.itertuples(index=False)}
    spatial = "compress_low" in rows
    w_shape = tuple(rows["softmax"].dims)
    if spatial:
        a, b = "α", "β"
    elif w_shape == (2,):
        a, b = "ω", "1 − ω"
    else:
        a, b = "w", "1 − w"
    align = [s for s in walk.step if s in ("upsample", "project")]
    short = {"upsample": "resize (upsample)", "project": "1×1 conv"}
    boxes = [
        ("input", "input", 1, 0, "backbone"),
        ("layer2", "conv1 … layer2", 1, 1, "backbone"),
        ("layer3", "layer3 = F1", 0, 2, "F1"),
        ("layer4", "layer4", 2, 3, "F2"),
        (align[0], short[align[0]], 2, 4, "F2"),
        (align[1], short[align[1]] + " = F2", 2, 5, "F2"),
    ]
    if spatial:
        boxes += [
            ("compress_low", "1×1 conv+BN+LReLU", 0.55, 6, "weights"),
            ("compress_high", "1×1 conv+BN+LReLU", 1.45, 6, "weights"),
            ("concat", "concat", 1, 7, "weights"),
            ("logits_conv", "1×1 conv", 1, 8, "weights"),
            ("softmax", f"softmax over levels: {a}, {b}", 1, 9, "weights"),
        ]
        weight_edges = [("layer3", "compress_low"), (align[1], "compress_high"),
                        ("compress_low", "concat"), ("compress_high", "concat"),
                        ("concat", "logits_conv"), ("logits_conv", "softmax")]
    else:
        over = "levels" if w_shape == (2,) else "channels"
        boxes += [
            ("concat", "concat [F1, F2]", 1, 6, "weights"),
            ("gap", "global average pool", 1, 7, "weights"),
            ("fc1", "FC + ReLU", 1, 8, "weights"),
            ("fc2", "FC", 1, 9, "weights"),
            ("softmax", f"softmax over {over}: {a}", 1, 10, "weights"),
        ]
        weight_edges = [("layer3", "concat"), (align[1], "concat"), ("concat", "gap"),
                        ("gap", "fc1"), ("fc1", "fc2"), ("fc2", "softmax")]
    r_fused = max(row for *_, row, _ in boxes) + 1
    fused_text = f"fused = F1·{a} + F2·{b if spatial else '(' + b + ')'}"
    head_ops = {"head_gap": "GAP", "head_fc1": "FC+ReLU", "logits": "FC"}
    present = [s for s in head_ops if s in rows]
    head_text = ("head: " + " → ".join(head_ops[s] for s in present) + "\n"
                 + " → ".join(rows[s].shape_text for s in present))
    boxes += [("fused", fused_text, 1, r_fused, "fused"), ("head", head_text, 1, r_fused + 1, "backbone")]
    spec = []
    for key, label, col, row, colour in boxes:
        text = label if key == "head" else f"{label}\n{rows[key].shape_text}"
        spec.append({"key": key, "text": text, "col": col, "row": row, "colour": _WALK_COLOURS[colour]})
    edges = [("input", "layer2"), ("layer2", "layer3"), ("layer3", "layer4"), ("layer4", align[0]),
             (align[0], align[1]), *weight_edges,
             ("layer3", "fused", f"× {a}"), (align[1], "fused", f"× {b}" if spatial else f"× ({b})"),
             ("softmax", "fused"), ("fused", "head")]
    return plot_block_diagram(spec, edges, ax=ax, title=title)


def plot_fusion_weight_histogram(samples, ax=None, title: str | None = None, bins: int = 40):
    """Chapter 03's figure: histograms of the fusion weight given to layer3, one panel per
    variant, one colour per mode (training / eval).

    Args:
        samples: long DataFrame with columns ``variant``, ``mode``, ``value`` (weights in
            [0, 1]) and ``uniform`` (the weight of equal logits, drawn as a dashed line), e.g.
            :func:`skinlesion_utils.studies.ch03_asff.fusion_init_state`'s first result with a ``variant``
            column added. Variants whose positive values span more than two decades get a
            log-scaled x axis.
        ax: a sequence of Axes, one per variant (default: a new 1 × n figure).
        title, bins: drawing options.

    Returns:
        The Figure.
    """
    import pandas as pd

    df = pd.DataFrame(samples)
    missing = [c for c in ("variant", "mode", "value", "uniform") if c not in df.columns]
    if missing:
        raise KeyError(f"plot_fusion_weight_histogram: columns {missing} missing; found {list(df.columns)}.")
    variants = list(dict.fromkeys(df["variant"]))
    if ax is None:
        fig, axes = plt.subplots(1, len(variants), figsize=(3.6 * len(variants), 3.0), squeeze=False)
        axes = list(axes[0])
    else:
        axes = list(ax) if isinstance(ax, (list, tuple, np.ndarray)) else [ax]
        if len(axes) != len(variants):
            raise ConfigError(f"plot_fusion_weight_histogram: {len(variants)} variants need {len(variants)} axes, got {len(axes)}.")
        fig = axes[0].figure
    for axis, variant in zip(axes, variants):
        part = df[df["variant"] == variant]
        v = part["value"].to_numpy(float)
        pos = v[v > 0]
        logx = pos.size > 0 and pos.max() / pos.min() > 100
        # weights live in [0, 1]: a linear axis shows all of it, a log axis ends at 1
        edges = (np.geomspace(min(pos.min(), part["uniform"].min()), 1.0, bins + 1) if logx
                 else np.linspace(0.0, 1.0, bins + 1))
        for i, (mode, g) in enumerate(part.groupby("mode", sort=False)):
            vals = g["value"].to_numpy(float)
            vals = vals[vals > 0] if logx else vals
            axis.hist(vals, bins=edges, alpha=0.55, color=f"C{i}", label=f"{mode} (n={len(g)})")
        for u in part["uniform"].unique():
            axis.axvline(u, color="k", ls="--", lw=1, label=f"equal logits: {u:.3g}")
        if logx:
            axis.set_xscale("log")
        axis.set_title(str(variant), fontsize=10)
        axis.set_xlabel("weight on layer3")
        axis.set_ylabel("count")
        axis.legend(fontsize=7)
    if title:
        fig.suptitle(title)
    if ax is None:
        fig.tight_layout()
    return fig


def plot_fusion_weights_by_class(table, classes: Sequence[str] = ("benign", "malignant")):
    """Chapter 06's figure: what each trained ASFF variant learned, per class: one panel per
    fusion, histograms over test images.

    * ``asff_text``: ω, the layer-3 share of each image (0.5 = equal mix);
    * ``asff_code``: the effective number of channels ``1 / Σ w²`` (1024 = uniform weights,
      every channel then takes 1/1024 of layer3 and the fused map is ≈ the projected layer4);
    * ``asff_spatial``: the mean over positions of α, the layer-3 share.

    Args:
        table: :func:`skinlesion_utils.fusion.fusion_weight_table` output (the rows of one seed,
            or several).
        classes: names of labels 0 and 1.

    Returns:
        The Figure (one Axes per fusion present).
    """
    spec = {"asff_text": ("layer3_share", "ω = layer-3 weight per image", (0, 1)),
            "asff_code": ("effective_n", "effective channels 1 / Σ w² (1024 = uniform)", None),
            "asff_spatial": ("layer3_share", "mean α over positions (layer-3 share)", (0, 1))}
    present = [f for f in spec if f in set(table["fusion"])]
    if not present:
        raise ConfigError(f"plot_fusion_weights_by_class: the table has no adaptive fusion; found "
                         f"{sorted(set(table['fusion']))}.")
    fig, axes = plt.subplots(1, len(present), figsize=(4.2 * len(present), 3.3), squeeze=False)
    for ax, f in zip(axes[0], present):
        col, label, rng = spec[f]
        part = table[table["fusion"] == f]
        vals = part[col].to_numpy(float)
        if rng is None:
            # effective channels run from 1 (one channel takes all) to 1024 (uniform): on a linear
            # axis that also shows the uniform reference, weights on a few channels are a sliver
            # at the left edge and the panel looks empty — so a log axis over the whole range
            bins = np.geomspace(1.0, 1024.0, 41)
            vals = np.clip(vals, 1.0, 1024.0)
            ax.set_xscale("log")
        else:  # zoom in when all values sit in a narrow band
            lo, hi = max(0.0, float(np.nanmin(vals)) - 0.05), min(1.0, float(np.nanmax(vals)) + 0.05)
            bins = np.linspace(lo, hi if hi > lo else lo + 1e-6, 31)
        for k, (name, colour) in enumerate(zip(classes, ("tab:blue", "tab:red"))):
            v = part.loc[part["y_true"] == k, col].to_numpy(float)
            shown = np.clip(v, 1.0, 1024.0) if rng is None else v
            ax.hist(shown, bins=bins, alpha=0.55, color=colour, label=f"{name} (n={len(v)}, mean {np.nanmean(v):.3g})")
        if f == "asff_code":
            ax.axvline(1024, ls="--", color="grey", lw=1)
            ax.set_xlim(0.8, 1300)
        ax.set_xlabel(label, fontsize=9)
        ax.set_ylabel("test images")
        ax.set_title(f, fontsize=10)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig
