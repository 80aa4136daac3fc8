"""``chatfreeze web`` / ``python -m chatfreeze.web``: the browser chat (``chatfreeze.chat.web``; needs Gradio)."""

from __future__ import annotations

import sys

from .errors import run_cli


def main(argv: list[str] | None = None) -> int:
    from ..chat.web import main as web_main

    return web_main(argv, announce=lambda line: print(line, flush=True))


def run(argv: list[str] | None = None) -> int:
    return run_cli(lambda: main(argv))


if __name__ == "__main__":
    sys.exit(run())
