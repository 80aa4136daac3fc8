"""``chatfreeze chat`` / ``python -m chatfreeze.chat``: the terminal chat (``chatfreeze.chat.terminal``)."""

from __future__ import annotations

import sys

from .errors import run_cli


def main(argv: list[str] | None = None) -> int:
    from ..chat.terminal import main as chat_main

    return chat_main(argv)


def run(argv: list[str] | None = None) -> int:
    return run_cli(lambda: main(argv))


if __name__ == "__main__":
    sys.exit(run())
