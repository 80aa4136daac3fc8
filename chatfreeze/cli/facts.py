"""``chatfreeze facts``: how many training examples state each company fact, before any training.

    chatfreeze facts --dataset data/train.jsonl --facts data/facts.yaml
    chatfreeze facts --dataset data/train.jsonl --facts data/facts.yaml --facts_per_fact 0   # dialogues alone
    chatfreeze facts --dataset data/train.jsonl --facts data/facts.yaml --facts_ratio 2 --json

Counts the support dialogues and the drills the same options would add (no model, no tokenizer: the sheet's value
patterns on the assistant's text). Replay examples are the base model's replies, so only a training run counts
them.
"""

from __future__ import annotations

import json
import logging
import sys

from transformers import HfArgumentParser

from ..common import LiteralPercentDefaultsHelpFormatter
from ..data.options import DATA_FORMATS, DataArguments
from ..data.sources import load_dialogues
from ..facts.drills import describe_plan, plan_for_run, render_drills
from ..facts.exposure import DRILLS_SOURCE, SUPPORT_SOURCE, count_exposures
from ..facts.options import FactsArguments
from ..facts.sheet import load_facts_sheet
from .errors import run_cli


def build_parser() -> HfArgumentParser:
    parser = HfArgumentParser(FactsArguments, prog="chatfreeze facts",
                              formatter_class=LiteralPercentDefaultsHelpFormatter)
    parser.description = __doc__.split("\n")[0]
    parser.add_argument("--dataset", default=DataArguments.dataset,
                        help="Support dialogues (the formats of chatfreeze train --dataset).")
    parser.add_argument("--data_format", default="auto", choices=DATA_FORMATS, help="Format of --dataset.")
    parser.add_argument("--seed", type=int, default=42, help="Seed of the drill plan (training's --seed).")
    parser.add_argument("--json", action="store_true", help="Print one JSON object instead of the table.")
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    facts_args, extra = build_parser().parse_args_into_dataclasses(args=argv, look_for_args_file=False)
    if not facts_args.facts:
        raise ValueError("--facts: give a facts sheet (YAML; see docs/facts_sheet.md).")
    sheet = load_facts_sheet(facts_args.facts)
    support = load_dialogues(extra.dataset, data_format=extra.data_format)
    per_fact = facts_args.per_fact(len(support), len(sheet))
    planned = plan_for_run(facts_args, sheet, per_fact, {SUPPORT_SOURCE: support}, extra.seed)
    drills = render_drills(sheet, None, planned, extra.seed)
    report = count_exposures(sheet, {SUPPORT_SOURCE: support, DRILLS_SOURCE: drills}, facts_args.facts_min_exposures,
                             planned=planned)
    if extra.json:
        print(json.dumps({"facts_sheet": sheet.path, "dataset": extra.dataset, "per_fact": per_fact,
                          **report.to_dict()}, indent=2))
    else:
        print(f"Facts sheet: {sheet.path} ({len(sheet)} facts); {len(support)} support dialogues from "
              f"{extra.dataset}; {len(drills)} drills ({describe_plan(planned, per_fact)}).")
        print(report.format_table())
    return 0


def run(argv: list[str] | None = None) -> int:
    return run_cli(lambda: main(argv))


if __name__ == "__main__":
    sys.exit(run())
