#!/usr/bin/env python
"""Freeze-depth sweep: full fine-tuning vs freezing 50/80/93% of the blocks vs LoRA, same data, seed and budget.

The committed ``docs/freeze_sweep.md`` came from (about 45 minutes when the 2-core CPU machine gives it one
core; one thread per variant and a CPU-time budget keep the comparison fair while other work shares the
cores; the doc records the exact command and the load):

    python scripts/sweep.py --threads 1 --clock cpu --out docs/freeze_sweep --work_dir outputs/sweep

A smoke test of the whole pipeline takes ~15 minutes:

    python scripts/sweep.py --steps 2 --batch_size 2 --train_rows 16 --eval_rows 2 --general_windows 1 \
        --window 64 --reply_tokens 8 --work_dir /tmp/sweep_smoke --out /tmp/sweep_smoke/out

Every variant trains in its own subprocess (so peak memory is its own) on the same Bitext training rows in
the same order, with a constant learning rate after a short warm-up, and is measured twice:

* **equal optimizer steps**: after ``--steps`` steps;
* **equal time**: after the training time full fine-tuning needed for ``--steps`` steps (to the nearest step;
  evaluation pauses the clock), on the wall clock or, with ``--clock cpu``, in CPU seconds (with one thread,
  the wall-clock time of a core of one's own). The constant schedule makes one run serve both comparisons.

Measured per row: trainable parameters, tokens/s (non-padding tokens per second of training), peak resident
memory of the training process (before its first evaluation), support perplexity on held-out Bitext
dialogues (``chatfreeze.evaluation.support_perplexity``), WikiText-2 perplexity change against the base
model (forgetting) and one greedy sample reply. Freeze rows and full fine-tuning train with chatfreeze's
``FreezeTrainer`` (full fine-tuning is its plan with nothing frozen); LoRA (peft) uses a plain
``transformers.Trainer`` on the same arguments.

Outputs: ``OUT.md`` (setup, both tables, the plot, the exact command; a hand-written reading between the
``<!-- reading -->`` markers is kept when the file is regenerated), ``OUT.csv`` and ``OUT.png``.
``--resume`` reuses the finished variants in ``--work_dir``.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import platform
import random
import resource
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
BITEXT = SHARED_DATA / "bitext-customer-support" / "Bitext_Sample_Customer_Support_Training_Dataset.csv"
WIKITEXT = SHARED_DATA / "wikitext-2-raw" / "wiki.test.raw"
READING_START, READING_END = "<!-- reading -->", "<!-- /reading -->"

logger = logging.getLogger("sweep")


@dataclass
class Variant:
    name: str
    label: str
    learning_rate: float
    frozen_blocks: int | None = None  # None: full fine-tuning; with lora_top: the blocks LoRA leaves alone
    lora_top: int = 0  # LoRA adapters on the top N blocks

    def describe(self, num_layers: int) -> str:
        if self.lora_top:
            from chatfreeze.training.methods import LoraOptions

            return LoraOptions(top_layers=self.lora_top).describe(num_layers)
        if self.frozen_blocks is None:
            return "nothing frozen"
        return f"embeddings (and the tied head) + blocks 0-{self.frozen_blocks - 1} frozen"


# Learning rates: not searched (no budget for it here); full fine-tuning at 5e-5 and freezing 24/30 at 1e-4
# come from the quick check, and fewer trainable parameters tolerate larger steps: 2e-4 for the
# two-block freeze and for LoRA (its usual range is 1e-4..3e-4).
VARIANTS = [
    Variant("full", "full fine-tuning", 5e-5),
    Variant("freeze50", "freeze 50% (15/30)", 1e-4, frozen_blocks=15),
    Variant("freeze80", "freeze 80% (24/30)", 1e-4, frozen_blocks=24),
    Variant("freeze93", "freeze 93% (28/30)", 2e-4, frozen_blocks=28),
    Variant("lora", "LoRA top 6 blocks", 2e-4, lora_top=6),
]


# ----------------------------------------------------------------------------------------------------------
# Shared inputs: every worker rebuilds them identically from the config
# ----------------------------------------------------------------------------------------------------------


def split_rows(config: dict) -> tuple[list, list]:
    from chatfreeze.data import load_dialogues

    dialogues = load_dialogues(config["dataset"])
    order = list(range(len(dialogues)))
    random.Random(config["seed"]).shuffle(order)
    held_out = [dialogues[i] for i in order[: config["eval_rows"]]]
    train = [dialogues[i] for i in order[config["eval_rows"] : config["eval_rows"] + config["train_rows"]]]
    return train, held_out


def load_inputs(config: dict):
    from chatfreeze.data import build_dataset
    from chatfreeze.evaluation import load_general_text, support_dataset, tokenize_general_text
    from chatfreeze.modeling import load_model, load_tokenizer, resolve_model

    resolved = resolve_model(config["model"])
    tokenizer = load_tokenizer(resolved.path)
    model = load_model(resolved.path)
    train, held_out = split_rows(config)
    train_ds, _ = build_dataset(train, tokenizer, max_length=config["max_length"], overlong_policy="drop_example",
                                source="bitext train")
    eval_ds = support_dataset(held_out, tokenizer, config["max_length"], "drop_example", source="bitext held out")
    general_ids = tokenize_general_text(tokenizer, load_general_text(config["general_text"]), config["window"],
                                        config["window"], config["general_windows"])
    prompt = held_out[0][: next(i for i, m in enumerate(held_out[0]) if m["role"] == "assistant")]
    return model, tokenizer, train_ds, eval_ds, general_ids, prompt


def measure(model, tokenizer, eval_ds, general_ids, prompt, config: dict) -> dict:
    from chatfreeze.evaluation import general_perplexity, greedy_config, support_perplexity
    from chatfreeze.generation import generate_reply

    started = time.perf_counter()
    support = support_perplexity(model, eval_ds, tokenizer, batch_size=4)
    general = general_perplexity(model, general_ids, config["window"], config["window"], config["general_windows"],
                                 batch_size=1)
    model.eval()
    reply = generate_reply(model, tokenizer, prompt,
                           generation_config=greedy_config(model, tokenizer, config["reply_tokens"]))
    return {"support_perplexity": support["support_perplexity"], "support_tokens": support["support_tokens"],
            "general_perplexity": general["general_perplexity"], "general_tokens": general["general_tokens"],
            "sample_reply": reply, "eval_seconds": time.perf_counter() - started}


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


# ----------------------------------------------------------------------------------------------------------
# Worker: one variant, one process
# ----------------------------------------------------------------------------------------------------------


def budget_callback(steps: int, seconds: float | None, clock: str, snapshot):
    """Stops training once ``steps`` steps AND ``seconds`` of training time on ``clock`` (``wall`` or
    ``cpu``: the process's CPU seconds over all threads) are done, calling ``snapshot(kind, model, step,
    wall, cpu)`` at each; both clocks stop while a snapshot evaluates."""
    from transformers import TrainerCallback

    class Budget(TrainerCallback):
        def __init__(self):
            self.start, self.done, self.times = (0.0, 0.0), set(), []
            self.paused = [0.0, 0.0]

        def now(self) -> tuple[float, float]:
            return time.perf_counter(), time.process_time()

        def on_train_begin(self, args, state, control, **kwargs):
            self.start = self.now()

        def on_step_end(self, args, state, control, model=None, **kwargs):
            wall, cpu = (t - t0 - p for t, t0, p in zip(self.now(), self.start, self.paused, strict=True))
            self.times.append((state.global_step, wall, cpu))
            spent = wall if clock == "wall" else cpu
            due = []
            if state.global_step >= steps and "steps" not in self.done:
                due.append("steps")
            # Stop at the step that ends nearest the budget: the next one would overshoot it by more than half.
            if seconds is not None and "time" not in self.done and spent * (1 + 0.5 / state.global_step) >= seconds:
                due.append("time")
            for kind in due:
                before = self.now()
                snapshot(kind, model, state.global_step, wall, cpu)
                self.done.add(kind)
                self.paused = [p + t - b for p, t, b in zip(self.paused, self.now(), before, strict=True)]
            if "steps" in self.done and (seconds is None or "time" in self.done):
                control.should_training_stop = True

    return Budget()


def counting(trainer_cls):
    """``trainer_cls`` that counts the non-padding tokens of every training batch (for tokens/s)."""

    class Counting(trainer_cls):
        tokens_seen = 0
        tokens_at_step: dict = {}

        def training_step(self, model, inputs, *args, **kwargs):
            self.tokens_seen += int(inputs["attention_mask"].sum())
            return super().training_step(model, inputs, *args, **kwargs)

    return Counting


def build_trainer(variant: Variant, model, tokenizer, train_ds, config: dict, callback):
    """The variant's trainer, through the recipe's own steps (plan -> trainer) or its LoRA baseline."""
    from transformers import Trainer

    from chatfreeze.data import DataArguments
    from chatfreeze.freezing import FreezeArguments
    from chatfreeze.modeling import ModelArguments
    from chatfreeze.training import recipe
    from chatfreeze.training.arguments import FreezeTrainingArguments
    from chatfreeze.training.methods import LoraOptions, build_lora_trainer
    from chatfreeze.training.trainer import FreezeTrainer

    args = FreezeTrainingArguments(
        output_dir=str(Path(config["work_dir"]) / variant.name), overwrite_output_dir=True,
        max_steps=config["max_steps_cap"], per_device_train_batch_size=config["batch_size"],
        learning_rate=variant.learning_rate, lr_scheduler_type="constant_with_warmup",
        warmup_steps=config["warmup_steps"], weight_decay=0.0, logging_steps=1, eval_strategy="no",
        save_strategy="no", report_to="none", use_cpu=True, seed=config["seed"], data_seed=config["seed"],
        dataloader_num_workers=0, disable_tqdm=True, resume_from_checkpoint=None,
        # No dialogue comes twice within the budget (--train_rows is larger than any variant consumes), so the
        # frozen-prefix cache could never serve a batch; it would only add its memory to the peak.
        prefix_cache="off",
    )
    spec = FreezeArguments(num_frozen_layers=str(variant.frozen_blocks or 0),
                           freeze_embeddings=variant.frozen_blocks is not None)
    run = recipe.RecipeRun(ModelArguments(model_name_or_path=config["model"]), DataArguments(), spec, args,
                           model=model, tokenizer=tokenizer, train_dataset=train_ds)
    if variant.lora_top:
        run = build_lora_trainer(run, LoraOptions(top_layers=variant.lora_top), counting(Trainer),
                                 callbacks=[callback])
    else:
        run = recipe.plan(run, allow_no_freeze=variant.frozen_blocks is None)
        run = recipe.build_trainer(run, counting(FreezeTrainer), callbacks=[callback])
    return run.trainer, run.model


def run_worker(name: str, work_dir: Path) -> None:
    import torch

    config = json.loads((work_dir / "config.json").read_text())
    if config["threads"]:
        torch.set_num_threads(config["threads"])
    torch.manual_seed(config["seed"])
    model, tokenizer, train_ds, eval_ds, general_ids, prompt = load_inputs(config)
    result: dict = {"variant": name, "train_rows": len(train_ds), "eval_rows": len(eval_ds)}
    if name == "base":
        result["base"] = measure(model, tokenizer, eval_ds, general_ids, prompt, config)
        result["peak_rss_mb"] = peak_rss_mb()
    else:
        variant = next(v for v in VARIANTS if v.name == name)
        clock_key = "train_seconds" if config["clock"] == "wall" else "cpu_seconds"
        seconds = None if name == "full" else json.loads((work_dir / "full.json").read_text())["at_steps"][clock_key]
        box: dict = {}

        def snapshot(kind, live_model, step, wall, cpu):
            result.setdefault("peak_rss_mb", peak_rss_mb())  # training peak, before any evaluation
            logger.info("%s: snapshot '%s' at step %d, %.0f s of training (%.0f CPU s)", name, kind, step, wall, cpu)
            tokens = box["trainer"].tokens_seen
            result[f"at_{kind}"] = {"steps": step, "train_seconds": wall, "cpu_seconds": cpu, "tokens": tokens,
                                    "tokens_per_s": tokens / wall,
                                    **measure(live_model, tokenizer, eval_ds, general_ids, prompt, config)}

        callback = budget_callback(config["steps"], seconds, config["clock"], snapshot)
        result["total_params"] = sum(p.numel() for p in model.parameters())  # the base model's (tied: once)
        trainer, model = build_trainer(variant, model, tokenizer, train_ds, config, callback)
        box["trainer"] = trainer
        result["trainable_params"] = sum(p.numel() for p in model.parameters() if p.requires_grad)
        trainer.train()
        if name == "full":
            result["at_time"] = result["at_steps"]
        clocks = {step: (wall, cpu) for step, wall, cpu in callback.times}
        result["loss_curve"] = [(e["step"], *clocks[e["step"]], e["loss"]) for e in trainer.state.log_history
                                if "loss" in e and e.get("step") in clocks]  # (step, wall s, CPU s, loss)
        result.update(variant=name, label=variant.label, learning_rate=variant.learning_rate,
                      setup=variant.describe(model.config.num_hidden_layers))
    (work_dir / f"{name}.json").write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")


# ----------------------------------------------------------------------------------------------------------
# Driver: run the workers, write the table, CSV and plot
# ----------------------------------------------------------------------------------------------------------


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add = parser.add_argument
    add("--model", default="HuggingFaceTB/SmolLM2-135M-Instruct", help="Model id or directory.")
    add("--dataset", default=str(BITEXT), help="Support data (Bitext CSV by default).")
    add("--general_text", default=str(WIKITEXT), help="General text for forgetting (WikiText-2 test).")
    add("--steps", type=int, default=40, help="Optimizer steps of the equal-steps comparison.")
    add("--batch_size", type=int, default=4, help="Dialogues per optimizer step.")
    add("--train_rows", type=int, default=1600, help="Training dialogues (more than any variant consumes).")
    add("--eval_rows", type=int, default=16, help="Held-out dialogues for support perplexity.")
    add("--max_length", type=int, default=512, help="Tokens per dialogue; longer ones are left out.")
    add("--window", type=int, default=512, help="General-text window (= stride), tokens.")
    add("--general_windows", type=int, default=6, help="General-text windows scored.")
    add("--warmup_steps", type=int, default=3, help="Linear warm-up, then a constant learning rate.")
    add("--reply_tokens", type=int, default=32, help="Sample reply length cap (greedy).")
    add("--seed", type=int, default=0, help="Data split, data order and initialisation seed.")
    add("--clock", default="wall", choices=["wall", "cpu"], help="Clock of the equal-time budget: wall-clock "
        "seconds, or the process's CPU seconds (with --threads 1, fairer when other work shares the cores).")
    add("--threads", type=int, default=0, help="torch threads per variant (0: torch's default, one per core). "
        "Under contention, 2 threads spin-wait for each other and burn CPU time; 1 thread does not.")
    add("--variants", default=",".join(v.name for v in VARIANTS), help="Comma-separated subset to run.")
    add("--work_dir", default="outputs/sweep", help="Per-variant results and logs.")
    add("--out", default="docs/freeze_sweep", help="Writes OUT.md, OUT.csv and OUT.png.")
    add("--resume", action="store_true", help="Reuse finished variants found in --work_dir.")
    add("--worker", default=None, help=argparse.SUPPRESS)
    return parser


def run_variant(name: str, work_dir: Path, resume: bool, loads: dict) -> dict:
    out = work_dir / f"{name}.json"
    if resume and out.is_file():
        logger.info("%s: reusing %s", name, out)
        return json.loads(out.read_text())
    log = work_dir / f"{name}.log"
    logger.info("%s: training (log: %s)", name, log)
    loads[name] = {"start": os.getloadavg()[0]}
    started = time.perf_counter()
    with log.open("w") as handle:
        status = subprocess.run([sys.executable, __file__, "--worker", name, "--work_dir", str(work_dir)],
                                stdout=handle, stderr=subprocess.STDOUT, cwd=REPO_ROOT)
    loads[name].update(end=os.getloadavg()[0], wall_seconds=time.perf_counter() - started)
    if status.returncode != 0:
        tail = "".join(log.read_text().splitlines(keepends=True)[-15:])
        raise RuntimeError(f"variant {name} failed (exit {status.returncode}); end of {log}:\n{tail}")
    return json.loads(out.read_text())


def rows_for(results: dict, base: dict, kind: str, clock: str) -> list[dict]:
    rows = []
    for name, result in results.items():
        at = result[f"at_{kind}"]
        seconds = at["train_seconds"] if clock == "wall" else at["cpu_seconds"]
        rows.append({
            "comparison": "equal steps" if kind == "steps" else "equal time",
            "variant": name, "label": result["label"], "learning_rate": result["learning_rate"],
            "trainable_params": result["trainable_params"],
            "trainable_pct": 100 * result["trainable_params"] / result["total_params"],
            "steps": at["steps"], "train_seconds": round(at["train_seconds"], 1),
            "cpu_seconds": round(at["cpu_seconds"], 1), "tokens": at["tokens"],
            "tokens_per_s": round(at["tokens"] / seconds, 1), "peak_rss_mb": round(result["peak_rss_mb"]),
            "support_ppl_before": round(base["support_perplexity"], 3),
            "support_ppl_after": round(at["support_perplexity"], 3),
            "general_ppl_before": round(base["general_perplexity"], 3),
            "general_ppl_after": round(at["general_perplexity"], 3),
            "general_ppl_change_pct": round(100 * (at["general_perplexity"] / base["general_perplexity"] - 1), 2),
            "sample_reply": at["sample_reply"],
        })
    return rows


def short(text: str, limit: int = 110) -> str:
    text = " ".join(text.split()).replace("|", "\\|")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def markdown_table(rows: list[dict]) -> str:
    lines = ["| method | lr | trainable params | steps | train time (CPU) | tokens/s | peak RSS | support ppl after "
             "| WikiText-2 ppl change | sample reply (start) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['label']} | {r['learning_rate']:.0e} | {r['trainable_params'] / 1e6:.1f} M "
            f"({r['trainable_pct']:.1f}%) | {r['steps']} | {r['train_seconds']:.0f} s ({r['cpu_seconds']:.0f} s) "
            f"| {r['tokens_per_s']:.0f} "
            f"| {r['peak_rss_mb'] / 1024:.2f} GiB | {r['support_ppl_after']:.2f} | {r['general_ppl_change_pct']:+.1f}% "
            f"| {short(r['sample_reply'])} |"
        )
    return "\n".join(lines)


def write_csv(rows: list[dict], path: Path) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def plot(results: dict, rows: list[dict], base: dict, path: Path, clock: str) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(12, 4.6), dpi=110, layout="constrained")
    ax1, ax2 = fig.subplots(1, 2)
    colors = dict(zip(results, ["tab:red", "tab:olive", "tab:green", "tab:cyan", "tab:purple"], strict=False))
    for r in rows:
        marker = "o" if r["comparison"] == "equal steps" else "^"
        ax1.scatter(r["general_ppl_change_pct"], r["support_ppl_after"], marker=marker, s=60,
                    color=colors[r["variant"]])
        ax1.annotate(f"{r['variant']} {r['steps']}", (r["general_ppl_change_pct"], r["support_ppl_after"]),
                     fontsize=7, xytext=(4, 3), textcoords="offset points")
    ax1.axvline(0, color="gray", lw=0.8)
    ax1.set_xlabel("WikiText-2 perplexity change vs base, % (forgetting; right is worse)")
    ax1.set_ylabel(f"held-out support perplexity after (base {base['support_perplexity']:.2f})")
    ax1.set_title("quality vs forgetting (o equal steps, ^ equal time; labels: variant, steps)", fontsize=10)
    ax1.grid(alpha=0.3)
    # Against the step, not the time: every variant sees the same batches in the same order, so the curves
    # compare like with like; each run's end (its equal-time step count) is marked.
    for name, result in results.items():
        curve = result.get("loss_curve") or []
        if curve:
            # Batches differ in length and content, so the per-step loss is noisy: a running mean of 5 steps.
            losses = [point[3] for point in curve]
            smooth = [sum(losses[max(0, i - 4) : i + 1]) / len(losses[max(0, i - 4) : i + 1]) for i in range(len(losses))]
            steps = [point[0] for point in curve]
            ax2.plot(steps, smooth, label=f"{result['label']} ({steps[-1]} steps in the time budget)",
                     color=colors[name], lw=1.2)
            ax2.plot(steps[-1], smooth[-1], "^", color=colors[name])
    if rows:
        ax2.axvline(rows[0]["steps"], color="gray", ls="--", lw=0.8, label="equal-steps comparison")
    ax2.set_xlabel("optimizer step (same batches, same order for every variant)")
    ax2.set_ylabel("training loss (per assistant token, mean of 5 steps)")
    ax2.set_title(f"training loss; runs end at the equal-{clock}-time budget", fontsize=10)
    ax2.grid(alpha=0.3)
    ax2.legend(fontsize=8)
    fig.savefig(path)


def machine(threads: int) -> str:
    import torch

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor() or "unknown CPU")
    return (f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__} "
            f"(threads per variant: {threads or torch.get_num_threads()}), float32")


def keep_reading(path: Path) -> str:
    if path.is_file():
        text = path.read_text()
        if READING_START in text and READING_END in text:
            return text[text.index(READING_START) : text.index(READING_END) + len(READING_END)]
    return f"{READING_START}\n_(reading to be written after looking at the numbers)_\n{READING_END}"


def write_markdown(args, config: dict, results: dict, base: dict, rows: dict, loads: dict, path: Path,
                   command: str) -> None:
    first = next(iter(results.values()))
    seen = max(r["steps"] for r in rows["steps"] + rows["time"]) * config["batch_size"]
    reuse = (f"no variant reached the end of the {first['train_rows']} training dialogues (at most {seen} seen), "
             "so it could never have served a batch." if seen <= first["train_rows"] else
             f"note that the longest run saw {seen} dialogues, more than the {first['train_rows']} available, "
             "so it repeated some.")
    clock_key, unit = ("train_seconds", "s") if config["clock"] == "wall" else ("cpu_seconds", "CPU-seconds")
    budget = results["full"]["at_steps"][clock_key] if "full" in results else float("nan")
    setup_lines = "\n".join(
        f"| {r['label']} | {r['setup']} | {r['learning_rate']:.0e} |" for r in results.values()
    )
    load_lines = ", ".join(f"{name} {v['start']:.1f}→{v['end']:.1f}" for name, v in loads.items()) or "not recorded"
    replies = "\n".join(
        f"- **{results[r['variant']]['label']}, {r['comparison']} ({r['steps']} steps)**: {short(r['sample_reply'], 400)}"
        for r in rows["steps"] + rows["time"]
    )
    text = f"""# Freeze-depth sweep: what freezing buys on SmolLM2-135M-Instruct + Bitext

