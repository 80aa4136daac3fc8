"""``python -m chatfreeze.push``: the same command as ``chatfreeze push`` (``chatfreeze.cli.push``)."""

import sys

from .cli.push import run

if __name__ == "__main__":
    sys.exit(run())
