#!/usr/bin/env python
"""Retention study: which method learns the support task and keeps the base model's skills, at equal compute.

Every variant is one ``chatfreeze train`` run of the default recipe (same data, seed, batch size and number of
optimizer steps; only the method and its options differ), in its own subprocess, followed by the recipe's own
before/after evaluation; interpolation rows re-score a finished run's trained blocks moved toward the base with
``chatfreeze evaluate --base``. The base model's measurements are cached, so they are paid for once.

    python scripts/retention_study.py                       # all variants; resumable: rerun to continue
    python scripts/retention_study.py --only freeze80 full  # some variants
    python scripts/retention_study.py --report_only         # rebuild the doc, CSV and plot from what is done

A variant is done when its directory under ``--work_dir`` holds ``evaluation.json``; a rerun skips it and
restarts an unfinished one from scratch. A variant whose directory is gone (another machine, a new work dir)
keeps its row from the existing ``OUT.csv``, marked by the date it was measured (``earlier`` when unknown), so a
partial rerun refreshes rows without losing the others. Outputs: ``OUT.md`` (setup, table, plot, the exact command; the
hand-written reading between the ``<!-- reading -->`` markers is kept when the file is regenerated), ``OUT.csv``
and ``OUT.png`` (learn vs keep). WikiText-2 perplexity needs the raw test file (``--general_text``; the default
is the copy in ``../shared/data``, which this script requires rather than skips).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
WIKITEXT = REPO_ROOT.parent / "shared" / "data" / "wikitext-2-raw" / "wiki.test.raw"
READING_START, READING_END = "<!-- reading -->", "<!-- /reading -->"


@dataclass
class Variant:
    name: str
    label: str
    args: list[str] = field(default_factory=list)  # `chatfreeze train` options on top of the study's common ones
    interpolate: tuple[str, float] | None = None  # (run to interpolate, alpha): no training of its own


# The order is the order of importance: an interrupted study has the rows that matter most. Learning rates are
# not searched: the default recipe's 2e-4 for freezes and LoRA, the 5e-5 for full fine-tuning.
# Retention options are set once, before any result: replay one base reply per four support dialogues, KL weight 0.5.
VARIANTS = [
    Variant("freeze80", "freeze 80% (24/30), lr 2e-4: the 0.1 default", ["--num_frozen_layers", "24"]),
    Variant("freeze80_replay_kl", "freeze 80% + replay 0.25 + KL 0.5",
            ["--num_frozen_layers", "24", "--replay_ratio", "0.25", "--kl_to_base", "0.5"]),
    Variant("full", "full fine-tuning, lr 5e-5", ["--method", "full", "--learning_rate", "5e-5"]),
    Variant("freeze80_replay", "freeze 80% + replay 0.25", ["--num_frozen_layers", "24", "--replay_ratio", "0.25"]),
    Variant("freeze80_kl", "freeze 80% + KL 0.5", ["--num_frozen_layers", "24", "--kl_to_base", "0.5"]),
    Variant("freeze80_replay_kl_alpha0.75", "freeze 80% + replay + KL, interpolated to alpha 0.75",
            interpolate=("freeze80_replay_kl", 0.75)),
    Variant("freeze93", "freeze 93% (28/30)", ["--num_frozen_layers", "28"]),
    Variant("freeze50", "freeze 50% (15/30)", ["--num_frozen_layers", "15"]),
    Variant("lora_top6", "LoRA r=16 on the top 6 blocks", ["--method", "lora", "--lora_layers", "6"]),
    Variant("freeze80_replay_kl_select", "freeze 80% + replay + KL + --select_alpha 0.5,0.75,1",
            ["--num_frozen_layers", "24", "--replay_ratio", "0.25", "--kl_to_base", "0.5",
             "--select_alpha", "0.5,0.75,1"]),
    Variant("lora_all", "LoRA r=16 on every block", ["--method", "lora", "--lora_layers", "0"]),
    Variant("freeze80_alpha0.5", "freeze 80%, interpolated to alpha 0.5", interpolate=("freeze80", 0.5)),
    Variant("freeze93_replay_kl", "freeze 93% + replay 0.25 + KL 0.5",
            ["--num_frozen_layers", "28", "--replay_ratio", "0.25", "--kl_to_base", "0.5"]),
    # Replay is data, so full fine-tuning can have it too (KL needs a frozen prefix): is the freeze still needed?
    Variant("full_replay", "full fine-tuning, lr 5e-5 + replay 0.25",
            ["--method", "full", "--learning_rate", "5e-5", "--replay_ratio", "0.25"]),
]

COLUMNS = ["variant", "label", "facts_accuracy", "support_perplexity", "skills_accuracy", "skills_change_points",
           "self_agreement_ratio", "general_perplexity", "general_change_pct", "rougeL", "train_seconds",
           "tokens_per_second", "peak_rss_mib", "trainable_params", "measured"]
INTEGERS = {"train_seconds", "peak_rss_mib", "trainable_params"}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40, help="Optimizer steps of every trained variant.")
    parser.add_argument("--only", nargs="*", default=None, help="Run these variants only (names).")
    parser.add_argument("--work_dir", default="outputs/retention_study")
    parser.add_argument("--out", default="docs/retention", help="Writes OUT.md, OUT.csv and OUT.png.")
    parser.add_argument("--threads", type=int, default=2, help="torch threads of every run.")
    parser.add_argument("--general_text", default=str(WIKITEXT), help="WikiText-2 raw test file.")
    parser.add_argument("--report_only", action="store_true", help="Only rebuild the outputs from finished runs.")
    parser.add_argument("--dry_run", action="store_true", help="Print the commands, run nothing.")
    return parser.parse_args(argv)


def common_args(args: argparse.Namespace) -> list[str]:
    """What every trained variant shares: the default recipe, its data, seed and batch, a fixed number of steps,
    the general text measured from a local file, token counting for tokens/s (padded batches: padding counts)."""
    # Retention options off unless a variant sets them (later flags win): the default recipe now turns them on.
    return ["--replay_ratio", "0", "--kl_to_base", "0",
            "--max_steps", str(args.steps), "--general_text", args.general_text, "--save_strategy", "no",
            "--include_num_input_tokens_seen", "true", "--report_to", "none", "--overwrite_output_dir", "true"]


def evaluation_args(args: argparse.Namespace) -> list[str]:
    """``chatfreeze evaluate --base`` options that match the recipe's own evaluation settings."""
    return ["--dataset", "data/validation.jsonl", "--facts_probe", "data/facts_probe.jsonl", "--skills_probe",
            "builtin", "--general_text", args.general_text, "--window", "512", "--stride", "512", "--max_windows",
            "40", "--generation_samples", "8", "--max_new_tokens", "96", "--batch_size", "8", "--max_length", "512"]


