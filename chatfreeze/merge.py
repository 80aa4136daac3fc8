"""``python -m chatfreeze.merge``: the same command as ``chatfreeze merge`` (``chatfreeze.cli.merge``)."""

import sys

from .cli.merge import run

if __name__ == "__main__":
    sys.exit(run())
