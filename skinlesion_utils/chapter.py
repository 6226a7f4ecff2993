"""The fixed chapter header and footer every chapter shares (defined in chapter 00).

``start_chapter("04_training")`` seeds everything, reports the profile, the device and the data
folder, says how to switch Colab to a GPU runtime when the ``full`` profile finds none, and
keeps the cache on Google Drive when Drive is mounted on Colab (so a disconnect loses at most
one epoch). ``ChapterContext.footer()`` prints how long the page took and under which profile,
which is what each rendered page states about its stored outputs.
"""
from __future__ import annotations

import os
import platform
import time
import warnings
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import torch

from .profiles import ENV_CACHE, Profile, profile, resolve_device
from .train import seed_everything

COLAB_DRIVE = Path("/content/drive/MyDrive")


def in_colab() -> bool:
    """True inside a Google Colab runtime."""
    return "COLAB_RELEASE_TAG" in os.environ or "COLAB_GPU" in os.environ


@dataclass
class ChapterContext:
    """What a chapter needs from its header: ``profile``, ``device``, timing."""

    name: str
    profile: Profile
    device: "torch.device"  # noqa: F821
    started: float = field(default_factory=time.time)

    def elapsed_minutes(self) -> float:
        return (time.time() - self.started) / 60

    def footer(self) -> str:
        """One line for the end of the page: profile, device, date and run time."""
        when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        cpu = f"{torch.get_num_threads()} CPU threads" if self.device.type == "cpu" else torch.cuda.get_device_name(0)
        line = (
            f"Outputs on this page: profile '{self.profile.name}', device {self.device.type} "
            f"({cpu}), run {when}, took {self.elapsed_minutes():.1f} min."
        )
        print(line)
        return line


def start_chapter(name: str, seed: int = 0) -> ChapterContext:
    """Header of every chapter: seed, locate the cache, report profile and device.

    Args:
        name: chapter file stem, e.g. ``"00_setup_and_data"``.
        seed: global seed (each experiment also passes its own seed explicitly).
    """
    # Without ipywidgets, tqdm.auto warns once (with this machine's site-packages path) and falls
    # back to text bars: the warning is noise on every page and breaks outputs that nbval checks.
    warnings.filterwarnings("ignore", message="IProgress not found")
    if in_colab() and COLAB_DRIVE.is_dir() and ENV_CACHE not in os.environ:
        os.environ[ENV_CACHE] = str(COLAB_DRIVE / "skinlesion-cache")
    prof = profile()
    device = resolve_device(prof.device)
    seed_everything(seed, deterministic=device.type == "cpu")
    data = os.environ.get("SKINLESION_DATA", f"(not set: datasets are downloaded to {prof.cache_dir / 'data'})")
    print(f"chapter {name} · profile '{prof.name}' · device {device} · torch {torch.__version__} · python {platform.python_version()}")
    print(f"data: {data}")
    print(f"cache: {prof.cache_dir}")
    if prof.name == "full" and device.type == "cpu":
        print(
            "⚠ No GPU found, but the 'full' profile expects one. On Colab: Runtime → Change runtime "
            "type → T4 GPU, then Runtime → Restart. Or run the quick CPU profile: "
            "os.environ['SKINLESION_PROFILE'] = 'ci' before importing."
        )
    elif prof.name == "ci" and torch.cuda.is_available():
        print("A GPU is available: set SKINLESION_PROFILE=full for the 224-px, ImageNet-weights runs.")
    return ChapterContext(name=name, profile=prof, device=device)