def run_child(command: list[str], log: Path, threads: int) -> tuple[int, float, float]:
    """Run ``command`` with its output in ``log``; ``(return code, wall seconds, peak RSS MiB of that child)``."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
           "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "1"), "PYTHONUNBUFFERED": "1"}
    started = time.perf_counter()
    with log.open("w") as handle:
        proc = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT, cwd=REPO_ROOT, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, time.perf_counter() - started, usage.ru_maxrss / 1024


def run_variant(variant: Variant, args: argparse.Namespace, work: Path) -> None:
    out = work / variant.name
    if (out / "evaluation.json").is_file():
        print(f"[{variant.name}] done already: {out}")
        return
    if variant.interpolate:
        source, alpha = variant.interpolate
        if not (work / source / "evaluation.json").is_file():
            print(f"[{variant.name}] needs {source} first; skipped")
            return
        merged = work / f"{variant.name}.model"
        commands = [] if (merged / "config.json").is_file() else [
            [sys.executable, "-m", "chatfreeze.merge", str(work / source), str(merged), "--alpha", str(alpha)]]
        commands.append([sys.executable, "-m", "chatfreeze.evaluate", "--model", str(merged), "--base",
                         "HuggingFaceTB/SmolLM2-135M-Instruct", "--output_dir", str(out), *evaluation_args(args)])
    else:
        commands = [[sys.executable, "scripts/train.py", *common_args(args), *variant.args, "--output_dir", str(out)]]
    for command in commands:
        print(f"[{variant.name}] {shlex.join(command)}", flush=True)
        if args.dry_run:
            continue
        log = work / f"{variant.name}.log"
        code, seconds, peak = run_child(command, log, args.threads)
        if code != 0:
            raise SystemExit(f"[{variant.name}] failed (exit {code}); see {log}")
        if command is commands[-1]:
            (work / f"{variant.name}.process.json").write_text(json.dumps(
                {"wall_seconds": seconds, "peak_rss_mib": peak, "command": shlex.join(command)}) + "\n")
        print(f"[{variant.name}] {seconds:.0f} s, peak RSS {peak:.0f} MiB", flush=True)


def read_row(variant: Variant, work: Path) -> dict | None:
    out = work / variant.name
    if not (out / "evaluation.json").is_file():
        return None
    evaluation = json.loads((out / "evaluation.json").read_text())
    after, change = evaluation.get("after", {}), evaluation.get("change", {})
    process = json.loads((work / f"{variant.name}.process.json").read_text())
    row = {"variant": variant.name, "label": variant.label,
           "facts_accuracy": after.get("facts_accuracy"), "support_perplexity": after.get("support_perplexity"),
           "skills_accuracy": after.get("skills_accuracy"),
           "skills_change_points": change.get("skills_accuracy_change_points"),
           "self_agreement_ratio": after.get("self_agreement_ratio"),
           "general_perplexity": after.get("general_perplexity"),
           "general_change_pct": change.get("general_perplexity_change_pct"), "rougeL": after.get("rougeL"),
           "peak_rss_mib": round(process["peak_rss_mib"]), "measured": measured_on(out)}
    if evaluation.get("alpha_selection"):  # --select_alpha: say which alpha it kept
        row["label"] += f" (chose alpha {evaluation['alpha_selection']['alpha']:g})"
    results_file = out / "all_results.json"
    if results_file.is_file():  # a trained variant
        results = json.loads(results_file.read_text())
        state = json.loads((out / "trainer_state.json").read_text())
        tokens = max((e.get("num_input_tokens_seen", 0) for e in state.get("log_history", [])), default=0)
        plan = json.loads((out / "freeze_plan.json").read_text())
        row.update(train_seconds=round(results["train_runtime"]),
                   tokens_per_second=round(tokens / results["train_runtime"], 1) if tokens else None,
                   # LoRA: the adapters' parameters (the plan counts the block weights the merge changes)
                   trainable_params=results.get("adapter_parameters", plan.get("trainable_parameters")))
    else:  # interpolation: the source run's training
        source = read_row(next(v for v in VARIANTS if v.name == variant.interpolate[0]), work) or {}
        row.update(train_seconds=source.get("train_seconds"), tokens_per_second=source.get("tokens_per_second"),
                   trainable_params=source.get("trainable_params"))
    return row


def base_row(work: Path) -> dict | None:
    for variant in VARIANTS:
        out = work / variant.name / "evaluation.json"
        if out.is_file():
            before = json.loads(out.read_text()).get("before", {})
            return {"variant": "base", "label": "base model (no training)",
                    "facts_accuracy": before.get("facts_accuracy"),
                    "support_perplexity": before.get("support_perplexity"),
                    "skills_accuracy": before.get("skills_accuracy"), "skills_change_points": 0.0,
                    "self_agreement_ratio": before.get("self_agreement_ratio"),
                    "general_perplexity": before.get("general_perplexity"), "general_change_pct": 0.0,
                    "rougeL": before.get("rougeL"), "measured": measured_on(out.parent)}
    return None


def measured_on(out: Path) -> str:
    return time.strftime("%Y-%m-%d", time.localtime((out / "evaluation.json").stat().st_mtime))


def previous_rows(path: Path) -> dict[str, dict]:
    """The rows of an earlier ``OUT.csv`` by variant name, numbers parsed back (``measured`` "earlier" if absent)."""
    if not path.is_file():
        return {}
    rows = {}
    with open(path, newline="") as handle:
        for raw in csv.DictReader(handle):
            row = {}
            for key in COLUMNS:
                value = raw.get(key) or None
                if value is not None and key not in ("variant", "label", "measured"):
                    value = int(float(value)) if key in INTEGERS else float(value)
                row[key] = value
            row["measured"] = row["measured"] or "earlier"
            rows[row["variant"]] = row
    return rows


def fmt(value, kind: str = "") -> str:
    if value is None:
        return "–"
    if kind == "pct":
        return f"{100 * value:.1f}%"
    if kind == "signed":
        return f"{value:+.1f}"
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 100 else f"{value:,.0f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def write_plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 5))
    for ax, key, xlabel in ((axes[0], "skills_change_points", "short-answer accuracy change (points, higher keeps more)"),
                            (axes[1], "general_change_pct", "WikiText-2 perplexity change (%, lower keeps more)")):
        for row in rows:
            if row.get(key) is None or row.get("facts_accuracy") is None:
                continue
            ax.scatter(row[key], 100 * row["facts_accuracy"], s=40)
            ax.annotate(row["variant"], (row[key], 100 * row["facts_accuracy"]), fontsize=8,
                        xytext=(4, 4), textcoords="offset points")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("facts-probe accuracy (%, learn)")
        ax.grid(alpha=0.3)
    axes[1].invert_xaxis()  # right = keeps more on both panels
    fig.suptitle("Learn vs keep: up is learned, right is kept")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_outputs(args: argparse.Namespace, work: Path) -> None:
    out = Path(args.out)
    earlier = previous_rows(out.with_suffix(".csv"))  # rows whose run directory is gone keep their numbers
    rows = [row for variant in VARIANTS if (row := read_row(variant, work) or earlier.get(variant.name))]
    base = base_row(work) or earlier.get("base")
    out.parent.mkdir(parents=True, exist_ok=True)
    table_rows = ([base] if base else []) + rows
    with open(out.with_suffix(".csv"), "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows({k: row.get(k) for k in COLUMNS} for row in table_rows)
    if table_rows:
        write_plot(table_rows, out.with_suffix(".png"))
    missing = [v.name for v in VARIANTS if not any(row["variant"] == v.name for row in rows)]
    lines = [
        "# Retention study: learn the support task, keep the base model's skills",
        "",
        "Generated by `scripts/retention_study.py` (rerun it to continue or refresh; the reading below is written "
        "by hand and kept).",
        "",
        f"Setup: the default recipe (SmolLM2-135M-Instruct, offline copy; `data/train.jsonl`, seed 42, 8 dialogues "
        f"per step) for **{args.steps} optimizer steps** per trained variant, the same for every method (equal "
        "steps and batch: equal data seen; replay rows see replay examples in place of some support dialogues). "
        f"Evaluation: the recipe's own before/after (facts probe 109 questions, skills probe, self-agreement, "
        f"held-out support perplexity on `data/validation.jsonl`, WikiText-2 raw test 40 windows of 512). "
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, torch threads {args.threads}, fp32.",
        "",
        "| variant | facts right | support ppl | short answers right (Δ pts) | self-agreement | WikiText-2 ppl (Δ) "
        "| train s | tokens/s (padded) | peak RSS MiB | trainable | measured |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in table_rows:
        lines.append(
            f"| {row['label']} | {fmt(row['facts_accuracy'], 'pct')} | {fmt(row['support_perplexity'])} | "
            f"{fmt(row['skills_accuracy'], 'pct')} ({fmt(row['skills_change_points'], 'signed')}) | "
            f"{fmt(row['self_agreement_ratio'])} | {fmt(row['general_perplexity'])} "
            f"({fmt(row['general_change_pct'], 'signed')}%) | {fmt(row.get('train_seconds'))} | "
            f"{fmt(row.get('tokens_per_second'))} | {fmt(row.get('peak_rss_mib'))} | "
            f"{fmt(row.get('trainable_params'))} | {row.get('measured') or 'earlier'} |")
    if missing:
        lines += ["", f"Not measured yet (the study was interrupted; rerun to add them): {', '.join(missing)}."]
    lines += ["", f"![learn vs keep]({out.with_suffix('.png').name})", "", "Command:", "",
              f"    python scripts/retention_study.py --steps {args.steps} --threads {args.threads}", "",
              READING_START, previous_reading(out.with_suffix(".md")), READING_END, ""]
    out.with_suffix(".md").write_text("\n".join(lines))
    fresh = sum(1 for v in VARIANTS if read_row(v, work))
    print(f"wrote {out.with_suffix('.md')}, .csv, .png ({len(rows)} variants: {fresh} from {work}, "
          f"{len(rows) - fresh} kept from the earlier CSV)")


def previous_reading(path: Path) -> str:
    if path.is_file():
        text = path.read_text()
        if READING_START in text and READING_END in text:
            return text.split(READING_START, 1)[1].split(READING_END, 1)[0].strip("\n")
    return "(reading to be written when the rows are in)"


def main(argv=None) -> int:
    args = parse_args(argv)
    if not Path(args.general_text).is_file():
        print(f"error: --general_text {args.general_text}: no such file; the study measures WikiText-2 "
              "perplexity from a local raw copy (wiki.test.raw).", file=sys.stderr)
        return 2
    names = {v.name for v in VARIANTS}
    unknown = sorted(set(args.only or []) - names)
    if unknown:
        print(f"error: --only {unknown[0]}: unknown variant; choose from {', '.join(sorted(names))}.", file=sys.stderr)
        return 2
    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    if not args.report_only:
        for variant in VARIANTS:
            if args.only is None or variant.name in args.only:
                run_variant(variant, args, work)
                if not args.dry_run:
                    write_outputs(args, work)
    if not args.dry_run:
        write_outputs(args, work)
    return 0


if __name__ == "__main__":
    sys.exit(main())
