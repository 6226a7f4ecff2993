"""The checkpoint format: what a run's ``last.pt`` / ``best.pt`` hold, and how they are read
back (defined in chapter 04, used by every chapter that loads a trained model, the CLI and the lab).

A checkpoint is a dict with ``format`` (:data:`CHECKPOINT_FORMAT`), ``spec`` (the model's name,
kwargs and input conventions: :func:`make_model_spec`), ``model`` (the weights), ``epoch`` and
``settings``; ``last.pt`` adds the optimizer, scheduler, scaler, random-number states and the
history, everything an exact resume needs. Checkpoints are read with ``weights_only=True`` (no
pickled code) and written atomically (:func:`save_checkpoint`).
"""
from __future__ import annotations

import pickle
import warnings
import zipfile
from pathlib import Path

import torch
import torch.nn as nn

from .augment import IMAGENET_MEAN, IMAGENET_STD
from .errors import CheckpointError, CheckpointNotFound, first_line
from .models import build_model, unwrap_model
from .results import atomic_open

CHECKPOINT_FORMAT = "skinlesion-checkpoint/1"


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
        CheckpointNotFound: no file at ``path`` (a folder, or nothing).
        CheckpointError: an empty or truncated file, a pickle that holds code (refused), or
            not a checkpoint of this package.
    """
    path = Path(path)
    if not path.is_file():
        what = "a folder, not a file" if path.is_dir() else "no such file"
        raise CheckpointNotFound(f"No checkpoint at {path} ({what}). Fix: train first (fit / get_or_train / "
                                 "`skinlesion train`) or pass the path of a last.pt / best.pt.")
    if path.stat().st_size == 0:
        raise CheckpointError(f"Checkpoint {path} is empty (0 bytes): its writer was stopped. "
                              "Fix: delete it and train again (or resume from the run's last.pt).")
    try:
        with warnings.catch_warnings():  # a foreign pickle's protocol warning is not the message
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(
            f"Refused to load {path}: it holds pickled objects other than tensors and numbers, and a "
            "pickle can run code (torch.load weights_only=True). Fix: use a checkpoint written by this "
            "package, or load it yourself only if you trust who made it."
        ) from exc
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, KeyError) as exc:
        raise CheckpointError(f"Checkpoint {path} is truncated or not a torch file ({first_line(exc).split('. ')[0][:120]}). "
                              "Fix: delete it and train again, or copy the complete file.") from exc
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
    if model is None and not spec.get("name"):
        raise CheckpointError(f"Checkpoint {path} names no model (its spec is {spec!r}). "
                              "Fix: pass the model to load it into: load_checkpoint(path, model).")
    if model is None:
        model = build_model(spec["name"], num_classes=spec.get("num_classes", 2), pretrained=False,
                            **(spec.get("kwargs") or {}))
    load_weights(model, ckpt["model"], spec, model_spec, path)
    return model.eval(), ckpt


def check_best(last: dict, best_path: Path) -> None:
    """Make ``best.pt`` consistent with ``last.pt``, the commit point of an epoch (``train.fit``
    calls it on resume).

    An epoch writes ``last.pt`` (recording ``best_epoch``) and then, if it improved, ``best.pt``.
    A kill between the two leaves ``best.pt`` missing, unreadable or one of an earlier epoch
    while ``last.pt`` records ``best_epoch == epoch``: then the best weights *are* last.pt's,
    and best.pt is rewritten from them. A ``best.pt`` of another epoch than the recorded one in
    any other case (a file copied in, an epoch past ``last.pt``) cannot be repaired.
    """
    if "best_epoch" not in last:  # written before 0.3.0: only a missing best.pt can be told
        if not best_path.is_file():
            save_checkpoint({k: last[k] for k in ("format", "spec", "model", "epoch", "settings")}, best_path)
        return
    want = int(last["best_epoch"])
    if want == 0:  # no epoch improved yet (no validation AUC): no best.pt to check
        return
    try:
        have = int(read_checkpoint(best_path).get("epoch", -1))
    except CheckpointError:
        have = None
    if have == want:
        return
    if want == int(last["epoch"]):
        save_checkpoint({k: last[k] for k in ("format", "spec", "model", "epoch", "settings")}, best_path)
        return
    raise CheckpointError(
        f"{best_path} holds epoch {have} but {best_path.with_name('last.pt')} records the best epoch "
        f"{want}: the best weights are lost. Fix: train this folder again from scratch "
        "(resume=False / `skinlesion train` without --resume), or use another folder."
    )
