"""``chatfreeze plan`` / ``python -m chatfreeze.plan``: what a freeze spec would freeze, without loading weights.

    chatfreeze plan --model_name_or_path HuggingFaceTB/SmolLM2-135M-Instruct --num_frozen_layers 24
    chatfreeze plan --model_name_or_path ./my-model --num_frozen_layers -4 --json

The model is built on the ``meta`` device from its config, so planning a 70B model takes a second.
"""

from __future__ import annotations

import json
import logging
import sys

import torch
from transformers import AutoConfig, AutoModelForCausalLM, HfArgumentParser

from ..common import LiteralPercentDefaultsHelpFormatter
from ..freezing import FreezeArguments, FreezePlan, make_plan
from ..modeling import ModelArguments, ResolvedModel, resolve_model
from .errors import run_cli


def plan_for(model_args: ModelArguments, freeze_args: FreezeArguments) -> tuple[FreezePlan, ResolvedModel]:
    # config.json alone: the weights are never downloaded to plan (the model is built on the meta device).
    resolved = resolve_model(model_args.model_name_or_path, model_args.model_revision, config_only=True)
    config = AutoConfig.from_pretrained(resolved.path, trust_remote_code=model_args.trust_remote_code)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, trust_remote_code=model_args.trust_remote_code)
    return make_plan(model, freeze_args), resolved


def plan_json(plan: FreezePlan, resolved: ResolvedModel) -> dict:
    data = plan.to_dict()
    data.pop("rows")
    data.update(resolved_model_path=resolved.path, model_source=resolved.source, rows=[r.__dict__ for r in plan.rows])
    return data


def make_parser() -> HfArgumentParser:
    parser = HfArgumentParser((ModelArguments, FreezeArguments), prog="chatfreeze plan",
                              description=__doc__.split("\n")[0], formatter_class=LiteralPercentDefaultsHelpFormatter)
    parser.add_argument("--json", action="store_true", help="Print one JSON object instead of the table.")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = make_parser()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    model_args, freeze_args, extra = parser.parse_args_into_dataclasses(args=argv, look_for_args_file=False)
    plan, resolved = plan_for(model_args, freeze_args)
    if extra.json:
        print(json.dumps(plan_json(plan, resolved), indent=2))
    else:
        print(f"Model: {resolved.describe()}")
        print(plan.format_table())
    return 0


def run(argv: list[str] | None = None) -> int:
    return run_cli(lambda: main(argv))


if __name__ == "__main__":
    sys.exit(run())
