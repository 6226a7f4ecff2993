"""The checkpoint format: what a run's ``last.pt`` / ``best.pt`` hold, and how they are read
back (defined in chapter 04, used by every chapter that loads a trained model, the CLI and the lab).

A checkpoint is a dict with ``format`` (:data:`CHECKPOINT_FORMAT`), ``spec`` (the model's name,
kwargs and input conventions: :func:`make_model_spec`), ``model`` (the weights), ``epoch`` and
``settings``; ``last.pt`` adds the optimizer, scheduler, scaler, random-number states and the
history, everything an exact resume needs. Checkpoints are read with ``weights_only=True`` (no
pickled code) and written atomically (:func:`save_checkpoint`).
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn

from .augment import IMAGENET_MEAN, IMAGENET_STD
from .models import build_model, unwrap_model
from .results import atomic_open

CHECKPOINT_FORMAT = "skinlesion-checkpoint/1"


class CheckpointError(ValueError):
    """A checkpoint that cannot be used as asked (other architecture, other run settings)."""


def make_model_spec(name: str, kwargs: dict | None = None, *, image_size: int | None = None,
                    num_classes: int = 2) -> dict:
    """A self-describing model spec for checkpoints: name + kwargs + input conventions."""
    return {
        "name": name,
        "kwargs": dict(kwargs or {}),
        "num_classes": int(num_classes),
        "image_size": image_size,
        "normalisation": {"mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD), "scale": 255},
    }


def save_checkpoint(obj: dict, path: str | Path) -> Path:
    """``torch.save`` a checkpoint to ``path`` atomically (``results.atomic_open``)."""
    with atomic_open(path, "wb") as fh:
        torch.save(obj, fh)
    return Path(path)


def released_optimizer_state(state: dict) -> dict:
    """An optimizer ``state_dict`` without its per-parameter state (Adam's moments), marked
    ``"released": True``; ``param_groups`` stay, so it still loads (the moments would restart).

    Written into the final epoch's ``last.pt`` by :func:`fit` and by
    ``runs.release_optimizer_state`` into older checkpoints (chapter 04 explains the run cache).
    """
    return {"state": {}, "param_groups": state.get("param_groups", []), "released": True}


def read_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """Load a checkpoint dict with ``torch.load(weights_only=True)`` (no pickled code).

    Raises:
        FileNotFoundError / CheckpointError: missing file, or not a checkpoint of this package.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No checkpoint at {path}. Fix: train first (fit / get_or_train) or check the path.")
    ckpt = torch.load(path, map_location=map_location, weights_only=True)
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"{path} is not a {CHECKPOINT_FORMAT} checkpoint (found "
            f"{ckpt.get('format') if isinstance(ckpt, dict) else type(ckpt).__name__}). "
            "Fix: load it with torch.load and model.load_state_dict yourself, or retrain."
        )
    return ckpt


def load_weights(model: nn.Module, state: dict, ckpt_spec: dict | None, model_spec: dict | None, path) -> None:
    """model.load_state_dict(state) with one clear error when the architectures differ."""
    ckpt_name = (ckpt_spec or {}).get("name", "?")
    ckpt_kw = (ckpt_spec or {}).get("kwargs", {})
    mine = f"a {type(unwrap_model(model)).__name__}"
    if model_spec:
        kw = model_spec.get("kwargs") or {}
        mine = f"'{model_spec.get('name')}'" + (f" {kw}" if kw else "") + f" ({type(unwrap_model(model)).__name__})"
    if model_spec and ckpt_spec and (model_spec.get("name"), model_spec.get("kwargs") or {}) != (ckpt_name, ckpt_kw or {}):
        reason = "the model specs differ"
    else:
        try:
            unwrap_model(model).load_state_dict(state)
            return
        except RuntimeError as exc:
            first = str(exc).splitlines()
            reason = "; ".join(s.strip() for s in first[:3])[:300]
    raise CheckpointError(
        f"Checkpoint {path} holds weights of '{ckpt_name}'" + (f" {ckpt_kw}" if ckpt_kw else "")
        + f" but the model it is being loaded into is {mine}: {reason}."
        f" Fix: build the architecture named in the checkpoint "
        f"(load_checkpoint(path) without a model builds it for you), or use a checkpoint of "
        f"this architecture, or resume=False / a new out_dir to train this one from scratch."
    )


def load_checkpoint(path: str | Path, model: nn.Module | None = None, *, model_spec: dict | None = None,
                    map_location: str | torch.device = "cpu") -> tuple[nn.Module, dict]:
    """Load a checkpoint's weights into ``model`` (or into a model built from its spec).

    Args:
        path: a ``last.pt`` / ``best.pt`` written by :func:`fit`.
        model: the module to load into; ``None`` builds ``models.build_model(spec name,
            num_classes, **spec kwargs)`` from the checkpoint's own spec.
        model_spec: the spec of ``model`` (checked against the checkpoint's).

    Returns:
        ``(model in eval mode, checkpoint dict)``.

    Raises:
        CheckpointError: the checkpoint holds another architecture (names both).
    """
    ckpt = read_checkpoint(path, map_location)
    spec = ckpt.get("spec") or {}
    if model is None:
        model = build_model(spec["name"], num_classes=spec.get("num_classes", 2), pretrained=False,
                            **(spec.get("kwargs") or {}))
    load_weights(model, ckpt["model"], spec, model_spec, path)
    return model.eval(), ckpt
