#!/usr/bin/env python
"""Generate the synthetic Kestrel & Co. customer-support dialogues in ``data/``.

Regenerate the committed data (this is the exact command; the defaults give the same result):

    python scripts/make_support_data.py --seed 1234 --num_train 800 --num_validation 100 --out_dir data/

Writes ``train.jsonl``, ``validation.jsonl`` and ``README.md`` into ``--out_dir``. Each JSONL line is
``{"messages": [{"role": ..., "content": ...}, ...], "intent": ..., "id": ...}``; every dialogue starts with
the company's system prompt, then alternates user/assistant and ends with an assistant turn.

Two sources, both written by hand for this project. ``data/company.yaml`` (``--company``) holds the company:
system prompt, facts (each with a stable id, its wording and its values as data), product catalogue, discount
codes and the invented customers who write in. ``scripts/support_data/`` holds the generation: the intents
and the dialogue templates, which take the facts through ``{fact_id}`` slots; this script is its command line.
The assistant is modelled as a front-line chat agent that can *pass requests on* to human teams but cannot see
live order, stock or tracking data, so it never states order-specific facts the user did not give it. Every policy the assistant states is
one of the facts, with the same values in every dialogue (``tests/test_support_data.py`` checks the numbers,
hours and contact details against ``data/company.yaml``).

Deterministic (stdlib and PyYAML): the same arguments and company file give byte-identical files. The script
refuses to overwrite a file in ``--out_dir`` that it did not write itself unless ``--force`` is given.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

# The generator sits next to this file: reachable however the script is started (a file path, `python -m
# scripts.make_support_data`, loaded by path in tests), appended so that it shadows nothing already importable.
HERE = str(Path(__file__).resolve().parent)
if HERE not in sys.path:
    sys.path.append(HERE)

from support_data.company import DEFAULT_COMPANY, Company, load_company  # noqa: E402
from support_data.generate import (  # noqa: E402
    MAX_APPROX_TOKENS,
    OUTPUT_FILES,
    approx_tokens,
    generate,
    is_own_output,
    split_stats,
    to_jsonl,
    write_atomic,
)
from support_data.intents import INTENTS  # noqa: E402
from support_data.readme import render_readme  # noqa: E402

__all__ = ["INTENTS", "MAX_APPROX_TOKENS", "OUTPUT_FILES", "approx_tokens", "generate", "load_company", "main"]


def _check_writable(out_dir: Path, force: bool) -> None:
    for name in OUTPUT_FILES:
        path = out_dir / name
        if path.exists() and not force and not is_own_output(path):
            raise SystemExit(
                f"error: refusing to overwrite {path}: it was not written by make_support_data.py "
                "(pass --force to overwrite it)"
            )


def print_summary(company: Company, splits: dict[str, list[dict]], out_dir: Path) -> None:
    tr, va = (split_stats(splits[name], company.format_hints) for name in ("train", "validation"))
    print(f"wrote {out_dir / 'train.jsonl'} ({tr['dialogues']}) and {out_dir / 'validation.jsonl'} "
          f"({va['dialogues']}), {out_dir / 'README.md'}")
    print(f"{'intent':<24}{'train':>7}{'valid':>7}")
    for intent in INTENTS:
        print(f"{intent:<24}{tr['per_intent'][intent]:>7}{va['per_intent'][intent]:>7}")
    print(f"{'total':<24}{tr['dialogues']:>7}{va['dialogues']:>7}")
    for name, s in (("train", tr), ("validation", va)):
        print(f"{name}: avg user turns {s['avg_user_turns']:.2f}, avg messages (excl. system) "
              f"{s['avg_messages']:.2f}, approx tokens avg {s['avg_tokens']:.0f} / max {s['max_tokens']}, "
              f"order-number format corrections {s['format_corrections']}")


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=1234, help="random seed (default: 1234)")
    parser.add_argument("--out_dir", type=Path, default=Path("data"), help="output directory (default: data/)")
    parser.add_argument("--num_train", type=int, default=800, help="training dialogues (default: 800)")
    parser.add_argument("--num_validation", type=int, default=100, help="validation dialogues (default: 100)")
    parser.add_argument("--company", type=Path, default=DEFAULT_COMPANY,
                        help="the company's facts, products and customers (default: data/company.yaml)")
    parser.add_argument("--force", action="store_true", help="overwrite files in --out_dir not written by this script")
    return parser


def main(argv: Sequence[str] | None = None) -> dict[str, list[dict]]:
    args = make_parser().parse_args(argv)
    out_dir: Path = args.out_dir
    try:
        company = load_company(args.company)
        splits = generate(company, args.seed, args.num_train, args.num_validation)
    except ValueError as exc:
        raise SystemExit(f"error: {exc}") from None
    out_dir.mkdir(parents=True, exist_ok=True)
    _check_writable(out_dir, args.force)
    write_atomic(out_dir / "train.jsonl", to_jsonl(splits["train"]))
    write_atomic(out_dir / "validation.jsonl", to_jsonl(splits["validation"]))
    readme = render_readme(company, splits, args.seed, args.num_train, args.num_validation)
    write_atomic(out_dir / "README.md", readme)
    print_summary(company, splits, out_dir)
    return splits


if __name__ == "__main__":
    main(sys.argv[1:])
