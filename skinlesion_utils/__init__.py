"""skinlesion_utils — the companion package of the ASFF skin-lesion course book.

One flow, five stages (see the book's introduction)::

    locate(name) -> folder of images -> ImageTensorStore -> fit(...) -> Run
                                    \\-> audit            metrics · plots · cam · lab

Import what a chapter needs from the submodules; the most used names are re-exported here.
"""
from .profiles import Profile, profile, resolve_device

__version__ = "0.2.0"

__all__ = ["Profile", "profile", "resolve_device", "__version__"]
