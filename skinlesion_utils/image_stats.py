"""Per-image statistics: what an image file and its pixels look like, apart from the lesion.

Defined in chapter 00 (sizes, modes, formats; colour by class), used again by chapter 01 (file
headers of the paper's images) and chapter 08 (how far the external set's images are from the
training images).

* :func:`image_file_table` — width, height, mode, format, EXIF orientation and bytes of every
  image, read from the file headers only.
* :func:`colour_statistics` — per-image mean R, G, B, brightness and contrast of a tensor store.
"""
from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Sequence

import pandas as pd
from PIL import Image

from .data import CLASSES, IMAGE_EXTENSIONS, ImageTensorStore

EXIF_ORIENTATION = 0x0112  # the EXIF tag: 1 upright, 3 rotated 180°, 6 / 8 rotated 90° (cw / ccw), ...


def image_file_table(root: Path, rels: Sequence[str] | None = None) -> pd.DataFrame:
    """One row per image file with its size and mode, read from the file headers only.

    Args:
        root: dataset folder. rels: relative paths (default: every image under ``root``).

    Returns:
        DataFrame with columns id, class, width, height (as stored, before any EXIF rotation),
        mode, format, orientation (the EXIF orientation tag, 1 = upright when absent; decoding
        applies it, see ``data.DECODE_METHOD``), bytes.
    """
    root = Path(root)
    if rels is None:
        rels = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)
    rows = []
    for rel in rels:
        with Image.open(root / rel) as img:
            rows.append(
                dict(id=rel, **{"class": PurePosixPath(rel).parts[-2]}, width=img.width, height=img.height,
                     mode=img.mode, format=img.format, orientation=int(img.getexif().get(EXIF_ORIENTATION, 1)),
                     bytes=(root / rel).stat().st_size)
            )
    return pd.DataFrame(rows)


def colour_statistics(store: ImageTensorStore) -> pd.DataFrame:
    """Per-image colour statistics of a store, for a look at what separates the classes.

    Returns:
        DataFrame (one row per image) with id, class, mean_r, mean_g, mean_b (0–255),
        brightness (mean over channels) and contrast (std over all pixels).
    """
    x = store.images.float()
    means = x.mean(dim=(2, 3))
    return pd.DataFrame(
        {
            "id": store.ids,
            "class": [CLASSES[i] for i in store.labels.tolist()],
            "mean_r": means[:, 0].numpy(),
            "mean_g": means[:, 1].numpy(),
            "mean_b": means[:, 2].numpy(),
            "brightness": means.mean(dim=1).numpy(),
            "contrast": x.flatten(1).std(dim=1).numpy(),
        }
    )
