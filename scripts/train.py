"""Freeze-tune a chat model on support dialogues, evaluate it and save it.

    accelerate launch scripts/train.py                                   # the default recipe (configs/default.yaml)
    accelerate launch scripts/train.py --config configs/bitext.yaml      # another recipe
    accelerate launch scripts/train.py --num_frozen_layers 24 --max_steps 50 --output_dir outputs/try

Every field of ModelArguments, DataArguments, FreezeArguments and transformers' TrainingArguments is a flag
(`--help` lists them); a flag overrides the same field of the `--config` recipe.
"""

from __future__ import annotations

import sys
from pathlib import Path

from chatfreeze.arguments import make_parser, parse_args
from chatfreeze.cli import run_cli
from chatfreeze.training import run_training

DEFAULT_RECIPE = Path(__file__).resolve().parents[1] / "configs" / "default.yaml"


def main(argv: list[str] | None = None) -> dict:
    argv = list(sys.argv[1:] if argv is None else argv)
    if {"-h", "--help"} & set(argv):
        make_parser().parse_args(["--help"])
    if "--config" not in argv and DEFAULT_RECIPE.is_file():
        argv = ["--config", str(DEFAULT_RECIPE), *argv]
    return run_training(*parse_args(argv))


if __name__ == "__main__":
    sys.exit(run_cli(lambda: main() and None))
