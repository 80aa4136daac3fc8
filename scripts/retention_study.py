#!/usr/bin/env python
"""Retention study: which method learns the support task and keeps the base model's skills, at equal compute.

Every variant is one ``chatfreeze train`` run of the quick recipe (``chatfreeze/recipes/quick.yaml``, the
default until 2026-12-06; same data, seed, batch size and number of optimizer steps; only the method and its options
differ), in its own subprocess, followed by the recipe's own before/after evaluation; interpolation rows
re-score a finished run's trained blocks moved toward the base with ``chatfreeze evaluate --base``. The base
model's measurements are cached, so they are paid for once.

    python scripts/retention_study.py                       # all variants; resumable: rerun to continue
    python scripts/retention_study.py --only freeze80 full  # some variants
    python scripts/retention_study.py --report_only         # rebuild the doc, CSV and plot from what is done

A variant is done when its run finished and ``--work_dir`` holds its process record (``NAME.process.json``);
a rerun skips it and restarts an unfinished one from scratch. A variant whose directory is gone (another machine, a new work dir)
keeps its row from the existing ``OUT.csv``, marked by the date it was measured (``earlier`` when unknown), so a
partial rerun refreshes rows without losing the others. Outputs: ``OUT.md`` (setup, table, plot, the exact command; the
hand-written reading between the ``<!-- reading -->`` markers is kept when the file is regenerated), ``OUT.csv``
and ``OUT.png`` (learn vs keep). WikiText-2 perplexity needs the raw test file (``--general_text``; the default
is the copy in ``../shared/data``, which this script requires rather than skips).

The running, the carried rows, the CSV, the plot and the kept reading are ``chatfreeze.studies``'; this script
holds what is this study's own: its variants, its commands, what a row reads from a run, and its doc's words.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from collections.abc import Callable
from pathlib import Path

from chatfreeze.cli.errors import run_cli
from chatfreeze.studies.results import (
    Column,
    Panel,
    Report,
    Row,
    doc_tail,
    fmt,
    markdown_table,
    measured_on,
    metric_column,
    training_metrics,
    with_change_column,
    write_report,
)
from chatfreeze.studies.runner import Variant, read_record, run_study, study_parser
from chatfreeze.training.arguments import QUICK_RECIPE

REPO_ROOT = Path(__file__).resolve().parents[1]
WIKITEXT = REPO_ROOT.parent / "shared" / "data" / "wikitext-2-raw" / "wiki.test.raw"
BASE_MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"  # what interpolated runs are moved toward
FREEZE80, REPLAY, KL = ("--num_frozen_layers", "24"), ("--replay_ratio", "0.25"), ("--kl_to_base", "0.5")
FULL = ("--method", "full", "--learning_rate", "5e-5")

# The order is the order of importance: an interrupted study has the rows that matter most. Learning rates are
# not searched: the quick recipe's 2e-4 for freezes and LoRA, the 5e-5 for full fine-tuning.
# Retention options are set once, before any result: replay one base reply per four support dialogues, KL weight 0.5.
# A variant with a source trains nothing: its overrides are `chatfreeze merge`'s, on the source's finished run.
VARIANTS = [
    Variant("freeze80", "freeze 80% (24/30), lr 2e-4: the 0.1 default", FREEZE80),
    Variant("freeze80_replay_kl", "freeze 80% + replay 0.25 + KL 0.5", FREEZE80 + REPLAY + KL),
    Variant("full", "full fine-tuning, lr 5e-5", FULL),
    Variant("freeze80_replay", "freeze 80% + replay 0.25", FREEZE80 + REPLAY),
    Variant("freeze80_kl", "freeze 80% + KL 0.5", FREEZE80 + KL),
    Variant("freeze80_replay_kl_alpha0.75", "freeze 80% + replay + KL, interpolated to alpha 0.75",
            ("--alpha", "0.75"), source="freeze80_replay_kl"),
    Variant("freeze93", "freeze 93% (28/30)", ("--num_frozen_layers", "28")),
    Variant("freeze50", "freeze 50% (15/30)", ("--num_frozen_layers", "15")),
    Variant("lora_top6", "LoRA r=16 on the top 6 blocks", ("--method", "lora", "--lora_layers", "6")),
    Variant("freeze80_replay_kl_select", "freeze 80% + replay + KL + --select_alpha 0.5,0.75,1",
            FREEZE80 + REPLAY + KL + ("--select_alpha", "0.5,0.75,1")),
    Variant("lora_all", "LoRA r=16 on every block", ("--method", "lora", "--lora_layers", "0")),
    Variant("freeze80_alpha0.5", "freeze 80%, interpolated to alpha 0.5", ("--alpha", "0.5"), source="freeze80"),
    Variant("freeze93_replay_kl", "freeze 93% + replay 0.25 + KL 0.5", ("--num_frozen_layers", "28") + REPLAY + KL),
    Variant("full_replay", "full fine-tuning, lr 5e-5 + replay 0.25", FULL + REPLAY,
            notes="Replay is data, so full fine-tuning can have it too (KL needs a frozen prefix): is the freeze "
            "still needed?"),
]

# The CSV's columns between `variant, label` and `measured`.
METRICS = ["facts_accuracy", "support_perplexity", "skills_accuracy", "skills_change_points", "self_agreement_ratio",
           "general_perplexity", "general_change_pct", "rougeL", "train_seconds", "tokens_per_second",
           "peak_rss_mib", "trainable_params"]


def parse_args(argv=None) -> argparse.Namespace:
    parser = study_parser(__doc__.splitlines()[0], "outputs/retention_study", "docs/retention", str(WIKITEXT))
    parser.add_argument("--steps", type=int, default=40, help="Optimizer steps of every trained variant.")
    return parser.parse_args(argv)


def common_args(args: argparse.Namespace) -> list[str]:
    """What every trained variant shares: the quick recipe, its data, seed and batch, a fixed number of steps,
    the general text measured from a local file, token counting for tokens/s (padded batches: padding counts)."""
    # Retention options off unless a variant sets them (later flags win): the quick recipe turns them on.
    return ["--config", str(QUICK_RECIPE), "--replay_ratio", "0", "--kl_to_base", "0",
            "--max_steps", str(args.steps), "--general_text", args.general_text, "--save_strategy", "no",
            "--include_num_input_tokens_seen", "true", "--report_to", "none", "--overwrite_output_dir", "true"]


def evaluation_args(args: argparse.Namespace) -> list[str]:
    """``chatfreeze evaluate --base`` options that match the recipe's own evaluation settings."""
    return ["--dataset", "data/validation.jsonl", "--facts_probe", "data/facts_probe.jsonl", "--skills_probe",
            "builtin", "--general_text", args.general_text, "--window", "512", "--stride", "512", "--max_windows",
            "40", "--generation_samples", "8", "--max_new_tokens", "96", "--batch_size", "8", "--max_length", "512"]


