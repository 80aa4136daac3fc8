"""Measure a chat model on support dialogues (and general text): ``python -m chatfreeze.evaluate``.

    python -m chatfreeze.evaluate --model_name_or_path outputs/support --dataset data/validation.jsonl
    python -m chatfreeze.evaluate --model_name_or_path HuggingFaceTB/SmolLM2-135M-Instruct \\
        --dataset data/validation.jsonl --general_text wiki.test.raw --max_windows 40 --json
    python -m chatfreeze.evaluate --model outputs/support --base HuggingFaceTB/SmolLM2-135M-Instruct \\
        --facts_probe data/facts_probe.jsonl --output_dir outputs/compare     # the learn-vs-keep report

``--json`` prints one JSON object (``support_perplexity``, ``general_perplexity`` with ``--general_text``,
token counts and settings) on stdout; logs go to stderr. The work is ``chatfreeze.evaluation.evaluate_checkpoint``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

from ..common import LiteralPercentHelpFormatter
from ..data.options import DATA_FORMATS
from ..evaluation.metrics_table import BY_KEY
from ..modeling import DEFAULT_MODEL
from ..modeling.options import MODEL_DTYPES
from .errors import run_cli


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m chatfreeze.evaluate", description=__doc__.split("\n")[0],
                                     formatter_class=LiteralPercentHelpFormatter)
    add = parser.add_argument
    add("--model_name_or_path", "--model", default=DEFAULT_MODEL,
        help="Hub id or local directory (a chatfreeze output dir).")
    add("--base", default=None, help="Compare with this base model (Hub id or directory): the learn-vs-keep "
        "report a training run writes, for any two models (--base's measurements are cached).")
    add("--dataset", default=None, help="Support dialogues: .jsonl/.json/.csv (Bitext CSV too), a directory "
        "or a Hub dataset id; the same formats as training. Required without --base.")
    add("--facts_probe", default=None, help="With --base: a facts-probe JSONL to score (learn).")
    add("--skills_probe", default="builtin", help="With --base: 'builtin', a skills-probe JSONL, or 'none' (keep).")
    add("--output_dir", default=None, help="With --base: write evaluation.json and the plots here.")
    add("--general_text", default=None, help="Plain-text file or Hub dataset id: also report general_perplexity.")
    add("--max_examples", type=int, default=None, help="Use the first N dialogues only.")
    add("--json", action="store_true", help="Print one JSON object instead of a report.")
    add("--split", default="train", help="Split of a Hub (or saved) support dataset.")
    add("--dataset_config", default=None, help="Hub dataset configuration of --dataset.")
    add("--data_format", default="auto", choices=DATA_FORMATS, help="Format of --dataset (auto detects).")
    add("--system_prompt", default=None, help="System prompt for dialogues without one (default: the one the "
        "model was trained with, if it is a chatfreeze output dir).")
    add("--max_length", type=int, default=1024, help="Maximum tokens per rendered dialogue, as in training.")
    add("--general_text_config", default=None, help="Hub dataset configuration of --general_text.")
    add("--general_text_split", default="test", help="Split of a Hub --general_text dataset.")
    add("--window", type=int, default=512, help="General-text window, tokens.")
    add("--stride", type=int, default=512, help="General-text stride, tokens (< window: overlapping context).")
    add("--max_windows", type=int, default=None, help="Score only the first N windows of --general_text "
        "(default: all of it; WikiText-2 test is ~300k SmolLM2 tokens, 590 windows of 512).")
    add("--generation_samples", type=int, default=0, help="Also generate greedy replies to the first N "
        "prompts and report ROUGE-L and chrF against the references.")
    add("--max_new_tokens", type=int, default=96, help="Reply length cap for --generation_samples.")
    add("--batch_size", type=int, default=4, help="Sequences per forward pass.")
    add("--dtype", default="float32", choices=MODEL_DTYPES, help="Weights dtype.")
    add("--revision", default=None, help="Hub revision of the model.")
    add("--trust_remote_code", action="store_true", help="Allow custom modelling code from the Hub.")
    return parser


# The smallest value of each count (unset = the default); --max_length as training's --max_length.
MINIMUMS = {"max_examples": 1, "max_length": 16, "window": 2, "stride": 1, "max_windows": 1, "generation_samples": 0,
            "max_new_tokens": 1, "batch_size": 1}


# Flags that only a comparison (--base) reads: given alone, they would be ignored without a word.
COMPARISON_ONLY = ("facts_probe", "output_dir")


def check_ranges(args: dict) -> None:
    for name, low in MINIMUMS.items():
        if args[name] is not None and args[name] < low:
            raise ValueError(f"--{name} {args[name]}: must be at least {low}.")
    for name in COMPARISON_ONLY:
        if args[name] is not None and not args["base"]:
            raise ValueError(f"--{name} {args[name]}: is read only when comparing with a base model; add --base "
                             "BASE (e.g. the model the run was trained from).")


def report(result: dict) -> str:
    """One model's measurements, named as the metric table names them."""
    def name(key: str) -> str:
        return BY_KEY[key].name

    lines = [f"model {result['model']} on {result['dataset']}",
             f"  {name('support_perplexity')} {result['support_perplexity']:.4f} over {result['support_tokens']} "
             f"assistant tokens in {result['support_examples']} dialogues"]
    if "general_perplexity" in result:
        lines.append(f"  {name('general_perplexity')} {result['general_perplexity']:.4f} over "
                     f"{result['general_tokens']} tokens ({result['general_windows']} windows of {result['window']}, "
                     f"stride {result['stride']})")
    if "rougeL" in result:
        lines.append(f"  {name('rougeL')} {result['rougeL']:.4f}, {name('chrf')} {result['chrf']:.2f} "
                     f"({result['generation_samples']} greedy replies)")
    return "\n".join(lines)


