"""``python -m chatfreeze.plots``: the same command as ``chatfreeze plots`` (``chatfreeze.cli.plots``)."""

import sys

from .cli.plots import run

if __name__ == "__main__":
    sys.exit(run())