Generated by `scripts/sweep.py` (tables, CSV `{path.stem}.csv`, plot `{path.stem}.png`); the reading below is
written by hand. Exact command:

```
{command}
```

## Setup

- Model: `{config['model']}` (float32). Data: Bitext customer-support CSV from `../shared/data`, shuffled with
  seed {config['seed']}: {first['eval_rows']} held-out dialogues for support perplexity, {first['train_rows']} training
  dialogues (max {config['max_length']} tokens; longer ones left out), batch {config['batch_size']}, same order for every variant.
- Schedule: AdamW, no weight decay, {config['warmup_steps']} warm-up steps then a **constant** learning rate, so one
  run gives both comparisons: **equal steps** = after {config['steps']} optimizer steps; **equal time** = after the
  {budget:.0f} {unit} of training full fine-tuning needed for those steps (to the nearest step; clock:
  `--clock {config['clock']}`, evaluation excluded).
- Forgetting: perplexity on the first {config['general_windows']} windows of {config['window']} tokens (stride
  {config['window']}) of WikiText-2 test, relative to the base model. Support perplexity: token-weighted over the
  assistant tokens of the held-out dialogues (`chatfreeze.evaluation`). Sample reply: greedy, up to
  {config['reply_tokens']} new tokens, to the first held-out prompt: "{short(held_out_prompt(config), 200)}".
