"""``chatfreeze plots OUTPUT_DIR`` / ``python -m chatfreeze.plots OUTPUT_DIR``: (re)draw the plots of a run."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..common import LiteralPercentHelpFormatter
from .errors import run_cli


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="chatfreeze plots", description="(Re)draw the plots of a finished run.",
                                     formatter_class=LiteralPercentHelpFormatter)
    parser.add_argument("output_dir", help="A training run's --output_dir; the plots are drawn from its "
                        "trainer_state.json and evaluation.json and written into it.")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    if not Path(args.output_dir).is_dir():
        raise ValueError(f"{args.output_dir}: not a directory; give a training run's --output_dir.")
    from ..evaluation.plots import write_plots

    for path in write_plots(args.output_dir):
        print(path)
    return 0


def run(argv: list[str] | None = None) -> int:
    return run_cli(lambda: main(argv))


if __name__ == "__main__":
    sys.exit(run())