def commands(variant: Variant, args: argparse.Namespace, work: Path) -> list[list[str]]:
    """A trained variant: one ``scripts/train.py`` run. An interpolated one: merge its source's run toward the
    base (unless an earlier invocation did), then evaluate the merged model against the base."""
    out = work / variant.name
    if not variant.source:
        return [[sys.executable, "scripts/train.py", *common_args(args), *variant.overrides, "--output_dir", str(out)]]
    merged = work / f"{variant.name}.model"
    merge = [] if (merged / "config.json").is_file() else [
        [sys.executable, "-m", "chatfreeze.merge", str(work / variant.source), str(merged), *variant.overrides]]
    return merge + [[sys.executable, "-m", "chatfreeze.evaluate", "--model", str(merged), "--base", BASE_MODEL,
                     "--output_dir", str(out), *evaluation_args(args)]]


def finished_evaluation(name: str, work: Path) -> dict | None:
    """A finished variant's ``evaluation.json``; None while it is not finished."""
    path = work / name / "evaluation.json"
    return json.loads(path.read_text()) if read_record(work, name) and path.is_file() else None


def quality(side: dict, change: dict | None) -> dict:
    """The row's quality metrics from one side of ``evaluation.json`` (``after``, or ``before`` for the base)."""
    return {"facts_accuracy": side.get("facts_accuracy"), "support_perplexity": side.get("support_perplexity"),
            "skills_accuracy": side.get("skills_accuracy"),
            "skills_change_points": change.get("skills_accuracy_change_points") if change is not None else 0.0,
            "self_agreement_ratio": side.get("self_agreement_ratio"),
            "general_perplexity": side.get("general_perplexity"),
            "general_change_pct": change.get("general_perplexity_change_pct") if change is not None else 0.0,
            "rougeL": side.get("rougeL")}


