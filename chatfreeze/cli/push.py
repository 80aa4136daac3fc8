"""Push a finished training run to the Hugging Face Hub, with a model card that says what was frozen and learned.

    python -m chatfreeze.push OUTPUT_DIR --repo_id USER/NAME [--private] [--revision BRANCH]
                              [--commit_message TEXT] [--hub_token TOKEN]
    python -m chatfreeze.push OUTPUT_DIR --repo_id USER/NAME --dry_run DIR   # write the folder, upload nothing
    python -m chatfreeze.push OUTPUT_DIR --repo_id USER/NAME --space USER/NAME-chat  # + a Gradio Space chatting with it

The token comes from --hub_token, HF_TOKEN or `hf auth login`; HF_ENDPOINT selects another Hub.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys

from ..common import LiteralPercentHelpFormatter
from ..publish.hub import RetryPolicy, dry_run, push_output_dir, space_dry_run_dir
from ..publish.staging import format_listing
from .errors import run_cli


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m chatfreeze.push",
        description="Upload a chatfreeze output directory (model, tokenizer, freeze plan, metrics, model card) "
        "to a Hugging Face Hub model repository.",
        formatter_class=LiteralPercentHelpFormatter,
    )
    parser.add_argument("output_dir", help="The --output_dir of a finished training run (only read, never changed).")
    parser.add_argument("--repo_id", default=None, help="USER/NAME of the model repository (created if missing).")
    parser.add_argument("--private", action="store_true", help="Create the repository as private.")
    parser.add_argument("--revision", default=None, help="Branch to push to (created from main if missing).")
    parser.add_argument("--commit_message", default=None, help="Commit message of the upload.")
    parser.add_argument("--hub_token", default=None, help="Hub token (default: HF_TOKEN, then the login cache).")
    parser.add_argument("--base_model", default=None,
                        help="Hub id of the base model for the card, when training used a local copy of it.")
    parser.add_argument("--dry_run", metavar="DIR", default=None,
                        help="Write exactly the folder that would be uploaded to DIR (new or empty) and list it.")
    parser.add_argument("--trained_only", action="store_true",
                        help="Publish only the tensors training changed plus a manifest pinning the base (SHA-256 "
                        "of every frozen tensor): ~1/6 of the full model for the default plan. chatfreeze loads it.")
    parser.add_argument("--space", metavar="USER/NAME", default=None,
                        help="Also create/update a Gradio Space (app.py, requirements.txt, README.md) that serves the "
                        "pushed model with `chatfreeze web`'s page. With --dry_run DIR its files go to DIR-space.")
    parser.add_argument("--space_requirement", default=None,
                        help="The Space's requirement line for chatfreeze (default: chatfreeze[web]==THIS_VERSION; "
                        "e.g. a Git URL).")
    parser.add_argument("--max_attempts", type=int, default=RetryPolicy.attempts,
                        help="Tries of the whole upload on transient errors (HTTP 5xx/429, network).")
    parser.add_argument("--retry_delay", type=float, default=RetryPolicy.base_delay,
                        help="Seconds before the first retry; doubles each time.")
    return parser


class _StdoutHandler(logging.StreamHandler):
    """Progress and retry notices go to stdout (looked up at each record), so that on failure stderr holds only
    the one-line error."""

    @property
    def stream(self):
        return sys.stdout

    @stream.setter
    def stream(self, value) -> None:
        pass


@contextlib.contextmanager
def _progress_to_stdout():
    """chatfreeze's log lines go to stdout while the command runs; the logger is as it was afterwards (a caller
    in the same process, e.g. a test or a notebook, does not find its later log lines on stdout)."""
    log = logging.getLogger("chatfreeze")
    before = (log.level, log.propagate)
    handler = _StdoutHandler()
    handler.setFormatter(logging.Formatter("%(message)s"))
    log.setLevel(logging.INFO)
    log.addHandler(handler)
    log.propagate = False
    try:
        yield
    finally:
        log.removeHandler(handler)
        log.setLevel(before[0])
        log.propagate = before[1]


def main(argv: list[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    with _progress_to_stdout():
        return _push(args)


def _push(args: argparse.Namespace) -> int:
    from huggingface_hub.utils import disable_progress_bars
    from huggingface_hub.utils import logging as hf_logging

    hf_logging.set_verbosity_error()  # our own retry notices and summary say what matters
    if not sys.stderr.isatty():
        disable_progress_bars()
    if args.dry_run:
        staged = dry_run(args.output_dir, args.dry_run, args.repo_id, revision=args.revision,
                         base_model=args.base_model, token=args.hub_token, trained_only=args.trained_only,
                         space=args.space, space_requirement=args.space_requirement)
        print(f"Dry run: wrote the folder that would be uploaded to {staged.folder}")
        print(format_listing(staged))
        if args.space:
            print(f"Dry run: wrote the Space {args.space}'s files to {space_dry_run_dir(staged.folder)}")
        return 0
    result = push_output_dir(
        args.output_dir, args.repo_id, private=args.private, revision=args.revision,
        commit_message=args.commit_message, token=args.hub_token, base_model=args.base_model,
        trained_only=args.trained_only, space=args.space, space_requirement=args.space_requirement,
        retry=RetryPolicy(attempts=max(1, args.max_attempts), base_delay=max(0.0, args.retry_delay)),
    )
    print(format_listing(result.staged))
    print(f"Pushed to {result.url}" + (f" ({result.commit_url})" if result.commit_url else ""))
    if result.space_url:
        print(f"Space: {result.space_url}")
    return 0


def run(argv: list[str] | None = None) -> int:
    return run_cli(lambda: main(argv))


if __name__ == "__main__":
    sys.exit(run())
