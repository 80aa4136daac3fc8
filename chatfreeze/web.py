"""``python -m chatfreeze.web``: the same command as ``chatfreeze web`` (``chatfreeze.cli.web``)."""

import sys

from .cli.web import run

if __name__ == "__main__":
    sys.exit(run())
