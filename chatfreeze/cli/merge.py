"""``chatfreeze merge RUN OUT [--alpha A]`` / ``python -m chatfreeze.merge``: a run (or a trained-blocks-only
delta, ``--save_trained_only``) written to OUT as a standalone model directory that plain
``AutoModelForCausalLM.from_pretrained`` loads; with ``--alpha`` < 1 its trained blocks are interpolated toward
the base (``θ = base + A · (tuned − base)``; A = 1 the run itself, A = 0 the base)."""

from __future__ import annotations

import argparse
import logging
import sys

from ..common import LiteralPercentHelpFormatter
from .errors import run_cli


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="chatfreeze merge", description=__doc__.split("\n")[0],
                                     formatter_class=LiteralPercentHelpFormatter)
    parser.add_argument("run_dir", help="A finished training run or a delta (its --output_dir; only read).")
    parser.add_argument("output_dir", help="Where the interpolated model goes (new or empty).")
    parser.add_argument("--alpha", type=float, default=1.0,
                        help="0 = the base, 1 = the run (default: a delta becomes a standalone model); e.g. 0.7.")
    parser.add_argument("--base", default=None, help="The base model (default: the one the run recorded).")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from ..retention.interpolate import interpolate_run

    out = interpolate_run(args.run_dir, args.alpha, args.output_dir, args.base)
    print(f"Wrote {out} (alpha={args.alpha:g})")
    return 0


def run(argv: list[str] | None = None) -> int:
    return run_cli(lambda: main(argv))


if __name__ == "__main__":
    sys.exit(run())
