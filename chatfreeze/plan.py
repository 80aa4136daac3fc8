"""``python -m chatfreeze.plan``: the same command as ``chatfreeze plan`` (``chatfreeze.cli.plan``)."""

import sys

from .cli.plan import run

if __name__ == "__main__":
    sys.exit(run())