- train time = wall-clock seconds of training (in brackets: the process's CPU seconds over its threads);
  tokens/s = non-padding tokens per second of training on the budget's clock ({config['clock']}); peak RSS = peak resident memory of the variant's own
  process (model, optimizer, activations), read before its first evaluation.
- Trainers: full fine-tuning and freeze rows use `chatfreeze.training.trainer.FreezeTrainer` with its defaults (full =
  a plan with nothing frozen; its fast path computes the LM head and loss at labelled positions only, for every
  row, and runs a frozen bottom without autograd); LoRA uses a plain `transformers.Trainer` on a peft model,
  so its LM head and loss cover every position (~20% of SmolLM2's forward FLOPs at its 49k vocabulary).
  FreezeTrainer's frozen-prefix cache is off: {reuse}
- Machine: {machine(config['threads'])}. Load average (1 min) at start→end of each variant: {load_lines}. The 2 cores were
  shared with other work while this ran when those numbers exceed ~2; timings are then noisier and slower.

| method | what trains | learning rate (not searched) |
|---|---|---|
{setup_lines}

Base model: support perplexity **{base['support_perplexity']:.3f}**, WikiText-2 perplexity **{base['general_perplexity']:.3f}**.

## Equal optimizer steps ({config['steps']} steps × {config['batch_size']} dialogues)

{markdown_table(rows['steps'])}

## Equal {"wall-clock" if config["clock"] == "wall" else "CPU"} time ({budget:.0f} {unit} of training each)

{markdown_table(rows['time'])}

![quality vs forgetting, and loss against time]({path.stem}.png)

## Reading

{keep_reading(path)}

## Sample replies

Base model: {short(base['sample_reply'], 400)}

{replies}
"""
    path.write_text(text)


def held_out_prompt(config: dict) -> str:
    _, held_out = split_rows(config)
    return next(m["content"] for m in held_out[0] if m["role"] == "user")


def main(argv: list[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S",
                        level=logging.INFO)
    work_dir = Path(args.work_dir)
    if args.worker:
        run_worker(args.worker, work_dir)
        return 0
    names = [n for n in args.variants.split(",") if n]
    unknown = set(names) - {v.name for v in VARIANTS}
    if unknown or "full" not in names:
        raise ValueError(f"--variants: need 'full' (it sets the time budget); unknown: {sorted(unknown)}")
    for source in (args.dataset, args.general_text):
        if not Path(source).exists():
            raise FileNotFoundError(f"{source}: not found (the sweep reads ../shared/data by default).")
    work_dir.mkdir(parents=True, exist_ok=True)
    config = {k: v for k, v in vars(args).items() if k not in ("worker", "resume", "out", "variants")}
    # Room for the fastest variant's equal-time steps; the budget callback stops training well before.
    config["max_steps_cap"] = args.steps * 50
    config_path = work_dir / "config.json"
    if args.resume and config_path.is_file() and json.loads(config_path.read_text()) != config:
        raise ValueError(f"--resume: {config_path} was written with other settings; use another --work_dir.")
    config_path.write_text(json.dumps(config, indent=2) + "\n")
    loads_path = work_dir / "loads.json"
    loads: dict = json.loads(loads_path.read_text()) if args.resume and loads_path.is_file() else {}
    base = run_variant("base", work_dir, args.resume, loads)["base"]
    results = {name: run_variant(name, work_dir, args.resume, loads)
               for name in [v.name for v in VARIANTS if v.name in names]}
    rows = {kind: rows_for(results, base, kind, args.clock) for kind in ("steps", "time")}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_csv(rows["steps"] + rows["time"], out.with_suffix(".csv"))
    plot(results, rows["steps"] + rows["time"], base, out.with_suffix(".png"), args.clock)
    # --resume only reuses finished results, so the command that produced them is the one without it.
    given = [a for a in (sys.argv[1:] if argv is None else argv) if a != "--resume"]
    command = "python scripts/sweep.py " + " ".join(shlex.quote(a) for a in given)
    write_markdown(args, config, results, base, rows, loads, out.with_suffix(".md"), command)
    loads_path.write_text(json.dumps(loads, indent=2) + "\n")
    print(markdown_table(rows["steps"]) + "\n\n" + markdown_table(rows["time"]))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(REPO_ROOT))
    sys.exit(main())
