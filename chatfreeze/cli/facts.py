"""``chatfreeze facts``: how many training examples state each company fact, before any training; and
``chatfreeze facts init``: a draft facts sheet and probe from a FAQ (and/or a product catalogue).

    chatfreeze facts                                                   # the default recipe's plan, as train uses it
    chatfreeze facts --config chatfreeze/recipes/facts.yaml            # another recipe's
    chatfreeze facts --dataset data/train.jsonl --facts data/facts.yaml --facts_per_fact 0   # dialogues alone
    chatfreeze facts --facts_ratio 2 --json
    chatfreeze facts init my_faq.csv --output my_facts.yaml [--probe my_probe.jsonl] [--catalogue products.csv]

The report reads the recipe (the default one, or ``--config FILE``) and the flags as ``chatfreeze train`` does, so
it shows the drill plan that train would use. It counts the support dialogues and the drills (no model, no
tokenizer: the sheet's value patterns on the assistant's text). Replay examples are the base model's replies, so only
a training run counts them.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time

from ..common import LiteralPercentDefaultsHelpFormatter
from ..data.sources import load_dialogues
from ..facts.drills import describe_plan, plan_for_run, render_drills
from ..facts.exposure import DRILLS_SOURCE, SUPPORT_SOURCE, count_exposures
from ..facts.sheet import load_facts_sheet
from .errors import run_cli

# chatfreeze train's options the report reads (any other train option is accepted too, and ignored).
REPORT_OPTIONS = (
    ("--dataset", "FILE", "support dialogues (chatfreeze train's --dataset; 'none': none)"),
    ("--data_format", "FORMAT", "format of --dataset"),
    ("--facts", "SHEET", "the facts sheet (YAML), or a FAQ file (drafted as with --faq)"),
    ("--facts_per_fact", "N", "drills per fact"),
    ("--facts_ratio", "R", "drills per support dialogue, shared by the facts"),
    ("--facts_plan", "uniform|need", "the same drills for every fact, or topped up by need"),
    ("--facts_min_exposures", "N", "the exposure count each fact should reach (warned below)"),
    ("--faq", "FILE", "a FAQ drafted into the sheet, as a run does"),
    ("--faq_catalogue", "FILE", "a product catalogue drafted into the same sheet"),
    ("--faq_company", "NAME", "the company's name, for the FAQ's questions"),
    ("--seed", "N", "the seed of the drill plan (training's --seed)"),
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="chatfreeze facts",
                                     description="How many training examples state each company fact, before any "
                                                 "training: the drill plan chatfreeze train would use.",
                                     formatter_class=LiteralPercentDefaultsHelpFormatter,
                                     epilog="chatfreeze facts init --help: a draft facts sheet from a FAQ.")
    parser.add_argument("--config", default=None,
                        help="The recipe whose plan to show (default: the default recipe, as chatfreeze train).")
    parser.add_argument("--json", action="store_true", help="Print one JSON object instead of the table.")
    train = parser.add_argument_group("chatfreeze train's options the report reads (the recipe's values unless "
                                      "given)")
    for flag, metavar, what in REPORT_OPTIONS:  # listed in --help only: train's own parser reads them
        train.add_argument(flag, metavar=metavar, help=what, default=argparse.SUPPRESS)
    return parser


def run_arguments(argv: list[str]):
    """``chatfreeze train``'s ``RunArguments`` for these flags: the recipe, ONE_OF precedence and checks as train
    applies them. The probe is not read here, so a user's own --dataset needs no --facts_probe."""
    from ..training.arguments import DEFAULT_RECIPE, parse_args

    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config", default=str(DEFAULT_RECIPE))
    pre.add_argument("--json", action="store_true")
    known, rest = pre.parse_known_args(argv)
    if not any(arg == "--facts_probe" or arg.startswith("--facts_probe=") for arg in rest):
        rest += ["--facts_probe", "none"]
    return known, parse_args(["--config", known.config, *rest])


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["init"]:
        return init_main(argv[1:])
    if {"-h", "--help"} & set(argv):
        build_parser().parse_args(["--help"])
    from ..facts.generate import prepare_faq

    known, args = run_arguments(argv)
    facts_args, data_args = args.facts, args.data
    prepare_faq(facts_args, data_args, args.evaluation, args.training.seed)
    if not facts_args.facts:
        raise ValueError("--facts: give a facts sheet (YAML; see docs/facts_sheet.md) or --faq FILE; the recipe "
                         "sets none.")
    seed = args.training.seed
    sheet = load_facts_sheet(facts_args.facts)
    support = load_dialogues(data_args.dataset, data_format=data_args.data_format) if data_args.dataset else []
    per_fact = facts_args.per_fact(len(support), len(sheet))
    planned = plan_for_run(facts_args, sheet, per_fact, {SUPPORT_SOURCE: support}, seed)
    drills = render_drills(sheet, None, planned, seed)
    report = count_exposures(sheet, {SUPPORT_SOURCE: support, DRILLS_SOURCE: drills}, facts_args.facts_min_exposures,
                             planned=planned)
    if known.json:
        print(json.dumps({"facts_sheet": sheet.path, "dataset": data_args.dataset, "per_fact": per_fact,
                          **report.to_dict()}, indent=2))
    else:
        print(f"Facts sheet: {sheet.path} ({len(sheet)} facts); {len(support)} support dialogues from "
              f"{data_args.dataset}; {len(drills)} drills ({describe_plan(planned, per_fact)}).")
        print(report.format_table())
    return 0


