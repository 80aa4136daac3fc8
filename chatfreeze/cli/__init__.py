"""The ``chatfreeze`` command: ``chatfreeze train|chat|web|plan|evaluate|push|plots|merge ...``.

Each subcommand is one thin module here (``chatfreeze.cli.<name>``) with a ``main(argv)``; they are imported
only when called, so ``chatfreeze chat`` or ``chatfreeze push`` never pay for the training stack. The train
subcommand also runs under accelerate: ``accelerate launch -m chatfreeze.cli.train [flags]``.
"""

from __future__ import annotations

import importlib
import sys

COMMANDS = {
    "train": "freeze, fine-tune, evaluate and save (a recipe + flags; under accelerate: "
             "accelerate launch -m chatfreeze.cli.train)",
    "chat": "talk to a model or a training run in the terminal",
    "web": "talk to it in the browser, side by side with its base (Gradio: pip install \"chatfreeze[web]\")",
    "plan": "show what a freeze spec would freeze, from the model's config alone",
    "facts": "count how many training examples state each company fact (a facts sheet + the dialogues)",
    "evaluate": "measure a model on support dialogues and general text",
    "push": "upload a training run with its model card to the Hugging Face Hub",
    "plots": "(re)draw the plots of a finished run",
    "merge": "write a run or a delta as a standalone model; --alpha interpolates its trained blocks toward the base",
}


def usage() -> str:
    width = max(map(len, COMMANDS)) + 2
    lines = ["usage: chatfreeze COMMAND [options]   (chatfreeze COMMAND --help for its options)", "", "commands:"]
    lines += [f"  {name:<{width}}{what}" for name, what in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Dispatch ``chatfreeze COMMAND ...`` to ``chatfreeze.cli.COMMAND.run``; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"error: unknown command {name!r}; choose one of {', '.join(COMMANDS)} (chatfreeze --help).",
              file=sys.stderr)
        return 2
    return importlib.import_module(f"{__name__}.{name}").run(rest)
