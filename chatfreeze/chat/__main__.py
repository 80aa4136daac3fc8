"""``python -m chatfreeze.chat``: the same command as ``chatfreeze chat``."""

import sys

from ..common import run_cli
from .terminal import main

sys.exit(run_cli(main))
