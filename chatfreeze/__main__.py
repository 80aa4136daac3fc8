"""``python -m chatfreeze COMMAND ...``: the same as the ``chatfreeze`` console script."""

import sys

from .cli import main

sys.exit(main())
