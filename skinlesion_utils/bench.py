"""Benchmarks: training throughput, the input pipeline, and the compact GPU data file (chapter 04).

* :func:`training_throughput` — images/s of full training steps (forward, backward, optimizer)
  with the data already resident on the device, in fp32, bf16 autocast, bf16 + channels_last
  and optionally ``torch.compile``.
* :func:`pipeline_comparison` — the decode-once tensor store against a naive per-epoch
  PIL/ImageFolder decode at the same resolution: the ratio is why chapter 00 decodes once.
* :func:`pack_gpu_data` / :func:`load_gpu_data` — one compact file (JPEG bytes re-encoded at
  quality 90, ~33 MB for the paper's 3,297 images) that travels with the repository to a GPU
  machine with no internet; decoded there in seconds. Re-encoding changes pixels slightly
  (mean absolute difference is reported by :func:`pack_gpu_data`); it is used for the GPU
  benchmark only, never for the chapters' results.
"""
from __future__ import annotations

import io
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

GPU_DATA_FORMAT = "skinlesion-gpu-data/1"


@dataclass
class Throughput:
    """One throughput measurement."""

    model: str
    image_size: int
    mode: str
    batch_size: int
    images_per_second: float
    seconds_per_step: float
    device: str

    def as_row(self) -> dict:
        return dict(self.__dict__)


MODES = ("fp32", "bf16", "bf16_channels_last", "bf16_channels_last_compile")


