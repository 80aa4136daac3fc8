"""``python -m chatfreeze.chat``: the same command as ``chatfreeze chat`` (an entry point, like the other
``python -m`` shims: it sits above ``cli`` in the layer order)."""

import sys

from ..cli.chat import run

sys.exit(run())