def read_row(variant: Variant, work: Path) -> Row | None:
    evaluation = finished_evaluation(variant.name, work)
    if evaluation is None:
        return None
    out = work / variant.name
    row = Row(variant.name, variant.label, quality(evaluation.get("after", {}), evaluation.get("change", {})),
              measured_on(out / "evaluation.json"))
    row.metrics["peak_rss_mib"] = round(read_record(work, variant.name)["peak_rss_mib"])
    if evaluation.get("alpha_selection"):  # --select_alpha: say which alpha it kept
        row.label += f" (chose alpha {evaluation['alpha_selection']['alpha']:g})"
    if variant.source is None:
        row.metrics.update(training_metrics(out))
    else:  # interpolation: the source run's training
        source = read_row(next(v for v in VARIANTS if v.name == variant.source), work)
        row.metrics.update({key: source.get(key) if source else None
                            for key in ("train_seconds", "tokens_per_second", "trainable_params")})
    return row


def base_row(work: Path) -> Row | None:
    """The base model's row: the ``before`` side of the first finished variant (every one measures the same base)."""
    for variant in VARIANTS:
        evaluation = finished_evaluation(variant.name, work)
        if evaluation is not None:
            return Row("base", "base model (no training)", quality(evaluation.get("before", {}), None),
                       measured_on(work / variant.name / "evaluation.json"))
    return None


def cell(key: str, kind: str = "") -> Callable[[Row], str]:
    return lambda row: fmt(row.get(key), kind)


TABLE = [
    Column("variant", lambda row: row.label),
    metric_column("facts_accuracy", "pct"),
    metric_column("support_perplexity"),
    with_change_column("skills_accuracy", "skills_change_points", "pct", "Δ pts"),
    metric_column("self_agreement_ratio"),
    with_change_column("general_perplexity", "general_change_pct", "", "Δ %", "WikiText-2"),
    Column("train s", cell("train_seconds")),
    Column("tokens/s (padded)", cell("tokens_per_second")),
    Column("peak RSS MiB", cell("peak_rss_mib")),
    Column("trainable", cell("trainable_params")),
    Column("measured", lambda row: row.measured or "earlier"),
]
LEARN_VS_KEEP = [Panel("skills_change_points", "short-answer accuracy change (points, higher keeps more)"),
                 Panel("general_change_pct", "WikiText-2 perplexity change (%, lower keeps more)", invert=True)]


def doc_lines(args: argparse.Namespace, rows: list[Row], missing: list[str], plot: Path) -> list[str]:
    """The generated part of ``OUT.md``, above the reading."""
    lines = [
        "# Retention study: learn the support task, keep the base model's skills",
        "",
        "Generated by `scripts/retention_study.py` (rerun it to continue or refresh; the reading below is written "
        "by hand and kept).",
        "",
        f"Setup: the quick recipe (`chatfreeze/recipes/quick.yaml`, the default until 2026-12-06: SmolLM2-135M-Instruct, offline copy; `data/train.jsonl`, seed 42, 8 dialogues "
        f"per step) for **{args.steps} optimizer steps** per trained variant, the same for every method (equal "
        "steps and batch: equal data seen; replay rows see replay examples in place of some support dialogues). "
        f"Evaluation: the recipe's own before/after (facts probe 109 questions, skills probe, self-agreement, "
        f"held-out support perplexity on `data/validation.jsonl`, WikiText-2 raw test 40 windows of 512). "
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, torch threads {args.threads}, fp32.",
        "",
        *markdown_table(rows, TABLE),
    ]
    return lines + doc_tail(missing, plot,
                            f"python scripts/retention_study.py --steps {args.steps} --threads {args.threads}")


def write_outputs(args: argparse.Namespace, work: Path) -> None:
    """The doc, CSV and plot from the finished variants (``studies.write_report``)."""
    rows = {v.name: (lambda v=v: read_row(v, work)) for v in VARIANTS}
    write_report(Report(list(rows), lambda name: rows[name](), lambda: base_row(work), METRICS,
                        lambda table, missing, plot: doc_lines(args, table, missing, plot), "facts_accuracy",
                        "facts-probe accuracy (%, learn)", LEARN_VS_KEEP), args.out)


if __name__ == "__main__":
    sys.exit(run_cli(lambda: run_study(parse_args(), VARIANTS, REPO_ROOT, commands, write_outputs)))
