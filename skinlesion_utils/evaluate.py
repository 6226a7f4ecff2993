"""Evaluate a trained model on any folder of images (chapters 05 and 08).

``evaluate_folder(checkpoint, folder)`` loads a self-describing checkpoint (its spec names the
architecture, the input size and the normalisation), decodes every image of a folder laid out
``{benign,malignant}/*`` — any size, format (JPEG, PNG, BMP, TIFF, WebP) and mode — to the
checkpoint's input size, and returns every metric of :func:`metrics.classification_report`
with bootstrap 95 % CIs and the per-image predictions. The command line
``python -m skinlesion_utils evaluate --checkpoint FILE --data FOLDER --out FILE.json`` calls it,
so a reader can test a model trained in this book on their own images.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from .checkpoints import load_checkpoint
from .data import ImageTensorStore
from .errors import ConfigError
from .metrics import classification_report, report_with_ci
from .train import predict


@dataclass
class Evaluation:
    """Result of :func:`evaluate_folder`.

    Attributes:
        report: metrics at threshold 0.5 (``metrics.classification_report``).
        ci: DataFrame (rows = metrics, columns point/low/high), bootstrap 95 % CIs.
        predictions: DataFrame id, y_true, y_score (P(malignant)).
        meta: checkpoint, folder, image_size, model spec, counts.
    """

    report: dict
    ci: pd.DataFrame
    predictions: pd.DataFrame
    meta: dict

    def to_json(self) -> dict:
        """JSON-ready dict (what the command line writes)."""
        return {
            "meta": self.meta,
            "metrics": {k: (float(v) if isinstance(v, (int, float)) else v) for k, v in self.report.items()},
            "ci95": {m: {"point": float(r.point), "low": float(r.low), "high": float(r.high)} for m, r in self.ci.iterrows()},
            "predictions": self.predictions.to_dict(orient="records"),
        }


def evaluate_store(model, store, *, threshold: float = 0.5, n_boot: int = 2000, seed: int = 0, device: str = "auto") -> tuple[dict, pd.DataFrame, pd.DataFrame]:
    """Metrics (with CIs) and predictions of ``model`` on an ``ImageTensorStore``."""
    y_true, y_score, ids = predict(model, store, device=device)
    report = classification_report(y_true, y_score, threshold=threshold)
    ci = report_with_ci(y_true, y_score, threshold=threshold, n_boot=n_boot, seed=seed)
    preds = pd.DataFrame({"id": ids, "y_true": y_true, "y_score": y_score})
    return report, ci, preds


def evaluate_folder(
    checkpoint: str | Path,
    folder: str | Path,
    *,
    image_size: int | None = None,
    resize: str = "squash",
    threshold: float = 0.5,
    n_boot: int = 2000,
    seed: int = 0,
    device: str = "auto",
    progress: bool = True,
) -> Evaluation:
    """Evaluate a checkpoint written by :func:`skinlesion_utils.train.fit` on ``folder``.

    Args:
        checkpoint: ``last.pt`` / ``best.pt``.
        folder: ``{benign,malignant}/*`` images of any size, format and mode.
        image_size: input side in px (default: the checkpoint's own training size).
        resize: ``"squash"`` (as the paper) or ``"center_crop"`` (keeps the aspect ratio).
        threshold: P(malignant) at or above which an image is called malignant.

    Raises:
        ConfigError: a threshold outside [0, 1] or an image size < 1.
        DataError: a bad folder or image (names the file and the fix).
        CheckpointError: missing, damaged, refused or not a checkpoint of this package.
    """
    if not 0.0 <= threshold <= 1.0:
        raise ConfigError(f"threshold must be a probability in [0, 1]; found {threshold!r}. Fix: e.g. 0.5.")
    if image_size is not None and image_size < 1:
        raise ConfigError(f"image_size must be >= 1 px; found {image_size!r}. Fix: omit it (the checkpoint's) or pass e.g. 224.")
    model, ckpt = load_checkpoint(checkpoint)
    spec = ckpt.get("spec") or {}
    size = int(image_size or spec.get("image_size") or 224)
    store = ImageTensorStore.from_folder(folder, resolution=size, resize=resize, progress=progress)
    report, ci, preds = evaluate_store(model, store, threshold=threshold, n_boot=n_boot, seed=seed, device=device)
    meta = {
        "checkpoint": str(checkpoint),
        "folder": str(folder),
        "image_size": size,
        "resize": resize,
        "threshold": threshold,
        "model_spec": spec,
        "epoch": ckpt.get("epoch"),
        "counts": store.class_counts(),
    }
    return Evaluation(report, ci, preds, meta)
