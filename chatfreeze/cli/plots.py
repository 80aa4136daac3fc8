"""``chatfreeze plots OUTPUT_DIR`` / ``python -m chatfreeze.plots OUTPUT_DIR``: (re)draw the plots of a run."""

from __future__ import annotations

import sys
from pathlib import Path

from ..common import run_cli


def main(argv: list[str] | None = None) -> int:
    from ..evaluation.plots import write_plots

    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1 or not Path(argv[0]).is_dir():
        raise ValueError("usage: chatfreeze plots OUTPUT_DIR (a training run's output directory)")
    for path in write_plots(argv[0]):
        print(path)
    return 0


def run(argv: list[str] | None = None) -> int:
    return run_cli(lambda: main(argv))


if __name__ == "__main__":
    sys.exit(run())