def build_init_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="chatfreeze facts init", formatter_class=LiteralPercentDefaultsHelpFormatter,
        description="A draft facts sheet (docs/facts_sheet.md) and a facts probe (dev/test halves) from a FAQ and/or "
                    "a product catalogue, by rules, with no model: read the sheet, fix what a rule guessed (its "
                    "comments say where), then train with --facts SHEET --facts_probe PROBE.")
    parser.add_argument("faq", nargs="?", default=None,
                        help="The FAQ: .csv/.jsonl with question and answer columns, or .md ('## question' + its "
                             "answer, or 'Q:'/'A:' lines).")
    parser.add_argument("--output", required=True, help="The facts sheet to write (YAML).")
    parser.add_argument("--probe", default=None, help="The probe to write (JSONL; default: OUTPUT_probe.jsonl).")
    parser.add_argument("--catalogue", default=None, help="A product catalogue (.csv: a row per product, a column "
                        "per attribute): one fact per product and attribute, in the same sheet.")
    parser.add_argument("--company", default=None, help="The company's name, used in some questions.")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the phrasing rules (same seed, same draft).")
    parser.add_argument("--force", action="store_true", help="Replace --output/--probe if they exist.")
    return parser


def init_main(argv: list[str]) -> int:
    from ..facts.draft import format_table
    from ..facts.generate import (
        check_writable,
        default_probe_path,
        draft_from_files,
        sources_label,
        write_draft,
    )

    args = build_init_parser().parse_args(argv)
    started = time.perf_counter()
    probe = args.probe or str(default_probe_path(args.output))
    check_writable(args.output, "--output", args.force)
    check_writable(probe, "--probe", args.force)
    draft = draft_from_files(args.faq, args.catalogue, args.company, args.seed)
    write_draft(draft, sources_label(args.faq, args.catalogue), args.output, probe)
    print(format_table(draft))
    print(f"Wrote {args.output} ({len(draft.facts)} facts) and {probe} ({len(draft.dev)} dev + {len(draft.test)} "
          f"test questions) in {time.perf_counter() - started:.1f} s. Read the sheet (comments mark the guesses), "
          f"then: chatfreeze train --facts {args.output} --facts_probe {probe} ...")
    return 0


def run(argv: list[str] | None = None) -> int:
    return run_cli(lambda: main(argv))


if __name__ == "__main__":
    sys.exit(run())
