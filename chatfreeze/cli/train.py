"""``chatfreeze train`` / ``accelerate launch -m chatfreeze.cli.train``: freeze-tune, evaluate and save.

    chatfreeze train                                            # the default recipe (packaged with chatfreeze)
    chatfreeze train --config my_recipe.yaml --max_steps 50     # another recipe; any flag overrides it
    accelerate launch -m chatfreeze.cli.train --num_frozen_layers 20 --output_dir outputs/try

Every field of ModelArguments, DataArguments, FreezeArguments and transformers' TrainingArguments is a flag
(``--help`` lists them by topic, one line each, with the values the run would use; ``--help_all`` prints argparse's
whole help); a flag overrides the same field of the ``--config`` recipe.
"""

from __future__ import annotations

import sys

from .errors import run_cli


def has_config(argv: list[str]) -> bool:
    return any(arg == "--config" or arg.startswith("--config=") for arg in argv)


def main(argv: list[str] | None = None) -> dict:
    from ..training.arguments import DEFAULT_RECIPE, help_text, make_parser, parse_args

    argv = list(sys.argv[1:] if argv is None else argv)
    if "--help_all" in argv:
        make_parser().parse_args(["--help"])
    if {"-h", "--help"} & set(argv):
        print(help_text(argv), end="")
        raise SystemExit(0)  # as argparse's --help does
    from ..training.recipe import run_training  # the training stack only when training

    if not has_config(argv):
        argv = ["--config", str(DEFAULT_RECIPE), *argv]
    return run_training(*parse_args(argv))


def run(argv: list[str] | None = None) -> int:
    return run_cli(lambda: main(argv) and None)


if __name__ == "__main__":
    sys.exit(run())