def training_throughput(
    model_name: str,
    image_size: int = 224,
    batch_size: int = 32,
    mode: str = "bf16_channels_last",
    steps: int = 10,
    warmup: int = 2,
    device: str = "auto",
    model_kwargs: dict | None = None,
) -> Throughput:
    """Images/s of training steps of ``model_name`` at ``image_size`` on synthetic resident data.

    Args:
        model_name: a name of :func:`skinlesion_utils.models.build_model`.
        mode: one of :data:`MODES`.
        steps: timed steps after ``warmup`` untimed ones (compile happens during warm-up).

    Returns:
        a :class:`Throughput`. Each step = augment-free forward + backward + AdamW step.
    """
    from .models import build_model
    from .profiles import resolve_device
    from .train import normalise

    if mode not in MODES:
        raise ValueError(f"Unknown mode {mode!r}; use one of {MODES}.")
    dev = resolve_device(device)
    torch.manual_seed(0)
    model = build_model(model_name, num_classes=2, **(model_kwargs or {})).to(dev).train()
    x = torch.randint(0, 256, (batch_size, 3, image_size, image_size), dtype=torch.uint8, device=dev)
    y = torch.randint(0, 2, (batch_size,), device=dev)
    channels_last = "channels_last" in mode
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    amp_dtype = torch.bfloat16 if mode.startswith("bf16") else None
    forward = torch.compile(model) if mode.endswith("compile") else model
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def step():
        inp = normalise(x)
        if channels_last:
            inp = inp.contiguous(memory_format=torch.channels_last)
        with torch.autocast(dev.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
            loss = F.cross_entropy(forward(inp), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize()

    for _ in range(warmup):
        step()
    sync()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    sync()
    dt = (time.perf_counter() - start) / steps
    return Throughput(model_name if not model_kwargs else f"{model_name}({','.join(f'{k}={v}' for k, v in model_kwargs.items())})",
                      image_size, mode, batch_size, batch_size / dt, dt, str(dev))


def pipeline_comparison(
    name: str = "isic_balanced",
    split: str = "train",
    resolution: int = 224,
    batch_size: int = 64,
    max_images: int | None = None,
    num_workers: int = 0,
) -> dict:
    """Time one epoch of batches from the tensor store against a naive per-epoch decode.

    The naive path is torchvision's ``ImageFolder`` + ``Resize`` + ``ToTensor`` in a
    ``DataLoader``: every epoch opens and decodes every JPEG again. The store path indexes
    batches from the uint8 tensor decoded once (its one-time decode is reported separately).

    Returns:
        dict with naive_seconds, store_seconds (per epoch), decode_once_seconds, ratio
        (naive / store), images, resolution.
    """
    import torchvision
    from torchvision import transforms

    from .data import ImageTensorStore, locate

    root = locate(name) / split
    tf = transforms.Compose([transforms.Resize((resolution, resolution)), transforms.PILToTensor()])
    folder = torchvision.datasets.ImageFolder(root, transform=tf)
    if max_images is not None:
        idx = np.random.default_rng(0).permutation(len(folder))[:max_images]
        folder = torch.utils.data.Subset(folder, idx.tolist())
    n = len(folder)
    loader = torch.utils.data.DataLoader(folder, batch_size=batch_size, shuffle=True, num_workers=num_workers,
                                         generator=torch.Generator().manual_seed(0))
    start = time.perf_counter()
    for xb, _ in loader:
        xb.float()
    naive = time.perf_counter() - start

    start = time.perf_counter()
    store = ImageTensorStore.from_dataset(name, split, resolution=resolution, cache=False, progress=False)
    decode_once = time.perf_counter() - start
    images = store.images if max_images is None else store.images[:n]
    perm = torch.randperm(len(images), generator=torch.Generator().manual_seed(0))
    start = time.perf_counter()
    for i in range(0, len(images), batch_size):
        images[perm[i : i + batch_size]].float()
    stored = time.perf_counter() - start
    return dict(images=n, resolution=resolution, naive_seconds=naive, store_seconds=stored,
                decode_once_seconds=decode_once, ratio=naive / max(stored, 1e-9))


# ------------------------------------------------------------------------ compact GPU data


def pack_gpu_data(out: Path, name: str = "isic_balanced", resolution: int = 224, quality: int = 90,
                  max_per_class: int | None = None) -> dict:
    """Write one compact file with every image of ``name`` as re-encoded JPEG bytes.

    The file (``torch.save``, loadable with ``weights_only=True``) holds ``jpeg`` (list of
    uint8 tensors), ``labels`` int64 [N], ``ids``, ``splits`` and provenance. It is written
    atomically; nothing is written to the data folder.

    Args:
        max_per_class: keep only the first N files of each split/class folder (tests).

    Returns:
        dict with path, images, megabytes, quality, mean_abs_pixel_change (0–255 scale, on a
        sample of 200 images).
    """
    from PIL import Image

    from .data import CLASSES, _atomic_write_bytes, decode_image, get_spec, locate

    spec = get_spec(name)
    root = locate(name)
    rels = sorted(spec.manifest_entries())
    if max_per_class is not None:
        seen: dict[str, int] = {}
        keep = []
        for rel in rels:
            folder = rel.rsplit("/", 1)[0]
            seen[folder] = seen.get(folder, 0) + 1
            if seen[folder] <= max_per_class:
                keep.append(rel)
        rels = keep
    blobs, labels, changes = [], [], []
    for k, rel in enumerate(rels):
        pixels = decode_image(root / rel, resolution)
        buf = io.BytesIO()
        Image.fromarray(pixels.transpose(1, 2, 0)).save(buf, format="JPEG", quality=quality)
        blob = np.frombuffer(buf.getvalue(), dtype=np.uint8).copy()
        blobs.append(torch.from_numpy(blob))
        labels.append(CLASSES.index(rel.split("/")[-2]))
        if k % max(1, len(rels) // 200) == 0:
            back = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB")).transpose(2, 0, 1)
            changes.append(np.abs(back.astype(np.int16) - pixels.astype(np.int16)).mean())
    payload = {
        "format": GPU_DATA_FORMAT,
        "dataset": name,
        "manifest_sha256": spec.manifest_hash(),
        "resolution": resolution,
        "quality": quality,
        "jpeg": blobs,
        "labels": torch.tensor(labels),
        "ids": rels,
        "splits": [r.split("/")[0] for r in rels],
    }
    buf = io.BytesIO()
    torch.save(payload, buf)
    out = Path(out)
    _atomic_write_bytes(out, buf.getvalue())
    return dict(path=str(out), images=len(rels), megabytes=out.stat().st_size / 1e6, quality=quality,
                mean_abs_pixel_change=float(np.mean(changes)))


def load_gpu_data(path: Path, device: str = "cpu") -> dict:
    """Decode a :func:`pack_gpu_data` file into ``ImageTensorStore`` objects per split.

    JPEGs are decoded with ``torchvision.io.decode_jpeg`` (batched on the GPU when ``device``
    is CUDA). Returns ``{"train": store, "test": store, "meta": {...}}``.
    """
    import warnings

    from .data import DataError, ImageTensorStore

    with warnings.catch_warnings():  # torchvision 0.29 deprecates its codecs in favour of torchcodec
        warnings.simplefilter("ignore", DeprecationWarning)
        from torchvision.io import decode_jpeg

    blob = torch.load(path, weights_only=True)
    if blob.get("format") != GPU_DATA_FORMAT:
        raise DataError(f"{path} is not a GPU data file ({GPU_DATA_FORMAT}). Fix: rebuild it with `make gpu-data`.")
    dev = torch.device(device)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        decoded = decode_jpeg(blob["jpeg"], device=dev) if dev.type == "cuda" else [decode_jpeg(b) for b in blob["jpeg"]]
    images = torch.stack([d.cpu() for d in decoded])
    out = {"meta": {k: blob[k] for k in ("dataset", "manifest_sha256", "resolution", "quality")}}
    for split in sorted(set(blob["splits"])):
        idx = [i for i, s in enumerate(blob["splits"]) if s == split]
        out[split] = ImageTensorStore(images[idx], blob["labels"][idx], [blob["ids"][i] for i in idx],
                                      blob["resolution"], source=f"{path}:{split}")
    return out


def format_table(rows: Sequence[dict], columns: Sequence[str]) -> str:
    """A plain-text table (for terminals and logs)."""
    widths = [max(len(c), *(len(_fmt(r.get(c))) for r in rows)) for c in columns]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths))]
    lines.append("  ".join("-" * w for w in widths))
    for r in rows:
        lines.append("  ".join(_fmt(r.get(c)).ljust(w) for c, w in zip(columns, widths)))
    return "\n".join(lines)


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}" if abs(v) < 1000 else f"{v:.0f}"
    return "" if v is None else str(v)