def settings_of(args: dict, compare: bool):
    """``(HeldOut, EvaluationArguments)`` from this command's flags (named as they always were here)."""
    from ..evaluation import EvaluationArguments
    from ..evaluation.checkpoint import HeldOut

    held_out = HeldOut(**{key: args[key] for key in ("dataset", "split", "dataset_config", "data_format",
                                                     "system_prompt", "max_length", "max_examples")})
    # A comparison caches the base's measurements and scores the skills probe; one model is measured alone.
    settings = EvaluationArguments(
        general_text=args["general_text"], general_text_config=args["general_text_config"],
        general_text_split=args["general_text_split"], general_window=args["window"], general_stride=args["stride"],
        general_max_windows=(args["max_windows"] or 40) if compare else args["max_windows"],
        generation_eval_samples=args["generation_samples"], generation_max_new_tokens=args["max_new_tokens"],
        facts_probe=args["facts_probe"] if compare else None,
        skills_probe=args["skills_probe"] if compare else None, cache_base_measurements=compare)
    return held_out, settings


def compare(args: dict, as_json: bool) -> int:
    from ..evaluation.checkpoint import compare_models
    from ..evaluation.report import format_report

    model, base = args["model_name_or_path"], args["base"]
    record = compare_models(model, base, *settings_of(args, compare=True), batch_size=args["batch_size"],
                            dtype=args["dtype"], output_dir=args["output_dir"])
    if as_json:
        print(json.dumps({k: record[k] for k in ("model", "base", "before", "after", "change", "learn_keep",
                                                 "not_measured")}, ensure_ascii=False))
    else:
        print(f"{model} against its base {base}\n" + format_report(record["learn_keep"], record["not_measured"]))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = vars(make_parser().parse_args(argv))
    as_json = args.pop("json")
    check_ranges(args)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S",
                        level=logging.INFO, stream=sys.stderr)
    from ..evaluation import evaluate_checkpoint

    if args["base"]:
        return compare(args, as_json)
    if not args["dataset"]:
        raise ValueError("--dataset: required (support dialogues to measure), unless --base compares two models.")
    result = evaluate_checkpoint(args["model_name_or_path"], *settings_of(args, compare=False),
                                 batch_size=args["batch_size"], dtype=args["dtype"], revision=args["revision"],
                                 trust_remote_code=args["trust_remote_code"])
    print(json.dumps(result, ensure_ascii=False) if as_json else report(result))
    return 0


def run(argv: list[str] | None = None) -> int:
    return run_cli(lambda: main(argv))


if __name__ == "__main__":
    sys.exit(run())
