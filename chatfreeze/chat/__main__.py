"""``python -m chatfreeze.chat``: the same command as ``chatfreeze chat``."""

import sys

from ..cli.chat import run

sys.exit(run())
