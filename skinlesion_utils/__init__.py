"""skinlesion_utils — the companion package of the ASFF skin-lesion course book.

One flow, five stages (see the book's introduction)::

    locate(name) -> folder of images -> ImageTensorStore -> fit(...) -> Run
                                    \\-> audit            metrics · plots · cam · lab

Import what a chapter needs from the submodules; the most used names are re-exported here.
"""
import warnings

# tqdm.auto warns once, with this machine's site-packages path, when ipywidgets is missing and
# falls back to text bars: noise on every page, and it breaks outputs nbval checks. The filter
# must precede the first import of tqdm.auto, which the core modules import at their top.
warnings.filterwarnings("ignore", message="IProgress not found")

from .profiles import Profile, profile, resolve_device  # noqa: E402

# 0.3.0: images are decoded with their EXIF orientation applied (data.DECODE_METHOD), which
# rotates 3 of isic_balanced's images (2 train, 1 test); the version is part of every run-cache key
# (runs.RunConfig.package_version), so no run trained on the old pixels is reused.
__version__ = "0.3.0"

__all__ = ["Profile", "profile", "resolve_device", "__version__"]
