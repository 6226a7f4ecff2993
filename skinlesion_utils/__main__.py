"""``python -m skinlesion_utils <command>``: the command line of :mod:`skinlesion_utils.cli`."""
import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
