"""``python -m chatfreeze.evaluate``: the same command as ``chatfreeze evaluate`` (``chatfreeze.cli.evaluate``)."""

import sys

from .cli.evaluate import run

if __name__ == "__main__":
    sys.exit(run())
